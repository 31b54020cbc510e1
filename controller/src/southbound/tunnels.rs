//! Tunnel ports over OVSDB: one session per chassis whose `endpoint.ovsdb` names the
//! switch's database (real Open vSwitch's `ovsdb-server`, or the server `plexus-vswitchd
//! --ovsdb-listen` embeds). It keeps exactly one flow-based VXLAN port on the chassis'
//! integration bridge:
//!
//! ```text
//! Port/Interface plx-vxlan: type=vxlan, options:{key=flow, remote_ip=flow, local_ip=VTEP}
//! ```
//!
//! The compiler's flows pick the VNI (`tun_id`) and the peer (`tun_dst`) per packet and
//! match `tun_id` + `tun_src` on decapsulation, so one port serves the whole mesh and the
//! mesh itself (which chassis talk to which) is decided by flows: only chassis that share
//! a VPC exchange traffic. The bridge is the one whose `datapath_id` (or
//! `other_config:datapath-id`) equals `endpoint.datapath_id`, else the bridge named like
//! the chassis. The port is checked on connect, whenever the chassis changes and every
//! [`RECHECK`]; a missing port is created, one with other options is updated in place (a
//! running port is never deleted and re-added when it is already right, so a controller
//! restart does not touch it). The outcome is shown as `tunnel` in the chassis' sync
//! status. A deleted chassis' port is left on the switch (it carries no flows any more).

use super::Shared;
use crate::model_from_store::{Snapshot, TUNNEL_IFACE, parse_dpid};
use crate::store::Store;
use plexus_ovsdb::client::{Client, Op, cond};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a connected session re-checks the port.
pub const RECHECK: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);
const DB: &str = "Open_vSwitch";

/// Where and what the tunnel port of one chassis should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// `tcp:IP:PORT` or `unix:PATH`.
    pub ovsdb: String,
    /// The chassis' name (the bridge name used when no datapath id is given).
    pub name: String,
    pub datapath_id: Option<u64>,
    pub vtep: Ipv4Addr,
}

