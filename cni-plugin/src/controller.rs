//! The controller's REST API as the plugin uses it.

use crate::config::ControllerConf;
use crate::error::*;
use crate::http::{Client, InFlight};
use plexus_api::{Port, PortBinding, PortList, PortSpec, PortStatus, Subnet};
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Controller {
    http: Client,
}

/// Outcome of creating a port.
#[derive(Debug)]
pub enum Created {
    Port(Box<Port>),
    /// 409 on `binding.iface`: a port bound to this attachment exists already.
    BindingTaken,
}

impl Controller {
    pub fn new(c: &ControllerConf) -> CniResult<Self> {
        let token = match &c.token_file {
            Some(p) => {
                let s = std::fs::read_to_string(p).map_err(|e| {
                    CniError::new(
                        IO_FAILURE,
                        "reading the controller token file failed",
                        format!("{}: {e}", p.display()),
                    )
                })?;
                Some(s.lines().next().unwrap_or_default().trim().to_owned())
            }
            None => None,
        };
        let timeout = Duration::from_millis(c.timeout_ms.unwrap_or(5000));
        let http = Client::new(&c.url, token, timeout)
            .map_err(|e| CniError::new(INVALID_CONFIG, "invalid network configuration", e))?;
        Ok(Self { http })
    }

    /// The same controller over keep-alive connections from `pool` (the daemon).
    pub fn pooled(self, pool: std::sync::Arc<crate::http::Pool>) -> Self {
        Self {
            http: self.http.pooled(pool),
        }
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> Option<&str> {
        self.http.token()
    }

    /// `host:port` of the controller.
    pub fn authority(&self) -> &str {
        self.http.authority()
    }

    /// A client with the token itself (the `plexus` CLI).
    pub fn with_token(url: &str, token: Option<String>, timeout: Duration) -> CniResult<Self> {
        let http = Client::new(url, token, timeout)
            .map_err(|e| CniError::new(INVALID_CONFIG, "invalid controller URL", e))?;
        Ok(Self { http })
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> CniResult<(u16, Vec<u8>)> {
        let r = self
            .http
            .request(method, path, body)
            .map_err(|e| unreachable(method, path, e))?;
        Ok((r.status, r.body))
    }

    fn ok<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> CniResult<T> {
        let (st, b) = self.call(method, path, body)?;
        if st >= 400 {
            return Err(rejected(method, path, st, &b));
        }
        serde_json::from_slice(&b).map_err(|e| {
            CniError::new(
                CONTROLLER_REJECTED,
                "unexpected controller response",
                format!("{method} {path}: {e}"),
            )
        })
    }

    pub fn ready(&self) -> CniResult<()> {
        let (st, b) = self.call("GET", "/readyz", None)?;
        if st == 200 {
            Ok(())
        } else {
            Err(rejected("GET", "/readyz", st, &b))
        }
    }

    pub fn subnet(&self, id: &str) -> CniResult<Subnet> {
        self.ok("GET", &format!("/v1/subnets/{id}"), None)
    }

    pub fn create_port(&self, spec: &PortSpec) -> CniResult<Created> {
        self.send_create_port(spec)?.finish()
    }

    /// `POST /v1/ports` written; [`PendingPort::finish`] reads the answer,
    /// so the caller can create the veth while the controller allocates.
    pub fn send_create_port(&self, spec: &PortSpec) -> CniResult<PendingPort<'_>> {
        let body = serde_json::to_vec(spec).expect("PortSpec serializes");
        self.http
            .send("POST", "/v1/ports", Some(&body))
            .map(PendingPort)
            .map_err(|e| unreachable("POST", "/v1/ports", e))
    }

    pub fn port(&self, id: &str) -> CniResult<Option<Port>> {
        let path = format!("/v1/ports/{id}");
        let (st, b) = self.call("GET", &path, None)?;
        match st {
            404 => Ok(None),
            s if s >= 400 => Err(rejected("GET", &path, s, &b)),
            _ => serde_json::from_slice(&b).map(Some).map_err(|e| {
                CniError::new(
                    CONTROLLER_REJECTED,
                    "unexpected controller response",
                    e.to_string(),
                )
            }),
        }
    }

    /// `PUT /v1/ports/{id}/binding` (idempotent; 409 when bound elsewhere).
    pub fn bind_port(&self, id: &str, b: &PortBinding) -> CniResult<Port> {
        let body = serde_json::to_vec(b).expect("PortBinding serializes");
        self.ok("PUT", &format!("/v1/ports/{id}/binding"), Some(&body))
    }

    /// `DELETE /v1/ports/{id}/binding` (idempotent).
    pub fn unbind_port(&self, id: &str) -> CniResult<Port> {
        self.ok("DELETE", &format!("/v1/ports/{id}/binding"), None)
    }

    /// `GET /v1/ports/{id}/status`.
    pub fn port_status(&self, id: &str) -> CniResult<PortStatus> {
        self.ok("GET", &format!("/v1/ports/{id}/status"), None)
    }

    /// Deletes a port; a missing port is fine.
    pub fn delete_port(&self, id: &str) -> CniResult<()> {
        let path = format!("/v1/ports/{id}");
        let (st, b) = self.call("DELETE", &path, None)?;
        if st < 400 || st == 404 {
            Ok(())
        } else {
            Err(rejected("DELETE", &path, st, &b))
        }
    }

    /// Every port (all pages).
    pub fn ports(&self) -> CniResult<Vec<Port>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let path = match &token {
                Some(t) => format!("/v1/ports?limit=1000&page_token={t}"),
                None => "/v1/ports?limit=1000".to_owned(),
            };
            let page: PortList = self.ok("GET", &path, None)?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// A port creation whose answer is still to be read ([`Controller::send_create_port`]).
#[derive(Debug)]
pub struct PendingPort<'a>(InFlight<'a>);

impl PendingPort<'_> {
    pub fn finish(self) -> CniResult<Created> {
        let r = self
            .0
            .finish()
            .map_err(|e| unreachable("POST", "/v1/ports", e))?;
        if r.status == 409 && String::from_utf8_lossy(&r.body).contains("binding.iface") {
            return Ok(Created::BindingTaken);
        }
        if r.status >= 400 {
            return Err(rejected("POST", "/v1/ports", r.status, &r.body));
        }
        serde_json::from_slice(&r.body)
            .map(|p| Created::Port(Box::new(p)))
            .map_err(|e| {
                CniError::new(
                    CONTROLLER_REJECTED,
                    "unexpected controller response",
                    e.to_string(),
                )
            })
    }
}

fn unreachable(method: &str, path: &str, e: std::io::Error) -> CniError {
    CniError::new(
        CONTROLLER_UNREACHABLE,
        "controller unreachable",
        format!("{method} {path}: {e}"),
    )
}

fn rejected(method: &str, path: &str, status: u16, body: &[u8]) -> CniError {
    CniError::new(
        CONTROLLER_REJECTED,
        format!("controller rejected {method} {path} ({status})"),
        String::from_utf8_lossy(body).into_owned(),
    )
}
