//! Monitors (RFC 7047 §4.1.5, monitor_cond/update2 and monitor_cond_since/update3): parsing
//! monitor requests and turning committed [`Changes`] into table-updates.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::db::{Changes, Condition, Database, Row};
use crate::error::{OvsdbError, Result};
use crate::schema::TableSchema;

/// Notification flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorVersion {
    /// `monitor` → `update` (RFC 7047).
    V1,
    /// `monitor_cond` → `update2`.
    V2,
    /// `monitor_cond_since` → `update3`.
    V3,
}

/// What a monitor reports for one table.
#[derive(Debug, Clone)]
pub struct TableMonitor {
    /// Monitored columns.
    pub columns: Vec<String>,
    /// initial/insert/delete/modify flags.
    pub select: [bool; 4],
    /// Row filter (monitor_cond).
    pub cond: Condition,
}

/// A registered monitor.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// Database name.
    pub db: String,
    /// The client's monitor id (any JSON).
    pub id: Value,
    /// Flavour.
    pub version: MonitorVersion,
    /// Per-table settings.
    pub tables: BTreeMap<String, TableMonitor>,
}

fn parse_select(v: Option<&Value>) -> Result<[bool; 4]> {
    let mut s = [true; 4];
    if let Some(v) = v {
        let o = v
            .as_object()
            .ok_or_else(|| OvsdbError::syntax("select must be an object").with_syntax(v))?;
        for (i, k) in ["initial", "insert", "delete", "modify"].iter().enumerate() {
            if let Some(b) = o.get(*k) {
                s[i] = b
                    .as_bool()
                    .ok_or_else(|| OvsdbError::syntax(format!("{k} must be a boolean")))?;
            }
        }
    }
    Ok(s)
}

impl Monitor {
    /// Parse `<monitor-requests>` (an object table → request or array of requests).
    pub fn parse(
        db: &Database,
        id: Value,
        version: MonitorVersion,
        reqs: &Value,
    ) -> Result<Monitor> {
        let o = reqs.as_object().ok_or_else(|| {
            OvsdbError::syntax("monitor requests must be an object").with_syntax(reqs)
        })?;
        let mut tables = BTreeMap::new();
        for (t, r) in o {
            let ts = db
                .schema()
                .tables
                .get(t)
                .ok_or_else(|| OvsdbError::syntax(format!("no table named {t}")))?;
            tables.insert(t.clone(), Self::parse_table(ts, r)?);
        }
        Ok(Monitor {
            db: db.schema().name.clone(),
            id,
            version,
            tables,
        })
    }

