//! `plexus-topo bench scale`: the OVN scale scenario (`../shared/bench/ovn-scale.sh`)
//! built through Plexus's REST API, measured the same way.
//!
//! Model (identical to the OVN script): T tenants, each one VPC (10.0.0.0/16) with two
//! subnets that every tenant shares (10.0.0.0/24, 10.0.1.0/24: overlapping CIDRs), one
//! router on both, P ports per subnet (MAC `0a:TT:TT:kk:ii:ii`, IP 10.0.k.(i+10), port
//! security on) bound to a chassis, S security groups (port i of a subnet is in SG i%S)
//! each with R ingress TCP rules "from group (j+r+1)%S, port 1000+r" and one egress
//! allow-all (default deny ingress = OVN's default-drop port group), and L TCP services
//! (VIP 10.0.2.(j+10):80 → 4 backends 10.0.(b%2).(10+(4j+b)%P):8080).
//!
//! Chassis: one `plexus-vswitchd` with every port as a `dummy` port (like OVN's run on
//! OVS `--enable-dummy` ports), or `--sim-chassis N` simulated switches in this process
//! (OpenFlow sessions that keep a flow table, answer flow stats/group desc and ACK
//! flow-mods, group-mods, bundles and barriers) with the ports spread over them.
//!
//! Measured (printed as `key=value` lines, also appended to `--results`):
//! - `cold`: the complete model in the controller's store, an empty switch; from
//!   starting `plexus-controller` until every chassis realized the store's revision
//!   (all flows acknowledged), plus the flow/group counts;
//! - one change each (port into an SG, one SG rule, one LB backend), N times: from the
//!   REST write until every chassis' realized revision ≥ the write's revision;
//! - controller restart (SIGKILL + start on the same store): flows deleted and added on
//!   the switch (controller counters and the switch's flow count before/after) and the
//!   time until every chassis realized the revision again;
//! - RSS (current/peak) of the controller and the switch.

use crate::cloud::{Api, find_bin};
use anyhow::{Context, Result, bail};
use plexus_openflow::Message;
use plexus_openflow::conn::{Config, ConnHandle, Connection};
use plexus_openflow::message::{
    AggregateStats, BundleControl, BundleCtrlType, FeaturesReply, FlowMod, FlowModCommand,
    FlowStats, FlowStatsRequest, GroupDesc, GroupMod, GroupModCommand, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, OFPMPF_MORE, Port, group_id, port_no,
};
use plexus_openflow::oxm::Match;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Scenario size and options.
#[derive(Debug, Clone)]
pub struct Opts {
    pub tenants: usize,
    pub ports_per_switch: usize,
    pub sgs: usize,
    pub rules: usize,
    pub lbs: usize,
    /// Changes of each kind.
    pub changes: usize,
    /// 0: one plexus-vswitchd; N: N simulated chassis.
    pub sim_chassis: usize,
    /// REST clients populating the model in parallel.
    pub workers: usize,
    pub restarts: usize,
    pub results: Option<PathBuf>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn mac(t: usize, k: usize, i: usize) -> String {
    format!(
        "0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        t >> 8,
        t & 255,
        k,
        i >> 8,
        i & 255
    )
}

/// VmRSS/VmHWM of a process in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// p50/p99/max (nearest rank) of milliseconds.
fn pctl(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (at(0.5), at(0.99), s[s.len() - 1])
}

// ------------------------------------------------------------------ simulated chassis

type FlowId = (u8, u16, Match);

/// A flow's identity as a switch sees it: table, priority and the match with its fields
/// in a canonical order (the same match may arrive with its OXMs in any order).
fn flow_id(fm: &FlowMod) -> FlowId {
    let mut m = fm.match_.clone();
    m.fields.sort_by_key(|f| f.field);
    (fm.table_id, fm.priority, m)
}

#[derive(Debug, Default)]
struct SimTable {
    flows: HashMap<FlowId, FlowMod>,
    groups: BTreeMap<u32, GroupMod>,
}

impl SimTable {
    fn flow_mod(&mut self, fm: FlowMod) {
        let cookie_ok = |f: &FlowMod| (f.cookie ^ fm.cookie) & fm.cookie_mask == 0;
        match fm.command {
            FlowModCommand::Add => {
                self.flows.insert(flow_id(&fm), fm);
            }
            FlowModCommand::DeleteStrict => {
                let k = flow_id(&fm);
                if self.flows.get(&k).is_some_and(cookie_ok) {
                    self.flows.remove(&k);
                }
            }
            FlowModCommand::Delete => {
                // Loose delete: only the forms a controller uses to wipe (empty match).
                let all = fm.table_id == 0xff;
                self.flows.retain(|k, f| {
                    !(fm.match_.fields.is_empty() && (all || k.0 == fm.table_id) && cookie_ok(f))
                });
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                let k = flow_id(&fm);
                if let Some(f) = self.flows.get_mut(&k) {
                    f.instructions = fm.instructions;
                }
            }
        }
    }

