//! Unit tests against frames built by hand here (own RFC 1071 checksum, byte offsets
//! from the RFCs), not by smoltcp, so a smoltcp misuse cannot hide behind itself.

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const RMAC: [u8; 6] = [0x0a, 0x00, 0x00, 0x00, 0x00, 0x2a];
const CMAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

fn csum(parts: &[&[u8]]) -> u16 {
    let mut s: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                Some(h) => s += u32::from(u16::from_be_bytes([h, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(h) = odd {
        s += u32::from(h) << 8;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    let tl = (20 + payload.len()) as u16;
    h[2..4].copy_from_slice(&tl.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::new();
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut ph = Vec::new();
    ph.extend_from_slice(&src.octets());
    ph.extend_from_slice(&dst.octets());
    ph.extend_from_slice(&[0, 17]);
    ph.extend_from_slice(&len.to_be_bytes());
    let c = csum(&[&ph, &u]);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn v6_frame(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    icmp: &[u8],
) -> Vec<u8> {
    let mut icmp = icmp.to_vec();
    let mut ph = Vec::new();
    ph.extend_from_slice(&src.octets());
    ph.extend_from_slice(&dst.octets());
    ph.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, 58]);
    icmp[2] = 0;
    icmp[3] = 0;
    let c = csum(&[&ph, &icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    ip.push(58);
    ip.push(hop);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&icmp);
    eth(dmac, smac, 0x86dd, &ip)
}

fn arp_req(spa: Ipv4Addr, tpa: Ipv4Addr, op: u16) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&CMAC);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa.octets());
    eth([0xff; 6], CMAC, 0x0806, &a)
}

fn run(spec: &Spec, frame: &[u8]) -> Result<(Answer, Vec<u8>), DropReason> {
    let mut out = Vec::new();
    respond(spec, frame, &mut out).map(|a| (a, out))
}

// ---------------------------------------------------------------- spec

fn dhcp_spec() -> Dhcp4Spec {
    Dhcp4Spec {
        server_mac: RMAC,
        server_ip: GW,
        client_mac: CMAC,
        client_ip: CIP,
        prefix_len: 24,
        lease_secs: 3600,
        mtu: Some(1450),
        router: Some(GW),
        dns: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(9, 9, 9, 9)],
        domain: Some("plexus.test".into()),
    }
}

#[test]
fn spec_round_trip_and_bytes() {
    let s = Spec::Arp { mac: RMAC, ip: GW };
    assert_eq!(
        s.encode(),
        [
            b'P', b'L', b'X', b'R', 1, 1, 0x0a, 0, 0, 0, 0, 0x2a, 10, 0, 0, 1
        ]
    );
    for s in [
        s,
        Spec::Icmp4Echo { mac: RMAC, ip: GW },
        Spec::Nd {
            mac: RMAC,
            ip: "fd00::1".parse().unwrap(),
            router: true,
        },
        Spec::Icmp6Echo {
            mac: RMAC,
            ip: "fd00::1".parse().unwrap(),
        },
        Spec::Dhcp4(Box::new(dhcp_spec())),
    ] {
        assert_eq!(Spec::decode(&s.encode()), Ok(s.clone()));
    }
}

#[test]
fn spec_errors() {
    let good = Spec::Dhcp4(Box::new(dhcp_spec())).encode();
    assert_eq!(Spec::decode(b"XXXX\x01\x01"), Err(SpecError::NotPlexus));
    assert_eq!(Spec::decode(b"PLXR\x02\x01"), Err(SpecError::BadVersion(2)));
    assert_eq!(
        Spec::decode(b"PLXR\x01\x09"),
        Err(SpecError::UnknownKind(9))
    );
    for n in 4..good.len() {
        assert!(Spec::decode(&good[..n]).is_err(), "prefix {n}");
    }
    let mut t = good.clone();
    t.push(0);
    assert_eq!(Spec::decode(&t), Err(SpecError::Trailing(1)));
    let mut d = dhcp_spec();
    d.prefix_len = 33;
    assert_eq!(
        Spec::decode(&Spec::Dhcp4(Box::new(d)).encode()),
        Err(SpecError::BadField("prefix_len"))
    );
    let mc = Spec::Arp {
        mac: [1, 0, 0, 0, 0, 1],
        ip: GW,
    };
    assert_eq!(Spec::decode(&mc.encode()), Err(SpecError::BadField("mac")));
}

// ---------------------------------------------------------------- ARP

#[test]
fn arp_reply_exact_bytes() {
    let req = arp_req(CIP, GW, 1);
    let (a, out) = run(&Spec::Arp { mac: RMAC, ip: GW }, &req).unwrap();
    assert_eq!(a, Answer::Reply(None));
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &CMAC[..], &RMAC[..], &[0x08, 0x06][..],           // eth dst = requester, src = router
        &[0, 1, 8, 0, 6, 4, 0, 2][..],                     // Ethernet/IPv4, op = reply
        &RMAC[..], &[10, 0, 0, 1][..],                     // sha/spa = answer
        &CMAC[..], &[10, 0, 0, 5][..],                     // tha/tpa = requester
        &[0u8; 18][..],                                    // padding to 60
    ].concat();
    assert_eq!(out, want);
}

