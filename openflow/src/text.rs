//! The `ovs-ofctl` text form: values, ports and matches (this module), flow
//! lines and messages (`text::flow`).
//!
//! Parsing accepts what `ovs-ofctl add-flow` accepts for the fields we carry
//! (protocol shorthands such as `tcp6`, `dl_vlan`, `nw_tos`, `tp_dst`, CIDR
//! and arbitrary masks, `ct_state=+trk-new`, `tcp_flags=+syn-ack`,
//! `ip_frag=later`, reserved port names). The resulting [`Match`] lists its
//! OXMs in the order Open vSwitch's encoder emits them (`nx_put_raw`), so our
//! bytes equal OVS's for the same text. Printing follows OVS's `match_format`:
//! same field order, names, number bases and shorthands.

use crate::oxm::{FieldId, Format, Match, MatchField, OFPVID_PRESENT, ct_state};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A text-form parse error with a message saying what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::new(msg))
}

// Ports print and parse the same everywhere (matches and actions).
pub use crate::action::text::{format_port, parse_port};

/// Parses an unsigned integer (decimal, or hex with 0x) that fits in `bits`.
pub fn parse_uint(s: &str, bits: u32) -> Result<u128, ParseError> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u128::from_str_radix(h, 16)
    } else {
        s.parse::<u128>()
    }
    .map_err(|_| ParseError::new(format!("{s}: invalid number")))?;
    if bits < 128 && v >> bits != 0 {
        return err(format!("{s}: value too large for {bits}-bit field"));
    }
    Ok(v)
}

fn mask_bits(bits: u16) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn prefix_mask(prefix: u32, width: u32) -> Result<u128, ParseError> {
    if prefix > width {
        return err(format!("/{prefix}: prefix longer than {width} bits"));
    }
    if prefix == 0 {
        return Ok(0);
    }
    Ok(mask_bits(width as u16) & !mask_bits((width - prefix) as u16))
}

/// Parses an Ethernet address `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(s: &str) -> Result<u128, ParseError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return err(format!("{s}: invalid Ethernet address"));
    }
    let mut v = 0u128;
    for p in parts {
        if p.is_empty() || p.len() > 2 {
            return err(format!("{s}: invalid Ethernet address"));
        }
        let b = u8::from_str_radix(p, 16)
            .map_err(|_| ParseError::new(format!("{s}: invalid Ethernet address")))?;
        v = (v << 8) | b as u128;
    }
    Ok(v)
}

