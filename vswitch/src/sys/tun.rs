//! Tap devices through `/dev/net/tun`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// An open tap queue (non-blocking).
#[derive(Debug)]
pub struct TapFd {
    fd: OwnedFd,
    name: String,
}

impl TapFd {
    /// Opens the tap `name`, creating it (non-persistent) if it does not
    /// exist, with `IFF_TAP | IFF_NO_PI`. Returns the name the kernel used.
    pub fn open(name: &str) -> io::Result<Self> {
        let mut ifr = super::ifreq_for(name)?;
        ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
        let path = c"/dev/net/tun";
        // SAFETY: `path` is a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: TUNSETIFF reads name/flags from and writes the name into
        // `ifr`, a valid ifreq that lives across the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = ifr.ifr_name.iter().position(|&c| c == 0).unwrap_or(0);
        let name = ifr.ifr_name[..end]
            .iter()
            .map(|&c| c as u8 as char)
            .collect();
        Ok(Self { fd, name })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor (for poll(2)).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads one frame; `Ok(None)` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let r = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(r as usize))
    }

    /// Writes one frame; `Ok(false)` when the queue is full.
    pub fn write(&self, frame: &[u8]) -> io::Result<bool> {
        // SAFETY: `frame` is a valid readable buffer of `frame.len()` bytes.
        let r = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(true)
    }
}
