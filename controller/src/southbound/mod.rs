//! The southbound: the store's change feed → incremental compiler → per-chassis OpenFlow
//! sessions that keep each switch's Plexus-owned flows equal to the desired ones.
//!
//! - The *engine task* watches the store revision; on each change it reads a [`Snapshot`],
//!   builds one [`Model`](crate::compiler::Model) per VPC ([`build_models`]) and feeds the
//!   differences to that VPC's incremental [`Engine`] as [`Change`]s. The engines' deltas
//!   are merged per chassis with reference counts ([`Union`]) and published, with the
//!   store revision they reflect, on a per-chassis `watch` channel.
//! - A *session* per switch (the switch connects to `--openflow-listen`, or the controller
//!   connects to the chassis' `endpoint.openflow`) does FEATURES + PORT_DESC, finds its
//!   chassis (datapath id or bridge name), reports interface → ofport to the engine, waits
//!   for the desired flows computed with those ports, reads the switch's flows (flow stats
//!   filtered by the Plexus cookie) and reconciles without flushing: strict deletes of
//!   flows not desired and adds of missing/different ones, in one ONF bundle
//!   (ATOMIC|ORDERED, falling back to plain flow-mods if the switch refuses bundles),
//!   followed by a barrier. Afterwards each new desired set is applied as the difference
//!   to the last acknowledged one (the composition of the engine deltas since then).
//! - After every acknowledged barrier the session records the realized revision, shown
//!   per chassis in `GET /v1/status`. A failed apply is retried by a full reconcile.
//! - An *OVSDB session* per chassis with `endpoint.ovsdb` keeps the chassis' flow-based
//!   VXLAN port (`plx-vxlan`, `local_ip` = the chassis' VTEP) on its bridge
//!   ([`tunnels`]); the OpenFlow session learns its port number from PORT_STATUS like
//!   any other port, and the compiler's tunnel flows follow.

mod reconcile;
mod session;
pub mod tunnels;

pub use reconcile::{
    COOKIE, COOKIE_MASK, FlowKey, Plan, SetDelta, Union, parse_desired, plan_delta,
    plan_from_delta, plan_full, strict_delete,
};
pub use session::Session;
use session::run_session;

use crate::compiler::{Change, Engine, Flow, FlowRefs, Model, is_group};
use crate::model_from_store::{Keys, OfPorts, Snapshot, build_models_with};
use crate::store::Store;
use plexus_api::ChassisSync;
use plexus_openflow::conn::{Config, Connection, Listener, PassiveTarget, Target};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Per-chassis sync state shared with the API.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus(Arc<Mutex<BTreeMap<String, ChassisSync>>>);

