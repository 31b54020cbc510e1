//! Building replies: request frame + [`Spec`] → reply frame (or a counted reason to drop).
//!
//! Parsing and building use `smoltcp::wire` packet/repr types; every length is checked
//! by them or here before use, so no input panics (see the proptests).

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessageType,
    DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
    UdpPacket, UdpRepr,
};

use crate::spec::{Dhcp4Spec, Spec};

/// Minimum Ethernet frame without FCS; replies are zero-padded to it.
pub const MIN_FRAME: usize = 60;
const ETH_HDR: usize = 14;
const VLAN_TPID: u16 = 0x8100;
/// BOOTP minimum message size (RFC 1542 §2.1); DHCP replies are padded to it.
const BOOTP_MIN: usize = 300;
/// Reply TTL / hop limit (ND uses 255 as RFC 4861 requires).
const TTL: u8 = 64;

/// Why a request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed,
    /// The right protocol but not a request this responder answers (ARP reply, echo
    /// reply, NA, a DHCP server message …).
    NotRequest,
    /// Asks for another address than the responder's.
    WrongTarget,
    /// DHCP from another MAC than the port's (Ethernet source or chaddr), or relayed.
    Foreign,
    /// A checksum that does not verify.
    BadChecksum,
    /// Stacked VLANs, IPv4 fragments, IPv6 extension headers, non-Ethernet ARP.
    Unsupported,
    /// A DHCPREQUEST addressed to another server (the client chose it).
    OtherServer,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::NotRequest,
        DropReason::WrongTarget,
        DropReason::Foreign,
        DropReason::BadChecksum,
        DropReason::Unsupported,
        DropReason::OtherServer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotRequest => "not_request",
            DropReason::WrongTarget => "wrong_target",
            DropReason::Foreign => "foreign",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Unsupported => "unsupported",
            DropReason::OtherServer => "other_server",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// DHCP message exchanges, counted per responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DhcpEvent {
    /// DISCOVER answered with OFFER.
    Offer,
    /// REQUEST answered with ACK.
    Ack,
    /// REQUEST for another address answered with NAK.
    Nak,
    /// INFORM answered with ACK (no lease).
    Inform,
    /// RELEASE consumed (no reply).
    Release,
    /// DECLINE consumed (no reply).
    Decline,
}

impl DhcpEvent {
    pub const ALL: [DhcpEvent; 6] = [
        DhcpEvent::Offer,
        DhcpEvent::Ack,
        DhcpEvent::Nak,
        DhcpEvent::Inform,
        DhcpEvent::Release,
        DhcpEvent::Decline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DhcpEvent::Offer => "offer",
            DhcpEvent::Ack => "ack",
            DhcpEvent::Nak => "nak",
            DhcpEvent::Inform => "inform",
            DhcpEvent::Release => "release",
            DhcpEvent::Decline => "decline",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a valid request produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `out` holds the reply frame, to be sent out of the port the request came in on.
    Reply(Option<DhcpEvent>),
    /// A valid message that has no reply (DHCP RELEASE/DECLINE).
    Consumed(DhcpEvent),
}

/// The Ethernet header of a request: addresses, optional 802.1Q tag, ethertype, payload.
struct L2<'a> {
    src: EthernetAddress,
    tag: Option<[u8; 2]>,
    ethertype: EthernetProtocol,
    payload: &'a [u8],
}

fn parse_l2(frame: &[u8]) -> Result<L2<'_>, DropReason> {
    let f = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let src = f.src_addr();
    let et = u16::from(f.ethertype());
    if et != VLAN_TPID {
        return Ok(L2 {
            src,
            tag: None,
            ethertype: f.ethertype(),
            payload: &frame[ETH_HDR..],
        });
    }
    if frame.len() < ETH_HDR + 4 {
        return Err(DropReason::Malformed);
    }
    let inner = u16::from_be_bytes([frame[16], frame[17]]);
    if inner == VLAN_TPID || inner == 0x88a8 {
        return Err(DropReason::Unsupported);
    }
    Ok(L2 {
        src,
        tag: Some([frame[14], frame[15]]),
        ethertype: EthernetProtocol::from(inner),
        payload: &frame[ETH_HDR + 4..],
    })
}

