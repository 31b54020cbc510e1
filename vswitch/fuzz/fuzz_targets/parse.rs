#![no_main]
//! Any bytes as a frame into the flow-key parser: no panic, deterministic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_vswitch::fuzz::parse_frame(data);
});
