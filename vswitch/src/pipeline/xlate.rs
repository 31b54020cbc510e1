//! Translation: flow key → datapath operations ([`Op`]) plus the wildcards
//! (key bits the result depends on). This is the slow path; its output is
//! what the megaflow cache stores and what [`exec`](super::exec) replays on
//! the packet bytes, so a cached packet and an uncached one run the very
//! same operations.
//!
//! Translation only reads the pipeline (`&Pipeline`); counters are recorded
//! as [`Credit`]s and applied by the caller.

// Guards with side effects (wildcard tracking) read better as nested ifs.
#![allow(clippy::collapsible_match)]

use super::packet::{ETH_IPV4, ETH_IPV6, ETH_MPLS, ETH_MPLS_MC, ETH_PBB};
use super::{Pipeline, reason};
use crate::classifier::RuleId;
use crate::conntrack::{CtRequest, NatSpec, nat_kind};
use crate::flow::{FlowKey, TunnelMeta, VLAN_CFI, layout};
use plexus_openflow::action::{
    Ct, CtZone, Learn, LearnDst, LearnSrc, Nat, Subfield, ct_flags, learn_flags, nat_flags,
};
use plexus_openflow::message::{
    FlowMod, FlowModCommand, GroupType, OFP_NO_BUFFER, flow_mod_flags, group_id, port_no,
};
use plexus_openflow::oxm::{FieldId, Match, MatchField};
use plexus_openflow::{Action, Instruction};

/// Bound on nested resubmits (OVS: 64).
pub const MAX_RESUBMIT_DEPTH: usize = 64;
/// Bound on resubmits per packet (OVS: 4096).
pub const MAX_RESUBMITS: usize = 4096;

/// Why translation or execution dropped a packet (for counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The resubmit depth/count bound was hit: the whole translation is dropped.
    ResubmitLimit,
    /// dec_ttl on TTL 0/1 (after the packet-ins).
    TtlExpired,
}

/// A packet-in to send, as translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInSpec {
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    pub match_: Match,
    pub max_len: u16,
    pub userdata: Option<Vec<u8>>,
    pub controller_id: u16,
}

/// One datapath operation on the packet bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Output(u32),
    /// Output to a tunnel port with the tunnel metadata at this point
    /// (`set_field:..->tun_id`, `tun_dst`, or as received).
    OutputTunnel(Box<(u32, TunnelMeta)>),
    PacketIn(Box<PacketInSpec>),
    SetField {
        field: FieldId,
        value: u128,
        mask: u128,
    },
    PushVlan(u16),
    PopVlan,
    PushMpls(u16),
    PopMpls(u16),
    PushPbb(u16),
    PopPbb,
    SetNwTtl(u8),
    DecNwTtl,
    SetMplsTtl(u8),
    DecMplsTtl,
    CopyTtlIn,
    CopyTtlOut,
    SetQueue(u32),
    /// Meter: stop here if the meter drops the packet.
    Meter(u32),
    /// The NORMAL action (MAC learning switch), decided per packet.
    Normal,
    /// A `learn` flow to add (or refresh).
    Learn(Box<FlowMod>),
    /// Packet-out `output:TABLE`: run the pipeline on the current bytes.
    Table,
    /// Save a copy of the packet (group bucket / clone start).
    Save,
    /// Restore the last saved copy.
    Restore,
    Drop(DropReason),
    /// `ct`: run the packet through conntrack (NAT rewrites the bytes); with
    /// a recirculation table, a fork of the packet continues there with the
    /// ct fields set while this op list goes on.
    Ct(Box<CtOp>),
    /// Re-parse the rewritten bytes (after `pop_mpls`) and continue the
    /// pipeline from a table with the carried metadata (OVS recirculates
    /// the same way): later tables see the inner L3/L4 fields.
    Recirc(Box<RecircOp>),
}

/// A translated re-parse continuation (`pop_mpls` then `goto_table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecircOp {
    pub table: u8,
    /// The key at the fork: the [`CT_META_WORDS`] and the [`CT_FIELDS`]
    /// are carried over to the re-parsed key (the megaflow matches them).
    pub meta: FlowKey,
    /// The action set at the fork (the continuation inherits it).
    pub action_set: Vec<Action>,
}

/// A translated `ct` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtOp {
    pub req: CtRequest,
    pub recirc: Option<u8>,
    /// Pipeline metadata at the `ct` (in_port, metadata, tunnel, registers):
    /// only the [`CT_META_WORDS`] are meaningful. The megaflow matches them
    /// exactly.
    pub meta: FlowKey,
    /// The action set at the fork (the recirculated packet inherits it).
    pub action_set: Vec<Action>,
}

/// Key words carried across a recirculation: in_port/pkt_mark, metadata,
/// tunnel metadata, registers.
pub const CT_META_WORDS: [usize; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22, 23, 24, 25];

/// The ct match fields, cleared after a `ct` and by `ct_clear`.
pub(crate) const CT_FIELDS: [FieldId; 11] = {
    use FieldId::*;
    [
        CtState, CtZone, CtMark, CtLabel, CtNwProto, CtNwSrc, CtNwDst, CtIpv6Src, CtIpv6Dst,
        CtTpSrc, CtTpDst,
    ]
};