#[test]
fn arp_drops() {
    let s = Spec::Arp { mac: RMAC, ip: GW };
    assert_eq!(
        run(&s, &arp_req(CIP, Ipv4Addr::new(10, 0, 0, 9), 1)).unwrap_err(),
        DropReason::WrongTarget
    );
    assert_eq!(
        run(&s, &arp_req(CIP, GW, 2)).unwrap_err(),
        DropReason::NotRequest
    );
    assert_eq!(
        run(&s, &arp_req(GW, GW, 1)).unwrap_err(),
        DropReason::NotRequest
    );
    let req = arp_req(CIP, GW, 1);
    assert_eq!(run(&s, &req[..30]).unwrap_err(), DropReason::Malformed);
    assert_eq!(run(&s, &req[..10]).unwrap_err(), DropReason::Malformed);
    let mut bad_hw = req.clone();
    bad_hw[15] = 6; // htype 6
    assert_eq!(run(&s, &bad_hw).unwrap_err(), DropReason::Unsupported);
}

#[test]
fn arp_keeps_vlan_tag() {
    let req = arp_req(CIP, GW, 1);
    let mut tagged = req[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged.extend_from_slice(&req[12..]);
    let (_, out) = run(&Spec::Arp { mac: RMAC, ip: GW }, &tagged).unwrap();
    assert_eq!(&out[12..18], &[0x81, 0x00, 0x00, 0x64, 0x08, 0x06]);
    assert_eq!(&out[18 + 6..18 + 8], &[0, 2]);
    assert_eq!(out.len(), 60);
}

// ---------------------------------------------------------------- ICMP

fn echo4(dst: Ipv4Addr, typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![typ, 0, 0, 0, 0x12, 0x34, 0x00, 0x07];
    icmp.extend_from_slice(payload);
    let c = csum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    eth(RMAC, CMAC, 0x0800, &ipv4(CIP, dst, 1, &icmp))
}

#[test]
fn icmp4_echo_reply() {
    let payload: Vec<u8> = (0u8..56).collect();
    let (_, out) = run(
        &Spec::Icmp4Echo { mac: RMAC, ip: GW },
        &echo4(GW, 8, &payload),
    )
    .unwrap();
    assert_eq!(&out[0..6], &CMAC);
    assert_eq!(&out[6..12], &RMAC);
    assert_eq!(&out[12..14], &[8, 0]);
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 56);
    assert_eq!(ip[8], 64);
    assert_eq!(ip[9], 1);
    assert_eq!(&ip[12..16], &GW.octets());
    assert_eq!(&ip[16..20], &CIP.octets());
    assert_eq!(csum(&[ip]), 0, "IPv4 header checksum");
    let icmp = &out[34..34 + 64];
    assert_eq!(&icmp[0..2], &[0, 0], "echo reply, code 0");
    assert_eq!(&icmp[4..8], &[0x12, 0x34, 0, 7], "ident + seq kept");
    assert_eq!(&icmp[8..], &payload[..]);
    assert_eq!(csum(&[icmp]), 0, "ICMP checksum");
}

