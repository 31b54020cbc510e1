//! Fast-path micro-benchmarks: parse, classifier lookup with 10k exact-match
//! rules over 10k distinct flows, and the cached path (EMC / megaflow).
//!
//! `cargo bench -p plexus-vswitch --bench pipeline -- --warm-up-time 1 --measurement-time 3`
//! Each iteration processes all 10k flows; throughput is per packet.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use plexus_openflow::Match;
use plexus_openflow::oxm::FieldId;
use plexus_vswitch::cache::FlowCache;
use plexus_vswitch::classifier::Classifier;
use plexus_vswitch::flow::{FlowKey, PacketMeta, parse_into};

const N: u32 = 10_000;

/// A 60-byte Ethernet/IPv4/UDP frame of flow `i`.
fn frame(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&(0x0a00_0000 | (i >> 8)).to_be_bytes());
    ip[16..20].copy_from_slice(&(0x0a01_0000 | (i & 0xff)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(10_000 + i as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&4789u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn meta() -> PacketMeta {
    PacketMeta {
        in_port: 1,
        ..Default::default()
    }
}

/// 10k exact 5-tuple rules (one per flow) + a priority-0 table-miss rule.
fn table(keys: &[FlowKey]) -> Classifier<u32> {
    use FieldId::*;
    let mut c = Classifier::new();
    for (i, k) in keys.iter().enumerate() {
        let mut m = Match::new();
        for f in [InPort, EthType, Ipv4Src, Ipv4Dst, IpProto, UdpSrc, UdpDst] {
            m.set(f, k.get(f));
        }
        c.insert(m, 100, i as u32);
    }
    c.insert(Match::new(), 0, u32::MAX);
    c
}

fn benches(c: &mut Criterion) {
    let frames: Vec<Vec<u8>> = (0..N).map(frame).collect();
    let meta = meta();
    let keys: Vec<FlowKey> = frames
        .iter()
        .map(|f| {
            let mut k = FlowKey::ZERO;
            parse_into(&mut k, f, &meta).unwrap();
            k
        })
        .collect();
    let cls = table(&keys);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N as u64));

    g.bench_function("parse_udp4_10k", |b| {
        let mut k = FlowKey::ZERO;
        b.iter(|| {
            for f in &frames {
                let _ = parse_into(&mut k, black_box(f), &meta);
                black_box(&k);
            }
        })
    });

    g.bench_function("classifier_lookup_10k_rules_10k_flows", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for k in &keys {
                let mut wc = FlowKey::ZERO;
                sum += cls
                    .lookup(black_box(k), &mut wc)
                    .map_or(0, |r| r.data as u64);
            }
            sum
        })
    });

    g.bench_function("parse_plus_classifier_10k", |b| {
        let mut k = FlowKey::ZERO;
        b.iter(|| {
            let mut sum = 0u64;
            for f in &frames {
                let _ = parse_into(&mut k, black_box(f), &meta);
                let mut wc = FlowKey::ZERO;
                sum += cls.lookup(&k, &mut wc).map_or(0, |r| r.data as u64);
            }
            sum
        })
    });

    // Warm caches: every flow installed as a megaflow (exact 5-tuple mask,
    // from the classifier's wildcards) and, EMC permitting, in the EMC.
    let warm = |emc: usize| {
        let mut cache = FlowCache::new(emc, 2 * N as usize);
        for k in &keys {
            let mut wc = FlowKey::ZERO;
            let a = cls.lookup(k, &mut wc).map(|r| r.data);
            cache.insert(k, &wc, 1, a);
        }
        cache
    };

    // 10k flows in a 2-way 16k-entry EMC: ~84% EMC hits, the rest megaflow
    // hits that are promoted into the EMC (as in a real switch).
    g.bench_function("parse_plus_emc_then_megaflow_10k (16k-entry EMC)", |b| {
        let mut cache = warm(16_384);
        let mut k = FlowKey::ZERO;
        b.iter(|| {
            let mut sum = 0u64;
            for f in &frames {
                let _ = parse_into(&mut k, black_box(f), &meta);
                sum += cache.lookup(&k, 1).flatten().unwrap_or(0) as u64;
            }
            sum
        })
    });

    g.bench_function("parse_plus_megaflow_hit_10k (EMC off)", |b| {
        let mut cache = warm(2);
        let mut k = FlowKey::ZERO;
        b.iter(|| {
            let mut sum = 0u64;
            for f in &frames {
                let _ = parse_into(&mut k, black_box(f), &meta);
                sum += cache
                    .megaflows
                    .lookup(&k, 1)
                    .copied()
                    .flatten()
                    .unwrap_or(0) as u64;
            }
            sum
        })
    });
    g.bench_function("key_hash_10k", |b| {
        b.iter(|| keys.iter().fold(0u64, |a, k| a ^ black_box(k).hash()))
    });

    g.bench_function("emc_lookup_only_10k", |b| {
        let mut cache = warm(16_384);
        let hashes: Vec<u64> = keys.iter().map(|k| k.hash()).collect();
        b.iter(|| {
            let mut n = 0u64;
            for (k, h) in keys.iter().zip(&hashes) {
                n += cache.emc.lookup(black_box(k), *h, 1).is_some() as u64;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