impl Op {
    /// Whether the op changes the packet bytes.
    pub fn modifies(&self) -> bool {
        matches!(
            self,
            Op::SetField { .. }
                | Op::PushVlan(_)
                | Op::PopVlan
                | Op::PushMpls(_)
                | Op::PopMpls(_)
                | Op::PushPbb(_)
                | Op::PopPbb
                | Op::SetNwTtl(_)
                | Op::DecNwTtl
                | Op::SetMplsTtl(_)
                | Op::DecMplsTtl
                | Op::CopyTtlIn
                | Op::CopyTtlOut
                | Op::Restore
                | Op::Ct(_)
        )
    }
}

/// A counter to bump for each packet that takes a translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    Lookup { table: u8, matched: bool },
    Rule { table: u8, id: RuleId },
    Group(u32),
    Bucket { group: u32, bucket: u16 },
}

/// A translation: what the megaflow cache stores.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub ops: Vec<Op>,
    pub credits: Vec<Credit>,
}

/// The OpenFlow action set.
#[derive(Debug, Clone, Default)]
struct ActionSet {
    copy_ttl_in: bool,
    pop_vlan: bool,
    pop_mpls: Option<u16>,
    push_mpls: Option<u16>,
    push_vlan: Option<u16>,
    copy_ttl_out: bool,
    dec_mpls_ttl: bool,
    dec_nw_ttl: bool,
    sets: Vec<Action>,
    set_queue: Option<u32>,
    group: Option<u32>,
    output: Option<Action>,
}

impl ActionSet {
    fn write(&mut self, acts: &[Action]) {
        for a in acts {
            match a {
                Action::CopyTtlIn => self.copy_ttl_in = true,
                Action::PopVlan => self.pop_vlan = true,
                Action::PopMpls(e) => self.pop_mpls = Some(*e),
                Action::PushMpls(e) => self.push_mpls = Some(*e),
                Action::PushVlan(e) => self.push_vlan = Some(*e),
                Action::CopyTtlOut => self.copy_ttl_out = true,
                Action::DecMplsTtl => self.dec_mpls_ttl = true,
                Action::DecNwTtl => self.dec_nw_ttl = true,
                Action::SetQueue(q) => self.set_queue = Some(*q),
                Action::Group(g) => self.group = Some(*g),
                Action::Output { .. } | Action::OutputReg { .. } | Action::Controller(_) => {
                    self.output = Some(a.clone())
                }
                Action::SetField(mf) => {
                    if let Some(x) = self
                        .sets
                        .iter_mut()
                        .find(|x| matches!(x, Action::SetField(o) if o.field == mf.field))
                    {
                        *x = a.clone();
                    } else {
                        self.sets.push(a.clone());
                    }
                }
                Action::SetNwTtl(_) | Action::SetMplsTtl(_) => {
                    let d = std::mem::discriminant(a);
                    if let Some(x) = self
                        .sets
                        .iter_mut()
                        .find(|x| std::mem::discriminant(*x) == d)
                    {
                        *x = a.clone();
                    } else {
                        self.sets.push(a.clone());
                    }
                }
                other => self.sets.push(other.clone()),
            }
        }
    }

    /// The set as an action list in the OpenFlow 1.3 §5.10 order.
    fn into_list(self) -> Vec<Action> {
        let mut v = Vec::new();
        if self.copy_ttl_in {
            v.push(Action::CopyTtlIn);
        }
        if self.pop_vlan {
            v.push(Action::PopVlan);
        }
        if let Some(e) = self.pop_mpls {
            v.push(Action::PopMpls(e));
        }
        if let Some(e) = self.push_mpls {
            v.push(Action::PushMpls(e));
        }
        if let Some(e) = self.push_vlan {
            v.push(Action::PushVlan(e));
        }
        if self.copy_ttl_out {
            v.push(Action::CopyTtlOut);
        }
        if self.dec_mpls_ttl {
            v.push(Action::DecMplsTtl);
        }
        if self.dec_nw_ttl {
            v.push(Action::DecNwTtl);
        }
        v.extend(self.sets);
        if let Some(q) = self.set_queue {
            v.push(Action::SetQueue(q));
        }
        if let Some(g) = self.group {
            v.push(Action::Group(g));
        } else if let Some(o) = self.output {
            v.push(o);
        }
        v
    }
}

/// `acts` written into an empty action set, as the set would execute them.
pub(crate) fn action_set_order(acts: &[Action]) -> Vec<Action> {
    let mut s = ActionSet::default();
    s.write(acts);
    s.into_list()
}

/// OpenFlow's instruction execution order.
pub(crate) fn inst_rank(i: &Instruction) -> u8 {
    match i {
        Instruction::Meter(_) => 0,
        Instruction::ApplyActions(_) => 1,
        Instruction::ClearActions => 2,
        Instruction::WriteActions(_) => 3,
        Instruction::WriteMetadata { .. } => 4,
        Instruction::GotoTable(_) => 5,
        Instruction::Experimenter { .. } => 6,
    }
}

