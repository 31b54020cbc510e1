//! The compiler's input ([`Model`], one per VPC) built from the store and from what the
//! switches report (interface name → OpenFlow port number, from PORT_DESC).
//!
//! Logical port keys (the compiler's `reg14`/`reg15` values and ct zones) must be unique
//! per chassis across VPCs, because a chassis carries every VPC's flows in the same tables.
//! They are derived from the port id (FNV-1a into 1..=0xfffe, linear probing in id order),
//! so a restarted controller computes the same keys and therefore the same flows.
//! A new port can only move another port's key when their hashes collide *and* the new id
//! sorts first (about 1 in 65k per pair); that re-keys one port, it does not break anything.

use crate::compiler::{
    ChassisInfo, EXTERNAL_IFACE, GROUP_BASE, Group, L3, LPort, Model, OFPORT_UNKNOWN, PortDhcp,
    Service, Snat, SvcBackend, external_mac, router_mac,
};
use crate::store::{Store, StoreError};
use plexus_api::{
    ChassisSpec, PortSpec, RouterSpec, SecurityGroupSpec, ServiceProtocol, ServiceSpec, Spec,
    SubnetSpec, VpcSpec,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// OpenFlow port used in the compiler's tunnel flows when a chassis has no tunnel port
/// (single-chassis setups): an unused number OVS accepts in matches.
pub const NO_TUNNEL_OFPORT: u32 = 0xff00;
/// Interface name of a chassis' flow-based VXLAN port.
pub const TUNNEL_IFACE: &str = "plx-vxlan";

/// Every object the compiler needs, read at one store revision (or later).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store revision read *before* the objects (a lower bound of what they reflect).
    pub revision: u64,
    pub vpcs: BTreeMap<String, VpcSpec>,
    pub subnets: BTreeMap<String, SubnetSpec>,
    pub ports: BTreeMap<String, PortSpec>,
    pub groups: BTreeMap<String, SecurityGroupSpec>,
    pub chassis: BTreeMap<String, ChassisSpec>,
    pub routers: BTreeMap<String, RouterSpec>,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Port ids by subnet id, kept by [`Snapshot::load`] and [`Snapshot::refresh`]: a
    /// change rebuilds its VPC's model from its subnets' ports, not by walking every
    /// port (change `ports` only through those two, or call [`Snapshot::index`]).
    pub subnet_ports: BTreeMap<String, BTreeSet<String>>,
    /// Security group ids by tenant id (kept like `subnet_ports`).
    pub tenant_groups: BTreeMap<String, BTreeSet<String>>,
    /// Router ids by VPC id (kept like `subnet_ports`).
    pub vpc_routers: BTreeMap<String, BTreeSet<String>>,
    /// Service ids by VPC id (kept like `subnet_ports`).
    pub vpc_services: BTreeMap<String, BTreeSet<String>>,
}

/// Moves `id` in an index from key `before` to key `after`.
fn reindex(
    index: &mut BTreeMap<String, BTreeSet<String>>,
    id: &str,
    before: Option<String>,
    after: Option<String>,
) {
    if before == after {
        return;
    }
    if let Some(b) = before
        && let Some(set) = index.get_mut(&b)
    {
        set.remove(id);
        if set.is_empty() {
            index.remove(&b);
        }
    }
    if let Some(a) = after {
        index.entry(a).or_default().insert(id.to_string());
    }
}

/// An index of `map`'s ids by `key`.
fn index_of<T>(
    map: &BTreeMap<String, T>,
    key: impl Fn(&T) -> &String,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, v) in map {
        out.entry(key(v).clone()).or_default().insert(id.clone());
    }
    out
}

/// The objects of `map` whose ids `index` lists under the wanted keys, in id order per key.
fn indexed<'a, T>(
    map: &'a BTreeMap<String, T>,
    index: &'a BTreeMap<String, BTreeSet<String>>,
    keys: impl Iterator<Item = &'a String> + 'a,
) -> impl Iterator<Item = (&'a String, &'a T)> + 'a {
    keys.filter_map(|k| index.get(k))
        .flatten()
        .filter_map(|id| map.get_key_value(id))
}