#[test]
fn icmp4_drops() {
    let s = Spec::Icmp4Echo { mac: RMAC, ip: GW };
    assert_eq!(
        run(&s, &echo4(CIP, 8, b"x")).unwrap_err(),
        DropReason::WrongTarget
    );
    assert_eq!(
        run(&s, &echo4(GW, 0, b"x")).unwrap_err(),
        DropReason::NotRequest
    );
    let mut bad = echo4(GW, 8, b"abcd");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(run(&s, &bad).unwrap_err(), DropReason::BadChecksum);
    let mut frag = echo4(GW, 8, b"abcd");
    frag[20] = 0x20; // MF
    assert_eq!(run(&s, &frag).unwrap_err(), DropReason::Unsupported);
    let mut badip = echo4(GW, 8, b"abcd");
    badip[22] ^= 1; // TTL changed, checksum not
    assert_eq!(run(&s, &badip).unwrap_err(), DropReason::BadChecksum);
    assert_eq!(
        run(&s, &arp_req(CIP, GW, 1)).unwrap_err(),
        DropReason::NotRequest
    );
}

const V6GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const V6C: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5);

#[test]
fn icmp6_echo_reply() {
    let mut req = vec![128, 0, 0, 0, 0xab, 0xcd, 0, 1];
    req.extend_from_slice(b"hello");
    let f = v6_frame(RMAC, CMAC, V6C, V6GW, 64, &req);
    let (_, out) = run(
        &Spec::Icmp6Echo {
            mac: RMAC,
            ip: V6GW,
        },
        &f,
    )
    .unwrap();
    assert_eq!(&out[0..6], &CMAC);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    let ip = &out[14..54];
    assert_eq!(ip[6], 58);
    assert_eq!(&ip[8..24], &V6GW.octets());
    assert_eq!(&ip[24..40], &V6C.octets());
    let icmp = &out[54..54 + 13];
    assert_eq!(icmp[0], 129);
    assert_eq!(&icmp[4..8], &[0xab, 0xcd, 0, 1]);
    assert_eq!(&icmp[8..], b"hello");
    let mut ph = Vec::new();
    ph.extend_from_slice(&V6GW.octets());
    ph.extend_from_slice(&V6C.octets());
    ph.extend_from_slice(&13u32.to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, 58]);
    assert_eq!(csum(&[&ph, icmp]), 0, "ICMPv6 checksum");
}

fn ns(target: Ipv6Addr, sll: Option<[u8; 6]>) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    if let Some(l) = sll {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&l);
    }
    m
}

#[test]
fn nd_na_solicited() {
    let snm: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let f = v6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        CMAC,
        V6C,
        snm,
        255,
        &ns(V6GW, Some(CMAC)),
    );
    let s = Spec::Nd {
        mac: RMAC,
        ip: V6GW,
        router: true,
    };
    let (_, out) = run(&s, &f).unwrap();
    assert_eq!(
        &out[0..6],
        &CMAC,
        "unicast to the solicitor's link-layer address"
    );
    let ip = &out[14..54];
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(&ip[8..24], &V6GW.octets());
    assert_eq!(&ip[24..40], &V6C.octets());
    let na = &out[54..54 + 32];
    assert_eq!(na[0], 136);
    assert_eq!(na[4], 0b1110_0000, "R S O");
    assert_eq!(&na[8..24], &V6GW.octets());
    assert_eq!(&na[24..26], &[2, 1], "target link-layer option");
    assert_eq!(&na[26..32], &RMAC);
    let mut ph = Vec::new();
    ph.extend_from_slice(&V6GW.octets());
    ph.extend_from_slice(&V6C.octets());
    ph.extend_from_slice(&32u32.to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, 58]);
    assert_eq!(csum(&[&ph, na]), 0);
}

