//! `ovs-ofctl` text form of actions: parse and print.
//!
//! Printing follows `ovs-ofctl dump-flows`/`ofp-print` for OpenFlow 1.3.
//! Parsing follows `man ovs-actions`; where OVS would consult the flow's
//! match (e.g. `mod_tp_src` picks tcp/udp/sctp), we assume TCP, and
//! `mod_vlan_vid`/`mod_vlan_pcp` always push a VLAN header first (OVS does
//! so when the match does not pin a VLAN).

use super::*;
use crate::oxm::Format;
use crate::text::ParseError;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::new(msg))
}

// ------------------------------------------------------------ field names

/// The NXM/OXM name OVS prints for a field in subfield syntax.
pub fn nxm_name(f: FieldId) -> String {
    use FieldId::*;
    let fixed = match f {
        InPort => "NXM_OF_IN_PORT",
        EthDst => "NXM_OF_ETH_DST",
        EthSrc => "NXM_OF_ETH_SRC",
        EthType => "NXM_OF_ETH_TYPE",
        VlanTci => "NXM_OF_VLAN_TCI",
        NwTos => "NXM_OF_IP_TOS",
        IpProto => "NXM_OF_IP_PROTO",
        Ipv4Src => "NXM_OF_IP_SRC",
        Ipv4Dst => "NXM_OF_IP_DST",
        TcpSrc => "NXM_OF_TCP_SRC",
        TcpDst => "NXM_OF_TCP_DST",
        UdpSrc => "NXM_OF_UDP_SRC",
        UdpDst => "NXM_OF_UDP_DST",
        Icmpv4Type => "NXM_OF_ICMP_TYPE",
        Icmpv4Code => "NXM_OF_ICMP_CODE",
        ArpOp => "NXM_OF_ARP_OP",
        ArpSpa => "NXM_OF_ARP_SPA",
        ArpTpa => "NXM_OF_ARP_TPA",
        TunnelId => "NXM_NX_TUN_ID",
        ArpSha => "NXM_NX_ARP_SHA",
        ArpTha => "NXM_NX_ARP_THA",
        Ipv6Src => "NXM_NX_IPV6_SRC",
        Ipv6Dst => "NXM_NX_IPV6_DST",
        Icmpv6Type => "NXM_NX_ICMPV6_TYPE",
        Icmpv6Code => "NXM_NX_ICMPV6_CODE",
        Ipv6NdTarget => "NXM_NX_ND_TARGET",
        Ipv6NdSll => "NXM_NX_ND_SLL",
        Ipv6NdTll => "NXM_NX_ND_TLL",
        IpFrag => "NXM_NX_IP_FRAG",
        Ipv6Flabel => "NXM_NX_IPV6_LABEL",
        IpEcn => "NXM_NX_IP_ECN",
        IpTtl => "NXM_NX_IP_TTL",
        MplsTtl => "NXM_NX_MPLS_TTL",
        TunIpv4Src => "NXM_NX_TUN_IPV4_SRC",
        TunIpv4Dst => "NXM_NX_TUN_IPV4_DST",
        PktMark => "NXM_NX_PKT_MARK",
        TcpFlags => "NXM_NX_TCP_FLAGS",
        ConjId => "NXM_NX_CONJ_ID",
        TunGbpId => "NXM_NX_TUN_GBP_ID",
        TunGbpFlags => "NXM_NX_TUN_GBP_FLAGS",
        TunFlags => "NXM_NX_TUN_FLAGS",
        CtState => "NXM_NX_CT_STATE",
        CtZone => "NXM_NX_CT_ZONE",
        CtMark => "NXM_NX_CT_MARK",
        CtLabel => "NXM_NX_CT_LABEL",
        TunIpv6Src => "NXM_NX_TUN_IPV6_SRC",
        TunIpv6Dst => "NXM_NX_TUN_IPV6_DST",
        CtNwProto => "NXM_NX_CT_NW_PROTO",
        CtNwSrc => "NXM_NX_CT_NW_SRC",
        CtNwDst => "NXM_NX_CT_NW_DST",
        CtIpv6Src => "NXM_NX_CT_IPV6_SRC",
        CtIpv6Dst => "NXM_NX_CT_IPV6_DST",
        CtTpSrc => "NXM_NX_CT_TP_SRC",
        CtTpDst => "NXM_NX_CT_TP_DST",
        InPhyPort => "OXM_OF_IN_PHY_PORT",
        Metadata => "OXM_OF_METADATA",
        VlanVid => "OXM_OF_VLAN_VID",
        VlanPcp => "OXM_OF_VLAN_PCP",
        IpDscp => "OXM_OF_IP_DSCP",
        SctpSrc => "OXM_OF_SCTP_SRC",
        SctpDst => "OXM_OF_SCTP_DST",
        MplsLabel => "OXM_OF_MPLS_LABEL",
        MplsTc => "OXM_OF_MPLS_TC",
        MplsBos => "OXM_OF_MPLS_BOS",
        PbbIsid => "OXM_OF_PBB_ISID",
        Ipv6Exthdr => "OXM_OF_IPV6_EXTHDR",
        ActsetOutput => "ONFOXM_ET_ACTSET_OUTPUT",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_string();
    }
    let name = f.name();
    if let Some(n) = name.strip_prefix("xxreg") {
        format!("NXM_NX_XXREG{n}")
    } else if let Some(n) = name.strip_prefix("xreg") {
        format!("OXM_OF_PKT_REG{n}")
    } else if let Some(n) = name.strip_prefix("reg") {
        format!("NXM_NX_REG{n}")
    } else {
        name.to_uppercase()
    }
}

/// The canonical name OVS prints for a field (`set_field:...->NAME`).
pub fn ovs_name(f: FieldId) -> &'static str {
    use FieldId::*;
    match f {
        EthDst => "eth_dst",
        EthSrc => "eth_src",
        EthType => "eth_type",
        Ipv4Src => "ip_src",
        Ipv4Dst => "ip_dst",
        IpFrag => "ip_frag",
        _ => f.name(),
    }
}

fn field_by_any_name(name: &str) -> Option<FieldId> {
    FieldId::from_name(name)
        .or_else(|| FieldId::all().find(|&f| nxm_name(f) == name || ovs_name(f) == name))
        .or_else(|| {
            // NXM names with a `_W` suffix name the same field.
            let n = name.strip_suffix("_W")?;
            FieldId::all().find(|&f| nxm_name(f) == n)
        })
}

