//! OpenFlow 1.3 instructions, their wire codec and `ovs-ofctl` text form.

use crate::action::Action;
use crate::action::text::{format_list, parse_metadata, split_item, split_top};
use crate::error::{BadInstructionCode, DecodeError, Layer, OfpError};
use crate::text::ParseError;
use crate::wire::{Reader, pad_len};
use bytes::BufMut;

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata { metadata: u64, mask: u64 },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
    Experimenter { experimenter: u32, data: Vec<u8> },
}

const GOTO_TABLE: u16 = 1;
const WRITE_METADATA: u16 = 2;
const WRITE_ACTIONS: u16 = 3;
const APPLY_ACTIONS: u16 = 4;
const CLEAR_ACTIONS: u16 = 5;
const METER: u16 = 6;
const EXPERIMENTER: u16 = 0xffff;

fn bic(what: &'static str, c: BadInstructionCode) -> DecodeError {
    DecodeError::invalid(what, OfpError::BadInstruction(c))
}

fn l<T>(r: Result<T, DecodeError>) -> Result<T, DecodeError> {
    r.map_err(|e| e.in_layer(Layer::Instruction))
}

impl Instruction {
    /// Decodes an instruction list occupying exactly `len` bytes. Each
    /// instruction type may appear at most once (`OFPBIC_DUP_INST` does not
    /// exist in 1.3; OVS answers `OFPBIC_UNSUP_INST`).
    pub fn decode_list(r: &mut Reader<'_>, len: usize) -> Result<Vec<Instruction>, DecodeError> {
        let mut body = l(r.sub(len, "instruction list"))?;
        let mut out: Vec<Instruction> = Vec::new();
        let mut seen = 0u32;
        while !body.is_empty() {
            let ty = l(body.peek_u16(0, "instruction type"))?;
            let ilen = l(body.peek_u16(2, "instruction len"))? as usize;
            if ilen < 8 || !ilen.is_multiple_of(8) || ilen > body.remaining() {
                return Err(bic("instruction length", BadInstructionCode::BadLen));
            }
            let mut i = l(body.sub(ilen, "instruction"))?;
            l(i.skip(4, "instruction header"))?;
            let exact = |i: &Reader<'_>, n: usize| {
                if i.remaining() != n {
                    Err(bic("instruction length", BadInstructionCode::BadLen))
                } else {
                    Ok(())
                }
            };
            let inst = match ty {
                GOTO_TABLE => {
                    exact(&i, 4)?;
                    let t = l(i.u8("table_id"))?;
                    if t == 255 {
                        return Err(bic("goto_table 255", BadInstructionCode::BadTableId));
                    }
                    Instruction::GotoTable(t)
                }
                WRITE_METADATA => {
                    exact(&i, 20)?;
                    l(i.skip(4, "pad"))?;
                    let metadata = l(i.u64("metadata"))?;
                    let mask = l(i.u64("metadata_mask"))?;
                    Instruction::WriteMetadata { metadata, mask }
                }
                WRITE_ACTIONS | APPLY_ACTIONS => {
                    l(i.skip(4, "pad"))?;
                    let n = i.remaining();
                    let acts = Action::decode_list(&mut i, n)?;
                    if ty == WRITE_ACTIONS {
                        Instruction::WriteActions(acts)
                    } else {
                        Instruction::ApplyActions(acts)
                    }
                }
                CLEAR_ACTIONS => {
                    exact(&i, 4)?;
                    Instruction::ClearActions
                }
                METER => {
                    exact(&i, 4)?;
                    Instruction::Meter(l(i.u32("meter_id"))?)
                }
                EXPERIMENTER => {
                    let experimenter = l(i.u32("experimenter"))?;
                    Instruction::Experimenter {
                        experimenter,
                        data: i.take_rest().to_vec(),
                    }
                }
                _ => return Err(bic("unknown instruction", BadInstructionCode::UnknownInst)),
            };
            let bit = 1u32 << (ty.min(31));
            if ty != EXPERIMENTER && seen & bit != 0 {
                return Err(bic("duplicate instruction", BadInstructionCode::UnsupInst));
            }
            seen |= bit;
            out.push(inst);
        }
        Ok(out)
    }

    /// Encodes an instruction list in the given order.
    pub fn encode_list(insts: &[Instruction], out: &mut Vec<u8>) {
        for i in insts {
            i.encode(out);
        }
    }

    /// Encodes one instruction.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let ty = match self {
            Instruction::GotoTable(_) => GOTO_TABLE,
            Instruction::WriteMetadata { .. } => WRITE_METADATA,
            Instruction::WriteActions(_) => WRITE_ACTIONS,
            Instruction::ApplyActions(_) => APPLY_ACTIONS,
            Instruction::ClearActions => CLEAR_ACTIONS,
            Instruction::Meter(_) => METER,
            Instruction::Experimenter { .. } => EXPERIMENTER,
        };
        out.put_u16(ty);
        out.put_u16(0);
        match self {
            Instruction::GotoTable(t) => {
                out.put_u8(*t);
                out.put_bytes(0, 3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                out.put_u32(0);
                out.put_u64(*metadata);
                out.put_u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                out.put_u32(0);
                Action::encode_list(a, out);
            }
            Instruction::ClearActions => out.put_u32(0),
            Instruction::Meter(m) => out.put_u32(*m),
            Instruction::Experimenter { experimenter, data } => {
                out.put_u32(*experimenter);
                out.extend_from_slice(data);
                out.resize(out.len() + pad_len(out.len() - start), 0);
            }
        }
        let len = (out.len() - start).min(u16::MAX as usize) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// OVS's canonical order: meter, apply, clear, write, metadata, goto.
    fn rank(&self) -> u8 {
        match self {
            Instruction::Meter(_) => 0,
            Instruction::ApplyActions(_) => 1,
            Instruction::ClearActions => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::WriteMetadata { .. } => 4,
            Instruction::GotoTable(_) => 5,
            Instruction::Experimenter { .. } => 6,
        }
    }
}

