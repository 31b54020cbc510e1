//! REST API tests, in process through `tower::ServiceExt::oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, Scope, Tokens, app};
use plexus_controller::store::RedbStore;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

struct T {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    etag: Option<String>,
    content_type: Option<String>,
    body: Value,
    text: String,
}

impl T {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
        let mut tokens = Tokens::default();
        tokens.insert(ADMIN, Scope::Admin);
        tokens.insert(READER, Scope::Read);
        Self {
            app: app(AppState::new(store, Some(tokens))),
            _dir: dir,
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(s) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(s))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let etag = r
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_string());
        let content_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            etag,
            content_type,
            body,
            text,
        }
    }

    async fn post(&self, uri: &str, body: Value) -> Resp {
        self.req("POST", uri, Some(ADMIN), &[], Some(body.to_string()))
            .await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.req("GET", uri, Some(READER), &[], None).await
    }

    async fn created(&self, uri: &str, body: Value) -> Value {
        let r = self.post(uri, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{uri}: {}", r.text);
        r.body
    }

    /// tenant, VPC 10.0.0.0/16, subnet 10.0.1.0/24.
    async fn base(&self) -> (String, String, String) {
        let t = self.created("/v1/tenants", json!({"name": "acme"})).await;
        let tid = t["id"].as_str().unwrap().to_string();
        let v = self
            .created(
                "/v1/vpcs",
                json!({"tenant_id": tid, "name": "v", "cidrs": ["10.0.0.0/16"]}),
            )
            .await;
        let vid = v["id"].as_str().unwrap().to_string();
        let s = self
            .created(
                "/v1/subnets",
                json!({"vpc_id": vid, "name": "s1", "cidr": "10.0.1.0/24"}),
            )
            .await;
        (tid, vid, s["id"].as_str().unwrap().to_string())
    }
}

fn assert_problem(r: &Resp, status: u16, field: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/problem+json"),
        "{}",
        r.text
    );
    assert_eq!(r.body["status"], status, "{}", r.text);
    assert!(r.body["title"].is_string(), "{}", r.text);
    assert_eq!(r.body["field"], field, "{}", r.text);
}