#[test]
fn nd_dad_and_drops() {
    let s = Spec::Nd {
        mac: RMAC,
        ip: V6GW,
        router: false,
    };
    let snm: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let dad = v6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        CMAC,
        Ipv6Addr::UNSPECIFIED,
        snm,
        255,
        &ns(V6GW, None),
    );
    let (_, out) = run(&s, &dad).unwrap();
    assert_eq!(&out[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(
        &out[14 + 24..14 + 40],
        &"ff02::1".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(out[54 + 4], 0b0010_0000, "override only, not solicited");
    let hop64 = v6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        CMAC,
        V6C,
        snm,
        64,
        &ns(V6GW, Some(CMAC)),
    );
    assert_eq!(run(&s, &hop64).unwrap_err(), DropReason::Malformed);
    let other = v6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        CMAC,
        V6C,
        snm,
        255,
        &ns(V6C, Some(CMAC)),
    );
    assert_eq!(run(&s, &other).unwrap_err(), DropReason::WrongTarget);
    let mut bad = v6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        CMAC,
        V6C,
        snm,
        255,
        &ns(V6GW, Some(CMAC)),
    );
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(run(&s, &bad).unwrap_err(), DropReason::BadChecksum);
}

// ---------------------------------------------------------------- DHCP

/// A BOOTREQUEST like busybox udhcpc's: `opts` are (code, data) pairs after option 53.
fn dhcp_msg(msg: u8, ciaddr: Ipv4Addr, chaddr: [u8; 6], opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[28..34].copy_from_slice(&chaddr);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(&[53, 1, msg]);
    // A client identifier of type 0xff (RFC 4361 DUID form) must not upset the server.
    b.extend_from_slice(&[61, 9, 0xff, 1, 2, 3, 4, 0, 1, 2, 3]);
    for (c, d) in opts {
        b.push(*c);
        b.push(d.len() as u8);
        b.extend_from_slice(d);
    }
    b.extend_from_slice(&[55, 4, 1, 3, 6, 26, 255]);
    b
}

fn dhcp_frame(src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, bootp: &[u8]) -> Vec<u8> {
    eth(
        [0xff; 6],
        src_mac,
        0x0800,
        &ipv4(src, dst, 17, &udp(src, dst, 68, 67, bootp)),
    )
}

fn discover() -> Vec<u8> {
    dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]),
    )
}

/// (yiaddr, ip dst, options) of a reply, parsed by hand.
fn parse_reply(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, Vec<(u8, Vec<u8>)>) {
    assert_eq!(&out[12..14], &[8, 0]);
    let ip = &out[14..34];
    assert_eq!(csum(&[ip]), 0, "IPv4 header checksum");
    assert_eq!(ip[9], 17);
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tl = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let u = &out[34..14 + tl];
    assert_eq!(&u[0..4], &[0, 67, 0, 68]);
    assert_eq!(u16::from_be_bytes([u[4], u[5]]) as usize, u.len());
    let mut ph = Vec::new();
    ph.extend_from_slice(&src.octets());
    ph.extend_from_slice(&dst.octets());
    ph.extend_from_slice(&[0, 17]);
    ph.extend_from_slice(&(u.len() as u16).to_be_bytes());
    assert_eq!(csum(&[&ph, u]), 0, "UDP checksum");
    let b = &u[8..];
    assert!(b.len() >= 300, "BOOTP minimum size");
    assert_eq!(b[0], 2, "BOOTREPLY");
    assert_eq!(&b[4..8], &0xdead_beefu32.to_be_bytes(), "xid");
    assert_eq!(&b[28..34], &CMAC);
    assert_eq!(&b[236..240], &[99, 130, 83, 99]);
    let yi = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mut opts = Vec::new();
    let mut i = 240;
    while i < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (c, l) = (b[i], b[i + 1] as usize);
        opts.push((c, b[i + 2..i + 2 + l].to_vec()));
        i += 2 + l;
    }
    assert!(i < b.len(), "end option present");
    (yi, dst, opts)
}

fn opt(opts: &[(u8, Vec<u8>)], c: u8) -> Option<Vec<u8>> {
    opts.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone())
}

