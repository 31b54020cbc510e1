//! The local switch's OVSDB (Open vSwitch schema) through the
//! `plexus-ovsdb` JSON-RPC client: one connection per plugin run, one
//! transaction per change (no `ovs-vsctl` exec).
//!
//! ADD is a single transaction: it checks that the bridge exists and that
//! no Interface of that name exists, inserts Interface (with our
//! external_ids) and Port, and adds the Port to `Bridge.ports`. By default the
//! plugin does not wait for ovs-vswitchd to apply it (`cur_cfg`): the plugged
//! port becomes live on vswitchd's next run-loop iteration, before any
//! container process of the pod can send, and the controller's flows for it
//! are keyed on the Interface's `ofport`/iface-id, not on this wait, so
//! waiting would only add vswitchd's reconfiguration time to every ADD.
//! `"ovs_wait": true` restores ovs-vsctl's behaviour (bump `next_cfg`, wait
//! for `cur_cfg` to reach it).

use crate::error::*;
use plexus_ovsdb::client::{Client, ClientError, Op, cond};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// External-id keys this plugin sets on the Interface it plugs.
pub const KEY_IFACE_ID: &str = "iface-id";
pub const KEY_NETWORK: &str = "plexus-cni-network";
pub const KEY_CONTAINER: &str = "plexus-cni-container";
pub const KEY_IFNAME: &str = "plexus-cni-ifname";

const DB: &str = "Open_vSwitch";
/// ovs-vsctl's default database socket.
pub const DEFAULT_DB: &str = "unix:/var/run/openvswitch/db.sock";
const TIMEOUT: Duration = Duration::from_secs(10);

/// An Interface row: name and external_ids.
#[derive(Debug, Clone)]
pub struct IfaceRow {
    pub name: String,
    pub external_ids: BTreeMap<String, String>,
}

/// A connection to the switch's OVSDB: a one-shot plugin run drives its own
/// with a private single-thread runtime; the daemon ([`crate::daemon`])
/// shares one connection, driven by its runtime, between all its calls
/// (JSON-RPC ids keep concurrent transactions apart).
#[derive(Debug)]
pub struct Ovs {
    rt: Rt,
    client: Client,
    wait: bool,
}

#[derive(Debug)]
enum Rt {
    Own(tokio::runtime::Runtime),
    Shared(tokio::runtime::Handle),
}

impl Rt {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Rt::Own(rt) => rt.block_on(f),
            Rt::Shared(h) => h.block_on(f),
        }
    }
}

/// Connects to `db` within [`TIMEOUT`] (on the caller's runtime).
pub(crate) async fn connect_db(db: &str) -> CniResult<Client> {
    tokio::time::timeout(TIMEOUT, connect_retrying(db))
        .await
        .map_err(|_| sw_err(db, "connect timed out"))?
        .map_err(|e| sw_err(db, e))
}

fn sw_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        SWITCH_FAILURE,
        "switch operation failed",
        format!("{what}: {e}"),
    )
}

fn map(ids: &[(&str, &str)]) -> Value {
    json!([
        "map",
        ids.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()
    ])
}

fn row(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn eq(col: &str, v: &str) -> Value {
    cond(col, "==", json!(v))
}

/// Connects; while the server's listen backlog is full (a unix-socket
/// connect fails at once with EAGAIN when ovsdb-server has not yet accepted
/// the connections of many concurrent plugin runs), retries with a backoff
/// of 1 ms doubling up to 32 ms. The caller bounds the whole by `TIMEOUT`.
async fn connect_retrying(db: &str) -> Result<Client, ClientError> {
    let mut backoff = Duration::from_millis(1);
    loop {
        match Client::connect(db).await {
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(32));
            }
            r => return r,
        }
    }
}

