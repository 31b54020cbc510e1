//! OXM/NXM match fields: the field table, TLV headers, `ofp_match`, masks and
//! prerequisites.
//!
//! Every field is described once in [`FIELDS`] (name as `ovs-ofctl` spells it,
//! wire header, width, maskability, prerequisite, text format). Values are
//! held as `u128` right-aligned in the field's wire width, which covers every
//! field up to 128 bits (IPv6 addresses, `ct_label`, `xxreg`). The same table
//! serves the match codec, `set_field`, the NX actions that name fields
//! (`reg_load`, `move`, `learn`, `output:reg`) and the text form.

use crate::error::{BadMatchCode, DecodeError, OfpError};
use crate::wire::{ONF_VENDOR_ID, Reader, pad_len};
use bytes::BufMut;

/// OXM class of OpenFlow basic fields.
pub const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// OXM class of OpenFlow 1.3 packet registers (`xreg0..7`).
pub const OFPXMC_PACKET_REGS: u16 = 0x8001;
/// OXM class of experimenter fields (a 32-bit experimenter id follows the header).
pub const OFPXMC_EXPERIMENTER: u16 = 0xffff;
/// Nicira NXM classes.
pub const NXM_0: u16 = 0x0000;
pub const NXM_1: u16 = 0x0001;

/// `ofp_match.type` for OXM matches.
pub const OFPMT_OXM: u16 = 1;

/// `OFPVID_PRESENT`: the bit of `vlan_vid` that says a VLAN tag is present.
pub const OFPVID_PRESENT: u16 = 0x1000;

/// `ct_state` flag bits.
pub mod ct_state {
    pub const NEW: u32 = 0x01;
    pub const EST: u32 = 0x02;
    pub const REL: u32 = 0x04;
    pub const RPL: u32 = 0x08;
    pub const INV: u32 = 0x10;
    pub const TRK: u32 = 0x20;
    pub const SNAT: u32 = 0x40;
    pub const DNAT: u32 = 0x80;
    /// Flag names in the order `ovs-ofctl` prints them.
    pub const NAMES: &[(u32, &str)] = &[
        (NEW, "new"),
        (EST, "est"),
        (REL, "rel"),
        (RPL, "rpl"),
        (INV, "inv"),
        (TRK, "trk"),
        (SNAT, "snat"),
        (DNAT, "dnat"),
    ];
}

/// What a field requires of the rest of the match (OpenFlow 1.3 §7.2.3.6, and
/// OVS's rules for the Nicira fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    None,
    /// `in_port` present (for `in_phy_port`).
    InPort,
    /// `vlan_vid` with `OFPVID_PRESENT` matched as set.
    VlanVid,
    Ipv4,
    Ipv6,
    /// IPv4 or IPv6.
    Ip,
    Arp,
    Mpls,
    Pbb,
    Tcp,
    Udp,
    Sctp,
    Icmpv4,
    Icmpv6,
    /// ICMPv6 type 135 or 136.
    Nd,
    /// ICMPv6 type 135.
    NdSolicit,
    /// ICMPv6 type 136.
    NdAdvert,
    /// `ct_state` implies a valid connection (OVS's `is_ct_valid`).
    Ct,
}

/// How a field's value is written in `ovs-ofctl` syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Decimal,
    Hex,
    Mac,
    Ipv4,
    Ipv6,
    /// OpenFlow port number (`LOCAL`, `CONTROLLER`, … for reserved ports).
    Port,
    /// Ethertype, printed in hex.
    EthType,
    /// `vlan_vid` with the present bit.
    VlanVid,
    CtState,
    TcpFlags,
    TunFlags,
    /// `ip_frag`: no / first / later / yes / not_later.
    Frag,
}

macro_rules! fields {
    ($( $var:ident => $name:literal, $class:expr, $field:expr, $exp:expr, $len:expr, $bits:expr, $mask:expr, $pre:ident, $fmt:ident; )*) => {
        /// A logical match field. Several wire headers may name one field
        /// (e.g. `NXM_OF_ETH_DST` and `OXM_OF_ETH_DST`); decoding accepts all of
        /// them and encoding uses the one OVS uses for OpenFlow 1.3.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum FieldId { $($var),* }

        /// The field table, indexed by `FieldId as usize`.
        pub static FIELDS: &[FieldInfo] = &[
            $(FieldInfo {
                id: FieldId::$var,
                name: $name,
                class: $class,
                field: $field,
                experimenter: $exp,
                len: $len,
                bits: $bits,
                maskable: $mask,
                prereq: Prereq::$pre,
                format: Format::$fmt,
            }),*
        ];
    };
}

const NONE: Option<u32> = None;
const ONF: Option<u32> = Some(ONF_VENDOR_ID);
const B: u16 = OFPXMC_OPENFLOW_BASIC;

