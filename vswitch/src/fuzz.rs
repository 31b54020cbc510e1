//! Entry points shared by the cargo-fuzz targets (`vswitch/fuzz/`) and the
//! stable corpus test (`tests/fuzz_corpus.rs`). Each one panics only when an
//! invariant is broken — which is exactly what a fuzzer should report.

use std::time::Instant;

use plexus_openflow::message::{
    FlowModCommand, FlowStatsRequest, GroupModCommand, group_id, port_no,
};
use plexus_openflow::text::flow::{parse_flow_mod, parse_group_mod};

use crate::flow::{FlowKey, PacketMeta, parse_into};
use crate::pipeline::{Emit, PacketBuf, Pipeline, PortInfo, TABLE_ALL};

/// Parses `data` as a frame (the first byte, if any, picks the in_port).
/// Invariants: no panic; the key does not depend on what the key held
/// before; parsing is deterministic.
pub fn parse_frame(data: &[u8]) {
    let meta = PacketMeta {
        in_port: data.first().map_or(1, |b| u32::from(*b % 8)),
        ..Default::default()
    };
    let mut a = FlowKey::ZERO;
    let ra = parse_into(&mut a, data, &meta);
    let mut b = FlowKey { w: [u64::MAX; _] };
    let rb = parse_into(&mut b, data, &meta);
    assert_eq!(a, b, "flow key depends on the key's previous contents");
    assert_eq!(ra.is_ok(), rb.is_ok());
}

/// The fixed flow table the pipeline targets run: rewrites with checksum
/// updates, VLAN and MPLS push/pop, TTL decrement, registers, resubmit
/// (incl. a loop cut by the resubmit bound), goto/write-actions, a select
/// group, controller, flood, NORMAL.
pub const FLOWS: &[&str] = &[
    "table=0,priority=100,in_port=1,ip,nw_dst=10.0.0.0/24,actions=set_field:10.1.1.1->ip_src,dec_ttl,goto_table:1",
    "table=0,priority=95,in_port=1,tcp,actions=set_field:8080->tcp_src,set_field:10.2.2.2->ip_dst,output:2",
    "table=0,priority=90,in_port=1,udp,actions=set_field:172.16.0.9->ip_dst,set_field:53->udp_src,output:2",
    "table=0,priority=80,in_port=2,dl_vlan=100,actions=pop_vlan,output:4",
    "table=0,priority=75,in_port=2,ip,actions=output:3,push_vlan:0x8100,set_field:4196->vlan_vid,output:1",
    "table=0,priority=70,in_port=3,ip,actions=push_mpls:0x8847,set_field:42->mpls_label,output:2",
    "table=0,priority=65,mpls,mpls_label=42,actions=dec_mpls_ttl,pop_mpls:0x0800,output:3",
    "table=0,priority=60,in_port=3,ipv6,actions=set_field:fe80::1->ipv6_src,dec_ttl,output:4",
    "table=0,priority=50,arp,actions=flood",
    "table=0,priority=45,icmp,actions=controller:64,output:4",
    "table=0,priority=40,in_port=4,actions=load:0x2->NXM_NX_REG0[],resubmit(,2)",
    "table=0,priority=30,in_port=3,actions=write_actions(output:2,set_field:4101->vlan_vid,push_vlan:0x8100),goto_table:3",
    "table=0,priority=20,ip,actions=group:1",
    "table=0,priority=0,actions=normal",
    "table=1,priority=10,udp,tp_dst=53,actions=output:2,set_field:10.9.9.9->ip_dst,output:3,output:4",
    "table=1,priority=5,ip,nw_ttl=1,actions=controller",
    "table=1,priority=0,actions=output:3",
    "table=2,priority=10,reg0=2,ip,actions=move:NXM_NX_REG0[]->NXM_NX_REG1[],set_field:10.3.3.3->ip_src,output:1",
    "table=2,priority=0,actions=output:2,resubmit(,2)",
    "table=3,priority=0,actions=drop",
];

/// The group table (`ovs-ofctl add-group` syntax).
pub const GROUPS: &[&str] = &["group_id=1,type=select,bucket=output:2,bucket=output:3"];

