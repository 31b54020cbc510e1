//! OpenFlow 1.3.5 error types and codes (`ofp_error_type`, `ofp_*_code`), and
//! the decoder's error type, every variant of which maps to the OFPT_ERROR a
//! switch sends back for that input.

use std::fmt;

macro_rules! codes {
    ($(#[$m:meta])* $name:ident { $($var:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum $name { $($var = $val),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),*];

            pub fn from_u16(v: u16) -> Option<Self> {
                match v { $($val => Some($name::$var),)* _ => None }
            }

            /// The code's name without its `OFP..._` prefix, as ovs-ofctl spells it.
            pub fn name(self) -> &'static str {
                match self { $($name::$var => stringify!($var),)* }
            }
        }
    };
}

codes!(
    /// `ofp_hello_failed_code`
    HelloFailedCode { Incompatible = 0, Eperm = 1 }
);
codes!(
    /// `ofp_bad_request_code`
    BadRequestCode {
        BadVersion = 0, BadType = 1, BadMultipart = 2, BadExperimenter = 3, BadExpType = 4,
        Eperm = 5, BadLen = 6, BufferEmpty = 7, BufferUnknown = 8, BadTableId = 9,
        IsSlave = 10, BadPort = 11, BadPacket = 12, MultipartBufferOverflow = 13,
    }
);
codes!(
    /// `ofp_bad_action_code`
    BadActionCode {
        BadType = 0, BadLen = 1, BadExperimenter = 2, BadExpType = 3, BadOutPort = 4,
        BadArgument = 5, Eperm = 6, TooMany = 7, BadQueue = 8, BadOutGroup = 9,
        MatchInconsistent = 10, UnsupportedOrder = 11, BadTag = 12, BadSetType = 13,
        BadSetLen = 14, BadSetArgument = 15,
    }
);
codes!(
    /// `ofp_bad_instruction_code`
    BadInstructionCode {
        UnknownInst = 0, UnsupInst = 1, BadTableId = 2, UnsupMetadata = 3,
        UnsupMetadataMask = 4, BadExperimenter = 5, BadExpType = 6, BadLen = 7, Eperm = 8,
    }
);
codes!(
    /// `ofp_bad_match_code`
    BadMatchCode {
        BadType = 0, BadLen = 1, BadTag = 2, BadDlAddrMask = 3, BadNwAddrMask = 4,
        BadWildcards = 5, BadField = 6, BadValue = 7, BadMask = 8, BadPrereq = 9,
        DupField = 10, Eperm = 11,
    }
);
codes!(
    /// `ofp_flow_mod_failed_code`
    FlowModFailedCode {
        Unknown = 0, TableFull = 1, BadTableId = 2, Overlap = 3, Eperm = 4,
        BadTimeout = 5, BadCommand = 6, BadFlags = 7,
    }
);
codes!(
    /// `ofp_group_mod_failed_code`
    GroupModFailedCode {
        GroupExists = 0, InvalidGroup = 1, WeightUnsupported = 2, OutOfGroups = 3,
        OutOfBuckets = 4, ChainingUnsupported = 5, WatchUnsupported = 6, Loop = 7,
        UnknownGroup = 8, ChainedGroup = 9, BadType = 10, BadCommand = 11, BadBucket = 12,
        BadWatch = 13, Eperm = 14,
    }
);
codes!(
    /// `ofp_port_mod_failed_code`
    PortModFailedCode { BadPort = 0, BadHwAddr = 1, BadConfig = 2, BadAdvertise = 3, Eperm = 4 }
);
codes!(
    /// `ofp_table_mod_failed_code`
    TableModFailedCode { BadTable = 0, BadConfig = 1, Eperm = 2 }
);
codes!(
    /// `ofp_queue_op_failed_code`
    QueueOpFailedCode { BadPort = 0, BadQueue = 1, Eperm = 2 }
);
codes!(
    /// `ofp_switch_config_failed_code`
    SwitchConfigFailedCode { BadFlags = 0, BadLen = 1, Eperm = 2 }
);
codes!(
    /// `ofp_role_request_failed_code`
    RoleRequestFailedCode { Stale = 0, Unsup = 1, BadRole = 2 }
);
codes!(
    /// `ofp_meter_mod_failed_code`
    MeterModFailedCode {
        Unknown = 0, MeterExists = 1, InvalidMeter = 2, UnknownMeter = 3, BadCommand = 4,
        BadFlags = 5, BadRate = 6, BadBurst = 7, BadBand = 8, BadBandValue = 9,
        OutOfMeters = 10, OutOfBands = 11,
    }
);
codes!(
    /// `ofp_table_features_failed_code`
    TableFeaturesFailedCode {
        BadTable = 0, BadMetadata = 1, BadType = 2, BadLen = 3, BadArgument = 4, Eperm = 5,
    }
);