/// Writes the Ethernet header (with the request's tag) into `out` (cleared), sized for
/// `payload_len`, and returns the payload offset.
fn put_l2(
    out: &mut Vec<u8>,
    dst: EthernetAddress,
    src: EthernetAddress,
    tag: Option<[u8; 2]>,
    ethertype: EthernetProtocol,
    payload_len: usize,
) -> usize {
    let hdr = ETH_HDR + if tag.is_some() { 4 } else { 0 };
    out.clear();
    out.resize((hdr + payload_len).max(MIN_FRAME), 0);
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: match tag {
            Some(_) => EthernetProtocol::from(VLAN_TPID),
            None => ethertype,
        },
    };
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    if let Some(t) = tag {
        out[14..16].copy_from_slice(&t);
        out[16..18].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }
    hdr
}

fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// Answers `frame` (a request that hit a responder flow) according to `spec`; on
/// [`Answer::Reply`] the reply frame is in `out` (its previous content is overwritten).
pub fn respond(spec: &Spec, frame: &[u8], out: &mut Vec<u8>) -> Result<Answer, DropReason> {
    let l2 = parse_l2(frame)?;
    match spec {
        Spec::Arp { mac, ip } => arp(&l2, *mac, *ip, out).map(|()| Answer::Reply(None)),
        Spec::Icmp4Echo { mac, ip } => icmp4(&l2, *mac, *ip, out).map(|()| Answer::Reply(None)),
        Spec::Nd { mac, ip, router } => {
            nd(&l2, *mac, *ip, *router, out).map(|()| Answer::Reply(None))
        }
        Spec::Icmp6Echo { mac, ip } => icmp6(&l2, *mac, *ip, out).map(|()| Answer::Reply(None)),
        Spec::Dhcp4(d) => dhcp(&l2, d, out),
    }
}

fn arp(l2: &L2<'_>, mac: [u8; 6], ip: Ipv4Addr, out: &mut Vec<u8>) -> Result<(), DropReason> {
    if l2.ethertype != EthernetProtocol::Arp {
        return Err(DropReason::NotRequest);
    }
    let p = ArpPacket::new_checked(l2.payload).map_err(|_| DropReason::Malformed)?;
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_protocol_addr: tpa,
        ..
    } = ArpRepr::parse(&p).map_err(|_| DropReason::Unsupported)?
    else {
        return Err(DropReason::Unsupported);
    };
    if operation != ArpOperation::Request {
        return Err(DropReason::NotRequest);
    }
    if tpa != ip {
        return Err(DropReason::WrongTarget);
    }
    // A gratuitous ARP for the responder's own address is an announcement, not a question.
    if spa == ip {
        return Err(DropReason::NotRequest);
    }
    if !sha.is_unicast() {
        return Err(DropReason::Malformed);
    }
    let me = EthernetAddress(mac);
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: me,
        source_protocol_addr: ip,
        target_hardware_addr: sha,
        target_protocol_addr: spa,
    };
    let off = put_l2(
        out,
        sha,
        me,
        l2.tag,
        EthernetProtocol::Arp,
        reply.buffer_len(),
    );
    reply.emit(&mut ArpPacket::new_unchecked(
        &mut out[off..off + reply.buffer_len()],
    ));
    Ok(())
}

/// The IPv4 header of a request (no fragments) and its payload.
fn parse_v4<'a>(l2: &L2<'a>) -> Result<(Ipv4Repr, &'a [u8]), DropReason> {
    if l2.ethertype != EthernetProtocol::Ipv4 {
        return Err(DropReason::NotRequest);
    }
    let p = Ipv4Packet::new_checked(l2.payload).map_err(|_| DropReason::Malformed)?;
    if p.more_frags() || p.frag_offset() != 0 {
        return Err(DropReason::Unsupported);
    }
    if !p.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    let repr = Ipv4Repr::parse(&p, &caps()).map_err(|_| DropReason::Malformed)?;
    let hl = p.header_len() as usize;
    let total = p.total_len() as usize;
    Ok((repr, &l2.payload[hl..total]))
}

/// Writes Ethernet + IPv4 headers for an IPv4 reply of `payload_len` bytes; returns the
/// payload offset.
fn put_v4(
    out: &mut Vec<u8>,
    l2: &L2<'_>,
    eth_dst: EthernetAddress,
    mac: [u8; 6],
    ip: Ipv4Repr,
) -> usize {
    let off = put_l2(
        out,
        eth_dst,
        EthernetAddress(mac),
        l2.tag,
        EthernetProtocol::Ipv4,
        ip.buffer_len() + ip.payload_len,
    );
    let end = off + ip.buffer_len() + ip.payload_len;
    let mut p = Ipv4Packet::new_unchecked(&mut out[off..end]);
    ip.emit(&mut p, &caps());
    off + ip.buffer_len()
}

