//! Entry points shared by the cargo-fuzz targets (`openflow/fuzz/`) and the
//! stable corpus test (`tests/fuzz_corpus.rs`). Each one panics only when an
//! invariant is broken — which is exactly what a fuzzer should report.

use crate::action::Action;
use crate::message::Message;
use crate::oxm::Match;
use crate::wire::Reader;

/// Decodes `data` as one OpenFlow message (and as a bare match and action
/// list). Invariants: no panic; every error maps to an OFPT_ERROR; anything
/// that decodes re-encodes to bytes that decode to the same value.
pub fn decode_one(data: &[u8]) {
    match Message::decode(data) {
        Ok((xid, msg)) => {
            let bytes = msg.to_bytes(xid);
            let (xid2, again) = Message::decode(&bytes)
                .unwrap_or_else(|e| panic!("re-decode of {msg:?} failed: {e}"));
            assert_eq!(xid, xid2);
            assert_eq!(msg, again, "message changed across encode/decode");
        }
        Err(e) => {
            let _ = e.ofp_error();
        }
    }
    if let Ok(m) = Match::decode(&mut Reader::new(data)) {
        let mut out = Vec::new();
        m.encode(&mut out);
        let again = Match::decode(&mut Reader::new(&out)).expect("re-decode of match");
        assert_eq!(m, again);
    }
    if let Ok(acts) = Action::decode_list(&mut Reader::new(data), data.len()) {
        let mut out = Vec::new();
        Action::encode_list(&acts, &mut out);
        let again =
            Action::decode_list(&mut Reader::new(&out), out.len()).expect("re-decode of actions");
        assert_eq!(acts, again);
    }
}

/// Feeds `s` to every text parser. Invariant: no panic; what parses prints
/// to text that parses to the same value, and encodes/decodes to itself.
pub fn parse_text(s: &str) {
    use crate::message::FlowModCommand;
    use crate::text::flow::{format_flow_mod, parse_flow_mod};
    if let Ok(acts) = crate::action::parse_actions(s) {
        let printed = crate::action::format_actions(&acts);
        let again = crate::action::parse_actions(&printed)
            .unwrap_or_else(|e| panic!("reparse of {printed:?} (from {s:?}) failed: {e}"));
        assert_eq!(
            crate::action::format_actions(&again),
            printed,
            "actions print differently after a reparse of {s:?}"
        );
    }
    use crate::message::{GroupModCommand, MeterModCommand};
    use crate::text::flow::{parse_group_mod, parse_meter_mod, parse_packet_out};
    let _ = parse_group_mod(s, GroupModCommand::Add);
    let _ = parse_meter_mod(s, MeterModCommand::Add);
    let _ = parse_packet_out(s);
    let _ = crate::instruction::parse_instructions(s);
    if let Ok(fm) = parse_flow_mod(s, FlowModCommand::Add) {
        let msg = Message::FlowMod(fm);
        let bytes = msg.to_bytes(1);
        let (_, back) = Message::decode(&bytes)
            .unwrap_or_else(|e| panic!("our encoding of {s:?} does not decode: {e}"));
        assert_eq!(back, msg, "flow {s:?} changed across encode/decode");
        if let Message::FlowMod(fm) = &back {
            let _ = format_flow_mod(fm);
        }
    }
    if let Ok(m) = crate::text::parse_match(s) {
        let printed = crate::text::format_match(&m);
        let again = crate::text::parse_match(&printed)
            .unwrap_or_else(|e| panic!("reparse of {printed:?} (from {s:?}) failed: {e}"));
        assert_eq!(m, again, "match changed across print/parse of {s:?}");
    }
}
