//! Scripted xDS client (tonic) against the server: SotW and delta protocol behaviour.

mod common;

use common::*;
use plexus_xds::envoy_types::pb::envoy::config::cluster::v3::Cluster;
use plexus_xds::resource::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use plexus_xds::translate::envoy_resources;
use plexus_xds::{ResourceType, Snapshot};

fn snap_of(services: &[plexus_xds::Service], label: &str) -> Snapshot {
    Snapshot::builder(label)
        .resources(&envoy_resources(services))
        .build()
        .unwrap()
}

#[tokio::test]
async fn sotw_ack_nack_keeps_last_good_and_never_resends_rejected() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n1", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut c = srv.sotw("n1").await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    let r1 = c.recv().await;
    assert_eq!(names_of_clusters(&r1), ["a"]);
    c.ack(&r1, &[]).await;
    c.silent(300).await;
    let st = srv.cache.node_status("n1").unwrap();
    assert_eq!(
        st.types["CDS"].last_acked_version.as_deref(),
        Some(r1.version_info.as_str())
    );

    // v2 rejected: recorded, not resent.
    srv.cache
        .set_snapshot(
            "n1",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v2"),
        )
        .unwrap();
    let r2 = c.recv().await;
    assert_eq!(r2.type_url, CLUSTER_TYPE);
    assert_ne!(r2.version_info, r1.version_info);
    assert_eq!(names_of_clusters(&r2), ["a", "b"]);
    c.nack(&r2, &[], &r1.version_info, "bad cluster b").await;
    c.silent(500).await;
    let st = srv.cache.node_status("n1").unwrap();
    let cds = &st.types["CDS"];
    assert_eq!(
        cds.last_acked_version.as_deref(),
        Some(r1.version_info.as_str()),
        "last good kept"
    );
    assert!(cds.rejected);
    let nack = cds.last_nack.as_ref().unwrap();
    assert_eq!(nack.message, "bad cluster b");
    assert_eq!(nack.version, r2.version_info);
    assert_eq!(nack.nonce, r2.nonce);
    assert_eq!(
        srv.cache.status_json()["n1"]["types"]["CDS"]["last_nack"]["message"],
        "bad cluster b"
    );

    // A fixed v3 goes out and is ACKed.
    srv.cache
        .set_snapshot("n1", snap_of(&[service("a", 1, 100, 1)], "v3"))
        .unwrap();
    let r3 = c.recv().await;
    assert_eq!(names_of_clusters(&r3), ["a"]);
    assert_eq!(
        r3.version_info, r1.version_info,
        "content-addressed version"
    );
    c.ack(&r3, &[]).await;
    c.silent(200).await;
    let cds = srv.cache.node_status("n1").unwrap().types["CDS"].clone();
    assert!(!cds.rejected);
    assert_eq!(cds.acks, 2);
    assert_eq!(cds.nacks, 1);
    srv.stop().await;
}

#[tokio::test]
async fn sotw_stale_nonce_is_ignored() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot(
            "n",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v1"),
        )
        .unwrap();
    let mut c = srv.sotw("n").await;
    c.send(ENDPOINT_TYPE, &["a"], "", "").await;
    let r1 = c.recv().await;
    assert_eq!(names_of_cla(&r1), ["a"]);
    // A new response supersedes nonce r1.nonce once the snapshot changes.
    srv.cache
        .set_snapshot(
            "n",
            snap_of(&[service("a", 1, 101, 2), service("b", 2, 200, 1)], "v2"),
        )
        .unwrap();
    let r2 = c.recv().await;
    assert_ne!(r1.nonce, r2.nonce);
    // Stale ACK of r1 (even with a changed subscription) and a made-up nonce: ignored.
    c.ack(&r1, &["a", "b"]).await;
    c.send(ENDPOINT_TYPE, &["b"], &r1.version_info, "no-such-nonce")
        .await;
    c.silent(400).await;
    assert!(
        srv.cache
            .metrics
            .stale_nonces
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    let st = srv.cache.node_status("n").unwrap();
    assert_eq!(st.types["EDS"].acks, 0, "a stale ACK is not an ACK");
    // The current nonce works.
    c.ack(&r2, &["a", "b"]).await;
    let r3 = c.recv().await;
    assert_eq!(names_of_cla(&r3), ["a", "b"]);
    srv.stop().await;
}