/// An OpenFlow error: the (type, code) pair carried by OFPT_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfpError {
    HelloFailed(HelloFailedCode),
    BadRequest(BadRequestCode),
    BadAction(BadActionCode),
    BadInstruction(BadInstructionCode),
    BadMatch(BadMatchCode),
    FlowModFailed(FlowModFailedCode),
    GroupModFailed(GroupModFailedCode),
    PortModFailed(PortModFailedCode),
    TableModFailed(TableModFailedCode),
    QueueOpFailed(QueueOpFailedCode),
    SwitchConfigFailed(SwitchConfigFailedCode),
    RoleRequestFailed(RoleRequestFailedCode),
    MeterModFailed(MeterModFailedCode),
    TableFeaturesFailed(TableFeaturesFailedCode),
    /// `OFPET_EXPERIMENTER` (type 0xffff): `exp_type` and experimenter id.
    Experimenter {
        exp_type: u16,
        experimenter: u32,
    },
    /// A (type, code) pair this codec does not know. Kept so nothing is lost.
    Other {
        err_type: u16,
        code: u16,
    },
}

pub const OFPET_EXPERIMENTER: u16 = 0xffff;

impl OfpError {
    pub fn bad_request(c: BadRequestCode) -> Self {
        Self::BadRequest(c)
    }

    /// The `ofp_error_type` value.
    pub fn err_type(&self) -> u16 {
        match self {
            Self::HelloFailed(_) => 0,
            Self::BadRequest(_) => 1,
            Self::BadAction(_) => 2,
            Self::BadInstruction(_) => 3,
            Self::BadMatch(_) => 4,
            Self::FlowModFailed(_) => 5,
            Self::GroupModFailed(_) => 6,
            Self::PortModFailed(_) => 7,
            Self::TableModFailed(_) => 8,
            Self::QueueOpFailed(_) => 9,
            Self::SwitchConfigFailed(_) => 10,
            Self::RoleRequestFailed(_) => 11,
            Self::MeterModFailed(_) => 12,
            Self::TableFeaturesFailed(_) => 13,
            Self::Experimenter { .. } => OFPET_EXPERIMENTER,
            Self::Other { err_type, .. } => *err_type,
        }
    }

    /// The code value (for `Experimenter`, the `exp_type`).
    pub fn code(&self) -> u16 {
        match *self {
            Self::HelloFailed(c) => c as u16,
            Self::BadRequest(c) => c as u16,
            Self::BadAction(c) => c as u16,
            Self::BadInstruction(c) => c as u16,
            Self::BadMatch(c) => c as u16,
            Self::FlowModFailed(c) => c as u16,
            Self::GroupModFailed(c) => c as u16,
            Self::PortModFailed(c) => c as u16,
            Self::TableModFailed(c) => c as u16,
            Self::QueueOpFailed(c) => c as u16,
            Self::SwitchConfigFailed(c) => c as u16,
            Self::RoleRequestFailed(c) => c as u16,
            Self::MeterModFailed(c) => c as u16,
            Self::TableFeaturesFailed(c) => c as u16,
            Self::Experimenter { exp_type, .. } => exp_type,
            Self::Other { code, .. } => code,
        }
    }

