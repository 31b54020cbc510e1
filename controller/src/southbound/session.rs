//! One switch's OpenFlow session: identify, report ports, reconcile, follow the desired flows.

use super::reconcile::{
    COOKIE, COOKIE_MASK, InstalledFlow, Plan, SetDelta, canon_installed, is_plexus_group,
    parse_add, plan_from_delta, plan_full_canon,
};
use super::{Cmd, Shared, next_epoch};
use crate::model_from_store::Snapshot;
use crate::store::Store;
use anyhow::{Context as _, anyhow, bail};
use plexus_openflow::Message;
use plexus_openflow::action::Action;
use plexus_openflow::conn::{ConnError, ConnHandle, Connection, Reply};
use plexus_openflow::message::{
    AsyncConfig, BundleAdd, BundleControl, BundleCtrlType, FlowMod, FlowStats, FlowStatsRequest,
    GroupDesc, GroupMod, MultipartReplyBody, MultipartRequest, MultipartRequestBody, OFP_NO_BUFFER,
    PacketIn2, PacketOut, bundle_flags, group_id, port_no,
};
use plexus_openflow::oxm::FieldId;
use plexus_openflow::text::flow::TABLE_ALL;
use plexus_responder::ratelimit::TokenBucket;
use plexus_responder::{Handled, Responder};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const RESYNC_AFTER_ERROR: Duration = Duration::from_secs(2);
const OFPPR_DELETE: u8 = 1;
/// `NXPIF_NXT_PACKET_IN2`.
const NXPIF_NXT_PACKET_IN2: u32 = 2;

/// Answers a responder packet-in (Open vSwitch chassis) with a PACKET_OUT out of the
/// port it came from, built by the same code plexus-vswitchd runs locally. Returns
/// `Some(true)` when a reply was sent, `Some(false)` when the packet was a responder's
/// and was dropped, `None` for other packet-ins.
pub fn answer_packet_in(
    responder: &mut Responder,
    handle: &ConnHandle,
    pi: &PacketIn2,
) -> Option<bool> {
    let ud = pi.userdata.as_deref()?;
    match responder.handle(ud, &pi.packet) {
        Handled::NotPlexus => None,
        Handled::Done => Some(false),
        Handled::Reply(kind) => {
            let in_port = pi
                .metadata
                .as_ref()
                .and_then(|m| m.get(FieldId::InPort))
                .map(|f| f.value as u32);
            let Some(in_port) = in_port else {
                tracing::warn!(kind = kind.name(), "responder packet-in without in_port");
                return Some(false);
            };
            let po = PacketOut {
                buffer_id: OFP_NO_BUFFER,
                in_port: port_no::CONTROLLER,
                actions: vec![Action::Output {
                    port: in_port,
                    max_len: 0,
                }],
                data: responder.reply().to_vec(),
            };
            Some(handle.send(&Message::PacketOut(po)).is_ok())
        }
    }
}

/// Checked messages between two barriers.
const WINDOW_CHUNK: usize = 16384;

/// Checked messages in flight, acknowledged in chunks: after every [`WINDOW_CHUNK`]
/// messages a barrier follows, and before a third chunk is started the oldest one's
/// barrier is awaited. The pending replies and the queued bytes stay bounded however
/// many flow-mods a reconcile sends (a barrier inside an open bundle is not part of it:
/// its reply only says the bundle messages before it were checked and added).
struct Window {
    what: &'static str,
    chunks: VecDeque<(Reply<()>, Vec<Reply<()>>)>,
    current: Vec<Reply<()>>,
    settled: usize,
    errs: Vec<String>,
}

impl Window {
    fn new(what: &'static str) -> Self {
        Window {
            what,
            chunks: VecDeque::new(),
            current: Vec::new(),
            settled: 0,
            errs: Vec::new(),
        }
    }

    fn push(&mut self, r: Reply<()>) {
        self.current.push(r);
    }

    async fn flush_if_full(&mut self, h: &ConnHandle) -> Result<(), String> {
        if self.current.len() < WINDOW_CHUNK {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.current);
        self.chunks.push_back((h.barrier(), chunk));
        while self.chunks.len() > 2 {
            let (b, rs) = self.chunks.pop_front().expect("chunk");
            self.settle(b, rs).await?;
        }
        Ok(())
    }

