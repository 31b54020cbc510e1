//! Controller-driven ("cloud") topologies for `plexus-topo`.
//!
//! A cloud topology (see `topologies/single-switch.toml`) has a `[controller]`
//! — `plexus-controller` on loopback with its embedded redb store — and
//! `[[chassis]]`, each a switch (private userspace Open vSwitch or
//! `plexus-vswitchd`) in its own namespace that connects to the controller
//! over OpenFlow. Tenants, VPCs, subnets and security groups are created
//! through the controller's REST API, every `[[host]]` is a namespace cabled
//! to its chassis and bound to a controller port, and nothing forwards until
//! the controller has compiled and installed the flows. The checks then test
//! what the model promises: a reachability matrix, installed flows, and a
//! controller kill -9 under a ping flood.
//!
//! Everything a run creates is recorded in its state directory *before* it
//! is created ([`state`]), so `plexus-topo down --all` removes it even after
//! the runner was killed.

pub mod attack;
pub mod frames;
mod l3;
pub use l3::{name_client, name_server};
mod sidecar;
pub mod spec;
pub mod state;
pub mod tools;

use crate::netns::{self, Netns};
use crate::ovs::{NetnsMode, Ovs};
use crate::proc::{run_ok, run_with_timeout};
use crate::topo::Outcome;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use spec::{CheckSpec, Cloud, Expect, Proto, SwitchKind};
use state::{ChassisState, HostState, Proc, State, remove_run, state_dir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Cookie prefix of the controller's flows (`0x504c58 << 40`).
const COOKIE_PREFIX: &str = "cookie=0x504c58";

/// Loads a cloud topology file (errors name file, line and field).
pub fn load(path: &Path) -> Result<Cloud> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Cloud::parse(&text, path)
}

/// True when the file is a cloud topology (it has a `[controller]` table).
pub fn is_cloud(path: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Table = match toml::from_str(&text) {
        Ok(v) => v,
        // Let the real parser report the syntax error with its position.
        Err(_) => return Ok(text.contains("[controller]") || text.contains("[[chassis]]")),
    };
    Ok(v.contains_key("controller") || v.contains_key("chassis"))
}

/// Finds a Plexus binary: `$PLEXUS_BIN_DIR/NAME`, then beside this executable
/// (and its parent, for test binaries in `target/*/deps`).
pub fn find_bin(name: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("PLEXUS_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        dirs.push(d.to_path_buf());
        if let Some(p) = d.parent() {
            dirs.push(p.to_path_buf());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{name} not found in {dirs:?}: build it (cargo build --release --bins) or set PLEXUS_BIN_DIR")
        })
}

