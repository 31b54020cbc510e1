//! The audit log: one JSON line per API change (every POST, PUT, PATCH and DELETE,
//! whatever its result), appended to a file (`plexus-controller --audit-log PATH`).
//!
//! ```json
//! {"time":"2026-12-02T10:00:00.123Z","token":"ops-red","method":"PUT",
//!  "path":"/v1/ports/5c0…","kind":"ports","object":"5c0…","status":200,"result":"ok"}
//! ```
//!
//! `token` is the token's label from the token file (never the token): `none` when no
//! token was presented, `invalid` for an unknown one. `object` is the id in the path, or
//! the created object's id for a successful POST. `result` is `ok` (2xx), `denied`
//! (401/403) or `error`.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// The id of an object a handler created (a response extension read by the log).
#[derive(Debug, Clone)]
pub struct CreatedId(pub String);

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub token: String,
    pub method: String,
    pub path: String,
    /// The resource kind (`tenants`, `ports`, …), if the path names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub status: u16,
    pub result: String,
}

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry (one `write` of a whole line, so lines never interleave).
    pub fn record(&self, e: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)?;
        f.flush()
    }
}

/// RFC 3339 UTC with milliseconds for a time since the Unix epoch.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Middleware: records every change request once its response is known.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(log) = st.audit.clone() else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    if matches!(
        method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return next.run(req).await;
    }
    let token = super::auth::identify(req.headers(), &st);
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let mut segs = path.trim_start_matches('/').split('/');
    let (kind, path_id) = match (segs.next(), segs.next(), segs.next(), segs.next()) {
        (Some("v1"), Some(k), id, None) if super::kinds::ALL.contains(&k) => {
            (Some(k.to_string()), id.map(str::to_string))
        }
        _ => (None, None),
    };
    let object = path_id.or_else(|| resp.extensions().get::<CreatedId>().map(|c| c.0.clone()));
    let status = resp.status().as_u16();
    let e = Entry {
        time: rfc3339(std::time::SystemTime::now()),
        token,
        method: method.to_string(),
        path,
        kind,
        object,
        status,
        result: match status {
            200..=299 => "ok",
            401 | 403 => "denied",
            _ => "error",
        }
        .into(),
    };
    if let Err(err) = log.record(&e) {
        tracing::error!(error = %err, "writing the audit log");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // date -u -d @951782400.5 → 2000-02-29T00:00:00Z (leap day)
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_500)),
            "2000-02-29T00:00:00.500Z"
        );
        // date -u -d @1796212799 → 2026-12-02T11:59:59Z
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_212_799)),
            "2026-12-02T11:59:59.000Z"
        );
    }
}
