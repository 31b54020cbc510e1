//! `plexus-vswitchd`: the Plexus switch daemon.
//!
//! For now it has one mode, `--fwd IN OUT`: forward every frame between two
//! ports in both directions on one pinned thread (the data-plane benchmark's
//! DUT). The OpenFlow pipeline plugs in between `rx_batch` and `tx_batch`.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use plexus_vswitch::port::afpacket::AfPacketPort;
use plexus_vswitch::port::afxdp::{AfXdpOptions, AfXdpPort};
use plexus_vswitch::port::tap::TapPort;
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
    /// Forward all frames between two interfaces, both directions.
    #[arg(long, num_args = 2, value_names = ["IN", "OUT"], required = true)]
    fwd: Vec<String>,
    /// Port implementation for both interfaces.
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

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus-vswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