/// A pipeline of 4 live ports loaded with [`FLOWS`] and [`GROUPS`].
pub fn fixed_pipeline(now: Instant) -> Pipeline {
    let mut p = Pipeline::new(8);
    let ports: Vec<PortInfo> = (1..=4)
        .map(|i| PortInfo {
            port_no: i,
            name: format!("p{i}"),
            hw_addr: [0x02, 0xaa, 0, 0, 0, i as u8],
            live: true,
        })
        .collect();
    p.set_ports(&ports);
    for g in GROUPS {
        let gm = parse_group_mod(g, GroupModCommand::Add).unwrap_or_else(|e| panic!("{g}: {e}"));
        p.group_mod(&gm).unwrap_or_else(|e| panic!("{g}: {e:?}"));
    }
    for f in FLOWS {
        let fm = parse_flow_mod(f, FlowModCommand::Add).unwrap_or_else(|e| panic!("{f}: {e}"));
        p.flow_mod(&fm, now)
            .unwrap_or_else(|e| panic!("{f}: {e:?}"));
    }
    p
}

/// What one packet produced, with output bytes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Output {
        port: u32,
        queue: Option<u32>,
        bytes: Vec<u8>,
    },
    PacketIn(Emit),
}

/// Two pipelines with the same fixed table, one with the megaflow cache and
/// one without, fed the same packets.
#[derive(Debug)]
pub struct Twin {
    pub cached: Pipeline,
    pub uncached: Pipeline,
    now: Instant,
    packets: u64,
    buf: PacketBuf,
    emits: Vec<Emit>,
}

impl Default for Twin {
    fn default() -> Self {
        Self::new()
    }
}

impl Twin {
    pub fn new() -> Self {
        let now = Instant::now();
        let cached = fixed_pipeline(now);
        let mut uncached = fixed_pipeline(now);
        uncached.set_cache_enabled(false);
        Twin {
            cached,
            uncached,
            now,
            packets: 0,
            buf: PacketBuf::new(),
            emits: Vec::new(),
        }
    }

    fn run_one(&mut self, which: bool, in_port: u32, frame: &[u8]) -> Vec<Out> {
        let p = if which {
            &mut self.cached
        } else {
            &mut self.uncached
        };
        self.buf.load(frame);
        self.emits.clear();
        p.process(in_port, &mut self.buf, self.now, &mut self.emits);
        let outs: Vec<Out> = self
            .emits
            .iter()
            .map(|e| match e {
                Emit::Output { port, queue, .. } => Out::Output {
                    port: *port,
                    queue: *queue,
                    bytes: e.bytes(&self.buf).to_vec(),
                },
                Emit::PacketIn { .. } => Out::PacketIn(e.clone()),
            })
            .collect();
        for e in self.emits.drain(..) {
            if let Emit::Output {
                data: crate::pipeline::OutData::Copy(v),
                ..
            } = e
            {
                p.recycle(v);
            }
        }
        outs
    }

    /// Runs one frame through both pipelines. Invariants: no panic; the
    /// cached and uncached pipelines emit the same; outputs of a
    /// well-formed IPv4 frame are well-formed (checksums, lengths); the
    /// counters agree.
    pub fn run(&mut self, in_port: u32, frame: &[u8]) -> Vec<Out> {
        let a = self.run_one(true, in_port, frame);
        let b = self.run_one(false, in_port, frame);
        assert_eq!(
            a, b,
            "cached and uncached pipelines differ for in_port {in_port} frame {frame:02x?}"
        );
        self.packets += 1;
        if ipv4_check(frame) == Some(true) {
            for o in &a {
                if let Out::Output { bytes, port, .. } = o {
                    assert!(
                        ipv4_check(bytes) != Some(false),
                        "well-formed input {frame:02x?} became malformed output {bytes:02x?} on port {port}"
                    );
                }
            }
        }
        for o in &a {
            if let Out::PacketIn(Emit::PacketIn {
                data, total_len, ..
            }) = o
            {
                assert!(
                    data.len() <= *total_len as usize,
                    "packet-in longer than total_len"
                );
            }
        }
        self.check_counters();
        a
    }

