//! The OpenFlow agent: the switch side of OpenFlow 1.3.
//!
//! [`Agent`] runs on the datapath thread (see [`crate::datapath`]): it gets
//! every message of every controller connection in arrival order as a
//! [`Ctl`], applies it to the [`Switch`] (ports + pipeline) and answers on
//! the connection's [`ConnHandle`]. Because all messages of a connection are
//! handled in order on one thread, a BARRIER_REPLY is sent only after every
//! earlier message was applied. Roles (ROLE_REQUEST) and the asynchronous
//! message masks (SET_ASYNC) are kept per connection and decide who gets
//! PACKET_IN, FLOW_REMOVED and PORT_STATUS.
//!
//! [`control`] is the tokio side: active connections with reconnect and
//! backoff, and a passive listener.

pub mod buffers;
pub mod control;

use std::collections::BTreeMap;
use std::time::Instant;

use plexus_openflow::Instruction;
use plexus_openflow::conn::ConnHandle;
use plexus_openflow::error::{BadRequestCode, OfpError, RoleRequestFailedCode};
use plexus_openflow::message::{
    ActionId, Desc, GroupFeatures, InstructionId, MeterFeatures, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, OxmId, TableFeatureProp, TableFeatures, mp_type,
};
use plexus_openflow::message::{
    AsyncConfig, FeaturesReply, FlowRemoved, Message, OFP_NO_BUFFER, PacketIn, PacketOut, PortMod,
    PortStatus, QueueGetConfigReply, Role, SwitchConfig,
};
use plexus_openflow::message::{BundleControl, BundleCtrlType, ErrorMsg, FlowMod, is_bundlable};
use plexus_openflow::oxm::FieldId;
use plexus_openflow::wire::Reader;

use crate::classifier::CompactMatch;
use crate::datapath::{Ctl, DpPort, Engine};

pub use crate::datapath::simple::N_TABLES;

/// What to do while no controller is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Keep the flows and forward by them (OVS `secure`).
    #[default]
    Secure,
    /// Forward like a plain switch while no controller is connected.
    Standalone,
}

/// What the agent operates on.
pub trait Switch {
    /// The pipeline.
    fn engine(&mut self) -> &mut dyn Engine;
    /// The ports.
    fn ports(&self) -> &[DpPort];
    /// Executes a PACKET_OUT; returns the packet-ins it produced.
    fn packet_out(&mut self, po: &PacketOut) -> Result<Vec<PacketIn>, OfpError>;
    /// PORT_MOD.
    fn port_mod(&mut self, pm: &PortMod) -> Result<(), OfpError>;
}

const ROLE_NOCHANGE: u32 = 0;
const ROLE_EQUAL: u32 = 1;
const ROLE_MASTER: u32 = 2;
const ROLE_SLAVE: u32 = 3;

/// OFPC_FLOW_STATS | TABLE_STATS | PORT_STATS | GROUP_STATS.
const CAPABILITIES: u32 = 0x1 | 0x2 | 0x4 | 0x8;
/// Multipart bodies per reply message (keeps each under 64 KiB).
const CHUNK: usize = 128;
/// A bundle commit or flow dump of at least this many flows returns the
/// heap's free memory to the kernel afterwards ([`crate::sys::trim_heap`]).
const TRIM_AFTER: usize = 10_000;

#[derive(Debug)]
struct Conn {
    handle: ConnHandle,
    role: u32,
    async_cfg: AsyncConfig,
    /// Target or peer (from [`Ctl::Peer`]).
    name: String,
    /// An active controller connection (OVS "primary").
    primary: bool,
    since: Instant,
}

/// One controller connection as `show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub id: u64,
    pub name: String,
    pub primary: bool,
    /// `equal`, `master` or `slave`.
    pub role: &'static str,
    pub connected_secs: u64,
}

fn default_async() -> AsyncConfig {
    AsyncConfig {
        // [master/equal, slave]
        packet_in_mask: [0x7, 0],
        port_status_mask: [0x7, 0x7],
        flow_removed_mask: [0xf, 0],
    }
}

/// Agent settings.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub datapath_id: u64,
    pub fail_mode: FailMode,
    /// Bridge name (`show`, `trace BRIDGE FLOW`).
    pub bridge: String,
    /// Configured active controller targets (`show`).
    pub controllers: Vec<String>,
    /// Configured passive listeners (`show`).
    pub listeners: Vec<String>,
    /// Packet-in buffers (0: none, every packet-in has `OFP_NO_BUFFER`,
    /// as in OVS 3.x); see [`buffers`].
    pub packet_in_buffers: usize,
    /// Packet-ins per second per ingress port (0: unlimited); burst a
    /// quarter of it, at least 25 ([`crate::datapath::PinLimit`]).
    pub packet_in_rate: u32,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    conns: BTreeMap<u64, Conn>,
    switch_config: SwitchConfig,
    generation: Option<u64>,
    /// Open bundles per (connection, bundle id): the queued messages.
    bundles: BTreeMap<(u64, u32), Vec<(u32, Queued)>>,
    buffers: buffers::PacketBuffers,
}

/// `OFPET_BUNDLE_FAILED` (OpenFlow 1.4, used for the 1.3 ONF extension).
fn bundle_failed(code: u16) -> OfpError {
    OfpError::Other { err_type: 17, code }
}
const BFC_BAD_ID: u16 = 2;
const BFC_BUNDLE_EXIST: u16 = 3;
const BFC_MSG_UNSUP: u16 = 10;
const BFC_MSG_FAILED: u16 = 13;