    fn group_mod(&mut self, gm: GroupMod) {
        match gm.command {
            GroupModCommand::Delete => {
                if gm.group_id == group_id::ALL {
                    self.groups.clear();
                } else {
                    self.groups.remove(&gm.group_id);
                }
            }
            _ => {
                self.groups.insert(gm.group_id, gm);
            }
        }
    }
}

/// A simulated chassis: an OpenFlow switch endpoint without a datapath.
#[derive(Debug)]
pub struct SimSwitch {
    pub dpid: u64,
    pub port: u16,
    pub ports: Vec<(String, u32)>,
    table: Arc<Mutex<SimTable>>,
}

impl SimSwitch {
    pub fn flow_count(&self) -> usize {
        self.table.lock().unwrap().flows.len()
    }
}

fn chunks<T: Clone>(v: Vec<T>, n: usize) -> Vec<Vec<T>> {
    if v.is_empty() {
        return vec![Vec::new()];
    }
    v.chunks(n).map(<[T]>::to_vec).collect()
}

fn send_multipart(h: &ConnHandle, xid: u32, parts: Vec<MultipartReplyBody>) {
    let n = parts.len();
    for (i, body) in parts.into_iter().enumerate() {
        let flags = if i + 1 < n { OFPMPF_MORE } else { 0 };
        let _ = h.send_with_xid(
            &Message::MultipartReply(MultipartReply { flags, body }),
            xid,
        );
    }
}

async fn sim_session(
    conn: Connection,
    dpid: u64,
    ports: Vec<(String, u32)>,
    table: Arc<Mutex<SimTable>>,
) {
    let Connection {
        handle,
        mut incoming,
        ..
    } = conn;
    let mut bundles: HashMap<u32, Vec<Message>> = HashMap::new();
    while let Some((xid, ev)) = incoming.recv().await {
        let msg = match ev {
            Ok(m) => m,
            Err(f) => {
                let _ = handle.reply_error(&f);
                continue;
            }
        };
        let reply = |m: Message| {
            let _ = handle.send_with_xid(&m, xid);
        };
        match msg {
            Message::FeaturesRequest => reply(Message::FeaturesReply(FeaturesReply {
                datapath_id: dpid,
                n_buffers: 0,
                n_tables: 254,
                auxiliary_id: 0,
                capabilities: 0,
                reserved: 0,
            })),
            Message::EchoRequest(d) => reply(Message::EchoReply(d)),
            Message::BarrierRequest => reply(Message::BarrierReply),
            Message::FlowMod(fm) => table.lock().unwrap().flow_mod(fm),
            Message::GroupMod(gm) => table.lock().unwrap().group_mod(gm),
            Message::BundleAdd(a) => bundles.entry(a.bundle_id).or_default().push(*a.message),
            Message::BundleControl(b) => {
                let rtype = match b.ctrl_type {
                    BundleCtrlType::OpenRequest => {
                        bundles.insert(b.bundle_id, Vec::new());
                        BundleCtrlType::OpenReply
                    }
                    BundleCtrlType::CommitRequest => {
                        let msgs = bundles.remove(&b.bundle_id).unwrap_or_default();
                        let mut t = table.lock().unwrap();
                        for m in msgs {
                            match m {
                                Message::FlowMod(fm) => t.flow_mod(fm),
                                Message::GroupMod(gm) => t.group_mod(gm),
                                _ => {}
                            }
                        }
                        BundleCtrlType::CommitReply
                    }
                    BundleCtrlType::DiscardRequest => {
                        bundles.remove(&b.bundle_id);
                        BundleCtrlType::DiscardReply
                    }
                    _ => BundleCtrlType::CloseReply,
                };
                reply(Message::BundleControl(BundleControl {
                    bundle_id: b.bundle_id,
                    ctrl_type: rtype,
                    flags: b.flags,
                    properties: Vec::new(),
                }));
            }
            Message::MultipartRequest(r) => {
                let parts = match r.body {
                    MultipartRequestBody::PortDesc => {
                        let v: Vec<Port> = ports
                            .iter()
                            .map(|(name, no)| Port {
                                port_no: *no,
                                hw_addr: [2, 0, 0, 0, (*no >> 8) as u8, *no as u8],
                                name: name.clone(),
                                ..Default::default()
                            })
                            .collect();
                        chunks(v, 500)
                            .into_iter()
                            .map(MultipartReplyBody::PortDesc)
                            .collect()
                    }
                    MultipartRequestBody::Flow(req) => {
                        let v = flow_stats(&table.lock().unwrap(), &req);
                        // Small parts: a merged clause flow carries up to ~100
                        // conjunction actions, and a part must stay under 64 KiB.
                        chunks(v, 16)
                            .into_iter()
                            .map(MultipartReplyBody::Flow)
                            .collect()
                    }
                    MultipartRequestBody::Aggregate(req) => {
                        let n = flow_stats(&table.lock().unwrap(), &req).len();
                        vec![MultipartReplyBody::Aggregate(AggregateStats {
                            packet_count: 0,
                            byte_count: 0,
                            flow_count: n as u32,
                        })]
                    }
                    MultipartRequestBody::GroupDesc => {
                        let v: Vec<GroupDesc> = table
                            .lock()
                            .unwrap()
                            .groups
                            .values()
                            .map(|g| GroupDesc {
                                group_type: g.group_type,
                                group_id: g.group_id,
                                buckets: g.buckets.clone(),
                            })
                            .collect();
                        chunks(v, 200)
                            .into_iter()
                            .map(MultipartReplyBody::GroupDesc)
                            .collect()
                    }
                    _ => Vec::new(),
                };
                if !parts.is_empty() {
                    send_multipart(&handle, xid, parts);
                }
            }
            _ => {}
        }
    }
}

fn flow_stats(t: &SimTable, req: &FlowStatsRequest) -> Vec<FlowStats> {
    t.flows
        .values()
        .filter(|f| (f.cookie ^ req.cookie) & req.cookie_mask == 0)
        .filter(|f| req.table_id == 0xff || f.table_id == req.table_id)
        .map(|f| FlowStats {
            table_id: f.table_id,
            duration_sec: 0,
            duration_nsec: 0,
            priority: f.priority,
            idle_timeout: f.idle_timeout,
            hard_timeout: f.hard_timeout,
            flags: f.flags,
            cookie: f.cookie,
            packet_count: 0,
            byte_count: 0,
            match_: f.match_.clone(),
            instructions: f.instructions.clone(),
        })
        .collect()
}

/// Starts `n` simulated chassis listening on loopback; `ports[i]` are chassis i's ports.
pub fn start_sims(
    rt: &tokio::runtime::Runtime,
    ports: Vec<Vec<(String, u32)>>,
) -> Result<Vec<SimSwitch>> {
    let mut out = Vec::new();
    for (i, p) in ports.into_iter().enumerate() {
        let dpid = 0x5e00_0000_0000 + i as u64 + 1;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let table = Arc::new(Mutex::new(SimTable::default()));
        let (t2, p2) = (table.clone(), p.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let cfg = Config {
                    probe_interval: None,
                    ..Config::default()
                };
                let (t3, p3) = (t2.clone(), p2.clone());
                tokio::spawn(async move {
                    if let Ok(conn) = Connection::accept(stream, &cfg).await {
                        sim_session(conn, dpid, p3, t3).await;
                    }
                });
            }
        });
        out.push(SimSwitch {
            dpid,
            port,
            ports: p,
            table,
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------ processes

struct Proc {
    child: Child,
    dead: bool,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dead = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.dead {
            crate::proc::terminate(&mut self.child, Duration::from_secs(3));
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Proc> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok(Proc { child, dead: false })
}

fn start_controller(dir: &Path, api_port: u16) -> Result<Proc> {
    let bin = find_bin("plexus-controller")?;
    spawn(
        Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .arg("--db")
            .arg(dir.join("plexus.redb"))
            .arg("--token-file")
            .arg(dir.join("tokens"))
            .env(
                "RUST_LOG",
                std::env::var("PLEXUS_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        &dir.join("controller.log"),
    )
}

// ------------------------------------------------------------------ model

/// What the population recorded per tenant (ids and the specs sent, for later PUTs).
#[derive(Debug, Clone, Default)]
struct Tenant {
    sg_ids: Vec<String>,
    sg_specs: Vec<Value>,
    port_ids: Vec<Vec<String>>,
    port_specs: Vec<Vec<Value>>,
    svc_ids: Vec<String>,
    svc_specs: Vec<Value>,
}

fn id_of(v: &Value) -> Result<String> {
    Ok(v["id"].as_str().context("no id in response")?.to_string())
}

fn sg_rules(o: &Opts, sg_ids: &[String], j: usize) -> Vec<Value> {
    let mut rules = vec![json!({"direction": "egress"})];
    for r in 0..o.rules {
        rules.push(json!({"direction": "ingress", "protocol": "tcp",
            "port_min": 1000 + r, "port_max": 1000 + r,
            "remote_group_id": sg_ids[(j + r + 1) % o.sgs]}));
    }
    rules
}

/// Creates one tenant's objects; `binding(t, k, i)` = (chassis id, iface).
fn populate_tenant(
    api: &Api,
    o: &Opts,
    t: usize,
    binding: &dyn Fn(usize, usize, usize) -> (String, String),
) -> Result<Tenant> {
    let p = o.ports_per_switch;
    let tid = id_of(&api.post("/v1/tenants", json!({"name": format!("t{t}")}))?)?;
    let vpc = id_of(&api.post(
        "/v1/vpcs",
        json!({"tenant_id": tid, "name": format!("vpc{t}"), "cidrs": ["10.0.0.0/16"]}),
    )?)?;
    let mut subnets = Vec::new();
    for k in 0..2 {
        subnets.push(id_of(&api.post(
            "/v1/subnets",
            json!({"vpc_id": vpc, "name": format!("ls_{t}_{k}"), "cidr": format!("10.0.{k}.0/24")}),
        )?)?);
    }
    api.post(
        "/v1/routers",
        json!({"vpc_id": vpc, "name": format!("lr_{t}"), "subnet_ids": subnets}),
    )?;
    let mut ten = Tenant::default();
    for j in 0..o.sgs {
        ten.sg_ids.push(id_of(&api.post(
            "/v1/security-groups",
            json!({"tenant_id": tid, "name": format!("pg_{t}_{j}"), "rules": []}),
        )?)?);
    }
    for j in 0..o.sgs {
        let spec = json!({"tenant_id": tid, "name": format!("pg_{t}_{j}"),
                          "rules": sg_rules(o, &ten.sg_ids, j)});
        api.put(
            &format!("/v1/security-groups/{}", ten.sg_ids[j]),
            spec.clone(),
        )?;
        ten.sg_specs.push(spec);
    }
    for (k, subnet) in subnets.iter().enumerate() {
        let (mut ids, mut specs) = (Vec::new(), Vec::new());
        for i in 0..p {
            let (ch, iface) = binding(t, k, i);
            let spec = json!({"subnet_id": subnet, "name": format!("p_{t}_{k}_{i}"),
                "mac": mac(t, k, i), "ips": [format!("10.0.{k}.{}", i + 10)],
                "security_groups": [ten.sg_ids[i % o.sgs]],
                "binding": {"chassis_id": ch, "iface": iface}});
            ids.push(id_of(&api.post("/v1/ports", spec.clone())?)?);
            specs.push(spec);
        }
        ten.port_ids.push(ids);
        ten.port_specs.push(specs);
    }
    for j in 0..o.lbs {
        let backends: Vec<Value> = (0..4)
            .map(|b| {
                json!({"ip": format!("10.0.{}.{}", b % 2, 10 + (j * 4 + b) % p), "target_port": 8080})
            })
            .collect();
        let spec = json!({"vpc_id": vpc, "name": format!("lb_{t}_{j}"),
            "vip": format!("10.0.2.{}", j + 10), "port": 80, "backends": backends});
        ten.svc_ids
            .push(id_of(&api.post("/v1/services", spec.clone())?)?);
        ten.svc_specs.push(spec);
    }
    Ok(ten)
}

/// Waits until every chassis is connected and realized `rev`; returns the status.
fn wait_all(api: &Api, chassis: &[String], rev: u64, timeout: Duration) -> Result<Value> {
    let t0 = Instant::now();
    loop {
        let s = api.get("/v1/status?objects=false")?;
        let done = chassis.iter().all(|c| {
            let x = &s["chassis"][c.as_str()];
            x["connected"] == true && x["realized_revision"].as_u64().unwrap_or(0) >= rev
        });
        if done {
            return Ok(s);
        }
        if t0.elapsed() > timeout {
            bail!("revision {rev} not realized within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sum(s: &Value, chassis: &[String], key: &str) -> u64 {
    chassis
        .iter()
        .map(|c| s["chassis"][c.as_str()][key].as_u64().unwrap_or(0))
        .sum()
}

/// Flow count of a plexus-vswitchd through our own OpenFlow session.
fn switch_flows(target: &str) -> Result<u64> {
    let sw = crate::controller::Switch::connect(target)?;
    let req = FlowStatsRequest {
        table_id: 0xff,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        cookie: 0,
        cookie_mask: 0,
        match_: Match::default(),
    };
    for b in sw.multipart(MultipartRequestBody::Aggregate(req))? {
        if let MultipartReplyBody::Aggregate(a) = b {
            return Ok(a.flow_count as u64);
        }
    }
    bail!("no aggregate reply")
}

/// Runs the scenario; prints and returns `key=value` lines.
pub fn run(o: &Opts) -> Result<Vec<String>> {
    let (t_n, p) = (o.tenants, o.ports_per_switch);
    let nports = 2 * t_n * p;
    let tag = format!(
        "plexus T{t_n}_P{p}_S{}_R{}_L{}{}",
        o.sgs,
        o.rules,
        o.lbs,
        if o.sim_chassis > 0 {
            format!("_sim{}", o.sim_chassis)
        } else {
            String::new()
        }
    );
    let dir = std::env::temp_dir().join(format!("plexus-bench-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = DirGuard(dir.clone());
    let token = "bench-admin-token";
    std::fs::write(dir.join("tokens"), format!("{token} admin\n"))?;
    let mut out = Vec::new();
    let mut res = |line: String| {
        println!("{tag} {line}");
        out.push(format!("{tag} {line}"));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // Chassis.
    let api_port = free_port()?;
    let mut ctl = start_controller(&dir, api_port)?;
    let api = Api::new(api_port, token)?;
    api.wait_up(Duration::from_secs(30))?;
    let mut vswitchd: Option<Proc> = None;
    let mut sw_target = String::new();
    let mut chassis_ids: Vec<String> = Vec::new();
    let mut sims = Vec::new();
    // iface name of port (t, k, i) and its chassis index
    let iface = |t: usize, k: usize, i: usize| (t * 2 + k) * p + i;
    let n_ch = o.sim_chassis.max(1);
    if o.sim_chassis > 0 {
        let mut per: Vec<Vec<(String, u32)>> = vec![vec![("plx-vxlan".into(), 60000)]; n_ch];
        for g in 0..nports {
            per[g % n_ch].push((format!("v{g}"), g as u32 + 1));
        }
        sims = start_sims(&rt, per)?;
        for (i, s) in sims.iter().enumerate() {
            let c = api.post(
                "/v1/chassis",
                json!({"name": format!("sim{i}"), "vtep_ip": format!("192.0.2.{}", i + 1),
                       "endpoint": {"datapath_id": format!("{:#x}", s.dpid),
                                    "openflow": format!("tcp:127.0.0.1:{}", s.port)}}),
            )?;
            chassis_ids.push(id_of(&c)?);
        }
    } else {
        let listen = free_port()?;
        sw_target = format!("tcp:127.0.0.1:{listen}");
        let dpid = 0x504c_5343_0001u64;
        let c = api.post(
            "/v1/chassis",
            json!({"name": "hv1", "vtep_ip": "192.0.2.1",
                   "endpoint": {"datapath_id": format!("{dpid:#x}"), "openflow": sw_target}}),
        )?;
        chassis_ids.push(id_of(&c)?);
        let bin = find_bin("plexus-vswitchd")?;
        let mut cmd = Command::new(bin);
        cmd.args(["--dpid", &format!("{dpid:x}"), "--port-type", "dummy"])
            .args(["--fail-mode", "secure", "--bridge", "br-int"])
            .args(["--listen", &format!("ptcp:{listen}:127.0.0.1")])
            .arg("--ctl")
            .arg(dir.join("vswitchd.ctl"));
        for g in 0..nports {
            cmd.args(["--port", &format!("v{g}={}", g + 1)]);
        }
        vswitchd = Some(spawn(&mut cmd, &dir.join("vswitchd.log"))?);
        std::thread::sleep(Duration::from_millis(300));
    }

    // Model, populated by parallel REST clients (the switch is already connected: the
    // controller compiles and programs as the model grows, like OVN with northd running;
    // the cold figure below is measured from a restart on the complete model).
    let t0 = Instant::now();
    let chassis_of = |g: usize| chassis_ids[g % n_ch].clone();
    let tenants: Vec<Tenant> = std::thread::scope(|s| -> Result<Vec<Tenant>> {
        let w = o.workers.max(1);
        let hs: Vec<_> = (0..w)
            .map(|wi| {
                let chassis_of = &chassis_of;
                s.spawn(move || -> Result<Vec<(usize, Tenant)>> {
                    let api = Api::new(api_port, token)?;
                    let bind = |t: usize, k: usize, i: usize| {
                        let g = iface(t, k, i);
                        (chassis_of(g), format!("v{g}"))
                    };
                    (0..t_n)
                        .filter(|t| t % w == wi)
                        .map(|t| Ok((t, populate_tenant(&api, o, t, &bind)?)))
                        .collect()
                })
            })
            .collect();
        let mut all: Vec<(usize, Tenant)> = Vec::new();
        for h in hs {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??);
        }
        all.sort_by_key(|x| x.0);
        Ok(all.into_iter().map(|x| x.1).collect())
    })?;
    let populate = t0.elapsed();
    let rev = api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let t1 = Instant::now();
    wait_all(&api, &chassis_ids, rev, Duration::from_secs(1800))?;
    res(format!(
        "populate_ms={:.0} objects_rev={rev} realized_after_populate_ms={:.0} ports={nports} chassis={}",
        populate.as_secs_f64() * 1e3,
        t1.elapsed().as_secs_f64() * 1e3,
        chassis_ids.len()
    ));

    // Cold: controller stopped, switch emptied (restarted), controller started on the
    // complete model.
    ctl.kill9();
    if let Some(v) = vswitchd.as_mut() {
        v.kill9();
        let bin = find_bin("plexus-vswitchd")?;
        let mut cmd = Command::new(bin);
        let listen = sw_target.rsplit(':').next().unwrap_or("0").to_string();
        cmd.args(["--dpid", "504c53430001", "--port-type", "dummy"])
            .args(["--fail-mode", "secure", "--bridge", "br-int"])
            .args(["--listen", &format!("ptcp:{listen}:127.0.0.1")])
            .arg("--ctl")
            .arg(dir.join("vswitchd.ctl"));
        for g in 0..nports {
            cmd.args(["--port", &format!("v{g}={}", g + 1)]);
        }
        *v = spawn(&mut cmd, &dir.join("vswitchd.log"))?;
        std::thread::sleep(Duration::from_millis(500));
    } else {
        for s in &sims {
            let mut t = s.table.lock().unwrap();
            t.flows.clear();
            t.groups.clear();
        }
    }
    let t0 = Instant::now();
    ctl = start_controller(&dir, api_port)?;
    api.wait_up(Duration::from_secs(60))?;
    let st = wait_all(&api, &chassis_ids, rev, Duration::from_secs(1800))?;
    let cold = t0.elapsed();
    let flows = sum(&st, &chassis_ids, "flow_count");
    let sw_flows = if o.sim_chassis > 0 {
        sims.iter().map(|s| s.flow_count() as u64).sum()
    } else {
        switch_flows(&sw_target)?
    };
    res(format!(
        "cold_ms={:.0} flows_desired={flows} flows_in_switches={sw_flows} flows_per_port={:.1}",
        cold.as_secs_f64() * 1e3,
        flows as f64 / nports as f64
    ));
    let mem = |ctl: &Proc, vs: &Option<Proc>| {
        let (c, ch) = rss_mib(ctl.pid());
        let (v, vh) = vs.as_ref().map(|v| rss_mib(v.pid())).unwrap_or((0.0, 0.0));
        format!(
            "rss_MiB(cur/peak) controller={c:.0}/{ch:.0} vswitchd={v:.0}/{vh:.0} total={:.0}/{:.0}",
            c + v,
            ch + vh
        )
    };
    res(mem(&ctl, &vswitchd));

    // One change at a time.
    let mut lat: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut tenants = tenants;
    let timeout = Duration::from_secs(120);
    for x in 0..o.changes {
        let t = x % t_n;
        let j = (x / t_n) % o.sgs;
        let k = x % 2;
        let mut i = (j + 1 + x) % p;
        if i % o.sgs == j {
            i = (i + 1) % p;
        }
        let ten = &mut tenants[t];
        // +1 port in an SG.
        let sg = ten.sg_ids[j].clone();
        let spec = &mut ten.port_specs[k][i];
        spec["security_groups"]
            .as_array_mut()
            .context("sgs")?
            .push(json!(sg));
        let t0 = Instant::now();
        let r = api.put(&format!("/v1/ports/{}", ten.port_ids[k][i]), spec.clone())?;
        wait_all(
            &api,
            &chassis_ids,
            r["revision"].as_u64().unwrap_or(0),
            timeout,
        )?;
        lat.entry("port_sg")
            .or_default()
            .push(t0.elapsed().as_secs_f64() * 1e3);
        // +1 SG rule.
        let remote = ten.sg_ids[(j + 1) % o.sgs].clone();
        let spec = &mut ten.sg_specs[j];
        spec["rules"].as_array_mut().context("rules")?.push(json!({
            "direction": "ingress", "protocol": "tcp", "port_min": 20000 + x,
            "port_max": 20000 + x, "remote_group_id": remote}));
        let t0 = Instant::now();
        let r = api.put(&format!("/v1/security-groups/{sg}"), spec.clone())?;
        wait_all(
            &api,
            &chassis_ids,
            r["revision"].as_u64().unwrap_or(0),
            timeout,
        )?;
        lat.entry("sg_rule")
            .or_default()
            .push(t0.elapsed().as_secs_f64() * 1e3);
        // +1 LB backend.
        let jl = (x / t_n) % o.lbs;
        let spec = &mut ten.svc_specs[jl];
        spec["backends"]
            .as_array_mut()
            .context("backends")?
            .push(json!({
            "ip": format!("10.0.{}.{}", x % 2, 10 + (x * 7 + 3) % p), "target_port": 9000 + x}));
        let t0 = Instant::now();
        let r = api.put(&format!("/v1/services/{}", ten.svc_ids[jl]), spec.clone())?;
        wait_all(
            &api,
            &chassis_ids,
            r["revision"].as_u64().unwrap_or(0),
            timeout,
        )?;
        lat.entry("lb_backend")
            .or_default()
            .push(t0.elapsed().as_secs_f64() * 1e3);
    }
    for (k, v) in &lat {
        let (p50, p99, max) = pctl(v);
        res(format!(
            "inc_{k}_ms p50={p50:.1} p99={p99:.1} max={max:.1} n={}",
            v.len()
        ));
    }

    // Controller restart.
    for n in 0..o.restarts {
        let rev = api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
        let before = if o.sim_chassis > 0 {
            sims.iter().map(|s| s.flow_count() as u64).sum()
        } else {
            switch_flows(&sw_target)?
        };
        ctl.kill9();
        let t0 = Instant::now();
        ctl = start_controller(&dir, api_port)?;
        api.wait_up(Duration::from_secs(60))?;
        let st = wait_all(&api, &chassis_ids, rev, Duration::from_secs(1800))?;
        let resync = t0.elapsed();
        let after = if o.sim_chassis > 0 {
            sims.iter().map(|s| s.flow_count() as u64).sum()
        } else {
            switch_flows(&sw_target)?
        };
        res(format!(
            "restart#{n} resync_ms={:.0} flow_deletes={} flow_adds={} reconciles={} switch_flows_before={before} after={after}",
            resync.as_secs_f64() * 1e3,
            sum(&st, &chassis_ids, "flow_deletes"),
            sum(&st, &chassis_ids, "flow_adds"),
            sum(&st, &chassis_ids, "reconciles"),
        ));
    }
    res(mem(&ctl, &vswitchd));
    if let Some(path) = &o.results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for l in &out {
            writeln!(f, "{l}")?;
        }
    }
    drop(ctl);
    drop(vswitchd);
    drop(sims);
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(out)
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::env::var_os("PLEXUS_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pctl(&v), (50.0, 99.0, 100.0));
        assert_eq!(pctl(&[3.0]), (3.0, 3.0, 3.0));
    }

    #[test]
    fn sim_table_follows_flow_mods() {
        use plexus_openflow::text::flow::parse_flow_mod;
        let mut t = SimTable::default();
        let mut a = parse_flow_mod(
            "table=1,priority=5,in_port=1,actions=drop",
            FlowModCommand::Add,
        )
        .unwrap();
        a.cookie = 7;
        t.flow_mod(a.clone());
        assert_eq!(t.flows.len(), 1);
        let mut d = a.clone();
        d.command = FlowModCommand::DeleteStrict;
        d.cookie_mask = u64::MAX;
        d.cookie = 8;
        t.flow_mod(d.clone());
        assert_eq!(t.flows.len(), 1, "cookie mismatch keeps the flow");
        d.cookie = 7;
        t.flow_mod(d);
        assert!(t.flows.is_empty());
        assert_eq!(mac(1, 1, 300), "0a:00:01:01:01:2c");
    }
}