fn icmp4(l2: &L2<'_>, mac: [u8; 6], ip: Ipv4Addr, out: &mut Vec<u8>) -> Result<(), DropReason> {
    let (req, payload) = parse_v4(l2)?;
    if req.next_header != IpProtocol::Icmp {
        return Err(DropReason::NotRequest);
    }
    if req.dst_addr != ip {
        return Err(DropReason::WrongTarget);
    }
    if !l2.src.is_unicast() || req.src_addr.is_broadcast() || req.src_addr.is_multicast() {
        return Err(DropReason::Malformed);
    }
    let p = Icmpv4Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    if !p.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    let Ok(Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    }) = Icmpv4Repr::parse(&p, &caps())
    else {
        return Err(DropReason::NotRequest);
    };
    let icmp = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let iph = Ipv4Repr {
        src_addr: ip,
        dst_addr: req.src_addr,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: TTL,
    };
    let off = put_v4(out, l2, l2.src, mac, iph);
    let mut ip_p = Icmpv4Packet::new_unchecked(&mut out[off..off + icmp.buffer_len()]);
    icmp.emit(&mut ip_p, &caps());
    Ok(())
}

/// The IPv6 header of an ICMPv6 request (no extension headers) and the ICMPv6 bytes.
fn parse_v6<'a>(l2: &L2<'a>) -> Result<(Ipv6Repr, &'a [u8]), DropReason> {
    if l2.ethertype != EthernetProtocol::Ipv6 {
        return Err(DropReason::NotRequest);
    }
    let p = Ipv6Packet::new_checked(l2.payload).map_err(|_| DropReason::Malformed)?;
    let repr = Ipv6Repr::parse(&p).map_err(|_| DropReason::Malformed)?;
    if repr.next_header != IpProtocol::Icmpv6 {
        // Hop-by-hop/other extension headers before ICMPv6 are not handled.
        return Err(DropReason::Unsupported);
    }
    let start = repr.buffer_len();
    Ok((repr, &l2.payload[start..start + repr.payload_len]))
}

fn put_v6(
    out: &mut Vec<u8>,
    l2: &L2<'_>,
    eth_dst: EthernetAddress,
    mac: [u8; 6],
    ip: Ipv6Repr,
) -> usize {
    let off = put_l2(
        out,
        eth_dst,
        EthernetAddress(mac),
        l2.tag,
        EthernetProtocol::Ipv6,
        ip.buffer_len() + ip.payload_len,
    );
    let end = off + ip.buffer_len() + ip.payload_len;
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[off..end]));
    off + ip.buffer_len()
}

fn icmp6(l2: &L2<'_>, mac: [u8; 6], ip: Ipv6Addr, out: &mut Vec<u8>) -> Result<(), DropReason> {
    let (req, payload) = parse_v6(l2)?;
    if req.dst_addr != ip {
        return Err(DropReason::WrongTarget);
    }
    if !l2.src.is_unicast() || req.src_addr.is_multicast() || req.src_addr.is_unspecified() {
        return Err(DropReason::Malformed);
    }
    let p = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    if !p.verify_checksum(&req.src_addr, &req.dst_addr) {
        return Err(DropReason::BadChecksum);
    }
    let Ok(Icmpv6Repr::EchoRequest {
        ident,
        seq_no,
        data,
    }) = Icmpv6Repr::parse(&req.src_addr, &req.dst_addr, &p, &caps())
    else {
        return Err(DropReason::NotRequest);
    };
    let icmp = Icmpv6Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let iph = Ipv6Repr {
        src_addr: ip,
        dst_addr: req.src_addr,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: TTL,
    };
    let off = put_v6(out, l2, l2.src, mac, iph);
    icmp.emit(
        &ip,
        &req.src_addr,
        &mut Icmpv6Packet::new_unchecked(&mut out[off..off + icmp.buffer_len()]),
        &caps(),
    );
    Ok(())
}