/// The first 64 bytes of a message as sent (OFPT_ERROR data).
fn head(xid: u32, msg: &Message) -> Vec<u8> {
    let mut b = msg.to_bytes(xid);
    b.truncate(64);
    b
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Self {
        Self {
            buffers: buffers::PacketBuffers::new(cfg.packet_in_buffers),
            cfg,
            conns: BTreeMap::new(),
            switch_config: SwitchConfig {
                flags: 0,
                miss_send_len: 128,
            },
            generation: None,
            bundles: BTreeMap::new(),
        }
    }

    pub fn fail_mode(&self) -> FailMode {
        self.cfg.fail_mode
    }

    /// At least one controller connection is up.
    pub fn has_controller(&self) -> bool {
        !self.conns.is_empty()
    }

    /// At least one active (primary) controller connection is up; without
    /// one, fail-mode standalone forwards by NORMAL (connections accepted
    /// on a passive listener are service connections, as in OVS).
    pub fn has_primary(&self) -> bool {
        self.conns.values().any(|c| c.primary)
    }

    /// Whether truncated packet-ins are buffered.
    pub fn buffers_enabled(&self) -> bool {
        self.buffers.capacity() > 0
    }

    /// Packet buffers holding a packet (`show`).
    pub fn buffers_in_use(&self, now: Instant) -> usize {
        self.buffers.in_use(now)
    }

    /// The settings.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The controller connections (`show`).
    pub fn connections(&self, now: Instant) -> Vec<ConnInfo> {
        self.conns
            .iter()
            .map(|(&id, c)| ConnInfo {
                id,
                name: c.name.clone(),
                primary: c.primary,
                role: match c.role {
                    ROLE_MASTER => "master",
                    ROLE_SLAVE => "slave",
                    _ => "equal",
                },
                connected_secs: now.saturating_duration_since(c.since).as_secs(),
            })
            .collect()
    }

    /// Handles one control event.
    pub fn handle(&mut self, c: Ctl, sw: &mut dyn Switch) {
        match c {
            Ctl::Connected { id, handle } => {
                self.conns.insert(
                    id,
                    Conn {
                        handle,
                        role: ROLE_EQUAL,
                        async_cfg: default_async(),
                        name: String::new(),
                        primary: false,
                        since: Instant::now(),
                    },
                );
            }
            Ctl::Peer { id, name, primary } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.name = name;
                    c.primary = primary;
                }
            }
            Ctl::Appctl { cmd, reply } => {
                let r = crate::appctl::execute(&cmd, self, sw);
                let _ = reply.send(r);
            }
            Ctl::Disconnected { id } => {
                self.conns.remove(&id);
                self.bundles.retain(|(c, _), _| *c != id);
            }
            Ctl::Bad { id, failure } => {
                if let Some(c) = self.conns.get(&id) {
                    let _ = c.handle.reply_error(&failure);
                }
            }
            // Port and configuration events are applied by the datapath loop.
            Ctl::AddPort { .. }
            | Ctl::DelPort { .. }
            | Ctl::SetFailMode(_)
            | Ctl::SetDatapathId(_)
            | Ctl::Snapshot(_)
            | Ctl::Shutdown => {}
            Ctl::BundleFlowMod {
                id,
                xid,
                bundle_id,
                flags,
                queued,
            } => {
                let Some(c) = self.conns.get(&id) else {
                    return;
                };
                match self.bundles.get_mut(&(id, bundle_id)) {
                    Some(v) => v.push((xid, queued)),
                    None => {
                        let data = match queued.into_message() {
                            Ok(m) => head(
                                xid,
                                &Message::BundleAdd(plexus_openflow::message::BundleAdd {
                                    bundle_id,
                                    flags,
                                    message: Box::new(m),
                                    properties: Vec::new(),
                                }),
                            ),
                            Err(_) => Vec::new(),
                        };
                        let _ = c.handle.send_error(xid, bundle_failed(BFC_BAD_ID), &data);
                    }
                }
            }
            Ctl::Msg { id, xid, msg } => {
                if self.conns.contains_key(&id) {
                    let r = self.message(id, xid, &msg, sw);
                    if let Err(e) = r
                        && let Some(c) = self.conns.get(&id)
                    {
                        let _ = c.handle.send_error(xid, e, &head(xid, &msg));
                    }
                }
            }
        }
    }

    fn send(&self, id: u64, xid: u32, m: &Message) {
        if let Some(c) = self.conns.get(&id) {
            let _ = c.handle.send_with_xid(m, xid);
        }
    }

    fn send_multipart(&self, id: u64, xid: u32, bodies: Vec<MultipartReplyBody>) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        for frame in multipart_frames(xid, bodies) {
            let _ = c.handle.send_raw(frame);
        }
    }

    fn is_slave(&self, id: u64) -> bool {
        self.conns.get(&id).is_some_and(|c| c.role == ROLE_SLAVE)
    }

    fn message(
        &mut self,
        id: u64,
        xid: u32,
        msg: &Message,
        sw: &mut dyn Switch,
    ) -> Result<(), OfpError> {
        let now = Instant::now();
        let modifies = matches!(
            msg,
            Message::FlowMod(_)
                | Message::GroupMod(_)
                | Message::MeterMod(_)
                | Message::PortMod(_)
                | Message::TableMod(_)
                | Message::PacketOut(_)
        );
        if modifies && self.is_slave(id) {
            return Err(OfpError::BadRequest(BadRequestCode::IsSlave));
        }
        match msg {
            Message::Hello(_) | Message::EchoReply(_) | Message::Error(_) => {}
            Message::EchoRequest(d) => self.send(id, xid, &Message::EchoReply(d.clone())),
            Message::FeaturesRequest => self.send(
                id,
                xid,
                &Message::FeaturesReply(FeaturesReply {
                    datapath_id: self.cfg.datapath_id,
                    n_buffers: self.buffers.capacity() as u32,
                    n_tables: N_TABLES as u8,
                    auxiliary_id: 0,
                    capabilities: CAPABILITIES,
                    reserved: 0,
                }),
            ),
            Message::GetConfigRequest => {
                self.send(id, xid, &Message::GetConfigReply(self.switch_config))
            }
            Message::SetConfig(c) => self.switch_config = *c,
            Message::BarrierRequest => self.send(id, xid, &Message::BarrierReply),
            Message::FlowMod(fm) => {
                let removed = sw.engine().flow_mod(fm, now)?;
                self.flow_removed(removed);
                if fm.buffer_id != OFP_NO_BUFFER {
                    // Applied first; then the buffered packet runs through
                    // the tables (OFPP_TABLE), or the buffer is unknown.
                    let (data, in_port) = self.buffers.take(fm.buffer_id, now)?;
                    let po = PacketOut {
                        buffer_id: OFP_NO_BUFFER,
                        in_port,
                        actions: vec![plexus_openflow::Action::Output {
                            port: plexus_openflow::message::port_no::TABLE,
                            max_len: 0,
                        }],
                        data,
                    };
                    let pins = sw.packet_out(&po)?;
                    self.packet_ins(pins);
                }
            }
            Message::GroupMod(gm) => sw.engine().group_mod(gm)?,
            Message::MeterMod(mm) => sw.engine().meter_mod(mm)?,
            Message::PortMod(pm) => sw.port_mod(pm)?,
            Message::TableMod(_) => {}
            Message::PacketOut(po) => {
                let pins = if po.buffer_id != OFP_NO_BUFFER {
                    let (data, _) = self.buffers.take(po.buffer_id, now)?;
                    sw.packet_out(&PacketOut {
                        buffer_id: OFP_NO_BUFFER,
                        in_port: po.in_port,
                        actions: po.actions.clone(),
                        data,
                    })?
                } else {
                    sw.packet_out(po)?
                };
                self.packet_ins(pins);
            }
            Message::MultipartRequest(req) => self.multipart(id, xid, &req.body, sw, now)?,
            Message::RoleRequest(r) => {
                let role = self.role_request(id, r)?;
                self.send(id, xid, &Message::RoleReply(role));
            }
            Message::GetAsyncRequest => {
                let a = self.conns.get(&id).map(|c| c.async_cfg).unwrap_or_default();
                self.send(id, xid, &Message::GetAsyncReply(a));
            }
            Message::SetAsync(a) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.async_cfg = *a;
                }
            }
            Message::QueueGetConfigRequest { port } => self.send(
                id,
                xid,
                &Message::QueueGetConfigReply(QueueGetConfigReply {
                    port: *port,
                    queues: Vec::new(),
                }),
            ),
            Message::NxSetPacketInFormat(0) | Message::NxSetControllerId(_) => {}
            Message::BundleControl(bc) => self.bundle_control(id, xid, bc, sw)?,
            Message::BundleAdd(ba) => {
                if !is_bundlable(ba.message.msg_type()) {
                    return Err(bundle_failed(BFC_MSG_UNSUP));
                }
                match self.bundles.get_mut(&(id, ba.bundle_id)) {
                    Some(v) => v.push((xid, Queued::new((*ba.message).clone()))),
                    None => return Err(bundle_failed(BFC_BAD_ID)),
                }
            }
            Message::Experimenter(_) | Message::NxSetPacketInFormat(_) | Message::NxResume(_) => {
                return Err(OfpError::BadRequest(BadRequestCode::BadExperimenter));
            }
            // Switch-to-controller messages.
            _ => return Err(OfpError::BadRequest(BadRequestCode::BadType)),
        }
        Ok(())
    }

    /// ONF bundles: OPEN/ADD queue messages, COMMIT applies them in order
    /// (stopping at the first error, which is reported for the failing
    /// message followed by MSG_FAILED for the commit), DISCARD drops them.
    fn bundle_control(
        &mut self,
        id: u64,
        xid: u32,
        bc: &BundleControl,
        sw: &mut dyn Switch,
    ) -> Result<(), OfpError> {
        use BundleCtrlType as T;
        let key = (id, bc.bundle_id);
        let reply = match bc.ctrl_type {
            T::OpenRequest => {
                if self.bundles.contains_key(&key) {
                    return Err(bundle_failed(BFC_BUNDLE_EXIST));
                }
                self.bundles.insert(key, Vec::new());
                T::OpenReply
            }
            T::CloseRequest => {
                if !self.bundles.contains_key(&key) {
                    return Err(bundle_failed(BFC_BAD_ID));
                }
                T::CloseReply
            }
            T::DiscardRequest => {
                self.bundles.remove(&key).ok_or(bundle_failed(BFC_BAD_ID))?;
                T::DiscardReply
            }
            T::CommitRequest => {
                let msgs = self.bundles.remove(&key).ok_or(bundle_failed(BFC_BAD_ID))?;
                let n = msgs.len();
                for (mxid, q) in msgs {
                    let m = match q.into_message() {
                        Ok(m) => m,
                        Err(e) => {
                            self.send(
                                id,
                                mxid,
                                &Message::Error(ErrorMsg {
                                    error: e,
                                    data: Vec::new(),
                                }),
                            );
                            return Err(bundle_failed(BFC_MSG_FAILED));
                        }
                    };
                    if let Err(e) = self.message(id, mxid, &m, sw) {
                        self.send(
                            id,
                            mxid,
                            &Message::Error(ErrorMsg {
                                error: e,
                                data: head(mxid, &m),
                            }),
                        );
                        return Err(bundle_failed(BFC_MSG_FAILED));
                    }
                }
                if n >= TRIM_AFTER {
                    crate::sys::trim_heap();
                }
                T::CommitReply
            }
            _ => return Err(OfpError::BadRequest(BadRequestCode::BadType)),
        };
        self.send(
            id,
            xid,
            &Message::BundleControl(BundleControl {
                bundle_id: bc.bundle_id,
                ctrl_type: reply,
                flags: bc.flags,
                properties: Vec::new(),
            }),
        );
        Ok(())
    }

    fn role_request(&mut self, id: u64, r: &Role) -> Result<Role, OfpError> {
        let role = r.role;
        if role > ROLE_SLAVE {
            return Err(OfpError::RoleRequestFailed(RoleRequestFailedCode::BadRole));
        }
        if role == ROLE_MASTER || role == ROLE_SLAVE {
            if let Some(g) = self.generation
                && (r.generation_id.wrapping_sub(g) as i64) < 0
            {
                return Err(OfpError::RoleRequestFailed(RoleRequestFailedCode::Stale));
            }
            self.generation = Some(r.generation_id);
        }
        if role == ROLE_MASTER {
            for (cid, c) in self.conns.iter_mut() {
                if *cid != id && c.role == ROLE_MASTER {
                    c.role = ROLE_SLAVE;
                }
            }
        }
        let c = self.conns.get_mut(&id).expect("connection exists");
        if role != ROLE_NOCHANGE {
            c.role = role;
        }
        Ok(Role {
            role: c.role,
            generation_id: self.generation.unwrap_or(0),
        })
    }

    fn wants(c: &Conn, masks: [u32; 2], reason: u8) -> bool {
        let m = if c.role == ROLE_SLAVE {
            masks[1]
        } else {
            masks[0]
        };
        reason < 32 && m & (1 << reason) != 0
    }

    /// Sends packet-ins from the datapath: a truncated one (with its whole
    /// packet) gets a buffer if buffering is on, or goes out whole with
    /// `OFP_NO_BUFFER` when every buffer is busy.
    pub fn packet_ins_buffered(&mut self, pins: Vec<(PacketIn, Option<Vec<u8>>)>, now: Instant) {
        let mut out = Vec::with_capacity(pins.len());
        for (mut pi, full) in pins {
            if let Some(full) = full
                && self.buffers_enabled()
                && self.wanted(pi.reason)
            {
                let in_port = pi.match_.exact(FieldId::InPort).map_or(0, |p| p as u32);
                match self.buffers.store(full, in_port, now) {
                    Ok(id) => pi.buffer_id = id,
                    Err(full) => pi.data = full,
                }
            }
            out.push(pi);
        }
        self.packet_ins(out);
    }

    /// Some connection would receive a packet-in with `reason`.
    fn wanted(&self, reason: u8) -> bool {
        self.conns
            .values()
            .any(|c| Self::wants(c, c.async_cfg.packet_in_mask, reason))
    }

    /// Sends packet-ins to the controllers that want them, with xid 0 like
    /// OVS (see [`Agent::port_event`]: a switch-allocated xid could equal a
    /// pending controller request's, which then takes the packet-in for its
    /// reply).
    pub fn packet_ins(&self, pins: Vec<PacketIn>) {
        for pi in pins {
            let m = Message::PacketIn(pi);
            let Message::PacketIn(pi) = &m else { continue };
            for c in self.conns.values() {
                if Self::wants(c, c.async_cfg.packet_in_mask, pi.reason) {
                    let _ = c.handle.send_with_xid(&m, 0);
                }
            }
        }
    }

    /// Sends FLOW_REMOVED messages (xid 0, as packet-ins).
    pub fn flow_removed(&self, removed: Vec<FlowRemoved>) {
        for fr in removed {
            let reason = fr.reason;
            let m = Message::FlowRemoved(fr);
            for c in self.conns.values() {
                if Self::wants(c, c.async_cfg.flow_removed_mask, reason) {
                    let _ = c.handle.send_with_xid(&m, 0);
                }
            }
        }
    }

    /// Sends PORT_STATUS (MODIFY) for ports whose state changed.
    pub fn port_status(&self, ports: Vec<plexus_openflow::message::Port>) {
        const OFPPR_MODIFY: u8 = 2;
        self.port_event(OFPPR_MODIFY, ports);
    }

    /// Sends PORT_STATUS with `reason` (`OFPPR_ADD`/`DELETE`/`MODIFY`), with
    /// xid 0 like OVS (a switch-allocated xid can equal the xid of a pending
    /// controller request, and the controller would take it for the reply).
    pub fn port_event(&self, reason: u8, ports: Vec<plexus_openflow::message::Port>) {
        for desc in ports {
            let m = Message::PortStatus(PortStatus { reason, desc });
            for c in self.conns.values() {
                if Self::wants(c, c.async_cfg.port_status_mask, reason) {
                    let _ = c.handle.send_with_xid(&m, 0);
                }
            }
        }
    }

    /// Changes the fail mode (e.g. `ovs-vsctl set-fail-mode`).
    pub fn set_fail_mode(&mut self, m: FailMode) {
        self.cfg.fail_mode = m;
    }

    /// Changes the datapath id.
    pub fn set_datapath_id(&mut self, d: u64) {
        self.cfg.datapath_id = d;
    }

    fn multipart(
        &self,
        id: u64,
        xid: u32,
        body: &MultipartRequestBody,
        sw: &mut dyn Switch,
        now: Instant,
    ) -> Result<(), OfpError> {
        use MultipartReplyBody as R;
        let bodies: Vec<R> = match body {
            MultipartRequestBody::Desc => vec![R::Desc(Desc {
                mfr_desc: "Plexus".into(),
                hw_desc: "plexus-vswitchd userspace switch".into(),
                sw_desc: env!("CARGO_PKG_VERSION").into(),
                serial_num: "None".into(),
                dp_desc: "None".into(),
            })],
            MultipartRequestBody::Flow(req) => {
                // Encoded flow by flow into frames sent as they fill: a dump of
                // 400k flows never exists as `FlowStats` values or as one batch.
                let Some(c) = self.conns.get(&id) else {
                    return Ok(());
                };
                let mut send = |f: Vec<u8>| {
                    let _ = c.handle.send_raw(f);
                };
                let mut w = MultipartWriter::new(xid, R::Flow(Vec::new()), &mut send);
                let mut n = 0;
                sw.engine().flow_stats_encoded(req, now, &mut |e| {
                    n += 1;
                    w.push(e)
                })?;
                w.finish();
                if n >= TRIM_AFTER {
                    crate::sys::trim_heap();
                }
                return Ok(());
            }
            MultipartRequestBody::Aggregate(req) => {
                vec![R::Aggregate(sw.engine().aggregate_stats(req)?)]
            }
            MultipartRequestBody::Table => chunks(sw.engine().table_stats(), R::Table),
            MultipartRequestBody::PortStats { port_no } => {
                let v: Vec<_> = sw
                    .ports()
                    .iter()
                    .filter(|p| *port_no == 0xffff_ffff || p.ofport == *port_no)
                    .map(|p| p.stats(now))
                    .collect();
                if v.is_empty() && *port_no != 0xffff_ffff {
                    return Err(OfpError::BadRequest(BadRequestCode::BadPort));
                }
                chunks(v, R::PortStats)
            }
            MultipartRequestBody::PortDesc => {
                // Split like every other reply: 10k ports do not fit one 64 KiB message.
                chunks(sw.ports().iter().map(DpPort::desc).collect(), R::PortDesc)
            }
            MultipartRequestBody::Queue { .. } => vec![R::Queue(Vec::new())],
            MultipartRequestBody::Group { group_id } => {
                chunks(sw.engine().group_stats(*group_id, now), R::Group)
            }
            MultipartRequestBody::GroupDesc => chunks(sw.engine().group_desc(), R::GroupDesc),
            MultipartRequestBody::GroupFeatures => vec![R::GroupFeatures(GroupFeatures {
                types: 0xf,
                capabilities: 0x1 | 0x2 | 0x4,
                max_groups: [65535; 4],
                actions: [all_actions_bitmap(); 4],
            })],
            MultipartRequestBody::Meter { meter_id } => {
                chunks(sw.engine().meter_stats(*meter_id, now), R::Meter)
            }
            MultipartRequestBody::MeterConfig { meter_id } => {
                chunks(sw.engine().meter_config(*meter_id), R::MeterConfig)
            }
            MultipartRequestBody::MeterFeatures => vec![R::MeterFeatures(MeterFeatures {
                max_meter: 65535,
                band_types: 1 << 1,
                capabilities: 0xf,
                max_bands: 8,
                max_color: 0,
            })],
            MultipartRequestBody::TableFeatures(set) => {
                if !set.is_empty() {
                    return Err(OfpError::TableFeaturesFailed(
                        plexus_openflow::error::TableFeaturesFailedCode::Eperm,
                    ));
                }
                table_features()
                    .chunks(16)
                    .map(|c| R::TableFeatures(c.to_vec()))
                    .collect()
            }
            MultipartRequestBody::Experimenter(_) => {
                return Err(OfpError::BadRequest(BadRequestCode::BadExperimenter));
            }
        };
        let _ = mp_type::DESC;
        self.send_multipart(id, xid, bodies);
        Ok(())
    }
}

