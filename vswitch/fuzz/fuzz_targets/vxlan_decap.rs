#![no_main]
//! Records of `[source][len][UDP payload]` decapsulated as VXLAN and run
//! through an overlay pipeline (cached and uncached): precise decap errors,
//! decap(encap(x)) = x, well-formed outer headers and too-big replies.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_vswitch::fuzz::vxlan_datagrams(data);
});
