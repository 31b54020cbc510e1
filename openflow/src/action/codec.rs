//! Wire codec of [`Action`].

use super::*;
use crate::error::BadMatchCode;
use crate::error::Layer;
use crate::oxm::{self, field_from_nxm_header};
use crate::wire::{NX_VENDOR_ID, pad_len};
use bytes::BufMut;

/// Nesting limit for `ct`/`clone` action lists (deeper input is refused).
const MAX_DEPTH: usize = 8;

pub(super) mod nxast {
    pub const RESUBMIT: u16 = 1;
    pub const SET_TUNNEL: u16 = 2;
    pub const REG_MOVE: u16 = 6;
    pub const REG_LOAD: u16 = 7;
    pub const NOTE: u16 = 8;
    pub const SET_TUNNEL64: u16 = 9;
    pub const MULTIPATH: u16 = 10;
    pub const BUNDLE: u16 = 12;
    pub const BUNDLE_LOAD: u16 = 13;
    pub const RESUBMIT_TABLE: u16 = 14;
    pub const OUTPUT_REG: u16 = 15;
    pub const LEARN: u16 = 16;
    pub const EXIT: u16 = 17;
    pub const FIN_TIMEOUT: u16 = 19;
    pub const CONTROLLER: u16 = 20;
    pub const DEC_TTL_CNT_IDS: u16 = 21;
    pub const WRITE_METADATA: u16 = 22;
    pub const SAMPLE: u16 = 29;
    pub const OUTPUT_REG2: u16 = 32;
    pub const REG_LOAD2: u16 = 33;
    pub const CONJUNCTION: u16 = 34;
    pub const CT: u16 = 35;
    pub const NAT: u16 = 36;
    pub const CONTROLLER2: u16 = 37;
    pub const SAMPLE2: u16 = 38;
    pub const OUTPUT_TRUNC: u16 = 39;
    pub const SAMPLE3: u16 = 41;
    pub const CLONE: u16 = 42;
    pub const CT_CLEAR: u16 = 43;
    pub const RESUBMIT_TABLE_CT: u16 = 44;
    pub const LEARN2: u16 = 45;
}

fn bac(what: &'static str, c: BadActionCode) -> DecodeError {
    DecodeError::invalid(what, OfpError::BadAction(c))
}

fn bad_len(what: &'static str) -> DecodeError {
    bac(what, BadActionCode::BadLen)
}

/// Maps reader errors inside one action to `OFPBAC_BAD_LEN`.
fn l<T>(r: Result<T, DecodeError>) -> Result<T, DecodeError> {
    r.map_err(|e| e.in_layer(Layer::Action))
}

pub(super) fn decode_list(
    r: &mut Reader<'_>,
    len: usize,
    depth: usize,
) -> Result<Vec<Action>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(bac("actions nested too deeply", BadActionCode::BadArgument));
    }
    let mut body = l(r.sub(len, "action list"))?;
    let mut out = Vec::new();
    while !body.is_empty() {
        let alen = l(body.peek_u16(2, "action len"))? as usize;
        if alen < 8 || !alen.is_multiple_of(8) || alen > body.remaining() {
            return Err(bad_len("action length"));
        }
        let mut a = l(body.sub(alen, "action"))?;
        out.push(decode_one(&mut a, depth)?);
    }
    Ok(out)
}

/// Requires the action body to have exactly `n` bytes left.
fn exact(a: &Reader<'_>, n: usize) -> Result<(), DecodeError> {
    if a.remaining() != n {
        return Err(bad_len("action length for its type"));
    }
    Ok(())
}

fn decode_one(a: &mut Reader<'_>, depth: usize) -> Result<Action, DecodeError> {
    let ty = l(a.u16("action type"))?;
    let _len = l(a.u16("action len"))?;
    Ok(match ty {
        0 => {
            exact(a, 12)?;
            let port = l(a.u32("port"))?;
            let max_len = l(a.u16("max_len"))?;
            Action::Output { port, max_len }
        }
        11 | 12 | 16 | 18 | 24 | 27 => {
            exact(a, 4)?;
            match ty {
                11 => Action::CopyTtlOut,
                12 => Action::CopyTtlIn,
                16 => Action::DecMplsTtl,
                18 => Action::PopVlan,
                24 => Action::DecNwTtl,
                _ => Action::PopPbb,
            }
        }
        15 | 23 => {
            exact(a, 4)?;
            let v = l(a.u8("ttl"))?;
            if ty == 15 {
                Action::SetMplsTtl(v)
            } else {
                Action::SetNwTtl(v)
            }
        }
        17 | 19 | 20 | 26 => {
            exact(a, 4)?;
            let v = l(a.u16("ethertype"))?;
            match ty {
                17 => Action::PushVlan(v),
                19 => Action::PushMpls(v),
                20 => Action::PopMpls(v),
                _ => Action::PushPbb(v),
            }
        }
        21 | 22 => {
            exact(a, 4)?;
            let v = l(a.u32("id"))?;
            if ty == 21 {
                Action::SetQueue(v)
            } else {
                Action::Group(v)
            }
        }
        25 => {
            let mf = decode_set_field_tlv(a, false)?;
            if a.remaining() >= 8 {
                return Err(bad_len("set_field padding"));
            }
            if a.take_rest().iter().any(|&b| b != 0) {
                return Err(bac("set_field padding", BadActionCode::BadSetArgument));
            }
            Action::SetField(mf)
        }
        0xffff => {
            let exp = l(a.u32("experimenter"))?;
            if exp != NX_VENDOR_ID {
                return Err(DecodeError::UnknownExperimenter {
                    what: "action",
                    experimenter: exp,
                }
                .in_layer(Layer::Action));
            }
            let sub = l(a.u16("nx subtype"))?;
            decode_nx(a, sub, depth)?
        }
        _ => return Err(bac("unknown action type", BadActionCode::BadType)),
    })
}