/// Encodes a multipart reply as frames of at most 64 KiB each: a part whose encoding
/// is larger (128 flows with long action lists — merged conjunction flows, `learn` —
/// exceed it) is split in halves until it fits, so no part is dropped as an oversized
/// frame. Every frame but the last carries `OFPMPF_REPLY_MORE`.
fn multipart_frames(xid: u32, bodies: Vec<MultipartReplyBody>) -> Vec<Vec<u8>> {
    use MultipartReplyBody as R;
    fn halve<T>(mut v: Vec<T>, f: fn(Vec<T>) -> R) -> Option<(R, R)> {
        if v.len() < 2 {
            return None;
        }
        let b = v.split_off(v.len() / 2);
        Some((f(v), f(b)))
    }
    fn push(xid: u32, body: R, out: &mut Vec<Vec<u8>>) {
        let mut frame = Vec::new();
        Message::MultipartReply(MultipartReply {
            flags: 1,
            body: body.clone(),
        })
        .encode(xid, &mut frame);
        if frame.len() <= usize::from(u16::MAX) {
            out.push(frame);
            return;
        }
        let halves = match body {
            R::Flow(v) => halve(v, R::Flow),
            R::GroupDesc(v) => halve(v, R::GroupDesc),
            R::Group(v) => halve(v, R::Group),
            R::PortDesc(v) => halve(v, R::PortDesc),
            R::PortStats(v) => halve(v, R::PortStats),
            R::Table(v) => halve(v, R::Table),
            R::Meter(v) => halve(v, R::Meter),
            R::MeterConfig(v) => halve(v, R::MeterConfig),
            R::TableFeatures(v) => halve(v, R::TableFeatures),
            _ => None,
        };
        // One entry larger than a message cannot be sent at all (an entry's own length
        // field is 16 bits, so a table cannot hold one); it is left out.
        if let Some((a, b)) = halves {
            push(xid, a, out);
            push(xid, b, out);
        }
    }
    let mut out = Vec::new();
    for body in bodies {
        push(xid, body, &mut out);
    }
    // flags are the 16 bits after the header and the multipart type.
    if let Some(last) = out.last_mut() {
        last[10] = 0;
        last[11] = 0;
    }
    out
}

