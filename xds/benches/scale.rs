//! xDS fan-out benchmark: N simulated proxies (each its own HTTP/2 connection and ADS
//! stream, SotW or delta, subscribed to CDS/EDS/LDS/RDS of 100 services) on one server.
//! Each round changes one service's endpoints; we measure, per proxy, the time from the
//! publication (`SnapshotCache::set_snapshots`) to the proxy sending its EDS ACK, and the
//! time until the server has recorded all N ACKs. The proxies run in a child process
//! (this binary re-executed), so the server's RSS per proxy is measured on its own.
//!
//! ```text
//! XDS_SCALE_PROXIES=2000 XDS_SCALE_MODE=both XDS_SCALE_ROUNDS=10 \
//!     cargo bench -p plexus-xds --bench scale
//! ```
//! Server runtime: tokio multi-thread, 2 workers (`XDS_SCALE_WORKERS`); the clients get
//! their own 2-worker runtime in the child process; both share this machine's cores.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexus_xds::envoy_types::pb::envoy::config::core::v3::Node;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest,
};
use plexus_xds::model::{Backend, Service};
use plexus_xds::resource::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use plexus_xds::translate::envoy_resources;
use plexus_xds::{ResourceType, Snapshot, SnapshotCache, XdsServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const SERVICES: u16 = 100;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// User+system CPU time of this process in clock ticks (usually 10 ms).
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ")": state is index 0, utime is field 14 overall → index 11.
    let g = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    g(11) + g(12)
}

fn service(i: u16, generation: u16) -> Service {
    Service {
        name: format!("s{i:03}"),
        vip: format!("10.96.{}.{}", i / 250, i % 250 + 1)
            .parse()
            .unwrap(),
        port: 80,
        backends: (0..3u16)
            .map(|b| {
                Backend::new(
                    format!("10.1.{}.{}", i % 250, b + 1).parse().unwrap(),
                    8000 + generation,
                )
            })
            .collect(),
        policy: Default::default(),
    }
}

fn snapshot(gens: &[u16], label: &str) -> Snapshot {
    let svcs: Vec<Service> = (0..SERVICES)
        .map(|i| service(i, gens[i as usize]))
        .collect();
    Snapshot::builder(label)
        .resources(&envoy_resources(&svcs))
        .build()
        .unwrap()
}

fn pct(v: &[u64], p: f64) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

// ---------------------------------------------------------------- server side

