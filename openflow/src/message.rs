//! Every OpenFlow 1.3.5 message, plus the Nicira/ONF experimenter messages
//! Open vSwitch uses with OpenFlow 1.3 (packet-in format, packet-in2, resume,
//! controller id, bundles).
//!
//! [`Message::decode`] takes one whole frame (header included) and never
//! panics; every error maps (via [`DecodeError::ofp_error`]) to the
//! OFPT_ERROR a switch sends back. [`Message::encode`] writes the exact
//! OpenFlow 1.3.5 wire structs, so `decode(encode(m)) == m` for every message
//! and `encode(decode(b)) == b` for every canonically encoded `b`.

mod multipart;
mod nx;
#[cfg(test)]
pub(crate) mod strategy;
#[cfg(test)]
mod tests;

pub use multipart::*;
pub use nx::*;

use crate::action::Action;
use crate::error::{
    DecodeError, FlowModFailedCode, GroupModFailedCode, Layer, MeterModFailedCode,
    OFPET_EXPERIMENTER, OfpError,
};
use crate::instruction::Instruction;
use crate::oxm::Match;
use crate::wire::{NX_VENDOR_ID, OFP_HEADER_LEN, OFP_VERSION, ONF_VENDOR_ID, OfpHeader, Reader};
use bytes::BufMut;

/// `ofp_type` values.
pub mod msg_type {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const TABLE_MOD: u8 = 17;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const QUEUE_GET_CONFIG_REQUEST: u8 = 22;
    pub const QUEUE_GET_CONFIG_REPLY: u8 = 23;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
    pub const METER_MOD: u8 = 29;
}

/// `OFP_NO_BUFFER`.
pub const OFP_NO_BUFFER: u32 = 0xffff_ffff;

/// One OpenFlow message (the header's xid is carried separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    /// A generic experimenter message (only produced by
    /// [`Message::decode_permissive`] for experimenters this codec does not know).
    Experimenter(ExperimenterMsg),
    FeaturesRequest,
    FeaturesReply(FeaturesReply),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    PortMod(PortMod),
    TableMod(TableMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    QueueGetConfigRequest {
        port: u32,
    },
    QueueGetConfigReply(QueueGetConfigReply),
    RoleRequest(Role),
    RoleReply(Role),
    GetAsyncRequest,
    GetAsyncReply(AsyncConfig),
    SetAsync(AsyncConfig),
    MeterMod(MeterMod),
    /// `NXT_SET_PACKET_IN_FORMAT` (one of [`packet_in_format`]).
    NxSetPacketInFormat(u32),
    /// `NXT_SET_CONTROLLER_ID`.
    NxSetControllerId(u16),
    /// `NXT_PACKET_IN2`.
    NxPacketIn2(PacketIn2),
    /// `NXT_RESUME` (same property encoding as packet-in2).
    NxResume(PacketIn2),
    /// `ONFT_BUNDLE_CONTROL` (OpenFlow 1.3 ONF experimenter form).
    BundleControl(BundleControl),
    /// `ONFT_BUNDLE_ADD_MESSAGE` (OpenFlow 1.3 ONF experimenter form).
    BundleAdd(BundleAdd),
}

/// `OFPT_HELLO`: a list of hello elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub elements: Vec<HelloElement>,
}

impl Hello {
    /// A hello advertising exactly OpenFlow 1.3 with a version bitmap.
    pub fn of13() -> Self {
        Self {
            elements: vec![HelloElement::VersionBitmap(vec![1 << OFP_VERSION])],
        }
    }

    /// The version bitmap (first element of that type), if any.
    pub fn version_bitmap(&self) -> Option<&[u32]> {
        self.elements.iter().find_map(|e| match e {
            HelloElement::VersionBitmap(b) => Some(b.as_slice()),
            _ => None,
        })
    }

    /// Whether the peer supports `version` (true when it sent no bitmap and
    /// the header version is at least `version`; callers decide that part).
    pub fn supports(&self, version: u8) -> Option<bool> {
        let b = self.version_bitmap()?;
        let word = (version / 32) as usize;
        Some(b.get(word).is_some_and(|w| w & (1 << (version % 32)) != 0))
    }
}

/// One `ofp_hello_elem_header` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloElement {
    /// `OFPHET_VERSIONBITMAP`: bitmap words, bit n of word i = version 32*i+n.
    VersionBitmap(Vec<u32>),
    /// Any other element, kept as its type and payload (without padding).
    Unknown { elem_type: u16, data: Vec<u8> },
}

/// `OFPT_ERROR`: the typed (type, code) and the data (usually the start of
/// the offending request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub error: OfpError,
    pub data: Vec<u8>,
}

/// A generic experimenter message: experimenter id, exp_type, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimenterMsg {
    pub experimenter: u32,
    pub exp_type: u32,
    pub data: Vec<u8>,
}

/// `OFPT_FEATURES_REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeaturesReply {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    /// `OFPC_*` bits.
    pub capabilities: u32,
    /// The `reserved` word (kept so decode/encode is lossless).
    pub reserved: u32,
}

/// `ofp_switch_config` (GET_CONFIG_REPLY, SET_CONFIG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchConfig {
    /// `OFPC_FRAG_*` bits.
    pub flags: u16,
    pub miss_send_len: u16,
}

