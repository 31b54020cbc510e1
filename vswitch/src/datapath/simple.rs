//! A small built-in [`Engine`]: one [`Classifier`] per table, instructions
//! apply/write/clear-actions, goto-table and write-metadata; actions output
//! (incl. IN_PORT/ALL/FLOOD/CONTROLLER) and group (all/select/indirect/
//! fast-failover); groups and meters are stored and reported but header
//! rewrites and metering are left to the full pipeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexus_openflow::action::Action;
use plexus_openflow::error::{
    BadActionCode, BadInstructionCode, BadRequestCode, FlowModFailedCode, GroupModFailedCode,
    MeterModFailedCode, OfpError,
};
use plexus_openflow::instruction::Instruction;
use plexus_openflow::message::{
    AggregateStats, FlowMod, FlowModCommand, FlowRemoved, FlowStats, FlowStatsRequest, GroupDesc,
    GroupMod, GroupModCommand, GroupStats, GroupType, MeterConfig, MeterMod, MeterModCommand,
    MeterStats, OFP_NO_BUFFER, PacketIn, PacketOut, TableStats, flow_mod_flags, group_id, port_no,
};
use plexus_openflow::oxm::{FieldId, Match};

use super::engine::{Engine, PortInfo, Sink};
use crate::classifier::{Classifier, Rule};
use crate::flow::{FlowKey, PacketMeta, parse};

/// Number of tables (0..=253).
pub const N_TABLES: usize = 254;
const OFPM_ALL: u32 = 0xffff_ffff;
const OFPM_MAX: u32 = 0xffff_0000;
const MAX_DEPTH: usize = 64;
/// `OFPR_NO_MATCH`, `OFPR_ACTION`.
const REASON_NO_MATCH: u8 = 0;
const REASON_ACTION: u8 = 1;
/// `OFPRR_IDLE_TIMEOUT`, `OFPRR_HARD_TIMEOUT`, `OFPRR_DELETE`.
const RR_IDLE: u8 = 0;
const RR_HARD: u8 = 1;
const RR_DELETE: u8 = 2;

#[derive(Debug)]
struct Entry {
    cookie: u64,
    flags: u16,
    idle: u16,
    hard: u16,
    created: Instant,
    last_hit: Instant,
    instructions: Vec<Instruction>,
}

#[derive(Debug)]
struct Group {
    gm: GroupMod,
    created: Instant,
    packets: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Meter {
    mm: MeterMod,
    created: Instant,
    /// Token bucket of the lowest-rate drop band: (rate per second, burst,
    /// bytes-based), tokens and last refill.
    bucket: Option<(f64, f64, bool)>,
    tokens: f64,
    last: Instant,
    packets: u64,
    bytes: u64,
    band_drops: Vec<(u64, u64)>,
}

impl Meter {
    fn new(mm: &MeterMod, created: Instant) -> Self {
        use plexus_openflow::message::{MeterBand, meter_flags};
        let kbps = mm.flags & meter_flags::PKTPS == 0;
        let burst_flag = mm.flags & meter_flags::BURST != 0;
        let bucket = mm
            .bands
            .iter()
            .filter_map(|b| match b {
                MeterBand::Drop { rate, burst_size } => Some((*rate, *burst_size)),
                _ => None,
            })
            .min_by_key(|(r, _)| *r)
            .map(|(rate, burst)| {
                // kbps: tokens are bytes.
                let scale = if kbps { 1000.0 / 8.0 } else { 1.0 };
                let r = rate as f64 * scale;
                let b = if burst_flag && burst > 0 {
                    burst as f64 * scale
                } else {
                    r
                };
                (r, b.max(if kbps { 1600.0 } else { 1.0 }), kbps)
            });
        Self {
            mm: mm.clone(),
            created,
            tokens: bucket.map_or(0.0, |b| b.1),
            bucket,
            last: created,
            packets: 0,
            bytes: 0,
            band_drops: mm.bands.iter().map(|_| (0, 0)).collect(),
        }
    }

