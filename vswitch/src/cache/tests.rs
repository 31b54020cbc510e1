//! Cache tests: after any table change (generation bump) no lookup returns
//! an entry computed from the old tables.

use super::*;
use crate::classifier::Classifier;
use plexus_openflow::Match;
use plexus_openflow::oxm::FieldId::*;
use plexus_openflow::text::parse_match;
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

fn key(port: u32, dst: u32, tp: u16) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set(InPort, port as u128);
    k.set(EthType, 0x0800);
    k.set(IpProto, 6);
    k.set(Ipv4Dst, dst as u128);
    k.set(TcpDst, tp as u128);
    k
}

/// The fast path as the pipeline runs it: cache, else classifier + install.
fn fast_path(
    cache: &mut FlowCache<Option<u32>>,
    table: &Classifier<u32>,
    k: &FlowKey,
    epoch: u64,
) -> Option<u32> {
    if let Some(a) = cache.lookup(k, epoch) {
        return a;
    }
    let mut wc = FlowKey::ZERO;
    let a = table.lookup(k, &mut wc).map(|r| r.data);
    cache.insert(k, &wc, epoch, a);
    a
}

#[test]
fn emc_hits_and_generation_misses() {
    let mut emc = ExactMatchCache::new(4);
    let k = key(1, 2, 3);
    emc.insert(&k, k.hash(), 1, "a");
    assert_eq!(emc.lookup(&k, k.hash(), 1), Some(&"a"));
    assert_eq!(emc.lookup(&k, k.hash(), 2), None);
    let k2 = key(1, 2, 4);
    assert_eq!(emc.lookup(&k2, k2.hash(), 1), None);
    // Fill well past capacity: never a wrong answer.
    for i in 0..64 {
        let ki = key(1, i, 0);
        emc.insert(&ki, ki.hash(), 1, "x");
        assert_eq!(emc.lookup(&ki, ki.hash(), 1), Some(&"x"));
    }
    assert!(emc.len_at(1) <= 4);
}

#[test]
fn megaflow_masks_and_stale_entries() {
    let mut mc = MegaflowCache::new(100);
    let k = key(1, 0x0a00_0001, 80);
    let mut wc = FlowKey::ZERO;
    wc.set(InPort, u32::MAX as u128);
    mc.insert(&k, &wc, 1, 7);
    // Any key with in_port=1 hits.
    assert_eq!(mc.lookup(&key(1, 9, 9), 1), Some(&7));
    assert_eq!(mc.lookup(&key(2, 0x0a00_0001, 80), 1), None);
    // Newer generation: stale, even though the masked key matches.
    assert_eq!(mc.lookup(&k, 2), None);
    // A current entry under another mask is still found past the stale one.
    mc.insert(&k, &FlowKey::ONES, 2, 8);
    assert_eq!(mc.lookup(&k, 2), Some(&8));
    assert_eq!(mc.n_masks(), 2);
    mc.purge_stale(2);
    assert_eq!(mc.len(), 1);
    assert_eq!(mc.n_masks(), 1);
    assert_eq!(mc.lookup(&k, 2), Some(&8));
}

