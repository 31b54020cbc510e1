//! Service model → Envoy v3 resources.
//!
//! Per service `S`:
//! - Cluster `S` (EDS over ADS) with every backend, plus Cluster `S/SUBSET` per split arm;
//!   connect timeout, circuit breakers, outlier detection and health checks from the policy.
//! - ClusterLoadAssignment per cluster: one locality per (region, zone, sub_zone) with
//!   `load_balancing_weight` = sum of its endpoint weights (> 0), endpoint weights and health.
//! - Envoy ([`envoy_resources`]): Listener `S@VIP:PORT` on VIP:port → HttpConnectionManager
//!   (RDS `S`, fault filter if any, router last); RouteConfiguration `S` with one route
//!   (cluster or weighted_clusters, timeout, retries).
//! - Proxyless gRPC ([`grpc_resources`]): Listener named exactly `S` with `api_listener` =
//!   HttpConnectionManager (RDS `S`, router last), as gRPC requires.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, HealthCheck, HealthStatus, Locality,
    SocketAddress, address, config_source, health_check, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, Listener, filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
    route, route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

use crate::model::{self, Service};

/// A translated resource set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// CDS.
    pub clusters: Vec<Cluster>,
    /// EDS.
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// LDS.
    pub listeners: Vec<Listener>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
}

impl Resources {
    /// Appends another set.
    pub fn extend(&mut self, o: Resources) {
        self.clusters.extend(o.clusters);
        self.endpoints.extend(o.endpoints);
        self.listeners.extend(o.listeners);
        self.routes.extend(o.routes);
    }
}

fn dur(d: Duration) -> PbDuration {
    PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn u32v(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A TCP socket address.
pub fn socket(ip: IpAddr, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn percent(p: u32) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator: p.min(100),
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    })
}

/// Cluster name of a split arm.
pub fn subset_cluster(service: &str, subset: &str) -> String {
    format!("{service}/{subset}")
}

/// Name of the Envoy listener of a service.
pub fn envoy_listener_name(s: &Service) -> String {
    format!("{}@{}:{}", s.name, s.vip, s.port)
}

fn cluster(s: &Service, name: &str) -> Cluster {
    let p = &s.policy;
    let mut c = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(dur(p.connect_timeout)),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    };
    if let Some(cb) = &p.circuit_breaker {
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: u32v(cb.max_connections),
                max_pending_requests: u32v(cb.max_pending_requests),
                max_requests: u32v(cb.max_requests),
                max_retries: u32v(cb.max_retries),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some(od) = &p.outlier_detection {
        c.outlier_detection = Some(OutlierDetection {
            consecutive_5xx: u32v(od.consecutive_5xx),
            interval: Some(dur(od.interval)),
            base_ejection_time: Some(dur(od.base_ejection_time)),
            max_ejection_percent: u32v(od.max_ejection_percent),
            ..Default::default()
        });
    }
    if let Some(hc) = &p.health_check {
        let checker = match &hc.http_path {
            Some(path) => {
                health_check::HealthChecker::HttpHealthCheck(health_check::HttpHealthCheck {
                    path: path.clone(),
                    ..Default::default()
                })
            }
            None => {
                health_check::HealthChecker::TcpHealthCheck(health_check::TcpHealthCheck::default())
            }
        };
        c.health_checks.push(HealthCheck {
            timeout: Some(dur(hc.timeout)),
            interval: Some(dur(hc.interval)),
            unhealthy_threshold: u32v(hc.unhealthy_threshold),
            healthy_threshold: u32v(hc.healthy_threshold),
            health_checker: Some(checker),
            ..Default::default()
        });
    }
    c
}

