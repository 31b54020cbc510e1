#![no_main]
//! Records of `[port][len][frame]` through twin pipelines (megaflow cache on
//! and off) holding a fixed flow table: no panic, identical emits, outputs of
//! well-formed IPv4 frames well-formed, consistent counters.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_vswitch::fuzz::pipeline_frames(data);
});
