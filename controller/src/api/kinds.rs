//! Per-kind rules that need the rest of the model: references, uniqueness, immutable
//! fields, defaults, IPAM, and what blocks a delete. All of it runs inside the write
//! transaction of the request, so a failure leaves nothing half-written.

use super::ApiError;
use crate::ipam::{self, IpamError};
use crate::store::{StoreError, Txn};
use plexus_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::IpAddr;

/// Every kind, in dependency order.
pub const ALL: [&str; 8] = [
    "tenants",
    "chassis",
    "vpcs",
    "subnets",
    "security-groups",
    "routers",
    "ports",
    "services",
];

pub trait Kind: Spec {
    type Obj: Serialize + Send + 'static;
    type List: Serialize + Send + 'static;
    fn object(id: String, revision: u64, spec: Self) -> Self::Obj;
    fn list(items: Vec<Self::Obj>, next: Option<String>) -> Self::List;
    /// Context checks and defaults before a write (`old`: the stored spec on replace).
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError>;
    /// Checks (and side effects such as releasing addresses) before a delete.
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError>;
}

fn all<T: DeserializeOwned>(t: &mut dyn Txn, kind: &str) -> Result<Vec<(String, T)>, ApiError> {
    t.list(kind)?
        .into_iter()
        .map(|r| {
            let v = serde_json::from_value(r.value).map_err(|e| StoreError::Corrupt {
                key: format!("{kind}/{}", r.id),
                err: e.to_string(),
            })?;
            Ok((r.id, v))
        })
        .collect()
}

fn fetch<T: DeserializeOwned>(
    t: &mut dyn Txn,
    kind: &str,
    id: &str,
) -> Result<Option<T>, ApiError> {
    match t.get(kind, id)? {
        None => Ok(None),
        Some(r) => Ok(Some(serde_json::from_value(r.value).map_err(|e| {
            StoreError::Corrupt {
                key: format!("{kind}/{id}"),
                err: e.to_string(),
            }
        })?)),
    }
}

/// The referenced object, or 422 naming `field`.
fn must<T: DeserializeOwned>(
    t: &mut dyn Txn,
    kind: &str,
    id: &str,
    field: &str,
) -> Result<T, ApiError> {
    fetch(t, kind, id)?.ok_or_else(|| ApiError::invalid(field, format!("no {kind} with id {id}")))
}

fn immutable<T: PartialEq>(old: Option<&T>, new: &T, field: &str) -> Result<(), ApiError> {
    match old {
        Some(o) if o != new => Err(ApiError::invalid(field, "cannot be changed")),
        _ => Ok(()),
    }
}

fn in_use(what: &str, by_kind: &str, by_id: &str) -> ApiError {
    ApiError::conflict("id", format!("{what} is still used by {by_kind} {by_id}"))
}

macro_rules! obj {
    ($spec:ident, $obj:ident, $list:ident) => {
        type Obj = $obj;
        type List = $list;
        fn object(id: String, revision: u64, spec: Self) -> $obj {
            $obj { id, revision, spec }
        }
        fn list(items: Vec<$obj>, next_page_token: Option<String>) -> $list {
            $list {
                items,
                next_page_token,
            }
        }
    };
}

impl Kind for TenantSpec {
    obj!(TenantSpec, Tenant, TenantList);
    fn prepare(&mut self, _: &mut dyn Txn, _: &str, _: Option<&Self>) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (vid, v) in all::<VpcSpec>(t, VpcSpec::KIND)? {
            if v.tenant_id == id {
                return Err(in_use("tenant", "vpc", &vid));
            }
        }
        for (gid, g) in all::<SecurityGroupSpec>(t, SecurityGroupSpec::KIND)? {
            if g.tenant_id == id {
                return Err(in_use("tenant", "security group", &gid));
            }
        }
        Ok(())
    }
}

