//! OVSDB-driven configuration: `plexus-vswitchd --db FILE --ovsdb-listen …`
//! serves the `Open_vSwitch` database (the real OVS schema) and configures
//! itself from it like ovs-vswitchd, so `ovs-vsctl` works unchanged.
//!
//! [`run`] watches the embedded server for commits ([`Server::subscribe`]),
//! reads the database directly from the server core (consistent, and it sees
//! its own writes at once) and reconciles:
//! - a `Bridge` row is one datapath thread + OpenFlow agent; its datapath id
//!   is `other_config:datapath-id` or, like OVS, derived from the row UUID;
//! - every `Interface` of the bridge's `Port`s becomes a datapath port added
//!   live ([`Ctl::AddPort`]) — the internal interface named like the bridge
//!   is the `LOCAL` port (a tap device, ofport 65534 in the database);
//!   `ofport_request` is honoured, then the previously reported `ofport`,
//!   then the lowest free number; removed rows are deleted live
//!   ([`Ctl::DelPort`]); a changed type/options re-creates the port;
//! - `Controller` targets (`tcp:`/`unix:` active, `ptcp:`/`punix:` passive)
//!   and `fail_mode` (unset = standalone, as in OVS) are applied live;
//! - written back like OVS: `Interface.ofport` (-1 with `error` on failure),
//!   `mac_in_use`, `ifindex`, `link_state`, `admin_state`, `statistics`
//!   (periodically), `Bridge.datapath_id`, `Controller.is_connected`, and
//!   `Open_vSwitch.cur_cfg = next_cfg` once a configuration is applied (which
//!   is what `ovs-vsctl` waits for unless `--no-wait`).
//!
//! Interface types: `""`/`system` (an existing netdev: AF_XDP falling back to
//! AF_PACKET, or AF_PACKET with `other_config:port-type=afpacket`), `afxdp`
//! (AF_XDP only, `options:xdp-mode=native|generic|best-effort`), `tap` and
//! `internal` (tap devices, created if missing), `vxlan` (userspace VXLAN,
//! `options:remote_ip/local_ip/key/dst_port/tos/ttl/df_default`, see
//! [`crate::port::vxlan`]). Anything else gets `ofport -1` and an `error`;
//! see [`port_opener`], the one place that maps an Interface row to a port.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_openflow::conn::{Connection, Listener, PassiveTarget, Reconnect, Target};
use plexus_openflow::message::port_no;
use plexus_ovsdb::server::Server;
use plexus_ovsdb::{Atom, Datum, Uuid};
use serde_json::{Value, json};

use crate::agent::{Agent, AgentConfig, FailMode, control};
use crate::datapath::{
    self, Ctl, CtlSender, Engine, PortOpener, PortSnapshot, full::FullPipeline,
    simple::SimplePipeline,
};
use crate::port::Port;
use crate::port::afpacket::AfPacketPort;
use crate::port::afxdp::{AfXdpOptions, AfXdpPort};
use crate::port::tap::TapPort;
use crate::port::vxlan::{VxlanConfig, VxlanPort};
use crate::sys;
use crate::sys::bpf::XdpModeRequest;

/// The database name.
pub const DB: &str = "Open_vSwitch";
/// `Interface.ofport` of a bridge's LOCAL port, as OVS writes it.
pub const OFPORT_LOCAL_DB: i64 = 65534;

/// How `system` interfaces are opened by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemPort {
    /// AF_XDP, falling back to AF_PACKET.
    #[default]
    Afxdp,
    /// AF_PACKET.
    Afpacket,
}

/// Daemon-wide settings for OVSDB mode.
#[derive(Debug, Clone)]
pub struct Options {
    /// How `system` interfaces are opened unless `other_config:port-type` says.
    pub system_port: SystemPort,
    /// XDP attach mode for AF_XDP ports.
    pub xdp_mode: XdpModeRequest,
    /// Use the small built-in pipeline.
    pub simple_pipeline: bool,
    /// Packet-ins per second per ingress port (0: unlimited), as `--packet-in-rate`.
    pub packet_in_rate: u32,
    /// Serve `DIR/BRIDGE.mgmt` (`punix:`) per bridge, like OVS's run dir
    /// (`ovs-ofctl show BRIDGE` with `OVS_RUNDIR=DIR`), and the bridge's
    /// control socket `DIR/BRIDGE.ctl` (`plexus-appctl -t DIR/BRIDGE.ctl`).
    pub rundir: Option<std::path::PathBuf>,
    /// How often statistics and link state are written back.
    pub stats_interval: Duration,
    /// Run the datapaths (and so open every port) inside this network
    /// namespace; the database and controller connections stay in the
    /// daemon's namespace.
    pub netns: Option<std::path::PathBuf>,
    /// TLS files were given on the command line: the database's `SSL` row is ignored.
    pub tls_from_flags: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            system_port: SystemPort::Afxdp,
            xdp_mode: XdpModeRequest::Auto,
            simple_pipeline: false,
            packet_in_rate: 1000,
            rundir: None,
            stats_interval: Duration::from_secs(2),
            netns: None,
            tls_from_flags: false,
        }
    }
}

// ---------------------------------------------------------------------------
// The desired configuration, read from the database.

