//! AF_PACKET (SOCK_RAW) socket bound to one interface, non-blocking, with
//! batched `recvmmsg`/`sendmmsg`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::mmsg::{Extra, Mmsg};

const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A packet socket with preallocated message headers for up to `max_batch`
/// frames per call.
pub struct PacketSocket {
    fd: OwnedFd,
    mmsg: Mmsg,
    /// One `PACKET_AUXDATA` control buffer per message (aligned for cmsghdr).
    ctrl: Vec<[u64; CTRL_WORDS]>,
}

/// Control buffer words per message: room for one cmsghdr + tpacket_auxdata.
const CTRL_WORDS: usize = 8;

impl std::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("max_batch", &self.mmsg.capacity())
            .finish()
    }
}

impl PacketSocket {
    /// Opens an `ETH_P_ALL` packet socket bound to `ifindex`: outgoing frames
    /// are not looped back (`PACKET_IGNORE_OUTGOING`), transmit bypasses the
    /// qdisc, the socket is non-blocking.
    pub fn open(ifindex: u32, max_batch: usize) -> io::Result<Self> {
        Self::open_proto(ifindex, max_batch, libc::ETH_P_ALL as u16)
    }

    /// Like [`PacketSocket::open`] but for transmission only: bound with
    /// protocol 0, so the kernel queues no received frames to it.
    pub fn open_tx(ifindex: u32, max_batch: usize) -> io::Result<Self> {
        Self::open_proto(ifindex, max_batch, 0)
    }

    fn open_proto(ifindex: u32, max_batch: usize, ethertype: u16) -> io::Result<Self> {
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto as libc::c_int,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        super::setsockopt_int(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        let _ = super::setsockopt_int(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1);
        let _ = super::setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
        let _ = super::setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
        // The kernel strips the outer VLAN tag of received frames into the
        // packet's metadata (hardware-accelerated VLAN); ask for it back as
        // PACKET_AUXDATA so `recv_batch` can reinsert it, as OVS does.
        if ethertype != 0 {
            super::setsockopt_int(raw, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)?;
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is an initialised sockaddr_ll and its size is passed.
        let r = unsafe {
            libc::bind(
                raw,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mmsg = Mmsg::new(max_batch);
        let ctrl = vec![[0u64; CTRL_WORDS]; mmsg.capacity()];
        Ok(Self { fd, mmsg, ctrl })
    }

    /// The socket's descriptor (for poll(2)).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives up to `lens.len()` frames in one `recvmmsg` into `storage`,
    /// split into buffers of `stride` bytes (frame `i` at `i * stride`).
    /// Writes each frame's length into `lens` (`usize::MAX` marks a frame
    /// truncated because it did not fit). Returns the number of frames.
    pub fn recv_batch(
        &mut self,
        storage: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> io::Result<usize> {
        let extra = Extra::<(), _> {
            names: None,
            control: Some(&mut self.ctrl[..]),
        };
        let r = self.mmsg.recv(
            self.fd.as_raw_fd(),
            storage,
            stride,
            lens.len(),
            extra,
            libc::MSG_TRUNC,
        )?;
        let hdrs = self.mmsg.received(r);
        for (i, ((len, h), ctrl)) in lens.iter_mut().zip(hdrs).zip(&self.ctrl).enumerate() {
            *len = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                usize::MAX
            } else {
                let l = h.msg_len as usize;
                match vlan_of(ctrl, h.msg_hdr.msg_controllen) {
                    Some(tag) => {
                        let buf = &mut storage[i * stride..(i + 1) * stride];
                        reinsert_vlan(buf, l, tag).unwrap_or(usize::MAX)
                    }
                    None => l,
                }
            };
        }
        Ok(hdrs.len())
    }

    /// Sends `lens.len()` frames from `storage` (frame `i` at `i * stride`,
    /// `lens[i]` bytes) with `sendmmsg`; returns how many the kernel took (the
    /// rest hit a full socket buffer or an error and count as dropped).
    pub fn send_batch(&mut self, storage: &[u8], stride: usize, lens: &[u16]) -> io::Result<usize> {
        self.mmsg.send(self.fd.as_raw_fd(), storage, stride, lens)
    }
}

/// The VLAN tag (TPID, TCI) the kernel took off a received frame, from its
/// `PACKET_AUXDATA` control message among the `len` bytes of control data
/// the kernel wrote into `ctrl`.
fn vlan_of(ctrl: &[u64; CTRL_WORDS], len: usize) -> Option<(u16, u16)> {
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_control = ctrl.as_ptr().cast_mut().cast::<libc::c_void>();
    m.msg_controllen = len.min(std::mem::size_of_val(ctrl)) as _;
    let m = &m;
    // SAFETY: `m` describes the control data the kernel wrote into `ctrl`
    // (at most its size, and `ctrl` is aligned for cmsghdr), borrowed for
    // this block and only read; CMSG_FIRSTHDR and CMSG_NXTHDR stay within
    // msg_controllen and return null past the end.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET
                && (*c).cmsg_type == libc::PACKET_AUXDATA
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(std::mem::size_of::<libc::tpacket_auxdata>() as u32) as usize
            {
                let aux =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                    return None;
                }
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                return Some((tpid, aux.tp_vlan_tci));
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    None
}

/// Puts the 802.1Q tag back after the MAC addresses of the `len`-byte frame
/// in `buf`; the new length, or `None` if it does not fit or the frame is runt.
fn reinsert_vlan(buf: &mut [u8], len: usize, (tpid, tci): (u16, u16)) -> Option<usize> {
    if len < 12 || len + 4 > buf.len() {
        return None;
    }
    buf.copy_within(12..len, 16);
    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
    buf[14..16].copy_from_slice(&tci.to_be_bytes());
    Some(len + 4)
}

#[cfg(test)]
mod tests {
    use super::reinsert_vlan;

    #[test]
    fn vlan_tag_goes_back_after_the_macs() {
        let mut buf = [0u8; 64];
        let frame: Vec<u8> = (0u8..20).collect();
        buf[..20].copy_from_slice(&frame);
        assert_eq!(reinsert_vlan(&mut buf, 20, (0x8100, 0x2064)), Some(24));
        assert_eq!(&buf[..12], &frame[..12]);
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&buf[16..24], &frame[12..20]);
        // No room, or a runt: refused.
        assert_eq!(reinsert_vlan(&mut buf[..22], 20, (0x8100, 1)), None);
        assert_eq!(reinsert_vlan(&mut buf, 11, (0x8100, 1)), None);
    }
}
