//! The topology file of a controller-driven ("cloud") topology, and its
//! validation with errors that name the file, line and field.

use super::attack::AttackKind;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use toml::Spanned;

/// A cloud topology: the Plexus controller, chassis (each a switch in its own
/// namespace), tenants with VPCs, subnets and security groups built through
/// the REST API, hosts (namespaces bound to controller ports) and checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    /// Short name: the prefix of every namespace and the state directory.
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub controller: ControllerSpec,
    #[serde(rename = "chassis")]
    pub chassis: Vec<ChassisSpec>,
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantSpec>,
    #[serde(rename = "host", default)]
    pub hosts: Vec<HostSpec>,
    #[serde(rename = "check", default)]
    pub checks: Vec<Spanned<CheckSpec>>,
    /// An external network behind a gateway chassis (routers with `external_ip`
    /// SNAT to it).
    #[serde(default)]
    pub external: Option<ExternalSpec>,
}

/// The external network: a namespace (a host named `name` for the checks)
/// cabled to port `plx-ext` of the gateway chassis; it is also the routers'
/// nexthop and has no route back into any VPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    #[serde(default = "default_external_name")]
    pub name: Spanned<String>,
    pub chassis: Spanned<String>,
    /// The external host's address with prefix, e.g. `203.0.113.1/24`.
    pub ip: Spanned<String>,
}

fn default_external_name() -> Spanned<String> {
    Spanned::new(0..0, "inet".to_string())
}

/// The controller: `plexus-controller` on loopback with the embedded redb
/// store in the run's state directory, or `replicas` controllers sharing a
/// private etcd cluster (`store = "etcd"`, `etcd_members` members, data in the
/// run's state directory) with leader election: only the leader programs the
/// switches (it connects to each switch's OpenFlow listener).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSpec {
    /// Store backend: `redb` (embedded, default) or `etcd`.
    #[serde(default)]
    pub store: Option<Spanned<String>>,
    /// Controllers (etcd only; default 1).
    #[serde(default)]
    pub replicas: Option<Spanned<u32>>,
    /// etcd cluster members (etcd only; default 1).
    #[serde(default)]
    pub etcd_members: Option<Spanned<u32>>,
    /// Responder packet-ins the controller answers per second per Open vSwitch
    /// chassis and ingress port (`plexus-controller --packet-in-rate`; default
    /// the controller's, 1000). Open vSwitch chassis also get
    /// `controller_rate_limit` = 5 × this (at least 100) on their Controller row.
    #[serde(default)]
    pub packet_in_rate: Option<Spanned<u32>>,
    /// Run the control channels over TLS: `plexus certs` makes a CA in the run's
    /// directory and a certificate for the controller and each chassis; the REST
    /// API is HTTPS (the harness and the CLI verify it with the CA), OpenFlow is
    /// mutual TLS (`pssl:` on the controller, `ssl:` from each plexus-vswitchd),
    /// and xDS requires client certificates. plexus-vswitchd chassis with veth
    /// hosts only (the harness' own `ovs-ofctl` inspection stays on the chassis'
    /// loopback `ptcp:` listener).
    #[serde(default)]
    pub tls: Option<Spanned<bool>>,
}

impl ControllerSpec {
    /// True with the etcd store.
    pub fn etcd(&self) -> bool {
        self.store.as_ref().is_some_and(|s| s.get_ref() == "etcd")
    }
    pub fn tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| *t.get_ref())
    }
    pub fn replicas(&self) -> usize {
        self.replicas.as_ref().map_or(1, |r| *r.get_ref() as usize)
    }
    pub fn etcd_members(&self) -> usize {
        self.etcd_members
            .as_ref()
            .map_or(1, |r| *r.get_ref() as usize)
    }
}

/// Which switch a chassis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchKind {
    /// A private userspace Open vSwitch (netdev datapath).
    Ovs,
    /// `plexus-vswitchd` with AF_PACKET ports.
    Plexus,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChassisSpec {
    pub name: Spanned<String>,
    pub switch: SwitchKind,
    /// Underlay (VTEP) address registered with the controller.
    #[serde(default)]
    pub vtep_ip: Option<Spanned<String>>,
}

impl ChassisSpec {
    /// The VTEP address of the `index`-th chassis: `vtep_ip`, else 192.0.2.(index+1)
    /// (the underlay is a /24).
    pub fn vtep(&self, index: usize) -> Ipv4Addr {
        self.vtep_ip
            .as_ref()
            .and_then(|v| v.get_ref().parse().ok())
            .unwrap_or(Ipv4Addr::new(192, 0, 2, (index + 1).min(254) as u8))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: Spanned<String>,
    #[serde(rename = "vpc", default)]
    pub vpcs: Vec<VpcSpec>,
    #[serde(rename = "security_group", default)]
    pub security_groups: Vec<SecurityGroupSpec>,
    /// Load-balanced services (VIP:port → hosts), created after the hosts.
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceSpec>,
}

/// A distributed router connecting subnets of its VPC (hosts get a default
/// route via their subnet's gateway).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub name: Spanned<String>,
    pub subnets: Vec<Spanned<String>>,
    /// The router's address on the `[external]` network (with prefix): SNAT
    /// through the external gateway chassis.
    #[serde(default)]
    pub external_ip: Option<Spanned<String>>,
}

