//! OpenFlow 1.3 actions and the Nicira extension actions OVS controllers use,
//! with OVS's exact wire layouts.
//!
//! Encoding choices follow what `ovs-vswitchd`/`ovs-ofctl` emit for
//! OpenFlow 1.3, so that `encode(parse(text))` equals OVS's bytes:
//! a masked `set_field` on a field with an NXM header becomes one
//! `NXAST_REG_LOAD` per contiguous mask run ([`Action::RegLoad`]; the parser
//! does the split), a masked `set_field` on an experimenter field becomes
//! `NXAST_REG_LOAD2`, an unmasked one is `OFPAT_SET_FIELD`.
//!
//! Text form (parse/format) lives in [`text`]; proptest strategies in
//! [`strategy`].

mod codec;
pub mod text;

#[cfg(any(test, feature = "proptest"))]
pub mod strategy;

pub use text::{format_actions, parse_actions};

use crate::error::{BadActionCode, DecodeError, OfpError};
use crate::oxm::{FieldId, MatchField, nx_action_header};
use crate::wire::Reader;

/// Reserved port numbers (OpenFlow 1.3 `ofp_port_no`), plus the OpenFlow
/// 1.0 16-bit forms used inside NX actions.
pub mod port {
    pub use crate::message::port_no::*;
    /// OpenFlow 1.0 16-bit reserved ports used inside NX actions.
    pub const IN_PORT16: u16 = 0xfff8;
    pub const NONE16: u16 = 0xffff;
}

/// A bit range of a field as NX actions name it (`NXM_NX_REG0[0..15]`).
/// The field's width is the width of the header OVS uses for it in NX
/// actions (16 bits for `in_port`, whose NX header is `NXM_OF_IN_PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subfield {
    pub field: FieldId,
    pub ofs: u16,
    pub n_bits: u16,
}

impl Subfield {
    /// The whole field.
    pub fn full(field: FieldId) -> Self {
        Self {
            field,
            ofs: 0,
            n_bits: Self::width(field),
        }
    }

    /// Width in bits of `field` as NX actions see it.
    pub fn width(field: FieldId) -> u16 {
        nx_action_header(field).1
    }

    /// Whether this names the whole field.
    pub fn is_full(&self) -> bool {
        self.ofs == 0 && self.n_bits == Self::width(self.field)
    }

    /// `ofs << 6 | (n_bits - 1)` as NX actions encode it.
    pub fn ofs_nbits(&self) -> u16 {
        (self.ofs << 6) | (self.n_bits.saturating_sub(1) & 0x3f)
    }

    /// OVS's `mf_check_src/dst`: non-empty and inside the field
    /// (`OFPBAC_BAD_SET_LEN` otherwise).
    pub fn check(&self) -> Result<(), DecodeError> {
        let w = Self::width(self.field) as u32;
        if self.n_bits == 0 || self.ofs as u32 >= w || self.ofs as u32 + self.n_bits as u32 > w {
            return Err(DecodeError::invalid(
                "subfield outside its field",
                OfpError::BadAction(BadActionCode::BadSetLen),
            ));
        }
        Ok(())
    }

    /// Mask of the selected bits within the field value.
    pub fn mask(&self) -> u128 {
        let m = if self.n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.n_bits) - 1
        };
        m.checked_shl(self.ofs as u32).unwrap_or(0)
    }
}

/// Whether actions may write `field` (OVS refuses writes to these with
/// `OFPBAC_BAD_SET_ARGUMENT`: "destination field ... is not writable").
pub fn is_writable(field: FieldId) -> bool {
    use FieldId::*;
    !matches!(
        field,
        InPhyPort
            | EthType
            | IpProto
            | IpFrag
            | MplsBos
            | Ipv6Exthdr
            | TcpFlags
            | ActsetOutput
            | ConjId
            | CtState
            | CtZone
            | CtNwProto
            | CtNwSrc
            | CtNwDst
            | CtIpv6Src
            | CtIpv6Dst
            | CtTpSrc
            | CtTpDst
    )
}

/// Whether an OpenFlow 1.3 `OFPAT_SET_FIELD` may write `field`: the
/// [`is_writable`] fields plus `eth_type`, `ip_proto` and `mpls_bos`, which
/// OF 1.3 does not exclude (the os-ken switch tester rewrites them) while
/// OVS's NX `reg_load`/`reg_move` treat them as read-only.
pub fn is_set_field_writable(field: FieldId) -> bool {
    is_writable(field)
        || matches!(
            field,
            FieldId::EthType | FieldId::IpProto | FieldId::MplsBos
        )
}

