//! Parse tests on frames built with etherparse, plus truncated and garbage
//! frames (never panic).

use super::*;
use etherparse::{Ethernet2Header, IpNumber, PacketBuilder, VlanId};
use plexus_openflow::oxm::FieldId::*;
use proptest::prelude::*;

const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC_SRC: u128 = 0x0200_0000_0001;
const MAC_DST: u128 = 0x0200_0000_0002;
const V6A: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn meta() -> PacketMeta {
    PacketMeta {
        in_port: 3,
        ..Default::default()
    }
}

fn ok(frame: &[u8]) -> FlowKey {
    let (k, r) = parse(frame, &meta());
    assert_eq!(r, Ok(()), "{k:?}");
    assert_eq!(k.get(InPort), 3);
    k
}

fn eth_raw(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Ethernet2Header {
        source: SRC,
        destination: DST,
        ether_type: etherparse::EtherType(ty),
    }
    .write(&mut v)
    .unwrap();
    v.extend_from_slice(body);
    v
}

pub(crate) fn udp4_frame(sp: u16, dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(sp, dp)
        .write(&mut v, &[0u8; 18])
        .unwrap();
    v
}

#[test]
fn parse_ipv4_udp() {
    let mut f = udp4_frame(1234, 53);
    f[15] = 0xb9; // tos: dscp 46, ecn 1
    let k = ok(&f);
    assert_eq!(k.get(EthSrc), MAC_SRC);
    assert_eq!(k.get(EthDst), MAC_DST);
    assert_eq!(k.get(EthType), 0x0800);
    assert_eq!(k.get(VlanVid), 0);
    assert_eq!(k.get(Ipv4Src), 0x0a00_0001);
    assert_eq!(k.get(Ipv4Dst), 0x0a00_0002);
    assert_eq!(k.get(IpProto), 17);
    assert_eq!(k.get(IpTtl), 64);
    assert_eq!(k.get(IpDscp), 46);
    assert_eq!(k.get(IpEcn), 1);
    assert_eq!(k.get(NwTos), 0xb8);
    assert_eq!(k.get(IpFrag), 0);
    assert_eq!(k.get(UdpSrc), 1234);
    assert_eq!(k.get(UdpDst), 53);
}

#[test]
fn parse_vlan_tcp() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv4([192, 168, 1, 1], [192, 168, 1, 2], 5)
        .tcp(40000, 443, 1, 1000)
        .syn()
        .ack(7)
        .write(&mut v, b"hello")
        .unwrap();
    v[14] |= 5 << 5; // pcp 5
    let k = ok(&v);
    assert_eq!(k.get(VlanVid), 0x1000 | 100);
    assert_eq!(k.get(VlanPcp), 5);
    assert_eq!(k.get(EthType), 0x0800);
    assert_eq!(k.get(IpProto), 6);
    assert_eq!(k.get(TcpSrc), 40000);
    assert_eq!(k.get(TcpDst), 443);
    assert_eq!(k.get(TcpFlags), 0x012);
    assert_eq!(k.get(IpTtl), 5);
}

#[test]
fn parse_icmpv4() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut v, b"ping")
        .unwrap();
    let k = ok(&v);
    assert_eq!(k.get(IpProto), 1);
    assert_eq!(k.get(Icmpv4Type), 8);
    assert_eq!(k.get(Icmpv4Code), 0);
}

#[test]
fn parse_sctp_over_ipv4() {
    let mut v = Vec::new();
    let sctp = [0x0b, 0xb8, 0x0f, 0xa0, 0, 0, 0, 1, 0, 0, 0, 0];
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .write(&mut v, IpNumber(132), &sctp)
        .unwrap();
    let k = ok(&v);
    assert_eq!(k.get(IpProto), 132);
    assert_eq!(k.get(SctpSrc), 3000);
    assert_eq!(k.get(SctpDst), 4000);
}