#[test]
fn megaflow_capacity_and_revalidate() {
    let mut mc = MegaflowCache::new(2);
    let ones = FlowKey::ONES;
    assert!(mc.insert(&key(1, 1, 1), &ones, 1, 1));
    assert!(mc.insert(&key(1, 1, 2), &ones, 1, 2));
    assert!(!mc.insert(&key(1, 1, 3), &ones, 1, 3), "full");
    // Full of stale entries: purged to make room.
    assert!(mc.insert(&key(1, 1, 3), &ones, 2, 3));
    assert_eq!(mc.len(), 1);
    // Revalidation keeps entries whose new wildcards fit, with new actions.
    let (kept, removed) = mc.revalidate(3, |k, _mask| {
        Some((k.get(TcpDst) as i32 * 10, FlowKey::ZERO))
    });
    assert_eq!((kept, removed), (1, 0));
    assert_eq!(mc.lookup(&key(1, 1, 3), 3), Some(&30));
    let (kept, removed) = mc.revalidate(4, |_, _| None);
    assert_eq!((kept, removed), (0, 1));
    assert!(mc.is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Packet(u32, u32, u16),
    Add(String, u16),
    Del(String),
}

fn op() -> impl Strategy<Value = Op> {
    let field = prop_oneof![
        (1u32..4).prop_map(|p| format!("in_port={p}")),
        (1u32..4).prop_map(|d| format!("ip,nw_dst=0.0.0.{d}")),
        (78u16..82).prop_map(|t| format!("tcp,tp_dst={t}")),
        (1u32..4, 78u16..82).prop_map(|(p, t)| format!("tcp,in_port={p},tp_dst={t}")),
        Just(String::new()),
    ];
    prop_oneof![
        4 => (1u32..4, 1u32..4, 78u16..82).prop_map(|(a, b, c)| Op::Packet(a, b, c)),
        2 => (field.clone(), 0u16..4).prop_map(|(m, p)| Op::Add(m, p)),
        1 => field.prop_map(Op::Del),
    ]
}

proptest! {
    /// Interleaved packets and flow-mods: every packet gets exactly what the
    /// current table says, whether served by EMC, megaflow or slow path.
    #[test]
    fn no_lookup_returns_old_generation(ops in proptest::collection::vec(op(), 1..200)) {
        let epoch = Generation::new(1);
        let mut table = Classifier::new();
        let mut cache = FlowCache::new(16, 32);
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Packet(p, d, t) => {
                    let g = epoch.enter(0);
                    let k = key(p, d, t);
                    let got = fast_path(&mut cache, &table, &k, g);
                    let want = table.lookup_only(&k).map(|r| r.data);
                    prop_assert_eq!(got, want);
                }
                Op::Add(m, prio) => {
                    table.insert(parse_match(&m).unwrap(), prio, n as u32);
                    epoch.bump();
                }
                Op::Del(m) => {
                    table.remove_loose(&parse_match(&m).unwrap(), |_| true);
                    epoch.bump();
                }
            }
        }
    }
}

