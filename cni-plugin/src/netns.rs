//! Running code inside a network namespace: a dedicated thread calls
//! `setns(CLONE_NEWNET)` and exits afterwards, so no thread that ever ran in
//! the container's namespace is reused. Children spawned from that thread
//! (e.g. `ip`) inherit its namespace. The crate's only `unsafe` lives here.

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