/// `OFPT_PACKET_IN`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    /// `OFPR_*`.
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    pub match_: Match,
    pub data: Vec<u8>,
}

/// `OFPT_FLOW_REMOVED`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    /// `OFPRR_*`.
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
}

/// `ofp_port` (64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    pub name: String,
    /// `OFPPC_*`.
    pub config: u32,
    /// `OFPPS_*`.
    pub state: u32,
    /// `OFPPF_*` feature bitmaps.
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// kbps.
    pub curr_speed: u32,
    pub max_speed: u32,
}

/// `OFPT_PORT_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortStatus {
    /// `OFPPR_ADD`/`DELETE`/`MODIFY`.
    pub reason: u8,
    pub desc: Port,
}

/// `OFPT_PACKET_OUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

/// `ofp_flow_mod_command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    Add = 0,
    Modify = 1,
    ModifyStrict = 2,
    Delete = 3,
    DeleteStrict = 4,
}

impl FlowModCommand {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Add,
            1 => Self::Modify,
            2 => Self::ModifyStrict,
            3 => Self::Delete,
            4 => Self::DeleteStrict,
            _ => return None,
        })
    }
}

/// `ofp_flow_mod_flags`.
pub mod flow_mod_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
}

/// `OFPT_FLOW_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowMod {
    /// An OFPFC_ADD with OpenFlow's defaults (priority 0x8000, no buffer,
    /// out_port/out_group ANY).
    pub fn add(match_: Match, instructions: Vec<Instruction>) -> Self {
        Self {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            buffer_id: OFP_NO_BUFFER,
            out_port: crate::message::port_no::ANY,
            out_group: crate::message::group_id::ANY,
            flags: 0,
            match_,
            instructions,
        }
    }
}

/// Reserved port numbers (`ofp_port_no`).
pub mod port_no {
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// Reserved group ids (`ofp_group`).
pub mod group_id {
    pub const MAX: u32 = 0xffff_ff00;
    pub const ALL: u32 = 0xffff_fffc;
    pub const ANY: u32 = 0xffff_ffff;
}

/// `ofp_group_mod_command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupModCommand {
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// `ofp_group_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupType {
    All = 0,
    Select = 1,
    Indirect = 2,
    FastFailover = 3,
}

impl GroupType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::All,
            1 => Self::Select,
            2 => Self::Indirect,
            3 => Self::FastFailover,
            _ => return None,
        })
    }
}

/// `ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub weight: u16,
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

/// `OFPT_GROUP_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// `OFPT_PORT_MOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortMod {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    pub config: u32,
    pub mask: u32,
    pub advertise: u32,
}

/// `OFPT_TABLE_MOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableMod {
    pub table_id: u8,
    pub config: u32,
}

/// `ofp_meter_mod_command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterModCommand {
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// `ofp_meter_flags`.
pub mod meter_flags {
    pub const KBPS: u16 = 1 << 0;
    pub const PKTPS: u16 = 1 << 1;
    pub const BURST: u16 = 1 << 2;
    pub const STATS: u16 = 1 << 3;
}

/// One meter band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterBand {
    /// `OFPMBT_DROP`.
    Drop { rate: u32, burst_size: u32 },
    /// `OFPMBT_DSCP_REMARK`.
    DscpRemark {
        rate: u32,
        burst_size: u32,
        prec_level: u8,
    },
    /// `OFPMBT_EXPERIMENTER`: experimenter id and any following bytes.
    Experimenter {
        rate: u32,
        burst_size: u32,
        experimenter: u32,
        data: Vec<u8>,
    },
}

/// `OFPT_METER_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: MeterModCommand,
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

/// `OFPT_QUEUE_GET_CONFIG_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueGetConfigReply {
    pub port: u32,
    pub queues: Vec<PacketQueue>,
}

/// `ofp_packet_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketQueue {
    pub queue_id: u32,
    pub port: u32,
    pub properties: Vec<QueueProp>,
}

/// A queue property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueProp {
    /// `OFPQT_MIN_RATE` in 1/10 of a percent.
    MinRate(u16),
    /// `OFPQT_MAX_RATE` in 1/10 of a percent.
    MaxRate(u16),
    /// `OFPQT_EXPERIMENTER`.
    Experimenter { experimenter: u32, data: Vec<u8> },
    /// Anything else: type and the bytes after the 8-byte property header.
    Unknown { prop_type: u16, data: Vec<u8> },
}

/// `ofp_role_request` (ROLE_REQUEST/ROLE_REPLY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Role {
    /// `OFPCR_ROLE_*`.
    pub role: u32,
    pub generation_id: u64,
}

/// `ofp_async_config` (GET_ASYNC_REPLY, SET_ASYNC): index 0 is the
/// master/equal mask, index 1 the slave mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncConfig {
    pub packet_in_mask: [u32; 2],
    pub port_status_mask: [u32; 2],
    pub flow_removed_mask: [u32; 2],
}

// ---------------------------------------------------------------------------
// Helpers shared by the submodules.

/// Fails unless the reader was consumed completely.
pub(crate) fn expect_end(r: &Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::BadLength {
            what,
            len: r.remaining(),
        })
    }
}

/// Back-patches a u16 length at `at` with the bytes written since `start`
/// (saturating at 65535: such an object cannot be represented on the wire).
pub(crate) fn patch_len16(out: &mut [u8], at: usize, start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    crate::wire::patch_u16(out, at, len);
}