/// `NXAST_CT` zone: immediate or loaded from a subfield.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtZone {
    Imm(u16),
    Field(Subfield),
}

/// `NX_CT_F_*` flags.
pub mod ct_flags {
    pub const COMMIT: u16 = 1;
    pub const FORCE: u16 = 2;
}

/// `NXAST_CT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ct {
    pub flags: u16,
    pub zone: CtZone,
    /// Recirculation table (`None` = `NX_CT_RECIRC_NONE`, 255).
    pub recirc_table: Option<u8>,
    /// ALG port (21 = ftp, 69 = tftp, 0 = none).
    pub alg: u16,
    /// Nested actions (`nat` and `exec(...)` contents).
    pub actions: Vec<Action>,
}

impl Default for Ct {
    fn default() -> Self {
        Self {
            flags: 0,
            zone: CtZone::Imm(0),
            recirc_table: None,
            alg: 0,
            actions: Vec::new(),
        }
    }
}

/// `NX_NAT_F_*` flags.
pub mod nat_flags {
    pub const SRC: u16 = 1 << 0;
    pub const DST: u16 = 1 << 1;
    pub const PERSISTENT: u16 = 1 << 2;
    pub const PROTO_HASH: u16 = 1 << 3;
    pub const PROTO_RANDOM: u16 = 1 << 4;
}

/// `NXAST_NAT`: each range part present or not (`range_present` bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Nat {
    pub flags: u16,
    pub ipv4_min: Option<u32>,
    pub ipv4_max: Option<u32>,
    pub ipv6_min: Option<u128>,
    pub ipv6_max: Option<u128>,
    pub proto_min: Option<u16>,
    pub proto_max: Option<u16>,
}

/// `NXAST_CONTROLLER` / `NXAST_CONTROLLER2`. Encoded as CONTROLLER2 when
/// `userdata`, `pause` or `meter_id` need it, as OVS does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Controller {
    pub max_len: u16,
    pub controller_id: u16,
    /// `ofp_packet_in_reason` (1 = action).
    pub reason: u8,
    pub userdata: Vec<u8>,
    pub pause: bool,
    /// 0 = no meter.
    pub meter_id: u32,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            max_len: u16::MAX,
            controller_id: 0,
            reason: 1,
            userdata: Vec::new(),
            pause: false,
            meter_id: 0,
        }
    }
}

impl Controller {
    fn needs_v2(&self) -> bool {
        !self.userdata.is_empty() || self.pause || self.meter_id != 0
    }
}

/// `NX_LEARN_F_*`.
pub mod learn_flags {
    pub const SEND_FLOW_REM: u16 = 1;
    pub const DELETE_LEARNED: u16 = 2;
    pub const WRITE_RESULT: u16 = 4;
}

/// Source of a learn spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnSrc {
    Field(Subfield),
    /// Immediate value of the spec's `n_bits` bits.
    Imm(u128),
}

/// Destination of a learn spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnDst {
    Match(Subfield),
    Load(Subfield),
    Output,
}

/// One `flow_mod_spec` of `NXAST_LEARN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LearnSpec {
    pub n_bits: u16,
    pub src: LearnSrc,
    pub dst: LearnDst,
}

/// `NXAST_LEARN` / `NXAST_LEARN2` (used when `limit` or `result_dst` is set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Learn {
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub cookie: u64,
    /// `learn_flags` except `WRITE_RESULT`, which follows `result_dst`.
    pub flags: u16,
    pub table_id: u8,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub limit: u32,
    pub result_dst: Option<Subfield>,
    pub specs: Vec<LearnSpec>,
}

impl Default for Learn {
    fn default() -> Self {
        Self {
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            cookie: 0,
            flags: 0,
            table_id: 1,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            limit: 0,
            result_dst: None,
            specs: Vec::new(),
        }
    }
}

/// `NXAST_MULTIPATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Multipath {
    pub fields: u16,
    pub basis: u16,
    pub algorithm: u16,
    pub max_link: u16,
    pub arg: u32,
    pub dst: Subfield,
}

/// `NXAST_BUNDLE` (no `dst`) / `NXAST_BUNDLE_LOAD`. Members are OpenFlow
/// ports (`member_type` = `NXM_OF_IN_PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bundle {
    pub algorithm: u16,
    pub fields: u16,
    pub basis: u16,
    pub dst: Option<Subfield>,
    pub members: Vec<u16>,
}

