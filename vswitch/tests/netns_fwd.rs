//! Netns system tests: `plexus-vswitchd --fwd` between two veths, with AF_XDP
//! and with AF_PACKET ports.
//!
//! Topology (all namespaces created here, named `plxt-<tag>-<pid>-{a,b,s}`,
//! deleted on drop, also when a test panics):
//!
//! ```text
//!  netns a              netns s (switch)              netns b
//!  ha 10.77.0.1 ─veth─ sa ── plexus-vswitchd ── sb ─veth─ hb 10.77.0.2
//! ```
//!
//! Needs root, `ip`, `ping`, `ethtool`. Missing prerequisites: SKIP outside CI,
//! a failure under `CI=true`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_vswitch::sys;

const A_IP: &str = "10.77.0.1";
const B_IP: &str = "10.77.0.2";

/// Returns false (after printing SKIP) if prerequisites are missing outside CI;
/// panics in CI.
fn prerequisites(test: &str) -> bool {
    let mut missing = Vec::new();
    if !sys::is_root() {
        missing.push("root".to_string());
    }
    for tool in ["ip", "ping", "ethtool"] {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file());
        if !found {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("missing prerequisite in CI: {why}");
    }
    eprintln!("SKIP: {why}");
    false
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Topo {
    ns_a: String,
    ns_b: String,
    ns_s: String,
    dut: Option<Child>,
}

impl Topo {
    fn new(tag: &str) -> Self {
        let base = format!("plxt-{tag}-{}", std::process::id());
        let t = Topo {
            ns_a: format!("{base}-a"),
            ns_b: format!("{base}-b"),
            ns_s: format!("{base}-s"),
            dut: None,
        };
        // Leftovers of an earlier run with the same pid: remove them.
        for ns in [&t.ns_a, &t.ns_b, &t.ns_s] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        for ns in [&t.ns_a, &t.ns_b, &t.ns_s] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, h, s, ip) in [(&t.ns_a, "ha", "sa", A_IP), (&t.ns_b, "hb", "sb", B_IP)] {
            run(&[
                "ip", "-n", ns, "link", "add", h, "type", "veth", "peer", "name", s, "netns",
                &t.ns_s,
            ]);
            run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", h]);
            run(&["ip", "-n", ns, "link", "set", h, "up"]);
            run(&["ip", "-n", &t.ns_s, "link", "set", s, "up"]);
            // A userspace switch forwards CHECKSUM_PARTIAL frames unfixed.
            run(&["ip", "netns", "exec", ns, "ethtool", "-K", h, "tx", "off"]);
        }
        t
    }

    fn start_dut(&mut self, extra: &[&str]) {
        let bin = env!("CARGO_BIN_EXE_plexus-vswitchd");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_s, bin, "--fwd", "sa", "sb"])
            .args(extra)
            .arg("--no-pin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus-vswitchd");
        self.dut = Some(child);
    }

    /// Fails the test if the DUT died.
    fn assert_dut_alive(&mut self) {
        let dut = self.dut.as_mut().expect("dut started");
        if let Some(st) = dut.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = dut.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("plexus-vswitchd exited early ({st}): {err}");
        }
    }

    fn ping(&self, from_ns: &str, to: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", from_ns, "ping", "-c", "3", "-W", "1", "-i", "0.2", to,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Pings until it works (the DUT needs a moment to attach), bounded.
    fn ping_eventually(&mut self, from_ns: &str, to: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.assert_dut_alive();
            if self.ping(from_ns, to) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ping {from_ns} -> {to} failed for 15 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the DUT with SIGTERM; returns its stderr and whether it exited 0.
    fn stop_dut(&mut self) -> (bool, String) {
        let Some(mut dut) = self.dut.take() else {
            return (false, String::new());
        };
        // `ip netns exec` execs the binary, so this pid is the DUT itself.
        let _ = Command::new("kill")
            .args(["-TERM", &dut.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = dut.try_wait().expect("try_wait") {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = dut.kill();
                let _ = dut.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = dut.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.is_some_and(|s| s.success()), err)
    }

    fn netns_path(ns: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(ns)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Some(mut dut) = self.dut.take() {
            let _ = dut.kill();
            let _ = dut.wait();
        }
        for ns in [&self.ns_a, &self.ns_b, &self.ns_s] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `f` on a fresh thread that has entered netns `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = Topo::netns_path(ns);
    std::thread::spawn(move || {
        sys::enter_netns(&path).expect("setns");
        f()
    })
}

/// Sends `len` bytes of a pattern from netns a to netns b over TCP and checks
/// every byte arrives intact.
fn tcp_transfer(t: &Topo, len: usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_netns(&t.ns_b, move || {
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        tx.send(l.local_addr().unwrap().port()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut got, mut bad) = (0usize, 0usize);
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != ((got + i) % 251) as u8 {
                    bad += 1;
                }
            }
            got += n;
        }
        s.write_all(b"ok").unwrap();
        (got, bad)
    });
    let port = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server port");
    let client = in_netns(&t.ns_a, move || {
        let addr = SocketAddrV4::new(B_IP.parse().unwrap(), port);
        let mut s =
            TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).expect("write");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut ack = Vec::new();
        s.read_to_end(&mut ack).expect("read ack");
        ack
    });
    let ack = client.join().expect("client thread");
    let (got, bad) = server.join().expect("server thread");
    assert_eq!(ack, b"ok");
    assert_eq!(got, len, "bytes received");
    assert_eq!(bad, 0, "corrupted bytes");
}

fn fwd_test(tag: &str, dut_args: &[&str]) -> String {
    if !prerequisites(tag) {
        return String::new();
    }
    let mut t = Topo::new(tag);
    t.start_dut(dut_args);
    let (a, b) = (t.ns_a.clone(), t.ns_b.clone());
    t.ping_eventually(&a, B_IP);
    assert!(t.ping(&b, A_IP), "ping b -> a");
    tcp_transfer(&t, 8 << 20);
    t.assert_dut_alive();
    let (clean, err) = t.stop_dut();
    assert!(
        clean,
        "plexus-vswitchd did not exit cleanly on SIGTERM: {err}"
    );
    assert!(err.contains("tx "), "stats printed at exit: {err}");
    // The BPF link died with the process: no XDP program left on the ports.
    for dev in ["sa", "sb"] {
        let out = Command::new("ip")
            .args(["-n", &t.ns_s, "link", "show", dev])
            .output()
            .expect("ip link show");
        let text = String::from_utf8_lossy(&out.stdout);
        let attached =
            text.contains("prog/xdp") || text.contains(" xdp ") || text.contains(" xdpgeneric ");
        assert!(!attached, "XDP program still attached to {dev}: {text}");
    }
    eprintln!("{err}");
    err
}

#[test]
fn afpacket_forwarder_ping_and_tcp() {
    fwd_test("afp", &["--port-type", "afpacket"]);
}

#[test]
fn afxdp_forwarder_ping_and_tcp() {
    let log = fwd_test("xdp", &["--port-type", "afxdp"]);
    if !log.is_empty() {
        assert!(log.contains("Native XDP"), "veth takes native XDP: {log}");
    }
}

#[test]
fn afxdp_generic_mode_forwarder_ping_and_tcp() {
    let log = fwd_test("xdpg", &["--port-type", "afxdp", "--xdp-mode", "generic"]);
    if !log.is_empty() {
        assert!(log.contains("Generic XDP"), "generic mode requested: {log}");
    }
}

/// Tap port (created by name) and AF_PACKET port on the same interface, in a
/// private netns: frames written by one come out of the other.
#[test]
fn tap_port_roundtrip_with_afpacket() {
    use plexus_vswitch::port::afpacket::AfPacketPort;
    use plexus_vswitch::port::tap::TapPort;
    use plexus_vswitch::port::{PacketBatch, Port};
    if !prerequisites("tap") {
        return;
    }
    let ns = format!("plxt-tap-{}", std::process::id());
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(Stdio::null())
        .status();
    run(&["ip", "netns", "add", &ns]);
    let _guard = Ns(ns.clone());
    in_netns(&ns, || {
        let mut tap = TapPort::open("plxtap0").expect("create tap");
        assert_eq!(tap.name(), "plxtap0");
        assert!(tap.link_state().admin_up);
        let mut raw = AfPacketPort::open("plxtap0").expect("packet socket on tap");
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x43]);
        frame[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
        let mut b = PacketBatch::new(8);
        // tap -> kernel -> AF_PACKET
        for i in 0..3u8 {
            frame[14] = i;
            assert!(b.push(&frame));
        }
        tap.tx_batch(&mut b);
        assert_eq!(tap.stats().tx_packets, 3);
        let mut got = Vec::new();
        for _ in 0..100 {
            if raw.rx_batch(&mut b) > 0 {
                got.extend(
                    b.iter()
                        .filter(|f| f[12..14] == [0x88, 0xb5])
                        .map(|f| f[14]),
                );
            }
            if got.len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, [0, 1, 2]);
        // AF_PACKET -> kernel -> tap
        b.clear();
        frame[14] = 9;
        assert!(b.push(&frame));
        raw.tx_batch(&mut b);
        assert_eq!(raw.stats().tx_packets, 1);
        let mut seen = false;
        for _ in 0..100 {
            if tap.rx_batch(&mut b) > 0 && b.iter().any(|f| f[12..14] == [0x88, 0xb5] && f[14] == 9)
            {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen, "frame sent on the packet socket reached the tap fd");
        assert!(tap.stats().rx_packets >= 1);
    })
    .join()
    .expect("tap test thread");
}
