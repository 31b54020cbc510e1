//! The classifier against a linear reference, on rules and packets drawn
//! from a small field/value space so that rules overlap a lot.

use super::*;
use plexus_openflow::oxm::{FieldId, FieldId::*, MatchField};
use plexus_openflow::text::parse_match;
use proptest::prelude::*;

/// Linear reference: evaluates `Match` fields directly on the key.
#[derive(Debug, Default, Clone)]
struct Linear {
    /// (id, priority, match, data)
    rules: Vec<(RuleId, u16, Match, u32)>,
}

fn field_matches(mf: &MatchField, key: &FlowKey) -> bool {
    key.get(mf.field) & mf.mask_or_full() == mf.value
}

fn matches(m: &Match, key: &FlowKey) -> bool {
    m.fields.iter().all(|f| field_matches(f, key))
}

/// `r` is equal to or more specific than `f` (OpenFlow non-strict).
fn within(r: &Match, f: &Match) -> bool {
    f.fields.iter().all(|ff| {
        r.get(ff.field).is_some_and(|rf| {
            let fm = ff.mask_or_full();
            rf.mask_or_full() & fm == fm && rf.value & fm == ff.value
        })
    })
}

impl Linear {
    fn lookup(&self, key: &FlowKey) -> Option<(RuleId, u16, u32)> {
        self.rules
            .iter()
            .filter(|r| matches(&r.2, key))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|r| (r.0, r.1, r.3))
    }

    fn insert(&mut self, id: RuleId, m: Match, prio: u16, data: u32) {
        self.rules.retain(|r| !(r.1 == prio && r.2 == m));
        self.rules.push((id, prio, m, data));
    }
}

const MAC1: u128 = 0x0200_0000_0001;
const MAC2: u128 = 0x0300_0000_0002; // multicast bit set

/// Indices into small value pools; `None`/0 means "field absent".
#[derive(Debug, Clone)]
struct RuleSpec {
    in_port: Option<u8>,
    eth_dst: Option<(u8, bool)>,
    vlan: Option<u8>,
    l3: u8,    // 0: none, 1: ip, 2: arp
    proto: u8, // 0: none, 1: tcp, 2: udp
    src: Option<(u8, u8)>,
    dst: Option<(u8, u8)>,
    port: Option<(u8, bool)>,
    arp_op: Option<u8>,
    reg0: Option<(u8, u8)>,
}

const ADDRS: [u32; 4] = [0x0a00_0001, 0x0a00_0105, 0x0a01_0001, 0xc0a8_0001];
const PREFIXES: [u32; 4] = [8, 16, 24, 32];
const PORTS: [u16; 3] = [80, 443, 53];
const REG_MASKS: [u128; 3] = [0x1, 0x3, 0xffff_ffff];

fn prefix(p: u32) -> u128 {
    (u32::MAX << (32 - p)) as u128
}

