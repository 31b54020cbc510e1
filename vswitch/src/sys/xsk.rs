//! A safe AF_XDP socket on top of the `xdp` crate (UMEM + fill/completion/rx/tx
//! rings). The crate marks the ring operations `unsafe` only because packets
//! must not outlive the UMEM: here packets never leave this module — received
//! frames are copied out and returned to the free list before `recv` returns,
//! and transmitted frames are owned by the kernel until they come back through
//! the completion ring.

use std::io;
use std::os::fd::RawFd;

use xdp::slab::{HeapSlab, Slab};
use xdp::socket::{XdpSocket, XdpSocketBuilder};
use xdp::umem::{FrameSize, UmemCfgBuilder};
use xdp::{RingConfigBuilder, Rings, Umem};

/// `SOL_XDP`.
const SOL_XDP: libc::c_int = 283;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux ≥ 6.17): frames one copy-mode `sendto` may send.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Ring and UMEM sizes.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// UMEM frames (2 KiB each).
    pub frames: u32,
    /// Fill ring entries.
    pub fill: u32,
    /// Completion ring entries.
    pub completion: u32,
    /// RX ring entries.
    pub rx: u32,
    /// TX ring entries.
    pub tx: u32,
    /// Largest receive burst handled at once.
    pub max_burst: usize,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frames: 8192,
            fill: 4096,
            completion: 4096,
            rx: 4096,
            tx: 2048,
            max_burst: 256,
        }
    }
}

/// Counters the kernel keeps for an AF_XDP socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskKernelStats {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty on a kick.
    pub tx_ring_empty_descs: u64,
}

/// One bound AF_XDP socket with its own UMEM. Field order is drop order:
/// rings are unmapped, then the socket closed, then the UMEM unmapped.
pub struct Xsk {
    rings: Rings,
    socket: XdpSocket,
    umem: Umem,
    rx_slab: HeapSlab,
    tx_slab: HeapSlab,
    cfg: XskConfig,
    /// Fill-ring entries handed to the kernel and not yet returned via RX.
    fill_in_kernel: u32,
    /// Frames queued on the TX ring that no successful kick has pushed yet.
    tx_unkicked: bool,
    /// Frames in the TX ring or awaiting completion.
    tx_in_flight: u32,
    /// `XDP_MAX_TX_SKB_BUDGET` was accepted.
    tx_budget_raised: bool,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("fd", &self.socket.raw_fd())
            .field("cfg", &self.cfg)
            .field("fill_in_kernel", &self.fill_in_kernel)
            .field("tx_in_flight", &self.tx_in_flight)
            .finish()
    }
}

