//! VXLAN interop: `plexus-vswitchd` with a vxlan port against (a) a Linux
//! kernel `vxlan` device and (b) a userspace Open vSwitch, each in its own
//! network namespace, over a veth underlay.
//!
//! ```text
//!  netns H: h1 10.20.0.1 ─veth─ p1 (port 1) ┐ plexus-vswitchd --netns S
//!                                           │ vx (port 2): vxlan, local_ip 192.168.77.1
//!  netns S: u1 192.168.77.1 ────────────────┘─veth─ u2 192.168.77.2 (netns K or OVS's)
//!  (a) netns K: vxlan0 id 42 (kernel), 10.20.0.2 on it
//!  (b) OVS: br-phy (u2 + internal br-phy 192.168.77.2), br0 (vx type=vxlan, p2 ─veth─ h2 10.20.0.2 in netns H2)
//! ```
//!
//! Both directions: ping and a TCP echo of 200 kB (python3), with the
//! underlay captured by tshark: every packet is VXLAN with the expected VNI,
//! inner TTL 64 (as the hosts sent it), outer and inner IPv4 checksums and
//! the inner ICMP/TCP checksums verify, nothing malformed. Variants: a fixed
//! `key` (no `local_ip`: taken from the route), and `key=flow`/`remote_ip=flow`
//! with `set_field:..->tun_id/tun_dst`.
//! The fixed-key port also gets VXLAN with another VNI and must drop it
//! (counted as rx_dropped in PORT_STATS).
//!
//! Needs root, `ip`, `ping`, `ethtool`, `python3`, `tshark` (+ Open vSwitch
//! for (b)): SKIP outside CI, failure under `CI=true`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_openflow::message::{MultipartReplyBody, MultipartRequestBody, port_no};
use plexus_tests::controller::Switch;
use plexus_tests::netns::{Netns, unique_name, veth};
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq;

const VNI: u32 = 42;
const H1: &str = "10.20.0.1";
const H2: &str = "10.20.0.2";
const U1: &str = "192.168.77.1";
const U2: &str = "192.168.77.2";

/// The interop tests run one at a time: each brings up several namespaces,
/// tshark and (for half of them) a userspace OVS; six at once on a 2-core CI
/// machine once produced one inner TCP segment with a bad checksum in the
/// OVS key=flow capture (not reproduced in isolation; see the issue note).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn prerequisites(ovs: bool) -> bool {
    let mut tools = vec!["ip", "ping", "ethtool", "python3", "tshark"];
    if ovs {
        tools.extend(["ovs-vsctl", "ovs-ofctl", "ovs-vswitchd", "ovsdb-server"]);
    }
    prereq::require_root() && prereq::require_tools(&tools)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

/// A child process killed (by its pid) and reaped on drop.
struct Guard(Option<Child>);