fn nd(
    l2: &L2<'_>,
    mac: [u8; 6],
    ip: Ipv6Addr,
    router: bool,
    out: &mut Vec<u8>,
) -> Result<(), DropReason> {
    let (req, payload) = parse_v6(l2)?;
    let p = Icmpv6Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    if !p.verify_checksum(&req.src_addr, &req.dst_addr) {
        return Err(DropReason::BadChecksum);
    }
    let Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr,
        lladdr,
    })) = Icmpv6Repr::parse(&req.src_addr, &req.dst_addr, &p, &caps())
    else {
        return Err(DropReason::NotRequest);
    };
    // RFC 4861 §7.1.1: hop limit 255, code 0 (checked by the parser), target not multicast.
    if req.hop_limit != 255 || target_addr.is_multicast() || req.src_addr.is_multicast() {
        return Err(DropReason::Malformed);
    }
    if target_addr != ip {
        return Err(DropReason::WrongTarget);
    }
    let dad = req.src_addr.is_unspecified();
    // A DAD probe must not carry a source link-layer option (§7.1.1).
    if dad && lladdr.is_some() {
        return Err(DropReason::Malformed);
    }
    let mut flags = NdiscNeighborFlags::OVERRIDE;
    if router {
        flags |= NdiscNeighborFlags::ROUTER;
    }
    // §7.2.4: a DAD probe is answered to all-nodes, unsolicited; else to the solicitor.
    let (dst_ip, eth_dst) = if dad {
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
        )
    } else {
        flags |= NdiscNeighborFlags::SOLICITED;
        let dst = match lladdr {
            Some(ll) if ll.len() == 6 => EthernetAddress::from_bytes(ll.as_bytes()),
            Some(_) => return Err(DropReason::Malformed),
            None => l2.src,
        };
        if !dst.is_unicast() {
            return Err(DropReason::Malformed);
        }
        (req.src_addr, dst)
    };
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: ip,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac))),
    });
    let iph = Ipv6Repr {
        src_addr: ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let off = put_v6(out, l2, eth_dst, mac, iph);
    icmp.emit(
        &ip,
        &dst_ip,
        &mut Icmpv6Packet::new_unchecked(&mut out[off..off + icmp.buffer_len()]),
        &caps(),
    );
    Ok(())
}