fn all<S: Store, T: Spec + DeserializeOwned>(store: &S) -> Result<BTreeMap<String, T>, StoreError> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(T::KIND, after.as_deref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for r in page {
            let v: T = serde_json::from_value(r.value).map_err(|e| StoreError::Corrupt {
                key: format!("{}/{}", T::KIND, r.id),
                err: e.to_string(),
            })?;
            out.insert(r.id, v);
        }
    }
    Ok(out)
}

impl Snapshot {
    pub fn load<S: Store>(store: &S) -> Result<Self, StoreError> {
        let revision = store.revision();
        let mut s = Snapshot {
            revision,
            vpcs: all(store)?,
            subnets: all(store)?,
            ports: all(store)?,
            groups: all(store)?,
            chassis: all(store)?,
            routers: all(store)?,
            services: all(store)?,
            ..Default::default()
        };
        s.index();
        Ok(s)
    }

    /// Rebuilds the indexes ([`Snapshot::subnet_ports`] and the others) from the objects.
    pub fn index(&mut self) {
        self.subnet_ports = index_of(&self.ports, |p| &p.subnet_id);
        self.tenant_groups = index_of(&self.groups, |g| &g.tenant_id);
        self.vpc_routers = index_of(&self.routers, |r| &r.vpc_id);
        self.vpc_services = index_of(&self.services, |s| &s.vpc_id);
    }

