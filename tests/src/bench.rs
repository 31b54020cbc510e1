//! `plexus-topo bench`: the project's own data-plane benchmark. It follows the
//! method of the referee `../shared/bench/dataplane.sh` so that its figures
//! can be set beside the referee's, and measures every switch in the same run:
//!
//! ```text
//!   src netns (s0) ──veth── [ DUT netns: d0 ─ switch ─ d1 ] ──veth── (k0) sink netns
//! ```
//!
//! DUTs: `plexus` (plexus-vswitchd, AF_XDP ports, flows in_port 1↔2),
//! `ovs-afxdp` (userspace Open vSwitch, afxdp-nonpmd ports, the same flows)
//! and `bridge` (the Linux bridge). Per DUT and round: UDP packets/s at the
//! sink (60-byte frames from a sendmmsg generator, `flows` source ports, sent
//! to a station behind k0 that k0 drops at once), ping latency (avg, p99) and
//! TCP throughput (iperf3). The generator, ping and iperf3 run on `gen_cpu`,
//! the switch on `dut_cpu`; the veths' receive work is steered to `dut_cpu`
//! (threaded NAPI for XDP-attached veths, RPS otherwise). Veths have one
//! queue each. Addresses come from 198.18.0.0/15 (RFC 2544) and exist only in
//! the namespaces created here; every namespace and process is removed at the
//! end, also on error.

use crate::netns::Netns;
use crate::ovs::{NetnsMode, Ovs};
use crate::proc::{run_ok, wait_until};
use crate::rawsock::RawSock;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SRC_MAC: &str = "02:00:00:00:00:01";
const SNK_MAC: &str = "02:00:00:00:00:02";
/// A station behind k0 that never talks: k0 counts its frames and drops them.
const STREAM_DST_MAC: &str = "02:00:00:00:00:03";
const SRC_IP: &str = "198.18.0.1";
const SNK_IP: &str = "198.18.0.2";
const SPORT_BASE: u16 = 1024;
const DPORT: u16 = 9;

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Dut {
    /// plexus-vswitchd with AF_XDP ports.
    Plexus,
    /// Open vSwitch userspace datapath with afxdp-nonpmd ports (the reference).
    OvsAfxdp,
    /// The Linux bridge.
    Bridge,
}

impl Dut {
    pub fn name(self) -> &'static str {
        match self {
            Dut::Plexus => "plexus",
            Dut::OvsAfxdp => "ovs-afxdp",
            Dut::Bridge => "bridge",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub duts: Vec<Dut>,
    pub rounds: u32,
    /// Seconds of the packet-rate window.
    pub secs: u32,
    /// Distinct UDP source ports.
    pub flows: u16,
    /// Frame size without FCS (60..=1514).
    pub size: usize,
    /// iperf3 seconds (0: no TCP test).
    pub tcp_secs: u32,
    /// Pings (0: no latency test).
    pub pings: u32,
    pub gen_cpu: u32,
    pub dut_cpu: u32,
}

/// One DUT in one round.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub kpps: f64,
    pub offered_kpps: f64,
    pub tcp_gbps: Option<f64>,
    pub ping_avg_us: Option<f64>,
    pub ping_p99_us: Option<f64>,
}

/// Every DUT's samples, in round order.
pub type Results = BTreeMap<Dut, Vec<Result<Sample, String>>>;

/// Runs the benchmark; `log` gets progress lines.
pub fn run(o: &Opts, log: &mut dyn FnMut(&str)) -> Result<Results> {
    if !(60..=1514).contains(&o.size) || o.flows == 0 || o.rounds == 0 || o.secs == 0 {
        bail!("size must be 60-1514, flows, rounds and secs at least 1");
    }
    let mut res: Results = BTreeMap::new();
    for round in 1..=o.rounds {
        for &d in &o.duts {
            log(&format!("round {round}/{}: {}", o.rounds, d.name()));
            let r = one(d, o, log).map_err(|e| format!("{e:#}"));
            match &r {
                Ok(s) => log(&format!(
                    "  {}: {:.1} kpps (offered {:.1}), TCP {}, ping avg/p99 {}/{} us",
                    d.name(),
                    s.kpps,
                    s.offered_kpps,
                    s.tcp_gbps.map_or("-".into(), |g| format!("{g:.2} Gb/s")),
                    s.ping_avg_us.map_or("-".into(), |v| format!("{v:.0}")),
                    s.ping_p99_us.map_or("-".into(), |v| format!("{v:.0}")),
                )),
                Err(e) => log(&format!("  {}: FAILED: {e}", d.name())),
            }
            res.entry(d).or_default().push(r);
        }
    }
    Ok(res)
}