/// One OXM/NXM TLV as `set_field`/`reg_load2` carry it.
fn decode_set_field_tlv(a: &mut Reader<'_>, may_mask: bool) -> Result<MatchField, DecodeError> {
    let h = oxm::decode_header(a).map_err(|e| {
        if e.ofp_error() == OfpError::BadMatch(BadMatchCode::BadField) {
            bac("set_field field", BadActionCode::BadSetType)
        } else {
            bac("set_field length", BadActionCode::BadSetLen)
        }
    })?;
    // OFPAT_SET_FIELD (no mask) may also write the fields OpenFlow 1.3 allows
    // but NX reg_load2 does not (`is_set_field_writable`).
    let ok = if may_mask {
        is_writable(h.field)
    } else {
        is_set_field_writable(h.field)
    };
    if !ok {
        return Err(bac(
            "set_field field is not writable",
            BadActionCode::BadSetArgument,
        ));
    }
    let value = oxm::read_value(a, h.value_len).map_err(|_| bad_len("set_field value"))?;
    let mask = if h.has_mask {
        if !may_mask {
            return Err(bac("masked set_field", BadActionCode::BadSetArgument));
        }
        Some(oxm::read_value(a, h.value_len).map_err(|_| bad_len("set_field mask"))?)
    } else {
        None
    };
    if h.field == FieldId::InPort && h.value_len == 2 {
        // NXM_OF_IN_PORT: 16-bit port, OFPP_* reserved values widen.
        let widen = |v: u128| if v >= 0xff00 { v | 0xffff_0000 } else { v };
        return MatchField::validated(h.field, widen(value), mask.map(widen))
            .map_err(|_| bac("set_field value", BadActionCode::BadSetArgument));
    }
    MatchField::validated(h.field, value, mask)
        .map_err(|_| bac("set_field value", BadActionCode::BadSetArgument))
}

fn writable(sf: Subfield) -> Result<Subfield, DecodeError> {
    if !is_writable(sf.field) {
        return Err(bac(
            "destination field is not writable",
            BadActionCode::BadSetArgument,
        ));
    }
    Ok(sf)
}

fn subfield(header: u32, ofs: u16, n_bits: u16) -> Result<Subfield, DecodeError> {
    let field = field_from_nxm_header(header)
        .ok_or_else(|| bac("unknown NXM field", BadActionCode::BadSetType))?;
    let sf = Subfield { field, ofs, n_bits };
    sf.check()?;
    Ok(sf)
}

fn subfield_ofs_nbits(header: u32, ofs_nbits: u16) -> Result<Subfield, DecodeError> {
    subfield(header, ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)
}

