//! Nicira (`NX_VENDOR_ID`) and ONF (`ONF_VENDOR_ID`) experimenter messages
//! that Open vSwitch uses with OpenFlow 1.3: packet-in format, controller id,
//! packet-in2, resume, and the OpenFlow 1.3 form of bundles.

use super::{Message, expect_end, msg_type, patch_len16};
use crate::error::{DecodeError, Layer, OfpError};
use crate::oxm::Match;
use crate::wire::{NX_VENDOR_ID, ONF_VENDOR_ID, Reader, pad_len, pad_to_8};
use bytes::BufMut;

/// Nicira message subtypes (`NXT_*`).
pub mod nxt {
    pub const SET_PACKET_IN_FORMAT: u32 = 16;
    pub const SET_CONTROLLER_ID: u32 = 20;
    pub const RESUME: u32 = 28;
    pub const PACKET_IN2: u32 = 30;
}

/// ONF message types (`ONFT_*`).
pub mod onft {
    pub const BUNDLE_CONTROL: u32 = 2300;
    pub const BUNDLE_ADD_MESSAGE: u32 = 2301;
}

/// `NXT_SET_PACKET_IN_FORMAT` values (`NXPIF_*`).
pub mod packet_in_format {
    pub const STANDARD: u32 = 0;
    pub const NXT_PACKET_IN: u32 = 1;
    pub const NXT_PACKET_IN2: u32 = 2;
}

/// ONF 1.3 experimenter error codes for bundles (`OFPBFC_*` as `exp_type`).
pub mod bundle_error {
    pub const BAD_TYPE: u16 = 2306;
    pub const BAD_FLAGS: u16 = 2307;
    pub const MSG_BAD_LEN: u16 = 2308;
    pub const MSG_BAD_XID: u16 = 2309;
    pub const MSG_UNSUP: u16 = 2310;
}

/// The `OfpError` a switch sends for a bundle error (ONF experimenter form).
pub fn bundle_error(exp_type: u16) -> OfpError {
    OfpError::Experimenter {
        exp_type,
        experimenter: ONF_VENDOR_ID,
    }
}

/// `NXT_PACKET_IN2` / `NXT_RESUME` contents (`NXPINT_*` properties).
/// Known properties are typed; anything else is kept in `unknown`
/// (type, payload without padding). Encoding writes them in OVS's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketIn2 {
    pub packet: Vec<u8>,
    pub full_len: Option<u32>,
    pub buffer_id: Option<u32>,
    pub table_id: Option<u8>,
    pub cookie: Option<u64>,
    pub reason: Option<u8>,
    /// Metadata fields (OXM/NXM TLVs).
    pub metadata: Option<Match>,
    pub userdata: Option<Vec<u8>>,
    /// Opaque switch-private continuation (payload after the property header).
    pub continuation: Option<Vec<u8>>,
    pub unknown: Vec<(u16, Vec<u8>)>,
}

/// `NXPINT_*` property types.
pub mod nxpint {
    pub const PACKET: u16 = 0;
    pub const FULL_LEN: u16 = 1;
    pub const BUFFER_ID: u16 = 2;
    pub const TABLE_ID: u16 = 3;
    pub const COOKIE: u16 = 4;
    pub const REASON: u16 = 5;
    pub const METADATA: u16 = 6;
    pub const USERDATA: u16 = 7;
    pub const CONTINUATION: u16 = 8;
}

/// `ofp14_bundle_ctrl_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleCtrlType {
    OpenRequest = 0,
    OpenReply = 1,
    CloseRequest = 2,
    CloseReply = 3,
    CommitRequest = 4,
    CommitReply = 5,
    DiscardRequest = 6,
    DiscardReply = 7,
}

impl BundleCtrlType {
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::OpenRequest,
            1 => Self::OpenReply,
            2 => Self::CloseRequest,
            3 => Self::CloseReply,
            4 => Self::CommitRequest,
            5 => Self::CommitReply,
            6 => Self::DiscardRequest,
            7 => Self::DiscardReply,
            _ => return None,
        })
    }
}