    /// Waits for `barrier`, then collects the errors of `replies` (all answered by then).
    async fn settle(&mut self, barrier: Reply<()>, replies: Vec<Reply<()>>) -> Result<(), String> {
        wait(barrier).await.map_err(|e| e.to_string())?;
        for r in replies {
            if let Err(e) = wait(r).await {
                self.errs
                    .push(format!("{} {}: {e}", self.what, self.settled));
            }
            self.settled += 1;
        }
        Ok(())
    }

    /// Settles every chunk; `last` is a barrier sent after the last message. Returns
    /// the messages' errors.
    async fn finish(mut self, last: Reply<()>) -> Result<Vec<String>, String> {
        while let Some((b, rs)) = self.chunks.pop_front() {
            self.settle(b, rs).await?;
        }
        let rest = std::mem::take(&mut self.current);
        self.settle(last, rest).await?;
        Ok(self.errs)
    }
}

/// A plan's flow-mods in sending order: deletes, adds, then the adds still in text
/// (parsed here, one at a time).
fn flow_mods(plan: &Plan) -> impl Iterator<Item = Result<FlowMod, String>> + '_ {
    plan.deletes
        .iter()
        .chain(&plan.adds)
        .cloned()
        .map(Ok)
        .chain(plan.add_texts.iter().map(|t| parse_add(t)))
}

async fn wait<T>(r: Reply<T>) -> Result<T, ConnError> {
    match tokio::time::timeout(TIMEOUT, r).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Io {
            kind: std::io::ErrorKind::TimedOut,
            msg: "no reply from the switch".into(),
        }),
    }
}

enum BundleError {
    /// The switch refused to open a bundle: use plain flow-mods.
    Unsupported(String),
    Failed(String),
}

/// Flow programming over one connection (also usable on its own, e.g. in tests).
#[derive(Debug)]
pub struct Session {
    pub handle: ConnHandle,
    /// Whether to use ONF bundles (cleared when the switch refuses one).
    pub bundles: bool,
    next_bundle: u32,
}

impl Session {
    pub fn new(handle: ConnHandle) -> Self {
        Session {
            handle,
            bundles: true,
            next_bundle: 1,
        }
    }

    async fn multipart(
        &self,
        body: MultipartRequestBody,
    ) -> anyhow::Result<Vec<MultipartReplyBody>> {
        let msg = Message::MultipartRequest(MultipartRequest { flags: 0, body });
        wait(self.handle.multipart(&msg))
            .await?
            .into_iter()
            .map(|m| match m {
                Message::MultipartReply(r) => Ok(r.body),
                other => Err(anyhow!("multipart answered with {other:?}")),
            })
            .collect()
    }

    /// The switch's datapath id (FEATURES).
    pub async fn datapath_id(&self) -> anyhow::Result<u64> {
        match wait(self.handle.request(&Message::FeaturesRequest)).await? {
            Message::FeaturesReply(f) => Ok(f.datapath_id),
            other => bail!("features request answered with {other:?}"),
        }
    }

    /// Port name → number (PORT_DESC) and the bridge name (the LOCAL port's).
    pub async fn ports(&self) -> anyhow::Result<(BTreeMap<String, u32>, Option<String>)> {
        let mut ports = BTreeMap::new();
        let mut bridge = None;
        for b in self.multipart(MultipartRequestBody::PortDesc).await? {
            let MultipartReplyBody::PortDesc(v) = b else {
                bail!("port desc answered with {b:?}");
            };
            for p in v {
                if p.port_no == port_no::LOCAL {
                    bridge = Some(p.name.clone());
                } else if p.port_no < port_no::MAX {
                    ports.insert(p.name.clone(), p.port_no);
                }
            }
        }
        Ok((ports, bridge))
    }