/// The tunnel interface's options.
pub fn desired_options(vtep: Ipv4Addr) -> BTreeMap<String, String> {
    [
        ("key", "flow".to_string()),
        ("local_ip", vtep.to_string()),
        ("remote_ip", "flow".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn map_json(m: &BTreeMap<String, String>) -> Value {
    json!([
        "map",
        m.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()
    ])
}

/// An OVSDB `map` datum of strings (`["map", [[k, v], ...]]`).
fn parse_map(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(pairs) = v.get(1).and_then(Value::as_array) {
        for p in pairs {
            if let (Some(k), Some(v)) = (
                p.get(0).and_then(Value::as_str),
                p.get(1).and_then(Value::as_str),
            ) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// The UUIDs of a `uuid` datum or a set of them.
fn uuids(v: &Value) -> Vec<String> {
    match v.get(0).and_then(Value::as_str) {
        Some("uuid") => v
            .get(1)
            .and_then(Value::as_str)
            .map(|u| vec![u.to_string()])
            .unwrap_or_default(),
        Some("set") => v
            .get(1)
            .and_then(Value::as_array)
            .map(|a| a.iter().flat_map(uuids).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A string column that may be an empty set (optional string).
fn opt_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn rows(r: &[Value], i: usize) -> Vec<Map<String, Value>> {
    r.get(i)
        .and_then(|x| x.get("rows"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_object().cloned()).collect())
        .unwrap_or_default()
}

fn select(table: &str, conds: Vec<Value>, columns: &[&str]) -> Op {
    Op::Select {
        table: table.into(),
        conds,
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    }
}

fn uuid_cond(u: &str) -> Value {
    cond("_uuid", "==", json!(["uuid", u]))
}

async fn transact(c: &Client, ops: &[Op]) -> Result<Vec<Value>, String> {
    match tokio::time::timeout(TIMEOUT, c.transact(DB, ops)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

/// Makes the tunnel port what `t` says; returns what it found or did.
pub async fn ensure(c: &Client, t: &TunnelTarget) -> Result<String, String> {
    let name_is = || vec![cond("name", "==", json!(TUNNEL_IFACE))];
    let r = transact(
        c,
        &[
            select(
                "Bridge",
                vec![],
                &["_uuid", "name", "datapath_id", "other_config", "ports"],
            ),
            select("Port", name_is(), &["_uuid", "interfaces"]),
            select("Interface", name_is(), &["_uuid", "type", "options"]),
        ],
    )
    .await?;
    let bridges = rows(&r, 0);
    let dpid_of = |b: &Map<String, Value>| {
        b.get("datapath_id")
            .and_then(opt_string)
            .or_else(|| {
                b.get("other_config")
                    .map(parse_map)
                    .and_then(|m| m.get("datapath-id").cloned())
            })
            .and_then(|d| parse_dpid(&d))
    };
    let bridge = bridges
        .iter()
        .find(|b| t.datapath_id.is_some() && dpid_of(b) == t.datapath_id)
        .or_else(|| {
            bridges
                .iter()
                .find(|b| b.get("name").and_then(Value::as_str) == Some(&t.name))
        })
        .ok_or_else(|| {
            let names: Vec<String> = bridges
                .iter()
                .map(|b| {
                    format!(
                        "{} ({:?})",
                        b.get("name").and_then(Value::as_str).unwrap_or("?"),
                        dpid_of(b).map(|d| format!("{d:#x}"))
                    )
                })
                .collect();
            format!(
                "no bridge with datapath id {:?} or named {:?} (bridges: {names:?})",
                t.datapath_id.map(|d| format!("{d:#x}")),
                t.name
            )
        })?;
    let br_uuid = bridge
        .get("_uuid")
        .map(uuids)
        .and_then(|u| u.into_iter().next())
        .ok_or("bridge row without _uuid")?;
    let br_name = bridge
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let br_ports = bridge.get("ports").map(uuids).unwrap_or_default();
    let want = desired_options(t.vtep);
    let port = rows(&r, 1).into_iter().next();
    let iface = rows(&r, 2).into_iter().next();
    let what = format!("{TUNNEL_IFACE} on {br_name}, local_ip {}", t.vtep);
    if let (Some(p), Some(i)) = (&port, &iface) {
        let p_uuid = p.get("_uuid").map(uuids).unwrap_or_default();
        let i_uuid = i.get("_uuid").map(uuids).unwrap_or_default();
        let p_ifaces = p.get("interfaces").map(uuids).unwrap_or_default();
        let attached = p_uuid.first().is_some_and(|u| br_ports.contains(u))
            && i_uuid.first().is_some_and(|u| p_ifaces.contains(u));
        if attached {
            let ty = i.get("type").and_then(Value::as_str).unwrap_or("");
            let opts = i.get("options").map(parse_map).unwrap_or_default();
            if ty == "vxlan" && opts == want {
                return Ok(what);
            }
            let mut row = Map::new();
            row.insert("type".into(), json!("vxlan"));
            row.insert("options".into(), map_json(&want));
            transact(
                c,
                &[Op::Update {
                    table: "Interface".into(),
                    conds: vec![uuid_cond(&i_uuid[0])],
                    row,
                }],
            )
            .await?;
            tracing::info!(bridge = %br_name, vtep = %t.vtep, "tunnel port updated");
            return Ok(what);
        }
    }
    if let Some(p) = &port {
        // A port of that name elsewhere or without its interface: detach it first
        // (unreferenced Port/Interface rows are garbage-collected).
        let stale = p.get("_uuid").map(uuids).unwrap_or_default();
        if let Some(u) = stale.first() {
            transact(
                c,
                &[Op::Mutate {
                    table: "Bridge".into(),
                    conds: vec![],
                    mutations: vec![json!(["ports", "delete", ["set", [["uuid", u]]]])],
                }],
            )
            .await?;
        }
    }
    let mut iface_row = Map::new();
    iface_row.insert("name".into(), json!(TUNNEL_IFACE));
    iface_row.insert("type".into(), json!("vxlan"));
    iface_row.insert("options".into(), map_json(&want));
    let mut port_row = Map::new();
    port_row.insert("name".into(), json!(TUNNEL_IFACE));
    port_row.insert("interfaces".into(), json!(["named-uuid", "plxiface"]));
    transact(
        c,
        &[
            Op::Insert {
                table: "Interface".into(),
                row: iface_row,
                uuid_name: Some("plxiface".into()),
            },
            Op::Insert {
                table: "Port".into(),
                row: port_row,
                uuid_name: Some("plxport".into()),
            },
            Op::Mutate {
                table: "Bridge".into(),
                conds: vec![uuid_cond(&br_uuid)],
                mutations: vec![json!([
                    "ports",
                    "insert",
                    ["set", [["named-uuid", "plxport"]]]
                ])],
            },
        ],
    )
    .await?;
    tracing::info!(bridge = %br_name, vtep = %t.vtep, "tunnel port created");
    Ok(what)
}

/// The tunnel targets of every chassis with an OVSDB endpoint and a valid VTEP.
pub fn targets(snap: &Snapshot) -> BTreeMap<String, TunnelTarget> {
    snap.chassis
        .iter()
        .filter_map(|(id, c)| {
            let e = c.endpoint.as_ref()?;
            Some((
                id.clone(),
                TunnelTarget {
                    ovsdb: e.ovsdb.clone()?,
                    name: c.name.clone(),
                    datapath_id: e.datapath_id.as_deref().and_then(parse_dpid),
                    vtep: c.vtep_ip.parse().ok()?,
                },
            ))
        })
        .collect()
}

/// Running tunnel sessions by chassis id.
pub(crate) type Tunnels = BTreeMap<String, (watch::Sender<TunnelTarget>, JoinHandle<()>)>;

/// Starts, retargets and stops the per-chassis OVSDB sessions to match the store.
pub(crate) fn manage<S: Store + Clone>(
    shared: &Arc<Shared<S>>,
    snap: &Snapshot,
    tunnels: &mut Tunnels,
) {
    let wanted = targets(snap);
    tunnels.retain(|id, (_, h)| {
        let keep = wanted.contains_key(id);
        if !keep {
            h.abort();
            shared.status.update(id, |s| s.tunnel = None);
        }
        keep
    });
    for (id, t) in wanted {
        if let Some((tx, _)) = tunnels.get(&id) {
            tx.send_if_modified(|old| {
                let changed = *old != t;
                *old = t.clone();
                changed
            });
            continue;
        }
        let (tx, rx) = watch::channel(t);
        let h = tokio::spawn(session(shared.clone(), id.clone(), rx));
        tunnels.insert(id, (tx, h));
    }
}

async fn session<S: Store + Clone>(
    shared: Arc<Shared<S>>,
    chassis: String,
    mut rx: watch::Receiver<TunnelTarget>,
) {
    let mut stop = shared.stop.clone();
    let set = |v: String| shared.status.update(&chassis, |s| s.tunnel = Some(v));
    while !*stop.borrow() {
        let t = rx.borrow_and_update().clone();
        let client = match tokio::time::timeout(TIMEOUT, Client::connect(&t.ovsdb)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                set(format!("error: connecting to {}: {e}", t.ovsdb));
                None
            }
            Err(_) => {
                set(format!("error: connecting to {}: timed out", t.ovsdb));
                None
            }
        };
        if let Some(c) = client {
            loop {
                let ok = match ensure(&c, &t).await {
                    Ok(s) => {
                        set(s);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(%chassis, ovsdb = %t.ovsdb, error = %e, "tunnel port");
                        set(format!("error: {e}"));
                        false
                    }
                };
                if !ok {
                    break; // reconnect (the error may be the connection's)
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return } else { break },
                    _ = tokio::time::sleep(RECHECK) => {}
                    _ = stop.changed() => return,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = rx.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_ovsdb::db::Database;
    use plexus_ovsdb::schema::DatabaseSchema;
    use plexus_ovsdb::server::{Server, ServerCore};

    async fn server() -> (Server, tempfile::TempDir, String) {
        let mut core = ServerCore::new();
        core.add_database(Database::new(DatabaseSchema::vswitch()));
        let srv = Server::new(core);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sock");
        srv.listen_unix(&path).await.unwrap();
        (srv, dir, format!("unix:{}", path.display()))
    }

    async fn add_bridge(c: &Client, name: &str, dpid: &str) {
        let mut row = Map::new();
        row.insert("name".into(), json!(name));
        row.insert(
            "other_config".into(),
            json!(["map", [["datapath-id", dpid]]]),
        );
        transact(
            c,
            &[
                Op::Insert {
                    table: "Bridge".into(),
                    row,
                    uuid_name: Some("br".into()),
                },
                Op::Mutate {
                    table: "Open_vSwitch".into(),
                    conds: vec![],
                    mutations: vec![json!([
                        "bridges",
                        "insert",
                        ["set", [["named-uuid", "br"]]]
                    ])],
                },
            ],
        )
        .await
        .unwrap();
    }

    async fn tunnel_rows(c: &Client) -> (Vec<Map<String, Value>>, Vec<Map<String, Value>>) {
        let r = transact(
            c,
            &[
                select("Bridge", vec![], &["name", "ports"]),
                select("Interface", vec![], &["_uuid", "name", "type", "options"]),
            ],
        )
        .await
        .unwrap();
        (rows(&r, 0), rows(&r, 1))
    }

    #[tokio::test]
    async fn creates_keeps_and_updates_the_port_on_the_right_bridge() {
        let (_srv, _dir, remote) = server().await;
        let c = Client::connect(&remote).await.unwrap();
        transact(&c, &[Op::insert("Open_vSwitch", [], None)])
            .await
            .unwrap();
        add_bridge(&c, "br-phy", "00000000000000aa").await;
        add_bridge(&c, "br0", "0000504c00000002").await;
        let mut t = TunnelTarget {
            ovsdb: remote.clone(),
            name: "c2".into(),
            datapath_id: Some(0x504c_0000_0002),
            vtep: "192.0.2.2".parse().unwrap(),
        };
        assert_eq!(
            ensure(&c, &t).await.unwrap(),
            "plx-vxlan on br0, local_ip 192.0.2.2"
        );
        let (bridges, ifaces) = tunnel_rows(&c).await;
        let br0 = bridges.iter().find(|b| b["name"] == "br0").unwrap();
        let phy = bridges.iter().find(|b| b["name"] == "br-phy").unwrap();
        assert_eq!(uuids(&br0["ports"]).len(), 1);
        assert!(uuids(&phy["ports"]).is_empty());
        assert_eq!(ifaces.len(), 1);
        assert_eq!(ifaces[0]["type"], "vxlan");
        assert_eq!(parse_map(&ifaces[0]["options"]), desired_options(t.vtep));
        let first = uuids(&ifaces[0]["_uuid"]);
        // Again: nothing changes (same rows).
        ensure(&c, &t).await.unwrap();
        let (_, ifaces) = tunnel_rows(&c).await;
        assert_eq!(uuids(&ifaces[0]["_uuid"]), first);
        // A new VTEP: the same interface row is updated in place.
        t.vtep = "192.0.2.9".parse().unwrap();
        ensure(&c, &t).await.unwrap();
        let (_, ifaces) = tunnel_rows(&c).await;
        assert_eq!(ifaces.len(), 1);
        assert_eq!(uuids(&ifaces[0]["_uuid"]), first);
        assert_eq!(ifaces[0]["options"][1][1], json!(["local_ip", "192.0.2.9"]));
        // No such bridge: a precise error naming what exists.
        t.datapath_id = Some(0x77);
        t.name = "nope".into();
        let e = ensure(&c, &t).await.unwrap_err();
        assert!(e.contains("no bridge") && e.contains("br-phy"), "{e}");
    }

    #[test]
    fn targets_need_an_ovsdb_endpoint_and_a_vtep() {
        use plexus_api::{ChassisSpec, SwitchEndpoint};
        let mut snap = Snapshot::default();
        let ch = |vtep: &str, ovsdb: Option<&str>| ChassisSpec {
            name: "c".into(),
            vtep_ip: vtep.into(),
            endpoint: Some(SwitchEndpoint {
                ovsdb: ovsdb.map(str::to_string),
                datapath_id: Some("0x10".into()),
                ..Default::default()
            }),
        };
        snap.chassis
            .insert("a".into(), ch("192.0.2.1", Some("unix:/x")));
        snap.chassis.insert("b".into(), ch("192.0.2.2", None));
        let t = targets(&snap);
        assert_eq!(t.len(), 1);
        assert_eq!(t["a"].datapath_id, Some(0x10));
        assert_eq!(t["a"].ovsdb, "unix:/x");
    }
}