    /// Parse one table's request(s).
    pub fn parse_table(ts: &TableSchema, r: &Value) -> Result<TableMonitor> {
        let reqs: Vec<&Value> = match r {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut columns: Vec<String> = Vec::new();
        let mut select = [false; 4];
        let mut cond = Condition::Const(true);
        for (n, q) in reqs.iter().enumerate() {
            let q = q
                .as_object()
                .ok_or_else(|| OvsdbError::syntax("monitor request must be an object"))?;
            match q.get("columns") {
                Some(Value::Array(cs)) if !cs.is_empty() => {
                    for c in cs {
                        let c = c
                            .as_str()
                            .filter(|c| ts.columns.contains_key(*c))
                            .ok_or_else(|| {
                                OvsdbError::syntax(format!("{} is not a valid column name", c))
                                    .with_syntax(c)
                            })?;
                        if !columns.iter().any(|x| x == c) {
                            columns.push(c.to_string());
                        }
                    }
                }
                Some(Value::Array(_)) | None => columns.extend(
                    ts.columns
                        .keys()
                        .filter(|c| !columns.contains(c))
                        .cloned()
                        .collect::<Vec<_>>(),
                ),
                Some(v) => {
                    return Err(OvsdbError::syntax("columns must be an array").with_syntax(v));
                }
            }
            let s = parse_select(q.get("select"))?;
            for i in 0..4 {
                select[i] |= s[i];
            }
            if let Some(w) = q.get("where")
                && n == 0
            {
                cond = Condition::parse(ts, w)?;
            }
        }
        Ok(TableMonitor {
            columns,
            select,
            cond,
        })
    }

    /// The initial contents (`initial` rows) in this monitor's format.
    pub fn initial(&self, db: &Database) -> Value {
        let mut out = Map::new();
        for (t, tm) in &self.tables {
            if !tm.select[0] {
                continue;
            }
            let ts = &db.schema().tables[t];
            let mut rows = Map::new();
            for (u, r) in db.rows(t).into_iter().flatten() {
                if tm.cond.eval(*u, r) {
                    rows.insert(u.to_string(), self.row_initial(ts, tm, r));
                }
            }
            if !rows.is_empty() {
                out.insert(t.clone(), Value::Object(rows));
            }
        }
        Value::Object(out)
    }

    fn row_initial(&self, ts: &TableSchema, tm: &TableMonitor, r: &Row) -> Value {
        match self.version {
            MonitorVersion::V1 => json!({"new": full_row(tm, r)}),
            _ => json!({"initial": r.to_json_nondefault(ts, Some(&tm.columns))}),
        }
    }

    /// Table-updates for committed changes (None if nothing is visible to this monitor).
    pub fn updates(&self, db: &Database, changes: &Changes) -> Option<Value> {
        let mut out = Map::new();
        for (t, rows) in changes {
            let Some(tm) = self.tables.get(t) else {
                continue;
            };
            let ts = &db.schema().tables[t];
            let mut tu = Map::new();
            for (u, ch) in rows {
                let vo = ch.old.as_ref().filter(|r| tm.cond.eval(*u, r));
                let vn = ch.new.as_ref().filter(|r| tm.cond.eval(*u, r));
                let upd = match (vo, vn) {
                    (None, Some(n)) if tm.select[1] => Some(match self.version {
                        MonitorVersion::V1 => json!({"new": full_row(tm, n)}),
                        _ => json!({"insert": n.to_json_nondefault(ts, Some(&tm.columns))}),
                    }),
                    (Some(o), None) if tm.select[2] => Some(match self.version {
                        MonitorVersion::V1 => json!({"old": full_row(tm, o)}),
                        _ => json!({"delete": null}),
                    }),
                    (Some(o), Some(n)) if tm.select[3] => {
                        let changed: Vec<&String> = tm
                            .columns
                            .iter()
                            .filter(|c| o.cols.get(*c) != n.cols.get(*c))
                            .collect();
                        if changed.is_empty() {
                            None
                        } else {
                            Some(match self.version {
                                MonitorVersion::V1 => {
                                    let old: Map<String, Value> = changed
                                        .iter()
                                        .map(|c| ((*c).clone(), o.cols[*c].to_json()))
                                        .collect();
                                    json!({"old": old, "new": full_row(tm, n)})
                                }
                                _ => {
                                    let m: Map<String, Value> = changed
                                        .iter()
                                        .map(|c| {
                                            let ty = &ts.columns[*c].type_;
                                            let v = if ty.is_scalar() {
                                                n.cols[*c].to_json()
                                            } else {
                                                n.cols[*c].diff_from(&o.cols[*c]).to_json()
                                            };
                                            ((*c).clone(), v)
                                        })
                                        .collect();
                                    json!({"modify": m})
                                }
                            })
                        }
                    }
                    _ => None,
                };
                if let Some(x) = upd {
                    tu.insert(u.to_string(), x);
                }
            }
            if !tu.is_empty() {
                out.insert(t.clone(), Value::Object(tu));
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }

    /// The notification carrying `updates`.
    pub fn notification(&self, updates: Value, last_txn: Uuid) -> crate::rpc::Message {
        let (method, params) = match self.version {
            MonitorVersion::V1 => ("update", json!([self.id, updates])),
            MonitorVersion::V2 => ("update2", json!([self.id, updates])),
            MonitorVersion::V3 => ("update3", json!([self.id, last_txn.to_string(), updates])),
        };
        crate::rpc::Message::Notification {
            method: method.into(),
            params,
        }
    }
}

fn full_row(tm: &TableMonitor, r: &Row) -> Value {
    Value::Object(
        tm.columns
            .iter()
            .filter_map(|c| r.cols.get(c).map(|d| (c.clone(), d.to_json())))
            .collect(),
    )
}