    /// Re-reads one object after a change of it (absent = deleted). Kinds the compiler
    /// does not use are ignored.
    pub fn refresh<S: Store>(&mut self, store: &S, kind: &str, id: &str) -> Result<(), StoreError> {
        fn one<S: Store, T: Spec + DeserializeOwned>(
            store: &S,
            map: &mut BTreeMap<String, T>,
            id: &str,
        ) -> Result<(), StoreError> {
            match store.get(T::KIND, id)? {
                Some(r) => {
                    let v: T =
                        serde_json::from_value(r.value).map_err(|e| StoreError::Corrupt {
                            key: format!("{}/{id}", T::KIND),
                            err: e.to_string(),
                        })?;
                    map.insert(id.to_string(), v);
                }
                None => {
                    map.remove(id);
                }
            }
            Ok(())
        }
        match kind {
            k if k == VpcSpec::KIND => one(store, &mut self.vpcs, id),
            k if k == SubnetSpec::KIND => one(store, &mut self.subnets, id),
            k if k == PortSpec::KIND => {
                let before = self.ports.get(id).map(|p| p.subnet_id.clone());
                one(store, &mut self.ports, id)?;
                let after = self.ports.get(id).map(|p| p.subnet_id.clone());
                reindex(&mut self.subnet_ports, id, before, after);
                Ok(())
            }
            k if k == SecurityGroupSpec::KIND => {
                let before = self.groups.get(id).map(|g| g.tenant_id.clone());
                one(store, &mut self.groups, id)?;
                let after = self.groups.get(id).map(|g| g.tenant_id.clone());
                reindex(&mut self.tenant_groups, id, before, after);
                Ok(())
            }
            k if k == ChassisSpec::KIND => one(store, &mut self.chassis, id),
            k if k == RouterSpec::KIND => {
                let before = self.routers.get(id).map(|r| r.vpc_id.clone());
                one(store, &mut self.routers, id)?;
                let after = self.routers.get(id).map(|r| r.vpc_id.clone());
                reindex(&mut self.vpc_routers, id, before, after);
                Ok(())
            }
            k if k == ServiceSpec::KIND => {
                let before = self.services.get(id).map(|s| s.vpc_id.clone());
                one(store, &mut self.services, id)?;
                let after = self.services.get(id).map(|s| s.vpc_id.clone());
                reindex(&mut self.vpc_services, id, before, after);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the snapshot holds `kind/id` (kinds the compiler does not use: false).
    pub fn has(&self, kind: &str, id: &str) -> bool {
        match kind {
            k if k == VpcSpec::KIND => self.vpcs.contains_key(id),
            k if k == SubnetSpec::KIND => self.subnets.contains_key(id),
            k if k == PortSpec::KIND => self.ports.contains_key(id),
            k if k == SecurityGroupSpec::KIND => self.groups.contains_key(id),
            k if k == ChassisSpec::KIND => self.chassis.contains_key(id),
            k if k == RouterSpec::KIND => self.routers.contains_key(id),
            k if k == ServiceSpec::KIND => self.services.contains_key(id),
            _ => false,
        }
    }

    /// The VPCs whose models the object `kind/id`, as this snapshot has it, is part of
    /// (`None`: every VPC, e.g. a chassis). Call before and after [`Snapshot::refresh`]
    /// so that both the old and the new placement are covered.
    pub fn affected_vpcs(&self, kind: &str, id: &str) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        match kind {
            k if k == VpcSpec::KIND => {
                out.insert(id.to_string());
            }
            k if k == SubnetSpec::KIND => {
                out.extend(self.subnets.get(id).map(|s| s.vpc_id.clone()))
            }
            k if k == PortSpec::KIND => {
                if let Some(p) = self.ports.get(id) {
                    out.extend(self.subnets.get(&p.subnet_id).map(|s| s.vpc_id.clone()));
                }
                // Services naming the port as a backend resolve its address.
                for s in self.services.values() {
                    if s.backends.iter().any(|b| b.port_id.as_deref() == Some(id)) {
                        out.insert(s.vpc_id.clone());
                    }
                }
            }
            k if k == SecurityGroupSpec::KIND => {
                if let Some(g) = self.groups.get(id) {
                    out.extend(
                        self.vpcs
                            .iter()
                            .filter(|(_, v)| v.tenant_id == g.tenant_id)
                            .map(|(vid, _)| vid.clone()),
                    );
                }
            }
            k if k == RouterSpec::KIND => {
                out.extend(self.routers.get(id).map(|r| r.vpc_id.clone()))
            }
            k if k == ServiceSpec::KIND => {
                out.extend(self.services.get(id).map(|s| s.vpc_id.clone()))
            }
            k if k == ChassisSpec::KIND => return None,
            _ => {}
        }
        Some(out)
    }

    /// The chassis a connecting switch belongs to: `endpoint.datapath_id` equal to `dpid`,
    /// else a chassis named like the bridge (`bridge`, the switch's LOCAL port name).
    pub fn chassis_for_switch(&self, dpid: u64, bridge: Option<&str>) -> Option<String> {
        let by_dpid = self.chassis.iter().find(|(_, c)| {
            c.endpoint
                .as_ref()
                .and_then(|e| e.datapath_id.as_deref())
                .and_then(parse_dpid)
                == Some(dpid)
        });
        if let Some((id, _)) = by_dpid {
            return Some(id.clone());
        }
        let bridge = bridge?;
        self.chassis
            .iter()
            .find(|(_, c)| c.name == bridge)
            .map(|(id, _)| id.clone())
    }
}

/// Parses a datapath id written as hex (`0x` optional, `:` separators allowed).
pub fn parse_dpid(s: &str) -> Option<u64> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    u64::from_str_radix(&t, 16).ok()
}

fn fnv(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Logical port keys for every port id (see the module docs).
pub fn port_keys<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, u16> {
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    let mut ids: Vec<&String> = ids.into_iter().collect();
    ids.sort();
    for id in ids {
        let mut k = (fnv(id) % 0xfffe) as u16 + 1;
        while !used.insert(k) {
            k = if k == 0xfffe { 1 } else { k + 1 };
            if used.len() >= 0xfffe {
                break; // more ports than keys: the rest share (never in practice)
            }
        }
        out.insert(id.clone(), k);
    }
    out
}

/// Interface name → OpenFlow port number, per chassis id.
pub type OfPorts = BTreeMap<String, BTreeMap<String, u32>>;

/// Every key the models use: logical port keys and LB ct zones (`lb:VPC`, one space:
/// both are ct zones), service group keys, security-group keys (the high half of their
/// rules' conjunction ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub ports: BTreeMap<String, u16>,
    pub services: BTreeMap<String, u16>,
    pub groups: BTreeMap<String, u16>,
}

impl Keys {
    pub fn of(snap: &Snapshot) -> Keys {
        let lb_ids: Vec<String> = snap.vpcs.keys().map(|v| format!("lb:{v}")).collect();
        Keys {
            ports: port_keys(snap.ports.keys().chain(lb_ids.iter())),
            services: port_keys(snap.services.keys()),
            groups: port_keys(snap.groups.keys()),
        }
    }