/// Reads a length-prefixed item: peeks the u16 length at `len_off`, checks it
/// is at least `min`, and splits off a sub-reader of that length.
pub(crate) fn sub_by_len<'a>(
    r: &mut Reader<'a>,
    len_off: usize,
    min: usize,
    what: &'static str,
) -> Result<Reader<'a>, DecodeError> {
    let len = r.peek_u16(len_off, what)? as usize;
    if len < min {
        return Err(DecodeError::BadLength { what, len });
    }
    r.sub(len, what)
}

pub(crate) fn decode_match(r: &mut Reader<'_>) -> Result<Match, DecodeError> {
    Match::decode(r).map_err(|e| e.in_layer(Layer::Match))
}

pub(crate) fn decode_actions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>, DecodeError> {
    Action::decode_list(r, len).map_err(|e| e.in_layer(Layer::Action))
}

pub(crate) fn decode_instructions(r: &mut Reader<'_>) -> Result<Vec<Instruction>, DecodeError> {
    let len = r.remaining();
    Instruction::decode_list(r, len).map_err(|e| e.in_layer(Layer::Instruction))
}

fn gmfc(c: GroupModFailedCode, what: &'static str) -> DecodeError {
    DecodeError::invalid(what, OfpError::GroupModFailed(c))
}

fn mmfc(c: MeterModFailedCode, what: &'static str) -> DecodeError {
    DecodeError::invalid(what, OfpError::MeterModFailed(c))
}

// ---------------------------------------------------------------------------
// Decoding.

impl Message {
    /// Decodes one whole frame (header included). The header's length must
    /// equal `buf.len()`. Returns the xid and the message.
    pub fn decode(buf: &[u8]) -> Result<(u32, Message), DecodeError> {
        let h = OfpHeader::parse(buf)?;
        if h.version != OFP_VERSION {
            return Err(DecodeError::BadVersion(h.version));
        }
        let len = h.length as usize;
        if len < OFP_HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "ofp_header.length",
                len,
            });
        }
        if len != buf.len() {
            return Err(DecodeError::LengthMismatch {
                header: len,
                buffer: buf.len(),
            });
        }
        let mut r = Reader::new(&buf[OFP_HEADER_LEN..]);
        let m = Self::decode_body(h.msg_type, h.xid, &mut r)?;
        Ok((h.xid, m))
    }

    /// Like [`Message::decode`], but an experimenter message whose
    /// experimenter id or subtype this codec does not know comes back as the
    /// generic [`Message::Experimenter`] instead of an error (what a
    /// controller wants; a switch replies with the error instead).
    pub fn decode_permissive(buf: &[u8]) -> Result<(u32, Message), DecodeError> {
        match Self::decode(buf) {
            Err(DecodeError::UnknownExperimenter { .. } | DecodeError::UnknownExpType { .. })
                if buf.get(1) == Some(&msg_type::EXPERIMENTER) =>
            {
                let h = OfpHeader::parse(buf)?;
                let mut r = Reader::new(&buf[OFP_HEADER_LEN..]);
                let experimenter = r.u32("experimenter")?;
                let exp_type = r.u32("exp_type")?;
                let data = r.take_rest().to_vec();
                Ok((
                    h.xid,
                    Message::Experimenter(ExperimenterMsg {
                        experimenter,
                        exp_type,
                        data,
                    }),
                ))
            }
            other => other,
        }
    }

    fn decode_body(t: u8, xid: u32, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        use msg_type as T;
        let m = match t {
            T::HELLO => Message::Hello(decode_hello(r)?),
            T::ERROR => Message::Error(decode_error(r)?),
            T::ECHO_REQUEST => Message::EchoRequest(r.take_rest().to_vec()),
            T::ECHO_REPLY => Message::EchoReply(r.take_rest().to_vec()),
            T::EXPERIMENTER => nx::decode_experimenter(xid, r)?,
            T::FEATURES_REQUEST => Message::FeaturesRequest,
            T::FEATURES_REPLY => {
                let f = FeaturesReply {
                    datapath_id: r.u64("datapath_id")?,
                    n_buffers: r.u32("n_buffers")?,
                    n_tables: r.u8("n_tables")?,
                    auxiliary_id: r.u8("auxiliary_id")?,
                    capabilities: {
                        r.skip(2, "pad")?;
                        r.u32("capabilities")?
                    },
                    reserved: r.u32("reserved")?,
                };
                Message::FeaturesReply(f)
            }
            T::GET_CONFIG_REQUEST => Message::GetConfigRequest,
            T::GET_CONFIG_REPLY => Message::GetConfigReply(decode_switch_config(r)?),
            T::SET_CONFIG => Message::SetConfig(decode_switch_config(r)?),
            T::PACKET_IN => Message::PacketIn(decode_packet_in(r)?),
            T::FLOW_REMOVED => Message::FlowRemoved(decode_flow_removed(r)?),
            T::PORT_STATUS => {
                let reason = r.u8("reason")?;
                r.skip(7, "pad")?;
                Message::PortStatus(PortStatus {
                    reason,
                    desc: decode_port(r)?,
                })
            }
            T::PACKET_OUT => Message::PacketOut(decode_packet_out(r)?),
            T::FLOW_MOD => Message::FlowMod(decode_flow_mod(r)?),
            T::GROUP_MOD => Message::GroupMod(decode_group_mod(r)?),
            T::PORT_MOD => {
                let port_no = r.u32("port_no")?;
                r.skip(4, "pad")?;
                let hw_addr = r.array("hw_addr")?;
                r.skip(2, "pad")?;
                let pm = PortMod {
                    port_no,
                    hw_addr,
                    config: r.u32("config")?,
                    mask: r.u32("mask")?,
                    advertise: r.u32("advertise")?,
                };
                r.skip(4, "pad")?;
                Message::PortMod(pm)
            }
            T::TABLE_MOD => {
                let table_id = r.u8("table_id")?;
                r.skip(3, "pad")?;
                Message::TableMod(TableMod {
                    table_id,
                    config: r.u32("config")?,
                })
            }
            T::MULTIPART_REQUEST => Message::MultipartRequest(multipart::decode_request(r)?),
            T::MULTIPART_REPLY => Message::MultipartReply(multipart::decode_reply(r)?),
            T::BARRIER_REQUEST => Message::BarrierRequest,
            T::BARRIER_REPLY => Message::BarrierReply,
            T::QUEUE_GET_CONFIG_REQUEST => {
                let port = r.u32("port")?;
                r.skip(4, "pad")?;
                Message::QueueGetConfigRequest { port }
            }
            T::QUEUE_GET_CONFIG_REPLY => Message::QueueGetConfigReply(decode_queue_reply(r)?),
            T::ROLE_REQUEST => Message::RoleRequest(decode_role(r)?),
            T::ROLE_REPLY => Message::RoleReply(decode_role(r)?),
            T::GET_ASYNC_REQUEST => Message::GetAsyncRequest,
            T::GET_ASYNC_REPLY => Message::GetAsyncReply(decode_async(r)?),
            T::SET_ASYNC => Message::SetAsync(decode_async(r)?),
            T::METER_MOD => Message::MeterMod(decode_meter_mod(r)?),
            t => return Err(DecodeError::UnknownType(t)),
        };
        expect_end(r, "message body")?;
        Ok(m)
    }
}

