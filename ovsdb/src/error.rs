//! RFC 7047 error objects (`{"error": "...", "details": "..."}`).

use serde_json::{Map, Value, json};

/// An OVSDB error: the RFC's short `error` string plus optional `details` and `syntax`.
///
/// The `error` strings are the ones `ovsdb-server` (OVS 3.1) returns, e.g. `"syntax error"`,
/// `"constraint violation"`, `"referential integrity violation"`, `"unknown column"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {}", details.as_deref().unwrap_or(""))]
pub struct OvsdbError {
    /// The short error tag.
    pub error: String,
    /// Human-readable explanation.
    pub details: Option<String>,
    /// The offending JSON, serialized, if any.
    pub syntax: Option<String>,
}

impl OvsdbError {
    /// A new error with a tag and details.
    pub fn new(error: &str, details: impl Into<String>) -> Self {
        OvsdbError {
            error: error.to_string(),
            details: Some(details.into()),
            syntax: None,
        }
    }
    /// `"syntax error"`.
    pub fn syntax(details: impl Into<String>) -> Self {
        Self::new("syntax error", details)
    }
    /// `"constraint violation"`.
    pub fn constraint(details: impl Into<String>) -> Self {
        Self::new("constraint violation", details)
    }
    /// `"referential integrity violation"`.
    pub fn referential(details: impl Into<String>) -> Self {
        Self::new("referential integrity violation", details)
    }
    /// Attach the offending JSON.
    pub fn with_syntax(mut self, v: &Value) -> Self {
        self.syntax = Some(v.to_string());
        self
    }
    /// The RFC 7047 JSON form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), json!(self.error));
        if let Some(d) = &self.details {
            m.insert("details".into(), json!(d));
        }
        if let Some(s) = &self.syntax {
            m.insert("syntax".into(), json!(s));
        }
        Value::Object(m)
    }
    /// Parse an error object (as returned by a server).
    pub fn from_json(v: &Value) -> Self {
        match v {
            Value::Object(m) => OvsdbError {
                error: m
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
                details: m.get("details").and_then(Value::as_str).map(str::to_string),
                syntax: m.get("syntax").and_then(Value::as_str).map(str::to_string),
            },
            Value::String(s) => OvsdbError {
                error: s.clone(),
                details: None,
                syntax: None,
            },
            other => OvsdbError {
                error: other.to_string(),
                details: None,
                syntax: None,
            },
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, OvsdbError>;