#[test]
fn dhcp_discover_offer() {
    let s = Spec::Dhcp4(Box::new(dhcp_spec()));
    let (a, out) = run(&s, &discover()).unwrap();
    assert_eq!(a, Answer::Reply(Some(DhcpEvent::Offer)));
    assert_eq!(&out[0..6], &CMAC, "to the client's MAC");
    assert_eq!(&out[6..12], &RMAC);
    let (yi, dst, o) = parse_reply(&out);
    assert_eq!(yi, CIP);
    assert_eq!(dst, CIP, "no broadcast flag: unicast to yiaddr");
    assert_eq!(opt(&o, 53), Some(vec![2]), "OFFER");
    assert_eq!(opt(&o, 54), Some(GW.octets().to_vec()), "server id");
    assert_eq!(opt(&o, 51), Some(3600u32.to_be_bytes().to_vec()));
    assert_eq!(opt(&o, 58), Some(1800u32.to_be_bytes().to_vec()));
    assert_eq!(opt(&o, 59), Some(3150u32.to_be_bytes().to_vec()));
    assert_eq!(opt(&o, 1), Some(vec![255, 255, 255, 0]));
    assert_eq!(opt(&o, 3), Some(GW.octets().to_vec()));
    assert_eq!(opt(&o, 6), Some(vec![10, 0, 0, 2, 9, 9, 9, 9]));
    assert_eq!(opt(&o, 15), Some(b"plexus.test".to_vec()));
    assert_eq!(opt(&o, 26), Some(1450u16.to_be_bytes().to_vec()));
    assert_eq!(opt(&o, 28), Some(vec![10, 0, 0, 255]));
}

#[test]
fn dhcp_request_ack_nak_and_broadcast_flag() {
    let s = Spec::Dhcp4(Box::new(dhcp_spec()));
    let mut bootp = dhcp_msg(
        3,
        Ipv4Addr::UNSPECIFIED,
        CMAC,
        &[(50, &CIP.octets()), (54, &GW.octets())],
    );
    bootp[10] = 0x80; // broadcast flag
    let f = dhcp_frame(CMAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &bootp);
    let (a, out) = run(&s, &f).unwrap();
    assert_eq!(a, Answer::Reply(Some(DhcpEvent::Ack)));
    let (yi, dst, o) = parse_reply(&out);
    assert_eq!((yi, dst), (CIP, Ipv4Addr::BROADCAST));
    assert_eq!(opt(&o, 53), Some(vec![5]), "ACK");
    // Renewal: ciaddr set, unicast to the server; reply unicast to ciaddr.
    let renew = dhcp_frame(CMAC, CIP, GW, &dhcp_msg(3, CIP, CMAC, &[]));
    let (_, out) = run(&s, &renew).unwrap();
    let (yi, dst, _) = parse_reply(&out);
    assert_eq!((yi, dst), (CIP, CIP));
    // Another address: NAK, broadcast, no lease options.
    let other = Ipv4Addr::new(10, 0, 0, 77);
    let f = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(3, Ipv4Addr::UNSPECIFIED, CMAC, &[(50, &other.octets())]),
    );
    let (a, out) = run(&s, &f).unwrap();
    assert_eq!(a, Answer::Reply(Some(DhcpEvent::Nak)));
    let (yi, dst, o) = parse_reply(&out);
    assert_eq!((yi, dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    assert_eq!(opt(&o, 53), Some(vec![6]));
    assert_eq!(opt(&o, 51), None);
    assert_eq!(opt(&o, 3), None);
}

#[test]
fn dhcp_inform_release_decline() {
    let s = Spec::Dhcp4(Box::new(dhcp_spec()));
    let f = dhcp_frame(CMAC, CIP, GW, &dhcp_msg(8, CIP, CMAC, &[]));
    let (a, out) = run(&s, &f).unwrap();
    assert_eq!(a, Answer::Reply(Some(DhcpEvent::Inform)));
    let (yi, dst, o) = parse_reply(&out);
    assert_eq!((yi, dst), (Ipv4Addr::UNSPECIFIED, CIP));
    assert_eq!(opt(&o, 53), Some(vec![5]));
    assert_eq!(opt(&o, 51), None, "no lease time in an INFORM ACK");
    assert_eq!(opt(&o, 3), Some(GW.octets().to_vec()));
    let rel = dhcp_frame(
        CMAC,
        CIP,
        GW,
        &dhcp_msg(7, CIP, CMAC, &[(54, &GW.octets())]),
    );
    assert_eq!(
        run(&s, &rel).unwrap().0,
        Answer::Consumed(DhcpEvent::Release)
    );
    let dec = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(4, Ipv4Addr::UNSPECIFIED, CMAC, &[(50, &CIP.octets())]),
    );
    assert_eq!(
        run(&s, &dec).unwrap().0,
        Answer::Consumed(DhcpEvent::Decline)
    );
}

