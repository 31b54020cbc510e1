use super::*;
use etherparse::PacketBuilder;
use plexus_openflow::oxm::ct_state::*;
use proptest::prelude::*;

const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ip4(a: [u8; 4]) -> u128 {
    u32::from_be_bytes(a) as u128
}

#[derive(Clone, Copy)]
struct Tcp {
    flags: u16,
    seq: u32,
    ack: u32,
    win: u16,
    len: usize,
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, t: Tcp) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(M1, M2)
        .ipv4(src, dst, 64)
        .tcp(sp, dp, t.seq, t.win);
    if t.flags & tcp::SYN != 0 {
        b = b.syn();
    }
    if t.flags & tcp::ACK != 0 {
        b = b.ack(t.ack);
    }
    if t.flags & tcp::FIN != 0 {
        b = b.fin();
    }
    if t.flags & tcp::RST != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; t.len]).unwrap();
    v
}

fn udp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(M1, M2)
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, &[1, 2, 3, 4, 5])
        .unwrap();
    v
}

fn udp6(src: u128, dst: u128, sp: u16, dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(M1, M2)
        .ipv6(src.to_be_bytes(), dst.to_be_bytes(), 64)
        .udp(sp, dp)
        .write(&mut v, &[1, 2, 3, 4, 5])
        .unwrap();
    v
}

fn tcp6(src: u128, dst: u128, sp: u16, dp: u16, t: Tcp) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(M1, M2)
        .ipv6(src.to_be_bytes(), dst.to_be_bytes(), 64)
        .tcp(sp, dp, t.seq, t.win);
    if t.flags & tcp::SYN != 0 {
        b = b.syn();
    }
    if t.flags & tcp::ACK != 0 {
        b = b.ack(t.ack);
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; t.len]).unwrap();
    v
}

fn echo4(src: [u8; 4], dst: [u8; 4], id: u16, reply: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(M1, M2).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, 1)
    } else {
        b.icmpv4_echo_request(id, 1)
    };
    let mut v = Vec::new();
    b.write(&mut v, &[9; 8]).unwrap();
    v
}

/// An ICMPv4 port-unreachable from `from` to `to` quoting `quoted` (a frame).
fn icmp_err4(from: [u8; 4], to: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(M2, M1)
        .ipv4(from, to, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, &quoted[14..quoted.len().min(14 + 20 + 8)])
        .unwrap();
    v
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn sum(mut s: u32, d: &[u8]) -> u32 {
    for c in d.chunks(2) {
        s += if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]]) as u32
        } else {
            (c[0] as u32) << 8
        };
    }
    s
}

/// Verifies the IPv4 header checksum and the TCP/UDP/ICMP(v6) checksum.
fn csum_ok(f: &[u8]) -> bool {
    let et = u16::from_be_bytes([f[12], f[13]]);
    let l3 = 14;
    let (l4, proto, end, pseudo) = if et == 0x0800 {
        let ihl = (f[l3] & 0xf) as usize * 4;
        if fold(sum(0, &f[l3..l3 + ihl])) != 0xffff {
            return false;
        }
        let tot = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) as usize;
        let p = f[l3 + 9];
        let ps = sum(sum(0, &f[l3 + 12..l3 + 20]), &[0, p]) + (tot - ihl) as u32;
        (l3 + ihl, p, l3 + tot, ps)
    } else {
        let pl = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize;
        let p = f[l3 + 6];
        let ps = sum(sum(0, &f[l3 + 8..l3 + 40]), &[0, p]) + pl as u32;
        (l3 + 40, p, l3 + 40 + pl, ps)
    };
    let s = match proto {
        6 | 17 | 58 => sum(pseudo, &f[l4..end]),
        1 => sum(0, &f[l4..end]),
        _ => return true,
    };
    fold(s) == 0xffff
}

fn t0() -> Instant {
    Instant::now()
}

fn ct_at(now: Instant) -> Conntrack {
    Conntrack::new(CtConfig::default(), now)
}

fn req(zone: u16, commit: bool) -> CtRequest {
    CtRequest {
        zone,
        commit,
        ..Default::default()
    }
}

fn run(ct: &mut Conntrack, f: &mut [u8], r: &CtRequest, now: Instant) -> u32 {
    ct.execute(f, r, now).state
}

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn syn(seq: u32) -> Tcp {
    Tcp {
        flags: tcp::SYN,
        seq,
        ack: 0,
        win: 65535,
        len: 0,
    }
}

fn synack(seq: u32, ack: u32) -> Tcp {
    Tcp {
        flags: tcp::SYN | tcp::ACK,
        seq,
        ack,
        win: 65535,
        len: 0,
    }
}

