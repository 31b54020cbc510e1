//! The flow key: a fixed-size, word-addressed summary of one packet plus its
//! pipeline metadata, and the mapping from OpenFlow match fields onto it.
//!
//! A [`FlowKey`] is `[u64; FLOW_WORDS]`. Every OpenFlow field lives at a fixed
//! [`Loc`] (word, shift, width): hashing and masking are word-wise, a mask is
//! itself a `FlowKey`, and `get`/`set` by [`FieldId`] are shifts. Like OVS's
//! `struct flow`, fields that can never be meaningful at the same time share
//! storage, guarded by the match prerequisites the codec enforces:
//! - `nw_src`/`nw_dst` hold `arp_spa`/`arp_tpa` for ARP;
//! - `tp_src`/`tp_dst` hold TCP/UDP/SCTP ports and ICMPv4/ICMPv6 type/code;
//! - `arp_sha`/`arp_tha` hold `nd_sll`/`nd_tll` for ND;
//! - `vlan_tci` (OVS layout: PCP | CFI-as-present | VID) carries `vlan_vid`
//!   (its low 13 bits, bit 12 = `OFPVID_PRESENT`) and `vlan_pcp`;
//! - the MPLS label stack entry carries `mpls_label`/`tc`/`bos`/`ttl`;
//! - the IP TOS byte carries `ip_dscp`, `nw_ecn` and `nw_tos` (DSCP bits only);
//! - the 16 32-bit registers are the 8 `xreg`s and 4 `xxreg`s (OVS order:
//!   `xreg0 = reg0:reg1`, `xxreg0 = reg0:reg1:reg2:reg3`);
//! - `in_phy_port` reads `in_port`.

mod parse;

pub use parse::{PacketMeta, ParseError, ParseStats, TunnelMeta, parse, parse_into};

use plexus_openflow::oxm::{FIELDS, FieldId};
use std::fmt;

/// Number of 64-bit words in a [`FlowKey`].
pub const FLOW_WORDS: usize = 41;

/// One packet's flow key (also used as a mask: set bits are examined bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    /// The key as words. Layout: see [`loc`].
    pub w: [u64; FLOW_WORDS],
}

impl Default for FlowKey {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Where a field lives in the key: `bits` wide at `shift` in word `word`;
/// 128-bit fields take words `word` (high half) and `word + 1` (low half).
/// `fmask` are the field's meaningful bits (right-aligned; `nw_tos` only
/// exposes the DSCP bits of the TOS byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub word: u8,
    pub shift: u8,
    pub bits: u8,
    pub fmask: u64,
}

impl Loc {
    const fn new(word: u8, shift: u8, bits: u8) -> Self {
        let fmask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Self {
            word,
            shift,
            bits,
            fmask,
        }
    }

    const fn wide(word: u8) -> Self {
        Self {
            word,
            shift: 0,
            bits: 128,
            fmask: u64::MAX,
        }
    }

    const fn with_fmask(mut self, fmask: u64) -> Self {
        self.fmask = fmask;
        self
    }
}

