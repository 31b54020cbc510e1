//! Running code inside a network namespace: a dedicated thread calls
//! `setns(CLONE_NEWNET)` and exits afterwards, so no thread that ever ran in
//! the container's namespace is reused. Children spawned from that thread
//! (e.g. `ip`) inherit its namespace. [`visit`] instead enters briefly on
//! the calling thread (to open a socket there) and comes back. The crate's
//! only `unsafe` lives here and in `nlsock.rs`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::{Scope, ScopedJoinHandle};

/// Opens `path` (a netns file) and runs `f` on a fresh thread inside it.
/// `Err(NotFound)` when the namespace file does not exist.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        spawn_in(s, path, f)?
            .join()
            .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}

/// Opens `path` (a netns file) and starts `f` on a fresh scoped thread inside
/// it, so that the caller can do other work meanwhile; the handle yields
/// `Err` when entering the namespace failed.
pub fn spawn_in<'scope, T: Send + 'scope>(
    s: &'scope Scope<'scope, '_>,
    path: &Path,
    f: impl FnOnce() -> T + Send + 'scope,
) -> io::Result<ScopedJoinHandle<'scope, io::Result<T>>> {
    let ns = File::open(path)?;
    Ok(s.spawn(move || -> io::Result<T> {
        // SAFETY: `ns` is an open file descriptor owned by this closure for
        // the duration of the call; setns only changes the calling thread's
        // network namespace (CLONE_NEWNET), and this thread is scoped and
        // ends when `f` returns, so nothing else runs in that namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    }))
}

fn setns(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open namespace file for the duration of the call;
    // setns(CLONE_NEWNET) only changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on the calling thread inside the netns at `path` and returns
/// the thread to its own namespace before returning, also when `f` panics.
/// Meant for short things such as opening a socket there: a socket stays
/// in the namespace it was created in. If the way back fails the process
/// aborts rather than let this thread go on in a container's namespace.
pub fn visit<T>(path: &Path, f: impl FnOnce() -> T) -> io::Result<T> {
    struct Back(File);
    impl Drop for Back {
        fn drop(&mut self) {
            if let Err(e) = setns(&self.0) {
                eprintln!("plexus-cni: cannot return to the home network namespace: {e}");
                std::process::abort();
            }
        }
    }
    let home = File::open("/proc/thread-self/ns/net")?;
    let ns = File::open(path)?;
    setns(&ns)?;
    let _back = Back(home);
    Ok(f())
}
