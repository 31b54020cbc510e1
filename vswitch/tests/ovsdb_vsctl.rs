//! Acceptance: real `ovs-vsctl` (over `unix:` and `tcp:`) configures
//! `plexus-vswitchd` through its embedded OVSDB server, and traffic flows
//! through the ports it added.
//!
//! ```text
//!  netns a: ha 10.79.0.1 ─veth─ sa ┐
//!  netns b: hb 10.79.0.2 ─veth─ sb ├ netns s: plexus-vswitchd --db … --ovsdb-listen …
//!  netns c: hc 10.79.0.3 ─veth─ sc ┘          (+ tap port, LOCAL tap)
//! ```
//!
//! The daemon runs in netns `s` (so its taps and the bridge's LOCAL port go
//! away with it); `ovs-vsctl --db=tcp:127.0.0.1:PORT` runs there too, the
//! `unix:` socket, the `BRIDGE.mgmt` socket (`--ovs-rundir`) and a `punix:`
//! Controller are reached from the test's namespace. Namespaces are
//! `plxdb<pid>x<n>*`, deleted on drop. Needs root, `ip`, `ping`, `ethtool`,
//! `ovs-vsctl`, `ovsdb-client`: SKIP outside CI, failure under `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plexus_openflow::message::{MultipartReplyBody, MultipartRequestBody, port_no};
use plexus_tests::controller::{ControllerListener, Switch};
use plexus_tests::netns::{Netns, unique_name, veth};
use plexus_tests::prereq;
use plexus_tests::proc::wait_until;

const IPS: [&str; 3] = ["10.79.0.1", "10.79.0.2", "10.79.0.3"];
const BR: &str = "br-plx";

fn prerequisites() -> bool {
    prereq::require_root()
        && prereq::require_tools(&[
            "ip",
            "ping",
            "ethtool",
            "ovs-vsctl",
            "ovsdb-client",
            "ovs-ofctl",
        ])
}

/// A TCP port for the OVSDB listener in the fresh switch namespace (nothing
/// else is bound there, so any number works; take an ephemeral one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

/// Kills (SIGTERM, then SIGKILL) and reaps a child we started.
fn stop(c: &mut Child) {
    plexus_tests::proc::terminate(c, Duration::from_secs(5));
}

struct Topo {
    hosts: Vec<Netns>,
    sw: Netns,
    dir: tempfile::TempDir,
    tcp_port: u16,
    dut: Option<Child>,
    monitor: Option<Child>,
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Some(mut c) = self.monitor.take() {
            stop(&mut c);
        }
        if let Some(mut c) = self.dut.take() {
            stop(&mut c);
        }
    }
}

impl Topo {
    fn new() -> Topo {
        let base = unique_name("plxdb");
        let sw = Netns::create(&format!("{base}s")).expect("switch netns");
        let mut hosts = Vec::new();
        for (i, tag) in ["a", "b", "c"].iter().enumerate() {
            let ns = Netns::create(&format!("{base}{tag}")).expect("host netns");
            let (h, s) = (format!("h{tag}"), format!("s{tag}"));
            veth(&h, &ns, &s, &sw).expect("veth");
            ns.ip(&["addr", "add", &format!("{}/24", IPS[i]), "dev", &h])
                .expect("addr");
            // A userspace switch forwards CHECKSUM_PARTIAL frames unfixed.
            let _ = ns
                .command("ethtool")
                .args(["-K", &h, "tx", "off"])
                .stdout(Stdio::null())
                .status();
            hosts.push(ns);
        }
        let tcp_port = free_port();
        Topo {
            hosts,
            sw,
            dir: tempfile::tempdir().expect("tempdir"),
            tcp_port,
            dut: None,
            monitor: None,
        }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn unix_db(&self) -> String {
        format!("unix:{}", self.path("db.sock").display())
    }

    fn start(&mut self) {
        let bin = env!("CARGO_BIN_EXE_plexus-vswitchd");
        let _ = std::fs::remove_file(self.path("db.sock"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("vswitchd.log"))
            .expect("log");
        let child = self
            .sw
            .command(bin)
            .arg("--db")
            .arg(self.path("conf.db"))
            .arg("--ovsdb-listen")
            .arg(format!("punix:{}", self.path("db.sock").display()))
            .arg("--ovsdb-listen")
            .arg(format!("ptcp:{}:127.0.0.1", self.tcp_port))
            .arg("--ovs-rundir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plexus-vswitchd");
        self.dut = Some(child);
        let sock = self.path("db.sock");
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "no OVSDB socket; log:\n{}",
            self.log()
        );
    }

    fn restart(&mut self) {
        if let Some(mut c) = self.dut.take() {
            stop(&mut c);
        }
        let mgmt = self.path(&format!("{BR}.mgmt"));
        assert!(!mgmt.exists(), "the daemon removes {BR}.mgmt on exit");
        self.start();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("vswitchd.log")).unwrap_or_default()
    }