/// Parses `NAME[]`, `NAME[a..b]`, `NAME[a]` or a bare `NAME`.
pub fn parse_subfield(s: &str) -> Result<Subfield, ParseError> {
    let s = s.trim();
    let (name, range) = match s.find('[') {
        Some(i) => {
            let Some(r) = s[i + 1..].strip_suffix(']') else {
                return err(format!("{s}: missing `]'"));
            };
            (&s[..i], Some(r))
        }
        None => (s, None),
    };
    let field =
        field_by_any_name(name).ok_or_else(|| ParseError::new(format!("{name}: unknown field")))?;
    let width = Subfield::width(field);
    let (ofs, n_bits) = match range {
        None | Some("") => (0, width),
        Some(r) => {
            let num = |x: &str| {
                x.trim()
                    .parse::<u16>()
                    .map_err(|_| ParseError::new(format!("{s}: bad bit index")))
            };
            match r.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if b < a || b >= width {
                        return err(format!("{s}: bad bit range"));
                    }
                    (a, b - a + 1)
                }
                None => {
                    let a = num(r)?;
                    if a >= width {
                        return err(format!("{s}: bit {a} outside {width}-bit field"));
                    }
                    (a, 1)
                }
            }
        }
    };
    let sf = Subfield { field, ofs, n_bits };
    if sf.check().is_err() {
        return err(format!("{s}: bit range outside {width}-bit field"));
    }
    Ok(sf)
}

/// Formats a subfield as OVS does.
pub fn format_subfield(sf: &Subfield) -> String {
    let name = nxm_name(sf.field);
    if sf.is_full() {
        format!("{name}[]")
    } else if sf.n_bits == 1 {
        format!("{name}[{}]", sf.ofs)
    } else {
        format!("{name}[{}..{}]", sf.ofs, sf.ofs + sf.n_bits - 1)
    }
}

// ------------------------------------------------------------ values

const PORT_NAMES: &[(u32, &str)] = &[
    (port::IN_PORT, "IN_PORT"),
    (port::TABLE, "TABLE"),
    (port::NORMAL, "NORMAL"),
    (port::FLOOD, "FLOOD"),
    (port::ALL, "ALL"),
    (port::CONTROLLER, "CONTROLLER"),
    (port::LOCAL, "LOCAL"),
    (port::ANY, "ANY"),
];

/// Formats an OpenFlow 1.3 port as `ovs-ofctl` does.
pub fn format_port(p: u32) -> String {
    match PORT_NAMES.iter().find(|(n, _)| *n == p) {
        Some((_, name)) => name.to_string(),
        None => p.to_string(),
    }
}

fn format_port16(p: u16) -> String {
    if p >= 0xff00 {
        format_port(p as u32 | 0xffff_0000)
    } else {
        p.to_string()
    }
}

/// Parses a port name or number. 16-bit reserved numbers (`65534`) widen.
pub fn parse_port(s: &str) -> Result<u32, ParseError> {
    let s = s.trim();
    if let Some((p, _)) = PORT_NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)) {
        return Ok(*p);
    }
    if s.eq_ignore_ascii_case("NONE") {
        return Ok(port::ANY);
    }
    let v = parse_u128(s)?;
    match v {
        0..0xff00 => Ok(v as u32),
        0xff00..=0xffff => Ok(v as u32 | 0xffff_0000),
        _ => u32::try_from(v).map_err(|_| ParseError::new(format!("{s}: bad port"))),
    }
}

fn parse_port16(s: &str) -> Result<u16, ParseError> {
    let p = parse_port(s)?;
    if p >= port::MAX {
        Ok((p & 0xffff) as u16)
    } else {
        u16::try_from(p).map_err(|_| ParseError::new(format!("{s}: port out of range")))
    }
}

/// Parses a decimal or `0x` hex integer.
pub fn parse_u128(s: &str) -> Result<u128, ParseError> {
    crate::text::parse_uint(s, 128)
}

fn parse_num<T: TryFrom<u128>>(s: &str) -> Result<T, ParseError> {
    T::try_from(parse_u128(s)?).map_err(|_| ParseError::new(format!("{s}: value out of range")))
}

use crate::text::{format_ipv6, format_mac, parse_mac};

/// Formats a field value as `mf_format` does.
pub fn format_value(f: FieldId, v: u128) -> String {
    match f.info().format {
        Format::Decimal | Format::VlanVid => v.to_string(),
        Format::Mac => format_mac(v),
        Format::Ipv4 => Ipv4Addr::from(v as u32).to_string(),
        Format::Ipv6 => format_ipv6(v),
        Format::Port => format_port(v as u32),
        _ => {
            if v == 0 {
                "0".to_string()
            } else {
                format!("{v:#x}")
            }
        }
    }
}

/// Parses a value of field `f` (no mask).
pub fn parse_value(f: FieldId, s: &str) -> Result<u128, ParseError> {
    let s = s.trim();
    let v = match f.info().format {
        Format::Mac => parse_mac(s)?,
        Format::Ipv4 => s
            .parse::<Ipv4Addr>()
            .map(|a| u32::from(a) as u128)
            .map_err(|_| ParseError::new(format!("{s}: bad IPv4 address")))?,
        Format::Ipv6 => s
            .parse::<Ipv6Addr>()
            .map(u128::from)
            .map_err(|_| ParseError::new(format!("{s}: bad IPv6 address")))?,
        Format::Port => parse_port(s)? as u128,
        _ => parse_u128(s)?,
    };
    if v & !f.full_mask() != 0 {
        return err(format!(
            "{s} is not a valid value for field {}",
            ovs_name(f)
        ));
    }
    Ok(v)
}

pub(crate) fn parse_hex_bytes(s: &str) -> Result<Vec<u8>, ParseError> {
    let mut out = Vec::new();
    let clean: String = s.chars().filter(|c| *c != '.' && *c != ' ').collect();
    if !clean.len().is_multiple_of(2) {
        return err(format!("{s}: odd number of hex digits"));
    }
    for i in (0..clean.len()).step_by(2) {
        let b = clean
            .get(i..i + 2)
            .and_then(|x| u8::from_str_radix(x, 16).ok())
            .ok_or_else(|| ParseError::new(format!("{s}: bad hex")))?;
        out.push(b);
    }
    Ok(out)
}

fn hex_dotted(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// OVS `ds_put_hex`: `0x` + hex without leading zero bytes, or `0`.
fn put_hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

// ------------------------------------------------------------ splitting

/// Splits at top-level commas (not inside parentheses).
pub(crate) fn split_top(s: &str) -> Result<Vec<&str>, ParseError> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return err(format!("{s}: unbalanced parentheses"));
                }
            }
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return err(format!("{s}: unbalanced parentheses"));
    }
    let last = s[start..].trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    Ok(out)
}

/// Splits `name(args)`, `name:arg` or `name=arg`, or bare `name`.
pub(crate) fn split_item(item: &str) -> (String, Option<&str>, bool) {
    let paren = item.find('(');
    let colon = item.find([':', '=']);
    match (paren, colon) {
        (Some(p), c) if c.is_none_or(|c| p < c) && item.ends_with(')') => (
            item[..p].trim().to_ascii_lowercase(),
            Some(&item[p + 1..item.len() - 1]),
            true,
        ),
        (_, Some(c)) => (
            item[..c].trim().to_ascii_lowercase(),
            Some(&item[c + 1..]),
            false,
        ),
        _ => (item.trim().to_ascii_lowercase(), None, false),
    }
}