fn ackp(seq: u32, ack: u32, len: usize) -> Tcp {
    Tcp {
        flags: tcp::ACK,
        seq,
        ack,
        win: 65535,
        len,
    }
}

/// Runs a 3-way handshake from A:1000 to B:80 in `zone` (commit on the SYN).
fn handshake(ct: &mut Conntrack, zone: u16, now: Instant) {
    assert_eq!(
        run(
            ct,
            &mut tcp4(A, B, 1000, 80, syn(100)),
            &req(zone, true),
            now
        ),
        TRK | NEW
    );
    assert_eq!(
        run(
            ct,
            &mut tcp4(B, A, 80, 1000, synack(500, 101)),
            &req(zone, false),
            now
        ),
        TRK | EST | RPL
    );
    assert_eq!(
        run(
            ct,
            &mut tcp4(A, B, 1000, 80, ackp(101, 501, 0)),
            &req(zone, false),
            now
        ),
        TRK | EST
    );
}

#[test]
fn tcp_handshake_data_and_close() {
    let now = t0();
    let mut ct = ct_at(now);
    // Without commit nothing is remembered.
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, syn(100)),
            &req(0, false),
            now
        ),
        TRK | NEW
    );
    assert!(ct.is_empty());
    handshake(&mut ct, 0, now);
    let e = &ct.dump(None, now)[0];
    assert_eq!(
        e.to_string(),
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=80),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=1000),protoinfo=(state=ESTABLISHED)"
    );
    assert_eq!(e.expires_in, Duration::from_secs(24 * 3600));
    // Data both ways.
    let r = req(0, false);
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, ackp(101, 501, 100)),
            &r,
            now
        ),
        TRK | EST
    );
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(B, A, 80, 1000, ackp(501, 201, 50)),
            &r,
            now
        ),
        TRK | EST | RPL
    );
    // FIN from A, FIN+ACK from B, last ACK.
    let fin = Tcp {
        flags: tcp::FIN | tcp::ACK,
        ..ackp(201, 551, 0)
    };
    assert_eq!(
        run(&mut ct, &mut tcp4(A, B, 1000, 80, fin), &r, now),
        TRK | EST
    );
    let fin2 = Tcp {
        flags: tcp::FIN | tcp::ACK,
        ..ackp(551, 202, 0)
    };
    assert_eq!(
        run(&mut ct, &mut tcp4(B, A, 80, 1000, fin2), &r, now),
        TRK | EST | RPL
    );
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, ackp(202, 552, 0)),
            &r,
            now
        ),
        TRK | EST
    );
    let e = &ct.dump(None, now)[0];
    assert_eq!(e.expires_in, Duration::from_secs(30), "{e:?}");
    // A new SYN on the closed connection replaces it.
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, syn(9000)),
            &req(0, true),
            now
        ),
        TRK | NEW
    );
    assert_eq!(ct.len(), 1);
    ct.check_invariants();
}

#[test]
fn tcp_invalid_cases() {
    let now = t0();
    let mut ct = ct_at(now);
    // SYN+ACK cannot start a connection; neither can bad flag combinations.
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(B, A, 80, 1000, synack(1, 2)),
            &req(0, true),
            now
        ),
        TRK | INV
    );
    let synfin = Tcp {
        flags: tcp::SYN | tcp::FIN,
        ..syn(1)
    };
    assert_eq!(
        run(&mut ct, &mut tcp4(A, B, 1, 2, synfin), &req(0, true), now),
        TRK | INV
    );
    assert!(ct.is_empty());
    handshake(&mut ct, 0, now);
    // Way out of the window: invalid, and the connection stays.
    let r = req(0, false);
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, ackp(101 + 3_000_000, 501, 10)),
            &r,
            now
        ),
        TRK | INV
    );
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(B, A, 80, 1000, ackp(501 + 0x4000_0000, 101, 10)),
            &r,
            now
        ),
        TRK | INV
    );
    // A SYN retransmission before an answer is new again.
    let mut ct2 = ct_at(now);
    run(&mut ct2, &mut tcp4(A, B, 7, 8, syn(5)), &req(0, true), now);
    assert_eq!(
        run(&mut ct2, &mut tcp4(A, B, 7, 8, syn(5)), &r, now),
        TRK | NEW
    );
    // Still fine in window.
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 1000, 80, ackp(101, 501, 10)),
            &r,
            now
        ),
        TRK | EST
    );
    assert!(ct.counters.invalid >= 4);
}

