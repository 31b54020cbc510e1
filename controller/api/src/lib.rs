//! REST API request/response types shared by the controller, CLI, CNI plugin and harness.
//!
//! Every resource has a *spec* (what a client sends on create/replace; unknown fields are
//! rejected) and an *object* (what the server returns: `id`, `revision` and the spec
//! flattened in). Lists are paginated (`items` + `next_page_token`). Errors are RFC 9457
//! problem details ([`Problem`]).
//!
//! Addresses, CIDRs and MACs travel as strings; [`validate`] parses and checks them and
//! reports the offending field by its JSON path (`cidrs[1]`, `rules[0].port_min`, ...).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod validate;

pub use validate::ValidationError;

/// Media type of problem details (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// API path prefix.
pub const API_PREFIX: &str = "/v1";

fn default_true() -> bool {
    true
}

fn default_weight() -> u32 {
    1
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A tenant: the owner of VPCs and security groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A VPC: an isolated L2/L3 domain with one or more CIDRs (which may overlap with other
/// VPCs' CIDRs, also across tenants) and a VXLAN network identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    pub tenant_id: String,
    pub name: String,
    /// IPv4 and/or IPv6 prefixes, e.g. `10.0.0.0/16`.
    pub cidrs: Vec<String>,
    /// VXLAN VNI (1..=16777215); assigned by the controller when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// DHCP options served to ports of a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DhcpOptions {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// A subnet of a VPC. Its CIDR lies inside one of the VPC's CIDRs and overlaps no other
/// subnet of the same VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    pub vpc_id: String,
    pub name: String,
    pub cidr: String,
    /// Gateway address (the router's address on this subnet); defaults to the first host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpOptions>,
    /// Addresses IPAM never hands out (besides network, broadcast and gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved_ips: Vec<String>,
}

/// A static route of a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub destination: String,
    pub nexthop: String,
}

/// SNAT to an external network through a gateway chassis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalGateway {
    pub chassis_id: String,
    /// The router's external address (also the SNAT address), with prefix, e.g. `192.0.2.10/24`.
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<String>,
    /// The nexthop's MAC address on the external network (a static binding: the
    /// controller does not resolve it by ARP yet). Without it nothing leaves through the
    /// gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop_mac: Option<String>,
    #[serde(default = "default_true")]
    pub snat: bool,
}

/// A distributed router between subnets of one VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub vpc_id: String,
    pub name: String,
    /// Subnets this router connects (each through its gateway address).
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<StaticRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_gateway: Option<ExternalGateway>,
}

/// Where a port is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortBinding {
    pub chassis_id: String,
    /// Interface name on the chassis' switch, or an OVS `external_ids:iface-id`.
    pub iface: String,
}

/// `GET /v1/ports/{id}/status`: where a port is attached and whether its switch has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortStatus {
    pub id: String,
    /// `unbound` (no binding), `pending` (bound, but the chassis' switch is not connected or
    /// reports no interface of that name), `up` (the switch reports the interface: `ofport`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<PortBinding>,
    /// An OpenFlow session with the bound chassis' switch is up.
    pub chassis_connected: bool,
    /// The interface's OpenFlow port number on the bound chassis' switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ofport: Option<u32>,
}

/// A logical switch port. `ips` empty on create means "allocate one from the subnet".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`. When absent: derived from the VPC and the port's
    /// first address (`0e` + 40 bits of their SHA-256; a port reusing a
    /// released address reuses its MAC, so neighbours' ARP entries stay
    /// right), or generated (locally administered) when another port of the
    /// VPC was given that MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Fixed addresses inside the subnet; empty → IPAM allocates one.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default = "default_true")]
    pub port_security: bool,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<PortBinding>,
}

/// Traffic direction of a security-group rule, from the port's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the port.
    Ingress,
    /// Traffic from the port.
    Egress,
}

/// IP version a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ethertype {
    #[default]
    Ipv4,
    Ipv6,
}

/// L4 protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// A stateful allow rule (return traffic of an allowed connection is always allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRule {
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ethertype: Ethertype,
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: Protocol,
    /// Destination port range (TCP/UDP only); both absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_min: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_max: Option<u16>,
    /// Peer prefix (source for ingress, destination for egress). At most one of
    /// `remote_cidr` and `remote_group_id`; neither = any peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group_id: Option<String>,
}

/// A security group: ingress is denied unless a rule allows it; egress likewise, but a
/// group created without `rules` gets the two allow-all egress rules (IPv4 and IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    pub tenant_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<SecurityGroupRule>>,
}

/// L4 protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    #[default]
    Tcp,
    Udp,
}

/// One backend of a service: a port of the VPC (its first IP) or an explicit IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub target_port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Subset label (e.g. `v1`, `canary`): the unit of `traffic_policy.splits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Health as reported by an external checker (`PUT` the service with `false`): an
    /// unhealthy backend gets no new connections; established ones keep it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub healthy: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Session affinity of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum Affinity {
    #[default]
    None,
    ClientIp {
        #[serde(default = "default_affinity_timeout")]
        timeout_seconds: u32,
    },
}