/// Field locations, used by the parser directly.
pub mod layout {
    use super::Loc;
    pub const IN_PORT: Loc = Loc::new(0, 32, 32);
    pub const PKT_MARK: Loc = Loc::new(0, 0, 32);
    pub const METADATA: Loc = Loc::new(1, 0, 64);
    pub const TUN_ID: Loc = Loc::new(2, 0, 64);
    pub const TUN_SRC: Loc = Loc::new(3, 32, 32);
    pub const TUN_DST: Loc = Loc::new(3, 0, 32);
    pub const TUN_IPV6_SRC: Loc = Loc::wide(4);
    pub const TUN_IPV6_DST: Loc = Loc::wide(6);
    pub const TUN_FLAGS: Loc = Loc::new(8, 48, 16);
    pub const TUN_GBP_ID: Loc = Loc::new(8, 32, 16);
    pub const TUN_GBP_FLAGS: Loc = Loc::new(8, 24, 8);
    pub const CT_NW_PROTO: Loc = Loc::new(8, 16, 8);
    pub const CT_ZONE: Loc = Loc::new(8, 0, 16);
    pub const CT_STATE: Loc = Loc::new(9, 32, 32);
    pub const CT_MARK: Loc = Loc::new(9, 0, 32);
    pub const CT_LABEL: Loc = Loc::wide(10);
    pub const CT_NW_SRC: Loc = Loc::new(12, 32, 32);
    pub const CT_NW_DST: Loc = Loc::new(12, 0, 32);
    pub const CT_IPV6_SRC: Loc = Loc::wide(13);
    pub const CT_IPV6_DST: Loc = Loc::wide(15);
    pub const CT_TP_SRC: Loc = Loc::new(17, 48, 16);
    pub const CT_TP_DST: Loc = Loc::new(17, 32, 16);
    pub const CONJ_ID: Loc = Loc::new(17, 0, 32);
    /// First register word: word `REGS + k` = `reg(2k) << 32 | reg(2k+1)`.
    pub const REGS: u8 = 18;
    pub const ACTSET_OUTPUT: Loc = Loc::new(26, 32, 32);
    pub const PACKET_TYPE: Loc = Loc::new(26, 0, 32);
    pub const DL_DST: Loc = Loc::new(27, 16, 48);
    pub const DL_TYPE: Loc = Loc::new(27, 0, 16);
    pub const DL_SRC: Loc = Loc::new(28, 16, 48);
    pub const VLAN_TCI: Loc = Loc::new(28, 0, 16);
    pub const VLAN_VID: Loc = Loc::new(28, 0, 13);
    pub const VLAN_PCP: Loc = Loc::new(28, 13, 3);
    pub const MPLS_LSE: Loc = Loc::new(29, 32, 32);
    pub const MPLS_LABEL: Loc = Loc::new(29, 44, 20);
    pub const MPLS_TC: Loc = Loc::new(29, 41, 3);
    pub const MPLS_BOS: Loc = Loc::new(29, 40, 1);
    pub const MPLS_TTL: Loc = Loc::new(29, 32, 8);
    pub const PBB_ISID: Loc = Loc::new(29, 0, 24);
    pub const NW_SRC: Loc = Loc::new(30, 32, 32);
    pub const NW_DST: Loc = Loc::new(30, 0, 32);
    pub const IPV6_SRC: Loc = Loc::wide(31);
    pub const IPV6_DST: Loc = Loc::wide(33);
    pub const NW_PROTO: Loc = Loc::new(35, 56, 8);
    /// The whole TOS / traffic-class byte.
    pub const NW_TOS_BYTE: Loc = Loc::new(35, 48, 8);
    pub const NW_TOS: Loc = Loc::new(35, 48, 8).with_fmask(0xfc);
    pub const IP_DSCP: Loc = Loc::new(35, 50, 6);
    pub const IP_ECN: Loc = Loc::new(35, 48, 2);
    pub const NW_TTL: Loc = Loc::new(35, 40, 8);
    pub const NW_FRAG: Loc = Loc::new(35, 32, 2);
    pub const IPV6_LABEL: Loc = Loc::new(35, 0, 20);
    pub const TP_SRC: Loc = Loc::new(36, 48, 16);
    pub const TP_DST: Loc = Loc::new(36, 32, 16);
    pub const TCP_FLAGS: Loc = Loc::new(36, 16, 12);
    pub const ARP_OP: Loc = Loc::new(36, 0, 16);
    pub const ND_TARGET: Loc = Loc::wide(37);
    pub const ARP_SHA: Loc = Loc::new(39, 16, 48);
    pub const IPV6_EXTHDR: Loc = Loc::new(39, 0, 9);
    pub const ARP_THA: Loc = Loc::new(40, 16, 48);
}

/// `nw_frag` bits.
pub mod frag {
    /// Any fragment (first or later).
    pub const ANY: u64 = 1;
    /// A fragment with a non-zero offset.
    pub const LATER: u64 = 2;
}

/// `OFPVID_PRESENT`, also the CFI bit of the key's `vlan_tci`.
pub const VLAN_CFI: u16 = 0x1000;