#[test]
fn tcp_midstream_pickup_and_rst() {
    let now = t0();
    let mut ct = ct_at(now);
    // A plain ACK may start a connection (OVS picks up mid-stream).
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 5, 6, ackp(1000, 2000, 10)),
            &req(0, true),
            now
        ),
        TRK | NEW
    );
    let r = req(0, false);
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(B, A, 6, 5, ackp(2000, 1010, 10)),
            &r,
            now
        ),
        TRK | EST | RPL
    );
    assert_eq!(
        run(
            &mut ct,
            &mut tcp4(A, B, 5, 6, ackp(1010, 2010, 10)),
            &r,
            now
        ),
        TRK | EST
    );
    let rst = Tcp {
        flags: tcp::RST | tcp::ACK,
        ..ackp(1020, 2010, 0)
    };
    assert_eq!(run(&mut ct, &mut tcp4(A, B, 5, 6, rst), &r, now), TRK | EST);
    let e = &ct.dump(None, now)[0];
    assert!(e.to_string().ends_with("state=TIME_WAIT)"), "{e}");
    assert_eq!(e.expires_in, Duration::from_secs(30));
}

#[test]
fn udp_and_icmp_echo() {
    let now = t0();
    let mut ct = ct_at(now);
    let r = req(0, false);
    assert_eq!(
        run(&mut ct, &mut udp4(A, B, 5000, 53), &req(0, true), now),
        TRK | NEW
    );
    // As OVS: the second packet of the original direction is still `new`
    // (first → multiple), the third is `est`.
    assert_eq!(run(&mut ct, &mut udp4(A, B, 5000, 53), &r, now), TRK | NEW);
    assert_eq!(run(&mut ct, &mut udp4(A, B, 5000, 53), &r, now), TRK | EST);
    assert_eq!(
        run(&mut ct, &mut udp4(B, A, 53, 5000), &r, now),
        TRK | EST | RPL
    );
    assert_eq!(ct.dump(None, now)[0].expires_in, Duration::from_secs(30));
    // ICMP echo.
    assert_eq!(
        run(&mut ct, &mut echo4(A, B, 77, true), &req(0, true), now),
        TRK | INV
    );
    assert_eq!(
        run(&mut ct, &mut echo4(A, B, 77, false), &req(0, true), now),
        TRK | NEW
    );
    assert_eq!(
        run(&mut ct, &mut echo4(B, A, 77, true), &r, now),
        TRK | EST | RPL
    );
    // A request from the other side is a different connection.
    assert_eq!(
        run(&mut ct, &mut echo4(B, A, 77, false), &r, now),
        TRK | NEW
    );
    let res = ct.execute(&mut echo4(A, B, 77, false), &r, now);
    let o = res.orig.unwrap();
    assert_eq!((o.sport, o.dport, o.proto), (8, 0, 1));
    let d: Vec<String> = ct.dump(None, now).iter().map(|e| e.to_string()).collect();
    assert!(d.contains(&"icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=77,type=8,code=0),reply=(src=10.0.0.2,dst=10.0.0.1,id=77,type=0,code=0)".to_string()), "{d:?}");
    // IPv6 UDP.
    let (x, y) = (0x2001_0db8 << 96 | 1, 0x2001_0db8 << 96 | 2);
    assert_eq!(
        run(&mut ct, &mut udp6(x, y, 1, 2), &req(3, true), now),
        TRK | NEW
    );
    assert_eq!(
        run(&mut ct, &mut udp6(y, x, 2, 1), &req(3, false), now),
        TRK | EST | RPL
    );
    // Non-IP and fragments are invalid.
    let mut arp = vec![0u8; 42];
    arp[12] = 8;
    arp[13] = 6;
    assert_eq!(run(&mut ct, &mut arp, &r, now), TRK | INV);
    let mut frag = udp4(A, B, 1, 2);
    frag[14 + 6] = 0x20; // MF
    assert_eq!(run(&mut ct, &mut frag, &r, now), TRK | INV);
}

#[test]
fn icmp_error_is_related() {
    let now = t0();
    let mut ct = ct_at(now);
    let out = udp4(A, B, 5000, 53);
    run(&mut ct, &mut out.clone(), &req(0, true), now);
    // B's port unreachable about A's datagram travels in the reply direction.
    let mut err = icmp_err4(B, A, &out);
    assert_eq!(run(&mut ct, &mut err, &req(0, false), now), TRK | REL | RPL);
    // A router's error about B's reply travels in the original direction.
    let mut err2 = icmp_err4([10, 9, 9, 9], B, &udp4(B, A, 53, 5000));
    assert_eq!(run(&mut ct, &mut err2, &req(0, false), now), TRK | REL);
    // Unknown quoted connection: invalid.
    let mut err3 = icmp_err4(B, A, &udp4(A, B, 5001, 53));
    assert_eq!(run(&mut ct, &mut err3, &req(0, false), now), TRK | INV);
    assert_eq!(ct.counters.related, 2);
}