impl SyncStatus {
    pub fn snapshot(&self) -> BTreeMap<String, ChassisSync> {
        self.0.lock().unwrap().clone()
    }
    pub fn update(&self, chassis: &str, f: impl FnOnce(&mut ChassisSync)) {
        f(self
            .0
            .lock()
            .unwrap()
            .entry(chassis.to_string())
            .or_default());
    }
    pub fn get(&self, chassis: &str) -> Option<ChassisSync> {
        self.0.lock().unwrap().get(chassis).cloned()
    }
    /// Forgets every chassis (a controller that stepped down holds no sessions).
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Interfaces (name → ofport) each connected chassis' switch reports (PORT_DESC +
/// PORT_STATUS), shared with the API for `GET /v1/ports/{id}/status`.
#[derive(Debug, Clone, Default)]
pub struct SwitchPorts(Arc<Mutex<BTreeMap<String, BTreeMap<String, u32>>>>);

impl SwitchPorts {
    /// The ofport of `iface` on `chassis`' switch, if the switch reports it.
    pub fn ofport(&self, chassis: &str, iface: &str) -> Option<u32> {
        self.0.lock().unwrap().get(chassis)?.get(iface).copied()
    }
    fn set(&self, chassis: &str, ports: &BTreeMap<String, u32>) {
        self.0
            .lock()
            .unwrap()
            .insert(chassis.to_string(), ports.clone());
    }
    fn forget(&self, chassis: &str) {
        self.0.lock().unwrap().remove(chassis);
    }
}

/// How long the engine waits, before its first compile, for the switches of the known
/// chassis to report their interfaces (see `engine_task`).
const FIRST_REPORTS_WAIT: Duration = Duration::from_secs(1);

/// Ports in the VPCs to compile in full from which the engine uses a second thread.
const PARALLEL_PORTS: usize = 1000;

/// Changes a chassis keeps for sessions that are behind (older ones reconcile fully).
const LOG_LEN: usize = 1024;
/// Flows and groups the kept changes may name in all, beyond a quarter of the set: a
/// session further behind reconciles fully, and a change as large as a restart's
/// recompile (every flow removed and added) does not keep the replaced texts alive.
const LOG_FLOWS: usize = 4096;

/// What one chassis' switch should hold: the full desired set, maintained by applying
/// the union's net changes, and the recent changes, numbered, so that a session sends
/// only the difference to what it last acknowledged (no walk over the whole set).
#[derive(Debug, Default)]
pub struct Desired {
    /// The store revision these flows reflect (at least).
    pub revision: u64,
    /// The interface report ([`Cmd::Ports`] epoch) they were computed with.
    pub epoch: u64,
    /// Number of changes applied to `flows`.
    pub seq: u64,
    pub flows: BTreeSet<Flow>,
    n_groups: usize,
    /// (`seq` after the change, the change), oldest first.
    log: VecDeque<(u64, Arc<SetDelta>)>,
    /// Flows and groups named by the changes in `log`.
    log_flows: usize,
}

impl Desired {
    fn apply(&mut self, d: SetDelta) {
        for f in &d.removed {
            if self.flows.remove(f) && is_group(f) {
                self.n_groups -= 1;
            }
        }
        for f in &d.added {
            if self.flows.insert(f.clone()) && is_group(f) {
                self.n_groups += 1;
            }
        }
        self.seq += 1;
        self.log_flows += d.len();
        self.log.push_back((self.seq, Arc::new(d)));
        let max_flows = LOG_FLOWS + self.flows.len() / 4;
        while self.log.len() > LOG_LEN || self.log_flows > max_flows {
            let Some((_, d)) = self.log.pop_front() else {
                break;
            };
            self.log_flows -= d.len();
        }
    }

    /// The net change from `seq` to now; `None` when the log no longer reaches back.
    pub fn since(&self, seq: u64) -> Option<SetDelta> {
        let mut acc = SetDelta::default();
        if seq >= self.seq {
            return Some(acc);
        }
        if self.log.front().is_none_or(|(first, _)| seq + 1 < *first) {
            return None;
        }
        for (s, d) in &self.log {
            if *s > seq {
                acc.then(d);
            }
        }
        Some(acc)
    }

    /// Flows (not groups) in the set.
    pub fn flow_count(&self) -> usize {
        self.flows.len() - self.n_groups
    }
}

/// Wakes a chassis' sessions when its [`Desired`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DesiredVersion {
    pub revision: u64,
    pub epoch: u64,
    pub seq: u64,
}

struct ChassisDesired {
    state: Arc<Mutex<Desired>>,
    tx: watch::Sender<DesiredVersion>,
}

impl ChassisDesired {
    fn new() -> Self {
        ChassisDesired {
            state: Arc::default(),
            tx: watch::channel(DesiredVersion::default()).0,
        }
    }
}

enum Cmd {
    Ports {
        chassis: String,
        epoch: u64,
        ports: BTreeMap<String, u32>,
    },
}

/// Responder packet-ins answered per second per chassis and ingress port by
/// default (plexus-vswitchd's `--packet-in-rate` default).
pub const DEFAULT_PACKET_IN_RATE: u32 = 1000;

pub(crate) struct Shared<S: Store> {
    store: S,
    status: SyncStatus,
    switch_ports: SwitchPorts,
    desired: Mutex<HashMap<String, ChassisDesired>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    epoch: AtomicU64,
    cfg: Config,
    /// Responder packet-ins answered per chassis and ingress port (Open vSwitch
    /// chassis send them up as `NXT_PACKET_IN2`); over it they are counted and dropped.
    packet_in_limit: plexus_responder::ratelimit::RateLimit,
    /// Becomes `true` when the [`Southbound`] is dropped: sessions close.
    stop: watch::Receiver<bool>,
}

impl<S: Store> Shared<S> {
    fn subscribe(&self, chassis: &str) -> (Arc<Mutex<Desired>>, watch::Receiver<DesiredVersion>) {
        let mut d = self.desired.lock().unwrap();
        let c = d
            .entry(chassis.to_string())
            .or_insert_with(ChassisDesired::new);
        (c.state.clone(), c.tx.subscribe())
    }
}

/// A running southbound.
#[derive(Debug)]
pub struct Southbound {
    status: SyncStatus,
    switch_ports: SwitchPorts,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    openflow_target: Option<Target>,
}