fn default_affinity_timeout() -> u32 {
    10800
}

/// Active health check of a service's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    /// HTTP path for an HTTP health check by sidecars (xDS); absent = TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
}

/// A load-balanced service: VIP:port/protocol → weighted backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub vpc_id: String,
    pub name: String,
    pub vip: String,
    pub port: u16,
    #[serde(default)]
    pub protocol: ServiceProtocol,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub affinity: Affinity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// L7 traffic policy applied by xDS sidecars (Envoy, proxyless gRPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

fn default_retry_on() -> String {
    "5xx,connect-failure,reset".into()
}

/// Retries of a request by the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Envoy `retry_on` conditions (default `5xx,connect-failure,reset`; gRPC:
    /// `unavailable,cancelled,...`).
    #[serde(default = "default_retry_on")]
    pub retry_on: String,
    /// 1..=10.
    pub num_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u32>,
}

/// One arm of a weighted traffic split over backend subsets (e.g. 99/1 canary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSplit {
    /// A `subset` of some backends of the service.
    pub subset: String,
    /// Relative weight, 0..=10000 (at least one arm positive).
    pub weight: u32,
}

/// Circuit-breaker thresholds per sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

/// Passive health: eject backends that keep failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub interval_ms: u32,
    pub base_ejection_time_ms: u32,
    /// 0..=100.
    pub max_ejection_percent: u32,
}

/// Delay a percentage of requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    pub delay_ms: u32,
    /// 0..=100.
    pub percent: u32,
}

/// Answer a percentage of requests with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// 200..=599.
    pub http_status: u32,
    /// 0..=100.
    pub percent: u32,
}

/// Fault injection (testing resilience).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// L7 traffic policy of a service, applied by xDS sidecars. Health checks come from the
/// service's `health_check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Upstream connect timeout (default 1000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u32>,
    /// Whole-request timeout (absent = Envoy's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Weighted split over backend subsets; empty = all backends, weighted per backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<TrafficSplit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultInjection>,
}

/// How the controller reaches a chassis' switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SwitchEndpoint {
    /// `tcp:HOST:PORT` or `unix:PATH` of the switch's OpenFlow listener; absent = the switch
    /// connects to the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openflow: Option<String>,
    /// `tcp:HOST:PORT` or `unix:PATH` of the switch's OVSDB server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ovsdb: Option<String>,
    /// Datapath id (hex, optional `0x`) identifying the switch when it connects to the
    /// controller; absent = the switch whose bridge (LOCAL port) is named like the chassis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<String>,
}

/// A node running a switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ChassisSpec {
    pub name: String,
    /// Underlay address of the chassis' VXLAN tunnel endpoint.
    pub vtep_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SwitchEndpoint>,
}

/// Implemented by every spec type: its resource name and validation.
pub trait Spec: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static {
    /// Path segment and kind name, e.g. `subnets`.
    const KIND: &'static str;
    /// Context-free checks (syntax of addresses, ranges, mutual exclusion).
    fn validate(&self) -> Result<(), ValidationError>;
}

macro_rules! resource {
    ($(#[$m:meta])* $obj:ident, $list:ident, $spec:ident, $kind:literal, $check:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub struct $obj {
            pub id: String,
            /// Store revision of the last write; also the object's ETag.
            pub revision: u64,
            #[serde(flatten)]
            pub spec: $spec,
        }

        /// One page of a list.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub struct $list {
            pub items: Vec<$obj>,
            /// Pass as `page_token` to get the next page; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_page_token: Option<String>,
        }

        impl Spec for $spec {
            const KIND: &'static str = $kind;
            fn validate(&self) -> Result<(), ValidationError> {
                $check(self)
            }
        }
    };
}

resource!(
    /// A tenant as stored.
    Tenant, TenantList, TenantSpec, "tenants", validate::tenant
);
resource!(
    /// A VPC as stored.
    Vpc, VpcList, VpcSpec, "vpcs", validate::vpc
);
resource!(
    /// A subnet as stored.
    Subnet, SubnetList, SubnetSpec, "subnets", validate::subnet
);
resource!(
    /// A router as stored.
    Router, RouterList, RouterSpec, "routers", validate::router
);
resource!(
    /// A port as stored.
    Port, PortList, PortSpec, "ports", validate::port
);
resource!(
    /// A security group as stored.
    SecurityGroup, SecurityGroupList, SecurityGroupSpec, "security-groups", validate::security_group
);
resource!(
    /// A service as stored.
    Service, ServiceList, ServiceSpec, "services", validate::service
);
resource!(
    /// A chassis as stored.
    Chassis, ChassisList, ChassisSpec, "chassis", validate::chassis
);