fields! {
    // OpenFlow 1.3 basic fields (OXM_OF_*), in ofp_oxm_ofb_match_fields order.
    InPort => "in_port", B, 0, NONE, 4, 32, false, None, Port;
    InPhyPort => "in_phy_port", B, 1, NONE, 4, 32, false, InPort, Port;
    Metadata => "metadata", B, 2, NONE, 8, 64, true, None, Hex;
    EthDst => "dl_dst", B, 3, NONE, 6, 48, true, None, Mac;
    EthSrc => "dl_src", B, 4, NONE, 6, 48, true, None, Mac;
    EthType => "dl_type", B, 5, NONE, 2, 16, false, None, EthType;
    VlanVid => "vlan_vid", B, 6, NONE, 2, 13, true, None, VlanVid;
    VlanPcp => "vlan_pcp", B, 7, NONE, 1, 3, false, VlanVid, Decimal;
    IpDscp => "ip_dscp", B, 8, NONE, 1, 6, false, Ip, Decimal;
    IpEcn => "nw_ecn", B, 9, NONE, 1, 2, false, Ip, Decimal;
    IpProto => "nw_proto", B, 10, NONE, 1, 8, false, Ip, Decimal;
    Ipv4Src => "nw_src", B, 11, NONE, 4, 32, true, Ipv4, Ipv4;
    Ipv4Dst => "nw_dst", B, 12, NONE, 4, 32, true, Ipv4, Ipv4;
    TcpSrc => "tcp_src", B, 13, NONE, 2, 16, true, Tcp, Decimal;
    TcpDst => "tcp_dst", B, 14, NONE, 2, 16, true, Tcp, Decimal;
    UdpSrc => "udp_src", B, 15, NONE, 2, 16, true, Udp, Decimal;
    UdpDst => "udp_dst", B, 16, NONE, 2, 16, true, Udp, Decimal;
    SctpSrc => "sctp_src", B, 17, NONE, 2, 16, true, Sctp, Decimal;
    SctpDst => "sctp_dst", B, 18, NONE, 2, 16, true, Sctp, Decimal;
    Icmpv4Type => "icmp_type", B, 19, NONE, 1, 8, false, Icmpv4, Decimal;
    Icmpv4Code => "icmp_code", B, 20, NONE, 1, 8, false, Icmpv4, Decimal;
    ArpOp => "arp_op", B, 21, NONE, 2, 16, false, Arp, Decimal;
    ArpSpa => "arp_spa", B, 22, NONE, 4, 32, true, Arp, Ipv4;
    ArpTpa => "arp_tpa", B, 23, NONE, 4, 32, true, Arp, Ipv4;
    ArpSha => "arp_sha", B, 24, NONE, 6, 48, true, Arp, Mac;
    ArpTha => "arp_tha", B, 25, NONE, 6, 48, true, Arp, Mac;
    Ipv6Src => "ipv6_src", B, 26, NONE, 16, 128, true, Ipv6, Ipv6;
    Ipv6Dst => "ipv6_dst", B, 27, NONE, 16, 128, true, Ipv6, Ipv6;
    Ipv6Flabel => "ipv6_label", B, 28, NONE, 4, 20, true, Ipv6, Hex;
    Icmpv6Type => "icmpv6_type", B, 29, NONE, 1, 8, false, Icmpv6, Decimal;
    Icmpv6Code => "icmpv6_code", B, 30, NONE, 1, 8, false, Icmpv6, Decimal;
    Ipv6NdTarget => "nd_target", B, 31, NONE, 16, 128, true, Nd, Ipv6;
    Ipv6NdSll => "nd_sll", B, 32, NONE, 6, 48, true, NdSolicit, Mac;
    Ipv6NdTll => "nd_tll", B, 33, NONE, 6, 48, true, NdAdvert, Mac;
    MplsLabel => "mpls_label", B, 34, NONE, 4, 20, false, Mpls, Decimal;
    MplsTc => "mpls_tc", B, 35, NONE, 1, 3, false, Mpls, Decimal;
    MplsBos => "mpls_bos", B, 36, NONE, 1, 1, false, Mpls, Decimal;
    PbbIsid => "pbb_isid", B, 37, NONE, 3, 24, true, Pbb, Decimal;
    TunnelId => "tun_id", B, 38, NONE, 8, 64, true, None, Hex;
    Ipv6Exthdr => "ipv6_exthdr", B, 39, NONE, 2, 9, true, Ipv6, Hex;
    // ONF experimenter fields OVS uses with OpenFlow 1.3.
    TcpFlags => "tcp_flags", OFPXMC_EXPERIMENTER, 42, ONF, 2, 12, true, Tcp, TcpFlags;
    ActsetOutput => "actset_output", OFPXMC_EXPERIMENTER, 43, ONF, 4, 32, false, None, Port;
    // OXM_OF_PACKET_TYPE (OpenFlow 1.5; OVS also sends it with 1.3 when the
    // match has no other Ethernet-implying field).
    PacketType => "packet_type", B, 44, NONE, 4, 32, false, None, Hex;
    // OpenFlow 1.3 packet registers.
    XReg0 => "xreg0", OFPXMC_PACKET_REGS, 0, NONE, 8, 64, true, None, Hex;
    XReg1 => "xreg1", OFPXMC_PACKET_REGS, 1, NONE, 8, 64, true, None, Hex;
    XReg2 => "xreg2", OFPXMC_PACKET_REGS, 2, NONE, 8, 64, true, None, Hex;
    XReg3 => "xreg3", OFPXMC_PACKET_REGS, 3, NONE, 8, 64, true, None, Hex;
    XReg4 => "xreg4", OFPXMC_PACKET_REGS, 4, NONE, 8, 64, true, None, Hex;
    XReg5 => "xreg5", OFPXMC_PACKET_REGS, 5, NONE, 8, 64, true, None, Hex;
    XReg6 => "xreg6", OFPXMC_PACKET_REGS, 6, NONE, 8, 64, true, None, Hex;
    XReg7 => "xreg7", OFPXMC_PACKET_REGS, 7, NONE, 8, 64, true, None, Hex;
    // Nicira NXM_0 fields with no OXM equivalent.
    VlanTci => "vlan_tci", NXM_0, 4, NONE, 2, 16, true, None, Hex;
    NwTos => "nw_tos", NXM_0, 5, NONE, 1, 8, false, Ip, Decimal;
    // Nicira NXM_1 fields.
    Reg0 => "reg0", NXM_1, 0, NONE, 4, 32, true, None, Hex;
    Reg1 => "reg1", NXM_1, 1, NONE, 4, 32, true, None, Hex;
    Reg2 => "reg2", NXM_1, 2, NONE, 4, 32, true, None, Hex;
    Reg3 => "reg3", NXM_1, 3, NONE, 4, 32, true, None, Hex;
    Reg4 => "reg4", NXM_1, 4, NONE, 4, 32, true, None, Hex;
    Reg5 => "reg5", NXM_1, 5, NONE, 4, 32, true, None, Hex;
    Reg6 => "reg6", NXM_1, 6, NONE, 4, 32, true, None, Hex;
    Reg7 => "reg7", NXM_1, 7, NONE, 4, 32, true, None, Hex;
    Reg8 => "reg8", NXM_1, 8, NONE, 4, 32, true, None, Hex;
    Reg9 => "reg9", NXM_1, 9, NONE, 4, 32, true, None, Hex;
    Reg10 => "reg10", NXM_1, 10, NONE, 4, 32, true, None, Hex;
    Reg11 => "reg11", NXM_1, 11, NONE, 4, 32, true, None, Hex;
    Reg12 => "reg12", NXM_1, 12, NONE, 4, 32, true, None, Hex;
    Reg13 => "reg13", NXM_1, 13, NONE, 4, 32, true, None, Hex;
    Reg14 => "reg14", NXM_1, 14, NONE, 4, 32, true, None, Hex;
    Reg15 => "reg15", NXM_1, 15, NONE, 4, 32, true, None, Hex;
    IpFrag => "nw_frag", NXM_1, 26, NONE, 1, 2, true, Ip, Frag;
    IpTtl => "nw_ttl", NXM_1, 29, NONE, 1, 8, false, Ip, Decimal;
    MplsTtl => "mpls_ttl", NXM_1, 30, NONE, 1, 8, false, Mpls, Decimal;
    TunIpv4Src => "tun_src", NXM_1, 31, NONE, 4, 32, true, None, Ipv4;
    TunIpv4Dst => "tun_dst", NXM_1, 32, NONE, 4, 32, true, None, Ipv4;
    PktMark => "pkt_mark", NXM_1, 33, NONE, 4, 32, true, None, Hex;
    ConjId => "conj_id", NXM_1, 37, NONE, 4, 32, false, None, Decimal;
    TunGbpId => "tun_gbp_id", NXM_1, 38, NONE, 2, 16, true, None, Decimal;
    TunGbpFlags => "tun_gbp_flags", NXM_1, 39, NONE, 1, 8, true, None, Hex;
    TunFlags => "tun_flags", NXM_1, 104, NONE, 2, 16, true, None, TunFlags;
    CtState => "ct_state", NXM_1, 105, NONE, 4, 32, true, None, CtState;
    CtZone => "ct_zone", NXM_1, 106, NONE, 2, 16, false, None, Hex;
    CtMark => "ct_mark", NXM_1, 107, NONE, 4, 32, true, None, Hex;
    CtLabel => "ct_label", NXM_1, 108, NONE, 16, 128, true, None, Hex;
    TunIpv6Src => "tun_ipv6_src", NXM_1, 109, NONE, 16, 128, true, None, Ipv6;
    TunIpv6Dst => "tun_ipv6_dst", NXM_1, 110, NONE, 16, 128, true, None, Ipv6;
    XXReg0 => "xxreg0", NXM_1, 111, NONE, 16, 128, true, None, Hex;
    XXReg1 => "xxreg1", NXM_1, 112, NONE, 16, 128, true, None, Hex;
    XXReg2 => "xxreg2", NXM_1, 113, NONE, 16, 128, true, None, Hex;
    XXReg3 => "xxreg3", NXM_1, 114, NONE, 16, 128, true, None, Hex;
    CtNwProto => "ct_nw_proto", NXM_1, 119, NONE, 1, 8, false, Ct, Decimal;
    CtNwSrc => "ct_nw_src", NXM_1, 120, NONE, 4, 32, true, Ct, Ipv4;
    CtNwDst => "ct_nw_dst", NXM_1, 121, NONE, 4, 32, true, Ct, Ipv4;
    CtIpv6Src => "ct_ipv6_src", NXM_1, 122, NONE, 16, 128, true, Ct, Ipv6;
    CtIpv6Dst => "ct_ipv6_dst", NXM_1, 123, NONE, 16, 128, true, Ct, Ipv6;
    CtTpSrc => "ct_tp_src", NXM_1, 124, NONE, 2, 16, true, Ct, Decimal;
    CtTpDst => "ct_tp_dst", NXM_1, 125, NONE, 2, 16, true, Ct, Decimal;
}

