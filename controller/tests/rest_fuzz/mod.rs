//! REST body fuzzing, shared by `tests/fuzz_corpus.rs` and the cargo-fuzz
//! target (`controller/fuzz/`, which includes this file by path): it needs
//! test-only helpers (tower, a temp dir), so it is not in the library.
//!
//! Invariants for every create request: never a 5xx; every 4xx is
//! `application/problem+json` whose `status` matches and which names a
//! field (`field`, or `errors[].field`) — the body itself counts as a field
//! for undecodable bodies; a rejected request writes nothing (store
//! revision and every object count unchanged); a 201 adds one object.

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, Scope, Tokens, app};
use plexus_controller::store::RedbStore;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";

/// An in-process API with a tenant, VPC, subnet, chassis, security group and
/// port, and a valid create body per resource.
pub struct Harness {
    app: axum::Router,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    /// (collection path, valid create body).
    pub templates: Vec<(&'static str, Value)>,
    /// Ids of existing objects (valid references of every kind).
    pub ids: Vec<String>,
}

/// One response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
        let mut tokens = Tokens::default();
        tokens.insert(ADMIN, Scope::Admin);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut h = Harness {
            app: app(AppState::new(store, Some(tokens))),
            rt,
            _dir: dir,
            templates: Vec::new(),
            ids: Vec::new(),
        };
        let mk = |h: &mut Harness, path: &'static str, body: Value| -> String {
            let r = h.request("POST", path, body.to_string().into_bytes());
            assert_eq!(r.status, 201, "{path}: {}", r.text);
            let id = r.body["id"].as_str().unwrap().to_string();
            h.ids.push(id.clone());
            h.templates.push((path, body));
            id
        };
        let tid = mk(&mut h, "/v1/tenants", json!({"name": "acme"}));
        let vid = mk(
            &mut h,
            "/v1/vpcs",
            json!({"tenant_id": tid, "name": "v", "cidrs": ["10.0.0.0/16"]}),
        );
        let sid = mk(
            &mut h,
            "/v1/subnets",
            json!({"vpc_id": vid, "name": "s1", "cidr": "10.0.1.0/24"}),
        );
        let cid = mk(
            &mut h,
            "/v1/chassis",
            json!({"name": "node1", "vtep_ip": "192.0.2.1",
                   "endpoint": {"openflow": "tcp:127.0.0.1:6653"}}),
        );
        let gid = mk(
            &mut h,
            "/v1/security-groups",
            json!({"tenant_id": tid, "name": "web",
                   "rules": [{"direction": "ingress", "protocol": "tcp",
                              "port_min": 80, "port_max": 80,
                              "remote_cidr": "0.0.0.0/0"}]}),
        );
        let pid = mk(
            &mut h,
            "/v1/ports",
            json!({"subnet_id": sid, "name": "vm1", "security_groups": [gid],
                   "binding": {"chassis_id": cid, "iface": "tap1"}}),
        );
        mk(
            &mut h,
            "/v1/routers",
            json!({"vpc_id": vid, "name": "r", "subnet_ids": [sid],
                   "routes": [{"destination": "0.0.0.0/0", "nexthop": "10.0.1.254"}]}),
        );
        mk(
            &mut h,
            "/v1/services",
            json!({"vpc_id": vid, "name": "web", "vip": "10.0.9.9", "port": 80,
                   "backends": [{"port_id": pid, "target_port": 8080, "weight": 3},
                                {"ip": "10.0.1.50", "target_port": 8080}],
                   "affinity": {"type": "client_ip"},
                   "health_check": {"interval_seconds": 5, "timeout_seconds": 2,
                                    "unhealthy_threshold": 3, "healthy_threshold": 2}}),
        );
        h
    }

    pub fn request(&self, method: &str, uri: &str, body: Vec<u8>) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        self.rt.block_on(async {
            let r = self.app.clone().oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            Resp {
                status,
                content_type,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            }
        })
    }

    fn status(&self) -> Value {
        let r = self.request("GET", "/v1/status", Vec::new());
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    /// POSTs `body` to `path` and checks the invariants (module docs).
    /// Returns the status.
    pub fn post_checked(&self, path: &str, body: Vec<u8>) -> u16 {
        let before = self.status();
        let shown = String::from_utf8_lossy(&body).into_owned();
        let r = self.request("POST", path, body);
        assert!(r.status < 500, "{path} {shown}: {} {}", r.status, r.text);
        let after = self.status();
        if (400..500).contains(&r.status) {
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/problem+json"),
                "{path} {shown}: {}",
                r.text
            );
            assert_eq!(r.body["status"], r.status, "{path} {shown}: {}", r.text);
            assert!(r.body["title"].is_string(), "{path} {shown}: {}", r.text);
            let named = r.body["field"].as_str().is_some_and(|f| !f.is_empty())
                || r.body["errors"].as_array().is_some_and(|e| {
                    !e.is_empty() && e.iter().all(|x| x["field"].is_string())
                })
                // An undecodable body at its root ("Malformed JSON body").
                || r.body["title"]
                    .as_str()
                    .is_some_and(|t| t.to_ascii_lowercase().contains("body"));
            assert!(named, "{path} {shown}: problem names no field: {}", r.text);
            assert_eq!(
                before, after,
                "{path} {shown}: rejected request wrote: {}",
                r.text
            );
        } else if r.status == 201 {
            let kind = path.trim_start_matches("/v1/");
            assert_eq!(
                after["objects"][kind].as_u64(),
                before["objects"][kind].as_u64().map(|n| n + 1),
                "{path} {shown}"
            );
        }
        r.status
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// A byte source; exhausted input reads as zeros.
pub struct Bytes<'a>(pub &'a [u8], pub usize);