/// Whether a field lives in the packet bytes (vs. pipeline metadata).
pub(crate) fn is_packet_field(f: FieldId) -> bool {
    use FieldId::*;
    !matches!(
        f,
        InPort
            | InPhyPort
            | Metadata
            | TunnelId
            | TunIpv4Src
            | TunIpv4Dst
            | TunIpv6Src
            | TunIpv6Dst
            | TunFlags
            | TunGbpId
            | TunGbpFlags
            | PktMark
            | ActsetOutput
            | PacketType
            | ConjId
            | CtState
            | CtZone
            | CtMark
            | CtLabel
            | CtNwProto
            | CtNwSrc
            | CtNwDst
            | CtIpv6Src
            | CtIpv6Dst
            | CtTpSrc
            | CtTpDst
    ) && !f.is_register()
}

/// Maps an NX 16-bit port to the OpenFlow 1.3 32-bit one.
pub(crate) fn port16(p: u16) -> u32 {
    if p >= 0xff00 {
        0xffff_0000 | p as u32
    } else {
        p as u32
    }
}

pub(crate) struct Xlate<'p> {
    p: &'p Pipeline,
    pub key: FlowKey,
    pub wc: FlowKey,
    pub out: Compiled,
    aset: ActionSet,
    depth: usize,
    resubmits: usize,
    /// Drop everything from here (TTL expiry, resubmit bound, meter, miss).
    stop: bool,
    /// NX `exit`: no more actions, but the action set runs.
    exit: bool,
    table_id: u8,
    cookie: u64,
    miss_rule: bool,
    packet_out: bool,
    /// A `pop_mpls` changed the packet's L3 type: the next `goto_table`
    /// re-parses the packet (see [`Op::Recirc`]).
    reparse: bool,
    /// `trace` (control socket): the tables and buckets visited, in order.
    /// `None` on the packet path (costs one branch per lookup).
    pub trace: Option<Vec<TraceEvent>>,
}

/// One step of a traced translation (see [`super::trace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// A table lookup at resubmit depth `depth`: the rule hit, or a miss.
    Table {
        depth: u8,
        table: u8,
        rule: Option<RuleId>,
    },
    /// A group bucket executed.
    Bucket { depth: u8, group: u32, bucket: u16 },
}

impl<'p> Xlate<'p> {
    pub fn new(p: &'p Pipeline, key: FlowKey, packet_out: bool) -> Self {
        let mut wc = FlowKey::ZERO;
        // Megaflows always match in_port exactly (like OVS datapath flows).
        wc.set_loc(layout::IN_PORT, u32::MAX as u128);
        Self {
            p,
            key,
            wc,
            out: Compiled::default(),
            aset: ActionSet::default(),
            depth: 0,
            resubmits: 0,
            stop: false,
            exit: false,
            table_id: 0,
            cookie: 0,
            miss_rule: false,
            packet_out,
            reparse: false,
            trace: None,
        }
    }

    fn unwc(&mut self, f: FieldId) {
        let full = f.full_mask();
        self.wc.set_masked(f, full, full);
    }

    /// Runs the pipeline from table 0, then the action set.
    pub fn run(&mut self) {
        let matched = self.run_table(0);
        self.finish(matched);
    }

    /// A recirculated packet: runs the pipeline from `table` with the
    /// inherited action set `aset` (in set order).
    pub fn run_from(&mut self, table: u8, aset: &[Action]) {
        self.aset.write(aset);
        let matched = self.run_table(table);
        self.finish(matched);
    }

    /// Packet-out: runs `actions` as an apply-actions list.
    pub fn run_actions(&mut self, actions: &[Action]) {
        self.table_id = 0xff;
        self.do_actions(actions);
    }

    fn finish(&mut self, matched: bool) {
        if matched && !self.stop {
            self.exit = false;
            let list = std::mem::take(&mut self.aset).into_list();
            self.do_actions(&list);
        }
    }

