//! CNI environment, network configuration and controller HTTP responses on
//! the checked-in corpus of the cargo-fuzz target `cni-plugin/fuzz/`
//! (`cni_config`) and on a deterministic set of mutations of it; invariants
//! in `plexus_cni::fuzz::config_env`.

use plexus_cni::fuzz::config_env;

/// Replays the checked-in corpus of each cargo-fuzz target
/// (`fuzz/seeds/TARGET/*`, minimised from the libFuzzer runs recorded in
/// BENCHMARKS.md, crash inputs included once fixed) through its entry point.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn checked_in_seeds_replay() {
    replay("cni_config", config_env);
}

/// Every seed with every byte replaced by a few interesting values, and cut
/// at every position: no panic, precise error codes.
#[test]
fn seed_mutations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/cni_config");
    let mut runs = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let seed = std::fs::read(e.unwrap().path()).unwrap();
        for i in 0..seed.len() {
            config_env(&seed[..i]);
            for b in [0u8, b'"', b'{', b'=', b'\n', 0xff] {
                let mut m = seed.clone();
                m[i] = b;
                config_env(&m);
                runs += 7;
            }
        }
    }
    assert!(runs > 1000, "corpus too small: {runs}");
}