impl Ovs {
    /// Connects to `db` (`unix:PATH` / `tcp:IP:PORT`; default ovs-vsctl's).
    pub fn connect(db: Option<&str>, wait: bool) -> CniResult<Self> {
        let db = db.unwrap_or(DEFAULT_DB);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                CniError::new(
                    IO_FAILURE,
                    "starting the OVSDB client failed",
                    e.to_string(),
                )
            })?;
        let client = rt.block_on(connect_db(db))?;
        Ok(Self {
            rt: Rt::Own(rt),
            client,
            wait,
        })
    }

    /// A shared connection, driven by the runtime behind `rt` (whose worker
    /// threads must not be the caller's).
    pub(crate) fn shared(rt: tokio::runtime::Handle, client: Client, wait: bool) -> Self {
        Self {
            rt: Rt::Shared(rt),
            client,
            wait,
        }
    }

    fn transact(&self, ops: &[Op]) -> Result<Vec<Value>, ClientError> {
        self.rt.block_on(async {
            tokio::time::timeout(TIMEOUT, self.client.transact(DB, ops))
                .await
                .unwrap_or_else(|_| Err(ClientError::Protocol("transaction timed out".into())))
        })
    }

    /// Plugs `iface` into `bridge` with our external_ids; a leftover row of
    /// the same name (a crashed ADD) is replaced.
    pub fn add_port(&self, bridge: &str, iface: &str, ids: &[(&str, &str)]) -> CniResult<()> {
        let mut ops = vec![
            // The bridge exists ...
            Op::Wait {
                table: "Bridge".into(),
                conds: vec![eq("name", bridge)],
                columns: vec!["name".into()],
                until_eq: false,
                rows: vec![],
                timeout_ms: 0,
            },
            // ... and no Interface of this name does.
            Op::Wait {
                table: "Interface".into(),
                conds: vec![eq("name", iface)],
                columns: vec!["name".into()],
                until_eq: true,
                rows: vec![],
                timeout_ms: 0,
            },
            Op::insert(
                "Interface",
                [("name", json!(iface)), ("external_ids", map(ids))],
                Some("iface"),
            ),
            Op::insert(
                "Port",
                [
                    ("name", json!(iface)),
                    ("interfaces", json!(["named-uuid", "iface"])),
                ],
                Some("port"),
            ),
            Op::Mutate {
                table: "Bridge".into(),
                conds: vec![eq("name", bridge)],
                mutations: vec![json!(["ports", "insert", ["named-uuid", "port"]])],
            },
        ];
        if self.wait {
            ops.extend(next_cfg_ops());
        }
        let r = match self.transact(&ops) {
            Err(ClientError::Txn { index: 0, .. }) => {
                return Err(sw_err(bridge, "bridge does not exist"));
            }
            Err(ClientError::Txn { index: 1, .. }) => {
                self.take_port(iface)?;
                self.transact(&ops)
            }
            r => r,
        }
        .map_err(|e| sw_err(&format!("adding port {iface} to {bridge}"), e))?;
        if self.wait {
            self.wait_cur_cfg(&r)?;
        }
        Ok(())
    }

    /// Reads the Interface row (if any) and deletes its Port.
    pub fn take_port(&self, iface: &str) -> CniResult<Option<IfaceRow>> {
        let what = format!("deleting port {iface}");
        let r = self
            .transact(&[
                Op::Select {
                    table: "Interface".into(),
                    conds: vec![eq("name", iface)],
                    columns: Some(vec!["name".into(), "external_ids".into()]),
                },
                Op::Select {
                    table: "Port".into(),
                    conds: vec![eq("name", iface)],
                    columns: Some(vec!["_uuid".into()]),
                },
            ])
            .map_err(|e| sw_err(&what, e))?;
        let found = parse_rows(&r[0]).into_iter().next();
        let ports: Vec<String> = r[1]["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["_uuid"][1].as_str().map(str::to_owned))
            .collect();
        for u in ports {
            let uuid = json!(["uuid", u]);
            self.transact(&[
                Op::Mutate {
                    table: "Bridge".into(),
                    conds: vec![cond("ports", "includes", uuid.clone())],
                    mutations: vec![json!(["ports", "delete", uuid.clone()])],
                },
                Op::Delete {
                    table: "Port".into(),
                    conds: vec![cond("_uuid", "==", uuid)],
                },
            ])
            .map_err(|e| sw_err(&what, e))?;
        }
        Ok(found)
    }

    /// The Interface row named `iface`, if any.
    pub fn interface(&self, iface: &str) -> CniResult<Option<IfaceRow>> {
        let r = self
            .transact(&[Op::Select {
                table: "Interface".into(),
                conds: vec![eq("name", iface)],
                columns: Some(vec!["name".into(), "external_ids".into()]),
            }])
            .map_err(|e| sw_err(&format!("reading interface {iface}"), e))?;
        Ok(parse_rows(&r[0]).into_iter().next())
    }

    /// Interfaces carrying `external_ids:KEY=VALUE`.
    pub fn find(&self, key: &str, value: &str) -> CniResult<Vec<IfaceRow>> {
        let r = self
            .transact(&[Op::Select {
                table: "Interface".into(),
                conds: vec![cond("external_ids", "includes", map(&[(key, value)]))],
                columns: Some(vec!["name".into(), "external_ids".into()]),
            }])
            .map_err(|e| sw_err("listing interfaces", e))?;
        Ok(parse_rows(&r[0]))
    }

    pub fn bridge_exists(&self, bridge: &str) -> CniResult<bool> {
        let r = self
            .transact(&[Op::Select {
                table: "Bridge".into(),
                conds: vec![eq("name", bridge)],
                columns: Some(vec!["name".into()]),
            }])
            .map_err(|e| sw_err("listing bridges", e))?;
        Ok(r[0]["rows"].as_array().is_some_and(|a| !a.is_empty()))
    }

    /// After a transaction ending in [`next_cfg_ops`]: waits until
    /// ovs-vswitchd reports `cur_cfg >= next_cfg`.
    fn wait_cur_cfg(&self, results: &[Value]) -> CniResult<()> {
        let want = results
            .last()
            .and_then(|r| r["rows"][0]["next_cfg"].as_i64())
            .ok_or_else(|| sw_err("waiting for ovs-vswitchd", "no next_cfg"))?;
        let mut notes = self.client.notifications();
        // Unique per wait: calls sharing a daemon's connection wait at once.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!(
            "cur_cfg-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let cur = |v: &Value| -> Option<i64> {
            v["Open_vSwitch"]
                .as_object()?
                .values()
                .find_map(|r| r["new"]["cur_cfg"].as_i64())
        };
        self.rt
            .block_on(async {
                tokio::time::timeout(TIMEOUT, async {
                    let init = self
                        .client
                        .call(
                            "monitor",
                            json!([DB, id, {"Open_vSwitch": {"columns": ["cur_cfg"]}}]),
                        )
                        .await?;
                    let done = async {
                        if cur(&init).is_some_and(|c| c >= want) {
                            return Ok(());
                        }
                        while let Some((m, p)) = notes.recv().await {
                            if m == "update"
                                && p[0].as_str() == Some(&id)
                                && cur(&p[1]).is_some_and(|c| c >= want)
                            {
                                return Ok(());
                            }
                        }
                        Err(ClientError::Closed)
                    }
                    .await;
                    // A shared connection outlives this wait.
                    let _ = self.client.call("monitor_cancel", json!([id])).await;
                    done
                })
                .await
                .unwrap_or_else(|_| Err(ClientError::Protocol("timed out".into())))
            })
            .map_err(|e| sw_err("waiting for ovs-vswitchd (cur_cfg)", e))
    }
}