    /// Looks up `table` and executes the rule's instructions. Returns false
    /// on a table miss (here or in a goto'd table).
    fn run_table(&mut self, table: u8) -> bool {
        let p = self.p;
        let Some(t) = p.tables.get(table as usize) else {
            return false;
        };
        let rule = t.lookup(&self.key, &mut self.wc);
        if let Some(tr) = self.trace.as_mut() {
            tr.push(TraceEvent::Table {
                depth: self.depth as u8,
                table,
                rule: rule.map(|r| r.id),
            });
        }
        self.out.credits.push(Credit::Lookup {
            table,
            matched: rule.is_some(),
        });
        let Some(rule) = rule else {
            return false;
        };
        self.out.credits.push(Credit::Rule { table, id: rule.id });
        let saved = (self.table_id, self.cookie, self.miss_rule);
        self.table_id = table;
        self.cookie = rule.data.cookie;
        self.miss_rule = rule.priority == 0 && rule.matches.is_empty();
        let mut goto = None;
        for inst in rule.data.instructions.iter() {
            if self.stop || self.exit {
                break;
            }
            match inst {
                Instruction::Meter(m) => self.out.ops.push(Op::Meter(*m)),
                Instruction::ApplyActions(a) => self.do_actions(a),
                Instruction::ClearActions => self.aset = ActionSet::default(),
                Instruction::WriteActions(a) => self.aset.write(a),
                Instruction::WriteMetadata { metadata, mask } => {
                    self.key
                        .set_masked(FieldId::Metadata, *metadata as u128, *mask as u128);
                }
                Instruction::GotoTable(n) => goto = Some(*n),
                Instruction::Experimenter { .. } => {}
            }
        }
        let mut matched = true;
        if let Some(n) = goto
            && !self.stop
            && !self.exit
        {
            if self.reparse && !self.packet_out {
                self.recirc(n);
            } else {
                matched = self.run_table(n);
            }
        }
        (self.table_id, self.cookie, self.miss_rule) = saved;
        matched
    }

    fn do_actions(&mut self, acts: &[Action]) {
        for a in acts {
            if self.stop || self.exit {
                return;
            }
            self.do_action(a);
        }
    }

    fn read_sf(&mut self, sf: &Subfield) -> u128 {
        let m = sf.mask();
        self.wc.set_masked(sf.field, m, m);
        (self.key.get(sf.field) & m) >> sf.ofs
    }

    /// Writes `value` under `mask` (field-aligned) into the key and, for
    /// packet fields, emits the rewrite.
    fn write_field(&mut self, field: FieldId, value: u128, mask: u128) {
        use FieldId::*;
        let value = value & mask;
        match field {
            VlanVid | VlanPcp | VlanTci => {
                self.wc
                    .set_loc_masked(layout::VLAN_TCI, VLAN_CFI as u128, VLAN_CFI as u128);
                if self.key.get_loc(layout::VLAN_TCI) & VLAN_CFI as u128 == 0 {
                    return;
                }
                let (v, m) = if field == VlanVid {
                    (value & 0xfff, mask & 0xfff)
                } else {
                    (value, mask)
                };
                self.key.set_masked(field, v, m);
                self.out.ops.push(Op::SetField {
                    field,
                    value: v,
                    mask: m,
                });
                return;
            }
            _ => {}
        }
        self.key.set_masked(field, value, mask);
        if is_packet_field(field) {
            self.out.ops.push(Op::SetField { field, value, mask });
        }
    }