#[test]
fn dhcp_bad_and_foreign_requests() {
    let s = Spec::Dhcp4(Box::new(dhcp_spec()));
    let evil = [0x02, 0xee, 0xee, 0xee, 0xee, 0xee];
    // Another MAC in the frame, or in chaddr (starvation with forged chaddr).
    let f = dhcp_frame(
        evil,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]),
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::Foreign);
    let f = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(1, Ipv4Addr::UNSPECIFIED, evil, &[]),
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::Foreign);
    // Relayed.
    let mut b = dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]);
    b[24] = 10;
    let f = dhcp_frame(CMAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &b);
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::Foreign);
    // A REQUEST for another server.
    let f = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(
            3,
            Ipv4Addr::UNSPECIFIED,
            CMAC,
            &[(50, &CIP.octets()), (54, &[10, 0, 0, 99])],
        ),
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::OtherServer);
    // A server message from the client (rogue OFFER), a BOOTREPLY, no message type.
    let f = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(2, Ipv4Addr::UNSPECIFIED, CMAC, &[]),
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::NotRequest);
    let mut b = dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]);
    b[0] = 2;
    let f = dhcp_frame(CMAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &b);
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::NotRequest);
    let mut b = dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]);
    b[240] = 0; // option 53 → pad
    b[241] = 0;
    b[242] = 0;
    let f = dhcp_frame(CMAC, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &b);
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::Malformed);
    // Bad UDP checksum, wrong ports, truncated BOOTP.
    let mut f = discover();
    let n = f.len();
    f[n - 2] ^= 0x40;
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::BadChecksum);
    let f = eth(
        [0xff; 6],
        CMAC,
        0x0800,
        &ipv4(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            17,
            &udp(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                68,
                68,
                &dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[]),
            ),
        ),
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::NotRequest);
    let f = dhcp_frame(
        CMAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &dhcp_msg(1, Ipv4Addr::UNSPECIFIED, CMAC, &[])[..100],
    );
    assert_eq!(run(&s, &f).unwrap_err(), DropReason::Malformed);
}

#[test]
fn responder_counts() {
    let mut r = Responder::new();
    let dhcp = Spec::Dhcp4(Box::new(dhcp_spec())).encode();
    assert_eq!(r.handle(&dhcp, &discover()), Handled::Reply(Kind::Dhcp4));
    assert!(r.reply().len() > 300);
    assert_eq!(r.handle(b"notours", &discover()), Handled::NotPlexus);
    assert_eq!(r.handle(b"PLXR\x01\x07", &discover()), Handled::Done);
    let arp = Spec::Arp { mac: RMAC, ip: GW }.encode();
    assert_eq!(r.handle(&arp, &discover()), Handled::Done);
    let s = r.stats();
    assert_eq!(s.replies(Kind::Dhcp4), 1);
    assert_eq!(s.dhcp(DhcpEvent::Offer), 1);
    assert_eq!(s.bad_spec, 1);
    assert_eq!(s.drops(Kind::Arp, DropReason::NotRequest), 1);
    assert!(s.to_text().contains("dhcp4 replies=1 drops=0"));
    assert!(s.to_text().contains("arp replies=0 drops=not_request:1"));
    assert!(s.to_json().contains("\"dhcp4\":{\"replies\":1"));
    let mut m = Stats::default();
    m.merge(s);
    m.merge(s);
    assert_eq!(m.replies(Kind::Dhcp4), 2);
}