    /// VPCs whose models use a key that differs between `self` and `other` (keys move
    /// only on hash collisions; `None` when a security group's key moved: its tenant's
    /// VPCs are not known here, so every VPC is affected).
    pub fn moved_vpcs(&self, other: &Keys, snap: &Snapshot) -> Option<BTreeSet<String>> {
        fn moved<'a>(
            a: &'a BTreeMap<String, u16>,
            b: &'a BTreeMap<String, u16>,
        ) -> impl Iterator<Item = &'a String> {
            a.iter()
                .filter(move |(k, v)| b.get(*k) != Some(*v))
                .map(|(k, _)| k)
        }
        if moved(&self.groups, &other.groups).next().is_some() {
            return None;
        }
        let mut out = BTreeSet::new();
        for id in moved(&self.ports, &other.ports) {
            match id.strip_prefix("lb:") {
                Some(v) => {
                    out.insert(v.to_string());
                }
                None => out.extend(snap.affected_vpcs(PortSpec::KIND, id).unwrap_or_default()),
            }
        }
        for id in moved(&self.services, &other.services) {
            out.extend(snap.services.get(id).map(|s| s.vpc_id.clone()));
        }
        Some(out)
    }
}

/// One [`Model`] per VPC id. A port bound to a chassis whose switch has not reported the
/// interface gets [`OFPORT_UNKNOWN`]: no flows on its own chassis until it does, while the
/// other chassis already reach it through the tunnel — so the flows of one chassis never
/// depend on whether *another* chassis' switch is connected (after a controller restart,
/// the first switch to reconnect is reconciled against its complete flow set). Objects
/// with dangling references (possible only between two reads of a changing store) are
/// skipped.
pub fn build_models(snap: &Snapshot, ofports: &OfPorts) -> BTreeMap<String, Model> {
    build_models_with(snap, ofports, &Keys::of(snap), None)
}