    fn do_action(&mut self, a: &Action) {
        match a {
            Action::Output { port, max_len } => self.output(*port, *max_len),
            Action::Group(g) => self.group(*g, 0),
            Action::SetField(mf) => self.write_field(mf.field, mf.value, mf.mask_or_full()),
            Action::RegLoad { dst, value } => {
                self.write_field(dst.field, (*value as u128) << dst.ofs, dst.mask())
            }
            Action::RegMove { src, dst } => {
                let v = self.read_sf(src);
                self.write_field(dst.field, v << dst.ofs, dst.mask());
            }
            Action::PushVlan(tpid) => {
                self.wc.set_loc(layout::VLAN_TCI, 0xffff);
                let tci = self.key.get_loc(layout::VLAN_TCI) as u16;
                self.key.set_loc(layout::VLAN_TCI, (tci | VLAN_CFI) as u128);
                self.out.ops.push(Op::PushVlan(*tpid));
            }
            Action::PopVlan => {
                self.wc.set_loc(layout::VLAN_TCI, 0xffff);
                if self.key.get_loc(layout::VLAN_TCI) & VLAN_CFI as u128 != 0 {
                    // Only one tag is tracked in the key: after a pop the
                    // packet looks untagged to later lookups.
                    self.key.set_loc(layout::VLAN_TCI, 0);
                    self.out.ops.push(Op::PopVlan);
                }
            }
            Action::PushMpls(et) => {
                // New entry (OpenFlow push-tag defaults): a copy of the outer
                // MPLS entry with BoS clear; else label 0, TC 0, BoS 1 and
                // the IP TTL (0 without IP).
                self.unwc(FieldId::EthType);
                let dl = self.key.get(FieldId::EthType) as u16;
                let (label, tc, ttl, bos) = if dl == ETH_MPLS || dl == ETH_MPLS_MC {
                    self.wc.set_loc(layout::MPLS_LSE, u32::MAX as u128);
                    (
                        self.key.get(FieldId::MplsLabel),
                        self.key.get(FieldId::MplsTc),
                        self.key.get(FieldId::MplsTtl),
                        0,
                    )
                } else if dl == ETH_IPV4 || dl == ETH_IPV6 {
                    self.wc.set_loc(layout::NW_TTL, 0xff);
                    (0, 0, self.key.get_loc(layout::NW_TTL), 1)
                } else {
                    (0, 0, 0, 1)
                };
                self.key.set(FieldId::EthType, *et as u128);
                self.key.set(FieldId::MplsLabel, label);
                self.key.set(FieldId::MplsTc, tc & 7);
                self.key.set(FieldId::MplsTtl, ttl);
                self.key.set(FieldId::MplsBos, bos);
                self.out.ops.push(Op::PushMpls(*et));
            }
            Action::PopMpls(et) => {
                self.unwc(FieldId::EthType);
                let dl = self.key.get(FieldId::EthType) as u16;
                if dl == ETH_MPLS || dl == ETH_MPLS_MC {
                    self.key.set(FieldId::EthType, *et as u128);
                    self.key.set_loc(layout::MPLS_LSE, 0);
                    self.out.ops.push(Op::PopMpls(*et));
                    self.reparse = true;
                }
            }
            Action::PushPbb(et) => {
                // The whole frame becomes the customer frame behind a new
                // backbone header: only L2 is known until a re-parse.
                let (dst, src) = (self.key.get(FieldId::EthDst), self.key.get(FieldId::EthSrc));
                let keep = self.key;
                self.key = FlowKey::ZERO;
                for w in CT_META_WORDS {
                    self.key.w[w] = keep.w[w];
                }
                for f in CT_FIELDS {
                    self.key.set(f, keep.get(f));
                }
                self.key.set(FieldId::EthDst, dst);
                self.key.set(FieldId::EthSrc, src);
                self.key.set(FieldId::EthType, *et as u128);
                self.out.ops.push(Op::PushPbb(*et));
                self.reparse = true;
            }
            Action::PopPbb => {
                self.unwc(FieldId::EthType);
                if self.key.get(FieldId::EthType) == ETH_PBB as u128 {
                    // The customer frame is not in the key: re-parse at
                    // the next goto_table.
                    self.key.set(FieldId::EthType, 0);
                    self.key.set(FieldId::PbbIsid, 0);
                    self.key.set_loc(layout::VLAN_TCI, 0);
                    self.out.ops.push(Op::PopPbb);
                    self.reparse = true;
                }
            }
            Action::SetQueue(q) => self.out.ops.push(Op::SetQueue(*q)),
            Action::SetNwTtl(t) => {
                if self.is_ip() {
                    self.key.set_loc(layout::NW_TTL, *t as u128);
                    self.out.ops.push(Op::SetNwTtl(*t));
                }
            }
            Action::DecNwTtl => self.dec_ttl(&[0]),
            Action::DecTtlCntIds(ids) => self.dec_ttl(ids),
            Action::SetMplsTtl(t) => {
                if self.is_mpls() {
                    self.key.set(FieldId::MplsTtl, *t as u128);
                    self.out.ops.push(Op::SetMplsTtl(*t));
                }
            }
            Action::DecMplsTtl => {
                if self.is_mpls() {
                    self.unwc(FieldId::MplsTtl);
                    let ttl = self.key.get(FieldId::MplsTtl);
                    if ttl <= 1 {
                        self.ttl_expired(&[0]);
                    } else {
                        self.key.set(FieldId::MplsTtl, ttl - 1);
                        self.out.ops.push(Op::DecMplsTtl);
                    }
                }
            }
            Action::CopyTtlIn => self.out.ops.push(Op::CopyTtlIn),
            Action::CopyTtlOut => self.out.ops.push(Op::CopyTtlOut),
            Action::Resubmit { in_port, table, .. } => self.resubmit(*in_port, *table),
            Action::SetTunnel { tun_id, .. } => self.key.set(FieldId::TunnelId, *tun_id as u128),
            Action::OutputReg { src, max_len } => {
                let port = self.read_sf(src) as u32;
                self.output(port, *max_len);
            }
            Action::Learn(l) => self.learn(l),
            Action::Exit => self.exit = true,
            Action::Controller(c) => {
                let userdata = (!c.userdata.is_empty()).then(|| c.userdata.clone());
                self.packet_in(c.reason, c.max_len, userdata, c.controller_id);
            }
            Action::WriteMetadata { metadata, mask } => {
                self.key
                    .set_masked(FieldId::Metadata, *metadata as u128, *mask as u128);
            }
            Action::Clone(acts) => {
                let (key, aset, exit) = (self.key, self.aset.clone(), self.exit);
                let start = self.out.ops.len();
                self.do_actions(acts);
                self.wrap_save(start);
                self.key = key;
                self.aset = aset;
                self.exit = exit;
            }
            Action::Ct(ct) => self.ct(ct),
            Action::CtClear => {
                for f in CT_FIELDS {
                    self.key.set(f, 0);
                }
            }
            // Accepted and ignored: notes, fin_timeout, sampling,
            // conjunction (only meaningful as a match).
            _ => {}
        }
    }