/// Static description of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub id: FieldId,
    /// The name `ovs-ofctl` prints.
    pub name: &'static str,
    /// Wire header used when encoding (OpenFlow 1.3 choice).
    pub class: u16,
    pub field: u8,
    pub experimenter: Option<u32>,
    /// Value length on the wire in bytes.
    pub len: u8,
    /// Meaningful bits (the rest of `len * 8` must be zero).
    pub bits: u16,
    pub maskable: bool,
    pub prereq: Prereq,
    pub format: Format,
}

/// Other wire headers that decode to a field: (class, field, value length).
/// `NXM_OF_IN_PORT` is 16 bits wide; the rest have the canonical width.
const ALIASES: &[(u16, u8, u8, FieldId)] = &[
    (NXM_0, 0, 2, FieldId::InPort),
    (NXM_0, 1, 6, FieldId::EthDst),
    (NXM_0, 2, 6, FieldId::EthSrc),
    (NXM_0, 3, 2, FieldId::EthType),
    (NXM_0, 6, 1, FieldId::IpProto),
    (NXM_0, 7, 4, FieldId::Ipv4Src),
    (NXM_0, 8, 4, FieldId::Ipv4Dst),
    (NXM_0, 9, 2, FieldId::TcpSrc),
    (NXM_0, 10, 2, FieldId::TcpDst),
    (NXM_0, 11, 2, FieldId::UdpSrc),
    (NXM_0, 12, 2, FieldId::UdpDst),
    (NXM_0, 13, 1, FieldId::Icmpv4Type),
    (NXM_0, 14, 1, FieldId::Icmpv4Code),
    (NXM_0, 15, 2, FieldId::ArpOp),
    (NXM_0, 16, 4, FieldId::ArpSpa),
    (NXM_0, 17, 4, FieldId::ArpTpa),
    (NXM_1, 16, 8, FieldId::TunnelId),
    (NXM_1, 17, 6, FieldId::ArpSha),
    (NXM_1, 18, 6, FieldId::ArpTha),
    (NXM_1, 19, 16, FieldId::Ipv6Src),
    (NXM_1, 20, 16, FieldId::Ipv6Dst),
    (NXM_1, 21, 1, FieldId::Icmpv6Type),
    (NXM_1, 22, 1, FieldId::Icmpv6Code),
    (NXM_1, 23, 16, FieldId::Ipv6NdTarget),
    (NXM_1, 24, 6, FieldId::Ipv6NdSll),
    (NXM_1, 25, 6, FieldId::Ipv6NdTll),
    (NXM_1, 27, 4, FieldId::Ipv6Flabel),
    (NXM_1, 28, 1, FieldId::IpEcn),
    (NXM_1, 34, 2, FieldId::TcpFlags),
];