/// The location of an OpenFlow field in the key.
pub fn loc(field: FieldId) -> Loc {
    use FieldId::*;
    use layout::*;
    let reg32 = |i: u8| Loc::new(REGS + i / 2, 32 - 32 * (i & 1), 32);
    match field {
        InPort | InPhyPort => IN_PORT,
        Metadata => METADATA,
        EthDst => DL_DST,
        EthSrc => DL_SRC,
        EthType => DL_TYPE,
        VlanVid => VLAN_VID,
        VlanPcp => VLAN_PCP,
        VlanTci => VLAN_TCI,
        IpDscp => IP_DSCP,
        IpEcn => IP_ECN,
        NwTos => NW_TOS,
        IpProto => NW_PROTO,
        Ipv4Src | ArpSpa => NW_SRC,
        Ipv4Dst | ArpTpa => NW_DST,
        TcpSrc | UdpSrc | SctpSrc => TP_SRC,
        TcpDst | UdpDst | SctpDst => TP_DST,
        Icmpv4Type | Icmpv6Type => Loc::new(36, 48, 8),
        Icmpv4Code | Icmpv6Code => Loc::new(36, 32, 8),
        ArpOp => ARP_OP,
        ArpSha | Ipv6NdSll => ARP_SHA,
        ArpTha | Ipv6NdTll => ARP_THA,
        Ipv6Src => IPV6_SRC,
        Ipv6Dst => IPV6_DST,
        Ipv6Flabel => IPV6_LABEL,
        Ipv6NdTarget => ND_TARGET,
        MplsLabel => MPLS_LABEL,
        MplsTc => MPLS_TC,
        MplsBos => MPLS_BOS,
        MplsTtl => MPLS_TTL,
        PbbIsid => PBB_ISID,
        TunnelId => TUN_ID,
        Ipv6Exthdr => IPV6_EXTHDR,
        TcpFlags => TCP_FLAGS,
        ActsetOutput => ACTSET_OUTPUT,
        PacketType => PACKET_TYPE,
        XReg0 => Loc::new(REGS, 0, 64),
        XReg1 => Loc::new(REGS + 1, 0, 64),
        XReg2 => Loc::new(REGS + 2, 0, 64),
        XReg3 => Loc::new(REGS + 3, 0, 64),
        XReg4 => Loc::new(REGS + 4, 0, 64),
        XReg5 => Loc::new(REGS + 5, 0, 64),
        XReg6 => Loc::new(REGS + 6, 0, 64),
        XReg7 => Loc::new(REGS + 7, 0, 64),
        Reg0 => reg32(0),
        Reg1 => reg32(1),
        Reg2 => reg32(2),
        Reg3 => reg32(3),
        Reg4 => reg32(4),
        Reg5 => reg32(5),
        Reg6 => reg32(6),
        Reg7 => reg32(7),
        Reg8 => reg32(8),
        Reg9 => reg32(9),
        Reg10 => reg32(10),
        Reg11 => reg32(11),
        Reg12 => reg32(12),
        Reg13 => reg32(13),
        Reg14 => reg32(14),
        Reg15 => reg32(15),
        XXReg0 => Loc::wide(REGS),
        XXReg1 => Loc::wide(REGS + 2),
        XXReg2 => Loc::wide(REGS + 4),
        XXReg3 => Loc::wide(REGS + 6),
        IpFrag => NW_FRAG,
        IpTtl => NW_TTL,
        TunIpv4Src => TUN_SRC,
        TunIpv4Dst => TUN_DST,
        PktMark => PKT_MARK,
        ConjId => CONJ_ID,
        TunGbpId => TUN_GBP_ID,
        TunGbpFlags => TUN_GBP_FLAGS,
        TunFlags => TUN_FLAGS,
        CtState => CT_STATE,
        CtZone => CT_ZONE,
        CtMark => CT_MARK,
        CtLabel => CT_LABEL,
        TunIpv6Src => TUN_IPV6_SRC,
        TunIpv6Dst => TUN_IPV6_DST,
        CtNwProto => CT_NW_PROTO,
        CtNwSrc => CT_NW_SRC,
        CtNwDst => CT_NW_DST,
        CtIpv6Src => CT_IPV6_SRC,
        CtIpv6Dst => CT_IPV6_DST,
        CtTpSrc => CT_TP_SRC,
        CtTpDst => CT_TP_DST,
    }
}