// ------------------------------------------------------------ parsing

/// Parses an `ovs-ofctl` action list (the part after `actions=`, without
/// instructions such as `goto_table`).
pub fn parse_actions(s: &str) -> Result<Vec<Action>, ParseError> {
    let mut out = Vec::new();
    let items = split_top(s)?;
    let n = items.len();
    for item in items {
        if item.is_empty() {
            return err(format!("{s}: empty action"));
        }
        if item.eq_ignore_ascii_case("drop") {
            if n != 1 {
                return err("\"drop\" must not be accompanied by any other action or instruction");
            }
            continue;
        }
        parse_one(item, &mut out)?;
    }
    Ok(out)
}

fn need<'a>(name: &str, arg: Option<&'a str>) -> Result<&'a str, ParseError> {
    match arg {
        Some(a) if !a.trim().is_empty() => Ok(a.trim()),
        _ => err(format!("{name}: missing argument")),
    }
}

fn set_field(out: &mut Vec<Action>, f: FieldId, v: u128) -> Result<(), ParseError> {
    let mf = MatchField::validated(f, v, None)
        .map_err(|e| ParseError::new(format!("{}: {e}", ovs_name(f))))?;
    out.push(Action::SetField(mf));
    Ok(())
}

/// `load:value->dst`, split into <=64-bit `NXAST_REG_LOAD` segments.
fn push_loads(out: &mut Vec<Action>, field: FieldId, value: u128, mask: u128) {
    let width = Subfield::width(field) as u32;
    let mut bit = 0u32;
    while bit < width {
        if mask >> bit & 1 == 0 {
            bit += 1;
            continue;
        }
        let start = bit;
        while bit < width && bit - start < 64 && mask >> bit & 1 == 1 {
            bit += 1;
        }
        let n = bit - start;
        let seg = (value >> start) & ((1u128 << n) - 1);
        out.push(Action::RegLoad {
            dst: Subfield {
                field,
                ofs: start as u16,
                n_bits: n as u16,
            },
            value: seg as u64,
        });
    }
}

fn parse_set_field(arg: &str, out: &mut Vec<Action>) -> Result<(), ParseError> {
    let Some((val, fname)) = arg.split_once("->") else {
        return err(format!("{arg}: missing `->'"));
    };
    let f = field_by_any_name(fname.trim())
        .ok_or_else(|| ParseError::new(format!("{fname}: unknown field")))?;
    if !is_writable(f) {
        return err(format!("{} is read-only", ovs_name(f)));
    }
    let (v, m) = match val.split_once('/') {
        Some((v, m)) => (parse_value(f, v)?, Some(parse_value(f, m)?)),
        None => (parse_value(f, val)?, None),
    };
    match m {
        Some(m) if m != f.full_mask() => {
            if !f.info().maskable {
                return err(format!("{}: field is not maskable", ovs_name(f)));
            }
            push_loads(out, f, v & m, m);
            Ok(())
        }
        _ => set_field(out, f, v),
    }
}

fn parse_load(arg: &str, out: &mut Vec<Action>) -> Result<(), ParseError> {
    let Some((val, dst)) = arg.split_once("->") else {
        return err(format!("{arg}: missing `->'"));
    };
    let dst = parse_subfield(dst)?;
    if !is_writable(dst.field) {
        return err(format!("{} is read-only", ovs_name(dst.field)));
    }
    let v = parse_u128(val)?;
    if dst.n_bits < 128 && v >> dst.n_bits != 0 {
        return err(format!(
            "{arg}: value does not fit into {} bits",
            dst.n_bits
        ));
    }
    push_loads(out, dst.field, v << dst.ofs, dst.mask());
    Ok(())
}

fn kv(arg: &str) -> Result<Vec<(String, Option<&str>)>, ParseError> {
    Ok(split_top(arg)?
        .into_iter()
        .filter(|x| !x.is_empty())
        .map(|x| match x.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (x.trim().to_ascii_lowercase(), None),
        })
        .collect())
}