    /// Counts the packet; false if a drop band drops it.
    fn pass(&mut self, len: usize, now: Instant) -> bool {
        self.packets += 1;
        self.bytes += len as u64;
        let Some((rate, burst, bytes)) = self.bucket else {
            return true;
        };
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        let cost = if bytes { len as f64 } else { 1.0 };
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            if let Some(d) = self.band_drops.first_mut() {
                d.0 += 1;
                d.1 += len as u64;
            }
            false
        }
    }
}

#[derive(Debug, Default)]
struct TableCounters {
    lookups: u64,
    matches: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SimplePipeline {
    tables: Vec<Classifier<Entry>>,
    counters: Vec<TableCounters>,
    groups: BTreeMap<u32, Group>,
    meters: BTreeMap<u32, Meter>,
    ports: Vec<PortInfo>,
}

impl Default for SimplePipeline {
    fn default() -> Self {
        Self::new()
    }
}

fn dur(now: Instant, since: Instant) -> (u32, u32) {
    let d = now.saturating_duration_since(since);
    (d.as_secs() as u32, d.subsec_nanos())
}

fn fmf(c: FlowModFailedCode) -> OfpError {
    OfpError::FlowModFailed(c)
}

fn gmf(c: GroupModFailedCode) -> OfpError {
    OfpError::GroupModFailed(c)
}

fn mmf(c: MeterModFailedCode) -> OfpError {
    OfpError::MeterModFailed(c)
}

/// Whether an instruction list outputs to `port` / `group` (flow-mod and
/// flow-stats filters).
fn outputs_to(ins: &[Instruction], port: u32, group: u32) -> bool {
    let acts = ins.iter().flat_map(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
        _ => &[],
    });
    let mut ok_port = port == port_no::ANY;
    let mut ok_group = group == group_id::ANY;
    for a in acts {
        match a {
            Action::Output { port: p, .. } if *p == port => ok_port = true,
            Action::Group(g) if *g == group => ok_group = true,
            _ => {}
        }
    }
    ok_port && ok_group
}

struct Ctx<'a> {
    key: FlowKey,
    meta: PacketMeta,
    frame: &'a [u8],
    table_id: u8,
    cookie: u64,
}

impl SimplePipeline {
    pub fn new() -> Self {
        Self {
            tables: (0..N_TABLES).map(|_| Classifier::new()).collect(),
            counters: (0..N_TABLES).map(|_| TableCounters::default()).collect(),
            groups: BTreeMap::new(),
            meters: BTreeMap::new(),
            ports: Vec::new(),
        }
    }

    fn tables_for(&self, table_id: u8) -> Result<std::ops::Range<usize>, OfpError> {
        if table_id == 0xff {
            Ok(0..N_TABLES)
        } else if (table_id as usize) < N_TABLES {
            Ok(table_id as usize..table_id as usize + 1)
        } else {
            Err(OfpError::BadRequest(BadRequestCode::BadTableId))
        }
    }

