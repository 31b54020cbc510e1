#![no_main]
//! Mutated/raw JSON bodies into every create endpoint of the in-process API:
//! never a 5xx, 4xx are problem JSON naming a field, nothing half-written.
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/rest_fuzz/mod.rs"]
mod rest_fuzz;

thread_local! {
    static H: rest_fuzz::Harness = rest_fuzz::Harness::new();
}

fuzz_target!(|data: &[u8]| {
    H.with(|h| rest_fuzz::fuzz_bodies(h, data));
});
