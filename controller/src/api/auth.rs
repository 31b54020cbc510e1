//! Bearer-token auth. The token file has one token per line: `TOKEN SCOPE` with scope
//! `admin` (read and write) or `read` (read-only); `#` starts a comment. `TOKEN` is
//! either the token itself (at least 16 characters) or, better, its SHA-256 as
//! `sha256:` + 64 hex digits (`printf %s "$TOKEN" | sha256sum`, or [`hash_token`]), so the
//! file does not hold usable credentials. A presented token is hashed once and compared in
//! constant time with every stored hash (and every plain token).

use super::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plexus_api::Problem;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Admin,
}

/// A stored token: plain, or the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Stored {
    Plain(String),
    Sha256([u8; 32]),
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The token-file form of a token's hash: `sha256:` + 64 lowercase hex digits.
pub fn hash_token(token: &str) -> String {
    let mut s = String::from("sha256:");
    for b in sha256(token.as_bytes()) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Tokens and their scopes.
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<Stored, Scope>);

impl Tokens {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut m = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(tok), Some(scope), None) = (it.next(), it.next(), it.next()) else {
                return Err(format!("line {}: expected `TOKEN SCOPE`", n + 1));
            };
            let scope = match scope {
                "admin" => Scope::Admin,
                "read" | "read-only" | "readonly" => Scope::Read,
                s => return Err(format!("line {}: unknown scope `{s}`", n + 1)),
            };
            let stored = if let Some(hex) = tok.strip_prefix("sha256:") {
                let Some(h) = parse_hash(hex) else {
                    return Err(format!(
                        "line {}: `sha256:` must be followed by 64 hex digits",
                        n + 1
                    ));
                };
                Stored::Sha256(h)
            } else if tok.len() < 16 {
                return Err(format!("line {}: token shorter than 16 characters", n + 1));
            } else {
                Stored::Plain(tok.to_string())
            };
            m.insert(stored, scope);
        }
        if m.is_empty() {
            return Err("no tokens".into());
        }
        Ok(Self(m))
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Adds a plain token.
    pub fn insert(&mut self, token: &str, scope: Scope) {
        self.0.insert(Stored::Plain(token.into()), scope);
    }

    /// Adds a token by its SHA-256 only (the token itself is not kept).
    pub fn insert_hashed(&mut self, token: &str, scope: Scope) {
        self.0
            .insert(Stored::Sha256(sha256(token.as_bytes())), scope);
    }

    /// Scope of a presented token, comparing in constant time per candidate.
    fn scope(&self, presented: &str) -> Option<Scope> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for (t, s) in &self.0 {
            let hit = match t {
                Stored::Plain(p) => ct_eq(p.as_bytes(), presented.as_bytes()),
                Stored::Sha256(h) => ct_eq(h, &digest),
            };
            if hit {
                found = Some(*s);
            }
        }
        found
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(detail: &str) -> Response {
    let mut r =
        ApiError::new(Problem::new(401, "Unauthorized").with_detail(detail)).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn authorize(parts: &Parts, st: &AppState, need: Scope) -> Result<(), Box<Response>> {
    let Some(tokens) = &st.tokens else {
        return Ok(());
    };
    let Some(h) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(unauthorized(
            "missing Authorization: Bearer token",
        )));
    };
    let tok = h
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(scope) = tok.and_then(|t| tokens.scope(t)) else {
        return Err(Box::new(unauthorized("invalid bearer token")));
    };
    if scope < need {
        return Err(Box::new(
            ApiError::new(
                Problem::new(StatusCode::FORBIDDEN.as_u16(), "Forbidden")
                    .with_detail("this token is read-only"),
            )
            .into_response(),
        ));
    }
    Ok(())
}

/// Extractor: any valid token.
#[derive(Debug)]
pub struct Reader;

/// Extractor: an admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Reader {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        authorize(parts, st, Scope::Read)
            .map(|()| Reader)
            .map_err(|r| *r)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        authorize(parts, st, Scope::Admin)
            .map(|()| Admin)
            .map_err(|r| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t =
            Tokens::parse("# tokens\nadmin-token-0123456789 admin\nreader-token-0123456 read\n")
                .unwrap();
        assert_eq!(t.scope("admin-token-0123456789"), Some(Scope::Admin));
        assert_eq!(t.scope("reader-token-0123456"), Some(Scope::Read));
        assert_eq!(t.scope("nope"), None);
        assert!(Tokens::parse("short admin").is_err());
        assert!(Tokens::parse("tok-0123456789abcdef root").is_err());
        assert!(Tokens::parse("").is_err());
    }

    #[test]
    fn hashed_tokens() {
        let tok = "admin-token-0123456789";
        let h = hash_token(tok);
        // printf %s admin-token-0123456789 | sha256sum
        assert_eq!(
            h,
            "sha256:ca8d40e6ce4716b552f1c69863335b502f2afb57ffae171d6675fd56d91ca5b2"
        );
        assert_eq!(h, format!("sha256:{}", hex(&sha256(tok.as_bytes()))));
        let t = Tokens::parse(&format!("{h} admin\nplain-token-0123456789 read\n")).unwrap();
        assert_eq!(t.scope(tok), Some(Scope::Admin));
        assert_eq!(t.scope("plain-token-0123456789"), Some(Scope::Read));
        // The hash itself is not a credential.
        assert_eq!(t.scope(&h), None);
        assert_eq!(t.scope(&h[7..]), None);
        assert_eq!(t.scope("admin-token-0123456788"), None);
        assert!(Tokens::parse("sha256:abcd admin").is_err());
        assert!(Tokens::parse(&format!("sha256:{} admin", "zz".repeat(32))).is_err());
        let mut t = Tokens::default();
        t.insert_hashed(tok, Scope::Read);
        assert_eq!(t.scope(tok), Some(Scope::Read));
        assert!(!format!("{t:?}").contains(tok));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 "abc".
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