pub fn format_mac(v: u128) -> String {
    let b = v.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// Formats an IPv6 address as glibc's `inet_ntop` does (RFC 5952, plus the
/// `::a.b.c.d` form for IPv4-compatible addresses).
pub fn format_ipv6(v: u128) -> String {
    let a = Ipv6Addr::from(v);
    let w = a.segments();
    // glibc prints an embedded IPv4 address when the longest zero run is
    // words 0..6 (IPv4-compatible) or words 0..5 followed by ffff (mapped).
    let compat = w[..6].iter().all(|&x| x == 0) && (w[6] != 0);
    let mapped = w[..5].iter().all(|&x| x == 0) && w[5] == 0xffff;
    if compat || mapped {
        let v4 = Ipv4Addr::from((v & 0xffff_ffff) as u32);
        return if mapped {
            format!("::ffff:{v4}")
        } else {
            format!("::{v4}")
        };
    }
    a.to_string()
}

fn parse_ipv4(s: &str) -> Result<u128, ParseError> {
    s.parse::<Ipv4Addr>()
        .map(|a| u32::from(a) as u128)
        .map_err(|_| ParseError::new(format!("{s}: invalid IP address")))
}

fn parse_ipv6(s: &str) -> Result<u128, ParseError> {
    s.parse::<Ipv6Addr>()
        .map(u128::from)
        .map_err(|_| ParseError::new(format!("{s}: invalid IPv6 address")))
}

fn is_cidr(mask: u128, width: u32) -> Option<u32> {
    let full = mask_bits(width as u16);
    let inv = !mask & full;
    // A CIDR mask's inverse is of the form 0..01..1.
    if inv & inv.wrapping_add(1) == 0 {
        Some(width - inv.count_ones())
    } else {
        None
    }
}

/// Parses the value (and optional `/mask`) of `field` from its text.
/// Returns (value, mask); mask is `None` when the text has no mask.
pub fn parse_field_value(field: FieldId, s: &str) -> Result<(u128, Option<u128>), ParseError> {
    let info = field.info();
    let (vs, ms) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let width = info.bits as u32;
    match info.format {
        Format::Mac => {
            let v = parse_mac(vs)?;
            let m = ms.map(parse_mac).transpose()?;
            Ok((v, m))
        }
        Format::Ipv4 => {
            let v = parse_ipv4(vs)?;
            let m = match ms {
                None => None,
                Some(m) if m.contains('.') => Some(parse_ipv4(m)?),
                Some(m) => Some(prefix_mask(
                    m.parse()
                        .map_err(|_| ParseError::new(format!("{m}: bad prefix")))?,
                    32,
                )?),
            };
            Ok((v, m))
        }
        Format::Ipv6 => {
            let v = parse_ipv6(vs)?;
            let m = match ms {
                None => None,
                Some(m) if m.contains(':') => Some(parse_ipv6(m)?),
                Some(m) => Some(prefix_mask(
                    m.parse()
                        .map_err(|_| ParseError::new(format!("{m}: bad prefix")))?,
                    128,
                )?),
            };
            Ok((v, m))
        }
        Format::Port => {
            if ms.is_some() {
                return err(format!("{}: field does not support masking", info.name));
            }
            Ok((parse_port(vs)? as u128, None))
        }
        Format::CtState => parse_flags(s, ct_state::NAMES, 32, "ct_state"),
        Format::TcpFlags => parse_flags(s, TCP_FLAG_NAMES, 12, "tcp_flags"),
        Format::TunFlags => parse_flags(s, &[(1, "oam")], 16, "tun_flags"),
        Format::Frag => {
            let (v, m) = match s {
                "no" => (0, 3),
                "yes" => (1, 1),
                "first" => (1, 3),
                "later" => (3, 3),
                "not_later" => (0, 2),
                _ => {
                    let v = parse_uint(vs, width)?;
                    let m = ms.map(|m| parse_uint(m, width)).transpose()?;
                    return Ok((v, m));
                }
            };
            Ok((v, Some(m)))
        }
        Format::Decimal | Format::Hex | Format::EthType | Format::VlanVid => {
            let v = parse_uint(vs, width.max(8))?;
            let m = ms.map(|m| parse_uint(m, width.max(8))).transpose()?;
            if width < 128 && v >> width != 0 {
                return err(format!(
                    "{s}: value too large for {} ({width} bits)",
                    info.name
                ));
            }
            Ok((v, m))
        }
    }
}

/// TCP flag bit names as OVS prints them.
pub const TCP_FLAG_NAMES: &[(u32, &str)] = &[
    (0x001, "fin"),
    (0x002, "syn"),
    (0x004, "rst"),
    (0x008, "psh"),
    (0x010, "ack"),
    (0x020, "urg"),
    (0x040, "ece"),
    (0x080, "cwr"),
    (0x100, "ns"),
    (0x200, "[200]"),
    (0x400, "[400]"),
    (0x800, "[800]"),
];

/// Parses `+a-b` flag syntax, `a|b` (all flags given, full mask), or numbers.
fn parse_flags(
    s: &str,
    names: &[(u32, &str)],
    bits: u32,
    what: &str,
) -> Result<(u128, Option<u128>), ParseError> {
    let lookup = |n: &str| {
        names
            .iter()
            .find(|(_, x)| *x == n)
            .map(|(b, _)| *b as u128)
            .ok_or_else(|| ParseError::new(format!("{n}: unknown {what} flag")))
    };
    if s.starts_with('+') || s.starts_with('-') {
        let (mut v, mut m) = (0u128, 0u128);
        let mut rest = s;
        while !rest.is_empty() {
            let sign = rest.as_bytes()[0];
            if sign != b'+' && sign != b'-' {
                return err(format!("{s}: {what} flags must be prefixed by + or -"));
            }
            rest = &rest[1..];
            let end = rest.find(['+', '-']).unwrap_or(rest.len());
            let bit = lookup(&rest[..end])?;
            if m & bit != 0 {
                return err(format!("{s}: {what} flag {} given twice", &rest[..end]));
            }
            m |= bit;
            if sign == b'+' {
                v |= bit;
            }
            rest = &rest[end..];
        }
        return Ok((v, Some(m)));
    }
    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        let mut v = 0u128;
        for n in s.split('|') {
            v |= lookup(n)?;
        }
        // `a|b` lists every set flag: an exact match (what OVS prints for
        // a fully masked flags field).
        return Ok((v, None));
    }
    let (vs, ms) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let v = parse_uint(vs, bits)?;
    let m = ms.map(|m| parse_uint(m, bits)).transpose()?;
    Ok((v, m))
}

fn format_flags(out: &mut String, v: u128, names: &[(u32, &str)], del: char) {
    if v == 0 {
        out.push('0');
        return;
    }
    let mut bad = 0u128;
    let mut first = true;
    let mut rest = v;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        rest &= !bit;
        match names.iter().find(|(b, _)| *b as u128 == bit) {
            Some((_, n)) => {
                if !first {
                    out.push(del);
                }
                out.push_str(n);
                first = false;
            }
            None => bad |= bit,
        }
    }
    if bad != 0 {
        if !first {
            out.push(del);
        }
        let _ = write!(out, "{bad:#x}");
    }
}

fn format_flags_masked(out: &mut String, v: u128, m: u128, max: u128, names: &[(u32, &str)]) {
    if m == max {
        format_flags(out, v, names, '|');
        return;
    }
    if m == 0 {
        out.push_str("0/0");
        return;
    }
    let mut rest = m;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        rest &= !bit;
        out.push(if v & bit != 0 { '+' } else { '-' });
        match names.iter().find(|(b, _)| *b as u128 == bit) {
            Some((_, n)) => out.push_str(n),
            None => out.push_str("[Unknown]"),
        }
    }
}

/// A match under construction in OVS's semantic model: per-field value/mask,
/// with VLAN kept as a TCI and `nw_tos` as a whole byte until conversion.
#[derive(Default)]
struct Builder {
    fields: Vec<(FieldId, u128, u128)>,
    tci: Option<(u16, u16)>,
    /// Fields given as `tp_src`/`tp_dst`/`icmp_type`/`icmp_code`, resolved once
    /// the protocol is known.
    deferred: Vec<(String, String)>,
}

impl Builder {
    fn get(&self, f: FieldId) -> Option<(u128, u128)> {
        self.fields
            .iter()
            .find(|(x, _, _)| *x == f)
            .map(|(_, v, m)| (*v, *m))
    }

