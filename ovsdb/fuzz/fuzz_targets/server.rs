#![no_main]
//! Any bytes as one session's stream into the server core (vswitch database):
//! no panic, error objects only, consistent database, the session stays alive.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_ovsdb::fuzz::server_stream(data);
});