#[tokio::test]
async fn unknown_type_url_is_ignored_and_stream_survives() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut c = srv.sotw("n").await;
    c.send(
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        &["x"],
        "",
        "",
    )
    .await;
    c.silent(300).await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    let r = c.recv().await;
    assert_eq!(names_of_clusters(&r), ["a"]);
    assert_eq!(srv.cache.node_status("n").unwrap().unknown_type_requests, 1);
    srv.stop().await;
}

#[tokio::test]
async fn per_type_service_rejects_foreign_type_and_serves_its_own() {
    use plexus_xds::envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut cds = ClusterDiscoveryServiceClient::connect(format!("http://{}", srv.addr))
        .await
        .unwrap();
    let node = plexus_xds::envoy_types::pb::envoy::config::core::v3::Node {
        id: "n".into(),
        ..Default::default()
    };
    // Empty type URL = the service's own type.
    let req = DiscoveryRequest {
        node: Some(node.clone()),
        ..Default::default()
    };
    let mut s = cds
        .stream_clusters(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let r = s.message().await.unwrap().unwrap();
    assert_eq!(names_of_clusters(&r), ["a"]);
    let bad = DiscoveryRequest {
        node: Some(node.clone()),
        type_url: LISTENER_TYPE.into(),
        ..Default::default()
    };
    let mut s = cds
        .stream_clusters(tokio_stream::iter(vec![bad]))
        .await
        .unwrap()
        .into_inner();
    let e = s.message().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // Fetch.
    let f = cds
        .fetch_clusters(DiscoveryRequest {
            node: Some(node),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names_of_clusters(&f), ["a"]);
    srv.stop().await;
}

#[tokio::test]
async fn sotw_resubscribe_changes_named_set() {
    let srv = TestServer::start().await;
    let svcs: Vec<_> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| service(n, i as u16, 100, 1))
        .collect();
    srv.cache.set_snapshot("n", snap_of(&svcs, "v1")).unwrap();
    let mut c = srv.sotw("n").await;
    c.send(ENDPOINT_TYPE, &["a"], "", "").await;
    let r = c.recv().await;
    assert_eq!(names_of_cla(&r), ["a"]);
    c.ack(&r, &["a", "c"]).await;
    let r = c.recv().await;
    assert_eq!(names_of_cla(&r), ["a", "c"]);
    c.ack(&r, &["b"]).await;
    let r = c.recv().await;
    assert_eq!(names_of_cla(&r), ["b"]);
    c.ack(&r, &["b"]).await;
    c.silent(300).await;
    // Names that do not exist yet are simply absent; they appear once published.
    c.ack(&r, &["b", "zz"]).await;
    let r = c.recv().await;
    assert_eq!(names_of_cla(&r), ["b"]);
    c.ack(&r, &["b", "zz"]).await;
    let mut svcs2 = svcs.clone();
    svcs2.push(service("zz", 9, 900, 1));
    srv.cache.set_snapshot("n", snap_of(&svcs2, "v2")).unwrap();
    let r = c.recv().await;
    assert_eq!(names_of_cla(&r), ["b", "zz"]);
    srv.stop().await;
}

#[tokio::test]
async fn reconnect_mid_stream_gets_current_state() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut c = srv.sotw("n").await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    let r1 = c.recv().await;
    drop(c); // connection drops without ACK
    // Meanwhile the config changes.
    srv.cache
        .set_snapshot(
            "n",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v2"),
        )
        .unwrap();
    let mut c = srv.sotw("n").await;
    c.send(CLUSTER_TYPE, &[], &r1.version_info, "").await;
    let r2 = c.recv().await;
    assert_eq!(names_of_clusters(&r2), ["a", "b"]);
    // Same version on reconnect is still answered (the client may have lost its state).
    let mut c2 = srv.sotw("n").await;
    c2.send(CLUSTER_TYPE, &[], &r2.version_info, "").await;
    assert_eq!(c2.recv().await.version_info, r2.version_info);
    // A nonce from a previous stream on a fresh stream counts as a new subscription.
    let mut c3 = srv.sotw("n").await;
    c3.send(CLUSTER_TYPE, &[], &r2.version_info, &r2.nonce)
        .await;
    assert_eq!(c3.recv().await.version_info, r2.version_info);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(srv.cache.node_status("n").unwrap().streams, 3);
    drop((c, c2, c3));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(srv.cache.node_status("n").unwrap().streams, 0);
    srv.stop().await;
}

