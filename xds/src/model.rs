//! The typed service model the controller feeds into xDS.

use std::net::IpAddr;
use std::time::Duration;

/// A service: VIP:port in front of weighted backends, with a traffic policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    /// Unique name; becomes the cluster, route and (for gRPC) listener name.
    pub name: String,
    /// Virtual IP Envoy listens on (outbound sidecar listener).
    pub vip: IpAddr,
    /// Port on the VIP.
    pub port: u16,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Traffic policy.
    #[serde(default)]
    pub policy: TrafficPolicy,
}

/// Locality of a backend.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    #[serde(default)]
    pub sub_zone: String,
}

/// One backend endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Backend {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
    /// Health as known to the controller.
    pub healthy: bool,
    /// Locality.
    #[serde(default)]
    pub locality: Locality,
    /// Subset label (e.g. "v1", "canary"), the unit of traffic splits.
    #[serde(default)]
    pub subset: String,
}

impl Backend {
    /// A healthy backend of weight 1 in the default locality and subset.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        Self {
            addr,
            port,
            weight: 1,
            healthy: true,
            locality: Locality::default(),
            subset: String::new(),
        }
    }
}

/// Per-service traffic policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrafficPolicy {
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (route timeout; gRPC: max stream duration).
    pub request_timeout: Option<Duration>,
    /// Retries.
    pub retries: Option<RetryPolicy>,
    /// Weighted split over backend subsets; empty = all backends in one cluster.
    pub split: Vec<Split>,
    /// Circuit breaker thresholds.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Outlier detection (passive health).
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health check.
    pub health_check: Option<HealthCheck>,
    /// Fault injection.
    pub fault: Option<Fault>,
}

impl Default for TrafficPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: None,
            retries: None,
            split: Vec::new(),
            circuit_breaker: None,
            outlier_detection: None,
            health_check: None,
            fault: None,
        }
    }
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Envoy `retry_on` (e.g. `5xx,connect-failure`; gRPC: `unavailable,cancelled`).
    pub retry_on: String,
    /// Number of retries.
    pub num_retries: u32,
    /// Per-try timeout.
    pub per_try_timeout: Option<Duration>,
}

/// One arm of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// Backend subset label.
    pub subset: String,
    /// Relative weight (e.g. 99 and 1 for a canary).
    pub weight: u32,
}

/// Circuit breaker thresholds (default priority).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CircuitBreaker {
    /// Max upstream connections.
    pub max_connections: u32,
    /// Max pending requests.
    pub max_pending_requests: u32,
    /// Max concurrent requests.
    pub max_requests: u32,
    /// Max concurrent retries.
    pub max_retries: u32,
}

/// Outlier detection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutlierDetection {
    /// Consecutive 5xx before ejection.
    pub consecutive_5xx: u32,
    /// Analysis interval.
    pub interval: Duration,
    /// Base ejection time.
    pub base_ejection_time: Duration,
    /// Max percent of hosts ejected.
    pub max_ejection_percent: u32,
}

/// Active health check (HTTP if `http_path` is set, else TCP connect).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    /// Interval.
    pub interval: Duration,
    /// Timeout.
    pub timeout: Duration,
    /// Failures before unhealthy.
    pub unhealthy_threshold: u32,
    /// Successes before healthy.
    pub healthy_threshold: u32,
    /// HTTP path; `None` = TCP health check.
    pub http_path: Option<String>,
}

/// Fault injection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    /// Fixed delay and the percentage of requests delayed.
    pub delay: Option<(Duration, u32)>,
    /// HTTP status to abort with and the percentage of requests aborted.
    pub abort: Option<(u32, u32)>,
}