/// Extra names `ovs-ofctl` accepts for a field.
const NAME_ALIASES: &[(&str, FieldId)] = &[
    ("eth_dst", FieldId::EthDst),
    ("eth_src", FieldId::EthSrc),
    ("eth_type", FieldId::EthType),
    ("ip_src", FieldId::Ipv4Src),
    ("ip_dst", FieldId::Ipv4Dst),
    ("ip_proto", FieldId::IpProto),
    ("ip_ecn", FieldId::IpEcn),
    ("ip_frag", FieldId::IpFrag),
    ("tunnel_id", FieldId::TunnelId),
    ("tp_src", FieldId::TcpSrc),
    ("tp_dst", FieldId::TcpDst),
    ("in_port_oxm", FieldId::InPort),
    ("ipv6_flabel", FieldId::Ipv6Flabel),
    ("icmpv4_type", FieldId::Icmpv4Type),
    ("icmpv4_code", FieldId::Icmpv4Code),
];

impl FieldId {
    pub fn info(self) -> &'static FieldInfo {
        &FIELDS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// All fields.
    pub fn all() -> impl Iterator<Item = FieldId> {
        FIELDS.iter().map(|f| f.id)
    }

    /// Looks a field up by any name `ovs-ofctl` accepts for it.
    pub fn from_name(name: &str) -> Option<FieldId> {
        if let Some(f) = FIELDS.iter().find(|f| f.name == name) {
            return Some(f.id);
        }
        NAME_ALIASES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
    }

