//! Validation of specs. Every error names the offending field by its JSON path.
//!
//! Context-free checks run in [`crate::Spec::validate`]; checks that need other objects
//! (overlap with sibling subnets, duplicates, references) are the helper functions here,
//! called by the controller inside its write transaction.

use crate::*;
use ipnet::IpNet;
use std::net::IpAddr;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path, e.g. `cidrs[1]` or `rules[0].remote_cidr`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field path (`rules[0]` + `port_min` → `rules[0].port_min`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

type R<T = ()> = Result<T, ValidationError>;

fn bad(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// Parses a network prefix; host bits must be zero.
pub fn parse_cidr(field: &str, s: &str) -> R<IpNet> {
    let net: IpNet = s.parse().map_err(|_| {
        bad(
            field,
            format!("`{s}` is not a CIDR (address/prefix-length)"),
        )
    })?;
    if net.trunc() != net {
        return Err(bad(
            field,
            format!("`{s}` has host bits set; did you mean `{}`?", net.trunc()),
        ));
    }
    Ok(net)
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(field: &str, s: &str) -> R<IpAddr> {
    s.parse()
        .map_err(|_| bad(field, format!("`{s}` is not an IP address")))
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive); rejects multicast and all-zero MACs.
pub fn parse_mac(field: &str, s: &str) -> R<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(bad(field, format!("`{s}` is not a MAC address")));
    }
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad(field, format!("`{s}` is not a MAC address")));
        }
        mac[i] = u8::from_str_radix(p, 16)
            .map_err(|_| bad(field, format!("`{s}` is not a MAC address")))?;
    }
    if mac[0] & 1 != 0 {
        return Err(bad(field, format!("`{s}` is a multicast MAC address")));
    }
    if mac == [0; 6] {
        return Err(bad(field, "the all-zero MAC address is not allowed"));
    }
    Ok(mac)
}