    fn validate(&self, fm: &FlowMod) -> Result<(), OfpError> {
        for i in &fm.instructions {
            match i {
                Instruction::GotoTable(t) => {
                    if (*t as usize) >= N_TABLES {
                        return Err(OfpError::BadInstruction(BadInstructionCode::BadTableId));
                    }
                    if *t <= fm.table_id {
                        return Err(OfpError::BadInstruction(BadInstructionCode::BadTableId));
                    }
                }
                Instruction::ApplyActions(a) | Instruction::WriteActions(a) => {
                    self.validate_actions(a)?
                }
                Instruction::Meter(m) if !self.meters.contains_key(m) => {
                    return Err(mmf(MeterModFailedCode::UnknownMeter));
                }
                Instruction::Experimenter { .. } => {
                    return Err(OfpError::BadInstruction(BadInstructionCode::UnsupInst));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_actions(&self, acts: &[Action]) -> Result<(), OfpError> {
        for a in acts {
            match a {
                Action::Output { port, .. } => {
                    let ok = *port > port_no::MAX && *port != port_no::ANY
                        || self.ports.iter().any(|p| p.ofport == *port)
                        || (*port >= 1 && *port <= port_no::MAX);
                    if !ok || *port == 0 {
                        return Err(OfpError::BadAction(BadActionCode::BadOutPort));
                    }
                }
                Action::Group(g) if !self.groups.contains_key(g) => {
                    return Err(OfpError::BadAction(BadActionCode::BadOutGroup));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn removed(rule: &Rule<Entry>, table_id: u8, reason: u8, now: Instant) -> FlowRemoved {
        let (s, ns) = dur(now, rule.data.created);
        FlowRemoved {
            cookie: rule.data.cookie,
            priority: rule.priority,
            reason,
            table_id,
            duration_sec: s,
            duration_nsec: ns,
            idle_timeout: rule.data.idle,
            hard_timeout: rule.data.hard,
            packet_count: rule.stats.packets(),
            byte_count: rule.stats.bytes(),
            match_: rule.match_(),
        }
    }

    fn select<'a>(
        &'a self,
        req: &'a FlowStatsRequest,
    ) -> Result<impl Iterator<Item = (u8, &'a Rule<Entry>)> + 'a, OfpError> {
        let range = self.tables_for(req.table_id)?;
        let want = crate::flow::MaskedKey::from_match(&req.match_);
        Ok(range.flat_map(move |t| {
            let want = want;
            self.tables[t]
                .iter()
                .filter(move |r| {
                    r.key().is_within(&want)
                        && (r.data.cookie & req.cookie_mask) == (req.cookie & req.cookie_mask)
                        && outputs_to(&r.data.instructions, req.out_port, req.out_group)
                })
                .map(move |r| (t as u8, r))
        }))
    }

    fn output(&self, ctx: &Ctx<'_>, port: u32, max_len: u16, reason: u8, out: &mut dyn Sink) {
        let in_port = ctx.meta.in_port;
        match port {
            port_no::IN_PORT => out.output(in_port, ctx.frame),
            port_no::ALL | port_no::FLOOD => {
                for p in &self.ports {
                    if p.ofport != in_port && !p.no_fwd && !(port == port_no::FLOOD && p.no_flood) {
                        out.output(p.ofport, ctx.frame);
                    }
                }
            }
            port_no::CONTROLLER => {
                let mut m = Match::new();
                m.set(FieldId::InPort, in_port as u128);
                if ctx.meta.metadata != 0 {
                    m.set(FieldId::Metadata, ctx.meta.metadata as u128);
                }
                let n = if max_len == 0xffff {
                    ctx.frame.len()
                } else {
                    ctx.frame.len().min(max_len as usize)
                };
                out.packet_in(PacketIn {
                    buffer_id: OFP_NO_BUFFER,
                    total_len: ctx.frame.len() as u16,
                    reason,
                    table_id: ctx.table_id,
                    cookie: ctx.cookie,
                    match_: m,
                    data: ctx.frame[..n].to_vec(),
                });
            }
            port_no::TABLE | port_no::NORMAL | port_no::LOCAL | port_no::ANY => {}
            p => {
                if p != in_port && self.ports.iter().any(|x| x.ofport == p && !x.no_fwd) {
                    out.output(p, ctx.frame);
                }
            }
        }
    }

    fn run_actions(
        &mut self,
        ctx: &mut Ctx<'_>,
        acts: &[Action],
        depth: usize,
        out: &mut dyn Sink,
    ) {
        for a in acts {
            match a {
                Action::Output { port, max_len } => {
                    self.output(ctx, *port, *max_len, REASON_ACTION, out)
                }
                Action::Group(g) => self.run_group(ctx, *g, depth + 1, out),
                _ => {}
            }
        }
    }

    fn run_group(&mut self, ctx: &mut Ctx<'_>, id: u32, depth: usize, out: &mut dyn Sink) {
        if depth > MAX_DEPTH {
            return;
        }
        let Some(g) = self.groups.get_mut(&id) else {
            return;
        };
        g.packets += 1;
        g.bytes += ctx.frame.len() as u64;
        let gm = g.gm.clone();
        let live = |w: u32, ports: &[PortInfo]| {
            w == port_no::ANY || ports.iter().any(|p| p.ofport == w && p.live)
        };
        match gm.group_type {
            GroupType::All => {
                for b in &gm.buckets {
                    self.run_actions(ctx, &b.actions, depth, out);
                }
            }
            GroupType::Indirect => {
                if let Some(b) = gm.buckets.first() {
                    self.run_actions(ctx, &b.actions, depth, out);
                }
            }
            GroupType::Select => {
                let total: u64 = gm.buckets.iter().map(|b| b.weight.max(1) as u64).sum();
                if total == 0 {
                    return;
                }
                let mut h = ctx.key.hash() % total;
                for b in &gm.buckets {
                    let w = b.weight.max(1) as u64;
                    if h < w {
                        self.run_actions(ctx, &b.actions, depth, out);
                        break;
                    }
                    h -= w;
                }
            }
            GroupType::FastFailover => {
                if let Some(b) = gm.buckets.iter().find(|b| live(b.watch_port, &self.ports)) {
                    self.run_actions(ctx, &b.actions, depth, out);
                }
            }
        }
    }

    fn run_tables(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut table: usize,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let mut action_set: Vec<Action> = Vec::new();
        loop {
            self.counters[table].lookups += 1;
            ctx.table_id = table as u8;
            let Some(rule) = self.tables[table].lookup_only(&ctx.key) else {
                // Table miss without a miss rule: drop.
                break;
            };
            self.counters[table].matches += 1;
            rule.stats.add(1, ctx.frame.len() as u64);
            let id = rule.id;
            let ins = rule.data.instructions.clone();
            ctx.cookie = rule.data.cookie;
            let is_miss = rule.priority == 0 && rule.matches.is_empty();
            if let Some(r) = self.tables[table].get_mut(id) {
                r.data.last_hit = now;
            }
            let mut next = None;
            // The meter instruction runs first (OpenFlow 1.3 §5.9).
            for i in &ins {
                if let Instruction::Meter(m) = i
                    && let Some(m) = self.meters.get_mut(m)
                    && !m.pass(ctx.frame.len(), now)
                {
                    return;
                }
            }
            for i in &ins {
                match i {
                    Instruction::ApplyActions(a) => {
                        for act in a {
                            if let Action::Output { port, max_len } = act {
                                let reason = if is_miss && *port == port_no::CONTROLLER {
                                    REASON_NO_MATCH
                                } else {
                                    REASON_ACTION
                                };
                                self.output(ctx, *port, *max_len, reason, out);
                            } else {
                                self.run_actions(ctx, std::slice::from_ref(act), 0, out);
                            }
                        }
                    }
                    Instruction::WriteActions(a) => {
                        for act in a {
                            action_set.retain(|x| {
                                std::mem::discriminant(x) != std::mem::discriminant(act)
                            });
                            action_set.push(act.clone());
                        }
                    }
                    Instruction::ClearActions => action_set.clear(),
                    Instruction::WriteMetadata { metadata, mask } => {
                        ctx.meta.metadata = (ctx.meta.metadata & !mask) | (metadata & mask);
                        ctx.key.set(FieldId::Metadata, ctx.meta.metadata as u128);
                    }
                    Instruction::GotoTable(t) => next = Some(*t as usize),
                    _ => {}
                }
            }
            match next {
                Some(t) if t > table && t < N_TABLES => table = t,
                _ => break,
            }
        }
        // Action set: group overrides output.
        if let Some(g) = action_set.iter().find_map(|a| match a {
            Action::Group(g) => Some(*g),
            _ => None,
        }) {
            self.run_group(ctx, g, 0, out);
        } else if let Some(Action::Output { port, max_len }) = action_set
            .iter()
            .find(|a| matches!(a, Action::Output { .. }))
        {
            self.output(ctx, *port, *max_len, REASON_ACTION, out);
        }
    }
}

impl Engine for SimplePipeline {
    fn set_ports(&mut self, ports: &[PortInfo]) {
        self.ports = ports.to_vec();
    }

    fn flow_mod(&mut self, fm: &FlowMod, now: Instant) -> Result<Vec<FlowRemoved>, OfpError> {
        match fm.command {
            FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                if fm.table_id as usize >= N_TABLES {
                    return Err(fmf(FlowModFailedCode::BadTableId));
                }
                self.validate(fm)?;
            }
            _ => {}
        }
        let t = fm.table_id as usize;
        let filter = |r: &Rule<Entry>| {
            (r.data.cookie & fm.cookie_mask) == (fm.cookie & fm.cookie_mask)
                && outputs_to(&r.data.instructions, fm.out_port, fm.out_group)
        };
        let mut removed = Vec::new();
        match fm.command {
            FlowModCommand::Add => {
                let tbl = &mut self.tables[t];
                if fm.flags & flow_mod_flags::CHECK_OVERLAP != 0 {
                    let b = crate::flow::MaskedKey::from_match(&fm.match_);
                    let own = crate::classifier::CompactMatch::new(&fm.match_);
                    let overlap = tbl.overlaps(&b, fm.priority, |r| r.matches == own);
                    if overlap {
                        return Err(fmf(FlowModFailedCode::Overlap));
                    }
                }
                let entry = Entry {
                    cookie: fm.cookie,
                    flags: fm.flags,
                    idle: fm.idle_timeout,
                    hard: fm.hard_timeout,
                    created: now,
                    last_hit: now,
                    instructions: fm.instructions.clone(),
                };
                let (id, old) = tbl.insert(fm.match_.clone(), fm.priority, entry);
                if let Some(old) = old
                    && fm.flags & flow_mod_flags::RESET_COUNTS == 0
                    && let Some(r) = tbl.get(id)
                {
                    r.stats.copy_from(&old.stats);
                }
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                let reset = fm.flags & flow_mod_flags::RESET_COUNTS != 0;
                let f = |r: &mut Rule<Entry>| {
                    r.data.instructions = fm.instructions.clone();
                    if reset {
                        r.stats.copy_from(&Default::default());
                    }
                };
                let tbl = &mut self.tables[t];
                if fm.command == FlowModCommand::Modify {
                    tbl.modify_loose(&fm.match_, filter, f);
                } else {
                    tbl.modify_strict(&fm.match_, fm.priority, filter, f);
                }
            }
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                for t in self.tables_for(fm.table_id)? {
                    let tbl = &mut self.tables[t];
                    let gone = if fm.command == FlowModCommand::Delete {
                        tbl.remove_loose(&fm.match_, filter)
                    } else {
                        tbl.remove_strict(&fm.match_, fm.priority, filter)
                            .into_iter()
                            .collect()
                    };
                    for r in gone {
                        if r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0 {
                            removed.push(Self::removed(&r, t as u8, RR_DELETE, now));
                        }
                    }
                }
            }
        }
        Ok(removed)
    }

    fn group_mod(&mut self, gm: &GroupMod) -> Result<(), OfpError> {
        if gm.group_id > group_id::MAX && gm.command != GroupModCommand::Delete {
            return Err(gmf(GroupModFailedCode::InvalidGroup));
        }
        match gm.command {
            GroupModCommand::Add | GroupModCommand::Modify => {
                for b in &gm.buckets {
                    self.validate_actions(&b.actions).map_err(|e| match e {
                        OfpError::BadAction(BadActionCode::BadOutGroup) => {
                            gmf(GroupModFailedCode::ChainingUnsupported)
                        }
                        e => e,
                    })?;
                }
                if gm.group_type == GroupType::Indirect && gm.buckets.len() != 1 {
                    return Err(gmf(GroupModFailedCode::InvalidGroup));
                }
                let exists = self.groups.contains_key(&gm.group_id);
                if gm.command == GroupModCommand::Add && exists {
                    return Err(gmf(GroupModFailedCode::GroupExists));
                }
                if gm.command == GroupModCommand::Modify && !exists {
                    return Err(gmf(GroupModFailedCode::UnknownGroup));
                }
                let created = self
                    .groups
                    .get(&gm.group_id)
                    .map_or(Instant::now(), |g| g.created);
                self.groups.insert(
                    gm.group_id,
                    Group {
                        gm: gm.clone(),
                        created,
                        packets: 0,
                        bytes: 0,
                    },
                );
            }
            GroupModCommand::Delete => {
                if gm.group_id == group_id::ALL {
                    self.groups.clear();
                } else {
                    self.groups.remove(&gm.group_id);
                }
            }
        }
        Ok(())
    }

    fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), OfpError> {
        if (mm.meter_id == 0 || mm.meter_id > OFPM_MAX)
            && !(mm.command == MeterModCommand::Delete && mm.meter_id == OFPM_ALL)
        {
            return Err(mmf(MeterModFailedCode::InvalidMeter));
        }
        let exists = self.meters.contains_key(&mm.meter_id);
        match mm.command {
            MeterModCommand::Add | MeterModCommand::Modify => {
                if mm.command == MeterModCommand::Add && exists {
                    return Err(mmf(MeterModFailedCode::MeterExists));
                }
                if mm.command == MeterModCommand::Modify && !exists {
                    return Err(mmf(MeterModFailedCode::UnknownMeter));
                }
                self.meters
                    .insert(mm.meter_id, Meter::new(mm, Instant::now()));
            }
            MeterModCommand::Delete => {
                if mm.meter_id == OFPM_ALL {
                    self.meters.clear();
                } else {
                    self.meters.remove(&mm.meter_id);
                }
            }
        }
        Ok(())
    }

    fn process(&mut self, in_port: u32, frame: &[u8], now: Instant, out: &mut dyn Sink) {
        let meta = PacketMeta {
            in_port,
            ..Default::default()
        };
        let (key, _) = parse(frame, &meta);
        let mut ctx = Ctx {
            key,
            meta,
            frame,
            table_id: 0,
            cookie: 0,
        };
        self.run_tables(&mut ctx, 0, now, out);
    }

    fn packet_out(
        &mut self,
        po: &PacketOut,
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), OfpError> {
        self.validate_actions(&po.actions)?;
        let meta = PacketMeta {
            in_port: po.in_port,
            ..Default::default()
        };
        let (key, _) = parse(&po.data, &meta);
        let mut ctx = Ctx {
            key,
            meta,
            frame: &po.data,
            table_id: 0xff,
            cookie: u64::MAX,
        };
        for a in &po.actions {
            match a {
                Action::Output {
                    port: port_no::TABLE,
                    ..
                } => self.run_tables(&mut ctx, 0, now, out),
                a => self.run_actions(&mut ctx, std::slice::from_ref(a), 0, out),
            }
        }
        Ok(())
    }

    fn expire(&mut self, now: Instant) -> Vec<FlowRemoved> {
        let mut out = Vec::new();
        for (t, tbl) in self.tables.iter_mut().enumerate() {
            if tbl.is_empty() {
                continue;
            }
            let due: Vec<(u64, u8)> = tbl
                .iter()
                .filter_map(|r| {
                    let e = &r.data;
                    if e.hard != 0 && now >= e.created + Duration::from_secs(e.hard as u64) {
                        Some((r.id, RR_HARD))
                    } else if e.idle != 0 && now >= e.last_hit + Duration::from_secs(e.idle as u64)
                    {
                        Some((r.id, RR_IDLE))
                    } else {
                        None
                    }
                })
                .collect();
            for (id, reason) in due {
                if let Some(r) = tbl.remove(id)
                    && r.data.flags & flow_mod_flags::SEND_FLOW_REM != 0
                {
                    out.push(Self::removed(&r, t as u8, reason, now));
                }
            }
        }
        out
    }

    fn flow_stats(&self, req: &FlowStatsRequest, now: Instant) -> Result<Vec<FlowStats>, OfpError> {
        Ok(self
            .select(req)?
            .map(|(t, r)| {
                let (s, ns) = dur(now, r.data.created);
                FlowStats {
                    table_id: t,
                    duration_sec: s,
                    duration_nsec: ns,
                    priority: r.priority,
                    idle_timeout: r.data.idle,
                    hard_timeout: r.data.hard,
                    flags: r.data.flags,
                    cookie: r.data.cookie,
                    packet_count: r.stats.packets(),
                    byte_count: r.stats.bytes(),
                    match_: r.match_(),
                    instructions: r.data.instructions.clone(),
                }
            })
            .collect())
    }

    fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, OfpError> {
        let mut a = AggregateStats::default();
        for (_, r) in self.select(req)? {
            a.packet_count += r.stats.packets();
            a.byte_count += r.stats.bytes();
            a.flow_count += 1;
        }
        Ok(a)
    }

    fn table_stats(&self) -> Vec<TableStats> {
        (0..N_TABLES)
            .map(|t| TableStats {
                table_id: t as u8,
                active_count: self.tables[t].len() as u32,
                lookup_count: self.counters[t].lookups,
                matched_count: self.counters[t].matches,
            })
            .collect()
    }

    fn group_desc(&self) -> Vec<GroupDesc> {
        self.groups
            .values()
            .map(|g| GroupDesc {
                group_type: g.gm.group_type,
                group_id: g.gm.group_id,
                buckets: g.gm.buckets.clone(),
            })
            .collect()
    }

    fn group_stats(&self, id: u32, now: Instant) -> Vec<GroupStats> {
        self.groups
            .values()
            .filter(|g| id == group_id::ALL || g.gm.group_id == id)
            .map(|g| {
                let (s, ns) = dur(now, g.created);
                let refs = self
                    .tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .filter(|r| outputs_to(&r.data.instructions, port_no::ANY, g.gm.group_id))
                    .count();
                GroupStats {
                    group_id: g.gm.group_id,
                    ref_count: refs as u32,
                    packet_count: g.packets,
                    byte_count: g.bytes,
                    duration_sec: s,
                    duration_nsec: ns,
                    bucket_stats: g.gm.buckets.iter().map(|_| (0, 0)).collect(),
                }
            })
            .collect()
    }

    fn meter_config(&self, id: u32) -> Vec<MeterConfig> {
        self.meters
            .values()
            .filter(|m| id == OFPM_ALL || m.mm.meter_id == id)
            .map(|m| MeterConfig {
                flags: m.mm.flags,
                meter_id: m.mm.meter_id,
                bands: m.mm.bands.clone(),
            })
            .collect()
    }

    fn meter_stats(&self, id: u32, now: Instant) -> Vec<MeterStats> {
        self.meters
            .values()
            .filter(|m| id == OFPM_ALL || m.mm.meter_id == id)
            .map(|m| {
                let (s, ns) = dur(now, m.created);
                MeterStats {
                    meter_id: m.mm.meter_id,
                    flow_count: self
                        .tables
                        .iter()
                        .flat_map(|t| t.iter())
                        .filter(|r| {
                            r.data
                                .instructions
                                .contains(&Instruction::Meter(m.mm.meter_id))
                        })
                        .count() as u32,
                    packet_in_count: m.packets,
                    byte_in_count: m.bytes,
                    duration_sec: s,
                    duration_nsec: ns,
                    band_stats: m.band_drops.clone(),
                }
            })
            .collect()
    }
}
