//! `plexus-topo`: bring up a topology of network namespaces around a switch,
//! verify it, tear it down. See `plexus_tests::topo` and `topologies/`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plexus_tests::topo::{self, Topology};
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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring the topology up, run its checks, tear it down. Exit 1 on any failure.
    Run { file: PathBuf },
    /// Bring the topology up and leave it running (stop it with `down`).
    Up { file: PathBuf },
    /// Remove what `up` (or a crashed `run`) left: its OVS and namespaces.
    Down { file: PathBuf },
    /// Run the checks against a topology that is up.
    Check { file: PathBuf },
    /// (internal) Echo one TCP connection; used inside host namespaces.
    #[command(hide = true)]
    TcpEchoServer {
        addr: SocketAddr,
        #[arg(long, default_value_t = 15)]
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

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let exe = std::env::current_exe().context("locating plexus-topo")?;
    let needs_root = matches!(
        cli.cmd,
        Cmd::Run { .. } | Cmd::Up { .. } | Cmd::Down { .. } | Cmd::Check { .. }
    );
    if needs_root && plexus_tests::prereq::euid() != Some(0) {
        anyhow::bail!("needs root (network namespaces, veth, Open vSwitch): run it with sudo");
    }
    match cli.cmd {
        Cmd::Run { file } => {
            let t = Topology::load(&file)?;
            Ok(ok_if(topo::run(&t, &exe)))
        }
        Cmd::Up { file } => {
            let t = Topology::load(&file)?;
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
        Cmd::Down { file } => {
            let t = Topology::load(&file)?;
            topo::down(&t)?;
            println!("topology {} is down", t.name);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { file } => {
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
            Ok(ok_if(topo::report(&outcomes)))
        }
        Cmd::TcpEchoServer { addr, timeout_secs } => {
            let n = topo::tcp_echo_server(addr, Duration::from_secs(timeout_secs))?;
            println!("echoed {n} bytes");
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
