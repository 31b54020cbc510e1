use super::*;
use crate::pipeline::{Emit, PacketBuf, Pipeline, PortInfo};
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use plexus_openflow::message::FlowModCommand;
use plexus_openflow::text::parse_flow_mod;
use std::net::UdpSocket;

const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 4096)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    v
}

fn outer() -> Outer {
    Outer {
        src_mac: [0x02, 0xaa, 0, 0, 0, 1],
        dst_mac: [0x02, 0xbb, 0, 0, 0, 2],
        src_ip: Ipv4Addr::new(192, 168, 77, 1),
        dst_ip: Ipv4Addr::new(192, 168, 77, 2),
        src_port: 49152,
        dst_port: 4789,
        vni: 0x12_3456,
        tos: 0x10,
        ttl: 64,
        df: true,
        ip_id: 7,
    }
}

#[test]
fn encap_bytes_parse_as_outer_ethernet_ipv4_udp_vxlan() {
    let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 100);
    let mut buf = vec![0u8; 2048];
    let n = encap(&mut buf, &inner, &outer()).unwrap();
    assert_eq!(n, ENCAP_LEN + inner.len());
    let f = &buf[..n];
    // The fixed parts, byte by byte (RFC 7348 §5 layout).
    assert_eq!(&f[0..14], &[2, 0xbb, 0, 0, 0, 2, 2, 0xaa, 0, 0, 0, 1, 8, 0]);
    assert_eq!(&f[42..50], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    // Independent parse.
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("no IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.source, [192, 168, 77, 1]);
    assert_eq!(h.destination, [192, 168, 77, 2]);
    assert_eq!(h.time_to_live, 64);
    assert!(h.dont_fragment);
    assert_eq!(h.identification, 7);
    assert_eq!(u8::from(h.dscp) << 2 | u8::from(h.ecn), 0x10);
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    assert_eq!(h.total_len as usize, n - 14);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("no UDP")
    };
    assert_eq!(u.source_port(), 49152);
    assert_eq!(u.destination_port(), 4789);
    assert_eq!(u.length() as usize, n - 34);
    assert_eq!(u.checksum(), 0, "UDP checksum 0 (RFC 7348)");
    assert_eq!(&u.payload()[8..], &inner[..]);
    // Decap gives back VNI and inner frame.
    assert_eq!(decap(u.payload()), Ok((0x12_3456, &inner[..])));
    // Too small an output buffer: nothing written.
    assert_eq!(encap(&mut [0u8; 60], &inner, &outer()), None);
}

#[test]
fn encap_without_df_and_other_fields() {
    let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 0);
    let mut o = outer();
    o.df = false;
    o.ttl = 5;
    o.vni = 42;
    let mut buf = vec![0u8; 2048];
    let n = encap(&mut buf, &inner, &o).unwrap();
    let p = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let h = ip.header().to_header();
    assert!(!h.dont_fragment);
    assert_eq!(h.time_to_live, 5);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(&buf[46..50], &[0, 0, 42, 0]);
}

#[test]
fn decap_rejects_bad_headers() {
    let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 0);
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    p.extend_from_slice(&inner);
    assert_eq!(decap(&p).map(|x| x.0), Ok(42));
    assert_eq!(decap(&p[..8 + 13]), Err(DecapError::Short));
    for (i, v) in [(0, 0x00), (0, 0x0c), (1, 1), (3, 1), (7, 1)] {
        let mut q = p.clone();
        q[i] = v;
        assert_eq!(decap(&q), Err(DecapError::BadHeader), "byte {i} = {v:#x}");
    }
    // Never panics on anything short.
    for n in 0..22 {
        assert!(decap(&p[..n]).is_err());
    }
}