#[test]
fn barrier_waits_for_forwarding_threads() {
    // A forwarding thread loops over batches; the control thread replaces the
    // rule's action, bumps, waits for quiescence ("barrier reply"), then flags
    // it. Every packet looked up after the flag must see the new action.
    let epoch = Arc::new(Generation::new(1));
    let table = Arc::new(RwLock::new(Classifier::new()));
    table.write().unwrap().insert(Match::new(), 0, 0u32);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier_done = Arc::new(AtomicU64::new(0));
    let checked = Arc::new(AtomicU64::new(0));
    let fwd = {
        let (epoch, table, stop, barrier_done, checked) = (
            epoch.clone(),
            table.clone(),
            stop.clone(),
            barrier_done.clone(),
            checked.clone(),
        );
        std::thread::spawn(move || {
            let mut cache = FlowCache::new(64, 64);
            while !stop.load(Ordering::SeqCst) {
                let g = epoch.enter(0);
                for i in 0..256 {
                    let k = key(1, i % 4, 80);
                    let t = table.read().unwrap();
                    // Barrier replies sent before this packet's lookup.
                    let done = barrier_done.load(Ordering::SeqCst);
                    let a = fast_path(&mut cache, &t, &k, g);
                    drop(t);
                    if done > 0 {
                        assert!(a.unwrap() >= done as u32, "stale action after barrier");
                        checked.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::yield_now();
            }
            epoch.leave(0);
        })
    };
    let parse_all = parse_match("").unwrap();
    // Until the forwarding thread has checked enough packets after barriers
    // (it may start late: an idle reader counts as quiesced).
    let start = std::time::Instant::now();
    let mut v = 0u32;
    while v < 200 || checked.load(Ordering::SeqCst) < 5_000 {
        assert!(start.elapsed().as_secs() < 60, "forwarding thread stuck");
        assert!(!fwd.is_finished(), "forwarding thread died");
        v += 1;
        table
            .write()
            .unwrap()
            .modify_loose(&parse_all, |_| true, |r| r.data = v);
        let g = epoch.bump();
        while !epoch.quiesced(g) {
            assert!(!fwd.is_finished(), "forwarding thread died");
            std::thread::yield_now();
        }
        barrier_done.store(v as u64, Ordering::SeqCst);
    }
    stop.store(true, Ordering::SeqCst);
    fwd.join().unwrap();
}

#[test]
fn quiescence_follows_batches() {
    // Deterministic interleaving of one control thread and two readers.
    let clock = Generation::new(2);
    let mut table = Classifier::new();
    table.insert(Match::new(), 0, 1u32);
    let mut cache = FlowCache::new(8, 8);
    let k = key(1, 1, 80);
    // Reader 0 in a batch; reader 1 idle.
    let g0 = clock.enter(0);
    assert_eq!(fast_path(&mut cache, &table, &k, g0), Some(1));
    // FLOW_MOD: new action, bump.
    table.modify_loose(&Match::new(), |_| true, |r| r.data = 2);
    let g1 = clock.bump();
    // Reader 0 may still be using g0 entries: no barrier reply yet.
    assert!(!clock.quiesced(g1));
    assert_eq!(cache.lookup(&k, g0), Some(Some(1)), "same batch: old entry");
    // Next batch: reader 0 moves to g1, old entries miss; barrier can go.
    let g = clock.enter(0);
    assert_eq!(g, g1);
    assert!(clock.quiesced(g1));
    assert_eq!(cache.lookup(&k, g), None);
    assert_eq!(fast_path(&mut cache, &table, &k, g), Some(2));
    // An idle reader never holds a barrier back; a reader that was in a
    // batch before the bump does until it enters again.
    clock.leave(0);
    let _ = clock.enter(1);
    let g2 = clock.bump();
    assert!(!clock.quiesced(g2));
    clock.leave(1);
    assert!(clock.quiesced(g2));
}

#[test]
fn emc_compact_keys() {
    let mut emc = ExactMatchCache::new(64);
    // Keys differing only in which word holds a value must not collide.
    let mut a = FlowKey::ZERO;
    a.w[3] = 7;
    let mut b = FlowKey::ZERO;
    b.w[4] = 7;
    emc.insert(&a, 1, 1, 'a');
    assert_eq!(emc.lookup(&b, 1, 1), None, "same hash, different key");
    assert_eq!(emc.lookup(&a, 1, 1), Some(&'a'));
    // A key with too many non-zero words is not cached (and never wrong).
    let full = FlowKey::ONES;
    emc.insert(&full, full.hash(), 1, 'f');
    assert_eq!(emc.lookup(&full, full.hash(), 1), None);
}

#[test]
fn megaflow_hits_promote_into_emc_one_in_n() {
    // One megaflow (in_port=1) serving many distinct exact keys.
    let mut cache: FlowCache<u32> = FlowCache::new(4096, 8);
    let mut wc = FlowKey::ZERO;
    wc.set(InPort, u32::MAX as u128);
    cache.megaflows.insert(&key(1, 0, 0), &wc, 1, 7);
    // A key hit repeatedly lands in the EMC within EMC_INSERT_INV hits.
    let k = key(1, 5, 5);
    for _ in 0..EMC_INSERT_INV {
        assert_eq!(cache.lookup(&k, 1), Some(7));
    }
    assert_eq!(cache.emc.lookup(&k, k.hash(), 1), Some(&7));
    // Many distinct keys: only one hit in EMC_INSERT_INV is promoted, so the
    // EMC is not rewritten on every packet; answers stay right.
    let n = 64 * EMC_INSERT_INV;
    for i in 0..n {
        assert_eq!(cache.lookup(&key(1, 100 + i, 80), 1), Some(7));
    }
    let promoted = (0..n)
        .filter(|&i| {
            let ki = key(1, 100 + i, 80);
            cache.emc.lookup(&ki, ki.hash(), 1).is_some()
        })
        .count();
    // (The EMC has room for all of them, so nothing promoted was evicted.)
    assert!(
        promoted >= 1 && promoted as u32 <= n / EMC_INSERT_INV + 1,
        "{promoted}"
    );
    assert_eq!(cache.stats.megaflow_hits, (EMC_INSERT_INV + n) as u64);
}