/// `OFPBF_*` bundle flags.
pub mod bundle_flags {
    pub const ATOMIC: u16 = 1;
    pub const ORDERED: u16 = 2;
}

/// `ONFT_BUNDLE_CONTROL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleControl {
    pub bundle_id: u32,
    pub ctrl_type: BundleCtrlType,
    pub flags: u16,
    /// Bundle properties, raw (each `ofp14_bundle_prop_header` TLV, padded).
    pub properties: Vec<u8>,
}

/// `ONFT_BUNDLE_ADD_MESSAGE`. The inner message is encoded with the outer
/// xid, as the spec requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAdd {
    pub bundle_id: u32,
    pub flags: u16,
    pub message: Box<Message>,
    /// Bundle properties, raw (after the inner message and its padding).
    pub properties: Vec<u8>,
}

/// Whether a message type may be put into a bundle (as OVS allows).
pub fn is_bundlable(t: u8) -> bool {
    matches!(
        t,
        msg_type::FLOW_MOD
            | msg_type::GROUP_MOD
            | msg_type::PORT_MOD
            | msg_type::TABLE_MOD
            | msg_type::METER_MOD
            | msg_type::PACKET_OUT
    )
}

pub(super) fn decode_experimenter(xid: u32, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let experimenter = r.u32("experimenter")?;
    let exp_type = r.u32("exp_type")?;
    match (experimenter, exp_type) {
        (NX_VENDOR_ID, nxt::SET_PACKET_IN_FORMAT) => {
            Ok(Message::NxSetPacketInFormat(r.u32("packet_in_format")?))
        }
        (NX_VENDOR_ID, nxt::SET_CONTROLLER_ID) => {
            r.skip(6, "zero")?;
            Ok(Message::NxSetControllerId(r.u16("controller_id")?))
        }
        (NX_VENDOR_ID, nxt::PACKET_IN2) => Ok(Message::NxPacketIn2(decode_packet_in2(r)?)),
        (NX_VENDOR_ID, nxt::RESUME) => Ok(Message::NxResume(decode_packet_in2(r)?)),
        (ONF_VENDOR_ID, onft::BUNDLE_CONTROL) => {
            let bundle_id = r.u32("bundle_id")?;
            let t = r.u16("bundle ctrl type")?;
            let flags = r.u16("bundle flags")?;
            let ctrl_type = BundleCtrlType::from_u16(t).ok_or(DecodeError::invalid(
                "bundle ctrl type",
                bundle_error(bundle_error::BAD_TYPE),
            ))?;
            check_bundle_flags(flags)?;
            Ok(Message::BundleControl(BundleControl {
                bundle_id,
                ctrl_type,
                flags,
                properties: r.take_rest().to_vec(),
            }))
        }
        (ONF_VENDOR_ID, onft::BUNDLE_ADD_MESSAGE) => {
            let bundle_id = r.u32("bundle_id")?;
            r.skip(2, "bundle add pad")?;
            let flags = r.u16("bundle flags")?;
            check_bundle_flags(flags)?;
            let bad_len = || {
                DecodeError::invalid(
                    "bundle inner message length",
                    bundle_error(bundle_error::MSG_BAD_LEN),
                )
            };
            let inner_len = r.peek_u16(2, "inner ofp_header").map_err(|_| bad_len())? as usize;
            if inner_len < 8 || inner_len > r.remaining() {
                return Err(bad_len());
            }
            let inner = r.bytes(inner_len, "inner message")?;
            let inner_type = inner.get(1).copied().unwrap_or(0xff);
            if !is_bundlable(inner_type) {
                return Err(DecodeError::invalid(
                    "bundle inner message type",
                    bundle_error(bundle_error::MSG_UNSUP),
                ));
            }
            let (inner_xid, message) = Message::decode(inner)?;
            if inner_xid != xid {
                return Err(DecodeError::invalid(
                    "bundle inner xid",
                    bundle_error(bundle_error::MSG_BAD_XID),
                ));
            }
            let properties = if r.is_empty() {
                Vec::new()
            } else {
                r.skip(pad_len(inner_len), "bundle add padding")?;
                let p = r.take_rest().to_vec();
                if p.is_empty() {
                    // Padding with no property after it cannot be re-encoded.
                    return Err(DecodeError::BadLength {
                        what: "bundle add padding",
                        len: pad_len(inner_len),
                    });
                }
                p
            };
            Ok(Message::BundleAdd(BundleAdd {
                bundle_id,
                flags,
                message: Box::new(message),
                properties,
            }))
        }
        (NX_VENDOR_ID | ONF_VENDOR_ID, _) => Err(DecodeError::UnknownExpType {
            what: "experimenter message",
            experimenter,
            subtype: exp_type,
        }),
        _ => Err(DecodeError::UnknownExperimenter {
            what: "experimenter message",
            experimenter,
        }),
    }
}

