//! A typed async OVSDB client: request/response correlation, typed operations, and a
//! monitor-driven local [`Replica`] for optimistic-concurrency transactions (wait/assert).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::datum::{Atom, Datum};
use crate::db::Row;
use crate::error::OvsdbError;
use crate::rpc::{Frame, Framer, Message};
use crate::schema::DatabaseSchema;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// I/O failure or connection closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before a reply arrived.
    #[error("connection closed")]
    Closed,
    /// The server answered with an error (RPC level).
    #[error("rpc error: {0}")]
    Rpc(Value),
    /// A transaction operation failed (`index` is the op index; may be one past the last op).
    #[error("transaction failed at operation {index}: {error}")]
    Txn {
        /// Failing operation index.
        index: usize,
        /// The RFC error.
        error: OvsdbError,
    },
    /// Bad reply/schema.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Notification subscribers.
type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<(String, Value)>>>>;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>>;

/// A connection to an OVSDB server.
#[derive(Debug, Clone)]
pub struct Client {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next: Arc<AtomicU64>,
    notes: Subscribers,
    closed: Arc<AtomicBool>,
}

impl Client {
    /// Connect to `tcp:IP:PORT` or `unix:PATH`.
    pub async fn connect(remote: &str) -> Result<Client, ClientError> {
        if let Some(a) = remote.strip_prefix("tcp:") {
            let s = tokio::net::TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            Ok(Self::from_halves(r, w))
        } else if let Some(p) = remote.strip_prefix("unix:") {
            let s = tokio::net::UnixStream::connect(p).await?;
            let (r, w) = s.into_split();
            Ok(Self::from_halves(r, w))
        } else {
            Err(ClientError::Protocol(format!(
                "unsupported remote {remote}"
            )))
        }
    }

    /// Connect to `ssl:HOST:PORT` (also accepts `tcp:`/`unix:`, without TLS). The
    /// server is verified against the CA of `tls` (by host name or IP address), and our
    /// certificate is presented.
    pub async fn connect_tls(
        remote: &str,
        tls: Arc<plexus_pki::rustls::ClientConfig>,
    ) -> Result<Client, ClientError> {
        let Some(a) = remote.strip_prefix("ssl:") else {
            return Self::connect(remote).await;
        };
        let (host, _port) = a
            .rsplit_once(':')
            .ok_or_else(|| ClientError::Protocol(format!("{remote}: missing port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = plexus_pki::rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::Protocol(format!("{remote}: {e}")))?;
        let s = tokio::net::TcpStream::connect(a).await?;
        s.set_nodelay(true)?;
        let s = tokio_rustls::TlsConnector::from(tls)
            .connect(name, s)
            .await?;
        let (r, w) = tokio::io::split(s);
        Ok(Self::from_halves(r, w))
    }

    /// Run over any byte stream halves.
    pub fn from_halves<R, W>(mut r: R, mut w: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Pending = Arc::default();
        let notes: Subscribers = Arc::default();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
        });
        let closed = Arc::new(AtomicBool::new(false));
        let (p2, n2, tx2, c2) = (pending.clone(), notes.clone(), tx.clone(), closed.clone());
        tokio::spawn(async move {
            let mut framer = Framer::default();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for f in framer.feed(&buf[..n]) {
                    let Frame::Value(v) = f else { continue };
                    let Ok(m) = Message::from_value(v) else {
                        continue;
                    };
                    match m {
                        Message::Response { id, result } => complete(&p2, &id, Ok(result)),
                        Message::Error { id, error } => complete(&p2, &id, Err(error)),
                        Message::Request { id, method, params } if method == "echo" => {
                            let _ = tx2.send(Message::Response { id, result: params }.to_bytes());
                        }
                        Message::Request { id, .. } => {
                            let _ = tx2.send(
                                Message::Error {
                                    id,
                                    error: json!("unknown method"),
                                }
                                .to_bytes(),
                            );
                        }
                        Message::Notification { method, params } => {
                            lock(&n2).retain(|s| s.send((method.clone(), params.clone())).is_ok());
                        }
                    }
                }
            }
            // Fail every outstanding call.
            c2.store(true, Ordering::Release);
            lock(&p2).clear();
            lock(&n2).clear();
        });
        Client {
            out: tx,
            pending,
            next: Arc::new(AtomicU64::new(1)),
            notes,
            closed,
        }
    }

