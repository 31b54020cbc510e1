//! Micro-benchmark of VXLAN encapsulation and decapsulation as the vxlan
//! port does them per packet: inner-flow hash → UDP source port, outer
//! Ethernet/IPv4/UDP/VXLAN headers written in front of a copy of the inner
//! frame (the copy every port makes), IPv4 header checksum; and the VXLAN
//! header check on receive. No syscalls. Run:
//! `cargo bench -p plexus-vswitch --bench vxlan`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plexus_vswitch::port::vxlan::{Outer, decap, encap, inner_flow_hash, src_port};
use std::hint::black_box;
use std::net::Ipv4Addr;

fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[8, 0]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f[34..38].copy_from_slice(&[0x30, 0x39, 0, 80]);
    f
}

fn vxlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(1));
    let mut o = Outer {
        src_mac: [2, 0xaa, 0, 0, 0, 1],
        dst_mac: [2, 0xbb, 0, 0, 0, 2],
        src_ip: Ipv4Addr::new(192, 168, 77, 1),
        dst_ip: Ipv4Addr::new(192, 168, 77, 2),
        src_port: 0,
        dst_port: 4789,
        vni: 42,
        tos: 0,
        ttl: 64,
        df: true,
        ip_id: 0,
    };
    let mut out = vec![0u8; 2112];
    for size in [64usize, 1400] {
        let inner = frame(size);
        g.bench_function(format!("encap_{size}B"), |b| {
            b.iter(|| {
                o.src_port = src_port(inner_flow_hash(black_box(&inner)));
                black_box(encap(&mut out, black_box(&inner), &o))
            })
        });
        let n = encap(&mut out, &inner, &o).unwrap_or(0);
        let payload = out[42..n].to_vec();
        g.bench_function(format!("decap_{size}B"), |b| {
            b.iter(|| black_box(decap(black_box(&payload)).map(|(v, f)| v as usize + f.len())))
        });
    }
    g.finish();
}

criterion_group!(benches, vxlan);
criterion_main!(benches);