fn decode_hello(r: &mut Reader<'_>) -> Result<Hello, DecodeError> {
    let mut elements = Vec::new();
    while !r.is_empty() {
        let elem_type = r.peek_u16(0, "hello element type")?;
        let mut e = sub_by_len(r, 2, 4, "hello element")?;
        let len = e.remaining();
        e.skip(4, "hello element header")?;
        r.skip(crate::wire::pad_len(len), "hello element padding")?;
        if elem_type == 1 {
            if e.remaining() % 4 != 0 {
                return Err(DecodeError::BadLength {
                    what: "hello version bitmap",
                    len,
                });
            }
            let mut words = Vec::new();
            while !e.is_empty() {
                words.push(e.u32("bitmap word")?);
            }
            elements.push(HelloElement::VersionBitmap(words));
        } else {
            elements.push(HelloElement::Unknown {
                elem_type,
                data: e.take_rest().to_vec(),
            });
        }
    }
    Ok(Hello { elements })
}

fn decode_error(r: &mut Reader<'_>) -> Result<ErrorMsg, DecodeError> {
    let err_type = r.u16("error type")?;
    let code = r.u16("error code")?;
    let error = if err_type == OFPET_EXPERIMENTER {
        OfpError::Experimenter {
            exp_type: code,
            experimenter: r.u32("error experimenter")?,
        }
    } else {
        OfpError::from_type_code(err_type, code)
    };
    Ok(ErrorMsg {
        error,
        data: r.take_rest().to_vec(),
    })
}

fn decode_switch_config(r: &mut Reader<'_>) -> Result<SwitchConfig, DecodeError> {
    Ok(SwitchConfig {
        flags: r.u16("flags")?,
        miss_send_len: r.u16("miss_send_len")?,
    })
}

fn decode_packet_in(r: &mut Reader<'_>) -> Result<PacketIn, DecodeError> {
    let buffer_id = r.u32("buffer_id")?;
    let total_len = r.u16("total_len")?;
    let reason = r.u8("reason")?;
    let table_id = r.u8("table_id")?;
    let cookie = r.u64("cookie")?;
    let match_ = decode_match(r)?;
    r.skip(2, "packet_in pad")?;
    Ok(PacketIn {
        buffer_id,
        total_len,
        reason,
        table_id,
        cookie,
        match_,
        data: r.take_rest().to_vec(),
    })
}

fn decode_flow_removed(r: &mut Reader<'_>) -> Result<FlowRemoved, DecodeError> {
    Ok(FlowRemoved {
        cookie: r.u64("cookie")?,
        priority: r.u16("priority")?,
        reason: r.u8("reason")?,
        table_id: r.u8("table_id")?,
        duration_sec: r.u32("duration_sec")?,
        duration_nsec: r.u32("duration_nsec")?,
        idle_timeout: r.u16("idle_timeout")?,
        hard_timeout: r.u16("hard_timeout")?,
        packet_count: r.u64("packet_count")?,
        byte_count: r.u64("byte_count")?,
        match_: decode_match(r)?,
    })
}