    fn put(&mut self, f: FieldId, v: u128, m: u128) -> Result<(), ParseError> {
        if let Some(slot) = self.fields.iter_mut().find(|(x, _, _)| *x == f) {
            // OVS lets a later setting override an earlier one only if consistent.
            if slot.1 & m & slot.2 != v & m & slot.2 {
                return err(format!("{}: conflicting values in match", f.name()));
            }
            *slot = (f, v, m);
        } else {
            self.fields.push((f, v, m));
        }
        Ok(())
    }

    fn proto_shorthand(&mut self, eth: u16, proto: Option<u8>) -> Result<(), ParseError> {
        self.put(FieldId::EthType, eth as u128, 0xffff)?;
        if let Some(p) = proto {
            self.put(FieldId::IpProto, p as u128, 0xff)?;
        }
        Ok(())
    }
}

/// Protocol shorthands: name → (eth_type, ip_proto).
pub const PROTOCOLS: &[(&str, u16, Option<u8>)] = &[
    ("ip", 0x0800, None),
    ("ipv4", 0x0800, None),
    ("ipv6", 0x86dd, None),
    ("icmp", 0x0800, Some(1)),
    ("icmp6", 0x86dd, Some(58)),
    ("tcp", 0x0800, Some(6)),
    ("tcp6", 0x86dd, Some(6)),
    ("udp", 0x0800, Some(17)),
    ("udp6", 0x86dd, Some(17)),
    ("sctp", 0x0800, Some(132)),
    ("sctp6", 0x86dd, Some(132)),
    ("arp", 0x0806, None),
    ("rarp", 0x8035, None),
    ("mpls", 0x8847, None),
    ("mplsm", 0x8848, None),
];

/// Splits `s` at top-level commas (commas inside parentheses don't split).
/// Whitespace around items is trimmed; empty items are dropped.
pub fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|x| !x.is_empty());
    out
}

/// Parses one match item (`tcp`, `nw_dst=10.0.0.0/8`, `dl_vlan=5`, ...) into
/// the builder. Returns false if the key is not a match field (so a flow
/// parser can try it as a flow attribute such as `priority`).
fn parse_match_item(b: &mut Builder, item: &str) -> Result<bool, ParseError> {
    let (key, value) = match item.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => match item.split_once(':') {
            // ovs-ofctl also accepts `field:value`.
            Some((k, v)) if FieldId::from_name(k.trim()).is_some() => (k.trim(), Some(v.trim())),
            _ => (item.trim(), None),
        },
    };
    if value.is_none() {
        if let Some((_, eth, proto)) = PROTOCOLS.iter().find(|(n, _, _)| *n == key) {
            b.proto_shorthand(*eth, *proto)?;
            return Ok(true);
        }
        if FieldId::from_name(key).is_some() || is_special_key(key) {
            return err(format!("field {key} missing value"));
        }
        return Ok(false);
    }
    let value = value.unwrap_or_default();
    match key {
        "dl_vlan" => {
            let v = parse_uint(value, 16)? as u16;
            let (mut tci, mut mask) = b.tci.unwrap_or((0, 0));
            if v == 0xffff {
                // OFP10_VLAN_NONE: no VLAN header.
                tci = 0;
                mask = 0xffff;
            } else {
                if v > 0xfff {
                    return err(format!("{value}: VLAN ID out of range"));
                }
                tci = (tci & !0x0fff) | 0x1000 | v;
                mask |= 0x1fff;
            }
            b.tci = Some((tci, mask));
        }
        "dl_vlan_pcp" => {
            let p = parse_uint(value, 8)? as u16;
            if p > 7 {
                return err(format!("{value}: VLAN priority out of range"));
            }
            let (tci, mask) = b.tci.unwrap_or((0, 0));
            b.tci = Some(((tci & !0xe000) | 0x1000 | (p << 13), mask | 0xf000));
        }
        "vlan_tci" => {
            let (v, m) = parse_field_value(FieldId::VlanTci, value)?;
            b.tci = Some((v as u16, m.unwrap_or(0xffff) as u16));
        }
        "nw_tos" => {
            let t = parse_uint(value, 8)?;
            if t & 3 != 0 {
                return err(format!(
                    "{value}: nw_tos low 2 bits must be zero (use nw_ecn)"
                ));
            }
            b.put(FieldId::IpDscp, t >> 2, 0x3f)?;
        }
        "tp_src" | "tp_dst" | "icmp_type" | "icmp_code" => {
            b.deferred.push((key.to_string(), value.to_string()));
        }
        _ => {
            let Some(field) = FieldId::from_name(key) else {
                return Ok(false);
            };
            let (v, m) = parse_field_value(field, value)?;
            let full = field.full_mask();
            let m = m.unwrap_or(full);
            if m != full && !field.info().maskable {
                return err(format!("{key}: field does not support masking"));
            }
            if m & !full != 0 {
                return err(format!("{value}: mask too wide for {key}"));
            }
            if field == FieldId::VlanVid {
                // OVS's vlan_vid is 12 bits; OXM's has the present bit.
                let vv = (v as u16 & 0xfff)
                    | if v & 0x1000 != 0 || m == full {
                        0x1000
                    } else {
                        0
                    };
                let mm = (m as u16 & 0xfff) | 0x1000;
                let (tci, mask) = b.tci.unwrap_or((0, 0));
                b.tci = Some(((tci & !0x1fff) | vv, mask | mm));
                return Ok(true);
            }
            if field == FieldId::VlanPcp {
                let (tci, mask) = b.tci.unwrap_or((0, 0));
                b.tci = Some((
                    (tci & !0xe000) | 0x1000 | ((v as u16 & 7) << 13),
                    mask | 0xf000,
                ));
                return Ok(true);
            }
            b.put(field, v & m, m)?;
        }
    }
    Ok(true)
}

