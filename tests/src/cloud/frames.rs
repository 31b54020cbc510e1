//! Hand-built attack frames (Ethernet, ARP, IPv4/UDP/TCP fragments, ICMPv6 ND,
//! DHCP). Every frame carries a 4-byte `marker` so a receiver can tell the
//! attacker's frames from background traffic.

use std::net::{Ipv4Addr, Ipv6Addr};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// The internet checksum (RFC 1071) of `data` plus a running `sum`.
fn csum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for c in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    s + u32::from(proto) + len as u32
}

fn eth(dst: Mac, src: Mac, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Pads to the 60-byte Ethernet minimum, with the marker in the padding.
fn pad(mut f: Vec<u8>, marker: [u8; 4]) -> Vec<u8> {
    if f.len() < 60 {
        f.extend_from_slice(&marker);
        let n = f.len().max(60);
        f.resize(n, 0);
    }
    f
}

/// An ARP frame (`op` 1 request, 2 reply).
#[allow(clippy::too_many_arguments)]
pub fn arp(
    dst: Mac,
    src: Mac,
    op: u16,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
    marker: [u8; 4],
) -> Vec<u8> {
    let mut f = eth(dst, src, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    // The marker always goes in the trailer (the ARP body is 42 bytes).
    f.extend_from_slice(&marker);
    f.resize(60, 0);
    f
}

/// IPv4 header fields of one (fragment of a) datagram.
#[derive(Debug, Clone, Copy)]
pub struct Ip4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    pub more_frags: bool,
}

/// An IPv4 packet carrying `payload` as is (already an L4 header or a fragment of one).
pub fn ipv4(dst: Mac, src: Mac, h: Ip4, payload: &[u8], marker: [u8; 4]) -> Vec<u8> {
    let mut f = eth(dst, src, 0x0800);
    let total = 20 + payload.len();
    let flags = (u16::from(h.more_frags) << 13) | (h.frag_off & 0x1fff);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&h.id.to_be_bytes());
    ip[6..8].copy_from_slice(&flags.to_be_bytes());
    ip[8] = 64;
    ip[9] = h.proto;
    ip[12..16].copy_from_slice(&h.src.octets());
    ip[16..20].copy_from_slice(&h.dst.octets());
    let c = csum(0, &ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    pad(f, marker)
}

/// A UDP datagram (header + data) with its checksum.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = csum(pseudo4(src, dst, 17, len), &u);
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

/// TCP flag bits.
pub mod tcpf {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// A TCP segment (20-byte header + data) with its checksum.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(data);
    let c = csum(pseudo4(src, dst, 6, t.len()), &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// An ICMP echo request with `data`.
pub fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut i = vec![8, 0, 0, 0];
    i.extend_from_slice(&id.to_be_bytes());
    i.extend_from_slice(&seq.to_be_bytes());
    i.extend_from_slice(data);
    let c = csum(0, &i);
    i[2..4].copy_from_slice(&c.to_be_bytes());
    i
}

/// A DHCPDISCOVER (BOOTP request) from `chaddr`, as UDP payload.
pub fn dhcp_discover(xid: u32, chaddr: Mac, marker: [u8; 4]) -> Vec<u8> {
    let mut d = vec![0u8; 236];
    d[0] = 1; // BOOTREQUEST
    d[1] = 1; // Ethernet
    d[2] = 6;
    d[4..8].copy_from_slice(&xid.to_be_bytes());
    d[10] = 0x80; // broadcast flag
    d[28..34].copy_from_slice(&chaddr);
    d.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    d.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    d.extend_from_slice(&[224, 4]); // a private-use option carrying the marker
    d.extend_from_slice(&marker);
    d.push(255);
    d
}

/// The EUI-64 link-local address of `mac`.
pub fn link_local(mac: Mac) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// An unsolicited ICMPv6 neighbour advertisement (override) claiming that
/// `target` is at `tll`, with an unknown option (ignored by receivers,
/// RFC 4861 §4.6) carrying the marker.
pub fn nd_advert(
    dst: Mac,
    src: Mac,
    ip_src: Ipv6Addr,
    ip_dst: Ipv6Addr,
    target: Ipv6Addr,
    tll: Mac,
    marker: [u8; 4],
) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0]; // override flag
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&tll);
    icmp.extend_from_slice(&[250, 1, 0, 0]);
    icmp.extend_from_slice(&marker);
    let len = icmp.len();
    let mut sum = 0u32;
    for c in ip_src.octets().chunks(2).chain(ip_dst.octets().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    sum += len as u32 + 58;
    let c = csum(sum, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(dst, src, 0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.push(58);
    f.push(255);
    f.extend_from_slice(&ip_src.octets());
    f.extend_from_slice(&ip_dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The all-nodes multicast MAC (33:33:00:00:00:01).
pub const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];

/// True when `frame` contains `marker`.
pub fn has_marker(frame: &[u8], marker: [u8; 4]) -> bool {
    frame.windows(4).any(|w| w == marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let t = tcp(a, b, 1, 2, 3, 4, tcpf::SYN, b"xyz");
        assert_eq!(csum(pseudo4(a, b, 6, t.len()), &t), 0);
        let f = ipv4(
            BROADCAST,
            [2, 0, 0, 0, 0, 1],
            Ip4 {
                src: a,
                dst: b,
                proto: 6,
                id: 7,
                frag_off: 0,
                more_frags: false,
            },
            &t,
            [1, 2, 3, 4],
        );
        assert_eq!(csum(0, &f[14..34]), 0);
        assert!(has_marker(&f, [1, 2, 3, 4]));
        let arpf = arp(BROADCAST, [2; 6], 1, [2; 6], a, [0; 6], b, [9, 8, 7, 6]);
        assert_eq!(arpf.len(), 60);
        assert!(has_marker(&arpf, [9, 8, 7, 6]));
        assert_eq!(
            link_local([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "fe80::5054:ff:fe12:3456"
        );
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00"), None);
    }
}
