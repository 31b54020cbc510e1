//! Controller restart (SIGKILL + start on the same store) with several chassis whose
//! switches reconnect one after another: nothing is deleted or re-added on any switch.
//! Runs the `plexus-topo bench scale` scenario at a small size with simulated chassis
//! (in-process OpenFlow switches that keep a flow table); every VPC spans every chassis,
//! so each chassis holds tunnel entries for ports on the others — the entries a chassis
//! that reconciles before the others reported their ports used to lose.
//!
//! Needs the `plexus-controller` binary (`cargo build --bins`), no root.

use plexus_tests::scale::{Opts, run};

/// `key=value` of one output line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

#[test]
fn restart_with_eight_chassis_deletes_nothing() {
    let out = run(&Opts {
        tenants: 3,
        ports_per_switch: 8,
        sgs: 3,
        rules: 2,
        lbs: 2,
        changes: 3,
        sim_chassis: 8,
        workers: 2,
        restarts: 3,
        results: None,
    })
    .expect("scale scenario");
    let restarts: Vec<&String> = out.iter().filter(|l| l.contains(" restart#")).collect();
    assert_eq!(restarts.len(), 3, "{out:#?}");
    for l in restarts {
        assert_eq!(field(l, "flow_deletes"), 0, "{l}");
        assert_eq!(field(l, "flow_adds"), 0, "{l}");
        assert_eq!(
            field(l, "reconciles"),
            8,
            "every chassis reconciled once: {l}"
        );
        let before = field(l, "switch_flows_before");
        assert!(before > 1000, "{l}");
        assert_eq!(field(l, "after"), before, "{l}");
    }
}