fn parse_one(item: &str, out: &mut Vec<Action>) -> Result<(), ParseError> {
    let (name, arg, paren) = split_item(item);
    let name = name.as_str();
    match name {
        "output" if paren => {
            let mut port = None;
            let mut max_len = None;
            for (k, v) in kv(arg.unwrap_or(""))? {
                match (k.as_str(), v) {
                    ("port", Some(v)) => port = Some(parse_port16(v)?),
                    ("max_len", Some(v)) => max_len = Some(parse_num::<u32>(v)?),
                    _ => return err(format!("{item}: bad output argument {k}")),
                }
            }
            match (port, max_len) {
                (Some(port), Some(max_len)) => out.push(Action::OutputTrunc { port, max_len }),
                _ => return err(format!("{item}: output(...) needs port and max_len")),
            }
        }
        "output" => {
            let a = need(name, arg)?;
            if a.contains('[') || field_by_any_name(a).is_some() && parse_port(a).is_err() {
                out.push(Action::OutputReg {
                    src: parse_subfield(a)?,
                    max_len: u16::MAX,
                });
            } else {
                out.push(Action::output(parse_port(a)?));
            }
        }
        "controller" => parse_controller(arg, paren, out)?,
        "enqueue" => {
            let a = need(name, arg)?;
            let (p, q) = a
                .split_once([':', ','])
                .ok_or_else(|| ParseError::new(format!("{item}: enqueue needs port and queue")))?;
            out.push(Action::SetQueue(parse_num(q)?));
            out.push(Action::output(parse_port(p)?));
        }
        "drop" => {
            return err("\"drop\" must not be accompanied by any other action or instruction");
        }
        "copy_ttl_out" => out.push(Action::CopyTtlOut),
        "copy_ttl_in" => out.push(Action::CopyTtlIn),
        "set_mpls_ttl" => out.push(Action::SetMplsTtl(parse_num(need(name, arg)?)?)),
        "dec_mpls_ttl" => out.push(Action::DecMplsTtl),
        "push_vlan" => out.push(Action::PushVlan(parse_num(need(name, arg)?)?)),
        "pop_vlan" | "strip_vlan" => out.push(Action::PopVlan),
        "push_mpls" => out.push(Action::PushMpls(parse_num(need(name, arg)?)?)),
        "pop_mpls" => out.push(Action::PopMpls(parse_num(need(name, arg)?)?)),
        "push_pbb" => out.push(Action::PushPbb(parse_num(need(name, arg)?)?)),
        "pop_pbb" => out.push(Action::PopPbb),
        "set_queue" => out.push(Action::SetQueue(parse_num(need(name, arg)?)?)),
        "group" => out.push(Action::Group(parse_num(need(name, arg)?)?)),
        "mod_nw_ttl" => out.push(Action::SetNwTtl(parse_num(need(name, arg)?)?)),
        "dec_ttl" => match arg {
            Some(a) if paren => {
                let ids = split_top(a)?
                    .into_iter()
                    .map(parse_num::<u16>)
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(Action::DecTtlCntIds(ids));
            }
            Some(_) => return err(format!("{item}: bad dec_ttl")),
            None => out.push(Action::DecNwTtl),
        },
        "set_field" => parse_set_field(need(name, arg)?, out)?,
        "load" => parse_load(need(name, arg)?, out)?,
        "move" => {
            let a = need(name, arg)?;
            let Some((s, d)) = a.split_once("->") else {
                return err(format!("{a}: missing `->'"));
            };
            let (src, dst) = (parse_subfield(s)?, parse_subfield(d)?);
            if src.n_bits != dst.n_bits {
                return err(format!(
                    "{a}: source field is {} bits wide but destination is {} bits wide",
                    src.n_bits, dst.n_bits
                ));
            }
            out.push(Action::RegMove { src, dst });
        }
        "mod_vlan_vid" => {
            let v: u16 = parse_num(need(name, arg)?)?;
            if v > 0xfff {
                return err(format!("{v}: not a valid VLAN VID"));
            }
            out.push(Action::PushVlan(0x8100));
            set_field(out, FieldId::VlanVid, (v | 0x1000) as u128)?;
        }
        "mod_vlan_pcp" => {
            let v: u8 = parse_num(need(name, arg)?)?;
            if v > 7 {
                return err(format!("{v}: not a valid VLAN PCP"));
            }
            out.push(Action::PushVlan(0x8100));
            set_field(out, FieldId::VlanPcp, v as u128)?;
        }
        "mod_dl_src" => set_field(out, FieldId::EthSrc, parse_mac(need(name, arg)?)?)?,
        "mod_dl_dst" => set_field(out, FieldId::EthDst, parse_mac(need(name, arg)?)?)?,
        "mod_nw_src" => set_field(
            out,
            FieldId::Ipv4Src,
            parse_value(FieldId::Ipv4Src, need(name, arg)?)?,
        )?,
        "mod_nw_dst" => set_field(
            out,
            FieldId::Ipv4Dst,
            parse_value(FieldId::Ipv4Dst, need(name, arg)?)?,
        )?,
        "mod_nw_tos" => {
            let v: u8 = parse_num(need(name, arg)?)?;
            if v & 3 != 0 {
                return err(format!("{v}: not a valid TOS (low 2 bits must be zero)"));
            }
            set_field(out, FieldId::IpDscp, (v >> 2) as u128)?;
        }
        "mod_nw_ecn" => set_field(out, FieldId::IpEcn, parse_u128(need(name, arg)?)?)?,
        "mod_tp_src" => set_field(out, FieldId::TcpSrc, parse_u128(need(name, arg)?)?)?,
        "mod_tp_dst" => set_field(out, FieldId::TcpDst, parse_u128(need(name, arg)?)?)?,
        "set_mpls_label" => set_field(out, FieldId::MplsLabel, parse_u128(need(name, arg)?)?)?,
        "set_mpls_tc" => set_field(out, FieldId::MplsTc, parse_u128(need(name, arg)?)?)?,
        "set_tunnel" | "set_tunnel64" => {
            set_field(out, FieldId::TunnelId, parse_u128(need(name, arg)?)?)?
        }
        "resubmit" => {
            let a = need(name, arg)?;
            if paren {
                let parts: Vec<&str> = a.split(',').map(str::trim).collect();
                if parts.len() > 3 || (parts.len() == 3 && parts[2] != "ct") {
                    return err(format!("{item}: bad resubmit"));
                }
                let in_port = match parts.first() {
                    Some(p) if !p.is_empty() => parse_port16(p)?,
                    _ => port::IN_PORT16,
                };
                let table = match parts.get(1) {
                    Some(t) if !t.is_empty() => parse_num::<u8>(t)?,
                    _ => 255,
                };
                if in_port == port::IN_PORT16 && table == 255 {
                    return err(
                        "at least one \"in_port\" or \"table\" must be specified on resubmit",
                    );
                }
                out.push(Action::Resubmit {
                    in_port,
                    table: Some(table),
                    ct: parts.len() == 3,
                });
            } else {
                // OVS 3.1 encodes `resubmit:P` as NXAST_RESUBMIT_TABLE, table 255.
                out.push(Action::Resubmit {
                    in_port: parse_port16(a)?,
                    table: Some(255),
                    ct: false,
                });
            }
        }
        "note" => {
            let mut data = parse_hex_bytes(arg.unwrap_or(""))?;
            let total = 10 + data.len();
            data.resize(data.len() + crate::wire::pad_len(total), 0);
            out.push(Action::Note(data));
        }
        "learn" => out.push(Action::Learn(Box::new(parse_learn(arg.unwrap_or(""))?))),
        "exit" => out.push(Action::Exit),
        "fin_timeout" => {
            let (mut idle_timeout, mut hard_timeout) = (0, 0);
            for (k, v) in kv(arg.unwrap_or(""))? {
                match (k.as_str(), v) {
                    ("idle_timeout", Some(v)) => idle_timeout = parse_num(v)?,
                    ("hard_timeout", Some(v)) => hard_timeout = parse_num(v)?,
                    _ => return err(format!("{item}: invalid key {k}")),
                }
            }
            out.push(Action::FinTimeout {
                idle_timeout,
                hard_timeout,
            });
        }
        "write_metadata" => {
            let (metadata, mask) = parse_metadata(need(name, arg)?)?;
            out.push(Action::WriteMetadata { metadata, mask });
        }
        "conjunction" => {
            let a = need(name, arg)?;
            let parse = || -> Option<(u32, u8, u8)> {
                let (id, rest) = a.split_once(',')?;
                let (k, n) = rest.split_once('/')?;
                Some((
                    id.trim().parse().ok()?,
                    k.trim().parse().ok()?,
                    n.trim().parse().ok()?,
                ))
            };
            let (id, k, n) = parse()
                .ok_or_else(|| ParseError::new(format!("\"{a}\": syntax error in conjunction")))?;
            if n < 2 || k < 1 || k > n {
                return err(format!(
                    "conjunction({a}): clause must be between 1 and n_clauses (>= 2)"
                ));
            }
            out.push(Action::Conjunction {
                id,
                clause: k - 1,
                n_clauses: n,
            });
        }
        "ct" => out.push(Action::Ct(Box::new(parse_ct(arg.unwrap_or(""))?))),
        "nat" => out.push(Action::Nat(parse_nat(arg)?)),
        "ct_clear" => out.push(Action::CtClear),
        "multipath" => out.push(Action::Multipath(parse_multipath(need(name, arg)?)?)),
        "bundle" | "bundle_load" => out.push(Action::Bundle(Box::new(parse_bundle(
            need(name, arg)?,
            name == "bundle_load",
        )?))),
        "clone" => out.push(Action::Clone(parse_actions(arg.unwrap_or(""))?)),
        "sample" => out.push(Action::Sample(parse_sample(need(name, arg)?)?)),
        _ => {
            // A bare port, or `CONTROLLER:max_len`.
            if let Some(a) = arg
                && name == "controller"
            {
                out.push(Action::Output {
                    port: port::CONTROLLER,
                    max_len: parse_num(a)?,
                });
            } else if arg.is_none() {
                let p = parse_port(item)
                    .map_err(|_| ParseError::new(format!("unknown action {item}")))?;
                out.push(Action::output(p));
            } else {
                return err(format!("unknown action {name}"));
            }
        }
    }
    Ok(())
}