impl Drop for Southbound {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Southbound {
    /// Starts the engine and, with `listen` (e.g. `ptcp:6653:127.0.0.1`), the OpenFlow
    /// listener switches connect to. Must run inside a tokio runtime.
    pub async fn start<S: Store + Clone>(
        store: S,
        listen: Option<&str>,
    ) -> anyhow::Result<Southbound> {
        Self::start_with_tls(store, listen, None, SyncStatus::default()).await
    }

    /// [`Southbound::start`], reporting into `status` (kept by the API across
    /// leadership changes).
    pub async fn start_with_status<S: Store + Clone>(
        store: S,
        listen: Option<&str>,
        status: SyncStatus,
    ) -> anyhow::Result<Southbound> {
        Self::start_with_tls(store, listen, None, status).await
    }

    /// As [`Southbound::start_with_status`], with TLS: `pssl:` listeners require a switch
    /// certificate signed by the CA (mutual TLS, as Open vSwitch does), and `ssl:` chassis
    /// endpoints are connected to with our certificate, verifying theirs.
    pub async fn start_with_tls<S: Store + Clone>(
        store: S,
        listen: Option<&str>,
        tls: Option<&plexus_pki::TlsFiles>,
        status: SyncStatus,
    ) -> anyhow::Result<Southbound> {
        Self::start_with_options(store, listen, tls, status, DEFAULT_PACKET_IN_RATE).await
    }

