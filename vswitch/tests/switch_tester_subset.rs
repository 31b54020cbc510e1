//! A fast subset of the os-ken OpenFlow 1.3 switch tester against
//! `plexus-vswitchd` (`scripts/switch-tester.sh action/00_OUTPUT.json
//! match/03_ETH_DST.json`, ~15 s): every case must pass. The full run (991
//! cases, ~15+ min) is recorded in BENCHMARKS.md and is not part of the tests.
//!
//! Uses its own state dir, OpenFlow port, namespace and interface names so it
//! does not collide with a concurrent full run. Needs root, OVS
//! (`ovs-vswitchd`, `ovsdb-server`, `ovs-vsctl`), `python3` and the shared
//! peers rig (`../shared/peers`); the os-ken venv is installed by the script
//! if missing. Missing prerequisites: SKIP outside CI, failure under `CI=true`.

use std::path::Path;
use std::process::Command;

use plexus_tests::prereq;

#[test]
fn os_ken_switch_tester_output_and_eth_dst_subset() {
    if !(prereq::require_root()
        && prereq::require_tools(&["ip", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "python3"]))
    {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let peers = ["../shared/peers", "../../shared/peers"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.join("switch-tester.sh").is_file());
    let Some(peers) = peers else {
        prereq::unmet("../shared/peers/switch-tester.sh not found");
        return;
    };
    let pid = std::process::id() % 10_000;
    let state = std::env::temp_dir().join(format!("plxst-{pid}"));
    let out = Command::new(root.join("scripts/switch-tester.sh"))
        .args(["action/00_OUTPUT.json", "match/03_ETH_DST.json"])
        .env("PEERS_DIR", &peers)
        .env("VSWITCHD_BIN", env!("CARGO_BIN_EXE_plexus-vswitchd"))
        .env("VSWITCHD_ARGS", "--port-type afpacket")
        .env("PEERS_STATE", &state)
        .env("OF_PORT", (17_000 + pid % 1000).to_string())
        .env("TESTER_NETNS", format!("plxst{pid}"))
        .env(
            "TARGET_IFACES",
            format!("plxst{pid}a plxst{pid}b plxst{pid}c"),
        )
        .env("TEST_TIMEOUT", "300")
        .output()
        .expect("run scripts/switch-tester.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&state);
    let total = stdout
        .lines()
        .find(|l| l.starts_with("TOTAL:"))
        .unwrap_or_else(|| panic!("no TOTAL line\n{stdout}\n{stderr}"));
    assert_eq!(total, "TOTAL: OK(12) / ERROR(0)", "{stdout}\n{stderr}");
}
