//! Preallocated `recvmmsg`/`sendmmsg` headers over a caller's batch storage
//! (one contiguous buffer split into fixed-stride slots), shared by the
//! AF_PACKET socket and the VXLAN UDP receive path.

use std::io;
use std::os::fd::RawFd;

/// Message headers and iovecs for up to `capacity` messages per call. Each
/// call re-points them at the caller's buffers, so no pointer stored here is
/// used outside the syscall that was given it.
pub struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers inside `hdrs`/`iovs` are scratch space, rewritten
// before every recvmmsg/sendmmsg from the caller's buffers and never
// dereferenced outside those calls; moving the struct to another thread is fine.
unsafe impl Send for Mmsg {}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmsg")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

/// Per-message buffers the kernel fills besides the payload: a source
/// address (`msg_name`) and ancillary data (`msg_control`), each one
/// element per message slot.
pub struct Extra<'a, N, C> {
    pub names: Option<&'a mut [N]>,
    pub control: Option<&'a mut [C]>,
}

impl<N, C> std::fmt::Debug for Extra<'_, N, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extra")
            .field("names", &self.names.as_ref().map(|v| v.len()))
            .field("control", &self.control.as_ref().map(|v| v.len()))
            .finish()
    }
}

impl Extra<'_, (), ()> {
    /// No address, no ancillary data.
    pub fn none() -> Self {
        Extra {
            names: None,
            control: None,
        }
    }
}

impl Mmsg {
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(1);
        // SAFETY: mmsghdr and iovec are plain old data; all-zero is a valid
        // value for each (null pointers, zero lengths).
        let (hdr, iov) = unsafe {
            (
                std::mem::zeroed::<libc::mmsghdr>(),
                std::mem::zeroed::<libc::iovec>(),
            )
        };
        Self {
            hdrs: vec![hdr; n],
            iovs: vec![iov; n],
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// How many slots of `stride` bytes a call may use: at most `want`, the
    /// capacity and what `storage_len` holds.
    pub fn slots(&self, want: usize, storage_len: usize, stride: usize) -> usize {
        want.min(self.hdrs.len()).min(storage_len / stride.max(1))
    }

    /// Points header `i` at one buffer of `len` bytes and at the `i`-th
    /// name/control buffers of `extra`, clearing what the kernel reports.
    fn point<N, C>(&mut self, i: usize, base: *mut u8, len: usize, extra: &mut Extra<'_, N, C>) {
        self.iovs[i] = libc::iovec {
            iov_base: base.cast::<libc::c_void>(),
            iov_len: len,
        };
        let h = &mut self.hdrs[i];
        let (name, namelen) = match extra.names.as_deref_mut() {
            Some(n) => (
                (&raw mut n[i]).cast::<libc::c_void>(),
                std::mem::size_of::<N>(),
            ),
            None => (std::ptr::null_mut(), 0),
        };
        let (ctrl, ctrllen) = match extra.control.as_deref_mut() {
            Some(c) => (
                (&raw mut c[i]).cast::<libc::c_void>(),
                std::mem::size_of::<C>(),
            ),
            None => (std::ptr::null_mut(), 0),
        };
        h.msg_hdr.msg_name = name;
        h.msg_hdr.msg_namelen = namelen as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut self.iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = ctrl;
        h.msg_hdr.msg_controllen = ctrllen as _;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }

    /// Receives up to `n` messages (see [`Mmsg::slots`]) from the
    /// non-blocking socket `fd` into `storage`, message `i` at `i * stride`,
    /// with each message's name/control in the `i`-th element of `extra`
    /// (which must have at least `n` elements). Returns how many arrived (0
    /// when none is waiting); [`Mmsg::received`] has their headers.
    pub fn recv<N, C>(
        &mut self,
        fd: RawFd,
        storage: &mut [u8],
        stride: usize,
        n: usize,
        mut extra: Extra<'_, N, C>,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let n = self.slots(n, storage.len(), stride);
        if n == 0
            || extra.names.as_ref().is_some_and(|v| v.len() < n)
            || extra.control.as_ref().is_some_and(|v| v.len() < n)
        {
            return Ok(0);
        }
        for (i, buf) in storage.chunks_exact_mut(stride).take(n).enumerate() {
            self.point(i, buf.as_mut_ptr(), stride, &mut extra);
        }
        // SAFETY: hdrs[..n] each point at one iovec describing a live,
        // writable `stride`-byte buffer in `storage`, and at name/control
        // buffers in `extra` of the sizes given (or none), all borrowed for
        // the whole call; n ≤ hdrs.len().
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags | libc::MSG_DONTWAIT,
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
        Ok(r as usize)
    }

    /// The headers of the last [`Mmsg::recv`]'s first `n` messages: length
    /// in `msg_len`, `MSG_TRUNC` in `msg_hdr.msg_flags`, the sizes the kernel
    /// wrote in `msg_namelen`/`msg_controllen`. Their pointers are stale once
    /// that call returned: read the name/control data from the caller's own
    /// buffers.
    pub fn received(&self, n: usize) -> &[libc::mmsghdr] {
        &self.hdrs[..n.min(self.hdrs.len())]
    }

    /// Sends `lens.len()` messages from `storage` (message `i` at
    /// `i * stride`, `lens[i]` bytes) on the non-blocking socket `fd`;
    /// returns how many the kernel took (the rest hit a full socket buffer
    /// or an error).
    pub fn send(
        &mut self,
        fd: RawFd,
        storage: &[u8],
        stride: usize,
        lens: &[u16],
    ) -> io::Result<usize> {
        let n = self.slots(lens.len(), storage.len(), stride);
        if n == 0 {
            return Ok(0);
        }
        let mut none = Extra::none();
        for (i, buf) in storage.chunks_exact(stride).take(n).enumerate() {
            // The kernel only reads send buffers; the pointer is `*mut`
            // because iovec is shared with receive.
            self.point(
                i,
                buf.as_ptr().cast_mut(),
                (lens[i] as usize).min(stride),
                &mut none,
            );
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: hdrs[sent..n] point at iovecs describing live buffers in
            // `storage` (only read by the kernel) that outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_lengths_and_truncation() {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut tx = Mmsg::new(4);
        let mut out = vec![0u8; 4 * 32];
        for (i, slot) in out.chunks_exact_mut(32).enumerate() {
            slot.fill(i as u8 + 1);
        }
        // The third is longer than a receive slot (16 bytes) and is cut.
        let lens = [5u16, 16, 30];
        assert_eq!(tx.send(a.as_raw_fd(), &out, 32, &lens).unwrap(), 3);
        let mut rx = Mmsg::new(8);
        let mut storage = vec![0u8; 8 * 16];
        let n = rx
            .recv(
                b.as_raw_fd(),
                &mut storage,
                16,
                8,
                Extra::none(),
                libc::MSG_TRUNC,
            )
            .unwrap();
        assert_eq!(n, 3);
        let got: Vec<(u32, bool, u8)> = rx
            .received(n)
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    h.msg_len,
                    h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                    storage[i * 16],
                )
            })
            .collect();
        assert_eq!(got, vec![(5, false, 1), (16, false, 2), (30, true, 3)]);
        // Nothing waiting: 0, not an error; no room: 0.
        let again = rx.recv(b.as_raw_fd(), &mut storage, 16, 8, Extra::none(), 0);
        assert_eq!(again.unwrap(), 0);
        assert_eq!(rx.slots(8, 15, 16), 0);
        assert_eq!(rx.slots(100, 1000, 16), 8);
    }
}
