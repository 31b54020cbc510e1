//! Introspection for the control socket (`plexus-appctl`): a traced
//! translation (`trace`, like OVS `ofproto/trace`), the megaflow cache
//! (`dump-cache`, `cache-flush`), the NORMAL MAC table (`fdb/show`), and
//! NORMAL on its own for fail-mode standalone. Nothing here runs on the
//! per-packet path except [`Pipeline::process_normal`] in standalone mode.

use std::time::{Duration, Instant};

use plexus_openflow::message::GroupType;
use plexus_openflow::oxm::{FieldId, Match};
use plexus_openflow::{Action, Instruction};

use super::xlate::{Op, TraceEvent, Xlate};
use super::{Emit, PacketBuf, Pipeline};
use crate::cache::CacheStats;
use crate::flow::FlowKey;

/// One step of a traced translation, resolved for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceStep {
    /// A table lookup at resubmit depth `depth`; `rule` is `None` on a miss.
    Table {
        depth: u8,
        table: u8,
        rule: Option<TracedRule>,
    },
    /// A group bucket that ran.
    Bucket {
        depth: u8,
        group: u32,
        group_type: GroupType,
        bucket: u16,
        actions: Vec<Action>,
    },
}

/// The flow entry a traced lookup hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedRule {
    pub priority: u16,
    pub cookie: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

/// The result of [`Pipeline::trace`].
#[derive(Debug, Clone)]
pub struct Trace {
    /// The flow as given.
    pub flow: FlowKey,
    /// The flow after the pipeline's rewrites.
    pub final_flow: FlowKey,
    pub steps: Vec<TraceStep>,
    /// The datapath operations (what the megaflow would cache).
    pub ops: Vec<Op>,
    /// The megaflow mask: key bits the translation examined.
    pub mask: FlowKey,
}

/// One cached megaflow (`dump-cache`).
#[derive(Debug, Clone)]
pub struct MegaflowDump {
    /// `None`: the main cache; `Some(t)`: the recirculation cache of table `t`.
    pub recirc_table: Option<u8>,
    /// Masked key.
    pub key: FlowKey,
    pub mask: FlowKey,
    pub hits: u64,
    /// Time since it was installed.
    pub age: Duration,
    /// Computed at an older generation (will be recomputed on next use).
    pub stale: bool,
    pub ops: Vec<Op>,
}

/// Cache summary (`dump-cache`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheSummary {
    pub generation: u64,
    pub enabled: bool,
    pub megaflows: usize,
    pub masks: usize,
    pub emc_entries: usize,
    pub stats: CacheStats,
}

/// A learned MAC (`fdb/show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacEntry {
    pub port: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub age: Duration,
}

impl Pipeline {
    /// Translates `key` from table 0 like the slow path does, recording the
    /// tables, rules and buckets visited. Reads the pipeline only (no
    /// counters, no cache, no MAC learning).
    pub fn trace(&self, key: &FlowKey) -> Trace {
        let mut x = Xlate::new(self, *key, false);
        x.trace = Some(Vec::new());
        x.run();
        let events = x.trace.take().unwrap_or_default();
        let steps = events.iter().map(|e| self.resolve(e)).collect();
        Trace {
            flow: *key,
            final_flow: x.key,
            steps,
            ops: x.out.ops,
            mask: x.wc,
        }
    }

    fn resolve(&self, e: &TraceEvent) -> TraceStep {
        match *e {
            TraceEvent::Table { depth, table, rule } => TraceStep::Table {
                depth,
                table,
                rule: rule
                    .and_then(|id| self.tables.get(table as usize)?.get(id))
                    .map(|r| TracedRule {
                        priority: r.priority,
                        cookie: r.data.cookie,
                        match_: r.match_(),
                        instructions: r.data.instructions.to_vec(),
                    }),
            },
            TraceEvent::Bucket {
                depth,
                group,
                bucket,
            } => {
                let g = self.groups.get(&group);
                TraceStep::Bucket {
                    depth,
                    group,
                    group_type: g.map_or(GroupType::All, |g| g.group_type),
                    bucket,
                    actions: g
                        .and_then(|g| g.buckets.get(bucket as usize))
                        .map(|b| b.actions.clone())
                        .unwrap_or_default(),
                }
            }
        }
    }

