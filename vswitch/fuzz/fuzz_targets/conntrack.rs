#![no_main]
//! Bytes drive a sequence of TCP/UDP/ICMP/ICMP-error/fragment/raw packets,
//! clock steps, zone limits and flushes through a small conntrack table (with
//! NAT): no panic, consistent table, limits held, refused commits counted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_vswitch::fuzz::conntrack_sequence(data);
});
