//! The controller's xDS feed: every stored service (with its traffic policy) becomes
//! clusters, endpoints, listeners and routes published to every connected proxy.
//!
//! On each store revision the whole service set is re-read and translated
//! ([`plexus_xds::translate`]); Envoy sidecars get listeners on each VIP:port, proxyless
//! gRPC clients (node class `grpc`) get `api_listener`s named like the service. The
//! snapshot is published as the cache's default, so proxies that connect later get it
//! too; an inconsistent snapshot is refused and reported in [`XdsFeedStatus`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_api::{PortSpec, ServiceProtocol, ServiceSpec};
use plexus_xds::model::{self, Backend, Service, TrafficPolicy};
use plexus_xds::translate::{envoy_resources, grpc_resources};
use plexus_xds::{Snapshot, SnapshotCache, XdsServer};
use serde::Serialize;

use crate::store::{AnyStore, Store, StoreError};

/// Publication state of the feed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XdsFeedStatus {
    /// Store revision of the snapshot currently published (0 = none yet).
    pub published_revision: u64,
    /// Services in that snapshot.
    pub services: usize,
    /// The last translation/publication error (an inconsistent snapshot), if any; the
    /// previous snapshot stays published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Services left out (e.g. UDP, or no backend address), with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
}

/// Shared state of the xDS feed (the REST API reads it).
#[derive(Debug)]
pub struct XdsState {
    /// The snapshot cache behind the xDS server.
    pub cache: Arc<SnapshotCache>,
    /// Feed status.
    pub feed: Mutex<XdsFeedStatus>,
}

impl XdsState {
    /// The JSON answered by `GET /v1/xds/status`: feed status plus per-node ACK/NACK state.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "feed": serde_json::to_value(&*self.feed.lock().unwrap()).unwrap_or_default(),
            "nodes": self.cache.status_json(),
        })
    }
}

