//! Proxyless gRPC (grpcio's built-in xDS client, peers venv): resolves `xds:///SERVICE`
//! from our ADS server and its Health/Check RPC reaches one of our tonic-health backends.
//! Uses tests/peers/xds-client-check.py (a copy of ../shared/peers/xds-client-check.py).

mod common;
mod peers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::TestServer;
use peers::*;
use plexus_xds::model::{Backend, Service, Split};
use plexus_xds::translate::grpc_resources;
use plexus_xds::{ResourceType, Snapshot};

/// A grpc.health.v1 server on 127.0.0.1 counting the RPCs it gets.
async fn health_backend() -> (u16, Arc<AtomicU64>, tokio::sync::oneshot::Sender<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let (_reporter, svc) = tonic_health::server::health_reporter();
    let svc = tonic::service::interceptor::InterceptedService::new(svc, move |r| {
        h.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(l),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
    });
    (port, hits, tx)
}

fn check(
    python: &std::path::Path,
    ads: u16,
    service: &str,
    node: &str,
    timeout: &str,
) -> (i32, String) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/xds-client-check.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([
            "--ads",
            &format!("127.0.0.1:{ads}"),
            "--service",
            service,
            "--node-id",
            node,
            "--timeout",
            timeout,
        ])
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn grpc_xds_resolves_service_and_health_check_reaches_backend() {
    let Some(python) = require("python (peers venv)", venv().join("bin/python")) else {
        return;
    };
    let ok = std::process::Command::new(&python)
        .args(["-c", "import grpc, grpc_health.v1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok && require("grpcio in peers venv", "/nonexistent".into()).is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(TestServer::start());
    let (p1, hits1, stop1) = rt.block_on(health_backend());
    let (p2, hits2, stop2) = rt.block_on(health_backend());

    // Plain service, then a weighted split over two subsets (weighted_clusters).
    let mut a = Backend::new("127.0.0.1".parse().unwrap(), p1);
    a.subset = "v1".into();
    a.locality.region = "r1".into();
    a.locality.zone = "z1".into();
    let mut b = Backend::new("127.0.0.1".parse().unwrap(), p2);
    b.subset = "v2".into();
    b.locality.region = "r1".into();
    b.locality.zone = "z2".into();
    let plain = Service {
        name: "svc".into(),
        vip: "127.0.0.1".parse().unwrap(),
        port: 1,
        backends: vec![a.clone()],
        policy: Default::default(),
    };
    let mut split = Service {
        name: "canary".into(),
        vip: "127.0.0.1".parse().unwrap(),
        port: 2,
        backends: vec![a, b],
        policy: Default::default(),
    };
    split.policy.split = vec![
        Split {
            subset: "v1".into(),
            weight: 99,
        },
        Split {
            subset: "v2".into(),
            weight: 1,
        },
    ];
    split.policy.request_timeout = Some(std::time::Duration::from_secs(10));
    split.policy.retries = Some(plexus_xds::model::RetryPolicy {
        retry_on: "unavailable".into(),
        num_retries: 2,
        per_try_timeout: None,
    });
    let services = [plain, split];
    let snap = Snapshot::builder("g1")
        .resources(&grpc_resources(&services))
        .build()
        .unwrap();
    for node in ["grpc-1", "grpc-2"] {
        srv.cache.set_snapshot(node, snap.clone()).unwrap();
    }

    let (rc, out) = check(&python, srv.addr.port(), "svc", "grpc-1", "15");
    println!("{out}");
    assert_eq!(
        rc,
        0,
        "{out}\nstatus: {:?}",
        srv.cache.node_status("grpc-1")
    );
    assert!(
        out.contains("RESULT: RPC via xds:///svc OK: health status SERVING"),
        "{out}"
    );
    assert_eq!(hits1.load(Ordering::Relaxed), 1);
    let st = srv.cache.node_status("grpc-1").unwrap();
    for t in ResourceType::ALL {
        assert!(st.types[t.short()].acks >= 1, "{t:?} not ACKed: {st:?}");
        assert!(
            st.types[t.short()].last_nack.is_none(),
            "{t:?} NACKed: {st:?}"
        );
    }

    let before = hits1.load(Ordering::Relaxed) + hits2.load(Ordering::Relaxed);
    let (rc, out) = check(&python, srv.addr.port(), "canary", "grpc-2", "15");
    println!("{out}");
    assert_eq!(
        rc,
        0,
        "{out}\nstatus: {:?}",
        srv.cache.node_status("grpc-2")
    );
    assert!(out.contains("health status SERVING"), "{out}");
    assert_eq!(
        hits1.load(Ordering::Relaxed) + hits2.load(Ordering::Relaxed),
        before + 1
    );
    let st = srv.cache.node_status("grpc-2").unwrap();
    assert!(st.types.values().all(|t| t.last_nack.is_none()), "{st:?}");

    // Unknown service: never READY (exit 2), and nothing NACKed.
    let (rc, _) = check(&python, srv.addr.port(), "nope", "grpc-1", "3");
    assert_ne!(rc, 0);

    let _ = (stop1.send(()), stop2.send(()));
    rt.block_on(srv.stop());
}