pub(crate) fn decode_port(r: &mut Reader<'_>) -> Result<Port, DecodeError> {
    let port_no = r.u32("port_no")?;
    r.skip(4, "pad")?;
    let hw_addr = r.array("hw_addr")?;
    r.skip(2, "pad")?;
    Ok(Port {
        port_no,
        hw_addr,
        name: r.fixed_str(16, "port name")?,
        config: r.u32("config")?,
        state: r.u32("state")?,
        curr: r.u32("curr")?,
        advertised: r.u32("advertised")?,
        supported: r.u32("supported")?,
        peer: r.u32("peer")?,
        curr_speed: r.u32("curr_speed")?,
        max_speed: r.u32("max_speed")?,
    })
}

fn decode_packet_out(r: &mut Reader<'_>) -> Result<PacketOut, DecodeError> {
    let buffer_id = r.u32("buffer_id")?;
    let in_port = r.u32("in_port")?;
    let actions_len = r.u16("actions_len")? as usize;
    r.skip(6, "pad")?;
    if actions_len > r.remaining() {
        return Err(DecodeError::BadLength {
            what: "packet_out.actions_len",
            len: actions_len,
        });
    }
    let actions = decode_actions(r, actions_len)?;
    Ok(PacketOut {
        buffer_id,
        in_port,
        actions,
        data: r.take_rest().to_vec(),
    })
}

fn decode_flow_mod(r: &mut Reader<'_>) -> Result<FlowMod, DecodeError> {
    let cookie = r.u64("cookie")?;
    let cookie_mask = r.u64("cookie_mask")?;
    let table_id = r.u8("table_id")?;
    let cmd = r.u8("command")?;
    let idle_timeout = r.u16("idle_timeout")?;
    let hard_timeout = r.u16("hard_timeout")?;
    let priority = r.u16("priority")?;
    let buffer_id = r.u32("buffer_id")?;
    let out_port = r.u32("out_port")?;
    let out_group = r.u32("out_group")?;
    let flags = r.u16("flags")?;
    r.skip(2, "pad")?;
    let command = FlowModCommand::from_u8(cmd).ok_or(DecodeError::invalid(
        "flow_mod.command",
        OfpError::FlowModFailed(FlowModFailedCode::BadCommand),
    ))?;
    let match_ = decode_match(r)?;
    if matches!(
        command,
        FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict
    ) {
        match_.check_prerequisites()?;
    }
    let instructions = decode_instructions(r)?;
    Ok(FlowMod {
        cookie,
        cookie_mask,
        table_id,
        command,
        idle_timeout,
        hard_timeout,
        priority,
        buffer_id,
        out_port,
        out_group,
        flags,
        match_,
        instructions,
    })
}

/// Decodes buckets filling the whole reader.
pub(crate) fn decode_buckets(r: &mut Reader<'_>) -> Result<Vec<Bucket>, DecodeError> {
    let mut buckets = Vec::new();
    while !r.is_empty() {
        let len = r
            .peek_u16(0, "bucket.len")
            .map_err(|_| gmfc(GroupModFailedCode::BadBucket, "bucket header truncated"))?
            as usize;
        if len < 16 || !len.is_multiple_of(8) || len > r.remaining() {
            return Err(gmfc(GroupModFailedCode::BadBucket, "bucket.len"));
        }
        let mut b = r.sub(len, "bucket")?;
        b.skip(2, "bucket.len")?;
        let weight = b.u16("weight")?;
        let watch_port = b.u32("watch_port")?;
        let watch_group = b.u32("watch_group")?;
        b.skip(4, "pad")?;
        let n = b.remaining();
        let actions = decode_actions(&mut b, n)?;
        buckets.push(Bucket {
            weight,
            watch_port,
            watch_group,
            actions,
        });
    }
    Ok(buckets)
}

pub(crate) fn decode_group_type(t: u8) -> Result<GroupType, DecodeError> {
    GroupType::from_u8(t).ok_or(gmfc(GroupModFailedCode::BadType, "group type"))
}

fn decode_group_mod(r: &mut Reader<'_>) -> Result<GroupMod, DecodeError> {
    let command = match r.u16("command")? {
        0 => GroupModCommand::Add,
        1 => GroupModCommand::Modify,
        2 => GroupModCommand::Delete,
        _ => return Err(gmfc(GroupModFailedCode::BadCommand, "group_mod.command")),
    };
    let group_type = decode_group_type(r.u8("type")?)?;
    r.skip(1, "pad")?;
    let group_id = r.u32("group_id")?;
    Ok(GroupMod {
        command,
        group_type,
        group_id,
        buckets: decode_buckets(r)?,
    })
}

/// Decodes meter bands filling the whole reader.
pub(crate) fn decode_bands(r: &mut Reader<'_>) -> Result<Vec<MeterBand>, DecodeError> {
    let mut bands = Vec::new();
    while !r.is_empty() {
        let ty = r.peek_u16(0, "band type")?;
        let len = r.peek_u16(2, "band len")? as usize;
        if len < 16 || !len.is_multiple_of(8) || len > r.remaining() {
            return Err(DecodeError::BadLength {
                what: "meter band",
                len,
            });
        }
        let mut b = r.sub(len, "meter band")?;
        b.skip(4, "band header")?;
        let rate = b.u32("rate")?;
        let burst_size = b.u32("burst_size")?;
        let band = match ty {
            1 if len == 16 => MeterBand::Drop { rate, burst_size },
            2 if len == 16 => {
                let prec_level = b.u8("prec_level")?;
                b.take_rest();
                MeterBand::DscpRemark {
                    rate,
                    burst_size,
                    prec_level,
                }
            }
            1 | 2 => {
                return Err(DecodeError::BadLength {
                    what: "meter band",
                    len,
                });
            }
            0xffff => MeterBand::Experimenter {
                rate,
                burst_size,
                experimenter: b.u32("band experimenter")?,
                data: b.take_rest().to_vec(),
            },
            _ => return Err(mmfc(MeterModFailedCode::BadBand, "meter band type")),
        };
        b.take_rest();
        bands.push(band);
    }
    Ok(bands)
}