/// The three namespaces of one measurement (removed on drop).
struct Topo {
    src: Netns,
    dut: Netns,
    snk: Netns,
}

fn uniq() -> String {
    format!("{:x}", std::process::id() & 0xffff)
}

fn veth(a: &Netns, an: &str, b: &Netns, bn: &str) -> Result<()> {
    // One queue each: AF_XDP binds one queue, and nothing may arrive on a queue nobody polls.
    a.ip(&[
        "link",
        "add",
        an,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        bn,
        "netns",
        b.name(),
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
    ])?;
    Ok(())
}

fn topo_up(userspace: bool) -> Result<Topo> {
    let u = uniq();
    let t = Topo {
        src: Netns::create(&format!("plxb-{u}-src"))?,
        dut: Netns::create(&format!("plxb-{u}-dut"))?,
        snk: Netns::create(&format!("plxb-{u}-snk"))?,
    };
    for n in [&t.src, &t.dut, &t.snk] {
        n.ip(&["link", "set", "lo", "up"])?;
    }
    veth(&t.src, "s0", &t.dut, "d0")?;
    veth(&t.snk, "k0", &t.dut, "d1")?;
    t.dut.ip(&["link", "set", "d0", "up"])?;
    t.dut.ip(&["link", "set", "d1", "up"])?;
    t.src.ip(&["link", "set", "s0", "address", SRC_MAC])?;
    t.snk.ip(&["link", "set", "k0", "address", SNK_MAC])?;
    t.src
        .ip(&["addr", "add", &format!("{SRC_IP}/24"), "dev", "s0"])?;
    t.snk
        .ip(&["addr", "add", &format!("{SNK_IP}/24"), "dev", "k0"])?;
    t.src.ip(&["link", "set", "s0", "up"])?;
    t.snk.ip(&["link", "set", "k0", "up"])?;
    if userspace {
        // A userspace switch forwards CHECKSUM_PARTIAL frames as they are.
        for (n, i) in [(&t.src, "s0"), (&t.snk, "k0")] {
            run_ok(
                n.command("ethtool").args(["-K", i, "tx", "off"]),
                Duration::from_secs(5),
            )?;
        }
    }
    Ok(t)
}

fn counter(ns: &Netns, iface: &str, what: &str) -> Result<u64> {
    let out = run_ok(
        ns.command("cat")
            .arg(format!("/sys/class/net/{iface}/statistics/{what}")),
        Duration::from_secs(5),
    )?;
    Ok(out.trim().parse()?)
}

/// A process killed (and reaped) on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(None))
}

/// Everything a DUT runs (dropped last-started first).
#[derive(Default)]
struct Running {
    procs: Vec<Bg>,
    ovs: Option<Ovs>,
}

fn bin(name: &str) -> Result<PathBuf> {
    crate::cloud::find_bin(name)
}

fn pin_all_threads(pid: u32, cpu: u32) -> Result<()> {
    run_ok(
        Command::new("taskset").args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()]),
        Duration::from_secs(5),
    )?;
    Ok(())
}