pub(crate) fn parse_metadata(a: &str) -> Result<(u64, u64), ParseError> {
    match a.split_once('/') {
        Some((v, m)) => Ok((parse_num(v)?, parse_num(m)?)),
        None => Ok((parse_num(a)?, u64::MAX)),
    }
}

const REASONS: &[(u8, &str)] = &[
    (0, "no_match"),
    (1, "action"),
    (2, "invalid_ttl"),
    (3, "action_set"),
    (4, "group"),
    (5, "packet_out"),
];

fn parse_controller(
    arg: Option<&str>,
    paren: bool,
    out: &mut Vec<Action>,
) -> Result<(), ParseError> {
    let mut c = Controller::default();
    match arg {
        None => {}
        Some(a) if !paren => c.max_len = parse_num(a)?,
        Some(a) => {
            for (k, v) in kv(a)? {
                match (k.as_str(), v) {
                    ("max_len", Some(v)) => c.max_len = parse_num(v)?,
                    ("id", Some(v)) => c.controller_id = parse_num(v)?,
                    ("reason", Some(v)) => {
                        c.reason = REASONS
                            .iter()
                            .find(|(_, n)| *n == v)
                            .map(|(r, _)| *r)
                            .or_else(|| v.parse().ok())
                            .ok_or_else(|| ParseError::new(format!("unknown reason \"{v}\"")))?;
                    }
                    ("userdata", Some(v)) => c.userdata = parse_hex_bytes(v)?,
                    ("pause", None) => c.pause = true,
                    ("meter_id", Some(v)) => c.meter_id = parse_num(v)?,
                    _ => return err(format!("unknown key \"{k}\" parsing controller action")),
                }
            }
        }
    }
    if c.reason == 1 && c.controller_id == 0 && !c.needs_v2() {
        out.push(Action::Output {
            port: port::CONTROLLER,
            max_len: c.max_len,
        });
    } else {
        out.push(Action::Controller(Box::new(c)));
    }
    Ok(())
}

fn parse_ct(arg: &str) -> Result<Ct, ParseError> {
    let mut ct = Ct::default();
    for item in split_top(arg)? {
        if item.is_empty() {
            continue;
        }
        let (k, v, paren) = split_item(item);
        match (k.as_str(), v) {
            ("commit", None) => ct.flags |= ct_flags::COMMIT,
            ("force", None) => ct.flags |= ct_flags::FORCE,
            ("table", Some(v)) => ct.recirc_table = Some(parse_num(v)?),
            ("zone", Some(v)) => {
                ct.zone = if let Ok(z) = parse_num::<u16>(v) {
                    CtZone::Imm(z)
                } else {
                    let sf = parse_subfield(v)?;
                    if sf.n_bits != 16 {
                        return err(format!("{v}: zone field must be 16 bits"));
                    }
                    CtZone::Field(sf)
                }
            }
            ("alg", Some(v)) => {
                ct.alg = match v {
                    "ftp" => 21,
                    "tftp" => 69,
                    _ => parse_num(v)?,
                }
            }
            ("exec", Some(v)) if paren => ct.actions.extend(parse_actions(v)?),
            ("nat", v) => ct.actions.push(Action::Nat(parse_nat(v)?)),
            _ => return err(format!("invalid argument to \"ct\" action: `{item}'")),
        }
    }
    if ct.flags & ct_flags::FORCE != 0 && ct.flags & ct_flags::COMMIT == 0 {
        return err("\"force\" flag requires \"commit\" flag.");
    }
    Ok(ct)
}

fn parse_nat(arg: Option<&str>) -> Result<Nat, ParseError> {
    let mut n = Nat::default();
    let Some(arg) = arg else { return Ok(n) };
    for item in split_top(arg)? {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item.trim(), None),
        };
        match k {
            "src" | "dst" => {
                if n.flags & (nat_flags::SRC | nat_flags::DST) != 0 {
                    return err("May only specify one of \"src\" or \"dst\".");
                }
                n.flags |= if k == "src" {
                    nat_flags::SRC
                } else {
                    nat_flags::DST
                };
                if let Some(v) = v {
                    parse_nat_range(v, &mut n)?;
                }
            }
            "persistent" => n.flags |= nat_flags::PERSISTENT,
            "hash" => n.flags |= nat_flags::PROTO_HASH,
            "random" => n.flags |= nat_flags::PROTO_RANDOM,
            "" => {}
            _ => return err(format!("invalid key \"{k}\" in \"nat\" argument")),
        }
    }
    Ok(n)
}

fn parse_nat_range(s: &str, n: &mut Nat) -> Result<(), ParseError> {
    let bad = || ParseError::new(format!("{s}: bad nat range"));
    let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
        // [v6]-[v6]:p-p or [v6]:p
        let (a1, rest) = rest.split_once(']').ok_or_else(bad)?;
        let (a2, rest) = match rest.strip_prefix("-[") {
            Some(r) => {
                let (a2, r) = r.split_once(']').ok_or_else(bad)?;
                (Some(a2), r)
            }
            None => (None, rest),
        };
        n.ipv6_min = Some(parse_value(FieldId::Ipv6Src, a1)?);
        if let Some(a2) = a2 {
            n.ipv6_max = Some(parse_value(FieldId::Ipv6Src, a2)?);
        }
        (None, rest.strip_prefix(':'))
    } else if s.contains("::") || s.matches(':').count() > 1 {
        (Some((s, true)), None)
    } else {
        match s.split_once(':') {
            Some((a, p)) => (Some((a, false)), Some(p)),
            None => (Some((s, false)), None),
        }
    };
    if let Some((a, v6)) = addrs {
        let (lo, hi) = match a.split_once('-') {
            Some((lo, hi)) => (lo, Some(hi)),
            None => (a, None),
        };
        if v6 {
            n.ipv6_min = Some(parse_value(FieldId::Ipv6Src, lo)?);
            if let Some(hi) = hi {
                n.ipv6_max = Some(parse_value(FieldId::Ipv6Src, hi)?);
            }
        } else {
            n.ipv4_min = Some(parse_value(FieldId::Ipv4Src, lo)? as u32);
            if let Some(hi) = hi {
                n.ipv4_max = Some(parse_value(FieldId::Ipv4Src, hi)? as u32);
            }
        }
    }
    if let Some(p) = ports {
        let (lo, hi) = match p.split_once('-') {
            Some((lo, hi)) => (lo, Some(hi)),
            None => (p, None),
        };
        n.proto_min = Some(parse_num(lo)?);
        if let Some(hi) = hi {
            n.proto_max = Some(parse_num(hi)?);
        }
    }
    Ok(())
}

