//! The OpenFlow 1.3 pipeline, sans-IO: flow/group/meter tables, packet
//! processing, packet-out, statistics.
//!
//! **Processing** is OVS's translate-then-execute: [`xlate`] turns a flow key
//! into a list of datapath operations ([`Op`]) plus the key bits the result
//! depends on (wildcards); [`exec`] applies the operations to the packet bytes
//! and emits outputs/packet-ins. The megaflow cache (on by default) stores
//! translations under `key & wildcards` tagged with the table *generation*,
//! bumped by every flow/group/meter/port change, so a packet processed after
//! any change never takes a stale translation.
//!
//! **Outputs** ([`Emit::Output`]) reference the processed packet's bytes
//! ([`OutData::Packet`]: read them from the [`PacketBuf`] after `process`
//! returns) unless the packet was modified after that output, in which case
//! the bytes were copied ([`OutData::Copy`]; hand the vector back with
//! [`Pipeline::recycle`] to reuse it). The common case allocates nothing.
//!
//! **Counters** kept here: per flow (packets, bytes, duration, idle time),
//! per table (lookups, matches), per group and bucket, per meter and band,
//! and pipeline drops ([`PipelineCounters`]). Per-port rx/tx counters are
//! the caller's (the ports see every packet).
//!
//! **Flow-removed** messages for deletions (FLOW_MOD DELETE, group/meter
//! deletion) are queued and returned, together with timeouts, by
//! [`Pipeline::expire`] (or [`Pipeline::take_flow_removed`]).
//!
//! **Clocks**: everything per packet and per flow takes `now`; group and
//! meter durations use `Instant::now()` at creation.

#![allow(clippy::collapsible_match)]

mod exec;
mod packet;
#[cfg(test)]
mod tests;
pub mod trace;
mod xlate;

pub use packet::PacketBuf;
pub use xlate::{
    CT_META_WORDS, Compiled, Credit, CtOp, DropReason, MAX_RESUBMIT_DEPTH, MAX_RESUBMITS, Op,
    TraceEvent,
};

/// A bucket's rendezvous key: a hash of its actions (identical buckets
/// share a key, which is harmless: they do the same thing).
fn bucket_key(b: &Bucket) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    b.actions.hash(&mut h);
    h.finish()
}

/// Bound on nested recirculations (`ct(table=..)` chains) per packet.
pub const MAX_RECIRC_DEPTH: usize = 8;

use crate::cache::FlowCache;
use crate::classifier::{Classifier, ConjClause};
use crate::conntrack::{Conntrack, CtResult};
use crate::flow::{FlowKey, MaskedKey, PacketMeta, TunnelMeta, parse_into};
use plexus_openflow::action::{Subfield, is_set_field_writable, is_writable};
use plexus_openflow::error::{
    BadActionCode, BadInstructionCode, BadRequestCode, FlowModFailedCode, GroupModFailedCode,
    MeterModFailedCode,
};
use plexus_openflow::message::{
    AggregateStats, Bucket, FlowMod, FlowModCommand, FlowRemoved, FlowStats, FlowStatsRequest,
    GroupDesc, GroupModCommand, GroupStats, GroupType, MeterBand, MeterConfig, MeterModCommand,
    MeterStats, OFP_NO_BUFFER, PacketOut, TableStats, flow_mod_flags, group_id, meter_flags,
    port_no,
};
use plexus_openflow::message::{GroupMod, MeterMod};
use plexus_openflow::oxm::{FieldId, Match, OFPVID_PRESENT};
use plexus_openflow::{Action, Instruction, OfpError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `ofp_packet_in_reason`.
pub mod reason {
    pub const NO_MATCH: u8 = 0;
    pub const ACTION: u8 = 1;
    pub const INVALID_TTL: u8 = 2;
}

/// `ofp_flow_removed_reason`.
pub mod removed_reason {
    pub const IDLE_TIMEOUT: u8 = 0;
    pub const HARD_TIMEOUT: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const GROUP_DELETE: u8 = 3;
}

/// `OFPM_MAX`: the last usable meter id.
pub const METER_MAX: u32 = 0xffff_0000;
/// `OFPM_ALL`.
pub const METER_ALL: u32 = 0xffff_ffff;
/// `OFPTT_ALL`.
pub const TABLE_ALL: u8 = 0xff;
/// `OFPCML_NO_BUFFER`: send the whole packet to the controller.
pub const NO_BUFFER_LEN: u16 = 0xffff;

/// A switch port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub port_no: u32,
    pub name: String,
    pub hw_addr: [u8; 6],
    /// Link up and not blocked: FLOOD and fast-failover use it; output to a
    /// port that is not live is dropped.
    pub live: bool,
}

/// Bytes of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutData {
    /// The processed packet's bytes as they are when `process` returns.
    Packet,
    /// A copy (the packet was modified after this output).
    Copy(Vec<u8>),
}

/// Something the pipeline wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    Output {
        port: u32,
        /// From `set_queue`, if any.
        queue: Option<u32>,
        data: OutData,
        /// Output to a tunnel port ([`Pipeline::set_tunnel_ports`]): the
        /// flow's tunnel metadata at the output (vxlan encapsulation).
        tunnel: Option<TunnelMeta>,
    },
    PacketIn {
        reason: u8,
        table_id: u8,
        cookie: u64,
        /// `in_port`, plus `metadata`, registers and `tunnel_id` when non-zero.
        match_: Match,
        /// Truncated to the action's `max_len`.
        data: Vec<u8>,
        /// Length of the packet before truncation.
        total_len: u16,
        /// Always `OFP_NO_BUFFER` (the agent may buffer).
        buffer_id: u32,
        /// The whole packet, when `data` was truncated and
        /// [`Pipeline::buffer_packet_ins`] is set (for the agent to buffer).
        full: Option<Vec<u8>>,
        /// NX `controller(userdata=...)`.
        userdata: Option<Vec<u8>>,
        controller_id: u16,
    },
}

impl Emit {
    /// The bytes to send for an output (`pkt`: the processed packet).
    pub fn bytes<'a>(&'a self, pkt: &'a PacketBuf) -> &'a [u8] {
        match self {
            Emit::Output {
                data: OutData::Copy(v),
                ..
            } => v,
            Emit::Output { .. } => pkt.data(),
            Emit::PacketIn { data, .. } => data,
        }
    }
}

/// Pipeline-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    pub packets: u64,
    /// Packets cut off by the resubmit bound.
    pub resubmit_limit: u64,
    pub ttl_expired: u64,
    pub meter_drops: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Frames the parser flagged (runt/truncated); still processed.
    pub parse_errors: u64,
    /// Packets dropped by conntrack (commit over the table or a zone limit).
    pub ct_drops: u64,
    /// Recirculations cut off by [`MAX_RECIRC_DEPTH`].
    pub recirc_limit: u64,
    /// Packets recirculated after `ct(table=..)`.
    pub recirculations: u64,
}

/// A flow entry's payload in the classifier.
#[derive(Debug, Clone)]
pub struct FlowEntry {
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    /// In OpenFlow execution order; identical lists of different flows
    /// share one allocation ([`Interner`]).
    pub instructions: Arc<[Instruction]>,
    pub created: Instant,
    pub last_used: Instant,
}

impl FlowEntry {
    fn actions(&self) -> impl Iterator<Item = &Action> {
        self.instructions.iter().flat_map(|i| match i {
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
            _ => &[],
        })
    }

