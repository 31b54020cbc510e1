//! Fan-out: N simulated proxies (distinct nodes, SotW or delta ADS) on one server; one
//! service change is published to every node; every proxy must get the new EDS and the
//! server must record every ACK. CI runs it with 50 proxies as a functional test (figures
//! printed, not asserted). The 2000-proxy measurement is the benchmark
//! `xds/benches/scale.rs` (server and proxies in separate processes; BENCHMARKS.md).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, service};
use plexus_xds::resource::{CLUSTER_TYPE, ENDPOINT_TYPE};
use plexus_xds::translate::envoy_resources;
use plexus_xds::{ResourceType, Snapshot};
use tokio::sync::Mutex;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn run(delta: bool) {
    let n: usize = std::env::var("XDS_SCALE_PROXIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let n_services = 100u16;
    let srv = TestServer::start().await;
    let mut svcs: Vec<_> = (0..n_services)
        .map(|i| service(&format!("s{i:03}"), i, 10000 + i * 4, 3))
        .collect();
    let names: Vec<String> = svcs.iter().map(|s| s.name.clone()).collect();
    let snap1 = Snapshot::builder("1")
        .resources(&envoy_resources(&svcs))
        .build()
        .unwrap();
    for i in 0..n {
        srv.cache
            .set_snapshot(&format!("p{i}"), snap1.clone())
            .unwrap();
    }
    let rss0 = rss_kib();
    let t_connect = Instant::now();
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut tasks = Vec::new();
    for i in 0..n {
        let node = format!("p{i}");
        let (arr, ready) = (arrivals.clone(), ready_tx.clone());
        let names = names.clone();
        if delta {
            let mut c = srv.delta(&node).await;
            tasks.push(tokio::spawn(async move {
                c.subscribe(CLUSTER_TYPE, &[], &[], "").await;
                let r = c.recv().await;
                c.ack(&r).await;
                let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                c.subscribe(ENDPOINT_TYPE, &refs, &[], "").await;
                let r = c.recv().await;
                c.ack(&r).await;
                ready.send(()).await.unwrap();
                let r = c.recv().await;
                arr.lock().await.push(Instant::now());
                assert_eq!(r.resources.len(), 1);
                c.ack(&r).await;
                c.silent(10).await;
            }));
        } else {
            let mut c = srv.sotw(&node).await;
            tasks.push(tokio::spawn(async move {
                c.send(CLUSTER_TYPE, &[], "", "").await;
                let r = c.recv().await;
                c.ack(&r, &[]).await;
                let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                c.send(ENDPOINT_TYPE, &refs, "", "").await;
                let r = c.recv().await;
                c.ack(&r, &refs).await;
                ready.send(()).await.unwrap();
                let r = c.recv().await;
                arr.lock().await.push(Instant::now());
                assert_eq!(r.type_url, ENDPOINT_TYPE);
                c.ack(&r, &refs).await;
                c.silent(10).await;
            }));
        }
    }
    for _ in 0..n {
        ready_rx.recv().await.unwrap();
    }
    let connected = t_connect.elapsed();
    let rss1 = rss_kib();
    // One service change: s000 gets a new backend set.
    svcs[0] = service("s000", 0, 20000, 4);
    let snap2 = Snapshot::builder("2")
        .resources(&envoy_resources(&svcs))
        .build()
        .unwrap();
    let want = snap2.version(ResourceType::Endpoint).to_string();
    let nodes: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let t0 = Instant::now();
    srv.cache
        .set_snapshots(nodes.iter().map(|s| s.as_str()), snap2)
        .unwrap();
    let published = t0.elapsed();
    loop {
        let st = srv.cache.status();
        let acked = st
            .values()
            .filter(|s| {
                s.types
                    .get("EDS")
                    .and_then(|t| t.last_acked_version.as_deref())
                    == Some(want.as_str())
            })
            .count();
        if acked == n || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_acked = t0.elapsed();
    let mut lat: Vec<Duration> = arrivals.lock().await.iter().map(|t| *t - t0).collect();
    assert_eq!(lat.len(), n);
    println!(
        "SCALE {} proxies={n} services={n_services}: connect+initial {connected:?}; publish to {n} nodes {published:?}; \
         receive p50 {:?} p99 {:?} max {:?}; all ACKs recorded {all_acked:?}; RSS delta {} KiB ({:.1} KiB/proxy, client+server in one process)",
        if delta { "delta" } else { "sotw" },
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / n as f64
    );
    for t in tasks {
        t.await.unwrap();
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sotw() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_delta() {
    run(true).await;
}
