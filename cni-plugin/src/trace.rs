//! `PLEXUS_CNI_TRACE=1`: one stderr line per step of a call, for benchmarks:
//! `plexus-cni trace STEP +MS @UNIX_US` — milliseconds since the process
//! entered `main` and the wall-clock time in µs since the Unix epoch (so a
//! harness can place the steps of many concurrent calls on one timeline,
//! relative to when it spawned each process). A daemon started with
//! `PLEXUS_CNI_TRACE=1` appends the call (`ADD <container id>`) to each line
//! of the call's steps.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Option<Instant>> = OnceLock::new();

thread_local! {
    /// The call this thread serves (daemon), appended to its lines.
    static CALL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Labels the calling thread's next lines with `call` (daemon call threads).
pub fn label(call: impl FnOnce() -> String) {
    if let Some(Some(_)) = START.get() {
        let l = call();
        CALL.with(|c| *c.borrow_mut() = l);
    }
}

/// Called first thing in `main`: reads `PLEXUS_CNI_TRACE` once.
pub fn init() {
    let on = START.get_or_init(|| std::env::var_os("PLEXUS_CNI_TRACE").map(|_| Instant::now()));
    if on.is_some() {
        step("main");
    }
}

/// Prints one step when tracing is on; nothing otherwise.
pub fn step(what: &str) {
    let Some(Some(t0)) = START.get() else { return };
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    CALL.with(|c| {
        let c = c.borrow();
        let sep = if c.is_empty() { "" } else { " " };
        eprintln!(
            "plexus-cni trace {what} +{:.3} @{us}{sep}{c}",
            t0.elapsed().as_secs_f64() * 1e3
        );
    });
}