    fn ct(&mut self, ct: &Ct) {
        let zone = match ct.zone {
            CtZone::Imm(z) => z,
            CtZone::Field(sf) => self.read_sf(&sf) as u16,
        };
        let mut req = CtRequest {
            zone,
            commit: ct.flags & ct_flags::COMMIT != 0,
            force: ct.flags & ct_flags::FORCE != 0,
            ..Default::default()
        };
        for a in &ct.actions {
            let (field, v, m) = match a {
                Action::Nat(n) => {
                    req.nat = Some(nat_spec(n));
                    continue;
                }
                Action::SetField(mf) => (mf.field, mf.value, mf.mask_or_full()),
                Action::RegLoad { dst, value } => {
                    (dst.field, (*value as u128) << dst.ofs, dst.mask())
                }
                _ => continue,
            };
            match field {
                FieldId::CtMark => req.mark = Some((v as u32, m as u32)),
                FieldId::CtLabel => req.label = Some((v, m)),
                _ => {}
            }
        }
        let mut meta = FlowKey::ZERO;
        for w in CT_META_WORDS {
            meta.w[w] = self.key.w[w];
            self.wc.w[w] = u64::MAX;
        }
        let action_set = match ct.recirc_table {
            Some(_) => self.aset.clone().into_list(),
            None => Vec::new(),
        };
        self.out.ops.push(Op::Ct(Box::new(CtOp {
            req,
            recirc: ct.recirc_table,
            meta,
            action_set,
        })));
        // The other fork continues untracked (OVS: flow_clear_conntrack).
        for f in CT_FIELDS {
            self.key.set(f, 0);
        }
    }

    /// Ends this translation with a re-parse continuation from `table`:
    /// the action set moves to the continuation and nothing runs here
    /// after it.
    fn recirc(&mut self, table: u8) {
        let mut meta = FlowKey::ZERO;
        for w in CT_META_WORDS {
            meta.w[w] = self.key.w[w];
            self.wc.w[w] = u64::MAX;
        }
        for f in CT_FIELDS {
            meta.set(f, self.key.get(f));
            self.unwc(f);
        }
        let action_set = std::mem::take(&mut self.aset).into_list();
        self.out.ops.push(Op::Recirc(Box::new(RecircOp {
            table,
            meta,
            action_set,
        })));
        self.reparse = false;
        self.stop = true;
    }

    /// Wraps the ops emitted since `start` in Save/Restore if any of them
    /// modifies the packet (a group bucket or clone sees its own copy).
    fn wrap_save(&mut self, start: usize) {
        if self.out.ops[start..].iter().any(Op::modifies) {
            self.out.ops.insert(start, Op::Save);
            self.out.ops.push(Op::Restore);
        }
    }

    fn is_ip(&mut self) -> bool {
        self.unwc(FieldId::EthType);
        let dl = self.key.get(FieldId::EthType) as u16;
        dl == ETH_IPV4 || dl == ETH_IPV6
    }

    fn is_mpls(&mut self) -> bool {
        self.unwc(FieldId::EthType);
        let dl = self.key.get(FieldId::EthType) as u16;
        dl == ETH_MPLS || dl == ETH_MPLS_MC
    }

    fn dec_ttl(&mut self, ids: &[u16]) {
        if !self.is_ip() {
            return;
        }
        self.wc.set_loc(layout::NW_TTL, 0xff);
        let ttl = self.key.get_loc(layout::NW_TTL);
        if ttl <= 1 {
            self.ttl_expired(ids);
        } else {
            self.key.set_loc(layout::NW_TTL, ttl - 1);
            self.out.ops.push(Op::DecNwTtl);
        }
    }

    /// OVS: one packet-in (reason INVALID_TTL) per controller id, then drop.
    fn ttl_expired(&mut self, ids: &[u16]) {
        for &id in ids {
            self.packet_in(reason::INVALID_TTL, u16::MAX, None, id);
        }
        self.out.ops.push(Op::Drop(DropReason::TtlExpired));
        self.stop = true;
    }

    fn packet_in(&mut self, reason: u8, max_len: u16, userdata: Option<Vec<u8>>, cid: u16) {
        // The packet-in match carries pipeline metadata: make it part of the
        // megaflow so a cached packet-in has the right values.
        self.unwc(FieldId::Metadata);
        self.unwc(FieldId::TunnelId);
        for w in 0..8 {
            self.wc.w[layout::REGS as usize + w] = u64::MAX;
        }
        let mut m = Match::new();
        m.set(FieldId::InPort, self.key.get(FieldId::InPort));
        let md = self.key.get(FieldId::Metadata);
        if md != 0 {
            m.set(FieldId::Metadata, md);
        }
        let tun = self.key.get(FieldId::TunnelId);
        if tun != 0 {
            m.set(FieldId::TunnelId, tun);
        }
        for f in REGS {
            let v = self.key.get(f);
            if v != 0 {
                m.set(f, v);
            }
        }
        self.out.ops.push(Op::PacketIn(Box::new(PacketInSpec {
            reason,
            table_id: self.table_id,
            cookie: if self.packet_out {
                u64::MAX
            } else {
                self.cookie
            },
            match_: m,
            max_len,
            userdata,
            controller_id: cid,
        })));
    }