fn dut_start(d: Dut, t: &Topo, o: &Opts) -> Result<Running> {
    let mut r = Running::default();
    let flows = "priority=10,in_port=1,actions=output:2\npriority=10,in_port=2,actions=output:1\n";
    match d {
        Dut::Bridge => {
            t.dut.ip(&["link", "add", "br0", "type", "bridge"])?;
            t.dut.ip(&["link", "set", "d0", "master", "br0"])?;
            t.dut.ip(&["link", "set", "d1", "master", "br0"])?;
            t.dut.ip(&["link", "set", "br0", "up"])?;
        }
        Dut::Plexus => {
            let port = 20_000 + (std::process::id() % 10_000) as u16;
            let child = Command::new("taskset")
                .args(["-c", &o.dut_cpu.to_string()])
                .arg(bin("plexus-vswitchd")?)
                .args(["--netns", t.dut.name(), "--port", "d0=1", "--port", "d1=2"])
                .args(["--port-type", "afxdp", "--fail-mode", "secure"])
                .args(["--listen", &format!("ptcp:{port}:127.0.0.1")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting plexus-vswitchd")?;
            r.procs.push(Bg(child));
            let target = format!("tcp:127.0.0.1:{port}");
            if !wait_until(Duration::from_secs(20), || {
                run_ok(
                    Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "show", &target]),
                    Duration::from_secs(3),
                )
                .is_ok()
            }) {
                bail!("plexus-vswitchd did not answer on {target}");
            }
            let f = tempfile::NamedTempFile::new()?;
            std::fs::write(f.path(), flows)?;
            run_ok(
                Command::new("ovs-ofctl")
                    .args(["-O", "OpenFlow13", "--bundle", "add-flows", &target])
                    .arg(f.path()),
                Duration::from_secs(10),
            )?;
        }
        Dut::OvsAfxdp => {
            let ovs = Ovs::builder()
                .netns(NetnsMode::Named(t.dut.name().to_owned()))
                .flow_limit(200_000)
                .start()
                .context("starting Open vSwitch")?;
            for pid in ovs.pids() {
                pin_all_threads(pid, o.dut_cpu)?;
            }
            for (i, n) in ["d0", "d1"].iter().enumerate() {
                ovs.add_port_with(
                    n,
                    i as u32 + 1,
                    &[
                        "type=afxdp-nonpmd",
                        "options:xdp-mode=native",
                        "options:n_rxq=1",
                    ],
                )?;
            }
            ovs.ofctl(&["del-flows"])?;
            for l in flows.lines() {
                ovs.ofctl(&["add-flow", l])?;
            }
            r.ovs = Some(ovs);
        }
    }
    Ok(r)
}

fn napi_threads() -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("napi/")) {
            v.push(pid);
        }
    }
    v
}

/// Steers the DUT's veth receive work to the DUT CPU (a veth receives on the
/// sending CPU otherwise, which would give the DUT a free helper core).
fn steer_rx(t: &Topo, cpu: u32) -> Result<()> {
    for i in ["d0", "d1"] {
        let link = t.dut.ip(&["link", "show", i])?;
        let xdp = link.lines().next().is_some_and(|l| l.contains("xdp"));
        if xdp {
            let before = napi_threads();
            run_ok(
                t.dut
                    .command("sh")
                    .args(["-c", &format!("echo 1 > /sys/class/net/{i}/threaded")]),
                Duration::from_secs(5),
            )?;
            for p in napi_threads().into_iter().filter(|p| !before.contains(p)) {
                let _ = pin_all_threads(p, cpu);
            }
        } else {
            run_ok(
                t.dut.command("sh").args([
                    "-c",
                    &format!(
                        "echo {:x} > /sys/class/net/{i}/queues/rx-0/rps_cpus",
                        1u32 << cpu
                    ),
                ]),
                Duration::from_secs(5),
            )?;
        }
    }
    Ok(())
}