    /// `ovs-vsctl` over the unix socket (from the test's namespace), waiting
    /// for the daemon to apply the change (no `--no-wait`).
    fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db={}", self.unix_db());
        let mut c = Command::new("ovs-vsctl");
        c.args(["--timeout=20", &db]).args(args);
        self.run(c, args)
    }

    /// `ovs-vsctl --db=tcp:127.0.0.1:PORT` (inside the switch namespace).
    fn vsctl_tcp(&self, args: &[&str]) -> String {
        let db = format!("--db=tcp:127.0.0.1:{}", self.tcp_port);
        let mut c = self.sw.command("ovs-vsctl");
        c.args(["--timeout=20", &db]).args(args);
        self.run(c, args)
    }

    fn run(&self, mut c: Command, args: &[&str]) -> String {
        let out = c.output().expect("run ovs-vsctl");
        assert!(
            out.status.success(),
            "ovs-vsctl {args:?} failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `ovs-ofctl -O OpenFlow13` with `OVS_RUNDIR` at the daemon's `--ovs-rundir`.
    fn ofctl(&self, args: &[&str]) -> String {
        let out = Command::new("ovs-ofctl")
            .env("OVS_RUNDIR", self.dir.path())
            .args(["-O", "OpenFlow13", "--timeout=10"])
            .args(args)
            .output()
            .expect("run ovs-ofctl");
        assert!(
            out.status.success(),
            "ovs-ofctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn ofport(&self, iface: &str) -> u32 {
        let s = self.vsctl(&["get", "Interface", iface, "ofport"]);
        s.parse()
            .unwrap_or_else(|_| panic!("ofport of {iface}: {s}"))
    }

    fn ping(&self, from: usize, to: usize) -> bool {
        self.hosts[from]
            .command("ping")
            .args(["-c", "2", "-W", "1", "-i", "0.2", IPS[to]])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ping_eventually(&self, from: usize, to: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.ping(from, to) {
                return true;
            }
        }
        false
    }

    fn connect(&self) -> Switch {
        let mgmt = self.path(&format!("{BR}.mgmt"));
        assert!(
            wait_until(Duration::from_secs(20), || mgmt.exists()),
            "no {BR}.mgmt; log:\n{}",
            self.log()
        );
        Switch::connect(&format!("unix:{}", mgmt.display())).expect("connect to BR.mgmt")
    }
}

fn port_desc(sw: &Switch) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for b in sw
        .multipart(MultipartRequestBody::PortDesc)
        .expect("port desc")
    {
        if let MultipartReplyBody::PortDesc(ps) = b {
            v.extend(ps.into_iter().map(|p| (p.port_no, p.name)));
        }
    }
    v.sort();
    v
}

/// The next PORT_STATUS with `reason` (MODIFYs for link changes are skipped).
fn port_status(sw: &Switch, reason: u8) -> plexus_openflow::message::PortStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ps = sw.recv_port_status(left).expect("PORT_STATUS");
        if ps.reason == reason {
            return ps;
        }
    }
}

fn flood_flows(sw: &Switch) {
    sw.add_flows(&["priority=0,actions=FLOOD"]).expect("flows");
}