impl Kind for ChassisSpec {
    obj!(ChassisSpec, Chassis, ChassisList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, _: Option<&Self>) -> Result<(), ApiError> {
        let vtep: IpAddr = self
            .vtep_ip
            .parse()
            .map_err(|_| ApiError::invalid("vtep_ip", "bad address"))?;
        self.vtep_ip = vtep.to_string();
        for (cid, c) in all::<ChassisSpec>(t, ChassisSpec::KIND)? {
            if cid == id {
                continue;
            }
            if c.name == self.name {
                return Err(ApiError::conflict(
                    "name",
                    format!("chassis {cid} has this name"),
                ));
            }
            if c.vtep_ip == self.vtep_ip {
                return Err(ApiError::conflict(
                    "vtep_ip",
                    format!("chassis {cid} has this VTEP address"),
                ));
            }
        }
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (pid, p) in all::<PortSpec>(t, PortSpec::KIND)? {
            if p.binding.as_ref().is_some_and(|b| b.chassis_id == id) {
                return Err(in_use("chassis", "port", &pid));
            }
        }
        for (rid, r) in all::<RouterSpec>(t, RouterSpec::KIND)? {
            if r.external_gateway
                .as_ref()
                .is_some_and(|g| g.chassis_id == id)
            {
                return Err(in_use("chassis", "router", &rid));
            }
        }
        Ok(())
    }
}