fn one(d: Dut, o: &Opts, log: &mut dyn FnMut(&str)) -> Result<Sample> {
    let t = topo_up(d != Dut::Bridge)?;
    let mut dut = dut_start(d, &t, o)?;
    let exe = std::env::current_exe()?;
    let gen_cmd = |secs: u32| {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            t.src.name(),
            "taskset",
            "-c",
            &o.gen_cpu.to_string(),
        ])
        .arg(&exe)
        .args(["udpgen", "s0", "--flows", &o.flows.to_string()])
        .args(["--size", &o.size.to_string(), "--secs", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let mut g = Bg(gen_cmd(o.secs + 30).spawn().context("generator")?);
    let gen_died = |g: &mut Bg| -> anyhow::Error {
        let mut err = String::new();
        if let Some(e) = g.0.stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut err);
        }
        anyhow::anyhow!("the generator exited: {}", err.trim())
    };
    let c0 = counter(&t.snk, "k0", "rx_packets")?;
    if !wait_until(Duration::from_secs(20), || {
        counter(&t.snk, "k0", "rx_packets").is_ok_and(|c| c >= c0 + 1000)
    }) {
        if !alive(&mut g.0) {
            return Err(gen_died(&mut g));
        }
        bail!("{}: no forwarding within 20 s", d.name());
    }
    steer_rx(&t, o.dut_cpu)?;
    std::thread::sleep(Duration::from_secs(1));
    let offered = |t: &Topo| -> Result<u64> {
        Ok(counter(&t.src, "s0", "tx_packets")? + counter(&t.src, "s0", "tx_dropped")?)
    };
    let (s0, k0, t0) = (
        offered(&t)?,
        counter(&t.snk, "k0", "rx_packets")?,
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(u64::from(o.secs)));
    let (s1, k1, dt) = (
        offered(&t)?,
        counter(&t.snk, "k0", "rx_packets")?,
        t0.elapsed(),
    );
    if !alive(&mut g.0) {
        return Err(gen_died(&mut g));
    }
    for p in &mut dut.procs {
        if !alive(&mut p.0) {
            bail!("{} exited during the window", d.name());
        }
    }
    drop(g);
    let secs = dt.as_secs_f64();
    let mut s = Sample {
        kpps: (k1 - k0) as f64 / secs / 1e3,
        offered_kpps: (s1 - s0) as f64 / secs / 1e3,
        ..Sample::default()
    };
    if o.pings > 0 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                t.src.name(),
                "taskset",
                "-c",
                &o.gen_cpu.to_string(),
            ])
            .args([
                "ping",
                "-n",
                "-c",
                &o.pings.to_string(),
                "-i",
                "0.01",
                "-W",
                "1",
                SNK_IP,
            ])
            .output()?;
        let (avg, p99) = ping_stats(&String::from_utf8_lossy(&out.stdout));
        s.ping_avg_us = avg;
        s.ping_p99_us = p99;
    }
    if o.tcp_secs > 0 {
        s.tcp_gbps = tcp(&t, o)
            .inspect_err(|e| log(&format!("  iperf3: {e:#}")))
            .ok();
    }
    drop(dut);
    Ok(s)
}

/// (avg, p99) in microseconds of the `time=… ms` lines of ping's output.
pub fn ping_stats(out: &str) -> (Option<f64>, Option<f64>) {
    let mut t: Vec<f64> = out
        .split("time=")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect();
    if t.is_empty() {
        return (None, None);
    }
    t.sort_by(f64::total_cmp);
    let avg = t.iter().sum::<f64>() / t.len() as f64;
    // Nearest rank, as the referee computes it.
    let rank = (99 * t.len()).div_ceil(100).max(1) - 1;
    (Some(avg), Some(t[rank.min(t.len() - 1)]))
}

