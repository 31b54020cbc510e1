//! Frame → [`FlowKey`] extraction, following OVS's `flow_extract` rules.
//!
//! Total: any byte string gives a key. A frame that is cut short or
//! malformed yields the key of the layers that did parse (deeper layers stay
//! zero, like OVS) and a [`ParseError`] naming the first problem, for counters.

use super::layout::*;
use super::{FlowKey, Loc, VLAN_CFI, frag};

/// Tunnel metadata of a packet received on a tunnel port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelMeta {
    pub id: u64,
    pub src: u32,
    pub dst: u32,
    pub ipv6_src: u128,
    pub ipv6_dst: u128,
    pub flags: u16,
    pub gbp_id: u16,
    pub gbp_flags: u8,
}

/// Metadata that comes with a packet rather than from its bytes (ingress
/// port, tunnel, and the pipeline state when a packet is re-parsed after
/// recirculation: registers, metadata, conntrack results, mark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub in_port: u32,
    pub tunnel: TunnelMeta,
    pub regs: [u32; 16],
    pub metadata: u64,
    pub ct_state: u32,
    pub ct_zone: u16,
    pub ct_mark: u32,
    pub ct_label: u128,
    pub pkt_mark: u32,
}

macro_rules! parse_errors {
    ($($var:ident => $name:literal, $doc:literal;)*) => {
        /// Why a frame did not parse completely (one counter per reason).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ParseError { $(#[doc = $doc] $var),* }

        impl ParseError {
            /// Every reason, indexed by `self as usize`.
            pub const ALL: &'static [ParseError] = &[$(ParseError::$var),*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// Counter name.
            pub fn as_str(self) -> &'static str {
                match self { $(ParseError::$var => $name),* }
            }
        }
    };
}

parse_errors! {
    Runt => "runt", "Shorter than an Ethernet header (14 bytes).";
    VlanTruncated => "vlan_truncated", "A VLAN TPID without room for the tag.";
    MplsTruncated => "mpls_truncated", "MPLS ethertype without a label stack entry.";
    ArpTruncated => "arp_truncated", "ARP shorter than the Ethernet/IPv4 ARP body.";
    Ipv4Truncated => "ipv4_truncated", "IPv4 header or total length beyond the frame.";
    Ipv4BadHeader => "ipv4_bad_header", "IPv4 version/IHL/total length inconsistent.";
    Ipv6Truncated => "ipv6_truncated", "IPv6 header or payload length beyond the frame.";
    Ipv6BadHeader => "ipv6_bad_header", "IPv6 version is not 6.";
    Ipv6ExtTruncated => "ipv6_ext_truncated", "An IPv6 extension header runs past the payload.";
    L4Truncated => "l4_truncated", "TCP/UDP/SCTP/ICMP header cut short.";
    TcpBadOffset => "tcp_bad_offset", "TCP data offset below 5 words or past the segment.";
    NdMalformed => "nd_malformed", "Neighbor Discovery message or options malformed.";
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-reason parse counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub ok: u64,
    pub errors: [u64; ParseError::COUNT],
}

impl ParseStats {
    /// Counts one parse outcome.
    #[inline]
    pub fn record(&mut self, r: Result<(), ParseError>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => self.errors[e as usize] += 1,
        }
    }

    /// (name, count) for each reason.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ParseError::ALL
            .iter()
            .map(|e| (e.as_str(), self.errors[*e as usize]))
    }
}

/// Parses `frame` with `meta` into a new key; see [`parse_into`].
pub fn parse(frame: &[u8], meta: &PacketMeta) -> (FlowKey, Result<(), ParseError>) {
    let mut k = FlowKey::ZERO;
    let r = parse_into(&mut k, frame, meta);
    (k, r)
}