fn is_special_key(k: &str) -> bool {
    matches!(
        k,
        "dl_vlan" | "dl_vlan_pcp" | "nw_tos" | "tp_src" | "tp_dst" | "icmp_type" | "icmp_code"
    )
}

impl Builder {
    fn finish(mut self) -> Result<Match, ParseError> {
        // Resolve protocol-dependent names.
        let eth = self.get(FieldId::EthType).map(|(v, _)| v as u16);
        let proto = self.get(FieldId::IpProto).map(|(v, _)| v as u8);
        for (k, v) in std::mem::take(&mut self.deferred) {
            let field = match (k.as_str(), eth, proto) {
                ("tp_src", _, Some(6)) => FieldId::TcpSrc,
                ("tp_dst", _, Some(6)) => FieldId::TcpDst,
                ("tp_src", _, Some(17)) => FieldId::UdpSrc,
                ("tp_dst", _, Some(17)) => FieldId::UdpDst,
                ("tp_src", _, Some(132)) => FieldId::SctpSrc,
                ("tp_dst", _, Some(132)) => FieldId::SctpDst,
                ("icmp_type", Some(0x0800), Some(1)) | ("tp_src", Some(0x0800), Some(1)) => {
                    FieldId::Icmpv4Type
                }
                ("icmp_code", Some(0x0800), Some(1)) | ("tp_dst", Some(0x0800), Some(1)) => {
                    FieldId::Icmpv4Code
                }
                ("icmp_type", Some(0x86dd), Some(58)) | ("tp_src", Some(0x86dd), Some(58)) => {
                    FieldId::Icmpv6Type
                }
                ("icmp_code", Some(0x86dd), Some(58)) | ("tp_dst", Some(0x86dd), Some(58)) => {
                    FieldId::Icmpv6Code
                }
                _ => {
                    return err(format!(
                        "{k}: prerequisites not met (needs a protocol such as tcp, udp, icmp)"
                    ));
                }
            };
            let (val, m) = parse_field_value(field, &v)?;
            let m = m.unwrap_or(field.full_mask());
            self.put(field, val & m, m)?;
        }
        // VLAN: TCI → OXM vlan_vid/vlan_pcp, exactly as OVS's encoder does.
        if let Some((tci, mask)) = self.tci {
            let vid = tci & 0x1fff;
            let vmask = mask & 0x1fff;
            if vmask != 0 {
                self.put(FieldId::VlanVid, vid as u128, vmask as u128)?;
            }
            if vid != 0 && (mask >> 13) & 7 != 0 {
                self.put(FieldId::VlanPcp, ((tci >> 13) & 7) as u128, 7)?;
            }
        }
        let mut m = Match::new();
        for id in canonical_order() {
            if let Some((v, mask)) = self.get(*id) {
                if mask == 0 {
                    continue;
                }
                m.fields.push(MatchField::masked(*id, v & mask, mask));
            }
        }
        // Anything not in the canonical list keeps its given order at the end.
        for (id, v, mask) in &self.fields {
            if !canonical_order().contains(id) && *mask != 0 {
                m.fields.push(MatchField::masked(*id, v & mask, *mask));
            }
        }
        m.check_prerequisites()
            .map_err(|e| ParseError::new(e.to_string()))?;
        Ok(m)
    }
}

/// OXM emission order of Open vSwitch (`nx_put_raw`) for OpenFlow 1.3.
pub fn canonical_order() -> &'static [FieldId] {
    use FieldId::*;
    &[
        ConjId,
        InPort,
        InPhyPort,
        ActsetOutput,
        EthSrc,
        EthDst,
        EthType,
        VlanVid,
        VlanPcp,
        MplsTc,
        MplsBos,
        MplsTtl,
        MplsLabel,
        PbbIsid,
        Ipv4Src,
        Ipv4Dst,
        Ipv6Src,
        Ipv6Dst,
        IpFrag,
        IpDscp,
        NwTos,
        IpEcn,
        IpTtl,
        Ipv6Flabel,
        IpProto,
        TcpSrc,
        TcpDst,
        TcpFlags,
        UdpSrc,
        UdpDst,
        SctpSrc,
        SctpDst,
        Icmpv4Type,
        Icmpv4Code,
        Icmpv6Type,
        Icmpv6Code,
        Ipv6NdTarget,
        Ipv6NdSll,
        Ipv6NdTll,
        Ipv6Exthdr,
        ArpOp,
        ArpSpa,
        ArpTpa,
        ArpSha,
        ArpTha,
        TunnelId,
        TunFlags,
        TunIpv4Src,
        TunIpv4Dst,
        TunIpv6Src,
        TunIpv6Dst,
        TunGbpId,
        TunGbpFlags,
        Reg0,
        Reg1,
        Reg2,
        Reg3,
        Reg4,
        Reg5,
        Reg6,
        Reg7,
        Reg8,
        Reg9,
        Reg10,
        Reg11,
        Reg12,
        Reg13,
        Reg14,
        Reg15,
        XReg0,
        XReg1,
        XReg2,
        XReg3,
        XReg4,
        XReg5,
        XReg6,
        XReg7,
        XXReg0,
        XXReg1,
        XXReg2,
        XXReg3,
        PktMark,
        CtState,
        CtZone,
        CtMark,
        CtLabel,
        CtNwSrc,
        CtIpv6Src,
        CtNwDst,
        CtIpv6Dst,
        CtNwProto,
        CtTpSrc,
        CtTpDst,
        Metadata,
        VlanTci,
    ]
}

