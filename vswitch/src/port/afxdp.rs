//! AF_XDP port: one XSK socket on one queue, its own UMEM, and our redirect
//! program ([`crate::sys::bpf`]) attached to the interface with a BPF link.
//!
//! On veth this runs in copy mode (the kernel copies frames into the UMEM on
//! receive and into an skb on transmit); native XDP is tried first, generic
//! (skb) XDP is the fallback. Transmit needs a `sendto` kick per burst in copy
//! mode; the receive side needs no syscall at all (the fill ring is topped up
//! in bulk).
//!
//! Syscall budget per forwarding round: none for receive; one `sendto` kick
//! per port that has queued frames, issued from [`Port::flush`] so that up to
//! four 64-frame batches share it (the socket's `XDP_MAX_TX_SKB_BUDGET` is
//! raised so one kick sends them all, on kernels that have it). The socket is
//! bound without `XDP_USE_NEED_WAKEUP`: in copy mode the TX ring always needs
//! the kick and the fill ring never needs one (the veth NAPI poll consumes it),
//! so the flag would save nothing here; it matters for zero-copy drivers.

use std::os::fd::RawFd;

use super::{FRAME_BUF, PacketBatch, Port, PortError, PortStats};
use crate::sys;
use crate::sys::bpf::{XdpMode, XdpModeRequest, XdpProgram};
use crate::sys::xsk::{Xsk, XskConfig};

/// Options for [`AfXdpPort::open`].
#[derive(Clone, Copy, Debug)]
pub struct AfXdpOptions {
    /// Queue to bind (veths here have one: 0).
    pub queue: u32,
    /// XDP attach mode.
    pub mode: XdpModeRequest,
    /// Force copy mode (needed on veth; harmless elsewhere, just slower).
    pub force_copy: bool,
    /// Ring/UMEM sizes.
    pub xsk: XskConfig,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        Self {
            queue: 0,
            mode: XdpModeRequest::Auto,
            force_copy: true,
            xsk: XskConfig::default(),
        }
    }
}

/// An AF_XDP port. Drop order: the program is detached first, then the socket
/// and UMEM are released.
#[derive(Debug)]
pub struct AfXdpPort {
    name: String,
    prog: XdpProgram,
    xsk: Xsk,
    queue: u32,
    stats: PortStats,
    unkicked: usize,
}

impl AfXdpPort {
    /// Attaches the redirect program to `name` and binds a socket to its queue.
    pub fn open(name: &str, opts: AfXdpOptions) -> Result<Self, PortError> {
        if let Err(e) = sys::raise_memlock_limit() {
            // Not fatal: since Linux 5.11 the UMEM is charged to the memcg.
            eprintln!("{name}: setrlimit(RLIMIT_MEMLOCK) failed: {e} (continuing)");
        }
        let ifindex = sys::ifindex(name).map_err(|source| PortError::Interface {
            name: name.into(),
            source,
        })?;
        let setup = |what, source| PortError::Setup {
            port: name.into(),
            what,
            source,
        };
        let prog = XdpProgram::attach(ifindex, (opts.queue + 1).max(64), opts.mode)
            .map_err(|e| setup("attach XDP program", e))?;
        let xsk = Xsk::bind(ifindex, opts.queue, opts.xsk, opts.force_copy)
            .map_err(|e| setup("AF_XDP socket", e))?;
        prog.insert_socket(opts.queue, xsk.fd())
            .map_err(|e| setup("XSKMAP update", e))?;
        Ok(Self {
            name: name.into(),
            prog,
            xsk,
            queue: opts.queue,
            stats: PortStats::default(),
            unkicked: 0,
        })
    }

    /// The XDP mode the program was attached in.
    pub fn xdp_mode(&self) -> XdpMode {
        self.prog.mode()
    }

    /// The bound queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }
}

/// Queued frames that trigger a TX kick without waiting for `flush`.
const KICK_THRESHOLD: usize = 256;

impl AfXdpPort {
    fn kick(&mut self) {
        self.unkicked = 0;
        if self.xsk.kick().is_err() {
            self.stats.tx_errors += 1;
        }
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        let _ = self.prog.remove_socket(self.queue);
    }
}

impl Port for AfXdpPort {
    fn kind(&self) -> &'static str {
        "afxdp"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
        batch.clear();
        let cap = batch.capacity();
        let (mut bytes, mut oversize) = (0u64, 0u64);
        let n = self.xsk.recv(cap, |frame| {
            if frame.len() <= FRAME_BUF && batch.push(frame) {
                bytes += frame.len() as u64;
            } else {
                oversize += 1;
            }
        });
        self.stats.rx_packets += (n as u64) - oversize;
        self.stats.rx_bytes += bytes;
        self.stats.rx_drops += oversize;
        batch.len()
    }

    fn tx_batch(&mut self, batch: &mut PacketBatch) {
        if batch.is_empty() {
            self.flush();
            return;
        }
        let (queued, bytes, dropped) = self.xsk.send(batch.iter());
        self.stats.tx_packets += queued as u64;
        self.stats.tx_bytes += bytes;
        self.stats.tx_drops += dropped as u64;
        batch.clear();
        // The kick (a syscall that also runs the transmit path) is deferred
        // to `flush` so one kick covers several batches; kick now only if a
        // lot is waiting.
        self.unkicked += queued;
        if self.unkicked >= KICK_THRESHOLD {
            self.kick();
        }
    }

    fn flush(&mut self) {
        if self.xsk.tx_pending() {
            self.kick();
        }
        self.xsk.reclaim();
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.xsk.fd())
    }

    fn details(&self) -> String {
        match self.xsk.kernel_stats() {
            Ok(k) => format!(
                "{:?} XDP, tx budget raised: {}, kernel {k:?}",
                self.prog.mode(),
                self.xsk.tx_budget_raised()
            ),
            Err(e) => format!("{:?} XDP, kernel stats: {e}", self.prog.mode()),
        }
    }

    fn stats(&self) -> PortStats {
        let mut s = self.stats;
        if let Ok(k) = self.xsk.kernel_stats() {
            s.rx_drops += k.rx_dropped + k.rx_ring_full;
            s.rx_errors += k.rx_invalid_descs;
            s.tx_errors += k.tx_invalid_descs;
        }
        s
    }
}