/// Overwrites `key` with the flow key of `frame` received with `meta`.
/// Never panics; on error the key holds what parsed.
pub fn parse_into(key: &mut FlowKey, frame: &[u8], meta: &PacketMeta) -> Result<(), ParseError> {
    *key = FlowKey::ZERO;
    let w = &mut key.w;
    let t = &meta.tunnel;
    w[0] = ((meta.in_port as u64) << 32) | meta.pkt_mark as u64;
    w[1] = meta.metadata;
    w[2] = t.id;
    w[3] = ((t.src as u64) << 32) | t.dst as u64;
    w[4] = (t.ipv6_src >> 64) as u64;
    w[5] = t.ipv6_src as u64;
    w[6] = (t.ipv6_dst >> 64) as u64;
    w[7] = t.ipv6_dst as u64;
    w[8] = ((t.flags as u64) << 48)
        | ((t.gbp_id as u64) << 32)
        | ((t.gbp_flags as u64) << 24)
        | meta.ct_zone as u64;
    w[9] = ((meta.ct_state as u64) << 32) | meta.ct_mark as u64;
    w[10] = (meta.ct_label >> 64) as u64;
    w[11] = meta.ct_label as u64;
    for (i, pair) in meta.regs.chunks_exact(2).enumerate() {
        w[REGS as usize + i] = ((pair[0] as u64) << 32) | pair[1] as u64;
    }
    parse_l2(key, frame)
}

#[inline(always)]
fn be16(p: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([p[i], p[i + 1]])
}

#[inline(always)]
fn be32(p: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]])
}

#[inline(always)]
fn mac(p: &[u8], i: usize) -> u64 {
    ((be16(p, i) as u64) << 32) | be32(p, i + 2) as u64
}

#[inline(always)]
fn be128(p: &[u8], i: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&p[i..i + 16]);
    u128::from_be_bytes(b)
}

#[inline(always)]
fn or(k: &mut FlowKey, l: Loc, v: u64) {
    k.w[l.word as usize] |= (v & l.fmask) << l.shift;
}

#[inline(always)]
fn put128(k: &mut FlowKey, l: Loc, v: u128) {
    k.w[l.word as usize] = (v >> 64) as u64;
    k.w[l.word as usize + 1] = v as u64;
}

