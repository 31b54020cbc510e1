//! JSON-RPC 1.0 as used by OVSDB (RFC 7047 §4): messages and a bounded, sans-IO stream framer.

use serde_json::{Map, Value, json};

use crate::error::OvsdbError;

/// A JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (`id` not null).
    Request {
        /// Request id.
        id: Value,
        /// Method name.
        method: String,
        /// Parameters (an array).
        params: Value,
    },
    /// A notification (`id` null).
    Notification {
        /// Method name.
        method: String,
        /// Parameters.
        params: Value,
    },
    /// A successful response.
    Response {
        /// Id of the request.
        id: Value,
        /// The result.
        result: Value,
    },
    /// An error response.
    Error {
        /// Id of the request (null if it could not be determined).
        id: Value,
        /// The error (an RFC error object or a string).
        error: Value,
    },
}

impl Message {
    /// Parse a JSON value into a message. Errors are "syntax error" objects.
    pub fn from_value(v: Value) -> Result<Message, OvsdbError> {
        let Value::Object(mut m) = v else {
            return Err(OvsdbError::syntax("JSON-RPC message must be an object"));
        };
        let id = m.remove("id").unwrap_or(Value::Null);
        if let Some(method) = m.remove("method") {
            let Value::String(method) = method else {
                return Err(OvsdbError::syntax("\"method\" must be a string"));
            };
            let params = m.remove("params").unwrap_or(Value::Array(vec![]));
            if !params.is_array() {
                return Err(OvsdbError::syntax("\"params\" must be an array"));
            }
            return Ok(if id.is_null() {
                Message::Notification { method, params }
            } else {
                Message::Request { id, method, params }
            });
        }
        match (m.remove("result"), m.remove("error")) {
            (_, Some(e)) if !e.is_null() => Ok(Message::Error { id, error: e }),
            (Some(r), _) => Ok(Message::Response { id, result: r }),
            _ => Err(OvsdbError::syntax(
                "message has neither \"method\" nor \"result\"/\"error\"",
            )),
        }
    }

    /// The JSON form (responses carry both `result` and `error` as RFC 7047 requires).
    pub fn to_value(&self) -> Value {
        match self {
            Message::Request { id, method, params } => {
                json!({"id": id, "method": method, "params": params})
            }
            Message::Notification { method, params } => {
                json!({"id": null, "method": method, "params": params})
            }
            Message::Response { id, result } => json!({"id": id, "result": result, "error": null}),
            Message::Error { id, error } => json!({"id": id, "result": null, "error": error}),
        }
    }

    /// Serialized bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// An error response carrying an [`OvsdbError`].
    pub fn error(id: Value, e: &OvsdbError) -> Message {
        Message::Error {
            id,
            error: e.to_json(),
        }
    }
}

/// Output of the framer.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A complete, well-formed JSON value.
    Value(Value),
    /// Input that could not be parsed (malformed JSON, garbage between messages, or an
    /// oversized message); the stream continues after it.
    Invalid(OvsdbError),
}

/// Splits a byte stream into top-level JSON objects/arrays.
///
/// Memory is bounded: at most `max_len` bytes of one message are buffered; bytes outside any
/// value that are not whitespace are discarded (reported once per run) and an oversized value is
/// skipped without buffering.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escape: bool,
    skipping: bool,
    garbage: bool,
    max_len: usize,
}

/// Default message size limit (64 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