/// [`build_models`] with precomputed keys, for the VPCs in `only` (all with `None`).
pub fn build_models_with(
    snap: &Snapshot,
    ofports: &OfPorts,
    k: &Keys,
    only: Option<&BTreeSet<String>>,
) -> BTreeMap<String, Model> {
    let keys = &k.ports;
    let group_keys = &k.services;
    let sg_keys = &k.groups;
    let wanted = |v: &String| only.is_none_or(|o| o.contains(v));
    let chassis: BTreeMap<String, ChassisInfo> = snap
        .chassis
        .iter()
        .map(|(id, c)| {
            let tunnel_ofport = ofports
                .get(id)
                .and_then(|m| m.get(TUNNEL_IFACE).copied())
                .unwrap_or(NO_TUNNEL_OFPORT);
            let vtep = c.vtep_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            (
                id.clone(),
                ChassisInfo {
                    vtep,
                    tunnel_ofport,
                },
            )
        })
        .collect();
    let mut models: BTreeMap<String, Model> = snap
        .vpcs
        .iter()
        .filter(|(id, _)| wanted(id))
        .map(|(id, v)| {
            let tenant_groups: Box<dyn Iterator<Item = (&String, &SecurityGroupSpec)>> = match only
            {
                None => Box::new(
                    snap.groups
                        .iter()
                        .filter(|(_, g)| g.tenant_id == v.tenant_id),
                ),
                Some(_) => Box::new(indexed(
                    &snap.groups,
                    &snap.tenant_groups,
                    std::iter::once(&v.tenant_id),
                )),
            };
            let groups = tenant_groups
                .map(|(gid, g)| {
                    (
                        gid.clone(),
                        Group {
                            key: sg_keys[gid],
                            rules: g.rules.clone().unwrap_or_default(),
                        },
                    )
                })
                .collect();
            (
                id.clone(),
                Model {
                    vni: v.vni.unwrap_or(0),
                    ports: BTreeMap::new(),
                    groups,
                    chassis: chassis.clone(),
                    l3: L3 {
                        router_mac: router_mac(v.vni.unwrap_or(0)),
                        gateways: Default::default(),
                        gateways6: Default::default(),
                        lb_zone: keys[&format!("lb:{id}")],
                        cidrs: v
                            .cidrs
                            .iter()
                            .filter_map(|c| match c.parse::<ipnet::IpNet>() {
                                Ok(ipnet::IpNet::V4(n)) => Some((n.network(), n.prefix_len())),
                                _ => None,
                            })
                            .collect(),
                        snat: None,
                        routes: Default::default(),
                    },
                    services: BTreeMap::new(),
                },
            )
        })
        .collect();
    // The routers and services of the wanted VPCs: all of them, or through the indexes
    // (in id order per VPC, as the loops below rely on).
    let vpc_ids: Vec<String> = models.keys().cloned().collect();
    let (routers, services): (Vec<&RouterSpec>, Vec<(&String, &ServiceSpec)>) = match only {
        None => (
            snap.routers.values().collect(),
            snap.services.iter().collect(),
        ),
        Some(_) => (
            indexed(&snap.routers, &snap.vpc_routers, vpc_ids.iter())
                .map(|(_, r)| r)
                .collect(),
            indexed(&snap.services, &snap.vpc_services, vpc_ids.iter()).collect(),
        ),
    };
    // Subnets attached to a router of their VPC (their gateway is the DHCP router option).
    let routed: BTreeSet<&str> = routers
        .iter()
        .flat_map(|r| {
            r.subnet_ids
                .iter()
                .filter(|sid| snap.subnets.get(*sid).is_some_and(|s| s.vpc_id == r.vpc_id))
                .map(String::as_str)
        })
        .collect();
    // The ports of the wanted VPCs: all of them, or through their subnets.
    let ports: Box<dyn Iterator<Item = (&String, &PortSpec)>> = match only {
        None => Box::new(snap.ports.iter()),
        Some(_) => Box::new(
            snap.subnets
                .iter()
                .filter(|(_, s)| wanted(&s.vpc_id))
                .filter_map(|(sid, _)| snap.subnet_ports.get(sid))
                .flatten()
                .filter_map(|pid| snap.ports.get_key_value(pid)),
        ),
    };
    for (pid, p) in ports {
        let Some(subnet) = snap.subnets.get(&p.subnet_id) else {
            continue;
        };
        let Some(model) = models.get_mut(&subnet.vpc_id) else {
            continue;
        };
        let Some(mac) = p
            .mac
            .as_deref()
            .and_then(|m| plexus_api::validate::parse_mac("mac", m).ok())
        else {
            continue;
        };
        let ips: Vec<IpAddr> = p.ips.iter().filter_map(|a| a.parse().ok()).collect();
        let binding = p.binding.as_ref().map(|b| {
            let ofport = ofports
                .get(&b.chassis_id)
                .and_then(|m| m.get(&b.iface))
                .copied()
                .unwrap_or(OFPORT_UNKNOWN);
            (b.chassis_id.clone(), ofport)
        });
        model.ports.insert(
            pid.clone(),
            LPort {
                key: keys[pid],
                mac,
                ips,
                port_security: p.port_security,
                groups: p.security_groups.clone(),
                binding,
                dhcp: port_dhcp(subnet, routed.contains(p.subnet_id.as_str())),
            },
        );
    }
    for r in &routers {
        let Some(model) = models.get_mut(&r.vpc_id) else {
            continue;
        };
        for sid in &r.subnet_ids {
            let Some(s) = snap.subnets.get(sid).filter(|s| s.vpc_id == r.vpc_id) else {
                continue;
            };
            match plexus_api::validate::subnet_gateway(s) {
                Ok(IpAddr::V4(gw)) => {
                    model.l3.gateways.insert(gw);
                }
                Ok(IpAddr::V6(gw)) => {
                    model.l3.gateways6.insert(gw);
                }
                Err(_) => {}
            }
        }
        // Static routes (IPv4): one next hop per destination in the VPC (the first
        // router, in id order, that names it).
        for rt in &r.routes {
            let (Ok(ipnet::IpNet::V4(d)), Ok(IpAddr::V4(nh))) = (
                rt.destination.parse::<ipnet::IpNet>(),
                rt.nexthop.parse::<IpAddr>(),
            ) else {
                continue;
            };
            let d = d.trunc();
            let (net, len) = (d.network(), d.prefix_len());
            if !model
                .l3
                .routes
                .iter()
                .any(|(a, l, _)| *a == net && *l == len)
            {
                model.l3.routes.insert((net, len, nh));
            }
        }
    }
    // SNAT: the first router (by id) of a VPC with a usable external gateway.
    for r in &routers {
        let Some(model) = models.get_mut(&r.vpc_id) else {
            continue;
        };
        let Some(g) = r.external_gateway.as_ref().filter(|g| g.snat) else {
            continue;
        };
        if model.l3.snat.is_some() || !snap.chassis.contains_key(&g.chassis_id) {
            continue;
        }
        let ip = match g.ip.parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(n)) => n.addr(),
            _ => continue,
        };
        let Some(nexthop_mac) = g
            .nexthop_mac
            .as_deref()
            .and_then(|m| plexus_api::validate::parse_mac("nexthop_mac", m).ok())
        else {
            continue;
        };
        let ext_ofport = ofports
            .get(&g.chassis_id)
            .and_then(|m| m.get(EXTERNAL_IFACE))
            .copied()
            .unwrap_or(OFPORT_UNKNOWN);
        model.l3.snat = Some(Snat {
            chassis: g.chassis_id.clone(),
            ip,
            mac: external_mac(model.vni),
            nexthop_mac,
            ext_ofport,
        });
    }
    for (sid, s) in services {
        let Some(model) = models.get_mut(&s.vpc_id) else {
            continue;
        };
        let Ok(vip) = s.vip.parse::<Ipv4Addr>() else {
            continue; // IPv6 services are not compiled yet
        };
        let backends =
            s.backends
                .iter()
                .filter(|b| b.healthy && b.weight > 0)
                .filter_map(|b| {
                    let ip = match (&b.ip, &b.port_id) {
                        (Some(ip), _) => ip.parse().ok()?,
                        (None, Some(pid)) => snap.ports.get(pid)?.ips.iter().find_map(|a| {
                            match a.parse::<IpAddr>() {
                                Ok(IpAddr::V4(v4)) => Some(v4),
                                _ => None,
                            }
                        })?,
                        (None, None) => return None,
                    };
                    Some(SvcBackend {
                        ip,
                        port: b.target_port,
                        weight: b.weight.min(u16::MAX as u32) as u16,
                    })
                })
                .collect();
        model.services.insert(
            sid.clone(),
            Service {
                group_id: GROUP_BASE | group_keys[sid] as u32,
                vip,
                port: s.port,
                udp: s.protocol == ServiceProtocol::Udp,
                backends,
                affinity_timeout: match s.affinity {
                    plexus_api::Affinity::None => None,
                    plexus_api::Affinity::ClientIp { timeout_seconds } => {
                        Some(timeout_seconds.clamp(1, u16::MAX as u32) as u16)
                    }
                },
            },
        );
    }
    models
}

