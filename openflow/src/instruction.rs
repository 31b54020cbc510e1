//! OpenFlow 1.3 instructions.
//!
//! STUB: to be replaced by the full implementation (see the helper contract).

use crate::action::Action;
use crate::error::DecodeError;
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata { metadata: u64, mask: u64 },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
}

impl Instruction {
    /// Decodes an instruction list occupying exactly `len` bytes.
    pub fn decode_list(_r: &mut Reader<'_>, _len: usize) -> Result<Vec<Instruction>, DecodeError> {
        unimplemented!("stub")
    }

    pub fn encode_list(_insts: &[Instruction], _out: &mut Vec<u8>) {
        unimplemented!("stub")
    }
}