    /// As [`Southbound::start_with_tls`], answering at most `packet_in_rate`
    /// responder packet-ins per second per chassis and ingress port (burst a
    /// quarter of it, at least 25; 0: unlimited). The rest are counted
    /// (`responder_rate_limited` in `/v1/status`, Prometheus
    /// `plexus_controller_responder_packet_ins_total{result="rate_limited"}`) and dropped.
    pub async fn start_with_options<S: Store + Clone>(
        store: S,
        listen: Option<&str>,
        tls: Option<&plexus_pki::TlsFiles>,
        status: SyncStatus,
        packet_in_rate: u32,
    ) -> anyhow::Result<Southbound> {
        let mut cfg = Config::default();
        let mut server_tls = None;
        if let Some(f) = tls {
            cfg.tls = Some(plexus_openflow::conn::TlsClient {
                config: plexus_pki::client_config(f, &[])?,
                server_name: None,
            });
            server_tls = Some(plexus_pki::server_config(
                f,
                plexus_pki::ClientAuth::Required,
                &[],
            )?);
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            status,
            switch_ports: SwitchPorts::default(),
            desired: Mutex::new(HashMap::new()),
            cmd: cmd_tx,
            epoch: AtomicU64::new(1),
            cfg,
            packet_in_limit: plexus_responder::ratelimit::RateLimit::per_second(packet_in_rate),
            stop: stop_rx,
        });
        let mut tasks = vec![tokio::spawn(engine_task(shared.clone(), cmd_rx))];
        let mut openflow_target = None;
        if let Some(l) = listen {
            let t: PassiveTarget = l
                .parse()
                .map_err(|e| anyhow::anyhow!("--openflow-listen {l}: {e:?}"))?;
            if matches!(t, PassiveTarget::Ssl(_)) && server_tls.is_none() {
                anyhow::bail!(
                    "--openflow-listen {l}: pssl: needs --private-key, --certificate and --ca-cert"
                );
            }
            // `pssl:` handshakes run in the background (see `Listener::accept`): a
            // client that connects and never finishes its handshake does not hold
            // up other switches.
            let listener = Listener::bind(&t, server_tls.clone()).await?;
            openflow_target = Some(listener.connect_target());
            tracing::info!(target = %listener.connect_target(), "OpenFlow listener");
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let sh = sh.clone();
                            tokio::spawn(async move {
                                match Connection::accept(stream, &sh.cfg).await {
                                    Ok(conn) => {
                                        let r = run_session(sh.clone(), conn, None).await;
                                        tracing::info!(%peer, result = ?r, "switch session ended");
                                    }
                                    Err(e) => tracing::warn!(%peer, error = %e, "handshake failed"),
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        Ok(Southbound {
            status: shared.status.clone(),
            switch_ports: shared.switch_ports.clone(),
            stop: stop_tx,
            tasks,
            openflow_target,
        })
    }

    pub fn status(&self) -> SyncStatus {
        self.status.clone()
    }

    /// The interfaces each connected switch reports.
    pub fn switch_ports(&self) -> SwitchPorts {
        self.switch_ports.clone()
    }

    /// The active target switches use to reach the listener (`tcp:127.0.0.1:PORT`).
    pub fn openflow_target(&self) -> Option<&Target> {
        self.openflow_target.as_ref()
    }
}

/// Engine state: one incremental engine per VPC and the per-chassis union.
#[derive(Default)]
struct EngineState {
    engines: BTreeMap<String, Engine>,
    union: Union,
    ofports: OfPorts,
    epochs: BTreeMap<String, u64>,
    keys: Keys,
}

/// The changes that turn model `old` into `new` (groups first, ports last, so every port
/// is compiled against its groups' current rules).
pub fn model_changes(old: &Model, new: &Model) -> Vec<Change> {
    let mut out = Vec::new();
    for (id, g) in &new.groups {
        if old.groups.get(id) != Some(g) {
            out.push(Change::PutGroup(id.clone(), g.clone()));
        }
    }
    for (id, c) in &new.chassis {
        if old.chassis.get(id) != Some(c) {
            out.push(Change::PutChassis(id.clone(), c.clone()));
        }
    }
    for id in old.ports.keys() {
        if !new.ports.contains_key(id) {
            out.push(Change::DelPort(id.clone()));
        }
    }
    for (id, p) in &new.ports {
        if old.ports.get(id) != Some(p) {
            out.push(Change::PutPort(id.clone(), p.clone()));
        }
    }
    for id in old.groups.keys() {
        if !new.groups.contains_key(id) {
            out.push(Change::DelGroup(id.clone()));
        }
    }
    for id in old.chassis.keys() {
        if !new.chassis.contains_key(id) {
            out.push(Change::DelChassis(id.clone()));
        }
    }
    if old.l3 != new.l3 {
        out.push(Change::PutL3(new.l3.clone()));
    }
    for id in old.services.keys() {
        if !new.services.contains_key(id) {
            out.push(Change::DelService(id.clone()));
        }
    }
    for (id, s) in &new.services {
        if old.services.get(id) != Some(s) {
            out.push(Change::PutService(id.clone(), s.clone()));
        }
    }
    out
}

impl EngineState {
    /// Brings the engines of the VPCs in `dirty` (every VPC with `None`) to `snap`,
    /// updating the union incrementally. Models are built only for those VPCs.
    /// `ids_changed`: an object with a key (VPC, port, service, security group) may have
    /// been created or deleted since the last call; keys depend only on those id sets, so
    /// otherwise they are kept (no O(ports) key computation per change).
    fn update(
        &mut self,
        snap: &Snapshot,
        dirty: Option<BTreeSet<String>>,
        ids_changed: bool,
    ) -> usize {
        let dirty = if ids_changed {
            let keys = Keys::of(snap);
            let dirty = match (dirty, keys.moved_vpcs(&self.keys, snap)) {
                (Some(mut d), Some(moved)) => {
                    d.extend(moved);
                    Some(d)
                }
                _ => None,
            };
            self.keys = keys;
            dirty
        } else {
            dirty
        };
        let models = build_models_with(snap, &self.ofports, &self.keys, dirty.as_ref());
        self.apply_models(models, dirty.as_ref())
    }

    /// Brings the engines of the VPCs in `dirty` (every VPC with `None`) to `models`
    /// (which hold exactly the dirty VPCs that exist), updating the union incrementally.
    fn apply_models(
        &mut self,
        models: BTreeMap<String, Model>,
        dirty: Option<&BTreeSet<String>>,
    ) -> usize {
        let mut recomputed = 0;
        let gone: Vec<String> = self
            .engines
            .keys()
            .filter(|k| !models.contains_key(*k) && dirty.is_none_or(|d| d.contains(*k)))
            .cloned()
            .collect();
        for id in gone {
            let e = self.engines.remove(&id).unwrap();
            self.union.remove_flows(&e.flow_refs());
        }
        // Full compiles (new VPCs, and VPCs that mostly changed) and incremental ones.
        let mut full: Vec<(String, Model, bool)> = Vec::new();
        for (id, m) in models {
            match self.engines.get_mut(&id) {
                Some(e) if e.model().vni == m.vni => {
                    let changes = model_changes(e.model(), &m);
                    let size = m.ports.len() + m.groups.len() + m.services.len() + 1;
                    if changes.len() >= 4 && changes.len() * 2 > size {
                        // Most of the VPC changed (a switch reported its ports after a
                        // controller restart): one full compile is cheaper than
                        // recomputing unit by unit; the union gets the difference.
                        full.push((id, m, true));
                    } else if !changes.is_empty() {
                        let d = e.apply_all(changes);
                        recomputed += e.last_recomputed;
                        self.union.apply(&d);
                    }
                }
                _ => full.push((id, m, false)),
            }
        }
        // VPCs compile independently: many of them (a controller start) on two threads.
        let engines = &self.engines;
        let build = |(id, m, replace): (String, Model, bool)| {
            let prev = if replace { engines.get(&id) } else { None };
            let e = Engine::new_sharing(m, prev);
            (id, e, replace)
        };
        let ports: usize = full.iter().map(|(_, m, _)| m.ports.len()).sum();
        let built: Vec<(String, Engine, bool)> = if full.len() >= 2 && ports >= PARALLEL_PORTS {
            let second = full.split_off(full.len() / 2);
            std::thread::scope(|s| {
                let h = s.spawn(|| second.into_iter().map(build).collect::<Vec<_>>());
                let mut out: Vec<_> = full.into_iter().map(build).collect();
                out.extend(h.join().expect("compile thread panicked"));
                out
            })
        } else {
            full.into_iter().map(build).collect()
        };
        for (id, fresh, replace) in built {
            recomputed += 1;
            match self.engines.get_mut(&id) {
                Some(e) if replace => {
                    let old = e.flow_refs();
                    let new = fresh.flow_refs();
                    self.union.apply(&flows_diff(&old, &new));
                    *e = fresh;
                }
                _ => {
                    if let Some(e) = self.engines.remove(&id) {
                        self.union.remove_flows(&e.flow_refs());
                    }
                    self.union.add_flows(&fresh.flow_refs());
                    self.engines.insert(id, fresh);
                }
            }
        }
        recomputed
    }
}

/// The delta that turns one engine's flows into another's.
fn flows_diff(old: &FlowRefs, new: &FlowRefs) -> crate::compiler::Delta {
    let mut d = crate::compiler::Delta::default();
    let empty = BTreeSet::new();
    for c in old.keys().chain(new.keys()) {
        let (o, n) = (old.get(c).unwrap_or(&empty), new.get(c).unwrap_or(&empty));
        let added: BTreeSet<Flow> = n.difference(o).cloned().collect();
        let removed: BTreeSet<Flow> = o.difference(n).cloned().collect();
        if !added.is_empty() {
            d.added.insert(c.clone(), added);
        }
        if !removed.is_empty() {
            d.removed.insert(c.clone(), removed);
        }
    }
    d
}

async fn engine_task<S: Store + Clone>(
    shared: Arc<Shared<S>>,
    mut cmd: mpsc::UnboundedReceiver<Cmd>,
) {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut st = EngineState::default();
    let mut rev_rx = shared.store.watch_revision();
    // Subscribed before the first full read: no change can fall in between.
    let mut feed = shared.store.subscribe();
    let mut snap: Option<Snapshot> = None;
    let mut connectors: BTreeMap<String, (String, JoinHandle<()>)> = BTreeMap::new();
    let mut tunnel_sessions = tunnels::Tunnels::new();
    // VPCs to recompile (`all`: every one).
    let mut all = true;
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    // Whether a keyed object may have appeared or gone (see `EngineState::update`).
    let mut ids_changed = true;
    let mut first = true;
    loop {
        // The store writes its change feed before it publishes the revision: every
        // change up to `revision` is in the feed now.
        let revision = *rev_rx.borrow_and_update();
        let mut changed = Vec::new();
        let mut lagged = false;
        loop {
            match feed.try_recv() {
                Ok(c) => changed.push(c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "change feed lagged; reading the whole store");
                    lagged = true;
                }
                Err(TryRecvError::Closed) => return,
            }
        }
        if lagged {
            snap = None;
        }
        if let Some(s) = snap.as_mut() {
            // Incremental: re-read only the changed objects.
            for c in &changed {
                let before = s.affected_vpcs(&c.kind, &c.id);
                let existed = s.has(&c.kind, &c.id);
                if let Err(e) = s.refresh(&shared.store, &c.kind, &c.id) {
                    tracing::error!(error = %e, kind = %c.kind, id = %c.id, "reading a changed object");
                    lagged = true;
                    break;
                }
                let after = s.affected_vpcs(&c.kind, &c.id);
                ids_changed |= existed != s.has(&c.kind, &c.id);
                match (before, after) {
                    (Some(b), Some(a)) => dirty.extend(b.into_iter().chain(a)),
                    _ => all = true,
                }
            }
            s.revision = s.revision.max(revision);
            if lagged {
                snap = None;
            }
        }
        if snap.is_none() {
            let store = shared.store.clone();
            match tokio::task::spawn_blocking(move || Snapshot::load(&store)).await {
                Ok(Ok(s)) => snap = Some(s),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the store");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store reader panicked");
                    return;
                }
            }
            all = true;
        }
        let Some(snap) = snap.as_ref() else {
            continue;
        };
        if first {
            // Start the sessions, then give their switches a moment to report their
            // interfaces before the first compile: a restarted controller compiles
            // every VPC once with the ports its switches report instead of once
            // without them and then again (every port's flows moved) with them.
            // Only a delay: every later report is applied as before.
            first = false;
            manage_connectors(&shared, snap, &mut connectors);
            tunnels::manage(&shared, snap, &mut tunnel_sessions);
            let deadline = tokio::time::Instant::now() + FIRST_REPORTS_WAIT;
            while snap.chassis.keys().any(|c| !st.epochs.contains_key(c)) {
                match tokio::time::timeout_at(deadline, cmd.recv()).await {
                    Ok(Some(Cmd::Ports {
                        chassis,
                        epoch,
                        ports,
                    })) => {
                        st.ofports.insert(chassis.clone(), ports);
                        st.epochs.insert(chassis, epoch);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        let t0 = std::time::Instant::now();
        let which = if all {
            None
        } else {
            Some(std::mem::take(&mut dirty))
        };
        let n_dirty = which.as_ref().map(|d| d.len());
        all = false;
        dirty.clear();
        let recomputed = st.update(snap, which, std::mem::take(&mut ids_changed));
        let changes = st.union.take_changes();
        tracing::debug!(revision = snap.revision, ?n_dirty, recomputed, changed_chassis = changes.len(), elapsed = ?t0.elapsed(), "compiled");
        publish(&shared, &st, snap.revision, changes);
        manage_connectors(&shared, snap, &mut connectors);
        tunnels::manage(&shared, snap, &mut tunnel_sessions);
        // Wait for the next store change or interface report.
        tokio::select! {
            r = rev_rx.changed() => {
                if r.is_err() {
                    return;
                }
            }
            c = cmd.recv() => match c {
                Some(Cmd::Ports { chassis, epoch, ports }) => {
                    tracing::debug!(%chassis, epoch, n = ports.len(), "switch ports");
                    st.ofports.insert(chassis.clone(), ports);
                    st.epochs.insert(chassis, epoch);
                    all = true;
                }
                None => return,
            },
        }
        // Coalesce whatever else is queued.
        while let Ok(Cmd::Ports {
            chassis,
            epoch,
            ports,
        }) = cmd.try_recv()
        {
            st.ofports.insert(chassis.clone(), ports);
            st.epochs.insert(chassis, epoch);
            all = true;
        }
    }
}

fn publish<S: Store>(
    shared: &Shared<S>,
    st: &EngineState,
    revision: u64,
    mut changes: BTreeMap<String, SetDelta>,
) {
    let mut desired = shared.desired.lock().unwrap();
    let names: BTreeSet<String> = st
        .union
        .chassis()
        .cloned()
        .chain(st.epochs.keys().cloned())
        .chain(desired.keys().cloned())
        .chain(changes.keys().cloned())
        .collect();
    for c in names {
        let ch = desired.entry(c.clone()).or_insert_with(ChassisDesired::new);
        let epoch = st.epochs.get(&c).copied().unwrap_or(0);
        let v = {
            let mut d = ch.state.lock().unwrap();
            if let Some(delta) = changes.remove(&c) {
                d.apply(delta);
            }
            d.revision = revision;
            d.epoch = epoch;
            DesiredVersion {
                revision,
                epoch,
                seq: d.seq,
            }
        };
        ch.tx.send_if_modified(|x| {
            if *x == v {
                return false;
            }
            *x = v;
            true
        });
    }
}

/// Keeps one connecting task per chassis with `endpoint.openflow` (switch listens).
fn manage_connectors<S: Store + Clone>(
    shared: &Arc<Shared<S>>,
    snap: &Snapshot,
    connectors: &mut BTreeMap<String, (String, JoinHandle<()>)>,
) {
    let wanted: BTreeMap<String, String> = snap
        .chassis
        .iter()
        .filter_map(|(id, c)| {
            let t = c.endpoint.as_ref()?.openflow.clone()?;
            Some((id.clone(), t))
        })
        .collect();
    connectors.retain(|id, (t, h)| {
        let keep = wanted.get(id) == Some(t);
        if !keep {
            h.abort();
        }
        keep
    });
    for (id, target) in wanted {
        if connectors.contains_key(&id) {
            continue;
        }
        let sh = shared.clone();
        let (cid, t) = (id.clone(), target.clone());
        let h = tokio::spawn(async move {
            while !*sh.stop.borrow() {
                match Connection::connect(&t, &sh.cfg).await {
                    Ok(conn) => {
                        let r = run_session(sh.clone(), conn, Some(cid.clone())).await;
                        tracing::info!(chassis = %cid, result = ?r, "switch session ended");
                    }
                    Err(e) => {
                        sh.status.update(&cid, |s| {
                            s.connected = false;
                            s.last_error = Some(format!("connecting to {t}: {e}"));
                        });
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        connectors.insert(id, (target, h));
    }
}

pub(crate) fn next_epoch<S: Store>(shared: &Shared<S>) -> u64 {
    shared.epoch.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::tests::{Op, op, to_change};
    use crate::compiler::{ChassisInfo, L3, compile_full, router_mac};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Three chassis shared by every VPC; VNI per VPC.
    fn empty_vpc(vni: u32) -> Model {
        let mut m = Model {
            vni,
            l3: L3 {
                router_mac: router_mac(vni),
                lb_zone: 300 + vni as u16,
                ..Default::default()
            },
            ..Default::default()
        };
        for c in 0..3u8 {
            m.chassis.insert(
                format!("c{c}"),
                ChassisInfo {
                    vtep: Ipv4Addr::new(192, 0, 2, 10 * c),
                    tunnel_ofport: 1,
                },
            );
        }
        m
    }

    /// Every chassis' desired flows recomputed from scratch: the union of each VPC's
    /// full compile.
    fn full_union(models: &BTreeMap<String, Model>) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in models.values() {
            for (c, fs) in compile_full(m) {
                out.entry(c).or_default().extend(fs);
            }
        }
        out.retain(|_, v| !v.is_empty());
        out
    }

    fn union_flows(st: &EngineState) -> BTreeMap<String, BTreeSet<String>> {
        st.union
            .chassis()
            .map(|c| {
                let fs: BTreeSet<String> =
                    st.union.flows(c).iter().map(|f| f.to_string()).collect();
                (c.clone(), fs)
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A change to VPC `vpc` (VNI 100 + vpc).
        Vpc(u8, Op),
        /// VPC `vpc` is deleted.
        DelVpc(u8),
        /// VPC `vpc` is re-created with another VNI (every flow of it moves).
        Renumber(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            10 => (0..3u8, op()).prop_map(|(v, o)| Step::Vpc(v, o)),
            1 => (0..3u8).prop_map(Step::DelVpc),
            1 => (0..3u8).prop_map(Step::Renumber),
        ]
    }

    /// Enough VPCs and ports to compile on two threads (new VPCs, then every port
    /// reported: the full-compile path): the union equals the full recompute.
    #[test]
    fn parallel_full_compiles_equal_full() {
        let port = |n: u8, reported: bool| Op::Port {
            n,
            chassis: n % 3,
            groups: n % 4,
            ip: n % 4,
            sec: n.is_multiple_of(2),
            bound: true,
            reported,
        };
        let build = |reported: bool| -> BTreeMap<String, Model> {
            (0..5u32)
                .map(|v| {
                    let mut e = crate::compiler::Engine::new(empty_vpc(100 + v));
                    e.apply(to_change(&Op::Group {
                        n: 0,
                        rules: vec![(true, 1, 0, 2)],
                    }));
                    e.apply_all((0..250u8).map(|n| to_change(&port(n, reported))).collect());
                    (format!("vpc{v}"), e.model().clone())
                })
                .collect()
        };
        let mut st = EngineState::default();
        let models = build(false);
        assert!(models.values().map(|m| m.ports.len()).sum::<usize>() >= PARALLEL_PORTS);
        assert_eq!(st.apply_models(models.clone(), None), 5);
        assert_eq!(union_flows(&st), full_union(&models));
        let models = build(true);
        assert_eq!(
            st.apply_models(models.clone(), None),
            5,
            "five full compiles"
        );
        assert_eq!(union_flows(&st), full_union(&models));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Several VPCs (the same port and group names, overlapping addresses) over
        /// several chassis, as the engine task sees them: per-VPC incremental engines fed
        /// with `model_changes`, merged per chassis by the reference-counted union. After
        /// every step the union equals the full recompute of every VPC.
        #[test]
        fn multi_vpc_multi_chassis_union_equals_full(steps in prop::collection::vec(step(), 1..40)) {
            let mut st = EngineState::default();
            let mut models: BTreeMap<String, Model> = BTreeMap::new();
            let mut builders: BTreeMap<String, crate::compiler::Engine> = BTreeMap::new();
            for s in &steps {
                match s {
                    Step::Vpc(v, o) => {
                        let id = format!("vpc{v}");
                        let e = builders
                            .entry(id.clone())
                            .or_insert_with(|| crate::compiler::Engine::new(empty_vpc(100 + *v as u32)));
                        e.apply(to_change(o));
                        models.insert(id, e.model().clone());
                    }
                    Step::DelVpc(v) => {
                        let id = format!("vpc{v}");
                        builders.remove(&id);
                        models.remove(&id);
                    }
                    Step::Renumber(v) => {
                        let id = format!("vpc{v}");
                        if let Some(m) = models.get_mut(&id) {
                            m.vni += 1000;
                            m.l3.router_mac = router_mac(m.vni);
                            builders.insert(id, crate::compiler::Engine::new(m.clone()));
                        }
                    }
                }
                st.apply_models(models.clone(), None);
                prop_assert_eq!(union_flows(&st), full_union(&models), "after {:?}", s);
            }
        }

        /// A switch reporting every port at once (as after a controller restart) changes
        /// most of the VPC: the full-recompile path gives the same union.
        #[test]
        fn all_ports_reported_at_once_equals_full(groups in 0..8u8, chassis in 0..4u8) {
            let port = |n: u8, reported: bool| Op::Port {
                n, chassis: (chassis + n) % 4, groups: groups.rotate_left(n as u32), ip: n % 4,
                sec: n.is_multiple_of(2), bound: true, reported,
            };
            let mut e = crate::compiler::Engine::new(empty_vpc(7));
            e.apply(to_change(&Op::Group { n: 0, rules: vec![(true, 1, 0, 2)] }));
            let mut st = EngineState::default();
            for n in 0..8 {
                e.apply(to_change(&port(n, false)));
            }
            let mut models = BTreeMap::from([("v".to_string(), e.model().clone())]);
            st.apply_models(models.clone(), None);
            prop_assert_eq!(union_flows(&st), full_union(&models));
            for n in 0..8 {
                e.apply(to_change(&port(n, true)));
            }
            models.insert("v".into(), e.model().clone());
            let before = st.engines["v"].model().clone();
            prop_assert!(model_changes(&before, e.model()).len() >= 8);
            let recomputed = st.apply_models(models.clone(), None);
            prop_assert_eq!(recomputed, 1, "one full compile");
            prop_assert_eq!(union_flows(&st), full_union(&models));
        }

        /// The same steps applied in batches of ten (many changes to one VPC at once take
        /// the full-recompile path of `apply_models`): the union still equals the full
        /// recompute after each batch.
        #[test]
        fn batched_model_updates_equal_full(steps in prop::collection::vec(step(), 1..60)) {
            let mut st = EngineState::default();
            let mut models: BTreeMap<String, Model> = BTreeMap::new();
            let mut builders: BTreeMap<String, crate::compiler::Engine> = BTreeMap::new();
            for (i, s) in steps.iter().enumerate() {
                match s {
                    Step::Vpc(v, o) => {
                        let id = format!("vpc{v}");
                        let e = builders
                            .entry(id.clone())
                            .or_insert_with(|| crate::compiler::Engine::new(empty_vpc(100 + *v as u32)));
                        e.apply(to_change(o));
                        models.insert(id, e.model().clone());
                    }
                    Step::DelVpc(v) => {
                        let id = format!("vpc{v}");
                        builders.remove(&id);
                        models.remove(&id);
                    }
                    Step::Renumber(v) => {
                        let id = format!("vpc{v}");
                        if let Some(m) = models.get_mut(&id) {
                            m.vni += 1000;
                            m.l3.router_mac = router_mac(m.vni);
                            builders.insert(id, crate::compiler::Engine::new(m.clone()));
                        }
                    }
                }
                if i % 10 == 9 || i + 1 == steps.len() {
                    st.apply_models(models.clone(), None);
                    prop_assert_eq!(union_flows(&st), full_union(&models), "after step {}", i);
                }
            }
        }
    }
}
