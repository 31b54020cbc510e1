//! System tests of the control socket (`plexus-appctl`), the config file
//! and fail-mode standalone, with `plexus-vswitchd` switching two hosts:
//!
//! ```text
//!  netns a: ha 10.79.0.1 ─veth─ sa (port 1) ┐ plexus-vswitchd --netns s
//!  netns b: hb 10.79.0.2 ─veth─ sb (port 2) ┘ (ctl socket in a temp dir)
//! ```
//!
//! Namespaces are `plxc-<pid>x<n>-{a,b,s}`, deleted on drop; the daemon is
//! killed by pid on drop. Needs root, `ip`, `ping`, `ethtool` (and
//! `ovs-ofctl` for the trace test): SKIP outside CI, failure under `CI=true`.
//! The config-file tests without ports need none of that.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use plexus_tests::netns::{Netns, unique_name, veth};
use plexus_tests::prereq;

const IPS: [&str; 2] = ["10.79.0.1", "10.79.0.2"];

struct Topo {
    hosts: Vec<Netns>,
    sw: Netns,
    dut: Option<Child>,
    dir: PathBuf,
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Some(mut c) = self.dut.take() {
            // SIGTERM to the daemon we started (by pid), then reap it.
            plexus_tests::proc::terminate(&mut c, Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Topo {
    fn new() -> Topo {
        let base = unique_name("plxc-");
        let sw = Netns::create(&format!("{base}s")).expect("switch netns");
        let mut hosts = Vec::new();
        for (i, tag) in ["a", "b"].iter().enumerate() {
            let ns = Netns::create(&format!("{base}{tag}")).expect("host netns");
            let (h, s) = (format!("h{tag}"), format!("s{tag}"));
            veth(&h, &ns, &s, &sw).expect("veth");
            ns.ip(&["addr", "add", &format!("{}/24", IPS[i]), "dev", &h])
                .expect("addr");
            let _ = ns
                .command("ethtool")
                .args(["-K", &h, "tx", "off"])
                .stdout(Stdio::null())
                .status();
            hosts.push(ns);
        }
        let dir = std::env::temp_dir().join(format!("{base}dir"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Topo {
            hosts,
            sw,
            dut: None,
            dir,
        }
    }

    fn ctl(&self) -> PathBuf {
        self.dir.join("vswitchd.ctl")
    }

    /// Starts the daemon with `args` and waits for its control socket.
    fn start(&mut self, args: &[&str]) {
        let bin = env!("CARGO_BIN_EXE_plexus-vswitchd");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus-vswitchd");
        self.dut = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while appctl(&self.ctl(), &["version"]).map(|o| o.status.success()) != Some(true) {
            if Instant::now() > deadline || self.exited() {
                let mut err = String::new();
                if let Some(c) = self.dut.as_mut() {
                    let _ = c.kill();
                    if let Some(mut s) = c.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                }
                panic!("control socket never answered\n{err}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exited(&mut self) -> bool {
        self.dut
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
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

    fn mac(&self, host: usize) -> String {
        let dev = ["ha", "hb"][host];
        let out = self.hosts[host]
            .ip(&["-br", "link", "show", "dev", dev])
            .expect("link show");
        out.split_whitespace().nth(2).expect("mac").to_string()
    }
}

fn appctl(sock: &Path, args: &[&str]) -> Option<Output> {
    Command::new(env!("CARGO_BIN_EXE_plexus-appctl"))
        .arg("-t")
        .arg(sock)
        .args(args)
        .output()
        .ok()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(sock: &Path, args: &[&str]) -> String {
    let o = appctl(sock, args).expect("run plexus-appctl");
    assert!(
        o.status.success(),
        "plexus-appctl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ofctl(port: u16, args: &[&str]) {
    let target = format!("tcp:127.0.0.1:{port}");
    let mut v = vec!["-O", "OpenFlow13", args[0], target.as_str()];
    v.extend_from_slice(&args[1..]);
    let o = Command::new("ovs-ofctl")
        .args(&v)
        .output()
        .expect("ovs-ofctl");
    assert!(
        o.status.success(),
        "ovs-ofctl {v:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

fn datapath_actions(trace: &str) -> String {
    trace
        .lines()
        .find_map(|l| l.strip_prefix("Datapath actions: "))
        .unwrap_or_else(|| panic!("no datapath actions in\n{trace}"))
        .to_string()
}

#[test]
fn trace_dump_flows_and_cache_over_the_control_socket() {
    if !(prereq::require_root() && prereq::require_tools(&["ip", "ping", "ethtool", "ovs-ofctl"])) {
        return;
    }
    let mut t = Topo::new();
    let port = free_port();
    let listen = format!("ptcp:{port}:127.0.0.1");
    let ctl = t.ctl();
    let ctl_s = ctl.to_string_lossy().into_owned();
    let ns = t.sw.name().to_string();
    t.start(&[
        "--netns",
        &ns,
        "--port",
        "sa=1",
        "--port",
        "sb=2",
        "--port-type",
        "afpacket",
        "--listen",
        &listen,
        "--ctl",
        &ctl_s,
        "--bridge",
        "brt",
    ]);

    ofctl(
        port,
        &[
            "add-flow",
            "table=0,priority=100,cookie=0x11,in_port=1,actions=goto_table:1",
        ],
    );
    ofctl(
        port,
        &[
            "add-flow",
            "table=1,priority=50,cookie=0x22,ip,actions=output:2",
        ],
    );
    ofctl(
        port,
        &["add-flow", "table=1,priority=40,arp,actions=output:2"],
    );
    ofctl(
        port,
        &[
            "add-flow",
            "table=0,priority=100,in_port=2,actions=output:1",
        ],
    );

    let flow = "in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,tcp,nw_dst=10.79.0.2,tp_dst=80";
    let tr = ok(&ctl, &["trace", "brt", flow]);
    assert!(
        tr.contains(" 0. in_port=1, priority 100, cookie 0x11"),
        "{tr}"
    );
    assert!(tr.contains("actions=goto_table:1"), "{tr}");
    assert!(tr.contains(" 1. ip, priority 50, cookie 0x22"), "{tr}");
    assert!(tr.contains("actions=output:2"), "{tr}");
    assert_eq!(datapath_actions(&tr), "2");
    let mega = tr
        .lines()
        .find(|l| l.starts_with("Megaflow: "))
        .expect("megaflow");
    assert!(mega.contains("in_port=1") && mega.contains("ip"), "{mega}");

    // After a FLOW_MOD the trace follows the new action.
    ofctl(port, &["mod-flows", "table=1,ip,actions=drop"]);
    let tr = ok(&ctl, &["trace", "brt", flow]);
    assert_eq!(datapath_actions(&tr), "drop", "{tr}");
    ofctl(port, &["mod-flows", "table=1,ip,actions=output:2"]);

    // dump-flows: what ovs-ofctl installed, in its format.
    let df = ok(&ctl, &["dump-flows"]);
    assert_eq!(df.lines().count(), 4, "{df}");
    assert!(
        df.contains("cookie=0x22,") && df.contains("priority=50,ip actions=output:2"),
        "{df}"
    );

    // Traffic installs megaflows; cache-flush empties the cache.
    ok(&ctl, &["cache-flush"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !t.ping(0, 1) {
        assert!(Instant::now() < deadline, "ping a -> b never worked");
    }
    let dc = ok(&ctl, &["dump-cache"]);
    assert!(!dc.starts_with("megaflows: 0 "), "{dc}");
    assert!(
        dc.lines()
            .any(|l| l.starts_with("ip,in_port=1,") && l.ends_with("actions:2")),
        "no in_port=1 megaflow to port 2:\n{dc}"
    );
    ok(&ctl, &["cache-flush"]);
    let dc = ok(&ctl, &["dump-cache"]);
    assert!(dc.starts_with("megaflows: 0 "), "{dc}");

    // show: bridge, ports with type and stats, the listener.
    let sh = ok(&ctl, &["show"]);
    assert!(
        sh.starts_with("brt: dpid 0000000000000001, fail-mode secure"),
        "{sh}"
    );
    assert!(sh.contains(" 1(sa): type afpacket"), "{sh}");
    assert!(sh.contains(" 2(sb): type afpacket"), "{sh}");
    assert!(sh.contains(&format!(" {listen}: listening")), "{sh}");

    // Malformed commands: a precise message, exit status 2, daemon alive.
    let o = appctl(&ctl, &["trace", "brt", "in_port=1,tp_dst=80"]).expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("prerequisites"));
    let o = appctl(&ctl, &["no-such-command"]).expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(ok(&ctl, &["version"]).contains("plexus-vswitchd"));
    assert!(!t.exited(), "the daemon died");
}

#[test]
fn config_file_standalone_learning_switch() {
    if !(prereq::require_root() && prereq::require_tools(&["ip", "ping", "ethtool"])) {
        return;
    }
    let mut t = Topo::new();
    let ctl = t.ctl();
    let cfg = t.dir.join("vswitchd.toml");
    std::fs::write(
        &cfg,
        format!(
            "bridge = \"brs\"\ndpid = \"0x5\"\nfail_mode = \"standalone\"\n\
             netns = \"{}\"\nctl = \"{}\"\nport_type = \"afpacket\"\n\
             [[port]]\nname = \"sa\"\nofport = 7\n[[port]]\nname = \"sb\"\nofport = 9\n",
            t.sw.name(),
            ctl.display()
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().into_owned();
    // The flag overrides the file's dpid.
    t.start(&["--config", &cfg_s, "--dpid", "0x77"]);

    let sh = ok(&ctl, &["show"]);
    assert!(
        sh.starts_with(
            "brs: dpid 0000000000000077, fail-mode standalone (no controller: forwarding by NORMAL)"
        ),
        "{sh}"
    );
    assert!(
        sh.contains(" 7(sa): type afpacket") && sh.contains(" 9(sb): type afpacket"),
        "{sh}"
    );

    // No controller, no flows: NORMAL switches and learns.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !t.ping(0, 1) {
        assert!(
            Instant::now() < deadline,
            "ping a -> b never worked in standalone mode"
        );
    }
    assert!(t.ping(1, 0), "ping b -> a");
    let fdb = ok(&ctl, &["fdb/show"]);
    let has = |port: u32, mac: &str| {
        fdb.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 4 && w[0] == port.to_string() && w[2] == mac
        })
    };
    assert!(has(7, &t.mac(0)), "a's MAC on port 7:\n{fdb}");
    assert!(has(9, &t.mac(1)), "b's MAC on port 9:\n{fdb}");
}

#[test]
fn bad_config_file_is_rejected_with_its_reason() {
    let dir = std::env::temp_dir().join(unique_name("plxc-cfg-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "fail_mode = \"open\"\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_plexus-vswitchd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("fail_mode = \"open\": expected one of secure, standalone"),
        "{err}"
    );
}

fn tx_packets(sw: &plexus_tests::controller::Switch, port: u32) -> u64 {
    use plexus_openflow::message::{MultipartReplyBody, MultipartRequestBody, port_no};
    let mut n = 0;
    for b in sw
        .multipart(MultipartRequestBody::PortStats {
            port_no: port_no::ANY,
        })
        .expect("port stats")
    {
        if let MultipartReplyBody::PortStats(v) = b {
            n += v
                .iter()
                .filter(|p| p.port_no == port)
                .map(|p| p.tx_packets)
                .sum::<u64>();
        }
    }
    n
}

fn wait_tx_above(sw: &plexus_tests::controller::Switch, port: u32, before: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tx_packets(sw, port) <= before {
        assert!(
            Instant::now() < deadline,
            "{what}: nothing left port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn packet_in_buffering_with_packet_out_and_flow_mod() {
    use plexus_openflow::error::BadRequestCode;
    use plexus_openflow::message::{FlowModCommand, PacketOut};
    use plexus_openflow::{Action, Message, OfpError};
    use plexus_tests::controller::ControllerListener;

    if !(prereq::require_root() && prereq::require_tools(&["ip", "ping", "ethtool"])) {
        return;
    }
    let ctl = ControllerListener::bind().expect("listen");
    let mut t = Topo::new();
    let ns = t.sw.name().to_string();
    let sock = t.ctl().to_string_lossy().into_owned();
    let target = ctl.target();
    t.start(&[
        "--netns",
        &ns,
        "--port",
        "sa=1",
        "--port",
        "sb=2",
        "--port-type",
        "afpacket",
        "--controller",
        &target,
        "--ctl",
        &sock,
        "--packet-in-buffers",
        "8",
    ]);
    let sw = ctl
        .accept(Duration::from_secs(20))
        .expect("switch connects");
    // Only 32 bytes of each packet go to the controller; the rest waits in a buffer.
    sw.add_flows(&["priority=0,actions=CONTROLLER:32"])
        .expect("flows");
    let unknown = Err(OfpError::BadRequest(BadRequestCode::BufferUnknown));

    let _ = t.ping(0, 1);
    let pi = sw
        .recv_packet_in(Duration::from_secs(5))
        .expect("packet-in");
    assert_ne!(pi.buffer_id, u32::MAX, "a truncated packet-in is buffered");
    assert_eq!(pi.data.len(), 32);
    assert!(pi.total_len > 32, "{pi:?}");

    // PACKET_OUT naming the buffer sends the whole buffered packet.
    let before = tx_packets(&sw, 2);
    let po = |buffer_id| {
        Message::PacketOut(PacketOut {
            buffer_id,
            in_port: 1,
            actions: vec![Action::Output {
                port: 2,
                max_len: 0,
            }],
            data: Vec::new(),
        })
    };
    assert_eq!(
        sw.send_checked(&po(pi.buffer_id)).expect("answered"),
        Ok(())
    );
    wait_tx_above(&sw, 2, before, "packet-out of a buffer");
    // A buffer is released once.
    assert_eq!(
        sw.send_checked(&po(pi.buffer_id)).expect("answered"),
        unknown
    );
    assert_eq!(
        sw.send_checked(&po(0x0042_0007)).expect("answered"),
        unknown
    );

    // FLOW_MOD with an unknown buffer: the flow is added, the buffer reported unknown.
    let mut fm = plexus_openflow::text::flow::parse_flow_mod(
        "priority=5,udp,actions=drop",
        FlowModCommand::Add,
    )
    .expect("parse");
    fm.buffer_id = 0x0042_0007;
    assert_eq!(
        sw.send_checked(&Message::FlowMod(fm)).expect("answered"),
        unknown
    );
    assert!(
        sw.dump_flows()
            .expect("dump")
            .iter()
            .any(|f| f.contains("priority=5,udp")),
        "flow-mod with an unknown buffer was not applied"
    );

    // FLOW_MOD with a valid buffer: the packet runs through the new flow.
    // (Skip packet-ins from port 2: b's answers to the packet-out.)
    let _ = t.ping(0, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let pi = loop {
        let pi = sw
            .recv_packet_in(Duration::from_secs(5))
            .expect("packet-in");
        if pi.metadata.exact(plexus_openflow::FieldId::InPort) == Some(1) {
            break pi;
        }
        assert!(Instant::now() < deadline, "no packet-in from port 1");
    };
    assert_ne!(pi.buffer_id, u32::MAX);
    let before = tx_packets(&sw, 2);
    let mut fm = plexus_openflow::text::flow::parse_flow_mod(
        "priority=10,in_port=1,actions=output:2",
        FlowModCommand::Add,
    )
    .expect("parse");
    fm.buffer_id = pi.buffer_id;
    assert_eq!(
        sw.send_checked(&Message::FlowMod(fm)).expect("answered"),
        Ok(())
    );
    wait_tx_above(&sw, 2, before, "flow-mod releasing a buffer");
    sw.barrier().expect("connection lives on");
}

/// Kills (by pid) and reaps a daemon this test started; removes its dir.
struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(self.0.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// No root needed: a portless standalone switch from a config file, with
/// command-line flags overriding some of its settings.
#[test]
fn config_file_settings_and_flag_overrides() {
    let dir = std::env::temp_dir().join(unique_name("plxc-conf-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let ctl = dir.join("d.ctl");
    let cfg = dir.join("d.toml");
    std::fs::write(
        &cfg,
        format!(
            "bridge = \"brf\"\ndpid = 4660\nfail_mode = \"standalone\"\n\
             ctl = \"{}\"\npacket_in_buffers = 3\n[forwarding]\nbatch = 8\n",
            ctl.display()
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_plexus-vswitchd"))
        .arg("--config")
        .arg(&cfg)
        .args(["--bridge", "brflag", "--no-pin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut d = Daemon(child, dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while appctl(&ctl, &["version"]).map(|o| o.status.success()) != Some(true) {
        assert!(
            Instant::now() < deadline && !matches!(d.0.try_wait(), Ok(Some(_))),
            "daemon did not come up with {}",
            cfg.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sh = ok(&ctl, &["show"]);
    // bridge from the flag, dpid (decimal 4660 = 0x1234), fail mode and buffers from the file.
    assert!(
        sh.starts_with("brflag: dpid 0000000000001234, fail-mode standalone"),
        "{sh}"
    );
    assert!(sh.contains("packet-in buffers: 3 (0 in use)"), "{sh}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ctl, &["--format", "json", "show"])).expect("json");
    assert_eq!(v["bridge"], "brflag");
    assert_eq!(v["fail_mode"], "standalone");
    // The trace names the bridge from the flag; the file's name is unknown.
    assert!(ok(&ctl, &["trace", "brflag", "in_port=1"]).contains("bridge(\"brflag\")"));
    let o = appctl(&ctl, &["trace", "brf", "in_port=1"]).expect("run");
    assert_eq!(o.status.code(), Some(2));
}

/// Local responders end to end with the kernel's own ARP, ND and ping: flows
/// `controller(userdata=<Plexus responder>)` added with `ovs-ofctl` (no
/// controller connected at all) make plexus-vswitchd answer a gateway
/// address that no host owns, and `responder/show` counts the replies.
#[test]
fn local_responders_answer_arp_nd_and_ping_without_a_controller() {
    use plexus_responder::Spec;
    if !(prereq::require_root() && prereq::require_tools(&["ip", "ping", "ethtool", "ovs-ofctl"])) {
        return;
    }
    let mut t = Topo::new();
    let port = free_port();
    let listen = format!("ptcp:{port}:127.0.0.1");
    let ctl = t.ctl();
    let ctl_s = ctl.to_string_lossy().into_owned();
    let ns = t.sw.name().to_string();
    t.start(&[
        "--netns",
        &ns,
        "--port",
        "sa=1",
        "--port",
        "sb=2",
        "--port-type",
        "afpacket",
        "--listen",
        &listen,
        "--ctl",
        &ctl_s,
        "--bridge",
        "brr",
    ]);
    let rmac = [0x0a, 0, 0, 0, 0x79, 0x01];
    let gw4: std::net::Ipv4Addr = "10.79.0.254".parse().unwrap();
    let gw6: std::net::Ipv6Addr = "fd00:79::fe".parse().unwrap();
    let ud = |s: Spec| s.ofctl_userdata();
    for f in [
        format!(
            "priority=100,arp,arp_op=1,arp_tpa={gw4},actions=controller(userdata={})",
            ud(Spec::Arp { mac: rmac, ip: gw4 })
        ),
        format!(
            "priority=100,icmp,nw_dst={gw4},icmp_type=8,icmp_code=0,actions=controller(userdata={})",
            ud(Spec::Icmp4Echo { mac: rmac, ip: gw4 })
        ),
        format!(
            "priority=100,icmp6,icmp_type=135,icmp_code=0,nd_target={gw6},actions=controller(userdata={})",
            ud(Spec::Nd {
                mac: rmac,
                ip: gw6,
                router: true
            })
        ),
        format!(
            "priority=100,icmp6,ipv6_dst={gw6},icmp_type=128,icmp_code=0,actions=controller(userdata={})",
            ud(Spec::Icmp6Echo { mac: rmac, ip: gw6 })
        ),
    ] {
        ofctl(port, &["add-flow", &f]);
    }
    let h = &t.hosts[0];
    h.ip(&["-6", "addr", "add", "fd00:79::1/64", "dev", "ha", "nodad"])
        .expect("v6 addr");
    let ping = |args: &[&str]| {
        h.command("ping")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        ping(&["-c", "2", "-W", "1", "-i", "0.2", "10.79.0.254"]),
        "ping to the IPv4 gateway not answered"
    );
    assert!(
        ping(&["-6", "-c", "2", "-W", "1", "-i", "0.2", "fd00:79::fe"]),
        "ping to the IPv6 gateway not answered"
    );
    let n4 = h.ip(&["neigh", "show", "10.79.0.254"]).expect("neigh");
    assert!(n4.contains("lladdr 0a:00:00:00:79:01"), "{n4}");
    let n6 = h
        .ip(&["-6", "neigh", "show", "fd00:79::fe"])
        .expect("neigh6");
    assert!(
        n6.contains("lladdr 0a:00:00:00:79:01") && n6.contains("router"),
        "{n6}"
    );
    let js = ok(&ctl, &["--format", "json", "responder/show"]);
    let v: serde_json::Value = serde_json::from_str(&js).expect("json");
    let n = |k: &str| v[k]["replies"].as_u64().unwrap_or(0);
    assert!(n("arp") >= 1, "{js}");
    assert!(n("nd") >= 1, "{js}");
    assert!(n("icmp4_echo") >= 2, "{js}");
    assert!(n("icmp6_echo") >= 2, "{js}");
    let text = ok(&ctl, &["responder/show"]);
    assert!(text.contains("bad_spec 0"), "{text}");
}