#[tokio::test]
async fn crud_every_resource() {
    let t = T::new();
    let (tid, vid, sid) = t.base().await;
    let c = t
        .created(
            "/v1/chassis",
            json!({"name": "node1", "vtep_ip": "192.0.2.1", "endpoint": {"openflow": "tcp:127.0.0.1:6653"}}),
        )
        .await;
    let cid = c["id"].as_str().unwrap();
    let g = t
        .created(
            "/v1/security-groups",
            json!({"tenant_id": tid, "name": "web"}),
        )
        .await;
    let gid = g["id"].as_str().unwrap();
    assert_eq!(
        g["rules"].as_array().unwrap().len(),
        2,
        "default allow-egress rules"
    );
    let p = t
        .created(
            "/v1/ports",
            json!({"subnet_id": sid, "name": "vm1", "security_groups": [gid],
                   "binding": {"chassis_id": cid, "iface": "tap1"}}),
        )
        .await;
    let pid = p["id"].as_str().unwrap();
    assert_eq!(p["ips"], json!(["10.0.1.2"]), "IPAM skips the gateway");
    assert!(
        p["mac"].as_str().unwrap().starts_with("0e:"),
        "MAC derived from the address"
    );
    assert_eq!(p["port_security"], true);
    let r = t
        .created(
            "/v1/routers",
            json!({"vpc_id": vid, "name": "r", "subnet_ids": [sid],
                   "routes": [{"destination": "0.0.0.0/0", "nexthop": "10.0.1.254"}]}),
        )
        .await;
    let svc = t
        .created(
            "/v1/services",
            json!({"vpc_id": vid, "name": "web", "vip": "10.0.9.9", "port": 80,
                   "backends": [{"port_id": pid, "target_port": 8080, "weight": 3},
                                {"ip": "10.0.1.50", "target_port": 8080}],
                   "affinity": {"type": "client_ip"},
                   "health_check": {"interval_seconds": 5, "timeout_seconds": 2,
                                    "unhealthy_threshold": 3, "healthy_threshold": 2}}),
        )
        .await;

    // Read back each one, with its ETag.
    for (path, obj) in [
        ("tenants", json!({"id": tid})),
        ("vpcs", json!({"id": vid})),
        ("subnets", json!({"id": sid})),
        ("chassis", c.clone()),
        ("security-groups", g.clone()),
        ("ports", p.clone()),
        ("routers", r.clone()),
        ("services", svc.clone()),
    ] {
        let id = obj["id"].as_str().unwrap();
        let got = t.get(&format!("/v1/{path}/{id}")).await;
        assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.text);
        assert_eq!(got.body["id"], id);
        assert_eq!(
            got.etag,
            Some(format!("\"{}\"", got.body["revision"])),
            "{path}"
        );
        let list = t.get(&format!("/v1/{path}")).await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{path}");
    }
    let v = t.get(&format!("/v1/vpcs/{vid}")).await;
    assert_eq!(v.body["vni"], 1000, "VNI assigned");

    // Replace: a port keeps its address and MAC when ips/mac are omitted.
    let u = t
        .req(
            "PUT",
            &format!("/v1/ports/{pid}"),
            Some(ADMIN),
            &[],
            Some(
                json!({"subnet_id": sid, "name": "vm1-renamed", "security_groups": [gid]})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.body["ips"], p["ips"]);
    assert_eq!(u.body["mac"], p["mac"]);
    assert_eq!(u.body["name"], "vm1-renamed");

    // Deletes are refused while referenced, then succeed in dependency order.
    let d = t
        .req(
            "DELETE",
            &format!("/v1/ports/{pid}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_problem(&d, 409, "id");
    for (path, id) in [
        ("services", svc["id"].as_str().unwrap()),
        ("ports", pid),
        ("routers", r["id"].as_str().unwrap()),
        ("security-groups", gid),
        ("chassis", cid),
        ("subnets", &sid),
        ("vpcs", &vid),
        ("tenants", &tid),
    ] {
        let d = t
            .req(
                "DELETE",
                &format!("/v1/{path}/{id}"),
                Some(ADMIN),
                &[],
                None,
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{path}: {}", d.text);
        let g = t.get(&format!("/v1/{path}/{id}")).await;
        assert_eq!(g.status, StatusCode::NOT_FOUND);
        assert_eq!(g.content_type.as_deref(), Some("application/problem+json"));
    }
    let st = t.get("/v1/status").await;
    assert_eq!(st.body["objects"]["ports"], 0);
}

/// A port without a MAC gets one derived from its VPC and address, so a port
/// that reuses a released address also reuses its MAC (neighbours' ARP
/// entries stay right), while the same address in another VPC gets another
/// MAC; when another port was given the derived MAC, a generated one instead;
/// a MAC given or kept is not rederived.
#[tokio::test]
async fn port_mac_follows_its_address() {
    let t = T::new();
    let (tid, _, sid) = t.base().await;
    let del = |id: &Value| {
        let t = &t;
        let id = id.as_str().unwrap().to_owned();
        async move {
            let d = t
                .req("DELETE", &format!("/v1/ports/{id}"), Some(ADMIN), &[], None)
                .await;
            assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
        }
    };
    let port = |body: Value| t.created("/v1/ports", body);
    let a = port(json!({"subnet_id": sid})).await;
    assert_eq!(a["ips"], json!(["10.0.1.2"]));
    let m2 = a["mac"].as_str().unwrap().to_owned();
    assert!(m2.starts_with("0e:"), "derived MAC: {m2}");
    del(&a["id"]).await;
    let b = port(json!({"subnet_id": sid})).await;
    assert_eq!(b["ips"], json!(["10.0.1.2"]), "lowest free address reused");
    assert_eq!(b["mac"], m2.as_str(), "and with it the MAC");
    assert_ne!(b["id"], a["id"]);

    // The same address in another VPC (overlapping CIDR): another MAC.
    let v2 = t
        .created(
            "/v1/vpcs",
            json!({"tenant_id": tid, "name": "v2", "cidrs": ["10.0.0.0/16"]}),
        )
        .await;
    let s2 = t
        .created(
            "/v1/subnets",
            json!({"vpc_id": v2["id"], "name": "s1", "cidr": "10.0.1.0/24"}),
        )
        .await;
    let o = port(json!({"subnet_id": s2["id"]})).await;
    assert_eq!(o["ips"], json!(["10.0.1.2"]));
    assert!(o["mac"].as_str().unwrap().starts_with("0e:"));
    assert_ne!(o["mac"], m2.as_str(), "MACs differ across VPCs");

    // The derived MAC of 10.0.1.3, given to a port holding another address:
    // the port that gets 10.0.1.3 next gets a generated MAC.
    let c0 = port(json!({"subnet_id": sid})).await;
    assert_eq!(c0["ips"], json!(["10.0.1.3"]));
    let m3 = c0["mac"].as_str().unwrap().to_owned();
    del(&c0["id"]).await;
    let c = port(json!({"subnet_id": sid, "mac": m3.to_uppercase(), "ips": ["10.0.1.9"]})).await;
    assert_eq!(c["mac"], m3.as_str());
    let d = port(json!({"subnet_id": sid})).await;
    assert_eq!(d["ips"], json!(["10.0.1.3"]));
    let md = d["mac"].as_str().unwrap();
    assert!(
        md.starts_with("02:"),
        "derived MAC taken: generated, got {md}"
    );
    // Kept across an update that changes the address.
    let u = t
        .req(
            "PUT",
            &format!("/v1/ports/{}", d["id"].as_str().unwrap()),
            Some(ADMIN),
            &[],
            Some(json!({"subnet_id": sid, "ips": ["10.0.1.20"]}).to_string()),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.body["ips"], json!(["10.0.1.20"]));
    assert_eq!(u.body["mac"], d["mac"]);
    // A given MAC clashing with a derived one is refused like any duplicate.
    let r = t
        .post("/v1/ports", json!({"subnet_id": sid, "mac": m2}))
        .await;
    assert_problem(&r, 409, "mac");
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let t = T::new();
    let (tid, vid, sid) = t.base().await;
    // Unknown field, at the top level and nested.
    let r = t
        .post("/v1/tenants", json!({"name": "x", "colour": "red"}))
        .await;
    assert_problem(&r, 400, "colour");
    let r = t
        .post(
            "/v1/security-groups",
            json!({"tenant_id": tid, "name": "g", "rules": [{"direction": "ingress", "prot": "tcp"}]}),
        )
        .await;
    assert_problem(&r, 400, "rules[0].prot");
    let r = t.post("/v1/tenants", json!({})).await;
    assert_problem(&r, 400, "name");
    let r = t
        .req(
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            &[],
            Some("{not json".into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Invalid CIDRs.
    let r = t
        .post(
            "/v1/vpcs",
            json!({"tenant_id": tid, "name": "v", "cidrs": ["10.0.0.0/16", "10.300.0.0/16"]}),
        )
        .await;
    assert_problem(&r, 422, "cidrs[1]");
    // Overlapping subnets within a VPC; outside the VPC.
    let r = t
        .post(
            "/v1/subnets",
            json!({"vpc_id": vid, "name": "s2", "cidr": "10.0.1.128/25"}),
        )
        .await;
    assert_problem(&r, 422, "cidr");
    assert!(r.body["detail"].as_str().unwrap().contains("overlaps"));
    let r = t
        .post(
            "/v1/subnets",
            json!({"vpc_id": vid, "name": "s2", "cidr": "192.168.0.0/24"}),
        )
        .await;
    assert_problem(&r, 422, "cidr");
    // Overlap across VPCs and tenants is fine.
    let t2 = t.created("/v1/tenants", json!({"name": "other"})).await;
    let v2 = t
        .created(
            "/v1/vpcs",
            json!({"tenant_id": t2["id"], "name": "v", "cidrs": ["10.0.0.0/16"]}),
        )
        .await;
    let s2 = t
        .created(
            "/v1/subnets",
            json!({"vpc_id": v2["id"], "name": "s1", "cidr": "10.0.1.0/24"}),
        )
        .await;
    assert_ne!(v2["vni"], json!(1000));
    // Dangling references.
    let r = t
        .post(
            "/v1/subnets",
            json!({"vpc_id": "nope", "name": "s", "cidr": "10.0.2.0/24"}),
        )
        .await;
    assert_problem(&r, 422, "vpc_id");
    let r = t
        .post(
            "/v1/ports",
            json!({"subnet_id": sid, "security_groups": ["nope"]}),
        )
        .await;
    assert_problem(&r, 422, "security_groups[0]");
    // IP outside the subnet; gateway; duplicate IP; duplicate MAC.
    let r = t
        .post("/v1/ports", json!({"subnet_id": sid, "ips": ["10.0.2.5"]}))
        .await;
    assert_problem(&r, 422, "ips[0]");
    let r = t
        .post("/v1/ports", json!({"subnet_id": sid, "ips": ["10.0.1.1"]}))
        .await;
    assert_problem(&r, 409, "ips[0]");
    t.created(
        "/v1/ports",
        json!({"subnet_id": sid, "ips": ["10.0.1.10"], "mac": "02:00:00:00:00:0a"}),
    )
    .await;
    let r = t
        .post("/v1/ports", json!({"subnet_id": sid, "ips": ["10.0.1.10"]}))
        .await;
    assert_problem(&r, 409, "ips[0]");
    let r = t
        .post(
            "/v1/ports",
            json!({"subnet_id": sid, "mac": "02:00:00:00:00:0A"}),
        )
        .await;
    assert_problem(&r, 409, "mac");
    // The same MAC and IP in the other (overlapping) VPC are fine.
    t.created(
        "/v1/ports",
        json!({"subnet_id": s2["id"], "ips": ["10.0.1.10"], "mac": "02:00:00:00:00:0a"}),
    )
    .await;
    // Nothing half-written: the failed ports allocated nothing.
    let ports = t.get("/v1/ports").await;
    assert_eq!(ports.body["items"].as_array().unwrap().len(), 2);
    let p = t.created("/v1/ports", json!({"subnet_id": sid})).await;
    assert_eq!(p["ips"], json!(["10.0.1.2"]));
    // Bad query.
    let r = t.get("/v1/ports?limit=0").await;
    assert_problem(&r, 400, "limit");
}

#[tokio::test]
async fn auth_401_and_403() {
    let t = T::new();
    let r = t.req("GET", "/v1/tenants", None, &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.content_type.as_deref(), Some("application/problem+json"));
    let r = t
        .req(
            "GET",
            "/v1/tenants",
            Some("wrong-token-0123456789"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t
        .req(
            "POST",
            "/v1/tenants",
            Some(READER),
            &[],
            Some(json!({"name": "x"}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.body["status"], 403);
    let r = t.req("GET", "/v1/tenants", Some(READER), &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = t.req("GET", open, None, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn etag_if_match_conflicts_412() {
    let t = T::new();
    let c = t.post("/v1/tenants", json!({"name": "a"})).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    let tag = c.etag.clone().unwrap();
    let uri = format!("/v1/tenants/{id}");
    let put = |name: &'static str, tag: String| {
        let t = &t;
        let uri = uri.clone();
        async move {
            t.req(
                "PUT",
                &uri,
                Some(ADMIN),
                &[("if-match", tag.as_str())],
                Some(json!({"name": name}).to_string()),
            )
            .await
        }
    };
    let r1 = put("b", tag.clone()).await;
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.text);
    let new_tag = r1.etag.clone().unwrap();
    assert_ne!(new_tag, tag);
    // A second writer with the stale ETag loses.
    let r2 = put("c", tag.clone()).await;
    assert_problem(&r2, 412, "If-Match");
    assert_eq!(t.get(&uri).await.body["name"], "b");
    let d = t
        .req("DELETE", &uri, Some(ADMIN), &[("if-match", &tag)], None)
        .await;
    assert_problem(&d, 412, "If-Match");
    let r3 = put("d", "*".into()).await;
    assert_eq!(r3.status, StatusCode::OK);
    let d = t
        .req(
            "DELETE",
            &uri,
            Some(ADMIN),
            &[("if-match", r3.etag.as_deref().unwrap())],
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn pagination_walks_every_item_once() {
    let t = T::new();
    let mut ids = Vec::new();
    for i in 0..25 {
        let r = t
            .created("/v1/tenants", json!({"name": format!("t{i}")}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &token {
            Some(tk) => format!("/v1/tenants?limit=10&page_token={tk}"),
            None => "/v1/tenants?limit=10".into(),
        };
        let r = t.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK);
        pages += 1;
        for it in r.body["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_string());
        }
        match r.body["next_page_token"].as_str() {
            Some(tk) => token = Some(tk.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn concurrent_port_creates_get_unique_addresses() {
    let t = T::new();
    let (_, _, sid) = t.base().await;
    let app = t.app.clone();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let app = app.clone();
        let sid = sid.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .method("POST")
                .uri("/v1/ports")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::from(json!({"subnet_id": sid}).to_string()))
                .unwrap();
            let r = app.oneshot(req).await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let b = r.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&b).unwrap();
            v["ips"][0].as_str().unwrap().to_string()
        }));
    }
    let mut ips = std::collections::HashSet::new();
    for task in tasks {
        assert!(ips.insert(task.await.unwrap()));
    }
    assert_eq!(ips.len(), 40);
    assert!(!ips.contains("10.0.1.1"));
}

#[tokio::test]
async fn openapi_and_metrics() {
    let t = T::new();
    let r = t.req("GET", "/openapi.json", None, &[], None).await;
    assert_eq!(r.body["openapi"].as_str().map(|s| &s[..2]), Some("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/v1/tenants",
        "/v1/vpcs/{id}",
        "/v1/subnets",
        "/v1/routers",
        "/v1/ports/{id}",
        "/v1/security-groups",
        "/v1/services",
        "/v1/chassis/{id}",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let schemas = r.body["components"]["schemas"].as_object().unwrap();
    for s in ["PortSpec", "Problem", "SecurityGroupRule", "ServiceSpec"] {
        assert!(schemas.contains_key(s), "{s} missing");
    }
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    t.created("/v1/tenants", json!({"name": "a"})).await;
    let m = t.req("GET", "/metrics", None, &[], None).await;
    assert!(
        m.text
            .contains("plexus_controller_objects{kind=\"tenants\"} 1"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("plexus_controller_http_requests_total{"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains("plexus_controller_store_revision 1"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn durable_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let mut tokens = Tokens::default();
    tokens.insert(ADMIN, Scope::Admin);
    let id;
    {
        let t = T {
            app: app(AppState::new(
                RedbStore::open(&path).unwrap(),
                Some(tokens.clone()),
            )),
            _dir: tempfile::tempdir().unwrap(),
        };
        let (_, _, sid) = t.base().await;
        let p = t.created("/v1/ports", json!({"subnet_id": sid})).await;
        id = p["id"].as_str().unwrap().to_string();
        assert_eq!(p["ips"], json!(["10.0.1.2"]));
    }
    let t = T {
        app: app(AppState::new(RedbStore::open(&path).unwrap(), Some(tokens))),
        _dir: tempfile::tempdir().unwrap(),
    };
    let r = t
        .req("GET", &format!("/v1/ports/{id}"), Some(ADMIN), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let sid = r.body["subnet_id"].as_str().unwrap().to_string();
    let p = t.created("/v1/ports", json!({"subnet_id": sid})).await;
    assert_eq!(
        p["ips"],
        json!(["10.0.1.3"]),
        "IPAM state survived the restart"
    );
}

/// A token file holding only `sha256:HEX SCOPE`: the token authenticates with its scope,
/// the stored hash itself does not; plain and hashed entries work side by side.
#[tokio::test]
async fn hashed_tokens_from_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!(
            "# hashed admin, plain reader\n{} admin\n{READER} read\n",
            plexus_controller::api::hash_token(ADMIN)
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(ADMIN), "the admin token is stored in clear");
    let tokens = Tokens::load(&file).unwrap();
    let t = T {
        app: app(AppState::new(
            RedbStore::open(&dir.path().join("db.redb")).unwrap(),
            Some(tokens),
        )),
        _dir: tempfile::tempdir().unwrap(),
    };
    let body = Some(json!({"name": "hashed"}).to_string());
    let r = t
        .req("POST", "/v1/tenants", Some(ADMIN), &[], body.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let stored = plexus_controller::api::hash_token(ADMIN);
    for bad in [stored.as_str(), &stored[7..]] {
        let r = t.req("GET", "/v1/tenants", Some(bad), &[], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let r = t.req("POST", "/v1/tenants", Some(READER), &[], body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = t.req("GET", "/v1/tenants", Some(READER), &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
}

const RED: &str = "red-tenant-token-0123456789";
const BLUE: &str = "blue-tenant-token-0123456789";

/// Two tenants' objects, then an app whose token file adds one `tenant:<id>` token each.
/// With `audit`, changes are logged to `audit.jsonl` in the returned directory.
async fn two_tenants(audit: bool) -> (T, Vec<(String, String, String, String)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let mut tokens = Tokens::default();
    tokens.insert(ADMIN, Scope::Admin);
    let setup = T {
        app: app(AppState::new(store.clone(), Some(tokens))),
        _dir: tempfile::tempdir().unwrap(),
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (tid, vid, sid) = setup.base().await;
        let g = setup
            .created(
                "/v1/security-groups",
                json!({"tenant_id": tid, "name": "web"}),
            )
            .await;
        let p = setup
            .created(
                "/v1/ports",
                json!({"subnet_id": sid, "name": "vm", "security_groups": [g["id"]]}),
            )
            .await;
        ids.push((
            tid,
            vid,
            g["id"].as_str().unwrap().to_string(),
            p["id"].as_str().unwrap().to_string(),
        ));
    }
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!(
            "{} admin\n{READER} read\n{} tenant:{} red-ops\n{BLUE} tenant:{}\n",
            plexus_controller::api::hash_token(ADMIN),
            plexus_controller::api::hash_token(RED),
            ids[0].0,
            ids[1].0
        ),
    )
    .unwrap();
    let mut st = AppState::new(store, Some(Tokens::load(&file).unwrap()));
    if audit {
        let log = plexus_controller::api::AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        st.audit = Some(std::sync::Arc::new(log));
    }
    let t = T {
        app: app(st),
        _dir: tempfile::tempdir().unwrap(),
    };
    (t, ids, dir)
}

/// `tenant:<id>` tokens read and write only their tenant's objects; lists are filtered;
/// everything else is a 403 problem.
#[tokio::test]
async fn tenant_scoped_tokens() {
    let (t, ids, _dir) = two_tenants(false).await;
    let (red, blue) = (&ids[0], &ids[1]);
    let forbidden = |r: &Resp, what: &str| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.text);
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        assert_eq!(r.body["status"], 403, "{what}");
    };
    // Own objects: readable.
    for (kind, id) in [
        ("tenants", &red.0),
        ("vpcs", &red.1),
        ("security-groups", &red.2),
        ("ports", &red.3),
    ] {
        let r = t
            .req("GET", &format!("/v1/{kind}/{id}"), Some(RED), &[], None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{kind}: {}", r.text);
        // The other tenant's: 403, both ways.
        let other = match kind {
            "tenants" => &blue.0,
            "vpcs" => &blue.1,
            "security-groups" => &blue.2,
            _ => &blue.3,
        };
        let r = t
            .req("GET", &format!("/v1/{kind}/{other}"), Some(RED), &[], None)
            .await;
        forbidden(&r, kind);
        let r = t
            .req("GET", &format!("/v1/{kind}/{id}"), Some(BLUE), &[], None)
            .await;
        forbidden(&r, kind);
        // Lists: only the tenant's own.
        let r = t
            .req("GET", &format!("/v1/{kind}"), Some(RED), &[], None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let got: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, vec![id.as_str()], "{kind} list for red");
        // Admin and reader still see both.
        let r = t
            .req("GET", &format!("/v1/{kind}"), Some(READER), &[], None)
            .await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{kind}");
    }
    // Pagination of a filtered list: one item per page, then no token.
    let r = t
        .req("GET", "/v1/ports?limit=1", Some(BLUE), &[], None)
        .await;
    assert_eq!(r.body["items"][0]["id"], blue.3.as_str(), "{}", r.text);
    assert!(r.body.get("next_page_token").is_none(), "{}", r.text);

    // Writes inside the tenant work.
    let r = t
        .req(
            "POST",
            "/v1/security-groups",
            Some(RED),
            &[],
            Some(json!({"tenant_id": red.0, "name": "db"}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = t
        .req(
            "POST",
            "/v1/vpcs",
            Some(RED),
            &[],
            Some(json!({"tenant_id": red.0, "name": "v2", "cidrs": ["10.9.0.0/16"]}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Creating in, moving into or referring to another tenant: 403, nothing written.
    let before = t
        .req("GET", "/v1/status", Some(ADMIN), &[], None)
        .await
        .body["revision"]
        .clone();
    for (uri, body) in [
        (
            "/v1/security-groups",
            json!({"tenant_id": blue.0, "name": "x"}),
        ),
        (
            "/v1/vpcs",
            json!({"tenant_id": blue.0, "name": "x", "cidrs": ["10.8.0.0/16"]}),
        ),
        ("/v1/tenants", json!({"name": "new"})),
        (
            "/v1/security-groups",
            json!({"tenant_id": red.0, "name": "x",
                   "rules": [{"direction": "ingress", "remote_group_id": blue.2}]}),
        ),
    ] {
        let r = t
            .req("POST", uri, Some(RED), &[], Some(body.to_string()))
            .await;
        forbidden(&r, uri);
    }
    let r = t
        .req(
            "PUT",
            &format!("/v1/ports/{}", red.3),
            Some(RED),
            &[],
            Some(
                json!({"subnet_id": t.get(&format!("/v1/ports/{}", red.3)).await.body["subnet_id"],
                        "name": "vm", "security_groups": [blue.2]})
                .to_string(),
            ),
        )
        .await;
    forbidden(&r, "port with the other tenant's group");
    let r = t
        .req(
            "DELETE",
            &format!("/v1/ports/{}", blue.3),
            Some(RED),
            &[],
            None,
        )
        .await;
    forbidden(&r, "delete the other tenant's port");
    let after = t
        .req("GET", "/v1/status", Some(ADMIN), &[], None)
        .await
        .body["revision"]
        .clone();
    assert_eq!(before, after, "a refused write changed the store");
    // Controller-wide endpoints and chassis are not per tenant.
    for uri in ["/v1/status", "/v1/chassis"] {
        let r = t.req("GET", uri, Some(RED), &[], None).await;
        forbidden(&r, uri);
    }
    let r = t
        .req(
            "POST",
            "/v1/chassis",
            Some(RED),
            &[],
            Some(json!({"name": "n", "vtep_ip": "192.0.2.9"}).to_string()),
        )
        .await;
    forbidden(&r, "chassis create");
    let r = t
        .req(
            "POST",
            "/v1/chassis",
            Some(READER),
            &[],
            Some(json!({"name": "n", "vtep_ip": "192.0.2.9"}).to_string()),
        )
        .await;
    forbidden(&r, "chassis create by a reader");
    // Own port deleted by its tenant.
    let r = t
        .req(
            "DELETE",
            &format!("/v1/ports/{}", red.3),
            Some(RED),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

/// Every change request is one JSON line: who (token label), method, path, object, status.
#[tokio::test]
async fn audit_log_records_changes() {
    let (t, ids, dir) = two_tenants(true).await;
    let path = dir.path().join("audit.jsonl");
    let red = &ids[0];
    let r = t
        .req(
            "POST",
            "/v1/security-groups",
            Some(RED),
            &[],
            Some(json!({"tenant_id": red.0, "name": "db"}).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let created = r.body["id"].as_str().unwrap().to_string();
    let r = t
        .req(
            "DELETE",
            &format!("/v1/ports/{}", ids[1].3),
            Some(RED),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .req(
            "DELETE",
            &format!("/v1/security-groups/{created}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .req(
            "POST",
            "/v1/tenants",
            Some("wrong-token-0123456789"),
            &[],
            Some("{}".into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Reads are not changes.
    let _ = t.get("/v1/ports").await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(RED) && !text.contains(ADMIN),
        "a token in the log"
    );
    let lines: Vec<plexus_controller::api::AuditEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    /// (token, method, kind, object, status, result)
    type Line<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let got: Vec<Line<'_>> = lines
        .iter()
        .map(|e| {
            (
                e.token.as_str(),
                e.method.as_str(),
                e.kind.as_deref(),
                e.object.as_deref(),
                e.status,
                e.result.as_str(),
            )
        })
        .collect();
    let admin_label = &plexus_controller::api::hash_token(ADMIN)[..19];
    assert_eq!(
        got,
        vec![
            (
                "red-ops",
                "POST",
                Some("security-groups"),
                Some(created.as_str()),
                201,
                "ok"
            ),
            (
                "red-ops",
                "DELETE",
                Some("ports"),
                Some(ids[1].3.as_str()),
                403,
                "denied"
            ),
            (
                admin_label,
                "DELETE",
                Some("security-groups"),
                Some(created.as_str()),
                204,
                "ok"
            ),
            ("invalid", "POST", Some("tenants"), None, 401, "denied"),
        ]
    );
    assert_eq!(lines[1].path, format!("/v1/ports/{}", ids[1].3));
    for e in &lines {
        assert!(e.time.len() == 24 && e.time.ends_with('Z'), "{}", e.time);
    }
}

#[tokio::test]
async fn port_binding_and_status() {
    let t = T::new();
    let (_, _, sid) = t.base().await;
    let c = t
        .created(
            "/v1/chassis",
            json!({"name": "node1", "vtep_ip": "192.0.2.1"}),
        )
        .await;
    let cid = c["id"].as_str().unwrap().to_string();
    let p = t.created("/v1/ports", json!({"subnet_id": sid})).await;
    let pid = p["id"].as_str().unwrap().to_string();
    let q = t.created("/v1/ports", json!({"subnet_id": sid})).await;
    let qid = q["id"].as_str().unwrap().to_string();
    let put = |id: &str, body: Value, tok: &'static str| {
        let uri = format!("/v1/ports/{id}/binding");
        let t = &t;
        async move {
            t.req("PUT", &uri, Some(tok), &[], Some(body.to_string()))
                .await
        }
    };

    let st = t.get(&format!("/v1/ports/{pid}/status")).await;
    assert_eq!(st.status, StatusCode::OK, "{}", st.text);
    assert_eq!(st.body["state"], "unbound");
    assert_eq!(st.body["chassis_connected"], false);

    // Bind: 200 with the binding; the same binding again is a no-op.
    let b = json!({"chassis_id": cid, "iface": "vm0"});
    let r = put(&pid, b.clone(), ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["binding"]["iface"], "vm0");
    let rev = r.body["revision"].as_u64().unwrap();
    let r = put(&pid, b.clone(), ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["revision"].as_u64().unwrap(), rev, "idempotent");
    // No switch connected: bound but pending.
    let st = t.get(&format!("/v1/ports/{pid}/status")).await;
    assert_eq!(st.body["state"], "pending");
    assert_eq!(st.body["binding"]["chassis_id"], cid.as_str());
    assert!(st.body.get("ofport").is_none(), "{}", st.text);

    // Errors: bound elsewhere (409 binding), interface taken by another port
    // (409 binding.iface), unknown chassis (422), bad body (400), empty iface
    // (422 iface), read-only token (403), unknown port (404).
    let r = put(&pid, json!({"chassis_id": cid, "iface": "vm1"}), ADMIN).await;
    assert_problem(&r, 409, "binding");
    let r = put(&qid, b.clone(), ADMIN).await;
    assert_problem(&r, 409, "binding.iface");
    let r = put(&qid, json!({"chassis_id": "nope", "iface": "vm2"}), ADMIN).await;
    assert_problem(&r, 422, "binding.chassis_id");
    let r = put(&qid, json!({"chassis_id": cid, "ifname": "x"}), ADMIN).await;
    assert_problem(&r, 400, "ifname");
    let r = put(&qid, json!({"chassis_id": cid, "iface": ""}), ADMIN).await;
    assert_problem(&r, 422, "iface");
    let r = put(&qid, json!({"chassis_id": cid, "iface": "vm2"}), READER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = put("nope", b.clone(), ADMIN).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = t
        .req(
            "PUT",
            &format!("/v1/ports/{qid}/binding"),
            Some(ADMIN),
            &[("If-Match", "\"1\"")],
            Some(json!({"chassis_id": cid, "iface": "vm2"}).to_string()),
        )
        .await;
    assert_problem(&r, 412, "If-Match");
    // The chassis cannot be deleted while a port is bound to it.
    let r = t
        .req(
            "DELETE",
            &format!("/v1/chassis/{cid}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    // Unbind (idempotent), then the interface is free for the other port.
    for _ in 0..2 {
        let r = t
            .req(
                "DELETE",
                &format!("/v1/ports/{pid}/binding"),
                Some(ADMIN),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.body.get("binding").is_none(), "{}", r.text);
    }
    assert_eq!(
        t.get(&format!("/v1/ports/{pid}/status")).await.body["state"],
        "unbound"
    );
    let r = put(&qid, b, ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Addresses and MAC are untouched by (un)binding.
    let p2 = t.get(&format!("/v1/ports/{pid}")).await.body;
    assert_eq!(p2["ips"], p["ips"]);
    assert_eq!(p2["mac"], p["mac"]);
    let doc = t.get("/openapi.json").await.body;
    assert!(doc["paths"]["/v1/ports/{id}/binding"]["put"].is_object());
    assert!(doc["paths"]["/v1/ports/{id}/status"]["get"].is_object());
}

/// A service's VIP:port/protocol is unique within its VPC (checked through the VIP
/// index): taken in the same VPC → 409 naming `vip`; free in another VPC, on another
/// port or protocol; freed by moving the service to another VIP and by deleting it.
#[tokio::test]
async fn service_vips_are_unique_per_vpc() {
    let t = T::new();
    let (tid, vid, _) = t.base().await;
    let v2 = t
        .created(
            "/v1/vpcs",
            json!({"tenant_id": tid, "name": "v2", "cidrs": ["10.0.0.0/16"]}),
        )
        .await;
    let vid2 = v2["id"].as_str().unwrap().to_string();
    let svc = |vpc: &str, vip: &str, port: u16, proto: &str| {
        json!({"vpc_id": vpc, "name": "s", "vip": vip, "port": port, "protocol": proto,
               "backends": [{"ip": "10.0.1.50", "target_port": 8080}]})
    };
    let a = t
        .created("/v1/services", svc(&vid, "10.0.9.9", 80, "tcp"))
        .await;
    let aid = a["id"].as_str().unwrap().to_string();
    let dup = t
        .post("/v1/services", svc(&vid, "10.0.9.9", 80, "tcp"))
        .await;
    assert_problem(&dup, 409, "vip");
    assert!(dup.text.contains(&aid), "{}", dup.text);
    t.created("/v1/services", svc(&vid2, "10.0.9.9", 80, "tcp"))
        .await;
    t.created("/v1/services", svc(&vid, "10.0.9.9", 81, "tcp"))
        .await;
    t.created("/v1/services", svc(&vid, "10.0.9.9", 80, "udp"))
        .await;
    // Replacing a service with its own VIP is not a conflict; moving it frees the old one.
    let path = format!("/v1/services/{aid}");
    let put = |body: Value| t.req("PUT", &path, Some(ADMIN), &[], Some(body.to_string()));
    let r = put(svc(&vid, "10.0.9.9", 80, "tcp")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = put(svc(&vid, "10.0.9.10", 80, "tcp")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = t
        .created("/v1/services", svc(&vid, "10.0.9.9", 80, "tcp"))
        .await;
    let dup = t
        .post("/v1/services", svc(&vid, "10.0.9.10", 80, "tcp"))
        .await;
    assert_problem(&dup, 409, "vip");
    // Deleting frees the VIP.
    let bid = b["id"].as_str().unwrap();
    let d = t
        .req(
            "DELETE",
            &format!("/v1/services/{bid}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert!(d.status.is_success(), "{}", d.text);
    t.created("/v1/services", svc(&vid, "10.0.9.9", 80, "tcp"))
        .await;
}