fn decode_meter_mod(r: &mut Reader<'_>) -> Result<MeterMod, DecodeError> {
    let command = match r.u16("command")? {
        0 => MeterModCommand::Add,
        1 => MeterModCommand::Modify,
        2 => MeterModCommand::Delete,
        _ => return Err(mmfc(MeterModFailedCode::BadCommand, "meter_mod.command")),
    };
    let flags = r.u16("flags")?;
    let meter_id = r.u32("meter_id")?;
    let known = meter_flags::KBPS | meter_flags::PKTPS | meter_flags::BURST | meter_flags::STATS;
    if command != MeterModCommand::Delete
        && (flags & !known != 0
            || flags & (meter_flags::KBPS | meter_flags::PKTPS)
                == meter_flags::KBPS | meter_flags::PKTPS)
    {
        return Err(mmfc(MeterModFailedCode::BadFlags, "meter_mod.flags"));
    }
    Ok(MeterMod {
        command,
        flags,
        meter_id,
        bands: decode_bands(r)?,
    })
}

fn decode_queue_reply(r: &mut Reader<'_>) -> Result<QueueGetConfigReply, DecodeError> {
    let port = r.u32("port")?;
    r.skip(4, "pad")?;
    let mut queues = Vec::new();
    while !r.is_empty() {
        let mut q = sub_by_len(r, 8, 16, "ofp_packet_queue")?;
        let queue_id = q.u32("queue_id")?;
        let qport = q.u32("port")?;
        q.skip(8, "len+pad")?;
        let mut properties = Vec::new();
        while !q.is_empty() {
            let prop_type = q.peek_u16(0, "queue prop type")?;
            let mut p = sub_by_len(&mut q, 2, 8, "queue prop")?;
            p.skip(8, "queue prop header")?;
            let prop = match prop_type {
                1 | 2 => {
                    let rate = p.u16("rate")?;
                    p.skip(6, "pad")?;
                    if prop_type == 1 {
                        QueueProp::MinRate(rate)
                    } else {
                        QueueProp::MaxRate(rate)
                    }
                }
                0xffff => {
                    let experimenter = p.u32("experimenter")?;
                    p.skip(4, "pad")?;
                    QueueProp::Experimenter {
                        experimenter,
                        data: p.take_rest().to_vec(),
                    }
                }
                _ => QueueProp::Unknown {
                    prop_type,
                    data: p.take_rest().to_vec(),
                },
            };
            expect_end(&p, "queue prop")?;
            properties.push(prop);
        }
        queues.push(PacketQueue {
            queue_id,
            port: qport,
            properties,
        });
    }
    Ok(QueueGetConfigReply { port, queues })
}

fn decode_role(r: &mut Reader<'_>) -> Result<Role, DecodeError> {
    let role = r.u32("role")?;
    r.skip(4, "pad")?;
    Ok(Role {
        role,
        generation_id: r.u64("generation_id")?,
    })
}

fn decode_async(r: &mut Reader<'_>) -> Result<AsyncConfig, DecodeError> {
    Ok(AsyncConfig {
        packet_in_mask: [r.u32("packet_in_mask")?, r.u32("packet_in_mask")?],
        port_status_mask: [r.u32("port_status_mask")?, r.u32("port_status_mask")?],
        flow_removed_mask: [r.u32("flow_removed_mask")?, r.u32("flow_removed_mask")?],
    })
}

// ---------------------------------------------------------------------------
// Encoding.

impl Message {
    /// The `ofp_type` of this message.
    pub fn msg_type(&self) -> u8 {
        use msg_type as T;
        match self {
            Message::Hello(_) => T::HELLO,
            Message::Error(_) => T::ERROR,
            Message::EchoRequest(_) => T::ECHO_REQUEST,
            Message::EchoReply(_) => T::ECHO_REPLY,
            Message::Experimenter(_)
            | Message::NxSetPacketInFormat(_)
            | Message::NxSetControllerId(_)
            | Message::NxPacketIn2(_)
            | Message::NxResume(_)
            | Message::BundleControl(_)
            | Message::BundleAdd(_) => T::EXPERIMENTER,
            Message::FeaturesRequest => T::FEATURES_REQUEST,
            Message::FeaturesReply(_) => T::FEATURES_REPLY,
            Message::GetConfigRequest => T::GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => T::GET_CONFIG_REPLY,
            Message::SetConfig(_) => T::SET_CONFIG,
            Message::PacketIn(_) => T::PACKET_IN,
            Message::FlowRemoved(_) => T::FLOW_REMOVED,
            Message::PortStatus(_) => T::PORT_STATUS,
            Message::PacketOut(_) => T::PACKET_OUT,
            Message::FlowMod(_) => T::FLOW_MOD,
            Message::GroupMod(_) => T::GROUP_MOD,
            Message::PortMod(_) => T::PORT_MOD,
            Message::TableMod(_) => T::TABLE_MOD,
            Message::MultipartRequest(_) => T::MULTIPART_REQUEST,
            Message::MultipartReply(_) => T::MULTIPART_REPLY,
            Message::BarrierRequest => T::BARRIER_REQUEST,
            Message::BarrierReply => T::BARRIER_REPLY,
            Message::QueueGetConfigRequest { .. } => T::QUEUE_GET_CONFIG_REQUEST,
            Message::QueueGetConfigReply(_) => T::QUEUE_GET_CONFIG_REPLY,
            Message::RoleRequest(_) => T::ROLE_REQUEST,
            Message::RoleReply(_) => T::ROLE_REPLY,
            Message::GetAsyncRequest => T::GET_ASYNC_REQUEST,
            Message::GetAsyncReply(_) => T::GET_ASYNC_REPLY,
            Message::SetAsync(_) => T::SET_ASYNC,
            Message::MeterMod(_) => T::METER_MOD,
        }
    }