    /// Builds the typed error from a wire (type, code). Unknown pairs become `Other`.
    /// For type 0xffff use [`OfpError::Experimenter`] directly (it needs the experimenter id).
    pub fn from_type_code(err_type: u16, code: u16) -> Self {
        let known = match err_type {
            0 => HelloFailedCode::from_u16(code).map(Self::HelloFailed),
            1 => BadRequestCode::from_u16(code).map(Self::BadRequest),
            2 => BadActionCode::from_u16(code).map(Self::BadAction),
            3 => BadInstructionCode::from_u16(code).map(Self::BadInstruction),
            4 => BadMatchCode::from_u16(code).map(Self::BadMatch),
            5 => FlowModFailedCode::from_u16(code).map(Self::FlowModFailed),
            6 => GroupModFailedCode::from_u16(code).map(Self::GroupModFailed),
            7 => PortModFailedCode::from_u16(code).map(Self::PortModFailed),
            8 => TableModFailedCode::from_u16(code).map(Self::TableModFailed),
            9 => QueueOpFailedCode::from_u16(code).map(Self::QueueOpFailed),
            10 => SwitchConfigFailedCode::from_u16(code).map(Self::SwitchConfigFailed),
            11 => RoleRequestFailedCode::from_u16(code).map(Self::RoleRequestFailed),
            12 => MeterModFailedCode::from_u16(code).map(Self::MeterModFailed),
            13 => TableFeaturesFailedCode::from_u16(code).map(Self::TableFeaturesFailed),
            _ => None,
        };
        known.unwrap_or(Self::Other { err_type, code })
    }

    /// The type name as ovs-ofctl prints it (`OFPET_BAD_MATCH`).
    pub fn type_name(&self) -> &'static str {
        match self.err_type() {
            0 => "OFPET_HELLO_FAILED",
            1 => "OFPET_BAD_REQUEST",
            2 => "OFPET_BAD_ACTION",
            3 => "OFPET_BAD_INSTRUCTION",
            4 => "OFPET_BAD_MATCH",
            5 => "OFPET_FLOW_MOD_FAILED",
            6 => "OFPET_GROUP_MOD_FAILED",
            7 => "OFPET_PORT_MOD_FAILED",
            8 => "OFPET_TABLE_MOD_FAILED",
            9 => "OFPET_QUEUE_OP_FAILED",
            10 => "OFPET_SWITCH_CONFIG_FAILED",
            11 => "OFPET_ROLE_REQUEST_FAILED",
            12 => "OFPET_METER_MOD_FAILED",
            13 => "OFPET_TABLE_FEATURES_FAILED",
            0xffff => "OFPET_EXPERIMENTER",
            _ => "OFPET_UNKNOWN",
        }
    }

    /// The code name without prefix (`BAD_PREREQ` style is `BadPrereq` here).
    pub fn code_name(&self) -> &'static str {
        match *self {
            Self::HelloFailed(c) => c.name(),
            Self::BadRequest(c) => c.name(),
            Self::BadAction(c) => c.name(),
            Self::BadInstruction(c) => c.name(),
            Self::BadMatch(c) => c.name(),
            Self::FlowModFailed(c) => c.name(),
            Self::GroupModFailed(c) => c.name(),
            Self::PortModFailed(c) => c.name(),
            Self::TableModFailed(c) => c.name(),
            Self::QueueOpFailed(c) => c.name(),
            Self::SwitchConfigFailed(c) => c.name(),
            Self::RoleRequestFailed(c) => c.name(),
            Self::MeterModFailed(c) => c.name(),
            Self::TableFeaturesFailed(c) => c.name(),
            Self::Experimenter { .. } => "Experimenter",
            Self::Other { .. } => "Unknown",
        }
    }
}

impl fmt::Display for OfpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.type_name(), self.code_name())
    }
}

impl std::error::Error for OfpError {}

