//! Tap port: a `/dev/net/tun` tap device (`IFF_TAP | IFF_NO_PI`), opened by
//! name and created if missing, for VMs.

use std::os::fd::RawFd;

use super::{FRAME_BUF, PacketBatch, Port, PortError, PortStats};
use crate::sys;
use crate::sys::tun::TapFd;

/// A tap port.
#[derive(Debug)]
pub struct TapPort {
    tap: TapFd,
    buf: Box<[u8]>,
    stats: PortStats,
}

impl TapPort {
    /// Opens (or creates) tap `name` and sets it up.
    pub fn open(name: &str) -> Result<Self, PortError> {
        let setup = |what, source| PortError::Setup {
            port: name.into(),
            what,
            source,
        };
        let tap = TapFd::open(name).map_err(|e| setup("open tap", e))?;
        sys::set_if_up(tap.name()).map_err(|e| setup("set link up", e))?;
        Ok(Self {
            tap,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            stats: PortStats::default(),
        })
    }
}

impl Port for TapPort {
    fn kind(&self) -> &'static str {
        "tap"
    }

    fn name(&self) -> &str {
        self.tap.name()
    }

    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
        batch.clear();
        while !batch.is_full() {
            match self.tap.read(&mut self.buf) {
                Ok(Some(n)) if n <= FRAME_BUF => {
                    batch.push(&self.buf[..n]);
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += n as u64;
                }
                Ok(Some(_)) => self.stats.rx_drops += 1,
                Ok(None) => break,
                Err(_) => {
                    self.stats.rx_errors += 1;
                    break;
                }
            }
        }
        batch.len()
    }

    fn tx_batch(&mut self, batch: &mut PacketBatch) {
        for f in batch.iter() {
            match self.tap.write(f) {
                Ok(true) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += f.len() as u64;
                }
                Ok(false) => self.stats.tx_drops += 1,
                Err(_) => {
                    self.stats.tx_errors += 1;
                    self.stats.tx_drops += 1;
                }
            }
        }
        batch.clear();
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.tap.fd())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