impl Kind for VpcSpec {
    obj!(VpcSpec, Vpc, VpcList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.tenant_id), &self.tenant_id, "tenant_id")?;
        must::<TenantSpec>(t, TenantSpec::KIND, &self.tenant_id, "tenant_id")?;
        let others = all::<VpcSpec>(t, VpcSpec::KIND)?;
        match (self.vni, old) {
            (None, Some(o)) => self.vni = o.vni,
            (None, None) => loop {
                let v = t.next_counter("vni", 1000)? as u32;
                if !others.iter().any(|(_, o)| o.vni == Some(v)) {
                    self.vni = Some(v);
                    break;
                }
            },
            (Some(v), _) => {
                if let Some((oid, _)) = others.iter().find(|(oid, o)| oid != id && o.vni == Some(v))
                {
                    return Err(ApiError::conflict("vni", format!("vpc {oid} has VNI {v}")));
                }
            }
        }
        if old.is_some() {
            // Existing subnets must stay inside the VPC's CIDRs.
            for (sid, s) in all::<SubnetSpec>(t, SubnetSpec::KIND)? {
                if s.vpc_id == id {
                    validate::check_subnet_placement(&s.cidr, &self.cidrs, &[]).map_err(|_| {
                        ApiError::invalid(
                            "cidrs",
                            format!("subnet {sid} ({}) would be outside the VPC", s.cidr),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (sid, s) in all::<SubnetSpec>(t, SubnetSpec::KIND)? {
            if s.vpc_id == id {
                return Err(in_use("vpc", "subnet", &sid));
            }
        }
        for (rid, r) in all::<RouterSpec>(t, RouterSpec::KIND)? {
            if r.vpc_id == id {
                return Err(in_use("vpc", "router", &rid));
            }
        }
        for (sid, s) in all::<ServiceSpec>(t, ServiceSpec::KIND)? {
            if s.vpc_id == id {
                return Err(in_use("vpc", "service", &sid));
            }
        }
        Ok(())
    }
}

impl Kind for SubnetSpec {
    obj!(SubnetSpec, Subnet, SubnetList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.vpc_id), &self.vpc_id, "vpc_id")?;
        immutable(old.map(|o| &o.cidr), &self.cidr, "cidr")?;
        let vpc = must::<VpcSpec>(t, VpcSpec::KIND, &self.vpc_id, "vpc_id")?;
        let siblings: Vec<(String, String)> = all::<SubnetSpec>(t, SubnetSpec::KIND)?
            .into_iter()
            .filter(|(sid, s)| sid != id && s.vpc_id == self.vpc_id)
            .map(|(sid, s)| (sid, s.cidr))
            .collect();
        validate::check_subnet_placement(&self.cidr, &vpc.cidrs, &siblings)?;
        // Pin the gateway so that it never moves under IPAM.
        let gw = validate::subnet_gateway(self)?;
        self.gateway = Some(gw.to_string());
        if old.is_some() {
            for (a, owner) in t.ipam_list(id)? {
                let taken = a.parse::<IpAddr>().ok();
                if taken == Some(gw) {
                    return Err(ApiError::conflict(
                        "gateway",
                        format!("{a} is used by port {owner}"),
                    ));
                }
                if let Some(i) = self
                    .reserved_ips
                    .iter()
                    .position(|r| r.parse::<IpAddr>().ok() == taken)
                {
                    return Err(ApiError::conflict(
                        &format!("reserved_ips[{i}]"),
                        format!("{a} is used by port {owner}"),
                    ));
                }
            }
        }
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (pid, p) in all::<PortSpec>(t, PortSpec::KIND)? {
            if p.subnet_id == id {
                return Err(in_use("subnet", "port", &pid));
            }
        }
        for (rid, r) in all::<RouterSpec>(t, RouterSpec::KIND)? {
            if r.subnet_ids.iter().any(|s| s == id) {
                return Err(in_use("subnet", "router", &rid));
            }
        }
        Ok(())
    }
}

impl Kind for RouterSpec {
    obj!(RouterSpec, Router, RouterList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.vpc_id), &self.vpc_id, "vpc_id")?;
        must::<VpcSpec>(t, VpcSpec::KIND, &self.vpc_id, "vpc_id")?;
        let routers = all::<RouterSpec>(t, RouterSpec::KIND)?;
        for (i, sid) in self.subnet_ids.iter().enumerate() {
            let f = format!("subnet_ids[{i}]");
            let s = must::<SubnetSpec>(t, SubnetSpec::KIND, sid, &f)?;
            if s.vpc_id != self.vpc_id {
                return Err(ApiError::invalid(
                    &f,
                    format!("subnet {sid} belongs to another VPC"),
                ));
            }
            if let Some((rid, _)) = routers
                .iter()
                .find(|(rid, r)| rid != id && r.subnet_ids.contains(sid))
            {
                return Err(ApiError::conflict(
                    &f,
                    format!("subnet {sid} is already attached to router {rid}"),
                ));
            }
        }
        if let Some(g) = &self.external_gateway {
            must::<ChassisSpec>(
                t,
                ChassisSpec::KIND,
                &g.chassis_id,
                "external_gateway.chassis_id",
            )?;
        }
        Ok(())
    }
    fn on_delete(&self, _: &mut dyn Txn, _: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

fn generate_mac(id: &str) -> String {
    let u = uuid::Uuid::parse_str(id).unwrap_or_else(|_| uuid::Uuid::new_v4());
    let b = u.as_bytes();
    validate::format_mac([0x02, b[10], b[11], b[12], b[13], b[14] ^ b[15]])
}

/// The MAC a port gets from its VPC and first address: `0e` + 40 bits of
/// SHA-256(VPC id, address), a locally administered unicast MAC. A pod or VM
/// that reuses a released address then also reuses its MAC, so neighbours'
/// ARP/ND entries for the address stay right (with a fresh MAC they would
/// send to the old one until the entry expires: tens of seconds without a
/// reply). Keyed by the VPC too, so hosts of two VPCs with the same address
/// (overlapping CIDRs) do not share a MAC. A collision inside the VPC is
/// caught by the MAC index (the caller falls back to [`generate_mac`]).
fn derived_mac(vpc_id: &str, ip: &str) -> String {
    let mut key = Vec::with_capacity(vpc_id.len() + 1 + ip.len());
    key.extend_from_slice(vpc_id.as_bytes());
    key.push(0);
    key.extend_from_slice(ip.as_bytes());
    let h = super::auth::sha256(&key);
    validate::format_mac([0x0e, h[0], h[1], h[2], h[3], h[4]])
}

fn ipam_err(e: IpamError, field: &str) -> ApiError {
    match e {
        IpamError::Store(s) => s.into(),
        IpamError::InUse { addr, owner } => {
            ApiError::conflict(field, format!("{addr} is already used by {owner}"))
        }
        IpamError::Exhausted(s) => {
            ApiError::conflict(field, format!("subnet {s} has no free address"))
        }
        IpamError::Invalid(m) => ApiError::invalid(field, m),
    }
}

impl Kind for PortSpec {
    obj!(PortSpec, Port, PortList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.subnet_id), &self.subnet_id, "subnet_id")?;
        let subnet = must::<SubnetSpec>(t, SubnetSpec::KIND, &self.subnet_id, "subnet_id")?;
        for (i, g) in self.security_groups.iter().enumerate() {
            must::<SecurityGroupSpec>(
                t,
                SecurityGroupSpec::KIND,
                g,
                &format!("security_groups[{i}]"),
            )?;
        }
        if let Some(b) = &self.binding {
            must::<ChassisSpec>(t, ChassisSpec::KIND, &b.chassis_id, "binding.chassis_id")?;
        }
        // Uniqueness through the port indexes (one point lookup each, not a scan).
        port_index::ready(t)?;
        let mac_pool = port_index::mac_pool(&subnet.vpc_id);
        let given = match &self.mac {
            Some(m) => Some(validate::format_mac(validate::parse_mac("mac", m)?)),
            None => None,
        };
        if let Some(mac) = &given {
            match t.ipam_get(&mac_pool, mac)? {
                Some(pid) if pid != id => {
                    return Err(ApiError::conflict(
                        "mac",
                        format!("{mac} is used by port {pid} in the same VPC"),
                    ));
                }
                _ => {}
            }
        }
        if let Some(b) = &self.binding {
            match t.ipam_get(&port_index::binding_pool(&b.chassis_id), &b.iface)? {
                Some(pid) if pid != id => {
                    return Err(ApiError::conflict(
                        "binding.iface",
                        format!("port {pid} is bound to the same interface"),
                    ));
                }
                _ => {}
            }
        }
        if let Some(o) = old {
            port_index::remove(t, &subnet.vpc_id, o, id)?;
        }
        if let Some(b) = &self.binding {
            t.ipam_put(&port_index::binding_pool(&b.chassis_id), &b.iface, id)?;
        }
        // Addresses: given (checked and reserved), kept, or allocated.
        if self.ips.is_empty()
            && let Some(o) = old
        {
            self.ips = o.ips.clone();
        }
        validate::check_port_ips(&self.ips, &subnet.cidr)?;
        let mut canon = Vec::new();
        for (i, ip) in self.ips.iter().enumerate() {
            let a: IpAddr = ip
                .parse()
                .map_err(|_| ApiError::invalid(&format!("ips[{i}]"), "bad address"))?;
            ipam::reserve(t, &self.subnet_id, &subnet, a, id)
                .map_err(|e| ipam_err(e, &format!("ips[{i}]")))?;
            canon.push(a.to_string());
        }
        if canon.is_empty() {
            let a =
                ipam::allocate(t, &self.subnet_id, &subnet, id).map_err(|e| ipam_err(e, "ips"))?;
            canon.push(a.to_string());
        }
        if let Some(o) = old {
            for ip in &o.ips {
                if !canon.contains(ip) {
                    ipam::release(t, &o.subnet_id, ip, id)?;
                }
            }
        }
        self.ips = canon;
        // MAC: given, kept, derived from the VPC and first address, or
        // (that MAC given to another port) generated; unique within the VPC.
        let free = |t: &mut dyn Txn, mac: &str| -> Result<bool, ApiError> {
            Ok(t.ipam_get(&mac_pool, mac)?.is_none_or(|pid| pid == id))
        };
        let mac = match (given, old.and_then(|o| o.mac.clone())) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => match self.ips.first().map(|a| derived_mac(&subnet.vpc_id, a)) {
                Some(m) if free(t, &m)? => m,
                _ => generate_mac(id),
            },
        };
        if !free(t, &mac)? {
            return Err(ApiError::conflict(
                "mac",
                format!("{mac} is used by another port in the same VPC"),
            ));
        }
        t.ipam_put(&mac_pool, &mac, id)?;
        self.mac = Some(mac);
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (sid, s) in all::<ServiceSpec>(t, ServiceSpec::KIND)? {
            if s.backends.iter().any(|b| b.port_id.as_deref() == Some(id)) {
                return Err(in_use("port", "service", &sid));
            }
        }
        for ip in &self.ips {
            ipam::release(t, &self.subnet_id, ip, id)?;
        }
        port_index::ready(t)?;
        if let Some(s) = fetch::<SubnetSpec>(t, SubnetSpec::KIND, &self.subnet_id)? {
            port_index::remove(t, &s.vpc_id, self, id)?;
        }
        Ok(())
    }
}