/// A message queued in an open bundle, compactly: a cold start queues the
/// whole table (400k+ flow-mods) before the commit. A flow-mod is one byte
/// buffer: its fixed fields, its match in [`CompactMatch`] form and its
/// instructions in wire form (a `conjunction(..)` action is 16 bytes instead
/// of 80), ~100 bytes instead of ~700 decoded. The connection's task builds
/// it ([`Queued::new`]) so the decoded message is freed at once; the commit
/// decodes it again ([`Queued::into_message`]).
#[derive(Debug)]
pub struct Queued(QueuedInner);

#[derive(Debug)]
enum QueuedInner {
    FlowMod(Box<[u8]>),
    Other(Box<Message>),
}

/// Bytes of a queued flow-mod before its match: cookie, cookie mask, table,
/// command, idle and hard timeouts, priority, buffer id, out port, out group,
/// flags and the compact match's length.
const QUEUED_FIXED: usize = 8 + 8 + 1 + 1 + 2 + 2 + 2 + 4 + 4 + 4 + 2 + 2;

impl Queued {
    /// The queued form of `m`.
    pub fn new(m: Message) -> Self {
        let Message::FlowMod(fm) = m else {
            return Queued(QueuedInner::Other(Box::new(m)));
        };
        let compact = CompactMatch::new(&fm.match_);
        let mut b = Vec::with_capacity(QUEUED_FIXED + compact.heap_len() + 64);
        b.extend_from_slice(&fm.cookie.to_be_bytes());
        b.extend_from_slice(&fm.cookie_mask.to_be_bytes());
        b.extend_from_slice(&[fm.table_id, fm.command as u8]);
        for v in [fm.idle_timeout, fm.hard_timeout, fm.priority] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [fm.buffer_id, fm.out_port, fm.out_group] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&fm.flags.to_be_bytes());
        let Ok(mlen) = u16::try_from(compact.heap_len()) else {
            return Queued(QueuedInner::Other(Box::new(Message::FlowMod(fm))));
        };
        b.extend_from_slice(&mlen.to_be_bytes());
        b.extend_from_slice(compact.as_bytes());
        Instruction::encode_list(&fm.instructions, &mut b);
        let q = Queued(QueuedInner::FlowMod(b.into_boxed_slice()));
        // The match round-trip is proptested here, the instructions' in the
        // codec (`roundtrip_every_message`); debug builds check every message.
        if cfg!(debug_assertions) && q.decode().as_ref() != Some(&fm) {
            return Queued(QueuedInner::Other(Box::new(Message::FlowMod(fm))));
        }
        q
    }

    fn decode(&self) -> Option<FlowMod> {
        let QueuedInner::FlowMod(b) = &self.0 else {
            return None;
        };
        let (fixed, rest) = b.split_at_checked(QUEUED_FIXED)?;
        let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(fixed[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_be_bytes(fixed[i..i + 8].try_into().unwrap_or_default());
        let (m, insts) = rest.split_at_checked(usize::from(u16_at(38)))?;
        Some(FlowMod {
            cookie: u64_at(0),
            cookie_mask: u64_at(8),
            table_id: fixed[16],
            command: plexus_openflow::message::FlowModCommand::from_u8(fixed[17])?,
            idle_timeout: u16_at(18),
            hard_timeout: u16_at(20),
            priority: u16_at(22),
            buffer_id: u32_at(24),
            out_port: u32_at(28),
            out_group: u32_at(32),
            flags: u16_at(36),
            match_: CompactMatch::decode_bytes(m),
            instructions: Instruction::decode_list(&mut Reader::new(insts), insts.len()).ok()?,
        })
    }

    /// The message as received.
    pub fn into_message(self) -> Result<Message, OfpError> {
        if let QueuedInner::Other(m) = self.0 {
            return Ok(*m);
        }
        self.decode()
            .map(Message::FlowMod)
            .ok_or(OfpError::BadRequest(BadRequestCode::BadLen))
    }
}

/// Packs encoded entries of one multipart reply into frames of at most 64 KiB,
/// handing each frame to `send` as soon as the next entry does not fit (with
/// `OFPMPF_REPLY_MORE`; the last frame without). An entry too large for any
/// frame cannot be sent and is left out, as in [`multipart_frames`].
struct MultipartWriter<'a> {
    /// The frame header and multipart header of an empty reply.
    head: Vec<u8>,
    frame: Vec<u8>,
    send: &'a mut dyn FnMut(Vec<u8>),
}

