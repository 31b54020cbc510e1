#![no_main]
//! Any bytes into the JSON-RPC stream framer and message decoder: no panic,
//! chunking-independent values, RFC 7047 error objects, lossless round trips.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_ovsdb::fuzz::framer_stream(data);
});
