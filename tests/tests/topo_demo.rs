//! Runs `plexus-topo run topologies/demo.toml` (needs root, Open vSwitch,
//! iproute2, ping, ethtool).

use plexus_tests::{require_root, require_tool};
use std::process::Command;

#[test]
fn demo_topology_passes() {
    if !(require_tool("ovs-vswitchd")
        && require_tool("ip")
        && require_tool("ping")
        && require_tool("ethtool")
        && require_root())
    {
        return;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_plexus-topo"))
        .args(["run", file])
        .output()
        .expect("running plexus-topo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "plexus-topo failed:\n{stdout}\n{stderr}"
    );
    for item in [
        "OK   bring up topology demo",
        "OK   ping h1 -> h2",
        "OK   ping h2 -> h1",
        "OK   tcp h1 -> h2:5201",
        "OK   flow counters increased",
        "OK   tear down",
    ] {
        assert!(stdout.contains(item), "missing {item:?} in:\n{stdout}");
    }
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    for ns in ["plx-demo-sw", "plx-demo-h1", "plx-demo-h2"] {
        assert!(!plexus_tests::netns::exists(ns), "{ns} left behind");
    }
}

#[test]
fn topology_without_flows_fails_and_still_cleans_up() {
    if !(require_tool("ovs-vswitchd")
        && require_tool("ip")
        && require_tool("ping")
        && require_root())
    {
        return;
    }
    // Same shape as the demo, but no flows: fail_mode=secure drops everything.
    let demo = include_str!("../../topologies/demo.toml");
    let mut t = String::new();
    let mut skip = false;
    for line in demo.lines() {
        if line.starts_with("flows = [") {
            skip = true;
            t.push_str("flows = []\n");
            continue;
        }
        if skip {
            skip = line != "]";
            continue;
        }
        t.push_str(
            &line
                .replace("demo", "nofl")
                .replace("count = 3", "count = 1"),
        );
        t.push('\n');
    }
    // Only the ping and counter checks (a TCP check would just wait longer).
    let t = t.replace(
        "[[check]]\nkind = \"tcp\"\nfrom = \"h1\"\nto = \"h2\"\nport = 5201\nbytes = 1048576\n",
        "",
    );
    assert!(!t.contains("kind = \"tcp\""), "{t}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("noflows.toml");
    std::fs::write(&file, &t).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plexus-topo"))
        .arg("run")
        .arg(&file)
        .output()
        .expect("running plexus-topo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "must fail without flows:\n{stdout}");
    assert!(stdout.contains("FAIL ping h1 -> h2"), "{stdout}");
    assert!(stdout.contains("FAIL flow counters increased"), "{stdout}");
    assert!(stdout.contains("OK   tear down"), "{stdout}");
    assert!(stdout.contains("2 passed, 3 failed"), "{stdout}");
    for ns in ["plx-nofl-sw", "plx-nofl-h1", "plx-nofl-h2"] {
        assert!(!plexus_tests::netns::exists(ns), "{ns} left behind");
    }
}

/// `up`, then `check` twice and `down`, each its own process: the flows
/// installed by `up`'s controller outlive it (the bridge keeps an active
/// controller target, so OVS does not flush them), and `check` reads them
/// back over the management socket with our flow-stats multipart.
#[test]
fn up_check_down_in_separate_processes() {
    if !(require_tool("ovs-vswitchd")
        && require_tool("ip")
        && require_tool("ping")
        && require_tool("ethtool")
        && require_root())
    {
        return;
    }
    let demo = include_str!("../../topologies/demo.toml");
    let t = demo.replace("demo", "upck");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upck.toml");
    std::fs::write(&file, &t).unwrap();
    let topo = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_plexus-topo"))
            .arg(cmd)
            .arg(&file)
            .output()
            .expect("running plexus-topo");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, up) = topo("up");
    let checks = if ok {
        vec![topo("check"), topo("check")]
    } else {
        Vec::new()
    };
    let (down_ok, down) = topo("down");
    assert!(ok, "up failed:\n{up}");
    for (ok, out) in &checks {
        assert!(*ok, "check failed:\n{out}");
        assert!(out.contains("OK   flow counters increased"), "{out}");
        assert!(out.contains("flow stats: 2 flows present"), "{out}");
        assert!(out.contains("4 passed, 0 failed"), "{out}");
    }
    assert!(down_ok, "down failed:\n{down}");
    for ns in ["plx-upck-sw", "plx-upck-h1", "plx-upck-h2"] {
        assert!(!plexus_tests::netns::exists(ns), "{ns} left behind");
    }
}
