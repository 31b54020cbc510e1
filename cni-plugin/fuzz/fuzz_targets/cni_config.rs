#![no_main]
//! CNI_* environment, network configuration (stdin) and a controller HTTP
//! response: no panic, errors with the spec's codes (4 for the environment,
//! 1/2/6/7 for the configuration), valid derived interface names.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus_cni::fuzz::config_env(data);
});
