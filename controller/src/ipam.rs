//! IPAM: per-subnet address allocation, done inside a store write transaction (so two
//! concurrent allocations can never hand out the same address: redb serialises writers,
//! and the allocation table is part of the same commit as the port that owns it).
//!
//! The pool of a subnet is its id; entries are `address → owner` (a port id). Network,
//! IPv4 broadcast, the gateway and the subnet's `reserved_ips` are never handed out.

use crate::store::{StoreError, Txn};
use ipnet::IpNet;
use plexus_api::{SubnetSpec, validate};
use std::collections::HashSet;
use std::net::IpAddr;

/// Scan limit for a free address (keeps huge IPv6 subnets bounded).
const MAX_SCAN: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {0} has no free address")]
    Exhausted(String),
    #[error("{addr} is already used by {owner}")]
    InUse { addr: IpAddr, owner: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn excluded(subnet: &SubnetSpec) -> Result<(IpNet, HashSet<IpAddr>), IpamError> {
    let net: IpNet = subnet
        .cidr
        .parse()
        .map_err(|_| IpamError::Invalid(format!("bad subnet cidr {}", subnet.cidr)))?;
    let mut ex = HashSet::new();
    ex.insert(net.network());
    ex.insert(net.broadcast());
    ex.insert(validate::subnet_gateway(subnet).map_err(|e| IpamError::Invalid(e.to_string()))?);
    for r in &subnet.reserved_ips {
        if let Ok(a) = r.parse() {
            ex.insert(a);
        }
    }
    Ok((net, ex))
}

/// Allocates the lowest free address of the subnet for `owner`.
pub fn allocate(
    txn: &mut dyn Txn,
    subnet_id: &str,
    subnet: &SubnetSpec,
    owner: &str,
) -> Result<IpAddr, IpamError> {
    let (net, ex) = excluded(subnet)?;
    let used: HashSet<IpAddr> = txn
        .ipam_list(subnet_id)?
        .into_iter()
        .filter_map(|(a, _)| a.parse().ok())
        .collect();
    let free = net
        .hosts()
        .take(MAX_SCAN)
        .find(|a| !ex.contains(a) && !used.contains(a))
        .ok_or_else(|| IpamError::Exhausted(subnet_id.to_string()))?;
    txn.ipam_put(subnet_id, &free.to_string(), owner)?;
    Ok(free)
}

/// Records a fixed address for `owner` (idempotent for the same owner).
pub fn reserve(
    txn: &mut dyn Txn,
    subnet_id: &str,
    subnet: &SubnetSpec,
    addr: IpAddr,
    owner: &str,
) -> Result<(), IpamError> {
    let (net, ex) = excluded(subnet)?;
    if !net.contains(&addr) {
        return Err(IpamError::Invalid(format!("{addr} is outside {net}")));
    }
    if ex.contains(&addr) {
        return Err(IpamError::InUse {
            addr,
            owner: "the subnet (network, broadcast, gateway or reserved)".into(),
        });
    }
    let key = addr.to_string();
    match txn.ipam_get(subnet_id, &key)? {
        Some(o) if o != owner => Err(IpamError::InUse { addr, owner: o }),
        Some(_) => Ok(()),
        None => Ok(txn.ipam_put(subnet_id, &key, owner)?),
    }
}

/// Releases `addr` if `owner` holds it.
pub fn release(
    txn: &mut dyn Txn,
    subnet_id: &str,
    addr: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let canon = addr
        .parse::<IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or(addr.into());
    match txn.ipam_get(subnet_id, &canon)? {
        Some(o) if o == owner => txn.ipam_delete(subnet_id, &canon),
        _ => Ok(false),
    }
}

/// Garbage collection: drops allocations of `subnet_id` whose owner `is_live` rejects.
/// Returns the reclaimed addresses.
pub fn gc(
    txn: &mut dyn Txn,
    subnet_id: &str,
    is_live: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (a, o) in txn.ipam_list(subnet_id)? {
        if !is_live(&o) {
            txn.ipam_delete(subnet_id, &a)?;
            out.push(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RedbStore, Store};
    use std::sync::Arc;

    fn subnet(cidr: &str) -> SubnetSpec {
        SubnetSpec {
            vpc_id: "v".into(),
            name: "s".into(),
            cidr: cidr.into(),
            reserved_ips: vec!["10.0.0.2".into()],
            ..Default::default()
        }
    }

    #[test]
    fn skips_network_gateway_reserved_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("db")).unwrap();
        let sn = subnet("10.0.0.0/29"); // .0 net, .1 gw, .2 reserved, .7 broadcast
        let (got, _) = s
            .write::<_, IpamError>(&mut |t| {
                let mut v = Vec::new();
                for i in 0..4 {
                    v.push(allocate(t, "s", &sn, &format!("p{i}"))?.to_string());
                }
                Ok(v)
            })
            .unwrap();
        assert_eq!(got, ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        let e = s.write::<_, IpamError>(&mut |t| allocate(t, "s", &sn, "p9"));
        assert!(matches!(e, Err(IpamError::Exhausted(_))));
        // Release one: it is handed out again.
        s.write::<_, IpamError>(&mut |t| Ok(release(t, "s", "10.0.0.4", "p1")?))
            .unwrap();
        let (a, _) = s
            .write::<_, IpamError>(&mut |t| allocate(t, "s", &sn, "p9"))
            .unwrap();
        assert_eq!(a.to_string(), "10.0.0.4");
        let e = s.write::<_, IpamError>(&mut |t| {
            reserve(t, "s", &sn, "10.0.0.1".parse().unwrap(), "px")
        });
        assert!(matches!(e, Err(IpamError::InUse { .. })));
    }

    #[test]
    fn survives_restart_and_gc_reclaims() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let sn = subnet("10.0.0.0/24");
        {
            let s = RedbStore::open(&path).unwrap();
            s.write::<_, IpamError>(&mut |t| {
                allocate(t, "s", &sn, "live")?;
                allocate(t, "s", &sn, "leaked")?;
                Ok(())
            })
            .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        let (a, _) = s
            .write::<_, IpamError>(&mut |t| allocate(t, "s", &sn, "new"))
            .unwrap();
        assert_eq!(a.to_string(), "10.0.0.5");
        let (gone, _) = s
            .write::<_, IpamError>(&mut |t| Ok(gc(t, "s", &|o| o != "leaked")?))
            .unwrap();
        assert_eq!(gone, ["10.0.0.4"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_allocations_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(RedbStore::open(&dir.path().join("db")).unwrap());
        let sn = Arc::new(subnet("10.0.0.0/24"));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (s, sn) = (s.clone(), sn.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                s.write::<_, IpamError>(&mut |t| allocate(t, "s", &sn, &format!("p{i}")))
                    .unwrap()
                    .0
            }));
        }
        let mut seen = HashSet::new();
        for t in tasks {
            assert!(seen.insert(t.await.unwrap()), "duplicate address");
        }
        assert_eq!(seen.len(), 200);
        assert_eq!(s.ipam_list("s").unwrap().len(), 200);
    }
}