    /// An output op; to a tunnel port it carries the tunnel metadata (so
    /// the megaflow matches the tunnel fields).
    fn output_op(&mut self, port: u32) -> Op {
        if !self.p.tunnel_ports.contains(&port) {
            return Op::Output(port);
        }
        use FieldId::*;
        for f in [TunnelId, TunIpv4Src, TunIpv4Dst, TunFlags] {
            self.unwc(f);
        }
        let t = TunnelMeta {
            id: self.key.get(TunnelId) as u64,
            src: self.key.get(TunIpv4Src) as u32,
            dst: self.key.get(TunIpv4Dst) as u32,
            flags: self.key.get(TunFlags) as u16,
            ..Default::default()
        };
        Op::OutputTunnel(Box::new((port, t)))
    }

    fn output(&mut self, port: u32, max_len: u16) {
        let in_port = self.key.get(FieldId::InPort) as u32;
        let p = self.p;
        match port {
            port_no::IN_PORT => {
                let op = self.output_op(in_port);
                self.out.ops.push(op);
            }
            port_no::CONTROLLER => {
                let r = if self.miss_rule {
                    reason::NO_MATCH
                } else {
                    reason::ACTION
                };
                self.packet_in(r, max_len, None, 0);
            }
            port_no::FLOOD | port_no::ALL => {
                for (&no, info) in &p.ports {
                    if no != in_port && (port == port_no::ALL || info.live) && no != port_no::LOCAL
                    {
                        let op = self.output_op(no);
                        self.out.ops.push(op);
                    }
                }
            }
            port_no::NORMAL => self.out.ops.push(Op::Normal),
            port_no::TABLE => {
                if self.packet_out {
                    self.out.ops.push(Op::Table);
                }
            }
            port_no::ANY => {}
            _ => {
                if port != in_port && p.ports.get(&port).is_some_and(|i| i.live) {
                    let op = self.output_op(port);
                    self.out.ops.push(op);
                }
            }
        }
    }

    fn resubmit(&mut self, in_port: u16, table: Option<u8>) {
        if self.depth >= MAX_RESUBMIT_DEPTH || self.resubmits >= MAX_RESUBMITS {
            self.out.ops.clear();
            self.out.ops.push(Op::Drop(DropReason::ResubmitLimit));
            self.stop = true;
            return;
        }
        self.depth += 1;
        self.resubmits += 1;
        let t = table.unwrap_or(self.table_id);
        let saved = self.key.get(FieldId::InPort);
        if in_port != plexus_openflow::action::port::IN_PORT16 {
            self.key.set(FieldId::InPort, port16(in_port) as u128);
        }
        self.run_table(t);
        if self.key.get(FieldId::InPort) != saved && in_port != 0xfff8 {
            self.key.set(FieldId::InPort, saved);
        }
        self.depth -= 1;
    }

    fn bucket_live(&self, watch_port: u32, watch_group: u32, depth: usize) -> bool {
        if watch_port != port_no::ANY && !self.p.ports.get(&watch_port).is_some_and(|p| p.live) {
            return false;
        }
        if watch_group != group_id::ANY && !self.group_live(watch_group, depth + 1) {
            return false;
        }
        true
    }

    fn group_live(&self, g: u32, depth: usize) -> bool {
        let Some(grp) = self.p.groups.get(&g) else {
            return false;
        };
        if depth > 32 {
            return false;
        }
        match grp.group_type {
            GroupType::FastFailover => grp
                .buckets
                .iter()
                .any(|b| self.bucket_live(b.watch_port, b.watch_group, depth)),
            _ => true,
        }
    }

