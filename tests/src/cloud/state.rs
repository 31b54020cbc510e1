//! What a cloud topology run has created, recorded on disk *before* each
//! thing is created, so that `plexus-topo down NAME|--all` can remove it
//! after a crash or SIGKILL of the runner.
//!
//! Layout: `/tmp/plexus-topo-<name>/state.json` (+ the controller's store,
//! log and token file, and one private-OVS state dir per OVS chassis).

use crate::netns;
use crate::ovs::{cleanup_stale, process_alive};
use crate::proc::wait_until;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Prefix of every run's state directory.
pub const STATE_PREFIX: &str = "/tmp/plexus-topo-";

/// State directory of topology `name`.
/// Where a TLS run keeps its CA and certificates (`plexus certs`).
pub fn pki_dir(dir: &Path) -> PathBuf {
    dir.join("pki")
}

pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("{STATE_PREFIX}{name}"))
}

/// A process the run started: its PID and its name (checked before any signal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub comm: String,
    /// What it is (`controller`, `chassis c1`).
    pub role: String,
}

/// Everything recorded about a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The topology file it was brought up from.
    pub file: PathBuf,
    pub api_port: u16,
    /// Every controller's API port (HA: one per replica; else just `api_port`).
    #[serde(default)]
    pub api_ports: Vec<u16>,
    /// `etcd://…` of the run's etcd cluster (etcd store), for restarting controllers.
    #[serde(default)]
    pub etcd: Option<String>,
    pub openflow_port: u16,
    /// The controller's xDS (ADS) port on loopback.
    #[serde(default)]
    pub xds_port: u16,
    pub token: String,
    /// `plexus-controller --packet-in-rate` (`[controller] packet_in_rate`).
    #[serde(default)]
    pub packet_in_rate: Option<u32>,
    /// Control channels over TLS (`[controller] tls = true`): the CA and the
    /// certificates are in `DIR/pki` ([`pki_dir`]).
    #[serde(default)]
    pub tls: bool,
    /// Network namespaces (recorded before creation).
    pub netns: Vec<String>,
    /// Processes (recorded right after spawn).
    pub procs: Vec<Proc>,
    /// Private OVS state directories (stopped with `cleanup_stale`).
    pub ovs_dirs: Vec<PathBuf>,
    /// Host name → (netns, address) once known.
    pub hosts: Vec<HostState>,
    /// Chassis name → where to reach its switch with `ovs-ofctl`.
    pub chassis: Vec<ChassisState>,
    /// The underlay namespace (a Linux bridge `ul` joining every chassis).
    #[serde(default)]
    pub underlay_netns: String,
    /// Services created through the REST API.
    #[serde(default)]
    pub services: Vec<ServiceState>,
    /// VM taps (recorded before `plexus port attach` creates them); removed
    /// before the namespaces.
    #[serde(default)]
    pub taps: Vec<TapState>,
}

/// A tap device of a VM host, in its chassis' namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TapState {
    pub netns: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    pub id: String,
    pub vip: String,
    pub port: u16,
    /// (host name, port id, weight) per backend.
    pub backends: Vec<(String, String, u32)>,
    pub target_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub mac: String,
    pub chassis: String,
    /// The VNI of the host's VPC.
    #[serde(default)]
    pub vni: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChassisState {
    pub name: String,
    pub id: String,
    pub netns: String,
    /// `ovs-ofctl` target of the switch (OVS mgmt socket or plexus-vswitchd listener).
    pub ofctl_target: String,
    pub kind: String,
    /// VTEP address on the underlay.
    #[serde(default)]
    pub vtep: String,
    /// The chassis' port on the underlay bridge (in the underlay namespace).
    #[serde(default)]
    pub underlay_port: String,
    /// OVSDB target of its switch (`unix:PATH`), for pods and VMs.
    #[serde(default)]
    pub ovsdb: String,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let p = Self::path(dir);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// Writes atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(dir))?;
        Ok(())
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops a recorded process: TERM, then KILL after 5 s — only while it still
/// carries the recorded name.
pub fn stop_proc(p: &Proc) -> Result<()> {
    if !process_alive(p.pid, &p.comm) {
        return Ok(());
    }
    signal(p.pid, "-TERM");
    if !wait_until(Duration::from_secs(5), || !process_alive(p.pid, &p.comm)) {
        signal(p.pid, "-KILL");
        if !wait_until(Duration::from_secs(5), || !process_alive(p.pid, &p.comm)) {
            bail!("{} [{}] does not die", p.comm, p.pid);
        }
    }
    Ok(())
}

/// Removes everything recorded in `dir`: processes, private OVSs, namespaces,
/// then the directory. Missing things are fine (idempotent).
pub fn remove_run(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !State::path(dir).exists() {
        // A single-switch topology (`crate::topo`): the dir is a private OVS's.
        return cleanup_stale(dir);
    }
    let state = State::load(dir)?;
    let mut errs = Vec::new();
    for p in state.procs.iter().rev() {
        if let Err(e) = stop_proc(p) {
            errs.push(format!("{e:#}"));
        }
    }
    for t in state.taps.iter().rev() {
        if netns::exists(&t.netns)
            && netns::ip(&["-n", &t.netns, "link", "show", &t.name]).is_ok()
            && let Err(e) = netns::ip(&["-n", &t.netns, "link", "del", &t.name])
        {
            errs.push(format!("{e:#}"));
        }
    }
    for d in state.ovs_dirs.iter().rev() {
        if let Err(e) = cleanup_stale(d) {
            errs.push(format!("{e:#}"));
        }
    }
    for ns in state.netns.iter().rev() {
        if netns::exists(ns)
            && let Err(e) = netns::ip(&["netns", "del", ns])
        {
            errs.push(format!("{e:#}"));
        }
    }
    if errs.is_empty() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        Ok(())
    } else {
        bail!("{}: {}", dir.display(), errs.join("; "))
    }
}

/// State directories of every recorded run (`plexus-topo list`, `down --all`).
pub fn all_runs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.to_str()
                .is_some_and(|s| s.starts_with(STATE_PREFIX) && p.is_dir())
        })
        .collect();
    v.sort();
    v
}
