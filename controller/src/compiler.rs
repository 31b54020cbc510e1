//! The compiler: a VPC's model → per-chassis desired OpenFlow flows, full and incremental.
//!
//! Flows are produced as `ovs-ofctl` text (the canonical key used for diffing and
//! reference counting) and turned into [`FlowMod`]s with
//! [`plexus_openflow::text::flow::parse_flow_mod`] by [`to_flow_mods`].
//!
//! # Logical pipeline (per chassis)
//!
//! | table | stage | what |
//! |---|---|---|
//! | 0, 1  | classify | local VIF `in_port` → `reg14` = logical port key, `metadata` = VNI; tunnel `in_port`+`tun_id` (the VNI)+`tun_src` (a VTEP of a chassis sharing the VPC) → `metadata` = VNI (`reg14` = 0), on to the LB stage (22) |
//! | 10 | port security | `dl_src`/`nw_src`/`arp_spa`/`ipv6_src` must be the port's; otherwise drop; ND: NA only for the port's own addresses, NS with its MAC; DHCPv4 from the port's MAC → DHCP responder (when its subnet serves DHCP) |
//! | 20, 21 | from-port SG (the port's *egress* rules) | `ct(zone=key)`; `+est`/`+rel` pass, `+new` matching a rule is committed (TCP only with SYN and no ACK), the rest dropped |
//! | 20 (priority 110) | ND | neighbour solicitations for IPv6 gateways and (multicast) for port addresses, ICMPv6 echo to IPv6 gateways → responders |
//! | 22, 23 | LB | requests to a VIP → `ct(nat)` in the VPC's LB zone, new ones → the service's select group (`ct(commit,nat(dst=backend))`); replies from backends (also arriving through the tunnel from another chassis) → `ct(nat)` (un-DNAT) |
//! | 25 | L3 | ARP for gateways, VIPs and (broadcast) for port addresses, ICMP echo to gateways → responders; distributed routing (`dl_dst` = router MAC, `nw_dst` = a port); with an external gateway: VPC CIDRs dropped (20), the rest to the gateway chassis (10) |
//! | 1, 2, 26, 27 | SNAT (gateway chassis) | 26: `ct(commit,nat(src=E))`, 27: out the external port to the nexthop's MAC; from the external port: ARP for E answered (0), `ct(nat)` (1) and established/related replies routed back (2) |
//! | 24, 28 | LB session affinity | 24: dispatch on the backend remembered for the client (`reg12`/`reg13`) or the select group, `learn()` into 28 (entries with cookie 0, idle timeout) |
//! | 30 | L2 lookup | other DHCP client→server datagrams dropped; `dl_dst` → local port (`reg15` = key, to 40) or remote chassis (`tun_id` = VNI, `tun_dst` = VTEP, out the tunnel port); broadcast/multicast flooded |
//! | 40, 41 | to-port SG (the port's *ingress* rules) | as 20/21 for the destination port |
//! | 50 | output | `reg15` → the port's ofport |
//!
//! Responders are `controller(userdata=<plexus_responder::Spec>)` actions carrying every
//! parameter of the reply: `plexus-vswitchd` answers them locally, and for Open vSwitch
//! the southbound answers the `NXT_PACKET_IN2` with a PACKET_OUT built by the same code.
//!
//! A port without security groups (or with port security off) skips the SG stages.
//!
//! # Security-group rules with a remote group: conjunctive matches
//!
//! A rule "allow from the members of group R" on the members of group G would need
//! |members(G)| × |addresses(R)| × |port prefixes| flows. Instead each such rule is one
//! OpenFlow conjunction (`conj_id` = group key << 16 | rule index) in the SG's ct table:
//! clause 1 = the destination (or source) port's `reg15`/`reg14` (one flow per member
//! port, from the port's unit), clause 2 = the peer address with the VPC's `metadata`
//! (one flow per address of R's members), clause 3 = the protocol/port prefix (omitted
//! for protocol "any"), and one `conj_id=ID,ip,metadata=VNI` flow that commits in the
//! port's zone (`zone=NXM_NX_REG15[0..15]` — the zone is the port key) and continues.
//! Clause flows with the same match from different rules are merged into one flow
//! carrying all their `conjunction(…)` actions (OVS requires it): the engine keeps the
//! contributions reference-counted and emits the merged text. Rules without a remote
//! group (a CIDR or any peer) stay plain per-port flows (their product is small). Group
//! units own clauses 2 and 3 and the conj_id flow on each chassis hosting an enforcing
//! member, so a port joining a group recomputes that port and the groups that name its
//! groups as remote — not every port whose rules mention them.
//!
//! The
//! tunnel mesh only spans chassis that host a port of the VPC. Flooded packets go straight
//! to local ofports (the to-port SG is not applied to broadcast/multicast yet).
//!
//! # Incrementality
//!
//! Output is the union of *units*: one per port (its flows on its own chassis plus its L2
//! entry on every other chassis of the VPC) and one per chassis (tunnel classification,
//! flooding, table defaults). Each flow is reference-counted per chassis, so replacing a
//! unit's output yields an exact add/remove delta. [`Engine::apply`] recomputes only the
//! units a change affects; [`compile_full`] recomputes all of them, and the property test
//! checks that both agree.

use plexus_api::{Direction, Ethertype, Protocol, SecurityGroupRule};
use plexus_openflow::message::{FlowMod, FlowModCommand, GroupMod, GroupModCommand};
use plexus_openflow::text::ParseError;
use plexus_openflow::text::flow::{parse_flow_mod, parse_group_mod};
use plexus_responder::{Dhcp4Spec, Spec as Responder};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub const T_CLASSIFY: u8 = 0;
pub const T_PORT_SEC: u8 = 10;
pub const T_FROM_ACL: u8 = 20;
pub const T_FROM_ACL_CT: u8 = 21;
pub const T_LB: u8 = 22;
pub const T_LB_CT: u8 = 23;
/// Packets from the external network to a router's external address (gateway chassis):
/// `ct(nat)` into [`T_UNSNAT`] (a table of its own, so that the metadata written in table 0
/// is set before the ct action runs).
pub const T_EXT_IN: u8 = 1;
/// Replies from the external network after un-SNAT (gateway chassis); entered by
/// recirculation from [`T_EXT_IN`], continues to [`T_L3`].
pub const T_UNSNAT: u8 = 2;
/// Session affinity: dispatch on the backend remembered for the client (reg12 = backend
/// IPv4, reg13 = backend port; 0 = none) or pick one with the group.
pub const T_LB_AFF: u8 = 24;
pub const T_L3: u8 = 25;
/// SNAT to the external network and output there (gateway chassis).
pub const T_SNAT: u8 = 26;
pub const T_SNAT_OUT: u8 = 27;
/// Session affinity: the `learn`ed client → backend entries (cookie 0: not Plexus-owned,
/// never reconciled; they expire by idle timeout). Reached only by `resubmit`.
pub const T_LB_LEARNED: u8 = 28;
pub const T_L2: u8 = 30;
pub const T_TO_ACL: u8 = 40;
pub const T_TO_ACL_CT: u8 = 41;
pub const T_OUT: u8 = 50;

/// The OpenFlow port number of a binding whose switch has not reported the interface
/// yet: the port gets no flows on its own chassis, but the other chassis of the VPC
/// already reach it through the tunnel (their flows do not depend on that number).
pub const OFPORT_UNKNOWN: u32 = 0;

/// A logical port as the compiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LPort {
    /// Logical port key, unique within the VPC (1..=0xffff); also the port's ct zone.
    pub key: u16,
    pub mac: [u8; 6],
    pub ips: Vec<IpAddr>,
    pub port_security: bool,
    pub groups: Vec<String>,
    /// Chassis id and the interface's OpenFlow port number there (as the switch reports
    /// it; [`OFPORT_UNKNOWN`] until it does).
    pub binding: Option<(String, u32)>,
    /// DHCPv4 served to this port (its subnet has DHCP enabled and it has an IPv4
    /// address): the lease is the port's first IPv4 address.
    pub dhcp: Option<PortDhcp>,
}

