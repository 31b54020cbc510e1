//! Every OpenFlow 1.3 message.
//!
//! STUB: to be replaced by the full implementation (see the helper contract).

use crate::error::DecodeError;
use crate::wire::{OFP_VERSION, OfpHeader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello,
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    BarrierRequest,
    BarrierReply,
}

impl Message {
    /// Decodes one whole frame (header included). The header's length must
    /// equal `buf.len()`. Returns the xid and the message.
    pub fn decode(buf: &[u8]) -> Result<(u32, Message), DecodeError> {
        let h = OfpHeader::parse(buf)?;
        let m = match h.msg_type {
            0 => Message::Hello,
            2 => Message::EchoRequest(buf[8..].to_vec()),
            3 => Message::EchoReply(buf[8..].to_vec()),
            20 => Message::BarrierRequest,
            21 => Message::BarrierReply,
            t => return Err(DecodeError::UnknownType(t)),
        };
        Ok((h.xid, m))
    }

    /// Encodes the message with header into `out`.
    pub fn encode(&self, xid: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let (t, body): (u8, &[u8]) = match self {
            Message::Hello => (0, &[]),
            Message::EchoRequest(d) => (2, d),
            Message::EchoReply(d) => (3, d),
            Message::BarrierRequest => (20, &[]),
            Message::BarrierReply => (21, &[]),
        };
        OfpHeader {
            version: OFP_VERSION,
            msg_type: t,
            length: 0,
            xid,
        }
        .write(out);
        out.extend_from_slice(body);
        let len = (out.len() - start) as u16;
        crate::wire::patch_u16(out, start + 2, len);
    }

    /// Convenience: encode into a fresh buffer.
    pub fn to_bytes(&self, xid: u32) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(xid, &mut v);
        v
    }
}