/// A service: `vip:port` balanced over hosts of `vpc` (each backend's first
/// address, `target_port`) with `weights` (default 1 each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: Spanned<String>,
    pub vpc: Spanned<String>,
    pub vip: Spanned<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    pub backends: Vec<Spanned<String>>,
    #[serde(default)]
    pub weights: Option<Spanned<Vec<u32>>>,
    /// Client-IP session affinity with this idle timeout (seconds, 1-65535).
    #[serde(default)]
    pub affinity_timeout: Option<Spanned<u32>>,
    /// Subset label per backend (xDS: Envoy sidecars split traffic by subset).
    #[serde(default)]
    pub subsets: Option<Spanned<Vec<String>>>,
    /// Weighted split over subsets, applied by sidecars (the switch's L4 LB
    /// keeps using `weights`).
    #[serde(default)]
    pub splits: Option<Vec<SplitSpec>>,
}

/// `{ subset = "v1", weight = 90 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub subset: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    pub name: Spanned<String>,
    pub cidrs: Vec<Spanned<String>>,
    #[serde(rename = "subnet", default)]
    pub subnets: Vec<SubnetSpec>,
    #[serde(rename = "router", default)]
    pub routers: Vec<RouterSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    pub name: Spanned<String>,
    pub cidr: Spanned<String>,
    /// DHCPv4 served to the subnet's ports by the switches' local responders (the
    /// REST subnet's `dhcp`); hosts with `dhcp = true` get their address from it.
    #[serde(default)]
    pub dhcp: Option<DhcpSpec>,
}

/// A subnet's DHCP options (all optional; `{}` = DHCP on with the defaults).
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DhcpSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    pub name: Spanned<String>,
    /// Absent: the controller's default (no ingress, all egress).
    #[serde(default)]
    pub rules: Option<Vec<Spanned<RuleSpec>>>,
}

/// A security-group rule; `remote_group` names a group of the same tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub direction: Spanned<String>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub port_min: Option<u16>,
    #[serde(default)]
    pub port_max: Option<u16>,
    #[serde(default)]
    pub remote_cidr: Option<Spanned<String>>,
    #[serde(default)]
    pub remote_group: Option<Spanned<String>>,
}

/// How a host is attached to its chassis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// A namespace cabled by a veth the harness creates; port made over REST.
    #[default]
    Veth,
    /// A pod: the real `plexus-cni` binary (CNI_* env + config on stdin) run in
    /// the chassis' namespace ADDs it into the host's namespace.
    Pod,
    /// A VM: `plexus port attach --tap` plugs a tap into the chassis' switch;
    /// a relay stands in for qemu, moving frames between that tap and a tap in
    /// the host's namespace (the guest), which gets its address by DHCP from
    /// the switch.
    Vm,
}

/// A workload: a namespace with `eth0` cabled to a port of its chassis and
/// bound to a controller port in `tenant/vpc/subnet`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: Spanned<String>,
    /// `veth` (default), `pod` or `vm`.
    #[serde(default)]
    pub kind: Option<Spanned<HostKind>>,
    pub chassis: Spanned<String>,
    pub tenant: Spanned<String>,
    pub vpc: Spanned<String>,
    pub subnet: Spanned<String>,
    /// Fixed address; absent = allocated by the controller's IPAM.
    #[serde(default)]
    pub ip: Option<Spanned<String>>,
    #[serde(default)]
    pub mac: Option<Spanned<String>>,
    #[serde(default)]
    pub security_groups: Vec<Spanned<String>>,
    /// Run an Envoy sidecar in the host's namespace, fed over xDS by the
    /// controller; the VIPs of its VPC's services are local to the host so
    /// its connections to them go through the sidecar.
    #[serde(default)]
    pub sidecar: bool,
    /// Configure the host like a VM: its address, default route and MTU come from a
    /// real DHCP client (busybox `udhcpc`) talking to the switch's DHCP responder once
    /// the flows are installed (the subnet must have `dhcp`).
    #[serde(default)]
    pub dhcp: bool,
}

/// One or several host names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Hosts {
    One(String),
    Many(Vec<String>),
}