impl RuleSpec {
    fn to_match(&self) -> Match {
        let mut m = Match::new();
        if let Some(p) = self.in_port {
            m.set(InPort, p as u128 % 3 + 1);
        }
        if let Some((i, masked)) = self.eth_dst {
            let mac = if i % 2 == 0 { MAC1 } else { MAC2 };
            if masked {
                m.set_masked(EthDst, mac, 0x0100_0000_0000);
            } else {
                m.set(EthDst, mac);
            }
        }
        if let Some(v) = self.vlan {
            match v % 3 {
                0 => m.set(VlanVid, 0),
                1 => m.set_masked(VlanVid, 0x1000, 0x1000),
                _ => m.set(VlanVid, 0x1000 | 10),
            };
        }
        match self.l3 % 3 {
            1 => {
                m.set(EthType, 0x0800);
                if let Some((a, p)) = self.src {
                    let mask = prefix(PREFIXES[p as usize % 4]);
                    m.set_masked(Ipv4Src, ADDRS[a as usize % 4] as u128 & mask, mask);
                }
                if let Some((a, p)) = self.dst {
                    let mask = prefix(PREFIXES[p as usize % 4]);
                    m.set_masked(Ipv4Dst, ADDRS[a as usize % 4] as u128 & mask, mask);
                }
                match self.proto % 3 {
                    1 => {
                        m.set(IpProto, 6);
                        if let Some((p, masked)) = self.port {
                            let v = PORTS[p as usize % 3] as u128;
                            if masked {
                                m.set_masked(TcpDst, v & 0xfff0, 0xfff0);
                            } else {
                                m.set(TcpDst, v);
                            }
                        }
                    }
                    2 => {
                        m.set(IpProto, 17);
                        if let Some((p, _)) = self.port {
                            m.set(UdpSrc, PORTS[p as usize % 3] as u128);
                        }
                    }
                    _ => {}
                }
            }
            2 => {
                m.set(EthType, 0x0806);
                if let Some(op) = self.arp_op {
                    m.set(ArpOp, op as u128 % 2 + 1);
                }
            }
            _ => {}
        }
        if let Some((v, mk)) = self.reg0 {
            let mask = REG_MASKS[mk as usize % 3];
            m.set_masked(Reg0, (v as u128 % 4) & mask, mask);
        }
        m.check_prerequisites().unwrap();
        m
    }
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        (
            proptest::option::weighted(0.3, any::<u8>()),
            proptest::option::weighted(0.2, (any::<u8>(), any::<bool>())),
            proptest::option::weighted(0.2, any::<u8>()),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            proptest::option::weighted(0.4, (any::<u8>(), any::<u8>())),
            proptest::option::weighted(0.3, (any::<u8>(), any::<u8>())),
            proptest::option::weighted(0.5, (any::<u8>(), any::<bool>())),
            proptest::option::weighted(0.5, any::<u8>()),
            proptest::option::weighted(0.3, (any::<u8>(), any::<u8>())),
        ),
    )
        .prop_map(
            |((in_port, eth_dst, vlan, l3, proto), (src, dst, port, arp_op, reg0))| RuleSpec {
                in_port,
                eth_dst,
                vlan,
                l3,
                proto,
                src,
                dst,
                port,
                arp_op,
                reg0,
            },
        )
}

/// A packet key from the same pools (plus values no rule uses).
fn packet() -> impl Strategy<Value = FlowKey> {
    (
        (0u8..4, 0u8..3, 0u8..3, 0u8..3, 0u8..3),
        (0u8..5, 0u8..5, 0u8..4, 0u8..3, 0u8..5),
    )
        .prop_map(|((port, dst, vlan, l3, proto), (s, d, tp, op, reg))| {
            let mut k = FlowKey::ZERO;
            k.set(InPort, port as u128 + 1);
            k.set(EthDst, [MAC1, MAC2, 0x0400_0000_0009][dst as usize]);
            k.set(VlanTci, [0, 0x1000 | 10, 0x1000 | 11][vlan as usize]);
            k.set(EthType, [0x0800, 0x0806, 0x86dd][l3 as usize]);
            let addr = |i: u8| ADDRS.get(i as usize).copied().unwrap_or(0x0b00_0001) as u128;
            k.set(Ipv4Src, addr(s));
            k.set(Ipv4Dst, addr(d));
            k.set(IpProto, [6, 17, 1][proto as usize]);
            k.set(TcpDst, [80, 443, 53, 85][tp as usize]);
            k.set(TcpSrc, [80, 443, 53, 1][tp as usize]);
            k.set(ArpOp, op as u128);
            k.set(Reg0, reg as u128);
            k
        })
}