#[test]
fn ovs_vsctl_configures_vswitchd_and_traffic_flows() {
    if !prerequisites() {
        return;
    }
    let mut t = Topo::new();
    t.start();

    // Bridge and ports, over unix: and tcp:, each waiting for cur_cfg.
    t.vsctl(&["add-br", BR]);
    t.vsctl_tcp(&["add-port", BR, "sa"]);
    t.vsctl(&[
        "add-port",
        BR,
        "sb",
        "--",
        "set",
        "Interface",
        "sb",
        "ofport_request=7",
    ]);
    t.vsctl_tcp(&[
        "add-port",
        BR,
        "sc",
        "--",
        "set",
        "Interface",
        "sc",
        "other_config:port-type=afpacket",
    ]);
    t.vsctl(&[
        "add-port",
        BR,
        "tap-plx",
        "--",
        "set",
        "Interface",
        "tap-plx",
        "type=tap",
    ]);
    // A type we cannot serve yet: accepted, reported like OVS does.
    t.vsctl_tcp(&[
        "add-port",
        BR,
        "vx-plx",
        "--",
        "set",
        "Interface",
        "vx-plx",
        "type=geneve",
        "options:remote_ip=10.9.9.9",
    ]);
    let cfg = t.vsctl(&["get", "Open_vSwitch", ".", "next_cfg", "cur_cfg"]);
    let v: Vec<&str> = cfg.lines().collect();
    assert_eq!(v.len(), 2, "{cfg}");
    assert_eq!(v[0], v[1], "cur_cfg caught up with next_cfg");
    assert!(
        t.vsctl(&["get", "Open_vSwitch", ".", "ovs_version"])
            .contains("plexus")
    );
    assert!(
        t.vsctl(&["get", "Open_vSwitch", ".", "iface_types"])
            .contains("tap")
    );

    // The OpenFlow view matches Interface.ofport.
    let sw = t.connect();
    let dpid = t.vsctl(&["get", "Bridge", BR, "datapath_id"]);
    assert_eq!(
        dpid.trim_matches('"'),
        format!("{:016x}", sw.datapath_id()),
        "Bridge.datapath_id"
    );
    let (pa, pb, pc, ptap) = (
        t.ofport("sa"),
        t.ofport("sb"),
        t.ofport("sc"),
        t.ofport("tap-plx"),
    );
    assert_eq!(pb, 7, "ofport_request honoured");
    assert_eq!(t.vsctl(&["get", "Interface", BR, "ofport"]), "65534");
    assert_eq!(t.vsctl(&["get", "Interface", "vx-plx", "ofport"]), "-1");
    assert!(
        t.vsctl(&["get", "Interface", "vx-plx", "error"])
            .contains("unsupported interface type"),
        "geneve error (vxlan is served: tests/vxlan_interop.rs)"
    );
    let mut want = vec![
        (pa, "sa".to_string()),
        (pb, "sb".to_string()),
        (pc, "sc".to_string()),
        (ptap, "tap-plx".to_string()),
        (port_no::LOCAL, BR.to_string()),
    ];
    want.sort();
    assert_eq!(port_desc(&sw), want);

    // Real ovs-ofctl through the bridge's mgmt socket, as with OVS.
    let show = t.ofctl(&["show", BR]);
    for p in [
        format!(" {pa}(sa):"),
        " 7(sb):".to_string(),
        format!(" {ptap}(tap-plx):"),
        format!(" LOCAL({BR}):"),
    ] {
        assert!(show.contains(&p), "ovs-ofctl show lacks {p}:\n{show}");
    }

    // show / list / find / get.
    let show = t.vsctl(&["show"]);
    for name in [BR, "sa", "sb", "sc", "tap-plx", "vx-plx"] {
        assert!(show.contains(name), "show lacks {name}:\n{show}");
    }
    let list = t.vsctl(&["list", "Interface"]);
    assert!(list.contains("mac_in_use") && list.contains("link_state"));
    let found = t.vsctl(&[
        "--bare",
        "--columns=name,ofport",
        "find",
        "Interface",
        "name=sb",
    ]);
    assert_eq!(found.split_whitespace().collect::<Vec<_>>(), ["sb", "7"]);
    // Link state follows the interface (refreshed periodically, like OVS).
    assert!(
        wait_until(Duration::from_secs(10), || {
            t.vsctl(&["get", "Interface", "sa", "link_state"]) == "up"
                && t.vsctl(&["get", "Interface", "sa", "admin_state"]) == "up"
        }),
        "link_state/admin_state of sa"
    );

    // Traffic through the ports ovs-vsctl added. fail_mode unset behaves as
    // standalone (as in OVS): a learning switch while no primary controller
    // is connected (the mgmt connection is a service connection).
    assert!(
        t.ping_eventually(0, 1),
        "standalone a -> b; log:\n{}",
        t.log()
    );
    // secure without flows: nothing is forwarded any more.
    t.vsctl(&["set-fail-mode", BR, "secure"]);
    assert!(!t.ping(0, 1), "secure mode without flows must drop");
    flood_flows(&sw);
    assert!(
        t.ofctl(&["dump-flows", BR]).contains("actions=FLOOD"),
        "ovs-ofctl dump-flows"
    );
    assert!(t.ping_eventually(0, 1), "a -> b; log:\n{}", t.log());
    assert!(t.ping_eventually(0, 2), "a -> c");
    assert!(t.ping_eventually(1, 2), "b -> c");
    // Statistics are written back periodically.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = t.vsctl(&["get", "Interface", "sa", "statistics:rx_packets"]);
            s.parse::<u64>().is_ok_and(|n| n > 0)
        }),
        "Interface statistics"
    );

    // ovsdb-client dump and monitor against the daemon.
    let dump = Command::new("timeout")
        .args(["10", "ovsdb-client", "dump", &t.unix_db(), "Open_vSwitch"])
        .output()
        .expect("ovsdb-client dump");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("Interface table") && dump.contains("sb"),
        "dump:\n{dump}"
    );
    let mut mon = Command::new("ovsdb-client")
        .args([
            "monitor",
            &t.unix_db(),
            "Open_vSwitch",
            "Interface",
            "name,ofport",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ovsdb-client monitor");
    let (tx, rx) = mpsc::channel::<String>();
    let out = mon.stdout.take().expect("stdout");
    t.monitor = Some(mon);
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let seen = |rx: &mpsc::Receiver<String>, pat: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if pat(&l) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(
        seen(&rx, &|l| l.contains("initial") && l.contains("sc")),
        "monitor initial rows"
    );

    // del-port: PORT_STATUS DELETE, traffic to c stops, a <-> b unaffected.
    t.vsctl_tcp(&["del-port", BR, "sc"]);
    let ps = port_status(&sw, 1);
    assert_eq!(
        (ps.reason, ps.desc.port_no, ps.desc.name.as_str()),
        (1, pc, "sc"),
        "PORT_STATUS DELETE"
    );
    assert!(
        seen(&rx, &|l| l.contains("delete") && l.contains("sc")),
        "monitor saw the delete"
    );
    assert!(!t.ping(0, 2), "a -> c must fail after del-port sc");
    assert!(t.ping(0, 1), "a -> b keeps working");
    assert!(t.ping(1, 0), "b -> a keeps working");
    want.retain(|(p, _)| *p != pc);
    assert_eq!(port_desc(&sw), want);
    let out = Command::new("ovs-vsctl")
        .args([
            &format!("--db={}", t.unix_db()),
            "get",
            "Interface",
            "sc",
            "ofport",
        ])
        .output()
        .expect("ovs-vsctl");
    assert!(!out.status.success(), "sc's Interface row is gone");

    // add it back: a new PORT_STATUS ADD, c reachable again.
    t.vsctl(&["add-port", BR, "sc"]);
    let ps = port_status(&sw, 0);
    assert_eq!(
        (ps.reason, ps.desc.name.as_str()),
        (0, "sc"),
        "PORT_STATUS ADD"
    );
    assert_eq!(ps.desc.port_no, t.ofport("sc"));
    assert!(t.ping_eventually(0, 2), "a -> c after re-adding sc");

    // A changed ofport_request renumbers the port live (DELETE + ADD).
    t.vsctl(&["set", "Interface", "sc", "ofport_request=9"]);
    assert_eq!(t.ofport("sc"), 9);
    let ps = port_status(&sw, 0);
    assert_eq!((ps.desc.port_no, ps.desc.name.as_str()), (9, "sc"));
    assert!(t.ping_eventually(0, 2), "a -> c after renumbering");

    // set-controller (one passive punix:, one active unix:) and set-fail-mode.
    let ctl_sock = t.path("ctl.sock");
    let active = ControllerListener::bind_on(&format!("punix:{}", t.path("active.sock").display()))
        .expect("controller listener");
    t.vsctl(&[
        "set-controller",
        BR,
        &format!("punix:{}", ctl_sock.display()),
        &active.target(),
        "--",
        "set-fail-mode",
        BR,
        "secure",
    ]);
    assert_eq!(t.vsctl(&["get-fail-mode", BR]), "secure");
    let actl = active
        .accept(Duration::from_secs(10))
        .expect("the switch connects to the active controller");
    assert_eq!(actl.datapath_id(), sw.datapath_id());
    assert!(wait_until(Duration::from_secs(10), || ctl_sock.exists()));
    let ctl = Switch::connect(&format!("unix:{}", ctl_sock.display())).expect("controller");
    assert_eq!(ctl.datapath_id(), sw.datapath_id());
    assert!(
        wait_until(Duration::from_secs(10), || t
            .vsctl(&["--bare", "--columns=is_connected", "list", "Controller"])
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["true", "true"]),
        "Controller.is_connected"
    );
    // Removing the controllers closes their connections.
    t.vsctl(&["del-controller", BR]);
    assert!(
        actl.recv_port_status(Duration::from_secs(10)).is_err(),
        "the active controller connection is closed"
    );
    drop(actl);
    drop(ctl);
    drop(sw);

    // Restart with the same database: the bridge and its ports come back
    // with the same numbers (flows are not persisted, as in OVS).
    t.restart();
    let sw = t.connect();
    // The mgmt socket comes up with the bridge, its ports right after.
    assert!(
        wait_until(Duration::from_secs(20), || port_desc(&sw).len() == 5),
        "LOCAL, sa, sb, sc, tap-plx after restart: {:?}\nlog:\n{}",
        port_desc(&sw),
        t.log()
    );
    assert_eq!(t.ofport("sa"), pa);
    assert_eq!(t.ofport("sb"), 7);
    assert_eq!(t.ofport("sc"), 9);
    assert_eq!(t.ofport("tap-plx"), ptap);
    flood_flows(&sw);
    assert!(t.ping_eventually(0, 1), "a -> b after restart");

    t.vsctl(&["del-br", BR]);
    assert!(
        t.sw.ip(&["link", "show", BR]).is_err(),
        "the LOCAL tap is gone with the bridge"
    );
}
