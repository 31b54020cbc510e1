#![no_main]
//! Any string into the ovs-ofctl text parsers: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        plexus_openflow::fuzz::parse_text(s);
    }
});
