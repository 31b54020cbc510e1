//! `PLEXUS_CNI_TRACE=1`: one stderr line per step of a call, for benchmarks:
//! `plexus-cni trace STEP +MS @UNIX_US` — milliseconds since the process
//! entered `main` and the wall-clock time in µs since the Unix epoch (so a
//! harness can place the steps of many concurrent calls on one timeline,
//! relative to when it spawned each process).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Option<Instant>> = OnceLock::new();

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
    eprintln!(
        "plexus-cni trace {what} +{:.3} @{us}",
        t0.elapsed().as_secs_f64() * 1e3
    );
}