#[test]
fn parse_ipv4_fragments() {
    let base = udp4_frame(1, 2);
    // First fragment: MF set, offset 0: L4 parsed.
    let mut f = base.clone();
    f[20] = 0x20;
    let k = ok(&f);
    assert_eq!(k.get(IpFrag), 1);
    assert_eq!(k.get(UdpDst), 2);
    // Later fragment: offset != 0: no L4.
    let mut f = base.clone();
    f[21] = 0x10;
    let k = ok(&f);
    assert_eq!(k.get(IpFrag), 3);
    assert_eq!(k.get(UdpDst), 0);
    assert_eq!(k.get(IpProto), 17);
}

#[test]
fn parse_ipv6_tcp_and_label() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 33)
        .tcp(1, 2, 3, 4)
        .fin()
        .write(&mut v, &[])
        .unwrap();
    // version 6, traffic class 0xa4, flow label 0x12345
    v[14..18].copy_from_slice(&(0x6000_0000u32 | (0xa4 << 20) | 0x12345).to_be_bytes());
    let k = ok(&v);
    assert_eq!(k.get(EthType), 0x86dd);
    assert_eq!(k.get(Ipv6Src), u128::from_be_bytes(V6A));
    assert_eq!(k.get(Ipv6Dst), u128::from_be_bytes(V6B));
    assert_eq!(k.get(Ipv6Flabel), 0x12345);
    assert_eq!(k.get(IpDscp), 0xa4 >> 2);
    assert_eq!(k.get(IpTtl), 33);
    assert_eq!(k.get(IpProto), 6);
    assert_eq!(k.get(TcpFlags), 1);
    assert_eq!(k.get(TcpDst), 2);
}

#[test]
fn parse_ipv6_ext_headers_and_fragment() {
    // hop-by-hop (8 bytes) → fragment (offset 0, M) → UDP
    let mut payload = vec![44, 0, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 9]);
    payload.extend_from_slice(&[0, 7, 0, 8, 0, 8, 0, 0]);
    // etherparse refuses raw extension headers; build the IPv6 header by hand.
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip6.extend_from_slice(&[0, 64]);
    ip6.extend_from_slice(&V6A);
    ip6.extend_from_slice(&V6B);
    ip6.extend_from_slice(&payload);
    let mut v = eth_raw(0x86dd, &ip6);
    let k = ok(&v);
    assert_eq!(k.get(IpProto), 17);
    assert_eq!(k.get(IpFrag), 1);
    assert_eq!(k.get(UdpSrc), 7);
    assert_eq!(k.get(UdpDst), 8);
    assert_eq!(
        k.get(Ipv6Exthdr) as u64,
        parse::exthdr::HOP | parse::exthdr::FRAG
    );
    // later fragment
    let hdr = 14 + 40 + 8;
    v[hdr + 2] = 0x01;
    v[hdr + 3] = 0x00;
    let k = ok(&v);
    assert_eq!(k.get(IpFrag), 3);
    assert_eq!(k.get(UdpDst), 0);
}

fn nd_frame(ty: u8, target: [u8; 16], opts: &[u8]) -> Vec<u8> {
    let mut body = target.to_vec();
    body.extend_from_slice(opts);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 255)
        .icmpv6_raw(ty, 0, [0; 4])
        .write(&mut v, &body)
        .unwrap();
    v
}