/// Parses the full `actions=` string of `ovs-ofctl` (actions plus the
/// instructions `meter:N`, `clear_actions`, `write_actions(...)`,
/// `write_metadata:V[/M]`, `goto_table:N`), producing instructions in the
/// order OVS encodes them. Bare actions become one `ApplyActions`.
pub fn parse_instructions(s: &str) -> Result<Vec<Instruction>, ParseError> {
    let mut apply = String::new();
    let mut insts: Vec<Instruction> = Vec::new();
    let items = split_top(s)?;
    let only = items.len() == 1;
    let add = |insts: &mut Vec<Instruction>, i: Instruction| -> Result<(), ParseError> {
        if insts.iter().any(|x| x.rank() == i.rank()) {
            return Err(ParseError::new(format!(
                "{}: instruction may be specified only once",
                format_instructions(std::slice::from_ref(&i))
            )));
        }
        insts.push(i);
        Ok(())
    };
    for item in items {
        let (name, arg, paren) = split_item(item);
        let need = |a: Option<&'_ str>| -> Result<String, ParseError> {
            a.filter(|x| !x.trim().is_empty())
                .map(|x| x.trim().to_string())
                .ok_or_else(|| ParseError::new(format!("{name}: missing argument")))
        };
        match name.as_str() {
            "drop" if only => {}
            "goto_table" => {
                let t = need(arg)?;
                let t: u8 = t
                    .parse()
                    .map_err(|_| ParseError::new(format!("{t}: bad table id")))?;
                if t == 255 {
                    return Err(ParseError::new("goto_table:255 is not allowed"));
                }
                add(&mut insts, Instruction::GotoTable(t))?;
            }
            "write_metadata" => {
                let (metadata, mask) = parse_metadata(&need(arg)?)?;
                add(&mut insts, Instruction::WriteMetadata { metadata, mask })?;
            }
            "write_actions" if paren => {
                let a = crate::action::parse_actions(arg.unwrap_or(""))?;
                add(&mut insts, Instruction::WriteActions(a))?;
            }
            "clear_actions" if arg.is_none() => add(&mut insts, Instruction::ClearActions)?,
            "meter" => {
                let m = need(arg)?;
                let m: u32 = m
                    .parse()
                    .map_err(|_| ParseError::new(format!("{m}: bad meter id")))?;
                add(&mut insts, Instruction::Meter(m))?;
            }
            "apply_actions" if paren => {
                if !apply.is_empty() {
                    apply.push(',');
                }
                apply.push_str(arg.unwrap_or(""));
            }
            _ => {
                if !apply.is_empty() {
                    apply.push(',');
                }
                apply.push_str(item);
            }
        }
    }
    if !apply.is_empty() {
        let acts = crate::action::parse_actions(&apply)?;
        if !acts.is_empty() {
            insts.push(Instruction::ApplyActions(acts));
        }
    }
    insts.sort_by_key(Instruction::rank);
    Ok(insts)
}

/// Formats instructions as `ovs-ofctl` prints the `actions=` part.
pub fn format_instructions(insts: &[Instruction]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for i in insts {
        match i {
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
            Instruction::WriteMetadata { metadata, mask } => {
                let mut s = format!("write_metadata:{metadata:#x}");
                if *metadata == 0 {
                    s = "write_metadata:0".into();
                }
                if *mask != u64::MAX {
                    s.push_str(&format!("/{mask:#x}"));
                }
                parts.push(s);
            }
            Instruction::WriteActions(a) => {
                parts.push(format!("write_actions({})", format_list(a)))
            }
            Instruction::ApplyActions(a) => {
                if !a.is_empty() {
                    parts.push(format_list(a));
                }
            }
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::Experimenter { experimenter, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                parts.push(format!("experimenter({experimenter:#x},{hex})"));
            }
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}