fn check_bundle_flags(flags: u16) -> Result<(), DecodeError> {
    if flags & !(bundle_flags::ATOMIC | bundle_flags::ORDERED) != 0 {
        return Err(DecodeError::invalid(
            "bundle flags",
            bundle_error(bundle_error::BAD_FLAGS),
        ));
    }
    Ok(())
}

fn bad_prop_len(what: &'static str, len: usize) -> DecodeError {
    DecodeError::BadLength { what, len }
}

fn decode_packet_in2(r: &mut Reader<'_>) -> Result<PacketIn2, DecodeError> {
    let mut p = PacketIn2::default();
    let mut have_packet = false;
    while !r.is_empty() {
        let ty = r.peek_u16(0, "packet-in2 prop type")?;
        let len = r.peek_u16(2, "packet-in2 prop len")? as usize;
        if len < 4 {
            return Err(bad_prop_len("packet-in2 prop", len));
        }
        let mut v = r.sub(len, "packet-in2 prop")?;
        r.skip(pad_len(len), "packet-in2 prop padding")?;
        v.skip(4, "prop header")?;
        let n = v.remaining();
        let dup = || {
            DecodeError::invalid(
                "duplicate packet-in2 property",
                OfpError::BadRequest(crate::error::BadRequestCode::BadLen),
            )
        };
        match ty {
            nxpint::PACKET => {
                if have_packet {
                    return Err(dup());
                }
                have_packet = true;
                p.packet = v.take_rest().to_vec();
            }
            nxpint::FULL_LEN | nxpint::BUFFER_ID => {
                if n != 4 {
                    return Err(bad_prop_len("packet-in2 u32 prop", len));
                }
                let x = v.u32("u32 prop")?;
                let slot = if ty == nxpint::FULL_LEN {
                    &mut p.full_len
                } else {
                    &mut p.buffer_id
                };
                if slot.replace(x).is_some() {
                    return Err(dup());
                }
            }
            nxpint::TABLE_ID | nxpint::REASON => {
                if n != 1 {
                    return Err(bad_prop_len("packet-in2 u8 prop", len));
                }
                let x = v.u8("u8 prop")?;
                let slot = if ty == nxpint::TABLE_ID {
                    &mut p.table_id
                } else {
                    &mut p.reason
                };
                if slot.replace(x).is_some() {
                    return Err(dup());
                }
            }
            nxpint::COOKIE => {
                if n != 12 {
                    return Err(bad_prop_len("packet-in2 cookie", len));
                }
                v.skip(4, "pad")?;
                if p.cookie.replace(v.u64("cookie")?).is_some() {
                    return Err(dup());
                }
            }
            nxpint::METADATA => {
                let m = Match::decode_oxms(&mut v).map_err(|e| e.in_layer(Layer::Match))?;
                if p.metadata.replace(m).is_some() {
                    return Err(dup());
                }
            }
            nxpint::USERDATA => {
                if p.userdata.replace(v.take_rest().to_vec()).is_some() {
                    return Err(dup());
                }
            }
            nxpint::CONTINUATION => {
                if p.continuation.replace(v.take_rest().to_vec()).is_some() {
                    return Err(dup());
                }
            }
            _ => p.unknown.push((ty, v.take_rest().to_vec())),
        }
        expect_end(&v, "packet-in2 prop")?;
    }
    if !have_packet {
        return Err(DecodeError::invalid(
            "packet-in2 without packet",
            OfpError::BadRequest(crate::error::BadRequestCode::BadLen),
        ));
    }
    Ok(p)
}

