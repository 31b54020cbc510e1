//! `plexus-topo`: bring up a topology of network namespaces around switches,
//! verify it, tear it down. Two kinds of topology files:
//! - cloud topologies (`[controller]` + `[[chassis]]`): the Plexus controller
//!   programs the switches from a model built through its REST API
//!   (`plexus_tests::cloud`);
//! - single-switch topologies (`[switch]` with static flows,
//!   `plexus_tests::topo`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use plexus_tests::cloud::{self, state};
use plexus_tests::fabric;
use plexus_tests::topo::{self, Outcome, Topology};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "plexus-topo",
    about = "Run Plexus test topologies (needs root)"
)]
struct Cli {
    /// Print the outcome as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring the topology up, run its checks, tear it down. Exit 1 on any failure.
    Run { file: PathBuf },
    /// Bring the topology up and leave it running (stop it with `down`).
    Up { file: PathBuf },
    /// Remove what `up` (or a crashed or killed `run`) left behind.
    Down {
        /// The topology file (omit with --all).
        #[arg(required_unless_present = "all")]
        file: Option<PathBuf>,
        /// Every run recorded under /tmp/plexus-topo-*.
        #[arg(long)]
        all: bool,
    },
    /// Run the checks against a topology that is up.
    Check { file: PathBuf },
    /// Validate a topology file without creating anything.
    Validate { file: PathBuf },
    /// List the topologies that are up (recorded runs).
    List,
    /// Run a command in a host's (or chassis's) namespace: exec FILE NODE -- CMD...
    Exec {
        file: PathBuf,
        node: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Ping every host from every other host of a running cloud topology.
    PingAll { file: PathBuf },
    /// TCP throughput from host A to host B with iperf3 (running cloud topology).
    Iperf {
        file: PathBuf,
        a: String,
        b: String,
        /// Test length in seconds.
        #[arg(long, default_value_t = 5)]
        secs: u32,
    },
    /// Ask NODE's switch to explain the packet NODE would send to DST (a host
    /// name or IPv4 address): plexus-appctl trace / ovs-appctl ofproto/trace.
    Trace {
        file: PathBuf,
        node: String,
        dst: String,
        #[arg(long, value_enum, default_value = "icmp")]
        proto: cloud::tools::TraceProto,
        /// Destination port (tcp/udp).
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Data-plane benchmark: plexus-vswitchd vs Open vSwitch AF_XDP vs the Linux
    /// bridge in one run (packets/s, TCP, ping), as ratios to OVS.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        /// `bench scale`: the controller scale scenario instead of the data-plane bench.
        #[command(subcommand)]
        what: Option<BenchCmd>,
        /// DUTs, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "ovs-afxdp,plexus,bridge"
        )]
        duts: Vec<plexus_tests::bench::Dut>,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Seconds of each packet-rate window.
        #[arg(long, default_value_t = 5)]
        secs: u32,
        /// Distinct UDP flows (source ports).
        #[arg(long, default_value_t = 1)]
        flows: u16,
        /// Frame size in bytes without FCS.
        #[arg(long, default_value_t = 60)]
        size: usize,
        /// iperf3 seconds (0 = no TCP test).
        #[arg(long, default_value_t = 5)]
        tcp_secs: u32,
        /// Pings for the latency test (0 = none).
        #[arg(long, default_value_t = 200)]
        pings: u32,
        #[arg(long, default_value_t = 0)]
        gen_cpu: u32,
        #[arg(long, default_value_t = 1)]
        dut_cpu: u32,
        /// Security-group edits timed from the REST request until the switch
        /// has the flows (0 = no controller measurement).
        #[arg(long, default_value_t = 50)]
        controller_changes: u32,
        /// Pods added and deleted one after the other with plexus-cni, each
        /// ADD and DEL timed (0 = no CNI measurement).
        #[arg(long, default_value_t = 20)]
        cni_pods: u32,
        /// Write the result between the `plexus-topo bench` markers of this
        /// Markdown file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// (internal) UDP generator of `bench` (AF_PACKET, sendmmsg).
    #[command(hide = true)]
    Udpgen {
        iface: String,
        #[arg(long, default_value_t = 1)]
        flows: u16,
        #[arg(long, default_value_t = 60)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        secs: u32,
    },
    /// Bring a cloud topology up and soak it: churn (ports, security group
    /// rules, service backends) under traffic for --duration, re-checking the
    /// reachability matrix every round and that RSS and file descriptors of
    /// the controller and switches stay flat; then tear it down.
    Soak {
        file: PathBuf,
        /// How long (30m, 120s, 2h).
        #[arg(long, default_value = "2m")]
        duration: String,
    },
    /// (internal) Send the frames of one attack on eth0 (JSON spec).
    #[command(hide = true)]
    AttackSend { spec: String },
    /// (internal) Print one line per frame seen on an underlay interface
    /// (VXLAN decoded) for SECS seconds.
    #[command(hide = true)]
    VxlanCapture {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value_t = 4)]
        secs: u64,
    },
    /// (internal) Count incoming frames on an interface carrying each marker.
    #[command(hide = true)]
    AttackRecv {
        #[arg(long, default_value = "eth0")]
        iface: String,
        /// Comma-separated 8-hex-digit markers.
        #[arg(long)]
        markers: String,
        /// Stop when this file exists.
        #[arg(long)]
        stop: PathBuf,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// (internal) qemu stand-in of a VM host: relay frames between TAP (in
    /// TAP_NETNS) and a tap `eth0` created in GUEST_NETNS.
    #[command(hide = true)]
    TapRelay {
        #[arg(long)]
        tap: String,
        #[arg(long)]
        tap_netns: String,
        #[arg(long)]
        guest_netns: String,
        #[arg(long)]
        guest_mac: String,
        /// Created once the relay runs.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// (internal) Send small UDP datagrams to ADDR as fast as possible for SECS.
    #[command(hide = true)]
    UdpFlood {
        addr: SocketAddr,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// (internal) Broadcast ARP requests for TARGET from IFACE's MAC and SENDER
    /// address as fast as possible for SECS (a responder packet-in flood).
    #[command(hide = true)]
    ArpFlood {
        target: std::net::Ipv4Addr,
        #[arg(long)]
        sender: std::net::Ipv4Addr,
        #[arg(long, default_value = "eth0")]
        iface: String,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// (internal) Echo one TCP connection; used inside host namespaces.
    #[command(hide = true)]
    TcpEchoServer {
        addr: SocketAddr,
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
    /// (internal) Answer every TCP connection with NAME (service checks).
    #[command(hide = true)]
    NameServer {
        addr: SocketAddr,
        #[arg(long)]
        name: String,
        /// Answer HTTP requests (the name is the body of a 200).
        #[arg(long)]
        http: bool,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// (internal) Open COUNT connections and print `name count` per answer.
    #[command(hide = true)]
    NameClient {
        addr: SocketAddr,
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// Send `GET /` and read the name from the HTTP answer.
        #[arg(long)]
        http: bool,
        #[arg(long, default_value_t = 2)]
        timeout_secs: u64,
    },
    /// (internal) Send bytes to an echo server and compare what comes back.
    #[command(hide = true)]
    TcpEchoClient {
        addr: SocketAddr,
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// The OVN scale scenario (../shared/bench/ovn-scale.sh) through the REST API:
    /// cold, one-change latency, controller restart, memory.
    Scale {
        /// Tenants (each a router + two subnets with the same CIDRs in every tenant).
        #[arg(long, default_value_t = 10)]
        tenants: usize,
        /// Ports per subnet (total ports = 2 × tenants × this).
        #[arg(long, default_value_t = 50)]
        ports_per_switch: usize,
        #[arg(long, default_value_t = 10)]
        sgs: usize,
        /// Remote-group rules per security group.
        #[arg(long, default_value_t = 10)]
        rules: usize,
        #[arg(long, default_value_t = 10)]
        lbs: usize,
        /// Changes of each kind (port into SG, SG rule, LB backend).
        #[arg(long, default_value_t = 50)]
        changes: usize,
        /// Simulated chassis (0 = one plexus-vswitchd with dummy ports).
        #[arg(long, default_value_t = 0)]
        sim_chassis: usize,
        /// Parallel REST clients for the population.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long, default_value_t = 1)]
        restarts: usize,
        /// Append the key=value lines to this file.
        #[arg(long)]
        results: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plexus-topo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ok_if(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the outcomes (table or JSON); returns the number failed.
fn report(outcomes: &[Outcome], json: bool) -> usize {
    if !json {
        return topo::report(outcomes);
    }
    let items: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(ev) => serde_json::json!({"check": o.what, "pass": true, "evidence": ev}),
            Err(e) => serde_json::json!({"check": o.what, "pass": false, "evidence": e}),
        })
        .collect();
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let doc =
        serde_json::json!({"passed": outcomes.len() - failed, "failed": failed, "checks": items});
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    failed
}

fn is_fabric(file: &std::path::Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| fabric::is_fabric(&t))
}

fn require_root() -> Result<()> {
    if plexus_tests::prereq::euid() != Some(0) {
        bail!("needs root (network namespaces, veth, switches): run it with sudo");
    }
    Ok(())
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let exe = std::env::current_exe().context("locating plexus-topo")?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Bench {
            what:
                Some(BenchCmd::Scale {
                    tenants,
                    ports_per_switch,
                    sgs,
                    rules,
                    lbs,
                    changes,
                    sim_chassis,
                    workers,
                    restarts,
                    results,
                }),
            ..
        } => {
            plexus_tests::scale::run(&plexus_tests::scale::Opts {
                tenants,
                ports_per_switch,
                sgs,
                rules,
                lbs,
                changes,
                sim_chassis,
                workers,
                restarts,
                results,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { file } => {
            if is_fabric(&file) {
                let f = fabric::load(&file)?;
                println!(
                    "{}: ok (fat-tree k={})",
                    file.display(),
                    f.fabric.k.get_ref()
                );
            } else if cloud::is_cloud(&file)? {
                let c = cloud::load(&file)?;
                println!(
                    "{}: ok ({} chassis, {} tenants, {} hosts, {} checks)",
                    file.display(),
                    c.chassis.len(),
                    c.tenants.len(),
                    c.hosts.len(),
                    c.checks.len()
                );
            } else {
                let t = Topology::load(&file)?;
                println!(
                    "{}: ok ({} hosts, {} checks)",
                    file.display(),
                    t.hosts.len(),
                    t.checks.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { file } => {
            if is_fabric(&file) {
                let f = fabric::load(&file)?;
                require_root()?;
                let outcomes = fabric::run(&f, &file);
                Ok(ok_if(report(&outcomes, json)))
            } else if cloud::is_cloud(&file)? {
                let c = cloud::load(&file)?;
                require_root()?;
                let outcomes = cloud::run(&c, &file, &exe);
                Ok(ok_if(report(&outcomes, json)))
            } else {
                let t = Topology::load(&file)?;
                require_root()?;
                Ok(ok_if(topo::run(&t, &exe)))
            }
        }
        Cmd::Up { file } => {
            if cloud::is_cloud(&file)? {
                let c = cloud::load(&file)?;
                require_root()?;
                let mut view = plexus_tests::progress::Progress::new();
                let r = cloud::up(&c, &file, &mut |s: &str| view.step(s));
                view.finish();
                let r = r?;
                println!(
                    "topology {} is up (state in {}); stop it with: plexus-topo down {}",
                    c.name(),
                    r.dir.display(),
                    file.display()
                );
                r.persist();
                return Ok(ExitCode::SUCCESS);
            }
            let t = Topology::load(&file)?;
            require_root()?;
            let running = topo::up(&t)?;
            println!(
                "topology {} is up (OVS state in {}); stop it with: plexus-topo down {}",
                t.name,
                t.state_dir().display(),
                file.display()
            );
            running.persist()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { file, all } => {
            require_root()?;
            if all {
                let runs = state::all_runs();
                let mut failed = 0;
                for d in &runs {
                    match state::remove_run(d) {
                        Ok(()) => println!("removed {}", d.display()),
                        Err(e) => {
                            failed += 1;
                            eprintln!("{e:#}");
                        }
                    }
                }
                println!("{} runs removed, {failed} failed", runs.len() - failed);
                return Ok(ok_if(failed));
            }
            let file = file.context("a topology file or --all")?;
            if is_fabric(&file) {
                let f = fabric::load(&file)?;
                state::remove_run(&state::state_dir(f.name.get_ref()))?;
                println!("topology {} is down", f.name.get_ref());
            } else if cloud::is_cloud(&file)? {
                let c = cloud::load(&file)?;
                state::remove_run(&state::state_dir(c.name()))?;
                println!("topology {} is down", c.name());
            } else {
                let t = Topology::load(&file)?;
                topo::down(&t)?;
                println!("topology {} is down", t.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { file } => {
            require_root()?;
            if cloud::is_cloud(&file)? {
                let c = cloud::load(&file)?;
                let mut r = cloud::attach(c)?;
                let outcomes = cloud::verify(&mut r, &exe);
                return Ok(ok_if(report(&outcomes, json)));
            }
            let t = Topology::load(&file)?;
            let dir = t.state_dir();
            let bridge = t.switch.bridge.clone();
            let ofctl = move |args: &[&str]| plexus_tests::ovs::ofctl_at(&dir, &bridge, args);
            // Our controller, over the bridge's management socket (as ovs-ofctl).
            let target = topo::mgmt_target(&t);
            let sw = plexus_tests::controller::Switch::connect(&target)
                .with_context(|| format!("is topology {} up?", t.name))?;
            let outcomes = topo::verify(&t, &ofctl, &sw, &exe);
            sw.close();
            Ok(ok_if(report(&outcomes, json)))
        }
        Cmd::List => {
            for d in state::all_runs() {
                match state::State::load(&d) {
                    Ok(s) => println!(
                        "{}  file={}  api=127.0.0.1:{}  chassis={}  hosts={}  netns={}",
                        d.display(),
                        s.file.display(),
                        s.api_port,
                        s.chassis
                            .iter()
                            .map(|c| format!("{}({})", c.name, c.kind))
                            .collect::<Vec<_>>()
                            .join(","),
                        s.hosts
                            .iter()
                            .map(|h| format!("{}={}", h.name, h.ip))
                            .collect::<Vec<_>>()
                            .join(","),
                        s.netns.len()
                    ),
                    Err(_) => println!("{}  (single-switch topology)", d.display()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { file, node, cmd } => {
            require_root()?;
            let c = cloud::load(&file)?;
            let status = cloud::exec(&c, &node, &cmd)?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        Cmd::Soak { file, duration } => {
            let d = cloud::soak::parse_duration(&duration)?;
            let c = cloud::load(&file)?;
            require_root()?;
            let outcomes = cloud::soak::soak(&c, &file, &exe, d);
            Ok(ok_if(report(&outcomes, json)))
        }
        Cmd::PingAll { file } => {
            require_root()?;
            let c = cloud::load(&file)?;
            let (ok, n, lines) = cloud::ping_all(&c)?;
            for l in lines {
                println!("{l}");
            }
            println!("{ok}/{n} pairs answered");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Iperf { file, a, b, secs } => {
            require_root()?;
            let c = cloud::load(&file)?;
            println!("{}", cloud::tools::iperf(&c, &a, &b, secs)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Trace {
            file,
            node,
            dst,
            proto,
            port,
        } => {
            require_root()?;
            let c = cloud::load(&file)?;
            let (flow, text) = cloud::tools::trace(&c, &node, &dst, proto, port)?;
            println!("Flow: {flow}\n\n{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::VxlanCapture { iface, secs } => {
            cloud::overlay::capture(&iface, secs)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TapRelay {
            tap,
            tap_netns,
            guest_netns,
            guest_mac,
            ready_file,
        } => {
            cloud::workload::relay(
                &tap,
                &tap_netns,
                &guest_netns,
                &guest_mac,
                ready_file.as_deref(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            what: None,
            duts,
            rounds,
            secs,
            flows,
            size,
            tcp_secs,
            pings,
            gen_cpu,
            dut_cpu,
            controller_changes,
            cni_pods,
            write,
        } => {
            require_root()?;
            let o = plexus_tests::bench::Opts {
                duts,
                rounds,
                secs,
                flows,
                size,
                tcp_secs,
                pings,
                gen_cpu,
                dut_cpu,
            };
            let started = std::time::SystemTime::now();
            let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let res = plexus_tests::bench::run(&o, &mut |s: &str| eprintln!("{s}"))?;
            let mut table = plexus_tests::bench::report(&res);
            let mut ctl_failed = false;
            if controller_changes > 0 || cni_pods > 0 {
                eprintln!(
                    "control plane: {controller_changes} security-group edits, {cni_pods} pods"
                );
                let fmt = |(p50, p99, max): (f64, f64, f64)| {
                    format!("p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms")
                };
                match plexus_tests::bench::control_plane_latency(
                    controller_changes,
                    cni_pods,
                    &mut |s: &str| eprintln!("{s}"),
                ) {
                    Ok(cp) => {
                        if let Some(v) = cp.sg_change {
                            table.push_str(&format!(
                                "controller: {controller_changes} security-group edits, REST request -> flows acknowledged by plexus-vswitchd: {}\n",
                                fmt(v)
                            ));
                        }
                        if let (Some(a), Some(d)) = (cp.cni_add, cp.cni_del) {
                            table.push_str(&format!(
                                "plexus-cni: {cni_pods} pods one after the other (plugin started by `ip netns exec` in the chassis namespace): ADD {}; DEL {}\n",
                                fmt(a),
                                fmt(d)
                            ));
                        }
                    }
                    Err(e) => {
                        ctl_failed = true;
                        table.push_str(&format!("control plane: FAILED: {e:#}\n"));
                    }
                }
            }
            print!("{table}");
            if let Some(path) = write {
                let cmd: Vec<String> = std::env::args().collect();
                let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                let when = started
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let section = format!(
                    "Generated by `plexus-topo bench` (started at Unix time {when}; load average before {}, after {}):\n\n```sh\n{}\n```\n\n```\n{table}```\n",
                    load0
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" "),
                    load1
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" "),
                    cmd.join(" ")
                );
                let doc = std::fs::read_to_string(&path).unwrap_or_default();
                std::fs::write(&path, plexus_tests::bench::splice(&doc, &section))?;
                eprintln!("wrote {}", path.display());
            }
            let failed = res.values().flatten().filter(|r| r.is_err()).count();
            Ok(ok_if(failed + usize::from(ctl_failed)))
        }
        Cmd::Udpgen {
            iface,
            flows,
            size,
            secs,
        } => {
            let n = plexus_tests::bench::udpgen(&iface, flows, size, secs)?;
            println!("{n} frames sent");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::AttackSend { spec } => {
            let n = cloud::attack::send_main(&spec)?;
            println!("{n} frames sent");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::AttackRecv {
            iface,
            markers,
            stop,
            max_secs,
        } => {
            let ms = markers
                .split(',')
                .map(|m| {
                    cloud::attack::parse_marker(m).with_context(|| format!("bad marker {m:?}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let counts =
                cloud::attack::recv_main(&iface, &ms, &stop, Duration::from_secs(max_secs))?;
            println!("{}", serde_json::to_string(&counts)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::UdpFlood { addr, secs } => {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
            let payload = [0x5au8; 18];
            let t0 = std::time::Instant::now();
            let (mut sent, mut errors) = (0u64, 0u64);
            while t0.elapsed() < Duration::from_secs(secs) {
                for _ in 0..256 {
                    match sock.send_to(&payload, addr) {
                        Ok(_) => sent += 1,
                        Err(_) => errors += 1,
                    }
                }
            }
            let s = t0.elapsed().as_secs_f64();
            println!(
                "{sent} datagrams in {s:.1} s ({:.0}/s, {errors} send errors)",
                sent as f64 / s
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ArpFlood {
            target,
            sender,
            iface,
            secs,
        } => {
            let mac = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
                .with_context(|| format!("MAC of {iface}"))?;
            let mac = cloud::frames::parse_mac(mac.trim()).context("MAC")?;
            let f = cloud::frames::arp([0xff; 6], mac, 1, mac, sender, [0; 6], target, [0; 4]);
            let batch = [f.as_slice(); 64];
            let sock = plexus_tests::rawsock::RawSock::open_tx(&iface)?;
            let t0 = std::time::Instant::now();
            let mut sent = 0u64;
            while t0.elapsed() < Duration::from_secs(secs) {
                sent += sock.send_batch(&batch)? as u64;
            }
            let s = t0.elapsed().as_secs_f64();
            println!("{sent} ARP requests in {s:.1} s ({:.0}/s)", sent as f64 / s);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TcpEchoServer { addr, timeout_secs } => {
            let n = topo::tcp_echo_server(addr, Duration::from_secs(timeout_secs))?;
            println!("echoed {n} bytes");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::NameServer {
            addr,
            name,
            http,
            timeout_secs,
        } => {
            let n = cloud::name_server(addr, &name, http, Duration::from_secs(timeout_secs))?;
            println!("served {n} connections");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::NameClient {
            addr,
            count,
            http,
            timeout_secs,
        } => {
            for (name, n) in
                cloud::name_client(addr, count, http, Duration::from_secs(timeout_secs))
            {
                println!("{name} {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TcpEchoClient {
            addr,
            bytes,
            timeout_secs,
        } => {
            let t = topo::tcp_echo_client(addr, bytes, Duration::from_secs(timeout_secs))?;
            println!("{bytes} bytes echoed in {} ms", t.as_millis());
            Ok(ExitCode::SUCCESS)
        }
    }
}
