//! Pre-encoded responses: every resource of a snapshot is encoded once (as the
//! `resources` field entry of a SotW `DiscoveryResponse` and of a
//! `DeltaDiscoveryResponse`), and each stream's response is its small per-stream header
//! (version, nonce, type URL, removals) followed by shared, reference-counted entries.
//! Protobuf allows fields in any order and repeated fields to be split, so the bytes are
//! exactly a valid `DiscoveryResponse` / `DeltaDiscoveryResponse`.
//!
//! [`WireResponse`] implements [`prost::Message`] (encode side only; decoding keeps no
//! field) so tonic's prost codec can send it; the hand-written ADS service in
//! [`crate::server`] uses it as its response type.

use bytes::{Buf, BufMut, Bytes};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

/// Field number of `resources` in both `DiscoveryResponse` and `DeltaDiscoveryResponse`.
pub const RESOURCES_TAG: u32 = 2;

/// An encoded `DiscoveryResponse` or `DeltaDiscoveryResponse`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireResponse {
    /// The message without its `resources` (encoded per stream; small).
    pub head: Vec<u8>,
    /// Encoded `resources` entries (field key, length, message), shared across streams.
    pub parts: Vec<Bytes>,
}

impl WireResponse {
    /// A SotW response: `head` must have no resources.
    pub fn sotw(head: &DiscoveryResponse, parts: Vec<Bytes>) -> Self {
        debug_assert!(head.resources.is_empty());
        Self {
            head: head.encode_to_vec(),
            parts,
        }
    }

    /// A delta response: `head` must have no resources.
    pub fn delta(head: &DeltaDiscoveryResponse, parts: Vec<Bytes>) -> Self {
        debug_assert!(head.resources.is_empty());
        Self {
            head: head.encode_to_vec(),
            parts,
        }
    }

    /// Number of resources carried.
    pub fn resource_count(&self) -> usize {
        self.parts.len()
    }

    /// Decodes into a SotW response (per-type services and tests).
    pub fn to_sotw(&self) -> Result<DiscoveryResponse, prost::DecodeError> {
        DiscoveryResponse::decode(self.encode_to_vec().as_slice())
    }

    /// Decodes into a delta response (per-type services and tests).
    pub fn to_delta(&self) -> Result<DeltaDiscoveryResponse, prost::DecodeError> {
        DeltaDiscoveryResponse::decode(self.encode_to_vec().as_slice())
    }
}

/// Encodes `msg` as one `resources` (field 2) entry.
pub fn resources_entry<M: Message>(msg: &M) -> Bytes {
    let mut buf = Vec::with_capacity(msg.encoded_len() + 8);
    prost::encoding::message::encode(RESOURCES_TAG, msg, &mut buf);
    Bytes::from(buf)
}

impl Message for WireResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.head);
        for p in &self.parts {
            buf.put_slice(p);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.len() + self.parts.iter().map(Bytes::len).sum::<usize>()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.parts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;
    use envoy_types::pb::google::protobuf::Any;

    #[test]
    fn pre_encoded_equals_prost_encoding() {
        let any = |v: &[u8]| Any {
            type_url: "type.googleapis.com/x".into(),
            value: v.to_vec(),
        };
        let full = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any(b"a"), any(b"bc")],
            type_url: "t".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        let head = DiscoveryResponse {
            resources: vec![],
            ..full.clone()
        };
        let w = WireResponse::sotw(&head, full.resources.iter().map(resources_entry).collect());
        assert_eq!(w.to_sotw().unwrap(), full);
        assert_eq!(w.encoded_len(), w.encode_to_vec().len());

        let r = Resource {
            name: "n".into(),
            version: "1".into(),
            resource: Some(any(b"z")),
            ..Default::default()
        };
        let full = DeltaDiscoveryResponse {
            system_version_info: "s".into(),
            resources: vec![r.clone(), r],
            removed_resources: vec!["gone".into()],
            nonce: "3".into(),
            ..Default::default()
        };
        let head = DeltaDiscoveryResponse {
            resources: vec![],
            ..full.clone()
        };
        let w = WireResponse::delta(&head, full.resources.iter().map(resources_entry).collect());
        assert_eq!(w.to_delta().unwrap(), full);
    }
}
