//! Prometheus metrics (prometheus-client).

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponderLabels {
    chassis: String,
    result: &'static str,
}

/// The controller's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<HttpLabels, Counter>,
    latency: Histogram,
    objects: Family<KindLabels, Gauge>,
    revision: Gauge,
    responder: Family<ResponderLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("plexus_controller");
        let requests = Family::<HttpLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let objects = Family::<KindLabels, Gauge>::default();
        let revision = Gauge::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register("objects", "Model objects in the store", objects.clone());
        registry.register(
            "store_revision",
            "Latest committed store revision",
            revision.clone(),
        );
        let responder = Family::<ResponderLabels, Counter>::default();
        registry.register(
            "responder_packet_ins",
            "Responder packet-ins (NXT_PACKET_IN2 from Open vSwitch chassis) by chassis and \
             result: replied, dropped (by the responder), rate_limited (over the per-port \
             limit); counted per switch session (a reconnect resets them)",
            responder.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            objects,
            revision,
            responder,
        }
    }

    /// Text exposition, after refreshing the store gauges.
    pub fn render(
        &self,
        revision: u64,
        counts: &[(String, u64)],
        sync: &std::collections::BTreeMap<String, plexus_api::ChassisSync>,
    ) -> String {
        self.revision.set(revision as i64);
        for (chassis, s) in sync {
            for (result, n) in [
                ("replied", s.responder_replies),
                ("dropped", s.responder_drops),
                ("rate_limited", s.responder_rate_limited),
            ] {
                self.responder
                    .get_or_create(&ResponderLabels {
                        chassis: chassis.clone(),
                        result,
                    })
                    .inner()
                    .store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for (k, n) in counts {
            self.objects
                .get_or_create(&KindLabels { kind: k.clone() })
                .set(*n as i64);
        }
        let mut s = String::new();
        let reg = self.registry.lock().unwrap();
        prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
        s
    }
}

/// Middleware counting requests by method, matched route and status.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    st.metrics.latency.observe(t0.elapsed().as_secs_f64());
    st.metrics
        .requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}