fn decode_nx(a: &mut Reader<'_>, sub: u16, depth: usize) -> Result<Action, DecodeError> {
    use nxast::*;
    Ok(match sub {
        RESUBMIT => {
            exact(a, 6)?;
            let in_port = l(a.u16("in_port"))?;
            Action::Resubmit {
                in_port,
                table: None,
                ct: false,
            }
        }
        RESUBMIT_TABLE | RESUBMIT_TABLE_CT => {
            exact(a, 6)?;
            let in_port = l(a.u16("in_port"))?;
            let table = l(a.u8("table"))?;
            Action::Resubmit {
                in_port,
                table: Some(table),
                ct: sub == RESUBMIT_TABLE_CT,
            }
        }
        SET_TUNNEL => {
            exact(a, 6)?;
            l(a.skip(2, "pad"))?;
            Action::SetTunnel {
                tun_id: l(a.u32("tun_id"))? as u64,
                wide: false,
            }
        }
        SET_TUNNEL64 => {
            exact(a, 14)?;
            l(a.skip(6, "pad"))?;
            Action::SetTunnel {
                tun_id: l(a.u64("tun_id"))?,
                wide: true,
            }
        }
        REG_MOVE => {
            exact(a, 14)?;
            let n_bits = l(a.u16("n_bits"))?;
            let src_ofs = l(a.u16("src_ofs"))?;
            let dst_ofs = l(a.u16("dst_ofs"))?;
            let src = l(a.u32("src"))?;
            let dst = l(a.u32("dst"))?;
            Action::RegMove {
                src: subfield(src, src_ofs, n_bits)?,
                dst: writable(subfield(dst, dst_ofs, n_bits)?)?,
            }
        }
        REG_LOAD => {
            exact(a, 14)?;
            let ofs_nbits = l(a.u16("ofs_nbits"))?;
            let dst = writable(subfield_ofs_nbits(l(a.u32("dst"))?, ofs_nbits)?)?;
            let value = l(a.u64("value"))?;
            if dst.n_bits < 64 && value >> dst.n_bits != 0 {
                return Err(bac("reg_load value too wide", BadActionCode::BadArgument));
            }
            Action::RegLoad { dst, value }
        }
        REG_LOAD2 => {
            let mf = decode_set_field_tlv(a, true)?;
            if a.remaining() >= 8 {
                return Err(bad_len("reg_load2 padding"));
            }
            Action::SetField(mf)
        }
        NOTE => Action::Note(a.take_rest().to_vec()),
        OUTPUT_REG => {
            exact(a, 14)?;
            let ofs_nbits = l(a.u16("ofs_nbits"))?;
            let src = subfield_ofs_nbits(l(a.u32("src"))?, ofs_nbits)?;
            let max_len = l(a.u16("max_len"))?;
            Action::OutputReg { src, max_len }
        }
        OUTPUT_REG2 => {
            exact(a, 14)?;
            let ofs_nbits = l(a.u16("ofs_nbits"))?;
            let max_len = l(a.u16("max_len"))?;
            // The source is a full OXM header (8 bytes for experimenter fields).
            let h = oxm::decode_header(a)
                .map_err(|_| bac("unknown output_reg2 field", BadActionCode::BadSetType))?;
            if a.take_rest().iter().any(|&b| b != 0) {
                return Err(bac("output_reg2 padding", BadActionCode::BadArgument));
            }
            let src = Subfield {
                field: h.field,
                ofs: ofs_nbits >> 6,
                n_bits: (ofs_nbits & 0x3f) + 1,
            };
            src.check()?;
            Action::OutputReg { src, max_len }
        }
        LEARN | LEARN2 => decode_learn(a, sub == LEARN2)?,
        EXIT => {
            exact(a, 6)?;
            Action::Exit
        }
        DEC_TTL_CNT_IDS => {
            let n = l(a.u16("n_controllers"))? as usize;
            l(a.skip(4, "zeros"))?;
            let need = n * 2;
            if a.remaining() < need || a.remaining() - need >= 8 {
                return Err(bad_len("dec_ttl controller ids"));
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(l(a.u16("controller id"))?);
            }
            Action::DecTtlCntIds(ids)
        }
        FIN_TIMEOUT => {
            exact(a, 6)?;
            let idle_timeout = l(a.u16("fin_idle_timeout"))?;
            let hard_timeout = l(a.u16("fin_hard_timeout"))?;
            Action::FinTimeout {
                idle_timeout,
                hard_timeout,
            }
        }
        CONTROLLER => {
            exact(a, 6)?;
            let max_len = l(a.u16("max_len"))?;
            let controller_id = l(a.u16("controller_id"))?;
            let reason = l(a.u8("reason"))?;
            Action::Controller(Box::new(Controller {
                max_len,
                controller_id,
                reason,
                ..Controller::default()
            }))
        }
        CONTROLLER2 => decode_controller2(a)?,
        WRITE_METADATA => {
            exact(a, 22)?;
            l(a.skip(6, "zeros"))?;
            let metadata = l(a.u64("metadata"))?;
            let mask = l(a.u64("mask"))?;
            Action::WriteMetadata { metadata, mask }
        }
        CONJUNCTION => {
            exact(a, 6)?;
            let clause = l(a.u8("clause"))?;
            let n_clauses = l(a.u8("n_clauses"))?;
            let id = l(a.u32("id"))?;
            if n_clauses < 2 || clause >= n_clauses {
                return Err(bac("conjunction clause", BadActionCode::BadArgument));
            }
            Action::Conjunction {
                id,
                clause,
                n_clauses,
            }
        }
        CT => {
            if a.remaining() < 14 {
                return Err(bad_len("ct"));
            }
            let flags = l(a.u16("flags"))?;
            let zone_src = l(a.u32("zone_src"))?;
            let zone_v = l(a.u16("zone"))?;
            let recirc = l(a.u8("recirc_table"))?;
            l(a.skip(3, "pad"))?;
            let alg = l(a.u16("alg"))?;
            if flags & !(ct_flags::COMMIT | ct_flags::FORCE) != 0 {
                return Err(bac("ct flags", BadActionCode::BadArgument));
            }
            if flags & ct_flags::FORCE != 0 && flags & ct_flags::COMMIT == 0 {
                return Err(bac("ct force without commit", BadActionCode::BadArgument));
            }
            let zone = if zone_src != 0 {
                CtZone::Field(subfield_ofs_nbits(zone_src, zone_v)?)
            } else {
                CtZone::Imm(zone_v)
            };
            let n = a.remaining();
            let actions = decode_list(a, n, depth + 1)?;
            Action::Ct(Box::new(Ct {
                flags,
                zone,
                recirc_table: (recirc != 255).then_some(recirc),
                alg,
                actions,
            }))
        }
        NAT => decode_nat(a)?,
        CT_CLEAR => {
            exact(a, 6)?;
            Action::CtClear
        }
        MULTIPATH => {
            exact(a, 22)?;
            let fields = l(a.u16("fields"))?;
            let basis = l(a.u16("basis"))?;
            l(a.skip(2, "pad"))?;
            let algorithm = l(a.u16("algorithm"))?;
            let max_link = l(a.u16("max_link"))?;
            let arg = l(a.u32("arg"))?;
            l(a.skip(2, "pad"))?;
            let ofs_nbits = l(a.u16("ofs_nbits"))?;
            let dst = subfield_ofs_nbits(l(a.u32("dst"))?, ofs_nbits)?;
            if fields > 6 || algorithm > 3 {
                return Err(bac("multipath", BadActionCode::BadArgument));
            }
            Action::Multipath(Multipath {
                fields,
                basis,
                algorithm,
                max_link,
                arg,
                dst,
            })
        }
        BUNDLE | BUNDLE_LOAD => {
            if a.remaining() < 22 {
                return Err(bad_len("bundle"));
            }
            let algorithm = l(a.u16("algorithm"))?;
            let fields = l(a.u16("fields"))?;
            let basis = l(a.u16("basis"))?;
            let member_type = l(a.u32("member_type"))?;
            let n = l(a.u16("n_members"))? as usize;
            let ofs_nbits = l(a.u16("ofs_nbits"))?;
            let dst_h = l(a.u32("dst"))?;
            l(a.skip(4, "zero"))?;
            if member_type != 0x0000_0002 || algorithm > 1 || fields > 6 {
                return Err(bac("bundle", BadActionCode::BadArgument));
            }
            if a.remaining() < n * 2 || a.remaining() - n * 2 >= 8 {
                return Err(bad_len("bundle members"));
            }
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                members.push(l(a.u16("member"))?);
            }
            let dst = if sub == BUNDLE_LOAD {
                Some(subfield_ofs_nbits(dst_h, ofs_nbits)?)
            } else {
                if dst_h != 0 || ofs_nbits != 0 {
                    return Err(bac("bundle dst", BadActionCode::BadArgument));
                }
                None
            };
            Action::Bundle(Box::new(Bundle {
                algorithm,
                fields,
                basis,
                dst,
                members,
            }))
        }
        CLONE => {
            l(a.skip(6, "pad"))?;
            let n = a.remaining();
            Action::Clone(decode_list(a, n, depth + 1)?)
        }
        OUTPUT_TRUNC => {
            exact(a, 6)?;
            let port = l(a.u16("port"))?;
            let max_len = l(a.u32("max_len"))?;
            Action::OutputTrunc { port, max_len }
        }
        SAMPLE => {
            exact(a, 14)?;
            let probability = l(a.u16("probability"))?;
            let collector_set_id = l(a.u32("collector_set_id"))?;
            let obs_domain_id = l(a.u32("obs_domain_id"))?;
            let obs_point_id = l(a.u32("obs_point_id"))?;
            if probability == 0 {
                return Err(bac("sample probability", BadActionCode::BadArgument));
            }
            Action::Sample(Sample {
                probability,
                collector_set_id,
                obs_domain_id,
                obs_point_id,
                sampling_port: None,
                direction: 0,
            })
        }
        SAMPLE2 | SAMPLE3 => {
            exact(a, 22)?;
            let probability = l(a.u16("probability"))?;
            let collector_set_id = l(a.u32("collector_set_id"))?;
            let obs_domain_id = l(a.u32("obs_domain_id"))?;
            let obs_point_id = l(a.u32("obs_point_id"))?;
            let port = l(a.u16("sampling_port"))?;
            let direction = l(a.u8("direction"))?;
            if probability == 0 || (sub == SAMPLE3 && direction > 2) {
                return Err(bac("sample", BadActionCode::BadArgument));
            }
            Action::Sample(Sample {
                probability,
                collector_set_id,
                obs_domain_id,
                obs_point_id,
                sampling_port: (port != port::NONE16).then_some(port),
                direction: if sub == SAMPLE3 { direction } else { 0 },
            })
        }
        _ => {
            return Err(DecodeError::UnknownExpType {
                what: "nx action",
                experimenter: NX_VENDOR_ID,
                subtype: sub as u32,
            }
            .in_layer(Layer::Action));
        }
    })
}

