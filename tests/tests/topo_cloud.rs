//! `plexus-topo` on controller-driven topologies: every file in `topologies/`
//! (except the scale one) passes with `plexus-topo run`; broken files are
//! rejected with file, line and field before anything is created; a runner
//! killed with SIGKILL in the middle of `up` leaves nothing after
//! `down --all`.
//!
//! Needs root, Open vSwitch, ping, ethtool, busybox (the VM guest's DHCP
//! client) and the `plexus-controller`, `plexus-vswitchd`, `plexus-cni` and
//! `plexus` binaries built beside `plexus-topo` (`cargo test --workspace`
//! builds them); skips otherwise, fails under `CI=true`.

use plexus_tests::cloud::state::{State, state_dir};
use plexus_tests::{netns, ovs::process_alive, prereq};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `down --all` and the runs must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

fn topo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus-topo"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ready() -> bool {
    if !prereq::require_root()
        || !prereq::require_tools(&[
            "ovs-vswitchd",
            "ovsdb-server",
            "ovs-vsctl",
            "ovs-ofctl",
            "ovs-appctl",
            "socat",
            "ping",
            "ip",
            "ethtool",
            "busybox",
            "arping",
            "etcd",
        ])
    {
        return false;
    }
    let dir = Path::new(env!("CARGO_BIN_EXE_plexus-topo"))
        .parent()
        .unwrap()
        .to_path_buf();
    // sidecars.toml runs Envoy (scripts/install-peers.sh puts it in the peers venv).
    let venv = std::env::var("PEERS_VENV").unwrap_or_else(|_| "/var/tmp/plexus-peers-venv".into());
    if !Path::new(&venv).join("bin/envoy").is_file() && prereq::which("envoy").is_none() {
        return prereq::unmet("envoy is not installed (scripts/install-peers.sh)");
    }
    for b in [
        "plexus-controller",
        "plexus",
        "plexus-vswitchd",
        "plexus-appctl",
        "plexus-cni",
    ] {
        if !dir.join(b).is_file() {
            return prereq::unmet(&format!(
                "{b} is not built in {} (cargo build --workspace --bins)",
                dir.display()
            ));
        }
    }
    true
}

/// Topology files `.ci/run` runs: all but the single-switch demo (its own
/// test) and the scale topology.
fn topology_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n != "demo.toml" && !n.starts_with("fat-tree")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_topology_passes() {
    if !ready() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files = topology_files();
    assert!(files.len() >= 3, "topologies: {files:?}");
    let mut failed = Vec::new();
    for f in &files {
        let t0 = Instant::now();
        let out = topo()
            .arg("run")
            .arg(f)
            .current_dir(repo())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "=== {} ({:.1?})\n{stdout}{}",
            f.display(),
            t0.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            failed.push(f.display().to_string());
        }
        let last = stdout.lines().last().unwrap_or("");
        assert!(
            last.ends_with(" 0 failed") || !out.status.success(),
            "{last}"
        );
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
    let left = run_processes();
    assert!(
        left.is_empty(),
        "processes of the runs left behind: {left:?}"
    );
}