fn parse_learn(arg: &str) -> Result<Learn, ParseError> {
    let mut ln = Learn::default();
    for item in split_top(arg)? {
        if item.is_empty() {
            continue;
        }
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item.trim(), None),
        };
        match (k, v) {
            ("table", Some(v)) => ln.table_id = parse_num(v)?,
            ("priority", Some(v)) => ln.priority = parse_num(v)?,
            ("idle_timeout", Some(v)) => ln.idle_timeout = parse_num(v)?,
            ("hard_timeout", Some(v)) => ln.hard_timeout = parse_num(v)?,
            ("fin_idle_timeout", Some(v)) => ln.fin_idle_timeout = parse_num(v)?,
            ("fin_hard_timeout", Some(v)) => ln.fin_hard_timeout = parse_num(v)?,
            ("cookie", Some(v)) => ln.cookie = parse_num(v)?,
            ("limit", Some(v)) => ln.limit = parse_num(v)?,
            ("result_dst", Some(v)) => {
                let sf = parse_subfield(v)?;
                if sf.n_bits != 1 {
                    return err("result_dst in 'learn' action must be a single bit");
                }
                ln.result_dst = Some(sf);
            }
            ("send_flow_rem", None) => ln.flags |= learn_flags::SEND_FLOW_REM,
            ("delete_learned", None) => ln.flags |= learn_flags::DELETE_LEARNED,
            _ => ln.specs.push(parse_learn_spec(item)?),
        }
    }
    if ln.table_id == 255 {
        return err("table=255 is not allowed in learn");
    }
    Ok(ln)
}

fn parse_learn_spec(item: &str) -> Result<LearnSpec, ParseError> {
    if let Some(rest) = item.strip_prefix("load:") {
        let Some((src, dst)) = rest.split_once("->") else {
            return err(format!("{item}: missing `->'"));
        };
        let dst = parse_subfield(dst)?;
        let src = if src.contains('[') || field_by_any_name(src).is_some() {
            let s = parse_subfield(src)?;
            if s.n_bits != dst.n_bits {
                return err(format!("{item}: source and destination widths differ"));
            }
            LearnSrc::Field(s)
        } else {
            let v = parse_u128(src)?;
            if dst.n_bits < 128 && v >> dst.n_bits != 0 {
                return err(format!("{item}: value does not fit"));
            }
            LearnSrc::Imm(v)
        };
        return Ok(LearnSpec {
            n_bits: dst.n_bits,
            src,
            dst: LearnDst::Load(dst),
        });
    }
    if let Some(rest) = item.strip_prefix("output:") {
        let src = parse_subfield(rest)?;
        return Ok(LearnSpec {
            n_bits: src.n_bits,
            src: LearnSrc::Field(src),
            dst: LearnDst::Output,
        });
    }
    match item.split_once('=') {
        None => {
            let sf = parse_subfield(item)?;
            Ok(LearnSpec {
                n_bits: sf.n_bits,
                src: LearnSrc::Field(sf),
                dst: LearnDst::Match(sf),
            })
        }
        Some((d, s)) => {
            let dst = parse_subfield(d)?;
            let s = s.trim();
            let src =
                if s.contains('[') || (field_by_any_name(s).is_some() && parse_u128(s).is_err()) {
                    let sf = parse_subfield(s)?;
                    if sf.n_bits != dst.n_bits {
                        return err(format!("{item}: source and destination widths differ"));
                    }
                    LearnSrc::Field(sf)
                } else if dst.is_full() {
                    LearnSrc::Imm(parse_value(dst.field, s)?)
                } else {
                    let v = parse_u128(s)?;
                    if dst.n_bits < 128 && v >> dst.n_bits != 0 {
                        return err(format!("{item}: value does not fit"));
                    }
                    LearnSrc::Imm(v)
                };
            Ok(LearnSpec {
                n_bits: dst.n_bits,
                src,
                dst: LearnDst::Match(dst),
            })
        }
    }
}

const HASH_FIELDS: &[&str] = &[
    "eth_src",
    "symmetric_l4",
    "symmetric_l3l4",
    "symmetric_l3l4+udp",
    "nw_src",
    "nw_dst",
    "symmetric_l3",
];
const MP_ALGS: &[&str] = &["modulo_n", "hash_threshold", "hrw", "iter_hash"];
const BUNDLE_ALGS: &[&str] = &["active_backup", "hrw"];

fn index_of(list: &[&str], s: &str, what: &str) -> Result<u16, ParseError> {
    list.iter()
        .position(|x| *x == s.trim())
        .map(|i| i as u16)
        .ok_or_else(|| ParseError::new(format!("{s}: unknown {what}")))
}

fn parse_multipath(a: &str) -> Result<Multipath, ParseError> {
    let p: Vec<&str> = split_top(a)?;
    if p.len() != 6 {
        return err(format!("{a}: not enough arguments to multipath action"));
    }
    let n_links: u32 = parse_num(p[3])?;
    if n_links == 0 || n_links > 65536 {
        return err(format!(
            "{a}: n_links {n_links} is not in valid range 1 to 65536"
        ));
    }
    let dst = parse_subfield(p[5])?;
    Ok(Multipath {
        fields: index_of(HASH_FIELDS, p[0], "fields")?,
        basis: parse_num(p[1])?,
        algorithm: index_of(MP_ALGS, p[2], "algorithm")?,
        max_link: (n_links - 1) as u16,
        arg: parse_num(p[4])?,
        dst,
    })
}

fn parse_bundle(a: &str, load: bool) -> Result<Bundle, ParseError> {
    let (head, members) = a
        .split_once("members:")
        .or_else(|| a.split_once("slaves:"))
        .ok_or_else(|| ParseError::new(format!("{a}: missing members")))?;
    let p: Vec<&str> = head
        .trim_end_matches(',')
        .split(',')
        .map(str::trim)
        .collect();
    let want = if load { 5 } else { 4 };
    if p.len() != want {
        return err(format!("{a}: not enough arguments to bundle action"));
    }
    if p[3] != "ofport" {
        return err(format!("{}: unknown member type", p[3]));
    }
    let members = members
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(parse_port16)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Bundle {
        fields: index_of(HASH_FIELDS, p[0], "fields")?,
        basis: parse_num(p[1])?,
        algorithm: index_of(BUNDLE_ALGS, p[2], "algorithm")?,
        dst: if load {
            Some(parse_subfield(p[4])?)
        } else {
            None
        },
        members,
    })
}