impl Bytes<'_> {
    pub fn u8(&mut self) -> u8 {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
    pub fn done(&self) -> bool {
        self.1 >= self.0.len()
    }
}

fn value(src: &mut Bytes<'_>, ids: &[String]) -> Value {
    match src.below(20) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(65536),
        5 => json!(u64::MAX),
        6 => json!(1.5),
        7 => json!(""),
        8 => json!("x".repeat(300)),
        9 => json!([]),
        10 => json!({}),
        11 => json!(ids[src.below(ids.len())]),
        12 => json!("00000000-0000-0000-0000-000000000000"),
        13 => json!("10.0.1.0/33"),
        14 => json!("10.0.1.7"),
        15 => json!("ff:ff:ff:ff:ff:ff"),
        16 => json!(["10.0.0.0/8", "::/0"]),
        17 => json!([ids[src.below(ids.len())]]),
        18 => json!("é\u{0}"),
        _ => json!({"min": 2, "max": 1}),
    }
}

/// Applies one random mutation somewhere in `v`.
fn mutate(v: &mut Value, src: &mut Bytes<'_>, ids: &[String], depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() || depth == 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            match src.below(6) {
                0 if !keys.is_empty() => {
                    m.remove(&keys[src.below(keys.len())]);
                }
                1 => {
                    m.insert("unknown_field".into(), json!(1));
                }
                2 | 3 if !keys.is_empty() => {
                    let k = &keys[src.below(keys.len())];
                    mutate(m.get_mut(k).unwrap(), src, ids, depth + 1);
                }
                _ if !keys.is_empty() => {
                    let k = keys[src.below(keys.len())].clone();
                    m.insert(k, value(src, ids));
                }
                _ => {}
            }
        }
        Value::Array(a) if !a.is_empty() && src.below(3) != 0 => {
            let i = src.below(a.len());
            if src.below(4) == 0 {
                let dup = a[i].clone();
                a.push(dup);
            } else {
                mutate(&mut a[i], src, ids, depth + 1);
            }
        }
        other => *other = value(src, ids),
    }
}

/// Bytes pick a resource and mutate its valid create body (or, for some
/// inputs, send the raw bytes / a cut of the body); each request is checked
/// by [`Harness::post_checked`].
pub fn fuzz_bodies(h: &Harness, data: &[u8]) {
    let mut src = Bytes(data, 0);
    let mut n = 0;
    while !src.done() && n < 16 {
        n += 1;
        let (path, template) = h.templates[src.below(h.templates.len())].clone();
        let body = match src.below(8) {
            0 => {
                let rest = &data[src.1.min(data.len())..];
                let cut = rest.len().min(src.below(64));
                src.1 += cut;
                rest[..cut].to_vec()
            }
            1 => {
                let s = template.to_string();
                let cut = src.below(s.len() + 1).min(s.len());
                s.as_bytes()[..cut].to_vec()
            }
            _ => {
                let mut v = template;
                for _ in 0..1 + src.below(3) {
                    mutate(&mut v, &mut src, &h.ids, 0);
                }
                v.to_string().into_bytes()
            }
        };
        h.post_checked(path, body);
    }
}
