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
pub mod soak;
pub use l3::{name_client, name_server};
pub mod spec;
pub mod state;

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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A blocking client of the controller's REST API.
#[derive(Debug)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(port: u16, token: &str) -> Result<Self> {
        Ok(Self {
            base: format!("http://127.0.0.1:{port}"),
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
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req
                .send()
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{method} {path}: {status}: {v}");
            }
            Ok(v)
        })
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(&body))
    }
    pub fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(&body))
    }
    pub fn delete(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::DELETE, path, None)
    }
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    fn healthy(&self) -> bool {
        self.rt.block_on(async {
            self.http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    /// Waits up to `timeout` for `/healthz`.
    pub fn wait_up(&self, timeout: Duration) -> Result<()> {
        if crate::proc::wait_until(timeout, || self.healthy()) {
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
            let s = self.get("/v1/status")?;
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

/// Starts `plexus-controller` for the run in `dir`; returns its record.
fn start_controller(dir: &Path, st: &State) -> Result<Proc> {
    let bin = find_bin("plexus-controller")?;
    let child = spawn_logged(
        Command::new(&bin)
            .args(["--listen", &format!("127.0.0.1:{}", st.api_port)])
            .arg("--db")
            .arg(dir.join("plexus.redb"))
            .arg("--token-file")
            .arg(dir.join("tokens"))
            .args([
                "--openflow-listen",
                &format!("ptcp:{}:127.0.0.1", st.openflow_port),
            ])
            .env(
                "RUST_LOG",
                std::env::var("PLEXUS_TOPO_LOG").unwrap_or_else(|_| "info".into()),
            ),
        &dir.join("controller.log"),
    )
    .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc {
        pid: child.id(),
        comm: "plexus-controller".into(),
        role: "controller".into(),
    })
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
    let api = Api::new(state.api_port, &state.token)?;
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

    progress("starting plexus-controller (embedded redb store)");
    let ctl = start_controller(&dir, &r.state)?;
    r.record(|s| s.procs.push(ctl))?;
    r.api.wait_up(Duration::from_secs(20))?;

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
                let ovs = Ovs::builder()
                    .netns(NetnsMode::Named(ns.clone()))
                    .state_dir(&odir)
                    .controller(&target)
                    .dpid(dpid)
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
                    .args(["--controller", &target])
                    .args(["--listen", &format!("ptcp:{listen}:127.0.0.1")])
                    .args(["--bridge", "br0"])
                    .arg("--ctl")
                    .arg(dir.join(format!("vswitchd-{cn}.ctl")));
                for (ifname, ofport) in &plist {
                    cmd.args(["--port", &format!("{ifname}={ofport}")]);
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
        let obj = r.api.post(
            "/v1/chassis",
            json!({"name": cn, "vtep_ip": vtep,
                   "endpoint": {"datapath_id": format!("{dpid:#x}")}}),
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
            CheckSpec::ControllerRestart {
                from,
                to,
                seconds,
                interval_ms,
                down_seconds,
            } => {
                let result = check_restart(r, from, to, *seconds, *interval_ms, *down_seconds);
                let down = if *down_seconds > 0 {
                    format!(", switches disconnected for {down_seconds} s")
                } else {
                    String::new()
                };
                out.push(Outcome {
                    what: format!(
                        "controller kill -9 + restart{down} under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::PacketInFlood { from, to, seconds } => {
                let result = check_packet_in_flood(r, exe, from, to, *seconds);
                out.push(Outcome {
                    what: format!(
                        "packet-in flood {from} -> {to} for {seconds} s: rate-limited per port, API responsive"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::SwitchRestart {
                from,
                to,
                seconds,
                interval_ms,
            } => {
                let result = check_switch_restart(r, from, to, *seconds, *interval_ms);
                out.push(Outcome {
                    what: format!(
                        "plexus-vswitchd kill -9 + restart under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms"
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

/// `plexus-appctl show --format json` of a plexus-vswitchd chassis.
fn appctl_show(r: &Running, chassis: &str) -> Result<Value> {
    let ctl = r.dir.join(format!("vswitchd-{chassis}.ctl"));
    let out = run_ok(
        Command::new(find_bin("plexus-appctl")?)
            .arg("-t")
            .arg(&ctl)
            .args(["--format", "json", "show"]),
        Duration::from_secs(10),
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Whether any controller of a plexus-vswitchd chassis is connected.
fn switch_connected(r: &Running, chassis: &str) -> Result<bool> {
    let v = appctl_show(r, chassis)?;
    Ok(v["controllers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["connected"] == json!(true))))
}

fn check_restart(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
    down_seconds: u32,
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
    if down_seconds > 0 {
        std::thread::sleep(Duration::from_secs(1));
    } else {
        std::thread::sleep(Duration::from_millis(u64::from(seconds) * 250));
    }
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
    let mut outage = String::new();
    if down_seconds > 0 {
        // The switches are disconnected for `down_seconds`: each
        // plexus-vswitchd must say so (fail-secure, installed flows kept).
        let killed = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let mut disconnected = Vec::new();
        for c in r
            .state
            .chassis
            .iter()
            .filter(|c| c.kind == "plexus-vswitchd")
        {
            if switch_connected(r, &c.name)? {
                bail!("chassis {} still reports a connected controller", c.name);
            }
            disconnected.push(c.name.clone());
        }
        let rest = Duration::from_secs(u64::from(down_seconds)).saturating_sub(killed.elapsed());
        std::thread::sleep(rest);
        outage = format!(
            "; controller down {:.1?} ({} disconnected, fail-secure)",
            killed.elapsed(),
            disconnected.join(", ")
        );
    }
    let t0 = Instant::now();
    let newp = start_controller(&r.dir, &r.state)?;
    r.record(|s| s.procs[old] = newp)?;
    r.api.wait_up(Duration::from_secs(20))?;
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
    let mut churn = Vec::new();
    for (c, before) in r.state.chassis.iter().zip(&before) {
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
    if !summary.contains(" 0% packet loss") {
        bail!("lost pings: {summary}");
    }
    if !churn.is_empty() {
        bail!("flow churn after restart: {}", churn.join("; "));
    }
    for c in r
        .state
        .chassis
        .iter()
        .filter(|c| c.kind == "plexus-vswitchd")
    {
        if !crate::proc::wait_until(Duration::from_secs(20), || {
            switch_connected(r, &c.name).unwrap_or(false)
        }) {
            bail!("chassis {} did not reconnect", c.name);
        }
    }
    Ok(format!(
        "{summary}{outage}; resynced {resync:.1?} after restart; 0 flow adds/deletes"
    ))
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Times `GET /v1/status`; `Err` if it failed.
fn api_latency(r: &Running) -> Result<Duration> {
    let t = Instant::now();
    r.api.get("/v1/status")?;
    Ok(t.elapsed())
}

fn check_packet_in_flood(
    r: &mut Running,
    exe: &Path,
    from: &str,
    to: &str,
    seconds: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let c = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == a.chassis)
        .context("chassis of the source host")?
        .clone();
    if c.kind != "plexus-vswitchd" {
        bail!("chassis {} is {}, not plexus-vswitchd", c.name, c.kind);
    }
    let iface = format!("{}-{}", r.cloud.name(), a.name);
    let port_of = |v: &Value| -> Option<Value> {
        v["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == json!(iface))
            .cloned()
    };
    let before = port_of(&appctl_show(r, &c.name)?).context("port of the source host")?;
    let mut base = Vec::new();
    for _ in 0..50 {
        base.push(api_latency(r)?);
    }
    // A foreign flow punting the source's UDP to the controller.
    let flow = format!(
        "cookie=0x1,table=0,priority=65535,udp,dl_src={},actions=controller",
        a.mac
    );
    run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "add-flow", &c.ofctl_target, &flow]),
        Duration::from_secs(10),
    )?;
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ip", "neigh", "replace", &b.ip, "lladdr", &b.mac, "dev",
            "eth0",
        ])
        .status();
    let t0 = Instant::now();
    let flood = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(exe)
        .args([
            "udp-flood",
            &format!("{}:9", b.ip),
            "--secs",
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("udp flood")?;
    let mut during = Vec::new();
    let mut failed = 0;
    while t0.elapsed() < Duration::from_secs(u64::from(seconds)) {
        match api_latency(r) {
            Ok(d) => during.push(d),
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = flood.wait_with_output()?;
    let elapsed = t0.elapsed();
    let sent_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let after = port_of(&appctl_show(r, &c.name)?).context("port of the source host")?;
    let _ = run_ok(
        Command::new("ovs-ofctl").args([
            "-O",
            "OpenFlow13",
            "del-flows",
            &c.ofctl_target,
            "cookie=0x1/-1",
        ]),
        Duration::from_secs(10),
    );
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (pins, dropped) = (
        n(&after, "packet_ins_sent") - n(&before, "packet_ins_sent"),
        n(&after, "packet_ins_dropped") - n(&before, "packet_ins_dropped"),
    );
    let (rate, burst) = (n(&after, "packet_in_rate"), n(&after, "packet_in_burst"));
    if failed > 0 {
        bail!("{failed} API requests failed during the flood");
    }
    if rate == 0 {
        bail!("the port has no packet-in rate limit");
    }
    if dropped == 0 {
        bail!("no packet-in dropped: the flood ({sent_line}) never exceeded {rate}/s");
    }
    let allowed = (rate as f64 * (elapsed.as_secs_f64() + 1.0)) as u64 + burst;
    if pins > allowed {
        bail!("{pins} packet-ins passed in {elapsed:.1?}, limit {rate}/s + burst {burst}");
    }
    if !switch_connected(r, &c.name)? {
        bail!("the switch lost its controller during the flood");
    }
    let (b50, b99) = (percentile(&mut base, 0.5), percentile(&mut base, 0.99));
    let (d50, d99) = (percentile(&mut during, 0.5), percentile(&mut during, 0.99));
    let dmax = during.iter().max().copied().unwrap_or_default();
    Ok(format!(
        "{sent_line}; packet-ins {pins} passed, {dropped} dropped (limit {rate}/s, burst {burst}); GET /v1/status p50/p99 {b50:.1?}/{b99:.1?} before, {d50:.1?}/{d99:.1?} (max {dmax:.1?}, {} requests, 0 failed) during",
        during.len()
    ))
}

/// kill -9 `from`'s plexus-vswitchd under a ping flood, restart it with the
/// same command line, and wait until the controller restored its flows.
fn check_switch_restart(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let c = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == a.chassis)
        .context("chassis of the source host")?
        .clone();
    if c.kind != "plexus-vswitchd" {
        bail!("chassis {} is {}, not plexus-vswitchd", c.name, c.kind);
    }
    let role = format!("chassis {}", c.name);
    let idx = r
        .state
        .procs
        .iter()
        .position(|p| p.role == role)
        .context("no plexus-vswitchd recorded for the chassis")?;
    let p = r.state.procs[idx].clone();
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("plexus-vswitchd [{}] is not running", p.pid);
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let before = dump_flows(&c.ofctl_target)?;
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(std::slice::from_ref(&c.id), rev, Duration::from_secs(30))?;
    let want = st["chassis"][c.id.as_str()]["flow_count"]
        .as_u64()
        .unwrap_or(0);
    if want == 0 || before.len() as u64 != want {
        bail!(
            "before the kill: switch holds {}, controller wants {want}",
            before.len()
        );
    }
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
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    if !crate::proc::wait_until(Duration::from_secs(5), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    }) {
        bail!("plexus-vswitchd [{}] survived SIGKILL", p.pid);
    }
    let t0 = Instant::now();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let child = spawn_logged(&mut cmd, &r.dir.join(format!("vswitchd-{}.log", c.name)))
        .context("restarting plexus-vswitchd")?;
    let newp = Proc {
        pid: child.id(),
        comm: p.comm.clone(),
        role: role.clone(),
    };
    r.record(|s| s.procs[idx] = newp)?;
    // Converged: the switch holds exactly the controller's flows again and
    // a ping goes through.
    let mut restored = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if dump_flows(&c.ofctl_target).is_ok_and(|f| f.len() as u64 == want) {
            restored = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(restored) = restored else {
        bail!(
            "flows not restored within 60 s: switch holds {:?}, controller wants {want}",
            dump_flows(&c.ofctl_target).map(|f| f.len())
        );
    };
    if !(0..20).any(|_| ping_once(&a.netns, &b.ip)) {
        bail!("no ping {from} -> {to} after the flows were restored");
    }
    let converged = t0.elapsed();
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let after = dump_flows(&c.ofctl_target)?;
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v
            .iter()
            .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
            .collect();
        v.sort();
        v
    };
    if norm(&after) != norm(&before) {
        bail!(
            "restored flows differ from the ones before the kill ({} vs {})",
            after.len(),
            before.len()
        );
    }
    // Traffic flows again, both ways, after the flood.
    if !(0..3).all(|_| ping_once(&b.netns, &a.ip)) {
        bail!("{to} -> {from} does not reach after the restart");
    }
    Ok(format!(
        "{summary}; {want} flows restored {restored:.1?} after the restart, traffic through {converged:.1?} after it; flows identical to before the kill"
    ))
}

/// `plexus-topo run` for a cloud topology. Returns the number of failed items.
pub fn run(cloud: &Cloud, file: &Path, exe: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let t0 = Instant::now();
    let mut progress = |s: &str| eprintln!("[{:>5.1}s] {s}", t0.elapsed().as_secs_f64());
    match up(cloud, file, &mut progress) {
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
