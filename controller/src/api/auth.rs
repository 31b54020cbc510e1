//! Bearer-token auth. The token file has one token per line: `TOKEN SCOPE [NAME]` with
//! scope `admin` (read and write everything), `read` (read everything) or
//! `tenant:<tenant id>` (read and write only that tenant's objects: the tenant itself, its
//! VPCs and security groups, and the subnets, routers, services and ports of its VPCs;
//! lists show only those; everything else is 403). `#` starts a comment. `TOKEN` is
//! either the token itself (at least 16 characters) or, better, its SHA-256 as
//! `sha256:` + 64 hex digits (`printf %s "$TOKEN" | sha256sum`, or [`hash_token`]), so the
//! file does not hold usable credentials. `NAME` labels the token in the audit log (by
//! default `sha256:` + the first 12 hex digits of the token's hash). A presented token is
//! hashed once and compared in constant time with every stored hash (and every plain
//! token).

use super::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plexus_api::Problem;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Admin,
    /// Read and write the objects of one tenant (by tenant id) only.
    Tenant(String),
}

impl Scope {
    /// Parses `admin`, `read` (`read-only`, `readonly`) or `tenant:<id>`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "admin" => Some(Scope::Admin),
            "read" | "read-only" | "readonly" => Some(Scope::Read),
            _ => {
                let t = s.strip_prefix("tenant:")?;
                (!t.is_empty()).then(|| Scope::Tenant(t.to_string()))
            }
        }
    }

    /// The tenant a token is restricted to.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::Tenant(t) => Some(t),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Read => f.write_str("read"),
            Scope::Admin => f.write_str("admin"),
            Scope::Tenant(t) => write!(f, "tenant:{t}"),
        }
    }
}

/// Who made a request: the token's label and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `NAME` from the token file, or `sha256:` + 12 hex digits of its hash
    /// (`anonymous` when authentication is off).
    pub token_id: String,
    pub scope: Scope,
}

impl Caller {
    fn anonymous() -> Self {
        Caller {
            token_id: "anonymous".into(),
            scope: Scope::Admin,
        }
    }
}

/// A stored token: plain, or the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Stored {
    Plain(String),
    Sha256([u8; 32]),
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
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

/// Tokens and their scopes (and labels).
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<Stored, (Scope, Option<String>)>);

