//! REST create endpoints on a deterministic corpus of mutated and cut JSON
//! bodies (the entry point the cargo-fuzz target `controller/fuzz/` drives);
//! invariants in `rest_fuzz/mod.rs`. `REST_FUZZ_ITERS` scales it.

mod rest_fuzz;

use rest_fuzz::{Harness, fuzz_bodies};

#[test]
fn mutated_create_bodies_never_5xx_or_half_write() {
    let h = Harness::new();
    let iters = std::env::var("REST_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..iters {
        let data: Vec<u8> = (0..24)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        fuzz_bodies(&h, &data);
    }
}

#[test]
fn every_truncation_of_every_valid_body() {
    let h = Harness::new();
    for (path, body) in h.templates.clone() {
        let s = body.to_string();
        for cut in 0..s.len() {
            h.post_checked(path, s.as_bytes()[..cut].to_vec());
        }
        h.post_checked(path, b"\xff\xfe{}".to_vec());
        h.post_checked(path, b"[]".to_vec());
        h.post_checked(path, b"null".to_vec());
    }
}

/// Replays the checked-in corpus of each cargo-fuzz target
/// (`fuzz/seeds/TARGET/*`, minimised from the libFuzzer runs recorded in
/// BENCHMARKS.md, crash inputs included once fixed) through its entry point.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn checked_in_seeds_replay() {
    let h = Harness::new();
    replay("rest_bodies", |d| fuzz_bodies(&h, d));
}
