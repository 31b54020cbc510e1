//! Unit tests: errors, actions OVS cannot produce, property round trips.

use super::*;
use crate::error::BadInstructionCode;
use crate::instruction::{Instruction, format_instructions, parse_instructions};
use proptest::prelude::*;

fn enc(a: &[Action]) -> Vec<u8> {
    let mut out = Vec::new();
    Action::encode_list(a, &mut out);
    out
}

fn dec(b: &[u8]) -> Result<Vec<Action>, DecodeError> {
    Action::decode_list(&mut Reader::new(b), b.len())
}

fn dec_err(b: &[u8]) -> OfpError {
    dec(b).unwrap_err().ofp_error()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn bac(c: BadActionCode) -> OfpError {
    OfpError::BadAction(c)
}

#[test]
fn openflow_actions_ovs_does_not_parse() {
    // copy_ttl_*, push/pop_pbb: OpenFlow 1.3 actions OVS rejects in text.
    let acts = parse_actions(
        "copy_ttl_out,copy_ttl_in,push_pbb:0x88e7,pop_pbb,set_mpls_ttl:5,dec_mpls_ttl",
    )
    .unwrap();
    let bytes = enc(&acts);
    assert_eq!(
        bytes,
        unhex(
            "000b000800000000 000c000800000000 001a000888e70000 001b000800000000
             000f000805000000 0010000800000000"
        )
    );
    assert_eq!(dec(&bytes).unwrap(), acts);
    assert_eq!(
        format_actions(&acts),
        "copy_ttl_out,copy_ttl_in,push_pbb:0x88e7,pop_pbb,set_mpls_ttl(5),dec_mpls_ttl"
    );
}

#[test]
fn nx_only_encodings_roundtrip() {
    // Encodings OVS 3.1 never emits for OF1.3 but must decode: NXAST_RESUBMIT,
    // SET_TUNNEL(64), NX write_metadata, NXAST_REG_LOAD2, OUTPUT_REG2, RESUBMIT_TABLE_CT.
    let acts = vec![
        Action::Resubmit {
            in_port: 3,
            table: None,
            ct: false,
        },
        Action::Resubmit {
            in_port: port::IN_PORT16,
            table: Some(4),
            ct: true,
        },
        Action::SetTunnel {
            tun_id: 5,
            wide: false,
        },
        Action::SetTunnel {
            tun_id: 0x1_0000_0000,
            wide: true,
        },
        Action::WriteMetadata {
            metadata: 1,
            mask: 0xff,
        },
        Action::SetField(MatchField::masked(FieldId::Reg0, 0x2, 0x12)),
        Action::OutputReg {
            src: Subfield::full(FieldId::ActsetOutput),
            max_len: 0xffff,
        },
    ];
    let b = enc(&acts);
    assert_eq!(dec(&b).unwrap(), acts);
    assert_eq!(
        format_actions(&acts),
        "resubmit:3,resubmit(,4,ct),set_tunnel:0x5,set_tunnel64:0x100000000,\
         write_metadata:0x1/0xff,set_field:0x2/0x12->reg0,output:ONFOXM_ET_ACTSET_OUTPUT[]"
    );
    // NXAST_RESUBMIT bytes.
    assert_eq!(&b[..16], &unhex("ffff001000002320 0001000300000000")[..]);
    // REG_LOAD2 of reg0 with a mask (layout checked with `ovs-ofctl ofp-print`).
    let reg_load2 = enc(&acts[5..6]);
    assert_eq!(
        reg_load2,
        unhex("ffff001800002320 0021 00010108 00000002 00000012 0000")
    );
    // Writes to read-only fields are refused: set_field tcp_flags via REG_LOAD2
    // (OVS: "destination field tcp_flags is not writable").
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0021 ffff5508 4f4e4600 0002 0012 0000"
        )),
        bac(BadActionCode::BadSetArgument)
    );
    // reg_load into ct_state.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0007 0000 0001d204 0000000000000001"
        )),
        bac(BadActionCode::BadSetArgument)
    );
}