fn default_label(digest: &[u8; 32]) -> String {
    let mut s = String::from("sha256:");
    for b in &digest[..6] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Tokens {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut m = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(tok), Some(scope), name, None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(format!("line {}: expected `TOKEN SCOPE [NAME]`", n + 1));
            };
            let Some(scope) = Scope::parse(scope) else {
                return Err(format!(
                    "line {}: unknown scope `{scope}` (admin, read or tenant:<id>)",
                    n + 1
                ));
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
            m.insert(stored, (scope, name.map(str::to_string)));
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
        self.0.insert(Stored::Plain(token.into()), (scope, None));
    }

    /// Adds a plain token with an audit-log label.
    pub fn insert_named(&mut self, token: &str, scope: Scope, name: &str) {
        self.0
            .insert(Stored::Plain(token.into()), (scope, Some(name.into())));
    }

    /// Adds a token by its SHA-256 only (the token itself is not kept).
    pub fn insert_hashed(&mut self, token: &str, scope: Scope) {
        self.0
            .insert(Stored::Sha256(sha256(token.as_bytes())), (scope, None));
    }

    /// Scope of a presented token, comparing in constant time per candidate.
    #[cfg(test)]
    fn scope(&self, presented: &str) -> Option<Scope> {
        self.caller(presented).map(|c| c.scope)
    }

    /// The caller a presented token identifies, comparing in constant time per candidate.
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for (t, (s, name)) in &self.0 {
            let hit = match t {
                Stored::Plain(p) => ct_eq(p.as_bytes(), presented.as_bytes()),
                Stored::Sha256(h) => ct_eq(h, &digest),
            };
            if hit {
                found = Some(Caller {
                    token_id: name.clone().unwrap_or_else(|| default_label(&digest)),
                    scope: s.clone(),
                });
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

fn forbidden(detail: &str) -> Response {
    ApiError::new(Problem::new(StatusCode::FORBIDDEN.as_u16(), "Forbidden").with_detail(detail))
        .into_response()
}

/// The bearer token of a request, if any.
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Who a request comes from, for the audit log: the token's label, `none` without a
/// token, `invalid` for an unknown one.
pub(super) fn identify(headers: &axum::http::HeaderMap, st: &AppState) -> String {
    let Some(tokens) = &st.tokens else {
        return "anonymous".into();
    };
    match bearer(headers) {
        None => "none".into(),
        Some(t) => tokens
            .caller(t)
            .map_or_else(|| "invalid".into(), |c| c.token_id),
    }
}

fn authenticate(parts: &Parts, st: &AppState) -> Result<Caller, Box<Response>> {
    let Some(tokens) = &st.tokens else {
        return Ok(Caller::anonymous());
    };
    if parts.headers.get(header::AUTHORIZATION).is_none() {
        return Err(Box::new(unauthorized(
            "missing Authorization: Bearer token",
        )));
    }
    bearer(&parts.headers)
        .and_then(|t| tokens.caller(t))
        .ok_or_else(|| Box::new(unauthorized("invalid bearer token")))
}

/// Extractor: any valid token (reads; a tenant token's reads are checked per object).
#[derive(Debug)]
pub struct Reader(pub Caller);

/// Extractor: a token that may write (admin, or a tenant token: its writes are checked
/// per object).
#[derive(Debug)]
pub struct Admin(pub Caller);

/// Extractor: a token that may see everything (admin or read): infrastructure objects
/// (chassis) and controller-wide status.
#[derive(Debug)]
pub struct Global(pub Caller);

impl FromRequestParts<AppState> for Reader {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        authenticate(parts, st).map(Reader).map_err(|r| *r)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let c = authenticate(parts, st).map_err(|r| *r)?;
        if c.scope == Scope::Read {
            return Err(forbidden("this token is read-only"));
        }
        Ok(Admin(c))
    }
}

impl FromRequestParts<AppState> for Global {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let c = authenticate(parts, st).map_err(|r| *r)?;
        if let Scope::Tenant(t) = &c.scope {
            return Err(forbidden(&format!(
                "this token is limited to tenant {t}; this endpoint is not per tenant"
            )));
        }
        Ok(Global(c))
    }
}

/// The 403 for an object outside a tenant token's tenant.
pub(super) fn not_your_tenant(tenant: &str, kind: &str, id: &str) -> super::ApiError {
    ApiError::new(
        Problem::new(StatusCode::FORBIDDEN.as_u16(), "Forbidden").with_detail(format!(
            "this token is limited to tenant {tenant}; {kind} {id} belongs to another tenant"
        )),
    )
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
        assert!(Tokens::parse("tok-0123456789abcdef tenant:").is_err());
        assert!(Tokens::parse("tok-0123456789abcdef admin name extra").is_err());
    }

    #[test]
    fn tenant_scopes_and_labels() {
        let t = Tokens::parse(&format!(
            "tenant-token-0123456789 tenant:abc ops-red\n{} read\n",
            hash_token("reader-token-0123456")
        ))
        .unwrap();
        let c = t.caller("tenant-token-0123456789").unwrap();
        assert_eq!(c.scope, Scope::Tenant("abc".into()));
        assert_eq!(c.scope.tenant(), Some("abc"));
        assert_eq!(c.scope.to_string(), "tenant:abc");
        assert_eq!(c.token_id, "ops-red");
        // Unnamed: the first 12 hex digits of the hash, never the token.
        let c = t.caller("reader-token-0123456").unwrap();
        assert_eq!(c.token_id, hash_token("reader-token-0123456")[..19]);
        assert_eq!(Scope::parse("tenant:x"), Some(Scope::Tenant("x".into())));
        assert_eq!(Scope::parse("root"), None);
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
