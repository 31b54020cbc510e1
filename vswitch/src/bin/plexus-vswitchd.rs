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
//! OVSDB mode, `--db FILE` and/or `--ovsdb-listen punix:PATH|ptcp:PORT[:IP]`:
//! the daemon serves the `Open_vSwitch` database (durable log in FILE,
//! created if absent; in memory without `--db`) and is configured from it
//! like ovs-vswitchd — bridges, ports, controllers and fail modes follow
//! `ovs-vsctl` live (see `plexus_vswitch::ovsdb_config`).
//!
//! `--config FILE` reads the same settings from TOML
//! ([`plexus_vswitch::conf_file`]); flags given on the command line win.
//! The control socket (`--ctl PATH`, default
//! `/var/run/plexus/plexus-vswitchd.<pid>.ctl` and the stable name
//! `/var/run/plexus/plexus-vswitchd.ctl`) answers `plexus-appctl`
//! (`trace`, `dump-flows`, `dump-cache`, `show`, `cache-flush`, `fdb/show`).
//!
//! Benchmark mode, `--fwd IN OUT`: forward every frame between two ports in
//! both directions on one pinned thread (the data-plane benchmark's DUT).

use std::process::ExitCode;
use std::time::Duration;

use plexus_openflow::conn::{PassiveTarget, Target};
use plexus_vswitch::agent::{Agent, AgentConfig, FailMode, control};
use plexus_vswitch::datapath::{self, DpPort, Engine, full::FullPipeline, simple::SimplePipeline};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use plexus_vswitch::conf_file::FileConfig;
use plexus_vswitch::port::afpacket::AfPacketPort;
use plexus_vswitch::port::afxdp::{AfXdpOptions, AfXdpPort};
use plexus_vswitch::port::tap::TapPort;
use plexus_vswitch::port::vxlan::{self, VxlanConfig, VxlanPort};
use plexus_vswitch::port::{DEFAULT_BATCH, PacketBatch, Port, PortStats};
use plexus_vswitch::sys;
use plexus_vswitch::sys::bpf::XdpModeRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PortType {
    /// AF_XDP (XDP redirect into an XSK socket), copy mode.
    Afxdp,
    /// AF_PACKET raw socket with recvmmsg/sendmmsg.
    Afpacket,
    /// Tap device (created if missing).
    Tap,
    /// No device (OVS's dummy netdev): never receives, drops what it sends;
    /// for control-plane scale runs with thousands of ports.
    Dummy,
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
    about = "Plexus userspace virtual switch",
    after_help = "Modes:\n  \
        switch  --port NAME[=OFPORT]... with --controller and/or --listen (or --fail-mode\n          \
        standalone): one bridge from the command line or --config FILE\n  \
        OVSDB   --db FILE and/or --ovsdb-listen punix:PATH|ptcp:PORT[:IP]: serve the Open_vSwitch\n          \
        database and follow it like ovs-vswitchd (ovs-vsctl add-br/add-port/del-port/\n          \
        set-controller/set-fail-mode/del-br; Interface types system, afxdp, tap, internal;\n          \
        other_config:port-type=afpacket picks AF_PACKET for a system interface)\n  \
        bench   --fwd IN OUT: forward between two interfaces\n\
A TOML file (--config) can hold every switch-mode setting; flags override it. \
Example: vswitch/examples/plexus-vswitchd.toml. Talk to a running daemon with \
plexus-appctl [-t SOCKET] show|trace|dump-flows|dump-cache|cache-flush|fdb/show|help."
)]
struct Args {
    /// Read settings from this TOML file (flags given here override it).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Bridge name (shown by `plexus-appctl show`, used by `trace BRIDGE`).
    #[arg(long, default_value = "br0")]
    bridge: String,
    /// Control socket path [default: /var/run/plexus/plexus-vswitchd.<pid>.ctl
    /// plus the stable name plexus-vswitchd.ctl; $PLEXUS_RUNDIR overrides the directory].
    #[arg(long, value_name = "PATH")]
    ctl: Option<std::path::PathBuf>,
    /// Pin the datapath (forwarding) thread to this CPU (switch mode).
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
    /// Packet-in buffers: truncated packet-ins keep the packet under a
    /// buffer_id for PACKET_OUT/FLOW_MOD (0 = none, always OFP_NO_BUFFER, as OVS 3.x).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=65536))]
    packet_in_buffers: u32,
    /// Packet-ins per second per ingress port (token bucket, burst a quarter
    /// of it, at least 25); over it packet-ins are dropped and counted
    /// (`plexus-appctl show`). 0 = unlimited.
    #[arg(long, value_name = "PPS", default_value_t = 1000)]
    packet_in_rate: u32,
    /// Per-port types from the config file.
    #[arg(skip)]
    port_types: Vec<(String, PortType)>,
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
    #[arg(long = "controller", value_name = "tcp:IP:PORT|ssl:IP:PORT")]
    controllers: Vec<String>,
    /// Passive OpenFlow listener (repeatable), e.g. ptcp:6653 or ptcp:6653:127.0.0.1.
    #[arg(long = "listen", value_name = "ptcp:PORT[:IP]|pssl:PORT[:IP]")]
    listen: Vec<String>,
    /// Behaviour while no active controller is connected (standalone: a
    /// learning L2 switch by NORMAL until one connects).
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
    /// OVSDB mode: serve the Open_vSwitch database here (repeatable) and
    /// take bridges, ports and controllers from it, like ovs-vswitchd.
    #[arg(
        long = "ovsdb-listen",
        value_name = "punix:PATH|ptcp:PORT[:IP]|pssl:PORT[:IP]"
    )]
    ovsdb_listen: Vec<String>,
    /// OVSDB mode: the database's durable log (created with the Open_vSwitch
    /// schema if absent); without it the database lives in memory.
    #[arg(long, value_name = "FILE")]
    db: Option<std::path::PathBuf>,
    /// OVSDB mode: serve punix:DIR/BRIDGE.mgmt per bridge for ovs-ofctl
    /// (like OVS's run directory; use with OVS_RUNDIR=DIR).
    #[arg(long, value_name = "DIR")]
    ovs_rundir: Option<std::path::PathBuf>,
    /// PEM private key for OpenFlow `ssl:`/`pssl:` and OVSDB `pssl:` (with
    /// --certificate and --ca-cert, like ovs-vswitchd): the controller's certificate
    /// must chain to --ca-cert, and so must clients' of `pssl:` listeners.
    #[arg(long, value_name = "FILE", requires_all = ["certificate", "ca_cert"])]
    private_key: Option<std::path::PathBuf>,
    /// PEM certificate (chain) matching --private-key.
    #[arg(long, value_name = "FILE", requires_all = ["private_key", "ca_cert"])]
    certificate: Option<std::path::PathBuf>,
    /// PEM CA certificate that peers' certificates must chain to.
    #[arg(long, value_name = "FILE", requires_all = ["private_key", "certificate"])]
    ca_cert: Option<std::path::PathBuf>,
}