#[test]
fn zones_are_separate_and_limits_drop_new_only() {
    let now = t0();
    let mut ct = ct_at(now);
    run(&mut ct, &mut udp4(A, B, 1, 2), &req(1, true), now);
    assert_eq!(
        run(&mut ct, &mut udp4(B, A, 2, 1), &req(2, false), now),
        TRK | NEW
    );
    assert_eq!(
        run(&mut ct, &mut udp4(B, A, 2, 1), &req(1, false), now),
        TRK | EST | RPL
    );
    ct.set_zone_limit(1, Some(3));
    for p in 10..20 {
        let res = ct.execute(&mut udp4(A, B, p, 2), &req(1, true), now);
        assert_eq!(res.drop, p >= 12, "port {p}");
    }
    assert_eq!(ct.zone_count(1), 3);
    assert_eq!(ct.counters.zone_full, 8);
    // Existing connections keep flowing; other zones are unaffected.
    assert_eq!(
        run(&mut ct, &mut udp4(B, A, 2, 10), &req(1, false), now),
        TRK | EST | RPL
    );
    assert!(!ct.execute(&mut udp4(A, B, 10, 2), &req(7, true), now).drop);
    // Global maximum.
    ct.set_max_conns(4);
    let res = ct.execute(&mut udp4(A, B, 99, 2), &req(8, true), now);
    assert!(res.drop);
    assert_eq!(ct.counters.table_full, 1);
    assert_eq!(ct.len(), 4);
    // The existing connection keeps flowing (second packet: still `new`
    // as in OVS, then `est`), nothing is dropped.
    let res = ct.execute(&mut udp4(A, B, 10, 2), &req(7, false), now);
    assert_eq!((res.state, res.drop), (TRK | NEW, false));
    assert_eq!(
        run(&mut ct, &mut udp4(A, B, 10, 2), &req(7, false), now),
        TRK | EST
    );
    ct.check_invariants();
}

#[test]
fn timeouts_expire_on_the_wheel_and_on_lookup() {
    let now = t0();
    let mut ct = ct_at(now);
    run(&mut ct, &mut udp4(A, B, 1, 2), &req(0, true), now);
    run(&mut ct, &mut echo4(A, B, 1, false), &req(0, true), now);
    ct.advance(now + Duration::from_secs(59));
    assert_eq!(ct.len(), 2);
    // Lookup after expiry never sees the entry, even before the wheel runs.
    assert_eq!(
        run(
            &mut ct,
            &mut udp4(B, A, 2, 1),
            &req(0, false),
            now + Duration::from_secs(60)
        ),
        TRK | NEW
    );
    assert_eq!(ct.len(), 1);
    ct.advance(now + Duration::from_millis(60_100));
    assert_eq!(ct.len(), 0);
    assert_eq!(ct.counters.expired, 2);
    // Established TCP lives 24h; a long jump sweeps the wheel.
    handshake(&mut ct, 0, now);
    ct.advance(now + Duration::from_secs(24 * 3600 - 1));
    assert_eq!(ct.len(), 1);
    ct.advance(now + Duration::from_secs(24 * 3600) + Duration::from_millis(100));
    assert_eq!(ct.len(), 0);
    ct.check_invariants();
}

#[test]
fn mark_label_flush_and_dump() {
    let now = t0();
    let mut ct = ct_at(now);
    let mut r = req(5, true);
    r.mark = Some((0x12, 0xff));
    r.label = Some((1 << 100, 1 << 100));
    let res = ct.execute(&mut udp4(A, B, 1, 2), &r, now);
    assert_eq!((res.mark, res.label), (0x12, 1 << 100));
    let res = ct.execute(&mut udp4(B, A, 2, 1), &req(5, false), now);
    assert_eq!((res.mark, res.label), (0x12, 1 << 100));
    let o = res.orig.unwrap();
    assert_eq!(
        (o.src, o.dst, o.sport, o.dport, o.proto),
        (ip4(A), ip4(B), 1, 2, 17)
    );
    run(&mut ct, &mut udp4(A, B, 3, 4), &req(6, true), now);
    run(&mut ct, &mut udp4(A, B, 5, 6), &req(6, true), now);
    assert_eq!(ct.dump(Some(6), now).len(), 2);
    assert_eq!(
        ct.dump(Some(5), now)[0].to_string(),
        "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1,dport=2),reply=(src=10.0.0.2,dst=10.0.0.1,sport=2,dport=1),zone=5,mark=18,labels=0x10000000000000000000000000"
    );
    // Flush by tuple works with either direction's tuple.
    let rt = Tuple {
        src: ip4(B),
        dst: ip4(A),
        sport: 4,
        dport: 3,
        proto: 17,
        v6: false,
    };
    assert!(ct.flush_tuple(6, &rt));
    assert!(!ct.flush_tuple(6, &rt));
    ct.flush_zone(5);
    assert_eq!(ct.len(), 1);
    ct.flush();
    assert!(ct.is_empty());
    ct.check_invariants();
}