/// Live processes whose command line names a run's state dir (controller
/// store, socat controller bridges, switch control sockets).
fn run_processes() -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, t)| t.trim_start().starts_with('Z'));
        if cmd.contains("/tmp/plexus-topo-") && !zombie {
            v.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    v
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"name = "bad"
[controller]
[[chassis]]
name = "c1"
switch = "ovs"
[[tenant]]
name = "t"
[[tenant.vpc]]
name = "v"
cidrs = ["10.9.0.0/16"]
[[tenant.vpc.subnet]]
name = "s"
cidr = "10.9.1.0/24"
[[host]]
name = "h1"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
[[check]]
kind = "reach"
from = "h1"
to = "h1"
expect = "reach"
"#;

#[test]
fn broken_files_name_file_line_and_field_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(dir.path(), "ok.toml", GOOD);
    let out = topo().arg("validate").arg(&ok).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (what to change, expected "LINE:COL: field" fragment, message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "chassis = \"c1\"",
            "chassis = \"c9\"",
            ":16:11: host.chassis",
            "no chassis \"c9\"",
        ),
        (
            "cidr = \"10.9.1.0/24\"",
            "cidr = \"10.9.1.0/33\"",
            ":13:8: subnet.cidr",
            "is not an IPv4 CIDR",
        ),
        (
            "cidr = \"10.9.1.0/24\"",
            "cidr = \"10.8.1.0/24\"",
            ":13:8: subnet.cidr",
            "not inside the VPC",
        ),
        (
            "name = \"h1\"",
            "name = \"h1\"\nip = \"10.9.2.5\"",
            ":16:6: host.ip",
            "outside subnet",
        ),
        (
            "name = \"h1\"",
            "name = \"h1\"\nkind = \"vm\"",
            ":20:10: host.subnet",
            "a vm gets its address by DHCP: subnet \"s\" needs dhcp",
        ),
        (
            "to = \"h1\"",
            "to = \"h7\"",
            ":20:1: check",
            "no host \"h7\"",
        ),
        (
            "expect = \"reach\"",
            "expect = \"maybe\"",
            ":24:10: expect",
            "unknown variant `maybe`",
        ),
        (
            "switch = \"ovs\"",
            "switch = \"ovs\"\nswitchh = 1",
            ":6:1: syntax",
            "unknown field `switchh`",
        ),
        (
            "[[host]]\nname = \"h1\"",
            "[[host]]\nname = \"h1\"\nchassis = \"c1\"\ntenant = \"t\"\nvpc = \"v\"\nsubnet = \"s\"\n[[host]]\nname = \"h1\"",
            ":21:8: host.name",
            "duplicate host \"h1\"",
        ),
        (
            "cidr = \"10.9.1.0/24\"",
            "cidr = \"10.9.1.0/24\"\n[[tenant.vpc.router]]\nname = \"r\"\nsubnets = [\"s\", \"x\"]",
            ":16:17: router.subnets",
            "no subnet \"x\"",
        ),
        (
            "cidr = \"10.9.1.0/24\"",
            "cidr = \"10.9.1.0/24\"\n[[tenant.service]]\nname = \"w\"\nvpc = \"v\"\nvip = \"10.9.1.100\"\nport = 80\nbackends = [\"h9\"]",
            ":19:13: service.backends",
            "no host \"h9\"",
        ),
        (
            "switch = \"ovs\"",
            "switch = \"ovs\"\nvtep_ip = \"192.0.2.2\"\n[[chassis]]\nname = \"c2\"\nswitch = \"ovs\"",
            ":8:8: chassis.vtep_ip",
            "VTEP 192.0.2.2 is already another chassis'",
        ),
        (
            "expect = \"reach\"",
            "expect = \"reach\"\n[[check]]\nkind = \"vxlan\"\nfrom = \"h1\"\nto = \"h1\"",
            ":25:1: check.to",
            "are both on chassis \"c1\": nothing crosses the underlay",
        ),
        (
            "subnet = \"s\"",
            "subnet = \"s\"\ndhcp = true",
            ":19:10: host.dhcp",
            "subnet \"s\" has no dhcp",
        ),
        (
            "[controller]",
            "[controller]\nreplicas = 3",
            ":3:12: controller.replicas",
            "need store = \"etcd\"",
        ),
        (
            "[controller]",
            "[controller]\nstore = \"etcd\"\nreplicas = 9",
            ":4:12: controller.replicas",
            "must be 1-5",
        ),
        (
            "expect = \"reach\"",
            "expect = \"reach\"\n[[check]]\nkind = \"leader-failover\"\nfrom = \"h1\"\nto = \"h1\"",
            ":25:1: check.kind",
            "needs [controller] store = \"etcd\" and replicas",
        ),
    ];
    for (from, to, at, msg) in cases {
        assert!(GOOD.contains(from), "{from}");
        let bad = write(dir.path(), "bad.toml", &GOOD.replacen(from, to, 1));
        for verb in ["validate", "run", "up"] {
            let out = topo().arg(verb).arg(&bad).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{verb} accepted {to:?}");
            let want = format!("{}{at}", bad.display());
            assert!(
                err.contains(&want) && err.contains(msg),
                "{verb} with {to:?}: want {want:?} and {msg:?} in:\n{err}"
            );
        }
        assert!(
            !state_dir("bad").exists(),
            "a broken file created its state dir"
        );
        let created: Vec<String> = netns::list()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with("plx-bad-"))
            .collect();
        assert!(created.is_empty(), "{created:?}");
    }
}

#[test]
fn sigkill_during_up_then_down_all_leaves_nothing() {
    sigkill_during_up("[controller]\n");
}

/// The same with three controllers on a private etcd: its members (data in
/// the run's directory) must go too.
#[test]
fn sigkill_during_up_with_etcd_then_down_all_leaves_nothing() {
    sigkill_during_up("[controller]\nstore = \"etcd\"\nreplicas = 3\n");
}

