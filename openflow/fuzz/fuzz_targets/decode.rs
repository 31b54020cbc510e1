#![no_main]
//! Any bytes into the message decoder: must never panic; every error must map
//! to an OFPT_ERROR; whatever decodes must re-encode and decode to the same value.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_openflow::fuzz::decode_one(data);
});