/// Indexes that keep port writes O(log N) in the number of ports: MAC → port per VPC
/// (pool `idx:mac:VPC`) and interface → port per chassis (`idx:bind:CHASSIS`). They live
/// in the store's allocation table beside the per-subnet address pools (which are the
/// IP index), so they are written in the same transaction as the port, in redb and in
/// etcd alike. A store written before the indexes existed gets them built inside the
/// first port write (`ready`), so they are complete whenever one is read.
pub mod port_index {
    use super::*;

    /// Marks a store whose indexes are built.
    const MARKER_POOL: &str = "idx:meta";
    const MARKER_KEY: &str = "ports-v1";

    pub fn mac_pool(vpc_id: &str) -> String {
        format!("idx:mac:{vpc_id}")
    }

    pub fn binding_pool(chassis_id: &str) -> String {
        format!("idx:bind:{chassis_id}")
    }

    /// Builds the indexes from the stored ports if this store has none yet.
    pub fn ready(t: &mut dyn Txn) -> Result<(), ApiError> {
        if t.ipam_get(MARKER_POOL, MARKER_KEY)?.is_some() {
            return Ok(());
        }
        rebuild(t)
    }

    /// Writes every port's index entries (existing entries are overwritten; conflicting
    /// stored data — two ports with one MAC in a VPC — keeps the last port by id).
    pub fn rebuild(t: &mut dyn Txn) -> Result<(), ApiError> {
        let vpc_of: std::collections::HashMap<String, String> =
            all::<SubnetSpec>(t, SubnetSpec::KIND)?
                .into_iter()
                .map(|(sid, s)| (sid, s.vpc_id))
                .collect();
        for (pid, p) in all::<PortSpec>(t, PortSpec::KIND)? {
            if let (Some(vpc), Some(mac)) = (vpc_of.get(&p.subnet_id), &p.mac) {
                t.ipam_put(&mac_pool(vpc), mac, &pid)?;
            }
            if let Some(b) = &p.binding {
                t.ipam_put(&binding_pool(&b.chassis_id), &b.iface, &pid)?;
            }
        }
        t.ipam_put(MARKER_POOL, MARKER_KEY, "1")?;
        Ok(())
    }