/// Loads `--private-key`/`--certificate`/`--ca-cert`, if given, for every TLS target.
fn setup_tls(args: &Args) -> anyhow::Result<Option<plexus_pki::TlsFiles>> {
    let f = plexus_pki::TlsFiles::from_options(
        args.private_key.as_deref(),
        args.certificate.as_deref(),
        args.ca_cert.as_deref(),
    )?;
    if let Some(f) = &f {
        plexus_vswitch::agent::control::set_tls(f)?;
    }
    Ok(f)
}

fn open_port(name: &str, args: &Args) -> anyhow::Result<Box<dyn Port>> {
    open_port_as(name, args.port_type, args)
}

fn open_port_as(name: &str, port_type: PortType, args: &Args) -> anyhow::Result<Box<dyn Port>> {
    Ok(match port_type {
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
        PortType::Dummy => Box::new(plexus_vswitch::port::dummy::DummyPort::new(name)),
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
    let port_type = args
        .port_types
        .iter()
        .find(|(n, _)| n == name)
        .map_or(args.port_type, |(_, t)| *t);
    match open_port_as(name, port_type, args) {
        Ok(p) => Ok(p),
        Err(e) if matches!(port_type, PortType::Afxdp) => {
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
        !controllers.is_empty()
            || !listeners.is_empty()
            || matches!(args.fail_mode, FailModeArg::Standalone),
        "need --controller or --listen, or --fail-mode standalone (or --fwd IN OUT)"
    );
    sys::install_terminate_handler()?;
    let (ctl_tx, ctl_rx) = datapath::ctl_channel()?;
    let agent = Agent::new(AgentConfig {
        datapath_id: dpid,
        fail_mode: match args.fail_mode {
            FailModeArg::Secure => FailMode::Secure,
            FailModeArg::Standalone => FailMode::Standalone,
        },
        bridge: args.bridge.clone(),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        listeners: listeners.iter().map(|l| l.to_string()).collect(),
        packet_in_buffers: args.packet_in_buffers as usize,
        packet_in_rate: args.packet_in_rate,
    });
    let ctl_path = args.ctl.clone();
    // The datapath thread: enter the netns (if any), open the ports, report, run.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let netns = args.netns.clone();
    let simple = args.simple_pipeline;
    let cpu = args.cpu;
    let dp = std::thread::Builder::new().name("datapath".into()).spawn(
        move || -> anyhow::Result<()> {
            pin_datapath(cpu);
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
        let _ctl_socket = start_ctl_socket(ctl_path, ctl_tx.clone()).await;
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

/// OVSDB mode: the embedded database server plus the reconciler that
/// configures the datapaths from it.
fn ovsdb_mode(args: Args) -> anyhow::Result<()> {
    use plexus_ovsdb::{db::Database, schema::DatabaseSchema, server};
    use plexus_vswitch::ovsdb_config::{self, SystemPort};
    anyhow::ensure!(
        args.ports.is_empty() && args.controllers.is_empty() && args.listen.is_empty(),
        "--port/--controller/--listen do not combine with --db/--ovsdb-listen (use ovs-vsctl)"
    );
    sys::install_terminate_handler()?;
    let schema = DatabaseSchema::vswitch();
    let mut core = server::ServerCore::new();
    match &args.db {
        Some(p) => core
            .add_durable_database(p, &schema)
            .map_err(|e| anyhow::anyhow!("database {}: {e}", p.display()))?,
        None => core.add_database(Database::new(schema)),
    }
    let opts = ovsdb_config::Options {
        tls_from_flags: args.private_key.is_some(),
        system_port: match args.port_type {
            PortType::Afpacket => SystemPort::Afpacket,
            _ => SystemPort::Afxdp,
        },
        xdp_mode: match args.xdp_mode {
            XdpMode::Auto => XdpModeRequest::Auto,
            XdpMode::Native => XdpModeRequest::Native,
            XdpMode::Generic => XdpModeRequest::Generic,
        },
        simple_pipeline: args.simple_pipeline,
        packet_in_rate: args.packet_in_rate,
        rundir: args.ovs_rundir.clone(),
        netns: args.netns.as_ref().map(|ns| {
            if ns.contains('/') {
                std::path::PathBuf::from(ns)
            } else {
                std::path::Path::new("/run/netns").join(ns)
            }
        }),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let srv = server::Server::new(core);
        for r in &args.ovsdb_listen {
            if let Some(rest) = r.strip_prefix("ptcp:") {
                let (port, ip) = rest.split_once(':').unwrap_or((rest, "0.0.0.0"));
                let a = srv.listen_tcp(&format!("{ip}:{port}")).await?;
                eprintln!("ovsdb: listening on tcp:{a}");
            } else if let Some(rest) = r.strip_prefix("pssl:") {
                let cfg = plexus_vswitch::agent::control::server_tls().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--ovsdb-listen {r}: pssl: needs --private-key, --certificate and --ca-cert"
                    )
                })?;
                let (port, ip) = rest.split_once(':').unwrap_or((rest, "0.0.0.0"));
                let a = srv.listen_tls(&format!("{ip}:{port}"), cfg).await?;
                eprintln!("ovsdb: listening on ssl:{a}");
            } else if let Some(path) = r.strip_prefix("punix:") {
                srv.listen_unix(path.as_ref()).await?;
                eprintln!("ovsdb: listening on unix:{path}");
            } else {
                anyhow::bail!(
                    "--ovsdb-listen {r}: expected punix:PATH, ptcp:PORT[:IP] or pssl:PORT[:IP]"
                );
            }
        }
        ovsdb_config::run(srv, opts).await;
        anyhow::Ok(())
    })?;
    for r in &args.ovsdb_listen {
        if let Some(path) = r.strip_prefix("punix:") {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Pins the datapath thread (`--cpu`), warning if that fails.
fn pin_datapath(cpu: Option<usize>) {
    if let Some(c) = cpu {
        match sys::pin_to_cpu(c) {
            Ok(()) => eprintln!("datapath thread pinned to CPU{c}"),
            Err(e) => eprintln!("warning: cannot pin the datapath thread to CPU{c}: {e}"),
        }
    }
}

/// Binds the control socket; a failure is a warning (the switch runs on).
async fn start_ctl_socket(
    path: Option<std::path::PathBuf>,
    ctl: datapath::CtlSender,
) -> Option<plexus_vswitch::appctl::server::CtlSocket> {
    match plexus_vswitch::appctl::server::start(path, ctl).await {
        Ok(s) => {
            eprintln!("control socket {}", s.path().display());
            Some(s)
        }
        Err(e) => {
            eprintln!("warning: no control socket: {e}");
            None
        }
    }
}

/// Parses the command line and merges `--config FILE` under it: a setting
/// from the file applies unless its flag was given on the command line.
fn parse_args() -> anyhow::Result<Args> {
    let m = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&m)?;
    if let Some(path) = args.config.clone() {
        let f = FileConfig::load(&path).map_err(anyhow::Error::msg)?;
        apply_file(&mut args, &m, f)?;
    }
    Ok(args)
}

fn apply_file(args: &mut Args, m: &ArgMatches, f: FileConfig) -> anyhow::Result<()> {
    let unset = |id: &str| m.value_source(id) != Some(ValueSource::CommandLine);
    if let Some(b) = f.bridge
        && unset("bridge")
    {
        args.bridge = b;
    }
    if let Some(d) = f.dpid
        && unset("dpid")
    {
        args.dpid = Some(d.to_hex().map_err(anyhow::Error::msg)?);
    }
    if let Some(fm) = f.fail_mode
        && unset("fail_mode")
    {
        args.fail_mode = FailModeArg::from_str(&fm, true).map_err(anyhow::Error::msg)?;
    }
    if unset("controllers") && !f.controllers.is_empty() {
        args.controllers = f.controllers;
    }
    if unset("listen") && !f.listen.is_empty() {
        args.listen = f.listen;
    }
    if let Some(c) = f.ctl
        && unset("ctl")
    {
        args.ctl = Some(c);
    }
    if let Some(n) = f.netns
        && unset("netns")
    {
        args.netns = Some(n);
    }
    if let Some(t) = f.port_type
        && unset("port_type")
    {
        args.port_type = PortType::from_str(&t, true).map_err(anyhow::Error::msg)?;
    }
    if let Some(x) = f.xdp_mode
        && unset("xdp_mode")
    {
        args.xdp_mode = XdpMode::from_str(&x, true).map_err(anyhow::Error::msg)?;
    }
    if let Some(p) = f.pipeline
        && unset("simple_pipeline")
    {
        args.simple_pipeline = p == "simple";
    }
    if unset("ports") && !f.ports.is_empty() {
        args.ports = f.ports.iter().map(|p| p.spec()).collect();
        for p in &f.ports {
            if let Some(t) = &p.kind {
                let t = PortType::from_str(t, true).map_err(anyhow::Error::msg)?;
                args.port_types.push((p.name.clone(), t));
            }
        }
    }
    if let Some(n) = f.packet_in_buffers
        && unset("packet_in_buffers")
    {
        args.packet_in_buffers = n as u32;
    }
    let fw = f.forwarding;
    if let Some(c) = fw.cpu
        && unset("cpu")
    {
        args.cpu = Some(c);
    }
    if let Some(b) = fw.batch
        && unset("batch")
    {
        args.batch = b;
    }
    if let Some(n) = fw.spin
        && unset("spin")
    {
        args.spin = n;
    }
    if let Some(y) = fw.yield_idle
        && unset("yield_idle")
    {
        args.yield_idle = y;
    }
    Ok(())
}

fn main() -> ExitCode {
    plexus_vswitch::sys::tune_malloc();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("plexus-vswitchd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = setup_tls(&args) {
        eprintln!("plexus-vswitchd: {e:#}");
        return ExitCode::FAILURE;
    }
    let r = if args.db.is_some() || !args.ovsdb_listen.is_empty() {
        ovsdb_mode(args)
    } else if args.fwd.is_empty() {
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