/// `next_cfg += 1` and read it back (ovs-vsctl's wait protocol).
fn next_cfg_ops() -> [Op; 2] {
    [
        Op::Mutate {
            table: "Open_vSwitch".into(),
            conds: vec![],
            mutations: vec![json!(["next_cfg", "+=", 1])],
        },
        Op::Select {
            table: "Open_vSwitch".into(),
            conds: vec![],
            columns: Some(vec!["next_cfg".into()]),
        },
    ]
}

/// Rows of a select result with columns name, external_ids.
fn parse_rows(r: &Value) -> Vec<IfaceRow> {
    r["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let x = row(x.clone());
            let name = x
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut external_ids = BTreeMap::new();
            if let Some(kvs) = x.get("external_ids").and_then(|m| m[1].as_array()) {
                for kv in kvs {
                    if let (Some(k), Some(v)) = (kv[0].as_str(), kv[1].as_str()) {
                        external_ids.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
            IfaceRow { name, external_ids }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn parses_select_rows() {
        let r = json!({"rows": [{"name": "plx1",
            "external_ids": ["map", [["iface-id", "p-1"], ["plexus-cni-network", "n"]]]}]});
        let rows = super::parse_rows(&r);
        assert_eq!(rows[0].name, "plx1");
        assert_eq!(rows[0].external_ids["iface-id"], "p-1");
        assert!(super::parse_rows(&json!({"rows": []})).is_empty());
    }
}
