//! xDS request handling on a deterministic corpus of random request sequences (issue
//! #11): random type URLs (served, unknown, empty), resource names, nonces (current,
//! stale, garbage), versions and `error_detail`s, interleaved with snapshot changes, on
//! SotW and delta ADS streams. Invariants: the ADS stream never fails, every response
//! has a served type URL and a nonce never used before on the stream, SotW versions are
//! the published ones, delta never both sends and removes a name, and afterwards a fresh
//! request on the same stream and a new stream still get the current state.
//! `XDS_FUZZ_ITERS` scales it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestServer, service};
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest,
};
use plexus_xds::envoy_types::pb::google::rpc::Status as RpcStatus;
use plexus_xds::resource::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use plexus_xds::translate::envoy_resources;
use plexus_xds::{ResourceType, Snapshot};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const TYPES: [&str; 7] = [
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    "",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    "\u{0}\u{ffff}garbage",
];
const NAMES: [&str; 8] = ["s0", "s1", "s2", "s3", "*", "", "nope", "s1@127.0.0.1:1"];

fn iters() -> usize {
    std::env::var("XDS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250)
}

fn snaps() -> [Snapshot; 2] {
    let a: Vec<_> = (0..4)
        .map(|i| service(&format!("s{i}"), i, 9000 + i * 4, 2))
        .collect();
    let b: Vec<_> = (0..3)
        .map(|i| service(&format!("s{i}"), i, 9100 + i * 4, 3))
        .collect();
    [
        Snapshot::builder("a")
            .resources(&envoy_resources(&a))
            .build()
            .unwrap(),
        Snapshot::builder("b")
            .resources(&envoy_resources(&b))
            .build()
            .unwrap(),
    ]
}

fn names(rng: &mut Rng) -> Vec<String> {
    (0..rng.below(4))
        .map(|_| rng.pick(&NAMES).to_string())
        .collect()
}

fn served(url: &str) -> bool {
    ResourceType::from_type_url(url).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_random_requests_keep_the_stream_consistent() {
    let srv = TestServer::start().await;
    let snaps = snaps();
    let mut cur = 0;
    srv.cache.set_snapshot("fz", snaps[0].clone()).unwrap();
    let mut c = srv.sotw("fz").await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut nonces: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..iters() {
        if rng.below(10) == 0 {
            cur = 1 - cur;
            srv.cache.set_snapshot("fz", snaps[cur].clone()).unwrap();
        }
        let nonce = match rng.below(4) {
            0 => String::new(),
            1 => nonces.last().cloned().unwrap_or_default(),
            2 if !nonces.is_empty() => nonces[rng.below(nonces.len())].clone(),
            _ => format!("{}", rng.next() % 1000),
        };
        let error_detail = (rng.below(4) == 0).then(|| RpcStatus {
            code: rng.below(17) as i32,
            message: "fuzz".into(),
            details: vec![],
        });
        c.send_req(DiscoveryRequest {
            type_url: rng.pick(&TYPES).into(),
            resource_names: names(&mut rng),
            version_info: rng.pick(&["", "empty", "x", "0000000000000000"]).into(),
            response_nonce: nonce,
            error_detail,
            ..Default::default()
        })
        .await;
        let s = c.resp.stream().await;
        while let Ok(m) = tokio::time::timeout(Duration::from_millis(15), s.message()).await {
            let r = m
                .expect("the ADS stream must not fail")
                .expect("stream ended");
            assert!(served(&r.type_url), "unserved type {:?}", r.type_url);
            assert!(seen.insert(r.nonce.clone()), "nonce {} reused", r.nonce);
            let ty = ResourceType::from_type_url(&r.type_url).unwrap();
            let published: BTreeSet<&str> = snaps.iter().map(|s| s.version(ty)).collect();
            assert!(
                published.contains(r.version_info.as_str()),
                "{}",
                r.version_info
            );
            assert!(
                r.resources.len()
                    <= snaps[0]
                        .get(ty)
                        .items
                        .len()
                        .max(snaps[1].get(ty).items.len())
            );
            nonces.push(r.nonce);
        }
    }
    // The stream still answers a well-formed wildcard CDS request with the current set.
    c.send(CLUSTER_TYPE, &[], "", "").await;
    let mut last = None;
    let s = c.resp.stream().await;
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), s.message()).await {
        last = Some(m.unwrap().unwrap())
            .filter(|r| r.type_url == CLUSTER_TYPE)
            .or(last);
    }
    let r = last.expect("no CDS answer after the fuzz sequence");
    assert_eq!(r.version_info, snaps[cur].version(ResourceType::Cluster));
    assert_eq!(
        r.resources.len(),
        snaps[cur].get(ResourceType::Cluster).items.len()
    );
    // And a new stream works.
    let mut c2 = srv.sotw("fz").await;
    c2.send(CLUSTER_TYPE, &[], "", "").await;
    assert_eq!(
        c2.recv().await.version_info,
        snaps[cur].version(ResourceType::Cluster)
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_random_requests_keep_the_stream_consistent() {
    let srv = TestServer::start().await;
    let snaps = snaps();
    let mut cur = 0;
    srv.cache.set_snapshot("fz", snaps[0].clone()).unwrap();
    let mut c = srv.delta("fz").await;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut nonces: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..iters() {
        if rng.below(10) == 0 {
            cur = 1 - cur;
            srv.cache.set_snapshot("fz", snaps[cur].clone()).unwrap();
        }
        let nonce = match rng.below(3) {
            0 => String::new(),
            1 if !nonces.is_empty() => nonces[rng.below(nonces.len())].clone(),
            _ => format!("{}", rng.next() % 1000),
        };
        let error_detail = (rng.below(4) == 0).then(|| RpcStatus {
            code: 3,
            message: "fuzz".into(),
            details: vec![],
        });
        let initial = (0..rng.below(3))
            .map(|_| {
                (
                    rng.pick(&NAMES).to_string(),
                    rng.pick(&["", "1", "x"]).to_string(),
                )
            })
            .collect();
        c.send_req(DeltaDiscoveryRequest {
            type_url: rng.pick(&TYPES).into(),
            resource_names_subscribe: names(&mut rng),
            resource_names_unsubscribe: names(&mut rng),
            initial_resource_versions: initial,
            response_nonce: nonce,
            error_detail,
            ..Default::default()
        })
        .await;
        let s = c.resp.stream().await;
        while let Ok(m) = tokio::time::timeout(Duration::from_millis(15), s.message()).await {
            let r = m
                .expect("the ADS stream must not fail")
                .expect("stream ended");
            assert!(served(&r.type_url), "unserved type {:?}", r.type_url);
            assert!(seen.insert(r.nonce.clone()), "nonce {} reused", r.nonce);
            let sent: BTreeSet<&str> = r.resources.iter().map(|x| x.name.as_str()).collect();
            assert!(
                r.removed_resources
                    .iter()
                    .all(|n| !sent.contains(n.as_str())),
                "a name both sent and removed: {r:?}"
            );
            nonces.push(r.nonce);
        }
    }
    // A new stream subscribing wildcard CDS gets exactly the current clusters.
    let mut c2 = srv.delta("fz").await;
    c2.subscribe(CLUSTER_TYPE, &[], &[], "").await;
    let r = c2.recv().await;
    let got: BTreeSet<String> = r.resources.iter().map(|x| x.name.clone()).collect();
    let want: BTreeSet<String> = snaps[cur]
        .get(ResourceType::Cluster)
        .items
        .keys()
        .cloned()
        .collect();
    assert_eq!(got, want);
    srv.stop().await;
}

/// Replays the checked-in corpus of each cargo-fuzz target
/// (`fuzz/seeds/TARGET/*`, minimised from the libFuzzer runs recorded in
/// BENCHMARKS.md, crash inputs included once fixed) through its entry point.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn checked_in_seeds_replay() {
    // The in-process ADS entry point of the cargo-fuzz target `xds/fuzz/`.
    replay("xds_requests", plexus_xds::fuzz::ads_requests);
}
