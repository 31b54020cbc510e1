//! A minimal AF_PACKET socket bound to one interface: send whole Ethernet
//! frames, receive incoming ones with a timeout. Used by the `attack` checks
//! of cloud topologies (`plexus-topo attack-send` / `attack-recv`).

use anyhow::{Result, bail};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const ETH_P_ALL: u16 = 0x0003;

/// An AF_PACKET raw socket bound to an interface.
#[derive(Debug)]
pub struct RawSock {
    fd: OwnedFd,
}

fn sockaddr(ifindex: i32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ALL.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

impl RawSock {
    /// Opens a raw socket on `iface` (needs CAP_NET_RAW).
    pub fn open(iface: &str) -> Result<Self> {
        let name = CString::new(iface)?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface}: {}", io::Error::last_os_error());
        }
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sa = sockaddr(ifindex as i32);
        // SAFETY: `sa` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("binding to {iface}: {}", io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// A transmit-only socket on `iface` for generators: protocol 0 (it
    /// receives nothing), qdisc bypass, a 4 MiB send buffer.
    pub fn open_tx(iface: &str) -> Result<Self> {
        let name = CString::new(iface)?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface}: {}", io::Error::last_os_error());
        }
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut sa = sockaddr(ifindex as i32);
        sa.sll_protocol = 0;
        // SAFETY: `sa` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("binding to {iface}: {}", io::Error::last_os_error());
        }
        let s = Self { fd };
        s.setsockopt(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        if s.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)
            .is_err()
        {
            s.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20)?;
        }
        Ok(s)
    }

    fn setsockopt(&self, level: i32, name: i32, value: i32) -> Result<()> {
        // SAFETY: `value` is a valid int and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!(
                "setsockopt({level}, {name}): {}",
                io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: the pointer and length describe `frame`, which outlives the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            bail!("send: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends up to 64 whole frames with one `sendmmsg(2)`; returns how many
    /// the kernel took (it blocks while the interface's queue is full).
    pub fn send_batch(&self, frames: &[&[u8]]) -> Result<usize> {
        const MAX: usize = 64;
        let n = frames.len().min(MAX);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iov[i] = libc::iovec {
                iov_base: frames[i].as_ptr().cast_mut().cast(),
                iov_len: frames[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `iov[..n]`, which point at the frames; all
        // outlive the call, and the kernel only reads them.
        let sent = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            // A full device queue (ENOBUFS) drops the batch: the caller just goes on.
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::ENOBUFS | libc::EAGAIN)
            ) {
                return Ok(0);
            }
            bail!("sendmmsg: {e}");
        }
        Ok(sent as usize)
    }

    /// Sets how long [`RawSock::recv`] waits at most.
    pub fn set_timeout(&self, t: Duration) -> Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(t.subsec_micros() as i32).max(1),
        };
        // SAFETY: `tv` is a valid timeval and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("SO_RCVTIMEO: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame that arrived on the interface (frames the host
    /// itself sent are skipped). `Ok(None)` on timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        loop {
            match self.recv_both(buf)? {
                None => return Ok(None),
                Some((_, true)) => continue,
                Some((n, false)) => return Ok(Some(n)),
            }
        }
    }

    /// Receives one frame in either direction: its length and whether it was
    /// leaving through the interface. `Ok(None)` on timeout.
    pub fn recv_both(&self, buf: &mut [u8]) -> Result<Option<(usize, bool)>> {
        loop {
            let mut sa = sockaddr(0);
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `sa` are valid for writes of the given lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut sa).cast::<libc::sockaddr>(),
                    &raw mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e.into()),
                };
            }
            return Ok(Some((n as usize, sa.sll_pkttype == libc::PACKET_OUTGOING)));
        }
    }
}