fn ioerr<E: std::fmt::Display>(what: &str, e: E) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl Xsk {
    /// Creates the UMEM and rings and binds to `ifindex`/`queue` in copy mode
    /// (`force_copy`) or letting the kernel pick zero-copy when it can.
    pub fn bind(ifindex: u32, queue: u32, cfg: XskConfig, force_copy: bool) -> io::Result<Self> {
        let ucfg = UmemCfgBuilder {
            frame_size: FrameSize::TwoK,
            frame_count: cfg.frames,
            ..Default::default()
        }
        .build()
        .map_err(|e| ioerr("UMEM config", e))?;
        let umem = Umem::map(ucfg).map_err(|e| ioerr("UMEM mmap", e))?;
        let mut builder = XdpSocketBuilder::new().map_err(|e| ioerr("socket(AF_XDP)", e))?;
        let rcfg = RingConfigBuilder {
            rx_count: cfg.rx,
            tx_count: cfg.tx,
            fill_count: cfg.fill,
            completion_count: cfg.completion,
        }
        .build()
        .map_err(|e| ioerr("ring config", e))?;
        let (rings, mut flags) = builder
            .build_rings(&umem, rcfg)
            .map_err(|e| ioerr("AF_XDP rings", e))?;
        if force_copy {
            flags.force_copy();
        }
        let socket = builder
            .bind(xdp::nic::NicIndex(ifindex), queue, flags)
            .map_err(|e| ioerr("bind(AF_XDP)", e))?;
        // Let one kick send a whole burst (kernels without it send 32 per kick).
        let tx_budget_raised = super::setsockopt_int(
            socket.raw_fd(),
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            cfg.max_burst as libc::c_int,
        )
        .is_ok();
        let mut me = Self {
            rings,
            socket,
            umem,
            rx_slab: HeapSlab::with_capacity(cfg.max_burst),
            tx_slab: HeapSlab::with_capacity(cfg.max_burst),
            cfg,
            fill_in_kernel: 0,
            tx_unkicked: false,
            tx_in_flight: 0,
            tx_budget_raised,
        };
        me.refill(0);
        Ok(me)
    }

    /// True if the kernel accepted a larger per-kick TX budget.
    pub fn tx_budget_raised(&self) -> bool {
        self.tx_budget_raised
    }

    /// The socket's file descriptor (for the XSKMAP and poll(2)).
    pub fn fd(&self) -> RawFd {
        self.socket.raw_fd()
    }

    /// Tops up the fill ring when at least `min_batch` slots are free.
    fn refill(&mut self, min_batch: u32) {
        let want = self.cfg.fill - self.fill_in_kernel;
        if want == 0 || want < min_batch {
            return;
        }
        let n = (want as usize).min(self.umem.allocatable());
        if n == 0 {
            return;
        }
        // SAFETY: the UMEM is owned by `self` and outlives the socket (field
        // drop order), so the frames handed to the kernel stay mapped.
        let q = unsafe { self.rings.fill_ring.enqueue(&mut self.umem, n) };
        self.fill_in_kernel += q as u32;
    }

    /// Receives up to `max` frames, calling `f` with each frame's bytes, and
    /// recycles the frames into the fill ring. Returns the number received.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let Some(rx) = self.rings.rx_ring.as_mut() else {
            return 0;
        };
        let mut total = 0;
        // Frames left over from the previous call come first (the ring is
        // peeked up to the slab's capacity, which can exceed `max`).
        while total < max {
            if self.rx_slab.is_empty() {
                // SAFETY: the packets pushed into `rx_slab` point into
                // `self.umem`, which outlives them: they stay in the slab
                // (owned by `self`) until consumed and freed below.
                let n = unsafe { rx.recv(&self.umem, &mut self.rx_slab) };
                if n == 0 {
                    break;
                }
                self.fill_in_kernel = self.fill_in_kernel.saturating_sub(n as u32);
            }
            while total < max {
                let Some(p) = self.rx_slab.pop_back() else {
                    break;
                };
                f(&p);
                total += 1;
                self.umem.free_packet(p);
            }
        }
        // Bulk refill: only when a good chunk of the ring is free.
        self.refill(32);
        total
    }

    /// Reclaims frames whose transmission completed.
    pub fn reclaim(&mut self) {
        if self.tx_in_flight == 0 {
            return;
        }
        let n = self
            .rings
            .completion_ring
            .dequeue(&mut self.umem, self.cfg.completion as usize);
        self.tx_in_flight = self.tx_in_flight.saturating_sub(n as u32);
    }

    /// Copies frames into UMEM frames and queues them on the TX ring (no kick;
    /// see [`Xsk::kick`]). Returns (queued, queued bytes, dropped).
    pub fn send<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) -> (usize, u64, usize) {
        self.reclaim();
        let Some(tx) = self.rings.tx_ring.as_mut() else {
            return (0, 0, frames.count());
        };
        let (mut dropped, mut bytes) = (0, 0u64);
        for data in frames {
            if self.tx_slab.available() == 0 {
                dropped += 1;
                continue;
            }
            // SAFETY: the frame comes from `self.umem`, which outlives the
            // socket; it is either queued on the TX ring or freed below.
            let Some(mut p) = (unsafe { self.umem.alloc() }) else {
                dropped += 1;
                continue;
            };
            if p.append(data).is_err() {
                self.umem.free_packet(p);
                dropped += 1;
                continue;
            }
            bytes += data.len() as u64;
            let _ = self.tx_slab.push_front(p);
        }
        let pending = self.tx_slab.len();
        // SAFETY: frames in `tx_slab` belong to `self.umem` (see above).
        let queued = if pending > 0 {
            unsafe { tx.send(&mut self.tx_slab) }
        } else {
            0
        };
        // A full ring takes nothing (all-or-nothing reserve): drop the rest.
        while let Some(p) = self.tx_slab.pop_back() {
            bytes -= p.len() as u64;
            self.umem.free_packet(p);
            dropped += 1;
        }
        if queued > 0 {
            self.tx_in_flight += queued as u32;
            self.tx_unkicked = true;
        }
        (queued, bytes, dropped)
    }

    /// True if queued frames still wait for a kick.
    pub fn tx_pending(&self) -> bool {
        self.tx_unkicked
    }

    /// Tells the kernel to transmit what is on the TX ring (copy mode needs a
    /// `sendto` for every burst). Retries a few times on `EAGAIN` (per-call
    /// budget or full completion ring), reclaiming completions in between.
    pub fn kick(&mut self) -> io::Result<()> {
        if !self.tx_unkicked {
            return Ok(());
        }
        for _ in 0..8 {
            // SAFETY: a zero-length sendto with null buffer/address is the
            // documented AF_XDP TX wakeup; the fd is valid while `self` lives.
            let r = unsafe {
                libc::sendto(
                    self.socket.raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                self.tx_unkicked = false;
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::EINTR) => {
                    self.reclaim();
                    continue;
                }
                // No skb memory / device down: keep the frames, retry later.
                Some(libc::ENOBUFS) | Some(libc::ENETDOWN) | Some(libc::ENXIO) => return Ok(()),
                _ => return Err(e),
            }
        }
        Ok(())
    }

    /// The kernel's counters for this socket.
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        let s = self
            .socket
            .statistics()
            .map_err(|e| ioerr("XDP_STATISTICS", e))?;
        Ok(XskKernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}