    /// Plexus-owned flows on the switch (flow stats filtered by the cookie).
    pub async fn plexus_flows(&self) -> anyhow::Result<Vec<FlowStats>> {
        let req = plexus_flows_request();
        let mut out = Vec::new();
        for b in self.multipart(MultipartRequestBody::Flow(req)).await? {
            match b {
                MultipartReplyBody::Flow(f) => out.extend(f),
                other => bail!("flow stats answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// [`Session::plexus_flows`] reduced to what reconciling compares
    /// ([`canon_installed`]), one reply part at a time off the runtime: the switch's
    /// 100k+ flows are held as received bytes and reduced, never all decoded at once.
    pub async fn plexus_flows_reduced(&self) -> anyhow::Result<Vec<InstalledFlow>> {
        let req = plexus_flows_request();
        let mut frame = Vec::new();
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Flow(req),
        })
        .encode(0, &mut frame);
        let frames = wait(self.handle.multipart_raw(frame)).await?;
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for f in frames {
                let (_, m) = Message::decode(&f)
                    .map_err(|e| anyhow!("decoding a flow stats reply: {e:?}"))?;
                drop(f);
                match m {
                    Message::MultipartReply(r) => match r.body {
                        MultipartReplyBody::Flow(v) => out.extend(canon_installed(v)),
                        other => bail!("flow stats answered with {other:?}"),
                    },
                    Message::Error(e) => bail!("flow stats refused: {e:?}"),
                    other => bail!("flow stats answered with {other:?}"),
                }
            }
            Ok(out)
        })
        .await?
    }