fn check_same(c: &Classifier<u32>, lin: &Linear, p: &FlowKey, others: &[FlowKey]) {
    let mut wc = FlowKey::ZERO;
    let got = c.lookup(p, &mut wc).map(|r| (r.id, r.priority, r.data));
    let want = lin.lookup(p);
    assert_eq!(got, want, "packet {p:?}");
    // The wildcards are sufficient: any key agreeing with p on wc gets the
    // same answer from the reference.
    for o in others {
        let mut q = p.and(&wc);
        for (qw, (ow, mw)) in q.w.iter_mut().zip(o.w.iter().zip(wc.w.iter())) {
            *qw |= ow & !mw;
        }
        assert_eq!(lin.lookup(&q), want, "wc {wc:?} packet {p:?} variant {q:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lookup_matches_linear_reference(
        rules in proptest::collection::vec((rule_spec(), 0u16..6), 1..40),
        packets in proptest::collection::vec(packet(), 1..20),
        others in proptest::collection::vec(packet(), 8),
    ) {
        let mut c = Classifier::new();
        let mut lin = Linear::default();
        for (i, (spec, prio)) in rules.iter().enumerate() {
            let m = spec.to_match();
            let (id, _) = c.insert(m.clone(), *prio, i as u32);
            lin.insert(id, m, *prio, i as u32);
        }
        prop_assert_eq!(c.len(), lin.rules.len());
        for p in &packets {
            check_same(&c, &lin, p, &others);
        }
    }

    #[test]
    fn flow_mods_match_linear_reference(
        ops in proptest::collection::vec((0u8..5, rule_spec(), 0u16..4), 1..60),
        packets in proptest::collection::vec(packet(), 1..12),
        others in proptest::collection::vec(packet(), 4),
    ) {
        let mut c = Classifier::new();
        let mut lin = Linear::default();
        for (n, (op, spec, prio)) in ops.iter().enumerate() {
            let m = spec.to_match();
            let data = n as u32;
            match op {
                // ADD (twice as likely)
                0 | 1 => {
                    let (id, _) = c.insert(m.clone(), *prio, data);
                    lin.insert(id, m, *prio, data);
                }
                // DELETE_STRICT
                2 => {
                    let got = c.remove_strict(&m, *prio, |_| true).map(|r| r.id);
                    let pos = lin.rules.iter().position(|r| r.1 == *prio && r.2 == m);
                    let want = pos.map(|i| lin.rules.remove(i).0);
                    prop_assert_eq!(got, want);
                }
                // DELETE (non-strict)
                3 => {
                    let mut got: Vec<_> = c.remove_loose(&m, |_| true).into_iter().map(|r| r.id).collect();
                    got.sort_unstable();
                    let mut want: Vec<_> = lin.rules.iter().filter(|r| within(&r.2, &m)).map(|r| r.0).collect();
                    want.sort_unstable();
                    lin.rules.retain(|r| !within(&r.2, &m));
                    prop_assert_eq!(got, want);
                }
                // MODIFY (non-strict): new payload
                _ => {
                    let n_got = c.modify_loose(&m, |_| true, |r| r.data = data + 1000);
                    let mut n_want = 0;
                    for r in lin.rules.iter_mut().filter(|r| within(&r.2, &m)) {
                        r.3 = data + 1000;
                        n_want += 1;
                    }
                    prop_assert_eq!(n_got, n_want);
                }
            }
            prop_assert_eq!(c.len(), lin.rules.len());
        }
        for p in &packets {
            check_same(&c, &lin, p, &others);
        }
        // Emptying the table removes every subtable.
        let all = c.remove_loose(&Match::new(), |_| true);
        prop_assert_eq!(all.len(), lin.rules.len());
        prop_assert_eq!(c.n_subtables(), 0);
        prop_assert!(c.lookup_only(&packets[0]).is_none());
    }
}

fn m(s: &str) -> Match {
    parse_match(s).unwrap()
}

#[test]
fn priority_and_tie_break() {
    let mut c = Classifier::new();
    let (a, _) = c.insert(m("ip,nw_src=10.0.0.0/8"), 10, "a");
    let (_b, _) = c.insert(m("ip,nw_dst=10.0.0.2"), 10, "b");
    let (_low, _) = c.insert(m(""), 0, "miss");
    let mut k = FlowKey::ZERO;
    k.set(EthType, 0x0800);
    k.set(Ipv4Src, 0x0a00_0001);
    k.set(Ipv4Dst, 0x0a00_0002);
    // Both match at priority 10: the first inserted wins.
    let mut wc = FlowKey::ZERO;
    assert_eq!(c.lookup(&k, &mut wc).unwrap().id, a);
    // Equal-priority subtables were both visited: both fields un-wildcarded.
    assert_eq!(wc.get(Ipv4Src), 0xff00_0000);
    assert_eq!(wc.get(Ipv4Dst), 0xffff_ffff);
    // The priority-0 subtable was not visited; its mask is empty anyway.
    k.set(EthType, 0x86dd);
    assert_eq!(c.lookup_only(&k).unwrap().data, "miss");
}

#[test]
fn early_exit_limits_wildcards() {
    let mut c = Classifier::new();
    c.insert(m("in_port=1"), 100, 1);
    c.insert(m("tcp,tp_dst=80"), 50, 2);
    let mut k = FlowKey::ZERO;
    k.set(InPort, 1);
    let mut wc = FlowKey::ZERO;
    assert_eq!(c.lookup(&k, &mut wc).unwrap().data, 1);
    assert_eq!(wc.get(InPort), 0xffff_ffff);
    assert_eq!(
        wc.get(TcpDst),
        0,
        "lower-priority subtable must not be visited"
    );
}

#[test]
fn add_replaces_identical_and_counters() {
    let mut c = Classifier::new();
    let (id1, r) = c.insert(m("udp,tp_dst=53"), 5, 1);
    assert!(r.is_none());
    c.get(id1).unwrap().stats.add(3, 300);
    // Same match written differently (nw_proto=17 vs "udp"): identical.
    let (id2, r) = c.insert(m("ip,nw_proto=17,udp_dst=53"), 5, 2);
    let old = r.unwrap();
    assert_eq!(old.id, id1);
    let new = c.get(id2).unwrap();
    new.stats.copy_from(&old.stats);
    assert_eq!((new.stats.packets(), new.stats.bytes()), (3, 300));
    assert_eq!(c.len(), 1);
    // Different priority: a second rule.
    c.insert(m("udp,tp_dst=53"), 6, 3);
    assert_eq!(c.len(), 2);
    assert_eq!(c.find_loose(&m("udp")).len(), 2);
    assert_eq!(c.find_loose(&m("tcp")).len(), 0);
    assert!(c.find_strict(&m("udp,tp_dst=53"), 7).is_none());
    // Modify strict with a cookie-like filter that refuses.
    assert!(!c.modify_strict(&m("udp,tp_dst=53"), 6, |_| false, |r| r.data = 9));
    assert!(c.modify_strict(&m("udp,tp_dst=53"), 6, |_| true, |r| r.data = 9));
    let v = c.version();
    c.remove_loose(&m("udp,tp_dst=53"), |r| r.data == 9);
    assert!(c.version() > v);
    assert_eq!(c.len(), 1);
}

#[test]
fn fields_used_in_rules_are_consistent() {
    // Sanity: the generator's matches are accepted by the codec's prereq check
    // and convert to masks covering their fields.
    let f: FieldId = TcpDst;
    let mk = MaskedKey::from_match(&m("tcp,tp_dst=0x50/0xfff0"));
    assert_eq!(mk.mask.get(f), 0xfff0);
    assert_eq!(mk.mask.get(IpProto), 0xff);
    assert_eq!(mk.mask.get(EthType), 0xffff);
}

#[test]
fn tie_across_subtables_prefers_lowest_id() {
    // Subtable A (in_port) is created first but its priority-5 rule is
    // newer than subtable B's: B must still be visited and win.
    let mut c = Classifier::new();
    c.insert(m("in_port=2"), 2, "a-old");
    let (b, _) = c.insert(m("ip"), 5, "b");
    c.insert(m("in_port=1"), 5, "a-new");
    let mut k = FlowKey::ZERO;
    k.set(InPort, 1);
    k.set(EthType, 0x0800);
    assert_eq!(c.lookup_only(&k).unwrap().id, b);
}

// ------------------------------------------------------------ conjunction

fn cj(id: u32, k: u8, n: u8) -> ConjClause {
    ConjClause {
        id,
        clause: k - 1,
        n_clauses: n,
    }
}

fn tcp_key(reg15: u128, src: u128, dport: u128) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set(EthType, 0x0800);
    k.set(IpProto, 6);
    k.set(Reg15, reg15);
    k.set(Ipv4Src, src);
    k.set(TcpDst, dport);
    k
}