impl<'a> MultipartWriter<'a> {
    const MAX: usize = u16::MAX as usize;

    /// A writer for replies of `empty`'s type (its entries are ignored).
    fn new(xid: u32, empty: MultipartReplyBody, send: &'a mut dyn FnMut(Vec<u8>)) -> Self {
        let mut head = Vec::new();
        Message::MultipartReply(MultipartReply {
            flags: 1,
            body: empty,
        })
        .encode(xid, &mut head);
        head.truncate(16);
        let frame = head.clone();
        Self { head, frame, send }
    }

    fn push(&mut self, entry: &[u8]) {
        if self.head.len() + entry.len() > Self::MAX {
            return;
        }
        if self.frame.len() + entry.len() > Self::MAX {
            let next = Vec::with_capacity(self.frame.len());
            let full = std::mem::replace(&mut self.frame, next);
            self.frame.extend_from_slice(&self.head);
            self.emit(full, true);
        }
        self.frame.extend_from_slice(entry);
    }

    fn emit(&mut self, mut frame: Vec<u8>, more: bool) {
        let len = frame.len() as u16;
        frame[2..4].copy_from_slice(&len.to_be_bytes());
        // flags are the 16 bits after the header and the multipart type.
        frame[10..12].copy_from_slice(&u16::from(more).to_be_bytes());
        (self.send)(frame);
    }

