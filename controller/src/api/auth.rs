//! Bearer-token auth. The token file has one token per line: `TOKEN SCOPE` with scope
//! `admin` (read and write) or `read` (read-only); `#` starts a comment.

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

/// Tokens and their scopes.
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<String, Scope>);

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
            if tok.len() < 16 {
                return Err(format!("line {}: token shorter than 16 characters", n + 1));
            }
            m.insert(tok.to_string(), scope);
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

    pub fn insert(&mut self, token: &str, scope: Scope) {
        self.0.insert(token.into(), scope);
    }

    /// Scope of a presented token, comparing in constant time per candidate.
    fn scope(&self, presented: &str) -> Option<Scope> {
        let mut found = None;
        for (t, s) in &self.0 {
            if ct_eq(t.as_bytes(), presented.as_bytes()) {
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
}