    /// Where NORMAL would send a frame to `dst` on `vlan` now: the learned
    /// port, or `None` (flood).
    pub fn normal_lookup(&self, vlan: u16, dst: [u8; 6], now: Instant) -> Option<u32> {
        if dst[0] & 1 != 0 {
            return None;
        }
        self.mac
            .get(&(vlan, dst))
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.mac_aging)
            .map(|(p, _)| *p)
    }

    /// The learned MACs that have not aged out, by port, VLAN and MAC.
    pub fn mac_table(&self, now: Instant) -> Vec<MacEntry> {
        let mut v: Vec<MacEntry> = self
            .mac
            .iter()
            .map(|(&(vlan, mac), &(port, t))| MacEntry {
                port,
                vlan,
                mac,
                age: now.saturating_duration_since(t),
            })
            .filter(|e| e.age < self.mac_aging)
            .collect();
        v.sort_by_key(|e| (e.port, e.vlan, e.mac));
        v
    }

    /// Forgets every learned MAC.
    pub fn mac_flush(&mut self) {
        self.mac.clear();
    }

    /// Fail-mode standalone without a controller: the frame goes through
    /// NORMAL only (MAC learning, aging, flooding), ignoring the tables.
    pub fn process_normal(
        &mut self,
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        self.counters.packets += 1;
        self.execute(&[Op::Normal], in_port, pkt, now, out);
    }

    /// Every cached megaflow (main cache first, then per recirculation table).
    pub fn megaflows(&self) -> Vec<MegaflowDump> {
        let generation = self.generation;
        let now = Instant::now();
        let mut v = Vec::new();
        let caches = std::iter::once((None, Some(&self.cache))).chain(
            self.recirc_cache
                .iter()
                .enumerate()
                .map(|(t, c)| (Some(t as u8), c.as_ref())),
        );
        for (recirc_table, c) in caches {
            let Some(c) = c else { continue };
            for (mask, e) in c.megaflows.iter() {
                v.push(MegaflowDump {
                    recirc_table,
                    key: e.key,
                    mask: *mask,
                    hits: e.hits,
                    age: now.saturating_duration_since(e.created),
                    stale: e.epoch != generation,
                    ops: e.action.ops.clone(),
                });
            }
        }
        v
    }

    /// Cache sizes and hit counters.
    pub fn cache_summary(&self) -> CacheSummary {
        CacheSummary {
            generation: self.generation,
            enabled: self.cache_enabled,
            megaflows: self.cache.megaflows.len()
                + self
                    .recirc_cache
                    .iter()
                    .flatten()
                    .map(|c| c.megaflows.len())
                    .sum::<usize>(),
            masks: self.cache.megaflows.n_masks(),
            emc_entries: self.cache.emc.len_at(self.generation),
            stats: self.cache.stats,
        }
    }

    /// Empties the EMC and the megaflow caches (the next packets take the
    /// slow path and install fresh megaflows).
    pub fn cache_flush(&mut self) {
        self.cache.megaflows.flush();
        self.cache.emc.flush();
        for c in &mut self.recirc_cache {
            *c = None;
        }
    }
}

/// `key` for printing (`Flow:` of a trace): the fields that are set, plus
/// the addresses and ports of its protocol even when zero.
pub fn key_match(key: &FlowKey) -> Match {
    use FieldId::*;
    let full = FlowKey {
        w: [u64::MAX; crate::flow::FLOW_WORDS],
    };
    let core = [
        InPort, EthSrc, EthDst, EthType, IpProto, Ipv4Src, Ipv4Dst, Ipv6Src, Ipv6Dst, TcpSrc,
        TcpDst, UdpSrc, UdpDst, SctpSrc, SctpDst, Icmpv4Type, Icmpv4Code, Icmpv6Type, Icmpv6Code,
        ArpOp, ArpSpa, ArpTpa,
    ];
    let all = masked_key_match(key, &full);
    let mut m = Match::new();
    for f in FieldId::all() {
        if let Some(v) = all.get(f)
            && (v.value != 0 || core.contains(&f))
        {
            m.set_field(*v);
        }
    }
    m
}

/// The key fields worth printing for `key` under `mask` (shared storage
/// resolved by the key's ethertype and IP protocol), as a [`Match`].
pub fn masked_key_match(key: &FlowKey, mask: &FlowKey) -> Match {
    use FieldId::*;
    let eth = key.get(EthType) as u16;
    let proto = key.get(IpProto) as u8;
    let is_ip = eth == 0x0800 || eth == 0x86dd;
    let mut fields: Vec<FieldId> = vec![
        InPort, PktMark, Metadata, TunnelId, TunIpv4Src, TunIpv4Dst, EthSrc, EthDst, EthType,
        VlanTci,
    ];
    fields.extend(
        [
            Reg0, Reg1, Reg2, Reg3, Reg4, Reg5, Reg6, Reg7, Reg8, Reg9, Reg10, Reg11, Reg12, Reg13,
            Reg14, Reg15, CtState, CtZone, CtMark, CtLabel,
        ]
        .iter(),
    );
    match eth {
        0x0806 | 0x8035 => fields.extend([ArpOp, ArpSpa, ArpTpa, ArpSha, ArpTha]),
        0x8847 | 0x8848 => fields.extend([MplsLabel, MplsTc, MplsBos, MplsTtl]),
        0x0800 => fields.extend([Ipv4Src, Ipv4Dst]),
        0x86dd => fields.extend([Ipv6Src, Ipv6Dst, Ipv6Flabel]),
        _ => {}
    }
    if is_ip {
        fields.extend([IpProto, IpDscp, IpEcn, IpTtl, IpFrag]);
        match (eth, proto) {
            (_, 6) => fields.extend([TcpSrc, TcpDst, TcpFlags]),
            (_, 17) => fields.extend([UdpSrc, UdpDst]),
            (_, 132) => fields.extend([SctpSrc, SctpDst]),
            (0x0800, 1) => fields.extend([Icmpv4Type, Icmpv4Code]),
            (0x86dd, 58) => fields.extend([Icmpv6Type, Icmpv6Code, Ipv6NdTarget]),
            _ => {}
        }
    }
    let mut m = Match::new();
    for f in fields {
        let mk = mask.get(f);
        if mk != 0 {
            let full = f.full_mask();
            let v = key.get(f) & mk;
            if mk == full {
                m.set(f, v);
            } else {
                m.set_masked(f, v, mk);
            }
        }
    }
    m
}