/// Three-dimensional security-group rule as the controller compiles it:
/// ports {1,2} × sources {10.0.0.1, 10.0.0.2} × tcp/80, conj_id 7 → "allow".
fn sg_table() -> Classifier<&'static str> {
    let mut c = Classifier::new();
    c.insert(m("reg15=1"), 0, "default-1");
    c.insert(m(""), 0, "drop");
    for p in [1, 2] {
        c.insert_conj(
            m(&format!("reg15={p}")),
            100,
            "soft",
            vec![cj(7, 1, 3)].into(),
        );
    }
    for s in ["10.0.0.1", "10.0.0.2"] {
        c.insert_conj(
            m(&format!("ip,nw_src={s}")),
            100,
            "soft",
            vec![cj(7, 2, 3)].into(),
        );
    }
    c.insert_conj(m("tcp,tp_dst=80"), 100, "soft", vec![cj(7, 3, 3)].into());
    c.insert(m("conj_id=7,ip"), 100, "allow");
    c
}

#[test]
fn conjunction_complete_selects_conj_id_rule() {
    let c = sg_table();
    assert_eq!(
        c.lookup_only(&tcp_key(1, 0x0a00_0001, 80)).unwrap().data,
        "allow"
    );
    assert_eq!(
        c.lookup_only(&tcp_key(2, 0x0a00_0002, 80)).unwrap().data,
        "allow"
    );
    // One clause missing each: soft rules ignored, the hard rule wins.
    assert_eq!(
        c.lookup_only(&tcp_key(3, 0x0a00_0001, 80)).unwrap().data,
        "drop"
    );
    assert_eq!(
        c.lookup_only(&tcp_key(1, 0x0a00_0003, 80)).unwrap().data,
        "default-1"
    );
    assert_eq!(
        c.lookup_only(&tcp_key(2, 0x0a00_0001, 81)).unwrap().data,
        "drop"
    );
    // The conj_id rule itself never matches a packet (conj_id is 0).
    assert_eq!(c.lookup_only(&FlowKey::ZERO).unwrap().data, "drop");
}