fn dnat(addr: [u8; 4], port: u16) -> NatSpec {
    NatSpec {
        kind: nat_kind::DST,
        addr: Some((ip4(addr), ip4(addr))),
        ports: Some((port, port)),
        ..Default::default()
    }
}

#[test]
fn dnat_rewrites_both_directions_with_checksums() {
    let now = t0();
    let mut ct = ct_at(now);
    let vip = [10, 0, 0, 100];
    let be = [10, 0, 0, 10];
    let mut r = req(1, true);
    r.nat = Some(dnat(be, 8080));
    let mut f = tcp4(A, vip, 40000, 80, syn(1));
    let res = ct.execute(&mut f, &r, now);
    assert_eq!(res.state, TRK | NEW | DNAT);
    assert_eq!(f, {
        let mut x = tcp4(A, be, 40000, 8080, syn(1));
        x[14 + 4..14 + 6].copy_from_slice(&f[14 + 4..14 + 6]);
        x[14 + 10..14 + 12].copy_from_slice(&f[14 + 10..14 + 12]);
        x
    });
    assert!(csum_ok(&f));
    // The reply from the backend is un-NATed back to the VIP.
    let mut nat_only = req(1, false);
    nat_only.nat = Some(NatSpec::default());
    let mut rep = tcp4(be, A, 8080, 40000, synack(77, 2));
    let res = ct.execute(&mut rep, &nat_only, now);
    assert_eq!(res.state, TRK | EST | RPL | DNAT);
    assert_eq!(&rep[14 + 12..14 + 16], &vip);
    assert_eq!(u16::from_be_bytes([rep[34], rep[35]]), 80);
    assert!(csum_ok(&rep));
    // Without nat in the action, no rewrite (and no dnat flag).
    let mut rep2 = tcp4(be, A, 8080, 40000, ackp(78, 2, 0));
    let res = ct.execute(&mut rep2, &req(1, false), now);
    assert_eq!(res.state, TRK | EST | RPL);
    assert_eq!(&rep2[14 + 12..14 + 16], &be);
    // A router on the client side bounces the (un-NATed) reply: the error
    // goes to the VIP in the original direction; quoted packet and outer
    // destination are translated to the backend.
    let mut err = icmp_err4([10, 9, 9, 9], vip, &tcp4(vip, A, 80, 40000, ackp(78, 2, 0)));
    let res = ct.execute(&mut err, &nat_only, now);
    assert_eq!(res.state, TRK | REL | DNAT);
    assert_eq!(&err[14 + 16..14 + 20], &be, "outer dst");
    assert_eq!(&err[14 + 28 + 12..14 + 28 + 16], &be, "inner src");
    assert_eq!(
        u16::from_be_bytes([err[14 + 28 + 20], err[14 + 28 + 21]]),
        8080
    );
    assert!(csum_ok(&err));
}

#[test]
fn snat_ipv6_and_ranges_never_duplicate() {
    let now = t0();
    let mut ct = ct_at(now);
    let (x, y, s) = (
        0x2001_0db8u128 << 96 | 1,
        0x2001_0db8u128 << 96 | 2,
        0x2001_0db8u128 << 96 | 0xff,
    );
    let mut r = req(0, true);
    r.nat = Some(NatSpec {
        kind: nat_kind::SRC,
        addr: Some((s, s)),
        ports: Some((2000, 2003)),
        ..Default::default()
    });
    let mut seen = std::collections::HashSet::new();
    for sp in 0..6u16 {
        let mut f = tcp6(x, y, 1000 + sp, 80, syn(1));
        let res = ct.execute(&mut f, &r, now);
        if sp < 4 {
            assert_eq!(res.state, TRK | NEW | SNAT);
            assert!(csum_ok(&f));
            let src = u128::from_be_bytes(f[22..38].try_into().unwrap());
            let port = u16::from_be_bytes([f[54], f[55]]);
            assert_eq!(src, s);
            assert!((2000..=2003).contains(&port));
            assert!(seen.insert(port), "duplicate port {port}");
            // Reply to the NATed tuple comes back to the client.
            let mut rep = tcp6(y, s, 80, port, synack(5, 2));
            let mut nr = req(0, false);
            nr.nat = Some(NatSpec::default());
            let res = ct.execute(&mut rep, &nr, now);
            assert_eq!(res.state, TRK | EST | RPL | SNAT);
            assert_eq!(u128::from_be_bytes(rep[38..54].try_into().unwrap()), x);
            assert_eq!(u16::from_be_bytes([rep[56], rep[57]]), 1000 + sp);
            assert!(csum_ok(&rep));
        } else {
            // Range exhausted: not committed.
            assert_eq!(res.state, TRK | NEW);
        }
    }
    assert_eq!(ct.counters.nat_exhausted, 2);
    assert_eq!(ct.len(), 4);
    ct.check_invariants();
}