    fn has_out_port(&self, port: u32) -> bool {
        port == port_no::ANY
            || self.actions().any(|a| match a {
                Action::Output { port: p, .. } => *p == port,
                Action::Controller(_) => port == port_no::CONTROLLER,
                _ => false,
            })
    }

    fn has_group(&self, g: u32) -> bool {
        g == group_id::ANY
            || self
                .actions()
                .any(|a| matches!(a, Action::Group(x) if *x == g))
    }

    fn meter(&self) -> Option<u32> {
        self.instructions.iter().find_map(|i| match i {
            Instruction::Meter(m) => Some(*m),
            _ => None,
        })
    }
}

/// Shares identical instruction lists between flows: a controller's 400k
/// flows hold a few tens of thousands of distinct lists (`goto_table:N`,
/// `drop`, the same `conjunction(..)` list for every port of a group).
/// Lists no flow holds any more are dropped once as many flows were removed
/// or changed as there are lists (amortised O(1) per change).
#[derive(Debug, Default)]
struct Interner {
    set: std::collections::HashSet<Arc<[Instruction]>>,
    released: usize,
}

impl Interner {
    fn get(&mut self, v: Vec<Instruction>) -> Arc<[Instruction]> {
        if let Some(a) = self.set.get(v.as_slice()) {
            return a.clone();
        }
        let a: Arc<[Instruction]> = v.into();
        self.set.insert(a.clone());
        a
    }

    /// `n` flows were removed or had their instructions replaced.
    fn release(&mut self, n: usize) {
        self.released += n;
        if self.released > 1024 && self.released >= self.set.len() {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.released = 0;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
    /// Per bucket, a key derived from its actions: select groups pick by
    /// rendezvous hashing over these, so a bucket keeps its flows when other
    /// buckets are added or removed (OpenFlow 1.3 buckets have no id).
    pub bucket_keys: Vec<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub bucket_stats: Vec<(u64, u64)>,
    pub created: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Band {
    pub rate: u32,
    pub burst: u32,
    /// Tokens × 1e9 (units: milli-packets or bits).
    pub tokens: u128,
    pub last: Option<Instant>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Meter {
    pub flags: u16,
    pub bands: Vec<MeterBand>,
    pub state: Vec<Band>,
    pub packets: u64,
    pub bytes: u64,
    pub created: Instant,
}

/// The OpenFlow pipeline of one bridge.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) tables: Vec<Classifier<FlowEntry>>,
    table_counts: Vec<(u64, u64)>,
    pub(crate) groups: BTreeMap<u32, Group>,
    pub(crate) meters: BTreeMap<u32, Meter>,
    pub(crate) ports: BTreeMap<u32, PortInfo>,
    generation: u64,
    cache: FlowCache<Arc<Compiled>>,
    cache_enabled: bool,
    /// Whether output/watch ports must exist (`set_ports`) at FLOW_MOD time.
    pub strict_ports: bool,
    pub(crate) mac: HashMap<(u16, [u8; 6]), (u32, Instant)>,
    /// NORMAL MAC table aging.
    pub mac_aging: Duration,
    /// Keep the whole packet of truncated packet-ins ([`Emit::PacketIn`]
    /// `full`) for packet-in buffering; off by default (like OVS 3.x, no buffers).
    pub buffer_packet_ins: bool,
    removed: Vec<FlowRemoved>,
    pub(crate) spare: Vec<Vec<u8>>,
    pub(crate) pending: Vec<usize>,
    pub(crate) saved: Vec<Vec<u8>>,
    pub counters: PipelineCounters,
    key_scratch: FlowKey,
    /// The bridge's connection tracker.
    pub conntrack: Conntrack,
    /// Megaflow caches of recirculated lookups, per recirculation table.
    recirc_cache: Vec<Option<FlowCache<Arc<Compiled>>>>,
    recirc_depth: usize,
    /// Tunnel (vxlan) ports: outputs to them carry the tunnel metadata.
    pub(crate) tunnel_ports: std::collections::BTreeSet<u32>,
    /// When [`Pipeline::expire`] next sweeps the megaflow caches.
    next_cache_sweep: Option<Instant>,
    /// (table, rule) of every rule added with an idle or hard timeout, so
    /// that [`Pipeline::expire`] visits those instead of every rule (a
    /// controller's 400k permanent flows cost nothing per expiry pass).
    /// Ids of rules removed otherwise are dropped by the next pass.
    timed: Vec<(u8, crate::classifier::RuleId)>,
    insts: Interner,
}

/// How often [`Pipeline::expire`] sweeps the megaflow caches: stale megaflows
/// go within this period of a table change, idle ones within twice it (OVS's
/// default `max-idle` is 10 s).
pub const CACHE_SWEEP: Duration = Duration::from_secs(5);

impl Pipeline {
    /// A pipeline with `n_tables` tables (ids `0..n_tables`; at most 254).
    pub fn new(n_tables: u8) -> Self {
        let n = n_tables.min(254) as usize;
        Self {
            tables: (0..n).map(|_| Classifier::new()).collect(),
            table_counts: vec![(0, 0); n],
            groups: BTreeMap::new(),
            meters: BTreeMap::new(),
            ports: BTreeMap::new(),
            generation: 1,
            cache: FlowCache::new(8192, 65536),
            cache_enabled: true,
            strict_ports: true,
            mac: HashMap::new(),
            mac_aging: Duration::from_secs(300),
            buffer_packet_ins: false,
            removed: Vec::new(),
            spare: Vec::new(),
            pending: Vec::new(),
            saved: Vec::new(),
            counters: PipelineCounters::default(),
            key_scratch: FlowKey::ZERO,
            conntrack: Conntrack::default(),
            recirc_cache: (0..n).map(|_| None).collect(),
            recirc_depth: 0,
            tunnel_ports: Default::default(),
            next_cache_sweep: None,
            timed: Vec::new(),
            insts: Interner::default(),
        }
    }

    pub fn n_tables(&self) -> u8 {
        self.tables.len() as u8
    }

    /// The table generation (bumped by every change that can alter a translation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn bump(&mut self) {
        self.generation += 1;
    }

    /// Enables/disables the megaflow cache (disabled: every packet takes the slow path).
    pub fn set_cache_enabled(&mut self, on: bool) {
        self.cache_enabled = on;
        self.cache.megaflows.flush();
        self.cache.emc.flush();
        for c in &mut self.recirc_cache {
            *c = None;
        }
    }

    /// Megaflow count (including stale ones).
    /// Removes stale and idle entries from every cache, EMC and megaflows
    /// (see [`crate::cache::FlowCache::sweep`]); returns how many megaflows.
    pub fn sweep_caches(&mut self, now: Instant) -> usize {
        let g = self.generation;
        let mut n = self.cache.sweep(g, now, CACHE_SWEEP);
        for c in self.recirc_cache.iter_mut().flatten() {
            n += c.sweep(g, now, CACHE_SWEEP);
        }
        n
    }

    /// Megaflows in the recirculation caches (after `ct(table=…)` and the like).
    pub fn recirc_cache_len(&self) -> usize {
        self.recirc_cache
            .iter()
            .flatten()
            .map(|c| c.megaflows.len())
            .sum()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.megaflows.len()
    }

    /// Replaces the port set.
    pub fn set_ports(&mut self, ports: &[PortInfo]) {
        self.ports = ports.iter().map(|p| (p.port_no, p.clone())).collect();
        self.bump();
    }

    /// Marks which ports are tunnels (vxlan): outputs to them are emitted
    /// with the flow's tunnel metadata ([`Emit::Output::tunnel`]).
    pub fn set_tunnel_ports(&mut self, ports: &[u32]) {
        let t: std::collections::BTreeSet<u32> = ports.iter().copied().collect();
        if t != self.tunnel_ports {
            self.tunnel_ports = t;
            self.bump();
        }
    }

    /// Changes one port's liveness (link up/down).
    pub fn set_port_live(&mut self, port: u32, live: bool) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.live = live;
        }
        self.bump();
    }