/// Parses a match in `ovs-ofctl` syntax (`tcp,nw_dst=10.0.0.0/24,tp_dst=80`).
/// An empty string is the match-everything match.
pub fn parse_match(s: &str) -> Result<Match, ParseError> {
    let mut b = Builder::default();
    for item in split_top(s) {
        if !parse_match_item(&mut b, item)? {
            return err(format!("{item}: unknown field"));
        }
    }
    b.finish()
}

/// Parses a match from items, skipping (and returning) the ones that are not
/// match fields, for flow-line parsers that mix match and flow attributes.
pub fn parse_match_items<'a>(items: &[&'a str]) -> Result<(Match, Vec<&'a str>), ParseError> {
    let mut b = Builder::default();
    let mut rest = Vec::new();
    for item in items {
        if !parse_match_item(&mut b, item)? {
            rest.push(*item);
        }
    }
    Ok((b.finish()?, rest))
}

/// Formats a field value (exact or masked) in `ovs-ofctl` style, for use by
/// actions such as `set_field` and `load`.
pub fn format_field_value(field: FieldId, v: u128, mask: Option<u128>) -> String {
    let mut s = String::new();
    let info = field.info();
    let full = field.full_mask();
    match info.format {
        Format::Mac => {
            s.push_str(&format_mac(v));
            if let Some(m) = mask.filter(|m| *m != full) {
                let _ = write!(s, "/{}", format_mac(m));
            }
        }
        Format::Ipv4 => put_ipv4_masked(&mut s, v, mask.unwrap_or(full)),
        Format::Ipv6 => put_ipv6_masked(&mut s, v, mask.unwrap_or(full)),
        Format::Port => s.push_str(&format_port(v as u32)),
        Format::CtState => {
            format_flags_masked(&mut s, v, mask.unwrap_or(0xff), 0xff, ct_state::NAMES)
        }
        Format::TcpFlags => {
            format_flags_masked(&mut s, v, mask.unwrap_or(0xfff), 0xfff, TCP_FLAG_NAMES)
        }
        Format::Decimal => match mask.filter(|m| *m != full) {
            None => {
                let _ = write!(s, "{v}");
            }
            Some(m) => {
                let _ = write!(s, "{v:#x}/{m:#x}");
            }
        },
        _ => {
            let _ = write!(s, "{}", c_hex(v));
            if let Some(m) = mask.filter(|m| *m != full) {
                let _ = write!(s, "/{}", c_hex(m));
            }
        }
    }
    s
}