#[test]
fn error_codes() {
    // Truncated / bad length.
    assert_eq!(
        dec_err(&unhex("0000000800000000")),
        bac(BadActionCode::BadLen)
    );
    assert_eq!(
        dec_err(&unhex("00000010 00000002")),
        bac(BadActionCode::BadLen)
    );
    assert_eq!(
        dec_err(&unhex("0000000c0000000200000000")),
        bac(BadActionCode::BadLen)
    );
    assert_eq!(dec_err(&unhex("0000")), bac(BadActionCode::BadLen));
    // Unknown type.
    assert_eq!(
        dec_err(&unhex("0063000800000000")),
        bac(BadActionCode::BadType)
    );
    // Unknown experimenter.
    assert_eq!(
        dec_err(&unhex("ffff001000001234 0000000000000000")),
        bac(BadActionCode::BadExperimenter)
    );
    // Unknown NX subtype.
    assert_eq!(
        dec_err(&unhex("ffff001000002320 00fe000000000000")),
        bac(BadActionCode::BadExpType)
    );
    // NX action with the wrong length for its subtype (exit with 24 bytes).
    assert_eq!(
        dec_err(&unhex("ffff001800002320 0011000000000000 0000000000000000")),
        bac(BadActionCode::BadLen)
    );
    // set_field on an unknown field.
    assert_eq!(
        dec_err(&unhex("0019001080007e04 0000000100000000")),
        bac(BadActionCode::BadSetType)
    );
    // set_field with a length that disagrees with the field (eth_type, 4 bytes).
    assert_eq!(
        dec_err(&unhex("001900108000 0a04 0000080000000000")),
        bac(BadActionCode::BadSetLen)
    );
    // set_field value wider than the field (vlan_pcp = 9).
    assert_eq!(
        dec_err(&unhex("0019001080000e01 0900000000000000")),
        bac(BadActionCode::BadSetArgument)
    );
    // masked OFPAT_SET_FIELD is not allowed.
    assert_eq!(
        dec_err(&unhex("0019001000010108 0000000100000001")),
        bac(BadActionCode::BadSetArgument)
    );
    // reg_load past the end of reg0: ofs 24, n_bits 16.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0007 060f 00010004 0000000000000005"
        )),
        bac(BadActionCode::BadSetLen)
    );
    // reg_load to an unknown NXM field.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0007 000f 00017e04 0000000000000005"
        )),
        bac(BadActionCode::BadSetType)
    );
    // reg_load value wider than n_bits.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0007 0003 00010004 00000000000000ff"
        )),
        bac(BadActionCode::BadArgument)
    );
    // move with mismatched field width (eth_src 48 bits into reg0).
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0006 0030 0000 0000 00000406 00010004"
        )),
        bac(BadActionCode::BadSetLen)
    );
    // conjunction with clause >= n_clauses.
    assert_eq!(
        dec_err(&unhex("ffff001000002320 0022 0303 00000001")),
        bac(BadActionCode::BadArgument)
    );
    // ct force without commit.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0023 0002 00000000 0000 ff000000 0000"
        )),
        bac(BadActionCode::BadArgument)
    );
    // sample with probability 0.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 001d 0000 00000001 00000002 00000003"
        )),
        bac(BadActionCode::BadArgument)
    );
    // nested action inside clone truncated -> BAD_LEN.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 002a 000000000000 0000001000000002"
        )),
        bac(BadActionCode::BadLen)
    );
}

#[test]
fn nesting_is_bounded() {
    // clone(clone(...)) nested 20 deep is refused, not a stack overflow.
    let mut a = vec![Action::Exit];
    for _ in 0..20 {
        a = vec![Action::Clone(a)];
    }
    let e = dec(&enc(&a)).unwrap_err();
    assert_eq!(e.ofp_error(), bac(BadActionCode::BadArgument));
}

fn inst_err(b: &[u8]) -> OfpError {
    Instruction::decode_list(&mut Reader::new(b), b.len())
        .unwrap_err()
        .ofp_error()
}