/// One Interface row, as far as the datapath cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceCfg {
    /// Row UUID.
    pub uuid: Uuid,
    /// Interface name.
    pub name: String,
    /// `type`.
    pub type_: String,
    /// `options`.
    pub options: BTreeMap<String, String>,
    /// `other_config`.
    pub other_config: BTreeMap<String, String>,
    /// `ofport_request`.
    pub ofport_request: Option<i64>,
    /// `ofport` as currently stored (kept across restarts).
    pub ofport: Option<i64>,
}

impl IfaceCfg {
    /// What, when changed, requires re-creating the port.
    fn signature(
        &self,
    ) -> (
        String,
        BTreeMap<String, String>,
        Option<String>,
        Option<i64>,
    ) {
        (
            self.type_.clone(),
            self.options.clone(),
            self.other_config.get("port-type").cloned(),
            self.ofport_request,
        )
    }
}

#[derive(Debug, Clone)]
struct BridgeCfg {
    uuid: Uuid,
    name: String,
    dpid: u64,
    fail_mode: FailMode,
    ifaces: Vec<IfaceCfg>,
    /// Controller target → row UUID.
    controllers: BTreeMap<String, Uuid>,
}

#[derive(Debug, Clone, Default)]
struct Config {
    root: Option<Uuid>,
    next_cfg: i64,
    cur_cfg: i64,
    bridges: Vec<BridgeCfg>,
    /// The `SSL` row of `Open_vSwitch.ssl` (`ovs-vsctl set-ssl KEY CERT CA`).
    ssl: Option<plexus_pki::TlsFiles>,
    /// Currently stored values of the columns written back (for "write only if different").
    stored: BTreeMap<(Uuid, &'static str), Datum>,
}

fn string_map(d: Option<&Datum>) -> BTreeMap<String, String> {
    d.and_then(Datum::as_map)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect()
}

fn opt_i64(d: Option<&Datum>) -> Option<i64> {
    d.and_then(Datum::as_scalar).and_then(Atom::as_i64)
}

fn uuids(d: Option<&Datum>) -> Vec<Uuid> {
    d.into_iter()
        .flat_map(|d| d.keys())
        .filter_map(Atom::as_uuid)
        .collect()
}

fn scalar_str(d: Option<&Datum>) -> Option<String> {
    d.and_then(Datum::as_scalar)
        .and_then(Atom::as_str)
        .map(str::to_string)
}

/// A datapath id from `other_config:datapath-id` (16 hex digits) or, like
/// OVS's `dpid_from_hash`, 48 bits derived from the bridge's row UUID
/// (stable across restarts).
pub fn datapath_id(bridge: Uuid, other_config: &BTreeMap<String, String>) -> u64 {
    if let Some(s) = other_config.get("datapath-id") {
        let h = s.trim_start_matches("0x");
        if h.len() == 16
            && let Ok(v) = u64::from_str_radix(h, 16)
        {
            return v;
        }
    }
    // FNV-1a over the UUID bytes, then a locally administered unicast MAC.
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bridge.as_bytes() {
        x ^= u64::from(*b);
        x = x.wrapping_mul(0x0100_0000_01b3);
    }
    let mut mac = x & 0xffff_ffff_ffff;
    mac &= !(0x01 << 40);
    mac |= 0x02 << 40;
    mac
}

fn read_config(server: &Server) -> Config {
    let core = server.core();
    let Some(db) = core.database(DB) else {
        return Config::default();
    };
    let mut cfg = Config::default();
    let rows = |t: &str| db.rows(t).cloned().unwrap_or_default();
    let (bridges, ports, ifaces, ctrls) = (
        rows("Bridge"),
        rows("Port"),
        rows("Interface"),
        rows("Controller"),
    );
    let ssl_rows = rows("SSL");
    if let Some((u, r)) = db.rows("Open_vSwitch").and_then(|t| t.iter().next()) {
        cfg.root = Some(*u);
        cfg.next_cfg = opt_i64(r.cols.get("next_cfg")).unwrap_or(0);
        cfg.cur_cfg = opt_i64(r.cols.get("cur_cfg")).unwrap_or(0);
        cfg.ssl = uuids(r.cols.get("ssl"))
            .first()
            .and_then(|u| ssl_rows.get(u))
            .and_then(|row| {
                let col = |c: &str| scalar_str(row.cols.get(c)).map(std::path::PathBuf::from);
                Some(plexus_pki::TlsFiles {
                    private_key: col("private_key")?,
                    certificate: col("certificate")?,
                    ca_cert: col("ca_cert")?,
                })
            });
        for bu in uuids(r.cols.get("bridges")) {
            let Some(b) = bridges.get(&bu) else { continue };
            let name = scalar_str(b.cols.get("name")).unwrap_or_default();
            let oc = string_map(b.cols.get("other_config"));
            // Like OVS, an unset fail_mode behaves as standalone.
            let fail_mode = match scalar_str(b.cols.get("fail_mode")).as_deref() {
                Some("secure") => FailMode::Secure,
                _ => FailMode::Standalone,
            };
            let mut bc = BridgeCfg {
                uuid: bu,
                name,
                dpid: datapath_id(bu, &oc),
                fail_mode,
                ifaces: Vec::new(),
                controllers: BTreeMap::new(),
            };
            if let Some(d) = b.cols.get("datapath_id") {
                cfg.stored.insert((bu, "datapath_id"), d.clone());
            }
            for pu in uuids(b.cols.get("ports")) {
                let Some(p) = ports.get(&pu) else { continue };
                for iu in uuids(p.cols.get("interfaces")) {
                    let Some(i) = ifaces.get(&iu) else { continue };
                    for col in IFACE_STATUS_COLUMNS {
                        if let Some(d) = i.cols.get(*col) {
                            cfg.stored.insert((iu, col), d.clone());
                        }
                    }
                    bc.ifaces.push(IfaceCfg {
                        uuid: iu,
                        name: scalar_str(i.cols.get("name")).unwrap_or_default(),
                        type_: scalar_str(i.cols.get("type")).unwrap_or_default(),
                        options: string_map(i.cols.get("options")),
                        other_config: string_map(i.cols.get("other_config")),
                        ofport_request: opt_i64(i.cols.get("ofport_request")),
                        ofport: opt_i64(i.cols.get("ofport")),
                    });
                }
            }
            for cu in uuids(b.cols.get("controller")) {
                let Some(c) = ctrls.get(&cu) else { continue };
                if let Some(d) = c.cols.get("is_connected") {
                    cfg.stored.insert((cu, "is_connected"), d.clone());
                }
                if let Some(t) = scalar_str(c.cols.get("target")) {
                    bc.controllers.insert(t, cu);
                }
            }
            cfg.bridges.push(bc);
        }
    }
    cfg
}

const IFACE_STATUS_COLUMNS: &[&str] = &[
    "ofport",
    "error",
    "mac_in_use",
    "ifindex",
    "link_state",
    "admin_state",
    "statistics",
];

// ---------------------------------------------------------------------------
// Ports.

/// Interface types [`port_opener`] accepts (`Open_vSwitch.iface_types`).
pub const IFACE_TYPES: &[&str] = &["afxdp", "dummy", "internal", "system", "tap", "vxlan"];

/// The datapath port for an Interface row: the single place where an
/// Interface's `type`/`options`/`other_config` select a port implementation
/// (the userspace VXLAN port hooks in here). `Err` is the text written to
/// `Interface.error`.
pub fn port_opener(iface: &IfaceCfg, opts: &Options) -> Result<PortOpener, String> {
    let name = iface.name.clone();
    let xdp_mode = match iface.options.get("xdp-mode").map(String::as_str) {
        Some("native" | "native-with-zerocopy") => XdpModeRequest::Native,
        Some("generic") => XdpModeRequest::Generic,
        Some("best-effort") => XdpModeRequest::Auto,
        Some(m) => return Err(format!("unsupported options:xdp-mode={m}")),
        None => opts.xdp_mode,
    };
    let afxdp = move |name: &str| -> anyhow::Result<Box<dyn Port>> {
        let p = AfXdpPort::open(
            name,
            AfXdpOptions {
                mode: xdp_mode,
                ..Default::default()
            },
        )?;
        Ok(Box::new(p))
    };
    let open: Box<dyn FnOnce() -> anyhow::Result<Box<dyn Port>> + Send> = match iface.type_.as_str()
    {
        "" | "system" => {
            let kind = match iface.other_config.get("port-type").map(String::as_str) {
                Some("afpacket") => SystemPort::Afpacket,
                Some("afxdp") => SystemPort::Afxdp,
                Some(t) => return Err(format!("unsupported other_config:port-type={t}")),
                None => opts.system_port,
            };
            match kind {
                SystemPort::Afpacket => {
                    Box::new(move || Ok(Box::new(AfPacketPort::open(&name)?) as Box<dyn Port>))
                }
                SystemPort::Afxdp => Box::new(move || match afxdp(&name) {
                    Ok(p) => Ok(p),
                    Err(e) => {
                        eprintln!("{name}: AF_XDP failed ({e:#}); falling back to AF_PACKET");
                        Ok(Box::new(AfPacketPort::open(&name)?))
                    }
                }),
            }
        }
        "afxdp" => Box::new(move || afxdp(&name)),
        "tap" | "internal" => {
            Box::new(move || Ok(Box::new(TapPort::open(&name)?) as Box<dyn Port>))
        }
        // No device: never receives, drops what it sends (OVS's dummy netdev).
        "dummy" => Box::new(move || {
            Ok(Box::new(crate::port::dummy::DummyPort::new(&name)) as Box<dyn Port>)
        }),
        // vxlan: options remote_ip/local_ip/key/dst_port/tos/ttl/df_default
        // (checked here, so a bad option lands in Interface.error at once).
        "vxlan" => {
            let cfg = VxlanConfig::from_options(
                iface.options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
            Box::new(move || Ok(Box::new(VxlanPort::open(&name, cfg)?) as Box<dyn Port>))
        }
        t => return Err(format!("unsupported interface type \"{t}\"")),
    };
    Ok(PortOpener(open))
}

/// OpenFlow port number in the datapath ↔ `Interface.ofport` in the database.
fn db_ofport(ofport: u32) -> i64 {
    if ofport == port_no::LOCAL {
        OFPORT_LOCAL_DB
    } else {
        i64::from(ofport)
    }
}

// ---------------------------------------------------------------------------
// Running state.

#[derive(Debug)]
struct IfaceState {
    name: String,
    signature: (
        String,
        BTreeMap<String, String>,
        Option<String>,
        Option<i64>,
    ),
    /// The datapath port number; None if opening failed.
    ofport: Option<u32>,
    /// `next_cfg` when it failed (retried on the next configuration).
    failed_at: i64,
}

#[derive(Debug)]
struct CtrlState {
    task: tokio::task::JoinHandle<()>,
    conns: Arc<AtomicUsize>,
    uuid: Uuid,
    /// A `punix:` socket file to remove when done.
    socket: Option<std::path::PathBuf>,
}

impl Drop for CtrlState {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Debug)]
struct BridgeState {
    name: String,
    ctl: CtlSender,
    thread: Option<std::thread::JoinHandle<()>>,
    dpid: u64,
    fail_mode: FailMode,
    ifaces: BTreeMap<Uuid, IfaceState>,
    controllers: BTreeMap<String, CtrlState>,
    mgmt: Option<CtrlState>,
    /// `DIR/BRIDGE.ctl` with a run dir (removed on drop).
    appctl: Option<crate::appctl::server::CtlSocket>,
}

impl BridgeState {
    fn stop(&mut self) {
        self.controllers.clear();
        self.mgmt = None;
        self.appctl = None;
        self.ctl.send(Ctl::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BridgeState {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves passive OpenFlow connections on `target` until the task is aborted
/// (which also closes the connections accepted).
async fn passive(l: Listener, ctl: CtlSender, conns: Arc<AtomicUsize>) {
    let mut set = tokio::task::JoinSet::new();
    loop {
        match l.accept().await {
            Ok((stream, peer)) => {
                let (ctl, conns) = (ctl.clone(), conns.clone());
                set.spawn(async move {
                    match Connection::accept(stream, &control::conn_config()).await {
                        Ok(c) => {
                            conns.fetch_add(1, Ordering::Relaxed);
                            // Passive connections are service connections (OVS).
                            control::serve_named(c, ctl, peer.to_string(), false).await;
                            conns.fetch_sub(1, Ordering::Relaxed);
                        }
                        Err(e) => eprintln!("{peer}: handshake failed: {e}"),
                    }
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while set.try_join_next().is_some() {}
    }
}

async fn active(target: Target, ctl: CtlSender, conns: Arc<AtomicUsize>) {
    let mut rc = Reconnect::new(target.clone(), control::conn_config())
        .with_backoff(Duration::from_millis(200), Duration::from_secs(8));
    loop {
        let conn = rc.connect().await;
        eprintln!("connected to controller {target}");
        struct Up(Arc<AtomicUsize>);
        impl Drop for Up {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        conns.fetch_add(1, Ordering::Relaxed);
        let up = Up(conns.clone());
        control::serve_named(conn, ctl.clone(), target.to_string(), true).await;
        drop(up);
        eprintln!("controller {target} disconnected");
    }
}

async fn start_controller(target: &str, ctl: &CtlSender, uuid: Uuid) -> Result<CtrlState, String> {
    let conns = Arc::new(AtomicUsize::new(0));
    let mut socket = None;
    let task = if target.starts_with('p') {
        let t: PassiveTarget = target.parse().map_err(|e| format!("{target}: {e}"))?;
        if let PassiveTarget::Unix(p) = &t {
            socket = Some(p.clone());
        }
        let l = Listener::bind(&t, control::server_tls())
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        eprintln!("listening on {}", l.local_target());
        tokio::spawn(passive(l, ctl.clone(), conns.clone()))
    } else {
        let t: Target = target.parse().map_err(|e| format!("{target}: {e}"))?;
        tokio::spawn(active(t, ctl.clone(), conns.clone()))
    };
    Ok(CtrlState {
        task,
        conns,
        uuid,
        socket,
    })
}

/// The reconciler: see the module documentation.
#[derive(Debug)]
pub struct Reconciler {
    server: Server,
    opts: Options,
    bridges: BTreeMap<Uuid, BridgeState>,
    /// The SSL row last applied (`None` also before the first pass).
    ssl: Option<plexus_pki::TlsFiles>,
}

/// Writes accumulated during one pass: (row, column) → value.
type Writes = BTreeMap<(&'static str, Uuid), serde_json::Map<String, Value>>;

fn set_col(
    w: &mut Writes,
    stored: &Config,
    table: &'static str,
    u: Uuid,
    col: &'static str,
    v: Value,
) {
    // Skip the write if the stored value is the same.
    if let Some(d) = stored.stored.get(&(u, col))
        && d.to_json() == v
    {
        return;
    }
    if !stored.stored.contains_key(&(u, col)) && v == json!(["set", []]) {
        return;
    }
    w.entry((table, u)).or_default().insert(col.to_string(), v);
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Reconciler {
    /// A reconciler for the `Open_vSwitch` database served by `server`.
    pub fn new(server: Server, opts: Options) -> Self {
        Self {
            server,
            opts,
            bridges: BTreeMap::new(),
            ssl: None,
        }
    }

    /// Creates the root `Open_vSwitch` row if the database has none (what
    /// `ovs-vsctl init` does) and, like ovs-vswitchd, reports what this
    /// switch is: `ovs_version`, `db_version`, `datapath_types`, `iface_types`.
    pub fn ensure_root(&self) {
        if read_config(&self.server).root.is_none() {
            let o = self.server.transact(
                DB,
                &[json!({"op": "insert", "table": "Open_vSwitch", "row": {}})],
            );
            if !o.ok {
                eprintln!("ovsdb: cannot create the Open_vSwitch row: {:?}", o.results);
            }
        }
        let db_version = self
            .server
            .core()
            .database(DB)
            .map(|d| d.schema().version.clone())
            .unwrap_or_default();
        let o = self.server.transact(
            DB,
            &[
                json!({"op": "update", "table": "Open_vSwitch", "where": [], "row": {
                    "ovs_version": format!("plexus-{}", env!("CARGO_PKG_VERSION")),
                    "db_version": db_version,
                    "datapath_types": ["set", ["netdev"]],
                    "iface_types": ["set", IFACE_TYPES],
                }}),
            ],
        );
        if !o.ok {
            eprintln!("ovsdb: cannot update the Open_vSwitch row: {:?}", o.results);
        }
    }

    fn start_bridge(&self, b: &BridgeCfg) -> anyhow::Result<BridgeState> {
        let (ctl, ctl_rx) = datapath::ctl_channel()?;
        let agent = Agent::new(AgentConfig {
            datapath_id: b.dpid,
            fail_mode: b.fail_mode,
            bridge: b.name.clone(),
            controllers: b.controllers.keys().cloned().collect(),
            packet_in_rate: self.opts.packet_in_rate,
            ..Default::default()
        });
        let engine: Box<dyn Engine> = if self.opts.simple_pipeline {
            Box::new(SimplePipeline::new())
        } else {
            Box::new(FullPipeline::new())
        };
        let name = b.name.clone();
        let netns = self.opts.netns.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dp-{name}"))
            .spawn(move || {
                if let Some(ns) = &netns
                    && let Err(e) = sys::enter_netns(ns)
                {
                    // Dropping the receiver fails every later request of this bridge.
                    eprintln!("bridge {name}: netns {}: {e}", ns.display());
                    return;
                }
                if let Err(e) = datapath::run(Vec::new(), engine, agent, ctl_rx) {
                    eprintln!("bridge {name}: datapath: {e}");
                }
            })?;
        eprintln!("bridge {}: datapath {:016x} up", b.name, b.dpid);
        Ok(BridgeState {
            name: b.name.clone(),
            ctl,
            thread: Some(thread),
            dpid: b.dpid,
            fail_mode: b.fail_mode,
            ifaces: BTreeMap::new(),
            controllers: BTreeMap::new(),
            mgmt: None,
            appctl: None,
        })
    }

    /// One reconciliation pass: apply the database to the datapaths and
    /// write the results back.
    pub async fn reconcile(&mut self) {
        let cfg = read_config(&self.server);
        let mut w = Writes::new();
        self.apply_ssl(&cfg);
        // Bridges that went away (or were renamed: the name is immutable, so a new row).
        let wanted: BTreeSet<Uuid> = cfg.bridges.iter().map(|b| b.uuid).collect();
        let gone: Vec<Uuid> = self
            .bridges
            .keys()
            .filter(|u| !wanted.contains(u))
            .copied()
            .collect();
        for u in gone {
            if let Some(mut b) = self.bridges.remove(&u) {
                eprintln!("bridge {}: deleted", b.name);
                b.stop();
            }
        }
        // Removals first (across bridges), so that an interface moved from
        // one bridge to another is released before it is opened again.
        for bc in &cfg.bridges {
            self.prune_bridge(bc, &cfg).await;
        }
        for bc in &cfg.bridges {
            if !self.bridges.contains_key(&bc.uuid) {
                match self.start_bridge(bc) {
                    Ok(mut st) => {
                        if let Some(dir) = &self.opts.rundir {
                            let t = format!(
                                "punix:{}",
                                dir.join(format!("{}.mgmt", bc.name)).display()
                            );
                            match start_controller(&t, &st.ctl, Uuid::nil()).await {
                                Ok(c) => st.mgmt = Some(c),
                                Err(e) => eprintln!("bridge {}: {e}", bc.name),
                            }
                            let p = dir.join(format!("{}.ctl", bc.name));
                            match crate::appctl::server::start(Some(p), st.ctl.clone()).await {
                                Ok(c) => st.appctl = Some(c),
                                Err(e) => eprintln!("bridge {}: control socket: {e}", bc.name),
                            }
                        }
                        self.bridges.insert(bc.uuid, st);
                    }
                    Err(e) => {
                        eprintln!("bridge {}: {e:#}", bc.name);
                        continue;
                    }
                }
            }
            self.grow_bridge(bc, &cfg, &mut w).await;
        }
        if cfg.root.is_some() && cfg.cur_cfg != cfg.next_cfg {
            let root = cfg.root.unwrap_or_default();
            w.entry(("Open_vSwitch", root))
                .or_default()
                .insert("cur_cfg".into(), json!(cfg.next_cfg));
        }
        self.commit(w);
    }

    /// Takes the TLS files from the database's `SSL` row, like ovs-vswitchd started with
    /// `--private-key=db:Open_vSwitch,SSL,private_key` etc.; without `--private-key` on
    /// the command line (which wins). On a change, `ssl:`/`pssl:` controllers are
    /// restarted with the new files.
    fn apply_ssl(&mut self, cfg: &Config) {
        if self.opts.tls_from_flags || cfg.ssl == self.ssl {
            return;
        }
        match &cfg.ssl {
            Some(f) => {
                if let Err(e) = control::set_tls(f) {
                    // Keep the old identity; retried on the next change of the row.
                    eprintln!("ssl: {e}");
                    self.ssl = cfg.ssl.clone();
                    return;
                }
                eprintln!("ssl: using {}", f.certificate.display());
            }
            None => control::clear_tls(),
        }
        self.ssl = cfg.ssl.clone();
        for st in self.bridges.values_mut() {
            st.controllers
                .retain(|t, _| !(t.starts_with("ssl:") || t.starts_with("pssl:")));
        }
    }

    /// Applies fail mode and datapath id, removes ports that went away or changed.
    async fn prune_bridge(&mut self, bc: &BridgeCfg, cfg: &Config) {
        let Some(st) = self.bridges.get_mut(&bc.uuid) else {
            return;
        };
        if st.fail_mode != bc.fail_mode {
            st.fail_mode = bc.fail_mode;
            st.ctl.send(Ctl::SetFailMode(bc.fail_mode));
        }
        if st.dpid != bc.dpid {
            st.dpid = bc.dpid;
            st.ctl.send(Ctl::SetDatapathId(bc.dpid));
        }
        // Ports that went away or changed.
        let want: BTreeMap<Uuid, &IfaceCfg> = bc.ifaces.iter().map(|i| (i.uuid, i)).collect();
        let stale: Vec<Uuid> = st
            .ifaces
            .iter()
            .filter(|(u, s)| {
                want.get(u).is_none_or(|i| i.signature() != s.signature)
                    || (s.ofport.is_none() && s.failed_at != cfg.next_cfg)
            })
            .map(|(u, _)| *u)
            .collect();
        for u in stale {
            let Some(s) = st.ifaces.remove(&u) else {
                continue;
            };
            if let Some(ofport) = s.ofport {
                let (tx, rx) = tokio::sync::oneshot::channel();
                st.ctl.send(Ctl::DelPort {
                    ofport,
                    done: Some(tx),
                });
                let _ = rx.await;
                eprintln!(
                    "bridge {}: port {} ({}) deleted",
                    st.name,
                    db_ofport(ofport),
                    s.name
                );
            }
        }
    }

    /// Adds new ports and controllers; reports the datapath id.
    async fn grow_bridge(&mut self, bc: &BridgeCfg, cfg: &Config, w: &mut Writes) {
        let opts = self.opts.clone();
        let Some(st) = self.bridges.get_mut(&bc.uuid) else {
            return;
        };
        set_col(
            w,
            cfg,
            "Bridge",
            bc.uuid,
            "datapath_id",
            json!(format!("{:016x}", bc.dpid)),
        );
        // New ports: LOCAL first, then requested numbers, then the rest.
        let mut new: Vec<&IfaceCfg> = bc
            .ifaces
            .iter()
            .filter(|i| !st.ifaces.contains_key(&i.uuid))
            .collect();
        new.sort_by_key(|i| {
            (
                !(i.name == bc.name && i.type_ == "internal"),
                i.ofport_request.is_none(),
                i.ofport.is_none_or(|o| o <= 0),
            )
        });
        for i in new {
            let used: BTreeSet<u32> = st.ifaces.values().filter_map(|s| s.ofport).collect();
            let local = i.name == bc.name && i.type_ == "internal";
            let ofport = if local {
                Some(port_no::LOCAL)
            } else {
                let free = |n: i64| (1..0xff00).contains(&n) && !used.contains(&(n as u32));
                i.ofport_request
                    .filter(|n| free(*n))
                    .or(i.ofport.filter(|n| free(*n)))
                    .map(|n| n as u32)
                    .or_else(|| (1u32..0xff00).find(|n| !used.contains(n)))
            };
            let result = match (ofport, port_opener(i, &opts)) {
                (None, _) => Err("no free OpenFlow port number".to_string()),
                (_, Err(e)) => Err(e),
                (Some(ofport), Ok(open)) => {
                    if local && used.contains(&ofport) {
                        Err("duplicate LOCAL port".to_string())
                    } else {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        st.ctl.send(Ctl::AddPort {
                            ofport,
                            open,
                            done: Some(tx),
                        });
                        rx.await.unwrap_or_else(|_| Err("datapath is gone".into()))
                    }
                }
            };
            match result {
                Ok(snap) => {
                    eprintln!(
                        "bridge {}: port {} ({}) added",
                        st.name,
                        db_ofport(snap.ofport),
                        i.name
                    );
                    set_col(
                        w,
                        cfg,
                        "Interface",
                        i.uuid,
                        "ofport",
                        json!(db_ofport(snap.ofport)),
                    );
                    set_col(w, cfg, "Interface", i.uuid, "error", json!(["set", []]));
                    iface_status(w, cfg, i.uuid, &snap);
                    st.ifaces.insert(
                        i.uuid,
                        IfaceState {
                            name: i.name.clone(),
                            signature: i.signature(),
                            ofport: Some(snap.ofport),
                            failed_at: 0,
                        },
                    );
                }
                Err(e) => {
                    eprintln!("bridge {}: could not add {}: {e}", st.name, i.name);
                    set_col(w, cfg, "Interface", i.uuid, "ofport", json!(-1));
                    set_col(w, cfg, "Interface", i.uuid, "error", json!(e));
                    st.ifaces.insert(
                        i.uuid,
                        IfaceState {
                            name: i.name.clone(),
                            signature: i.signature(),
                            ofport: None,
                            failed_at: cfg.next_cfg,
                        },
                    );
                }
            }
        }
        // Controllers.
        st.controllers
            .retain(|t, c| bc.controllers.get(t) == Some(&c.uuid));
        for (t, u) in &bc.controllers {
            if st.controllers.contains_key(t) {
                continue;
            }
            match start_controller(t, &st.ctl, *u).await {
                Ok(c) => {
                    st.controllers.insert(t.clone(), c);
                }
                Err(e) => eprintln!("bridge {}: controller {e}", st.name),
            }
        }
    }

    /// Writes link state, counters and controller connection state back.
    pub async fn refresh_status(&mut self) {
        let cfg = read_config(&self.server);
        let mut w = Writes::new();
        self.write_status(&cfg, &mut w).await;
        self.commit(w);
    }

    /// Link state, counters and controller connection state of every bridge.
    async fn write_status(&mut self, cfg: &Config, w: &mut Writes) {
        for (bu, st) in &self.bridges {
            for c in st.controllers.values() {
                let up = c.conns.load(Ordering::Relaxed) > 0;
                set_col(w, cfg, "Controller", c.uuid, "is_connected", json!(up));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            if !st.ctl.send(Ctl::Snapshot(tx)) {
                continue;
            }
            let Ok(snaps) = rx.await else { continue };
            let Some(bc) = cfg.bridges.iter().find(|b| b.uuid == *bu) else {
                continue;
            };
            for (iu, s) in &st.ifaces {
                let Some(of) = s.ofport else { continue };
                if !bc.ifaces.iter().any(|i| i.uuid == *iu) {
                    continue;
                }
                if let Some(snap) = snaps.iter().find(|p| p.ofport == of) {
                    iface_status(w, cfg, *iu, snap);
                }
            }
        }
    }

    /// Writes the accumulated columns in one transaction.
    fn commit(&self, w: Writes) {
        if w.is_empty() {
            return;
        }
        let ops: Vec<Value> = w
            .into_iter()
            .map(|((table, u), row)| {
                json!({"op": "update", "table": table,
                       "where": [["_uuid", "==", ["uuid", u.to_string()]]], "row": row})
            })
            .collect();
        let o = self.server.transact(DB, &ops);
        if !o.ok {
            eprintln!("ovsdb: status write-back failed: {:?}", o.results);
        }
    }

    /// Stops every bridge.
    pub fn shutdown(&mut self) {
        for (_, mut b) in std::mem::take(&mut self.bridges) {
            b.stop();
        }
    }
}

fn iface_status(w: &mut Writes, cfg: &Config, u: Uuid, s: &PortSnapshot) {
    let updown = |b: bool| if b { "up" } else { "down" };
    set_col(
        w,
        cfg,
        "Interface",
        u,
        "mac_in_use",
        json!(mac_str(s.hw_addr)),
    );
    if s.ifindex != 0 {
        set_col(w, cfg, "Interface", u, "ifindex", json!(s.ifindex));
    }
    set_col(
        w,
        cfg,
        "Interface",
        u,
        "admin_state",
        json!(updown(s.link.admin_up)),
    );
    set_col(
        w,
        cfg,
        "Interface",
        u,
        "link_state",
        json!(updown(s.link.oper_up)),
    );
    let st = &s.stats;
    let stats = [
        ("collisions", 0),
        ("rx_bytes", st.rx_bytes),
        ("rx_dropped", st.rx_drops),
        ("rx_errors", st.rx_errors),
        ("rx_packets", st.rx_packets),
        ("tx_bytes", st.tx_bytes),
        ("tx_dropped", st.tx_drops),
        ("tx_errors", st.tx_errors),
        ("tx_packets", st.tx_packets),
    ];
    let m: Vec<Value> = stats
        .iter()
        .map(|(k, v)| json!([k, i64::try_from(*v).unwrap_or(i64::MAX)]))
        .collect();
    set_col(w, cfg, "Interface", u, "statistics", json!(["map", m]));
}

/// Runs the reconciler until SIGTERM/SIGINT: once at start (so a restarted
/// daemon brings back the bridges and ports of its `--db`), after every
/// commit, and every `stats_interval` for statistics, link state and
/// controller connection state.
pub async fn run(server: Server, opts: Options) {
    let _ = sys::raise_memlock_limit();
    let mut changed = server.subscribe();
    let interval = opts.stats_interval;
    let mut r = Reconciler::new(server, opts);
    r.ensure_root();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut dirty, mut status_due) = (true, false);
    while !sys::terminate_requested() {
        if dirty {
            dirty = false;
            changed.mark_unchanged();
            r.reconcile().await;
        }
        if status_due {
            status_due = false;
            r.refresh_status().await;
        }
        tokio::select! {
            c = changed.changed() => match c {
                Ok(()) => dirty = true,
                Err(_) => break,
            },
            _ = tick.tick() => status_due = true,
            // The terminate flag is polled.
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    r.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_ovsdb::db::Database;
    use plexus_ovsdb::schema::DatabaseSchema;
    use plexus_ovsdb::server::ServerCore;

    fn get(srv: &Server, table: &str, name: &str, col: &str) -> Value {
        let core = srv.core();
        let db = core.database(DB).expect("db");
        db.rows(table)
            .into_iter()
            .flatten()
            .find(|(_, r)| scalar_str(r.cols.get("name")).as_deref() == Some(name))
            .map(|(_, r)| r.cols[col].to_json())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn datapath_id_from_other_config_or_uuid() {
        let u = Uuid::from_u128(0x1234);
        let mut oc = BTreeMap::new();
        let d = datapath_id(u, &oc);
        assert_eq!(d, datapath_id(u, &oc), "stable");
        assert_ne!(d, datapath_id(Uuid::from_u128(0x1235), &oc));
        assert_eq!(d >> 48, 0, "48 bits");
        assert_eq!((d >> 40) & 0x03, 0x02, "locally administered unicast");
        oc.insert("datapath-id".into(), "00000000000000ab".into());
        assert_eq!(datapath_id(u, &oc), 0xab);
        oc.insert("datapath-id".into(), "zz".into());
        assert_eq!(datapath_id(u, &oc), d, "invalid value ignored");
    }

    /// No root needed: interfaces that cannot be opened are reported like
    /// OVS (ofport -1 + error) and the configuration is still acknowledged.
    #[tokio::test]
    async fn unusable_interfaces_get_errors_and_cur_cfg_catches_up() {
        let mut core = ServerCore::new();
        core.add_database(Database::new(DatabaseSchema::vswitch()));
        let srv = Server::new(core);
        let mut r = Reconciler::new(srv.clone(), Options::default());
        r.ensure_root();
        let o = srv.transact(
            DB,
            &[
                json!({"op": "insert", "table": "Interface", "uuid-name": "i1",
                       "row": {"name": "plxnosuch0"}}),
                json!({"op": "insert", "table": "Interface", "uuid-name": "i2",
                       "row": {"name": "vx0", "type": "vxlan",
                               "options": ["map", [["remote_ip", "flow"]]]}}),
                json!({"op": "insert", "table": "Interface", "uuid-name": "i3",
                       "row": {"name": "odd0", "type": "geneve-ish"}}),
                json!({"op": "insert", "table": "Port", "uuid-name": "p1",
                       "row": {"name": "plxnosuch0", "interfaces": ["named-uuid", "i1"]}}),
                json!({"op": "insert", "table": "Port", "uuid-name": "p2",
                       "row": {"name": "vx0", "interfaces": ["named-uuid", "i2"]}}),
                json!({"op": "insert", "table": "Port", "uuid-name": "p3",
                       "row": {"name": "odd0", "interfaces": ["named-uuid", "i3"]}}),
                json!({"op": "insert", "table": "Bridge", "uuid-name": "b",
                       "row": {"name": "plxunit0", "fail_mode": "secure",
                               "other_config": ["map", [["datapath-id", "0000000000000abc"]]],
                               "ports": ["set", [["named-uuid", "p1"], ["named-uuid", "p2"],
                                                 ["named-uuid", "p3"]]]}}),
                json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                       "mutations": [["bridges", "insert", ["named-uuid", "b"]],
                                     ["next_cfg", "+=", 1]]}),
            ],
        );
        assert!(o.ok, "{:?}", o.results);
        r.reconcile().await;
        for name in ["plxnosuch0", "vx0", "odd0"] {
            assert_eq!(get(&srv, "Interface", name, "ofport"), json!(-1), "{name}");
        }
        // vxlan: remote_ip=flow without local_ip is refused at config time.
        assert_eq!(
            get(&srv, "Interface", "vx0", "error"),
            json!("vxlan: remote_ip=flow needs local_ip")
        );
        assert!(
            get(&srv, "Interface", "odd0", "error")
                .as_str()
                .is_some_and(|e| e.contains("unsupported interface type")),
        );
        assert!(get(&srv, "Interface", "plxnosuch0", "error").is_string());
        assert_eq!(
            get(&srv, "Bridge", "plxunit0", "datapath_id"),
            json!("0000000000000abc")
        );
        let cfg = read_config(&srv);
        assert_eq!((cfg.next_cfg, cfg.cur_cfg), (1, 1));
        // A second pass changes nothing (no write loop).
        let g = srv.core().generation();
        r.reconcile().await;
        assert_eq!(srv.core().generation(), g, "idempotent");
        // del-br stops the datapath.
        let o = srv.transact(
            DB,
            &[json!({"op": "update", "table": "Open_vSwitch", "where": [],
                     "row": {"bridges": ["set", []]}})],
        );
        assert!(o.ok);
        r.reconcile().await;
        assert!(r.bridges.is_empty());
        r.shutdown();
    }
}