fn parse_l2(k: &mut FlowKey, p: &[u8]) -> Result<(), ParseError> {
    if p.len() < 14 {
        return Err(ParseError::Runt);
    }
    or(k, DL_DST, mac(p, 0));
    or(k, DL_SRC, mac(p, 6));
    let mut ty = be16(p, 12);
    let mut off = 14;
    if ty == 0x8100 || ty == 0x88a8 {
        if p.len() < off + 4 {
            or(k, DL_TYPE, ty as u64);
            return Err(ParseError::VlanTruncated);
        }
        or(k, VLAN_TCI, (be16(p, off) | VLAN_CFI) as u64);
        ty = be16(p, off + 2);
        off += 4;
    }
    if ty < 0x600 {
        // 802.3: only LLC/SNAP with a zero OUI carries an ethertype.
        const SNAP: [u8; 6] = [0xaa, 0xaa, 0x03, 0, 0, 0];
        if p.len() >= off + 8 && p[off..off + 6] == SNAP && be16(p, off + 6) >= 0x600 {
            ty = be16(p, off + 6);
            off += 8;
        } else {
            or(k, DL_TYPE, 0x05ff);
            return Ok(());
        }
    }
    or(k, DL_TYPE, ty as u64);
    let l3 = &p[off..];
    match ty {
        0x0800 => parse_ipv4(k, l3),
        0x86dd => parse_ipv6(k, l3),
        0x0806 | 0x8035 => parse_arp(k, l3),
        0x8847 | 0x8848 => {
            if l3.len() < 4 {
                return Err(ParseError::MplsTruncated);
            }
            or(k, MPLS_LSE, be32(l3, 0) as u64);
            Ok(())
        }
        // 802.1ah I-TAG: PCP/DEI/UCA/res, then the 24-bit I-SID (the
        // customer frame follows; it is not parsed, like OVS).
        0x88e7 => {
            if l3.len() >= 4 {
                or(k, PBB_ISID, (be32(l3, 0) & 0x00ff_ffff) as u64);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn parse_arp(k: &mut FlowKey, p: &[u8]) -> Result<(), ParseError> {
    if p.len() < 28 {
        return Err(ParseError::ArpTruncated);
    }
    // Only Ethernet/IPv4 ARP has OpenFlow fields.
    if be16(p, 0) == 1 && be16(p, 2) == 0x0800 && p[4] == 6 && p[5] == 4 {
        or(k, ARP_OP, be16(p, 6) as u64);
        or(k, ARP_SHA, mac(p, 8));
        or(k, NW_SRC, be32(p, 14) as u64);
        or(k, ARP_THA, mac(p, 18));
        or(k, NW_DST, be32(p, 24) as u64);
    }
    Ok(())
}

fn parse_ipv4(k: &mut FlowKey, p: &[u8]) -> Result<(), ParseError> {
    if p.len() < 20 {
        return Err(ParseError::Ipv4Truncated);
    }
    if p[0] >> 4 != 4 {
        return Err(ParseError::Ipv4BadHeader);
    }
    let ihl = (p[0] & 0x0f) as usize * 4;
    let tot = be16(p, 2) as usize;
    if ihl < 20 || tot < ihl {
        return Err(ParseError::Ipv4BadHeader);
    }
    if tot > p.len() {
        return Err(ParseError::Ipv4Truncated);
    }
    let proto = p[9];
    let frag_off = be16(p, 6);
    let mut fr = 0;
    if frag_off & 0x3fff != 0 {
        fr = frag::ANY;
        if frag_off & 0x1fff != 0 {
            fr |= frag::LATER;
        }
    }
    k.w[NW_SRC.word as usize] = ((be32(p, 12) as u64) << 32) | be32(p, 16) as u64;
    or(k, NW_PROTO, proto as u64);
    or(k, NW_TOS_BYTE, p[1] as u64);
    or(k, NW_TTL, p[8] as u64);
    or(k, NW_FRAG, fr);
    if fr & frag::LATER != 0 {
        return Ok(());
    }
    parse_l4(k, proto, &p[ihl..tot], false)
}

/// `ipv6_exthdr` flag bits (OpenFlow 1.3 `OFPIEH_*`).
pub mod exthdr {
    pub const NONEXT: u64 = 1 << 0;
    pub const ESP: u64 = 1 << 1;
    pub const AUTH: u64 = 1 << 2;
    pub const DEST: u64 = 1 << 3;
    pub const FRAG: u64 = 1 << 4;
    pub const ROUTER: u64 = 1 << 5;
    pub const HOP: u64 = 1 << 6;
}

fn parse_ipv6(k: &mut FlowKey, p: &[u8]) -> Result<(), ParseError> {
    if p.len() < 40 {
        return Err(ParseError::Ipv6Truncated);
    }
    if p[0] >> 4 != 6 {
        return Err(ParseError::Ipv6BadHeader);
    }
    let plen = be16(p, 4) as usize;
    if 40 + plen > p.len() {
        return Err(ParseError::Ipv6Truncated);
    }
    let vtcfl = be32(p, 0);
    put128(k, IPV6_SRC, be128(p, 8));
    put128(k, IPV6_DST, be128(p, 24));
    or(k, NW_TOS_BYTE, ((vtcfl >> 20) & 0xff) as u64);
    or(k, IPV6_LABEL, (vtcfl & 0xfffff) as u64);
    or(k, NW_TTL, p[7] as u64);
    let mut data = &p[40..40 + plen];
    let mut proto = p[6];
    let mut fr = 0;
    let mut eh = 0;
    // Each extension header consumes at least 8 bytes, so this terminates.
    let result = loop {
        match proto {
            0 | 43 | 60 | 51 => {
                if data.len() < 8 {
                    break Err(ParseError::Ipv6ExtTruncated);
                }
                let len = if proto == 51 {
                    (data[1] as usize + 2) * 4
                } else {
                    (data[1] as usize + 1) * 8
                };
                if len > data.len() {
                    break Err(ParseError::Ipv6ExtTruncated);
                }
                eh |= match proto {
                    0 => exthdr::HOP,
                    43 => exthdr::ROUTER,
                    60 => exthdr::DEST,
                    _ => exthdr::AUTH,
                };
                proto = data[0];
                data = &data[len..];
            }
            44 => {
                if data.len() < 8 {
                    break Err(ParseError::Ipv6ExtTruncated);
                }
                eh |= exthdr::FRAG;
                fr = frag::ANY;
                if be16(data, 2) & 0xfff8 != 0 {
                    fr |= frag::LATER;
                }
                proto = data[0];
                data = &data[8..];
                if fr & frag::LATER != 0 {
                    break Ok(());
                }
            }
            _ => break Ok(()),
        }
    };
    match proto {
        59 => eh |= exthdr::NONEXT,
        50 => eh |= exthdr::ESP,
        _ => {}
    }
    or(k, IPV6_EXTHDR, eh);
    or(k, NW_FRAG, fr);
    result?;
    or(k, NW_PROTO, proto as u64);
    if fr & frag::LATER != 0 {
        return Ok(());
    }
    parse_l4(k, proto, data, true)
}

fn parse_l4(k: &mut FlowKey, proto: u8, p: &[u8], v6: bool) -> Result<(), ParseError> {
    let ports = |k: &mut FlowKey, p: &[u8]| {
        k.w[TP_SRC.word as usize] |= ((be16(p, 0) as u64) << 48) | ((be16(p, 2) as u64) << 32);
    };
    match proto {
        6 => {
            if p.len() < 20 {
                return Err(ParseError::L4Truncated);
            }
            let off = (p[12] >> 4) as usize * 4;
            if off < 20 || off > p.len() {
                return Err(ParseError::TcpBadOffset);
            }
            ports(k, p);
            or(k, TCP_FLAGS, (be16(p, 12) & 0x0fff) as u64);
        }
        17 => {
            if p.len() < 8 {
                return Err(ParseError::L4Truncated);
            }
            ports(k, p);
        }
        132 => {
            if p.len() < 12 {
                return Err(ParseError::L4Truncated);
            }
            ports(k, p);
        }
        1 if !v6 => {
            if p.len() < 8 {
                return Err(ParseError::L4Truncated);
            }
            or(k, TP_SRC, p[0] as u64);
            or(k, TP_DST, p[1] as u64);
        }
        58 if v6 => {
            if p.len() < 8 {
                return Err(ParseError::L4Truncated);
            }
            let (ty, code) = (p[0], p[1]);
            or(k, TP_SRC, ty as u64);
            or(k, TP_DST, code as u64);
            if code == 0 && (ty == 135 || ty == 136) {
                return parse_nd(k, &p[8..]);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Neighbor solicitation/advertisement body (after the 8-byte ICMPv6 header):
/// target address, then source/target link-layer address options.
fn parse_nd(k: &mut FlowKey, p: &[u8]) -> Result<(), ParseError> {
    if p.len() < 16 {
        return Err(ParseError::NdMalformed);
    }
    let target = be128(p, 0);
    let mut opts = &p[16..];
    let (mut sll, mut tll) = (0u64, 0u64);
    while opts.len() >= 8 {
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            return Err(ParseError::NdMalformed);
        }
        if len == 8 {
            match opts[0] {
                1 if sll == 0 => sll = mac(opts, 2),
                2 if tll == 0 => tll = mac(opts, 2),
                // A second, non-zero link-layer address option.
                1 | 2 => return Err(ParseError::NdMalformed),
                _ => {}
            }
        }
        opts = &opts[len..];
    }
    put128(k, ND_TARGET, target);
    or(k, ARP_SHA, sll);
    or(k, ARP_THA, tll);
    Ok(())
}