impl Hosts {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Hosts::One(s) => vec![s.as_str()],
            Hosts::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// What a reachability check expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Every pair must reach.
    Reach,
    /// No pair may reach.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    #[default]
    Icmp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CheckSpec {
    /// Every `from` × `to` pair (a host never checks itself) reaches or not.
    Reach {
        from: Hosts,
        to: Hosts,
        #[serde(default)]
        proto: Proto,
        #[serde(default)]
        port: Option<u16>,
        expect: Expect,
    },
    /// Every chassis has realized the latest revision and holds exactly the
    /// flows the controller reports for it.
    FlowsInstalled,
    /// An attacker host tries spoofing, ARP/ND poisoning, DHCP starvation,
    /// fragments, TCP without handshake and cross-VPC traffic against a
    /// victim: nothing may arrive at another host, the switch's drop flows
    /// must count every frame, no neighbour table may be poisoned
    /// (see [`super::attack`]).
    Attack {
        attacker: String,
        victim: String,
        /// Absent: every attack that applies (plus controls for a victim in
        /// the attacker's VPC).
        #[serde(default)]
        attacks: Option<Vec<AttackKind>>,
        /// Attempts per attack (each attempt is 1-6 frames).
        #[serde(default = "default_attempts")]
        count: u32,
        /// A TCP port the victim's security groups block (fragments).
        #[serde(default = "default_blocked_port")]
        blocked_port: u16,
        /// A TCP port they allow (TCP without handshake).
        #[serde(default = "default_allowed_port")]
        allowed_port: u16,
    },
    /// kill -9 the controller during a ping flood from `from` to `to` and
    /// restart it: no ping may be lost and the switches' flows must be left
    /// alone (no adds, no deletes after the reconcile).
    ///
    /// With `down_seconds`, the controller stays dead that long before the
    /// restart: every switch is disconnected (fail-secure) and must keep
    /// forwarding with the flows it has, without losing a ping; the
    /// reconnect must reconcile without a flush.
    ControllerRestart {
        from: String,
        to: String,
        #[serde(default = "default_flood_secs")]
        seconds: u32,
        #[serde(default = "default_interval_ms")]
        interval_ms: u32,
        #[serde(default)]
        down_seconds: u32,
    },
    /// kill -9 the `plexus-vswitchd` of `from`'s chassis during a ping flood
    /// from `from` to `to` and restart it with the same command line: the
    /// controller must restore every flow (the switch holds exactly the
    /// controller's set again) and traffic must flow again; the time to
    /// converge and the pings lost meanwhile are reported.
    SwitchRestart {
        from: String,
        to: String,
        #[serde(default = "default_flood_secs")]
        seconds: u32,
        #[serde(default = "default_interval_ms")]
        interval_ms: u32,
    },
    /// A flood of packet-ins: a foreign flow (cookie 0x1) sends `from`'s UDP
    /// to the controller and `from` floods UDP at `to` for `seconds`; the
    /// switch must rate-limit packet-ins on that port (dropped ones counted,
    /// the sent ones within the port's rate + burst) and the controller's
    /// API must answer every request meanwhile (latency reported, before and
    /// during). On an Open vSwitch chassis `from` floods ARP requests for its
    /// subnet's gateway instead (`to` is not used): the controller answers them
    /// (`NXT_PACKET_IN2`), must rate-limit them per port, answer the API and
    /// realize a security group change on every chassis meanwhile.
    PacketInFlood {
        from: String,
        to: String,
        #[serde(default = "default_flood_secs")]
        seconds: u32,
    },
    /// `connections` TCP connections from `from` to the service's VIP:port;
    /// each backend answers its name: the counts must match the weights
    /// within ±`tolerance_pct` % of `connections`. With `remove`, that backend
    /// is then taken out of the service through the REST API and must get
    /// none of `connections` further connections.
    Service {
        from: String,
        service: String,
        #[serde(default = "default_connections")]
        connections: u32,
        #[serde(default = "default_tolerance")]
        tolerance_pct: u32,
        #[serde(default)]
        remove: Option<String>,
    },
    /// Each host pings its default gateway (the router answers ICMP echo).
    Gateway { from: Hosts },
    /// Client-IP session affinity: `connections` TCP connections from each
    /// host of `from` to the service's VIP:port must all reach one backend
    /// (per client), and together the clients must see the service at all.
    Affinity {
        from: Hosts,
        service: String,
        #[serde(default = "default_affinity_connections")]
        connections: u32,
    },
    /// HA (`store = "etcd"`, several replicas): kill -9 the elected leader
    /// during a ping flood from `from` to `to`; a follower must be elected and
    /// have reconciled every switch within `max_takeover_s`, the switches' flows
    /// must be left alone, at most `max_loss_pct` % of the flood may be lost,
    /// and every object committed before must still be there. The killed
    /// controller is then restarted (it rejoins as a follower).
    LeaderFailover {
        from: String,
        to: String,
        #[serde(default = "default_flood_secs")]
        seconds: u32,
        #[serde(default = "default_interval_ms")]
        interval_ms: u32,
        #[serde(default = "default_takeover")]
        max_takeover_s: u32,
        #[serde(default)]
        max_loss_pct: u32,
    },
    /// `requests` HTTP requests from a host with a sidecar to the service's
    /// VIP: the sidecar's xDS state must be ACKed and the answers must follow
    /// the service's `splits` within ±`tolerance_pct` % of `requests`. With
    /// `then`, the split is changed through the REST API and the sidecar must
    /// follow the new one (pushed over xDS, no restart).
    Sidecar {
        from: String,
        service: String,
        #[serde(default = "default_connections")]
        requests: u32,
        #[serde(default = "default_sidecar_tolerance")]
        tolerance_pct: u32,
        #[serde(default)]
        then: Option<Vec<SplitSpec>>,
    },
    /// Each host (of a subnet with `dhcp`) drops its address and gets it again from a
    /// real DHCP client: the lease must be its port's address with the subnet's prefix,
    /// router, DNS and MTU; `arping` must get the router MAC for the gateway, which then
    /// answers ping. The answering side is checked by counters: a plexus-vswitchd
    /// chassis answers itself (its `responder/show` counters grow, the controller
    /// answers nothing), an Open vSwitch chassis through the controller
    /// (NXT_PACKET_IN2 → PACKET_OUT, the controller's `responder_replies` grow).
    /// A DHCPDISCOVER with a foreign chaddr from the host is dropped and counted.
    Dhcp { from: Hosts },
    /// `from` pings `to` (hosts on different chassis) while the underlay is
    /// captured on `from`'s chassis port: the requests must cross as VXLAN
    /// from `from`'s VTEP to `to`'s with the VPC's VNI (the replies back), and
    /// no frame of the hosts may cross unencapsulated.
    Vxlan { from: String, to: String },
    /// An intruder on the underlay (an address on the underlay bridge that
    /// is no chassis' VTEP) sends VXLAN datagrams to the chassis of `to`,
    /// carrying frames for `to` under the VNI of every VPC and an unused
    /// one: none may arrive at any host, and the chassis' classifier (table
    /// 0) must drop and count every one (decapsulation only from the VTEPs
    /// of chassis sharing the VPC, only with its VNI).
    VxlanForge {
        to: String,
        /// Datagrams per VNI.
        #[serde(default = "default_attempts")]
        count: u32,
    },
}

fn default_takeover() -> u32 {
    10
}

fn default_affinity_connections() -> u32 {
    40
}

fn default_sidecar_tolerance() -> u32 {
    6
}

fn default_connections() -> u32 {
    200
}
fn default_tolerance() -> u32 {
    15
}

fn default_attempts() -> u32 {
    10
}
fn default_blocked_port() -> u16 {
    9
}
fn default_allowed_port() -> u16 {
    5201
}

fn default_flood_secs() -> u32 {
    5
}
fn default_interval_ms() -> u32 {
    10
}

/// Per tenant: VPC → subnet → CIDR, and the security group names.
type TenantIndex<'a> = (
    HashMap<&'a str, HashMap<&'a str, (Ipv4Addr, u8)>>,
    HashSet<&'a str>,
);