impl FlowKey {
    /// The all-zero key (also the match-everything mask).
    pub const ZERO: FlowKey = FlowKey { w: [0; FLOW_WORDS] };

    /// The all-ones mask (exact match on everything).
    pub const ONES: FlowKey = FlowKey {
        w: [u64::MAX; FLOW_WORDS],
    };

    /// Reads the value at `l` (right-aligned).
    #[inline]
    pub fn get_loc(&self, l: Loc) -> u128 {
        let i = l.word as usize;
        if l.bits == 128 {
            ((self.w[i] as u128) << 64) | self.w[i + 1] as u128
        } else {
            ((self.w[i] >> l.shift) & l.fmask) as u128
        }
    }

    /// Writes the bits of `value` selected by `mask` at `l`, leaving the rest.
    #[inline]
    pub fn set_loc_masked(&mut self, l: Loc, value: u128, mask: u128) {
        let i = l.word as usize;
        if l.bits == 128 {
            let (vh, vl) = ((value >> 64) as u64, value as u64);
            let (mh, ml) = ((mask >> 64) as u64, mask as u64);
            self.w[i] = (self.w[i] & !mh) | (vh & mh);
            self.w[i + 1] = (self.w[i + 1] & !ml) | (vl & ml);
        } else {
            let m = (mask as u64 & l.fmask) << l.shift;
            let v = (value as u64) << l.shift;
            self.w[i] = (self.w[i] & !m) | (v & m);
        }
    }

    /// Writes `value` at `l`.
    #[inline]
    pub fn set_loc(&mut self, l: Loc, value: u128) {
        self.set_loc_masked(l, value, u128::MAX)
    }

    /// The value of an OpenFlow field, right-aligned as in the codec.
    #[inline]
    pub fn get(&self, field: FieldId) -> u128 {
        self.get_loc(loc(field))
    }

    /// Sets an OpenFlow field (`set_field`, `reg_load` of the whole field).
    #[inline]
    pub fn set(&mut self, field: FieldId, value: u128) {
        self.set_loc(loc(field), value)
    }

    /// Sets the bits of a field selected by `mask` (`reg_load` of a bit range,
    /// masked `set_field`).
    #[inline]
    pub fn set_masked(&mut self, field: FieldId, value: u128, mask: u128) {
        self.set_loc_masked(loc(field), value, mask)
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn and(&self, mask: &FlowKey) -> FlowKey {
        let mut out = *self;
        for (a, m) in out.w.iter_mut().zip(mask.w.iter()) {
            *a &= m;
        }
        out
    }

    /// `self |= other`, word by word (accumulating wildcards).
    #[inline]
    pub fn or_assign(&mut self, other: &FlowKey) {
        for (a, b) in self.w.iter_mut().zip(other.w.iter()) {
            *a |= b;
        }
    }

    /// Whether every bit set in `self` is set in `other`.
    pub fn is_subset_of(&self, other: &FlowKey) -> bool {
        self.w.iter().zip(other.w.iter()).all(|(a, b)| a & !b == 0)
    }

    /// Whether `self` and `other` agree on every bit of `mask`.
    #[inline]
    pub fn eq_masked(&self, other: &FlowKey, mask: &FlowKey) -> bool {
        self.w
            .iter()
            .zip(other.w.iter())
            .zip(mask.w.iter())
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }

    /// Whether the key is all zeros.
    pub fn is_zero(&self) -> bool {
        self.w.iter().all(|&w| w == 0)
    }

    /// Hash of the whole key.
    #[inline]
    pub fn hash(&self) -> u64 {
        // Independent multiplies by per-word odd constants, summed: no
        // dependency chain, so this runs at multiplier throughput. The sum
        // is linear, but every word has its own constant and the result is
        // avalanche-mixed; collisions only cost speed (entries are compared).
        let mut h = 0u64;
        for (w, k) in self.w.iter().zip(WORD_KEYS.iter()) {
            h = h.wrapping_add((w ^ (w >> 29)).wrapping_mul(*k));
        }
        hash_finish(h ^ HASH_SEED)
    }

    /// Hash of `self & mask` over the given words (the words where `mask` is
    /// non-zero; other words are zero after masking and do not contribute).
    #[inline]
    pub fn hash_masked(&self, mask: &FlowKey, words: &[u8]) -> u64 {
        let mut h = HASH_SEED;
        for &i in words {
            let i = i as usize;
            h = hash_add(h, self.w[i] & mask.w[i]);
        }
        hash_finish(h)
    }

    /// Indices of the non-zero words of `self` (for a mask).
    pub fn nonzero_words(&self) -> Vec<u8> {
        (0..FLOW_WORDS as u8)
            .filter(|&i| self.w[i as usize] != 0)
            .collect()
    }

    /// The non-zero fields of this key as (field, value), one field per
    /// storage location (e.g. `vlan_tci`, not also `vlan_vid`/`vlan_pcp`).
    pub fn nonzero_fields(&self) -> impl Iterator<Item = (FieldId, u128)> + '_ {
        FIELDS
            .iter()
            .map(|f| f.id)
            .filter(|f| PRIMARY.contains(f))
            .map(|f| (f, self.get(f)))
            .filter(|(_, v)| *v != 0)
    }
}