/// One field-level problem inside a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldProblem {
    /// JSON path of the offending field, e.g. `cidrs[1]`.
    pub field: String,
    pub detail: String,
}

/// RFC 9457 problem details, with the offending field as the extension member `field`
/// (and `errors` listing every field problem found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

fn about_blank() -> String {
    "about:blank".into()
}

impl Problem {
    /// A problem with `type` `about:blank` and the given status and title.
    pub fn new(status: u16, title: impl Into<String>) -> Self {
        Self {
            type_: about_blank(),
            title: title.into(),
            status,
            detail: None,
            instance: None,
            field: None,
            errors: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_type(mut self, type_: impl Into<String>) -> Self {
        self.type_ = type_.into();
        self
    }

    /// Names `field` as the offending one (and records it in `errors`).
    pub fn with_field(mut self, field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = detail.into();
        if self.detail.is_none() {
            self.detail = Some(format!("{field}: {detail}"));
        }
        self.field = Some(field.clone());
        self.errors.push(FieldProblem { field, detail });
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// `GET /v1/status`: the store's revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub revision: u64,
    pub objects: std::collections::BTreeMap<String, u64>,
    /// Southbound sync state per chassis id (empty when the southbound is off).
    #[serde(default)]
    pub chassis: std::collections::BTreeMap<String, ChassisSync>,
    /// This controller: store backend and its place in the HA election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerRole>,
}

/// A controller's store backend and role (`GET /v1/status`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ControllerRole {
    /// `redb` (embedded) or `etcd`.
    pub store: String,
    /// `standalone` (embedded store: this controller programs the switches), `leader`
    /// (elected over etcd: programs the switches) or `follower` (serves the API, waits
    /// to take over).
    pub role: String,
    /// This controller's node id in the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The current leader's node id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Leadership changes of this controller since it started.
    #[serde(default)]
    pub transitions: u64,
}

/// Southbound sync state of one chassis' switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct ChassisSync {
    /// An OpenFlow session with the switch is up.
    pub connected: bool,
    /// The switch's datapath id (hex) once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<String>,
    /// The store revision whose flows the switch has acknowledged (0 = none yet).
    pub realized_revision: u64,
    /// Plexus-owned flows installed on the switch.
    pub flow_count: u64,
    /// Flow adds and strict deletes sent since the controller started.
    pub flow_adds: u64,
    pub flow_deletes: u64,
    /// Full reconciliations (session start, or resync after an error).
    pub reconciles: u64,
    /// Local-responder packets (ARP, ND, ICMP echo, DHCP) the switch sent up as
    /// `NXT_PACKET_IN2` (Open vSwitch; `plexus-vswitchd` answers them itself) and the
    /// controller answered with a PACKET_OUT, since the session started.
    #[serde(default)]
    pub responder_replies: u64,
    /// Such packets counted and dropped (foreign DHCP, wrong target, malformed …).
    #[serde(default)]
    pub responder_drops: u64,
    /// Such packets dropped unanswered because their ingress port was over the
    /// controller's responder rate limit (`--packet-in-rate`, per ingress port).
    #[serde(default)]
    pub responder_rate_limited: u64,
    /// The last error of the session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The chassis' VXLAN tunnel port as last checked over its OVSDB endpoint
    /// (`plx-vxlan on BRIDGE, local_ip …`), or why it could not be ensured; absent
    /// without an `endpoint.ovsdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<TenantSpec>(r#"{"name":"a","colour":"red"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = serde_json::from_str::<SecurityGroupSpec>(
            r#"{"tenant_id":"t","name":"g","rules":[{"direction":"ingress","prot":"tcp"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `prot`"), "{e}");
    }

    #[test]
    fn object_flattens_spec_and_round_trips() {
        let p = Port {
            id: "p1".into(),
            revision: 7,
            spec: PortSpec {
                subnet_id: "s".into(),
                ips: vec!["10.0.0.5".into()],
                port_security: true,
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["id"], "p1");
        assert_eq!(v["subnet_id"], "s");
        let back: Port = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn defaults() {
        let p: PortSpec = serde_json::from_str(r#"{"subnet_id":"s"}"#).unwrap();
        assert!(p.port_security);
        let b: Backend = serde_json::from_str(r#"{"ip":"10.0.0.1","target_port":80}"#).unwrap();
        assert_eq!(b.weight, 1);
        let a: Affinity = serde_json::from_str(r#"{"type":"client_ip"}"#).unwrap();
        assert_eq!(
            a,
            Affinity::ClientIp {
                timeout_seconds: 10800
            }
        );
    }

    #[test]
    fn problem_json_shape() {
        let p = Problem::new(422, "Invalid field").with_field("cidr", "not a CIDR");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], 422);
        assert_eq!(v["field"], "cidr");
        assert_eq!(v["errors"][0]["field"], "cidr");
    }
}
