//! [`CompactMatch`]: a rule's match as received, in a few bytes.
//!
//! A [`Match`] is a vector of [`MatchField`]s of 64 bytes each (a `u128`
//! value and an optional `u128` mask) behind a 24-byte header; a rule of the
//! controller's pipelines matches 3–8 fields, so its match took ~0.5 KB. The
//! compact form keeps each field as `[field id][flags][value][mask]` with the
//! value and mask in the field's wire width, big-endian, in the order
//! received: 4–10 bytes a field. It converts back to the identical [`Match`]
//! (field order, masks and all; property-tested), so dump-flows, flow-removed
//! and flow stats show the match exactly as the controller sent it, and it
//! encodes an `ofp_match` directly, without building the [`Match`].

use plexus_openflow::oxm::{FIELDS, FieldId, Match, MatchField, encode_header, write_value};
use std::fmt;

/// `flags` bit: a mask follows the value.
const HAS_MASK: u8 = 1;
/// `flags` bit: value (and mask) are stored as full 16-byte `u128`s because
/// they do not fit the field's wire width (only possible for a match built
/// in-process; the codec rejects such values).
const WIDE: u8 = 2;

/// A [`Match`] in compact form (see the module documentation).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct CompactMatch(Box<[u8]>);

impl CompactMatch {
    /// The compact form of `m`.
    pub fn new(m: &Match) -> Self {
        let mut out = Vec::with_capacity(m.fields.len() * 10);
        for f in &m.fields {
            let len = f.field.len();
            let fits = |v: u128| len >= 16 || v >> (8 * len) == 0;
            let wide = !(fits(f.value) && f.mask.is_none_or(fits));
            let n = if wide { 16 } else { len };
            out.push(f.field as u8);
            out.push(if f.mask.is_some() { HAS_MASK } else { 0 } | if wide { WIDE } else { 0 });
            write_value(&mut out, f.value, n);
            if let Some(mk) = f.mask {
                write_value(&mut out, mk, n);
            }
        }
        CompactMatch(out.into_boxed_slice())
    }

    /// Whether the match is empty (matches every packet).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes held on the heap.
    pub fn heap_len(&self) -> usize {
        self.0.len()
    }

    /// The compact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The match of compact bytes from [`as_bytes`](Self::as_bytes).
    pub fn decode_bytes(b: &[u8]) -> Match {
        Match {
            fields: Fields { b }.collect(),
        }
    }

    /// The fields, in the order received.
    pub fn fields(&self) -> Fields<'_> {
        Fields { b: &self.0 }
    }

    /// The match as received.
    pub fn to_match(&self) -> Match {
        Match {
            fields: self.fields().collect(),
        }
    }

    /// Writes `ofp_match` with its padding: the bytes [`Match::encode`] writes
    /// for [`to_match`](Self::to_match).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 1, 0, 0]); // OFPMT_OXM, length patched below
        for f in self.fields() {
            let len = f.field.len();
            encode_header(out, f.field, f.mask.is_some());
            write_value(out, f.value, len);
            if let Some(m) = f.mask {
                write_value(out, m, len);
            }
        }
        let len = out.len() - start;
        out[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        out.resize(out.len() + (8 - len % 8) % 8, 0);
    }
}

/// Iterator over a [`CompactMatch`]'s fields.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    b: &'a [u8],
}

impl Iterator for Fields<'_> {
    type Item = MatchField;

    fn next(&mut self) -> Option<MatchField> {
        let (&id, rest) = self.b.split_first()?;
        let (&flags, rest) = rest.split_first()?;
        // Only `CompactMatch::new` writes these bytes: every id is a field.
        let field: FieldId = FIELDS.get(id as usize)?.id;
        let n = if flags & WIDE != 0 { 16 } else { field.len() };
        let take = if flags & HAS_MASK != 0 { 2 * n } else { n };
        if rest.len() < take {
            self.b = &[];
            return None;
        }
        let value = be(&rest[..n]);
        let mask = (flags & HAS_MASK != 0).then(|| be(&rest[n..2 * n]));
        self.b = &rest[take..];
        Some(MatchField { field, value, mask })
    }
}

fn be(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, &x| (acc << 8) | x as u128)
}

impl fmt::Debug for CompactMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = MatchField> {
        let n = FIELDS.len();
        (0..n, any::<u128>(), any::<Option<u128>>(), any::<bool>()).prop_map(|(i, v, m, narrow)| {
            let field = FIELDS[i].id;
            let full = field.full_mask();
            // Mostly codec-shaped values (inside the field), sometimes any u128.
            let (value, mask) = if narrow {
                (v & full, m.map(|m| m & full))
            } else {
                (v, m)
            };
            MatchField { field, value, mask }
        })
    }

    proptest! {
        #[test]
        fn round_trips_exactly(fields in proptest::collection::vec(field(), 0..12)) {
            let m = Match { fields };
            let c = CompactMatch::new(&m);
            prop_assert_eq!(c.to_match(), m.clone());
            prop_assert_eq!(c.is_empty(), m.fields.is_empty());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            m.encode(&mut a);
            c.encode(&mut b);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn is_a_fraction_of_the_match() {
        let mut m = Match::new();
        m.set(FieldId::InPort, 7)
            .set(FieldId::EthType, 0x800)
            .set_masked(FieldId::Ipv4Dst, 0x0a00_0000, 0xffff_ff00)
            .set(FieldId::IpProto, 6)
            .set(FieldId::TcpDst, 80);
        let c = CompactMatch::new(&m);
        // 5 × 2 header bytes + 4 + 2 + 8 + 1 + 2 value/mask bytes.
        assert_eq!(c.heap_len(), 27);
        assert_eq!(c.to_match(), m);
        assert!(!c.is_empty() && CompactMatch::new(&Match::new()).is_empty());
    }
}