/// Why a byte string failed to decode. Every variant maps (via
/// [`DecodeError::ofp_error`]) to the OFPT_ERROR type/code a switch must send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field that is impossible (too short, not a multiple of 8, past the end).
    #[error("bad length {len} in {what}")]
    BadLength { what: &'static str, len: usize },
    /// The header's length disagrees with the buffer handed to the decoder.
    #[error("header says {header} bytes but buffer has {buffer}")]
    LengthMismatch { header: usize, buffer: usize },
    /// Wire version other than 0x04.
    #[error("unsupported OpenFlow version {0:#04x}")]
    BadVersion(u8),
    /// An `ofp_type` this codec does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// An `ofp_multipart_type` this codec does not know.
    #[error("unknown multipart type {0}")]
    UnknownMultipart(u16),
    /// An experimenter id we don't speak (message, action, instruction or OXM level).
    #[error("unknown experimenter {experimenter:#010x} in {what}")]
    UnknownExperimenter {
        what: &'static str,
        experimenter: u32,
    },
    /// A known experimenter with an unknown subtype.
    #[error("unknown experimenter subtype {subtype} of {experimenter:#010x} in {what}")]
    UnknownExpType {
        what: &'static str,
        experimenter: u32,
        subtype: u32,
    },
    /// A semantically invalid value; carries the exact error to send.
    #[error("{what}: {err}")]
    Invalid { what: &'static str, err: OfpError },
}

impl DecodeError {
    /// Shorthand for an `Invalid` error.
    pub fn invalid(what: &'static str, err: OfpError) -> Self {
        Self::Invalid { what, err }
    }

    /// The OFPT_ERROR a switch replies with for this input. Context-free
    /// variants (truncation inside an action list, for instance) map to the
    /// message-level code; decoders of actions, instructions and matches
    /// return `Invalid` with the precise code instead.
    pub fn ofp_error(&self) -> OfpError {
        match self {
            Self::Truncated { .. } | Self::BadLength { .. } | Self::LengthMismatch { .. } => {
                OfpError::BadRequest(BadRequestCode::BadLen)
            }
            Self::BadVersion(_) => OfpError::BadRequest(BadRequestCode::BadVersion),
            Self::UnknownType(_) => OfpError::BadRequest(BadRequestCode::BadType),
            Self::UnknownMultipart(_) => OfpError::BadRequest(BadRequestCode::BadMultipart),
            Self::UnknownExperimenter { .. } => {
                OfpError::BadRequest(BadRequestCode::BadExperimenter)
            }
            Self::UnknownExpType { .. } => OfpError::BadRequest(BadRequestCode::BadExpType),
            Self::Invalid { err, .. } => *err,
        }
    }

    /// Re-labels a context-free length/experimenter error with the code that
    /// fits the layer it happened in (e.g. a truncated action is
    /// `OFPBAC_BAD_LEN`, not `OFPBRC_BAD_LEN`). `Invalid` errors pass unchanged.
    pub fn in_layer(self, layer: Layer) -> Self {
        let what = match &self {
            Self::Truncated { what, .. } | Self::BadLength { what, .. } => *what,
            Self::UnknownExperimenter { what, .. } | Self::UnknownExpType { what, .. } => *what,
            _ => return self,
        };
        let err = match (&self, layer) {
            (Self::Truncated { .. } | Self::BadLength { .. }, Layer::Action) => {
                OfpError::BadAction(BadActionCode::BadLen)
            }
            (Self::Truncated { .. } | Self::BadLength { .. }, Layer::Instruction) => {
                OfpError::BadInstruction(BadInstructionCode::BadLen)
            }
            (Self::Truncated { .. } | Self::BadLength { .. }, Layer::Match) => {
                OfpError::BadMatch(BadMatchCode::BadLen)
            }
            (Self::UnknownExperimenter { .. }, Layer::Action) => {
                OfpError::BadAction(BadActionCode::BadExperimenter)
            }
            (Self::UnknownExpType { .. }, Layer::Action) => {
                OfpError::BadAction(BadActionCode::BadExpType)
            }
            (Self::UnknownExperimenter { .. }, Layer::Instruction) => {
                OfpError::BadInstruction(BadInstructionCode::BadExperimenter)
            }
            (Self::UnknownExpType { .. }, Layer::Instruction) => {
                OfpError::BadInstruction(BadInstructionCode::BadExpType)
            }
            (Self::UnknownExperimenter { .. } | Self::UnknownExpType { .. }, Layer::Match) => {
                OfpError::BadMatch(BadMatchCode::BadField)
            }
            _ => return self,
        };
        Self::Invalid { what, err }
    }
}

/// Where in a message a decode error happened, for [`DecodeError::in_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Match,
    Action,
    Instruction,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_code_roundtrip() {
        for t in 0..14u16 {
            for c in 0..20u16 {
                let e = OfpError::from_type_code(t, c);
                assert_eq!((e.err_type(), e.code()), (t, c));
            }
        }
        assert!(matches!(
            OfpError::from_type_code(4, 9),
            OfpError::BadMatch(BadMatchCode::BadPrereq)
        ));
        assert!(matches!(
            OfpError::from_type_code(99, 1),
            OfpError::Other { .. }
        ));
    }

    #[test]
    fn layered_errors() {
        let e = DecodeError::Truncated {
            what: "action",
            need: 8,
            have: 4,
        };
        assert_eq!(e.ofp_error(), OfpError::BadRequest(BadRequestCode::BadLen));
        assert_eq!(
            e.in_layer(Layer::Action).ofp_error(),
            OfpError::BadAction(BadActionCode::BadLen)
        );
    }
}