/// Netmask of a prefix length (1..=32).
fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// The request's DHCP fields a reply depends on (parsed leniently: unknown options and
/// client identifiers of any type are allowed, as servers must).
struct DhcpReq {
    msg: DhcpMessageType,
    xid: u32,
    secs: u16,
    chaddr: EthernetAddress,
    ciaddr: Ipv4Addr,
    broadcast: bool,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

fn parse_dhcp(payload: &[u8]) -> Result<DhcpReq, DropReason> {
    let p = DhcpPacket::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    // BOOTREQUEST, Ethernet, 6-byte addresses, the magic cookie.
    if payload[0] != 1 {
        return Err(DropReason::NotRequest);
    }
    if payload[1] != 1 || payload[2] != 6 || p.magic_number() != 0x6382_5363 {
        return Err(DropReason::Unsupported);
    }
    if !p.relay_agent_ip().is_unspecified() {
        return Err(DropReason::Foreign);
    }
    let mut msg = None;
    let mut requested = None;
    let mut server_id = None;
    for o in p.options() {
        match (o.kind, o.data.len()) {
            (53, 1) => msg = Some(DhcpMessageType::from(o.data[0])),
            (50, 4) => requested = Some(Ipv4Addr::new(o.data[0], o.data[1], o.data[2], o.data[3])),
            (54, 4) => server_id = Some(Ipv4Addr::new(o.data[0], o.data[1], o.data[2], o.data[3])),
            (53 | 50 | 54, _) => return Err(DropReason::Malformed),
            _ => {}
        }
    }
    let msg = msg.ok_or(DropReason::Malformed)?;
    Ok(DhcpReq {
        msg,
        xid: p.transaction_id(),
        secs: p.secs(),
        chaddr: p.client_hardware_address(),
        ciaddr: p.client_ip(),
        broadcast: p.flags().contains(smoltcp::wire::DhcpFlags::BROADCAST),
        requested,
        server_id,
    })
}

fn dhcp(l2: &L2<'_>, d: &Dhcp4Spec, out: &mut Vec<u8>) -> Result<Answer, DropReason> {
    let (ip, payload) = parse_v4(l2)?;
    if ip.next_header != IpProtocol::Udp {
        return Err(DropReason::NotRequest);
    }
    let u = UdpPacket::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    if u.src_port() != DHCP_CLIENT_PORT || u.dst_port() != DHCP_SERVER_PORT {
        return Err(DropReason::NotRequest);
    }
    if u.checksum() != 0
        && !u.verify_checksum(&IpAddress::Ipv4(ip.src_addr), &IpAddress::Ipv4(ip.dst_addr))
    {
        return Err(DropReason::BadChecksum);
    }
    let req = parse_dhcp(u.payload())?;
    // Port security: only the port's own MAC, in the frame and in chaddr.
    let client = EthernetAddress(d.client_mac);
    if l2.src != client || req.chaddr != client {
        return Err(DropReason::Foreign);
    }
    let (reply_type, event) = match req.msg {
        DhcpMessageType::Discover => (DhcpMessageType::Offer, DhcpEvent::Offer),
        DhcpMessageType::Request => {
            if req.server_id.is_some_and(|s| s != d.server_ip) {
                return Err(DropReason::OtherServer);
            }
            // SELECTING/INIT-REBOOT name the address in option 50; RENEWING/REBINDING
            // in ciaddr.
            let asked = req.requested.unwrap_or(req.ciaddr);
            if asked == d.client_ip {
                (DhcpMessageType::Ack, DhcpEvent::Ack)
            } else {
                (DhcpMessageType::Nak, DhcpEvent::Nak)
            }
        }
        DhcpMessageType::Inform => (DhcpMessageType::Ack, DhcpEvent::Inform),
        DhcpMessageType::Release => {
            if req.server_id.is_some_and(|s| s != d.server_ip) {
                return Err(DropReason::OtherServer);
            }
            return Ok(Answer::Consumed(DhcpEvent::Release));
        }
        DhcpMessageType::Decline => {
            if req.server_id.is_some_and(|s| s != d.server_ip) {
                return Err(DropReason::OtherServer);
            }
            return Ok(Answer::Consumed(DhcpEvent::Decline));
        }
        _ => return Err(DropReason::NotRequest),
    };
    let nak = reply_type == DhcpMessageType::Nak;
    let inform = event == DhcpEvent::Inform;
    // Options beyond smoltcp's typed ones.
    let lease = d.lease_secs;
    let t1 = (lease / 2).to_be_bytes();
    let t2 = (lease / 8 * 7).to_be_bytes();
    let mtu = d.mtu.map(u16::to_be_bytes);
    let bcast = Ipv4Addr::from(u32::from(d.client_ip) | !u32::from(mask(d.prefix_len))).octets();
    let mut dns = Vec::with_capacity(d.dns.len() * 4);
    for a in &d.dns {
        dns.extend_from_slice(&a.octets());
    }
    let mut extra: Vec<DhcpOption<'_>> = Vec::with_capacity(6);
    if !nak {
        if !inform {
            extra.push(DhcpOption {
                kind: 58,
                data: &t1,
            });
            extra.push(DhcpOption {
                kind: 59,
                data: &t2,
            });
        }
        extra.push(DhcpOption {
            kind: 28,
            data: &bcast,
        });
        if !dns.is_empty() {
            extra.push(DhcpOption {
                kind: 6,
                data: &dns,
            });
        }
        if let Some(dom) = &d.domain {
            extra.push(DhcpOption {
                kind: 15,
                data: dom.as_bytes(),
            });
        }
        if let Some(m) = &mtu {
            extra.push(DhcpOption { kind: 26, data: m });
        }
    }
    let repr = DhcpRepr {
        message_type: reply_type,
        transaction_id: req.xid,
        secs: 0,
        client_hardware_address: req.chaddr,
        client_ip: if inform {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        your_ip: if nak || inform {
            Ipv4Addr::UNSPECIFIED
        } else {
            d.client_ip
        },
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: if nak { None } else { d.router },
        subnet_mask: if nak { None } else { Some(mask(d.prefix_len)) },
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: req.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(d.server_ip),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: if nak || inform { None } else { Some(lease) },
        renew_duration: None,
        rebind_duration: None,
        additional_options: &extra,
    };
    let _ = req.secs;
    let dhcp_len = repr.buffer_len().max(BOOTP_MIN);
    // RFC 2131 §4.1: NAK broadcast; renewing clients (ciaddr set) unicast; the broadcast
    // flag → broadcast; else unicast to yiaddr/chaddr. The frame always goes to the
    // client's MAC (it is the only station on the port).
    let dst_ip = if nak || req.broadcast {
        Ipv4Addr::BROADCAST
    } else if !req.ciaddr.is_unspecified() {
        req.ciaddr
    } else {
        d.client_ip
    };
    let udp_len = 8 + dhcp_len;
    let iph = Ipv4Repr {
        src_addr: d.server_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: TTL,
    };
    let off = put_v4(out, l2, client, d.server_mac, iph);
    let udp = UdpRepr {
        src_port: DHCP_SERVER_PORT,
        dst_port: DHCP_CLIENT_PORT,
    };
    let mut emit_err = false;
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut out[off..off + udp_len]),
        &IpAddress::Ipv4(d.server_ip),
        &IpAddress::Ipv4(dst_ip),
        dhcp_len,
        |buf| {
            let mut p = DhcpPacket::new_unchecked(&mut buf[..dhcp_len]);
            emit_err = repr.emit(&mut p).is_err();
        },
        &caps(),
    );
    if emit_err {
        // Only possible if the options outgrow the buffer sized from them.
        return Err(DropReason::Malformed);
    }
    Ok(Answer::Reply(Some(event)))
}
