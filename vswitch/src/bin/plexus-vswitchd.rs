//! `plexus-vswitchd`: the Plexus switch daemon.
//!
//! Switch mode (default): `--port NAME[=OFPORT]`... become OpenFlow ports of
//! one bridge; a datapath thread owns them and the pipeline; controllers are
//! reached actively (`--controller tcp:IP:PORT`, reconnecting) and/or
//! passively (`--listen ptcp:PORT[:IP]`). `--from-env` takes the os-ken switch
//! tester's contract (`TARGET_DPID`, `CONTROLLER`, `TARGET_PORTS`,
//! `TARGET_NETNS`). `--netns NAME` opens the ports inside that network
//! namespace on the datapath thread while the control connections stay in the
//! caller's namespace.
//!
//! Benchmark mode, `--fwd IN OUT`: forward every frame between two ports in
//! both directions on one pinned thread (the data-plane benchmark's DUT).

use std::process::ExitCode;
use std::time::Duration;

use plexus_openflow::conn::{PassiveTarget, Target};
use plexus_vswitch::agent::{Agent, AgentConfig, FailMode, control};
use plexus_vswitch::datapath::{self, DpPort, Engine, full::FullPipeline, simple::SimplePipeline};

use clap::{Parser, ValueEnum};
use plexus_vswitch::port::afpacket::AfPacketPort;
use plexus_vswitch::port::afxdp::{AfXdpOptions, AfXdpPort};
use plexus_vswitch::port::tap::TapPort;
use plexus_vswitch::port::vxlan::{self, VxlanConfig, VxlanPort};
use plexus_vswitch::port::{DEFAULT_BATCH, PacketBatch, Port, PortStats};
use plexus_vswitch::sys;
use plexus_vswitch::sys::bpf::XdpModeRequest;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PortType {
    /// AF_XDP (XDP redirect into an XSK socket), copy mode.
    Afxdp,
    /// AF_PACKET raw socket with recvmmsg/sendmmsg.
    Afpacket,
    /// Tap device (created if missing).
    Tap,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FailModeArg {
    /// Keep the flows while no controller is connected.
    Secure,
    /// Act as a plain switch while no controller is connected.
    Standalone,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpMode {
    /// Native, falling back to generic.
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP only.
    Generic,
}

#[derive(Debug, Parser)]
#[command(
    name = "plexus-vswitchd",
    version,
    about = "Plexus userspace virtual switch"
)]
struct Args {
    /// Benchmark mode: forward all frames between two interfaces, both directions.
    #[arg(long, num_args = 2, value_names = ["IN", "OUT"])]
    fwd: Vec<String>,
    /// Datapath id (hex, optional 0x prefix).
    #[arg(long, value_name = "HEX")]
    dpid: Option<String>,
    /// An interface to add as OpenFlow port (numbered 1, 2, ... unless given).
    #[arg(long = "port", value_name = "NAME[=OFPORT]")]
    ports: Vec<String>,
    /// A VXLAN tunnel port (repeatable), OVS `type=vxlan` options:
    /// `remote_ip=IP|flow`, `key=VNI|flow`, `local_ip=IP` (held by the
    /// underlay interface; default: the route's source towards a fixed
    /// remote_ip), `dst_port` (4789), `tos=N|inherit`,
    /// `ttl=N|inherit`, `df_default=true|false`, `underlay=IFACE`.
    #[arg(
        long = "vxlan",
        value_name = "NAME[=OFPORT]:remote_ip=IP,key=N,local_ip=IP,..."
    )]
    vxlan: Vec<String>,
    /// Active controller connection (repeatable), reconnecting with backoff.
    #[arg(long = "controller", value_name = "tcp:IP:PORT")]
    controllers: Vec<String>,
    /// Passive OpenFlow listener (repeatable), e.g. ptcp:6653 or ptcp:6653:127.0.0.1.
    #[arg(long = "listen", value_name = "ptcp:PORT[:IP]")]
    listen: Vec<String>,
    /// Behaviour while no controller is connected.
    #[arg(long, value_enum, default_value = "secure")]
    fail_mode: FailModeArg,
    /// Open the ports inside this network namespace (/run/netns/NAME).
    #[arg(long)]
    netns: Option<String>,
    /// Take the os-ken switch tester's env contract: TARGET_DPID, CONTROLLER,
    /// TARGET_PORTS (OpenFlow ports 1, 2, ...), TARGET_NETNS.
    #[arg(long)]
    from_env: bool,
    /// Use the small built-in pipeline (output/goto/groups/meters, no
    /// header rewrites) instead of the full OpenFlow pipeline.
    #[arg(long)]
    simple_pipeline: bool,
    /// Port implementation (AF_XDP falls back to AF_PACKET in switch mode).
    #[arg(long, value_enum, default_value = "afxdp")]
    port_type: PortType,
    /// XDP attach mode (AF_XDP ports).
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpMode,
    /// Frames per rx/tx batch (1..=256).
    #[arg(long, default_value_t = DEFAULT_BATCH as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch: u16,
    /// Empty polling rounds before sleeping in poll(2); 0 = sleep at once.
    #[arg(long, default_value_t = 0)]
    spin: u32,
    /// sched_yield(2) after each empty polling round.
    #[arg(long)]
    yield_idle: bool,
    /// Do not pin the forwarding thread to the CPU it starts on.
    #[arg(long)]
    no_pin: bool,
}

