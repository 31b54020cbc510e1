//! The controller's xDS feed, in process: a service created through the REST API reaches
//! scripted ADS clients (SotW and delta), a REST update reaches every connected proxy,
//! and a NACK is reported by `GET /v1/xds/status`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, app};
use plexus_controller::store::RedbStore;
use plexus_controller::xds::XdsFeed;
use plexus_xds::envoy_types::pb::envoy::config::cluster::v3::Cluster;
use plexus_xds::envoy_types::pb::envoy::config::core::v3::Node;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use plexus_xds::envoy_types::pb::google::rpc::Status as RpcStatus;
use plexus_xds::resource::CLUSTER_TYPE;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::ServiceExt;

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
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        cluster: "test".into(),
        user_agent_name: "envoy".into(),
        ..Default::default()
    }
}

fn service(split: (u32, u32), circuit_breaker: bool) -> Value {
    let mut policy = json!({
        "splits": [{"subset": "v1", "weight": split.0}, {"subset": "v2", "weight": split.1}],
        "retries": {"num_retries": 2},
        "request_timeout_ms": 3000,
        "outlier_detection": {"consecutive_5xx": 5, "interval_ms": 1000,
                              "base_ejection_time_ms": 30000, "max_ejection_percent": 50},
        "fault": {"delay": {"delay_ms": 10, "percent": 1}},
    });
    if circuit_breaker {
        policy["circuit_breaker"] = json!({"max_connections": 10, "max_pending_requests": 10,
                                           "max_requests": 10, "max_retries": 3});
    }
    json!({
        "vpc_id": "VPC", "name": "web", "vip": "10.96.0.10", "port": 80,
        "backends": [
            {"ip": "10.0.0.5", "target_port": 8080, "subset": "v1"},
            {"ip": "10.0.0.6", "target_port": 8080, "subset": "v2"}
        ],
        "health_check": {"interval_seconds": 5, "timeout_seconds": 1, "unhealthy_threshold": 2,
                         "healthy_threshold": 1, "http_path": "/healthz"},
        "traffic_policy": policy,
    })
}

fn with_vpc(mut v: Value, vpc: &str) -> Value {
    v["vpc_id"] = json!(vpc);
    v
}

async fn next<T>(s: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("xDS response timeout")
        .unwrap()
        .expect("stream ended")
}

fn clusters(r: &DiscoveryResponse) -> Vec<Cluster> {
    r.resources
        .iter()
        .map(|a| Cluster::decode(a.value.as_slice()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_changes_reach_every_proxy_and_nacks_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let feed = XdsFeed::start(store.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut state = AppState::new(store, None);
    state.xds = Some(feed.state.clone());
    let app = app(state);

    let (s, t) = call(&app, "POST", "/v1/tenants", Some(json!({"name": "t"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/vpcs",
        Some(json!({"tenant_id": t["id"], "name": "v", "cidrs": ["10.0.0.0/16"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let vpc = v["id"].as_str().unwrap().to_string();
    // Validation: a split arm whose subset no backend has is refused.
    let mut bad = with_vpc(service((80, 20), false), &vpc);
    bad["traffic_policy"]["splits"][1]["subset"] = json!("v3");
    let (s, p) = call(&app, "POST", "/v1/services", Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "traffic_policy.splits[1].subset");

    let (s, svc) = call(
        &app,
        "POST",
        "/v1/services",
        Some(with_vpc(service((80, 20), false), &vpc)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{svc}");
    let id = svc["id"].as_str().unwrap().to_string();
    assert_eq!(svc["traffic_policy"]["splits"][1]["weight"], 20);

    // Two proxies: SotW and delta ADS.
    let url = format!("http://{}", feed.addr);
    let mut c1 = AggregatedDiscoveryServiceClient::connect(url.clone())
        .await
        .unwrap();
    let (tx1, rx1) = mpsc::channel::<DiscoveryRequest>(8);
    tx1.send(DiscoveryRequest {
        node: Some(node("sidecar-1")),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s1 = c1
        .stream_aggregated_resources(ReceiverStream::new(rx1))
        .await
        .unwrap()
        .into_inner();
    let mut c2 = AggregatedDiscoveryServiceClient::connect(url)
        .await
        .unwrap();
    let (tx2, rx2) = mpsc::channel::<DeltaDiscoveryRequest>(8);
    tx2.send(DeltaDiscoveryRequest {
        node: Some(node("sidecar-2")),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s2 = c2
        .delta_aggregated_resources(ReceiverStream::new(rx2))
        .await
        .unwrap()
        .into_inner();

    // The feed publishes asynchronously: an empty first answer may precede the service.
    let mut r1 = next(&mut s1).await;
    while r1.resources.is_empty() {
        tx1.send(DiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            version_info: r1.version_info.clone(),
            response_nonce: r1.nonce.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        r1 = next(&mut s1).await;
    }
    let cs = clusters(&r1);
    let mut names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["web", "web/v1", "web/v2"]);
    assert!(
        cs.iter()
            .all(|c| c.outlier_detection.is_some() && c.health_checks.len() == 1)
    );
    assert!(cs.iter().all(|c| c.circuit_breakers.is_none()));
    tx1.send(DiscoveryRequest {
        type_url: CLUSTER_TYPE.into(),
        version_info: r1.version_info.clone(),
        response_nonce: r1.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    loop {
        let r2: DeltaDiscoveryResponse = next(&mut s2).await;
        tx2.send(DeltaDiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            response_nonce: r2.nonce.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        if !r2.resources.is_empty() {
            assert_eq!(r2.resources.len(), 3);
            break;
        }
    }

    // A REST update (circuit breaker added) reaches both proxies.
    let (s, b) = call(
        &app,
        "PUT",
        &format!("/v1/services/{id}"),
        Some(with_vpc(service((80, 20), true), &vpc)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let u1 = next(&mut s1).await;
    assert_ne!(u1.version_info, r1.version_info);
    assert!(clusters(&u1).iter().all(|c| c.circuit_breakers.is_some()));
    let u2 = next(&mut s2).await;
    assert_eq!(u2.resources.len(), 3, "every cluster changed");

    // Sidecar 1 rejects it: the controller reports the NACK and keeps serving.
    tx1.send(DiscoveryRequest {
        type_url: CLUSTER_TYPE.into(),
        version_info: r1.version_info.clone(),
        response_nonce: u1.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "circuit breaker not supported here".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut reported = Value::Null;
    for _ in 0..100 {
        let (s, st) = call(&app, "GET", "/v1/xds/status", None).await;
        assert_eq!(s, StatusCode::OK);
        if st["nodes"]["sidecar-1"]["types"]["CDS"]["rejected"] == json!(true) {
            reported = st;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cds = &reported["nodes"]["sidecar-1"]["types"]["CDS"];
    assert_eq!(
        cds["last_nack"]["message"], "circuit breaker not supported here",
        "{reported}"
    );
    assert_eq!(cds["last_nack"]["version"], json!(u1.version_info));
    assert_eq!(cds["last_acked_version"], json!(r1.version_info));
    assert!(reported["feed"]["published_revision"].as_u64().unwrap() > 0);
    // Not resent: nothing arrives for the NACKed version.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s1.message())
            .await
            .is_err(),
        "a NACKed version must not be resent"
    );
    // Deleting the service removes its clusters (delta: removed_resources).
    let (s, _) = call(&app, "DELETE", &format!("/v1/services/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let d = next(&mut s2).await;
    let mut removed = d.removed_resources.clone();
    removed.sort();
    assert_eq!(removed, ["web", "web/v1", "web/v2"]);
    drop(feed);
}
