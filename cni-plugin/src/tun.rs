//! Tap devices through `/dev/net/tun` (the kernel has no rtnetlink way to
//! create them): open a queue of a tap (creating the device when it does not
//! exist, in the calling thread's netns), make it persistent, set its owner.
//! The only `unsafe` besides [`crate::netns`] and `nlsock`.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A valid Linux interface name (1..=15 bytes, no `/`, whitespace or NUL).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// Opens one queue of tap `name` (`IFF_TAP | IFF_NO_PI`, plus
/// `IFF_MULTI_QUEUE` when asked), creating the device if it does not exist.
/// The device lives as long as a queue is open unless made persistent.
pub fn open_queue(name: &str, multi_queue: bool) -> io::Result<OwnedFd> {
    if !valid_ifname(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let fd: OwnedFd = f.into();
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
    // SAFETY: TUNSETIFF reads the name and flags from (and writes the name
    // into) `ifr`, a valid, initialised ifreq that lives across the call; the
    // fd is an open /dev/net/tun descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Makes the device of an open queue persistent (or not).
pub fn set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (no pointer); the fd
    // is an attached tun queue.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST as _, libc::c_ulong::from(on)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets user `uid` open the device's queues (qemu as a non-root user).
pub fn set_owner(fd: &OwnedFd, uid: u32) -> io::Result<()> {
    // SAFETY: TUNSETOWNER takes the uid by value (no pointer); the fd is an
    // attached tun queue.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOWNER as _, libc::c_ulong::from(uid)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on a queue.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own; no pointers involved.
    let r = unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 {
            fl
        } else {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn interface_names() {
        assert!(super::valid_ifname("vm0"));
        assert!(super::valid_ifname("tap-0123456789a"));
        assert!(!super::valid_ifname(""));
        assert!(!super::valid_ifname("tap-0123456789ab"));
        assert!(!super::valid_ifname("a/b"));
        assert!(!super::valid_ifname("a b"));
        assert!(!super::valid_ifname(".."));
    }
}