fn parse_sample(a: &str) -> Result<Sample, ParseError> {
    let mut s = Sample {
        probability: 0,
        collector_set_id: 0,
        obs_domain_id: 0,
        obs_point_id: 0,
        sampling_port: None,
        direction: 0,
    };
    for (k, v) in kv(a)? {
        match (k.as_str(), v) {
            ("probability", Some(v)) => s.probability = parse_num(v)?,
            ("collector_set_id", Some(v)) => s.collector_set_id = parse_num(v)?,
            ("obs_domain_id", Some(v)) => s.obs_domain_id = parse_num(v)?,
            ("obs_point_id", Some(v)) => s.obs_point_id = parse_num(v)?,
            ("sampling_port", Some(v)) => s.sampling_port = Some(parse_port16(v)?),
            ("ingress", None) => s.direction = 1,
            ("egress", None) => s.direction = 2,
            _ => return err(format!("invalid key \"{k}\" in \"sample\" argument")),
        }
    }
    if s.probability == 0 {
        return err("non-zero \"probability\" must be specified on sample");
    }
    Ok(s)
}

// ------------------------------------------------------------ formatting

/// Formats an action list as `ovs-ofctl` prints it (`drop` when empty).
pub fn format_actions(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    format_list(actions)
}

pub(crate) fn format_list(actions: &[Action]) -> String {
    let mut s = String::new();
    for (i, a) in actions.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        format_one(a, &mut s);
    }
    s
}

fn format_one(a: &Action, s: &mut String) {
    match a {
        Action::Output { port: p, max_len } => {
            if *p < port::MAX {
                let _ = write!(s, "output:{p}");
            } else {
                s.push_str(&format_port(*p));
                if *p == port::CONTROLLER {
                    let _ = write!(s, ":{max_len}");
                }
            }
        }
        Action::CopyTtlOut => s.push_str("copy_ttl_out"),
        Action::CopyTtlIn => s.push_str("copy_ttl_in"),
        Action::SetMplsTtl(t) => {
            let _ = write!(s, "set_mpls_ttl({t})");
        }
        Action::DecMplsTtl => s.push_str("dec_mpls_ttl"),
        Action::PushVlan(e) => {
            let _ = write!(s, "push_vlan:{e:#x}");
        }
        Action::PopVlan => s.push_str("pop_vlan"),
        Action::PushMpls(e) => {
            let _ = write!(s, "push_mpls:0x{e:04x}");
        }
        Action::PopMpls(e) => {
            let _ = write!(s, "pop_mpls:0x{e:04x}");
        }
        Action::SetQueue(q) => {
            let _ = write!(s, "set_queue:{q}");
        }
        Action::Group(g) => {
            let _ = write!(s, "group:{g}");
        }
        Action::SetNwTtl(t) => {
            let _ = write!(s, "mod_nw_ttl:{t}");
        }
        Action::DecNwTtl => s.push_str("dec_ttl"),
        Action::SetField(mf) => {
            s.push_str("set_field:");
            s.push_str(&format_value(mf.field, mf.value));
            if let Some(m) = mf.mask {
                s.push('/');
                s.push_str(&format_value(mf.field, m));
            }
            let _ = write!(s, "->{}", ovs_name(mf.field));
        }
        Action::PushPbb(e) => {
            let _ = write!(s, "push_pbb:0x{e:04x}");
        }
        Action::PopPbb => s.push_str("pop_pbb"),
        Action::Resubmit { in_port, table, ct } => {
            let t = table.unwrap_or(255);
            if *in_port != port::IN_PORT16 && t == 255 && !ct {
                let _ = write!(s, "resubmit:{}", format_port16(*in_port));
            } else {
                s.push_str("resubmit(");
                if *in_port != port::IN_PORT16 {
                    s.push_str(&format_port16(*in_port));
                }
                s.push(',');
                if t != 255 {
                    let _ = write!(s, "{t}");
                }
                if *ct {
                    s.push_str(",ct");
                }
                s.push(')');
            }
        }
        Action::SetTunnel { tun_id, wide } => {
            let w = if *wide || *tun_id > u32::MAX as u64 {
                "64"
            } else {
                ""
            };
            let _ = write!(s, "set_tunnel{w}:{}", put_hex(*tun_id as u128));
        }
        Action::RegMove { src, dst } => {
            let _ = write!(s, "move:{}->{}", format_subfield(src), format_subfield(dst));
        }
        Action::RegLoad { dst, value } => {
            let _ = write!(
                s,
                "load:{}->{}",
                put_hex(*value as u128),
                format_subfield(dst)
            );
        }
        Action::Note(d) => {
            let _ = write!(s, "note:{}", hex_dotted(d));
        }
        Action::OutputReg { src, .. } => {
            let _ = write!(s, "output:{}", format_subfield(src));
        }
        Action::Learn(ln) => format_learn(ln, s),
        Action::Exit => s.push_str("exit"),
        Action::DecTtlCntIds(ids) => {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let _ = write!(s, "dec_ttl({})", ids.join(","));
        }
        Action::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            let mut parts = Vec::new();
            if *idle_timeout != 0 {
                parts.push(format!("idle_timeout={idle_timeout}"));
            }
            if *hard_timeout != 0 {
                parts.push(format!("hard_timeout={hard_timeout}"));
            }
            let _ = write!(s, "fin_timeout({})", parts.join(","));
        }
        Action::Controller(c) => format_controller(c, s),
        Action::WriteMetadata { metadata, mask } => {
            let _ = write!(s, "write_metadata:{}", put_hex(*metadata as u128));
            if *mask != u64::MAX {
                let _ = write!(s, "/{}", put_hex(*mask as u128));
            }
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            let _ = write!(s, "conjunction({id},{}/{n_clauses})", *clause as u16 + 1);
        }
        Action::Ct(ct) => format_ct(ct, s),
        Action::Nat(n) => format_nat(n, s),
        Action::CtClear => s.push_str("ct_clear"),
        Action::Multipath(m) => {
            let _ = write!(
                s,
                "multipath({},{},{},{},{},{})",
                HASH_FIELDS.get(m.fields as usize).unwrap_or(&"<unknown>"),
                m.basis,
                MP_ALGS.get(m.algorithm as usize).unwrap_or(&"<unknown>"),
                m.max_link as u32 + 1,
                m.arg,
                format_subfield(&m.dst)
            );
        }
        Action::Bundle(b) => {
            let name = if b.dst.is_some() {
                "bundle_load"
            } else {
                "bundle"
            };
            let _ = write!(
                s,
                "{name}({},{},{},ofport,",
                HASH_FIELDS.get(b.fields as usize).unwrap_or(&"<unknown>"),
                b.basis,
                BUNDLE_ALGS
                    .get(b.algorithm as usize)
                    .unwrap_or(&"<unknown>"),
            );
            if let Some(d) = &b.dst {
                let _ = write!(s, "{},", format_subfield(d));
            }
            let m: Vec<String> = b.members.iter().map(|m| format_port16(*m)).collect();
            let _ = write!(s, "members:{})", m.join(","));
        }
        Action::Clone(acts) => {
            let _ = write!(s, "clone({})", format_list(acts));
        }
        Action::OutputTrunc { port: p, max_len } => {
            let _ = write!(s, "output(port={},max_len={max_len})", format_port16(*p));
        }
        Action::Sample(x) => {
            let _ = write!(
                s,
                "sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={}",
                x.probability, x.collector_set_id, x.obs_domain_id, x.obs_point_id
            );
            if let Some(p) = x.sampling_port {
                let _ = write!(s, ",sampling_port={}", format_port16(p));
            }
            match x.direction {
                1 => s.push_str(",ingress"),
                2 => s.push_str(",egress"),
                _ => {}
            }
            s.push(')');
        }
    }
}

