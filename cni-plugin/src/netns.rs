//! Running code inside a network namespace: a dedicated thread calls
//! `setns(CLONE_NEWNET)` and exits afterwards, so no thread that ever ran in
//! the container's namespace is reused. Children spawned from that thread
//! (e.g. `ip`) inherit its namespace. The crate's only `unsafe` lives here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens `path` (a netns file) and runs `f` on a fresh thread inside it.
/// `Err(NotFound)` when the namespace file does not exist.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<T> {
            // SAFETY: `ns` is an open file descriptor owned by this closure for
            // the duration of the call; setns only changes the calling thread's
            // network namespace (CLONE_NEWNET), and this thread is scoped and
            // ends when `f` returns, so nothing else runs in that namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    })
}