/// Default DHCP lease (OVN's default too).
pub const DEFAULT_LEASE_SECS: u32 = 43_200;

/// The DHCPv4 parameters a subnet gives its ports: `dhcp` present with `enabled`, an
/// IPv4 CIDR and an IPv4 gateway (the server identifier). Values the responder would
/// refuse are left out (DNS servers that are not IPv4 unicast, a domain that is not
/// printable ASCII, an MTU below 68); the lease is at least 60 s.
pub fn port_dhcp(s: &SubnetSpec, routed: bool) -> Option<PortDhcp> {
    let d = s.dhcp.as_ref().filter(|d| d.enabled)?;
    let ipnet::IpNet::V4(net) = s.cidr.parse::<ipnet::IpNet>().ok()? else {
        return None;
    };
    let IpAddr::V4(gw) = plexus_api::validate::subnet_gateway(s).ok()? else {
        return None;
    };
    let dns: Vec<Ipv4Addr> = d
        .dns_servers
        .iter()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast())
        .take(plexus_responder::spec::MAX_DNS)
        .collect();
    let domain = d
        .domain_name
        .clone()
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic()));
    Some(PortDhcp {
        server_ip: gw,
        prefix_len: net.prefix_len(),
        router: routed.then_some(gw),
        dns,
        domain,
        lease_secs: d.lease_seconds.unwrap_or(DEFAULT_LEASE_SECS).max(60),
        mtu: d.mtu.filter(|m| *m >= 68),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_dhcp_from_subnet_options() {
        let mut s = SubnetSpec {
            vpc_id: "v".into(),
            name: "s".into(),
            cidr: "10.9.8.0/23".into(),
            ..Default::default()
        };
        assert_eq!(port_dhcp(&s, true), None, "no dhcp options: no DHCP");
        s.dhcp = Some(plexus_api::DhcpOptions {
            enabled: true,
            dns_servers: vec![
                "1.1.1.1".into(),
                "fd00::53".into(),
                "255.255.255.255".into(),
            ],
            domain_name: Some("bad name".into()),
            lease_seconds: Some(5),
            mtu: Some(1400),
        });
        let d = port_dhcp(&s, true).unwrap();
        assert_eq!(d.server_ip, Ipv4Addr::new(10, 9, 8, 1));
        assert_eq!(d.prefix_len, 23);
        assert_eq!(d.router, Some(Ipv4Addr::new(10, 9, 8, 1)));
        assert_eq!(d.dns, vec![Ipv4Addr::new(1, 1, 1, 1)], "IPv4 unicast only");
        assert_eq!(d.domain, None, "a domain with a space is left out");
        assert_eq!((d.lease_secs, d.mtu), (60, Some(1400)));
        assert_eq!(
            port_dhcp(&s, false).unwrap().router,
            None,
            "no router: no option 3"
        );
        s.gateway = Some("10.9.9.254".into());
        assert_eq!(
            port_dhcp(&s, true).unwrap().server_ip,
            Ipv4Addr::new(10, 9, 9, 254)
        );
        s.dhcp.as_mut().unwrap().enabled = false;
        assert_eq!(port_dhcp(&s, true), None);
        s.dhcp.as_mut().unwrap().enabled = true;
        s.cidr = "fd00::/64".into();
        s.gateway = None;
        assert_eq!(port_dhcp(&s, true), None, "DHCPv4 only");
    }

    #[test]
    fn keys_are_unique_and_stable() {
        let ids: Vec<String> = (0..5000).map(|i| format!("port-{i}")).collect();
        let a = port_keys(ids.iter());
        let set: BTreeSet<u16> = a.values().copied().collect();
        assert_eq!(set.len(), ids.len());
        assert!(set.iter().all(|k| (1..=0xfffe).contains(k)));
        let mut rev = ids.clone();
        rev.reverse();
        assert_eq!(port_keys(rev.iter()), a);
    }

    #[test]
    fn routers_and_services_reach_the_model() {
        use plexus_api::Backend;
        let mut snap = Snapshot::default();
        snap.vpcs.insert(
            "v".into(),
            VpcSpec {
                tenant_id: "t".into(),
                name: "v".into(),
                cidrs: vec!["10.0.0.0/16".into()],
                vni: Some(7),
            },
        );
        for (id, cidr, gw) in [
            ("s1", "10.0.1.0/24", None),
            ("s2", "10.0.2.0/24", Some("10.0.2.254")),
        ] {
            snap.subnets.insert(
                id.into(),
                SubnetSpec {
                    vpc_id: "v".into(),
                    name: id.into(),
                    cidr: cidr.into(),
                    gateway: gw.map(str::to_string),
                    ..Default::default()
                },
            );
        }
        snap.ports.insert(
            "p1".into(),
            PortSpec {
                subnet_id: "s1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                ips: vec!["10.0.1.5".into()],
                port_security: true,
                ..Default::default()
            },
        );
        snap.routers.insert(
            "r".into(),
            RouterSpec {
                vpc_id: "v".into(),
                name: "r".into(),
                subnet_ids: vec!["s1".into(), "s2".into()],
                ..Default::default()
            },
        );
        let backend = |port_id: Option<&str>, ip: Option<&str>, healthy| Backend {
            port_id: port_id.map(str::to_string),
            ip: ip.map(str::to_string),
            target_port: 8080,
            weight: 2,
            subset: None,
            healthy,
        };
        snap.services.insert(
            "svc".into(),
            ServiceSpec {
                vpc_id: "v".into(),
                name: "svc".into(),
                vip: "10.0.1.100".into(),
                port: 80,
                backends: vec![
                    backend(Some("p1"), None, true),
                    backend(None, Some("10.0.2.9"), true),
                    backend(None, Some("10.0.2.10"), false),
                ],
                ..Default::default()
            },
        );
        for (id, tenant) in [("g1", "t"), ("g2", "other")] {
            snap.groups.insert(
                id.into(),
                SecurityGroupSpec {
                    tenant_id: tenant.into(),
                    name: id.into(),
                    rules: Some(Vec::new()),
                },
            );
        }
        let m = &build_models(&snap, &OfPorts::new())["v"];
        assert_eq!(m.l3.router_mac, [0x0a, 0, 0, 0, 0, 7]);
        assert_eq!(m.groups.keys().collect::<Vec<_>>(), ["g1"]);
        // One VPC through the snapshot's indexes (as a change rebuilds it): the same model.
        snap.index();
        let only = BTreeSet::from(["v".to_string()]);
        let one = build_models_with(&snap, &OfPorts::new(), &Keys::of(&snap), Some(&only));
        assert_eq!(one.len(), 1);
        assert_eq!(&one["v"], m);
        let gws: Vec<String> = m.l3.gateways.iter().map(|g| g.to_string()).collect();
        assert_eq!(gws, ["10.0.1.1", "10.0.2.254"]);
        assert!(m.l3.lb_zone >= 1 && m.l3.lb_zone != m.ports["p1"].key);
        let s = &m.services["svc"];
        assert_eq!(s.group_id & crate::compiler::GROUP_MASK, GROUP_BASE);
        // The port's address, the explicit one; the unhealthy backend is left out.
        let ips: Vec<String> = s.backends.iter().map(|b| b.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.1.5", "10.0.2.9"]);
        assert!(s.backends.iter().all(|b| b.weight == 2 && b.port == 8080));
    }

    #[test]
    fn dpid_forms() {
        assert_eq!(parse_dpid("0x00000000000000ab"), Some(0xab));
        assert_eq!(parse_dpid("00:00:00:00:00:00:01:02"), Some(0x102));
        assert_eq!(parse_dpid("zz"), None);
    }
}