fn decode_controller2(a: &mut Reader<'_>) -> Result<Action, DecodeError> {
    l(a.skip(6, "pad"))?;
    let mut c = Controller::default();
    while a.remaining() >= 4 {
        let ty = l(a.u16("prop type"))?;
        let plen = l(a.u16("prop len"))? as usize;
        if plen < 4 {
            return Err(bad_len("controller2 property"));
        }
        let mut p = l(a.sub(plen - 4, "property"))?;
        l(a.skip(pad_len(plen).min(a.remaining()), "property pad"))?;
        let want = |p: &Reader<'_>, n: usize| {
            if p.remaining() != n {
                Err(bad_len("controller2 property length"))
            } else {
                Ok(())
            }
        };
        match ty {
            0 => {
                want(&p, 2)?;
                c.max_len = l(p.u16("max_len"))?;
            }
            1 => {
                want(&p, 2)?;
                c.controller_id = l(p.u16("controller_id"))?;
            }
            2 => {
                want(&p, 1)?;
                c.reason = l(p.u8("reason"))?;
            }
            3 => c.userdata = p.take_rest().to_vec(),
            4 => {
                want(&p, 0)?;
                c.pause = true;
            }
            5 => {
                want(&p, 4)?;
                c.meter_id = l(p.u32("meter_id"))?;
            }
            _ => return Err(bac("controller2 property", BadActionCode::BadArgument)),
        }
    }
    if a.remaining() != 0 {
        return Err(bad_len("controller2"));
    }
    Ok(Action::Controller(Box::new(c)))
}