#[tokio::test]
async fn thousand_resources_in_one_response_and_removal() {
    let srv = TestServer::start().await;
    let svcs: Vec<_> = (0..1000u16)
        .map(|i| service(&format!("s{i:04}"), i, 1000 + i, 1))
        .collect();
    srv.cache.set_snapshot("n", snap_of(&svcs, "big")).unwrap();
    let mut c = srv.sotw("n").await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    let r = c.recv().await;
    assert_eq!(r.resources.len(), 1000);
    c.ack(&r, &[]).await;
    c.send(LISTENER_TYPE, &[], "", "").await;
    let l = c.recv().await;
    assert_eq!(l.resources.len(), 1000);
    c.ack(&l, &[]).await;
    // Removal: SotW = absent from the full set.
    srv.cache
        .set_snapshot("n", snap_of(&svcs[..998], "smaller"))
        .unwrap();
    let r = c.recv().await;
    assert_eq!(r.type_url, CLUSTER_TYPE);
    assert_eq!(r.resources.len(), 998);
    assert!(!names_of_clusters(&r).contains(&"s0999".to_string()));
    let l = c.recv().await;
    assert_eq!(l.type_url, LISTENER_TYPE);
    assert_eq!(l.resources.len(), 998);
    srv.stop().await;
}

#[tokio::test]
async fn sotw_push_order_is_cds_eds_lds_rds_and_reaches_every_stream() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut clients = vec![srv.sotw("n").await, srv.sotw("n").await];
    for c in &mut clients {
        // Subscribe in the "wrong" order.
        c.send(ROUTE_TYPE, &["a"], "", "").await;
        let r = c.recv().await;
        c.ack(&r, &["a"]).await;
        c.send(LISTENER_TYPE, &[], "", "").await;
        let r = c.recv().await;
        c.ack(&r, &[]).await;
        c.send(ENDPOINT_TYPE, &["a"], "", "").await;
        let r = c.recv().await;
        c.ack(&r, &["a"]).await;
        c.send(CLUSTER_TYPE, &[], "", "").await;
        let r = c.recv().await;
        c.ack(&r, &[]).await;
    }
    let mut s = service("a", 2, 101, 2);
    s.policy.request_timeout = Some(std::time::Duration::from_secs(3));
    s.policy.connect_timeout = std::time::Duration::from_millis(250);
    srv.cache.set_snapshot("n", snap_of(&[s], "v2")).unwrap();
    for c in &mut clients {
        let mut order = Vec::new();
        for _ in 0..4 {
            let r = c.recv().await;
            order.push(ResourceType::from_type_url(&r.type_url).unwrap());
        }
        assert_eq!(order, ResourceType::ALL);
    }
    srv.stop().await;
}

#[tokio::test]
async fn inconsistent_snapshot_is_refused_and_previous_stays() {
    let srv = TestServer::start().await;
    let good = envoy_resources(&[service("a", 1, 100, 1)]);
    srv.cache
        .set_snapshot(
            "n",
            Snapshot::builder("good").resources(&good).build().unwrap(),
        )
        .unwrap();
    let mut bad = good.clone();
    bad.endpoints.clear();
    let e = srv
        .cache
        .set_snapshot(
            "n",
            Snapshot::builder("bad").resources(&bad).build().unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("EDS \"a\""), "{e}");
    let mut bad = good.clone();
    bad.clusters.clear();
    bad.endpoints.clear();
    let e = srv
        .cache
        .set_snapshot(
            "n",
            Snapshot::builder("bad").resources(&bad).build().unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("CDS \"a\""), "{e}");
    let mut bad = good.clone();
    bad.routes.clear();
    assert!(
        srv.cache
            .set_snapshot(
                "n",
                Snapshot::builder("bad").resources(&bad).build().unwrap()
            )
            .is_err()
    );
    assert_eq!(srv.cache.snapshot("n").unwrap().label, "good");
    // Duplicate names are refused at build time.
    let mut dup = good.clone();
    dup.clusters.push(dup.clusters[0].clone());
    assert!(Snapshot::builder("dup").resources(&dup).build().is_err());
    srv.stop().await;
}

