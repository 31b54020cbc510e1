//! The xDS gRPC server: ADS and per-type services, state-of-the-world and delta.
//!
//! Each stream is one task that reads requests and watches its node's snapshot.
//! Protocol rules implemented (xDS protocol spec, v3):
//! - SotW: a request whose `response_nonce` is not the last nonce sent for that type on
//!   this stream is stale and ignored. A request with the current nonce is an ACK (no
//!   `error_detail`) or a NACK (`error_detail` set). Neither triggers a resend unless the
//!   subscribed names changed; a NACKed version is never resent — the next response of
//!   that type carries a newer snapshot. A request without nonce (first on the stream,
//!   e.g. after reconnect) is always answered once a snapshot exists.
//! - Delta: per-resource versions; only changed resources are sent, deletions go in
//!   `removed_resources`; names subscribed but absent are reported removed once.
//!   A NACK is recorded and the rejected versions are not resent.
//! - ADS push order on snapshot change: CDS, EDS, LDS, RDS.
//! - Unknown type URLs are counted and ignored on ADS (the stream stays up); a per-type
//!   service rejects a foreign type URL with `InvalidArgument`.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{ControlPlane, Node};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::SnapshotCache;
use crate::resource::{ResourceType, Snapshot};
use crate::wire::WireResponse;

type RespStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type WireStream = RespStream<WireResponse>;

fn decoded<T>(s: WireStream, f: fn(&WireResponse) -> Result<T, prost::DecodeError>) -> RespStream<T>
where
    T: Send + 'static,
{
    use futures::StreamExt;
    Box::pin(s.map(move |r| r.and_then(|w| f(&w).map_err(|e| Status::internal(e.to_string())))))
}

/// Identifier sent as `control_plane.identifier`.
pub const CONTROL_PLANE_ID: &str = "plexus-xds";
const ABSENT: &str = "";

/// The xDS server; cheap to clone (shares the cache).
#[derive(Debug, Clone)]
pub struct XdsServer {
    cache: Arc<SnapshotCache>,
    /// Set when the server shuts down: every stream then ends (status OK) so that
    /// tonic's graceful shutdown is not held up by long-lived xDS streams.
    closing: Arc<watch::Sender<bool>>,
}