/// `NXAST_SAMPLE` / `SAMPLE2` (sampling port) / `SAMPLE3` (direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sample {
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// `None` = `OFPP_NONE`.
    pub sampling_port: Option<u16>,
    /// 0 = default, 1 = ingress, 2 = egress.
    pub direction: u8,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `OFPAT_OUTPUT`.
    Output { port: u32, max_len: u16 },
    /// `OFPAT_COPY_TTL_OUT`.
    CopyTtlOut,
    /// `OFPAT_COPY_TTL_IN`.
    CopyTtlIn,
    /// `OFPAT_SET_MPLS_TTL`.
    SetMplsTtl(u8),
    /// `OFPAT_DEC_MPLS_TTL`.
    DecMplsTtl,
    /// `OFPAT_PUSH_VLAN` (ethertype).
    PushVlan(u16),
    /// `OFPAT_POP_VLAN`.
    PopVlan,
    /// `OFPAT_PUSH_MPLS` (ethertype).
    PushMpls(u16),
    /// `OFPAT_POP_MPLS` (ethertype of the payload).
    PopMpls(u16),
    /// `OFPAT_SET_QUEUE`.
    SetQueue(u32),
    /// `OFPAT_GROUP`.
    Group(u32),
    /// `OFPAT_SET_NW_TTL`.
    SetNwTtl(u8),
    /// `OFPAT_DEC_NW_TTL` (`dec_ttl`).
    DecNwTtl,
    /// `OFPAT_SET_FIELD` (no mask) or `NXAST_REG_LOAD2` (mask).
    SetField(MatchField),
    /// `OFPAT_PUSH_PBB` (ethertype).
    PushPbb(u16),
    /// `OFPAT_POP_PBB`.
    PopPbb,
    /// `NXAST_RESUBMIT` (`table: None`) or `NXAST_RESUBMIT_TABLE[_CT]`.
    Resubmit {
        in_port: u16,
        table: Option<u8>,
        ct: bool,
    },
    /// `NXAST_SET_TUNNEL` / `NXAST_SET_TUNNEL64` (`wide`).
    SetTunnel { tun_id: u64, wide: bool },
    /// `NXAST_REG_MOVE`.
    RegMove { src: Subfield, dst: Subfield },
    /// `NXAST_REG_LOAD` (`dst.n_bits <= 64`).
    RegLoad { dst: Subfield, value: u64 },
    /// `NXAST_NOTE` (the bytes after the subtype, padding included).
    Note(Vec<u8>),
    /// `NXAST_OUTPUT_REG` (`NXAST_OUTPUT_REG2` for experimenter fields).
    OutputReg { src: Subfield, max_len: u16 },
    /// `NXAST_LEARN` / `NXAST_LEARN2`.
    Learn(Box<Learn>),
    /// `NXAST_EXIT`.
    Exit,
    /// `NXAST_DEC_TTL_CNT_IDS`.
    DecTtlCntIds(Vec<u16>),
    /// `NXAST_FIN_TIMEOUT`.
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// `NXAST_CONTROLLER` / `NXAST_CONTROLLER2`.
    Controller(Box<Controller>),
    /// `NXAST_WRITE_METADATA`.
    WriteMetadata { metadata: u64, mask: u64 },
    /// `NXAST_CONJUNCTION` (`clause` is 0-based on the wire).
    Conjunction { id: u32, clause: u8, n_clauses: u8 },
    /// `NXAST_CT`.
    Ct(Box<Ct>),
    /// `NXAST_NAT` (only meaningful inside `ct`).
    Nat(Nat),
    /// `NXAST_CT_CLEAR`.
    CtClear,
    /// `NXAST_MULTIPATH`.
    Multipath(Multipath),
    /// `NXAST_BUNDLE` / `NXAST_BUNDLE_LOAD`.
    Bundle(Box<Bundle>),
    /// `NXAST_CLONE`.
    Clone(Vec<Action>),
    /// `NXAST_OUTPUT_TRUNC`.
    OutputTrunc { port: u16, max_len: u32 },
    /// `NXAST_SAMPLE` / `2` / `3`.
    Sample(Sample),
}

impl Action {
    /// Decodes an action list occupying exactly `len` bytes.
    pub fn decode_list(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>, DecodeError> {
        codec::decode_list(r, len, 0)
    }

    /// Encodes an action list.
    pub fn encode_list(actions: &[Action], out: &mut Vec<u8>) {
        for a in actions {
            a.encode(out);
        }
    }

    /// Encodes one action (always a multiple of 8 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::encode(self, out)
    }

    /// `output:port`.
    pub fn output(port: u32) -> Self {
        Action::Output { port, max_len: 0 }
    }
}

#[cfg(test)]
mod tests;