/// One representative field per storage location, for printing keys.
const PRIMARY: &[FieldId] = {
    use FieldId::*;
    &[
        InPort,
        Metadata,
        EthDst,
        EthSrc,
        EthType,
        VlanTci,
        NwTos,
        IpEcn,
        IpProto,
        Ipv4Src,
        Ipv4Dst,
        TcpSrc,
        TcpDst,
        ArpOp,
        ArpSha,
        ArpTha,
        Ipv6Src,
        Ipv6Dst,
        Ipv6Flabel,
        Ipv6NdTarget,
        MplsLabel,
        MplsTc,
        MplsBos,
        MplsTtl,
        PbbIsid,
        TunnelId,
        Ipv6Exthdr,
        TcpFlags,
        ActsetOutput,
        PacketType,
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
        IpFrag,
        IpTtl,
        TunIpv4Src,
        TunIpv4Dst,
        PktMark,
        ConjId,
        TunGbpId,
        TunGbpFlags,
        TunFlags,
        CtState,
        CtZone,
        CtMark,
        CtLabel,
        TunIpv6Src,
        TunIpv6Dst,
        CtNwProto,
        CtNwSrc,
        CtNwDst,
        CtIpv6Src,
        CtIpv6Dst,
        CtTpSrc,
        CtTpDst,
    ]
};

impl fmt::Debug for FlowKey {
    /// Prints the non-zero fields in `ovs-ofctl` style: `in_port=1,dl_type=0x0800,…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowKey(")?;
        let mut first = true;
        for (field, v) in self.nonzero_fields() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            let s = plexus_openflow::text::format_field_value(field, v, None);
            write!(f, "{}={}", field.name(), s)?;
        }
        f.write_str(")")
    }
}

const HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Per-word odd multipliers for [`FlowKey::hash`] (splitmix64 sequence).
const WORD_KEYS: [u64; FLOW_WORDS] = {
    let mut out = [0u64; FLOW_WORDS];
    let mut x = HASH_SEED;
    let mut i = 0;
    while i < FLOW_WORDS {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out[i] = (z ^ (z >> 31)) | 1;
        i += 1;
    }
    out
};

#[inline(always)]
fn hash_add(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(0x5851_f42d_4c95_7f2d)
}

#[inline(always)]
fn hash_finish(mut h: u64) -> u64 {
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A key/mask pair: the form a match takes in the classifier and the
/// megaflow cache. `value` has no bits outside `mask`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MaskedKey {
    pub value: FlowKey,
    pub mask: FlowKey,
}

impl MaskedKey {
    /// Matches everything.
    pub const ANY: MaskedKey = MaskedKey {
        value: FlowKey::ZERO,
        mask: FlowKey::ZERO,
    };

    /// Converts an OpenFlow match (already validated by the codec: values
    /// inside masks, prerequisites present) to a masked key.
    pub fn from_match(m: &plexus_openflow::Match) -> MaskedKey {
        let mut k = MaskedKey::ANY;
        for f in &m.fields {
            let mask = f.mask_or_full();
            k.mask.set_masked(f.field, mask, mask);
            k.value.set_masked(f.field, f.value, mask);
        }
        k.value = k.value.and(&k.mask);
        k
    }