impl Default for Framer {
    fn default() -> Self {
        Framer::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Framer {
    /// A framer that accepts messages of up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Framer {
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            skipping: false,
            garbage: false,
            max_len,
        }
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feed bytes; returns every frame they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in data {
            if self.depth == 0 {
                match b {
                    b'{' | b'[' => {
                        if self.garbage {
                            self.garbage = false;
                            out.push(Frame::Invalid(OvsdbError::syntax(
                                "invalid JSON-RPC input: unexpected bytes between messages",
                            )));
                        }
                        self.depth = 1;
                        self.buf.clear();
                        self.buf.push(b);
                        self.skipping = false;
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => self.garbage = true,
                }
                continue;
            }
            if !self.skipping {
                if self.buf.len() >= self.max_len {
                    self.skipping = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.push(b);
                }
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        if self.skipping {
                            self.skipping = false;
                            out.push(Frame::Invalid(OvsdbError::new(
                                "resources exhausted",
                                format!("message exceeds {} bytes", self.max_len),
                            )));
                        } else {
                            let buf = std::mem::take(&mut self.buf);
                            out.push(match serde_json::from_slice(&buf) {
                                Ok(v) => Frame::Value(v),
                                Err(e) => {
                                    Frame::Invalid(OvsdbError::syntax(format!("invalid JSON: {e}")))
                                }
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if self.depth == 0 && self.garbage && self.buf.is_empty() {
            // Report garbage promptly even if no value follows.
            self.garbage = false;
            out.push(Frame::Invalid(OvsdbError::syntax(
                "invalid JSON-RPC input: unexpected bytes between messages",
            )));
        }
        out
    }
}

/// Build a JSON object from pairs (small helper for callers).
pub fn object(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_roundtrip() {
        let msgs = [
            Message::Request {
                id: json!(1),
                method: "echo".into(),
                params: json!([]),
            },
            Message::Notification {
                method: "update".into(),
                params: json!([null, {}]),
            },
            Message::Response {
                id: json!("x"),
                result: json!({"a": 1}),
            },
            Message::Error {
                id: json!(2),
                error: json!("unknown method"),
            },
        ];
        for m in msgs {
            assert_eq!(Message::from_value(m.to_value()).unwrap(), m);
        }
        assert!(Message::from_value(json!([1])).is_err());
        assert!(Message::from_value(json!({"id": 1, "method": 3})).is_err());
        assert!(Message::from_value(json!({"id": 1, "method": "x", "params": 3})).is_err());
        assert!(Message::from_value(json!({"id": 1})).is_err());
    }

    #[test]
    fn framer_splits_and_recovers() {
        let mut f = Framer::new(1024);
        let input = br#"{"id":1,"method":"echo","params":["}{\""]}  {"id":2,"#;
        let out = f.feed(input);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0],
            Frame::Value(json!({"id":1,"method":"echo","params":["}{\""]}))
        );
        let out = f.feed(br#""method":"list_dbs","params":[]}"#);
        assert_eq!(
            out,
            vec![Frame::Value(
                json!({"id":2,"method":"list_dbs","params":[]})
            )]
        );
        // Malformed JSON inside balanced braces, then a good message.
        let out = f.feed(br#"{"id":1,"method":}{"id":3,"method":"echo","params":[]}"#);
        assert!(matches!(&out[0], Frame::Invalid(e) if e.error == "syntax error"));
        assert!(matches!(&out[1], Frame::Value(_)));
        // Garbage between messages.
        let out = f.feed(b"hello {\"id\":4,\"method\":\"echo\",\"params\":[]}");
        assert!(matches!(&out[0], Frame::Invalid(_)));
        assert!(matches!(&out[1], Frame::Value(_)));
    }

    #[test]
    fn framer_bounded_on_garbage_and_oversize() {
        let mut f = Framer::new(4096);
        let garbage: Vec<u8> = (0..10_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut frames = 0;
        for chunk in garbage.chunks(65536) {
            frames += f.feed(chunk).len();
            assert!(f.buffered() <= 4096);
        }
        assert!(frames > 0);
        let mut f = Framer::new(100);
        let mut big = b"{\"a\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 1000));
        big.extend(b"\"}{\"id\":1,\"method\":\"echo\",\"params\":[]}");
        let out = f.feed(&big);
        assert!(matches!(&out[0], Frame::Invalid(e) if e.error == "resources exhausted"));
        assert!(matches!(&out[1], Frame::Value(_)));
    }
}