#[test]
fn instruction_errors() {
    let bic = OfpError::BadInstruction;
    assert_eq!(
        inst_err(&unhex("0009000800000000")),
        bic(BadInstructionCode::UnknownInst)
    );
    assert_eq!(
        inst_err(&unhex("0001000c02000000 00000000")),
        bic(BadInstructionCode::BadLen)
    );
    assert_eq!(
        inst_err(&unhex("0001001002000000")),
        bic(BadInstructionCode::BadLen)
    );
    assert_eq!(inst_err(&unhex("0001")), bic(BadInstructionCode::BadLen));
    assert_eq!(
        inst_err(&unhex("00010008ff000000")),
        bic(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        inst_err(&unhex("0001000802000000 0001000803000000")),
        bic(BadInstructionCode::UnsupInst)
    );
    // Write-metadata with the wrong length.
    assert_eq!(
        inst_err(&unhex("0002001000000000 0000000000000001")),
        bic(BadInstructionCode::BadLen)
    );
    // An action error inside apply_actions surfaces as the action error.
    assert_eq!(
        inst_err(&unhex("0004001000000000 0063000800000000")),
        OfpError::BadAction(BadActionCode::BadType)
    );
}

#[test]
fn parse_errors() {
    for bad in [
        "output:",
        "foo",
        "set_field:1->nonexistent",
        "set_field:0x1ffff->vlan_vid",
        "load:0x10000->reg0[0..15]",
        "load:1->reg0[30..40]",
        "move:reg0[]->eth_dst[]",
        "resubmit(,)",
        "conjunction(1,3/2)",
        "ct(force)",
        "ct(commit,nat(src=1.2.3.4,dst))",
        "drop,output:1",
        "learn(table=255)",
        "sample(collector_set_id=1)",
        "output(port=1)",
        "note:0g",
        "clone(output:1",
        "load:1->reg0[0..65535]",
        "move:reg0[65535]->reg1[0]",
        "set_field:3->actset_output",
    ] {
        assert!(parse_actions(bad).is_err(), "{bad} should not parse");
    }
    assert!(parse_instructions("goto_table:1,goto_table:2").is_err());
    assert!(parse_instructions("goto_table:255").is_err());
    assert!(parse_instructions("meter:x").is_err());
}

#[test]
fn parse_forms() {
    // Whole-field and bracket-less subfields, decimal and hex loads.
    assert_eq!(
        parse_actions("load:5->reg0[]").unwrap(),
        parse_actions("load:0x5->NXM_NX_REG0").unwrap()
    );
    assert_eq!(
        parse_actions("output:2").unwrap(),
        parse_actions("2").unwrap()
    );
    assert_eq!(parse_actions("drop").unwrap(), vec![]);
    assert_eq!(format_actions(&[]), "drop");
    assert_eq!(
        format_instructions(&parse_instructions("drop").unwrap()),
        "drop"
    );
    // Instruction order follows OVS regardless of text order.
    let i = parse_instructions("goto_table:3,output:1,meter:2").unwrap();
    assert_eq!(format_instructions(&i), "meter:2,output:1,goto_table:3");
    // apply_actions(...) is accepted too.
    assert_eq!(
        parse_instructions("apply_actions(output:1)").unwrap(),
        vec![Instruction::ApplyActions(vec![Action::output(1)])]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn action_roundtrip(acts in strategy::actions()) {
        let b = enc(&acts);
        prop_assert_eq!(b.len() % 8, 0);
        prop_assert_eq!(dec(&b).unwrap(), acts);
    }

    #[test]
    fn instruction_roundtrip(insts in strategy::instructions()) {
        let mut b = Vec::new();
        Instruction::encode_list(&insts, &mut b);
        let back = Instruction::decode_list(&mut Reader::new(&b), b.len()).unwrap();
        prop_assert_eq!(back, insts);
    }

    #[test]
    fn text_parse_never_panics(s in "[a-z_:0-9A-Z()\\[\\],./>=-]{0,60}") {
        let _ = parse_instructions(&s);
        let _ = parse_actions(&s);
    }

    #[test]
    fn printed_text_parses(acts in strategy::actions()) {
        // Whatever we print must be accepted by our parser (not necessarily
        // to the same value: e.g. OVS re-parses NX-only encodings differently).
        let text = format_actions(&acts);
        let reparsed = parse_actions(&text);
        let ok = reparsed.is_ok();
        prop_assert!(ok, "{} -> {:?}", text, reparsed);
    }

    #[test]
    fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = dec(&b);
        let _ = Instruction::decode_list(&mut Reader::new(&b), b.len());
    }

    #[test]
    fn mutated_encodings_never_panic(acts in strategy::actions(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut b = enc(&acts);
        if !b.is_empty() {
            let i = pos % b.len();
            b[i] = byte;
        }
        let _ = dec(&b);
    }
}

#[test]
fn of_set_field_may_write_eth_type_ip_proto_mpls_bos() {
    // OFPAT_SET_FIELD eth_type=0x8848 (os-ken switch tester action/25_SET_FIELD/05).
    let b = unhex("0019001080000a02 8848000000000000");
    assert_eq!(
        dec(&b).expect("decodes"),
        vec![Action::SetField(MatchField::exact(
            FieldId::EthType,
            0x8848
        ))]
    );
    assert_eq!(enc(&dec(&b).expect("decodes")), b);
    // ip_proto=17 and mpls_bos=0.
    assert!(dec(&unhex("0019001080001401 1100000000000000")).is_ok());
    assert!(dec(&unhex("0019001080004801 0000000000000000")).is_ok());
    // Still read-only for set_field: tcp_flags (OXM 0x80005402... via NX class).
    assert!(is_set_field_writable(FieldId::EthType));
    assert!(!is_set_field_writable(FieldId::TcpFlags));
    // NX reg_load2 into eth_type keeps OVS's rule.
    assert_eq!(
        dec_err(&unhex(
            "ffff001800002320 0021 80000a02 8848 0000000000000000"
        )),
        bac(BadActionCode::BadSetArgument)
    );
}