    /// True once the server closed the connection (or reading from it failed):
    /// every later call fails, so a cached client should be replaced.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.out.is_closed()
    }

    /// Subscribe to notifications (`update`, `update2`, `update3`, `locked`, `stolen`).
    pub fn notifications(&self) -> mpsc::UnboundedReceiver<(String, Value)> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.notes).push(tx);
        rx
    }

    /// A raw JSON-RPC call.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let m = Message::Request {
            id: json!(id),
            method: method.into(),
            params,
        };
        self.out
            .send(m.to_bytes())
            .map_err(|_| ClientError::Closed)?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClientError::Rpc(e)),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// `list_dbs`.
    pub async fn list_dbs(&self) -> Result<Vec<String>, ClientError> {
        let v = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `get_schema`.
    pub async fn get_schema(&self, db: &str) -> Result<DatabaseSchema, ClientError> {
        let v = self.call("get_schema", json!([db])).await?;
        DatabaseSchema::from_json(&v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `echo`.
    pub async fn echo(&self, v: Value) -> Result<Value, ClientError> {
        self.call("echo", v).await
    }

    /// `transact`: returns the per-operation results, or the first error.
    pub async fn transact(&self, db: &str, ops: &[Op]) -> Result<Vec<Value>, ClientError> {
        let mut p = vec![json!(db)];
        p.extend(ops.iter().map(Op::to_json));
        let r = self.call("transact", Value::Array(p)).await?;
        let arr = r
            .as_array()
            .ok_or_else(|| ClientError::Protocol("transact result is not an array".into()))?;
        for (i, x) in arr.iter().enumerate() {
            if let Some(e) = x.get("error").filter(|e| !e.is_null()) {
                let _ = e;
                return Err(ClientError::Txn {
                    index: i,
                    error: OvsdbError::from_json(x),
                });
            }
        }
        if arr.len() < ops.len() {
            return Err(ClientError::Protocol("short transact result".into()));
        }
        Ok(arr.clone())
    }

    /// `lock`; returns whether the lock is held now.
    pub async fn lock(&self, name: &str) -> Result<bool, ClientError> {
        Ok(self.call("lock", json!([name])).await?["locked"]
            .as_bool()
            .unwrap_or(false))
    }
    /// `steal`.
    pub async fn steal(&self, name: &str) -> Result<bool, ClientError> {
        Ok(self.call("steal", json!([name])).await?["locked"]
            .as_bool()
            .unwrap_or(false))
    }
    /// `unlock`.
    pub async fn unlock(&self, name: &str) -> Result<(), ClientError> {
        self.call("unlock", json!([name])).await.map(|_| ())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn complete(p: &Pending, id: &Value, r: Result<Value, Value>) {
    if let Some(id) = id.as_u64()
        && let Some(tx) = lock(p).remove(&id)
    {
        let _ = tx.send(r);
    }
}

/// A typed transaction operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// insert
    Insert {
        /// table
        table: String,
        /// column → JSON value
        row: Map<String, Value>,
        /// optional uuid-name
        uuid_name: Option<String>,
    },
    /// select
    Select {
        /// table
        table: String,
        /// conditions
        conds: Vec<Value>,
        /// columns (None = all)
        columns: Option<Vec<String>>,
    },
    /// update
    Update {
        /// table
        table: String,
        /// conditions
        conds: Vec<Value>,
        /// new values
        row: Map<String, Value>,
    },
    /// mutate
    Mutate {
        /// table
        table: String,
        /// conditions
        conds: Vec<Value>,
        /// `[column, mutator, value]`
        mutations: Vec<Value>,
    },
    /// delete
    Delete {
        /// table
        table: String,
        /// conditions
        conds: Vec<Value>,
    },
    /// wait
    Wait {
        /// table
        table: String,
        /// conditions
        conds: Vec<Value>,
        /// columns compared
        columns: Vec<String>,
        /// true: until "==", false: until "!="
        until_eq: bool,
        /// expected rows
        rows: Vec<Map<String, Value>>,
        /// milliseconds (0 = check once)
        timeout_ms: u64,
    },
    /// commit
    Commit {
        /// durable
        durable: bool,
    },
    /// abort
    Abort,
    /// comment
    Comment(String),
    /// assert
    Assert(String),
}

/// A `where` clause `[column, function, value]`.
pub fn cond(column: &str, function: &str, value: Value) -> Value {
    json!([column, function, value])
}

/// `["_uuid", "==", ["uuid", u]]`.
pub fn uuid_is(u: Uuid) -> Value {
    cond("_uuid", "==", json!(["uuid", u.to_string()]))
}

impl Op {
    /// Insert a row given as `(column, value)` pairs.
    pub fn insert(
        table: &str,
        row: impl IntoIterator<Item = (&'static str, Value)>,
        uuid_name: Option<&str>,
    ) -> Op {
        Op::Insert {
            table: table.into(),
            row: row.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            uuid_name: uuid_name.map(Into::into),
        }
    }

    /// Wait until the row `u` still has exactly `row`'s values in `columns` (optimistic concurrency).
    pub fn verify(table: &str, u: Uuid, row: &Row, columns: &[&str]) -> Op {
        let m: Map<String, Value> = columns
            .iter()
            .filter_map(|c| row.get(u, c).map(|d| (c.to_string(), d.to_json())))
            .collect();
        Op::Wait {
            table: table.into(),
            conds: vec![uuid_is(u)],
            columns: columns.iter().map(|c| c.to_string()).collect(),
            until_eq: true,
            rows: vec![m],
            timeout_ms: 0,
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Op::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut v = json!({"op": "insert", "table": table, "row": row});
                if let Some(n) = uuid_name {
                    v["uuid-name"] = json!(n);
                }
                v
            }
            Op::Select {
                table,
                conds,
                columns,
            } => {
                let mut v = json!({"op": "select", "table": table, "where": conds});
                if let Some(c) = columns {
                    v["columns"] = json!(c);
                }
                v
            }
            Op::Update { table, conds, row } => {
                json!({"op": "update", "table": table, "where": conds, "row": row})
            }
            Op::Mutate {
                table,
                conds,
                mutations,
            } => json!({"op": "mutate", "table": table, "where": conds, "mutations": mutations}),
            Op::Delete { table, conds } => json!({"op": "delete", "table": table, "where": conds}),
            Op::Wait {
                table,
                conds,
                columns,
                until_eq,
                rows,
                timeout_ms,
            } => json!({
                "op": "wait", "table": table, "where": conds, "columns": columns,
                "until": if *until_eq { "==" } else { "!=" }, "rows": rows, "timeout": timeout_ms
            }),
            Op::Commit { durable } => json!({"op": "commit", "durable": durable}),
            Op::Abort => json!({"op": "abort"}),
            Op::Comment(c) => json!({"op": "comment", "comment": c}),
            Op::Assert(l) => json!({"op": "assert", "lock": l}),
        }
    }
}

/// Replicated tables: table → row UUID → row.
pub type ReplicaTables = BTreeMap<String, BTreeMap<Uuid, Row>>;

/// A local replica of a database kept current by a `monitor_cond` (update2) subscription.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The client used.
    pub client: Client,
    /// Database name.
    pub db: String,
    schema: Arc<DatabaseSchema>,
    data: Arc<RwLock<ReplicaTables>>,
    generation: watch::Receiver<u64>,
}

fn apply_update2(
    schema: &DatabaseSchema,
    data: &mut ReplicaTables,
    upd: &Value,
) -> Result<(), OvsdbError> {
    let Some(tables) = upd.as_object() else {
        return Ok(());
    };
    for (t, rows) in tables {
        let Some(ts) = schema.tables.get(t) else {
            continue;
        };
        let table = data.entry(t.clone()).or_default();
        for (u, ru) in rows.as_object().into_iter().flatten() {
            let u = Uuid::parse_str(u).map_err(|e| OvsdbError::syntax(e.to_string()))?;
            let Some(ru) = ru.as_object() else { continue };
            if let Some(r) = ru.get("initial").or_else(|| ru.get("insert")) {
                table.insert(u, Row::from_json_full(ts, r)?);
            } else if let Some(m) = ru.get("modify") {
                let row = table.entry(u).or_insert_with(|| Row::default_for(ts));
                for (c, v) in m.as_object().into_iter().flatten() {
                    let Some(cs) = ts.columns.get(c) else {
                        continue;
                    };
                    let ty = cs.type_.unbounded();
                    let d = Datum::from_json(v, &ty, &mut |_| None)?;
                    let cur = row
                        .cols
                        .entry(c.clone())
                        .or_insert_with(|| Datum::default_for(&cs.type_));
                    if cs.type_.is_scalar() {
                        *cur = d
                    } else {
                        cur.apply_diff(&d)
                    }
                }
            } else if ru.contains_key("delete") {
                table.remove(&u);
            }
        }
    }
    Ok(())
}

impl Replica {
    /// Fetch the schema and start monitoring every table (all columns) of `db`.
    pub async fn start(client: Client, db: &str) -> Result<Replica, ClientError> {
        let schema = Arc::new(client.get_schema(db).await?);
        let mut notes = client.notifications();
        let mon_id = format!("replica-{}", Uuid::new_v4());
        let reqs: Map<String, Value> = schema
            .tables
            .keys()
            .map(|t| (t.clone(), json!([{}])))
            .collect();
        let initial = client
            .call("monitor_cond", json!([db, mon_id, reqs]))
            .await?;
        let data: Arc<RwLock<ReplicaTables>> = Arc::default();
        apply_update2(
            &schema,
            &mut data.write().unwrap_or_else(|e| e.into_inner()),
            &initial,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let (d2, s2, id2) = (data.clone(), schema.clone(), json!(mon_id));
        tokio::spawn(async move {
            let mut g = 0;
            while let Some((method, params)) = notes.recv().await {
                if method != "update2" || params.get(0) != Some(&id2) {
                    continue;
                }
                if let Some(u) = params.get(1) {
                    let _ =
                        apply_update2(&s2, &mut d2.write().unwrap_or_else(|e| e.into_inner()), u);
                }
                g += 1;
                if gen_tx.send(g).is_err() {
                    break;
                }
            }
        });
        Ok(Replica {
            client,
            db: db.into(),
            schema,
            data,
            generation: gen_rx,
        })
    }

    /// The schema.
    pub fn schema(&self) -> &DatabaseSchema {
        &self.schema
    }

    /// Read the replica.
    pub fn read<T>(&self, f: impl FnOnce(&ReplicaTables) -> T) -> T {
        f(&self.data.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rows of `table` whose `column` is the string `value`.
    pub fn find(&self, table: &str, column: &str, value: &str) -> Vec<(Uuid, Row)> {
        self.read(|d| {
            d.get(table)
                .into_iter()
                .flatten()
                .filter(|(_, r)| {
                    r.cols.get(column).and_then(Datum::as_scalar)
                        == Some(&Atom::String(value.into()))
                })
                .map(|(u, r)| (*u, r.clone()))
                .collect()
        })
    }

    /// Wait (up to `timeout`) until `pred` holds on the replica.
    pub async fn wait_for(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&ReplicaTables) -> bool,
    ) -> bool {
        let mut g = self.generation.clone();
        let fut = async {
            loop {
                if self.read(&pred) {
                    return true;
                }
                if g.changed().await.is_err() {
                    return self.read(&pred);
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.unwrap_or(false)
    }

    /// Transact on the replica's database.
    pub async fn transact(&self, ops: &[Op]) -> Result<Vec<Value>, ClientError> {
        self.client.transact(&self.db, ops).await
    }
}