    /// Drops `port`'s entries (only those it owns).
    pub fn remove(
        t: &mut dyn Txn,
        vpc_id: &str,
        port: &PortSpec,
        id: &str,
    ) -> Result<(), ApiError> {
        if let Some(mac) = &port.mac {
            drop_owned(t, &mac_pool(vpc_id), mac, id)?;
        }
        if let Some(b) = &port.binding {
            drop_owned(t, &binding_pool(&b.chassis_id), &b.iface, id)?;
        }
        Ok(())
    }

    fn drop_owned(t: &mut dyn Txn, pool: &str, key: &str, id: &str) -> Result<(), ApiError> {
        if t.ipam_get(pool, key)?.as_deref() == Some(id) {
            t.ipam_delete(pool, key)?;
        }
        Ok(())
    }
}

impl Kind for SecurityGroupSpec {
    obj!(SecurityGroupSpec, SecurityGroup, SecurityGroupList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.tenant_id), &self.tenant_id, "tenant_id")?;
        must::<TenantSpec>(t, TenantSpec::KIND, &self.tenant_id, "tenant_id")?;
        if self.rules.is_none() {
            self.rules = Some(match old {
                Some(o) => o.rules.clone().unwrap_or_default(),
                None => validate::default_rules(),
            });
        }
        for (i, r) in self.rules.iter().flatten().enumerate() {
            if let Some(g) = &r.remote_group_id
                && g != id
            {
                must::<SecurityGroupSpec>(
                    t,
                    SecurityGroupSpec::KIND,
                    g,
                    &format!("rules[{i}].remote_group_id"),
                )?;
            }
        }
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        for (pid, p) in all::<PortSpec>(t, PortSpec::KIND)? {
            if p.security_groups.iter().any(|g| g == id) {
                return Err(in_use("security group", "port", &pid));
            }
        }
        for (gid, g) in all::<SecurityGroupSpec>(t, SecurityGroupSpec::KIND)? {
            if gid != id
                && g.rules
                    .iter()
                    .flatten()
                    .any(|r| r.remote_group_id.as_deref() == Some(id))
            {
                return Err(in_use("security group", "security group", &gid));
            }
        }
        Ok(())
    }
}