#[tokio::test]
async fn sotw_waits_for_first_snapshot() {
    let srv = TestServer::start().await;
    let mut c = srv.sotw("late").await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    c.silent(300).await;
    srv.cache
        .set_snapshot("late", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    assert_eq!(names_of_clusters(&c.recv().await), ["a"]);
    srv.stop().await;
}

#[tokio::test]
async fn delta_wildcard_changes_removals_and_nack() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot(
            "d",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v1"),
        )
        .unwrap();
    let mut c = srv.delta("d").await;
    c.subscribe(CLUSTER_TYPE, &[], &[], "").await; // legacy wildcard
    let r = c.recv().await;
    let mut got: Vec<_> = r.resources.iter().map(|x| x.name.clone()).collect();
    got.sort();
    assert_eq!(got, ["a", "b"]);
    assert!(r.resources.iter().all(|x| !x.version.is_empty()));
    c.ack(&r).await;
    c.silent(200).await;
    // Change only b: only b is sent.
    let mut b = service("b", 2, 200, 1);
    b.policy.connect_timeout = std::time::Duration::from_secs(5);
    srv.cache
        .set_snapshot("d", snap_of(&[service("a", 1, 100, 1), b.clone()], "v2"))
        .unwrap();
    let r = c.recv().await;
    assert_eq!(
        r.resources
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(r.removed_resources.is_empty());
    // NACK it: recorded, not resent.
    c.nack(&r, "b rejected").await;
    c.silent(400).await;
    let st = srv.cache.node_status("d").unwrap();
    assert_eq!(
        st.types["CDS"].last_nack.as_ref().unwrap().message,
        "b rejected"
    );
    // Removal of a.
    srv.cache.set_snapshot("d", snap_of(&[b], "v3")).unwrap();
    let r = c.recv().await;
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, ["a"]);
    c.ack(&r).await;
    c.silent(200).await;
    assert!(!srv.cache.node_status("d").unwrap().types["CDS"].rejected);
    srv.stop().await;
}

#[tokio::test]
async fn delta_named_subscribe_unsubscribe_and_absent() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot(
            "d",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v1"),
        )
        .unwrap();
    let mut c = srv.delta("d").await;
    c.subscribe(ENDPOINT_TYPE, &["a", "nope"], &[], "").await;
    let r = c.recv().await;
    assert_eq!(
        r.resources
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(
        r.removed_resources,
        ["nope"],
        "absent names are reported once"
    );
    c.ack(&r).await;
    c.subscribe(ENDPOINT_TYPE, &["b"], &["a"], &r.nonce).await;
    let r2 = c.recv().await;
    assert_eq!(
        r2.resources
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(r2.removed_resources.is_empty());
    c.ack(&r2).await;
    // a changes: not subscribed any more, nothing sent. "nope" appears: sent.
    let mut a = service("a", 1, 100, 3);
    a.name = "a".into();
    srv.cache
        .set_snapshot(
            "d",
            snap_of(
                &[a, service("b", 2, 200, 1), service("nope", 3, 300, 1)],
                "v2",
            ),
        )
        .unwrap();
    let r3 = c.recv().await;
    assert_eq!(
        r3.resources
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["nope"]
    );
    c.ack(&r3).await;
    c.silent(200).await;
    srv.stop().await;
}

#[tokio::test]
async fn delta_reconnect_with_initial_versions_sends_only_differences() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot(
            "d",
            snap_of(&[service("a", 1, 100, 1), service("b", 2, 200, 1)], "v1"),
        )
        .unwrap();
    let mut c = srv.delta("d").await;
    c.subscribe(CLUSTER_TYPE, &["*"], &[], "").await;
    let r = c.recv().await;
    assert_eq!(r.resources.len(), 2);
    let versions: std::collections::HashMap<String, String> = r
        .resources
        .iter()
        .map(|x| (x.name.clone(), x.version.clone()))
        .collect();
    drop(c);
    let mut b = service("b", 2, 200, 1);
    b.policy.connect_timeout = std::time::Duration::from_secs(7);
    srv.cache
        .set_snapshot("d", snap_of(&[b, service("c", 3, 300, 1)], "v2"))
        .unwrap();
    let mut c = srv.delta("d").await;
    c.send_req(
        plexus_xds::envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            resource_names_subscribe: vec!["*".into()],
            initial_resource_versions: versions,
            ..Default::default()
        },
    )
    .await;
    let r = c.recv().await;
    let mut got: Vec<_> = r.resources.iter().map(|x| x.name.clone()).collect();
    got.sort();
    assert_eq!(got, ["b", "c"]);
    assert_eq!(r.removed_resources, ["a"]);
    srv.stop().await;
}