    /// Encodes the message with header into `out`. A message longer than
    /// 65535 bytes cannot be represented; its length field saturates.
    pub fn encode(&self, xid: u32, out: &mut Vec<u8>) {
        let start = out.len();
        OfpHeader {
            version: OFP_VERSION,
            msg_type: self.msg_type(),
            length: 0,
            xid,
        }
        .write(out);
        self.encode_body(xid, out);
        patch_len16(out, start + 2, start);
    }

    /// Convenience: encode into a fresh buffer.
    pub fn to_bytes(&self, xid: u32) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(xid, &mut v);
        v
    }

    fn encode_body(&self, xid: u32, out: &mut Vec<u8>) {
        match self {
            Message::Hello(h) => {
                for e in &h.elements {
                    let start = out.len();
                    match e {
                        HelloElement::VersionBitmap(words) => {
                            out.put_u16(1);
                            out.put_u16(0);
                            for w in words {
                                out.put_u32(*w);
                            }
                        }
                        HelloElement::Unknown { elem_type, data } => {
                            out.put_u16(*elem_type);
                            out.put_u16(0);
                            out.extend_from_slice(data);
                        }
                    }
                    patch_len16(out, start + 2, start);
                    crate::wire::pad_to_8(out, start);
                }
            }
            Message::Error(e) => {
                out.put_u16(e.error.err_type());
                out.put_u16(e.error.code());
                if let OfpError::Experimenter { experimenter, .. } = e.error {
                    out.put_u32(experimenter);
                }
                out.extend_from_slice(&e.data);
            }
            Message::EchoRequest(d) | Message::EchoReply(d) => out.extend_from_slice(d),
            Message::Experimenter(e) => {
                out.put_u32(e.experimenter);
                out.put_u32(e.exp_type);
                out.extend_from_slice(&e.data);
            }
            Message::FeaturesRequest
            | Message::GetConfigRequest
            | Message::BarrierRequest
            | Message::BarrierReply
            | Message::GetAsyncRequest => {}
            Message::FeaturesReply(f) => {
                out.put_u64(f.datapath_id);
                out.put_u32(f.n_buffers);
                out.put_u8(f.n_tables);
                out.put_u8(f.auxiliary_id);
                out.put_u16(0);
                out.put_u32(f.capabilities);
                out.put_u32(f.reserved);
            }
            Message::GetConfigReply(c) | Message::SetConfig(c) => {
                out.put_u16(c.flags);
                out.put_u16(c.miss_send_len);
            }
            Message::PacketIn(p) => {
                out.put_u32(p.buffer_id);
                out.put_u16(p.total_len);
                out.put_u8(p.reason);
                out.put_u8(p.table_id);
                out.put_u64(p.cookie);
                p.match_.encode(out);
                out.put_u16(0);
                out.extend_from_slice(&p.data);
            }
            Message::FlowRemoved(f) => {
                out.put_u64(f.cookie);
                out.put_u16(f.priority);
                out.put_u8(f.reason);
                out.put_u8(f.table_id);
                out.put_u32(f.duration_sec);
                out.put_u32(f.duration_nsec);
                out.put_u16(f.idle_timeout);
                out.put_u16(f.hard_timeout);
                out.put_u64(f.packet_count);
                out.put_u64(f.byte_count);
                f.match_.encode(out);
            }
            Message::PortStatus(p) => {
                out.put_u8(p.reason);
                out.put_bytes(0, 7);
                encode_port(&p.desc, out);
            }
            Message::PacketOut(p) => {
                out.put_u32(p.buffer_id);
                out.put_u32(p.in_port);
                let at = out.len();
                out.put_u16(0);
                out.put_bytes(0, 6);
                let start = out.len();
                Action::encode_list(&p.actions, out);
                patch_len16(out, at, start);
                out.extend_from_slice(&p.data);
            }
            Message::FlowMod(f) => {
                out.put_u64(f.cookie);
                out.put_u64(f.cookie_mask);
                out.put_u8(f.table_id);
                out.put_u8(f.command as u8);
                out.put_u16(f.idle_timeout);
                out.put_u16(f.hard_timeout);
                out.put_u16(f.priority);
                out.put_u32(f.buffer_id);
                out.put_u32(f.out_port);
                out.put_u32(f.out_group);
                out.put_u16(f.flags);
                out.put_u16(0);
                f.match_.encode(out);
                Instruction::encode_list(&f.instructions, out);
            }
            Message::GroupMod(g) => {
                out.put_u16(g.command as u16);
                out.put_u8(g.group_type as u8);
                out.put_u8(0);
                out.put_u32(g.group_id);
                encode_buckets(&g.buckets, out);
            }
            Message::PortMod(p) => {
                out.put_u32(p.port_no);
                out.put_u32(0);
                out.extend_from_slice(&p.hw_addr);
                out.put_u16(0);
                out.put_u32(p.config);
                out.put_u32(p.mask);
                out.put_u32(p.advertise);
                out.put_u32(0);
            }
            Message::TableMod(t) => {
                out.put_u8(t.table_id);
                out.put_bytes(0, 3);
                out.put_u32(t.config);
            }
            Message::MultipartRequest(m) => multipart::encode_request(m, out),
            Message::MultipartReply(m) => multipart::encode_reply(m, out),
            Message::QueueGetConfigRequest { port } => {
                out.put_u32(*port);
                out.put_u32(0);
            }
            Message::QueueGetConfigReply(q) => {
                out.put_u32(q.port);
                out.put_u32(0);
                for pq in &q.queues {
                    let start = out.len();
                    out.put_u32(pq.queue_id);
                    out.put_u32(pq.port);
                    out.put_u16(0);
                    out.put_bytes(0, 6);
                    for p in &pq.properties {
                        let ps = out.len();
                        let ty = match p {
                            QueueProp::MinRate(_) => 1,
                            QueueProp::MaxRate(_) => 2,
                            QueueProp::Experimenter { .. } => 0xffff,
                            QueueProp::Unknown { prop_type, .. } => *prop_type,
                        };
                        out.put_u16(ty);
                        out.put_u16(0);
                        out.put_u32(0);
                        match p {
                            QueueProp::MinRate(r) | QueueProp::MaxRate(r) => {
                                out.put_u16(*r);
                                out.put_bytes(0, 6);
                            }
                            QueueProp::Experimenter { experimenter, data } => {
                                out.put_u32(*experimenter);
                                out.put_u32(0);
                                out.extend_from_slice(data);
                            }
                            QueueProp::Unknown { data, .. } => out.extend_from_slice(data),
                        }
                        patch_len16(out, ps + 2, ps);
                    }
                    patch_len16(out, start + 8, start);
                }
            }
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                out.put_u32(r.role);
                out.put_u32(0);
                out.put_u64(r.generation_id);
            }
            Message::GetAsyncReply(a) | Message::SetAsync(a) => {
                for w in a
                    .packet_in_mask
                    .iter()
                    .chain(&a.port_status_mask)
                    .chain(&a.flow_removed_mask)
                {
                    out.put_u32(*w);
                }
            }
            Message::MeterMod(m) => {
                out.put_u16(m.command as u16);
                out.put_u16(m.flags);
                out.put_u32(m.meter_id);
                encode_bands(&m.bands, out);
            }
            Message::NxSetPacketInFormat(_)
            | Message::NxSetControllerId(_)
            | Message::NxPacketIn2(_)
            | Message::NxResume(_)
            | Message::BundleControl(_)
            | Message::BundleAdd(_) => nx::encode_experimenter(self, xid, out),
        }
    }
}