fn load_assignment<'a>(
    name: &str,
    backends: impl Iterator<Item = &'a model::Backend>,
) -> ClusterLoadAssignment {
    let mut by_loc: BTreeMap<model::Locality, Vec<&model::Backend>> = BTreeMap::new();
    for b in backends {
        by_loc.entry(b.locality.clone()).or_default().push(b);
    }
    let endpoints = by_loc
        .into_iter()
        .map(|(loc, bs)| {
            let weight: u32 = bs.iter().map(|b| b.weight.max(1)).sum();
            LocalityLbEndpoints {
                locality: Some(Locality {
                    region: loc.region,
                    zone: loc.zone,
                    sub_zone: loc.sub_zone,
                }),
                load_balancing_weight: u32v(weight.max(1)),
                lb_endpoints: bs
                    .into_iter()
                    .map(|b| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(socket(b.addr, b.port)),
                            ..Default::default()
                        })),
                        health_status: if b.healthy {
                            HealthStatus::Healthy
                        } else {
                            HealthStatus::Unhealthy
                        } as i32,
                        load_balancing_weight: u32v(b.weight.max(1)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints,
        ..Default::default()
    }
}

fn route_config(s: &Service) -> RouteConfiguration {
    let p = &s.policy;
    let cluster_specifier = if p.split.is_empty() {
        route_action::ClusterSpecifier::Cluster(s.name.clone())
    } else {
        route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: p
                .split
                .iter()
                .filter(|a| a.weight > 0)
                .map(|a| weighted_cluster::ClusterWeight {
                    name: subset_cluster(&s.name, &a.subset),
                    weight: u32v(a.weight),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    };
    let action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: p.request_timeout.map(dur),
        retry_policy: p.retries.as_ref().map(|r| RetryPolicy {
            retry_on: r.retry_on.clone(),
            num_retries: u32v(r.num_retries),
            per_try_timeout: r.per_try_timeout.map(dur),
            ..Default::default()
        }),
        max_stream_duration: p.request_timeout.map(|t| route_action::MaxStreamDuration {
            grpc_timeout_header_max: Some(dur(t)),
            ..Default::default()
        }),
        ..Default::default()
    };
    RouteConfiguration {
        name: s.name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: s.name.clone(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix(String::new())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(action)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn http_filters(s: &Service) -> Vec<HttpFilter> {
    let mut out = Vec::new();
    if let Some(f) = &s.policy.fault {
        let fault = HttpFault {
            delay: f.delay.map(|(d, pct)| FaultDelay {
                percentage: percent(pct),
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(dur(d))),
            }),
            abort: f.abort.map(|(status, pct)| FaultAbort {
                percentage: percent(pct),
                error_type: Some(fault_abort::ErrorType::HttpStatus(status)),
                ..Default::default()
            }),
            ..Default::default()
        };
        out.push(HttpFilter {
            name: "envoy.filters.http.fault".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(fault))),
            ..Default::default()
        });
    }
    out.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    });
    out
}

fn hcm(s: &Service) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: s.name.replace(['/', '@', ':', '.'], "_"),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: s.name.clone(),
        })),
        http_filters: http_filters(s),
        ..Default::default()
    }
}

/// Clusters and load assignments of one service (shared by Envoy and gRPC).
pub fn clusters(s: &Service) -> Resources {
    let mut r = Resources::default();
    r.clusters.push(cluster(s, &s.name));
    r.endpoints
        .push(load_assignment(&s.name, s.backends.iter()));
    for arm in &s.policy.split {
        let name = subset_cluster(&s.name, &arm.subset);
        if r.clusters.iter().any(|c| c.name == name) {
            continue;
        }
        r.clusters.push(cluster(s, &name));
        r.endpoints.push(load_assignment(
            &name,
            s.backends.iter().filter(|b| b.subset == arm.subset),
        ));
    }
    r.routes.push(route_config(s));
    r
}

/// Resources for Envoy sidecars: listener on each service's VIP:port.
pub fn envoy_resources(services: &[Service]) -> Resources {
    let mut out = Resources::default();
    for s in services {
        let mut r = clusters(s);
        r.listeners.push(Listener {
            name: envoy_listener_name(s),
            address: Some(socket(s.vip, s.port)),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm(s)))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        out.extend(r);
    }
    out
}

/// Resources for proxyless gRPC clients: `api_listener` named exactly like the service.
pub fn grpc_resources(services: &[Service]) -> Resources {
    let mut out = Resources::default();
    for s in services {
        let mut r = clusters(s);
        r.listeners.push(Listener {
            name: s.name.clone(),
            api_listener: Some(ApiListener {
                api_listener: Some(pack_any(hcm(s))),
            }),
            ..Default::default()
        });
        out.extend(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Split};
    use crate::resource::Snapshot;

    fn svc() -> Service {
        let mut a = Backend::new("127.0.0.1".parse().unwrap(), 8001);
        a.subset = "v1".into();
        let mut b = Backend::new("127.0.0.1".parse().unwrap(), 8002);
        b.subset = "v2".into();
        b.locality.zone = "z2".into();
        let mut s = Service {
            name: "web".into(),
            vip: "127.0.0.1".parse().unwrap(),
            port: 8080,
            backends: vec![a, b],
            policy: Default::default(),
        };
        s.policy.split = vec![
            Split {
                subset: "v1".into(),
                weight: 99,
            },
            Split {
                subset: "v2".into(),
                weight: 1,
            },
        ];
        s
    }

    #[test]
    fn envoy_and_grpc_sets_are_consistent() {
        for r in [envoy_resources(&[svc()]), grpc_resources(&[svc()])] {
            assert_eq!(r.clusters.len(), 3);
            assert_eq!(r.endpoints.len(), 3);
            let snap = Snapshot::builder("1").resources(&r).build().unwrap();
            snap.check().unwrap();
            // Dropping the route makes it inconsistent.
            let mut bad = r.clone();
            bad.routes.clear();
            assert!(
                Snapshot::builder("1")
                    .resources(&bad)
                    .build()
                    .unwrap()
                    .check()
                    .is_err()
            );
        }
    }

    #[test]
    fn localities_have_positive_weight() {
        let r = clusters(&svc());
        let all = &r.endpoints[0];
        assert_eq!(all.endpoints.len(), 2);
        assert!(
            all.endpoints
                .iter()
                .all(|l| l.load_balancing_weight.as_ref().unwrap().value > 0)
        );
    }
}
