//! Raw-frame helpers used by the connection layer.
//!
//! The connection layer recognises the few message kinds it handles itself
//! (hello, echo, barrier, error, multipart reply) from the header's type byte
//! and builds those frames itself, so it does not depend on the shape of
//! [`crate::Message`] variants.

use crate::error::OfpError;
use crate::wire::{OFP_HEADER_LEN, OfpHeader};

pub(crate) const OFPT_HELLO: u8 = 0;
pub(crate) const OFPT_ERROR: u8 = 1;
pub(crate) const OFPT_ECHO_REQUEST: u8 = 2;
pub(crate) const OFPT_ECHO_REPLY: u8 = 3;
pub(crate) const OFPT_MULTIPART_REPLY: u8 = 19;
pub(crate) const OFPT_BARRIER_REQUEST: u8 = 20;
pub(crate) const OFPT_BARRIER_REPLY: u8 = 21;
/// `OFPMPF_REPLY_MORE` in `ofp_multipart_reply.flags`.
pub(crate) const OFPMPF_REPLY_MORE: u16 = 1;
/// `OFPHET_VERSIONBITMAP`.
pub(crate) const OFPHET_VERSIONBITMAP: u16 = 1;
/// Bytes of the offending request an OFPT_ERROR carries (the spec asks for at least 64).
pub const ERROR_DATA_MAX: usize = 64;

/// Header fields of a complete frame (`frame.len() >= 8` is checked by the framer).
pub(crate) fn header(frame: &[u8]) -> Option<OfpHeader> {
    OfpHeader::parse(frame).ok()
}

/// Builds a frame with the given header fields and body (length patched in).
/// Bodies longer than 65527 bytes are truncated so that the length fits.
pub(crate) fn build(version: u8, msg_type: u8, xid: u32, body: &[u8]) -> Vec<u8> {
    let body = &body[..body.len().min(usize::from(u16::MAX) - OFP_HEADER_LEN)];
    let mut out = Vec::with_capacity(OFP_HEADER_LEN + body.len());
    OfpHeader {
        version,
        msg_type,
        length: (OFP_HEADER_LEN + body.len()) as u16,
        xid,
    }
    .write(&mut out);
    out.extend_from_slice(body);
    out
}

/// Bitmap (bit `v` = wire version `v`) of a list of versions; versions >= 32 are ignored.
pub fn version_bitmap(versions: &[u8]) -> u32 {
    versions
        .iter()
        .filter(|&&v| v < 32)
        .fold(0, |acc, &v| acc | (1u32 << v))
}

/// Highest version set in a bitmap.
pub(crate) fn highest(bitmap: u32) -> Option<u8> {
    (bitmap != 0).then(|| (31 - bitmap.leading_zeros()) as u8)
}

/// OFPT_HELLO with one `OFPHET_VERSIONBITMAP` element; the header carries the
/// highest version of the bitmap.
pub fn hello(bitmap: u32, xid: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&OFPHET_VERSIONBITMAP.to_be_bytes());
    body.extend_from_slice(&8u16.to_be_bytes()); // element header + one bitmap word
    body.extend_from_slice(&bitmap.to_be_bytes());
    build(highest(bitmap).unwrap_or(1), OFPT_HELLO, xid, &body)
}

/// What a peer's HELLO says it supports: the header version and, if present,
/// the (first 32 versions of the) version bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHello {
    pub version: u8,
    pub bitmap: Option<u32>,
}

impl PeerHello {
    /// Parses a whole OFPT_HELLO frame. Malformed elements end element parsing
    /// (what was read before them is kept), like OVS which ignores bad elements.
    pub fn parse(frame: &[u8]) -> Option<PeerHello> {
        let h = header(frame)?;
        let mut rest = frame.get(OFP_HEADER_LEN..)?;
        let mut bitmap = None;
        while rest.len() >= 4 {
            let t = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            if len < 4 || len > rest.len() {
                break;
            }
            if t == OFPHET_VERSIONBITMAP && len >= 8 {
                // Only the first word matters: we never speak versions >= 32.
                bitmap = Some(u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]));
            }
            let padded = len.div_ceil(8).saturating_mul(8).min(rest.len());
            rest = &rest[padded..];
        }
        Some(PeerHello {
            version: h.version,
            bitmap,
        })
    }

    /// Versions the peer supports as a bitmap: the bitmap element if present,
    /// otherwise every version up to the header's (as OVS does).
    pub fn versions(&self) -> u32 {
        match self.bitmap {
            Some(b) => b,
            None if self.version >= 31 => !1,
            None => ((2u32 << self.version) - 1) & !1,
        }
    }
}

/// The negotiated version: the highest version both sides support.
pub fn negotiate(ours: u32, peer: &PeerHello) -> Option<u8> {
    highest(ours & peer.versions())
}

/// OFPT_ERROR frame for `err`. `data` is the offending request (truncated to
/// [`ERROR_DATA_MAX`] bytes) or, for HELLO_FAILED, an ASCII explanation.
pub fn error(version: u8, xid: u32, err: OfpError, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + data.len());
    body.extend_from_slice(&err.err_type().to_be_bytes());
    body.extend_from_slice(&err.code().to_be_bytes());
    if let OfpError::Experimenter { experimenter, .. } = err {
        body.extend_from_slice(&experimenter.to_be_bytes());
    }
    let data = if matches!(err, OfpError::HelloFailed(_)) {
        data
    } else {
        &data[..data.len().min(ERROR_DATA_MAX)]
    };
    body.extend_from_slice(data);
    build(version, OFPT_ERROR, xid, &body)
}