/// C's `%#x`: `0` for zero, `0x…` otherwise.
pub fn c_hex(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

fn put_ipv4_masked(s: &mut String, v: u128, m: u128) {
    let _ = write!(s, "{}", Ipv4Addr::from(v as u32));
    if m != 0xffff_ffff {
        match is_cidr(m, 32) {
            Some(p) => {
                let _ = write!(s, "/{p}");
            }
            None => {
                let _ = write!(s, "/{}", Ipv4Addr::from(m as u32));
            }
        }
    }
}

fn put_ipv6_masked(s: &mut String, v: u128, m: u128) {
    s.push_str(&format_ipv6(v));
    if m != u128::MAX {
        match is_cidr(m, 128) {
            Some(p) => {
                let _ = write!(s, "/{p}");
            }
            None => {
                let _ = write!(s, "/{}", format_ipv6(m));
            }
        }
    }
}

/// Formats a match the way `ovs-ofctl` prints it (OVS `match_format`),
/// without priority. A match-everything match prints as the empty string.
pub fn format_match(m: &Match) -> String {
    let mut s = String::new();
    let get = |f: FieldId| m.get(f).map(|x| (x.value, x.mask_or_full()));
    let put = |s: &mut String, name: &str, body: String| {
        let _ = write!(s, "{name}={body},");
    };
    let u32m = |v: u128, mk: u128, full: u128| {
        if mk == full {
            c_hex(v)
        } else {
            format!("{}/{}", c_hex(v), c_hex(mk))
        }
    };
    let be16m = |v: u128, mk: u128| {
        if mk == 0xffff {
            format!("{v}")
        } else {
            format!("{v:#x}/{mk:#x}")
        }
    };

    if let Some((v, mk)) = get(FieldId::PktMark) {
        put(&mut s, "pkt_mark", u32m(v, mk, 0xffff_ffff));
    }
    if let Some((v, _)) = get(FieldId::ConjId) {
        put(&mut s, "conj_id", v.to_string());
    }
    if let Some((v, _)) = get(FieldId::ActsetOutput) {
        put(&mut s, "actset_output", format_port(v as u32));
    }
    if let Some((v, mk)) = get(FieldId::CtState) {
        let mut b = String::new();
        if mk & 0xff == 0xff {
            format_flags(&mut b, v, ct_state::NAMES, '|');
        } else {
            format_flags_masked(&mut b, v, mk, 0xff, ct_state::NAMES);
        }
        put(&mut s, "ct_state", b);
    }
    if let Some((v, mk)) = get(FieldId::CtZone) {
        put(&mut s, "ct_zone", be16m(v, mk));
    }
    if let Some((v, mk)) = get(FieldId::CtMark) {
        put(&mut s, "ct_mark", u32m(v, mk, 0xffff_ffff));
    }
    if let Some((v, mk)) = get(FieldId::CtLabel) {
        put(&mut s, "ct_label", u32m(v, mk, u128::MAX));
    }
    for (f, name) in [
        (FieldId::CtNwSrc, "ct_nw_src"),
        (FieldId::CtIpv6Src, "ct_ipv6_src"),
        (FieldId::CtNwDst, "ct_nw_dst"),
        (FieldId::CtIpv6Dst, "ct_ipv6_dst"),
    ] {
        if let Some(x) = m.get(f) {
            put(&mut s, name, format_field_value(f, x.value, x.mask));
        }
    }
    if let Some((v, _)) = get(FieldId::CtNwProto) {
        put(&mut s, "ct_nw_proto", v.to_string());
    }
    // OVS prints ct_tp_* only after ct_nw_proto and silently drops them
    // without it (`ovs-ofctl parse-flow ct_state=+trk,ct_tp_dst=80` shows
    // no ct_tp_dst); printing them anyway keeps the text lossless (found by
    // the text_parse fuzz target) and is the same text whenever OVS prints them.
    if let Some((v, mk)) = get(FieldId::CtTpSrc) {
        put(&mut s, "ct_tp_src", be16m(v, mk));
    }
    if let Some((v, mk)) = get(FieldId::CtTpDst) {
        put(&mut s, "ct_tp_dst", be16m(v, mk));
    }

    let eth = m.exact(FieldId::EthType).map(|v| v as u16);
    let proto = m.exact(FieldId::IpProto).map(|v| v as u8);
    let mut skip_type = false;
    let mut skip_proto = false;
    if let Some(t) = eth {
        skip_type = true;
        let shorthand = match (t, proto) {
            (0x0800, Some(1)) => Some("icmp"),
            (0x0800, Some(6)) => Some("tcp"),
            (0x0800, Some(17)) => Some("udp"),
            (0x0800, Some(132)) => Some("sctp"),
            (0x0800, _) => None,
            (0x86dd, Some(58)) => Some("icmp6"),
            (0x86dd, Some(6)) => Some("tcp6"),
            (0x86dd, Some(17)) => Some("udp6"),
            (0x86dd, Some(132)) => Some("sctp6"),
            _ => None,
        };
        match (t, shorthand) {
            (_, Some(n)) => {
                skip_proto = true;
                let _ = write!(s, "{n},");
            }
            (0x0800, None) => s.push_str("ip,"),
            (0x86dd, None) => s.push_str("ipv6,"),
            (0x0806, _) => s.push_str("arp,"),
            (0x8035, _) => s.push_str("rarp,"),
            (0x8847, _) => s.push_str("mpls,"),
            (0x8848, _) => s.push_str("mplsm,"),
            _ => skip_type = false,
        }
    }
    for i in 0..16u8 {
        let f = reg(i);
        if let Some((v, mk)) = get(f) {
            put(&mut s, f.name(), u32m(v, mk, 0xffff_ffff));
        }
    }
    // Tunnel.
    if let Some((v, mk)) = get(FieldId::TunnelId) {
        put(&mut s, "tun_id", u32m(v, mk, u64::MAX as u128));
    }
    for f in [
        FieldId::TunIpv4Src,
        FieldId::TunIpv4Dst,
        FieldId::TunIpv6Src,
        FieldId::TunIpv6Dst,
    ] {
        if let Some(x) = m.get(f) {
            put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
        }
    }
    if let Some((v, mk)) = get(FieldId::TunGbpId) {
        put(&mut s, "tun_gbp_id", be16m(v, mk));
    }
    if let Some((v, _)) = get(FieldId::TunGbpFlags) {
        put(&mut s, "tun_gbp_flags", c_hex(v));
    }
    if let Some((v, mk)) = get(FieldId::TunFlags) {
        let mut b = String::new();
        // OVS's internal flag mask is wider than the one public bit, so
        // tun_flags always prints in +/- form.
        format_flags_masked(&mut b, v & 1, mk & 1, u128::MAX, &[(1, "oam")]);
        put(&mut s, "tun_flags", b);
    }
    if let Some((v, mk)) = get(FieldId::Metadata) {
        put(&mut s, "metadata", u32m(v, mk, u64::MAX as u128));
    }
    if let Some((v, _)) = get(FieldId::InPort) {
        put(&mut s, "in_port", format_port(v as u32));
    }
    // VLAN, reconstructed as a TCI.
    let mut tci: Option<(u16, u16)> = None;
    if let Some((v, mk)) = get(FieldId::VlanVid) {
        tci = Some((v as u16 & 0x1fff, mk as u16 & 0x1fff));
    }
    if let Some((v, _)) = get(FieldId::VlanPcp) {
        let (t, mk) = tci.unwrap_or((0, 0));
        tci = Some((t | ((v as u16 & 7) << 13), mk | 0xe000));
    }
    if let Some((v, mk)) = get(FieldId::VlanTci) {
        tci = Some((v as u16, mk as u16));
    }
    if let Some((t, mk)) = tci.filter(|(_, mk)| *mk != 0) {
        let vid_mask = mk & 0x0fff;
        let pcp_mask = mk & 0xe000;
        let cfi = mk & 0x1000 != 0;
        if cfi
            && t & 0x1000 != 0
            && (vid_mask == 0 || vid_mask == 0x0fff)
            && (pcp_mask == 0 || pcp_mask == 0xe000)
            && (vid_mask != 0 || pcp_mask != 0)
        {
            if vid_mask != 0 {
                put(&mut s, "dl_vlan", (t & 0x0fff).to_string());
            }
            if pcp_mask != 0 {
                put(&mut s, "dl_vlan_pcp", (t >> 13).to_string());
            }
        } else if mk == 0xffff {
            put(&mut s, "vlan_tci", format!("0x{t:04x}"));
        } else {
            put(&mut s, "vlan_tci", format!("0x{t:04x}/0x{mk:04x}"));
        }
    }
    for f in [FieldId::EthSrc, FieldId::EthDst] {
        if let Some(x) = m.get(f) {
            put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
        }
    }
    if !skip_type && let Some(x) = m.get(FieldId::EthType) {
        put(&mut s, "dl_type", format!("0x{:04x}", x.value));
    }
    let is_arp = matches!(eth, Some(0x0806) | Some(0x8035));
    match eth {
        Some(0x86dd) => {
            for f in [FieldId::Ipv6Src, FieldId::Ipv6Dst] {
                if let Some(x) = m.get(f) {
                    put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
                }
            }
            if let Some((v, mk)) = get(FieldId::Ipv6Flabel) {
                if mk == 0xfffff {
                    put(&mut s, "ipv6_label", format!("0x{v:05x}"));
                } else {
                    put(&mut s, "ipv6_label", format!("0x{v:05x}/0x{mk:05x}"));
                }
            }
        }
        _ if is_arp => {
            for (f, n) in [(FieldId::ArpSpa, "arp_spa"), (FieldId::ArpTpa, "arp_tpa")] {
                if let Some(x) = m.get(f) {
                    put(&mut s, n, format_field_value(f, x.value, x.mask));
                }
            }
        }
        _ => {
            for f in [FieldId::Ipv4Src, FieldId::Ipv4Dst] {
                if let Some(x) = m.get(f) {
                    put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
                }
            }
        }
    }
    if !skip_proto && let Some((v, _)) = get(FieldId::IpProto) {
        put(&mut s, "nw_proto", v.to_string());
    }
    if is_arp {
        if let Some((v, _)) = get(FieldId::ArpOp) {
            put(&mut s, "arp_op", v.to_string());
        }
        for f in [FieldId::ArpSha, FieldId::ArpTha] {
            if let Some(x) = m.get(f) {
                put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
            }
        }
    }
    if let Some((v, _)) = get(FieldId::IpDscp) {
        put(&mut s, "nw_tos", (v << 2).to_string());
    } else if let Some((v, _)) = get(FieldId::NwTos) {
        put(&mut s, "nw_tos", (v & 0xfc).to_string());
    }
    if let Some((v, _)) = get(FieldId::IpEcn) {
        put(&mut s, "nw_ecn", v.to_string());
    }
    if let Some((v, _)) = get(FieldId::IpTtl) {
        put(&mut s, "nw_ttl", v.to_string());
    }
    for f in [
        FieldId::MplsLabel,
        FieldId::MplsTc,
        FieldId::MplsTtl,
        FieldId::MplsBos,
    ] {
        if let Some((v, _)) = get(f) {
            put(&mut s, f.name(), v.to_string());
        }
    }
    if let Some((v, mk)) = get(FieldId::IpFrag) {
        let text = match mk & 3 {
            3 => match v & 3 {
                0 => "no",
                1 => "first",
                3 => "later",
                _ => "<error>",
            },
            1 => {
                if v & 1 != 0 {
                    "yes"
                } else {
                    "no"
                }
            }
            2 => {
                if v & 2 != 0 {
                    "later"
                } else {
                    "not_later"
                }
            }
            _ => "",
        };
        if !text.is_empty() {
            put(&mut s, "nw_frag", text.to_string());
        }
    }
    let icmp4 = eth == Some(0x0800) && proto == Some(1);
    let icmp6 = eth == Some(0x86dd) && proto == Some(58);
    if icmp4 || icmp6 {
        let (t, c) = if icmp4 {
            (FieldId::Icmpv4Type, FieldId::Icmpv4Code)
        } else {
            (FieldId::Icmpv6Type, FieldId::Icmpv6Code)
        };
        if let Some((v, _)) = get(t) {
            put(&mut s, "icmp_type", v.to_string());
        }
        if let Some((v, _)) = get(c) {
            put(&mut s, "icmp_code", v.to_string());
        }
        if icmp6 {
            for f in [
                FieldId::Ipv6NdTarget,
                FieldId::Ipv6NdSll,
                FieldId::Ipv6NdTll,
            ] {
                if let Some(x) = m.get(f) {
                    put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
                }
            }
        }
    } else {
        let (sf, df) = match proto {
            Some(17) => (FieldId::UdpSrc, FieldId::UdpDst),
            Some(132) => (FieldId::SctpSrc, FieldId::SctpDst),
            _ => (FieldId::TcpSrc, FieldId::TcpDst),
        };
        if let Some((v, mk)) = get(sf) {
            put(&mut s, "tp_src", be16m(v, mk));
        }
        if let Some((v, mk)) = get(df) {
            put(&mut s, "tp_dst", be16m(v, mk));
        }
    }
    if proto == Some(6)
        && let Some((v, mk)) = get(FieldId::TcpFlags)
    {
        let mut b = String::new();
        format_flags_masked(&mut b, v, mk & 0xfff, 0xfff, TCP_FLAG_NAMES);
        put(&mut s, "tcp_flags", b);
    }
    // Fields OVS does not print in match_format (it does not support them);
    // we print them generically so nothing is lost.
    use FieldId::*;
    for f in [
        InPhyPort, PbbIsid, Ipv6Exthdr, XReg0, XReg1, XReg2, XReg3, XReg4, XReg5, XReg6, XReg7,
        XXReg0, XXReg1, XXReg2, XXReg3,
    ] {
        if let Some(x) = m.get(f) {
            put(&mut s, f.name(), format_field_value(f, x.value, x.mask));
        }
    }
    if s.ends_with(',') {
        s.pop();
    }
    s
}

fn reg(i: u8) -> FieldId {
    use FieldId::*;
    [
        Reg0, Reg1, Reg2, Reg3, Reg4, Reg5, Reg6, Reg7, Reg8, Reg9, Reg10, Reg11, Reg12, Reg13,
        Reg14, Reg15,
    ][i as usize & 15]
}

pub mod flow;
pub use flow::{
    format_flow_mod, format_flow_stats, format_group_mod, format_meter_mod, format_packet_out,
    parse_flow_mod, parse_group_mod, parse_meter_mod, parse_packet_out,
};

/// The `OFPVID_PRESENT` bit, re-exported for text users.
pub const VID_PRESENT: u16 = OFPVID_PRESENT;

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(text: &str, expect: &str) {
        let m = parse_match(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(format_match(&m), expect, "for {text}");
        // Printing then parsing again gives the same match.
        let again = parse_match(&format_match(&m)).unwrap();
        assert_eq!(again, m, "reparse of {expect}");
    }

    #[test]
    fn basic_shapes() {
        rt("ip,nw_dst=10.0.0.0/24", "ip,nw_dst=10.0.0.0/24");
        rt("tcp,tp_dst=80", "tcp,tp_dst=80");
        rt(
            "tcp,tcp_dst=80,nw_src=1.2.3.4",
            "tcp,nw_src=1.2.3.4,tp_dst=80",
        );
        rt(
            "in_port=1,dl_dst=00:11:22:33:44:55",
            "in_port=1,dl_dst=00:11:22:33:44:55",
        );
        rt("in_port=LOCAL", "in_port=LOCAL");
        rt("dl_vlan=5", "dl_vlan=5");
        rt("dl_vlan=5,dl_vlan_pcp=3", "dl_vlan=5,dl_vlan_pcp=3");
        rt("reg0=5,reg3=0x10/0xf0", "reg0=0x5,reg3=0x10/0xf0");
        rt("ct_state=+trk+est", "ct_state=+est+trk");
        rt("ct_state=-new+trk,ct_zone=5", "ct_state=-new+trk,ct_zone=5");
        rt(
            "icmp6,icmp_type=135,nd_target=fe80::1",
            "icmp6,icmp_type=135,nd_target=fe80::1",
        );
        rt(
            "udp6,ipv6_src=2001:db8::/32,tp_src=53",
            "udp6,ipv6_src=2001:db8::/32,tp_src=53",
        );
        rt(
            "arp,arp_tpa=10.0.0.1,arp_op=1",
            "arp,arp_tpa=10.0.0.1,arp_op=1",
        );
        rt("tcp,tcp_flags=+syn-ack", "tcp,tcp_flags=+syn-ack");
        rt(
            "ip,nw_tos=8,nw_ecn=1,nw_ttl=3",
            "ip,nw_tos=8,nw_ecn=1,nw_ttl=3",
        );
        rt("ip,ip_frag=later", "ip,nw_frag=later");
        rt("tun_id=0x5,tun_src=1.1.1.1", "tun_id=0x5,tun_src=1.1.1.1");
        rt("metadata=0x1/0xff", "metadata=0x1/0xff");
        rt("dl_type=0x88cc", "dl_type=0x88cc");
        rt("", "");
    }

    #[test]
    fn canonical_wire_order() {
        let m = parse_match("tp_dst=80,nw_dst=10.0.0.1,tcp,in_port=3").unwrap();
        let order: Vec<FieldId> = m.fields.iter().map(|f| f.field).collect();
        use FieldId::*;
        assert_eq!(order, vec![InPort, EthType, Ipv4Dst, IpProto, TcpDst]);
    }

    #[test]
    fn errors() {
        assert!(parse_match("tp_dst=80").is_err()); // no protocol
        assert!(parse_match("nw_dst=10.0.0.1").is_err()); // needs ip
        assert!(parse_match("bogus=1").is_err());
        assert!(parse_match("in_port=1/0xf").is_err());
        assert!(parse_match("dl_vlan=5000").is_err());
        assert!(parse_match("ip,nw_dst=10.0.0.0/33").is_err());
        assert!(parse_match("ct_state=+foo").is_err());
        assert!(parse_match("ip,nw_tos=3").is_err());
    }

    #[test]
    fn ipv6_like_glibc() {
        assert_eq!(format_ipv6(1), "::1");
        assert_eq!(format_ipv6(0x0102_0304), "::1.2.3.4");
        assert_eq!(format_ipv6(0xffff_0102_0304), "::ffff:1.2.3.4");
        assert_eq!(format_ipv6(0x2001_0db8 << 96), "2001:db8::");
    }
}