fn decode_nat(a: &mut Reader<'_>) -> Result<Action, DecodeError> {
    l(a.skip(2, "pad"))?;
    let flags = l(a.u16("flags"))?;
    let present = l(a.u16("range_present"))?;
    if present & !0x3f != 0 || flags & !0x1f != 0 {
        return Err(bac("nat", BadActionCode::BadArgument));
    }
    if flags & nat_flags::SRC != 0 && flags & nat_flags::DST != 0 {
        return Err(bac("nat src and dst", BadActionCode::BadArgument));
    }
    let mut n = Nat {
        flags,
        ..Nat::default()
    };
    if present & 1 != 0 {
        n.ipv4_min = Some(l(a.u32("ipv4 min"))?);
    }
    if present & 2 != 0 {
        n.ipv4_max = Some(l(a.u32("ipv4 max"))?);
    }
    if present & 4 != 0 {
        n.ipv6_min = Some(oxm::be_to_u128(l(a.bytes(16, "ipv6 min"))?));
    }
    if present & 8 != 0 {
        n.ipv6_max = Some(oxm::be_to_u128(l(a.bytes(16, "ipv6 max"))?));
    }
    if present & 16 != 0 {
        n.proto_min = Some(l(a.u16("proto min"))?);
    }
    if present & 32 != 0 {
        n.proto_max = Some(l(a.u16("proto max"))?);
    }
    if a.remaining() >= 8 {
        return Err(bad_len("nat"));
    }
    Ok(Action::Nat(n))
}