    /// All-ones value of the field's meaningful width.
    pub fn full_mask(self) -> u128 {
        let bits = self.info().bits;
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }

    /// Width of the value on the wire, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        self.info().len as usize
    }

    /// Register fields (`reg*`, `xreg*`, `xxreg*`, `metadata`, `pkt_mark`,
    /// `ct_mark`, `ct_label`, tunnel fields) are writable by every action.
    pub fn is_register(self) -> bool {
        matches!(self.info().format, Format::Hex)
            && !matches!(
                self,
                FieldId::Ipv6Flabel | FieldId::Ipv6Exthdr | FieldId::VlanTci
            )
    }
}

/// A decoded OXM/NXM TLV header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmHeader {
    pub field: FieldId,
    pub has_mask: bool,
    /// Value length on the wire (may be narrower than canonical for aliases).
    pub value_len: usize,
    /// Total header length: 4, or 8 for experimenter OXMs.
    pub header_len: usize,
}

fn bad_field() -> DecodeError {
    DecodeError::invalid("oxm field", OfpError::BadMatch(BadMatchCode::BadField))
}

fn bad_len() -> DecodeError {
    DecodeError::invalid("oxm length", OfpError::BadMatch(BadMatchCode::BadLen))
}

/// Decodes the header of the TLV at the cursor (without consuming the value).
pub fn decode_header(r: &mut Reader<'_>) -> Result<OxmHeader, DecodeError> {
    let h = r.u32("oxm header").map_err(|_| bad_len())?;
    let class = (h >> 16) as u16;
    let field = ((h >> 9) & 0x7f) as u8;
    let has_mask = h & 0x100 != 0;
    let mut payload = (h & 0xff) as usize;
    let mut header_len = 4;
    let experimenter = if class == OFPXMC_EXPERIMENTER {
        let e = r.u32("oxm experimenter").map_err(|_| bad_len())?;
        if payload < 4 {
            return Err(bad_len());
        }
        payload -= 4;
        header_len = 8;
        Some(e)
    } else {
        None
    };
    let (id, value_len) = lookup(class, field, experimenter).ok_or_else(bad_field)?;
    let expect = if has_mask { value_len * 2 } else { value_len };
    if payload != expect {
        return Err(bad_len());
    }
    Ok(OxmHeader {
        field: id,
        has_mask,
        value_len,
        header_len,
    })
}

fn lookup(class: u16, field: u8, experimenter: Option<u32>) -> Option<(FieldId, usize)> {
    if let Some(f) = FIELDS
        .iter()
        .find(|f| f.class == class && f.field == field && f.experimenter == experimenter)
    {
        return Some((f.id, f.len as usize));
    }
    if experimenter.is_some() {
        return None;
    }
    ALIASES
        .iter()
        .find(|(c, fl, _, _)| *c == class && *fl == field)
        .map(|(_, _, len, id)| (*id, *len as usize))
}

/// Writes the canonical OpenFlow 1.3 header for `field`.
pub fn encode_header(out: &mut Vec<u8>, field: FieldId, has_mask: bool) {
    let f = field.info();
    let mut payload = f.len as u32 * if has_mask { 2 } else { 1 };
    if f.experimenter.is_some() {
        payload += 4;
    }
    let h = ((f.class as u32) << 16) | ((f.field as u32) << 9) | ((has_mask as u32) << 8) | payload;
    out.put_u32(h);
    if let Some(e) = f.experimenter {
        out.put_u32(e);
    }
}

/// The 32-bit NXM/OXM header used by NX actions that name a field
/// (`reg_load`, `move`, `learn`, `output:reg`). Experimenter fields have no
/// 32-bit form and are refused by those actions.
pub fn nxm_header(field: FieldId) -> u32 {
    let f = field.info();
    let payload = f.len as u32 + if f.experimenter.is_some() { 4 } else { 0 };
    ((f.class as u32) << 16) | ((f.field as u32) << 9) | payload
}

/// Resolves a 32-bit NXM header (mask bit ignored) to a field.
pub fn field_from_nxm_header(h: u32) -> Option<FieldId> {
    let class = (h >> 16) as u16;
    let field = ((h >> 9) & 0x7f) as u8;
    if class == OFPXMC_EXPERIMENTER {
        return None;
    }
    lookup(class, field, None).map(|(id, _)| id)
}

/// Reads a big-endian value of `len` bytes into a u128.
pub fn read_value(r: &mut Reader<'_>, len: usize) -> Result<u128, DecodeError> {
    let b = r.bytes(len, "oxm value").map_err(|_| bad_len())?;
    Ok(be_to_u128(b))
}

pub fn be_to_u128(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, &x| (acc << 8) | x as u128)
}

/// Writes the low `len` bytes of `v` big-endian.
pub fn write_value(out: &mut Vec<u8>, v: u128, len: usize) {
    let bytes = v.to_be_bytes();
    out.extend_from_slice(&bytes[16 - len..]);
}