fn tcp(t: &Topo, o: &Opts) -> Result<f64> {
    let cpu = o.gen_cpu.to_string();
    let _srv = Bg(Command::new("ip")
        .args(["netns", "exec", t.snk.name(), "taskset", "-c", &cpu])
        .args(["iperf3", "-s", "-1", "-B", SNK_IP, "-p", "5201"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 -s (apt-get install iperf3)")?);
    std::thread::sleep(Duration::from_millis(300));
    let out = run_ok(
        Command::new("ip")
            .args(["netns", "exec", t.src.name(), "taskset", "-c", &cpu])
            .args([
                "iperf3",
                "-c",
                SNK_IP,
                "-p",
                "5201",
                "--connect-timeout",
                "3000",
                "-J",
            ])
            .args(["-t", &o.tcp_secs.to_string()]),
        Duration::from_secs(u64::from(o.tcp_secs) + 20),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3: no sum_received")
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians per DUT and ratios to `ovs-afxdp` (pps and TCP: DUT/OVS, higher is
/// better; p99: DUT/OVS, lower is better), as a text table.
pub fn report(res: &Results) -> String {
    let med = |d: Dut, f: &dyn Fn(&Sample) -> Option<f64>| {
        median(
            res.get(&d)
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_ref().ok().and_then(f))
                .collect(),
        )
    };
    let base = |f: &dyn Fn(&Sample) -> Option<f64>| med(Dut::OvsAfxdp, f);
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "-".into(),
    };
    let num = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
    let kpps = |s: &Sample| Some(s.kpps);
    let offered = |s: &Sample| Some(s.offered_kpps);
    let gbps = |s: &Sample| s.tcp_gbps;
    let avg = |s: &Sample| s.ping_avg_us;
    let p99 = |s: &Sample| s.ping_p99_us;
    let mut out = format!(
        "{:<10} {:>8} {:>6} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7}\n",
        "DUT",
        "kpps",
        "x ovs",
        "offered",
        "TCP Gb/s",
        "x ovs",
        "ping avg",
        "p99 us",
        "x ovs",
        "ok/fail"
    );
    for (d, v) in res {
        let ok = v.iter().filter(|r| r.is_ok()).count();
        out.push_str(&format!(
            "{:<10} {:>8} {:>6} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7}\n",
            d.name(),
            num(med(*d, &kpps), 1),
            ratio(med(*d, &kpps), base(&kpps)),
            num(med(*d, &offered), 1),
            num(med(*d, &gbps), 2),
            ratio(med(*d, &gbps), base(&gbps)),
            num(med(*d, &avg), 0),
            num(med(*d, &p99), 0),
            ratio(med(*d, &p99), base(&p99)),
            format!("{ok}/{}", v.len() - ok),
        ));
    }
    for (d, v) in res {
        for (i, r) in v.iter().enumerate() {
            if let Err(e) = r {
                out.push_str(&format!("{} round {}: {e}\n", d.name(), i + 1));
            }
        }
    }
    out
}

/// Replaces the text between the `<!-- plexus-topo bench: begin -->` and
/// `<!-- plexus-topo bench: end -->` markers of `doc` with `section`
/// (appends the markers and the section when absent).
pub fn splice(doc: &str, section: &str) -> String {
    const BEGIN: &str = "<!-- plexus-topo bench: begin -->";
    const END: &str = "<!-- plexus-topo bench: end -->";
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{section}{}", &doc[..b], &doc[e..])
        }
        _ => format!("{}\n{BEGIN}\n{section}{END}\n", doc.trim_end()),
    }
}

/// `plexus-topo udpgen IFACE`: sends IPv4/UDP frames of `size` bytes from
/// SRC to the sink station, cycling over `flows` source ports, as fast as the
/// interface takes them, for `secs` seconds; returns the frames sent.
pub fn udpgen(iface: &str, flows: u16, size: usize, secs: u32) -> Result<u64> {
    let sock = RawSock::open_tx(iface)?;
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| udp_frame(SPORT_BASE.wrapping_add(i), size))
        .collect::<Result<_>>()?;
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
    let (mut sent, mut at) = (0u64, 0usize);
    let mut batch: Vec<&[u8]> = Vec::with_capacity(64);
    while Instant::now() < deadline {
        batch.clear();
        for k in 0..64 {
            batch.push(refs[(at + k) % refs.len()]);
        }
        let n = sock.send_batch(&batch)?;
        at = (at + n) % refs.len();
        sent += n as u64;
    }
    Ok(sent)
}

fn mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s}"))
}

/// The generator's frame for source port `sport`, padded to `size` bytes.
fn udp_frame(sport: u16, size: usize) -> Result<Vec<u8>> {
    let payload = size.saturating_sub(14 + 20 + 8);
    let b = etherparse::PacketBuilder::ethernet2(mac(SRC_MAC)?, mac(STREAM_DST_MAC)?)
        .ipv4(
            SRC_IP.parse::<std::net::Ipv4Addr>()?.octets(),
            SNK_IP.parse::<std::net::Ipv4Addr>()?.octets(),
            64,
        )
        .udp(sport, DPORT);
    let mut v = Vec::with_capacity(size);
    b.write(&mut v, &vec![0u8; payload])?;
    Ok(v)
}