/// DHCPv4 parameters of a port, from its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDhcp {
    /// Server identifier: the subnet's gateway address.
    pub server_ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Router option: the gateway, when a router serves the subnet.
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
    pub mtu: Option<u16>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// Key unique per chassis across every model (the high half of its rules'
    /// conjunction ids).
    pub key: u16,
    pub rules: Vec<SecurityGroupRule>,
}

/// A chassis: VTEP address and the OpenFlow port of its flow-based VXLAN port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisInfo {
    pub vtep: Ipv4Addr,
    pub tunnel_ofport: u32,
}

/// One backend of a service (resolved to an IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcBackend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub weight: u16,
}

/// A load-balanced service: an OpenFlow select group plus ct NAT flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// OpenFlow group id, unique per chassis across VPCs.
    pub group_id: u32,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub udp: bool,
    /// Healthy backends with a non-zero weight (others get no new connections).
    pub backends: Vec<SvcBackend>,
    /// Client-IP session affinity: new connections of a client go to the backend its
    /// last connection went to while that was at most this many seconds ago (idle).
    pub affinity_timeout: Option<u16>,
}

/// SNAT to an external network through a gateway chassis (a router's external gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snat {
    /// The gateway chassis; it joins the VPC's tunnel mesh.
    pub chassis: String,
    /// The router's external address (the SNAT source) and its MAC ([`external_mac`]).
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub nexthop_mac: [u8; 6],
    /// OpenFlow port of the gateway chassis' external interface ([`EXTERNAL_IFACE`]);
    /// [`OFPORT_UNKNOWN`] until its switch reports it.
    pub ext_ofport: u32,
}

/// Interface name of a gateway chassis' port on the external network.
pub const EXTERNAL_IFACE: &str = "plx-ext";

/// The VPC's L3 identity: the distributed router's MAC, the gateway addresses it answers
/// ARP for (subnets attached to a router), the ct zone of its load balancers (also used
/// for SNAT), its CIDRs (never sent to the external gateway) and the external gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct L3 {
    pub router_mac: [u8; 6],
    pub gateways: BTreeSet<Ipv4Addr>,
    /// IPv6 gateway addresses of router-attached subnets (ND and ICMPv6 echo only:
    /// IPv6 routing is not compiled yet).
    pub gateways6: BTreeSet<Ipv6Addr>,
    pub lb_zone: u16,
    pub cidrs: Vec<(Ipv4Addr, u8)>,
    pub snat: Option<Snat>,
    /// Static routes of the VPC's routers: (destination network, prefix length, next hop).
    /// Compiled into the unit of the port that owns the next hop (its MAC is the
    /// rewrite), on every chassis of the VPC, below the per-port /32 routes and by prefix
    /// length among themselves (longest prefix wins).
    pub routes: BTreeSet<(Ipv4Addr, u8, Ipv4Addr)>,
}

/// The compiler's input: one VPC.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    pub vni: u32,
    pub ports: BTreeMap<String, LPort>,
    pub groups: BTreeMap<String, Group>,
    pub chassis: BTreeMap<String, ChassisInfo>,
    pub l3: L3,
    pub services: BTreeMap<String, Service>,
}

/// Group ids Plexus owns: `GROUP_BASE | key` (key 1..=0xfffe); other groups on a switch
/// are never touched.
pub const GROUP_BASE: u32 = 0x5000_0000;
pub const GROUP_MASK: u32 = 0xffff_0000;

/// The router MAC of a VPC: locally administered unicast `0a:00` + VNI.
pub fn router_mac(vni: u32) -> [u8; 6] {
    let v = vni.to_be_bytes();
    [0x0a, 0x00, v[0], v[1], v[2], v[3]]
}

/// The MAC of a VPC router's external port: `0a:01` + VNI.
pub fn external_mac(vni: u32) -> [u8; 6] {
    let v = vni.to_be_bytes();
    [0x0a, 0x01, v[0], v[1], v[2], v[3]]
}

/// Whether a desired-set entry is a group (`group_id=…`) rather than a flow.
pub fn is_group(entry: &str) -> bool {
    entry.starts_with("group_id=")
}

/// Per-chassis flow sets (ovs-ofctl text).
pub type Flows = BTreeMap<String, BTreeSet<String>>;

/// One model change.
#[derive(Debug, Clone)]
pub enum Change {
    PutPort(String, LPort),
    DelPort(String),
    PutGroup(String, Group),
    DelGroup(String),
    PutChassis(String, ChassisInfo),
    DelChassis(String),
    PutService(String, Service),
    DelService(String),
    PutL3(L3),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Port(String),
    Chassis(String),
    Service(String),
    Router,
    /// A security group's conjunctive clauses 2/3 and `conj_id` flows.
    Group(String),
}

fn mac(m: &[u8; 6]) -> String {
    plexus_api::validate::format_mac(*m)
}

/// Chassis that host at least one bound port of the VPC, plus its SNAT gateway chassis
/// (those that exist).
fn vpc_chassis(m: &Model) -> BTreeSet<String> {
    m.ports
        .values()
        .filter_map(|p| p.binding.as_ref().map(|(c, _)| c.clone()))
        .chain(m.l3.snat.as_ref().map(|s| s.chassis.clone()))
        .filter(|c| m.chassis.contains_key(c))
        .collect()
}

/// Splits `lo..=hi` into `value/mask` prefixes.
pub fn port_range_masks(lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (lo as u32, hi as u32);
    while lo <= hi {
        let mut size = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, (0x1_0000 - size) as u16));
        lo += size;
    }
    out
}

struct Out<'a> {
    flows: &'a mut Flows,
}

impl Out<'_> {
    fn add(&mut self, chassis: &str, flow: String) {
        self.flows
            .entry(chassis.to_string())
            .or_default()
            .insert(flow);
    }
}