/// One match entry: a field, its value and an optional mask. A mask is only
/// present when it is not all-ones (the codec normalises full masks away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatchField {
    pub field: FieldId,
    pub value: u128,
    pub mask: Option<u128>,
}

impl MatchField {
    pub fn exact(field: FieldId, value: u128) -> Self {
        Self {
            field,
            value,
            mask: None,
        }
    }

    pub fn masked(field: FieldId, value: u128, mask: u128) -> Self {
        if mask == field.full_mask() {
            Self::exact(field, value)
        } else {
            Self {
                field,
                value,
                mask: Some(mask),
            }
        }
    }

    /// The effective mask (all-ones when exact).
    pub fn mask_or_full(&self) -> u128 {
        self.mask.unwrap_or_else(|| self.field.full_mask())
    }

    /// Encodes the TLV.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = self.field.len();
        encode_header(out, self.field, self.mask.is_some());
        write_value(out, self.value, len);
        if let Some(m) = self.mask {
            write_value(out, m, len);
        }
    }

    /// Wire length of the TLV.
    pub fn wire_len(&self) -> usize {
        let f = self.field.info();
        let hdr = if f.experimenter.is_some() { 8 } else { 4 };
        hdr + f.len as usize * if self.mask.is_some() { 2 } else { 1 }
    }

    /// Decodes one TLV and validates value/mask against the field's width.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let h = decode_header(r)?;
        let value = read_value(r, h.value_len)?;
        let mask = if h.has_mask {
            Some(read_value(r, h.value_len)?)
        } else {
            None
        };
        Self::validated(h.field, value, mask)
    }

    /// Checks a value/mask pair and normalises it (full mask → exact).
    pub fn validated(field: FieldId, value: u128, mask: Option<u128>) -> Result<Self, DecodeError> {
        let info = field.info();
        let full = field.full_mask();
        if let Some(m) = mask {
            if !info.maskable {
                return Err(DecodeError::invalid(
                    "oxm mask on non-maskable field",
                    OfpError::BadMatch(BadMatchCode::BadMask),
                ));
            }
            if m & !full != 0 {
                return Err(DecodeError::invalid(
                    "oxm mask wider than field",
                    OfpError::BadMatch(BadMatchCode::BadMask),
                ));
            }
            if value & !m != 0 {
                return Err(DecodeError::invalid(
                    "oxm value has bits outside its mask",
                    OfpError::BadMatch(BadMatchCode::BadWildcards),
                ));
            }
        }
        if value & !full != 0 {
            return Err(DecodeError::invalid(
                "oxm value wider than field",
                OfpError::BadMatch(BadMatchCode::BadValue),
            ));
        }
        Ok(Self::masked(field, value, mask.unwrap_or(full)))
    }
}

/// `ofp_match` with OXM TLVs. Fields keep the order they were added/decoded in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub fields: Vec<MatchField>,
}

impl Match {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry for `field`, if matched.
    pub fn get(&self, field: FieldId) -> Option<&MatchField> {
        self.fields.iter().find(|f| f.field == field)
    }

    /// The exact value matched for `field` (None when absent or masked).
    pub fn exact(&self, field: FieldId) -> Option<u128> {
        self.get(field)
            .filter(|f| f.mask.is_none())
            .map(|f| f.value)
    }

    /// Adds or replaces an exact match.
    pub fn set(&mut self, field: FieldId, value: u128) -> &mut Self {
        self.set_field(MatchField::exact(field, value))
    }

    /// Adds or replaces a masked match.
    pub fn set_masked(&mut self, field: FieldId, value: u128, mask: u128) -> &mut Self {
        self.set_field(MatchField::masked(field, value & mask, mask))
    }

    pub fn set_field(&mut self, mf: MatchField) -> &mut Self {
        match self.fields.iter_mut().find(|f| f.field == mf.field) {
            Some(f) => *f = mf,
            None => self.fields.push(mf),
        }
        self
    }

    pub fn remove(&mut self, field: FieldId) {
        self.fields.retain(|f| f.field != field);
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Length of the `ofp_match` without trailing padding.
    pub fn unpadded_len(&self) -> usize {
        4 + self.fields.iter().map(MatchField::wire_len).sum::<usize>()
    }

    /// Writes `ofp_match` (type OXM) including its padding to 8 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = self.unpadded_len();
        out.put_u16(OFPMT_OXM);
        out.put_u16(len as u16);
        for f in &self.fields {
            f.encode(out);
        }
        out.resize(out.len() + pad_len(len), 0);
    }

    /// Writes only the OXM TLVs (no `ofp_match` header, no padding), as used by
    /// packet-in2 properties and NX messages.
    pub fn encode_oxms(&self, out: &mut Vec<u8>) {
        for f in &self.fields {
            f.encode(out);
        }
    }

