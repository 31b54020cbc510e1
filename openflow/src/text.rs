//! `ovs-ofctl` flow syntax: parse and print.
//!
//! STUB: filled in by the text-form work.

/// A text-form parse error with a message saying what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