#[test]
fn parse_icmpv6_and_nd() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut v, &[])
        .unwrap();
    let k = ok(&v);
    assert_eq!(k.get(IpProto), 58);
    assert_eq!(k.get(Icmpv6Type), 128);
    assert_eq!(k.get(Icmpv6Code), 0);

    let sll = [1, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    let k = ok(&nd_frame(135, V6B, &sll));
    assert_eq!(k.get(Icmpv6Type), 135);
    assert_eq!(k.get(Ipv6NdTarget), u128::from_be_bytes(V6B));
    assert_eq!(k.get(Ipv6NdSll), 0xaabb_ccdd_eeff);
    assert_eq!(k.get(Ipv6NdTll), 0);

    let tll = [2, 1, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
    let k = ok(&nd_frame(136, V6A, &tll));
    assert_eq!(k.get(Ipv6NdTarget), u128::from_be_bytes(V6A));
    assert_eq!(k.get(Ipv6NdTll), 0x1122_3344_5566);

    // Zero-length option: malformed, ND fields cleared, L3/L4 kept.
    let (k, r) = parse(&nd_frame(135, V6B, &[1, 0, 0, 0, 0, 0, 0, 0]), &meta());
    assert_eq!(r, Err(ParseError::NdMalformed));
    assert_eq!(k.get(Ipv6NdTarget), 0);
    assert_eq!(k.get(Icmpv6Type), 135);
    // Duplicate SLL.
    let dup = [sll, sll].concat();
    let (_, r) = parse(&nd_frame(135, V6B, &dup), &meta());
    assert_eq!(r, Err(ParseError::NdMalformed));
}

#[test]
fn parse_arp() {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
    arp.extend_from_slice(&SRC);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    arp.extend_from_slice(&DST);
    arp.extend_from_slice(&[10, 0, 0, 2]);
    arp.resize(46, 0); // Ethernet padding
    let k = ok(&eth_raw(0x0806, &arp));
    assert_eq!(k.get(EthType), 0x0806);
    assert_eq!(k.get(ArpOp), 2);
    assert_eq!(k.get(ArpSpa), 0x0a00_0001);
    assert_eq!(k.get(ArpTpa), 0x0a00_0002);
    assert_eq!(k.get(ArpSha), MAC_SRC);
    assert_eq!(k.get(ArpTha), MAC_DST);
    let (k, r) = parse(&eth_raw(0x0806, &arp[..20]), &meta());
    assert_eq!(r, Err(ParseError::ArpTruncated));
    assert_eq!(k.get(EthType), 0x0806);
}

#[test]
fn parse_mpls_and_llc() {
    // label 0x12345, tc 5, bos 1, ttl 9
    let lse = (0x12345u32 << 12) | (5 << 9) | (1 << 8) | 9;
    let k = ok(&eth_raw(0x8847, &lse.to_be_bytes()));
    assert_eq!(k.get(MplsLabel), 0x12345);
    assert_eq!(k.get(MplsTc), 5);
    assert_eq!(k.get(MplsBos), 1);
    assert_eq!(k.get(MplsTtl), 9);
    // 802.3 without SNAP.
    let k = ok(&eth_raw(40, &[0x42, 0x42, 3, 0, 0, 0, 0, 0]));
    assert_eq!(k.get(EthType), 0x05ff);
    // LLC/SNAP carrying ARP's ethertype.
    let k = ok(&eth_raw(40, &[0xaa, 0xaa, 3, 0, 0, 0, 0x88, 0xcc]));
    assert_eq!(k.get(EthType), 0x88cc);
}

#[test]
fn metadata_lands_in_key() {
    let m = PacketMeta {
        in_port: 7,
        tunnel: TunnelMeta {
            id: 0x1234,
            src: 1,
            dst: 2,
            ipv6_src: 3,
            ipv6_dst: 4,
            flags: 1,
            gbp_id: 5,
            gbp_flags: 6,
        },
        regs: core::array::from_fn(|i| i as u32 + 100),
        metadata: 0xdead_beef,
        ct_state: 0x21,
        ct_zone: 9,
        ct_mark: 10,
        ct_label: 11,
        pkt_mark: 12,
    };
    let (k, r) = parse(&udp4_frame(1, 2), &m);
    r.unwrap();
    let expect = [
        (InPort, 7),
        (TunnelId, 0x1234),
        (TunIpv4Src, 1),
        (TunIpv4Dst, 2),
        (TunIpv6Src, 3),
        (TunIpv6Dst, 4),
        (TunFlags, 1),
        (TunGbpId, 5),
        (TunGbpFlags, 6),
        (Reg0, 100),
        (Reg15, 115),
        (Metadata, 0xdead_beef),
        (CtState, 0x21),
        (CtZone, 9),
        (CtMark, 10),
        (CtLabel, 11),
        (PktMark, 12),
    ];
    for (f, v) in expect {
        assert_eq!(k.get(f), v, "{}", f.name());
    }
}

fn all_valid_frames() -> Vec<Vec<u8>> {
    let mut v = vec![udp4_frame(1, 2)];
    let mut b = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .single_vlan(VlanId::try_new(5).unwrap())
        .ipv6(V6A, V6B, 64)
        .tcp(1, 2, 3, 4)
        .write(&mut b, &[1, 2, 3])
        .unwrap();
    v.push(b);
    v.push(nd_frame(135, V6B, &[1, 1, 1, 2, 3, 4, 5, 6]));
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&[0; 20]);
    v.push(eth_raw(0x0806, &arp));
    v.push(eth_raw(0x8847, &[0, 0, 1, 1]));
    v
}