impl XdsServer {
    /// A server streaming snapshots from `cache`.
    pub fn new(cache: Arc<SnapshotCache>) -> Self {
        Self {
            cache,
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Ends every open stream (clients reconnect, e.g. to another replica).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<SnapshotCache> {
        &self.cache
    }

    /// The ADS service [`XdsServer::router`] mounts, callable in process (fuzzing).
    pub(crate) fn ads_service(&self) -> AdsService {
        AdsService(self.clone())
    }

    /// A tonic router with ADS and the LDS/RDS/CDS/EDS services.
    pub fn router(&self) -> tonic::transport::server::Router {
        use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::ClusterDiscoveryServiceServer;
        use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::EndpointDiscoveryServiceServer;
        use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::ListenerDiscoveryServiceServer;
        use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryServiceServer;
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(AdsService(self.clone()))
            .add_service(ClusterDiscoveryServiceServer::new(self.clone()))
            .add_service(EndpointDiscoveryServiceServer::new(self.clone()))
            .add_service(ListenerDiscoveryServiceServer::new(self.clone()))
            .add_service(RouteDiscoveryServiceServer::new(self.clone()))
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve_with_listener(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let closing = self.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        self.router()
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// Serves on a stream of connections (e.g. TLS streams) until `shutdown` resolves.
    pub async fn serve_with_incoming<I, IO, IE>(
        &self,
        incoming: I,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error>
    where
        I: futures::Stream<Item = Result<IO, IE>> + Send,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let closing = self.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        self.router()
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    fn sotw(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
        fixed: Option<ResourceType>,
    ) -> WireStream {
        let (tx, rx) = mpsc::channel(16);
        let cache = self.cache.clone();
        let closing = self.closing.subscribe();
        tokio::spawn(SotwStream::new(cache, closing, tx, fixed).serve(req.into_inner()));
        Box::pin(ReceiverStream::new(rx))
    }

    fn delta(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
        fixed: Option<ResourceType>,
    ) -> WireStream {
        let (tx, rx) = mpsc::channel(16);
        let cache = self.cache.clone();
        let closing = self.closing.subscribe();
        tokio::spawn(DeltaStream::new(cache, closing, tx, fixed).serve(req.into_inner()));
        Box::pin(ReceiverStream::new(rx))
    }

    fn fetch(&self, req: DiscoveryRequest, ty: ResourceType) -> Result<DiscoveryResponse, Status> {
        let node = req.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let snap = self
            .cache
            .snapshot(&node)
            .ok_or_else(|| Status::unavailable("no snapshot for node"))?;
        let t = snap.get(ty);
        if req.version_info == t.version {
            return Err(Status::new(tonic::Code::Unavailable, "up to date"));
        }
        let sub = Subscription::sotw(ty, &req.resource_names);
        Ok(DiscoveryResponse {
            version_info: t.version.clone(),
            resources: sub
                .select(&snap, ty)
                .into_iter()
                .map(|r| r.any.clone())
                .collect(),
            type_url: ty.type_url().into(),
            control_plane: Some(ControlPlane {
                identifier: CONTROL_PLANE_ID.into(),
            }),
            ..Default::default()
        })
    }
}

/// A SotW subscription: wildcard and/or explicit names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
}

impl Subscription {
    fn sotw(ty: ResourceType, names: &[String]) -> Self {
        let mut s = Subscription::default();
        for n in names {
            if n == "*" {
                s.wildcard = true;
            } else {
                s.names.insert(n.clone());
            }
        }
        if names.is_empty() && ty.wildcard_by_default() {
            s.wildcard = true;
        }
        s
    }

    fn select<'a>(
        &self,
        snap: &'a Snapshot,
        ty: ResourceType,
    ) -> Vec<&'a crate::resource::EncodedResource> {
        let items = &snap.get(ty).items;
        if self.wildcard {
            items.values().map(|r| r.as_ref()).collect()
        } else {
            // Both sides are sorted: merge instead of one map lookup per name.
            let mut out = Vec::with_capacity(self.names.len().min(items.len()));
            let mut it = items.iter().peekable();
            for n in &self.names {
                while it.next_if(|(k, _)| k.as_str() < n.as_str()).is_some() {}
                if let Some((_, r)) = it.next_if(|(k, _)| *k == n) {
                    out.push(r.as_ref());
                }
            }
            out
        }
    }
}

/// The resource type a request is about. A per-type service (`fixed`) fills
/// in an empty type URL and rejects any other type; on ADS an unknown type
/// URL is counted and ignored (`Ok(None)`), keeping the stream open.
fn resolve_type(
    fixed: Option<ResourceType>,
    type_url: &mut String,
    cache: &SnapshotCache,
    node: &crate::cache::NodeRef,
) -> Result<Option<ResourceType>, Status> {
    if type_url.is_empty()
        && let Some(f) = fixed
    {
        *type_url = f.type_url().into();
    }
    let unexpected = || Status::invalid_argument(format!("unexpected type URL {type_url:?}"));
    match (ResourceType::from_type_url(type_url), fixed) {
        (None, Some(_)) => Err(unexpected()),
        (None, None) => {
            cache.record_unknown_type(node, type_url);
            Ok(None)
        }
        (Some(ty), Some(f)) if f != ty => Err(unexpected()),
        (Some(ty), _) => Ok(Some(ty)),
    }
}

fn node_class_of(node: &Option<Node>) -> &'static str {
    node.as_ref().map(crate::cache::node_class).unwrap_or("")
}

fn node_id(node: &Option<Node>) -> String {
    node.as_ref().map(|n| n.id.clone()).unwrap_or_default()
}

#[derive(Debug, Default)]
struct SotwType {
    subscribed: bool,
    sub: Subscription,
    /// `resource_names` of the request that set `sub`.
    raw_names: Vec<String>,
    nonce: String,
    sent_version: Option<String>,
}

/// What differs between the state-of-the-world and the incremental (delta)
/// variants of an ADS stream; [`XdsStream`] has the rest.
trait Variant: Sized {
    type Request: Send + 'static;
    /// Per resource type: the subscription and what was sent.
    type TypeState: Default + Send;
    fn node(req: &Self::Request) -> &Option<Node>;
    /// Takes one request (subscription change, ACK or NACK).
    fn handle(
        s: &mut XdsStream<Self>,
        req: Self::Request,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send;
    /// The node's snapshot changed: send every subscribed type what changed.
    fn push(
        s: &mut XdsStream<Self>,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send;
}

/// One ADS stream of either variant.
struct XdsStream<V: Variant> {
    cache: Arc<SnapshotCache>,
    closing: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<WireResponse, Status>>,
    fixed: Option<ResourceType>,
    node: crate::cache::NodeRef,
    snap: Option<Arc<Snapshot>>,
    types: [V::TypeState; 4],
    nonce: u64,
}

impl<V: Variant> XdsStream<V>
where
    Streaming<V::Request>: Send,
{
    fn new(
        cache: Arc<SnapshotCache>,
        closing: watch::Receiver<bool>,
        tx: mpsc::Sender<Result<WireResponse, Status>>,
        fixed: Option<ResourceType>,
    ) -> Self {
        Self {
            cache,
            closing,
            tx,
            fixed,
            node: Default::default(),
            snap: None,
            types: Default::default(),
            nonce: 0,
        }
    }

    /// Runs the stream; an error ends it with that status.
    async fn serve(mut self, reqs: Streaming<V::Request>) {
        if let Err(e) = self.run(reqs).await {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn run(&mut self, mut reqs: Streaming<V::Request>) -> Result<(), Status> {
        let Some(first) = reqs.message().await? else {
            return Ok(());
        };
        let (mut rx, node) = self
            .cache
            .stream_opened(&node_id(V::node(&first)), node_class_of(V::node(&first)));
        self.node = node;
        self.snap = rx.borrow_and_update().clone();
        let mut closing = self.closing.clone();
        let res = async {
            V::handle(self, first).await?;
            loop {
                tokio::select! {
                    m = reqs.message() => match m? {
                        Some(r) => V::handle(self, r).await?,
                        None => return Ok(()),
                    },
                    _ = async { closing.wait_for(|c| *c).await.is_ok() } => return Ok(()),
                    c = rx.changed() => {
                        if c.is_err() {
                            return Ok(());
                        }
                        self.snap = rx.borrow_and_update().clone();
                        V::push(self).await?;
                    }
                }
            }
        }
        .await;
        self.cache.stream_closed(&self.node);
        res
    }
}

/// State of the world: every response carries all subscribed resources.
struct Sotw;
type SotwStream = XdsStream<Sotw>;

impl Variant for Sotw {
    type Request = DiscoveryRequest;
    type TypeState = SotwType;
    fn node(req: &DiscoveryRequest) -> &Option<Node> {
        &req.node
    }
    async fn handle(s: &mut SotwStream, req: DiscoveryRequest) -> Result<(), Status> {
        s.handle(req).await
    }
    async fn push(s: &mut SotwStream) -> Result<(), Status> {
        for ty in ResourceType::ALL {
            s.respond(ty, false).await?;
        }
        Ok(())
    }
}

impl SotwStream {
    async fn handle(&mut self, mut req: DiscoveryRequest) -> Result<(), Status> {
        let Some(ty) = resolve_type(self.fixed, &mut req.type_url, &self.cache, &self.node)? else {
            return Ok(());
        };
        let st = &mut self.types[ty.idx()];
        // Most requests (ACKs) repeat the names of the previous one verbatim: compare the
        // raw list before building a set.
        let same_names = st.subscribed && st.raw_names == req.resource_names;
        let sub = if same_names {
            None
        } else {
            Some(Subscription::sotw(ty, &req.resource_names))
        };
        if st.subscribed && !req.response_nonce.is_empty() {
            if req.response_nonce != st.nonce {
                self.cache
                    .metrics
                    .stale_nonces
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    node = self.node.id,
                    ty = ty.short(),
                    nonce = req.response_nonce,
                    "stale nonce ignored"
                );
                return Ok(());
            }
            let sent = st.sent_version.clone().unwrap_or_default();
            match &req.error_detail {
                Some(e) => self.cache.record_nack(
                    &self.node,
                    ty,
                    &sent,
                    &req.response_nonce,
                    e.code,
                    &e.message,
                ),
                None => self.cache.record_ack(&self.node, ty, &req.version_info),
            }
            match sub {
                Some(sub) if sub != st.sub => {
                    st.sub = sub;
                    st.raw_names = req.resource_names;
                }
                Some(_) => {
                    st.raw_names = req.resource_names;
                    return Ok(());
                }
                None => return Ok(()),
            }
        } else {
            st.subscribed = true;
            if let Some(sub) = sub {
                st.sub = sub;
                st.raw_names = req.resource_names;
            }
        }
        self.respond(ty, true).await
    }

    /// Sends the current set of `ty` if forced (new request) or if its version changed.
    async fn respond(&mut self, ty: ResourceType, force: bool) -> Result<(), Status> {
        let st = &mut self.types[ty.idx()];
        let Some(snap) = self.snap.clone() else {
            return Ok(());
        };
        if !st.subscribed {
            return Ok(());
        }
        let version = snap.version(ty);
        if !force && st.sent_version.as_deref() == Some(version) {
            return Ok(());
        }
        self.nonce += 1;
        st.nonce = self.nonce.to_string();
        st.sent_version = Some(version.to_string());
        let head = DiscoveryResponse {
            version_info: version.to_string(),
            type_url: ty.type_url().into(),
            nonce: st.nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: CONTROL_PLANE_ID.into(),
            }),
            ..Default::default()
        };
        let parts = st
            .sub
            .select(&snap, ty)
            .into_iter()
            .map(|r| r.sotw_entry.clone())
            .collect();
        let resp = WireResponse::sotw(&head, parts);
        tracing::debug!(
            node = self.node.id,
            ty = ty.short(),
            version,
            n = resp.resource_count(),
            nonce = head.nonce,
            "SotW response"
        );
        self.cache.record_sent(&self.node, ty, version);
        self.tx
            .send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("stream closed"))
    }
}

#[derive(Debug, Default)]
struct DeltaType {
    subscribed: bool,
    answered: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client has: name → version (`ABSENT` = told it does not exist).
    sent: BTreeMap<String, String>,
    nonce: String,
    sent_version: String,
    /// The subscription changed since the last reconciliation.
    dirty: bool,
    /// Type version the last reconciliation was against.
    synced_version: String,
}

/// Incremental: responses carry what changed and what was removed.
struct Delta;
type DeltaStream = XdsStream<Delta>;

impl Variant for Delta {
    type Request = DeltaDiscoveryRequest;
    type TypeState = DeltaType;
    fn node(req: &DeltaDiscoveryRequest) -> &Option<Node> {
        &req.node
    }
    async fn handle(s: &mut DeltaStream, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        s.handle(req).await
    }
    async fn push(s: &mut DeltaStream) -> Result<(), Status> {
        for ty in ResourceType::ALL {
            s.respond(ty).await?;
        }
        Ok(())
    }
}

impl DeltaStream {
    async fn handle(&mut self, mut req: DeltaDiscoveryRequest) -> Result<(), Status> {
        let Some(ty) = resolve_type(self.fixed, &mut req.type_url, &self.cache, &self.node)? else {
            return Ok(());
        };
        let st = &mut self.types[ty.idx()];
        if !req.resource_names_subscribe.is_empty() || !req.resource_names_unsubscribe.is_empty() {
            st.dirty = true;
        }
        if !st.subscribed {
            st.subscribed = true;
            st.dirty = true;
            st.sent = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if req.resource_names_subscribe.is_empty() {
                st.wildcard = true;
            }
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                st.wildcard = true;
            } else {
                st.names.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                st.wildcard = false;
            } else {
                st.names.remove(n);
                st.sent.remove(n);
            }
        }
        if !req.response_nonce.is_empty() {
            if req.response_nonce == st.nonce {
                let v = st.sent_version.clone();
                match &req.error_detail {
                    Some(e) => self.cache.record_nack(
                        &self.node,
                        ty,
                        &v,
                        &req.response_nonce,
                        e.code,
                        &e.message,
                    ),
                    None => self.cache.record_ack(&self.node, ty, &v),
                }
            } else {
                self.cache
                    .metrics
                    .stale_nonces
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.respond(ty).await
    }

    async fn respond(&mut self, ty: ResourceType) -> Result<(), Status> {
        let st = &mut self.types[ty.idx()];
        let Some(snap) = self.snap.clone() else {
            return Ok(());
        };
        if !st.subscribed {
            return Ok(());
        }
        let t = snap.get(ty);
        // Nothing to do when this type's content is what we last reconciled against and
        // the subscription did not change (most streams on most snapshot changes).
        if st.answered && !st.dirty && st.synced_version == t.version {
            return Ok(());
        }
        st.dirty = false;
        st.synced_version.clone_from(&t.version);
        let DeltaType {
            names,
            sent,
            wildcard,
            ..
        } = st;
        let mut removed = Vec::new();
        sent.retain(|n, v| {
            if t.items.contains_key(n) || v == ABSENT {
                return true;
            }
            removed.push(n.clone());
            if names.contains(n) {
                ABSENT.clone_into(v);
                true
            } else {
                false
            }
        });
        for n in names.iter() {
            if !t.items.contains_key(n) && !sent.contains_key(n) {
                removed.push(n.clone());
                sent.insert(n.clone(), ABSENT.into());
            }
        }
        let mut resources = Vec::new();
        let mut want = |n: &String, r: &Arc<crate::resource::EncodedResource>| {
            if sent.get(n) != Some(&r.version) {
                resources.push(r.delta_entry.clone());
                sent.insert(n.clone(), r.version.clone());
            }
        };
        if *wildcard {
            for (n, r) in &t.items {
                want(n, r);
            }
        } else {
            for n in names.iter() {
                if let Some(r) = t.items.get(n) {
                    want(n, r);
                }
            }
        }
        if resources.is_empty() && removed.is_empty() && st.answered {
            return Ok(());
        }
        st.answered = true;
        self.nonce += 1;
        st.nonce = self.nonce.to_string();
        st.sent_version = t.version.clone();
        let head = DeltaDiscoveryResponse {
            system_version_info: t.version.clone(),
            type_url: ty.type_url().into(),
            removed_resources: removed,
            nonce: st.nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: CONTROL_PLANE_ID.into(),
            }),
            ..Default::default()
        };
        tracing::debug!(
            node = self.node.id,
            ty = ty.short(),
            n = resources.len(),
            removed = head.removed_resources.len(),
            "delta response"
        );
        let resp = WireResponse::delta(&head, resources);
        self.cache.record_sent(&self.node, ty, &t.version);
        self.tx
            .send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("stream closed"))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = RespStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = RespStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(decoded(
            self.sotw(request, None),
            WireResponse::to_sotw,
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(decoded(
            self.delta(request, None),
            WireResponse::to_delta,
        )))
    }
}