impl Guard {
    fn stop(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            if let Some(mut s) = c.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
        }
        err
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn no_offload(ns: &Netns, dev: &str) {
    let _ = ns
        .command("ethtool")
        .args(["-K", dev, "tx", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The plexus side: host netns H (h1) and switch netns S (p1, u1 with the
/// underlay address); the peer's namespace gets u2.
struct PlexusSide {
    h: Netns,
    s: Netns,
    dut: Guard,
    listen: u16,
}

impl PlexusSide {
    fn new(base: &str, peer: &Netns) -> Self {
        let h = Netns::create(&format!("{base}h")).expect("netns");
        let s = Netns::create(&format!("{base}s")).expect("netns");
        veth("h1", &h, "p1", &s).expect("veth");
        h.ip(&["addr", "add", &format!("{H1}/24"), "dev", "h1"])
            .expect("addr");
        no_offload(&h, "h1");
        veth("u1", &s, "u2", peer).expect("veth");
        s.ip(&["addr", "add", &format!("{U1}/24"), "dev", "u1"])
            .expect("addr");
        no_offload(&s, "u1");
        no_offload(peer, "u2");
        PlexusSide {
            h,
            s,
            dut: Guard(None),
            listen: free_port(),
        }
    }

    fn start(&mut self, vxlan_opts: &str) -> Switch {
        let bin = env!("CARGO_BIN_EXE_plexus-vswitchd");
        let child = Command::new(bin)
            .args(["--netns", self.s.name(), "--port", "p1=1"])
            .args(["--vxlan", &format!("vx=2:{vxlan_opts}")])
            .args(["--port-type", "afpacket"])
            .args(["--listen", &format!("ptcp:{}:127.0.0.1", self.listen)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus-vswitchd");
        self.dut = Guard(Some(child));
        let target = format!("tcp:127.0.0.1:{}", self.listen);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Switch::connect(&target) {
                Ok(sw) => return sw,
                Err(e) => {
                    let exited = self
                        .dut
                        .0
                        .as_mut()
                        .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                    if exited || Instant::now() > deadline {
                        let err = self.dut.stop();
                        panic!("plexus-vswitchd did not come up: {e:#}\n{err}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl PlexusSide {
    /// OVSDB mode: the daemon (in netns S, database in memory) is
    /// configured by `ovs-vsctl` over a unix socket in `dir`, like
    /// ovs-vswitchd: bridge br0, p1 (ofport 1), vx type=vxlan (ofport 2).
    fn start_ovsdb(&mut self, dir: &Path, vxlan_opts: &[&str]) -> Switch {
        let bin = env!("CARGO_BIN_EXE_plexus-vswitchd");
        let db = dir.join("db.sock");
        let child = self
            .s
            .command(bin)
            .arg("--ovsdb-listen")
            .arg(format!("punix:{}", db.display()))
            .arg("--ovs-rundir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus-vswitchd");
        self.dut = Guard(Some(child));
        let up = plexus_tests::proc::wait_until(Duration::from_secs(20), || db.exists());
        if !up {
            panic!("no OVSDB socket: {}", self.dut.stop());
        }
        let mut args: Vec<String> = [
            "--timeout=20",
            &format!("--db=unix:{}", db.display()),
            "add-br",
            "br0",
            "--",
            "set-fail-mode",
            "br0",
            "secure",
            "--",
            "add-port",
            "br0",
            "p1",
            "--",
            "set",
            "interface",
            "p1",
            "ofport_request=1",
            "other_config:port-type=afpacket",
            "--",
            "add-port",
            "br0",
            "vx",
            "--",
            "set",
            "interface",
            "vx",
            "type=vxlan",
            "ofport_request=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(vxlan_opts.iter().map(|o| format!("options:{o}")));
        let out = Command::new("ovs-vsctl")
            .args(&args)
            .output()
            .expect("ovs-vsctl");
        assert!(
            out.status.success(),
            "ovs-vsctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vsctl = |a: &[&str]| {
            let out = Command::new("ovs-vsctl")
                .arg(format!("--db=unix:{}", db.display()))
                .args(a)
                .output()
                .expect("ovs-vsctl");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let ofport = vsctl(&["get", "interface", "vx", "ofport"]);
        let err = vsctl(&["get", "interface", "vx", "error"]);
        assert_eq!(ofport, "2", "vx ofport (error: {err})");
        assert!(vsctl(&["get", "Open_vSwitch", ".", "iface_types"]).contains("vxlan"));
        let mgmt = dir.join("br0.mgmt");
        assert!(plexus_tests::proc::wait_until(
            Duration::from_secs(20),
            || mgmt.exists()
        ));
        Switch::connect(&format!("unix:{}", mgmt.display())).expect("connect br0.mgmt")
    }
}

fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    ns.command("ping")
        .args(["-c", &count.to_string(), "-W", "1", "-i", "0.2", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pings until it works (ARP and neighbour resolution on the way), then
/// demands 5 of 5.
fn ping_ok(ns: &Netns, dst: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(ns, dst, 1) {
        assert!(Instant::now() < deadline, "{what}: ping {dst} never worked");
    }
    assert!(ping(ns, dst, 5), "{what}: ping {dst} lost packets");
}

const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(4); s.settimeout(30)
for _ in range(4):
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.settimeout(10)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
"#;

const ECHO_CLIENT: &str = r#"
import socket, sys, os
data = os.urandom(200000)
c = socket.create_connection((sys.argv[1], 5001), timeout=10)
c.sendall(data); c.shutdown(socket.SHUT_WR)
got = b''
while True:
    d = c.recv(65536)
    if not d: break
    got += d
sys.exit(0 if got == data else 3)
"#;

/// A 200 kB TCP echo from `client` to the server in `server` at `ip`.
fn tcp_echo(server: &Netns, client: &Netns, ip: &str, what: &str) {
    let srv = server
        .command("python3")
        .args(["-c", ECHO_SERVER, ip])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("echo server");
    let mut srv = Guard(Some(srv));
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = client
            .command("python3")
            .args(["-c", ECHO_CLIENT, ip])
            .output()
            .expect("echo client");
        if out.status.success() {
            ok = true;
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(300));
    }
    let err = srv.stop();
    assert!(ok, "{what}: TCP echo to {ip} failed: {last}\nserver: {err}");
}

/// tshark writing the underlay traffic of `dev` in `ns` to a file. The
/// capture runs on the peer's end of the underlay: plexus transmits with
/// `PACKET_QDISC_BYPASS`, which packet taps on its own end do not see.
struct Capture {
    child: Guard,
    file: PathBuf,
}

impl Capture {
    fn start(ns: &Netns, dev: &str, dir: &Path) -> Capture {
        let file = dir.join(format!("{dev}.pcapng"));
        let child = ns
            .command("tshark")
            .args(["-i", dev, "-f", "udp", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark");
        // tshark is capturing once it has written the file header.
        let ok = plexus_tests::proc::wait_until(Duration::from_secs(20), || {
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 0)
        });
        assert!(ok, "tshark did not start");
        std::thread::sleep(Duration::from_millis(300));
        Capture {
            child: Guard(Some(child)),
            file,
        }
    }

    /// Stops the capture; returns `-T fields` rows of the VXLAN packets.
    fn finish(mut self) -> Vec<Vec<String>> {
        std::thread::sleep(Duration::from_millis(500));
        self.child.stop();
        let fields = [
            "vxlan.vni",
            "ip.ttl",
            "ip.checksum.status",
            "udp.srcport",
            "udp.dstport",
            "icmp.checksum.status",
            "tcp.checksum.status",
            "ip.flags.df",
            "ip.src",
        ];
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(&self.file)
            .args(["-o", "ip.check_checksum:TRUE"])
            .args(["-o", "tcp.check_checksum:TRUE"])
            .args(["-o", "udp.check_checksum:TRUE"])
            .args(["-Y", "vxlan", "-T", "fields", "-E", "separator=|"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("tshark -r");
        assert!(out.status.success(), "tshark -r failed");
        // The inner payloads are random bytes; Thrift's heuristic dissector
        // once took a TCP segment's for Thrift and found it malformed (CI).
        let malformed = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["--disable-protocol", "thrift"])
            .args(["-Y", "_ws.malformed || _ws.expert.severity == error"])
            .output()
            .expect("tshark -r");
        assert!(
            malformed.stdout.is_empty(),
            "malformed/erroneous packets in the capture:\n{}",
            String::from_utf8_lossy(&malformed.stdout)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }
}

/// Every captured VXLAN packet decodes cleanly: the VNI, inner TTL 64 (as
/// the hosts sent it: no hop decremented it), outer and inner IPv4
/// checksums good (status 1), inner ICMP/TCP checksums good, nothing
/// malformed; both directions present. What plexus sent: outer TTL 64, DF,
/// UDP source port in 32768..61000, several source ports (flow entropy).
fn check_capture(rows: &[Vec<String>], vni: u32, what: &str) {
    assert!(!rows.is_empty(), "{what}: no VXLAN packet captured");
    let (mut from_plexus, mut to_plexus, mut icmp, mut tcp) = (0, 0, 0, 0);
    let mut src_ports = std::collections::BTreeSet::new();
    for r in rows {
        let f = |i: usize| -> Vec<&str> {
            r.get(i).map(|s| s.split(',').collect()).unwrap_or_default()
        };
        assert_eq!(f(0), [vni.to_string().as_str()], "{what}: VNI in {r:?}");
        let ttls = f(1);
        assert!(!ttls.is_empty(), "{what}: no outer IPv4 in {r:?}");
        // ARP / IPv6 neighbour discovery inside: outer checks only.
        if ttls.len() == 2 {
            assert_eq!(ttls[1], "64", "{what}: inner TTL in {r:?}");
        }
        assert!(
            f(2).iter().all(|s| *s == "1"),
            "{what}: IPv4 checksums in {r:?}"
        );
        assert_eq!(f(4).first(), Some(&"4789"), "{what}: dst port in {r:?}");
        if let Some(c) = f(5).first().filter(|c| !c.is_empty()) {
            assert_eq!(*c, "1", "{what}: ICMP checksum in {r:?}");
            icmp += 1;
        }
        if let Some(c) = f(6).first().filter(|c| !c.is_empty()) {
            assert_eq!(*c, "1", "{what}: TCP checksum in {r:?}");
            tcp += 1;
        }
        match f(8).first() {
            Some(&U1) => {
                from_plexus += 1;
                assert_eq!(ttls[0], "64", "{what}: outer TTL in {r:?}");
                assert!(
                    matches!(f(7).first(), Some(&"1") | Some(&"True")),
                    "{what}: outer DF in {r:?}"
                );
                let sport: u16 = f(3).first().and_then(|p| p.parse().ok()).unwrap_or(0);
                assert!((32768..61000).contains(&sport), "{what}: src port in {r:?}");
                src_ports.insert(sport);
            }
            Some(&U2) => to_plexus += 1,
            _ => panic!("{what}: unexpected outer source in {r:?}"),
        }
    }
    assert!(
        from_plexus >= 10 && to_plexus >= 10,
        "{what}: {from_plexus} sent by plexus, {to_plexus} received"
    );
    assert!(icmp >= 20, "{what}: only {icmp} ICMP packets");
    assert!(tcp >= 20, "{what}: only {tcp} TCP packets");
    // ICMP echo and 2+ TCP connections: different inner flows, different
    // outer source ports.
    assert!(src_ports.len() >= 3, "{what}: source ports {src_ports:?}");
}

/// An inner packet too big for the underlay (1500) once encapsulated: a
/// 1473-byte ICMP payload with DF from h1 is dropped by the vxlan port,
/// which answers with ICMP fragmentation-needed, MTU 1450 (1500 minus
/// VXLAN's 50); ping reports it. 1422 bytes (= 1450 - 28) still pass.
fn path_mtu(h: &Netns, dst: &str, what: &str) {
    let out = h
        .command("ping")
        .args(["-c", "2", "-W", "1", "-M", "do", "-s", "1472", dst])
        .output()
        .expect("ping");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: oversized ping passed: {text}"
    );
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "{what}: no frag-needed with mtu 1450: {text}"
    );
    let out = h
        .command("ping")
        .args(["-c", "2", "-W", "1", "-M", "do", "-s", "1422", dst])
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "{what}: 1450-byte ping failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn rx_dropped(sw: &Switch, port: u32) -> u64 {
    let mut n = 0;
    for b in sw
        .multipart(MultipartRequestBody::PortStats {
            port_no: port_no::ANY,
        })
        .expect("port stats")
    {
        if let MultipartReplyBody::PortStats(p) = b {
            n += p
                .iter()
                .filter(|s| s.port_no == port)
                .map(|s| s.rx_dropped)
                .sum::<u64>();
        }
    }
    n
}

fn plexus_flows(sw: &Switch, flow_key: bool) {
    if flow_key {
        sw.add_flows(&[
            &format!(
                "table=0,priority=10,in_port=1,actions=set_field:{VNI}->tun_id,set_field:{U2}->tun_dst,output:2"
            ),
            &format!("table=0,priority=10,in_port=2,tun_id={VNI},tun_src={U2},actions=output:1"),
        ])
        .expect("flows");
    } else {
        sw.add_flows(&[
            "table=0,priority=10,in_port=1,actions=output:2",
            &format!("table=0,priority=10,in_port=2,tun_id={VNI},tun_src={U2},tun_dst={U1},actions=output:1"),
        ])
        .expect("flows");
    }
}

fn opts(flow_key: bool) -> String {
    if flow_key {
        format!("remote_ip=flow,key=flow,local_ip={U1}")
    } else {
        format!("remote_ip={U2},key={VNI},dst_port=4789,ttl=64,df_default=true")
    }
}

fn kernel_interop(flow_key: bool) {
    if !prerequisites(false) {
        return;
    }
    let what = if flow_key {
        "kernel, key=flow"
    } else {
        "kernel, key=42"
    };
    let base = unique_name("plxv-");
    let k = Netns::create(&format!("{base}k")).expect("netns");
    let mut side = PlexusSide::new(&base, &k);
    k.ip(&["addr", "add", &format!("{U2}/24"), "dev", "u2"])
        .expect("addr");
    let kernel_vxlan = |dev: &str, id: u32, addr: &str| {
        k.ip(&[
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            &id.to_string(),
            "remote",
            U1,
            "local",
            U2,
            "dstport",
            "4789",
            "dev",
            "u2",
        ])
        .expect("kernel vxlan");
        k.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])
            .expect("addr");
        k.ip(&["link", "set", dev, "up"]).expect("up");
        no_offload(&k, dev);
    };
    kernel_vxlan("vxk0", VNI, H2);
    let sw = side.start(&opts(flow_key));
    plexus_flows(&sw, flow_key);
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start(&k, "u2", dir.path());
    ping_ok(&side.h, H2, what);
    ping_ok(&k, H1, what);
    tcp_echo(&k, &side.h, H2, what);
    tcp_echo(&side.h, &k, H1, what);
    let rows = cap.finish();
    check_capture(&rows, VNI, what);
    path_mtu(&side.h, H2, what);
    if !flow_key {
        // VNI 43 towards a fixed key=42 port: dropped and counted.
        kernel_vxlan("vxk1", VNI + 1, "10.21.0.2");
        let before = rx_dropped(&sw, 2);
        let _ = ping(&k, "10.21.0.1", 3);
        let ok =
            plexus_tests::proc::wait_until(Duration::from_secs(5), || rx_dropped(&sw, 2) > before);
        assert!(
            ok,
            "unknown VNI not counted as rx_dropped: {}",
            rx_dropped(&sw, 2)
        );
    }
    drop(sw);
    side.dut.stop();
}

#[test]
fn vxlan_kernel_fixed_key_ping_tcp_capture_unknown_vni() {
    let _serial = serial();
    kernel_interop(false);
}

#[test]
fn vxlan_kernel_flow_key_ping_tcp_capture() {
    let _serial = serial();
    kernel_interop(true);
}

fn ovs_interop(flow_key: bool) {
    if !prerequisites(true) {
        return;
    }
    let what = if flow_key {
        "OVS, key=flow"
    } else {
        "OVS, key=42"
    };
    let base = unique_name("plxo-");
    let ovs = Ovs::builder().start().expect("private OVS");
    let ons = ovs.netns().expect("OVS netns");
    let h2 = Netns::create(&format!("{base}o")).expect("netns");
    let mut side = PlexusSide::new(&base, ons);
    veth("h2", &h2, "p2", ons).expect("veth");
    h2.ip(&["addr", "add", &format!("{H2}/24"), "dev", "h2"])
        .expect("addr");
    no_offload(&h2, "h2");
    // OVS sends encapsulated frames over the underlay MTU into the void (no
    // ICMP): hosts behind VXLAN use 1450, as OVS's documentation says.
    h2.ip(&["link", "set", "h2", "mtu", "1450"]).expect("mtu");
    side.h
        .ip(&["link", "set", "h1", "mtu", "1450"])
        .expect("mtu");
    // Underlay bridge holding the tunnel endpoint address (OVS userspace
    // tunnelling: the IP lives on a bridge's internal port).
    ovs.vsctl(&[
        "add-br",
        "br-phy",
        "--",
        "set",
        "bridge",
        "br-phy",
        "datapath_type=netdev",
        "fail_mode=standalone",
        "--",
        "add-port",
        "br-phy",
        "u2",
    ])
    .expect("br-phy");
    ons.ip(&["addr", "add", &format!("{U2}/24"), "dev", "br-phy"])
        .expect("addr br-phy");
    ons.ip(&["link", "set", "br-phy", "up"]).expect("up");
    let key = if flow_key {
        "flow".to_string()
    } else {
        VNI.to_string()
    };
    ovs.add_port_with(
        "vx",
        2,
        &[
            "type=vxlan",
            &format!("options:remote_ip={U1}"),
            &format!("options:local_ip={U2}"),
            &format!("options:key={key}"),
        ],
    )
    .expect("OVS vxlan port");
    ovs.add_port("p2", 3).expect("OVS host port");
    let ovs_flows: Vec<String> = if flow_key {
        vec![
            format!("table=0,priority=10,in_port=3,actions=set_field:{VNI}->tun_id,output:2"),
            format!("table=0,priority=10,in_port=2,tun_id={VNI},actions=output:3"),
        ]
    } else {
        vec![
            "table=0,priority=10,in_port=3,actions=output:2".to_string(),
            "table=0,priority=10,in_port=2,actions=output:3".to_string(),
        ]
    };
    for f in &ovs_flows {
        ovs.ofctl(&["add-flow", f]).expect("OVS flow");
    }
    let sw = side.start(&opts(flow_key));
    plexus_flows(&sw, flow_key);
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = Capture::start(ons, "u2", dir.path());
    ping_ok(&side.h, H2, what);
    ping_ok(&h2, H1, what);
    tcp_echo(&h2, &side.h, H2, what);
    tcp_echo(&side.h, &h2, H1, what);
    let rows = cap.finish();
    check_capture(&rows, VNI, what);
    drop(sw);
    side.dut.stop();
}

#[test]
fn vxlan_ovs_fixed_key_ping_tcp_capture() {
    let _serial = serial();
    ovs_interop(false);
}

#[test]
fn vxlan_ovs_flow_key_ping_tcp_capture() {
    let _serial = serial();
    ovs_interop(true);
}

/// The underlay's neighbour handling from scratch: no entry for the peer,
/// `RTM_NEWNEIGH` + `NTF_USE` makes the kernel ARP for it, and the entry
/// becomes usable with the peer's MAC; the route lookup names the underlay
/// interface (run on a thread inside the switch's namespace).
#[test]
fn underlay_neighbour_resolution_via_netlink() {
    let _serial = serial();
    if !prerequisites(false) {
        return;
    }
    use plexus_vswitch::port::vxlan::netlink::{Rtnl, nud};
    let base = unique_name("plxn-");
    let k = Netns::create(&format!("{base}k")).expect("netns");
    let side = PlexusSide::new(&base, &k);
    k.ip(&["addr", "add", &format!("{U2}/24"), "dev", "u2"])
        .expect("addr");
    let out = k.ip(&["-br", "link", "show", "dev", "u2"]).expect("link");
    let mac = out.split_whitespace().nth(2).expect("mac").to_string();
    let path = format!("/run/netns/{}", side.s.name());
    let r = std::thread::spawn(move || -> Result<String, String> {
        plexus_vswitch::sys::enter_netns(Path::new(&path)).map_err(|e| e.to_string())?;
        let mut nl = Rtnl::open().map_err(|e| e.to_string())?;
        let u2: std::net::Ipv4Addr = U2.parse().map_err(|_| "addr")?;
        let route = nl.route_get(u2).map_err(|e| e.to_string())?;
        let ifindex = plexus_vswitch::sys::ifindex("u1").map_err(|e| e.to_string())?;
        if route.oif != ifindex || route.gateway.is_some() {
            return Err(format!("route {route:?}, u1 is {ifindex}"));
        }
        let link = nl.link_get(ifindex).map_err(|e| e.to_string())?;
        if link.mtu != 1500 || !link.up {
            return Err(format!("link {link:?}"));
        }
        if nl
            .addr_ifindex(U1.parse().map_err(|_| "addr")?)
            .map_err(|e| e.to_string())?
            != Some(ifindex)
        {
            return Err("local_ip not found on u1".into());
        }
        if let Some(n) = nl.neigh_get(ifindex, u2).map_err(|e| e.to_string())? {
            return Err(format!("entry before any traffic: {n:?}"));
        }
        nl.neigh_use(ifindex, u2).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = nl.neigh_get(ifindex, u2).map_err(|e| e.to_string())?;
            if let Some(n) = n
                && n.state & nud::VALID != 0
                && let Some(m) = n.lladdr
            {
                return Ok(m
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"));
            }
            if Instant::now() > deadline {
                return Err(format!("not resolved: {n:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .expect("thread");
    assert_eq!(r, Ok(mac));
}

/// OVSDB mode: `ovs-vsctl add-port br0 vx -- set interface vx type=vxlan
/// options:remote_ip=… options:key=42` opens the vxlan port (through
/// `ovsdb_config::port_opener`), then ping + TCP against the kernel
/// `vxlan` device, capture checked as above.
#[test]
fn vxlan_ovsdb_mode_kernel_ping_tcp_capture() {
    let _serial = serial();
    if !prerequisites(false) || !prereq::require_tool("ovs-vsctl") {
        return;
    }
    let what = "OVSDB mode, kernel";
    let base = unique_name("plxd-");
    let k = Netns::create(&format!("{base}k")).expect("netns");
    let mut side = PlexusSide::new(&base, &k);
    k.ip(&["addr", "add", &format!("{U2}/24"), "dev", "u2"])
        .expect("addr");
    k.ip(&[
        "link", "add", "vxk0", "type", "vxlan", "id", "42", "remote", U1, "local", U2, "dstport",
        "4789", "dev", "u2",
    ])
    .expect("kernel vxlan");
    k.ip(&["addr", "add", &format!("{H2}/24"), "dev", "vxk0"])
        .expect("addr");
    k.ip(&["link", "set", "vxk0", "up"]).expect("up");
    no_offload(&k, "vxk0");
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = format!("remote_ip={U2}");
    let local = format!("local_ip={U1}");
    let sw = side.start_ovsdb(dir.path(), &[&remote, &local, "key=42"]);
    plexus_flows(&sw, false);
    let cap = Capture::start(&k, "u2", dir.path());
    ping_ok(&side.h, H2, what);
    ping_ok(&k, H1, what);
    tcp_echo(&k, &side.h, H2, what);
    tcp_echo(&side.h, &k, H1, what);
    check_capture(&cap.finish(), VNI, what);
    drop(sw);
    side.dut.stop();
}
