//! Acceptance (issue 9) through the controller: real Envoy as a sidecar in a pod netns,
//! bootstrapped by `plexus_xds::bootstrap::envoy` with only the controller's ADS address,
//! configured through the REST API; backends live in their own netns. An 80/20 split
//! gives 80±5 % over 1000 requests; a bad update (a second service on the same VIP:port,
//! which Envoy rejects) is NACKed, Envoy keeps serving the old config and
//! `GET /v1/xds/status` reports the NACK. SotW and delta.
//!
//! Network: host ⟷ pod veth (ADS, and a host route to the VIP via the pod), pod ⟷ each
//! backend veth. The VIP is on the pod's loopback; Envoy's listener binds VIP:port.
//! Needs root, `ip`, `python3` and Envoy (peers venv); SKIP otherwise (FAIL under CI).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, app};
use plexus_controller::store::RedbStore;
use plexus_controller::xds::XdsFeed;
use plexus_tests::netns::{Netns, ip, unique_name};
use plexus_tests::prereq;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes a host-side link on drop (also on failure).
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

fn envoy_bin() -> Option<PathBuf> {
    let p = std::env::var_os("PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/plexus-peers-venv".into())
        .join("bin/envoy");
    if p.exists() {
        Some(p)
    } else {
        prereq::unmet(&format!(
            "envoy not found at {} (scripts/install-peers.sh)",
            p.display()
        ));
        None
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let b = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Keep-alive HTTP/1.1 GET; returns (status, body).
fn get(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut b)?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&b[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..(end + 4 + len).min(buf.len())]);
            return Ok((status, body.trim().to_string()));
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&b[..n]);
    }
}

fn v1_share(vip: &str, n: usize) -> f64 {
    let mut s = TcpStream::connect(vip).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut v1 = 0;
    for _ in 0..n {
        let (st, body) = get(&mut s).unwrap();
        assert_eq!(st, 200, "body {body}");
        match body.as_str() {
            "v1" => v1 += 1,
            "v2" => {}
            other => panic!("unexpected body {other:?}"),
        }
    }
    v1 as f64 / n as f64
}

fn service(vpc: &str, vip: &str) -> Value {
    json!({
        "vpc_id": vpc, "name": "web", "vip": vip, "port": 80,
        "backends": [
            {"ip": "10.77.1.2", "target_port": 8080, "subset": "v1"},
            {"ip": "10.77.2.2", "target_port": 8080, "subset": "v2"}
        ],
        "traffic_policy": {
            "splits": [{"subset": "v1", "weight": 80}, {"subset": "v2", "weight": 20}],
            "retries": {"retry_on": "connect-failure,refused-stream", "num_retries": 2},
            "request_timeout_ms": 5000
        }
    })
}

