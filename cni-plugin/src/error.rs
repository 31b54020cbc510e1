//! CNI error results (`{cniVersion, code, msg, details}`) and the codes used.
//!
//! Codes 1–7 and 11, 50 are the spec's; 100 and up are this plugin's:
//!
//! | code | meaning |
//! |---|---|
//! | 1 | incompatible CNI version |
//! | 2 | unsupported field in the network configuration |
//! | 3 | container unknown or does not exist (netns missing on ADD/CHECK) |
//! | 4 | invalid necessary environment variables (CNI_*) |
//! | 5 | I/O failure (reading stdin, the token file, running tools) |
//! | 6 | failed to decode content (stdin JSON, prevResult) |
//! | 7 | invalid network configuration |
//! | 11 | try again later: the daemon (`daemon_socket`) is unreachable or died during the call |
//! | 50 | STATUS: plugin not available (controller or switch down) |
//! | 100 | controller unreachable (connect/read failure) |
//! | 101 | controller rejected the request (HTTP status ≥ 400; details carry the problem JSON) |
//! | 102 | switch (Open vSwitch) operation failed |
//! | 103 | link/address/route operation failed (host or container side) |
//! | 104 | CHECK: the attachment does not match prevResult or the controller binding |

use serde_json::json;
use std::fmt;

pub const INCOMPATIBLE_VERSION: u32 = 1;
pub const UNSUPPORTED_FIELD: u32 = 2;
pub const UNKNOWN_CONTAINER: u32 = 3;
pub const INVALID_ENV: u32 = 4;
pub const IO_FAILURE: u32 = 5;
pub const DECODE_FAILURE: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;
pub const TRY_AGAIN: u32 = 11;
pub const NOT_AVAILABLE: u32 = 50;
pub const CONTROLLER_UNREACHABLE: u32 = 100;
pub const CONTROLLER_REJECTED: u32 = 101;
pub const SWITCH_FAILURE: u32 = 102;
pub const LINK_FAILURE: u32 = 103;
pub const CHECK_FAILED: u32 = 104;

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error as the spec's JSON object.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {}): {}", self.msg, self.code, self.details)
    }
}

impl std::error::Error for CniError {}

pub type CniResult<T> = Result<T, CniError>;