fn open_port(name: &str, args: &Args) -> anyhow::Result<Box<dyn Port>> {
    Ok(match args.port_type {
        PortType::Afxdp => {
            let mode = match args.xdp_mode {
                XdpMode::Auto => XdpModeRequest::Auto,
                XdpMode::Native => XdpModeRequest::Native,
                XdpMode::Generic => XdpModeRequest::Generic,
            };
            let p = AfXdpPort::open(
                name,
                AfXdpOptions {
                    mode,
                    ..Default::default()
                },
            )?;
            eprintln!("{name}: AF_XDP queue 0, {:?} XDP, copy mode", p.xdp_mode());
            Box::new(p)
        }
        PortType::Afpacket => {
            eprintln!("{name}: AF_PACKET");
            Box::new(AfPacketPort::open(name)?)
        }
        PortType::Tap => {
            eprintln!("{name}: tap");
            Box::new(TapPort::open(name)?)
        }
    })
}

fn print_stats(p: &dyn Port) {
    let PortStats {
        rx_packets,
        rx_bytes,
        rx_drops,
        rx_errors,
        tx_packets,
        tx_bytes,
        tx_drops,
        tx_errors,
    } = p.stats();
    let l = p.link_state();
    eprintln!(
        "{}: link admin={} oper={} rx {rx_packets} pkts {rx_bytes} B drop {rx_drops} err {rx_errors} | tx {tx_packets} pkts {tx_bytes} B drop {tx_drops} err {tx_errors}",
        p.name(),
        if l.admin_up { "up" } else { "down" },
        if l.oper_up { "up" } else { "down" },
    );
    let d = p.details();
    if !d.is_empty() {
        eprintln!("{}: {d}", p.name());
    }
}

/// Full batches taken from one port before the other gets its turn.
const BURSTS: usize = 4;

