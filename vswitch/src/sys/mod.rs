//! Thin wrappers around the syscalls the ports and the daemon need.
//!
//! This module (and its children) is the only place in the crate allowed to use
//! `unsafe`; every block has a `// SAFETY:` comment. Everything exported is safe.

pub mod bpf;
pub mod mmsg;
pub mod netlink;
pub mod packet;
pub mod tun;
pub mod udp;
pub mod xsk;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Tunes glibc's allocator for a switch that receives 100k+ flow-mods in a
/// burst (a controller's bundle) and keeps small allocations per rule:
/// - one arena: the connection tasks (tokio threads) decode and queue the
///   bundle's messages, the datapath thread applies them at the commit; with
///   an arena per thread, memory freed by the commit stayed in the tokio
///   threads' arenas while the rules were allocated in the main one
///   (10k-port run: 655 MiB peak instead of 479 MiB);
/// - a fixed mmap threshold (128 KiB): large buffers (table and hash-map
///   growth, multipart frames) are mapped and unmapped instead of leaving
///   holes in the heap (glibc otherwise raises the threshold up to 32 MiB).
///
/// The packet path does not allocate, so a single arena costs it nothing.
/// Call once at start-up, before any other thread exists.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets allocator parameters; called before other
    // threads exist, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns free heap memory to the kernel (`malloc_trim(0)`): after a large
/// transient (a bundle commit, a full flow dump) the resident size falls back
/// to what the rules use. A no-op without glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `if_nametoindex(3)`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

fn dgram_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Interface flags (`IFF_UP`, `IFF_RUNNING`, …) via `SIOCGIFFLAGS`.
pub fn if_flags(name: &str) -> io::Result<u32> {
    let mut ifr = ifreq_for(name)?;
    let s = dgram_socket()?;
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifr_flags inside `ifr`,
    // which is a properly sized, initialised ifreq.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    Ok(unsafe { ifr.ifr_ifru.ifru_flags } as u16 as u32)
}

/// The interface's Ethernet address via `SIOCGIFHWADDR` (in the calling
/// thread's network namespace).
pub fn if_hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let mut ifr = ifreq_for(name)?;
    let s = dgram_socket()?;
    // SAFETY: SIOCGIFHWADDR reads the name and writes ifru_hwaddr inside `ifr`,
    // which is a properly sized, initialised ifreq.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr (a sockaddr).
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// Sets `IFF_UP` on an interface.
pub fn set_if_up(name: &str) -> io::Result<()> {
    let flags = if_flags(name)?;
    if flags & libc::IFF_UP as u32 != 0 {
        return Ok(());
    }
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_flags = (flags | libc::IFF_UP as u32) as u16 as libc::c_short;
    let s = dgram_socket()?;
    // SAFETY: SIOCSIFFLAGS reads name and flags from the initialised `ifr`.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises `RLIMIT_MEMLOCK` to infinity. Failure is not fatal for AF_XDP on
/// kernels ≥ 5.11 (UMEM is charged to the memcg), so callers just log it.
pub fn raise_memlock_limit() -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to the CPU it is running on; returns that CPU.
pub fn pin_to_current_cpu() -> io::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return Err(io::Error::last_os_error());
    }
    pin_to_cpu(cpu as usize)?;
    Ok(cpu as usize)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU number too large",
        ));
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; cpu < CPU_SETSIZE was checked.
    unsafe {
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: `set` is initialised and its size is passed; pid 0 = this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until one of `fds` is readable, `timeout_ms` passes or a signal
/// arrives. Returns the number of ready descriptors (0 on timeout/EINTR).
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds[..n]` is a valid, initialised pollfd array of length n.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_sig: libc::c_int) {
    TERMINATE.store(true, Ordering::Relaxed);
}

/// Installs SIGTERM/SIGINT handlers that set a flag (see [`terminate_requested`]).
/// No `SA_RESTART`, so a blocking poll(2) returns early.
pub fn install_terminate_handler() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction is plain data; all-zero is a valid starting value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_terminate as *const () as libc::sighandler_t;
        sa.sa_flags = 0;
        // SAFETY: `sa.sa_mask` is a valid sigset_t inside `sa`.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // `sa` is initialised and outlives the call.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True once SIGTERM or SIGINT was received.
pub fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::Relaxed)
}

/// Effective uid is 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` is a valid c_int for the duration of the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the **calling thread** into the network namespace at `path` (e.g.
/// `/run/netns/NAME`). Network namespaces are per thread: use a dedicated
/// thread (before any async runtime starts on it) and don't return it to a pool.
pub fn enter_netns(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: `f` is an open namespace file for the duration of the call;
    // setns only changes this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