macro_rules! per_type_service {
    ($tr:path, $ty:expr, $sotw_ty:ident, $sotw:ident, $delta_ty:ident, $delta:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $tr for XdsServer {
            type $sotw_ty = RespStream<DiscoveryResponse>;
            type $delta_ty = RespStream<DeltaDiscoveryResponse>;

            async fn $sotw(
                &self,
                request: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<Self::$sotw_ty>, Status> {
                Ok(Response::new(decoded(
                    self.sotw(request, Some($ty)),
                    WireResponse::to_sotw,
                )))
            }

            async fn $delta(
                &self,
                request: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<Self::$delta_ty>, Status> {
                Ok(Response::new(decoded(
                    self.delta(request, Some($ty)),
                    WireResponse::to_delta,
                )))
            }

            async fn $fetch(
                &self,
                request: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                self.fetch(request.into_inner(), $ty).map(Response::new)
            }
        }
    };
}

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server as cds;
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server as eds;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server as lds;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server as rds;

per_type_service!(
    cds::ClusterDiscoveryService,
    ResourceType::Cluster,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters
);
per_type_service!(
    eds::EndpointDiscoveryService,
    ResourceType::Endpoint,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints
);
per_type_service!(
    lds::ListenerDiscoveryService,
    ResourceType::Listener,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners
);
per_type_service!(
    rds::RouteDiscoveryService,
    ResourceType::Route,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes
);

/// The ADS service as mounted by [`XdsServer::router`]: like the generated
/// `AggregatedDiscoveryServiceServer`, but its responses are [`WireResponse`]s, so the
/// resources' bytes encoded once per snapshot go to every stream without re-encoding.
#[derive(Debug, Clone)]
pub(crate) struct AdsService(XdsServer);

impl tonic::server::NamedService for AdsService {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

struct SotwMethod(XdsServer);
struct DeltaMethod(XdsServer);

impl tonic::server::StreamingService<DiscoveryRequest> for SotwMethod {
    type Response = WireResponse;
    type ResponseStream = WireStream;
    type Future = futures::future::Ready<Result<Response<WireStream>, Status>>;
    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        futures::future::ready(Ok(Response::new(self.0.sotw(request, None))))
    }
}

impl tonic::server::StreamingService<DeltaDiscoveryRequest> for DeltaMethod {
    type Response = WireResponse;
    type ResponseStream = WireStream;
    type Future = futures::future::Ready<Result<Response<WireStream>, Status>>;
    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        futures::future::ready(Ok(Response::new(self.0.delta(request, None))))
    }
}

/// Largest request accepted (a subscription to many names).
const MAX_REQUEST: usize = 64 << 20;

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for AdsService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let server = self.0.clone();
        match req.uri().path() {
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources" => {
                Box::pin(async move {
                    let codec =
                        tonic_prost::ProstCodec::<WireResponse, DiscoveryRequest>::default();
                    let mut grpc = tonic::server::Grpc::new(codec)
                        .apply_max_message_size_config(Some(MAX_REQUEST), None);
                    Ok(grpc.streaming(SotwMethod(server), req).await)
                })
            }
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources" => {
                Box::pin(async move {
                    let codec =
                        tonic_prost::ProstCodec::<WireResponse, DeltaDiscoveryRequest>::default();
                    let mut grpc = tonic::server::Grpc::new(codec)
                        .apply_max_message_size_config(Some(MAX_REQUEST), None);
                    Ok(grpc.streaming(DeltaMethod(server), req).await)
                })
            }
            _ => Box::pin(
                async move { Ok(tonic::Status::unimplemented("no such method").into_http()) },
            ),
        }
    }
}