    /// Whether `key` matches.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.eq_masked(&self.value, &self.mask)
    }

    /// Whether every key matched by `self` is matched by `other`
    /// (`other` is equally or less specific): OpenFlow's non-strict selection.
    pub fn is_within(&self, other: &MaskedKey) -> bool {
        other.mask.is_subset_of(&self.mask) && self.value.eq_masked(&other.value, &other.mask)
    }
}

impl fmt::Debug for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskedKey")
            .field("value", &self.value)
            .field("mask", &self.mask)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_openflow::text::parse_match;

    #[test]
    fn every_field_roundtrips_through_the_key() {
        for f in FIELDS {
            let full = f.id.full_mask();
            let l = loc(f.id);
            // Fields fit their location.
            let width = if l.bits == 128 {
                128
            } else {
                128 - (l.fmask as u128).leading_zeros()
            };
            assert!(f.bits as u32 >= width, "{}: loc wider than field", f.name);
            let mut k = FlowKey::ZERO;
            let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128 & full;
            k.set(f.id, v);
            let expect = if f.id == FieldId::NwTos { v & 0xfc } else { v };
            assert_eq!(k.get(f.id), expect, "{}", f.name);
            // Only the field's bits changed.
            let mut k2 = FlowKey::ONES;
            k2.set(f.id, 0);
            assert_eq!(k2.get(f.id), 0, "{}", f.name);
        }
    }

    #[test]
    fn shared_storage_views() {
        let mut k = FlowKey::ZERO;
        k.set(FieldId::VlanTci, 0xb00a); // pcp 5, cfi, vid 10
        assert_eq!(k.get(FieldId::VlanVid), 0x100a);
        assert_eq!(k.get(FieldId::VlanPcp), 5);
        k.set(FieldId::XXReg0, 0x1111_1111_2222_2222_3333_3333_4444_4444);
        assert_eq!(k.get(FieldId::Reg0), 0x1111_1111);
        assert_eq!(k.get(FieldId::Reg3), 0x4444_4444);
        assert_eq!(k.get(FieldId::XReg1), 0x3333_3333_4444_4444);
        k.set(FieldId::NwTos, 0xb9);
        assert_eq!(k.get(FieldId::IpDscp), 0x2e);
        assert_eq!(k.get(FieldId::IpEcn), 0);
        k.set(FieldId::IpEcn, 3);
        assert_eq!(k.get(FieldId::NwTos), 0xb8);
        k.set(FieldId::MplsLabel, 0xfffff);
        k.set(FieldId::MplsBos, 1);
        assert_eq!(k.get(FieldId::MplsTc), 0);
        assert_eq!(k.get(FieldId::MplsTtl), 0);
    }

    #[test]
    fn match_to_masked_key() {
        let m = parse_match("tcp,nw_src=10.0.0.0/24,tp_dst=80,reg0=0x5/0xf").unwrap();
        let mk = MaskedKey::from_match(&m);
        let mut k = FlowKey::ZERO;
        k.set(FieldId::EthType, 0x0800);
        k.set(FieldId::IpProto, 6);
        k.set(FieldId::Ipv4Src, 0x0a00_0063);
        k.set(FieldId::TcpDst, 80);
        k.set(FieldId::Reg0, 0x1235);
        assert!(mk.matches(&k));
        k.set(FieldId::Reg0, 0x1236);
        assert!(!mk.matches(&k));
        let wider = MaskedKey::from_match(&parse_match("ip,nw_src=10.0.0.0/8").unwrap());
        assert!(mk.is_within(&wider));
        assert!(!wider.is_within(&mk));
        assert!(mk.is_within(&MaskedKey::ANY));
    }
}

#[cfg(test)]
mod parse_tests;

/// A `Hasher` for maps keyed by an already-mixed `u64` hash (subtables,
/// caches): passes the value through.
#[derive(Debug, Default, Clone, Copy)]
pub struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = hash_add(self.0, b as u64);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `BuildHasher` for [`PreHashed`].
pub type PreHashedBuild = std::hash::BuildHasherDefault<PreHashed>;