    /// Reads `ofp_match` and its padding. Checks TLV framing, duplicate
    /// fields, masks and value widths; prerequisites are checked separately by
    /// [`Match::check_prerequisites`] (flow-mods need it, packet-ins don't).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = r.u16("ofp_match.type").map_err(|_| bad_len())?;
        let len = r.u16("ofp_match.length").map_err(|_| bad_len())? as usize;
        if ty != OFPMT_OXM {
            return Err(DecodeError::invalid(
                "ofp_match.type",
                OfpError::BadMatch(BadMatchCode::BadType),
            ));
        }
        if len < 4 {
            return Err(bad_len());
        }
        let mut body = r.sub(len - 4, "ofp_match oxms").map_err(|_| bad_len())?;
        r.skip(pad_len(len), "ofp_match padding")
            .map_err(|_| bad_len())?;
        Self::decode_oxms(&mut body)
    }

    /// Decodes a sequence of OXM TLVs filling the whole reader.
    pub fn decode_oxms(body: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut m = Match::new();
        while !body.is_empty() {
            let f = MatchField::decode(body)?;
            if m.get(f.field).is_some() {
                return Err(DecodeError::invalid(
                    "duplicate oxm field",
                    OfpError::BadMatch(BadMatchCode::DupField),
                ));
            }
            m.fields.push(f);
        }
        Ok(m)
    }

    fn exact_u(&self, field: FieldId) -> Option<u128> {
        self.exact(field)
    }

    /// Whether the match pins `eth_type` to one of `types`.
    fn eth_type_in(&self, types: &[u16]) -> bool {
        self.exact_u(FieldId::EthType)
            .is_some_and(|t| types.iter().any(|&x| x as u128 == t))
    }

    fn ip_proto_is(&self, proto: u8) -> bool {
        self.eth_type_in(&[0x0800, 0x86dd]) && self.exact_u(FieldId::IpProto) == Some(proto as u128)
    }

    /// Checks one prerequisite against this match.
    pub fn satisfies(&self, p: Prereq) -> bool {
        match p {
            Prereq::None => true,
            Prereq::InPort => self.get(FieldId::InPort).is_some(),
            Prereq::VlanVid => self.get(FieldId::VlanVid).is_some_and(|f| {
                let p = OFPVID_PRESENT as u128;
                f.value & p != 0 && f.mask_or_full() & p != 0
            }),
            Prereq::Ipv4 => self.eth_type_in(&[0x0800]),
            Prereq::Ipv6 => self.eth_type_in(&[0x86dd]),
            Prereq::Ip => self.eth_type_in(&[0x0800, 0x86dd]),
            Prereq::Arp => self.eth_type_in(&[0x0806, 0x8035]),
            Prereq::Mpls => self.eth_type_in(&[0x8847, 0x8848]),
            Prereq::Pbb => self.eth_type_in(&[0x88e7]),
            Prereq::Tcp => self.ip_proto_is(6),
            Prereq::Udp => self.ip_proto_is(17),
            Prereq::Sctp => self.ip_proto_is(132),
            Prereq::Icmpv4 => {
                self.eth_type_in(&[0x0800]) && self.exact_u(FieldId::IpProto) == Some(1)
            }
            Prereq::Icmpv6 => {
                self.eth_type_in(&[0x86dd]) && self.exact_u(FieldId::IpProto) == Some(58)
            }
            Prereq::Nd => {
                self.satisfies(Prereq::Icmpv6)
                    && matches!(self.exact_u(FieldId::Icmpv6Type), Some(135) | Some(136))
            }
            Prereq::NdSolicit => {
                self.satisfies(Prereq::Icmpv6) && self.exact_u(FieldId::Icmpv6Type) == Some(135)
            }
            Prereq::NdAdvert => {
                self.satisfies(Prereq::Icmpv6) && self.exact_u(FieldId::Icmpv6Type) == Some(136)
            }
            // OVS `is_ct_valid`: some bit implying a valid connection is
            // matched as set, or +trk with an explicit -inv.
            Prereq::Ct => self.get(FieldId::CtState).is_some_and(|f| {
                use ct_state::*;
                let v = f.value as u32;
                let m = f.mask_or_full() as u32;
                v & (NEW | EST | REL | RPL | SNAT | DNAT) != 0
                    || (v & TRK != 0 && m & INV != 0 && v & INV == 0)
            }),
        }
    }

    /// OpenFlow 1.3 §7.2.3.6: every field's prerequisites must be matched.
    /// Returns `OFPBMC_BAD_PREREQ` naming the first offender.
    pub fn check_prerequisites(&self) -> Result<(), DecodeError> {
        for f in &self.fields {
            if !self.satisfies(f.field.info().prereq) {
                return Err(DecodeError::invalid(
                    f.field.name(),
                    OfpError::BadMatch(BadMatchCode::BadPrereq),
                ));
            }
        }
        Ok(())
    }
}

