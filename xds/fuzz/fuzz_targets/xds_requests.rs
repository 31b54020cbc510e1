#![no_main]
//! One ADS stream (SotW or delta) of structured or raw protobuf requests into
//! the in-process ADS service, snapshot switches in between: no panic, the
//! stream ends with a status, responses well-formed with fresh nonces and
//! published versions, OK status for well-formed requests, and a new stream
//! still gets the current clusters.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_xds::fuzz::ads_requests(data);
});