#[test]
fn snat_default_keeps_port_then_ephemeral() {
    let now = t0();
    let mut ct = ct_at(now);
    let s = [192, 168, 1, 1];
    let mut r = req(0, true);
    r.nat = Some(NatSpec {
        kind: nat_kind::SRC,
        addr: Some((ip4(s), ip4(s))),
        ..Default::default()
    });
    let mut f = udp4(A, B, 5000, 53);
    ct.execute(&mut f, &r, now);
    assert_eq!(u16::from_be_bytes([f[34], f[35]]), 5000);
    // Another client with the same port collides: gets an ephemeral port.
    let mut f2 = udp4([10, 0, 0, 3], B, 5000, 53);
    ct.execute(&mut f2, &r, now);
    let p2 = u16::from_be_bytes([f2[34], f2[35]]);
    assert!(p2 >= 1024 && p2 != 5000);
    assert!(csum_ok(&f2));
}

// ------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Ev {
    /// (client, server port idx, proto 0 tcp/1 udp/2 icmp, commit, reply, zone)
    Pkt(u8, u8, u8, bool, bool, u8),
    Tick(u16),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        8 => (0u8..6, 0u8..3, 0u8..3, any::<bool>(), any::<bool>(), 0u8..2)
            .prop_map(|(a, b, c, d, e, f)| Ev::Pkt(a, b, c, d, e, f)),
        1 => (1u16..40_000).prop_map(Ev::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random traffic through SNAT (a 3-port range, so it runs out), with
    /// zone limits and time passing: replies always come back to the
    /// original sender, NAT never reuses a tuple, limits hold, and nothing
    /// outlives its timeout by more than one tick.
    #[test]
    fn random_sequences_keep_invariants(evs in proptest::collection::vec(ev(), 1..120)) {
        let start = t0();
        let mut now = start;
        let mut ct = ct_at(start);
        ct.set_zone_limit(1, Some(5));
        ct.set_max_conns(12);
        let snat = [172, 16, 0, 1];
        let tick = ct.config().tick;
        for e in evs {
            match e {
                Ev::Tick(ms) => {
                    now += Duration::from_millis(ms as u64 * 3);
                    ct.advance(now);
                    for (_, _, exp) in ct.expiries() {
                        prop_assert!(exp + tick > now, "entry outlived its timeout");
                    }
                }
                Ev::Pkt(cl, sp, proto, commit, reply, zone) => {
                    let zone = zone as u16;
                    let client = [10, 0, 1, cl];
                    let sport = 3000 + sp as u16;
                    let mut r = req(zone, commit);
                    r.nat = Some(NatSpec {
                        kind: nat_kind::SRC,
                        addr: Some((ip4(snat), ip4(snat))),
                        ports: Some((7000, 7002)),
                        ..Default::default()
                    });
                    let mut f = match proto {
                        0 => tcp4(client, B, sport, 80, syn(1)),
                        1 => udp4(client, B, sport, 53),
                        _ => echo4(client, B, sport, false),
                    };
                    let res = ct.execute(&mut f, &r, now);
                    prop_assert!(csum_ok(&f));
                    if res.state & SNAT == 0 || !reply {
                        continue;
                    }
                    // The server answers the translated source.
                    let nsrc: [u8; 4] = f[26..30].try_into().unwrap();
                    prop_assert_eq!(nsrc, snat);
                    let mut rep = match proto {
                        0 => {
                            let np = u16::from_be_bytes([f[34], f[35]]);
                            tcp4(B, snat, 80, np, synack(9, 2))
                        }
                        1 => {
                            let np = u16::from_be_bytes([f[34], f[35]]);
                            udp4(B, snat, 53, np)
                        }
                        _ => echo4(B, snat, sport, true),
                    };
                    let mut nr = req(zone, false);
                    nr.nat = Some(NatSpec::default());
                    let res = ct.execute(&mut rep, &nr, now);
                    prop_assert!(res.state & RPL != 0, "reply not recognised: {:#x}", res.state);
                    prop_assert_eq!(&rep[30..34], &client[..], "reply not un-NATed");
                    if proto < 2 {
                        prop_assert_eq!(u16::from_be_bytes([rep[36], rep[37]]), sport);
                    }
                    prop_assert!(csum_ok(&rep));
                }
            }
            ct.check_invariants();
            prop_assert!(ct.zone_count(1) <= 5);
            prop_assert!(ct.len() <= 12);
            // No two connections share a translated tuple.
            let mut replies = std::collections::HashSet::new();
            for c in ct.dump(None, now) {
                prop_assert!(replies.insert((c.zone, c.reply)), "duplicate reply tuple");
                prop_assert_eq!(c.orig.reverse() == c.reply, c.nat == 0);
            }
        }
    }
}

