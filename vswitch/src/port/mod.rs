//! Ports: where frames enter and leave the switch.
//!
//! Every port implements the batched [`Port`] trait. A [`PacketBatch`] holds a
//! fixed number of reusable frame buffers allocated once; receiving fills it,
//! transmitting drains it, nothing allocates per packet.
//!
//! Implementations: [`afxdp::AfXdpPort`] (AF_XDP, the fast path),
//! [`afpacket::AfPacketPort`] (AF_PACKET fallback that works everywhere) and
//! [`tap::TapPort`] (tap devices for VMs), and the logical tunnel port
//! [`vxlan::VxlanPort`] (frames carry [`TunnelMeta`]: see
//! [`Port::rx_tunnel`] and [`Port::push_tunnel`]).

pub mod afpacket;
pub mod afxdp;
pub mod dummy;
pub mod tap;
pub mod vxlan;

pub use crate::flow::TunnelMeta;

use std::os::fd::RawFd;

/// Default number of frames moved per `rx_batch`/`tx_batch` call.
pub const DEFAULT_BATCH: usize = 64;
/// Size of each frame buffer in a [`PacketBatch`]: an Ethernet frame of up to
/// 2048 bytes (1500-byte MTU + L2 headers and a couple of VLAN tags fit).
pub const FRAME_BUF: usize = 2048;

/// Errors opening or operating a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The interface does not exist or cannot be used.
    #[error("interface {name}")]
    Interface {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A syscall failed while setting the port up.
    #[error("{port}: {what}")]
    Setup {
        /// Port name.
        port: String,
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A fixed-capacity set of reusable frame buffers.
///
/// Buffers live in one contiguous allocation made by [`PacketBatch::new`];
/// frame `i` is `len(i)` bytes at the start of buffer `i`.
pub struct PacketBatch {
    data: Box<[u8]>,
    lens: Box<[u16]>,
    count: usize,
}

impl std::fmt::Debug for PacketBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBatch")
            .field("len", &self.count)
            .field("capacity", &self.lens.len())
            .finish()
    }
}

