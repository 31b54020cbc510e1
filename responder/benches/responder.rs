//! Reply build time per responder kind: `Responder::handle` (userdata decode + request
//! parse + reply build) on a valid request. Run: `cargo bench -p plexus-responder`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plexus_responder::{Dhcp4Spec, Handled, Responder, Spec};
use std::hint::black_box;
use std::net::Ipv4Addr;

const RMAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x2a];
const CMAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn frame(et: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CMAC);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn bench(c: &mut Criterion) {
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&CMAC);
    arp.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    let arp = frame(0x0806, &arp);
    let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
    icmp.extend((0..56).map(|i| i as u8));
    let ck = csum(&icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    let ping = frame(0x0800, &ipv4([10, 0, 0, 5], [10, 0, 0, 1], 1, &icmp));
    let mut bootp = vec![0u8; 240];
    bootp[0..3].copy_from_slice(&[1, 1, 6]);
    bootp[28..34].copy_from_slice(&CMAC);
    bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(&[53, 1, 1, 55, 4, 1, 3, 6, 26, 255]);
    let mut udp = vec![0, 68, 0, 67, 0, 0, 0, 0];
    udp[4..6].copy_from_slice(&((8 + bootp.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&bootp); // checksum 0 = not computed (allowed for UDP/IPv4)
    let discover = frame(0x0800, &ipv4([0; 4], [255; 4], 17, &udp));
    let dhcp = Spec::Dhcp4(Box::new(Dhcp4Spec {
        server_mac: RMAC,
        server_ip: gw,
        client_mac: CMAC,
        client_ip: Ipv4Addr::new(10, 0, 0, 5),
        prefix_len: 24,
        lease_secs: 3600,
        mtu: Some(1450),
        router: Some(gw),
        dns: vec![Ipv4Addr::new(10, 0, 0, 2)],
        domain: Some("plexus.test".into()),
    }));
    let cases = [
        ("arp_reply", Spec::Arp { mac: RMAC, ip: gw }.encode(), arp),
        (
            "icmp4_echo_reply_56B",
            Spec::Icmp4Echo { mac: RMAC, ip: gw }.encode(),
            ping,
        ),
        ("dhcp_discover_to_offer", dhcp.encode(), discover),
    ];
    let mut g = c.benchmark_group("responder");
    g.throughput(Throughput::Elements(1));
    for (name, ud, req) in cases {
        let mut r = Responder::new();
        assert!(matches!(r.handle(&ud, &req), Handled::Reply(_)), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| black_box(r.handle(black_box(&ud), black_box(&req))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