fn decode_learn(a: &mut Reader<'_>, v2: bool) -> Result<Action, DecodeError> {
    let mut ln = Learn {
        idle_timeout: l(a.u16("idle_timeout"))?,
        hard_timeout: l(a.u16("hard_timeout"))?,
        priority: l(a.u16("priority"))?,
        cookie: l(a.u64("cookie"))?,
        ..Learn::default()
    };
    let flags = l(a.u16("flags"))?;
    ln.table_id = l(a.u8("table_id"))?;
    l(a.skip(1, "pad"))?;
    ln.fin_idle_timeout = l(a.u16("fin_idle_timeout"))?;
    ln.fin_hard_timeout = l(a.u16("fin_hard_timeout"))?;
    if flags & !7 != 0 || ln.table_id == 255 {
        return Err(bac("learn flags/table", BadActionCode::BadArgument));
    }
    ln.flags = flags & !learn_flags::WRITE_RESULT;
    if v2 {
        ln.limit = l(a.u32("limit"))?;
        let ofs = l(a.u16("result_dst_ofs"))?;
        l(a.skip(2, "pad"))?;
        if flags & learn_flags::WRITE_RESULT != 0 {
            let h = l(a.u32("result_dst"))?;
            ln.result_dst = Some(subfield(h, ofs, 1)?);
        }
    } else if flags & learn_flags::WRITE_RESULT != 0 {
        return Err(bac("learn write_result", BadActionCode::BadArgument));
    }
    while a.remaining() >= 2 {
        let h = l(a.u16("spec header"))?;
        if h == 0 {
            break;
        }
        let n_bits = h & 0x7ff;
        let src_imm = h & (1 << 13) != 0;
        let dst_type = (h >> 11) & 3;
        if h >> 14 != 0 || dst_type == 3 || n_bits == 0 {
            return Err(bac("learn spec", BadActionCode::BadArgument));
        }
        let src = if src_imm {
            let nb = (n_bits as usize).div_ceil(16) * 2;
            if nb > 16 {
                return Err(bac("learn immediate", BadActionCode::BadArgument));
            }
            let v = oxm::be_to_u128(l(a.bytes(nb, "learn immediate"))?);
            if n_bits < 128 && v >> n_bits != 0 {
                return Err(bac("learn immediate", BadActionCode::BadArgument));
            }
            LearnSrc::Imm(v)
        } else {
            let hdr = l(a.u32("learn src"))?;
            let ofs = l(a.u16("learn src ofs"))?;
            LearnSrc::Field(subfield(hdr, ofs, n_bits)?)
        };
        let dst = match dst_type {
            0 | 1 => {
                let hdr = l(a.u32("learn dst"))?;
                let ofs = l(a.u16("learn dst ofs"))?;
                let sf = subfield(hdr, ofs, n_bits)?;
                if dst_type == 0 {
                    LearnDst::Match(sf)
                } else {
                    LearnDst::Load(sf)
                }
            }
            _ => {
                if src_imm {
                    return Err(bac(
                        "learn output from immediate",
                        BadActionCode::BadArgument,
                    ));
                }
                LearnDst::Output
            }
        };
        ln.specs.push(LearnSpec { n_bits, src, dst });
    }
    if a.remaining() >= 8 || a.take_rest().iter().any(|&b| b != 0) {
        return Err(bac("learn trailing bytes", BadActionCode::BadArgument));
    }
    Ok(Action::Learn(Box::new(ln)))
}

// ---------------------------------------------------------------- encoding

fn of_start(out: &mut Vec<u8>, ty: u16) -> usize {
    let start = out.len();
    out.put_u16(ty);
    out.put_u16(0);
    start
}

fn nx_start(out: &mut Vec<u8>, sub: u16) -> usize {
    let start = of_start(out, 0xffff);
    out.put_u32(NX_VENDOR_ID);
    out.put_u16(sub);
    start
}