#[test]
fn refused_commits_are_logged_with_a_rate_limit() {
    let now = t0();
    let mut ct = ct_at(now);
    assert_eq!(ct.refusal_report(now), None, "nothing refused yet");
    ct.set_max_conns(1);
    ct.execute(&mut udp4(A, B, 1, 2), &req(0, true), now);
    assert!(ct.execute(&mut udp4(A, B, 3, 2), &req(0, true), now).drop);
    let m = ct.refusal_report(now).expect("a report");
    assert!(m.contains("1 new connection(s) dropped"), "{m}");
    assert!(m.contains("table full: 1 total"), "{m}");
    assert!(m.contains("1 of max 1 connections"), "{m}");
    // More refusals within the interval: coalesced, reported once it has passed.
    for p in 4..7 {
        assert!(ct.execute(&mut udp4(A, B, p, 2), &req(0, true), now).drop);
    }
    let later = now + REFUSAL_REPORT_INTERVAL / 2;
    assert_eq!(ct.refusal_report(later), None);
    let m = ct
        .refusal_report(now + REFUSAL_REPORT_INTERVAL)
        .expect("a report");
    assert!(m.contains("3 new connection(s) dropped"), "{m}");
    // Nothing new refused: silence, however long it has been.
    assert_eq!(ct.refusal_report(now + REFUSAL_REPORT_INTERVAL * 3), None);
    // The existing connection kept flowing throughout.
    assert!(!ct.execute(&mut udp4(A, B, 1, 2), &req(0, true), now).drop);
}

/// One step of [`dnat_tcp_sequences_track_windows_and_reverse_replies`].
#[derive(Debug, Clone)]
enum TcpEv {
    /// In-window data (`len` bytes) from the client (false) or the backend (true).
    Data(bool, u16),
    /// A segment this far (≥ 2^30) past the sender's window: never valid.
    Far(bool, u32),
    /// An ICMP "fragmentation needed" from a router about the last segment
    /// of that direction.
    IcmpErr(bool),
    Tick(u16),
}