    pub fn ports(&self) -> impl Iterator<Item = &PortInfo> {
        self.ports.values()
    }

    /// Returns a copy buffer from [`OutData::Copy`] for reuse.
    pub fn recycle(&mut self, mut v: Vec<u8>) {
        if self.spare.len() < 256 {
            v.clear();
            self.spare.push(v);
        }
    }

    // ---------------------------------------------------------------- flows

    /// Validates and applies a FLOW_MOD.
    pub fn flow_mod(&mut self, fm: &FlowMod, now: Instant) -> Result<(), OfpError> {
        let all = fm.table_id == TABLE_ALL;
        let is_delete = matches!(
            fm.command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        );
        if (all && !is_delete) || (!all && fm.table_id as usize >= self.tables.len()) {
            return Err(OfpError::FlowModFailed(FlowModFailedCode::BadTableId));
        }
        fm.match_.check_prerequisites().map_err(|e| e.ofp_error())?;
        if !is_delete {
            self.check_instructions(fm.table_id, &fm.match_, &fm.instructions)?;
        }
        let tables: Vec<usize> = if all {
            (0..self.tables.len()).collect()
        } else {
            vec![fm.table_id as usize]
        };
        let cookie_ok = |e: &FlowEntry| (e.cookie ^ fm.cookie) & fm.cookie_mask == 0;
        let insts = if is_delete {
            self.insts.get(Vec::new())
        } else {
            let mut v = fm.instructions.clone();
            v.sort_by_key(xlate::inst_rank);
            self.insts.get(v)
        };
        let conj = if is_delete {
            Box::default()
        } else {
            conj_clauses(&fm.instructions)?
        };
        let mut released = 0;
        match fm.command {
            FlowModCommand::Add => {
                let t = &mut self.tables[fm.table_id as usize];
                if fm.flags & flow_mod_flags::CHECK_OVERLAP != 0 {
                    let k = MaskedKey::from_match(&fm.match_);
                    if t.overlaps(&k, fm.priority, |_| false) {
                        return Err(OfpError::FlowModFailed(FlowModFailedCode::Overlap));
                    }
                }
                let entry = FlowEntry {
                    cookie: fm.cookie,
                    idle_timeout: fm.idle_timeout,
                    hard_timeout: fm.hard_timeout,
                    flags: fm.flags,
                    instructions: insts,
                    created: now,
                    last_used: now,
                };
                let (id, old) = t.insert_conj(fm.match_.clone(), fm.priority, entry, conj);
                released += usize::from(old.is_some());
                if let Some(old) = old
                    && fm.flags & flow_mod_flags::RESET_COUNTS == 0
                    && let Some(r) = t.get(id)
                {
                    r.stats.copy_from(&old.stats);
                }
                if fm.idle_timeout != 0 || fm.hard_timeout != 0 {
                    self.timed.push((fm.table_id, id));
                }
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                let reset = fm.flags & flow_mod_flags::RESET_COUNTS != 0;
                let t = &mut self.tables[fm.table_id as usize];
                let f = |r: &mut crate::classifier::Rule<FlowEntry>| {
                    r.data.instructions = insts.clone();
                    r.conj = conj.clone();
                    if reset {
                        r.stats.copy_from(&Default::default());
                    }
                };
                released += if fm.command == FlowModCommand::ModifyStrict {
                    usize::from(t.modify_strict(&fm.match_, fm.priority, |r| cookie_ok(&r.data), f))
                } else {
                    t.modify_loose(&fm.match_, |r| cookie_ok(&r.data), f)
                };
            }
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                for ti in tables {
                    let t = &mut self.tables[ti];
                    let filter = |r: &crate::classifier::Rule<FlowEntry>| {
                        cookie_ok(&r.data)
                            && r.data.has_out_port(fm.out_port)
                            && r.data.has_group(fm.out_group)
                    };
                    let gone = if fm.command == FlowModCommand::DeleteStrict {
                        t.remove_strict(&fm.match_, fm.priority, filter)
                            .into_iter()
                            .collect()
                    } else {
                        t.remove_loose(&fm.match_, filter)
                    };
                    for r in gone {
                        self.note_removed(ti as u8, &r, removed_reason::DELETE, now);
                    }
                }
            }
        }
        self.insts.release(released);
        self.bump();
        Ok(())
    }

    fn note_removed(
        &mut self,
        table: u8,
        r: &crate::classifier::Rule<FlowEntry>,
        reason: u8,
        now: Instant,
    ) {
        self.insts.released += 1;
        if r.data.flags & flow_mod_flags::SEND_FLOW_REM == 0 {
            return;
        }
        let d = now.saturating_duration_since(r.data.created);
        self.removed.push(FlowRemoved {
            cookie: r.data.cookie,
            priority: r.priority,
            reason,
            table_id: table,
            duration_sec: d.as_secs() as u32,
            duration_nsec: d.subsec_nanos(),
            idle_timeout: r.data.idle_timeout,
            hard_timeout: r.data.hard_timeout,
            packet_count: r.stats.packets(),
            byte_count: r.stats.bytes(),
            match_: r.match_(),
        });
    }

    /// Removes flows whose idle/hard timeout passed; returns flow-removed
    /// messages for them (SEND_FLOW_REM only) and for deletions since the
    /// last call.
    pub fn expire(&mut self, now: Instant) -> Vec<FlowRemoved> {
        match self.next_cache_sweep {
            Some(t) if now < t => {}
            Some(_) => {
                self.next_cache_sweep = Some(now + CACHE_SWEEP);
                self.sweep_caches(now);
            }
            None => self.next_cache_sweep = Some(now + CACHE_SWEEP),
        }
        let mut gone = Vec::new();
        let tables = &self.tables;
        self.timed.retain(|&(ti, id)| {
            let Some(r) = tables.get(ti as usize).and_then(|t| t.get(id)) else {
                return false;
            };
            let e = &r.data;
            if e.hard_timeout > 0
                && now.saturating_duration_since(e.created)
                    >= Duration::from_secs(e.hard_timeout as u64)
            {
                gone.push((ti as usize, id, removed_reason::HARD_TIMEOUT));
                false
            } else if e.idle_timeout > 0
                && now.saturating_duration_since(e.last_used)
                    >= Duration::from_secs(e.idle_timeout as u64)
            {
                gone.push((ti as usize, id, removed_reason::IDLE_TIMEOUT));
                false
            } else {
                true
            }
        });
        if !gone.is_empty() {
            self.bump();
        }
        for (ti, id, why) in gone {
            if let Some(r) = self.tables[ti].remove(id) {
                self.note_removed(ti as u8, &r, why, now);
            }
        }
        self.insts.release(0);
        self.take_flow_removed()
    }

    /// Flow-removed messages queued by deletions.
    pub fn take_flow_removed(&mut self) -> Vec<FlowRemoved> {
        std::mem::take(&mut self.removed)
    }

    fn remove_flows_where(&mut self, reason: u8, now: Instant, pred: impl Fn(&FlowEntry) -> bool) {
        for ti in 0..self.tables.len() {
            let ids: Vec<_> = self.tables[ti]
                .iter()
                .filter(|r| pred(&r.data))
                .map(|r| r.id)
                .collect();
            for id in ids {
                if let Some(r) = self.tables[ti].remove(id) {
                    self.note_removed(ti as u8, &r, reason, now);
                }
            }
        }
        self.insts.release(0);
    }

    // ----------------------------------------------------------- validation

    fn check_instructions(
        &self,
        table: u8,
        m: &Match,
        insts: &[Instruction],
    ) -> Result<(), OfpError> {
        let mut state = m.clone();
        let mut sorted: Vec<&Instruction> = insts.iter().collect();
        sorted.sort_by_key(|i| xlate::inst_rank(i));
        for i in sorted {
            match i {
                Instruction::GotoTable(n) => {
                    if *n <= table || *n as usize >= self.tables.len() {
                        return Err(OfpError::BadInstruction(BadInstructionCode::BadTableId));
                    }
                }
                Instruction::Meter(id) => {
                    if !self.meters.contains_key(id) {
                        return Err(OfpError::MeterModFailed(MeterModFailedCode::InvalidMeter));
                    }
                }
                Instruction::ApplyActions(a) => self.check_actions(a, &mut state, false)?,
                Instruction::WriteActions(a) => {
                    // The set executes in the spec's order, not as written.
                    let mut s = state.clone();
                    self.check_actions(&xlate::action_set_order(a), &mut s, false)?;
                    let outs: Vec<Action> = a
                        .iter()
                        .filter(|x| matches!(x, Action::Output { .. } | Action::Group(_)))
                        .cloned()
                        .collect();
                    self.check_actions(&outs, &mut state.clone(), false)?;
                }
                Instruction::ClearActions | Instruction::WriteMetadata { .. } => {}
                Instruction::Experimenter { .. } => {
                    return Err(OfpError::BadInstruction(
                        BadInstructionCode::BadExperimenter,
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_port(&self, port: u32, packet_out: bool) -> Result<(), OfpError> {
        let bad = Err(OfpError::BadAction(BadActionCode::BadOutPort));
        match port {
            port_no::IN_PORT
            | port_no::FLOOD
            | port_no::ALL
            | port_no::CONTROLLER
            | port_no::NORMAL
            | port_no::LOCAL => Ok(()),
            port_no::TABLE if packet_out => Ok(()),
            0 => bad,
            p if p >= port_no::MAX => bad,
            p if self.strict_ports && !self.ports.contains_key(&p) => bad,
            _ => Ok(()),
        }
    }

    fn check_dst(&self, field: FieldId, state: &mut Match) -> Result<(), OfpError> {
        if !is_set_field_writable(field) {
            return Err(OfpError::BadAction(BadActionCode::BadSetArgument));
        }
        if !state.satisfies(field.info().prereq) {
            return Err(OfpError::BadAction(BadActionCode::MatchInconsistent));
        }
        if matches!(field, FieldId::VlanVid | FieldId::VlanPcp) && !vlan_present(state) {
            return Err(OfpError::BadAction(BadActionCode::MatchInconsistent));
        }
        Ok(())
    }

    /// Checks an action list; `state` is the match as the actions change it
    /// (prerequisites of later set-fields).
    pub(crate) fn check_actions(
        &self,
        acts: &[Action],
        state: &mut Match,
        packet_out: bool,
    ) -> Result<(), OfpError> {
        use BadActionCode as B;
        for a in acts {
            match a {
                Action::Output { port, .. } => self.check_port(*port, packet_out)?,
                Action::Group(g) => {
                    if !self.groups.contains_key(g) {
                        return Err(OfpError::BadAction(B::BadOutGroup));
                    }
                }
                Action::SetField(mf) => {
                    no_ct_field(mf.field)?;
                    self.check_dst(mf.field, state)?;
                    if mf.field == FieldId::EthType && mf.mask.is_none() {
                        // Later set-fields see the new ethertype's prerequisites.
                        set_eth_type(state, mf.value as u16);
                    }
                }
                Action::RegLoad { dst, .. } => {
                    check_sf(dst)?;
                    no_ct_field(dst.field)?;
                    nx_writable(dst.field)?;
                    self.check_dst(dst.field, state)?
                }
                Action::RegMove { src, dst } => {
                    check_sf(src)?;
                    check_sf(dst)?;
                    no_ct_field(dst.field)?;
                    nx_writable(dst.field)?;
                    self.check_dst(dst.field, state)?
                }
                Action::OutputReg { src, .. } => check_sf(src)?,
                Action::PushVlan(t) => {
                    if *t != 0x8100 && *t != 0x88a8 {
                        return Err(OfpError::BadAction(B::BadArgument));
                    }
                    state.set_masked(
                        FieldId::VlanVid,
                        OFPVID_PRESENT as u128,
                        OFPVID_PRESENT as u128,
                    );
                }
                Action::PopVlan => {
                    if !vlan_present(state) {
                        return Err(OfpError::BadAction(B::MatchInconsistent));
                    }
                    state.remove(FieldId::VlanVid);
                    state.remove(FieldId::VlanPcp);
                }
                Action::PushMpls(t) => {
                    if *t != 0x8847 && *t != 0x8848 {
                        return Err(OfpError::BadAction(B::BadArgument));
                    }
                    set_eth_type(state, *t);
                }
                Action::PopMpls(t) => {
                    if !matches!(state.exact(FieldId::EthType), Some(0x8847 | 0x8848)) {
                        return Err(OfpError::BadAction(B::MatchInconsistent));
                    }
                    set_eth_type(state, *t);
                }
                Action::Resubmit { ct: true, .. } => {
                    return Err(OfpError::BadAction(B::BadExpType));
                }
                Action::Resubmit { table: Some(t), .. } => {
                    if *t as usize >= self.tables.len() && *t != 255 {
                        return Err(OfpError::BadAction(B::BadArgument));
                    }
                }
                Action::Clone(inner) => {
                    let mut s = state.clone();
                    self.check_actions(inner, &mut s, packet_out)?;
                }
                Action::Ct(ct) => self.check_ct(ct, state)?,
                // OVS: "Cannot have NAT action outside of \"ct\" action".
                Action::Nat(_) => return Err(OfpError::BadAction(B::BadSetArgument)),
                Action::CtClear => {}
                Action::PushPbb(t) => {
                    if *t != 0x88e7 {
                        return Err(OfpError::BadAction(B::BadArgument));
                    }
                    set_eth_type(state, *t);
                    state.remove(FieldId::VlanVid);
                    state.remove(FieldId::VlanPcp);
                }
                Action::PopPbb => {
                    if matches!(state.exact(FieldId::EthType), Some(t) if t != 0x88e7) {
                        return Err(OfpError::BadAction(B::MatchInconsistent));
                    }
                    // The customer frame's type is unknown until a re-parse.
                    set_eth_type(state, 0);
                    state.remove(FieldId::EthType);
                    state.remove(FieldId::VlanVid);
                    state.remove(FieldId::VlanPcp);
                }
                Action::Multipath(_) | Action::Bundle(_) | Action::OutputTrunc { .. } => {
                    return Err(OfpError::BadAction(B::BadExpType));
                }
                Action::Learn(l) => {
                    if l.table_id as usize >= self.tables.len() {
                        return Err(OfpError::BadAction(B::BadArgument));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `ct` checks as OVS's `ofpacts_check`/`ofpacts_verify_nested`: IP
    /// only, `force` needs `commit`, nested actions limited to `nat` and
    /// (with commit) setting `ct_mark`/`ct_label`.
    fn check_ct(&self, ct: &plexus_openflow::action::Ct, state: &Match) -> Result<(), OfpError> {
        use BadActionCode as B;
        use plexus_openflow::action::{CtZone, ct_flags};
        if !state.satisfies(plexus_openflow::oxm::Prereq::Ip) {
            return Err(OfpError::BadAction(B::MatchInconsistent));
        }
        let commit = ct.flags & ct_flags::COMMIT != 0;
        if ct.flags & ct_flags::FORCE != 0 && !commit {
            return Err(OfpError::BadAction(B::BadArgument));
        }
        if let Some(t) = ct.recirc_table
            && t as usize >= self.tables.len()
        {
            return Err(OfpError::BadAction(B::BadArgument));
        }
        if let CtZone::Field(sf) = &ct.zone {
            check_sf(sf)?;
        }
        let dl = state.exact(FieldId::EthType);
        for a in &ct.actions {
            let field = match a {
                Action::Nat(n) => {
                    if (n.ipv4_min.is_some() && dl != Some(0x0800))
                        || (n.ipv6_min.is_some() && dl != Some(0x86dd))
                    {
                        return Err(OfpError::BadAction(B::MatchInconsistent));
                    }
                    continue;
                }
                Action::SetField(mf) => mf.field,
                Action::RegLoad { dst, .. } => {
                    check_sf(dst)?;
                    dst.field
                }
                _ => return Err(OfpError::BadAction(B::BadArgument)),
            };
            if !matches!(field, FieldId::CtMark | FieldId::CtLabel) || !commit {
                return Err(OfpError::BadAction(B::BadArgument));
            }
        }
        Ok(())
    }

    // --------------------------------------------------------------- groups

    /// Applies a GROUP_MOD.
    pub fn group_mod(&mut self, gm: &GroupMod) -> Result<(), OfpError> {
        use GroupModFailedCode as G;
        let now = Instant::now();
        match gm.command {
            GroupModCommand::Delete => {
                let ids: Vec<u32> = if gm.group_id == group_id::ALL {
                    self.groups.keys().copied().collect()
                } else {
                    vec![gm.group_id]
                };
                for g in ids {
                    if self.groups.remove(&g).is_some() {
                        self.remove_flows_where(removed_reason::GROUP_DELETE, now, |e| {
                            e.actions()
                                .any(|a| matches!(a, Action::Group(x) if *x == g))
                        });
                    }
                }
                self.bump();
                return Ok(());
            }
            GroupModCommand::Add | GroupModCommand::Modify => {}
        }
        if gm.group_id > group_id::MAX {
            return Err(OfpError::GroupModFailed(G::InvalidGroup));
        }
        let exists = self.groups.contains_key(&gm.group_id);
        if gm.command == GroupModCommand::Add && exists {
            return Err(OfpError::GroupModFailed(G::GroupExists));
        }
        if gm.command == GroupModCommand::Modify && !exists {
            return Err(OfpError::GroupModFailed(G::UnknownGroup));
        }
        if gm.group_type == GroupType::Indirect && gm.buckets.len() != 1 {
            return Err(OfpError::GroupModFailed(G::InvalidGroup));
        }
        for b in &gm.buckets {
            if gm.group_type == GroupType::FastFailover {
                if b.watch_port == port_no::ANY && b.watch_group == group_id::ANY {
                    return Err(OfpError::GroupModFailed(G::BadWatch));
                }
                if b.watch_port != port_no::ANY
                    && b.watch_port != port_no::LOCAL
                    && (b.watch_port >= port_no::MAX
                        || (self.strict_ports && !self.ports.contains_key(&b.watch_port)))
                {
                    return Err(OfpError::GroupModFailed(G::BadWatch));
                }
                if b.watch_group != group_id::ANY && !self.groups.contains_key(&b.watch_group) {
                    return Err(OfpError::GroupModFailed(G::BadWatch));
                }
            }
            if gm.group_type != GroupType::Select && b.weight != 0 {
                return Err(OfpError::GroupModFailed(G::BadBucket));
            }
            let mut state = Match::new();
            self.check_actions(&b.actions, &mut state, false)
                .map_err(|e| match e {
                    // Set-field prerequisites are checked per packet in buckets.
                    OfpError::BadAction(BadActionCode::MatchInconsistent) => {
                        OfpError::GroupModFailed(G::BadBucket)
                    }
                    other => other,
                })
                .or_else(|e| {
                    if e == OfpError::GroupModFailed(G::BadBucket) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            for a in &b.actions {
                if let Action::Group(x) = a
                    && (*x == gm.group_id || self.group_reaches(*x, gm.group_id, 0))
                {
                    return Err(OfpError::GroupModFailed(G::Loop));
                }
            }
        }
        let (packets, bytes, created) = match self.groups.get(&gm.group_id) {
            Some(g) => (g.packets, g.bytes, g.created),
            None => (0, 0, now),
        };
        self.groups.insert(
            gm.group_id,
            Group {
                group_type: gm.group_type,
                buckets: gm.buckets.clone(),
                bucket_keys: gm.buckets.iter().map(bucket_key).collect(),
                packets,
                bytes,
                bucket_stats: vec![(0, 0); gm.buckets.len()],
                created,
            },
        );
        self.bump();
        Ok(())
    }

    /// Whether group `from` (transitively) references `to`.
    fn group_reaches(&self, from: u32, to: u32, depth: usize) -> bool {
        if depth > 64 {
            return true;
        }
        let Some(g) = self.groups.get(&from) else {
            return false;
        };
        g.buckets.iter().flat_map(|b| b.actions.iter()).any(
            |a| matches!(a, Action::Group(x) if *x == to || self.group_reaches(*x, to, depth + 1)),
        )
    }

    /// `OFPMP_GROUP_DESC`.
    pub fn group_desc(&self) -> Vec<GroupDesc> {
        self.groups
            .iter()
            .map(|(&id, g)| GroupDesc {
                group_type: g.group_type,
                group_id: id,
                buckets: g.buckets.clone(),
            })
            .collect()
    }

    /// `OFPMP_GROUP` for one group or `OFPG_ALL`.
    pub fn group_stats(&self, gid: u32) -> Vec<GroupStats> {
        let now = Instant::now();
        self.groups
            .iter()
            .filter(|(id, _)| gid == group_id::ALL || **id == gid)
            .map(|(&id, g)| {
                let d = now.saturating_duration_since(g.created);
                let ref_count = self
                    .tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .filter(|r| {
                        r.data
                            .actions()
                            .any(|a| matches!(a, Action::Group(x) if *x == id))
                    })
                    .count() as u32;
                GroupStats {
                    group_id: id,
                    ref_count,
                    packet_count: g.packets,
                    byte_count: g.bytes,
                    duration_sec: d.as_secs() as u32,
                    duration_nsec: d.subsec_nanos(),
                    bucket_stats: g.bucket_stats.clone(),
                }
            })
            .collect()
    }

    // --------------------------------------------------------------- meters

    /// Applies a METER_MOD (drop bands only; kbps or pktps; burst).
    pub fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), OfpError> {
        use MeterModFailedCode as M;
        let now = Instant::now();
        if mm.command == MeterModCommand::Delete {
            let ids: Vec<u32> = if mm.meter_id == METER_ALL {
                self.meters.keys().copied().collect()
            } else {
                vec![mm.meter_id]
            };
            for id in ids {
                if self.meters.remove(&id).is_some() {
                    self.remove_flows_where(removed_reason::DELETE, now, |e| e.meter() == Some(id));
                }
            }
            self.bump();
            return Ok(());
        }
        if mm.meter_id == 0 || mm.meter_id > METER_MAX {
            return Err(OfpError::MeterModFailed(M::InvalidMeter));
        }
        let exists = self.meters.contains_key(&mm.meter_id);
        if mm.command == MeterModCommand::Add && exists {
            return Err(OfpError::MeterModFailed(M::MeterExists));
        }
        if mm.command == MeterModCommand::Modify && !exists {
            return Err(OfpError::MeterModFailed(M::UnknownMeter));
        }
        let known =
            meter_flags::KBPS | meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS;
        if mm.flags & !known != 0
            || (mm.flags & meter_flags::KBPS != 0 && mm.flags & meter_flags::PKTPS != 0)
        {
            return Err(OfpError::MeterModFailed(M::BadFlags));
        }
        let mut state = Vec::new();
        for b in &mm.bands {
            match b {
                MeterBand::Drop { rate, burst_size }
                | MeterBand::DscpRemark {
                    rate, burst_size, ..
                } => {
                    if *rate == 0 {
                        return Err(OfpError::MeterModFailed(M::BadRate));
                    }
                    if mm.flags & meter_flags::BURST == 0 && *burst_size != 0 {
                        // OVS ignores it; so do we.
                    }
                    let burst = if mm.flags & meter_flags::BURST != 0 && *burst_size > 0 {
                        *burst_size
                    } else {
                        *rate
                    };
                    state.push(Band {
                        rate: *rate,
                        burst,
                        tokens: burst as u128 * 1000 * 1_000_000_000,
                        last: None,
                        packets: 0,
                        bytes: 0,
                    });
                }
                _ => return Err(OfpError::MeterModFailed(M::BadBand)),
            }
        }
        let (packets, bytes, created) = match self.meters.get(&mm.meter_id) {
            Some(m) => (m.packets, m.bytes, m.created),
            None => (0, 0, now),
        };
        self.meters.insert(
            mm.meter_id,
            Meter {
                flags: mm.flags,
                bands: mm.bands.clone(),
                state,
                packets,
                bytes,
                created,
            },
        );
        self.bump();
        Ok(())
    }

    /// `OFPMP_METER_CONFIG` for one meter or `OFPM_ALL`.
    pub fn meter_config(&self, meter_id: u32) -> Vec<MeterConfig> {
        self.meters
            .iter()
            .filter(|(id, _)| meter_id == METER_ALL || **id == meter_id)
            .map(|(&id, m)| MeterConfig {
                flags: m.flags,
                meter_id: id,
                bands: m.bands.clone(),
            })
            .collect()
    }

    /// `OFPMP_METER` for one meter or `OFPM_ALL`.
    pub fn meter_stats(&self, meter_id: u32) -> Vec<MeterStats> {
        let now = Instant::now();
        self.meters
            .iter()
            .filter(|(id, _)| meter_id == METER_ALL || **id == meter_id)
            .map(|(&id, m)| {
                let d = now.saturating_duration_since(m.created);
                let flow_count = self
                    .tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .filter(|r| r.data.meter() == Some(id))
                    .count() as u32;
                MeterStats {
                    meter_id: id,
                    flow_count,
                    packet_in_count: m.packets,
                    byte_in_count: m.bytes,
                    duration_sec: d.as_secs() as u32,
                    duration_nsec: d.subsec_nanos(),
                    band_stats: m.state.iter().map(|b| (b.packets, b.bytes)).collect(),
                }
            })
            .collect()
    }

    // ---------------------------------------------------------------- stats

    fn selected(
        &self,
        req: &FlowStatsRequest,
    ) -> Result<Vec<(u8, &crate::classifier::Rule<FlowEntry>)>, OfpError> {
        if req.table_id != TABLE_ALL && req.table_id as usize >= self.tables.len() {
            return Err(OfpError::BadRequest(BadRequestCode::BadTableId));
        }
        let mut out = Vec::new();
        for (ti, t) in self.tables.iter().enumerate() {
            if req.table_id != TABLE_ALL && req.table_id as usize != ti {
                continue;
            }
            let mut ids = t.find_loose(&req.match_);
            ids.sort_unstable();
            for id in ids {
                let Some(r) = t.get(id) else { continue };
                if (r.data.cookie ^ req.cookie) & req.cookie_mask == 0
                    && r.data.has_out_port(req.out_port)
                    && r.data.has_group(req.out_group)
                {
                    out.push((ti as u8, r));
                }
            }
        }
        Ok(out)
    }

    /// `OFPMP_FLOW`.
    pub fn flow_stats(
        &self,
        req: &FlowStatsRequest,
        now: Instant,
    ) -> Result<Vec<FlowStats>, OfpError> {
        Ok(self
            .selected(req)?
            .into_iter()
            .map(|(ti, r)| FlowStats {
                match_: r.match_(),
                instructions: r.data.instructions.to_vec(),
                ..flow_stats_head(ti, r, now)
            })
            .collect())
    }

    /// [`flow_stats`](Self::flow_stats), encoded one `ofp_flow_stats` entry
    /// at a time into a reused buffer: nothing per flow is allocated.
    pub fn flow_stats_encoded(
        &self,
        req: &FlowStatsRequest,
        now: Instant,
        emit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), OfpError> {
        let mut buf = Vec::with_capacity(1024);
        for (ti, r) in self.selected(req)? {
            buf.clear();
            put_flow_stats(
                &mut buf,
                &flow_stats_head(ti, r, now),
                |o| r.matches.encode(o),
                &r.data.instructions,
            );
            emit(&buf);
        }
        Ok(())
    }

    /// `OFPMP_AGGREGATE`.
    pub fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, OfpError> {
        let mut a = AggregateStats::default();
        for (_, r) in self.selected(req)? {
            a.packet_count += r.stats.packets();
            a.byte_count += r.stats.bytes();
            a.flow_count += 1;
        }
        Ok(a)
    }

    /// `OFPMP_TABLE`.
    pub fn table_stats(&self) -> Vec<TableStats> {
        self.tables
            .iter()
            .zip(&self.table_counts)
            .enumerate()
            .map(|(i, (t, c))| TableStats {
                table_id: i as u8,
                active_count: t.len() as u32,
                lookup_count: c.0,
                matched_count: c.1,
            })
            .collect()
    }

    /// Number of flows in a table.
    pub fn flow_count(&self, table: u8) -> usize {
        self.tables.get(table as usize).map_or(0, |t| t.len())
    }

    // ----------------------------------------------------------- processing

    /// Runs one packet received on `in_port` through the pipeline. `pkt` is
    /// rewritten in place; emits are appended to `out`.
    pub fn process(
        &mut self,
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        self.process_tunnel(in_port, &TunnelMeta::default(), pkt, now, out);
    }

    /// [`Pipeline::process`] for a frame decapsulated by tunnel port
    /// `in_port`: `tun` is matched as `tun_id`/`tun_src`/`tun_dst`/`tun_flags`.
    pub fn process_tunnel(
        &mut self,
        in_port: u32,
        tun: &TunnelMeta,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        let meta = PacketMeta {
            in_port,
            tunnel: *tun,
            ..Default::default()
        };
        let mut key = self.key_scratch;
        if parse_into(&mut key, pkt.data(), &meta).is_err() {
            self.counters.parse_errors += 1;
        }
        self.counters.packets += 1;
        self.conntrack.advance(now);
        if let Some(msg) = self.conntrack.refusal_report(now) {
            eprintln!("{msg}");
        }
        let len = pkt.len() as u64;
        let compiled = self.translate_cached(&key);
        self.credit(&compiled.credits, len, now);
        self.execute(&compiled.ops, in_port, pkt, now, out);
    }

    fn translate_cached(&mut self, key: &FlowKey) -> Arc<Compiled> {
        let generation = self.generation;
        if self.cache_enabled {
            if let Some(c) = self.cache.lookup(key, generation) {
                self.counters.cache_hits += 1;
                return c;
            }
            self.counters.cache_misses += 1;
        }
        let (c, wc) = self.translate(key);
        let c = Arc::new(c);
        if self.cache_enabled {
            self.cache.insert(key, &wc, generation, c.clone());
        }
        c
    }

    /// Continues the fork of a packet after `ct(table=..)`: the post-ct key
    /// (re-parsed bytes, carried metadata, ct fields) is looked up from
    /// `table`, through a per-table megaflow cache (like OVS keying
    /// recirculated lookups on `recirc_id`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn recirculate(
        &mut self,
        table: u8,
        c: &CtOp,
        r: &CtResult,
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        let Some(mut key) = self.reparse(&c.meta, pkt) else {
            return;
        };
        set_ct_fields(&mut key, r);
        self.continue_from(table, &key, &c.action_set, in_port, pkt, now, out);
    }

    /// Continues a packet after `pop_mpls` + `goto_table` ([`xlate::Op::Recirc`]):
    /// the rewritten bytes are parsed again and the carried metadata and
    /// ct fields restored, then looked up from the goto table.
    pub(crate) fn reparse_continue(
        &mut self,
        r: &xlate::RecircOp,
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        let Some(mut key) = self.reparse(&r.meta, pkt) else {
            return;
        };
        for f in xlate::CT_FIELDS {
            key.set(f, r.meta.get(f));
        }
        self.continue_from(r.table, &key, &r.action_set, in_port, pkt, now, out);
    }

    /// Shared start of every recirculation: enforces the depth bound
    /// (counting a cut-off), parses the current bytes again and carries the
    /// metadata words (in_port, registers, metadata, tunnel, marks) over
    /// from `carried`.
    fn reparse(&mut self, carried: &FlowKey, pkt: &PacketBuf) -> Option<FlowKey> {
        if self.recirc_depth >= MAX_RECIRC_DEPTH {
            self.counters.recirc_limit += 1;
            return None;
        }
        self.counters.recirculations += 1;
        let meta = PacketMeta {
            in_port: carried.get(FieldId::InPort) as u32,
            ..Default::default()
        };
        let mut key = self.key_scratch;
        let _ = parse_into(&mut key, pkt.data(), &meta);
        for w in CT_META_WORDS {
            key.w[w] = carried.w[w];
        }
        Some(key)
    }

    /// Looks `key` up from `table` (through the per-table recirculation
    /// cache when no action set is inherited) and executes the result.
    #[allow(clippy::too_many_arguments)]
    fn continue_from(
        &mut self,
        table: u8,
        key: &FlowKey,
        action_set: &[Action],
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        let compiled = if action_set.is_empty() && self.cache_enabled {
            let generation = self.generation;
            let cache = self.recirc_cache[table as usize]
                .get_or_insert_with(|| FlowCache::new(4096, 65536));
            match cache.lookup(key, generation) {
                Some(x) => {
                    self.counters.cache_hits += 1;
                    x
                }
                None => {
                    self.counters.cache_misses += 1;
                    let (x, wc) = self.translate_from(table, key, &[]);
                    let x = Arc::new(x);
                    if let Some(cache) = self.recirc_cache[table as usize].as_mut() {
                        cache.insert(key, &wc, generation, x.clone());
                    }
                    x
                }
            }
        } else {
            Arc::new(self.translate_from(table, key, action_set).0)
        };
        self.credit(&compiled.credits, pkt.len() as u64, now);
        self.recirc_depth += 1;
        self.execute(&compiled.ops, in_port, pkt, now, out);
        self.recirc_depth -= 1;
    }

    /// The slow path of a recirculated packet: translation from `table`
    /// with an inherited action set.
    pub fn translate_from(&self, table: u8, key: &FlowKey, aset: &[Action]) -> (Compiled, FlowKey) {
        let mut x = xlate::Xlate::new(self, *key, false);
        x.run_from(table, aset);
        (x.out, x.wc)
    }

    /// The slow path: translation of `key` and its wildcards.
    pub fn translate(&self, key: &FlowKey) -> (Compiled, FlowKey) {
        let mut x = xlate::Xlate::new(self, *key, false);
        x.run();
        (x.out, x.wc)
    }

    fn credit(&mut self, credits: &[Credit], bytes: u64, now: Instant) {
        for c in credits {
            match *c {
                Credit::Lookup { table, matched } => {
                    if let Some(tc) = self.table_counts.get_mut(table as usize) {
                        tc.0 += 1;
                        tc.1 += matched as u64;
                    }
                }
                Credit::Rule { table, id } => {
                    if let Some(r) = self
                        .tables
                        .get_mut(table as usize)
                        .and_then(|t| t.get_mut(id))
                    {
                        r.stats.add(1, bytes);
                        r.data.last_used = now;
                    }
                }
                Credit::Group(g) => {
                    if let Some(g) = self.groups.get_mut(&g) {
                        g.packets += 1;
                        g.bytes += bytes;
                    }
                }
                Credit::Bucket { group, bucket } => {
                    if let Some(b) = self
                        .groups
                        .get_mut(&group)
                        .and_then(|g| g.bucket_stats.get_mut(bucket as usize))
                    {
                        b.0 += 1;
                        b.1 += bytes;
                    }
                }
            }
        }
    }

    /// PACKET_OUT: applies the actions to the frame as received on
    /// `in_port` (`output:TABLE` runs the pipeline). Outputs carry copies.
    pub fn packet_out(
        &mut self,
        po: &PacketOut,
        now: Instant,
        out: &mut Vec<Emit>,
    ) -> Result<(), OfpError> {
        if po.buffer_id != OFP_NO_BUFFER {
            return Err(OfpError::BadRequest(BadRequestCode::BufferUnknown));
        }
        let in_ok = matches!(
            po.in_port,
            port_no::CONTROLLER | port_no::LOCAL | port_no::ANY
        ) || (po.in_port > 0 && po.in_port < port_no::MAX);
        if !in_ok {
            return Err(OfpError::BadRequest(BadRequestCode::BadPort));
        }
        let mut state = Match::new();
        self.check_actions(&po.actions, &mut state, true)
            .or_else(|e| match e {
                OfpError::BadAction(BadActionCode::MatchInconsistent) => Ok(()),
                e => Err(e),
            })?;
        let mut pkt = PacketBuf::from_slice(&po.data);
        let meta = PacketMeta {
            in_port: po.in_port,
            ..Default::default()
        };
        let mut key = FlowKey::ZERO;
        let _ = parse_into(&mut key, pkt.data(), &meta);
        let mut x = xlate::Xlate::new(self, key, true);
        x.run_actions(&po.actions);
        let c = x.out;
        self.credit(&c.credits, pkt.len() as u64, now);
        let start = out.len();
        self.execute(&c.ops, po.in_port, &mut pkt, now, out);
        // No caller-owned buffer: every output gets its bytes.
        for e in &mut out[start..] {
            if let Emit::Output { data, .. } = e
                && *data == OutData::Packet
            {
                *data = OutData::Copy(pkt.data().to_vec());
            }
        }
        Ok(())
    }

    /// Re-runs the pipeline on the current packet (packet-out `output:TABLE`).
    pub(crate) fn process_nested(
        &mut self,
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        let meta = PacketMeta {
            in_port,
            ..Default::default()
        };
        let mut key = FlowKey::ZERO;
        let _ = parse_into(&mut key, pkt.data(), &meta);
        let (c, _) = self.translate(&key);
        self.credit(&c.credits, pkt.len() as u64, now);
        self.execute(&c.ops, in_port, pkt, now, out);
    }

    /// `learn`: adds the flow, or refreshes an identical one without
    /// invalidating caches.
    pub(crate) fn learn(&mut self, fm: &FlowMod, now: Instant) {
        let Some(t) = self.tables.get_mut(fm.table_id as usize) else {
            return;
        };
        if let Some(id) = t.find_strict(&fm.match_, fm.priority)
            && let Some(r) = t.get_mut(id)
            && *r.data.instructions == *fm.instructions
            && r.data.cookie == fm.cookie
        {
            r.data.last_used = now;
            return;
        }
        let _ = self.flow_mod(fm, now);
    }
}

/// A flow's statistics without its match and instructions (empty: no allocation).
fn flow_stats_head(
    table_id: u8,
    r: &crate::classifier::Rule<FlowEntry>,
    now: Instant,
) -> FlowStats {
    let d = now.saturating_duration_since(r.data.created);
    FlowStats {
        table_id,
        duration_sec: d.as_secs() as u32,
        duration_nsec: d.subsec_nanos(),
        priority: r.priority,
        idle_timeout: r.data.idle_timeout,
        hard_timeout: r.data.hard_timeout,
        flags: r.data.flags,
        cookie: r.data.cookie,
        packet_count: r.stats.packets(),
        byte_count: r.stats.bytes(),
        match_: Match::default(),
        instructions: Vec::new(),
    }
}

/// Appends one `ofp_flow_stats` entry: the fixed fields of `h` (its match and
/// instructions are ignored), the `ofp_match` that `put_match` writes and
/// `insts`; the bytes the codec writes for that entry of a multipart reply.
pub fn put_flow_stats(
    out: &mut Vec<u8>,
    h: &FlowStats,
    put_match: impl FnOnce(&mut Vec<u8>),
    insts: &[Instruction],
) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, h.table_id, 0]);
    out.extend_from_slice(&h.duration_sec.to_be_bytes());
    out.extend_from_slice(&h.duration_nsec.to_be_bytes());
    for v in [h.priority, h.idle_timeout, h.hard_timeout, h.flags] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    for v in [h.cookie, h.packet_count, h.byte_count] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    put_match(out);
    Instruction::encode_list(insts, out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_be_bytes());
}

/// Writes conntrack's verdict into the ct match fields of `key`.
/// The conjunction clauses of a flow's instructions (OVS's rule: a flow with a
/// `conjunction` action has nothing but `conjunction` actions, in apply-actions;
/// otherwise OFPBAC_BAD_ARGUMENT). Empty for an ordinary flow.
fn conj_clauses(insts: &[Instruction]) -> Result<Box<[ConjClause]>, OfpError> {
    let is_conj = |a: &Action| matches!(a, Action::Conjunction { .. });
    let any = insts.iter().any(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.iter().any(is_conj),
        _ => false,
    });
    if !any {
        return Ok(Box::default());
    }
    let mut out = Vec::new();
    for i in insts {
        let Instruction::ApplyActions(acts) = i else {
            return Err(OfpError::BadAction(BadActionCode::BadArgument));
        };
        for a in acts {
            match a {
                Action::Conjunction {
                    id,
                    clause,
                    n_clauses,
                } if *n_clauses >= 2 && *n_clauses <= 64 && clause < n_clauses => {
                    out.push(ConjClause {
                        id: *id,
                        clause: *clause,
                        n_clauses: *n_clauses,
                    })
                }
                _ => return Err(OfpError::BadAction(BadActionCode::BadArgument)),
            }
        }
    }
    Ok(out.into_boxed_slice())
}

pub(crate) fn set_ct_fields(key: &mut FlowKey, r: &CtResult) {
    use FieldId::*;
    for f in xlate::CT_FIELDS {
        key.set(f, 0);
    }
    key.set(CtState, r.state as u128);
    key.set(CtZone, r.zone as u128);
    key.set(CtMark, r.mark as u128);
    key.set(CtLabel, r.label);
    if let Some(t) = r.orig {
        key.set(CtNwProto, t.proto as u128);
        if t.v6 {
            key.set(CtIpv6Src, t.src);
            key.set(CtIpv6Dst, t.dst);
        } else {
            key.set(CtNwSrc, t.src);
            key.set(CtNwDst, t.dst);
        }
        key.set(CtTpSrc, t.sport as u128);
        key.set(CtTpDst, t.dport as u128);
    }
}

fn vlan_present(m: &Match) -> bool {
    m.get(FieldId::VlanVid).is_some_and(|f| {
        let p = OFPVID_PRESENT as u128;
        f.value & p != 0 && f.mask_or_full() & p != 0
    })
}

fn set_eth_type(m: &mut Match, t: u16) {
    // Fields that depended on the old ethertype no longer apply.
    let keep: Vec<_> = m
        .fields
        .iter()
        .copied()
        .filter(|f| {
            matches!(
                f.field.info().prereq,
                plexus_openflow::oxm::Prereq::None
                    | plexus_openflow::oxm::Prereq::InPort
                    | plexus_openflow::oxm::Prereq::VlanVid
            ) && f.field != FieldId::EthType
        })
        .collect();
    m.fields = keep;
    m.set(FieldId::EthType, t as u128);
}

/// NX `reg_load`/`reg_move` keep OVS's rule (`eth_type`, `ip_proto`,
/// `mpls_bos` are read-only there; an OpenFlow `set_field` may write them).
fn nx_writable(f: FieldId) -> Result<(), OfpError> {
    if !is_writable(f) {
        return Err(OfpError::BadAction(BadActionCode::BadSetArgument));
    }
    Ok(())
}

/// `ct_mark`/`ct_label` may only be set inside `ct(exec(..))`.
fn no_ct_field(f: FieldId) -> Result<(), OfpError> {
    if matches!(f, FieldId::CtMark | FieldId::CtLabel) {
        return Err(OfpError::BadAction(BadActionCode::BadSetArgument));
    }
    Ok(())
}

fn check_sf(sf: &Subfield) -> Result<(), OfpError> {
    sf.check().map_err(|e| e.ofp_error())
}
