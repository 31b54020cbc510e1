//! Bootstrap files pointing a proxy at Plexus's ADS server: Envoy (v3 bootstrap, JSON,
//! which Envoy reads like YAML) and proxyless gRPC (`GRPC_XDS_BOOTSTRAP` JSON).

use serde_json::{Value, json};

/// What a bootstrap needs.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// Node id (the cache key of the proxy's snapshot).
    pub node_id: String,
    /// Node cluster (Envoy requires one for some features).
    pub cluster: String,
    /// ADS server `HOST:PORT`, or `unix:PATH` for a node-local socket (Envoy only).
    pub xds: String,
    /// Incremental (delta) xDS instead of state of the world.
    pub delta: bool,
    /// Envoy admin port on 127.0.0.1 (0 = none).
    pub admin_port: u16,
}

fn host_port(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(18000),
        ),
        None => (addr.to_string(), 18000),
    }
}

/// An Envoy v3 bootstrap: everything dynamic over one ADS stream (CDS and LDS, with EDS
/// and RDS referenced as `ads: {}` by the resources Plexus sends).
pub fn envoy(o: &BootstrapOptions) -> Value {
    // A unix socket is reachable from any network namespace that sees the file, which
    // is how a sidecar in a pod namespace reaches a node-local xDS endpoint.
    let (kind, address) = match o.xds.strip_prefix("unix:") {
        Some(path) => ("STATIC", json!({"pipe": {"path": path}})),
        None => {
            let (host, port) = host_port(&o.xds);
            (
                "STRICT_DNS",
                json!({"socket_address": {"address": host, "port_value": port}}),
            )
        }
    };
    let mut b = json!({
        "node": {"id": o.node_id, "cluster": o.cluster},
        "dynamic_resources": {
            "ads_config": {
                "api_type": if o.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "plexus_xds"}}]
            },
            "cds_config": {"resource_api_version": "V3", "ads": {}},
            "lds_config": {"resource_api_version": "V3", "ads": {}}
        },
        "static_resources": {
            "clusters": [{
                "name": "plexus_xds",
                "type": kind,
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": "plexus_xds",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}]
                }
            }]
        }
    });
    if o.admin_port != 0 {
        b["admin"] = json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": o.admin_port}}});
    }
    b
}

/// A gRPC xDS bootstrap (`GRPC_XDS_BOOTSTRAP`): clients then dial `xds:///SERVICE`.
/// The node's `user_agent_name` is set by gRPC itself, which is how Plexus tells
/// proxyless clients (`api_listener`s) from Envoy sidecars.
pub fn grpc(o: &BootstrapOptions) -> Value {
    json!({
        "xds_servers": [{
            "server_uri": o.xds,
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        }],
        "node": {"id": o.node_id, "cluster": o.cluster, "locality": {}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstraps_point_at_the_ads_address() {
        let o = BootstrapOptions {
            node_id: "pod-a".into(),
            cluster: "c".into(),
            xds: "10.0.0.1:18000".into(),
            delta: true,
            admin_port: 15000,
        };
        let e = envoy(&o);
        assert_eq!(e["node"]["id"], "pod-a");
        assert_eq!(
            e["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        let sa = &e["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
            [0]["endpoint"]["address"]["socket_address"];
        assert_eq!(sa["address"], "10.0.0.1");
        assert_eq!(sa["port_value"], 18000);
        let g = grpc(&o);
        assert_eq!(g["xds_servers"][0]["server_uri"], "10.0.0.1:18000");
        assert_eq!(g["node"]["id"], "pod-a");
        assert_eq!(host_port("[::1]:9").0, "::1");
    }

    #[test]
    fn a_unix_ads_address_becomes_a_static_pipe_endpoint() {
        let o = BootstrapOptions {
            node_id: "pod-a".into(),
            cluster: "c".into(),
            xds: "unix:/run/plexus/xds.sock".into(),
            delta: false,
            admin_port: 0,
        };
        let e = envoy(&o);
        let c = &e["static_resources"]["clusters"][0];
        assert_eq!(c["type"], "STATIC");
        let a = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(a["pipe"]["path"], "/run/plexus/xds.sock");
        assert!(a.get("socket_address").is_none());
        assert!(e.get("admin").is_none());
    }
}