pub(crate) fn encode_port(p: &Port, out: &mut Vec<u8>) {
    out.put_u32(p.port_no);
    out.put_u32(0);
    out.extend_from_slice(&p.hw_addr);
    out.put_u16(0);
    crate::wire::put_fixed_str(out, &p.name, 16);
    for v in [
        p.config,
        p.state,
        p.curr,
        p.advertised,
        p.supported,
        p.peer,
        p.curr_speed,
        p.max_speed,
    ] {
        out.put_u32(v);
    }
}

pub(crate) fn encode_buckets(buckets: &[Bucket], out: &mut Vec<u8>) {
    for b in buckets {
        let start = out.len();
        out.put_u16(0);
        out.put_u16(b.weight);
        out.put_u32(b.watch_port);
        out.put_u32(b.watch_group);
        out.put_u32(0);
        Action::encode_list(&b.actions, out);
        patch_len16(out, start, start);
    }
}

pub(crate) fn encode_bands(bands: &[MeterBand], out: &mut Vec<u8>) {
    for b in bands {
        let start = out.len();
        match b {
            MeterBand::Drop { rate, burst_size } => {
                out.put_u16(1);
                out.put_u16(16);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.put_u32(0);
            }
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            } => {
                out.put_u16(2);
                out.put_u16(16);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.put_u8(*prec_level);
                out.put_bytes(0, 3);
            }
            MeterBand::Experimenter {
                rate,
                burst_size,
                experimenter,
                data,
            } => {
                out.put_u16(0xffff);
                out.put_u16(0);
                out.put_u32(*rate);
                out.put_u32(*burst_size);
                out.put_u32(*experimenter);
                out.extend_from_slice(data);
                patch_len16(out, start + 2, start);
            }
        }
    }
}

/// Re-exported experimenter ids for users of this module.
pub const NX_EXPERIMENTER: u32 = NX_VENDOR_ID;
pub const ONF_EXPERIMENTER: u32 = ONF_VENDOR_ID;