async fn create_vpc(app: &axum::Router, cidr: &str) -> String {
    let (s, t) = call(
        app,
        "POST",
        "/v1/tenants",
        Some(json!({"name": format!("t-{cidr}")})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (s, v) = call(
        app,
        "POST",
        "/v1/vpcs",
        Some(json!({"tenant_id": t["id"], "name": "v", "cidrs": [cidr]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn run(delta: bool) {
    if !prereq::require_root() || !prereq::require_tools(&["ip", "python3"]) {
        return;
    }
    let Some(envoy) = envoy_bin() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pod = Netns::create(&unique_name("xdp")).unwrap();
    let bes = [
        Netns::create(&unique_name("xdb")).unwrap(),
        Netns::create(&unique_name("xdb")).unwrap(),
    ];
    let host_if = unique_name("xdh");
    ip(&[
        "link",
        "add",
        &host_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])
    .unwrap();
    let _link = HostLink(host_if.clone());
    // A /30 per run so parallel runs (SotW, delta) do not collide on the host.
    let net = if delta { 4 } else { 0 };
    let (h, p) = (
        format!("10.252.0.{}", net + 1),
        format!("10.252.0.{}", net + 2),
    );
    ip(&["addr", "add", &format!("{h}/30"), "dev", &host_if]).unwrap();
    ip(&["link", "set", &host_if, "up"]).unwrap();
    pod.ip(&["addr", "add", &format!("{p}/30"), "dev", "eth0"])
        .unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
    // The VIP (one per run) is local to the pod; the test process reaches it via the pod.
    let vip = if delta { "10.253.0.11" } else { "10.253.0.10" };
    pod.ip(&["addr", "add", &format!("{vip}/32"), "dev", "lo"])
        .unwrap();
    ip(&[
        "route",
        "add",
        &format!("{vip}/32"),
        "via",
        &p,
        "dev",
        &host_if,
    ])
    .unwrap();
    let mut servers = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    for (i, be) in bes.iter().enumerate() {
        let n = i + 1;
        let ifn = format!("be{n}");
        pod.ip(&[
            "link",
            "add",
            &ifn,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            be.name(),
        ])
        .unwrap();
        pod.ip(&["addr", "add", &format!("10.77.{n}.1/30"), "dev", &ifn])
            .unwrap();
        pod.ip(&["link", "set", &ifn, "up"]).unwrap();
        be.ip(&["addr", "add", &format!("10.77.{n}.2/30"), "dev", "eth0"])
            .unwrap();
        be.ip(&["link", "set", "eth0", "up"]).unwrap();
        let www = dir.path().join(format!("www{n}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("v{n}")).unwrap();
        let child = be
            .command("python3")
            .args([
                "-m",
                "http.server",
                "8080",
                "--bind",
                &format!("10.77.{n}.2"),
                "-d",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        servers.push(Kill(child));
    }

    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let feed = rt
        .block_on(XdsFeed::start(
            store.clone(),
            format!("{h}:0").parse().unwrap(),
        ))
        .unwrap();
    let mut state = AppState::new(store, None);
    state.xds = Some(feed.state.clone());
    let app = app(state);
    let vpc = rt.block_on(create_vpc(&app, "10.77.0.0/16"));
    let spec = service(&vpc, vip);
    let (s, b) = rt.block_on(call(&app, "POST", "/v1/services", Some(spec)));
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let node = if delta { "pod-delta" } else { "pod-sotw" };
    let boot = plexus_xds::bootstrap::envoy(&plexus_xds::bootstrap::BootstrapOptions {
        node_id: node.into(),
        cluster: "test".into(),
        xds: feed.addr.to_string(),
        delta,
        admin_port: 0,
    });
    let boot_path = dir.path().join("envoy.json");
    std::fs::write(&boot_path, boot.to_string()).unwrap();
    let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
    let mut envoy = Kill(
        pod.command(envoy.to_str().unwrap())
            .arg("-c")
            .arg(&boot_path)
            .args([
                "--base-id",
                &(std::process::id() % 60000 + if delta { 1 } else { 2 }).to_string(),
            ])
            .args(["--log-level", "warn"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let envoy_log = || std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
    let status = || rt.block_on(call(&app, "GET", "/v1/xds/status", None)).1;
    // Envoy ACKs all four types and the VIP answers.
    let t0 = Instant::now();
    loop {
        assert!(
            matches!(envoy.0.try_wait(), Ok(None)),
            "envoy exited:\n{}",
            envoy_log()
        );
        let st = status();
        let types = &st["nodes"][node]["types"];
        let acked = ["CDS", "EDS", "LDS", "RDS"]
            .iter()
            .all(|t| types[t]["last_acked_version"].is_string());
        if acked && TcpStream::connect(format!("{vip}:80")).is_ok() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no ACKs/listener: {st}\n{}",
            envoy_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both backends up (their HTTP servers start concurrently with Envoy).
    let mut seen = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    while seen.len() < 2 {
        if let Ok(mut c) = TcpStream::connect(format!("{vip}:80")) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            if let Ok((200, body)) = get(&mut c) {
                seen.insert(body);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "backends not reachable: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let share = v1_share(&format!("{vip}:80"), 1000);
    println!("{node}: v1 share {share:.3} over 1000 requests");
    assert!((0.75..=0.85).contains(&share), "v1 share {share}");
    let lds_before = status()["nodes"][node]["types"]["LDS"]["last_acked_version"].clone();

    // A bad update: another VPC's service on the same VIP:port → two listeners with one
    // address, which Envoy rejects (NACK). The old listener keeps serving.
    let vpc2 = rt.block_on(create_vpc(&app, "10.78.0.0/16"));
    let dup = service(&vpc2, vip);
    let (s, b) = rt.block_on(call(&app, "POST", "/v1/services", Some(dup)));
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let t0 = Instant::now();
    let nack = loop {
        let st = status();
        let lds = st["nodes"][node]["types"]["LDS"].clone();
        if lds["rejected"] == json!(true) {
            break lds;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no NACK reported: {st}\n{}",
            envoy_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{node}: NACK reported: {}", nack["last_nack"]["message"]);
    assert!(
        nack["last_nack"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        nack["last_acked_version"], lds_before,
        "old LDS version stays ACKed"
    );
    let share = v1_share(&format!("{vip}:80"), 200);
    assert!(
        (0.70..=0.90).contains(&share),
        "old config still serving, v1 share {share}"
    );
    drop(envoy);
    drop(servers);
    drop(feed);
}

#[test]
fn envoy_sidecar_in_netns_rest_split_and_nack_sotw() {
    run(false);
}

#[test]
fn envoy_sidecar_in_netns_rest_split_and_nack_delta() {
    run(true);
}