#[test]
fn source_port_entropy_in_range_and_stable_per_flow() {
    let mut seen = std::collections::HashSet::new();
    for sport in 0..2000u16 {
        let f = tcp([10, 0, 0, 1], [10, 0, 0, 2], 10_000 + sport, 80, 10);
        let p = src_port(inner_flow_hash(&f));
        assert!((SRC_PORT_MIN..SRC_PORT_MAX).contains(&p));
        // Same flow, other payload: same port.
        let g = tcp([10, 0, 0, 1], [10, 0, 0, 2], 10_000 + sport, 80, 99);
        assert_eq!(src_port(inner_flow_hash(&g)), p);
        seen.insert(p);
    }
    // 2000 flows into 28232 ports: a good hash leaves few collisions.
    assert!(
        seen.len() > 1900,
        "only {} distinct source ports",
        seen.len()
    );
    // Addresses matter too; non-IP and junk frames hash without panicking.
    let a = inner_flow_hash(&tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 0));
    let b = inner_flow_hash(&tcp([10, 0, 0, 3], [10, 0, 0, 2], 1, 2, 0));
    assert_ne!(a, b);
    for n in 0..40 {
        let _ = inner_flow_hash(&vec![0x86; n]);
        let _ = inner_flow_hash(&tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 0)[..n.min(54)]);
    }
    assert_eq!(src_port(0), SRC_PORT_MIN);
    assert_eq!(src_port(u32::MAX), SRC_PORT_MAX - 1);
}

#[test]
fn frag_needed_reply_to_oversized_ipv4_with_df() {
    let big = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 1460);
    let mut out = Vec::new();
    too_big_reply(&big, 1450, &mut out).expect("reply");
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert_eq!(&out[0..6], &MAC1);
    assert_eq!(&out[6..12], &MAC2);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    let h = ip.header().to_header();
    assert_eq!(h.source, [10, 0, 0, 2]);
    assert_eq!(h.destination, [10, 0, 0, 1]);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("no ICMP")
    };
    match icmp.header().icmp_type {
        Icmpv4Type::DestinationUnreachable(d) => {
            assert_eq!(
                d,
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1450
                }
            )
        }
        t => panic!("{t:?}"),
    }
    let want = icmp.header().icmp_type.calc_checksum(icmp.payload());
    assert_eq!(icmp.header().checksum, want, "ICMP checksum");
    // The quote: the original IP header + 8 bytes.
    assert_eq!(icmp.payload(), &big[14..14 + 28]);
    // No DF: no reply (the packet is just dropped).
    let mut nodf = big.clone();
    nodf[20] &= !0x40;
    assert!(too_big_reply(&nodf, 1450, &mut out).is_none());
    // Non-IP: none.
    assert!(too_big_reply(&[0u8; 60], 1450, &mut out).is_none());
}

#[test]
fn packet_too_big_reply_to_oversized_ipv6() {
    let mut big = Vec::new();
    let (s, d) = ([0xfd; 16], [0xfe; 16]);
    PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv6(s, d, 64)
        .udp(5, 6)
        .write(&mut big, &[1u8; 1460])
        .unwrap();
    let mut out = Vec::new();
    too_big_reply(&big, 1430, &mut out).expect("reply");
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), d);
    assert_eq!(ip.header().destination(), s);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("no ICMPv6")
    };
    assert_eq!(
        icmp.header().icmp_type,
        Icmpv6Type::PacketTooBig { mtu: 1430 }
    );
    let want = icmp
        .header()
        .icmp_type
        .calc_checksum(d, s, icmp.payload())
        .unwrap();
    assert_eq!(icmp.header().checksum, want, "ICMPv6 checksum");
    assert!(out.len() - 14 <= 1280);
}