// ---------------------------------------------------------------- never panic

fn all_specs() -> Vec<Spec> {
    vec![
        Spec::Arp { mac: RMAC, ip: GW },
        Spec::Icmp4Echo { mac: RMAC, ip: GW },
        Spec::Nd {
            mac: RMAC,
            ip: V6GW,
            router: true,
        },
        Spec::Icmp6Echo {
            mac: RMAC,
            ip: V6GW,
        },
        Spec::Dhcp4(Box::new(dhcp_spec())),
    ]
}

fn valid_requests() -> Vec<Vec<u8>> {
    let snm: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let mut echo6 = vec![128, 0, 0, 0, 0xab, 0xcd, 0, 1];
    echo6.extend_from_slice(b"hello");
    vec![
        arp_req(CIP, GW, 1),
        echo4(GW, 8, b"payload"),
        v6_frame(
            [0x33, 0x33, 0xff, 0, 0, 1],
            CMAC,
            V6C,
            snm,
            255,
            &ns(V6GW, Some(CMAC)),
        ),
        v6_frame(RMAC, CMAC, V6C, V6GW, 64, &echo6),
        discover(),
    ]
}

#[test]
fn every_valid_request_answered_only_by_its_kind() {
    for (i, req) in valid_requests().iter().enumerate() {
        for (j, s) in all_specs().iter().enumerate() {
            let r = run(s, req);
            assert_eq!(r.is_ok(), i == j, "request {i} spec {j}: {r:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut out = Vec::new();
        for s in all_specs() {
            let _ = respond(&s, &frame, &mut out);
        }
    }

    #[test]
    fn mutated_requests_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..6),
        cut in 0usize..400,
    ) {
        let mut f = valid_requests()[which].clone();
        for (i, v) in flips {
            if !f.is_empty() {
                let n = f.len();
                f[i % n] = v;
            }
        }
        f.truncate(cut.max(1).min(f.len()));
        let mut r = Responder::new();
        for s in all_specs() {
            if r.handle(&s.encode(), &f) != Handled::NotPlexus {
                // Any reply built is a well-formed Ethernet frame of at least 60 bytes.
                if let Handled::Reply(_) = r.handle(&s.encode(), &f) {
                    prop_assert!(r.reply().len() >= 60);
                }
            }
        }
    }

    #[test]
    fn random_userdata_never_panics(ud in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut u = b"PLXR\x01".to_vec();
        u.extend_from_slice(&ud);
        let _ = Spec::decode(&u);
        let _ = Spec::decode(&ud);
        let mut r = Responder::new();
        for req in valid_requests() {
            let _ = r.handle(&u, &req);
        }
    }

    #[test]
    fn dhcp_spec_round_trips(
        sip in any::<u32>(), cip in any::<u32>(), prefix in 1u8..=32,
        lease in 60u32.., mtu in proptest::option::of(68u16..),
        router in proptest::option::of(1u32..0xe000_0000),
        dns in proptest::collection::vec(any::<u32>(), 0..=8),
        dom in proptest::option::of("[a-z0-9.-]{1,40}"),
    ) {
        let d = Dhcp4Spec {
            server_mac: RMAC, server_ip: Ipv4Addr::from(sip), client_mac: CMAC,
            client_ip: Ipv4Addr::from(cip), prefix_len: prefix, lease_secs: lease, mtu,
            router: router.map(Ipv4Addr::from),
            dns: dns.into_iter().map(Ipv4Addr::from).collect(), domain: dom,
        };
        let s = Spec::Dhcp4(Box::new(d));
        match s.validate() {
            Ok(()) => prop_assert_eq!(Spec::decode(&s.encode()), Ok(s.clone())),
            Err(e) => prop_assert_eq!(Spec::decode(&s.encode()), Err(e)),
        }
    }
}