impl Kind for ServiceSpec {
    obj!(ServiceSpec, Service, ServiceList);
    fn prepare(&mut self, t: &mut dyn Txn, id: &str, old: Option<&Self>) -> Result<(), ApiError> {
        immutable(old.map(|o| &o.vpc_id), &self.vpc_id, "vpc_id")?;
        must::<VpcSpec>(t, VpcSpec::KIND, &self.vpc_id, "vpc_id")?;
        let vip: IpAddr = self
            .vip
            .parse()
            .map_err(|_| ApiError::invalid("vip", "bad address"))?;
        self.vip = vip.to_string();
        for (i, b) in self.backends.iter().enumerate() {
            if let Some(pid) = &b.port_id {
                let f = format!("backends[{i}].port_id");
                let p = must::<PortSpec>(t, PortSpec::KIND, pid, &f)?;
                let s = must::<SubnetSpec>(t, SubnetSpec::KIND, &p.subnet_id, &f)?;
                if s.vpc_id != self.vpc_id {
                    return Err(ApiError::invalid(
                        &f,
                        format!("port {pid} is in another VPC"),
                    ));
                }
            }
        }
        // VIP:port/protocol unique within the VPC: one index lookup, not a scan.
        service_index::ready(t)?;
        let (pool, key) = service_index::entry(self);
        match t.ipam_get(&pool, &key)? {
            Some(sid) if sid != id => {
                return Err(ApiError::conflict(
                    "vip",
                    format!("service {sid} already serves {}:{}", self.vip, self.port),
                ));
            }
            _ => {}
        }
        if let Some(o) = old {
            service_index::remove(t, o, id)?;
        }
        t.ipam_put(&pool, &key, id)?;
        Ok(())
    }
    fn on_delete(&self, t: &mut dyn Txn, id: &str) -> Result<(), ApiError> {
        service_index::ready(t)?;
        service_index::remove(t, self, id)
    }
}

/// The index of service VIPs per VPC (`VIP:port/protocol` → service id), written in the
/// service's own transaction like [`port_index`].
pub mod service_index {
    use super::*;

    const MARKER_POOL: &str = "idx:meta";
    const MARKER_KEY: &str = "services-v1";

    /// The index pool and key of a service's VIP.
    pub fn entry(s: &ServiceSpec) -> (String, String) {
        (
            format!("idx:vip:{}", s.vpc_id),
            format!("{}:{}/{:?}", s.vip, s.port, s.protocol),
        )
    }

    /// Builds the index from the stored services if this store has none yet.
    pub fn ready(t: &mut dyn Txn) -> Result<(), ApiError> {
        if t.ipam_get(MARKER_POOL, MARKER_KEY)?.is_some() {
            return Ok(());
        }
        for (sid, s) in all::<ServiceSpec>(t, ServiceSpec::KIND)? {
            let (pool, key) = entry(&s);
            t.ipam_put(&pool, &key, &sid)?;
        }
        t.ipam_put(MARKER_POOL, MARKER_KEY, "1")?;
        Ok(())
    }

    /// Drops `s`'s entry if `id` owns it.
    pub fn remove(t: &mut dyn Txn, s: &ServiceSpec, id: &str) -> Result<(), ApiError> {
        let (pool, key) = entry(s);
        if t.ipam_get(&pool, &key)?.as_deref() == Some(id) {
            t.ipam_delete(&pool, &key)?;
        }
        Ok(())
    }
}