/// Canonical (lowercase) text of a MAC.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn name(field: &str, s: &str) -> R {
    if s.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if s.len() > 255 {
        return Err(bad(field, "longer than 255 bytes"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

fn id(field: &str, s: &str) -> R {
    if s.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    Ok(())
}

pub(crate) fn tenant(s: &TenantSpec) -> R {
    name("name", &s.name)
}

pub(crate) fn vpc(s: &VpcSpec) -> R {
    id("tenant_id", &s.tenant_id)?;
    name("name", &s.name)?;
    if s.cidrs.is_empty() {
        return Err(bad("cidrs", "at least one CIDR is required"));
    }
    let mut nets: Vec<IpNet> = Vec::new();
    for (i, c) in s.cidrs.iter().enumerate() {
        let f = format!("cidrs[{i}]");
        let n = parse_cidr(&f, c)?;
        if let Some(j) = nets.iter().position(|m| overlaps(m, &n)) {
            return Err(bad(&f, format!("`{c}` overlaps cidrs[{j}]")));
        }
        nets.push(n);
    }
    if let Some(v) = s.vni
        && !(1..=0xff_ffff).contains(&v)
    {
        return Err(bad("vni", "must be in 1..=16777215"));
    }
    Ok(())
}

/// True when two prefixes share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The gateway of a subnet: the given one or the first host address.
pub fn subnet_gateway(s: &SubnetSpec) -> R<IpAddr> {
    let net = parse_cidr("cidr", &s.cidr)?;
    match &s.gateway {
        Some(g) => parse_ip("gateway", g),
        None => first_host(&net).ok_or_else(|| bad("cidr", "has no host addresses")),
    }
}

fn first_host(net: &IpNet) -> Option<IpAddr> {
    net.hosts().next()
}

pub(crate) fn subnet(s: &SubnetSpec) -> R {
    id("vpc_id", &s.vpc_id)?;
    name("name", &s.name)?;
    let net = parse_cidr("cidr", &s.cidr)?;
    if let IpNet::V4(n) = net
        && n.prefix_len() > 30
    {
        return Err(bad(
            "cidr",
            "an IPv4 subnet needs a prefix of /30 or shorter",
        ));
    }
    if let IpNet::V6(n) = net
        && n.prefix_len() > 126
    {
        return Err(bad(
            "cidr",
            "an IPv6 subnet needs a prefix of /126 or shorter",
        ));
    }
    let gw = subnet_gateway(s)?;
    ip_in_subnet("gateway", &gw, &net)?;
    for (i, r) in s.reserved_ips.iter().enumerate() {
        let f = format!("reserved_ips[{i}]");
        ip_in_subnet(&f, &parse_ip(&f, r)?, &net)?;
    }
    if let Some(d) = &s.dhcp {
        for (i, dns) in d.dns_servers.iter().enumerate() {
            parse_ip(&format!("dhcp.dns_servers[{i}]"), dns)?;
        }
        if d.lease_seconds == Some(0) {
            return Err(bad("dhcp.lease_seconds", "must be positive"));
        }
        if let Some(m) = d.mtu
            && m < 576
        {
            return Err(bad("dhcp.mtu", "must be at least 576"));
        }
    }
    Ok(())
}

/// Checks that `ip` is a usable host address of `net` (not the network address, not the
/// IPv4 broadcast address).
pub fn ip_in_subnet(field: &str, ip: &IpAddr, net: &IpNet) -> R {
    if !net.contains(ip) {
        return Err(bad(field, format!("{ip} is outside the subnet {net}")));
    }
    if *ip == net.network() {
        return Err(bad(field, format!("{ip} is the network address of {net}")));
    }
    if let IpNet::V4(n) = net
        && *ip == IpAddr::V4(n.broadcast())
    {
        return Err(bad(
            field,
            format!("{ip} is the broadcast address of {net}"),
        ));
    }
    Ok(())
}

/// A new subnet's CIDR must lie in one of its VPC's CIDRs and overlap none of the VPC's
/// other subnets (`siblings`: id and CIDR).
pub fn check_subnet_placement(
    cidr: &str,
    vpc_cidrs: &[String],
    siblings: &[(String, String)],
) -> R {
    let net = parse_cidr("cidr", cidr)?;
    let inside = vpc_cidrs.iter().any(|c| {
        c.parse::<IpNet>()
            .map(|v| v.contains(&net.network()) && v.prefix_len() <= net.prefix_len())
            .unwrap_or(false)
    });
    if !inside {
        return Err(bad(
            "cidr",
            format!("{net} is not inside any of the VPC's CIDRs"),
        ));
    }
    for (sid, c) in siblings {
        if let Ok(o) = c.parse::<IpNet>()
            && overlaps(&o, &net)
        {
            return Err(bad(
                "cidr",
                format!("{net} overlaps {o} of subnet {sid} in the same VPC"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn router(s: &RouterSpec) -> R {
    id("vpc_id", &s.vpc_id)?;
    name("name", &s.name)?;
    for (i, sid) in s.subnet_ids.iter().enumerate() {
        id(&format!("subnet_ids[{i}]"), sid)?;
        if s.subnet_ids[..i].contains(sid) {
            return Err(bad(&format!("subnet_ids[{i}]"), "duplicate subnet"));
        }
    }
    for (i, r) in s.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let d = parse_cidr("destination", &r.destination).map_err(|e| e.within(&p))?;
        let n = parse_ip("nexthop", &r.nexthop).map_err(|e| e.within(&p))?;
        if d.addr().is_ipv4() != n.is_ipv4() {
            return Err(bad(
                &format!("{p}.nexthop"),
                "address family differs from destination",
            ));
        }
    }
    if let Some(g) = &s.external_gateway {
        id("external_gateway.chassis_id", &g.chassis_id)?;
        let net: IpNet = g.ip.parse().map_err(|_| {
            bad(
                "external_gateway.ip",
                format!("`{}` is not address/prefix-length", g.ip),
            )
        })?;
        if let Some(m) = &g.nexthop_mac {
            parse_mac("external_gateway.nexthop_mac", m)?;
        }
        if let Some(nh) = &g.nexthop {
            let nh = parse_ip("external_gateway.nexthop", nh)?;
            if !net.contains(&nh) {
                return Err(bad(
                    "external_gateway.nexthop",
                    format!("{nh} is not on {}", net.trunc()),
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn port(s: &PortSpec) -> R {
    id("subnet_id", &s.subnet_id)?;
    if let Some(m) = &s.mac {
        parse_mac("mac", m)?;
    }
    for (i, ip) in s.ips.iter().enumerate() {
        let f = format!("ips[{i}]");
        let a = parse_ip(&f, ip)?;
        if s.ips[..i]
            .iter()
            .any(|o| o.parse::<IpAddr>().ok() == Some(a))
        {
            return Err(bad(&f, format!("duplicate address {a}")));
        }
    }
    for (i, g) in s.security_groups.iter().enumerate() {
        let f = format!("security_groups[{i}]");
        id(&f, g)?;
        if s.security_groups[..i].contains(g) {
            return Err(bad(&f, "duplicate security group"));
        }
    }
    if let Some(b) = &s.binding {
        id("binding.chassis_id", &b.chassis_id)?;
        name("binding.iface", &b.iface)?;
    }
    Ok(())
}

/// A binding as sent alone (`PUT /v1/ports/{id}/binding`): fields named without prefix.
pub fn check_binding(b: &PortBinding) -> R {
    id("chassis_id", &b.chassis_id)?;
    name("iface", &b.iface)
}

/// A port's fixed IPs must be usable addresses of its subnet.
pub fn check_port_ips(ips: &[String], subnet_cidr: &str) -> R {
    let net = parse_cidr("cidr", subnet_cidr)?;
    for (i, ip) in ips.iter().enumerate() {
        let f = format!("ips[{i}]");
        ip_in_subnet(&f, &parse_ip(&f, ip)?, &net)?;
    }
    Ok(())
}

/// The rules a group gets when created without `rules`: allow all egress.
pub fn default_rules() -> Vec<SecurityGroupRule> {
    [Ethertype::Ipv4, Ethertype::Ipv6]
        .into_iter()
        .map(|ethertype| SecurityGroupRule {
            direction: Direction::Egress,
            ethertype,
            protocol: Protocol::Any,
            port_min: None,
            port_max: None,
            remote_cidr: None,
            remote_group_id: None,
        })
        .collect()
}

fn rule(r: &SecurityGroupRule) -> R {
    let ports = r.port_min.is_some() || r.port_max.is_some();
    if ports && !matches!(r.protocol, Protocol::Tcp | Protocol::Udp) {
        return Err(bad("port_min", "port ranges need protocol tcp or udp"));
    }
    if let (Some(a), Some(b)) = (r.port_min, r.port_max)
        && a > b
    {
        return Err(bad("port_max", format!("{b} is below port_min {a}")));
    }
    if r.port_min == Some(0) {
        return Err(bad("port_min", "must be 1..=65535"));
    }
    if r.remote_cidr.is_some() && r.remote_group_id.is_some() {
        return Err(bad(
            "remote_group_id",
            "give at most one of remote_cidr and remote_group_id",
        ));
    }
    if let Some(c) = &r.remote_cidr {
        let n = parse_cidr("remote_cidr", c)?;
        if n.addr().is_ipv4() != (r.ethertype == Ethertype::Ipv4) {
            return Err(bad("remote_cidr", "address family differs from ethertype"));
        }
    }
    if let Some(g) = &r.remote_group_id {
        id("remote_group_id", g)?;
    }
    Ok(())
}

pub(crate) fn security_group(s: &SecurityGroupSpec) -> R {
    id("tenant_id", &s.tenant_id)?;
    name("name", &s.name)?;
    for (i, r) in s.rules.iter().flatten().enumerate() {
        rule(r).map_err(|e| e.within(&format!("rules[{i}]")))?;
    }
    Ok(())
}

pub(crate) fn service(s: &ServiceSpec) -> R {
    id("vpc_id", &s.vpc_id)?;
    name("name", &s.name)?;
    let vip = parse_ip("vip", &s.vip)?;
    if s.port == 0 {
        return Err(bad("port", "must be 1..=65535"));
    }
    for (i, b) in s.backends.iter().enumerate() {
        let p = format!("backends[{i}]");
        match (&b.port_id, &b.ip) {
            (None, None) | (Some(_), Some(_)) => {
                return Err(bad(
                    &format!("{p}.port_id"),
                    "give exactly one of port_id and ip",
                ));
            }
            (None, Some(ip)) => {
                let a = parse_ip(&format!("{p}.ip"), ip)?;
                if a.is_ipv4() != vip.is_ipv4() {
                    return Err(bad(&format!("{p}.ip"), "address family differs from vip"));
                }
            }
            (Some(pid), None) => id(&format!("{p}.port_id"), pid)?,
        }
        if b.target_port == 0 {
            return Err(bad(&format!("{p}.target_port"), "must be 1..=65535"));
        }
        if b.weight == 0 || b.weight > 65535 {
            return Err(bad(&format!("{p}.weight"), "must be 1..=65535"));
        }
        if let Some(sub) = &b.subset {
            subset_name(&format!("{p}.subset"), sub)?;
        }
    }
    if let Some(h) = &s.health_check {
        for (f, v) in [
            ("interval_seconds", h.interval_seconds),
            ("timeout_seconds", h.timeout_seconds),
            ("unhealthy_threshold", h.unhealthy_threshold),
            ("healthy_threshold", h.healthy_threshold),
        ] {
            if v == 0 {
                return Err(bad(&format!("health_check.{f}"), "must be positive"));
            }
        }
        if h.timeout_seconds > h.interval_seconds {
            return Err(bad(
                "health_check.timeout_seconds",
                "must not exceed interval_seconds",
            ));
        }
        if let Some(p) = &h.http_path
            && (!p.starts_with('/') || p.len() > 1024 || p.chars().any(|c| c.is_control()))
        {
            return Err(bad(
                "health_check.http_path",
                "must start with '/', at most 1024 characters, no control characters",
            ));
        }
    }
    if let Some(tp) = &s.traffic_policy {
        traffic_policy(s, tp)?;
    }
    Ok(())
}

fn subset_name(field: &str, s: &str) -> R {
    if s.is_empty()
        || s.len() > 63
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(bad(field, "1..=63 characters of [A-Za-z0-9._-]"));
    }
    Ok(())
}

fn percent(field: &str, v: u32) -> R {
    if v > 100 {
        return Err(bad(field, "must be 0..=100"));
    }
    Ok(())
}

fn positive(field: &str, v: u32) -> R {
    if v == 0 {
        return Err(bad(field, "must be positive"));
    }
    Ok(())
}

fn traffic_policy(s: &ServiceSpec, tp: &TrafficPolicy) -> R {
    let f = |n: &str| format!("traffic_policy.{n}");
    if let Some(v) = tp.connect_timeout_ms {
        positive(&f("connect_timeout_ms"), v)?;
    }
    if let Some(v) = tp.request_timeout_ms {
        positive(&f("request_timeout_ms"), v)?;
    }
    if let Some(r) = &tp.retries {
        if !(1..=10).contains(&r.num_retries) {
            return Err(bad(&f("retries.num_retries"), "must be 1..=10"));
        }
        if r.retry_on.is_empty()
            || !r
                .retry_on
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ',')
        {
            return Err(bad(
                &f("retries.retry_on"),
                "comma-separated conditions of [a-z0-9-]",
            ));
        }
        if let Some(v) = r.per_try_timeout_ms {
            positive(&f("retries.per_try_timeout_ms"), v)?;
        }
    }
    if !tp.splits.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in tp.splits.iter().enumerate() {
            let p = f(&format!("splits[{i}]"));
            subset_name(&format!("{p}.subset"), &a.subset)?;
            if !seen.insert(a.subset.as_str()) {
                return Err(bad(&format!("{p}.subset"), "duplicate subset"));
            }
            if a.weight > 10000 {
                return Err(bad(&format!("{p}.weight"), "must be 0..=10000"));
            }
            if !s
                .backends
                .iter()
                .any(|b| b.subset.as_deref() == Some(a.subset.as_str()))
            {
                return Err(bad(
                    &format!("{p}.subset"),
                    "no backend of the service has this subset",
                ));
            }
        }
        if tp.splits.iter().all(|a| a.weight == 0) {
            return Err(bad(&f("splits"), "at least one weight must be positive"));
        }
    }
    if let Some(cb) = &tp.circuit_breaker {
        for (n, v) in [
            ("max_connections", cb.max_connections),
            ("max_pending_requests", cb.max_pending_requests),
            ("max_requests", cb.max_requests),
        ] {
            positive(&f(&format!("circuit_breaker.{n}")), v)?;
        }
    }
    if let Some(od) = &tp.outlier_detection {
        positive(&f("outlier_detection.consecutive_5xx"), od.consecutive_5xx)?;
        positive(&f("outlier_detection.interval_ms"), od.interval_ms)?;
        positive(
            &f("outlier_detection.base_ejection_time_ms"),
            od.base_ejection_time_ms,
        )?;
        percent(
            &f("outlier_detection.max_ejection_percent"),
            od.max_ejection_percent,
        )?;
    }
    if let Some(fi) = &tp.fault {
        if let Some(d) = &fi.delay {
            positive(&f("fault.delay.delay_ms"), d.delay_ms)?;
            percent(&f("fault.delay.percent"), d.percent)?;
        }
        if let Some(a) = &fi.abort {
            if !(200..=599).contains(&a.http_status) {
                return Err(bad(&f("fault.abort.http_status"), "must be 200..=599"));
            }
            percent(&f("fault.abort.percent"), a.percent)?;
        }
    }
    Ok(())
}

fn endpoint(field: &str, s: &str) -> R {
    let ok = if let Some(rest) = s.strip_prefix("tcp:") {
        rest.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
    } else if let Some(rest) = s.strip_prefix("unix:") {
        !rest.is_empty()
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("`{s}` is not tcp:HOST:PORT or unix:PATH"),
        ))
    }
}

pub(crate) fn chassis(s: &ChassisSpec) -> R {
    name("name", &s.name)?;
    parse_ip("vtep_ip", &s.vtep_ip)?;
    if let Some(e) = &s.endpoint {
        if let Some(o) = &e.openflow {
            endpoint("endpoint.openflow", o)?;
        }
        if let Some(o) = &e.ovsdb {
            endpoint("endpoint.ovsdb", o)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<T: Spec>(s: &T) -> String {
        s.validate().unwrap_err().field
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("c", "10.0.0.0/24").is_ok());
        assert!(parse_cidr("c", "fd00::/64").is_ok());
        assert!(parse_cidr("c", "10.0.0.0/33").is_err());
        assert!(
            parse_cidr("c", "10.0.0.1/24")
                .unwrap_err()
                .message
                .contains("10.0.0.0/24")
        );
        let v = VpcSpec {
            tenant_id: "t".into(),
            name: "v".into(),
            cidrs: vec!["10.0.0.0/16".into(), "banana".into()],
            vni: None,
        };
        assert_eq!(field(&v), "cidrs[1]");
        let v = VpcSpec {
            cidrs: vec!["10.0.0.0/16".into(), "10.0.1.0/24".into()],
            ..v
        };
        assert_eq!(field(&v), "cidrs[1]");
    }

    #[test]
    fn subnet_checks() {
        let s = SubnetSpec {
            vpc_id: "v".into(),
            name: "s".into(),
            cidr: "10.0.0.0/24".into(),
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        assert_eq!(subnet_gateway(&s).unwrap().to_string(), "10.0.0.1");
        let g = SubnetSpec {
            gateway: Some("10.0.1.1".into()),
            ..s.clone()
        };
        assert_eq!(field(&g), "gateway");
        let g = SubnetSpec {
            gateway: Some("10.0.0.255".into()),
            ..s.clone()
        };
        assert!(g.validate().unwrap_err().message.contains("broadcast"));
        let vpc = ["10.0.0.0/16".to_string()];
        assert!(
            check_subnet_placement("10.0.1.0/24", &vpc, &[("a".into(), "10.0.0.0/24".into())])
                .is_ok()
        );
        let e =
            check_subnet_placement("10.0.0.128/25", &vpc, &[("a".into(), "10.0.0.0/24".into())])
                .unwrap_err();
        assert_eq!(e.field, "cidr");
        assert!(e.message.contains("overlaps"));
        assert!(check_subnet_placement("10.1.0.0/24", &vpc, &[]).is_err());
        assert!(check_subnet_placement("10.0.0.0/8", &vpc, &[]).is_err());
    }

    #[test]
    fn port_checks() {
        let p = PortSpec {
            subnet_id: "s".into(),
            mac: Some("01:00:00:00:00:01".into()),
            port_security: true,
            ..Default::default()
        };
        assert_eq!(field(&p), "mac");
        let p = PortSpec {
            mac: Some("02:00:00:00:00:01".into()),
            ips: vec!["10.0.0.5".into(), "10.0.0.5".into()],
            ..p
        };
        assert_eq!(field(&p), "ips[1]");
        assert_eq!(
            check_port_ips(&["10.0.0.5".into(), "10.0.1.5".into()], "10.0.0.0/24")
                .unwrap_err()
                .field,
            "ips[1]"
        );
        assert_eq!(
            check_port_ips(&["10.0.0.0".into()], "10.0.0.0/24")
                .unwrap_err()
                .field,
            "ips[0]"
        );
        assert_eq!(
            format_mac(parse_mac("m", "0A:0b:0c:0d:0e:0f").unwrap()),
            "0a:0b:0c:0d:0e:0f"
        );
    }

    #[test]
    fn rule_checks() {
        let r = SecurityGroupRule {
            direction: Direction::Ingress,
            ethertype: Ethertype::Ipv4,
            protocol: Protocol::Icmp,
            port_min: Some(22),
            port_max: Some(22),
            remote_cidr: None,
            remote_group_id: None,
        };
        let g = SecurityGroupSpec {
            tenant_id: "t".into(),
            name: "g".into(),
            rules: Some(vec![r.clone()]),
        };
        assert_eq!(field(&g), "rules[0].port_min");
        let r2 = SecurityGroupRule {
            protocol: Protocol::Tcp,
            remote_cidr: Some("fd00::/64".into()),
            ..r
        };
        let g = SecurityGroupSpec {
            rules: Some(vec![r2]),
            ..g
        };
        assert_eq!(field(&g), "rules[0].remote_cidr");
    }

    #[test]
    fn service_and_chassis_checks() {
        let s = ServiceSpec {
            vpc_id: "v".into(),
            name: "web".into(),
            vip: "10.0.0.100".into(),
            port: 80,
            backends: vec![Backend {
                port_id: None,
                ip: Some("fd00::1".into()),
                target_port: 8080,
                weight: 1,
                subset: None,
                healthy: true,
            }],
            ..Default::default()
        };
        assert_eq!(field(&s), "backends[0].ip");
        let mut s = ServiceSpec {
            backends: vec![Backend {
                port_id: None,
                ip: Some("10.0.0.5".into()),
                target_port: 8080,
                weight: 1,
                subset: Some("v1".into()),
                healthy: true,
            }],
            traffic_policy: Some(TrafficPolicy {
                splits: vec![
                    TrafficSplit {
                        subset: "v1".into(),
                        weight: 99,
                    },
                    TrafficSplit {
                        subset: "v2".into(),
                        weight: 1,
                    },
                ],
                ..Default::default()
            }),
            ..s
        };
        assert_eq!(field(&s), "traffic_policy.splits[1].subset");
        s.traffic_policy.as_mut().unwrap().splits.pop();
        assert!(service(&s).is_ok());
        s.traffic_policy.as_mut().unwrap().fault = Some(FaultInjection {
            abort: Some(FaultAbort {
                http_status: 503,
                percent: 101,
            }),
            delay: None,
        });
        assert_eq!(field(&s), "traffic_policy.fault.abort.percent");
        let c = ChassisSpec {
            name: "c1".into(),
            vtep_ip: "192.0.2.1".into(),
            endpoint: Some(SwitchEndpoint {
                openflow: Some("tcp:127.0.0.1:0".into()),
                ovsdb: None,
                datapath_id: None,
            }),
        };
        assert_eq!(field(&c), "endpoint.openflow");
    }
}