fn format_controller(c: &Controller, s: &mut String) {
    if c.reason == 1 && c.controller_id == 0 && !c.needs_v2() {
        let _ = write!(s, "CONTROLLER:{}", c.max_len);
        return;
    }
    let mut parts = Vec::new();
    if c.reason != 1 {
        let r = REASONS
            .iter()
            .find(|(r, _)| *r == c.reason)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| c.reason.to_string());
        parts.push(format!("reason={r}"));
    }
    if c.max_len != u16::MAX {
        parts.push(format!("max_len={}", c.max_len));
    }
    if c.controller_id != 0 {
        parts.push(format!("id={}", c.controller_id));
    }
    if !c.userdata.is_empty() {
        parts.push(format!("userdata={}", hex_dotted(&c.userdata)));
    }
    if c.pause {
        parts.push("pause".into());
    }
    if c.meter_id != 0 {
        parts.push(format!("meter_id={}", c.meter_id));
    }
    let _ = write!(s, "controller({})", parts.join(","));
}

fn format_ct(ct: &Ct, s: &mut String) {
    let mut parts: Vec<String> = Vec::new();
    if ct.flags & ct_flags::COMMIT != 0 {
        parts.push("commit".into());
    }
    if ct.flags & ct_flags::FORCE != 0 {
        parts.push("force".into());
    }
    if let Some(t) = ct.recirc_table {
        parts.push(format!("table={t}"));
    }
    match ct.zone {
        CtZone::Field(sf) => parts.push(format!("zone={}", format_subfield(&sf))),
        CtZone::Imm(0) => {}
        CtZone::Imm(z) => parts.push(format!("zone={z}")),
    }
    let mut rest: &[Action] = &ct.actions;
    if let Some((Action::Nat(n), tail)) = rest.split_first() {
        let mut t = String::new();
        format_nat(n, &mut t);
        parts.push(t);
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push(format!("exec({})", format_list(rest)));
    }
    match ct.alg {
        0 => {}
        21 => parts.push("alg=ftp".into()),
        69 => parts.push("alg=tftp".into()),
        x => parts.push(format!("alg={x}")),
    }
    let _ = write!(s, "ct({})", parts.join(","));
}

fn format_nat(n: &Nat, s: &mut String) {
    s.push_str("nat");
    if n.flags & (nat_flags::SRC | nat_flags::DST) == 0 {
        return;
    }
    s.push('(');
    s.push_str(if n.flags & nat_flags::SRC != 0 {
        "src"
    } else {
        "dst"
    });
    let bracket = n.proto_min.is_some_and(|p| p != 0);
    let v6 = |a: u128| {
        let t = Ipv6Addr::from(a).to_string();
        if bracket { format!("[{t}]") } else { t }
    };
    let has_range = n.ipv4_min.is_some() || n.ipv6_min.is_some();
    if has_range {
        s.push('=');
        if let Some(lo) = n.ipv4_min {
            s.push_str(&Ipv4Addr::from(lo).to_string());
            if let Some(hi) = n.ipv4_max.filter(|&h| h != 0 && h != lo) {
                let _ = write!(s, "-{}", Ipv4Addr::from(hi));
            }
        } else if let Some(lo) = n.ipv6_min {
            s.push_str(&v6(lo));
            if let Some(hi) = n.ipv6_max.filter(|&h| h != 0 && h != lo) {
                let _ = write!(s, "-{}", v6(hi));
            }
        }
        if let Some(p) = n.proto_min.filter(|&p| p != 0) {
            let _ = write!(s, ":{p}");
            if let Some(hi) = n.proto_max.filter(|&h| h != 0 && h != p) {
                let _ = write!(s, "-{hi}");
            }
        }
        if n.flags & nat_flags::PERSISTENT != 0 {
            s.push_str(",persistent");
        }
        if n.flags & nat_flags::PROTO_HASH != 0 {
            s.push_str(",hash");
        }
        if n.flags & nat_flags::PROTO_RANDOM != 0 {
            s.push_str(",random");
        }
    }
    s.push(')');
}

fn format_learn(ln: &Learn, s: &mut String) {
    let _ = write!(s, "learn(table={}", ln.table_id);
    if ln.idle_timeout != 0 {
        let _ = write!(s, ",idle_timeout={}", ln.idle_timeout);
    }
    if ln.hard_timeout != 0 {
        let _ = write!(s, ",hard_timeout={}", ln.hard_timeout);
    }
    if ln.fin_idle_timeout != 0 {
        let _ = write!(s, ",fin_idle_timeout={}", ln.fin_idle_timeout);
    }
    if ln.fin_hard_timeout != 0 {
        let _ = write!(s, ",fin_hard_timeout={}", ln.fin_hard_timeout);
    }
    if ln.priority != 0x8000 {
        let _ = write!(s, ",priority={}", ln.priority);
    }
    if ln.flags & learn_flags::SEND_FLOW_REM != 0 {
        s.push_str(",send_flow_rem");
    }
    if ln.flags & learn_flags::DELETE_LEARNED != 0 {
        s.push_str(",delete_learned");
    }
    if ln.cookie != 0 {
        let _ = write!(s, ",cookie={:#x}", ln.cookie);
    }
    if ln.limit != 0 {
        let _ = write!(s, ",limit={}", ln.limit);
    }
    if let Some(d) = &ln.result_dst {
        let _ = write!(s, ",result_dst={}", format_subfield(d));
    }
    for spec in &ln.specs {
        s.push(',');
        match (spec.src, spec.dst) {
            (LearnSrc::Imm(v), LearnDst::Match(d)) => {
                if d.is_full() {
                    let _ = write!(s, "{}={}", ovs_name(d.field), format_value(d.field, v));
                } else {
                    let _ = write!(s, "{}={}", format_subfield(&d), put_hex(v));
                }
            }
            (LearnSrc::Field(src), LearnDst::Match(d)) => {
                s.push_str(&format_subfield(&d));
                if src.field != d.field || src.ofs != d.ofs {
                    let _ = write!(s, "={}", format_subfield(&src));
                }
            }
            (LearnSrc::Imm(v), LearnDst::Load(d)) => {
                let _ = write!(s, "load:{}->{}", put_hex(v), format_subfield(&d));
            }
            (LearnSrc::Field(src), LearnDst::Load(d)) => {
                let _ = write!(s, "load:{}->{}", format_subfield(&src), format_subfield(&d));
            }
            (LearnSrc::Field(src), LearnDst::Output) => {
                let _ = write!(s, "output:{}", format_subfield(&src));
            }
            (LearnSrc::Imm(_), LearnDst::Output) => s.push_str("output:<invalid>"),
        }
    }
    s.push(')');
}