fn put_prop(out: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_u16(ty);
    out.put_u16(0);
    f(out);
    patch_len16(out, start + 2, start);
    pad_to_8(out, start);
}

fn encode_packet_in2(p: &PacketIn2, out: &mut Vec<u8>) {
    put_prop(out, nxpint::PACKET, |o| o.extend_from_slice(&p.packet));
    if let Some(x) = p.full_len {
        put_prop(out, nxpint::FULL_LEN, |o| o.put_u32(x));
    }
    if let Some(x) = p.buffer_id {
        put_prop(out, nxpint::BUFFER_ID, |o| o.put_u32(x));
    }
    if let Some(x) = p.table_id {
        put_prop(out, nxpint::TABLE_ID, |o| o.put_u8(x));
    }
    if let Some(x) = p.cookie {
        put_prop(out, nxpint::COOKIE, |o| {
            o.put_u32(0);
            o.put_u64(x);
        });
    }
    if let Some(x) = p.reason {
        put_prop(out, nxpint::REASON, |o| o.put_u8(x));
    }
    if let Some(m) = &p.metadata {
        put_prop(out, nxpint::METADATA, |o| m.encode_oxms(o));
    }
    if let Some(u) = &p.userdata {
        put_prop(out, nxpint::USERDATA, |o| o.extend_from_slice(u));
    }
    if let Some(c) = &p.continuation {
        put_prop(out, nxpint::CONTINUATION, |o| o.extend_from_slice(c));
    }
    for (ty, data) in &p.unknown {
        put_prop(out, *ty, |o| o.extend_from_slice(data));
    }
}

pub(super) fn encode_experimenter(m: &Message, xid: u32, out: &mut Vec<u8>) {
    match m {
        Message::NxSetPacketInFormat(f) => {
            out.put_u32(NX_VENDOR_ID);
            out.put_u32(nxt::SET_PACKET_IN_FORMAT);
            out.put_u32(*f);
        }
        Message::NxSetControllerId(id) => {
            out.put_u32(NX_VENDOR_ID);
            out.put_u32(nxt::SET_CONTROLLER_ID);
            out.put_bytes(0, 6);
            out.put_u16(*id);
        }
        Message::NxPacketIn2(p) | Message::NxResume(p) => {
            out.put_u32(NX_VENDOR_ID);
            out.put_u32(if matches!(m, Message::NxResume(_)) {
                nxt::RESUME
            } else {
                nxt::PACKET_IN2
            });
            encode_packet_in2(p, out);
        }
        Message::BundleControl(b) => {
            out.put_u32(ONF_VENDOR_ID);
            out.put_u32(onft::BUNDLE_CONTROL);
            out.put_u32(b.bundle_id);
            out.put_u16(b.ctrl_type as u16);
            out.put_u16(b.flags);
            out.extend_from_slice(&b.properties);
        }
        Message::BundleAdd(b) => {
            out.put_u32(ONF_VENDOR_ID);
            out.put_u32(onft::BUNDLE_ADD_MESSAGE);
            out.put_u32(b.bundle_id);
            out.put_u16(0);
            out.put_u16(b.flags);
            let inner = out.len();
            b.message.encode(xid, out);
            if !b.properties.is_empty() {
                pad_to_8(out, inner);
                out.extend_from_slice(&b.properties);
            }
        }
        _ => {}
    }
}