/// A free port for the controller's listeners, below the kernel's ephemeral
/// range (32768-60999 by default): the controller is restarted on the same
/// ports, and while it is down an outgoing connection (a health probe, a
/// switch reconnecting) could otherwise be given the port as its local one —
/// or connect to itself — and the restarted controller could not bind it.
fn free_port() -> Result<u16> {
    for _ in 0..200 {
        let p = 20_000 + (rand_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no free port in 20000-31999 on 127.0.0.1")
}

/// The last `n` lines of a run's log file (for error messages).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A blocking client of the controller's REST API. With several controllers
/// (HA) it fails over to the next one when one does not answer, and reads the
/// southbound status from the leader.
#[derive(Debug)]
pub struct Api {
    bases: Vec<String>,
    /// Index into `bases` of the controller that answered last.
    current: std::sync::atomic::AtomicUsize,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(port: u16, token: &str) -> Result<Self> {
        Self::new_multi(&[port], token)
    }

    /// A client of several controllers sharing one model (HA).
    pub fn new_multi(ports: &[u16], token: &str) -> Result<Self> {
        Ok(Self {
            bases: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            current: Default::default(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last_err = None;
        for k in 0..n {
            let i = (first + k) % n;
            match self.send_to(i, method.clone(), path, body) {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                // Not answering (killed): try the next controller.
                Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no controller")))
    }

    fn send_to(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{method} {path}: {status}: {v}");
            }
            Ok(v)
        })
    }

    /// `/v1/status` of each controller (None: not answering).
    pub fn statuses(&self) -> Vec<Option<Value>> {
        (0..self.bases.len())
            .map(|i| {
                self.send_to(i, reqwest::Method::GET, "/v1/status", None)
                    .ok()
            })
            .collect()
    }

    /// `/v1/status` of the controller that programs the switches (the only one,
    /// or the elected leader); the index of that controller.
    pub fn leader_status(&self) -> Result<(usize, Value)> {
        let all = self.statuses();
        all.into_iter()
            .enumerate()
            .find_map(|(i, s)| {
                let s = s?;
                (s["controller"]["role"] != "follower").then_some((i, s))
            })
            .context("no controller leads (election in progress?)")
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(&body))
    }
    pub fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(&body))
    }
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    fn healthy(&self, i: usize) -> bool {
        self.rt.block_on(async {
            self.http
                .get(format!("{}/healthz", self.bases[i]))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    /// Waits up to `timeout` for `/healthz` of every controller.
    pub fn wait_up(&self, timeout: Duration) -> Result<()> {
        let all = || (0..self.bases.len()).all(|i| self.healthy(i));
        if crate::proc::wait_until(timeout, all) {
            Ok(())
        } else {
            bail!("controller not healthy within {timeout:?}")
        }
    }

    /// Waits until every chassis in `ids` is connected and has realized
    /// revision `rev`; returns `/v1/status`.
    pub fn wait_realized(&self, ids: &[String], rev: u64, timeout: Duration) -> Result<Value> {
        let t0 = Instant::now();
        loop {
            let s = match self.leader_status() {
                Ok((_, s)) => s,
                Err(e) if t0.elapsed() < timeout => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let behind: Vec<String> = ids
                .iter()
                .filter(|id| {
                    let c = &s["chassis"][id.as_str()];
                    c["connected"] != true || c["realized_revision"].as_u64().unwrap_or(0) < rev
                })
                .map(|id| format!("{id}: {}", s["chassis"][id.as_str()]))
                .collect();
            if behind.is_empty() {
                return Ok(s);
            }
            if t0.elapsed() > timeout {
                bail!(
                    "revision {rev} not realized within {timeout:?}: {}",
                    behind.join("; ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<std::process::Child> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()?)
}

/// Starts `plexus-controller` number `i` for the run in `dir` (with the embedded
/// store: the only one, which the switches connect to; with etcd: one of the
/// replicas, which connect to the switches while they lead); returns its record.
fn start_controller(dir: &Path, st: &State, i: usize) -> Result<Proc> {
    let bin = find_bin("plexus-controller")?;
    let mut cmd = Command::new(&bin);
    let api = st.api_ports.get(i).copied().unwrap_or(st.api_port);
    cmd.args(["--listen", &format!("127.0.0.1:{api}")])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .env(
            "RUST_LOG",
            std::env::var("PLEXUS_TOPO_LOG").unwrap_or_else(|_| "info".into()),
        );
    let (log, role) = match &st.etcd {
        None => {
            cmd.arg("--db").arg(dir.join("plexus.redb")).args([
                "--openflow-listen",
                &format!("ptcp:{}:127.0.0.1", st.openflow_port),
            ]);
            // xDS for sidecars (the embedded-store controller only).
            cmd.args(["--xds-listen", &format!("127.0.0.1:{}", st.xds_port)]);
            (dir.join("controller.log"), "controller".to_string())
        }
        Some(url) => {
            cmd.args(["--store", url, "--node-id", &format!("ctl{i}")])
                .args(["--election-ttl", "2"]);
            (
                dir.join(format!("controller-{i}.log")),
                format!("controller {i}"),
            )
        }
    };
    let child =
        spawn_logged(&mut cmd, &log).with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc {
        pid: child.id(),
        comm: "plexus-controller".into(),
        role,
    })
}

/// Starts the run's etcd cluster (`n` members, data under `dir/etcd`), recording
/// each member's PID; returns the `etcd://…` store URL once all are healthy.
fn start_etcd(r: &mut Running, n: usize) -> Result<String> {
    let bin = crate::prereq::which("etcd").context("etcd not found (scripts/install-deps.sh)")?;
    let name = r.cloud.name().to_owned();
    let edir = r.dir.join("etcd");
    std::fs::create_dir_all(&edir)?;
    let mut members = Vec::new();
    for i in 0..n {
        members.push(crate::etcd::MemberSpec {
            name: format!("plx-{name}-etcd{i}"),
            client_port: free_port()?,
            peer_port: free_port()?,
            data_dir: edir.join(format!("member{i}")),
            log: edir.join(format!("member{i}.log")),
        });
    }
    let token = format!("plx-{name}-{:08x}", rand_u128() as u32);
    for i in 0..n {
        let mut cmd = crate::etcd::member_command(&bin, &members, i, &token);
        let child = spawn_logged(&mut cmd, &edir.join(format!("member{i}.out")))
            .context("starting etcd")?;
        let p = Proc {
            pid: child.id(),
            comm: "etcd".into(),
            role: format!("etcd member {i}"),
        };
        r.record(|s| s.procs.push(p))?;
    }
    for m in &members {
        if !crate::proc::wait_until(Duration::from_secs(30), || {
            crate::etcd::healthy(m.client_port)
        }) {
            bail!("etcd member {} not healthy within 30 s", m.name);
        }
    }
    let eps: Vec<String> = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    Ok(format!("etcd://{}", eps.join(",")))
}

fn dpid_of(index: usize) -> u64 {
    0x504c_0000_0000 + index as u64 + 1
}

/// A running cloud topology; dropping it tears everything down unless
/// [`Running::persist`] was called.
#[derive(Debug)]
pub struct Running {
    pub cloud: Cloud,
    pub dir: PathBuf,
    pub state: State,
    pub api: Api,
    ovs: Vec<Ovs>,
    persist: bool,
}

impl Running {
    fn record(&mut self, f: impl FnOnce(&mut State)) -> Result<()> {
        f(&mut self.state);
        self.state.save(&self.dir)
    }

    /// Leaves the topology up (`plexus-topo up`).
    pub fn persist(mut self) {
        self.persist = true;
        for o in self.ovs.drain(..) {
            o.persist();
        }
    }

    /// Tears down now.
    pub fn teardown(mut self) -> Result<()> {
        self.persist = true; // Drop does nothing more
        for o in self.ovs.drain(..) {
            o.persist();
        }
        remove_run(&self.dir)
    }

    fn chassis_ids(&self) -> Vec<String> {
        self.state.chassis.iter().map(|c| c.id.clone()).collect()
    }

    fn host(&self, name: &str) -> Result<&HostState> {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host {name}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.persist {
            for o in self.ovs.drain(..) {
                o.persist();
            }
            if let Err(e) = remove_run(&self.dir) {
                eprintln!("warning: tearing down {}: {e:#}", self.dir.display());
            }
        }
    }
}

/// Reattaches to a topology brought up by `up`.
pub fn attach(cloud: Cloud) -> Result<Running> {
    let dir = state_dir(cloud.name());
    let state = State::load(&dir).with_context(|| format!("is topology {} up?", cloud.name()))?;
    let api = if state.api_ports.is_empty() {
        Api::new(state.api_port, &state.token)?
    } else {
        Api::new_multi(&state.api_ports, &state.token)?
    };
    Ok(Running {
        cloud,
        dir,
        state,
        api,
        ovs: Vec::new(),
        persist: true,
    })
}

/// Brings `cloud` up; `progress` gets one line per step.
pub fn up(cloud: &Cloud, file: &Path, progress: &mut dyn FnMut(&str)) -> Result<Running> {
    let dir = state_dir(cloud.name());
    remove_run(&dir).context("removing an earlier run of this topology")?;
    std::fs::create_dir_all(&dir)?;
    let token = format!("plx-{:032x}", rand_u128());
    // The controller's token file holds only the token's SHA-256 (`sha256:HEX SCOPE`);
    // the token itself is kept in the run's state for the REST client.
    std::fs::write(
        dir.join("tokens"),
        format!("{} admin\n", token_hash(&token)),
    )?;
    let st = State {
        file: file.to_path_buf(),
        api_port: free_port()?,
        openflow_port: free_port()?,
        xds_port: free_port()?,
        token: token.clone(),
        ..State::default()
    };
    st.save(&dir)?;
    let api = Api::new(st.api_port, &token)?;
    let mut r = Running {
        cloud: cloud.clone(),
        dir: dir.clone(),
        state: st,
        api,
        ovs: Vec::new(),
        persist: false,
    };
    let name = cloud.name().to_owned();

    let ha = cloud.controller.etcd();
    if ha {
        let (n, members) = (cloud.controller.replicas(), cloud.controller.etcd_members());
        progress(&format!(
            "starting etcd ({members} member(s), data in the run's directory)"
        ));
        let url = start_etcd(&mut r, members)?;
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        r.record(|s| {
            s.etcd = Some(url);
            s.api_port = ports[0];
            s.api_ports = ports.clone();
        })?;
        r.api = Api::new_multi(&ports, &token)?;
        progress(&format!(
            "starting {n} plexus-controller(s) on etcd (leader election; the leader programs the switches)"
        ));
        for i in 0..n {
            let ctl = start_controller(&dir, &r.state, i)?;
            r.record(|s| s.procs.push(ctl))?;
        }
        r.api.wait_up(Duration::from_secs(20))?;
        if !crate::proc::wait_until(Duration::from_secs(20), || r.api.leader_status().is_ok()) {
            bail!("no controller was elected leader within 20 s");
        }
    } else {
        progress("starting plexus-controller (embedded redb store)");
        let ctl = start_controller(&dir, &r.state, 0)?;
        r.record(|s| s.procs.push(ctl))?;
        r.api.wait_up(Duration::from_secs(20))?;
    }

    // Namespaces and cables first: plexus-vswitchd takes its ports at start.
    let ch_ns: HashMap<&str, String> = cloud
        .chassis
        .iter()
        .map(|c| {
            (
                c.name.get_ref().as_str(),
                format!("plx-{name}-{}", c.name.get_ref()),
            )
        })
        .collect();
    for c in &cloud.chassis {
        let ns = ch_ns[c.name.get_ref().as_str()].clone();
        r.record(|s| s.netns.push(ns.clone()))?;
        Netns::create(&ns)?.persist();
    }
    let mut ports: HashMap<&str, Vec<(String, u32)>> = HashMap::new();
    for h in &cloud.hosts {
        let hn = h.name.get_ref();
        let ns = format!("plx-{name}-{hn}");
        r.record(|s| s.netns.push(ns.clone()))?;
        let hns = Netns::create(&ns)?;
        let hns_name = hns.persist();
        let hns = Netns::existing(&hns_name)?;
        let cns = Netns::existing(&ch_ns[h.chassis.get_ref().as_str()])?;
        let sif = format!("{name}-{hn}");
        netns::veth(&sif, &cns, "eth0", &hns)?;
        // A userspace switch forwards frames as they are: with TX checksum
        // offload the kernel leaves TCP checksums unfinished.
        run_ok(
            hns.command("ethtool").args(["-K", "eth0", "tx", "off"]),
            Duration::from_secs(10),
        )
        .with_context(|| format!("ethtool -K eth0 tx off in {hns_name}"))?;
        let list = ports.entry(h.chassis.get_ref().as_str()).or_default();
        let ofport = list.len() as u32 + 1;
        list.push((sif, ofport));
    }

    let mut chassis_ids = Vec::new();
    for (i, c) in cloud.chassis.iter().enumerate() {
        let cn = c.name.get_ref();
        let ns = ch_ns[cn.as_str()].clone();
        let dpid = dpid_of(i);
        let plist = ports.get(cn.as_str()).cloned().unwrap_or_default();
        let target = format!("tcp:127.0.0.1:{}", r.state.openflow_port);
        let ofctl_target = match c.switch {
            SwitchKind::Ovs => {
                progress(&format!(
                    "chassis {cn}: private userspace Open vSwitch in {ns}"
                ));
                let odir = dir.join(format!("ovs-{cn}"));
                r.record(|s| s.ovs_dirs.push(odir.clone()))?;
                let mut b = Ovs::builder()
                    .netns(NetnsMode::Named(ns.clone()))
                    .state_dir(&odir)
                    .dpid(dpid);
                if !ha {
                    b = b.controller(&target);
                }
                let ovs = b
                    .start()
                    .with_context(|| format!("chassis {cn}: starting Open vSwitch"))?;
                if let Some(pid) = ovs.socat_pid() {
                    let p = Proc {
                        pid,
                        comm: "socat".into(),
                        role: format!("controller bridge of chassis {cn}"),
                    };
                    r.record(|s| s.procs.push(p))?;
                }
                for (ifname, ofport) in &plist {
                    ovs.add_port(ifname, *ofport)?;
                }
                let t = format!("unix:{}", ovs.mgmt_socket().display());
                r.ovs.push(ovs);
                t
            }
            SwitchKind::Plexus => {
                progress(&format!(
                    "chassis {cn}: plexus-vswitchd (AF_PACKET ports) in {ns}"
                ));
                let bin = find_bin("plexus-vswitchd")?;
                let listen = free_port()?;
                let mut cmd = Command::new(&bin);
                cmd.args(["--dpid", &format!("{dpid:x}"), "--netns", &ns])
                    .args(["--port-type", "afpacket", "--fail-mode", "secure"])
                    .args(["--listen", &format!("ptcp:{listen}:127.0.0.1")])
                    .args(["--bridge", "br0"])
                    .arg("--ctl")
                    .arg(dir.join(format!("vswitchd-{cn}.ctl")));
                for (ifname, ofport) in &plist {
                    cmd.args(["--port", &format!("{ifname}={ofport}")]);
                }
                if !ha {
                    cmd.args(["--controller", &target]);
                }
                let child = spawn_logged(&mut cmd, &dir.join(format!("vswitchd-{cn}.log")))
                    .with_context(|| format!("starting {}", bin.display()))?;
                let p = Proc {
                    pid: child.id(),
                    comm: "plexus-vswitchd".into(),
                    role: format!("chassis {cn}"),
                };
                r.record(|s| s.procs.push(p))?;
                format!("tcp:127.0.0.1:{listen}")
            }
        };
        let vtep = c
            .vtep_ip
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_else(|| format!("192.0.2.{}", i + 1));
        let mut endpoint = json!({"datapath_id": format!("{dpid:#x}")});
        if ha {
            // Whoever leads connects to the switch (OVS: its management socket).
            endpoint["openflow"] = json!(ofctl_target);
        }
        let obj = r.api.post(
            "/v1/chassis",
            json!({"name": cn, "vtep_ip": vtep, "endpoint": endpoint}),
        )?;
        let id = obj["id"].as_str().context("chassis id")?.to_owned();
        chassis_ids.push((cn.clone(), id.clone()));
        let kind = match c.switch {
            SwitchKind::Ovs => "ovs",
            SwitchKind::Plexus => "plexus-vswitchd",
        };
        r.record(|s| {
            s.chassis.push(ChassisState {
                name: cn.clone(),
                id,
                netns: ns,
                ofctl_target,
                kind: kind.into(),
            })
        })?;
    }

    progress("creating tenants, VPCs, subnets and security groups through the REST API");
    let mut last_rev = 0u64;
    // (tenant, vpc, subnet) -> (subnet id, prefix len); (tenant, group) -> id
    let mut subnets: HashMap<(String, String, String), (String, String)> = HashMap::new();
    let mut groups: HashMap<(String, String), String> = HashMap::new();
    let mut vpc_ids: HashMap<(String, String), String> = HashMap::new();
    let mut gateways: HashMap<(String, String, String), String> = HashMap::new();
    let mut port_ids: HashMap<String, String> = HashMap::new();
    for t in &cloud.tenants {
        let tn = t.name.get_ref().clone();
        let tenant = r.api.post("/v1/tenants", json!({"name": tn}))?;
        let tid = tenant["id"].as_str().context("tenant id")?.to_owned();
        for v in &t.vpcs {
            let cidrs: Vec<&str> = v.cidrs.iter().map(|c| c.get_ref().as_str()).collect();
            let vpc = r.api.post(
                "/v1/vpcs",
                json!({"tenant_id": tid, "name": v.name.get_ref(), "cidrs": cidrs}),
            )?;
            let vpc_id = vpc["id"].as_str().context("vpc id")?.to_owned();
            vpc_ids.insert((tn.clone(), v.name.get_ref().clone()), vpc_id.clone());
            let mut subnet_ids = HashMap::new();
            for s in &v.subnets {
                let sn = r.api.post(
                    "/v1/subnets",
                    json!({"vpc_id": vpc["id"], "name": s.name.get_ref(), "cidr": s.cidr.get_ref()}),
                )?;
                if let Some(gw) = sn["gateway"].as_str() {
                    gateways.insert(
                        (
                            tn.clone(),
                            v.name.get_ref().clone(),
                            s.name.get_ref().clone(),
                        ),
                        gw.to_owned(),
                    );
                }
                subnet_ids.insert(
                    s.name.get_ref().clone(),
                    sn["id"].as_str().context("subnet id")?.to_owned(),
                );
                let prefix = s
                    .cidr
                    .get_ref()
                    .split('/')
                    .nth(1)
                    .unwrap_or("24")
                    .to_owned();
                subnets.insert(
                    (
                        tn.clone(),
                        v.name.get_ref().clone(),
                        s.name.get_ref().clone(),
                    ),
                    (sn["id"].as_str().context("subnet id")?.to_owned(), prefix),
                );
            }
            last_rev = last_rev.max(l3::create_routers(&r.api, &vpc_id, v, &subnet_ids)?);
        }
        // Groups first without rules (rules may name each other), then the rules.
        for g in &t.security_groups {
            let obj = r.api.post(
                "/v1/security-groups",
                json!({"tenant_id": tid, "name": g.name.get_ref(), "rules": []}),
            )?;
            groups.insert(
                (tn.clone(), g.name.get_ref().clone()),
                obj["id"].as_str().context("group id")?.to_owned(),
            );
        }
        for g in &t.security_groups {
            let id = &groups[&(tn.clone(), g.name.get_ref().clone())];
            let rules: Option<Vec<Value>> = g.rules.as_ref().map(|rs| {
                rs.iter()
                    .map(|r| {
                        let r = r.get_ref();
                        let mut o = json!({"direction": r.direction.get_ref()});
                        if let Some(p) = &r.protocol {
                            o["protocol"] = json!(p.get_ref());
                        }
                        if let Some(p) = r.port_min {
                            o["port_min"] = json!(p);
                        }
                        if let Some(p) = r.port_max {
                            o["port_max"] = json!(p);
                        }
                        if let Some(c) = &r.remote_cidr {
                            o["remote_cidr"] = json!(c.get_ref());
                        }
                        if let Some(rg) = &r.remote_group {
                            o["remote_group_id"] =
                                json!(groups[&(tn.clone(), rg.get_ref().clone())]);
                        }
                        o
                    })
                    .collect()
            });
            let mut body = json!({"tenant_id": tid, "name": g.name.get_ref()});
            if let Some(rules) = rules {
                body["rules"] = Value::Array(rules);
            }
            let obj = r.api.put(&format!("/v1/security-groups/{id}"), body)?;
            last_rev = last_rev.max(obj["revision"].as_u64().unwrap_or(0));
        }
    }

    progress("creating ports and wiring the hosts");
    for h in &cloud.hosts {
        let hn = h.name.get_ref().clone();
        let tn = h.tenant.get_ref().clone();
        let (subnet_id, prefix) = subnets
            .get(&(
                tn.clone(),
                h.vpc.get_ref().clone(),
                h.subnet.get_ref().clone(),
            ))
            .cloned()
            .context("subnet")?;
        let chassis_id = chassis_ids
            .iter()
            .find(|(n, _)| n == h.chassis.get_ref())
            .map(|(_, id)| id.clone())
            .context("chassis")?;
        let sgs: Vec<&String> = h
            .security_groups
            .iter()
            .map(|g| &groups[&(tn.clone(), g.get_ref().clone())])
            .collect();
        let mut body = json!({"subnet_id": subnet_id, "name": hn, "security_groups": sgs,
            "binding": {"chassis_id": chassis_id, "iface": format!("{name}-{hn}")}});
        if let Some(ip) = &h.ip {
            body["ips"] = json!([ip.get_ref()]);
        }
        if let Some(m) = &h.mac {
            body["mac"] = json!(m.get_ref());
        }
        let p = r.api.post("/v1/ports", body)?;
        last_rev = last_rev.max(p["revision"].as_u64().unwrap_or(0));
        let mac = p["mac"].as_str().context("port mac")?.to_owned();
        let ip = p["ips"][0].as_str().context("port ip")?.to_owned();
        let ns = Netns::existing(&format!("plx-{name}-{hn}"))?;
        ns.ip(&["link", "set", "eth0", "address", &mac])?;
        ns.ip(&["addr", "add", &format!("{ip}/{prefix}"), "dev", "eth0"])?;
        if let Some(gw) = gateways.get(&(
            tn.clone(),
            h.vpc.get_ref().clone(),
            h.subnet.get_ref().clone(),
        )) {
            ns.ip(&["route", "add", "default", "via", gw])?;
        }
        port_ids.insert(hn.clone(), p["id"].as_str().context("port id")?.to_owned());
        let hs = HostState {
            name: hn,
            netns: ns.name().to_owned(),
            ip,
            mac,
            chassis: h.chassis.get_ref().clone(),
        };
        r.record(|s| s.hosts.push(hs))?;
    }

    if cloud.tenants.iter().any(|t| !t.services.is_empty()) {
        progress("creating services through the REST API");
        last_rev = last_rev.max(l3::create_services(&mut r, &vpc_ids, &port_ids)?);
    }

    progress(&format!(
        "waiting until every chassis realized revision {last_rev}"
    ));
    let ids = r.chassis_ids();
    let t0 = Instant::now();
    r.api
        .wait_realized(&ids, last_rev, Duration::from_secs(60))?;
    progress(&format!(
        "flows installed on every chassis in {:?}",
        t0.elapsed()
    ));
    sidecar::start(&mut r, progress)?;
    Ok(r)
}

/// `sha256:` + the hex SHA-256 of `token` (the controller's hashed token-file form).
fn token_hash(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u128::from_le_bytes(b) ^ u128::from(std::process::id())
}

fn ping_once(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A reachability probe: ICMP, or a TCP echo through `plexus-topo`'s
/// internal echo server/client.
fn probe(
    from: &HostState,
    to: &HostState,
    proto: Proto,
    port: u16,
    expect: Expect,
    exe: &Path,
) -> Result<bool> {
    match proto {
        // Must reach: 3 tries (the first may wait for ARP). Must not: 2 tries.
        Proto::Icmp => Ok(match expect {
            Expect::Reach => (0..3).any(|_| ping_once(&from.netns, &to.ip)),
            Expect::Deny => (0..2).any(|_| ping_once(&from.netns, &to.ip)),
        }),
        Proto::Tcp => {
            let addr = format!("{}:{port}", to.ip);
            let exe = exe.to_string_lossy().into_owned();
            let mut server = Command::new("ip");
            server
                .args(["netns", "exec", &to.netns, &exe, "tcp-echo-server", &addr])
                .args(["--timeout-secs", "6"]);
            let server =
                std::thread::spawn(move || run_with_timeout(&mut server, Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(200));
            let client = run_with_timeout(
                Command::new("ip")
                    .args(["netns", "exec", &from.netns, &exe, "tcp-echo-client", &addr])
                    .args(["--bytes", "65536", "--timeout-secs", "4"]),
                Duration::from_secs(8),
            )?;
            let _ = server.join();
            Ok(client.success())
        }
    }
}

/// Runs every check; `exe` is a `plexus-topo` binary (TCP echo helper).
pub fn verify(r: &mut Running, exe: &Path) -> Vec<Outcome> {
    let checks = r.cloud.checks.clone();
    let mut out = Vec::new();
    for c in &checks {
        match c.get_ref() {
            CheckSpec::Reach {
                from,
                to,
                proto,
                port,
                expect,
            } => {
                for a in from.names() {
                    for b in to.names() {
                        if a == b {
                            continue;
                        }
                        let what = format!(
                            "{a} -> {b} {} {}",
                            match proto {
                                Proto::Icmp => "icmp".to_string(),
                                Proto::Tcp => format!("tcp/{}", port.unwrap_or(0)),
                            },
                            match expect {
                                Expect::Reach => "reaches",
                                Expect::Deny => "is denied",
                            }
                        );
                        let result = (|| -> Result<String> {
                            let (ha, hb) = (r.host(a)?, r.host(b)?);
                            let got = probe(ha, hb, *proto, port.unwrap_or(0), *expect, exe)?;
                            let evidence = format!("{} -> {}", ha.ip, hb.ip);
                            match (expect, got) {
                                (Expect::Reach, true) => Ok(format!("{evidence}: answered")),
                                (Expect::Deny, false) => Ok(format!("{evidence}: no answer")),
                                (Expect::Reach, false) => bail!("{evidence}: no answer"),
                                (Expect::Deny, true) => {
                                    bail!("{evidence}: ANSWERED (isolation violated)")
                                }
                            }
                        })();
                        out.push(Outcome {
                            what,
                            result: result.map_err(|e| format!("{e:#}")),
                        });
                    }
                }
            }
            CheckSpec::FlowsInstalled => {
                let result = check_flows(r);
                out.push(Outcome {
                    what: "every chassis holds exactly the controller's flows".into(),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::Attack {
                attacker,
                victim,
                attacks,
                count,
                blocked_port,
                allowed_port,
            } => {
                out.extend(attack::run_check(
                    r,
                    exe,
                    &attack::AttackCheck {
                        attacker,
                        victim,
                        attacks: attacks.as_deref(),
                        count: *count,
                        blocked_port: *blocked_port,
                        allowed_port: *allowed_port,
                    },
                ));
            }
            CheckSpec::Affinity {
                from,
                service,
                connections,
            } => {
                out.push(l3::check_affinity(
                    r,
                    exe,
                    &from.names(),
                    service,
                    *connections,
                ));
            }
            CheckSpec::Gateway { from } => {
                for h in from.names() {
                    out.push(l3::check_gateway(r, h));
                }
            }
            CheckSpec::Service {
                from,
                service,
                connections,
                tolerance_pct,
                remove,
            } => {
                out.extend(l3::check_service(
                    r,
                    exe,
                    from,
                    service,
                    *connections,
                    *tolerance_pct,
                    remove.as_deref(),
                ));
            }
            CheckSpec::LeaderFailover {
                from,
                to,
                seconds,
                interval_ms,
                max_takeover_s,
                max_loss_pct,
            } => {
                let result = check_failover(
                    r,
                    from,
                    to,
                    *seconds,
                    *interval_ms,
                    *max_takeover_s,
                    *max_loss_pct,
                );
                out.push(Outcome {
                    what: format!(
                        "leader kill -9 under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms: takeover ≤ {max_takeover_s} s, loss ≤ {max_loss_pct} %, flows untouched"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::Sidecar {
                from,
                service,
                requests,
                tolerance_pct,
                then,
            } => {
                out.extend(sidecar::check(
                    r,
                    exe,
                    from,
                    service,
                    *requests,
                    *tolerance_pct,
                    then.as_deref(),
                ));
            }
            CheckSpec::ControllerRestart {
                from,
                to,
                seconds,
                interval_ms,
            } => {
                let result = check_restart(r, from, to, *seconds, *interval_ms);
                out.push(Outcome {
                    what: format!(
                        "controller kill -9 + restart under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
        }
    }
    out
}

fn dump_flows(target: &str) -> Result<Vec<String>> {
    let out = run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "--no-names", "dump-flows", target]),
        Duration::from_secs(20),
    )?;
    Ok(out
        .lines()
        .filter(|l| l.contains(COOKIE_PREFIX))
        .map(|l| l.trim().to_owned())
        .collect())
}

fn check_flows(r: &Running) -> Result<String> {
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let mut parts = Vec::new();
    for c in &r.state.chassis {
        let want = st["chassis"][c.id.as_str()]["flow_count"]
            .as_u64()
            .unwrap_or(0);
        let have = dump_flows(&c.ofctl_target)?.len() as u64;
        if want != have || want == 0 {
            bail!(
                "chassis {} ({}): controller reports {want} flows, switch holds {have}",
                c.name,
                c.kind
            );
        }
        parts.push(format!(
            "{} ({}): {have} flows at revision {rev}",
            c.name, c.kind
        ));
    }
    Ok(parts.join("; "))
}

fn check_restart(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let before: Vec<Vec<String>> = r
        .state
        .chassis
        .iter()
        .map(|c| dump_flows(&c.ofctl_target))
        .collect::<Result<_>>()?;
    let count = (u64::from(seconds) * 1000 / u64::from(interval_ms)).max(1);
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", &interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &b.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ping flood")?;
    std::thread::sleep(Duration::from_millis(u64::from(seconds) * 250));
    // kill -9 the recorded controller, restart it on the same store.
    let old = r
        .state
        .procs
        .iter()
        .position(|p| p.role == "controller")
        .context("no controller recorded")?;
    let p = r.state.procs[old].clone();
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("controller [{}] is not running", p.pid);
    }
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    crate::proc::wait_until(Duration::from_secs(5), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    });
    let t0 = Instant::now();
    let newp = start_controller(&r.dir, &r.state, 0)?;
    let (pid, comm) = (newp.pid, newp.comm.clone());
    r.record(|s| s.procs[old] = newp)?;
    if let Err(e) = r.api.wait_up(Duration::from_secs(20)) {
        bail!(
            "{e:#} (restarted controller [{pid}] {}; controller.log ends:\n{})",
            if crate::ovs::process_alive(pid, &comm) {
                "running"
            } else {
                "exited"
            },
            log_tail(&r.dir.join("controller.log"), 15)
        );
    }
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let resync = t0.elapsed();
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let churn = flow_churn(r, &st, &before)?;
    if !summary.contains(" 0% packet loss") {
        bail!("lost pings: {summary}");
    }
    if !churn.is_empty() {
        bail!("flow churn after restart: {}", churn.join("; "));
    }
    Ok(format!(
        "{summary}; resynced {resync:.1?} after restart; 0 flow adds/deletes"
    ))
}

/// Per chassis with churn since `before` (flows on the switch differ, or the
/// controller in status `st` sent adds/deletes): a description.
fn flow_churn(r: &Running, st: &Value, before: &[Vec<String>]) -> Result<Vec<String>> {
    let mut churn = Vec::new();
    for (c, before) in r.state.chassis.iter().zip(before) {
        let s = &st["chassis"][c.id.as_str()];
        let (adds, dels) = (
            s["flow_adds"].as_u64().unwrap_or(u64::MAX),
            s["flow_deletes"].as_u64().unwrap_or(u64::MAX),
        );
        let after = dump_flows(&c.ofctl_target)?;
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
                .collect();
            v.sort();
            v
        };
        if adds != 0 || dels != 0 || norm(&after) != norm(before) {
            churn.push(format!(
                "{}: {adds} adds, {dels} deletes, {} -> {} flows",
                c.name,
                before.len(),
                after.len()
            ));
        }
    }
    Ok(churn)
}

/// (transmitted, received) of a ping summary line.
fn ping_counts(summary: &str) -> Option<(u64, u64)> {
    let mut it = summary.split(", ");
    let tx = it.next()?.split_whitespace().next()?.parse().ok()?;
    let rx = it.next()?.split_whitespace().next()?.parse().ok()?;
    Some((tx, rx))
}

/// The `leader-failover` check (see [`spec::CheckSpec::LeaderFailover`]).
#[allow(clippy::too_many_arguments)]
fn check_failover(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
    max_takeover_s: u32,
    max_loss_pct: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let (old, st0) = r.api.leader_status()?;
    let rev = st0["revision"].as_u64().unwrap_or(0);
    let objects = st0["objects"].clone();
    r.api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let before: Vec<Vec<String>> = r
        .state
        .chassis
        .iter()
        .map(|c| dump_flows(&c.ofctl_target))
        .collect::<Result<_>>()?;
    let role = format!("controller {old}");
    let pos = r
        .state
        .procs
        .iter()
        .position(|p| p.role == role)
        .with_context(|| format!("no {role} recorded"))?;
    let p = r.state.procs[pos].clone();
    let count = (u64::from(seconds) * 1000 / u64::from(interval_ms)).max(1);
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", &interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &b.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ping flood")?;
    std::thread::sleep(Duration::from_millis(u64::from(seconds) * 250));
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("leader ctl{old} [{}] is not running", p.pid);
    }
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    let t0 = Instant::now();
    crate::proc::wait_until(Duration::from_secs(5), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    });
    let limit = Duration::from_secs(u64::from(max_takeover_s));
    let mut elected = None;
    crate::proc::wait_until(limit, || match r.api.leader_status() {
        Ok((i, _)) if i != old => {
            elected = Some((i, t0.elapsed()));
            true
        }
        _ => false,
    });
    let (new, elected) = elected.with_context(|| {
        format!("no follower became leader within {max_takeover_s} s after killing ctl{old}")
    })?;
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, limit.saturating_sub(t0.elapsed()))
        .context("new leader did not reconcile every switch in time")?;
    let takeover = t0.elapsed();
    // Bring the killed controller back: it must rejoin as a follower.
    let newp = start_controller(&r.dir, &r.state, old)?;
    r.record(|s| s.procs[pos] = newp)?;
    let rejoined = crate::proc::wait_until(Duration::from_secs(20), || {
        r.api.statuses()[old]
            .as_ref()
            .is_some_and(|s| s["controller"]["role"] == "follower")
    });
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let (tx, rx) = ping_counts(&summary).with_context(|| format!("ping summary: {summary:?}"))?;
    let churn = flow_churn(r, &st, &before)?;
    let after = r.api.get("/v1/status")?;
    if tx == 0 || (tx - rx) * 100 > u64::from(max_loss_pct) * tx {
        bail!(
            "lost {} of {tx} pings (> {max_loss_pct} %): {summary}",
            tx - rx
        );
    }
    if !churn.is_empty() {
        bail!("flow churn after failover: {}", churn.join("; "));
    }
    if after["objects"] != objects || after["revision"].as_u64() != Some(rev) {
        bail!(
            "model changed across the failover: {objects} @{rev} -> {} @{}",
            after["objects"],
            after["revision"]
        );
    }
    if !rejoined {
        bail!("restarted ctl{old} did not rejoin as a follower");
    }
    Ok(format!(
        "ctl{old} killed -9; ctl{new} elected after {elected:.1?}, every switch reconciled after {takeover:.1?}; {} lost of {tx} ({summary}); 0 flow adds/deletes; {} objects kept; ctl{old} rejoined as follower",
        tx - rx,
        objects
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum::<u64>())
    ))
}

/// `plexus-topo run` for a cloud topology. Returns the number of failed items.
pub fn run(cloud: &Cloud, file: &Path, exe: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let t0 = Instant::now();
    let mut view = crate::progress::Progress::new();
    let brought_up = up(cloud, file, &mut |s: &str| view.step(s));
    view.finish();
    match brought_up {
        Err(e) => {
            outcomes.push(Outcome {
                what: format!("bring up topology {}", cloud.name()),
                result: Err(format!("{e:#}")),
            });
            let _ = remove_run(&state_dir(cloud.name()));
        }
        Ok(mut running) => {
            outcomes.push(Outcome {
                what: format!(
                    "bring up topology {} ({} chassis, {} tenants, {} hosts)",
                    cloud.name(),
                    cloud.chassis.len(),
                    cloud.tenants.len(),
                    cloud.hosts.len()
                ),
                result: Ok(format!("in {:.1?}", t0.elapsed())),
            });
            outcomes.extend(verify(&mut running, exe));
            let namespaces = running.state.netns.clone();
            let dir = running.dir.clone();
            let td = running.teardown().map_err(|e| format!("{e:#}"));
            let leftovers: Vec<&String> = namespaces.iter().filter(|n| netns::exists(n)).collect();
            let td = td.and_then(|_| {
                if leftovers.is_empty() && !dir.exists() {
                    Ok(format!("{} namespaces removed", namespaces.len()))
                } else {
                    Err(format!("left behind: {leftovers:?}"))
                }
            });
            outcomes.push(Outcome {
                what: "tear down".into(),
                result: td,
            });
        }
    }
    outcomes
}

/// Runs `cmd` inside host `node`'s namespace (or a chassis's) of a running topology.
pub fn exec(cloud: &Cloud, node: &str, cmd: &[String]) -> Result<std::process::ExitStatus> {
    let st = State::load(&state_dir(cloud.name()))
        .with_context(|| format!("is topology {} up?", cloud.name()))?;
    let ns = st
        .hosts
        .iter()
        .find(|h| h.name == node)
        .map(|h| h.netns.clone())
        .or_else(|| {
            st.chassis
                .iter()
                .find(|c| c.name == node)
                .map(|c| c.netns.clone())
        })
        .ok_or_else(|| anyhow!("no host or chassis {node} in topology {}", cloud.name()))?;
    let (prog, args) = cmd.split_first().context("no command")?;
    Ok(Command::new("ip")
        .args(["netns", "exec", &ns, prog])
        .args(args)
        .status()?)
}

/// Pings every host from every other host; (pairs that answered, pairs tried, lines).
pub fn ping_all(cloud: &Cloud) -> Result<(usize, usize, Vec<String>)> {
    let st = State::load(&state_dir(cloud.name()))
        .with_context(|| format!("is topology {} up?", cloud.name()))?;
    let mut lines = Vec::new();
    let (mut ok, mut n) = (0, 0);
    for a in &st.hosts {
        let mut row = format!("{:>8} ->", a.name);
        for b in &st.hosts {
            if a.name == b.name {
                continue;
            }
            n += 1;
            if (0..2).any(|_| ping_once(&a.netns, &b.ip)) {
                ok += 1;
                row.push_str(&format!(" {}", b.name));
            } else {
                row.push_str(&format!(" X({})", b.name));
            }
        }
        lines.push(row);
    }
    Ok((ok, n, lines))
}
