//! AF_PACKET (SOCK_RAW) socket bound to one interface, non-blocking, with
//! batched `recvmmsg`/`sendmmsg`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A packet socket with preallocated message headers for up to `max_batch`
/// frames per call.
pub struct PacketSocket {
    fd: OwnedFd,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers inside `hdrs`/`iovs` are scratch space, rewritten
// before every recvmmsg/sendmmsg from the caller's buffers and never
// dereferenced outside those calls; moving the struct to another thread is fine.
unsafe impl Send for PacketSocket {}

impl std::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("max_batch", &self.hdrs.len())
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
        let max_batch = max_batch.max(1);
        // SAFETY: mmsghdr/iovec are plain data; all-zero is valid.
        let hdrs = vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; max_batch];
        let iovs = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            max_batch
        ];
        Ok(Self { fd, hdrs, iovs })
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
        let n = lens
            .len()
            .min(self.hdrs.len())
            .min(storage.len() / stride.max(1));
        if n == 0 {
            return Ok(0);
        }
        for (i, buf) in storage.chunks_exact_mut(stride).take(n).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: stride,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs[..n] each point at one iovec describing a live, writable
        // buffer in `storage` that outlives the call; n ≤ hdrs.len().
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let r = r as usize;
        for (len, h) in lens.iter_mut().zip(&self.hdrs[..r]) {
            *len = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                usize::MAX
            } else {
                h.msg_len as usize
            };
        }
        Ok(r)
    }

    /// Sends `lens.len()` frames from `storage` (frame `i` at `i * stride`,
    /// `lens[i]` bytes) with `sendmmsg`; returns how many the kernel took (the
    /// rest hit a full socket buffer or an error and count as dropped).
    pub fn send_batch(&mut self, storage: &[u8], stride: usize, lens: &[u16]) -> io::Result<usize> {
        let n = lens
            .len()
            .min(self.hdrs.len())
            .min(storage.len() / stride.max(1));
        if n == 0 {
            return Ok(0);
        }
        for (i, buf) in storage.chunks_exact(stride).take(n).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: (lens[i] as usize).min(stride),
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: hdrs[sent..n] point at iovecs describing live buffers in
            // `storage` (only read by the kernel) that outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(sent),
                    (n - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(sent),
                    _ if sent > 0 => Ok(sent),
                    _ => Err(e),
                };
            }
            if r == 0 {
                break;
            }
            sent += r as usize;
        }
        Ok(sent)
    }
}