#[test]
fn truncated_frames_never_panic_and_report() {
    for f in all_valid_frames() {
        let (full, r) = parse(&f, &meta());
        assert_eq!(r, Ok(()));
        for len in 0..f.len() {
            let (k, r) = parse(&f[..len], &meta());
            if len < 14 {
                assert_eq!(r, Err(ParseError::Runt));
                assert_eq!(k.get(EthType), 0);
            } else {
                // L2 always survives.
                assert_eq!(k.get(EthSrc), full.get(EthSrc));
            }
        }
    }
}

#[test]
fn stats_count_reasons() {
    let mut s = ParseStats::default();
    s.record(parse(&[0; 3], &meta()).1);
    s.record(parse(&udp4_frame(1, 2), &meta()).1);
    assert_eq!(s.ok, 1);
    assert_eq!(s.iter().find(|(n, _)| *n == "runt").unwrap().1, 1);
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes, &meta());
    }

    /// Valid headers with random tails: the interesting branches get random input.
    #[test]
    fn random_payloads_after_real_headers(
        ty in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x8847, 0x88a8, 0x0026]),
        body in proptest::collection::vec(any::<u8>(), 0..120),
        ver in 0u8..16,
    ) {
        let mut body = body;
        if let Some(b) = body.first_mut() {
            *b = (ver << 4) | (*b & 0x0f);
        }
        let _ = parse(&eth_raw(ty, &body), &meta());
    }

    /// Bit flips in well-formed frames.
    #[test]
    fn bit_flips_never_panic(which in 0usize..5, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut f = all_valid_frames().swap_remove(which);
        let i = pos.index(f.len());
        f[i] ^= 1 << bit;
        let _ = parse(&f, &meta());
    }
}

#[test]
fn pbb_itag_isid_untagged_and_behind_s_tag() {
    // I-TAG: PCP 5, DEI 1 (0xb0), I-SID 0x123456, then the customer frame.
    let inner = eth_raw(0x0800, &[0u8; 20]);
    let mut body = vec![0xb0, 0x12, 0x34, 0x56];
    body.extend_from_slice(&inner);
    let k = ok(&eth_raw(0x88e7, &body));
    assert_eq!(k.get(EthType), 0x88e7);
    assert_eq!(k.get(PbbIsid), 0x123456);
    assert_eq!(k.get(Ipv4Src), 0, "customer frame not parsed");
    // S-tag (0x88a8) then the I-TAG.
    let mut tagged = vec![0x00, 0x0a, 0x88, 0xe7];
    tagged.extend_from_slice(&body);
    let k = ok(&eth_raw(0x88a8, &tagged));
    assert_eq!(k.get(EthType), 0x88e7);
    assert_eq!(k.get(PbbIsid), 0x123456);
    assert_eq!(k.get(VlanVid), 0x100a);
    // Cut I-TAG: no I-SID, no panic.
    let k = ok(&eth_raw(0x88e7, &[0xb0, 0x12]));
    assert_eq!(k.get(PbbIsid), 0);
}