fn server_main() {
    let n: usize = env("XDS_SCALE_PROXIES", 2000);
    let rounds: usize = env("XDS_SCALE_ROUNDS", 10);
    let workers: usize = env("XDS_SCALE_WORKERS", 2);
    let mode = std::env::var("XDS_SCALE_MODE").unwrap_or_else(|_| "both".into());
    let modes: Vec<&str> = match mode.as_str() {
        "sotw" => vec!["sotw"],
        "delta" => vec!["delta"],
        _ => vec!["sotw", "delta"],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    for m in modes {
        rt.block_on(run_mode(m, n, rounds, workers));
    }
}

async fn run_mode(mode: &str, n: usize, rounds: usize, workers: usize) {
    let rss_start = proc_status("VmRSS:");
    let cache = SnapshotCache::new();
    let server = XdsServer::new(cache.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = server.clone();
    let task = tokio::spawn(async move {
        let _ = srv
            .serve_with_listener(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let mut gens = vec![0u16; SERVICES as usize];
    let nodes: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    cache
        .set_snapshots(nodes.iter().map(|s| s.as_str()), snapshot(&gens, "0"))
        .unwrap();
    let rss0 = proc_status("VmRSS:");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("XDS_SCALE_ROLE", "client")
        .env("XDS_SCALE_ADDR", addr.to_string())
        .env("XDS_SCALE_PROXIES", n.to_string())
        .env("XDS_SCALE_MODE", mode)
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn client process");
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let t_connect = Instant::now();
    loop {
        match line_rx.recv().await.as_deref() {
            Some("READY") => break,
            Some(_) => {}
            None => panic!("client process ended before READY"),
        }
    }
    let connected = t_connect.elapsed();
    // Let the initial ACKs settle before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = proc_status("VmRSS:");
    let hwm1 = proc_status("VmHWM:");

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxs = Vec::new();
    let mut alls = Vec::new();
    let mut cpus = Vec::new();
    for round in 0..rounds {
        let svc = round % SERVICES as usize;
        gens[svc] += 1;
        let snap = snapshot(&gens, &(round + 1).to_string());
        let acks0 = cache.metrics.acks.load(Ordering::Relaxed);
        let cpu0 = cpu_ticks();
        let t0_us = now_us();
        let t0 = Instant::now();
        cache
            .set_snapshots(nodes.iter().map(|s| s.as_str()), snap)
            .unwrap();
        while cache.metrics.acks.load(Ordering::Relaxed) < acks0 + n as u64 {
            if t0.elapsed() > Duration::from_secs(120) {
                panic!("round {round}: not all ACKs within 120 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let all = t0.elapsed();
        let cpu = cpu_ticks() - cpu0;
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let l = line_rx.recv().await.expect("client process ended");
            let mut it = l.split_whitespace();
            if it.next() != Some("T") {
                continue;
            }
            let r: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
            let t: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if r == round + 1 {
                lat.push(t.saturating_sub(t0_us));
            }
        }
        let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
        eprintln!(
            "  {mode} round {round}: ACK sent p50 {:.1} ms p99 {:.1} ms max {:.1} ms; server has all ACKs {:.1} ms; server CPU {} ticks",
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            max as f64 / 1e3,
            all.as_secs_f64() * 1e3,
            cpu
        );
        p50s.push(p50);
        p99s.push(p99);
        maxs.push(max);
        alls.push(all.as_micros() as u64);
        cpus.push(cpu);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    let med = |v: &[u64]| pct(v, 0.5) as f64 / 1e3;
    let per_proxy = rss1.saturating_sub(rss0) as f64 / n as f64;
    println!(
        "xds-scale mode={mode} proxies={n} services={SERVICES} workers={workers} rounds={rounds}: \
         connect+initial {:.2} s; change→ACK (median over rounds) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         all ACKs at server {:.1} ms (worst round {:.1} ms); server CPU/round {:.0} ms; \
         server RSS {} KiB → {} KiB (+{:.1} KiB/proxy; HWM {} KiB; before server {} KiB)",
        connected.as_secs_f64(),
        med(&p50s),
        med(&p99s),
        med(&maxs),
        med(&alls),
        pct(&alls, 1.0) as f64 / 1e3,
        pct(&cpus, 0.5) as f64 * 1000.0 / clk_tck() as f64,
        rss0,
        rss1,
        per_proxy,
        hwm1,
        rss_start
    );
    let _ = std::io::stdout().flush();
}

fn clk_tck() -> u64 {
    100
}

// ---------------------------------------------------------------- client side

fn client_main() {
    let n: usize = env("XDS_SCALE_PROXIES", 2000);
    let addr: String = std::env::var("XDS_SCALE_ADDR").unwrap();
    let delta = std::env::var("XDS_SCALE_MODE").as_deref() == Ok("delta");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env("XDS_SCALE_CLIENT_WORKERS", 2))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n);
        let names: Arc<Vec<String>> = Arc::new((0..SERVICES).map(|i| format!("s{i:03}")).collect());
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        for i in 0..n {
            let (out, ready, names) = (out_tx.clone(), ready_tx.clone(), names.clone());
            let addr = addr.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                // Connection setup: at most 64 at a time (the listen backlog), retried
                // until the stream is up.
                loop {
                    let permit = gate.clone().acquire_owned().await.unwrap();
                    let ch = match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect()
                        .await
                    {
                        Ok(c) => c,
                        Err(_) => {
                            drop(permit);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let c = AggregatedDiscoveryServiceClient::new(ch)
                        .max_decoding_message_size(64 << 20);
                    let node = Node {
                        id: format!("p{i}"),
                        cluster: "bench".into(),
                        ..Default::default()
                    };
                    let (ready, out, names) = (ready.clone(), out.clone(), names.clone());
                    let done = if delta {
                        delta_proxy(c, node, names, ready, out, permit).await
                    } else {
                        sotw_proxy(c, node, names, ready, out, permit).await
                    };
                    if done {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
        drop(ready_tx);
        for _ in 0..n {
            ready_rx.recv().await.unwrap();
        }
        let mut stdout = std::io::stdout();
        writeln!(stdout, "READY").unwrap();
        stdout.flush().unwrap();
        // Until the parent closes stdin.
        let (eof_tx, mut eof_rx) = mpsc::channel::<()>(1);
        std::thread::spawn(move || {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
            let _ = eof_tx.blocking_send(());
        });
        loop {
            tokio::select! {
                l = out_rx.recv() => match l {
                    Some(l) => { let _ = writeln!(stdout, "{l}"); let _ = stdout.flush(); }
                    None => break,
                },
                _ = eof_rx.recv() => break,
            }
        }
    });
}

fn ty_idx(url: &str) -> Option<usize> {
    ResourceType::from_type_url(url).map(|t| t.idx())
}

async fn sotw_proxy(
    mut c: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    node: Node,
    names: Arc<Vec<String>>,
    ready: mpsc::Sender<()>,
    out: mpsc::UnboundedSender<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let mut permit = Some(permit);
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let req = |url: &str, names: &[String], version: &str, nonce: &str| DiscoveryRequest {
        type_url: url.into(),
        resource_names: names.to_vec(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let mut first = req(CLUSTER_TYPE, &[], "", "");
    first.node = Some(node.clone());
    if tx.send(first).await.is_err() {
        return false;
    }
    let _ = tx.send(req(LISTENER_TYPE, &[], "", "")).await;
    let Ok(stream) = c.stream_aggregated_resources(ReceiverStream::new(rx)).await else {
        return false;
    };
    let mut stream = stream.into_inner();
    let mut seen = [false; 4];
    let mut is_ready = false;
    let mut eds_updates = 0usize;
    let wanted: [&[String]; 4] = [&[], &names, &[], &names];
    while let Ok(Some(r)) = stream.message().await {
        let Some(i) = ty_idx(&r.type_url) else {
            continue;
        };
        let _ = tx
            .send(req(&r.type_url, wanted[i], &r.version_info, &r.nonce))
            .await;
        if is_ready && i == ResourceType::Endpoint.idx() {
            eds_updates += 1;
            let _ = out.send(format!("T {eds_updates} {}", now_us()));
        }
        if !seen[i] {
            seen[i] = true;
            if i == 0 {
                let _ = tx.send(req(ENDPOINT_TYPE, &names, "", "")).await;
            }
            if i == 2 {
                let _ = tx.send(req(ROUTE_TYPE, &names, "", "")).await;
            }
            if seen.iter().all(|s| *s) {
                is_ready = true;
                permit.take();
                let _ = ready.send(()).await;
            }
        }
    }
    is_ready
}

async fn delta_proxy(
    mut c: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    node: Node,
    names: Arc<Vec<String>>,
    ready: mpsc::Sender<()>,
    out: mpsc::UnboundedSender<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let mut permit = Some(permit);
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let req = |url: &str, sub: &[String], nonce: &str| DeltaDiscoveryRequest {
        type_url: url.into(),
        resource_names_subscribe: sub.to_vec(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    let mut first = req(CLUSTER_TYPE, &[], "");
    first.node = Some(node.clone());
    if tx.send(first).await.is_err() {
        return false;
    }
    let _ = tx.send(req(LISTENER_TYPE, &[], "")).await;
    let Ok(stream) = c.delta_aggregated_resources(ReceiverStream::new(rx)).await else {
        return false;
    };
    let mut stream = stream.into_inner();
    let mut seen = [false; 4];
    let mut is_ready = false;
    let mut eds_updates = 0usize;
    while let Ok(Some(r)) = stream.message().await {
        let Some(i) = ty_idx(&r.type_url) else {
            continue;
        };
        let _ = tx.send(req(&r.type_url, &[], &r.nonce)).await;
        if is_ready && i == ResourceType::Endpoint.idx() {
            eds_updates += 1;
            let _ = out.send(format!("T {eds_updates} {}", now_us()));
        }
        if !seen[i] {
            seen[i] = true;
            if i == 0 {
                let _ = tx.send(req(ENDPOINT_TYPE, &names, "")).await;
            }
            if i == 2 {
                let _ = tx.send(req(ROUTE_TYPE, &names, "")).await;
            }
            if seen.iter().all(|s| *s) {
                is_ready = true;
                permit.take();
                let _ = ready.send(()).await;
            }
        }
    }
    is_ready
}

fn main() {
    if std::env::var("XDS_SCALE_ROLE").as_deref() == Ok("client") {
        client_main();
    } else {
        server_main();
    }
}