#[test]
fn conjunction_outranked_by_higher_hard_rule_and_multiple_clauses_per_rule() {
    let mut c = sg_table();
    // A flow carrying clauses of two conjunctions (merged, as OVS requires).
    c.insert_conj(
        m("ip,nw_src=10.0.0.9"),
        100,
        "soft",
        vec![cj(7, 2, 3), cj(8, 1, 2)].into(),
    );
    c.insert_conj(m("reg15=5"), 100, "soft", vec![cj(8, 2, 2)].into());
    c.insert(m("conj_id=8"), 100, "allow-8");
    assert_eq!(
        c.lookup_only(&tcp_key(1, 0x0a00_0009, 80)).unwrap().data,
        "allow"
    );
    assert_eq!(
        c.lookup_only(&tcp_key(5, 0x0a00_0009, 22)).unwrap().data,
        "allow-8"
    );
    // A hard rule above the conjunction's priority wins.
    c.insert(m("reg15=5"), 200, "hard-200");
    assert_eq!(
        c.lookup_only(&tcp_key(5, 0x0a00_0009, 22)).unwrap().data,
        "hard-200"
    );
    // The conj_id rule must match too: conj_id=7 rule requires ip.
    let mut k = tcp_key(1, 0x0a00_0001, 80);
    k.set(EthType, 0x86dd);
    k.set(Ipv4Src, 0);
    assert_ne!(c.lookup_only(&k).unwrap().data, "allow");
}

#[test]
fn conjunction_removal_and_modify_restore_fast_path() {
    let mut c = sg_table();
    let id = c.find_strict(&m("tcp,tp_dst=80"), 100).unwrap();
    // Modify the tcp clause into a hard rule: no longer a conjunction.
    c.set_conj(id, Box::default());
    assert_eq!(
        c.lookup_only(&tcp_key(9, 0x0a00_0009, 80)).unwrap().data,
        "soft"
    );
    c.set_conj(id, vec![cj(7, 3, 3)].into());
    assert_eq!(
        c.lookup_only(&tcp_key(1, 0x0a00_0001, 80)).unwrap().data,
        "allow"
    );
    let ids: Vec<RuleId> = c
        .iter()
        .filter(|r| !r.conj.is_empty())
        .map(|r| r.id)
        .collect();
    for i in ids {
        c.remove(i);
    }
    assert_eq!(c.n_soft, 0);
    assert_eq!(
        c.lookup_only(&tcp_key(1, 0x0a00_0001, 80)).unwrap().data,
        "default-1"
    );
}

