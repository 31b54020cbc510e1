//! AF_PACKET port: a raw packet socket bound to one interface, batched with
//! `recvmmsg`/`sendmmsg`, non-blocking (poll(2) on [`Port::rx_fd`]). Works on
//! any interface; the fallback where AF_XDP cannot attach.

use std::os::fd::RawFd;

use super::{FRAME_BUF, PacketBatch, Port, PortError, PortStats};
use crate::sys;
use crate::sys::packet::PacketSocket;

/// Largest batch handled per syscall.
const MAX_BATCH: usize = 256;

/// An AF_PACKET port.
#[derive(Debug)]
pub struct AfPacketPort {
    name: String,
    sock: PacketSocket,
    lens: Box<[usize]>,
    stats: PortStats,
}

impl AfPacketPort {
    /// Opens a packet socket on `name`.
    pub fn open(name: &str) -> Result<Self, PortError> {
        let ifindex = sys::ifindex(name).map_err(|source| PortError::Interface {
            name: name.into(),
            source,
        })?;
        let sock = PacketSocket::open(ifindex, MAX_BATCH).map_err(|source| PortError::Setup {
            port: name.into(),
            what: "AF_PACKET socket",
            source,
        })?;
        Ok(Self {
            name: name.into(),
            sock,
            lens: vec![0; MAX_BATCH].into_boxed_slice(),
            stats: PortStats::default(),
        })
    }
}

impl Port for AfPacketPort {
    fn kind(&self) -> &'static str {
        "afpacket"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
        batch.clear();
        let want = batch.capacity().min(MAX_BATCH);
        let lens = &mut self.lens[..want];
        match self.sock.recv_batch(batch.spare(), FRAME_BUF, lens) {
            Ok(n) => {
                let mut good = 0;
                // Truncated (oversized) frames are dropped: compact the batch.
                batch.commit(lens[..n].iter().copied());
                batch.retain(|i, _| {
                    let ok = lens[i] != usize::MAX;
                    good += ok as usize;
                    ok
                });
                self.stats.rx_drops += (n - good) as u64;
                self.stats.rx_packets += good as u64;
                self.stats.rx_bytes += batch.iter().map(|f| f.len() as u64).sum::<u64>();
                batch.len()
            }
            Err(_) => {
                self.stats.rx_errors += 1;
                0
            }
        }
    }

    fn tx_batch(&mut self, batch: &mut PacketBatch) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let (data, lens) = batch.raw();
        match self.sock.send_batch(data, FRAME_BUF, lens) {
            Ok(sent) => {
                self.stats.tx_packets += sent as u64;
                self.stats.tx_bytes += lens[..sent].iter().map(|&l| l as u64).sum::<u64>();
                self.stats.tx_drops += (n - sent) as u64;
            }
            Err(_) => {
                self.stats.tx_errors += 1;
                self.stats.tx_drops += n as u64;
            }
        }
        batch.clear();
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.sock.fd())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