/// The topology `control_plane_latency` brings up: one plexus-vswitchd
/// chassis, two hosts in a security group whose rules the measurement
/// rewrites, and a pod (so the chassis has what plexus-cni needs: the
/// controller reachable from its namespace and a client token).
const CONTROLLER_TOPO: &str = r#"
name = "plxbc"
[[chassis]]
name = "c1"
switch = "plexus"
[[tenant]]
name = "t"
[[tenant.vpc]]
name = "v"
cidrs = ["10.77.0.0/16"]
[[tenant.vpc.subnet]]
name = "s"
cidr = "10.77.1.0/24"
[[tenant.security_group]]
name = "web"
rules = [{ direction = "egress" }]
[[host]]
name = "h1"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
security_groups = ["web"]
[[host]]
name = "h2"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
security_groups = ["web"]
[[host]]
name = "p0"
kind = "pod"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
security_groups = ["web"]
"#;

/// Latency figures of the control plane, in milliseconds: (p50, p99, max).
#[derive(Debug, Default)]
pub struct ControlPlane {
    /// Security-group edits: REST request → flows acknowledged by the switch.
    pub sg_change: Option<(f64, f64, f64)>,
    /// plexus-cni ADD of a pod (the plugin run as a runtime runs it, until
    /// it printed its result: veth, addresses, controller port, switch port).
    pub cni_add: Option<(f64, f64, f64)>,
    /// plexus-cni DEL of that pod.
    pub cni_del: Option<(f64, f64, f64)>,
}