/// Linear reference of OVS's conjunctive lookup.
fn linear_conj(rules: &[(u16, Match, Vec<ConjClause>, u32)], key: &FlowKey) -> Option<u32> {
    let hard = |k: &FlowKey| {
        rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.2.is_empty() && matches(&r.1, k))
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(&a.0)))
            .map(|(_, r)| (r.0, r.3))
    };
    let h = hard(key);
    let hp = h.map(|x| x.0 as i32).unwrap_or(-1);
    let mut prios: Vec<u16> = rules
        .iter()
        .filter(|r| !r.2.is_empty() && r.0 as i32 > hp && matches(&r.1, key))
        .map(|r| r.0)
        .collect();
    prios.sort_unstable_by(|a, b| b.cmp(a));
    prios.dedup();
    for p in prios {
        let mut ids: BTreeMap<u32, (u8, BTreeSet<u8>)> = BTreeMap::new();
        for r in rules.iter().filter(|r| r.0 == p && matches(&r.1, key)) {
            for c in &r.2 {
                let e = ids.entry(c.id).or_insert((c.n_clauses, BTreeSet::new()));
                if e.0 != c.n_clauses {
                    e.0 = 0;
                }
                e.1.insert(c.clause);
            }
        }
        for (id, (n, seen)) in ids {
            if n == 0 || seen.len() != n as usize {
                continue;
            }
            let mut k2 = *key;
            k2.set(ConjId, id as u128);
            if let Some((rp, d)) = hard(&k2) {
                return Some(match h {
                    Some((hp, hd)) if hp > rp => hd,
                    _ => d,
                });
            }
        }
    }
    h.map(|x| x.1)
}

use std::collections::BTreeSet;

fn conj_rule() -> impl Strategy<Value = (u16, String, Vec<(u32, u8, u8)>)> {
    let matchs = prop_oneof![
        (1u8..4).prop_map(|p| format!("reg15={p}")),
        (1u8..4).prop_map(|s| format!("ip,nw_src=10.0.0.{s}")),
        (79u16..82).prop_map(|d| format!("tcp,tp_dst={d}")),
        (1u32..4).prop_map(|c| format!("conj_id={c}")),
        (1u32..4).prop_map(|c| format!("conj_id={c},tcp")),
        Just(String::new()),
    ];
    let clauses = prop::collection::vec((1u32..4, 0u8..3, 2u8..4), 0..3)
        .prop_map(|v| v.into_iter().map(|(i, k, n)| (i, k % n, n)).collect());
    ((0u16..3).prop_map(|p| p * 50), matchs, clauses)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn conjunction_matches_linear_reference_and_megaflows_hold(
        rules in prop::collection::vec(conj_rule(), 1..14),
        pkts in prop::collection::vec((1u128..4, 1u128..4, 79u128..82), 1..8),
    ) {
        let mut c = Classifier::new();
        let mut lin: Vec<(u16, Match, Vec<ConjClause>, u32)> = Vec::new();
        for (i, (p, ms, cl)) in rules.iter().enumerate() {
            let mut mm = m(ms);
            // conj_id rules are hard; conjunction clauses only on other matches.
            let cl: Vec<ConjClause> = if ms.starts_with("conj_id") { vec![] } else {
                cl.iter().map(|&(id, k, n)| ConjClause { id, clause: k, n_clauses: n }).collect()
            };
            if mm.fields.is_empty() && !cl.is_empty() { mm = m("ip"); }
            c.insert_conj(mm.clone(), *p, i as u32, cl.clone().into());
            lin.retain(|r| !(r.0 == *p && r.1 == mm));
            lin.push((*p, mm, cl, i as u32));
        }
        let keys: Vec<FlowKey> = pkts.iter().map(|&(r, s, d)| tcp_key(r, 0x0a00_0000 | s, d)).collect();
        for k in &keys {
            let mut wc = FlowKey::ZERO;
            let got = c.lookup(k, &mut wc).map(|r| r.data);
            prop_assert_eq!(got, linear_conj(&lin, k));
            // Any key equal on the wildcarded bits gets the same rule.
            for o in &keys {
                if o.eq_masked(k, &wc) {
                    prop_assert_eq!(c.lookup_only(o).map(|r| r.data), got);
                }
            }
        }
    }
}
