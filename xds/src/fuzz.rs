//! Entry point shared by the cargo-fuzz target (`xds/fuzz/`) and the stable
//! corpus test (`tests/fuzz_corpus.rs`): gRPC request bodies straight into the
//! ADS service (the one [`XdsServer::router`] mounts), in process, no socket.
//! It panics only when an invariant is broken — which is exactly what a fuzzer
//! should report.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http_body_util::BodyExt;
use prost::Message;
use tonic::codegen::Service as _;
use tonic::codegen::http;

use crate::model::{Backend, Service};
use crate::resource::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use crate::translate::envoy_resources;
use crate::{ResourceType, Snapshot, SnapshotCache, XdsServer};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

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
const NODES: [&str; 4] = ["fz", "fz", "other", ""];

fn service(name: &str, port: u16, base: u16, n: u16) -> Service {
    Service {
        name: name.into(),
        vip: [127, 0, 0, 1].into(),
        port,
        backends: (0..n)
            .map(|i| Backend::new([127, 0, 0, 1].into(), base + i))
            .collect(),
        policy: Default::default(),
    }
}

/// Two snapshots the streams switch between.
fn snapshots() -> [Snapshot; 2] {
    let a: Vec<_> = (0..4)
        .map(|i| service(&format!("s{i}"), i, 9000 + i * 4, 2))
        .collect();
    let b: Vec<_> = (0..3)
        .map(|i| service(&format!("s{i}"), i, 9100 + i * 4, 3))
        .collect();
    let mk = |l: &str, s: &[Service]| {
        Snapshot::builder(l)
            .resources(&envoy_resources(s))
            .build()
            .expect("snapshot")
    };
    [mk("a", &a), mk("b", &b)]
}

struct Rig {
    rt: tokio::runtime::Runtime,
    server: XdsServer,
    cache: Arc<SnapshotCache>,
    snaps: [Snapshot; 2],
}

thread_local! {
    static RIG: Rig = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cache = SnapshotCache::new();
        let server = XdsServer::new(cache.clone());
        Rig { rt, server, cache, snaps: snapshots() }
    };
}

/// Reads input bytes (zeros once exhausted).
struct In<'a>(&'a [u8]);

impl In<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, r)) => {
                self.0 = r;
                *b
            }
            None => 0,
        }
    }
    fn pick<'s>(&mut self, v: &[&'s str]) -> &'s str {
        v[usize::from(self.u8()) % v.len()]
    }
    fn names(&mut self) -> Vec<String> {
        (0..self.u8() % 4)
            .map(|_| self.pick(&NAMES).to_string())
            .collect()
    }
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v.into()
}

/// What one step of the client does.
enum Step {
    Send(Bytes),
    /// Switch the node's snapshot (between requests).
    Flip,
}

/// Builds the request stream from the input. Structured mode: requests
/// with random type URLs (served, unknown, empty), resource names, nonces
/// (current, stale, garbage), versions and NACKs. Raw mode: the bytes of
/// each record are the protobuf message itself (or, for the last record,
/// the gRPC framing too).
fn steps(delta: bool, raw: bool, b: &mut In<'_>) -> Vec<Step> {
    let mut v = Vec::new();
    let mut first = true;
    while !b.0.is_empty() && v.len() < 64 {
        let op = b.u8();
        if op % 8 == 7 {
            v.push(Step::Flip);
            continue;
        }
        if raw {
            let n = usize::from(b.u8());
            let n = n.min(b.0.len());
            let (m, rest) = b.0.split_at(n);
            b.0 = rest;
            if op % 8 == 6 {
                // Broken framing: compressed flag, wrong length.
                let mut f = vec![op & 1, 0, 0, (n >> 8) as u8, n as u8 ^ op];
                f.extend_from_slice(m);
                v.push(Step::Send(f.into()));
            } else {
                v.push(Step::Send(grpc_frame(m)));
            }
            continue;
        }
        let node = (first || op & 0x10 != 0).then(|| Node {
            id: b.pick(&NODES).into(),
            ..Default::default()
        });
        first = false;
        let nonce = match b.u8() % 4 {
            0 => String::new(),
            n => format!("{}", u32::from(n) + u32::from(b.u8()) % 8),
        };
        let error_detail = (op & 0x20 != 0).then(|| RpcStatus {
            code: i32::from(b.u8() % 17),
            message: "fuzz".into(),
            details: vec![],
        });
        let msg = if delta {
            DeltaDiscoveryRequest {
                node,
                type_url: b.pick(&TYPES).into(),
                resource_names_subscribe: b.names(),
                resource_names_unsubscribe: b.names(),
                initial_resource_versions: b
                    .names()
                    .into_iter()
                    .map(|n| (n, b.pick(&["", "x", "0000000000000000"]).into()))
                    .collect(),
                response_nonce: nonce,
                error_detail,
                ..Default::default()
            }
            .encode_to_vec()
        } else {
            DiscoveryRequest {
                node,
                type_url: b.pick(&TYPES).into(),
                resource_names: b.names(),
                version_info: b.pick(&["", "empty", "x", "0000000000000000"]).into(),
                response_nonce: nonce,
                error_detail,
                ..Default::default()
            }
            .encode_to_vec()
        };
        v.push(Step::Send(grpc_frame(&msg)));
    }
    v
}