/// Control-plane latency on one plexus-vswitchd chassis: `changes`
/// security-group rule edits through the REST API, each timed from the
/// request until the chassis reports the new revision realized (flows
/// acknowledged by the switch after a barrier); then `pods` sequential pod
/// ADDs and DELs with the real plexus-cni binary.
pub fn control_plane_latency(
    changes: u32,
    pods: u32,
    log: &mut dyn FnMut(&str),
) -> Result<ControlPlane> {
    let path = std::path::Path::new("<plexus-topo bench>");
    let cloud = crate::cloud::spec::Cloud::parse(CONTROLLER_TOPO, path)?;
    let r = crate::cloud::up(&cloud, path, &mut |s: &str| log(&format!("  {s}")))?;
    let groups = r.api.get("/v1/security-groups")?;
    let sg = groups["items"]
        .as_array()
        .and_then(|v| v.iter().find(|g| g["name"] == "web"))
        .context("security group web")?;
    let (id, tenant) = (
        sg["id"].as_str().context("sg id")?.to_owned(),
        sg["tenant_id"].clone(),
    );
    let chassis = r.state.chassis.first().context("chassis")?.clone();
    let mut out = ControlPlane::default();
    let mut ms = Vec::new();
    for i in 0..changes {
        let mut rules = vec![serde_json::json!({"direction": "egress"})];
        if i % 2 == 0 {
            rules.push(
                serde_json::json!({"direction": "ingress", "protocol": "tcp",
                "port_min": 1000 + i, "port_max": 1000 + i}),
            );
        }
        let body = serde_json::json!({"tenant_id": tenant, "name": "web", "rules": rules});
        let t0 = Instant::now();
        let obj = r.api.put(&format!("/v1/security-groups/{id}"), body)?;
        let rev = obj["revision"].as_u64().context("revision")?;
        loop {
            let s = r.api.get("/v1/status")?;
            if s["chassis"][&chassis.id]["realized_revision"]
                .as_u64()
                .unwrap_or(0)
                >= rev
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("revision {rev} not realized within 10 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    out.sg_change = percentiles(ms);
    if pods > 0 {
        log(&format!("  {pods} pods: plexus-cni ADD, then DEL"));
        let subnet = r.api.get("/v1/subnets")?["items"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["name"] == "s"))
            .and_then(|s| s["id"].as_str())
            .context("subnet s")?
            .to_owned();
        let db = format!(
            "unix:{}",
            crate::cloud::workload::ovsdb_sock(&r.dir, &chassis.name).display()
        );
        let at = crate::cloud::workload::Attach {
            dir: &r.dir,
            api_port: r.state.api_port,
            chassis_ns: &chassis.netns,
            chassis_id: &chassis.id,
            ovsdb: db,
            bridge: crate::cloud::workload::BRIDGE,
        };
        let sgs = [id.clone()];
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for i in 0..pods {
            let host = format!("bench{i}");
            let ns = Netns::create(&format!("plx-plxbc-{host}"))?;
            let t0 = Instant::now();
            crate::cloud::workload::cni_add(&at, &host, ns.name(), &subnet, &sgs, None, None)?;
            add.push(t0.elapsed().as_secs_f64() * 1e3);
            let t0 = Instant::now();
            crate::cloud::workload::cni_del(&at, &host, ns.name(), &subnet, &sgs)?;
            del.push(t0.elapsed().as_secs_f64() * 1e3);
            ns.delete()?;
        }
        out.cni_add = percentiles(add);
        out.cni_del = percentiles(del);
    }
    r.teardown()?;
    Ok(out)
}

/// (p50, p99, max) by nearest rank; None for no samples.
fn percentiles(mut ms: Vec<f64>) -> Option<(f64, f64, f64)> {
    ms.sort_by(f64::total_cmp);
    let last = *ms.last()?;
    let pick = |q: usize| ms[((q * ms.len()).div_ceil(100).max(1) - 1).min(ms.len() - 1)];
    Some((pick(50), pick(99), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_stats_take_the_nearest_rank_p99() {
        let mut out = String::new();
        for i in 1..=200 {
            out.push_str(&format!(
                "64 bytes from 198.18.0.2: icmp_seq={i} ttl=64 time=0.{i:03} ms\n"
            ));
        }
        let (avg, p99) = ping_stats(&out);
        assert!((avg.unwrap() - 100.5).abs() < 1e-6, "{avg:?}");
        assert!((p99.unwrap() - 198.0).abs() < 1e-6, "{p99:?}");
        assert_eq!(ping_stats("no answers"), (None, None));
    }

    #[test]
    fn generator_frames_have_the_requested_size_and_ports() {
        let f = udp_frame(1030, 60).unwrap();
        assert_eq!(f.len(), 60);
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        match p.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!((u.source_port(), u.destination_port()), (1030, DPORT));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(udp_frame(1024, 1514).unwrap().len(), 1514);
    }

    #[test]
    fn report_gives_ratios_to_ovs_and_splices_into_the_document() {
        let s = |k: f64, g: f64, p: f64| {
            Ok(Sample {
                kpps: k,
                offered_kpps: 1000.0,
                tcp_gbps: Some(g),
                ping_avg_us: Some(p / 2.0),
                ping_p99_us: Some(p),
            })
        };
        let mut r: Results = BTreeMap::new();
        r.insert(
            Dut::OvsAfxdp,
            vec![
                s(300.0, 1.5, 1000.0),
                s(320.0, 1.6, 1100.0),
                s(310.0, 1.4, 900.0),
            ],
        );
        r.insert(
            Dut::Plexus,
            vec![
                s(620.0, 2.0, 900.0),
                Err("boom".into()),
                s(600.0, 2.0, 800.0),
            ],
        );
        let t = report(&r);
        let plexus = t.lines().find(|l| l.starts_with("plexus")).unwrap();
        assert!(
            plexus.contains(" 610.0 ") && plexus.contains(" 1.97 "),
            "{t}"
        );
        assert!(plexus.ends_with("2/1"), "{t}");
        assert!(t.contains("plexus round 2: boom"), "{t}");
        let doc = "# B\n\nintro\n";
        let once = splice(doc, "X\n");
        assert!(
            once.contains("<!-- plexus-topo bench: begin -->\nX\n<!-- plexus-topo bench: end -->")
        );
        let twice = splice(&once, "Y\n");
        assert!(
            twice.contains("begin -->\nY\n<!--") && !twice.contains("X\n"),
            "{twice}"
        );
        assert!(twice.starts_with("# B\n\nintro"));
    }
}