/// The running feed: xDS server + publisher task. Dropping it stops both.
#[derive(Debug)]
pub struct XdsFeed {
    pub state: Arc<XdsState>,
    pub addr: SocketAddr,
    server: XdsServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for XdsFeed {
    fn drop(&mut self) {
        self.server.close_streams();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl XdsFeed {
    /// Serves xDS (ADS + per-type, SotW + delta) on `listen` and publishes the store's
    /// services on every revision.
    pub async fn start(store: impl Into<AnyStore>, listen: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with_tls(store, listen, None).await
    }

    /// As [`XdsFeed::start`]; with `tls`, xDS is served over mutual TLS only: proxies
    /// must present a certificate signed by the CA (ALPN `h2`).
    pub async fn start_with_tls(
        store: impl Into<AnyStore>,
        listen: SocketAddr,
        tls: Option<&plexus_pki::TlsFiles>,
    ) -> anyhow::Result<Self> {
        let store: AnyStore = store.into();
        let tls = tls
            .map(|f| plexus_pki::server_config(f, plexus_pki::ClientAuth::Required, &[b"h2"]))
            .transpose()?;
        let cache = SnapshotCache::new();
        let state = Arc::new(XdsState {
            cache: cache.clone(),
            feed: Mutex::new(XdsFeedStatus::default()),
        });
        let server = XdsServer::new(cache);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "xDS server listening");
        let srv = server.clone();
        let serve = match tls {
            None => tokio::spawn(async move {
                if let Err(e) = srv
                    .serve_with_listener(listener, std::future::pending())
                    .await
                {
                    tracing::error!(error = %e, "xDS server failed");
                }
            }),
            Some(cfg) => {
                let incoming =
                    crate::tls::grpc_incoming(plexus_pki::TlsListener::from_tcp(listener, cfg)?);
                tokio::spawn(async move {
                    if let Err(e) = srv
                        .serve_with_incoming(incoming, std::future::pending())
                        .await
                    {
                        tracing::error!(error = %e, "xDS (TLS) server failed");
                    }
                })
            }
        };
        let st = state.clone();
        let publish = tokio::spawn(async move {
            let mut rev = store.watch_revision();
            loop {
                let r = *rev.borrow_and_update();
                let s = store.clone();
                match tokio::task::spawn_blocking(move || services_from_store(&s)).await {
                    Ok(Ok((svcs, skipped))) => publish(&st, r, svcs, skipped),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "xDS: reading services");
                        st.feed.lock().unwrap().last_error = Some(e.to_string());
                    }
                    Err(e) => tracing::error!(error = %e, "xDS: reader task"),
                }
                if rev.changed().await.is_err() {
                    return;
                }
                // Coalesce bursts of writes.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Ok(Self {
            state,
            addr,
            server,
            tasks: vec![serve, publish],
        })
    }
}

fn publish(st: &XdsState, rev: u64, svcs: Vec<Service>, skipped: BTreeMap<String, String>) {
    let label = rev.to_string();
    let res = Snapshot::builder(label.clone())
        .resources(&envoy_resources(&svcs))
        .build()
        .and_then(|envoy| {
            let grpc = Snapshot::builder(label)
                .resources(&grpc_resources(&svcs))
                .build()?;
            st.cache.set_default_snapshot(envoy)?;
            st.cache.set_default_snapshot_for("grpc", grpc)
        });
    let mut f = st.feed.lock().unwrap();
    f.skipped = skipped;
    match res {
        Ok(()) => {
            f.published_revision = rev;
            f.services = svcs.len();
            f.last_error = None;
            tracing::debug!(rev, services = svcs.len(), "xDS snapshot published");
        }
        Err(e) => {
            tracing::warn!(rev, error = %e, "xDS snapshot refused");
            f.last_error = Some(e.to_string());
        }
    }
}

/// Reads services and the ports they reference; returns the xDS services (sorted by
/// service id, names made unique) and the services left out with the reason.
pub fn services_from_store(
    store: &impl Store,
) -> Result<(Vec<Service>, BTreeMap<String, String>), StoreError> {
    let recs = store.list("services", None, usize::MAX)?;
    let mut specs = Vec::new();
    let mut skipped = BTreeMap::new();
    for r in recs {
        match serde_json::from_value::<ServiceSpec>(r.value) {
            Ok(s) => specs.push((r.id, s)),
            Err(e) => {
                skipped.insert(r.id, format!("undecodable: {e}"));
            }
        }
    }
    let mut port_ips: BTreeMap<String, Option<IpAddr>> = BTreeMap::new();
    for (_, s) in &specs {
        for b in &s.backends {
            if let Some(pid) = &b.port_id
                && !port_ips.contains_key(pid)
            {
                let ip = store
                    .get("ports", pid)?
                    .and_then(|r| serde_json::from_value::<PortSpec>(r.value).ok())
                    .and_then(|p| p.ips.first().and_then(|ip| ip.parse().ok()));
                port_ips.insert(pid.clone(), ip);
            }
        }
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (id, s) in specs {
        match xds_service(&id, &s, |pid| port_ips.get(pid).copied().flatten()) {
            Ok(mut svc) => {
                if !names.insert(svc.name.clone()) {
                    svc.name = format!("{}.{id}", svc.name);
                    names.insert(svc.name.clone());
                }
                out.push(svc);
            }
            Err(why) => {
                skipped.insert(id, why);
            }
        }
    }
    Ok((out, skipped))
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(v.into())
}

/// One REST service as an xDS service; `port_ip` resolves a backend's `port_id`.
pub fn xds_service(
    id: &str,
    s: &ServiceSpec,
    port_ip: impl Fn(&str) -> Option<IpAddr>,
) -> Result<Service, String> {
    if s.protocol == ServiceProtocol::Udp {
        return Err("UDP services are not proxied by xDS sidecars".into());
    }
    let vip: IpAddr = s
        .vip
        .parse()
        .map_err(|_| format!("service {id}: bad vip"))?;
    let mut backends = Vec::new();
    for b in &s.backends {
        let addr = match (&b.ip, &b.port_id) {
            (Some(ip), _) => ip.parse().ok(),
            (None, Some(pid)) => port_ip(pid),
            (None, None) => None,
        };
        // A backend whose port has no address yet is left out (not an error).
        let Some(addr) = addr else { continue };
        let mut be = Backend::new(addr, b.target_port);
        be.weight = b.weight.max(1);
        be.subset = b.subset.clone().unwrap_or_default();
        // Reported unhealthy through the REST API (`backends[].healthy`): EDS marks it
        // UNHEALTHY, so proxies stop sending it requests, like the switches stop
        // sending it new connections.
        be.healthy = b.healthy;
        backends.push(be);
    }
    let mut policy = TrafficPolicy::default();
    if let Some(h) = &s.health_check {
        policy.health_check = Some(model::HealthCheck {
            interval: Duration::from_secs(h.interval_seconds.into()),
            timeout: Duration::from_secs(h.timeout_seconds.into()),
            unhealthy_threshold: h.unhealthy_threshold,
            healthy_threshold: h.healthy_threshold,
            http_path: h.http_path.clone(),
        });
    }
    if let Some(tp) = &s.traffic_policy {
        if let Some(v) = tp.connect_timeout_ms {
            policy.connect_timeout = ms(v);
        }
        policy.request_timeout = tp.request_timeout_ms.map(ms);
        policy.retries = tp.retries.as_ref().map(|r| model::RetryPolicy {
            retry_on: r.retry_on.clone(),
            num_retries: r.num_retries,
            per_try_timeout: r.per_try_timeout_ms.map(ms),
        });
        policy.split = tp
            .splits
            .iter()
            .map(|a| model::Split {
                subset: a.subset.clone(),
                weight: a.weight,
            })
            .collect();
        policy.circuit_breaker = tp.circuit_breaker.as_ref().map(|c| model::CircuitBreaker {
            max_connections: c.max_connections,
            max_pending_requests: c.max_pending_requests,
            max_requests: c.max_requests,
            max_retries: c.max_retries,
        });
        policy.outlier_detection = tp
            .outlier_detection
            .as_ref()
            .map(|o| model::OutlierDetection {
                consecutive_5xx: o.consecutive_5xx,
                interval: ms(o.interval_ms),
                base_ejection_time: ms(o.base_ejection_time_ms),
                max_ejection_percent: o.max_ejection_percent,
            });
        policy.fault = tp.fault.as_ref().map(|f| model::Fault {
            delay: f.delay.as_ref().map(|d| (ms(d.delay_ms), d.percent)),
            abort: f.abort.as_ref().map(|a| (a.http_status, a.percent)),
        });
    }
    Ok(Service {
        name: s.name.clone(),
        vip,
        port: s.port,
        backends,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_api::{Backend as ApiBackend, TrafficSplit};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            vpc_id: "v".into(),
            name: "web".into(),
            vip: "10.96.0.10".into(),
            port: 80,
            backends: vec![
                ApiBackend {
                    port_id: None,
                    ip: Some("10.0.0.5".into()),
                    target_port: 8080,
                    weight: 1,
                    subset: Some("v1".into()),
                    healthy: true,
                },
                ApiBackend {
                    port_id: Some("p2".into()),
                    ip: None,
                    target_port: 8080,
                    weight: 3,
                    subset: Some("v2".into()),
                    healthy: true,
                },
            ],
            traffic_policy: Some(plexus_api::TrafficPolicy {
                splits: vec![
                    TrafficSplit {
                        subset: "v1".into(),
                        weight: 99,
                    },
                    TrafficSplit {
                        subset: "v2".into(),
                        weight: 1,
                    },
                ],
                request_timeout_ms: Some(1500),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rest_service_translates_with_split_and_port_backends() {
        let s = xds_service("id1", &spec(), |p| {
            (p == "p2").then(|| "10.0.0.6".parse().unwrap())
        })
        .unwrap();
        assert_eq!(s.backends.len(), 2);
        assert_eq!(s.backends[1].addr.to_string(), "10.0.0.6");
        assert_eq!(s.backends[1].weight, 3);
        assert_eq!(s.policy.split.len(), 2);
        assert_eq!(s.policy.request_timeout, Some(Duration::from_millis(1500)));
        // Translates to a consistent snapshot: 1 + 2 subset clusters.
        let r = envoy_resources(&[s]);
        assert_eq!(r.clusters.len(), 3);
        Snapshot::builder("1")
            .resources(&r)
            .build()
            .unwrap()
            .check()
            .unwrap();
        // A port without an address: the backend is left out.
        let s = xds_service("id1", &spec(), |_| None).unwrap();
        assert_eq!(s.backends.len(), 1);
        let mut udp = spec();
        udp.protocol = ServiceProtocol::Udp;
        assert!(xds_service("id1", &udp, |_| None).is_err());
    }
}