/// The decoded gRPC messages and the `grpc-status` of one response.
struct Reply {
    msgs: Vec<Bytes>,
    status: Option<String>,
}

async fn run_stream(rig: &Rig, path: &str, steps: Vec<Step>, cur: &mut usize) -> Reply {
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(64);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let mut svc = rig.server.ads_service();
    let resp = svc.call(req).await.expect("infallible");
    // A trailers-only response carries the status in its headers.
    let mut status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let collect = async {
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => panic!("response body error: {e}"),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => {
                        if let Ok(t) = f.into_trailers() {
                            status = t
                                .get("grpc-status")
                                .map(|v| v.to_str().unwrap_or("?").to_string());
                        }
                    }
                },
            }
        }
    };
    let send = async {
        for s in steps {
            match s {
                Step::Send(b) => {
                    if tx.send(Ok(http_body::Frame::data(b))).await.is_err() {
                        break;
                    }
                }
                Step::Flip => {
                    *cur = 1 - *cur;
                    rig.cache
                        .set_snapshot("fz", rig.snaps[*cur].clone())
                        .expect("snapshot");
                }
            }
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
    };
    let both = async { tokio::join!(collect, send) };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("the stream did not end after the client half-closed");
    let mut msgs = Vec::new();
    let mut d = Bytes::from(data);
    while d.len() >= 5 {
        assert_eq!(d[0], 0, "compressed response frame");
        let n = u32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize;
        assert!(d.len() >= 5 + n, "truncated response frame");
        d.advance(5);
        msgs.push(d.split_to(n));
    }
    assert!(d.is_empty(), "trailing bytes in the response body");
    Reply { msgs, status }
}

/// One ADS stream (SotW or delta, chosen by the first byte) driven by the
/// rest of the input, then a fresh well-formed stream. Invariants: no
/// panic; the response stream always ends with a `grpc-status` after the
/// client half-closes; responses are well-formed protobuf of served types,
/// each with a nonce never used before on the stream; SotW versions are
/// the published ones; a delta response never both sends and removes a
/// name; with well-formed protobuf requests the status is OK (the stream
/// never fails on bad type URLs, names, nonces or NACKs); afterwards a new
/// stream gets the node's current clusters.
pub fn ads_requests(data: &[u8]) {
    RIG.with(|rig| {
        let mut b = In(data);
        let mode = b.u8();
        let delta = mode & 1 != 0;
        let raw = mode & 2 != 0;
        let mut cur = usize::from(mode >> 2 & 1);
        rig.cache
            .set_snapshot("fz", rig.snaps[cur].clone())
            .expect("snapshot");
        let steps = steps(delta, raw, &mut b);
        rig.rt.block_on(async {
            let r = run_stream(rig, if delta { DELTA } else { SOTW }, steps, &mut cur).await;
            let status = r.status.expect("response without grpc-status");
            if !raw {
                assert_eq!(status, "0", "the stream failed on well-formed requests");
            }
            let published: BTreeSet<String> = rig
                .snaps
                .iter()
                .flat_map(|s| ResourceType::ALL.map(|t| s.version(t).to_string()))
                .collect();
            let mut nonces = BTreeSet::new();
            for m in r.msgs {
                if delta {
                    let d = DeltaDiscoveryResponse::decode(m).expect("delta response decodes");
                    assert!(
                        ResourceType::from_type_url(&d.type_url).is_some(),
                        "{}",
                        d.type_url
                    );
                    assert!(nonces.insert(d.nonce.clone()), "nonce {} reused", d.nonce);
                    let sent: BTreeSet<&str> =
                        d.resources.iter().map(|r| r.name.as_str()).collect();
                    for n in &d.removed_resources {
                        assert!(!sent.contains(n.as_str()), "{n} both sent and removed");
                    }
                } else {
                    let s = DiscoveryResponse::decode(m).expect("response decodes");
                    assert!(
                        ResourceType::from_type_url(&s.type_url).is_some(),
                        "{}",
                        s.type_url
                    );
                    assert!(nonces.insert(s.nonce.clone()), "nonce {} reused", s.nonce);
                    assert!(
                        published.contains(&s.version_info),
                        "version {}",
                        s.version_info
                    );
                }
            }
            // A fresh stream gets the current clusters.
            let req = DiscoveryRequest {
                node: Some(Node {
                    id: "fz".into(),
                    ..Default::default()
                }),
                type_url: CLUSTER_TYPE.into(),
                ..Default::default()
            };
            let mut c = cur;
            let r = run_stream(
                rig,
                SOTW,
                vec![Step::Send(grpc_frame(&req.encode_to_vec()))],
                &mut c,
            )
            .await;
            assert_eq!(r.status.as_deref(), Some("0"));
            let first = r.msgs.first().expect("no CDS answer on a new stream");
            let s = DiscoveryResponse::decode(first.clone()).expect("decodes");
            assert_eq!(
                s.version_info,
                rig.snaps[cur].version(ResourceType::Cluster)
            );
            assert_eq!(
                s.resources.len(),
                rig.snaps[cur].get(ResourceType::Cluster).items.len()
            );
        });
    });
}