/// The 32-bit header OVS puts in NX actions (`reg_load`, `move`, `learn`,
/// `output:reg`, `ct` zone, `multipath`, `bundle_load`) for `field`: the
/// Nicira NXM header when the field has one (e.g. `NXM_OF_ETH_SRC`,
/// 16-bit `NXM_OF_IN_PORT`), else the canonical OXM header. Returns the
/// header and the field width in bits that header implies.
pub fn nx_action_header(field: FieldId) -> (u32, u16) {
    if let Some((class, fl, len, _)) = ALIASES.iter().find(|(_, _, _, id)| *id == field) {
        let bits = if field == FieldId::InPort {
            16
        } else {
            field.info().bits
        };
        return (
            ((*class as u32) << 16) | ((*fl as u32) << 9) | *len as u32,
            bits,
        );
    }
    (nxm_header(field), field.info().bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_id() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.id as usize, i, "{}", f.name);
            assert!(f.bits as usize <= f.len as usize * 8, "{}", f.name);
        }
    }

    #[test]
    fn headers_are_unique() {
        for a in FIELDS {
            for b in FIELDS {
                if a.id != b.id {
                    assert!(
                        !(a.class == b.class
                            && a.field == b.field
                            && a.experimenter == b.experimenter),
                        "{} and {} share a header",
                        a.name,
                        b.name
                    );
                }
            }
        }
    }

    #[test]
    fn encode_known_bytes() {
        // nw_src=10.0.0.0/24 with dl_type=0x0800: OXM_OF_ETH_TYPE, OXM_OF_IPV4_SRC_W.
        let mut m = Match::new();
        m.set(FieldId::EthType, 0x0800);
        m.set_masked(FieldId::Ipv4Src, 0x0a00_0000, 0xffff_ff00);
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(
            out,
            [
                0x00, 0x01, 0x00, 0x16, 0x80, 0x00, 0x0a, 0x02, 0x08, 0x00, 0x80, 0x00, 0x17, 0x08,
                0x0a, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0, 0
            ]
        );
        let back = Match::decode(&mut Reader::new(&out)).unwrap();
        assert_eq!(back, m);
        back.check_prerequisites().unwrap();
    }

    #[test]
    fn nx_and_experimenter_fields() {
        let mut m = Match::new();
        m.set(FieldId::Reg0, 7);
        m.set_masked(FieldId::CtState, 0x21, 0x21);
        m.set(FieldId::EthType, 0x0800);
        m.set(FieldId::IpProto, 6);
        m.set_masked(FieldId::TcpFlags, 0x002, 0x012);
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(out.len() % 8, 0);
        assert_eq!(Match::decode(&mut Reader::new(&out)).unwrap(), m);
    }

    #[test]
    fn errors() {
        // Prerequisite: tcp_dst without ip_proto.
        let mut m = Match::new();
        m.set(FieldId::EthType, 0x0800);
        m.set(FieldId::TcpDst, 80);
        let e = m.check_prerequisites().unwrap_err();
        assert_eq!(e.ofp_error(), OfpError::BadMatch(BadMatchCode::BadPrereq));
        // Unknown field.
        let bytes = [0x00, 0x01, 0x00, 0x08, 0x80, 0x00, 0xfe, 0x00];
        let e = Match::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(e.ofp_error(), OfpError::BadMatch(BadMatchCode::BadField));
        // Bad length: eth_type with 1 byte.
        let bytes = [
            0x00, 0x01, 0x00, 0x09, 0x80, 0x00, 0x0a, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0,
        ];
        let e = Match::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(e.ofp_error(), OfpError::BadMatch(BadMatchCode::BadLen));
        // Duplicate.
        let bytes = [
            0x00, 0x01, 0x00, 0x10, 0x80, 0x00, 0x0a, 0x02, 0x08, 0x00, 0x80, 0x00, 0x0a, 0x02,
            0x08, 0x00,
        ];
        let e = Match::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(e.ofp_error(), OfpError::BadMatch(BadMatchCode::DupField));
        // Mask on a non-maskable field.
        let bytes = [
            0x00, 0x01, 0x00, 0x0c, 0x80, 0x00, 0x0b, 0x04, 0x08, 0x00, 0xff, 0xff,
        ];
        let e = Match::decode(&mut Reader::new(&[&bytes[..], &[0, 0, 0, 0]].concat())).unwrap_err();
        assert_eq!(e.ofp_error(), OfpError::BadMatch(BadMatchCode::BadMask));
        // Value bits outside mask.
        let mut out = Vec::new();
        out.extend_from_slice(&[0x00, 0x01, 0x00, 0x10]);
        out.extend_from_slice(&[0x80, 0x00, 0x17, 0x08, 10, 0, 0, 1, 255, 255, 255, 0]);
        out.extend_from_slice(&[0; 0]);
        let e = Match::decode(&mut Reader::new(&out)).unwrap_err();
        assert_eq!(
            e.ofp_error(),
            OfpError::BadMatch(BadMatchCode::BadWildcards)
        );
    }

    #[test]
    fn nxm_alias_in_port() {
        // NXM_OF_IN_PORT (16 bits) decodes to in_port.
        let bytes = [
            0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x02, 0x00, 0x05, 0, 0, 0, 0, 0, 0,
        ];
        let m = Match::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(m.exact(FieldId::InPort), Some(5));
    }
}
