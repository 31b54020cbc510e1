//! OpenFlow 1.3 actions and Nicira extension actions.
//!
//! STUB: to be replaced by the full implementation (see the helper contract).

use crate::error::{DecodeError, Layer};
use crate::wire::Reader;
use bytes::BufMut;

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `OFPAT_OUTPUT`.
    Output { port: u32, max_len: u16 },
}

impl Action {
    /// Decodes an action list occupying exactly `len` bytes.
    pub fn decode_list(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>, DecodeError> {
        let mut body = r
            .sub(len, "action list")
            .map_err(|e| e.in_layer(Layer::Action))?;
        let mut out = Vec::new();
        while !body.is_empty() {
            let _ty = body
                .u16("action type")
                .map_err(|e| e.in_layer(Layer::Action))?;
            let _len = body
                .u16("action len")
                .map_err(|e| e.in_layer(Layer::Action))?;
            let port = body
                .u32("output port")
                .map_err(|e| e.in_layer(Layer::Action))?;
            let max_len = body.u16("max_len").map_err(|e| e.in_layer(Layer::Action))?;
            body.skip(6, "pad").map_err(|e| e.in_layer(Layer::Action))?;
            out.push(Action::Output { port, max_len });
        }
        Ok(out)
    }

    /// Encodes an action list.
    pub fn encode_list(actions: &[Action], out: &mut Vec<u8>) {
        for a in actions {
            a.encode(out);
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Action::Output { port, max_len } => {
                out.put_u16(0);
                out.put_u16(16);
                out.put_u32(*port);
                out.put_u16(*max_len);
                out.put_bytes(0, 6);
            }
        }
    }
}
