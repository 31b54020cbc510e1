//! Byte-level primitives shared by every part of the codec: a bounds-checked
//! big-endian reader, the OpenFlow header and framing helpers.
//!
//! Nothing here panics on any input: every read is checked and returns a
//! [`DecodeError`] that already knows which OFPT_ERROR a switch sends back.

use crate::error::{BadRequestCode, DecodeError, OfpError};
use bytes::BufMut;

/// OpenFlow 1.3 wire version.
pub const OFP_VERSION: u8 = 0x04;
/// Length of the fixed OpenFlow header.
pub const OFP_HEADER_LEN: usize = 8;
/// The Nicira experimenter id (`NX_VENDOR_ID`).
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// The ONF experimenter id (`ONF_VENDOR_ID`).
pub const ONF_VENDOR_ID: u32 = 0x4f4e_4600;

/// The fixed header that starts every OpenFlow message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OfpHeader {
    pub version: u8,
    pub msg_type: u8,
    pub length: u16,
    pub xid: u32,
}

impl OfpHeader {
    /// Parses the header at the start of `buf` (at least 8 bytes).
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < OFP_HEADER_LEN {
            return Err(DecodeError::Truncated {
                what: "ofp_header",
                need: OFP_HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Self {
            version: buf[0],
            msg_type: buf[1],
            length: u16::from_be_bytes([buf[2], buf[3]]),
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.put_u8(self.version);
        out.put_u8(self.msg_type);
        out.put_u16(self.length);
        out.put_u32(self.xid);
    }
}

/// Outcome of looking for one complete OpenFlow frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet; at least this many are needed in total.
    Incomplete(usize),
    /// A whole frame of this many bytes is available.
    Complete(usize),
}

/// Finds the first frame in a byte stream. Only framing corruption (a length
/// field shorter than the header) is an error: that is the one condition on
/// which a connection must be closed, because the stream cannot be resynced.
pub fn frame(buf: &[u8]) -> Result<Frame, DecodeError> {
    if buf.len() < OFP_HEADER_LEN {
        return Ok(Frame::Incomplete(OFP_HEADER_LEN));
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len < OFP_HEADER_LEN {
        return Err(DecodeError::BadLength {
            what: "ofp_header.length",
            len,
        });
    }
    if buf.len() < len {
        Ok(Frame::Incomplete(len))
    } else {
        Ok(Frame::Complete(len))
    }
}

/// A bounds-checked big-endian cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Offset of the cursor from the start of the slice it was created on.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() < n {
            Err(DecodeError::Truncated {
                what,
                need: n,
                have: self.remaining(),
            })
        } else {
            Ok(())
        }
    }

    /// Consumes `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        self.need(n, what)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Splits off a sub-reader over the next `n` bytes.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        Ok(Reader::new(self.bytes(n, what)?))
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.bytes(n, what).map(|_| ())
    }

    /// Consumes everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Peeks a big-endian u16 at `off` bytes past the cursor.
    pub fn peek_u16(&self, off: usize, what: &'static str) -> Result<u16, DecodeError> {
        if self.remaining() < off + 2 {
            return Err(DecodeError::Truncated {
                what,
                need: off + 2,
                have: self.remaining(),
            });
        }
        let p = self.pos + off;
        Ok(u16::from_be_bytes([self.buf[p], self.buf[p + 1]]))
    }

    /// Peeks a big-endian u32 at `off` bytes past the cursor.
    pub fn peek_u32(&self, off: usize, what: &'static str) -> Result<u32, DecodeError> {
        if self.remaining() < off + 4 {
            return Err(DecodeError::Truncated {
                what,
                need: off + 4,
                have: self.remaining(),
            });
        }
        let p = self.pos + off;
        Ok(u32::from_be_bytes([
            self.buf[p],
            self.buf[p + 1],
            self.buf[p + 2],
            self.buf[p + 3],
        ]))
    }

    /// Reads a NUL-padded fixed-width string (e.g. `desc` fields, port names).
    /// Invalid UTF-8 is replaced (lossy) and the result is cut, at a char
    /// boundary, to `n - 1` bytes, so that it always re-encodes unchanged.
    pub fn fixed_str(&mut self, n: usize, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes(n, what)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        let mut s = String::from_utf8_lossy(&b[..end]).into_owned();
        truncate_at_char(&mut s, n.saturating_sub(1));
        Ok(s)
    }
}

/// Writes `s` NUL-padded (and truncated at a char boundary, keeping a
/// terminating NUL) to `n` bytes.
pub fn put_fixed_str(out: &mut Vec<u8>, s: &str, n: usize) {
    let mut take = s.len().min(n.saturating_sub(1));
    while !s.is_char_boundary(take) {
        take -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..take]);
    out.resize(out.len() + (n - take), 0);
}

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

/// Pads `out` with zeros so that the bytes written since `start` are a multiple of 8.
pub fn pad_to_8(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let padded = len.div_ceil(8) * 8;
    out.resize(start + padded, 0);
}

/// Number of zero bytes needed to round `len` up to a multiple of 8.
pub const fn pad_len(len: usize) -> usize {
    len.div_ceil(8) * 8 - len
}

/// Overwrites a big-endian u16 at `at` (used to back-patch length fields).
pub fn patch_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Back-patches a u16 length field at `at` with the number of bytes written
/// since `start`. Returns an error when the object outgrew 65535 bytes.
pub fn patch_len(out: &mut [u8], at: usize, start: usize) -> Result<(), OfpError> {
    let len = out.len() - start;
    let len16 = u16::try_from(len).map_err(|_| OfpError::bad_request(BadRequestCode::BadLen))?;
    patch_u16(out, at, len16);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(frame(&[4, 0, 0]).unwrap(), Frame::Incomplete(8));
        assert_eq!(
            frame(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap(),
            Frame::Complete(8)
        );
        assert_eq!(
            frame(&[4, 0, 0, 16, 0, 0, 0, 1]).unwrap(),
            Frame::Incomplete(16)
        );
        assert!(frame(&[4, 0, 0, 4, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x").unwrap(), 0x0102);
        assert!(r.u16("y").is_err());
        assert_eq!(r.u8("z").unwrap(), 3);
        assert!(r.is_empty());
    }

    #[test]
    fn fixed_strings() {
        let mut v = Vec::new();
        put_fixed_str(&mut v, "br0", 16);
        assert_eq!(v.len(), 16);
        assert_eq!(Reader::new(&v).fixed_str(16, "s").unwrap(), "br0");
        let mut v = Vec::new();
        put_fixed_str(&mut v, "0123456789abcdefXYZ", 16);
        assert_eq!(v.len(), 16);
        assert_eq!(v[15], 0);
    }
}