impl PacketBatch {
    /// A batch with room for `capacity` frames of up to [`FRAME_BUF`] bytes.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            data: vec![0u8; capacity * FRAME_BUF].into_boxed_slice(),
            lens: vec![0u16; capacity].into_boxed_slice(),
            count: 0,
        }
    }

    /// A batch without buffers (capacity 0, nothing allocated): a port's
    /// transmit batch until its first output, so that 10k `dummy` ports that
    /// never transmit do not hold 10k × 128 KiB of buffers.
    pub fn unallocated() -> Self {
        Self {
            data: Box::default(),
            lens: Box::default(),
            count: 0,
        }
    }

    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if no frame is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Maximum number of frames.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// True if no further frame fits.
    pub fn is_full(&self) -> bool {
        self.count == self.lens.len()
    }

    /// Forgets all frames (buffers are kept).
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Frame `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        assert!(i < self.count);
        let off = i * FRAME_BUF;
        &self.data[off..off + self.lens[i] as usize]
    }

    /// Frame `i`, writable (e.g. for header rewrites).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.count);
        let off = i * FRAME_BUF;
        &mut self.data[off..off + self.lens[i] as usize]
    }

    /// Iterates over the frames.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.lens[..self.count]
            .iter()
            .zip(self.data.chunks_exact(FRAME_BUF))
            .map(|(&l, b)| &b[..l as usize])
    }

    /// Appends a copy of `frame`. Returns false (and copies nothing) if the
    /// batch is full or the frame is longer than [`FRAME_BUF`].
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.is_full() || frame.len() > FRAME_BUF {
            return false;
        }
        let off = self.count * FRAME_BUF;
        self.data[off..off + frame.len()].copy_from_slice(frame);
        self.lens[self.count] = frame.len() as u16;
        self.count += 1;
        true
    }

    /// Keeps only the frames for which `keep(index, frame)` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) {
        let mut w = 0;
        for r in 0..self.count {
            let l = self.lens[r] as usize;
            let (ro, wo) = (r * FRAME_BUF, w * FRAME_BUF);
            if keep(r, &self.data[ro..ro + l]) {
                if r != w {
                    self.data.copy_within(ro..ro + l, wo);
                    self.lens[w] = self.lens[r];
                }
                w += 1;
            }
        }
        self.count = w;
    }

    /// The free buffers after the held frames, as one slice of `FRAME_BUF`
    /// strides, for receive paths that fill several buffers at once; follow
    /// with [`PacketBatch::commit`].
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        &mut self.data[self.count * FRAME_BUF..]
    }

    /// Marks `lens.len()` spare buffers as frames with the given lengths.
    pub(crate) fn commit(&mut self, lens: impl Iterator<Item = usize>) {
        for l in lens {
            if self.is_full() {
                break;
            }
            self.lens[self.count] = l.min(FRAME_BUF) as u16;
            self.count += 1;
        }
    }

    /// The contiguous storage and lengths of the held frames (for batched sends).
    pub(crate) fn raw(&self) -> (&[u8], &[u16]) {
        (
            &self.data[..self.count * FRAME_BUF],
            &self.lens[..self.count],
        )
    }
}

/// Link state of a port's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LinkState {
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Carrier/operational (`IFF_RUNNING`).
    pub oper_up: bool,
}

impl LinkState {
    /// Reads the state of interface `name` (all false if it is gone).
    pub fn of(name: &str) -> Self {
        match crate::sys::if_flags(name) {
            Ok(f) => Self {
                admin_up: f & libc::IFF_UP as u32 != 0,
                oper_up: f & libc::IFF_RUNNING as u32 != 0,
            },
            Err(_) => Self::default(),
        }
    }
}

/// Per-port counters, as seen by the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames lost on receive (ring full, no buffer, truncated/oversized).
    pub rx_drops: u64,
    /// Receive errors (failed syscalls, invalid descriptors).
    pub rx_errors: u64,
    /// Frames handed to the kernel for transmission.
    pub tx_packets: u64,
    /// Bytes handed to the kernel for transmission.
    pub tx_bytes: u64,
    /// Frames dropped on transmit (ring/socket buffer full, no frame).
    pub tx_drops: u64,
    /// Transmit errors (failed syscalls).
    pub tx_errors: u64,
}

/// A switch port with batched receive and transmit.
pub trait Port {
    /// Interface name.
    fn name(&self) -> &str;

    /// Clears `batch` and fills it with up to `batch.capacity()` received
    /// frames. Never blocks. Returns the number of frames.
    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize;

    /// Transmits every frame in `batch` (frames that cannot be queued are
    /// counted as `tx_drops`) and clears it. Never blocks. A port may defer
    /// the final hand-off to the kernel until [`Port::flush`], which the
    /// caller must call after each round of batches.
    fn tx_batch(&mut self, batch: &mut PacketBatch);

    /// Pushes out transmissions that are queued but not yet handed to the
    /// kernel and reclaims completed buffers. Cheap when there is nothing to
    /// do; call it after every round of `tx_batch` calls.
    fn flush(&mut self) {}

    /// A descriptor that becomes readable when frames arrive (for poll(2)).
    fn rx_fd(&self) -> Option<RawFd>;

    /// Current link state.
    fn link_state(&self) -> LinkState {
        LinkState::of(self.name())
    }

    /// Counters.
    fn stats(&self) -> PortStats;

    /// Implementation-specific counters for diagnostics (may be empty).
    fn details(&self) -> String {
        String::new()
    }

    /// The port type as `show` prints it (`afxdp`, `afpacket`, `tap`, ...).
    fn kind(&self) -> &'static str {
        "port"
    }

    // --- tunnel ports (vxlan); the defaults fit every other port ---

    /// True for tunnel ports: outputs go through [`Port::push_tunnel`] with
    /// the flow's tunnel metadata, received frames come with
    /// [`Port::rx_tunnel`].
    fn is_tunnel(&self) -> bool {
        false
    }

    /// Never receives and keeps nothing to flush (`dummy` ports): the
    /// datapath loop does not visit it per round, so 10k such ports cost no
    /// time between control messages.
    fn is_inert(&self) -> bool {
        false
    }

    /// Tunnel metadata of the frames of the last [`Port::rx_batch`], in the
    /// same order (empty for ports that are not tunnels).
    fn rx_tunnel(&self) -> &[TunnelMeta] {
        &[]
    }

    /// Tunnel ports: encapsulate `frame` with the flow's tunnel metadata
    /// (`None`: the port's fixed configuration only) and queue it; sent by
    /// [`Port::flush`]. Never called on other ports.
    fn push_tunnel(&mut self, frame: &[u8], tun: Option<&TunnelMeta>) {
        let _ = (frame, tun);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_push_get_iter_clear() {
        let mut b = PacketBatch::new(3);
        assert!(b.is_empty());
        assert!(b.push(&[1, 2, 3]));
        assert!(b.push(&[]));
        assert!(b.push(&[9; FRAME_BUF]));
        assert!(b.is_full());
        assert!(!b.push(&[1]));
        assert_eq!(b.get(0), &[1, 2, 3]);
        assert_eq!(b.get(1), &[] as &[u8]);
        assert_eq!(b.get(2).len(), FRAME_BUF);
        assert_eq!(
            b.iter().map(<[u8]>::len).collect::<Vec<_>>(),
            [3, 0, FRAME_BUF]
        );
        b.get_mut(0)[0] = 7;
        assert_eq!(b.get(0)[0], 7);
        b.clear();
        assert_eq!(b.len(), 0);
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn batch_rejects_oversize_and_retains() {
        let mut b = PacketBatch::new(4);
        assert!(!b.push(&vec![0; FRAME_BUF + 1]));
        for i in 0..4u8 {
            assert!(b.push(&[i; 5]));
        }
        b.retain(|i, f| i % 2 == 1 && f.len() == 5);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(0), &[1; 5]);
        assert_eq!(b.get(1), &[3; 5]);
    }

    #[test]
    fn batch_spare_commit_raw() {
        let mut b = PacketBatch::new(2);
        assert!(b.push(&[5; 10]));
        let spare = b.spare();
        assert_eq!(spare.len(), FRAME_BUF);
        spare[..4].copy_from_slice(&[1, 2, 3, 4]);
        b.commit([4, 99].into_iter());
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(1), &[1, 2, 3, 4]);
        let (data, lens) = b.raw();
        assert_eq!(data.len(), 2 * FRAME_BUF);
        assert_eq!(lens, &[10, 4]);
    }

    #[test]
    fn opening_a_missing_interface_fails_cleanly() {
        let e = afxdp::AfXdpPort::open("plxt-nonexist0", Default::default()).unwrap_err();
        assert!(matches!(e, PortError::Interface { .. }), "{e}");
        let e = afpacket::AfPacketPort::open("plxt-nonexist0").unwrap_err();
        assert!(matches!(e, PortError::Interface { .. }), "{e}");
    }

    #[test]
    fn link_state_of_missing_interface_is_down() {
        assert_eq!(LinkState::of("plxt-nonexist0"), LinkState::default());
    }
}