fn tcp_ev() -> impl Strategy<Value = TcpEv> {
    prop_oneof![
        6 => (any::<bool>(), 0u16..1400).prop_map(|(d, l)| TcpEv::Data(d, l)),
        2 => (any::<bool>(), (1u32 << 30)..(1u32 << 31)).prop_map(|(d, o)| TcpEv::Far(d, o)),
        1 => any::<bool>().prop_map(TcpEv::IcmpErr),
        1 => (1u16..5000).prop_map(TcpEv::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A DNAT'd TCP connection (VIP 10.0.0.100:80 → backend 10.9.9.9:8080)
    /// after its handshake, then random in-window data both ways, segments
    /// far outside the window, related ICMP errors and time passing
    /// (less than the established timeout): in-window segments are `est`
    /// (`rpl` exactly in the reply direction) and translated (original:
    /// dst → backend; reply: src → VIP), out-of-window ones are `inv` and
    /// left untouched, ICMP errors are `rel` with the quoted header
    /// translated back, checksums always verify, and the connection's
    /// reply tuple stays the reverse of the translated original.
    #[test]
    fn dnat_tcp_sequences_track_windows_and_reverse_replies(
        evs in proptest::collection::vec(tcp_ev(), 1..80),
    ) {
        const VIP: [u8; 4] = [10, 0, 0, 100];
        const BE: [u8; 4] = [10, 9, 9, 9];
        const ROUTER: [u8; 4] = [10, 0, 0, 254];
        let start = t0();
        let mut now = start;
        let mut ct = ct_at(start);
        let mut commit = req(3, true);
        commit.nat = Some(dnat(BE, 8080));
        let mut look = req(3, false);
        look.nat = Some(NatSpec::default());
        // Handshake: client A:40000 → VIP:80.
        let mut f = tcp4(A, VIP, 40000, 80, syn(1000));
        prop_assert_eq!(run(&mut ct, &mut f, &commit, now), TRK | NEW | DNAT);
        prop_assert_eq!(&f[30..34], &BE[..]);
        let mut f = tcp4(BE, A, 8080, 40000, synack(7000, 1001));
        prop_assert_eq!(run(&mut ct, &mut f, &look, now), TRK | EST | RPL | DNAT);
        prop_assert_eq!(&f[26..30], &VIP[..]);
        let mut f = tcp4(A, VIP, 40000, 80, ackp(1001, 7001, 0));
        prop_assert_eq!(run(&mut ct, &mut f, &look, now), TRK | EST | DNAT);
        // Next sequence numbers of client (0) and backend (1).
        let mut next = [1001u32, 7001u32];
        // The last translated-on-the-wire segment per direction (for ICMP errors).
        let mut last: [Option<Vec<u8>>; 2] = [None, None];
        for e in evs {
            match e {
                TcpEv::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    ct.advance(now);
                }
                TcpEv::Data(rev, len) => {
                    let d = rev as usize;
                    let t = Tcp { flags: tcp::ACK, seq: next[d], ack: next[1 - d], win: 65535, len: len as usize };
                    let mut f = if rev {
                        tcp4(BE, A, 8080, 40000, t)
                    } else {
                        tcp4(A, VIP, 40000, 80, t)
                    };
                    let s = run(&mut ct, &mut f, &look, now);
                    let want = if rev { TRK | EST | RPL | DNAT } else { TRK | EST | DNAT };
                    prop_assert_eq!(s, want, "in-window segment");
                    if rev {
                        prop_assert_eq!(&f[26..30], &VIP[..], "reply src → VIP");
                        prop_assert_eq!(u16::from_be_bytes([f[34], f[35]]), 80);
                    } else {
                        prop_assert_eq!(&f[30..34], &BE[..], "original dst → backend");
                        prop_assert_eq!(u16::from_be_bytes([f[36], f[37]]), 8080);
                    }
                    prop_assert!(csum_ok(&f));
                    next[d] = next[d].wrapping_add(u32::from(len));
                    last[d] = Some(f);
                }
                TcpEv::Far(rev, off) => {
                    let d = rev as usize;
                    let t = Tcp { flags: tcp::ACK, seq: next[d].wrapping_add(off), ack: next[1 - d], win: 65535, len: 10 };
                    let mut f = if rev {
                        tcp4(BE, A, 8080, 40000, t)
                    } else {
                        tcp4(A, VIP, 40000, 80, t)
                    };
                    let orig = f.clone();
                    let s = run(&mut ct, &mut f, &look, now);
                    prop_assert_eq!(s, TRK | INV, "segment {} past the window", off);
                    prop_assert_eq!(f, orig, "an invalid segment is not translated");
                }
                TcpEv::IcmpErr(rev) => {
                    let Some(seg) = &last[rev as usize] else { continue };
                    // The router sits after the switch: it quotes the segment
                    // as it left (translated) and writes to its sender.
                    let to = if rev { VIP } else { A };
                    let mut e = icmp_err4(ROUTER, to, seg);
                    let s = run(&mut ct, &mut e, &look, now);
                    prop_assert_eq!(s & (REL | INV), REL, "state {:#x}", s);
                    // Quoted IP header at 14+20+8: translated back to what
                    // the sender sent.
                    let q = 14 + 20 + 8;
                    if rev {
                        prop_assert_eq!(&e[q + 12..q + 16], &BE[..], "quoted src back to the backend");
                        prop_assert_eq!(&e[30..34], &BE[..], "error goes to the backend");
                    } else {
                        prop_assert_eq!(&e[q + 16..q + 20], &VIP[..], "quoted dst back to the VIP");
                        prop_assert_eq!(&e[30..34], &A[..]);
                    }
                    prop_assert!(csum_ok(&e));
                }
            }
            ct.check_invariants();
            let d = ct.dump(None, now);
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(d[0].reply.src, ip4(BE));
            prop_assert_eq!(d[0].reply.sport, 8080);
            prop_assert_eq!(d[0].reply.dst, ip4(A));
            prop_assert_eq!(d[0].orig.dst, ip4(VIP));
        }
    }
}

/// A packet whose tuple is its own reverse (LAND: same address and port at
/// both ends) is untrackable: `+inv`, never committed. Before, the commit put
/// both directions under one key and broke the table (found by fuzzing).
#[test]
fn self_tuple_is_invalid_and_not_committed() {
    let now = t0();
    let mut ct = ct_at(now);
    for commit in [false, true] {
        assert_eq!(
            run(&mut ct, &mut udp4(A, A, 80, 80), &req(0, commit), now),
            TRK | INV
        );
        assert_eq!(
            run(
                &mut ct,
                &mut tcp4(A, A, 80, 80, syn(1)),
                &req(0, commit),
                now
            ),
            TRK | INV
        );
    }
    assert_eq!(ct.len(), 0);
    ct.check_invariants();
    // Different ports at the same address are a normal connection.
    assert_eq!(
        run(&mut ct, &mut udp4(A, A, 80, 81), &req(0, true), now),
        TRK | NEW
    );
    assert_eq!(ct.len(), 1);
    ct.check_invariants();
}