fn sigkill_during_up(controller: &str) {
    if !ready() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Two chassis kinds would need an overlay; one plexus-vswitchd chassis and
    // many hosts give a long enough `up` to be killed in the middle.
    let mut text = format!(
        "name = \"kill\"\n{controller}[[chassis]]\nname = \"c1\"\nswitch = \"plexus\"\n\
         [[tenant]]\nname = \"t\"\n[[tenant.vpc]]\nname = \"v\"\ncidrs = [\"10.9.0.0/24\"]\n\
         [[tenant.vpc.subnet]]\nname = \"s\"\ncidr = \"10.9.0.0/24\"\n",
    );
    for i in 0..12 {
        text.push_str(&format!(
            "[[host]]\nname = \"h{i}\"\nchassis = \"c1\"\ntenant = \"t\"\nvpc = \"v\"\nsubnet = \"s\"\n"
        ));
    }
    let file = write(dir.path(), "kill.toml", &text);
    let sdir = state_dir("kill");
    let mut child = topo()
        .arg("up")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the controller runs and some namespaces exist.
    let t0 = Instant::now();
    let mut seen = State::default();
    while t0.elapsed() < Duration::from_secs(30) {
        if let Ok(s) = State::load(&sdir)
            && !s.procs.is_empty()
            && s.netns.len() >= 4
        {
            seen = s;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What existed at the kill, plus whatever the record gained.
    let after_kill = State::load(&sdir).unwrap_or_default();
    assert!(
        !seen.procs.is_empty() && seen.netns.len() >= 4,
        "the run never got far enough: {seen:?}"
    );
    assert!(
        after_kill.netns.iter().any(|n| netns::exists(n)),
        "nothing was left to clean up: {after_kill:?}"
    );
    let out = topo().args(["down", "--all"]).output().unwrap();
    assert!(
        out.status.success(),
        "down --all: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sdir.exists(), "state dir left");
    let ns_left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("plx-kill-"))
        .collect();
    assert!(ns_left.is_empty(), "namespaces left: {ns_left:?}");
    for p in &after_kill.procs {
        assert!(!process_alive(p.pid, &p.comm), "{p:?} still running");
    }
    // Host-side veth ends lived in the namespaces; nothing in the root namespace.
    let links = netns::ip(&["-br", "link"]).unwrap_or_default();
    assert!(!links.contains("kill-h"), "links left: {links}");
}

/// A runner SIGKILLed while it attaches VMs (taps, relays) and pods: after
/// `down FILE` (the same removal `down --all` does per run, without touching
/// other runs on the machine) no tap, relay, socat, namespace or state is left.
#[test]
fn sigkill_while_attaching_vms_then_down_leaves_nothing() {
    if !ready() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "name = \"killvm\"\n[controller]\n[[chassis]]\nname = \"c1\"\nswitch = \"plexus\"\n\
         [[tenant]]\nname = \"t\"\n[[tenant.vpc]]\nname = \"v\"\ncidrs = [\"10.9.0.0/24\"]\n\
         [[tenant.vpc.subnet]]\nname = \"s\"\ncidr = \"10.9.0.0/24\"\ndhcp = {}\n",
    );
    for (i, kind) in ["pod", "vm", "vm", "vm", "pod"].iter().enumerate() {
        text.push_str(&format!(
            "[[host]]\nname = \"w{i}\"\nkind = \"{kind}\"\nchassis = \"c1\"\ntenant = \"t\"\nvpc = \"v\"\nsubnet = \"s\"\n"
        ));
    }
    let file = write(dir.path(), "killvm.toml", &text);
    let sdir = state_dir("killvm");
    let mut child = topo()
        .arg("up")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a relay runs and a second tap is being attached.
    let t0 = Instant::now();
    let mut seen = State::default();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(s) = State::load(&sdir)
            && s.taps.len() >= 2
            && s.procs.iter().any(|p| p.role.starts_with("tap relay"))
        {
            seen = s;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = State::load(&sdir).unwrap_or_default();
    assert!(
        seen.taps.len() >= 2,
        "the run never got to its second VM: {seen:?}"
    );
    let relays: Vec<_> = after_kill
        .procs
        .iter()
        .filter(|p| p.role.starts_with("tap relay"))
        .collect();
    assert!(
        relays.iter().any(|p| process_alive(p.pid, &p.comm)),
        "no relay was running at the kill: {after_kill:?}"
    );
    let c1 = "plx-killvm-c1";
    let taps_at_kill = netns::ip(&["-n", c1, "-br", "link"]).unwrap_or_default();
    assert!(
        after_kill
            .taps
            .iter()
            .any(|t| taps_at_kill.contains(&t.name)),
        "no tap existed at the kill: {taps_at_kill}"
    );
    let out = topo().arg("down").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "down: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sdir.exists(), "state dir left");
    let ns_left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("plx-killvm-"))
        .collect();
    assert!(ns_left.is_empty(), "namespaces left: {ns_left:?}");
    for p in &after_kill.procs {
        assert!(!process_alive(p.pid, &p.comm), "{p:?} still running");
    }
    let links = netns::ip(&["-br", "link"]).unwrap_or_default();
    for t in &after_kill.taps {
        assert!(!links.contains(&t.name), "tap {} left: {links}", t.name);
    }
    let mine = format!("{}/", sdir.display());
    let left: Vec<String> = run_processes()
        .into_iter()
        .filter(|p| p.contains(&mine))
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// The 2-minute soak (issue #11): `plexus-topo soak topologies/soak.toml`
/// churns ports, security group rules and service backends under traffic;
/// the reachability matrix must hold after every round, no ping may be lost,
/// and RSS/fds of the controller and plexus-vswitchd must stay flat.
#[test]
fn soak_two_minutes() {
    if !ready() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = topo()
        .args(["soak", "topologies/soak.toml", "--duration", "2m"])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "soak failed:\n{stdout}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.ends_with(" 0 failed"), "{last}");
    assert!(
        stdout.contains("memory and file descriptors flat"),
        "no RSS/fd verdict:\n{stdout}"
    );
}