/// Serde reports a bad value of an internally tagged table (a `[[check]]`) at
/// the whole table: find the offending `value` inside it so the error points
/// at the line and names the key.
fn narrow(text: &str, span: std::ops::Range<usize>, msg: &str) -> (std::ops::Range<usize>, String) {
    let whole = (span.clone(), "syntax".to_string());
    let Some(bad) = msg
        .strip_prefix("unknown variant `")
        .and_then(|r| r.split('`').next())
    else {
        return whole;
    };
    let Some(region) = text.get(span.clone()) else {
        return whole;
    };
    let quoted = format!("\"{bad}\"");
    let Some(off) = region.find(&quoted) else {
        return whole;
    };
    let pos = span.start + off;
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let key = text[line_start..pos]
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if key.is_empty() {
        return whole;
    }
    (pos..pos + quoted.len(), key)
}

/// A validation error pointing into the file.
fn at(text: &str, file: &Path, span: std::ops::Range<usize>, field: &str, msg: &str) -> String {
    let upto = &text[..span.start.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    let col = upto.rfind('\n').map_or(upto.len(), |i| upto.len() - i - 1) + 1;
    format!("{}:{line}:{col}: {field}: {msg}", file.display())
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let l: u8 = l.parse().ok()?;
    (l <= 32).then_some((a, l))
}

fn in_cidr(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl HostSpec {
    pub fn kind(&self) -> HostKind {
        self.kind.as_ref().map(|k| *k.get_ref()).unwrap_or_default()
    }
}

impl Cloud {
    /// Chassis `name` has pods or VMs (its switch is configured over OVSDB).
    pub fn has_workloads(&self, chassis: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| h.chassis.get_ref() == chassis && h.kind() != HostKind::Veth)
    }

    /// Parses `text` (the contents of `file`) and checks every reference and
    /// value; errors read `FILE:LINE:COL: FIELD: what is wrong`.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let c: Cloud = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                let field = e.message().to_string();
                match e.span() {
                    Some(span) => {
                        let (span, key) = narrow(text, span, &field);
                        bail!("{}", at(text, file, span, &key, &field))
                    }
                    None => bail!("{}: {field}", file.display()),
                }
            }
        };
        let mut errs = c.problems(text, file);
        errs.extend(c.l3_problems(text, file));
        errs.extend(super::sidecar::problems(&c, &|span, field, msg| {
            at(text, file, span, field, msg)
        }));
        if !errs.is_empty() {
            bail!("{}", errs.join("\n"));
        }
        Ok(c)
    }

    fn problems(&self, text: &str, file: &Path) -> Vec<String> {
        let mut errs = Vec::new();
        let mut err = |span: std::ops::Range<usize>, field: &str, msg: String| {
            errs.push(at(text, file, span, field, &msg));
        };
        let name = self.name.get_ref();
        if name.is_empty()
            || name.len() > 6
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            err(
                self.name.span(),
                "name",
                format!(
                    "{name:?} must be 1-6 lowercase letters or digits (it prefixes interface names)"
                ),
            );
        }
        if let Some(s) = &self.controller.store
            && s.get_ref() != "redb"
            && s.get_ref() != "etcd"
        {
            err(
                s.span(),
                "controller.store",
                format!(
                    "{:?}: expected \"redb\" (embedded) or \"etcd\"",
                    s.get_ref()
                ),
            );
        }
        for (field, v, max) in [
            ("controller.replicas", &self.controller.replicas, 5),
            ("controller.etcd_members", &self.controller.etcd_members, 5),
        ] {
            if let Some(v) = v {
                if !(1..=max).contains(v.get_ref()) {
                    err(v.span(), field, format!("{} must be 1-{max}", v.get_ref()));
                } else if !self.controller.etcd() && *v.get_ref() != 1 {
                    err(
                        v.span(),
                        field,
                        "several controllers or etcd members need store = \"etcd\"".into(),
                    );
                }
            }
        }
        if let Some(t) = &self.controller.tls
            && *t.get_ref()
        {
            let why = if self.controller.etcd() {
                Some("the etcd store")
            } else if self.chassis.iter().any(|c| c.switch != SwitchKind::Plexus) {
                Some("Open vSwitch chassis")
            } else if self
                .hosts
                .iter()
                .any(|h| h.kind() != HostKind::Veth || h.sidecar)
            {
                Some("pods, VMs or sidecars")
            } else {
                None
            };
            if let Some(why) = why {
                err(
                    t.span(),
                    "controller.tls",
                    format!(
                        "tls = true is not supported with {why} yet (plexus-vswitchd chassis with veth hosts only)"
                    ),
                );
            }
        }
        let mut chassis = HashSet::new();
        if self.chassis.is_empty() {
            errs_push_plain(&mut err, "chassis", "at least one [[chassis]] is needed");
        }
        for c in &self.chassis {
            if !chassis.insert(c.name.get_ref().as_str()) {
                err(
                    c.name.span(),
                    "chassis.name",
                    format!("duplicate chassis {:?}", c.name.get_ref()),
                );
            }
            if let Some(v) = &c.vtep_ip
                && v.get_ref().parse::<Ipv4Addr>().is_err()
            {
                err(
                    v.span(),
                    "chassis.vtep_ip",
                    format!("{:?} is not an IPv4 address", v.get_ref()),
                );
            }
        }
        let mut vteps = HashSet::new();
        for (i, c) in self.chassis.iter().enumerate() {
            let v = c.vtep(i);
            if !vteps.insert(v) {
                err(
                    c.vtep_ip.as_ref().map_or(c.name.span(), |v| v.span()),
                    "chassis.vtep_ip",
                    format!("VTEP {v} is already another chassis'"),
                );
            }
        }
        // tenant -> (vpc -> subnet -> cidr), groups
        let mut tenants: HashMap<&str, TenantIndex<'_>> = HashMap::new();
        let mut dhcp_subnets: HashSet<(&str, &str, &str)> = HashSet::new();
        for t in &self.tenants {
            let tn = t.name.get_ref().as_str();
            if tenants.contains_key(tn) {
                err(
                    t.name.span(),
                    "tenant.name",
                    format!("duplicate tenant {tn:?}"),
                );
                continue;
            }
            let mut vpcs = HashMap::new();
            for v in &t.vpcs {
                let vn = v.name.get_ref().as_str();
                let mut cidrs = Vec::new();
                for c in &v.cidrs {
                    match parse_cidr(c.get_ref()) {
                        Some(x) => cidrs.push(x),
                        None => err(
                            c.span(),
                            "vpc.cidrs",
                            format!("{:?} is not an IPv4 CIDR (a.b.c.d/len)", c.get_ref()),
                        ),
                    }
                }
                let mut subnets = HashMap::new();
                for s in &v.subnets {
                    let sn = s.name.get_ref().as_str();
                    if s.dhcp.is_some() {
                        dhcp_subnets.insert((tn, vn, sn));
                    }
                    match parse_cidr(s.cidr.get_ref()) {
                        None => err(
                            s.cidr.span(),
                            "subnet.cidr",
                            format!("{:?} is not an IPv4 CIDR (a.b.c.d/len)", s.cidr.get_ref()),
                        ),
                        Some(x) => {
                            if !cidrs.is_empty()
                                && !cidrs.iter().any(|&c| in_cidr(x.0, c) && x.1 >= c.1)
                            {
                                err(
                                    s.cidr.span(),
                                    "subnet.cidr",
                                    format!("{} is not inside the VPC's CIDRs", s.cidr.get_ref()),
                                );
                            }
                            if subnets.insert(sn, x).is_some() {
                                err(
                                    s.name.span(),
                                    "subnet.name",
                                    format!("duplicate subnet {sn:?}"),
                                );
                            }
                        }
                    }
                }
                if vpcs.insert(vn, subnets).is_some() {
                    err(
                        v.name.span(),
                        "vpc.name",
                        format!("duplicate VPC {vn:?} in tenant {tn:?}"),
                    );
                }
            }
            let mut groups = HashSet::new();
            for g in &t.security_groups {
                if !groups.insert(g.name.get_ref().as_str()) {
                    err(
                        g.name.span(),
                        "security_group.name",
                        format!("duplicate security group {:?}", g.name.get_ref()),
                    );
                }
            }
            for g in &t.security_groups {
                for r in g.rules.iter().flatten() {
                    let r = r.get_ref();
                    if !matches!(r.direction.get_ref().as_str(), "ingress" | "egress") {
                        err(
                            r.direction.span(),
                            "rule.direction",
                            format!(
                                "{:?}: expected \"ingress\" or \"egress\"",
                                r.direction.get_ref()
                            ),
                        );
                    }
                    if let Some(p) = &r.protocol
                        && !matches!(p.get_ref().as_str(), "any" | "tcp" | "udp" | "icmp")
                    {
                        err(
                            p.span(),
                            "rule.protocol",
                            format!("{:?}: expected any, tcp, udp or icmp", p.get_ref()),
                        );
                    }
                    if let Some(c) = &r.remote_cidr
                        && parse_cidr(c.get_ref()).is_none()
                    {
                        err(
                            c.span(),
                            "rule.remote_cidr",
                            format!("{:?} is not an IPv4 CIDR", c.get_ref()),
                        );
                    }
                    if let Some(rg) = &r.remote_group
                        && !groups.contains(rg.get_ref().as_str())
                    {
                        err(
                            rg.span(),
                            "rule.remote_group",
                            format!("no security group {:?} in tenant {tn:?}", rg.get_ref()),
                        );
                    }
                }
            }
            tenants.insert(tn, (vpcs, groups));
        }
        let mut hosts = HashSet::new();
        if let Some(x) = &self.external {
            hosts.insert(x.name.get_ref().as_str());
            if !chassis.contains(x.chassis.get_ref().as_str()) {
                err(
                    x.chassis.span(),
                    "external.chassis",
                    format!("no chassis {:?}", x.chassis.get_ref()),
                );
            }
            if parse_cidr(x.ip.get_ref()).is_none() {
                err(
                    x.ip.span(),
                    "external.ip",
                    format!("{:?} is not address/prefix-length", x.ip.get_ref()),
                );
            }
        }
        let mut addrs: HashMap<(&str, &str, Ipv4Addr), &str> = HashMap::new();
        for h in &self.hosts {
            let hn = h.name.get_ref().as_str();
            if !hosts.insert(hn) {
                err(h.name.span(), "host.name", format!("duplicate host {hn:?}"));
            }
            if hn.is_empty() || hn.len() + self.name.get_ref().len() > 14 {
                err(
                    h.name.span(),
                    "host.name",
                    format!(
                        "{hn:?}: topology name + host name must fit 14 chars (interface names)"
                    ),
                );
            }
            if !chassis.contains(h.chassis.get_ref().as_str()) {
                err(
                    h.chassis.span(),
                    "host.chassis",
                    format!("no chassis {:?}", h.chassis.get_ref()),
                );
            }
            let Some((vpcs, groups)) = tenants.get(h.tenant.get_ref().as_str()) else {
                err(
                    h.tenant.span(),
                    "host.tenant",
                    format!("no tenant {:?}", h.tenant.get_ref()),
                );
                continue;
            };
            for g in &h.security_groups {
                if !groups.contains(g.get_ref().as_str()) {
                    err(
                        g.span(),
                        "host.security_groups",
                        format!(
                            "no security group {:?} in tenant {:?}",
                            g.get_ref(),
                            h.tenant.get_ref()
                        ),
                    );
                }
            }
            let Some(subnets) = vpcs.get(h.vpc.get_ref().as_str()) else {
                err(
                    h.vpc.span(),
                    "host.vpc",
                    format!(
                        "no VPC {:?} in tenant {:?}",
                        h.vpc.get_ref(),
                        h.tenant.get_ref()
                    ),
                );
                continue;
            };
            let Some(&cidr) = subnets.get(h.subnet.get_ref().as_str()) else {
                err(
                    h.subnet.span(),
                    "host.subnet",
                    format!(
                        "no subnet {:?} in VPC {:?}",
                        h.subnet.get_ref(),
                        h.vpc.get_ref()
                    ),
                );
                continue;
            };
            if let Some(ip) = &h.ip {
                match ip.get_ref().parse::<Ipv4Addr>() {
                    Err(_) => err(
                        ip.span(),
                        "host.ip",
                        format!("{:?} is not an IPv4 address", ip.get_ref()),
                    ),
                    Ok(a) if !in_cidr(a, cidr) => err(
                        ip.span(),
                        "host.ip",
                        format!("{a} is outside subnet {:?}", h.subnet.get_ref()),
                    ),
                    Ok(a) => {
                        if let Some(other) =
                            addrs.insert((h.tenant.get_ref(), h.vpc.get_ref(), a), hn)
                        {
                            err(
                                ip.span(),
                                "host.ip",
                                format!("{a} is already host {other:?}'s"),
                            );
                        }
                    }
                }
            }
            if (h.dhcp || h.kind() == HostKind::Vm)
                && !dhcp_subnets.contains(&(
                    h.tenant.get_ref().as_str(),
                    h.vpc.get_ref().as_str(),
                    h.subnet.get_ref().as_str(),
                ))
            {
                err(
                    h.subnet.span(),
                    if h.dhcp { "host.dhcp" } else { "host.subnet" },
                    if h.dhcp {
                        format!(
                            "dhcp = true but subnet {:?} has no dhcp",
                            h.subnet.get_ref()
                        )
                    } else {
                        format!(
                            "a vm gets its address by DHCP: subnet {:?} needs dhcp (e.g. dhcp = {{}})",
                            h.subnet.get_ref()
                        )
                    },
                );
            }
            if h.dhcp && h.kind() != HostKind::Veth {
                err(
                    h.name.span(),
                    "host.dhcp",
                    "dhcp = true is for veth hosts (a vm always uses DHCP, a pod gets its address from plexus-cni)".into(),
                );
            }
            if let Some(m) = &h.mac
                && !valid_mac(m.get_ref())
            {
                err(
                    m.span(),
                    "host.mac",
                    format!("{:?} is not a MAC address", m.get_ref()),
                );
            }
        }
        for c in &self.checks {
            let mut names = Vec::new();
            match c.get_ref() {
                CheckSpec::Reach {
                    from,
                    to,
                    proto,
                    port,
                    ..
                } => {
                    names.extend(from.names());
                    names.extend(to.names());
                    if *proto == Proto::Tcp && port.is_none() {
                        err(
                            c.span(),
                            "check.port",
                            "a tcp reach check needs a port".into(),
                        );
                    }
                }
                CheckSpec::ControllerRestart {
                    from,
                    to,
                    seconds,
                    interval_ms,
                    down_seconds,
                } => {
                    names.push(from);
                    names.push(to);
                    if self.controller.replicas() > 1 {
                        err(
                            c.span(),
                            "check.kind",
                            "controller-restart needs one controller; use leader-failover with replicas"
                                .into(),
                        );
                    }
                    if *seconds == 0 || *seconds > 120 || *interval_ms == 0 {
                        err(
                            c.span(),
                            "check.seconds",
                            "seconds must be 1-120 and interval_ms ≥ 1".into(),
                        );
                    }
                    if *down_seconds > 0 && *seconds < down_seconds + 5 {
                        err(
                            c.span(),
                            "check.down_seconds",
                            "the flood (seconds) must outlast down_seconds by at least 5 s".into(),
                        );
                    }
                }
                CheckSpec::PacketInFlood { from, to, seconds } => {
                    names.push(from);
                    names.push(to);
                    if *seconds == 0 || *seconds > 60 {
                        err(c.span(), "check.seconds", "seconds must be 1-60".into());
                    }
                }
                CheckSpec::SwitchRestart {
                    from,
                    to,
                    seconds,
                    interval_ms,
                } => {
                    names.push(from);
                    names.push(to);
                    if *seconds < 3 || *seconds > 120 || *interval_ms == 0 {
                        err(
                            c.span(),
                            "check.seconds",
                            "seconds must be 3-120 and interval_ms ≥ 1".into(),
                        );
                    }
                }
                CheckSpec::LeaderFailover {
                    from,
                    to,
                    seconds,
                    interval_ms,
                    max_takeover_s,
                    max_loss_pct,
                } => {
                    names.push(from);
                    names.push(to);
                    if *seconds == 0 || *seconds > 120 || *interval_ms == 0 {
                        err(
                            c.span(),
                            "check.seconds",
                            "seconds must be 1-120 and interval_ms ≥ 1".into(),
                        );
                    }
                    if *max_takeover_s == 0 || *max_loss_pct > 100 {
                        err(
                            c.span(),
                            "check.max_takeover_s",
                            "max_takeover_s must be ≥ 1 and max_loss_pct 0-100".into(),
                        );
                    }
                    if self.controller.replicas() < 2 {
                        err(
                            c.span(),
                            "check.kind",
                            "leader-failover needs [controller] store = \"etcd\" and replicas ≥ 2"
                                .into(),
                        );
                    }
                }
                CheckSpec::FlowsInstalled => {}
                CheckSpec::Attack {
                    attacker,
                    victim,
                    attacks,
                    count,
                    ..
                } => {
                    names.push(attacker);
                    names.push(victim);
                    if attacker == victim {
                        err(
                            c.span(),
                            "check.victim",
                            "attacker and victim must be different hosts".into(),
                        );
                    }
                    if *count == 0 || *count > 200 {
                        err(c.span(), "check.count", "count must be 1-200".into());
                    }
                    let vpc = |n: &str| {
                        self.hosts
                            .iter()
                            .find(|h| h.name.get_ref() == n)
                            .map(|h| (h.tenant.get_ref(), h.vpc.get_ref()))
                    };
                    let same = vpc(attacker) == vpc(victim);
                    for k in attacks.iter().flatten() {
                        let bad = match k {
                            AttackKind::Overlap if same => {
                                Some("overlap needs a victim in another VPC")
                            }
                            AttackKind::ControlIcmp | AttackKind::ControlArp if !same => {
                                Some("controls need a victim in the attacker's VPC")
                            }
                            AttackKind::VxlanForge => {
                                Some("sent from the underlay: use kind = \"vxlan-forge\"")
                            }
                            _ => None,
                        };
                        if let Some(msg) = bad {
                            err(c.span(), "check.attacks", format!("{}: {msg}", k.name()));
                        }
                    }
                }
                CheckSpec::Gateway { from } | CheckSpec::Dhcp { from } => {
                    names.extend(from.names())
                }
                CheckSpec::Sidecar { from, .. } => names.push(from),
                CheckSpec::VxlanForge { to, count } => {
                    names.push(to);
                    if *count == 0 || *count > 200 {
                        err(c.span(), "check.count", "count must be 1-200".into());
                    }
                    if self.chassis.len() < 2 {
                        err(
                            c.span(),
                            "check.kind",
                            "vxlan-forge needs an underlay: at least two chassis".into(),
                        );
                    }
                }
                CheckSpec::Vxlan { from, to } => {
                    names.push(from);
                    names.push(to);
                    let chassis_of = |n: &str| {
                        self.hosts
                            .iter()
                            .find(|h| h.name.get_ref() == n)
                            .map(|h| h.chassis.get_ref().as_str())
                    };
                    if let (Some(a), Some(b)) = (chassis_of(from), chassis_of(to))
                        && a == b
                    {
                        err(
                            c.span(),
                            "check.to",
                            format!(
                                "{from:?} and {to:?} are both on chassis {a:?}: nothing crosses the underlay"
                            ),
                        );
                    }
                }
                CheckSpec::Service { from, remove, .. } => {
                    names.push(from);
                    names.extend(remove.as_deref());
                }
                CheckSpec::Affinity { from, .. } => names.extend(from.names()),
            }
            for n in names {
                if !hosts.contains(n) {
                    err(c.span(), "check", format!("no host {n:?}"));
                }
            }
        }
        errs
    }

    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// Routers and services: subnets, backends and services named must exist.
    fn l3_problems(&self, text: &str, file: &Path) -> Vec<String> {
        let mut errs = Vec::new();
        let mut err = |span: std::ops::Range<usize>, field: &str, msg: String| {
            errs.push(at(text, file, span, field, &msg));
        };
        let mut services = HashSet::new();
        for t in &self.tenants {
            for v in &t.vpcs {
                let subnets: HashSet<&str> = v
                    .subnets
                    .iter()
                    .map(|s| s.name.get_ref().as_str())
                    .collect();
                for r in &v.routers {
                    if let Some(e) = &r.external_ip {
                        let ext = self
                            .external
                            .as_ref()
                            .and_then(|x| parse_cidr(x.ip.get_ref()));
                        match (parse_cidr(e.get_ref()), ext) {
                            (None, _) => err(
                                e.span(),
                                "router.external_ip",
                                format!("{:?} is not address/prefix-length", e.get_ref()),
                            ),
                            (Some(_), None) => err(
                                e.span(),
                                "router.external_ip",
                                "needs an [external] network".into(),
                            ),
                            (Some((a, _)), Some(net)) if !in_cidr(a, net) => err(
                                e.span(),
                                "router.external_ip",
                                format!("{a} is not on the [external] network"),
                            ),
                            _ => {}
                        }
                    }
                    for s in &r.subnets {
                        if !subnets.contains(s.get_ref().as_str()) {
                            err(
                                s.span(),
                                "router.subnets",
                                format!(
                                    "no subnet {:?} in VPC {:?}",
                                    s.get_ref(),
                                    v.name.get_ref()
                                ),
                            );
                        }
                    }
                }
            }
            for s in &t.services {
                if !services.insert(s.name.get_ref().as_str()) {
                    err(
                        s.name.span(),
                        "service.name",
                        format!("duplicate service {:?}", s.name.get_ref()),
                    );
                }
                if !t.vpcs.iter().any(|v| v.name.get_ref() == s.vpc.get_ref()) {
                    err(
                        s.vpc.span(),
                        "service.vpc",
                        format!(
                            "no VPC {:?} in tenant {:?}",
                            s.vpc.get_ref(),
                            t.name.get_ref()
                        ),
                    );
                }
                if s.vip.get_ref().parse::<Ipv4Addr>().is_err() {
                    err(
                        s.vip.span(),
                        "service.vip",
                        format!("{:?} is not an IPv4 address", s.vip.get_ref()),
                    );
                }
                if let Some(p) = &s.protocol
                    && p.get_ref() != "tcp"
                {
                    err(
                        p.span(),
                        "service.protocol",
                        format!("{:?}: only \"tcp\" can be checked", p.get_ref()),
                    );
                }
                for b in &s.backends {
                    let ok = self.hosts.iter().any(|h| {
                        h.name.get_ref() == b.get_ref()
                            && h.tenant.get_ref() == t.name.get_ref()
                            && h.vpc.get_ref() == s.vpc.get_ref()
                    });
                    if !ok {
                        err(
                            b.span(),
                            "service.backends",
                            format!("no host {:?} in VPC {:?}", b.get_ref(), s.vpc.get_ref()),
                        );
                    }
                }
                if let Some(w) = &s.weights
                    && (w.get_ref().len() != s.backends.len()
                        || w.get_ref().iter().any(|&x| x == 0 || x > 65535))
                {
                    err(
                        w.span(),
                        "service.weights",
                        "one weight (1-65535) per backend".into(),
                    );
                }
            }
        }
        for s in self.tenants.iter().flat_map(|t| &t.services) {
            if let Some(t) = &s.affinity_timeout
                && !(1..=65535).contains(t.get_ref())
            {
                err(
                    t.span(),
                    "service.affinity_timeout",
                    "must be 1-65535 seconds".into(),
                );
            }
        }
        for c in &self.checks {
            if let CheckSpec::Affinity {
                service,
                connections,
                ..
            } = c.get_ref()
            {
                match self
                    .tenants
                    .iter()
                    .flat_map(|t| &t.services)
                    .find(|s| s.name.get_ref() == service)
                {
                    None => err(c.span(), "check.service", format!("no service {service:?}")),
                    Some(s) if s.affinity_timeout.is_none() => err(
                        c.span(),
                        "check.service",
                        format!("service {service:?} has no affinity_timeout"),
                    ),
                    Some(_) => {}
                }
                if *connections < 2 || *connections > 5000 {
                    err(c.span(), "check.connections", "must be 2-5000".into());
                }
            }
            if let CheckSpec::Service {
                service,
                connections,
                remove,
                ..
            } = c.get_ref()
            {
                if !services.contains(service.as_str()) {
                    err(c.span(), "check.service", format!("no service {service:?}"));
                }
                if *connections == 0 || *connections > 5000 {
                    err(c.span(), "check.connections", "must be 1-5000".into());
                }
                if let Some(rm) = remove {
                    let member = self.tenants.iter().flat_map(|t| &t.services).any(|s| {
                        s.name.get_ref() == service && s.backends.iter().any(|b| b.get_ref() == rm)
                    });
                    if !member {
                        err(
                            c.span(),
                            "check.remove",
                            format!("{rm:?} is not a backend of {service:?}"),
                        );
                    }
                }
            }
        }
        errs
    }
}

fn errs_push_plain(
    err: &mut impl FnMut(std::ops::Range<usize>, &str, String),
    field: &str,
    msg: &str,
) {
    err(0..0, field, msg.into());
}