/// The forwarding loop: poll both ports; when both are idle for `spin` rounds,
/// flush pending TX and sleep in poll(2) until a port becomes readable.
fn forward(
    a: &mut dyn Port,
    b: &mut dyn Port,
    batch_size: usize,
    spin: u32,
    yield_idle: bool,
) -> anyhow::Result<()> {
    let mut batch = PacketBatch::new(batch_size);
    let fds: Vec<_> = [a.rx_fd(), b.rx_fd()].into_iter().flatten().collect();
    let mut idle = 0u32;
    let (mut loops, mut polls, mut busy) = (0u64, 0u64, 0u64);
    while !sys::terminate_requested() {
        loops += 1;
        // Up to `BURSTS` full batches per direction per round, then one TX
        // kick per port (flush) for all of them.
        let mut n = 0;
        for _ in 0..BURSTS {
            let k = a.rx_batch(&mut batch);
            if k > 0 {
                b.tx_batch(&mut batch);
            }
            n += k;
            if k < batch_size {
                break;
            }
        }
        for _ in 0..BURSTS {
            let k = b.rx_batch(&mut batch);
            if k > 0 {
                a.tx_batch(&mut batch);
            }
            n += k;
            if k < batch_size {
                break;
            }
        }
        a.flush();
        b.flush();
        if n > 0 {
            busy += 1;
            idle = 0;
            continue;
        }
        idle += 1;
        if idle > spin {
            sys::poll_readable(&fds, 100)?;
            polls += 1;
            idle = 0;
        } else if yield_idle {
            // Give the CPU to whoever feeds us (NAPI kthread, softirq) when
            // they share our core; returns at once if nobody else is runnable.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    eprintln!("loop: {loops} rounds, {busy} with traffic, {polls} poll(2) sleeps");
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    sys::install_terminate_handler()?;
    if !args.no_pin {
        match sys::pin_to_current_cpu() {
            Ok(cpu) => eprintln!("forwarding thread pinned to CPU{cpu}"),
            Err(e) => eprintln!("warning: cannot pin to a CPU: {e}"),
        }
    }
    let mut a = open_port(&args.fwd[0], &args)?;
    let mut b = open_port(&args.fwd[1], &args)?;
    eprintln!(
        "forwarding {} <-> {} (batch {}, spin {})",
        a.name(),
        b.name(),
        args.batch,
        args.spin
    );
    let r = forward(
        a.as_mut(),
        b.as_mut(),
        args.batch as usize,
        args.spin,
        args.yield_idle,
    );
    print_stats(a.as_ref());
    print_stats(b.as_ref());
    r
}

/// Opens a switch port: AF_XDP falls back to AF_PACKET.
fn open_switch_port(name: &str, args: &Args) -> anyhow::Result<Box<dyn Port>> {
    match open_port(name, args) {
        Ok(p) => Ok(p),
        Err(e) if matches!(args.port_type, PortType::Afxdp) => {
            eprintln!("{name}: AF_XDP failed ({e:#}); falling back to AF_PACKET");
            Ok(Box::new(AfPacketPort::open(name)?))
        }
        Err(e) => Err(e),
    }
}

fn parse_ports(specs: &[String]) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for s in specs {
        let (name, no) = match s.split_once('=') {
            Some((n, p)) => (n.to_string(), p.parse::<u32>()?),
            None => (s.clone(), next),
        };
        anyhow::ensure!((1..0xffff_ff00).contains(&no), "bad port number in {s}");
        anyhow::ensure!(
            !out.iter().any(|(_, n)| *n == no),
            "duplicate port number {no}"
        );
        next = no + 1;
        out.push((name, no));
    }
    Ok(out)
}

/// `--vxlan` specs → (name, OpenFlow port, config); ports without a number
/// continue after the highest `--port` number.
fn parse_vxlans(
    specs: &[String],
    ports: &[(String, u32)],
) -> anyhow::Result<Vec<(String, u32, VxlanConfig)>> {
    let mut next = ports.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let mut out: Vec<(String, u32, VxlanConfig)> = Vec::new();
    for s in specs {
        let (name, no, cfg) = vxlan::parse_cli_spec(s).map_err(anyhow::Error::msg)?;
        let no = no.unwrap_or(next);
        anyhow::ensure!((1..0xffff_ff00).contains(&no), "bad port number in {s}");
        anyhow::ensure!(
            !ports.iter().any(|p| p.1 == no) && !out.iter().any(|p| p.1 == no),
            "duplicate port number {no}"
        );
        next = no + 1;
        out.push((name, no, cfg));
    }
    Ok(out)
}

fn switch(mut args: Args) -> anyhow::Result<()> {
    if args.from_env {
        if let Ok(d) = std::env::var("TARGET_DPID") {
            args.dpid.get_or_insert(d);
        }
        if let Ok(c) = std::env::var("CONTROLLER")
            && !c.is_empty()
        {
            args.controllers.push(c);
        }
        if let Ok(p) = std::env::var("TARGET_PORTS") {
            args.ports.extend(p.split_whitespace().map(str::to_string));
        }
        if let Ok(n) = std::env::var("TARGET_NETNS")
            && !n.is_empty()
        {
            args.netns.get_or_insert(n);
        }
    }
    let dpid = match &args.dpid {
        Some(d) => u64::from_str_radix(d.trim_start_matches("0x"), 16)?,
        None => 1,
    };
    let ports = parse_ports(&args.ports)?;
    let vxlans = parse_vxlans(&args.vxlan, &ports)?;
    let controllers: Vec<Target> = args
        .controllers
        .iter()
        .map(|c| c.parse())
        .collect::<Result<_, _>>()?;
    let listeners: Vec<PassiveTarget> = args
        .listen
        .iter()
        .map(|c| c.parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        !controllers.is_empty() || !listeners.is_empty(),
        "need --controller or --listen (or --fwd IN OUT)"
    );
    sys::install_terminate_handler()?;
    let (ctl_tx, ctl_rx) = datapath::ctl_channel()?;
    let agent = Agent::new(AgentConfig {
        datapath_id: dpid,
        fail_mode: match args.fail_mode {
            FailModeArg::Secure => FailMode::Secure,
            FailModeArg::Standalone => FailMode::Standalone,
        },
    });
    // The datapath thread: enter the netns (if any), open the ports, report, run.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let netns = args.netns.clone();
    let simple = args.simple_pipeline;
    let dp = std::thread::Builder::new().name("datapath".into()).spawn(
        move || -> anyhow::Result<()> {
            let open = || -> anyhow::Result<Vec<DpPort>> {
                if let Some(ns) = &netns {
                    let path = if ns.contains('/') {
                        std::path::PathBuf::from(ns)
                    } else {
                        std::path::Path::new("/run/netns").join(ns)
                    };
                    sys::enter_netns(&path).map_err(|e| anyhow::anyhow!("netns {ns}: {e}"))?;
                }
                let _ = sys::raise_memlock_limit();
                let mut v = Vec::new();
                for (name, no) in &ports {
                    let p = open_switch_port(name, &args)?;
                    eprintln!("port {no}: {name}");
                    v.push(DpPort::new(*no, p));
                }
                for (name, no, cfg) in &vxlans {
                    let p = VxlanPort::open(name, cfg.clone())?;
                    eprintln!("port {no}: {name} (vxlan {:?})", p.config());
                    v.push(DpPort::new(*no, Box::new(p)));
                }
                Ok(v)
            };
            let ports = match open() {
                Ok(p) => {
                    let _ = ready_tx.send(Ok(()));
                    p
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let engine: Box<dyn Engine> = if simple {
                Box::new(SimplePipeline::new())
            } else {
                Box::new(FullPipeline::new())
            };
            datapath::run(ports, engine, agent, ctl_rx)?;
            Ok(())
        },
    )?;
    ready_rx.recv()??;
    eprintln!("datapath {dpid:016x} up");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for l in &listeners {
            control::start_passive(l, ctl_tx.clone()).await?;
        }
        for c in controllers {
            tokio::spawn(control::run_active(c, ctl_tx.clone()));
        }
        while !sys::terminate_requested() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;
    drop(rt);
    match dp.join() {
        Ok(r) => r,
        Err(_) => anyhow::bail!("datapath thread panicked"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = if args.fwd.is_empty() {
        switch(args)
    } else {
        run(args)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus-vswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
