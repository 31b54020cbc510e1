//! Which tenant owns an object, for `tenant:<id>` tokens.
//!
//! A tenant owns itself, its VPCs and security groups, and the subnets, routers,
//! services and ports of its VPCs. Chassis belong to no tenant. The owner is found from
//! the stored JSON by following `tenant_id`, `vpc_id` and `subnet_id`; every other
//! reference of an object a tenant writes (a port's security groups, a rule's remote
//! group, a router's subnets) must be owned by the same tenant.

use super::ApiError;
use serde_json::Value;

/// Looks up a stored object's JSON by kind and id.
pub type Get<'a> = dyn FnMut(&str, &str) -> Result<Option<Value>, ApiError> + 'a;

fn str_field<'v>(v: &'v Value, f: &str) -> Option<&'v str> {
    v.get(f).and_then(Value::as_str)
}

/// The tenant owning object `id` of `kind` whose JSON is `v` (`None`: no tenant, or a
/// dangling parent).
pub fn owner(
    kind: &str,
    id: &str,
    v: &Value,
    get: &mut Get<'_>,
) -> Result<Option<String>, ApiError> {
    let parent = |k: &'static str, f: &str| str_field(v, f).map(|p| (k, p.to_string()));
    let next = match kind {
        "tenants" => return Ok(Some(id.to_string())),
        "vpcs" | "security-groups" => return Ok(str_field(v, "tenant_id").map(str::to_string)),
        "subnets" | "routers" | "services" => parent("vpcs", "vpc_id"),
        "ports" => parent("subnets", "subnet_id"),
        _ => None,
    };
    let Some((pk, pid)) = next else {
        return Ok(None);
    };
    match get(pk, &pid)? {
        Some(pv) => owner(pk, &pid, &pv, get),
        None => Ok(None),
    }
}

/// Other tenant-owned objects `v` refers to (beyond its owner chain).
pub fn references(kind: &str, v: &Value) -> Vec<(&'static str, String)> {
    let ids = |f: &str| -> Vec<String> {
        v.get(f)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        "ports" => ids("security_groups")
            .into_iter()
            .map(|g| ("security-groups", g))
            .collect(),
        "routers" => ids("subnet_ids")
            .into_iter()
            .map(|s| ("subnets", s))
            .collect(),
        "services" => v
            .get("backends")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| str_field(b, "port_id"))
            .map(|p| ("ports", p.to_string()))
            .collect(),
        "security-groups" => v
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| str_field(r, "remote_group_id"))
            .map(|g| ("security-groups", g.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks that a tenant-scoped caller may touch object `id` of `kind` with JSON `v`:
/// it and everything it refers to must be owned by `tenant`.
pub fn check(
    tenant: &str,
    kind: &str,
    id: &str,
    v: &Value,
    get: &mut Get<'_>,
) -> Result<(), ApiError> {
    if owner(kind, id, v, get)?.as_deref() != Some(tenant) {
        return Err(super::auth::not_your_tenant(tenant, kind, id));
    }
    for (rk, rid) in references(kind, v) {
        if rk == kind && rid == id {
            continue;
        }
        let ok = match get(rk, &rid)? {
            Some(rv) => owner(rk, &rid, &rv, get)?.as_deref() == Some(tenant),
            None => true, // dangling: the kind's own checks answer 422
        };
        if !ok {
            return Err(super::auth::not_your_tenant(tenant, rk, &rid));
        }
    }
    Ok(())
}