/// Pads to 8 and writes the length.
fn finish(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    out.resize(out.len() + pad_len(len), 0);
    let len = (out.len() - start).min(u16::MAX as usize) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_nx_header(out: &mut Vec<u8>, f: FieldId) {
    out.put_u32(nx_action_header(f).0);
}

pub(super) fn encode(act: &Action, out: &mut Vec<u8>) {
    use nxast::*;
    let start;
    match act {
        Action::Output { port, max_len } => {
            start = of_start(out, 0);
            out.put_u32(*port);
            out.put_u16(*max_len);
        }
        Action::CopyTtlOut => start = of_start(out, 11),
        Action::CopyTtlIn => start = of_start(out, 12),
        Action::SetMplsTtl(t) => {
            start = of_start(out, 15);
            out.put_u8(*t);
        }
        Action::DecMplsTtl => start = of_start(out, 16),
        Action::PushVlan(e) => {
            start = of_start(out, 17);
            out.put_u16(*e);
        }
        Action::PopVlan => start = of_start(out, 18),
        Action::PushMpls(e) => {
            start = of_start(out, 19);
            out.put_u16(*e);
        }
        Action::PopMpls(e) => {
            start = of_start(out, 20);
            out.put_u16(*e);
        }
        Action::SetQueue(q) => {
            start = of_start(out, 21);
            out.put_u32(*q);
        }
        Action::Group(g) => {
            start = of_start(out, 22);
            out.put_u32(*g);
        }
        Action::SetNwTtl(t) => {
            start = of_start(out, 23);
            out.put_u8(*t);
        }
        Action::DecNwTtl => start = of_start(out, 24),
        Action::SetField(mf) => {
            if mf.mask.is_some() {
                start = nx_start(out, REG_LOAD2);
            } else {
                start = of_start(out, 25);
            }
            mf.encode(out);
        }
        Action::PushPbb(e) => {
            start = of_start(out, 26);
            out.put_u16(*e);
        }
        Action::PopPbb => start = of_start(out, 27),
        Action::Resubmit { in_port, table, ct } => match table {
            None => {
                start = nx_start(out, RESUBMIT);
                out.put_u16(*in_port);
            }
            Some(t) => {
                start = nx_start(
                    out,
                    if *ct {
                        RESUBMIT_TABLE_CT
                    } else {
                        RESUBMIT_TABLE
                    },
                );
                out.put_u16(*in_port);
                out.put_u8(*t);
            }
        },
        Action::SetTunnel { tun_id, wide } => {
            if *wide || *tun_id > u32::MAX as u64 {
                start = nx_start(out, SET_TUNNEL64);
                out.put_bytes(0, 6);
                out.put_u64(*tun_id);
            } else {
                start = nx_start(out, SET_TUNNEL);
                out.put_u16(0);
                out.put_u32(*tun_id as u32);
            }
        }
        Action::RegMove { src, dst } => {
            start = nx_start(out, REG_MOVE);
            out.put_u16(src.n_bits);
            out.put_u16(src.ofs);
            out.put_u16(dst.ofs);
            put_nx_header(out, src.field);
            put_nx_header(out, dst.field);
        }
        Action::RegLoad { dst, value } => {
            start = nx_start(out, REG_LOAD);
            out.put_u16(dst.ofs_nbits());
            put_nx_header(out, dst.field);
            out.put_u64(*value);
        }
        Action::Note(data) => {
            start = nx_start(out, NOTE);
            out.extend_from_slice(data);
        }
        Action::OutputReg { src, max_len } => {
            if src.field.info().experimenter.is_some() {
                start = nx_start(out, OUTPUT_REG2);
                out.put_u16(src.ofs_nbits());
                out.put_u16(*max_len);
                crate::oxm::encode_header(out, src.field, false);
            } else {
                start = nx_start(out, OUTPUT_REG);
                out.put_u16(src.ofs_nbits());
                put_nx_header(out, src.field);
                out.put_u16(*max_len);
            }
        }
        Action::Learn(ln) => start = encode_learn(ln, out),
        Action::Exit => start = nx_start(out, EXIT),
        Action::DecTtlCntIds(ids) => {
            start = nx_start(out, DEC_TTL_CNT_IDS);
            out.put_u16(ids.len() as u16);
            out.put_bytes(0, 4);
            for id in ids {
                out.put_u16(*id);
            }
        }
        Action::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            start = nx_start(out, FIN_TIMEOUT);
            out.put_u16(*idle_timeout);
            out.put_u16(*hard_timeout);
        }
        Action::Controller(c) => {
            if c.needs_v2() {
                start = nx_start(out, CONTROLLER2);
                out.put_bytes(0, 6);
                let prop = |out: &mut Vec<u8>, ty: u16, v: &[u8]| {
                    let s = out.len();
                    out.put_u16(ty);
                    out.put_u16(4 + v.len() as u16);
                    out.extend_from_slice(v);
                    out.resize(out.len() + pad_len(out.len() - s), 0);
                };
                if c.max_len != u16::MAX {
                    prop(out, 0, &c.max_len.to_be_bytes());
                }
                if c.controller_id != 0 {
                    prop(out, 1, &c.controller_id.to_be_bytes());
                }
                if c.reason != 1 {
                    prop(out, 2, &[c.reason]);
                }
                if !c.userdata.is_empty() {
                    prop(out, 3, &c.userdata);
                }
                if c.pause {
                    prop(out, 4, &[]);
                }
                if c.meter_id != 0 {
                    prop(out, 5, &c.meter_id.to_be_bytes());
                }
            } else {
                start = nx_start(out, CONTROLLER);
                out.put_u16(c.max_len);
                out.put_u16(c.controller_id);
                out.put_u8(c.reason);
            }
        }
        Action::WriteMetadata { metadata, mask } => {
            start = nx_start(out, WRITE_METADATA);
            out.put_bytes(0, 6);
            out.put_u64(*metadata);
            out.put_u64(*mask);
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            start = nx_start(out, CONJUNCTION);
            out.put_u8(*clause);
            out.put_u8(*n_clauses);
            out.put_u32(*id);
        }
        Action::Ct(ct) => {
            start = nx_start(out, CT);
            out.put_u16(ct.flags);
            match ct.zone {
                CtZone::Imm(z) => {
                    out.put_u32(0);
                    out.put_u16(z);
                }
                CtZone::Field(sf) => {
                    put_nx_header(out, sf.field);
                    out.put_u16(sf.ofs_nbits());
                }
            }
            out.put_u8(ct.recirc_table.unwrap_or(255));
            out.put_bytes(0, 3);
            out.put_u16(ct.alg);
            Action::encode_list(&ct.actions, out);
        }
        Action::Nat(n) => {
            start = nx_start(out, NAT);
            out.put_u16(0);
            out.put_u16(n.flags);
            let present = n.ipv4_min.is_some() as u16
                | (n.ipv4_max.is_some() as u16) << 1
                | (n.ipv6_min.is_some() as u16) << 2
                | (n.ipv6_max.is_some() as u16) << 3
                | (n.proto_min.is_some() as u16) << 4
                | (n.proto_max.is_some() as u16) << 5;
            out.put_u16(present);
            if let Some(v) = n.ipv4_min {
                out.put_u32(v);
            }
            if let Some(v) = n.ipv4_max {
                out.put_u32(v);
            }
            if let Some(v) = n.ipv6_min {
                out.put_u128(v);
            }
            if let Some(v) = n.ipv6_max {
                out.put_u128(v);
            }
            if let Some(v) = n.proto_min {
                out.put_u16(v);
            }
            if let Some(v) = n.proto_max {
                out.put_u16(v);
            }
        }
        Action::CtClear => start = nx_start(out, CT_CLEAR),
        Action::Multipath(m) => {
            start = nx_start(out, MULTIPATH);
            out.put_u16(m.fields);
            out.put_u16(m.basis);
            out.put_u16(0);
            out.put_u16(m.algorithm);
            out.put_u16(m.max_link);
            out.put_u32(m.arg);
            out.put_u16(0);
            out.put_u16(m.dst.ofs_nbits());
            put_nx_header(out, m.dst.field);
        }
        Action::Bundle(b) => {
            start = nx_start(out, if b.dst.is_some() { BUNDLE_LOAD } else { BUNDLE });
            out.put_u16(b.algorithm);
            out.put_u16(b.fields);
            out.put_u16(b.basis);
            out.put_u32(0x0000_0002);
            out.put_u16(b.members.len() as u16);
            match &b.dst {
                Some(d) => {
                    out.put_u16(d.ofs_nbits());
                    put_nx_header(out, d.field);
                }
                None => {
                    out.put_u16(0);
                    out.put_u32(0);
                }
            }
            out.put_u32(0);
            for m in &b.members {
                out.put_u16(*m);
            }
        }
        Action::Clone(acts) => {
            start = nx_start(out, CLONE);
            out.put_bytes(0, 6);
            Action::encode_list(acts, out);
        }
        Action::OutputTrunc { port, max_len } => {
            start = nx_start(out, OUTPUT_TRUNC);
            out.put_u16(*port);
            out.put_u32(*max_len);
        }
        Action::Sample(s) => {
            let sub = if s.direction != 0 {
                SAMPLE3
            } else if s.sampling_port.is_some() {
                SAMPLE2
            } else {
                SAMPLE
            };
            start = nx_start(out, sub);
            out.put_u16(s.probability);
            out.put_u32(s.collector_set_id);
            out.put_u32(s.obs_domain_id);
            out.put_u32(s.obs_point_id);
            if sub != SAMPLE {
                out.put_u16(s.sampling_port.unwrap_or(port::NONE16));
                out.put_u8(s.direction);
            }
        }
    }
    finish(out, start);
}