    /// Counter invariants: both pipelines counted every packet, the cached
    /// one classified each as a hit or a miss, the uncached one never used
    /// the cache, and per-table and per-flow statistics are equal.
    pub fn check_counters(&self) {
        let (c, u) = (&self.cached.counters, &self.uncached.counters);
        assert_eq!(c.packets, self.packets);
        assert_eq!(u.packets, self.packets);
        assert_eq!(c.cache_hits + c.cache_misses, self.packets, "hits + misses");
        assert_eq!(
            u.cache_hits + u.cache_misses,
            0,
            "uncached pipeline used the cache"
        );
        assert_eq!(c.parse_errors, u.parse_errors);
        assert_eq!(c.resubmit_limit, u.resubmit_limit);
        assert_eq!(c.ttl_expired, u.ttl_expired);
        assert_eq!(self.cached.table_stats(), self.uncached.table_stats());
        for t in self.cached.table_stats() {
            assert!(t.matched_count <= t.lookup_count, "table {}", t.table_id);
        }
        let req = FlowStatsRequest {
            table_id: TABLE_ALL,
            out_port: port_no::ANY,
            out_group: group_id::ANY,
            ..Default::default()
        };
        let counts = |p: &Pipeline| -> Vec<(u8, u16, u64, u64)> {
            p.flow_stats(&req, self.now)
                .expect("flow stats")
                .iter()
                .map(|s| (s.table_id, s.priority, s.packet_count, s.byte_count))
                .collect()
        };
        assert_eq!(counts(&self.cached), counts(&self.uncached), "flow stats");
        let groups = |p: &Pipeline| -> Vec<GroupCounts> {
            p.group_stats(1)
                .into_iter()
                .map(|g| (g.packet_count, g.byte_count, g.bucket_stats))
                .collect()
        };
        assert_eq!(groups(&self.cached), groups(&self.uncached), "group stats");
    }
}

/// A group's (packets, bytes, per-bucket (packets, bytes)).
type GroupCounts = (u64, u64, Vec<(u64, u64)>);

/// Frames from `data`: records of `[port][len hi][len lo][bytes…]`.
pub fn frames(data: &[u8]) -> Vec<(u32, &[u8])> {
    let mut v = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let port = match rest[0] % 6 {
            5 => port_no::LOCAL,
            n => u32::from(n),
        };
        let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])) % 1600;
        let body = &rest[3..];
        let n = len.min(body.len());
        v.push((port, &body[..n]));
        rest = &body[n..];
    }
    v
}

/// Frames decoded from `data` ([`frames`]) through a [`Twin`].
pub fn pipeline_frames(data: &[u8]) {
    let mut t = Twin::new();
    for (port, f) in frames(data) {
        parse_frame(f);
        t.run(port, f);
    }
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// `None` if `frame` is not Ethernet (+ up to two VLAN tags) + IPv4;
/// otherwise whether the IPv4 header is sound (version, IHL, total length
/// within the frame, header checksum) and, for an unfragmented TCP/UDP
/// datagram, whether its checksum is right (UDP checksum 0 = none).
pub fn ipv4_check(frame: &[u8]) -> Option<bool> {
    let mut off = 12;
    let mut ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    let mut tags = 0;
    while (ty == 0x8100 || ty == 0x88a8) && tags < 2 {
        off += 4;
        ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        tags += 1;
    }
    if ty != 0x0800 {
        return None;
    }
    let ip = &frame[off + 2..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Some(false);
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl || total > ip.len() {
        return Some(false);
    }
    if fold(sum16(&ip[..ihl], 0)) != 0xffff {
        return Some(false);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let l4 = &ip[ihl..total];
    let proto = ip[9];
    if frag != 0 || !matches!(proto, 6 | 17) {
        return Some(true);
    }
    if (proto == 6 && l4.len() < 20) || (proto == 17 && l4.len() < 8) {
        return Some(false);
    }
    if proto == 17 && l4[6] == 0 && l4[7] == 0 {
        return Some(true);
    }
    let mut acc = sum16(&ip[12..20], 0);
    acc += u32::from(proto) + l4.len() as u32;
    Some(fold(sum16(l4, acc)) == 0xffff)
}
