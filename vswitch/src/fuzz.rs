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

// ------------------------------------------------------------ conntrack

/// Reads fuzz input bytes one at a time (zeros once exhausted).
#[derive(Debug)]
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The small address and port spaces the conntrack target draws from, so
/// that replies, collisions and NAT exhaustion happen often.
const CT_ADDRS: [[u8; 4]; 4] = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3], [192, 0, 2, 9]];
const CT_PORTS: [u16; 4] = [80, 1024, 5201, 65535];

/// Ethernet + IPv4 (+ payload `l4` of protocol `proto`) with correct
/// header and L4 checksums; `frag` is the flags/offset field.
pub fn ipv4_frame(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = 20 + l4.len();
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = !fold(sum16(&f[14..34], 0));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let l4_at = f.len();
    f.extend_from_slice(l4);
    let ck = match proto {
        6 if l4.len() >= 20 => Some(16),
        17 if l4.len() >= 8 => Some(6),
        1 if l4.len() >= 4 => Some(2),
        _ => None,
    };
    if let (Some(at), 0) = (ck, frag & 0x3fff) {
        let acc = if proto == 1 {
            0
        } else {
            let mut a = sum16(&f[26..34], 0);
            a += u32::from(proto) + l4.len() as u32;
            a
        };
        let c = !fold(sum16(&f[l4_at..], acc));
        let c = if proto == 17 && c == 0 { 0xffff } else { c };
        f[l4_at + at..l4_at + at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// One packet for the conntrack target, built from the input: TCP with
/// any flags, sequence/ack near the previous ones, UDP, ICMP echo
/// request/reply, an ICMP error quoting a TCP packet, a fragment, or
/// raw bytes.
fn ct_packet(b: &mut Bytes<'_>, seq: &mut [u32; 2]) -> Vec<u8> {
    let kind = b.u8();
    let sel = b.u8();
    let (s, d) = (
        CT_ADDRS[usize::from(sel & 3)],
        CT_ADDRS[usize::from(sel >> 2 & 3)],
    );
    let (sp, dp) = (
        CT_PORTS[usize::from(sel >> 4 & 3)],
        CT_PORTS[usize::from(sel >> 6)],
    );
    let dir = usize::from(kind >> 7);
    match kind & 7 {
        0 | 1 => {
            let flags = b.u8();
            // Sequence numbers near the last ones seen in this direction
            // (in window, just outside, far away) or arbitrary.
            let step = b.u16();
            let (sq, ak) = match kind >> 3 & 3 {
                0 => (seq[dir].wrapping_add(u32::from(step & 0xff)), seq[1 - dir]),
                1 => (seq[dir].wrapping_add(u32::from(step) << 12), seq[1 - dir]),
                2 => (
                    seq[dir].wrapping_sub(u32::from(step)),
                    seq[1 - dir].wrapping_add(1),
                ),
                _ => (b.u32(), b.u32()),
            };
            seq[dir] = sq.wrapping_add(1);
            let len = usize::from(b.u8() & 0x3f);
            let mut l4 = vec![0u8; 20 + len];
            l4[0..2].copy_from_slice(&sp.to_be_bytes());
            l4[2..4].copy_from_slice(&dp.to_be_bytes());
            l4[4..8].copy_from_slice(&sq.to_be_bytes());
            l4[8..12].copy_from_slice(&ak.to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = flags;
            l4[14..16].copy_from_slice(&b.u16().to_be_bytes());
            ipv4_frame(s, d, 6, 0, &l4)
        }
        2 => {
            let mut l4 = vec![0u8; 8 + usize::from(b.u8() & 0xf)];
            l4[0..2].copy_from_slice(&sp.to_be_bytes());
            l4[2..4].copy_from_slice(&dp.to_be_bytes());
            let n = l4.len() as u16;
            l4[4..6].copy_from_slice(&n.to_be_bytes());
            ipv4_frame(s, d, 17, 0, &l4)
        }
        3 => {
            let ty = if kind & 0x40 != 0 { 0 } else { 8 };
            let mut l4 = vec![ty, 0, 0, 0, 0, 0, 0, 1];
            l4[4..6].copy_from_slice(&u16::from(sel & 7).to_be_bytes());
            ipv4_frame(s, d, 1, 0, &l4)
        }
        4 => {
            // ICMP error (dest unreachable / time exceeded) quoting a TCP
            // or UDP header of a packet from d to s.
            let inner_proto = if kind & 0x40 != 0 { 6 } else { 17 };
            let mut quoted = vec![0u8; 8];
            quoted[0..2].copy_from_slice(&dp.to_be_bytes());
            quoted[2..4].copy_from_slice(&sp.to_be_bytes());
            let inner = ipv4_frame(d, s, inner_proto, 0, &quoted);
            let mut l4 = vec![
                if kind & 0x20 != 0 { 3 } else { 11 },
                b.u8() & 3,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            l4.extend_from_slice(&inner[14..]);
            ipv4_frame(CT_ADDRS[usize::from(b.u8() & 3)], s, 1, 0, &l4)
        }
        5 => {
            // A fragment (first, middle or last) of a TCP or UDP datagram.
            let proto = if kind & 0x40 != 0 { 6 } else { 17 };
            let frag = b.u16() & 0x3fff;
            let mut l4 = vec![0u8; 8 + usize::from(b.u8() & 0x1f)];
            l4[0..2].copy_from_slice(&sp.to_be_bytes());
            l4[2..4].copy_from_slice(&dp.to_be_bytes());
            ipv4_frame(s, d, proto, frag, &l4)
        }
        _ => {
            let n = usize::from(b.u8());
            b.take(n).to_vec()
        }
    }
}

/// A sequence of packets, clock steps, limit changes and flushes through
/// one [`Conntrack`] with a small table (16 connections, zone limits).
/// Invariants: no panic; internal consistency after every step; the
/// table and zone limits are never exceeded and every refused commit is
/// counted and dropped; every result is `+trk`, `+inv` excludes the
/// other states, and `+est`/`+rpl` are only set for connections that
/// exist; a well-formed IPv4 packet stays well-formed after NAT; dumps
/// agree with the table size.
pub fn conntrack_sequence(data: &[u8]) {
    use crate::conntrack::{Conntrack, CtConfig, CtRequest, NatSpec, nat_kind};
    use plexus_openflow::oxm::ct_state as cs;
    const MAX: usize = 16;
    let epoch = Instant::now();
    let cfg = CtConfig {
        max_conns: MAX,
        wheel_slots: 8,
        ..Default::default()
    };
    let mut ct = Conntrack::new(cfg, epoch);
    let mut now = epoch;
    let mut b = Bytes(data);
    let mut seq = [1000u32, 5000u32];
    let mut packets = 0u64;
    let mut zone_limit: [Option<u32>; 3] = [None; 3];
    while !b.is_empty() {
        let op = b.u8();
        match op % 16 {
            0..=10 => {
                let mut frame = ct_packet(&mut b, &mut seq);
                let rq = b.u8();
                let nat = match rq >> 3 & 7 {
                    0..=2 => None,
                    3 => Some(NatSpec::default()),
                    4 => Some(NatSpec {
                        kind: nat_kind::SRC,
                        addr: Some((0xc000_0264, 0xc000_0265)),
                        ports: Some((1024, 1025)),
                        ..Default::default()
                    }),
                    5 => Some(NatSpec {
                        kind: nat_kind::DST,
                        addr: Some((0x0a00_0002, 0x0a00_0003)),
                        ports: None,
                        random: rq & 0x40 != 0,
                        ..Default::default()
                    }),
                    6 => Some(NatSpec {
                        kind: nat_kind::SRC,
                        addr: None,
                        ports: Some((b.u16(), b.u16())),
                        persistent: true,
                        ..Default::default()
                    }),
                    _ => Some(NatSpec {
                        kind: nat_kind::DST,
                        addr: Some((0x0a00_0001, 0x0a00_0001)),
                        ports: Some((80, 80)),
                        ..Default::default()
                    }),
                };
                let req = CtRequest {
                    zone: u16::from(rq % 3),
                    commit: rq & 4 != 0,
                    force: rq & 0x80 != 0 && rq & 4 != 0,
                    nat,
                    mark: (rq & 0x40 != 0).then(|| (u32::from(op), 0xff)),
                    label: (rq & 0x20 != 0).then_some((1u128 << 100, 1u128 << 100)),
                };
                let well_formed = ipv4_check(&frame) == Some(true);
                let before = ct.len();
                let refused =
                    |c: &crate::conntrack::CtCounters| (c.table_full, c.zone_full, c.nat_exhausted);
                let full = refused(&ct.counters);
                let r = ct.execute(&mut frame, &req, now);
                packets += 1;
                assert!(r.state & cs::TRK != 0, "result without +trk: {r:?}");
                if r.state & cs::INV != 0 {
                    assert_eq!(
                        r.state & (cs::NEW | cs::EST | cs::RPL | cs::REL),
                        0,
                        "+inv with other states: {r:?}"
                    );
                }
                if r.state & (cs::EST | cs::RPL) != 0 {
                    assert!(!ct.is_empty(), "+est/+rpl with an empty table: {r:?}");
                }
                if r.drop {
                    assert!(req.commit, "drop without a commit: {r:?}");
                    assert!(refused(&ct.counters) != full, "drop not counted: {r:?}");
                }
                if !req.commit {
                    assert!(
                        ct.len() <= before,
                        "a lookup without commit created a connection"
                    );
                }
                if ct.len() > before {
                    // A new connection: within its zone's limit.
                    if let Some(l) = zone_limit[usize::from(req.zone)] {
                        assert!(
                            ct.zone_count(req.zone) <= l,
                            "zone {} over its limit",
                            req.zone
                        );
                    }
                }
                if well_formed {
                    assert!(
                        ipv4_check(&frame) != Some(false),
                        "conntrack/NAT made a well-formed packet malformed: {frame:02x?}"
                    );
                }
            }
            11 => {
                // Clock: a few ms up to several minutes.
                let step = u64::from(b.u8());
                now += std::time::Duration::from_millis(step * step * 40);
                ct.advance(now);
            }
            12 => {
                let z = usize::from(b.u8() % 3);
                let l = b.u8() % 8;
                zone_limit[z] = (l != 0).then_some(u32::from(l));
                ct.set_zone_limit(z as u16, zone_limit[z]);
            }
            13 => ct.flush_zone(u16::from(b.u8() % 3)),
            14 => {
                let dump = ct.dump(None, now);
                if let Some(e) = dump.get(usize::from(b.u8()) % dump.len().max(1)) {
                    assert!(ct.flush_tuple(e.zone, &e.orig), "dumped tuple not found");
                }
            }
            _ => {
                let dump = ct.dump(None, now);
                assert_eq!(dump.len(), ct.len(), "dump length");
                for e in &dump {
                    let _ = e.to_string();
                }
            }
        }
        ct.check_invariants();
        assert!(ct.len() <= MAX, "table over its maximum: {}", ct.len());
        assert_eq!(ct.counters.packets, packets);
    }
}

// ------------------------------------------------------------ VXLAN decap

/// The overlay flow table of the VXLAN target: port 10 is a vxlan tunnel
/// port; frames from it are demultiplexed by VNI (one VNI through
/// conntrack), local frames are encapsulated with a VNI and remote.
pub const VXLAN_FLOWS: &[&str] = &[
    "table=0,priority=100,in_port=10,tun_id=5,actions=output:1",
    "table=0,priority=100,in_port=10,tun_id=6,ip,actions=ct(zone=6,table=1)",
    "table=0,priority=90,in_port=10,tun_src=192.0.2.1,actions=set_field:7->tun_id,output:2",
    "table=0,priority=80,in_port=10,actions=drop",
    "table=0,priority=50,in_port=1,actions=set_field:5->tun_id,set_field:192.0.2.1->tun_dst,output:10",
    "table=0,priority=50,in_port=2,actions=set_field:0xffffff->tun_id,set_field:192.0.2.2->tun_dst,output:10,output:1",
    "table=1,priority=10,ct_state=+new+trk,ip,actions=ct(commit,zone=6),output:2",
    "table=1,priority=10,ct_state=+est+trk,ip,actions=set_field:6->tun_id,set_field:192.0.2.1->tun_dst,output:10",
    "table=1,priority=0,actions=drop",
];

/// A pipeline with ports 1, 2 and tunnel port 10 loaded with [`VXLAN_FLOWS`].
pub fn vxlan_pipeline(now: Instant) -> Pipeline {
    let mut p = Pipeline::new(8);
    let ports: Vec<PortInfo> = [1u32, 2, 10]
        .iter()
        .map(|&i| PortInfo {
            port_no: i,
            name: format!("p{i}"),
            hw_addr: [0x02, 0xbb, 0, 0, 0, i as u8],
            live: true,
        })
        .collect();
    p.set_ports(&ports);
    p.set_tunnel_ports(&[10]);
    for f in VXLAN_FLOWS {
        let fm = parse_flow_mod(f, FlowModCommand::Add).unwrap_or_else(|e| panic!("{f}: {e}"));
        p.flow_mod(&fm, now)
            .unwrap_or_else(|e| panic!("{f}: {e:?}"));
    }
    p
}

/// Records of `[outer source][len hi][len lo][UDP payload…]`: each payload
/// is decapsulated as a VXLAN datagram from one of four underlay sources;
/// what decapsulates goes through [`vxlan_pipeline`] (cached and
/// uncached) with its tunnel metadata; tunnel outputs are encapsulated
/// again; oversized frames get the ICMP "too big" reply.
/// Invariants: no panic; errors are `Short`/`BadHeader` exactly when the
/// header is short or its flags are not `I` only; decap∘encap is the
/// identity (VNI and inner frame); the outer headers are well-formed
/// IPv4/UDP with the right lengths and a source port in OVS's range; the
/// inner flow hash is deterministic; cached and uncached pipelines agree;
/// a too-big reply is a well-formed ICMP/ICMPv6 packet addressed back to
/// the inner sender.
pub fn vxlan_datagrams(data: &[u8]) {
    use crate::flow::TunnelMeta;
    use crate::port::vxlan::{
        DecapError, Outer, decap, encap, inner_flow_hash, src_port, too_big_reply,
    };
    const SOURCES: [u32; 4] = [0xc000_0201, 0xc000_0202, 0xc000_0203, 0];
    let now = Instant::now();
    let mut cached = vxlan_pipeline(now);
    let mut uncached = vxlan_pipeline(now);
    uncached.set_cache_enabled(false);
    let mut buf = PacketBuf::new();
    let mut emits = Vec::new();
    let mut rest = data;
    let mut reply = Vec::new();
    while rest.len() >= 3 {
        let src = SOURCES[usize::from(rest[0] & 3)];
        let mtu = 68 + u32::from(rest[0] >> 2) * 24;
        let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])) % 1600;
        let body = &rest[3..];
        let n = len.min(body.len());
        let payload = &body[..n];
        rest = &body[n..];
        let r = decap(payload);
        let short = payload.len() < 22;
        let bad = !short && (payload[0..4] != [8, 0, 0, 0] || payload[7] != 0);
        match r {
            Err(DecapError::Short) => assert!(short),
            Err(DecapError::BadHeader) => assert!(bad),
            Ok(_) => assert!(!short && !bad),
        }
        let Ok((vni, inner)) = r else { continue };
        assert!(vni < 1 << 24);
        assert_eq!(inner_flow_hash(inner), inner_flow_hash(inner));
        if too_big_reply(inner, mtu, &mut reply).is_some() {
            assert_eq!(&reply[0..6], &inner[6..12], "reply not to the sender");
            assert!(
                ipv4_check(&reply) != Some(false),
                "malformed too-big reply {reply:02x?} to {inner:02x?}"
            );
        }
        let tun = TunnelMeta {
            id: u64::from(vni),
            src,
            dst: 0xc000_02fe,
            ..Default::default()
        };
        let mut outs = [Vec::new(), Vec::new()];
        for (i, p) in [&mut cached, &mut uncached].into_iter().enumerate() {
            buf.load(inner);
            emits.clear();
            p.process_tunnel(10, &tun, &mut buf, now, &mut emits);
            outs[i] = emits
                .iter()
                .map(|e| match e {
                    Emit::Output { port, tunnel, .. } => (*port, *tunnel, e.bytes(&buf).to_vec()),
                    Emit::PacketIn { .. } => (u32::MAX, None, Vec::new()),
                })
                .collect::<Vec<_>>();
        }
        assert_eq!(
            outs[0], outs[1],
            "cached and uncached differ for {payload:02x?}"
        );
        for (port, tunnel, bytes) in &outs[0] {
            if *port != 10 {
                continue;
            }
            let t = tunnel.expect("output to a tunnel port without tunnel metadata");
            let o = Outer {
                src_mac: [2, 0, 0, 0, 0, 0xfe],
                dst_mac: [2, 0, 0, 0, 0, 1],
                src_ip: std::net::Ipv4Addr::from(0xc000_02fe),
                dst_ip: std::net::Ipv4Addr::from(t.dst),
                src_port: src_port(inner_flow_hash(bytes)),
                dst_port: 4789,
                vni: (t.id & 0xff_ffff) as u32,
                tos: 0,
                ttl: 64,
                df: true,
                ip_id: 0,
            };
            assert!(
                (32768..61000).contains(&o.src_port),
                "source port {}",
                o.src_port
            );
            let mut out = vec![0u8; crate::port::vxlan::ENCAP_LEN + bytes.len()];
            let n = encap(&mut out, bytes, &o).expect("room for the encapsulation");
            assert_eq!(n, out.len());
            assert_eq!(ipv4_check(&out), Some(true), "outer headers malformed");
            let (v2, i2) = decap(&out[42..]).expect("our encapsulation decapsulates");
            assert_eq!((v2, i2), (o.vni, bytes.as_slice()), "decap(encap(x)) != x");
        }
    }
    cached.conntrack.check_invariants();
}