fn encode_learn(ln: &Learn, out: &mut Vec<u8>) -> usize {
    let v2 = ln.limit != 0 || ln.result_dst.is_some();
    let start = nx_start(out, if v2 { nxast::LEARN2 } else { nxast::LEARN });
    out.put_u16(ln.idle_timeout);
    out.put_u16(ln.hard_timeout);
    out.put_u16(ln.priority);
    out.put_u64(ln.cookie);
    let mut flags = ln.flags & !learn_flags::WRITE_RESULT;
    if ln.result_dst.is_some() {
        flags |= learn_flags::WRITE_RESULT;
    }
    out.put_u16(flags);
    out.put_u8(ln.table_id);
    out.put_u8(0);
    out.put_u16(ln.fin_idle_timeout);
    out.put_u16(ln.fin_hard_timeout);
    if v2 {
        out.put_u32(ln.limit);
        out.put_u16(ln.result_dst.map_or(0, |d| d.ofs));
        out.put_u16(0);
        if let Some(d) = ln.result_dst {
            put_nx_header(out, d.field);
        }
    }
    for s in &ln.specs {
        let src_bit = matches!(s.src, LearnSrc::Imm(_)) as u16;
        let dst_type = match s.dst {
            LearnDst::Match(_) => 0,
            LearnDst::Load(_) => 1,
            LearnDst::Output => 2,
        };
        out.put_u16((src_bit << 13) | (dst_type << 11) | (s.n_bits & 0x7ff));
        match s.src {
            LearnSrc::Field(sf) => {
                put_nx_header(out, sf.field);
                out.put_u16(sf.ofs);
            }
            LearnSrc::Imm(v) => {
                let nb = (s.n_bits as usize).div_ceil(16) * 2;
                crate::oxm::write_value(out, v, nb.min(16));
            }
        }
        match s.dst {
            LearnDst::Match(sf) | LearnDst::Load(sf) => {
                put_nx_header(out, sf.field);
                out.put_u16(sf.ofs);
            }
            LearnDst::Output => {}
        }
    }
    start
}