#[test]
fn options_parse_like_ovs() {
    let c = VxlanConfig::parse("remote_ip=192.168.1.2,key=42,local_ip=192.168.1.1").unwrap();
    assert_eq!(c.remote, Remote::Fixed(Ipv4Addr::new(192, 168, 1, 2)));
    assert_eq!(c.key, Key::Fixed(42));
    assert_eq!(c.dst_port, 4789);
    assert_eq!(c.ttl, HdrByte::Fixed(64));
    assert!(c.df);
    let c = VxlanConfig::parse(
        "remote_ip=flow,key=flow,local_ip=10.0.0.1,dst_port=8472,tos=inherit,ttl=inherit,df_default=false,underlay=eth1",
    )
    .unwrap();
    assert_eq!(
        (c.remote, c.key, c.dst_port),
        (Remote::Flow, Key::Flow, 8472)
    );
    assert_eq!(
        (c.tos, c.ttl, c.df),
        (HdrByte::Inherit, HdrByte::Inherit, false)
    );
    assert_eq!(c.underlay.as_deref(), Some("eth1"));
    assert_eq!(
        VxlanConfig::parse("remote_ip=1.2.3.4,key=0x10,local_ip=1.1.1.1").map(|c| c.key),
        Ok(Key::Fixed(16))
    );
    for bad in [
        "key=1,local_ip=1.1.1.1",                          // no remote_ip
        "remote_ip=flow,key=1",                            // flow remote needs local_ip
        "remote_ip=1.2.3.4,key=16777216,local_ip=1.1.1.1", // VNI > 24 bits
        "remote_ip=1.2.3.4,local_ip=1.1.1.1,dst_port=0",
        "remote_ip=1.2.3.4,local_ip=1.1.1.1,ttl=0",
        "remote_ip=1.2.3.4,local_ip=1.1.1.1,csum=true",
        "remote_ip=1.2.3.4,local_ip=1.1.1.1,bogus=1",
        "remote_ip=224.0.0.1,local_ip=1.1.1.1",
        "remote_ip=1.2.3.4,local_ip=0.0.0.0",
        "remote_ip=1.2.3.4,local_ip=1.1.1.1,in_key=1,out_key=2",
        "remote_ip",
    ] {
        assert!(VxlanConfig::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        VxlanConfig::parse("remote_ip=1.2.3.4,key=1").map(|c| c.local_ip),
        Ok(Ipv4Addr::UNSPECIFIED),
        "local_ip from the route at open"
    );
    let (n, p, c) = parse_cli_spec("vx0=10:remote_ip=flow,key=flow,local_ip=10.0.0.1").unwrap();
    assert_eq!((n.as_str(), p, c.key), ("vx0", Some(10), Key::Flow));
    let (n, p, _) = parse_cli_spec("vx1:remote_ip=10.0.0.2,local_ip=10.0.0.1").unwrap();
    assert_eq!((n.as_str(), p), ("vx1", None));
    assert!(parse_cli_spec("vx0").is_err());
    assert!(parse_cli_spec("vx0=x:remote_ip=flow,local_ip=1.1.1.1").is_err());
}

/// Pipeline side: a decapsulated frame matches on tun_id/tun_src, and an
/// output to a tunnel port carries the tunnel metadata set by the flow.
#[test]
fn pipeline_matches_tunnel_metadata_and_outputs_it() {
    let mut p = Pipeline::new(4);
    p.set_ports(
        &(1..=3)
            .map(|i| PortInfo {
                port_no: i,
                name: format!("p{i}"),
                hw_addr: [2, 0, 0, 0, 0, i as u8],
                live: true,
            })
            .collect::<Vec<_>>(),
    );
    p.set_tunnel_ports(&[2]);
    for f in [
        "in_port=2,tun_id=42,tun_src=192.168.77.2,actions=output:1",
        "in_port=2,tun_id=43,actions=output:3",
        "in_port=1,actions=set_field:7->tun_id,set_field:192.168.77.9->tun_dst,output:2",
        "in_port=3,actions=output:2",
    ] {
        let fm = parse_flow_mod(f, FlowModCommand::Add).unwrap();
        p.flow_mod(&fm, Instant::now()).unwrap();
    }
    let frame = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 0);
    let run = |p: &mut Pipeline, in_port: u32, tun: Option<TunnelMeta>| {
        let mut pkt = PacketBuf::from_slice(&frame);
        let mut out = Vec::new();
        match tun {
            Some(t) => p.process_tunnel(in_port, &t, &mut pkt, Instant::now(), &mut out),
            None => p.process(in_port, &mut pkt, Instant::now(), &mut out),
        }
        out.iter()
            .filter_map(|e| match e {
                Emit::Output { port, tunnel, .. } => Some((*port, *tunnel)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let t = |id: u64, src: [u8; 4]| TunnelMeta {
        id,
        src: u32::from_be_bytes(src),
        dst: u32::from_be_bytes([192, 168, 77, 1]),
        ..Default::default()
    };
    // Twice each: the second run comes from the megaflow cache.
    for _ in 0..2 {
        assert_eq!(run(&mut p, 2, Some(t(42, [192, 168, 77, 2]))), [(1, None)]);
        assert_eq!(run(&mut p, 2, Some(t(42, [192, 168, 77, 3]))), []);
        assert_eq!(run(&mut p, 2, Some(t(43, [192, 168, 77, 3]))), [(3, None)]);
        let want = TunnelMeta {
            id: 7,
            dst: u32::from_be_bytes([192, 168, 77, 9]),
            ..Default::default()
        };
        assert_eq!(run(&mut p, 1, None), [(2, Some(want))]);
        // No tunnel fields set: the port's fixed options apply.
        assert_eq!(run(&mut p, 3, None), [(2, Some(TunnelMeta::default()))]);
    }
}

/// Receive side of a real port on loopback: decap metadata, fixed key and
/// fixed remote enforced with counters, bad headers counted. Needs root
/// (AF_PACKET socket for the transmit side).
#[test]
fn port_decap_checks_vni_and_remote() {
    if !plexus_tests::prereq::require_root() {
        return;
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst_port = free.local_addr().unwrap().port();
    drop(free);
    let cfg = VxlanConfig::parse(&format!(
        "remote_ip=127.0.0.1,key=42,local_ip=127.0.0.1,dst_port={dst_port},underlay=lo"
    ))
    .unwrap();
    let mut port = VxlanPort::open("vxt0", cfg).expect("open");
    assert!(port.is_tunnel());
    let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 20);
    let dgram = |vni: u32, flags: u8| {
        let mut d = vec![flags, 0, 0, 0];
        d.extend_from_slice(&(vni << 8).to_be_bytes());
        d.extend_from_slice(&inner);
        d
    };
    let to = ("127.0.0.1", dst_port);
    sender.send_to(&dgram(42, 0x08), to).unwrap();
    sender.send_to(&dgram(43, 0x08), to).unwrap();
    sender.send_to(&dgram(42, 0x0c), to).unwrap();
    sender.send_to(&dgram(42, 0x08)[..12], to).unwrap();
    sender.send_to(&dgram(42, 0x08), to).unwrap();
    let mut batch = PacketBatch::new(8);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        port.rx_batch(&mut batch);
        for (i, f) in batch.iter().enumerate() {
            got.push((f.to_vec(), port.rx_tunnel()[i]));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(got.len(), 2);
    for (f, t) in &got {
        assert_eq!(f, &inner);
        assert_eq!(t.id, 42);
        assert_eq!(t.src, u32::from(Ipv4Addr::LOCALHOST));
        assert_eq!(t.dst, u32::from(Ipv4Addr::LOCALHOST));
    }
    let v = port.vxlan_stats();
    assert_eq!(v.decap, 2);
    assert_eq!(v.unknown_vni, 1);
    assert_eq!(v.bad_header, 2);
    assert_eq!(port.stats().rx_drops, 3);
    assert_eq!(port.stats().rx_packets, 2);
    assert!(port.details().contains("unknown_vni 1"));

    // A port with a fixed remote other than the sender: remote_mismatch.
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst_port = free.local_addr().unwrap().port();
    drop(free);
    let cfg = VxlanConfig::parse(&format!(
        "remote_ip=127.0.0.9,key=flow,local_ip=127.0.0.1,dst_port={dst_port},underlay=lo"
    ))
    .unwrap();
    let mut port = VxlanPort::open("vxt1", cfg).expect("open");
    sender
        .send_to(&dgram(5, 0x08), ("127.0.0.1", dst_port))
        .unwrap();
    let ok = plexus_tests::proc::wait_until(Duration::from_secs(5), || {
        port.rx_batch(&mut batch);
        port.vxlan_stats().remote_mismatch == 1
    });
    assert!(ok, "{}", port.details());
    assert!(batch.is_empty());
}

/// Two ports on one `local_ip:dst_port`: a fixed-remote/fixed-key port and a
/// `remote_ip=flow,key=flow` port share the socket; each datagram reaches
/// the right one whichever port reads it; a third port with the same
/// remote and key as the first is refused. Needs root (AF_PACKET).
#[test]
fn ports_share_an_endpoint_and_demux_by_remote_and_key() {
    if !plexus_tests::prereq::require_root() {
        return;
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst_port = free.local_addr().unwrap().port();
    drop(free);
    let open = |name: &str, o: &str| {
        VxlanPort::open(
            name,
            VxlanConfig::parse(&format!(
                "{o},local_ip=127.0.0.1,dst_port={dst_port},underlay=lo"
            ))
            .unwrap(),
        )
    };
    let mut a = open("vxa", "remote_ip=127.0.0.1,key=42").expect("a");
    let mut b = open("vxb", "remote_ip=flow,key=flow").expect("b");
    assert!(open("vxc", "remote_ip=127.0.0.1,key=42").is_err());
    let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 20);
    for vni in [42u32, 7, 42, 9] {
        let mut d = vec![8, 0, 0, 0];
        d.extend_from_slice(&(vni << 8).to_be_bytes());
        d.extend_from_slice(&inner);
        sender.send_to(&d, ("127.0.0.1", dst_port)).unwrap();
    }
    let mut batch = PacketBatch::new(8);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let ok = plexus_tests::proc::wait_until(Duration::from_secs(5), || {
        // b reads first: it must queue a's datagrams for a.
        b.rx_batch(&mut batch);
        got_b.extend(b.rx_tunnel().iter().map(|t| t.id));
        a.rx_batch(&mut batch);
        got_a.extend(a.rx_tunnel().iter().map(|t| t.id));
        got_a.len() + got_b.len() >= 4
    });
    assert!(ok, "a {got_a:?} b {got_b:?}");
    assert_eq!(got_a, [42, 42]);
    assert_eq!(got_b, [7, 9]);
    assert_eq!(a.stats().rx_packets, 2);
    assert_eq!(b.stats().rx_packets, 2);
    // Closing a frees its (remote, key): a new port may take it.
    drop(a);
    assert!(open("vxc", "remote_ip=127.0.0.1,key=42").is_ok());
}

/// Receive batching: datagrams that are already waiting come out of one
/// `rx_batch` call a full batch at a time (one `recvmmsg` per batch), in
/// order, with an oversized datagram (truncated by its receive buffer)
/// dropped as a bad header in between. Needs root (AF_PACKET underlay).
#[test]
fn decap_takes_a_batch_per_poll() {
    if !plexus_tests::prereq::require_root() {
        return;
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst_port = free.local_addr().unwrap().port();
    drop(free);
    let cfg = VxlanConfig::parse(&format!(
        "remote_ip=flow,key=flow,local_ip=127.0.0.1,dst_port={dst_port},underlay=lo"
    ))
    .unwrap();
    let mut port = VxlanPort::open("vxt2", cfg).expect("open");
    let to = ("127.0.0.1", dst_port);
    let dgram = |vni: u32, inner: &[u8]| {
        let mut d = vec![0x08, 0, 0, 0];
        d.extend_from_slice(&(vni << 8).to_be_bytes());
        d.extend_from_slice(inner);
        d
    };
    let n = 100u32;
    for i in 0..n {
        let inner = tcp([10, 0, 0, 1], [10, 0, 0, 2], i as u16, 2, 20);
        sender.send_to(&dgram(i, &inner), to).unwrap();
        if i == 10 {
            // Longer than a receive buffer (FRAME_BUF + 8).
            sender.send_to(&dgram(7, &[0u8; 3000]), to).unwrap();
        }
    }
    let mut batch = PacketBatch::new(32);
    let mut sizes = Vec::new();
    let mut vnis = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Wait until everything is queued on the socket, then poll.
    std::thread::sleep(Duration::from_millis(100));
    while vnis.len() < n as usize && Instant::now() < deadline {
        let k = port.rx_batch(&mut batch);
        if k > 0 {
            sizes.push(k);
        }
        vnis.extend(port.rx_tunnel()[..k].iter().map(|t| t.id as u32));
    }
    assert_eq!(vnis, (0..n).collect::<Vec<_>>(), "all, in order");
    assert_eq!(sizes, vec![32, 32, 32, 4], "a full batch per poll");
    let v = port.vxlan_stats();
    assert_eq!(v.bad_header, 1);
    assert_eq!(v.decap, u64::from(n));
    // 101 datagrams in a handful of recvmmsg calls (one per batch, plus one
    // to top up the batch the dropped datagram left short), not 101 reads.
    assert!(v.rx_batches <= 6, "{} recvmmsg calls", v.rx_batches);
}