/// Parses an OFPT_ERROR frame into the typed error and its data.
pub fn parse_error(frame: &[u8]) -> Option<(OfpError, Vec<u8>)> {
    let b = frame.get(OFP_HEADER_LEN..)?;
    if b.len() < 4 {
        return None;
    }
    let t = u16::from_be_bytes([b[0], b[1]]);
    let c = u16::from_be_bytes([b[2], b[3]]);
    if t == crate::error::OFPET_EXPERIMENTER {
        let e = b.get(4..8)?;
        let experimenter = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        Some((
            OfpError::Experimenter {
                exp_type: c,
                experimenter,
            },
            b[8..].to_vec(),
        ))
    } else {
        Some((OfpError::from_type_code(t, c), b[4..].to_vec()))
    }
}

/// True for an OFPT_MULTIPART_REPLY with `OFPMPF_REPLY_MORE` set.
pub(crate) fn reply_more(frame: &[u8]) -> bool {
    frame.get(1) == Some(&OFPT_MULTIPART_REPLY)
        && frame
            .get(10..12)
            .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & OFPMPF_REPLY_MORE != 0)
}

/// "OpenFlow 1.0, OpenFlow 1.3" for a bitmap.
pub(crate) fn describe(bitmap: u32) -> String {
    let names: Vec<String> = (0..32u8)
        .filter(|v| bitmap & (1 << v) != 0)
        .map(|v| match v {
            1..=6 => format!("OpenFlow 1.{}", v - 1),
            v => format!("version {v:#04x}"),
        })
        .collect();
    if names.is_empty() {
        "no versions".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HelloFailedCode;

    #[test]
    fn hello_bytes_match_ovs() {
        // `ovs-ofctl encode-hello 0x10`-style hello: OF1.3 with bitmap 0x10.
        assert_eq!(
            hello(0x10, 7),
            [4, 0, 0, 16, 0, 0, 0, 7, 0, 1, 0, 8, 0, 0, 0, 0x10]
        );
        let p = PeerHello::parse(&hello(0x12, 1)).unwrap();
        assert_eq!(
            p,
            PeerHello {
                version: 4,
                bitmap: Some(0x12)
            }
        );
    }

    #[test]
    fn negotiation() {
        let of13 = version_bitmap(&[4]);
        let no_bitmap = |v| PeerHello {
            version: v,
            bitmap: None,
        };
        assert_eq!(negotiate(of13, &no_bitmap(4)), Some(4));
        assert_eq!(negotiate(of13, &no_bitmap(6)), Some(4));
        assert_eq!(negotiate(of13, &no_bitmap(1)), None);
        let both = version_bitmap(&[1, 4]);
        assert_eq!(negotiate(both, &no_bitmap(3)), Some(1));
        let p = PeerHello {
            version: 6,
            bitmap: Some(0b0111_0010),
        };
        assert_eq!(negotiate(both, &p), Some(4));
        let p = PeerHello {
            version: 6,
            bitmap: Some(0b0110_0000),
        };
        assert_eq!(negotiate(both, &p), None);
    }

    #[test]
    fn hello_parse_is_total() {
        // Bad element lengths and truncated bodies never panic.
        for body in [
            &[0u8, 1, 0, 2][..],
            &[0, 1, 0, 200, 0, 0],
            &[0, 1, 0, 8, 0, 0],
            &[0, 9, 0, 5, 1, 2, 3, 4, 0, 1, 0, 8, 0, 0, 0, 0x10],
        ] {
            let f = build(4, 0, 0, body);
            let _ = PeerHello::parse(&f);
        }
        // An unknown element followed by a bitmap (element padded to 8).
        let f = build(
            4,
            0,
            0,
            &[0, 9, 0, 5, 1, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0x10],
        );
        assert_eq!(PeerHello::parse(&f).unwrap().bitmap, Some(0x10));
        assert!(PeerHello::parse(&[4, 0]).is_none());
    }

    #[test]
    fn error_roundtrip() {
        let e = OfpError::HelloFailed(HelloFailedCode::Incompatible);
        let f = error(1, 5, e, b"text");
        assert_eq!(
            f,
            [1, 1, 0, 16, 0, 0, 0, 5, 0, 0, 0, 0, b't', b'e', b'x', b't']
        );
        assert_eq!(parse_error(&f).unwrap(), (e, b"text".to_vec()));
        let x = OfpError::Experimenter {
            exp_type: 3,
            experimenter: 0x2320,
        };
        let f = error(4, 1, x, &[9; 100]);
        assert_eq!(f.len(), 8 + 8 + ERROR_DATA_MAX);
        assert_eq!(parse_error(&f).unwrap(), (x, vec![9; ERROR_DATA_MAX]));
        assert!(parse_error(&[4, 1, 0, 10, 0, 0, 0, 0, 0, 1]).is_none());
    }

    #[test]
    fn multipart_more_flag() {
        let mut f = build(4, OFPT_MULTIPART_REPLY, 1, &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(reply_more(&f));
        f[11] = 0;
        assert!(!reply_more(&f));
        assert!(!reply_more(&build(4, OFPT_MULTIPART_REPLY, 1, &[0, 0])));
    }
}
