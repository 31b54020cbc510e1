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
//! | 0  | classify | local VIF `in_port` → `reg14` = logical port key, `metadata` = VNI; tunnel `in_port`+`tun_id` → `metadata` = VNI (`reg14` = 0) |
//! | 10 | port security | `dl_src`/`nw_src`/`arp_spa`/`ipv6_src` must be the port's; otherwise drop |
//! | 20, 21 | from-port SG (the port's *egress* rules) | `ct(zone=key)`; `+est`/`+rel` pass, `+new` matching a rule is committed, the rest dropped |
//! | 30 | L2 lookup | DHCP client→server dropped (no DHCP server yet); `dl_dst` → local port (`reg15` = key, to 40) or remote chassis (`tun_id` = VNI, `tun_dst` = VTEP, out the tunnel port); broadcast/multicast flooded |
//! | 40, 41 | to-port SG (the port's *ingress* rules) | as 20/21 for the destination port |
//! | 50 | output | `reg15` → the port's ofport |
//!
//! A port without security groups (or with port security off) skips the SG stages. The
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
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

pub const T_CLASSIFY: u8 = 0;
pub const T_PORT_SEC: u8 = 10;
pub const T_FROM_ACL: u8 = 20;
pub const T_FROM_ACL_CT: u8 = 21;
pub const T_LB: u8 = 22;
pub const T_LB_CT: u8 = 23;
/// Session affinity: dispatch on the backend remembered for the client (reg12 = backend
/// IPv4, reg13 = backend port; 0 = none) or pick one with the group.
pub const T_LB_AFF: u8 = 24;
pub const T_L3: u8 = 25;
/// Session affinity: the `learn`ed client → backend entries (cookie 0: not Plexus-owned,
/// never reconciled; they expire by idle timeout). Reached only by `resubmit`.
pub const T_LB_LEARNED: u8 = 26;
pub const T_L2: u8 = 30;
pub const T_TO_ACL: u8 = 40;
pub const T_TO_ACL_CT: u8 = 41;
pub const T_OUT: u8 = 50;

/// A logical port as the compiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LPort {
    /// Logical port key, unique within the VPC (1..=0xffff); also the port's ct zone.
    pub key: u16,
    pub mac: [u8; 6],
    pub ips: Vec<IpAddr>,
    pub port_security: bool,
    pub groups: Vec<String>,
    /// Chassis id and the interface's OpenFlow port number there (resolved from OVSDB).
    pub binding: Option<(String, u32)>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
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

/// The VPC's L3 identity: the distributed router's MAC, the gateway addresses it answers
/// ARP for (subnets attached to a router) and the ct zone of its load balancers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct L3 {
    pub router_mac: [u8; 6],
    pub gateways: BTreeSet<Ipv4Addr>,
    pub lb_zone: u16,
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
}

fn mac(m: &[u8; 6]) -> String {
    plexus_api::validate::format_mac(*m)
}