/// The L4 match words for a rule.
fn rule_matches(r: &SecurityGroupRule) -> Vec<String> {
    let v6 = r.ethertype == Ethertype::Ipv6;
    let proto = match (r.protocol, v6) {
        (Protocol::Any, false) => "ip",
        (Protocol::Any, true) => "ipv6",
        (Protocol::Tcp, false) => "tcp",
        (Protocol::Tcp, true) => "tcp6",
        (Protocol::Udp, false) => "udp",
        (Protocol::Udp, true) => "udp6",
        (Protocol::Icmp, false) => "icmp",
        (Protocol::Icmp, true) => "icmp6",
    };
    match (r.port_min, r.port_max) {
        (None, None) => vec![proto.to_string()],
        (a, b) => {
            let lo = a.unwrap_or(1);
            let hi = b.unwrap_or(65535);
            if lo == hi {
                vec![format!("{proto},tp_dst={lo}")]
            } else {
                port_range_masks(lo, hi)
                    .into_iter()
                    .map(|(v, m)| {
                        if m == 0xffff {
                            format!("{proto},tp_dst={v}")
                        } else {
                            format!("{proto},tp_dst={v:#x}/{m:#x}")
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Peer address matches of a rule (`None` = any peer; empty = no peer, no flows).
fn rule_peers(m: &Model, r: &SecurityGroupRule) -> Option<Vec<String>> {
    let v6 = r.ethertype == Ethertype::Ipv6;
    let (src, dst) = if v6 {
        ("ipv6_src", "ipv6_dst")
    } else {
        ("nw_src", "nw_dst")
    };
    let field = match r.direction {
        Direction::Ingress => src,
        Direction::Egress => dst,
    };
    if let Some(c) = &r.remote_cidr {
        return Some(vec![format!("{field}={c}")]);
    }
    let g = r.remote_group_id.as_ref()?;
    let mut ips: BTreeSet<IpAddr> = BTreeSet::new();
    for p in m.ports.values() {
        if p.groups.contains(g) {
            ips.extend(p.ips.iter().filter(|a| a.is_ipv6() == v6));
        }
    }
    Some(ips.into_iter().map(|a| format!("{field}={a}")).collect())
}

/// A port's flows on its own chassis (classification through output).
fn compile_port_local(m: &Model, p: &LPort, ch: &str, ofport: u32, out: &mut Out<'_>) {
    let (vni, k, mac_s) = (m.vni, p.key, mac(&p.mac));
    let mut f = |t: u8, prio: u16, body: String| {
        out.add(ch, format!("table={t},priority={prio},{body}"));
    };
    // 0: classify.
    f(
        T_CLASSIFY,
        100,
        format!(
            "in_port={ofport},actions=set_field:{k}->reg14,write_metadata:{vni:#x},goto_table:{T_PORT_SEC}"
        ),
    );
    // 10: port security.
    if p.port_security {
        for ip in &p.ips {
            match ip {
                IpAddr::V4(a) => {
                    f(
                        T_PORT_SEC,
                        90,
                        format!(
                            "ip,reg14={k},dl_src={mac_s},nw_src={a},actions=goto_table:{T_FROM_ACL}"
                        ),
                    );
                    f(
                        T_PORT_SEC,
                        90,
                        format!(
                            "arp,reg14={k},dl_src={mac_s},arp_spa={a},arp_sha={mac_s},actions=goto_table:{T_FROM_ACL}"
                        ),
                    );
                }
                IpAddr::V6(a) => {
                    f(
                        T_PORT_SEC,
                        90,
                        format!(
                            "ipv6,reg14={k},dl_src={mac_s},ipv6_src={a},actions=goto_table:{T_FROM_ACL}"
                        ),
                    );
                }
            }
        }
        // DHCPv4 discovery and IPv6 link-local (ND) from the port's MAC.
        f(
            T_PORT_SEC,
            90,
            format!(
                "udp,reg14={k},dl_src={mac_s},nw_src=0.0.0.0,tp_src=68,tp_dst=67,actions=goto_table:{T_FROM_ACL}"
            ),
        );
        f(
            T_PORT_SEC,
            90,
            format!(
                "ipv6,reg14={k},dl_src={mac_s},ipv6_src=fe80::/10,actions=goto_table:{T_FROM_ACL}"
            ),
        );
        nd_port_security(p, &mut f);
        f(T_PORT_SEC, 80, format!("reg14={k},actions=drop"));
    } else {
        f(
            T_PORT_SEC,
            90,
            format!("reg14={k},actions=goto_table:{T_FROM_ACL}"),
        );
    }
    // 20/21 and 40/41: security groups.
    let enforce = p.port_security && !p.groups.is_empty();
    for (t, t_ct, next, reg, dir) in [
        (T_FROM_ACL, T_FROM_ACL_CT, T_LB, "reg14", Direction::Egress),
        (T_TO_ACL, T_TO_ACL_CT, T_OUT, "reg15", Direction::Ingress),
    ] {
        if !enforce {
            f(t, 90, format!("{reg}={k},actions=goto_table:{next}"));
            continue;
        }
        for l3 in ["ip", "ipv6"] {
            f(
                t,
                100,
                format!("{l3},{reg}={k},actions=ct(table={t_ct},zone={k})"),
            );
        }
        f(t, 90, format!("{reg}={k},actions=goto_table:{next}"));
        f(
            t_ct,
            210,
            format!("ct_state=+inv+trk,{reg}={k},actions=drop"),
        );
        f(
            t_ct,
            200,
            format!("ct_state=-new+est+trk,{reg}={k},actions=goto_table:{next}"),
        );
        f(
            t_ct,
            200,
            format!("ct_state=-new+rel+trk,{reg}={k},actions=goto_table:{next}"),
        );
        f(t_ct, 1, format!("{reg}={k},actions=drop"));
        // Only a SYN without ACK may open a TCP connection: conntrack (OVS's and
        // plexus-vswitchd's alike) also takes a bare ACK, FIN or RST as `+new`
        // ("mid-stream pickup"), which the rules below would commit.
        for tcp in ["tcp", "tcp6"] {
            for flags in ["-syn", "+syn+ack"] {
                f(
                    t_ct,
                    150,
                    format!("ct_state=+new+trk,{tcp},{reg}={k},tcp_flags={flags},actions=drop"),
                );
            }
        }
        let mut conj: BTreeSet<String> = BTreeSet::new();
        for g in &p.groups {
            let Some(group) = m.groups.get(g) else {
                continue;
            };
            for (idx, r) in group.rules.iter().enumerate() {
                if r.direction != dir {
                    continue;
                }
                if let Some((id, n)) = conj_of(group, idx, r) {
                    conj.insert(format!("conjunction({id},1/{n})"));
                    continue;
                }
                let peers: Vec<Option<String>> = match rule_peers(m, r) {
                    None => vec![None],
                    Some(v) => v.into_iter().map(Some).collect(), // empty group: no flows
                };
                for l4 in rule_matches(r) {
                    for peer in &peers {
                        let mut body = format!("ct_state=+new+trk,{l4},{reg}={k}");
                        if let Some(pm) = peer {
                            let _ = write!(body, ",{pm}");
                        }
                        let _ = write!(body, ",actions=ct(commit,zone={k}),goto_table:{next}");
                        f(t_ct, 100, body);
                    }
                }
            }
        }
        if !conj.is_empty() {
            let acts: Vec<String> = conj.into_iter().collect();
            f(
                t_ct,
                100,
                format!("ct_state=+new+trk,{reg}={k},actions={}", acts.join(",")),
            );
        }
    }
    // 10: DHCPv4 from the port's own MAC → the local DHCP responder (port security:
    // the responder also answers only this MAC in chaddr).
    let dhcp = dhcp_spec(m, p);
    if let Some(spec) = &dhcp {
        f(
            T_PORT_SEC,
            95,
            format!(
                "udp,reg14={k},dl_src={mac_s},tp_src=68,tp_dst=67,actions={}",
                responder_action(spec)
            ),
        );
    }
    // 25: the port's own ARP requests for its own addresses (RFC 5227 probes) are not
    // answered by the responders below (that would be a conflict); they go on to L2.
    for ip in &p.ips {
        if let IpAddr::V4(a) = ip {
            f(
                T_L3,
                101,
                format!("arp,reg14={k},arp_op=1,arp_tpa={a},actions=goto_table:{T_L2}"),
            );
        }
    }
    // 30: L2 lookup (local); 50: output.
    f(
        T_L2,
        100,
        format!(
            "metadata={vni:#x},dl_dst={mac_s},actions=set_field:{k}->reg15,goto_table:{T_TO_ACL}"
        ),
    );
    f(T_OUT, 100, format!("reg15={k},actions=output:{ofport}"));
    // Renewals are unicast to the DHCP server identifier: answer ARP for it even on a
    // subnet without a router (same text as the router's responder: ref-counted).
    if let Some(Responder::Dhcp4(d)) = &dhcp {
        out.add(ch, arp_responder(vni, d.server_ip, m.l3.router_mac));
    }
}

fn compile_port(m: &Model, id: &str, out: &mut Out<'_>) {
    let Some(p) = m.ports.get(id) else { return };
    let Some((ch, ofport)) = &p.binding else {
        return;
    };
    let Some(_) = m.chassis.get(ch) else { return };
    // Its own chassis: only once the switch reported the interface.
    if *ofport != OFPORT_UNKNOWN {
        compile_port_local(m, p, ch, *ofport, out);
    }
    let (vni, mac_s) = (m.vni, mac(&p.mac));
    // On every chassis of the VPC: broadcast ARP requests and multicast neighbour
    // solicitations for this port's addresses are answered locally with its MAC
    // (no flooding); unicast ones (NUD probes) still reach the port.
    for c in vpc_chassis(m) {
        for ip in &p.ips {
            match ip {
                IpAddr::V4(a) => {
                    let spec = Responder::Arp { mac: p.mac, ip: *a };
                    if spec.validate().is_ok() {
                        out.add(
                            &c,
                            format!(
                                "table={T_L3},priority=100,arp,metadata={vni:#x},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa={a},actions={}",
                                responder_action(&spec)
                            ),
                        );
                    }
                }
                IpAddr::V6(a) => {
                    let spec = Responder::Nd {
                        mac: p.mac,
                        ip: *a,
                        router: false,
                    };
                    if spec.validate().is_ok() {
                        out.add(
                            &c,
                            format!(
                                "table={T_FROM_ACL},priority=110,icmp6,metadata={vni:#x},dl_dst=33:33:00:00:00:00/ff:ff:00:00:00:00,icmp_type=135,icmp_code=0,nd_target={a},actions={}",
                                responder_action(&spec)
                            ),
                        );
                    }
                }
            }
        }
    }
    // 25 on every chassis of the VPC: routed to this port (distributed router).
    let rmac = mac(&m.l3.router_mac);
    for c in vpc_chassis(m) {
        for ip in &p.ips {
            if let IpAddr::V4(a) = ip {
                out.add(
                    &c,
                    format!(
                        "table={T_L3},priority=50,ip,metadata={vni:#x},dl_dst={rmac},nw_dst={a},actions=dec_ttl,set_field:{rmac}->eth_src,set_field:{mac_s}->eth_dst,goto_table:{T_L2}"
                    ),
                );
            }
        }
    }
    // 25: static routes whose next hop is this port.
    for (dst, len, nh) in &m.l3.routes {
        if !p.ips.contains(&IpAddr::V4(*nh)) {
            continue;
        }
        let nw_dst = match len {
            0 => String::new(),
            32 => format!(",nw_dst={dst}"),
            l => format!(",nw_dst={dst}/{l}"),
        };
        for c in vpc_chassis(m) {
            out.add(
                &c,
                format!(
                    "table={T_L3},priority={},ip,metadata={vni:#x},dl_dst={rmac}{nw_dst},actions=dec_ttl,set_field:{rmac}->eth_src,set_field:{mac_s}->eth_dst,goto_table:{T_L2}",
                    10 + u16::from(*len)
                ),
            );
        }
    }
    // 30 on every other chassis of the VPC: to this port's chassis through the tunnel.
    let vtep = m.chassis[ch].vtep;
    for other in vpc_chassis(m) {
        if &other == ch {
            continue;
        }
        let tun = m.chassis[&other].tunnel_ofport;
        out.add(
            &other,
            format!(
                "table={T_L2},priority=100,metadata={vni:#x},dl_dst={mac_s},actions=set_field:{vni:#x}->tun_id,set_field:{vtep}->tun_dst,output:{tun}"
            ),
        );
    }
}

/// The EUI-64 link-local address of a MAC (what Linux configures by default).
pub fn link_local(mac: [u8; 6]) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// Neighbour discovery port security (table 10, above the address checks): a
/// neighbour advertisement must be for one of the port's own addresses (its IPv6
/// addresses and its EUI-64 link-local) with the port's MAC or no target link-layer
/// address option; a neighbour solicitation must carry the port's MAC or no source
/// link-layer address option. Any other NA/NS from the port is dropped.
fn nd_port_security(p: &LPort, f: &mut impl FnMut(u8, u16, String)) {
    let (k, mac_s) = (p.key, mac(&p.mac));
    let none = "00:00:00:00:00:00";
    let mut srcs = vec!["fe80::/10".to_string()];
    let mut targets = vec![link_local(p.mac)];
    for ip in &p.ips {
        if let IpAddr::V6(a) = ip {
            srcs.push(a.to_string());
            targets.push(*a);
        }
    }
    targets.sort();
    targets.dedup();
    let base = |ty: u8| format!("icmp6,reg14={k},dl_src={mac_s},icmp_type={ty},icmp_code=0");
    for src in &srcs {
        for t in &targets {
            for tll in [mac_s.as_str(), none] {
                f(
                    T_PORT_SEC,
                    95,
                    format!(
                        "{},ipv6_src={src},nd_target={t},nd_tll={tll},actions=goto_table:{T_FROM_ACL}",
                        base(136)
                    ),
                );
            }
        }
        f(
            T_PORT_SEC,
            95,
            format!(
                "{},ipv6_src={src},nd_sll={mac_s},actions=goto_table:{T_FROM_ACL}",
                base(135)
            ),
        );
    }
    // Duplicate address detection: from `::`, without a source link-layer option.
    f(
        T_PORT_SEC,
        95,
        format!(
            "{},ipv6_src=::,nd_sll={none},actions=goto_table:{T_FROM_ACL}",
            base(135)
        ),
    );
    for ty in [135, 136] {
        f(
            T_PORT_SEC,
            94,
            format!("icmp6,reg14={k},icmp_type={ty},actions=drop"),
        );
    }
}

/// The conjunction id and clause count of a rule compiled as a conjunction (rules with a
/// remote group; the rule index must fit the low 16 bits of the id).
fn conj_of(g: &Group, idx: usize, r: &SecurityGroupRule) -> Option<(u32, u8)> {
    r.remote_group_id.as_ref()?;
    if idx > 0xffff {
        return None;
    }
    let n = if l4_clause(r).is_some() { 3 } else { 2 };
    Some(((g.key as u32) << 16 | idx as u32, n))
}

/// The protocol/port clause of a conjunctive rule; `None` for protocol "any".
fn l4_clause(r: &SecurityGroupRule) -> Option<Vec<String>> {
    if r.protocol == Protocol::Any && r.port_min.is_none() && r.port_max.is_none() {
        return None;
    }
    Some(rule_matches(r))
}

/// Whether a port's SG stages are enforced (and so its groups' rules apply).
fn enforced(p: &LPort) -> bool {
    p.port_security && !p.groups.is_empty()
}

/// A security group's shared conjunctive flows (clause 2: peer addresses, clause 3:
/// protocol/ports, and the `conj_id` flow) on every chassis hosting an enforcing member.
fn compile_group(m: &Model, gid: &str, out: &mut Out<'_>) {
    let Some(group) = m.groups.get(gid) else {
        return;
    };
    let chassis: BTreeSet<&String> = m
        .ports
        .values()
        .filter(|p| enforced(p) && p.groups.iter().any(|g| g == gid))
        .filter_map(|p| p.binding.as_ref().map(|(c, _)| c))
        .filter(|c| m.chassis.contains_key(*c))
        .collect();
    if chassis.is_empty() {
        return;
    }
    let vni = m.vni;
    for (idx, r) in group.rules.iter().enumerate() {
        let Some((id, n)) = conj_of(group, idx, r) else {
            continue;
        };
        let peers = rule_peers(m, r).unwrap_or_default();
        if peers.is_empty() {
            continue; // an empty remote group allows nothing
        }
        let (t_ct, next, reg) = match r.direction {
            Direction::Egress => (T_FROM_ACL_CT, T_LB, "NXM_NX_REG14"),
            Direction::Ingress => (T_TO_ACL_CT, T_OUT, "NXM_NX_REG15"),
        };
        let l3 = if r.ethertype == Ethertype::Ipv6 {
            "ipv6"
        } else {
            "ip"
        };
        let l4 = l4_clause(r);
        for c in &chassis {
            out.add(
                c,
                format!(
                    "table={t_ct},priority=100,conj_id={id},{l3},metadata={vni:#x},actions=ct(commit,zone={reg}[0..15]),goto_table:{next}"
                ),
            );
            for pm in &peers {
                out.add(
                    c,
                    format!(
                        "table={t_ct},priority=100,ct_state=+new+trk,{l3},metadata={vni:#x},{pm},actions=conjunction({id},2/{n})"
                    ),
                );
            }
            for x in l4.iter().flatten() {
                out.add(
                    c,
                    format!(
                        "table={t_ct},priority=100,ct_state=+new+trk,{x},metadata={vni:#x},actions=conjunction({id},3/3)"
                    ),
                );
            }
        }
    }
}

/// A conjunctive clause flow split into its identity (everything before the actions)
/// and its `conjunction(…)` actions; `None` for any other flow.
fn split_conj(f: &str) -> Option<(&str, impl Iterator<Item = &str>)> {
    let i = f.find(",actions=conjunction(")?;
    let acts = &f[i + ",actions=".len()..];
    Some((
        &f[..i],
        acts.split(",conjunction(")
            .map(|a| a.trim_start_matches("conjunction(")),
    ))
}

/// The merged text of a clause flow from its conjunction actions (`id,k/n` items).
fn merged_conj(prefix: &str, items: impl Iterator<Item = impl AsRef<str>>) -> String {
    let mut s = format!("{prefix},actions=");
    for (i, it) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let it = it.as_ref();
        s.push_str("conjunction(");
        s.push_str(it.trim_end_matches(')'));
        s.push(')');
    }
    s
}

/// Merges clause flows with the same identity (see the module docs).
fn merge_conj(flows: BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut soft: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in flows {
        if let Some((prefix, items)) = split_conj(&f) {
            let e = soft.entry(prefix.to_string()).or_default();
            e.extend(items.map(|i| i.trim_end_matches(')').to_string()));
            continue;
        }
        out.insert(f);
    }
    for (prefix, items) in soft {
        out.insert(merged_conj(&prefix, items.iter()));
    }
    out
}

fn compile_chassis(m: &Model, ch: &str, out: &mut Out<'_>) {
    let members = vpc_chassis(m);
    if !members.contains(ch) {
        return;
    }
    let vni = m.vni;
    let info = &m.chassis[ch];
    let tun = info.tunnel_ofport;
    let mut f = |t: u8, prio: u16, body: String| {
        out.add(ch, format!("table={t},priority={prio},{body}"));
    };
    // Decapsulation: only from the VTEPs of chassis that share this VPC, with its VNI.
    // Tunnelled packets enter at the LB stage, so that replies of a backend on another
    // chassis are un-DNATed here, where the client's connection was committed.
    for other in members.iter().filter(|c| *c != ch) {
        let src = m.chassis[other].vtep;
        f(
            T_CLASSIFY,
            100,
            format!(
                "in_port={tun},tun_id={vni:#x},tun_src={src},actions=write_metadata:{vni:#x},goto_table:{T_LB}"
            ),
        );
    }
    for t in [T_CLASSIFY, T_PORT_SEC, T_FROM_ACL, T_L2, T_TO_ACL, T_OUT] {
        f(t, 0, "actions=drop".into());
    }
    f(T_LB, 0, format!("actions=goto_table:{T_L3}"));
    f(T_LB_CT, 0, format!("actions=goto_table:{T_L3}"));
    f(T_L3, 0, format!("actions=goto_table:{T_L2}"));
    let locals: Vec<u32> = m
        .ports
        .values()
        .filter_map(|p| match &p.binding {
            Some((c, o)) if c == ch && *o != OFPORT_UNKNOWN => Some(*o),
            _ => None,
        })
        .collect();
    let mut local_out = String::new();
    for o in &locals {
        let _ = write!(local_out, "output:{o},");
    }
    let mut remote_out = format!("set_field:{vni:#x}->tun_id,");
    for other in members.iter().filter(|c| *c != ch) {
        let _ = write!(
            remote_out,
            "set_field:{}->tun_dst,output:{tun},",
            m.chassis[other].vtep
        );
    }
    let bcast = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00";
    let from_tunnel = if local_out.is_empty() {
        "drop".to_string()
    } else {
        local_out.trim_end_matches(',').to_string()
    };
    f(
        T_L2,
        111,
        format!("metadata={vni:#x},reg14=0,{bcast},actions={from_tunnel}"),
    );
    // No DHCP server in the model: DHCP client->server datagrams (a port's
    // DISCOVERs pass port security from its own MAC) are dropped here, never
    // flooded to the VPC's other ports (DHCP starvation; plexus-topo `attack`).
    f(
        T_L2,
        112,
        format!("udp,metadata={vni:#x},tp_src=68,tp_dst=67,actions=drop"),
    );
    let from_local = format!("{local_out}{remote_out}");
    f(
        T_L2,
        110,
        format!(
            "metadata={vni:#x},{bcast},actions={}",
            from_local.trim_end_matches(',')
        ),
    );
}

/// The flow action that hands a packet to a local responder: `plexus-vswitchd` answers
/// it on the datapath thread; Open vSwitch sends it to the controller as an
/// `NXT_PACKET_IN2` carrying the same userdata, and the controller answers with the same
/// code ([`crate::southbound`]).
pub fn responder_action(spec: &Responder) -> String {
    format!("controller(userdata={})", spec.ofctl_userdata())
}

/// The DHCPv4 responder of a port, if its subnet serves DHCP and the parameters are valid.
fn dhcp_spec(m: &Model, p: &LPort) -> Option<Responder> {
    let d = p.dhcp.as_ref()?;
    let client_ip = p.ips.iter().find_map(|a| match a {
        IpAddr::V4(v) => Some(*v),
        IpAddr::V6(_) => None,
    })?;
    let spec = Responder::Dhcp4(Box::new(Dhcp4Spec {
        server_mac: m.l3.router_mac,
        server_ip: d.server_ip,
        client_mac: p.mac,
        client_ip,
        prefix_len: d.prefix_len,
        lease_secs: d.lease_secs,
        mtu: d.mtu,
        router: d.router,
        dns: d.dns.clone(),
        domain: d.domain.clone(),
    }));
    spec.validate().ok().map(|()| spec)
}

/// An ARP responder: answers `who-has ip` with `mac` out of the port the request came
/// from (through the local responder, see [`responder_action`]).
fn arp_responder(vni: u32, ip: Ipv4Addr, mac: [u8; 6]) -> String {
    let spec = Responder::Arp { mac, ip };
    format!(
        "table={T_L3},priority=100,arp,metadata={vni:#x},arp_op=1,arp_tpa={ip},actions={}",
        responder_action(&spec)
    )
}

/// The router unit: ARP and ICMP echo responders for the IPv4 gateway addresses, ND and
/// ICMPv6 echo responders for the IPv6 ones, on every chassis of the VPC.
fn compile_router(m: &Model, out: &mut Out<'_>) {
    let (vni, rmac_b) = (m.vni, m.l3.router_mac);
    let probe = Responder::Arp {
        mac: rmac_b,
        ip: Ipv4Addr::new(10, 0, 0, 1),
    };
    if probe.validate().is_err() {
        return; // no router MAC (an all-zero L3)
    }
    let rmac = mac(&rmac_b);
    for c in vpc_chassis(m) {
        for gw in &m.l3.gateways {
            out.add(&c, arp_responder(vni, *gw, rmac_b));
            let echo = Responder::Icmp4Echo {
                mac: rmac_b,
                ip: *gw,
            };
            out.add(
                &c,
                format!(
                    "table={T_L3},priority=100,icmp,metadata={vni:#x},dl_dst={rmac},nw_dst={gw},icmp_type=8,icmp_code=0,actions={}",
                    responder_action(&echo)
                ),
            );
        }
        for gw in &m.l3.gateways6 {
            let nd = Responder::Nd {
                mac: rmac_b,
                ip: *gw,
                router: true,
            };
            let echo = Responder::Icmp6Echo {
                mac: rmac_b,
                ip: *gw,
            };
            if nd.validate().is_err() {
                continue;
            }
            out.add(
                &c,
                format!(
                    "table={T_FROM_ACL},priority=110,icmp6,metadata={vni:#x},icmp_type=135,icmp_code=0,nd_target={gw},actions={}",
                    responder_action(&nd)
                ),
            );
            out.add(
                &c,
                format!(
                    "table={T_FROM_ACL},priority=110,icmp6,metadata={vni:#x},ipv6_dst={gw},icmp_type=128,icmp_code=0,actions={}",
                    responder_action(&echo)
                ),
            );
        }
    }
}

/// SNAT through the gateway chassis `G` (the router unit): on every chassis of the VPC,
/// routed packets (`dl_dst` = router MAC) to an address outside the VPC's CIDRs go to `G`
/// through the tunnel (on `G` itself: to the SNAT stage); addresses inside the CIDRs that no
/// port has are dropped. On `G`: `ct(commit,nat(src=E))` in the VPC's LB zone, then out the
/// external port with the router's external MAC to the nexthop's; from the external port,
/// ARP for `E` is answered and packets to `E` are un-SNATed (`ct(nat)`) and routed like any
/// other routed packet (established/related only).
fn compile_snat(m: &Model, out: &mut Out<'_>) {
    let Some(s) = &m.l3.snat else { return };
    let Some(gw) = m.chassis.get(&s.chassis) else {
        return;
    };
    let (vni, z) = (m.vni, m.l3.lb_zone);
    let rmac = mac(&m.l3.router_mac);
    for c in vpc_chassis(m) {
        for (net, len) in &m.l3.cidrs {
            out.add(
                &c,
                format!(
                    "table={T_L3},priority=20,ip,metadata={vni:#x},dl_dst={rmac},nw_dst={net}/{len},actions=drop"
                ),
            );
        }
        let to_gw = if c == s.chassis {
            format!("goto_table:{T_SNAT}")
        } else {
            format!(
                "set_field:{vni:#x}->tun_id,set_field:{}->tun_dst,output:{}",
                gw.vtep, m.chassis[&c].tunnel_ofport
            )
        };
        out.add(
            &c,
            format!("table={T_L3},priority=10,ip,metadata={vni:#x},dl_dst={rmac},actions={to_gw}"),
        );
    }
    if s.ext_ofport == OFPORT_UNKNOWN {
        return;
    }
    let (g, e, ext) = (&s.chassis, s.ip, s.ext_ofport);
    let (emac, nhmac) = (mac(&s.mac), mac(&s.nexthop_mac));
    let mut f = |t: u8, prio: u16, body: String| {
        out.add(g, format!("table={t},priority={prio},{body}"));
    };
    f(
        T_SNAT,
        100,
        format!("ip,metadata={vni:#x},actions=ct(commit,table={T_SNAT_OUT},zone={z},nat(src={e}))"),
    );
    f(
        T_SNAT_OUT,
        100,
        format!(
            "ip,metadata={vni:#x},actions=dec_ttl,set_field:{emac}->eth_src,set_field:{nhmac}->eth_dst,output:{ext}"
        ),
    );
    f(
        T_CLASSIFY,
        110,
        format!(
            "arp,in_port={ext},arp_op=1,arp_tpa={e},actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{emac}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{emac}->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{e}->arp_spa,IN_PORT"
        ),
    );
    f(
        T_CLASSIFY,
        100,
        format!(
            "ip,in_port={ext},nw_dst={e},actions=write_metadata:{vni:#x},goto_table:{T_EXT_IN}"
        ),
    );
    f(
        T_EXT_IN,
        100,
        format!("ip,metadata={vni:#x},actions=ct(table={T_UNSNAT},zone={z},nat)"),
    );
    f(T_EXT_IN, 0, "actions=drop".into());
    for st in ["-new+est+trk", "-new+rel+trk"] {
        f(
            T_UNSNAT,
            100,
            format!(
                "ct_state={st},ip,metadata={vni:#x},actions=set_field:{rmac}->eth_dst,goto_table:{T_L3}"
            ),
        );
    }
    f(T_UNSNAT, 0, "actions=drop".into());
}

/// A service on every chassis of the VPC: its select group (one bucket per backend,
/// `ct(commit,nat(dst=backend))`), the VIP's ARP responder, and the LB stage flows that
/// send requests to the VIP and replies from backends through ct with NAT in the VPC's
/// LB zone (new connections to the VIP → the group; established ones keep their backend).
fn compile_service(m: &Model, id: &str, out: &mut Out<'_>) {
    let Some(s) = m.services.get(id) else { return };
    let (vni, z) = (m.vni, m.l3.lb_zone);
    let proto = if s.udp { "udp" } else { "tcp" };
    let mut group = format!("group_id={},type=select", s.group_id);
    for b in &s.backends {
        // With affinity the chosen bucket names its backend in reg12/reg13 and goes
        // back to the dispatch table, whose flow for that backend learns and commits.
        let act = match s.affinity_timeout {
            Some(_) => format!(
                "set_field:{:#x}->reg12,set_field:{:#x}->reg13,resubmit(,{T_LB_AFF})",
                u32::from(b.ip),
                b.port
            ),
            None => format!(
                "ct(commit,table={T_L3},zone={z},nat(dst={}:{}))",
                b.ip, b.port
            ),
        };
        let _ = write!(group, ",bucket=weight:{},actions={act}", b.weight);
    }
    for c in vpc_chassis(m) {
        out.add(&c, group.clone());
        out.add(&c, arp_responder(vni, s.vip, m.l3.router_mac));
        out.add(
            &c,
            format!(
                "table={T_LB},priority=100,{proto},metadata={vni:#x},nw_dst={},tp_dst={},actions=ct(table={T_LB_CT},zone={z},nat)",
                s.vip, s.port
            ),
        );
        let svc = format!(
            "{proto},metadata={vni:#x},nw_dst={},tp_dst={}",
            s.vip, s.port
        );
        match s.affinity_timeout {
            None => out.add(
                &c,
                format!(
                    "table={T_LB_CT},priority=100,ct_state=+new+trk,{svc},actions=group:{}",
                    s.group_id
                ),
            ),
            Some(_) => {
                // Look the client up (loads reg12/reg13 on a hit), then dispatch.
                out.add(
                    &c,
                    format!(
                        "table={T_LB_CT},priority=100,ct_state=+new+trk,{svc},actions=set_field:0->reg12,set_field:0->reg13,resubmit(,{T_LB_LEARNED}),goto_table:{T_LB_AFF}"
                    ),
                );
                out.add(
                    &c,
                    format!(
                        "table={T_LB_AFF},priority=90,{svc},actions=group:{}",
                        s.group_id
                    ),
                );
                // The backend chosen (by the group, or remembered): (re)learn client →
                // backend (OVN's way: a flow in T_LB_LEARNED matching client IP +
                // VIP:port + VPC that loads the backend into reg12/reg13), then DNAT.
                let t = s.affinity_timeout.unwrap_or(1);
                let (nw_proto, l4_dst) = if s.udp {
                    (17, "NXM_OF_UDP_DST")
                } else {
                    (6, "NXM_OF_TCP_DST")
                };
                for b in &s.backends {
                    out.add(
                        &c,
                        format!(
                            "table={T_LB_AFF},priority=100,{svc},reg12={:#x},reg13={:#x},actions=learn(table={T_LB_LEARNED},idle_timeout={t},priority=100,eth_type=0x800,nw_proto={nw_proto},NXM_OF_IP_SRC[],NXM_OF_IP_DST[],{l4_dst}[],OXM_OF_METADATA[],load:NXM_NX_REG12[]->NXM_NX_REG12[],load:NXM_NX_REG13[0..15]->NXM_NX_REG13[0..15]),ct(commit,table={T_L3},zone={z},nat(dst={}:{}))",
                            u32::from(b.ip),
                            b.port,
                            b.ip,
                            b.port
                        ),
                    );
                }
            }
        }
        for b in &s.backends {
            out.add(
                &c,
                format!(
                    "table={T_LB},priority=90,{proto},metadata={vni:#x},nw_src={},tp_src={},actions=ct(table={T_LB_CT},zone={z},nat)",
                    b.ip, b.port
                ),
            );
        }
    }
}

fn compile_unit(m: &Model, u: &Unit) -> Flows {
    let mut flows = Flows::new();
    let mut out = Out { flows: &mut flows };
    match u {
        Unit::Port(id) => compile_port(m, id, &mut out),
        Unit::Chassis(c) => compile_chassis(m, c, &mut out),
        Unit::Service(id) => compile_service(m, id, &mut out),
        Unit::Router => {
            compile_router(m, &mut out);
            compile_snat(m, &mut out);
        }
        Unit::Group(g) => compile_group(m, g, &mut out),
    }
    flows
}

fn all_units(m: &Model) -> Vec<Unit> {
    m.ports
        .keys()
        .map(|p| Unit::Port(p.clone()))
        .chain(m.chassis.keys().map(|c| Unit::Chassis(c.clone())))
        .chain(m.services.keys().map(|s| Unit::Service(s.clone())))
        .chain(m.groups.keys().map(|g| Unit::Group(g.clone())))
        .chain(std::iter::once(Unit::Router))
        .collect()
}

/// Recomputes every flow from scratch.
pub fn compile_full(m: &Model) -> Flows {
    let mut all = Flows::new();
    for u in all_units(m) {
        for (c, fs) in compile_unit(m, &u) {
            all.entry(c).or_default().extend(fs);
        }
    }
    all.into_iter().map(|(c, fs)| (c, merge_conj(fs))).collect()
}

/// One desired flow's text, shared: the engine's unit outputs, its reference counts, the
/// southbound union, every chassis' desired set and the sessions' change logs hold the
/// same allocation (a clone is a reference-count increment).
pub type Flow = Arc<str>;

/// Per-chassis sets of shared flow texts.
pub type FlowRefs = BTreeMap<String, BTreeSet<Flow>>;

/// Flows added and removed per chassis by one change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: FlowRefs,
    pub removed: FlowRefs,
}

/// Conjunction actions contributed to each clause flow identity, per chassis.
type Soft = BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>>;

/// Reference counts of one engine's unit outputs per chassis; the keys are the texts the
/// units share (see [`Flow`]).
type Counts = BTreeMap<String, BTreeMap<Flow, usize>>;

/// The incremental compiler: keeps each unit's output and per-chassis reference counts.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    model: Model,
    units: BTreeMap<Unit, FlowRefs>,
    /// Reference counts of every unit output (clause flows unmerged).
    counts: Counts,
    /// Clause flows merged by identity (see the module docs).
    soft: Soft,
    /// Units recomputed by the last [`Engine::apply`] (for tests and metrics).
    pub last_recomputed: usize,
}

/// Clause identities touched during one apply, with their merged text before it.
type Dirty = BTreeMap<(String, String), Option<String>>;

impl Engine {
    pub fn new(model: Model) -> Self {
        Self::new_sharing(model, None)
    }

    /// A full compile of `model` that takes the text of every flow `prev` (an engine of
    /// the same VPC being replaced) also holds from `prev` instead of a new allocation,
    /// so the flows both compiles have stay shared with the union and the desired sets.
    pub fn new_sharing(model: Model, prev: Option<&Engine>) -> Self {
        let mut e = Engine {
            model,
            ..Default::default()
        };
        let units = all_units(&e.model);
        let mut d = Delta::default();
        let mut dirty = Dirty::new();
        let prev = prev.map(|p| &p.counts);
        for u in units {
            e.recompute(u, &mut d, &mut dirty, prev);
        }
        e
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The desired flows of every chassis, sharing the engine's texts (merged clause
    /// flows are built anew).
    pub fn flow_refs(&self) -> FlowRefs {
        let mut out = FlowRefs::new();
        for (c, m) in &self.counts {
            let set: BTreeSet<Flow> = m
                .keys()
                .filter(|f| split_conj(f).is_none())
                .cloned()
                .chain(self.soft.get(c).into_iter().flat_map(|s| {
                    s.iter()
                        .map(|(prefix, items)| Flow::from(merged_conj(prefix, items.keys())))
                }))
                .collect();
            if !set.is_empty() {
                out.insert(c.clone(), set);
            }
        }
        out
    }

    /// The desired flows of every chassis (owned texts, as [`compile_full`] returns).
    pub fn flows(&self) -> Flows {
        self.flow_refs()
            .into_iter()
            .map(|(c, s)| (c, s.iter().map(|f| f.to_string()).collect()))
            .collect()
    }

    fn merged(&self, c: &str, prefix: &str) -> Option<String> {
        let items = self.soft.get(c)?.get(prefix)?;
        Some(merged_conj(prefix, items.keys()))
    }

    /// A clause flow entered (`up`) or left the reference-counted set.
    fn soft_change(&mut self, c: &str, f: &str, up: bool, dirty: &mut Dirty) {
        let Some((prefix, items)) = split_conj(f) else {
            return;
        };
        let items: Vec<String> = items.map(|i| i.trim_end_matches(')').to_string()).collect();
        let key = (c.to_string(), prefix.to_string());
        if let std::collections::btree_map::Entry::Vacant(e) = dirty.entry(key) {
            e.insert(self.merged(c, prefix));
        }
        let m = self
            .soft
            .entry(c.to_string())
            .or_default()
            .entry(prefix.to_string())
            .or_default();
        for it in items {
            if up {
                *m.entry(it).or_insert(0) += 1;
            } else if let Some(n) = m.get_mut(&it) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&it);
                }
            }
        }
        if m.is_empty() {
            let cm = self.soft.get_mut(c).expect("chassis");
            cm.remove(prefix);
            if cm.is_empty() {
                self.soft.remove(c);
            }
        }
    }

    /// Recomputes one unit. A flow the unit had before keeps its text; a new one takes
    /// the text another unit (or `prev`) already holds, else a new allocation.
    fn recompute(&mut self, u: Unit, d: &mut Delta, dirty: &mut Dirty, prev: Option<&Counts>) {
        let new = compile_unit(&self.model, &u);
        let old = self.units.remove(&u).unwrap_or_default();
        for (c, fs) in &old {
            let nc = new.get(c);
            for f in fs {
                if nc.is_some_and(|n| n.contains(&**f)) {
                    continue;
                }
                let m = self.counts.entry(c.clone()).or_default();
                let n = m.get_mut(f).expect("refcount");
                *n -= 1;
                if *n == 0 {
                    m.remove(f);
                    if m.is_empty() {
                        self.counts.remove(c);
                    }
                    if split_conj(f).is_some() {
                        self.soft_change(c, f, false, dirty);
                    } else if !d.added.get_mut(c).is_some_and(|a| a.remove(f)) {
                        d.removed.entry(c.clone()).or_default().insert(f.clone());
                    }
                }
            }
        }
        let mut kept = FlowRefs::new();
        for (c, fs) in new {
            let oc = old.get(&c);
            let mut set = BTreeSet::new();
            for f in fs {
                if let Some(o) = oc.and_then(|o| o.get(f.as_str())) {
                    set.insert(o.clone());
                    continue;
                }
                let m = self.counts.entry(c.clone()).or_default();
                let text = match m.get_key_value(f.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => prev
                        .and_then(|p| p.get(&c)?.get_key_value(f.as_str()))
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Flow::from(f)),
                };
                let n = m.entry(text.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    if split_conj(&text).is_some() {
                        self.soft_change(&c, &text, true, dirty);
                    } else if !d.removed.get_mut(&c).is_some_and(|r| r.remove(&*text)) {
                        d.added.entry(c.clone()).or_default().insert(text.clone());
                    }
                }
                set.insert(text);
            }
            if !set.is_empty() {
                kept.insert(c, set);
            }
        }
        if !kept.is_empty() {
            self.units.insert(u, kept);
        }
        self.last_recomputed += 1;
    }

    /// Turns the touched clause identities into merged-flow removals and additions.
    fn finish_soft(&self, dirty: Dirty, d: &mut Delta) {
        for ((c, prefix), before) in dirty {
            let after = self.merged(&c, &prefix);
            if before == after {
                continue;
            }
            if let Some(b) = before {
                d.removed
                    .entry(c.clone())
                    .or_default()
                    .insert(Flow::from(b));
            }
            if let Some(a) = after {
                d.added.entry(c).or_default().insert(Flow::from(a));
            }
        }
    }

    /// Applies one change, recomputing only the affected units; returns the delta.
    pub fn apply(&mut self, change: Change) -> Delta {
        self.apply_all(vec![change])
    }

    /// Applies several changes, recomputing each affected unit once (a unit whose output
    /// differs between the first and the last model is affected by at least one of the
    /// changes, so the union of their affected sets suffices).
    pub fn apply_all(&mut self, changes: Vec<Change>) -> Delta {
        let before = vpc_chassis(&self.model);
        let mut affected: BTreeSet<Unit> = BTreeSet::new();
        let mut everything = false;
        // Units that see the membership and addresses of `groups` as remote groups: the
        // units of groups with a rule naming one of them (conjunctions), and the ports of
        // groups whose rule compiles as plain flows (rule index beyond the conj id space).
        let referencing = |m: &Model, groups: &BTreeSet<String>| -> Vec<Unit> {
            let names = |g: &Group, plain: bool| {
                g.rules.iter().enumerate().any(|(i, r)| {
                    r.remote_group_id
                        .as_ref()
                        .is_some_and(|x| groups.contains(x))
                        && (!plain || conj_of(g, i, r).is_none())
                })
            };
            let mut out: Vec<Unit> = m
                .groups
                .iter()
                .filter(|(_, g)| names(g, false))
                .map(|(id, _)| Unit::Group(id.clone()))
                .collect();
            out.extend(
                m.ports
                    .iter()
                    .filter(|(_, q)| {
                        q.groups
                            .iter()
                            .filter_map(|g| m.groups.get(g))
                            .any(|g| names(g, true))
                    })
                    .map(|(id, _)| Unit::Port(id.clone())),
            );
            out
        };
        for change in changes {
            match &change {
                Change::PutPort(id, _) | Change::DelPort(id) => {
                    let old = self.model.ports.get(id).cloned();
                    match &change {
                        Change::PutPort(_, p) => {
                            self.model.ports.insert(id.clone(), p.clone());
                        }
                        _ => {
                            self.model.ports.remove(id);
                        }
                    }
                    let new = self.model.ports.get(id).cloned();
                    let mut groups = BTreeSet::new();
                    for p in old.iter().chain(new.iter()) {
                        groups.extend(p.groups.iter().cloned());
                        if let Some((c, _)) = &p.binding {
                            affected.insert(Unit::Chassis(c.clone()));
                        }
                    }
                    affected.insert(Unit::Port(id.clone()));
                    // Its groups' shared flows follow where their enforcing members are.
                    affected.extend(groups.iter().map(|g| Unit::Group(g.clone())));
                    // Remote-group references see this port's membership and addresses.
                    let m = &self.model;
                    affected.extend(referencing(m, &groups));
                }
                Change::PutGroup(id, g) => {
                    self.model.groups.insert(id.clone(), g.clone());
                    affected.extend(self.members(id));
                    affected.insert(Unit::Group(id.clone()));
                }
                Change::DelGroup(id) => {
                    self.model.groups.remove(id);
                    affected.extend(self.members(id));
                    affected.insert(Unit::Group(id.clone()));
                }
                Change::PutChassis(id, c) => {
                    everything |= self.model.chassis.get(id) != Some(c);
                    self.model.chassis.insert(id.clone(), c.clone());
                }
                Change::DelChassis(id) => {
                    everything |= self.model.chassis.remove(id).is_some();
                }
                Change::PutService(id, svc) => {
                    self.model.services.insert(id.clone(), svc.clone());
                    affected.insert(Unit::Service(id.clone()));
                }
                Change::DelService(id) => {
                    self.model.services.remove(id);
                    affected.insert(Unit::Service(id.clone()));
                }
                Change::PutL3(l3) => {
                    // The router MAC is in every port's route and every service; the LB zone in
                    // every service; the gateways only in the router unit.
                    if l3.router_mac != self.model.l3.router_mac {
                        everything = true;
                    }
                    if l3.lb_zone != self.model.l3.lb_zone {
                        affected
                            .extend(self.model.services.keys().map(|s| Unit::Service(s.clone())));
                    }
                    if l3.routes != self.model.l3.routes {
                        // Static routes live in their next hop port's unit.
                        let nhs: BTreeSet<IpAddr> = l3
                            .routes
                            .iter()
                            .chain(&self.model.l3.routes)
                            .map(|r| IpAddr::V4(r.2))
                            .collect();
                        affected.extend(
                            self.model
                                .ports
                                .iter()
                                .filter(|(_, p)| p.ips.iter().any(|ip| nhs.contains(ip)))
                                .map(|(id, _)| Unit::Port(id.clone())),
                        );
                    }
                    self.model.l3 = l3.clone();
                    affected.insert(Unit::Router);
                }
            }
        }
        if vpc_chassis(&self.model) != before {
            everything = true; // the tunnel mesh changed: every port's remote entries move
        }
        let units: Vec<Unit> = if everything {
            let mut u: BTreeSet<Unit> = all_units(&self.model).into_iter().collect();
            u.extend(self.units.keys().cloned());
            u.into_iter().collect()
        } else {
            affected.into_iter().collect()
        };
        self.last_recomputed = 0;
        let mut d = Delta::default();
        let mut dirty = Dirty::new();
        for u in units {
            self.recompute(u, &mut d, &mut dirty, None);
        }
        self.finish_soft(dirty, &mut d);
        d
    }

    fn members(&self, group: &str) -> Vec<Unit> {
        self.model
            .ports
            .iter()
            .filter(|(_, p)| p.groups.iter().any(|g| g == group))
            .map(|(id, _)| Unit::Port(id.clone()))
            .collect()
    }
}

/// Parses a chassis' flows (not its groups) into OFPFC_ADD flow mods.
pub fn to_flow_mods(flows: &BTreeSet<String>) -> Result<Vec<FlowMod>, (String, ParseError)> {
    flows
        .iter()
        .filter(|f| !is_group(f))
        .map(|f| parse_flow_mod(f, FlowModCommand::Add).map_err(|e| (f.clone(), e)))
        .collect()
}

/// Parses a chassis' groups into OFPGC_ADD group mods.
pub fn to_group_mods(flows: &BTreeSet<String>) -> Result<Vec<GroupMod>, (String, ParseError)> {
    flows
        .iter()
        .filter(|f| is_group(f))
        .map(|f| parse_group_mod(f, GroupModCommand::Add).map_err(|e| (f.clone(), e)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
