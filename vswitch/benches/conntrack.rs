//! Conntrack micro-benchmarks: commit of new connections and lookup of
//! established ones (plain and DNAT), 10k distinct UDP flows per iteration.
//!
//! `cargo bench -p plexus-vswitch --bench conntrack -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use plexus_vswitch::conntrack::{Conntrack, CtConfig, CtRequest, NatSpec, nat_kind};
use std::time::Instant;

const N: u32 = 10_000;

/// A 60-byte Ethernet/IPv4/UDP frame of flow `i` (reply: reversed).
fn frame(i: u32, reply: bool) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    let (mut a, mut b) = (0x0a00_0000 | (i >> 8), 0x0a01_0000 | (i & 0xff));
    let (mut sp, mut dp) = (10_000 + (i as u16), 53u16);
    if reply {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut sp, &mut dp);
    }
    ip[12..16].copy_from_slice(&a.to_be_bytes());
    ip[16..20].copy_from_slice(&b.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&sp.to_be_bytes());
    udp[2..4].copy_from_slice(&dp.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn benches(c: &mut Criterion) {
    let now = Instant::now();
    let mut frames: Vec<Vec<u8>> = (0..N).map(|i| frame(i, false)).collect();
    let commit = CtRequest {
        zone: 1,
        commit: true,
        ..Default::default()
    };
    let lookup = CtRequest {
        zone: 1,
        ..Default::default()
    };
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(N as u64));

    let mut ct = Conntrack::new(CtConfig::default(), now);
    g.bench_function("commit_10k_new", |b| {
        b.iter(|| {
            ct.flush();
            for f in frames.iter_mut() {
                black_box(ct.execute(f, &commit, now));
            }
        })
    });

    let mut ct = Conntrack::new(CtConfig::default(), now);
    for f in frames.iter_mut() {
        ct.execute(f, &commit, now);
    }
    g.bench_function("lookup_10k_established", |b| {
        b.iter(|| {
            for f in frames.iter_mut() {
                black_box(ct.execute(f, &lookup, now));
            }
        })
    });

    // DNAT: every packet is looked up and rewritten (checksums included).
    let mut ct = Conntrack::new(CtConfig::default(), now);
    let dnat = CtRequest {
        zone: 1,
        commit: true,
        nat: Some(NatSpec {
            kind: nat_kind::DST,
            addr: Some((0x0a02_0000, 0x0a02_00ff)),
            ports: Some((8080, 8080)),
            ..Default::default()
        }),
        ..Default::default()
    };
    for i in 0..N {
        ct.execute(&mut frame(i, false), &dnat, now);
    }
    let nat_lookup = CtRequest {
        zone: 1,
        nat: Some(NatSpec::default()),
        ..Default::default()
    };
    let orig: Vec<Vec<u8>> = (0..N).map(|i| frame(i, false)).collect();
    let mut work = orig.clone();
    g.bench_function("lookup_dnat_10k_established", |b| {
        b.iter(|| {
            for (w, o) in work.iter_mut().zip(&orig) {
                w.copy_from_slice(o);
                black_box(ct.execute(w, &nat_lookup, now));
            }
        })
    });
    g.finish();
}

criterion_group!(ct_benches, benches);
criterion_main!(ct_benches);
