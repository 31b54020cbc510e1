//! Batched receive on a UDP/IPv4 socket: one `recvmmsg` takes up to a
//! batch of datagrams with their source addresses (the VXLAN receive path).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use super::mmsg::{Extra, Mmsg};

/// Preallocated message headers and source-address buffers for up to
/// `max_batch` datagrams per call.
pub struct UdpBatch {
    mmsg: Mmsg,
    names: Vec<libc::sockaddr_in>,
}

impl std::fmt::Debug for UdpBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpBatch")
            .field("max_batch", &self.mmsg.capacity())
            .finish()
    }
}

/// One received datagram: its length (`usize::MAX` when it did not fit its
/// buffer and was truncated) and its IPv4 source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub src: Ipv4Addr,
}

impl UdpBatch {
    pub fn new(max_batch: usize) -> Self {
        let mmsg = Mmsg::new(max_batch);
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let name = unsafe { std::mem::zeroed::<libc::sockaddr_in>() };
        Self {
            names: vec![name; mmsg.capacity()],
            mmsg,
        }
    }

    /// Receives up to `out.len()` datagrams from the non-blocking socket `fd`
    /// in one `recvmmsg` into `storage`, split into buffers of `stride` bytes
    /// (datagram `i` at `i * stride`). Returns how many arrived (0 when none
    /// is waiting).
    pub fn recv(
        &mut self,
        fd: RawFd,
        storage: &mut [u8],
        stride: usize,
        out: &mut [Datagram],
    ) -> io::Result<usize> {
        let extra = Extra::<_, ()> {
            names: Some(&mut self.names[..]),
            control: None,
        };
        let r = self.mmsg.recv(fd, storage, stride, out.len(), extra, 0)?;
        let hdrs = self.mmsg.received(r);
        for ((d, h), name) in out.iter_mut().zip(hdrs).zip(&self.names) {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let v4 = h.msg_hdr.msg_namelen as usize >= std::mem::size_of::<libc::sockaddr_in>()
                && name.sin_family == libc::AF_INET as libc::sa_family_t;
            *d = Datagram {
                len: if truncated {
                    usize::MAX
                } else {
                    h.msg_len as usize
                },
                src: if v4 {
                    Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr))
                } else {
                    Ipv4Addr::UNSPECIFIED
                },
            };
        }
        Ok(hdrs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_with_sources_and_flags_truncation() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.2:0").unwrap();
        let to = rx.local_addr().unwrap();
        a.send_to(&[1; 10], to).unwrap();
        b.send_to(&[2; 20], to).unwrap();
        a.send_to(&[3; 100], to).unwrap(); // larger than the 64-byte stride
        let mut batch = UdpBatch::new(8);
        let mut storage = vec![0u8; 8 * 64];
        let mut out = [Datagram {
            len: 0,
            src: Ipv4Addr::UNSPECIFIED,
        }; 8];
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = batch
                .recv(rx.as_raw_fd(), &mut storage, 64, &mut out)
                .unwrap();
            for (i, d) in out[..n].iter().enumerate() {
                let first = if d.len == usize::MAX {
                    0
                } else {
                    storage[i * 64]
                };
                got.push((d.len, d.src, first));
            }
            if got.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            got,
            vec![
                (10, Ipv4Addr::new(127, 0, 0, 1), 1),
                (20, Ipv4Addr::new(127, 0, 0, 2), 2),
                (usize::MAX, Ipv4Addr::new(127, 0, 0, 1), 0),
            ]
        );
        // Nothing waiting: 0, not an error.
        assert_eq!(
            batch
                .recv(rx.as_raw_fd(), &mut storage, 64, &mut out)
                .unwrap(),
            0
        );
    }
}