#[tokio::test]
async fn delta_thousand_resources() {
    let srv = TestServer::start().await;
    let svcs: Vec<_> = (0..1000u16)
        .map(|i| service(&format!("s{i:04}"), i, 1000 + i, 1))
        .collect();
    srv.cache.set_snapshot("d", snap_of(&svcs, "big")).unwrap();
    let mut c = srv.delta("d").await;
    c.subscribe(CLUSTER_TYPE, &[], &[], "").await;
    let r = c.recv().await;
    assert_eq!(r.resources.len(), 1000);
    let _ = Cluster::default();
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let srv = TestServer::start().await;
    srv.cache
        .set_snapshot("n", snap_of(&[service("a", 1, 100, 1)], "v1"))
        .unwrap();
    let mut c = srv.sotw("n").await;
    c.send(CLUSTER_TYPE, &[], "", "").await;
    c.recv().await;
    let cache = srv.cache.clone();
    srv.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        cache.node_status("n").unwrap().streams,
        0,
        "server side ended"
    );
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.resp.stream().await.message(),
    )
    .await
    .unwrap();
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "stream must end on shutdown"
    );
}

#[tokio::test]
async fn default_snapshots_per_node_class_and_pinned_nodes() {
    use plexus_xds::envoy_types::pb::envoy::config::core::v3::Node;
    use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    let srv = TestServer::start().await;
    let envoy_snap = snap_of(&[service("a", 1, 100, 1)], "envoy");
    let grpc_snap = snap_of(&[service("a", 1, 100, 1), service("g", 2, 200, 1)], "grpc");
    srv.cache.set_default_snapshot(envoy_snap.clone()).unwrap();
    srv.cache
        .set_default_snapshot_for("grpc", grpc_snap.clone())
        .unwrap();
    let pinned = snap_of(&[service("p", 3, 300, 1)], "pinned");
    srv.cache.set_snapshot("pinned", pinned.clone()).unwrap();
    // A node's class comes from its user agent on its first request.
    let first = |id: &str, ua: &str| DiscoveryRequest {
        node: Some(Node {
            id: id.into(),
            user_agent_name: ua.into(),
            ..Default::default()
        }),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    };
    let mut e = srv.sotw("unused").await;
    e.tx.send(first("e1", "envoy")).await.unwrap();
    assert_eq!(
        e.recv().await.version_info,
        envoy_snap.version(ResourceType::Cluster)
    );
    let mut g = srv.sotw("unused").await;
    g.tx.send(first("g1", "gRPC Python")).await.unwrap();
    assert_eq!(
        g.recv().await.version_info,
        grpc_snap.version(ResourceType::Cluster)
    );
    let mut p = srv.sotw("unused").await;
    p.tx.send(first("pinned", "gRPC Python")).await.unwrap();
    assert_eq!(
        p.recv().await.version_info,
        pinned.version(ResourceType::Cluster)
    );
    // A new default reaches the connected nodes of its class only.
    let envoy2 = snap_of(
        &[service("a", 1, 100, 1), service("b", 2, 200, 1)],
        "envoy2",
    );
    srv.cache.set_default_snapshot(envoy2.clone()).unwrap();
    let r = e.recv().await;
    assert_eq!(r.version_info, envoy2.version(ResourceType::Cluster));
    g.silent(200).await;
    p.silent(200).await;
    srv.stop().await;
}