    /// Groups in the Plexus range on the switch (group descriptions).
    pub async fn plexus_groups(&self) -> anyhow::Result<Vec<GroupDesc>> {
        let mut out = Vec::new();
        for b in self.multipart(MultipartRequestBody::GroupDesc).await? {
            match b {
                MultipartReplyBody::GroupDesc(g) => {
                    out.extend(g.into_iter().filter(|g| is_plexus_group(g.group_id)))
                }
                other => bail!("group desc answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// Sends group-mods followed by a barrier; `Ok` once acknowledged without error.
    async fn send_groups(&mut self, groups: Vec<GroupMod>) -> Result<(), String> {
        if groups.is_empty() {
            return Ok(());
        }
        let replies: Vec<_> = groups
            .into_iter()
            .map(|g| self.handle.send_checked(&Message::GroupMod(g)))
            .collect();
        wait(self.handle.barrier())
            .await
            .map_err(|e| e.to_string())?;
        let mut errs = Vec::new();
        for (i, r) in replies.into_iter().enumerate() {
            if let Err(e) = wait(r).await {
                errs.push(format!("group-mod {i}: {e}"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Sends `plan`: group adds/modifies (acknowledged), then the flow deletes and adds as
    /// one ONF bundle plus a barrier (or plain flow-mods plus a barrier when the switch
    /// refuses bundles), then group deletes. `Ok` once everything is acknowledged.
    pub async fn send_plan(&mut self, mut plan: Plan) -> Result<(), String> {
        self.send_groups(std::mem::take(&mut plan.group_adds))
            .await?;
        let group_deletes = std::mem::take(&mut plan.group_deletes);
        self.send_flows(plan).await?;
        self.send_groups(group_deletes).await
    }

    async fn send_flows(&mut self, plan: Plan) -> Result<(), String> {
        if plan.is_empty() {
            return Ok(());
        }
        if self.bundles {
            match self.bundle(&plan).await {
                Ok(()) => return Ok(()),
                Err(BundleError::Failed(e)) => return Err(e),
                Err(BundleError::Unsupported(e)) => {
                    tracing::warn!(error = %e, "switch refuses bundles; using plain flow-mods");
                    self.bundles = false;
                }
            }
        }
        let mut win = Window::new("flow-mod");
        for fm in flow_mods(&plan) {
            win.push(self.handle.send_checked(&Message::FlowMod(fm?)));
            win.flush_if_full(&self.handle).await?;
        }
        let barrier = self.handle.barrier();
        let errs = win.finish(barrier).await?;
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    async fn bundle(&mut self, plan: &Plan) -> Result<(), BundleError> {
        let bundle_id = self.next_bundle;
        self.next_bundle = self.next_bundle.wrapping_add(1);
        let flags = bundle_flags::ATOMIC | bundle_flags::ORDERED;
        let ctrl = |ctrl_type| {
            Message::BundleControl(BundleControl {
                bundle_id,
                ctrl_type,
                flags,
                properties: Vec::new(),
            })
        };
        match wait(self.handle.request(&ctrl(BundleCtrlType::OpenRequest))).await {
            Ok(Message::BundleControl(b)) if b.ctrl_type == BundleCtrlType::OpenReply => {}
            Ok(other) => return Err(BundleError::Unsupported(format!("open: {other:?}"))),
            Err(e @ ConnError::Ofp { .. }) => return Err(BundleError::Unsupported(e.to_string())),
            Err(e) => return Err(BundleError::Failed(e.to_string())),
        }
        let mut win = Window::new("bundle message");
        for fm in flow_mods(plan) {
            let fm = match fm {
                Ok(fm) => fm,
                Err(e) => {
                    let _ = self.handle.send(&ctrl(BundleCtrlType::DiscardRequest));
                    return Err(BundleError::Failed(e));
                }
            };
            win.push(self.handle.send_checked(&Message::BundleAdd(BundleAdd {
                bundle_id,
                flags,
                message: Box::new(Message::FlowMod(fm)),
                properties: Vec::new(),
            })));
            win.flush_if_full(&self.handle)
                .await
                .map_err(BundleError::Failed)?;
        }
        let commit = self.handle.request(&ctrl(BundleCtrlType::CommitRequest));
        let barrier = self.handle.barrier();
        let commit = wait(commit).await;
        let mut errs = win.finish(barrier).await.map_err(BundleError::Failed)?;
        match commit {
            Ok(Message::BundleControl(b)) if b.ctrl_type == BundleCtrlType::CommitReply => {
                if errs.is_empty() {
                    Ok(())
                } else {
                    Err(BundleError::Failed(errs.join("; ")))
                }
            }
            Ok(other) => Err(BundleError::Failed(format!("commit: {other:?}"))),
            Err(e) => {
                errs.insert(0, format!("commit: {e}"));
                Err(BundleError::Failed(errs.join("; ")))
            }
        }
    }
}

/// Runs one switch's session until the connection closes or the southbound stops.
/// `chassis` is known for controller-initiated sessions; otherwise the switch is
/// identified by datapath id or bridge name (waiting for such a chassis to appear).
pub(crate) async fn run_session<S: Store + Clone>(
    shared: Arc<Shared<S>>,
    conn: Connection,
    chassis: Option<String>,
) -> anyhow::Result<()> {
    let Connection {
        handle,
        mut incoming,
        ..
    } = conn;
    let mut sess = Session::new(handle);
    let mut stop = shared.stop.clone();
    let dpid = sess.datapath_id().await.context("FEATURES")?;
    let (mut ports, bridge) = sess.ports().await.context("PORT_DESC")?;
    let chassis = match chassis {
        Some(c) => c,
        None => {
            // Waiting drops PORT_STATUS messages: read the ports again once the
            // chassis is known (later PORT_STATUS are applied by `follow`).
            let mut waited = false;
            let mut rev = shared.store.watch_revision();
            loop {
                let store = shared.store.clone();
                let snap = tokio::task::spawn_blocking(move || Snapshot::load(&store)).await??;
                if let Some(c) = snap.chassis_for_switch(dpid, bridge.as_deref()) {
                    if waited {
                        ports = sess.ports().await.context("PORT_DESC")?.0;
                    }
                    break c;
                }
                waited = true;
                tracing::info!(
                    dpid = format!("{dpid:#018x}"),
                    ?bridge,
                    "switch has no chassis yet"
                );
                tokio::select! {
                    r = rev.changed() => r?,
                    _ = stop.changed() => return Ok(()),
                    ev = incoming.recv() => if ev.is_none() { bail!("switch disconnected") },
                }
            }
        }
    };
    tracing::info!(%chassis, dpid = format!("{dpid:#018x}"), "switch connected");
    // Responder packet-ins carry their parameters as `controller(userdata=…)`, which only
    // NXT_PACKET_IN2 delivers (Open vSwitch). plexus-vswitchd answers them itself and
    // refuses this request with an OFPT_ERROR, which is harmless.
    let _ = sess
        .handle
        .send(&Message::NxSetPacketInFormat(NXPIF_NXT_PACKET_IN2));
    // Open vSwitch sends no asynchronous messages on a service connection (a switch
    // reached through its `BRIDGE.mgmt` socket, as HA controllers do): ask for packet-ins
    // (responders), port status and flow removals as a primary controller gets them.
    let _ = sess.handle.send(&Message::SetAsync(AsyncConfig {
        packet_in_mask: [0b111, 0],
        port_status_mask: [0b111, 0b111],
        flow_removed_mask: [0b1111, 0],
    }));
    let status = shared.status.clone();
    status.update(&chassis, |s| {
        s.connected = true;
        s.datapath_id = Some(format!("{dpid:#018x}"));
    });
    let result = follow(
        &shared,
        &mut sess,
        &mut incoming,
        &mut stop,
        &chassis,
        &mut ports,
    )
    .await;
    shared.switch_ports.forget(&chassis);
    status.update(&chassis, |s| {
        s.connected = false;
        if let Err(e) = &result {
            s.last_error = Some(format!("{e:#}"));
        }
    });
    sess.handle.close().await;
    result
}

async fn follow<S: Store + Clone>(
    shared: &Arc<Shared<S>>,
    sess: &mut Session,
    incoming: &mut plexus_openflow::conn::Incoming,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    chassis: &str,
    ports: &mut BTreeMap<String, u32>,
) -> anyhow::Result<()> {
    let status = shared.status.clone();
    let report = |ports: &BTreeMap<String, u32>| -> u64 {
        let epoch = next_epoch(shared);
        shared.switch_ports.set(chassis, ports);
        let _ = shared.cmd.send(Cmd::Ports {
            chassis: chassis.to_string(),
            epoch,
            ports: ports.clone(),
        });
        epoch
    };
    let (state, mut rx) = shared.subscribe(chassis);
    let first_epoch = report(ports);
    // Wait for flows computed with this switch's ports: reconciling against anything
    // older would delete the flows of ports the engine has not seen yet. Meanwhile read
    // what the switch holds (only this session changes its Plexus flows), so that a
    // restarted controller recompiling every port and a switch listing 100k+ flows
    // overlap instead of adding up.
    let wait = async {
        loop {
            rx.borrow_and_update();
            if state.lock().unwrap().epoch >= first_epoch {
                return Ok(true);
            }
            tokio::select! {
                r = rx.changed() => r.map_err(|_| anyhow!("southbound stopped"))?,
                _ = stop.changed() => return Ok::<bool, anyhow::Error>(false),
            }
        }
    };
    let dump = async {
        // Reduced off the runtime, still while the engine compiles.
        let flows = sess.plexus_flows_reduced().await?;
        let groups = sess.plexus_groups().await?;
        Ok::<_, anyhow::Error>((flows, groups))
    };
    let (go, dumped) = tokio::join!(wait, dump);
    if !go? {
        return Ok(());
    }
    // A failed read is retried by the reconcile itself.
    let mut prefetched = dumped.ok();
    let mut responder = Responder::new();
    // One token bucket per ingress port: a flooding port cannot starve the others,
    // the other chassis' sessions or the API. Bounded by the switch's ports.
    let mut pin_buckets: HashMap<u32, TokenBucket> = HashMap::new();
    // The desired-set change number the switch holds; `None`: unknown, reconcile fully.
    let mut installed: Option<u64> = None;
    let mut dirty = true;
    loop {
        if dirty {
            rx.borrow_and_update();
            enum Work {
                Delta(SetDelta),
                Full(BTreeSet<crate::compiler::Flow>),
            }
            let (revision, seq, count, work) = {
                let d = state.lock().unwrap();
                let work = match installed.and_then(|s| d.since(s)) {
                    Some(delta) => Work::Delta(delta),
                    None => Work::Full(d.flows.clone()),
                };
                (d.revision, d.seq, d.flow_count() as u64, work)
            };
            let t0 = std::time::Instant::now();
            let full = matches!(work, Work::Full(_));
            let r = match &work {
                Work::Delta(delta) => apply_delta(sess, delta).await,
                Work::Full(flows) => reconcile(sess, revision, flows, prefetched.take()).await,
            };
            match r {
                Ok((adds, deletes)) => {
                    installed = Some(seq);
                    dirty = false;
                    tracing::debug!(%chassis, revision, adds, deletes, full, elapsed = ?t0.elapsed(), "flows acknowledged");
                    status.update(chassis, |s| {
                        s.realized_revision = revision;
                        s.flow_count = count;
                        s.flow_adds += adds;
                        s.flow_deletes += deletes;
                        s.reconciles += full as u64;
                        s.last_error = None;
                    });
                }
                Err(e) => {
                    tracing::warn!(%chassis, error = %e, "programming the switch failed; will resync");
                    status.update(chassis, |s| s.last_error = Some(e.clone()));
                    if sess.handle.is_closed() {
                        bail!("{e}");
                    }
                    installed = None;
                }
            }
        }
        let resync = async {
            if dirty {
                tokio::time::sleep(RESYNC_AFTER_ERROR).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            r = rx.changed() => {
                r.map_err(|_| anyhow!("southbound stopped"))?;
                dirty = true;
            }
            () = resync => {}
            _ = stop.changed() => return Ok(()),
            ev = incoming.recv() => match ev {
                None => bail!("switch disconnected"),
                Some((_, Ok(Message::PortStatus(ps)))) => {
                    let before = ports.clone();
                    if ps.reason == OFPPR_DELETE {
                        ports.remove(&ps.desc.name);
                    } else if ps.desc.port_no < port_no::MAX {
                        ports.insert(ps.desc.name.clone(), ps.desc.port_no);
                    }
                    if *ports != before {
                        report(ports);
                    }
                }
                Some((_, Ok(Message::NxPacketIn2(pi)))) => {
                    let in_port = pi
                        .metadata
                        .as_ref()
                        .and_then(|m| m.get(FieldId::InPort))
                        .map_or(0, |f| f.value as u32);
                    let now = std::time::Instant::now();
                    let limit = shared.packet_in_limit;
                    if pi.userdata.as_deref().is_some_and(plexus_responder::is_plexus)
                        && !pin_buckets
                            .entry(in_port)
                            .or_insert_with(|| TokenBucket::new(limit, now))
                            .take(now)
                    {
                        status.update(chassis, |s| s.responder_rate_limited += 1);
                        continue;
                    }
                    if let Some(sent) = answer_packet_in(&mut responder, &sess.handle, &pi) {
                        status.update(chassis, |s| {
                            if sent {
                                s.responder_replies += 1;
                            } else {
                                s.responder_drops += 1;
                            }
                        });
                    }
                }
                Some((_, Ok(Message::Error(e)))) => {
                    tracing::debug!(%chassis, error = ?e, "switch error for an unacknowledged message");
                }
                Some(_) => {}
            },
        }
    }
}

/// Full reconcile against what the switch holds: `prefetched` (read by this session with
/// nothing sent since), else read now.
async fn reconcile(
    sess: &mut Session,
    revision: u64,
    flows: &BTreeSet<crate::compiler::Flow>,
    prefetched: Option<(Vec<InstalledFlow>, Vec<GroupDesc>)>,
) -> Result<(u64, u64), String> {
    let (have, groups) = match prefetched {
        Some(p) => p,
        None => (
            sess.plexus_flows_reduced()
                .await
                .map_err(|e| format!("{e:#}"))?,
            sess.plexus_groups().await.map_err(|e| format!("{e:#}"))?,
        ),
    };
    let n_have = have.len();
    let plan = plan_full_canon(have, &groups, flows)?;
    let counts = (plan.flow_adds() as u64, plan.deletes.len() as u64);
    tracing::info!(
        revision,
        installed = n_have,
        desired = flows.len(),
        adds = counts.0,
        deletes = counts.1,
        group_mods = plan.group_adds.len(),
        group_deletes = plan.group_deletes.len(),
        "reconciling"
    );
    sess.send_plan(plan).await?;
    Ok(counts)
}

async fn apply_delta(sess: &mut Session, d: &SetDelta) -> Result<(u64, u64), String> {
    if d.is_empty() {
        return Ok((0, 0));
    }
    let plan = plan_from_delta(&d.added, &d.removed)?;
    let counts = (plan.flow_adds() as u64, plan.deletes.len() as u64);
    sess.send_plan(plan).await?;
    Ok(counts)
}

/// Flow stats of every table, filtered by the Plexus cookie.
fn plexus_flows_request() -> FlowStatsRequest {
    FlowStatsRequest {
        table_id: TABLE_ALL,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        cookie: COOKIE,
        cookie_mask: COOKIE_MASK,
        match_: Default::default(),
    }
}
