#![allow(dead_code)]
//! Shared helpers: start a server on 127.0.0.1:0, scripted ADS clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plexus_xds::envoy_types::pb::envoy::config::core::v3::Node;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use plexus_xds::model::{Backend, Service};
use plexus_xds::{SnapshotCache, XdsServer};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub struct TestServer {
    pub addr: SocketAddr,
    pub cache: Arc<SnapshotCache>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let cache = SnapshotCache::new();
        let server = XdsServer::new(cache.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve_with_listener(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            cache,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            // Graceful shutdown also waits for clients still holding their request
            // half open; don't wait for test clients that are still in scope.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    pub async fn client(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn sotw(&self, node: &str) -> SotwClient {
        let (tx, rx) = mpsc::channel(64);
        let mut c = self.client().await;
        let node = Node {
            id: node.into(),
            cluster: "test".into(),
            ..Default::default()
        };
        let resp =
            tokio::spawn(
                async move { c.stream_aggregated_resources(ReceiverStream::new(rx)).await },
            );
        SotwClient {
            tx,
            resp: Pending::Wait(resp),
            node: Some(node),
        }
    }

    pub async fn delta(&self, node: &str) -> DeltaClient {
        let (tx, rx) = mpsc::channel(64);
        let mut c = self.client().await;
        let node = Node {
            id: node.into(),
            cluster: "test".into(),
            ..Default::default()
        };
        let resp =
            tokio::spawn(
                async move { c.delta_aggregated_resources(ReceiverStream::new(rx)).await },
            );
        DeltaClient {
            tx,
            resp: Pending::Wait(resp),
            node: Some(node),
        }
    }
}

type Handle<T> = tokio::task::JoinHandle<Result<tonic::Response<Streaming<T>>, tonic::Status>>;

pub enum Pending<T> {
    Wait(Handle<T>),
    Ready(Box<Streaming<T>>),
}

impl<T> Pending<T> {
    pub async fn stream(&mut self) -> &mut Streaming<T> {
        if let Pending::Wait(h) = self {
            let s = h.await.unwrap().unwrap().into_inner();
            *self = Pending::Ready(Box::new(s));
        }
        match self {
            Pending::Ready(s) => s,
            Pending::Wait(_) => unreachable!(),
        }
    }
}

pub struct SotwClient {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    pub resp: Pending<DiscoveryResponse>,
    node: Option<Node>,
}

impl SotwClient {
    /// Sends a request; the node goes on the first message only.
    pub async fn send(&mut self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        self.send_req(DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        })
        .await;
    }

    pub async fn send_req(&mut self, mut r: DiscoveryRequest) {
        r.node = self.node.take();
        self.tx.send(r).await.unwrap();
    }

    pub async fn ack(&mut self, r: &DiscoveryResponse, names: &[&str]) {
        self.send(&r.type_url, names, &r.version_info, &r.nonce)
            .await;
    }

    pub async fn nack(
        &mut self,
        r: &DiscoveryResponse,
        names: &[&str],
        last_good: &str,
        msg: &str,
    ) {
        self.send_req(DiscoveryRequest {
            type_url: r.type_url.clone(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: last_good.into(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(plexus_xds::envoy_types::pb::google::rpc::Status {
                code: 3,
                message: msg.into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        let s = self.resp.stream().await;
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("response timeout")
            .unwrap()
            .expect("stream ended")
    }

    /// Asserts nothing arrives for `ms` milliseconds.
    pub async fn silent(&mut self, ms: u64) {
        let s = self.resp.stream().await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(ms), s.message()).await {
            panic!(
                "expected no response, got {:?}",
                m.map(|o| o.map(|r| (r.type_url, r.version_info, r.nonce)))
            );
        }
    }

    pub async fn status_err(&mut self) -> tonic::Status {
        let s = self.resp.stream().await;
        match tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .unwrap()
        {
            Err(e) => e,
            Ok(m) => panic!("expected error, got {:?}", m.map(|r| r.type_url)),
        }
    }
}

pub struct DeltaClient {
    pub tx: mpsc::Sender<DeltaDiscoveryRequest>,
    pub resp: Pending<DeltaDiscoveryResponse>,
    node: Option<Node>,
}

impl DeltaClient {
    pub async fn send_req(&mut self, mut r: DeltaDiscoveryRequest) {
        r.node = self.node.take();
        self.tx.send(r).await.unwrap();
    }

    pub async fn subscribe(&mut self, type_url: &str, sub: &[&str], unsub: &[&str], nonce: &str) {
        self.send_req(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        })
        .await;
    }

    pub async fn ack(&mut self, r: &DeltaDiscoveryResponse) {
        self.subscribe(&r.type_url, &[], &[], &r.nonce).await;
    }

    pub async fn nack(&mut self, r: &DeltaDiscoveryResponse, msg: &str) {
        self.send_req(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(plexus_xds::envoy_types::pb::google::rpc::Status {
                code: 3,
                message: msg.into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        let s = self.resp.stream().await;
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("response timeout")
            .unwrap()
            .expect("stream ended")
    }

    pub async fn silent(&mut self, ms: u64) {
        let s = self.resp.stream().await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(ms), s.message()).await {
            panic!(
                "expected no response, got {:?}",
                m.map(|o| o.map(|r| (r.type_url, r.nonce)))
            );
        }
    }
}

/// A service with `n` backends on 127.0.0.1 starting at port `base`.
pub fn service(name: &str, vip_port: u16, base: u16, n: u16) -> Service {
    Service {
        name: name.into(),
        vip: "127.0.0.1".parse().unwrap(),
        port: vip_port,
        backends: (0..n)
            .map(|i| Backend::new("127.0.0.1".parse().unwrap(), base + i))
            .collect(),
        policy: Default::default(),
    }
}

pub fn names_of_clusters(r: &DiscoveryResponse) -> Vec<String> {
    use plexus_xds::envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    r.resources
        .iter()
        .map(|a| Cluster::decode(a.value.as_slice()).unwrap().name)
        .collect()
}

pub fn names_of_cla(r: &DiscoveryResponse) -> Vec<String> {
    use plexus_xds::envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Message;
    r.resources
        .iter()
        .map(|a| {
            ClusterLoadAssignment::decode(a.value.as_slice())
                .unwrap()
                .cluster_name
        })
        .collect()
}