    fn finish(mut self) {
        let last = std::mem::take(&mut self.frame);
        self.emit(last, false);
    }
}

fn chunks<T: Clone>(
    v: Vec<T>,
    f: impl Fn(Vec<T>) -> MultipartReplyBody,
) -> Vec<MultipartReplyBody> {
    if v.is_empty() {
        return vec![f(v)];
    }
    v.chunks(CHUNK).map(|c| f(c.to_vec())).collect()
}

/// Bitmap of OFPAT_* supported (output..pop_pbb).
fn all_actions_bitmap() -> u32 {
    (1 << 0)
        | (1 << 11)
        | (1 << 12)
        | (1 << 15)
        | (1 << 16)
        | (1 << 17)
        | (1 << 18)
        | (1 << 19)
        | (1 << 20)
        | (1 << 21)
        | (1 << 22)
        | (1 << 23)
        | (1 << 24)
        | (1 << 25)
}

fn table_features() -> Vec<TableFeatures> {
    let inst: Vec<InstructionId> = [1u16, 2, 3, 4, 5, 6]
        .iter()
        .map(|&t| InstructionId {
            inst_type: t,
            data: Vec::new(),
        })
        .collect();
    let acts: Vec<ActionId> = [0u16, 11, 12, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
        .iter()
        .map(|&t| ActionId {
            action_type: t,
            data: Vec::new(),
        })
        .collect();
    let oxms: Vec<OxmId> = FieldId::all()
        .filter(|f| plexus_openflow::oxm::nxm_header(*f) >> 16 == 0x8000)
        .map(|f| OxmId {
            header: plexus_openflow::oxm::nxm_header(f),
            experimenter: None,
        })
        .collect();
    (0..N_TABLES as u8)
        .map(|t| TableFeatures {
            table_id: t,
            name: format!("table{t}"),
            metadata_match: u64::MAX,
            metadata_write: u64::MAX,
            config: 0,
            max_entries: 1_000_000,
            properties: vec![
                TableFeatureProp::Instructions {
                    miss: false,
                    ids: inst.clone(),
                },
                TableFeatureProp::NextTables {
                    miss: false,
                    tables: ((t + 1)..N_TABLES as u8).collect(),
                },
                TableFeatureProp::WriteActions {
                    miss: false,
                    ids: acts.clone(),
                },
                TableFeatureProp::ApplyActions {
                    miss: false,
                    ids: acts.clone(),
                },
                TableFeatureProp::Match(oxms.clone()),
                TableFeatureProp::Wildcards(oxms.clone()),
                TableFeatureProp::WriteSetfield {
                    miss: false,
                    ids: oxms.clone(),
                },
                TableFeatureProp::ApplySetfield {
                    miss: false,
                    ids: oxms.clone(),
                },
            ],
        })
        .collect()
}

#[cfg(test)]
mod multipart_tests {
    use super::*;
    use plexus_openflow::action::Action;
    use plexus_openflow::instruction::Instruction;
    use plexus_openflow::message::FlowStats;

    /// 128 flows of ~1.6 KiB each (100 conjunction actions, as a merged clause flow
    /// has) do not fit one 64 KiB reply: they go out in several parts, none lost.
    #[test]
    fn oversized_flow_stats_part_is_split_not_dropped() {
        let flow = |i: u16| FlowStats {
            table_id: 0,
            duration_sec: 0,
            duration_nsec: 0,
            priority: i,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            cookie: 0,
            packet_count: 0,
            byte_count: 0,
            match_: Default::default(),
            instructions: vec![Instruction::ApplyActions(
                (0..100)
                    .map(|k| Action::Conjunction {
                        id: k,
                        clause: 0,
                        n_clauses: 2,
                    })
                    .collect(),
            )],
        };
        let bodies = chunks((0..300).map(flow).collect(), MultipartReplyBody::Flow);
        assert_eq!(bodies.len(), 3);
        let frames = multipart_frames(7, bodies);
        assert!(frames.len() > 3, "split: {} frames", frames.len());
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() <= 0xffff);
            let (xid, m) = Message::decode(f).unwrap();
            assert_eq!(xid, 7);
            let Message::MultipartReply(r) = m else {
                panic!("{m:?}")
            };
            assert_eq!(
                r.flags,
                u16::from(i + 1 < frames.len()),
                "MORE on all but the last"
            );
            let MultipartReplyBody::Flow(v) = r.body else {
                panic!()
            };
            got.extend(v.into_iter().map(|f| f.priority));
        }
        assert_eq!(got, (0..300).collect::<Vec<u16>>());
    }

    /// The streamed flow dump (entries encoded from the rules, packed into
    /// frames as they fill) decodes to exactly what `flow_stats` returns, in
    /// order, with every frame within 64 KiB and MORE on all but the last.
    #[test]
    fn streamed_flow_dump_equals_flow_stats() {
        use crate::pipeline::Pipeline;
        use plexus_openflow::message::{FlowModCommand, FlowStatsRequest, group_id, port_no};
        use plexus_openflow::text::parse_flow_mod;
        let mut p = Pipeline::new(4);
        p.strict_ports = false;
        let t = Instant::now();
        let conj: Vec<String> = (0..60).map(|k| format!("conjunction({k},1/2)")).collect();
        for i in 0..700u32 {
            let text = match i % 4 {
                0 => format!(
                    "table=1,priority={},ip,nw_src=10.{}.{}.0/24,actions={}",
                    i % 7 + 1,
                    i / 256,
                    i % 256,
                    conj.join(",")
                ),
                1 => format!("priority=100,in_port={i},actions=set_field:{i}->reg14,goto_table:1"),
                2 => format!(
                    "table=2,priority=5,reg15={i},dl_dst=0a:00:00:00:00:01/ff:ff:ff:00:00:00,idle_timeout=60,actions=output:{}",
                    i + 1
                ),
                _ => format!("table=3,cookie=0x{i:x},priority=9,tcp,tp_dst={i},actions=drop"),
            };
            let fm = parse_flow_mod(&text, FlowModCommand::Add).unwrap();
            p.flow_mod(&fm, t).unwrap();
        }
        let req = FlowStatsRequest {
            table_id: 0xff,
            out_port: port_no::ANY,
            out_group: group_id::ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Default::default(),
        };
        let want = p.flow_stats(&req, t).unwrap();
        assert_eq!(want.len(), 700);
        let mut frames = Vec::new();
        let mut send = |f: Vec<u8>| frames.push(f);
        let mut w = MultipartWriter::new(9, MultipartReplyBody::Flow(Vec::new()), &mut send);
        p.flow_stats_encoded(&req, t, &mut |e| w.push(e)).unwrap();
        w.finish();
        assert!(frames.len() > 3, "{} frames", frames.len());
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() <= 0xffff);
            let (xid, m) = Message::decode(f).unwrap();
            assert_eq!(xid, 9);
            let Message::MultipartReply(r) = m else {
                panic!("{m:?}")
            };
            assert_eq!(r.flags, u16::from(i + 1 < frames.len()));
            let MultipartReplyBody::Flow(v) = r.body else {
                panic!()
            };
            got.extend(v);
        }
        assert_eq!(got, want);
        // An empty dump is one frame without MORE.
        let mut frames = Vec::new();
        let mut send = |f: Vec<u8>| frames.push(f);
        MultipartWriter::new(3, MultipartReplyBody::Flow(Vec::new()), &mut send).finish();
        assert_eq!(
            frames,
            multipart_frames(3, vec![MultipartReplyBody::Flow(Vec::new())])
        );
    }

    /// A queued bundle message comes back exactly as it was received.
    #[test]
    fn queued_bundle_messages_round_trip() {
        use plexus_openflow::message::FlowModCommand;
        use plexus_openflow::text::parse_flow_mod;
        for text in [
            "priority=0,actions=drop",
            "table=4,priority=7,ip,nw_src=10.1.2.0/24,actions=conjunction(3,1/2),conjunction(9,2/2)",
            "table=2,cookie=0x5,priority=9,tcp,reg14=0x3,tp_dst=80,idle_timeout=30,actions=ct(commit,table=5,zone=NXM_NX_REG13[0..15],nat(dst=10.0.0.1:8080)),set_field:0x4->reg15,goto_table:7",
            "table=1,priority=5,in_port=3,dl_src=0a:00:00:00:00:01,actions=learn(table=9,idle_timeout=10,priority=100,eth_type=0x800,NXM_OF_IP_SRC[],load:NXM_NX_REG12[]->NXM_NX_REG12[]),write_metadata:0x3ea/0xffff,goto_table:2",
        ] {
            let fm = parse_flow_mod(text, FlowModCommand::Add).unwrap();
            let m = Message::FlowMod(fm);
            let q = Queued::new(m.clone());
            assert!(matches!(q.0, QueuedInner::FlowMod(_)), "{text}");
            assert_eq!(q.into_message().unwrap(), m, "{text}");
        }
        let m = Message::BarrierRequest;
        assert_eq!(Queued::new(m.clone()).into_message().unwrap(), m);
    }

    #[test]
    fn small_replies_are_one_frame_each() {
        let frames = multipart_frames(1, vec![MultipartReplyBody::Flow(Vec::new())]);
        assert_eq!(frames.len(), 1);
        let (_, m) = Message::decode(&frames[0]).unwrap();
        assert!(matches!(
            m,
            Message::MultipartReply(MultipartReply { flags: 0, .. })
        ));
    }
}