/// Chassis that host at least one bound port of the VPC (and exist).
fn vpc_chassis(m: &Model) -> BTreeSet<String> {
    m.ports
        .values()
        .filter_map(|p| p.binding.as_ref().map(|(c, _)| c.clone()))
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

fn compile_port(m: &Model, id: &str, out: &mut Out<'_>) {
    let Some(p) = m.ports.get(id) else { return };
    let Some((ch, ofport)) = &p.binding else {
        return;
    };
    let Some(_) = m.chassis.get(ch) else { return };
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
        for g in &p.groups {
            let Some(group) = m.groups.get(g) else {
                continue;
            };
            for r in group.rules.iter().filter(|r| r.direction == dir) {
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
    f(
        T_CLASSIFY,
        100,
        format!("in_port={tun},tun_id={vni:#x},actions=write_metadata:{vni:#x},goto_table:{T_L2}"),
    );
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
            Some((c, o)) if c == ch => Some(*o),
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

/// An ARP responder (like OVN's): answers `who-has ip` with the router MAC out the
/// port the request came from.
fn arp_responder(vni: u32, ip: Ipv4Addr, rmac: &str) -> String {
    format!(
        "table={T_L3},priority=100,arp,metadata={vni:#x},arp_op=1,arp_tpa={ip},actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{rmac}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{rmac}->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{ip}->arp_spa,IN_PORT"
    )
}

/// The router unit: ARP and ICMP echo responders for the gateway addresses on every
/// chassis of the VPC.
fn compile_router(m: &Model, out: &mut Out<'_>) {
    let rmac = mac(&m.l3.router_mac);
    for c in vpc_chassis(m) {
        for gw in &m.l3.gateways {
            out.add(&c, arp_responder(m.vni, *gw, &rmac));
            // ICMP echo to the gateway: answered in place (addresses swapped, type 0).
            out.add(
                &c,
                format!(
                    "table={T_L3},priority=100,icmp,metadata={vni:#x},dl_dst={rmac},nw_dst={gw},icmp_type=8,icmp_code=0,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{rmac}->eth_src,move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],set_field:{gw}->ip_src,set_field:0->icmp_type,IN_PORT",
                    vni = m.vni
                ),
            );
        }
    }
}

/// A service on every chassis of the VPC: its select group (one bucket per backend,
/// `ct(commit,nat(dst=backend))`), the VIP's ARP responder, and the LB stage flows that
/// send requests to the VIP and replies from backends through ct with NAT in the VPC's
/// LB zone (new connections to the VIP → the group; established ones keep their backend).
fn compile_service(m: &Model, id: &str, out: &mut Out<'_>) {
    let Some(s) = m.services.get(id) else { return };
    let (vni, z) = (m.vni, m.l3.lb_zone);
    let rmac = mac(&m.l3.router_mac);
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
        out.add(&c, arp_responder(vni, s.vip, &rmac));
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
        Unit::Router => compile_router(m, &mut out),
    }
    flows
}

fn all_units(m: &Model) -> Vec<Unit> {
    m.ports
        .keys()
        .map(|p| Unit::Port(p.clone()))
        .chain(m.chassis.keys().map(|c| Unit::Chassis(c.clone())))
        .chain(m.services.keys().map(|s| Unit::Service(s.clone())))
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
    all
}

/// Flows added and removed per chassis by one change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: Flows,
    pub removed: Flows,
}

/// The incremental compiler: keeps each unit's output and per-chassis reference counts.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    model: Model,
    units: BTreeMap<Unit, Flows>,
    counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Units recomputed by the last [`Engine::apply`] (for tests and metrics).
    pub last_recomputed: usize,
}

impl Engine {
    pub fn new(model: Model) -> Self {
        let mut e = Engine {
            model,
            ..Default::default()
        };
        let units = all_units(&e.model);
        let mut d = Delta::default();
        for u in units {
            e.recompute(u, &mut d);
        }
        e
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The desired flows of every chassis.
    pub fn flows(&self) -> Flows {
        self.counts
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(c, m)| (c.clone(), m.keys().cloned().collect()))
            .collect()
    }

    fn recompute(&mut self, u: Unit, d: &mut Delta) {
        let new = compile_unit(&self.model, &u);
        let old = self.units.remove(&u).unwrap_or_default();
        for (c, fs) in &old {
            for f in fs {
                if new.get(c).is_some_and(|n| n.contains(f)) {
                    continue;
                }
                let m = self.counts.entry(c.clone()).or_default();
                let n = m.get_mut(f).expect("refcount");
                *n -= 1;
                if *n == 0 {
                    m.remove(f);
                    if !d.added.get_mut(c).is_some_and(|a| a.remove(f)) {
                        d.removed.entry(c.clone()).or_default().insert(f.clone());
                    }
                }
            }
        }
        for (c, fs) in &new {
            for f in fs {
                if old.get(c).is_some_and(|o| o.contains(f)) {
                    continue;
                }
                let n = self
                    .counts
                    .entry(c.clone())
                    .or_default()
                    .entry(f.clone())
                    .or_insert(0);
                *n += 1;
                if *n == 1 && !d.removed.get_mut(c).is_some_and(|r| r.remove(f)) {
                    d.added.entry(c.clone()).or_default().insert(f.clone());
                }
            }
        }
        if !new.is_empty() {
            self.units.insert(u, new);
        }
        self.last_recomputed += 1;
    }

    /// Applies one change, recomputing only the affected units; returns the delta.
    pub fn apply(&mut self, change: Change) -> Delta {
        let before = vpc_chassis(&self.model);
        let mut affected: BTreeSet<Unit> = BTreeSet::new();
        let mut everything = false;
        // Ports whose SG rules name one of `groups` as remote group.
        let referencing = |m: &Model, groups: &BTreeSet<String>| -> Vec<Unit> {
            m.ports
                .iter()
                .filter(|(_, q)| {
                    q.groups.iter().filter_map(|g| m.groups.get(g)).any(|g| {
                        g.rules.iter().any(|r| {
                            r.remote_group_id
                                .as_ref()
                                .is_some_and(|x| groups.contains(x))
                        })
                    })
                })
                .map(|(id, _)| Unit::Port(id.clone()))
                .collect()
        };
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
                // Remote-group references see this port's membership and addresses.
                let m = &self.model;
                affected.extend(referencing(m, &groups));
            }
            Change::PutGroup(id, g) => {
                self.model.groups.insert(id.clone(), g.clone());
                affected.extend(self.members(id));
            }
            Change::DelGroup(id) => {
                self.model.groups.remove(id);
                affected.extend(self.members(id));
            }
            Change::PutChassis(id, c) => {
                everything = self.model.chassis.get(id) != Some(c);
                self.model.chassis.insert(id.clone(), c.clone());
            }
            Change::DelChassis(id) => {
                everything = self.model.chassis.remove(id).is_some();
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
                    affected.extend(self.model.services.keys().map(|s| Unit::Service(s.clone())));
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
        for u in units {
            self.recompute(u, &mut d);
        }
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
mod tests;