    /// The select group hash: a stable hash of L2 addresses, ethertype, IP
    /// addresses, protocol and L4 ports.
    fn select_hash(&mut self) -> u64 {
        use FieldId::*;
        let fields = [
            EthSrc, EthDst, EthType, Ipv4Src, Ipv4Dst, IpProto, TcpSrc, TcpDst,
        ];
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |v: u128| {
            for b in v.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for f in fields {
            self.unwc(f);
            mix(self.key.get(f));
        }
        let dl = self.key.get(EthType) as u16;
        if dl == ETH_IPV6 {
            self.unwc(Ipv6Src);
            self.unwc(Ipv6Dst);
            mix(self.key.get(Ipv6Src));
            mix(self.key.get(Ipv6Dst));
        }
        h ^ (h >> 29)
    }

    fn group(&mut self, g: u32, depth: usize) {
        let p = self.p;
        let Some(grp) = p.groups.get(&g) else {
            return;
        };
        if depth > 32 {
            return;
        }
        self.out.credits.push(Credit::Group(g));
        let chosen: Option<usize> = match grp.group_type {
            GroupType::All => {
                for (i, b) in grp.buckets.iter().enumerate() {
                    self.run_bucket(g, i, &b.actions);
                }
                None
            }
            GroupType::Indirect => (!grp.buckets.is_empty()).then_some(0),
            GroupType::FastFailover => grp
                .buckets
                .iter()
                .position(|b| self.bucket_live(b.watch_port, b.watch_group, 0)),
            GroupType::Select => {
                // Weighted rendezvous (highest random weight) hashing: every
                // live bucket scores the flow hash mixed with its key, scaled
                // by its weight (-w / ln u, u uniform in (0,1)); the highest
                // wins. Removing a bucket moves only the flows it had; adding
                // one takes only the flows it now wins — no modulo reshuffle.
                let h = self.select_hash();
                let mut best: Option<(usize, f64)> = None;
                for (i, b) in grp.buckets.iter().enumerate() {
                    if b.weight == 0 || !self.bucket_live(b.watch_port, b.watch_group, 0) {
                        continue;
                    }
                    let key = grp.bucket_keys.get(i).copied().unwrap_or(i as u64);
                    let score = hrw_score(h, key, b.weight);
                    if best.is_none_or(|(_, s)| score > s) {
                        best = Some((i, score));
                    }
                }
                best.map(|(i, _)| i)
            }
        };
        if let Some(i) = chosen {
            self.run_bucket(g, i, &grp.buckets[i].actions);
        }
    }

    fn run_bucket(&mut self, g: u32, i: usize, actions: &[Action]) {
        if let Some(tr) = self.trace.as_mut() {
            tr.push(TraceEvent::Bucket {
                depth: self.depth as u8,
                group: g,
                bucket: i as u16,
            });
        }
        self.out.credits.push(Credit::Bucket {
            group: g,
            bucket: i as u16,
        });
        let (key, exit) = (self.key, self.exit);
        let start = self.out.ops.len();
        self.do_actions(actions);
        if !self.stop {
            self.wrap_save(start);
        }
        self.key = key;
        self.exit = exit;
    }

    fn learn(&mut self, l: &Learn) {
        let mut m = Match::new();
        let mut actions = Vec::new();
        for spec in &l.specs {
            let val = match spec.src {
                LearnSrc::Field(sf) => self.read_sf(&sf),
                LearnSrc::Imm(v) => v,
            };
            match spec.dst {
                LearnDst::Match(sf) => {
                    let mask = sf.mask();
                    let v = (val << sf.ofs) & mask;
                    let (ov, om) = m
                        .get(sf.field)
                        .map(|f| (f.value, f.mask_or_full()))
                        .unwrap_or((0, 0));
                    let nm = om | mask;
                    m.set_field(MatchField::masked(sf.field, (ov & !mask) | v, nm));
                }
                LearnDst::Load(sf) => {
                    if sf.n_bits <= 64 {
                        actions.push(Action::RegLoad {
                            dst: sf,
                            value: val as u64,
                        });
                    } else {
                        actions.push(Action::SetField(MatchField::masked(
                            sf.field,
                            (val << sf.ofs) & sf.mask(),
                            sf.mask(),
                        )));
                    }
                }
                LearnDst::Output => actions.push(Action::output(val as u32)),
            }
        }
        let mut flags = 0;
        if l.flags & learn_flags::SEND_FLOW_REM != 0 {
            flags |= flow_mod_flags::SEND_FLOW_REM;
        }
        let fm = FlowMod {
            cookie: l.cookie,
            cookie_mask: 0,
            table_id: l.table_id,
            command: FlowModCommand::Add,
            idle_timeout: l.idle_timeout,
            hard_timeout: l.hard_timeout,
            priority: l.priority,
            buffer_id: OFP_NO_BUFFER,
            out_port: port_no::ANY,
            out_group: group_id::ANY,
            flags,
            match_: m,
            instructions: vec![Instruction::ApplyActions(actions)],
        };
        self.out.ops.push(Op::Learn(Box::new(fm)));
    }
}

/// The conntrack form of an NX `nat`.
pub(crate) fn nat_spec(n: &Nat) -> NatSpec {
    let kind = if n.flags & nat_flags::SRC != 0 {
        nat_kind::SRC
    } else if n.flags & nat_flags::DST != 0 {
        nat_kind::DST
    } else {
        0
    };
    let addr = match (n.ipv4_min, n.ipv6_min) {
        (Some(a), _) => Some((a as u128, n.ipv4_max.unwrap_or(a) as u128)),
        (None, Some(a)) => Some((a, n.ipv6_max.unwrap_or(a))),
        _ => None,
    };
    let ports = n.proto_min.map(|a| (a, n.proto_max.unwrap_or(a)));
    NatSpec {
        kind,
        addr,
        ports,
        persistent: n.flags & nat_flags::PERSISTENT != 0,
        random: n.flags & nat_flags::PROTO_RANDOM != 0,
    }
}

const REGS: [FieldId; 16] = {
    use FieldId::*;
    [
        Reg0, Reg1, Reg2, Reg3, Reg4, Reg5, Reg6, Reg7, Reg8, Reg9, Reg10, Reg11, Reg12, Reg13,
        Reg14, Reg15,
    ]
};

/// A bucket's rendezvous score for a flow: `-weight / ln(u)` with `u` a
/// uniform value in (0, 1) from mixing the flow hash and the bucket key
/// (splitmix64 finaliser), so each bucket wins with probability
/// proportional to its weight.
pub(crate) fn hrw_score(flow_hash: u64, bucket_key: u64, weight: u16) -> f64 {
    let mut z = flow_hash ^ bucket_key.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // 53 random bits → (0, 1), never 0 or 1.
    let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}
