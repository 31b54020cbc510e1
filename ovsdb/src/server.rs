//! The OVSDB server: a sans-IO [`ServerCore`] (sessions, transactions, monitors, locks, the
//! `_Server` database) and a tokio [`Server`] that serves it over TCP and unix sockets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::db::{Changes, Database, RowChange, TxnOutcome};
use crate::error::OvsdbError;
use crate::monitor::{Monitor, MonitorVersion};
use crate::rpc::{Frame, Framer, Message};
use crate::schema::DatabaseSchema;
use crate::storage::Storage;

/// Identifies a client session.
pub type SessionId = u64;

/// A message to send to a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Destination.
    pub session: SessionId,
    /// Message.
    pub msg: Message,
}

#[derive(Debug)]
struct DbEntry {
    db: Database,
    storage: Option<Storage>,
    last_txn: Uuid,
}

#[derive(Debug, Default)]
struct Session {
    monitors: Vec<(String, Monitor)>,
    locks: HashSet<String>,
}

#[derive(Debug)]
struct Pending {
    session: SessionId,
    id: Value,
    db: String,
    ops: Vec<Value>,
    deadline: Instant,
}

/// Sans-IO server state: feed it messages per session, get messages to send back.
#[derive(Debug)]
pub struct ServerCore {
    dbs: BTreeMap<String, DbEntry>,
    sessions: HashMap<SessionId, Session>,
    locks: HashMap<String, VecDeque<SessionId>>,
    pending: Vec<Pending>,
    generation: u64,
}

impl Default for ServerCore {
    fn default() -> Self {
        Self::new()
    }
}

fn params_array(p: &Value) -> &[Value] {
    p.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn server_schema_row(name: &str, schema: &DatabaseSchema) -> Value {
    json!({"name": name, "model": "standalone", "connected": true, "leader": true, "schema": schema.json.to_string()})
}

impl ServerCore {
    /// A server with only the `_Server` database.
    pub fn new() -> Self {
        let mut core = ServerCore {
            dbs: BTreeMap::new(),
            sessions: HashMap::new(),
            locks: HashMap::new(),
            pending: Vec::new(),
            generation: 0,
        };
        core.dbs.insert(
            "_Server".into(),
            DbEntry {
                db: Database::new(DatabaseSchema::server()),
                storage: None,
                last_txn: Uuid::nil(),
            },
        );
        core
    }

    /// Serve an in-memory database.
    pub fn add_database(&mut self, db: Database) {
        self.add_entry(db, None);
    }

    /// Serve a durable database stored at `path` (created with `schema` if missing).
    pub fn add_durable_database(
        &mut self,
        path: &Path,
        schema: &DatabaseSchema,
    ) -> Result<(), crate::storage::StorageError> {
        let (st, db) = Storage::open_or_create(path, schema)?;
        self.add_entry(db, Some(st));
        Ok(())
    }

    fn add_entry(&mut self, db: Database, storage: Option<Storage>) {
        let name = db.schema().name.clone();
        let row = server_schema_row(&name, db.schema());
        self.dbs.insert(
            name,
            DbEntry {
                db,
                storage,
                last_txn: Uuid::nil(),
            },
        );
        let _ = self.transact_local(
            "_Server",
            &[json!({"op": "insert", "table": "Database", "row": row})],
        );
    }

    /// Counts committed (non-empty) transactions in any database.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A database by name.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.dbs.get(name).map(|e| &e.db)
    }

    /// A new session connected.
    pub fn connect(&mut self, s: SessionId) {
        self.sessions.insert(s, Session::default());
    }

    /// A session went away: drop its monitors, release its locks.
    pub fn disconnect(&mut self, s: SessionId) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if let Some(sess) = self.sessions.remove(&s) {
            for l in sess.locks {
                self.release(s, &l, &mut out);
            }
        }
        self.pending.retain(|p| p.session != s);
        out
    }

    /// Report a framing error (malformed JSON etc.) to the session; the session continues.
    pub fn frame_error(&mut self, s: SessionId, e: &OvsdbError) -> Vec<Outgoing> {
        vec![Outgoing {
            session: s,
            msg: Message::error(Value::Null, e),
        }]
    }

    /// Handle raw JSON from a session (message parse errors become error responses).
    pub fn handle_value(&mut self, s: SessionId, v: Value) -> Vec<Outgoing> {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        match Message::from_value(v) {
            Ok(m) => self.handle(s, m),
            Err(e) => vec![Outgoing {
                session: s,
                msg: Message::error(id, &e),
            }],
        }
    }

    /// Handle one message from a session.
    pub fn handle(&mut self, s: SessionId, m: Message) -> Vec<Outgoing> {
        self.sessions.entry(s).or_default();
        let Message::Request { id, method, params } = m else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let reply = self.request(s, &id, &method, &params, &mut out);
        match reply {
            Ok(Some(r)) => out.push(Outgoing {
                session: s,
                msg: Message::Response { id, result: r },
            }),
            Ok(None) => {}
            Err(e) => out.push(Outgoing {
                session: s,
                msg: Message::Error { id, error: e },
            }),
        }
        out
    }

    fn request(
        &mut self,
        s: SessionId,
        id: &Value,
        method: &str,
        params: &Value,
        out: &mut Vec<Outgoing>,
    ) -> Result<Option<Value>, Value> {
        let p = params_array(params);
        let err = |e: OvsdbError| e.to_json();
        let db_name = |what: &str| -> Result<String, Value> {
            p.first()
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    OvsdbError::syntax(format!("{what} request params must begin with <db-name>"))
                        .with_syntax(params)
                        .to_json()
                })
        };
        let known = |this: &Self, name: &str, what: &str| -> Result<(), Value> {
            if this.dbs.contains_key(name) {
                Ok(())
            } else {
                Err(OvsdbError::new(
                    "unknown database",
                    format!("{what} request specifies unknown database {name}"),
                )
                .with_syntax(params)
                .to_json())
            }
        };
        match method {
            "echo" => Ok(Some(params.clone())),
            "list_dbs" => Ok(Some(json!(self.dbs.keys().collect::<Vec<_>>()))),
            "get_schema" => {
                let n = db_name("get_schema")?;
                known(self, &n, "get_schema")?;
                Ok(Some(self.dbs[&n].db.schema().json.clone()))
            }
            "transact" => {
                let n = db_name("transact")?;
                known(self, &n, "transact")?;
                let ops = p[1..].to_vec();
                Ok(self.run_transact(s, id.clone(), &n, ops, None, out))
            }
            "monitor" | "monitor_cond" | "monitor_cond_since" => {
                let version = match method {
                    "monitor" => MonitorVersion::V1,
                    "monitor_cond" => MonitorVersion::V2,
                    _ => MonitorVersion::V3,
                };
                let n = db_name(method)?;
                known(self, &n, method)?;
                let mon_id = p.get(1).cloned().unwrap_or(Value::Null);
                let reqs = p.get(2).ok_or_else(|| {
                    err(OvsdbError::syntax("monitor requires <monitor-requests>"))
                })?;
                let key = mon_id.to_string();
                let sess = self.sessions.entry(s).or_default();
                if sess.monitors.iter().any(|(k, _)| *k == key) {
                    return Err(err(
                        OvsdbError::syntax("duplicate monitor ID").with_syntax(&mon_id)
                    ));
                }
                let entry = &self.dbs[&n];
                let mon = Monitor::parse(&entry.db, mon_id, version, reqs).map_err(err)?;
                let initial = mon.initial(&entry.db);
                let last = entry.last_txn;
                self.sessions
                    .entry(s)
                    .or_default()
                    .monitors
                    .push((key, mon));
                Ok(Some(match version {
                    MonitorVersion::V3 => json!([false, last.to_string(), initial]),
                    _ => initial,
                }))
            }
            "monitor_cond_change" => {
                let old = p.first().map(Value::to_string).unwrap_or_default();
                let new_id = p.get(1).cloned().unwrap_or(Value::Null);
                let reqs = p.get(2).and_then(Value::as_object).ok_or_else(|| {
                    err(OvsdbError::syntax("monitor_cond_change requires requests"))
                })?;
                let sess = self.sessions.entry(s).or_default();
                let Some(pos) = sess.monitors.iter().position(|(k, _)| *k == old) else {
                    return Err(err(OvsdbError::new(
                        "unknown monitor",
                        "no monitor with that id",
                    )));
                };
                // Parse every new condition first: a bad one is answered with the error
                // and leaves the monitor (and its old conditions) in place.
                let db = &self.dbs[&sess.monitors[pos].1.db].db;
                let mut conds = Vec::new();
                for (t, r) in reqs {
                    if !sess.monitors[pos].1.tables.contains_key(t) {
                        continue;
                    }
                    let ts = &db.schema().tables[t];
                    let Some(w) = r
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(|q| q.get("where"))
                    else {
                        continue;
                    };
                    conds.push((t, crate::db::Condition::parse(ts, w).map_err(err)?));
                }
                let (_, mut mon) = sess.monitors.remove(pos);
                // Rows leaving the condition are deleted, rows entering are inserted.
                let mut changes = Changes::new();
                for (t, cond) in conds {
                    let Some(tm) = mon.tables.get_mut(t) else {
                        continue;
                    };
                    let mut rows = BTreeMap::new();
                    for (u, row) in db.rows(t).into_iter().flatten() {
                        let (a, b) = (tm.cond.eval(*u, row), cond.eval(*u, row));
                        if a != b {
                            rows.insert(
                                *u,
                                RowChange {
                                    old: a.then(|| row.clone()),
                                    new: b.then(|| row.clone()),
                                },
                            );
                        }
                    }
                    tm.cond = crate::db::Condition::Const(true);
                    if !rows.is_empty() {
                        changes.insert(t.clone(), rows);
                    }
                    tm.cond = cond;
                }
                let mut shown = mon.clone();
                for tm in shown.tables.values_mut() {
                    tm.cond = crate::db::Condition::Const(true);
                }
                mon.id = new_id;
                shown.id = mon.id.clone();
                let last = self.dbs[&mon.db].last_txn;
                if let Some(u) = shown.updates(&self.dbs[&mon.db].db, &changes) {
                    out.push(Outgoing {
                        session: s,
                        msg: shown.notification(u, last),
                    });
                }
                self.sessions
                    .entry(s)
                    .or_default()
                    .monitors
                    .push((mon.id.to_string(), mon));
                Ok(Some(json!({})))
            }
            "monitor_cancel" => {
                let key = p.first().map(Value::to_string).unwrap_or_default();
                let sess = self.sessions.entry(s).or_default();
                let before = sess.monitors.len();
                sess.monitors.retain(|(k, _)| *k != key);
                if sess.monitors.len() == before {
                    return Err(json!("unknown monitor"));
                }
                Ok(Some(json!({})))
            }
            "lock" | "steal" | "unlock" => {
                let name = p.first().and_then(Value::as_str).ok_or_else(|| {
                    err(OvsdbError::syntax("lock name must be a string").with_syntax(params))
                })?;
                let name = name.to_string();
                match method {
                    "lock" => {
                        let sess = self.sessions.entry(s).or_default();
                        if !sess.locks.insert(name.clone()) {
                            return Err(err(OvsdbError::syntax(
                                "must issue \"unlock\" before new \"lock\"",
                            )
                            .with_syntax(params)));
                        }
                        let q = self.locks.entry(name).or_default();
                        q.push_back(s);
                        Ok(Some(json!({"locked": q.front() == Some(&s)})))
                    }
                    "steal" => {
                        if !self
                            .sessions
                            .entry(s)
                            .or_default()
                            .locks
                            .insert(name.clone())
                        {
                            return Err(err(OvsdbError::syntax(
                                "must issue \"unlock\" before new \"steal\"",
                            )
                            .with_syntax(params)));
                        }
                        let q = self.locks.entry(name.clone()).or_default();
                        q.retain(|x| *x != s);
                        if let Some(&prev) = q.front() {
                            out.push(Outgoing {
                                session: prev,
                                msg: Message::Notification {
                                    method: "stolen".into(),
                                    params: json!([name]),
                                },
                            });
                        }
                        q.push_front(s);
                        Ok(Some(json!({"locked": true})))
                    }
                    _ => {
                        if self.sessions.entry(s).or_default().locks.remove(&name) {
                            self.release(s, &name, out);
                        }
                        Ok(Some(json!({})))
                    }
                }
            }
            _ => Err(json!("unknown method")),
        }
    }

    fn release(&mut self, s: SessionId, name: &str, out: &mut Vec<Outgoing>) {
        if let Some(q) = self.locks.get_mut(name) {
            let before = q.len();
            q.retain(|x| *x != s);
            // Like ovsdb-server, the (possibly unchanged) owner is told "locked" whenever a
            // waiter is removed from a lock that still has waiters.
            if q.len() != before
                && let Some(&next) = q.front()
            {
                out.push(Outgoing {
                    session: next,
                    msg: Message::Notification {
                        method: "locked".into(),
                        params: json!([name]),
                    },
                });
            }
            if q.is_empty() {
                self.locks.remove(name);
            }
        }
    }

    /// Run a transaction for a session. Returns the reply (None if it is blocked in a `wait`).
    fn run_transact(
        &mut self,
        s: SessionId,
        id: Value,
        db: &str,
        ops: Vec<Value>,
        deadline: Option<Instant>,
        out: &mut Vec<Outgoing>,
    ) -> Option<Value> {
        let locks: HashSet<String> = self
            .locks
            .iter()
            .filter(|(_, q)| q.front() == Some(&s))
            .map(|(k, _)| k.clone())
            .collect();
        let outcome = self.commit(db, &ops, &|l| locks.contains(l), out);
        if let Some(ms) = outcome.blocked {
            let now = Instant::now();
            let deadline = deadline.unwrap_or_else(|| {
                now.checked_add(Duration::from_millis(ms))
                    .unwrap_or(now + Duration::from_secs(86400 * 365))
            });
            if now < deadline {
                self.pending.push(Pending {
                    session: s,
                    id,
                    db: db.to_string(),
                    ops,
                    deadline,
                });
                return None;
            }
        }
        Some(Value::Array(outcome.results))
    }

    /// Execute a transaction, persist it, fan out monitor updates (into `out`), retry blocked waits.
    fn commit(
        &mut self,
        db: &str,
        ops: &[Value],
        owns: &dyn Fn(&str) -> bool,
        out: &mut Vec<Outgoing>,
    ) -> TxnOutcome {
        let Some(entry) = self.dbs.get_mut(db) else {
            return TxnOutcome {
                results: vec![OvsdbError::new("unknown database", db).to_json()],
                changes: Changes::new(),
                ok: false,
                durable: false,
                blocked: None,
                comments: vec![],
            };
        };
        let mut outcome = entry.db.transact(ops, owns);
        if outcome.changes.is_empty() {
            return outcome;
        }
        if let Some(st) = &mut entry.storage {
            if let Err(e) = st.commit(&entry.db, &outcome.changes) {
                // Roll the in-memory state back: the commit is not durable.
                let inverse: Changes = outcome
                    .changes
                    .iter()
                    .map(|(t, rows)| {
                        (
                            t.clone(),
                            rows.iter()
                                .map(|(u, c)| {
                                    (
                                        *u,
                                        RowChange {
                                            old: c.new.clone(),
                                            new: c.old.clone(),
                                        },
                                    )
                                })
                                .collect(),
                        )
                    })
                    .collect();
                entry.db.apply(&inverse);
                outcome.ok = false;
                outcome
                    .results
                    .push(OvsdbError::new("I/O error", e.to_string()).to_json());
                outcome.changes = Changes::new();
                return outcome;
            }
            if st.should_compact() {
                let _ = st.compact(&entry.db);
            }
        }
        self.generation += 1;
        // Standalone model: like ovsdb-server, no transaction history is kept, so the
        // last-txn-id of update3 stays all-zero and monitor_cond_since always sends everything.
        let last = entry.last_txn;
        for (sid, sess) in &self.sessions {
            for (_, m) in &sess.monitors {
                if m.db == db
                    && let Some(u) = m.updates(&entry.db, &outcome.changes)
                {
                    out.push(Outgoing {
                        session: *sid,
                        msg: m.notification(u, last),
                    });
                }
            }
        }
        self.retry_pending(db, out);
        outcome
    }

    fn retry_pending(&mut self, db: &str, out: &mut Vec<Outgoing>) {
        let pend: Vec<Pending> = std::mem::take(&mut self.pending);
        let (mine, rest): (Vec<Pending>, Vec<Pending>) = pend.into_iter().partition(|p| p.db == db);
        self.pending = rest;
        for p in mine {
            if let Some(r) =
                self.run_transact(p.session, p.id.clone(), &p.db, p.ops, Some(p.deadline), out)
            {
                out.push(Outgoing {
                    session: p.session,
                    msg: Message::Response {
                        id: p.id,
                        result: r,
                    },
                });
            }
        }
    }

    /// Expire blocked `wait` transactions whose timeout passed.
    pub fn tick(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let (expired, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = keep;
        for p in expired {
            if let Some(r) = self.run_transact(
                p.session,
                p.id.clone(),
                &p.db,
                p.ops,
                Some(p.deadline),
                &mut out,
            ) {
                out.push(Outgoing {
                    session: p.session,
                    msg: Message::Response {
                        id: p.id,
                        result: r,
                    },
                });
            }
        }
        out
    }

    /// Run a transaction on behalf of the embedding application (e.g. the switch reporting
    /// `ofport`); monitor updates for clients are returned alongside the outcome.
    pub fn transact_local(&mut self, db: &str, ops: &[Value]) -> (TxnOutcome, Vec<Outgoing>) {
        let mut out = Vec::new();
        let o = self.commit(db, ops, &|_| true, &mut out);
        (o, out)
    }
}

/// A session's output queue may hold at most this many unsent bytes; a client that stops
/// reading while updates accumulate is disconnected instead of growing server memory.
pub const MAX_OUTGOING_BYTES: usize = 64 << 20;

#[derive(Debug)]
struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    close: Arc<tokio::sync::watch::Sender<bool>>,
}

type Conns = Mutex<HashMap<SessionId, Conn>>;

#[derive(Debug)]
struct Shared {
    core: Mutex<ServerCore>,
    conns: Conns,
    next: AtomicU64,
    /// The core's [`ServerCore::generation`] after the last request handled.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn note_generation(&self, g: u64) {
        self.changed.send_if_modified(|cur| {
            let newer = *cur != g;
            *cur = g;
            newer
        });
    }
}

/// The tokio server: listeners and connections around a shared [`ServerCore`].
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Wrap a core; spawns the wait-timeout ticker (needs a tokio runtime).
    pub fn new(core: ServerCore) -> Server {
        let g = core.generation();
        let srv = Server {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                conns: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
                changed: tokio::sync::watch::Sender::new(g),
            }),
        };
        let weak = Arc::downgrade(&srv.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(sh) = weak.upgrade() else { break };
                let (out, g) = {
                    let mut core = lock(&sh.core);
                    (core.tick(Instant::now()), core.generation())
                };
                sh.note_generation(g);
                dispatch(&sh, out);
            }
        });
        srv
    }

    /// Access the core (for in-process use).
    pub fn core(&self) -> MutexGuard<'_, ServerCore> {
        lock(&self.shared.core)
    }

    /// Run a local transaction and push the resulting monitor updates to clients.
    pub fn transact(&self, db: &str, ops: &[Value]) -> TxnOutcome {
        let (o, out, g) = {
            let mut core = self.core();
            let (o, out) = core.transact_local(db, ops);
            (o, out, core.generation())
        };
        self.shared.note_generation(g);
        dispatch(&self.shared, out);
        o
    }

    /// Watches commits: the value is [`ServerCore::generation`] and changes after every
    /// committed transaction (from clients or [`Server::transact`]). For an embedding
    /// application that reacts to configuration changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Listen on TCP; returns the bound address.
    pub async fn listen_tcp(&self, addr: &str) -> std::io::Result<std::net::SocketAddr> {
        let l = tokio::net::TcpListener::bind(addr).await?;
        let a = l.local_addr()?;
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                me.spawn_conn(r, w);
            }
        });
        Ok(a)
    }

    /// Listen on TCP with TLS (`pssl:`); returns the bound address. With
    /// [`plexus_pki::ClientAuth::Required`] in `cfg`, only clients with a certificate
    /// signed by the CA get in (as with `ovsdb-server --private-key … --ca-cert …`).
    pub async fn listen_tls(
        &self,
        addr: &str,
        cfg: Arc<plexus_pki::rustls::ServerConfig>,
    ) -> std::io::Result<std::net::SocketAddr> {
        let l = tokio::net::TcpListener::bind(addr).await?;
        let l = plexus_pki::TlsListener::from_tcp(l, cfg)?;
        let a = l.local_addr();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (r, w) = tokio::io::split(s);
                me.spawn_conn(r, w);
            }
        });
        Ok(a)
    }

    /// Listen on a unix socket path (an existing socket file is replaced).
    pub async fn listen_unix(&self, path: &Path) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)?;
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (r, w) = s.into_split();
                me.spawn_conn(r, w);
            }
        });
        Ok(())
    }

    /// Serve one already-connected stream (e.g. a `tokio::io::duplex` in tests).
    pub fn spawn_conn<R, W>(&self, mut r: R, mut w: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let sh = self.shared.clone();
        let sid = sh.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        // `close` is shared with the writer so that a normal disconnect (Conn removed) still lets
        // the writer drain queued replies; only an explicit close aborts it.
        let (close, mut close_w) = tokio::sync::watch::channel(false);
        let close = Arc::new(close);
        let mut close_r = close.subscribe();
        let keep = close.clone();
        lock(&sh.conns).insert(
            sid,
            Conn {
                tx,
                queued: queued.clone(),
                close,
            },
        );
        lock(&sh.core).connect(sid);
        tokio::spawn(async move {
            loop {
                let b = tokio::select! {
                    b = rx.recv() => match b {
                        Some(b) => b,
                        None => break,
                    },
                    _ = close_w.changed() => break,
                };
                // Flush: a TLS stream may hold the record until flushed.
                tokio::select! {
                    r = async { w.write_all(&b).await?; w.flush().await } => if r.is_err() { break },
                    _ = close_w.changed() => break,
                }
                queued.fetch_sub(b.len(), Ordering::Relaxed);
            }
            drop(keep);
        });
        tokio::spawn(async move {
            let mut framer = Framer::default();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = tokio::select! {
                    r = r.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                    _ = close_r.changed() => break,
                };
                let frames = framer.feed(&buf[..n]);
                if frames.is_empty() {
                    continue;
                }
                let (out, g) = {
                    let mut core = lock(&sh.core);
                    let mut out = Vec::new();
                    for f in frames {
                        out.extend(match f {
                            Frame::Value(v) => core.handle_value(sid, v),
                            Frame::Invalid(e) => core.frame_error(sid, &e),
                        });
                    }
                    (out, core.generation())
                };
                sh.note_generation(g);
                dispatch(&sh, out);
            }
            lock(&sh.conns).remove(&sid);
            let out = lock(&sh.core).disconnect(sid);
            dispatch(&sh, out);
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn dispatch(sh: &Shared, out: Vec<Outgoing>) {
    if out.is_empty() {
        return;
    }
    let mut conns = lock(&sh.conns);
    for o in out {
        let b = o.msg.to_bytes();
        let Some(c) = conns.get(&o.session) else {
            continue;
        };
        if c.queued.load(Ordering::Relaxed) + b.len() > MAX_OUTGOING_BYTES {
            tracing::warn!(
                session = o.session,
                "output queue over limit; disconnecting"
            );
            let _ = c.close.send(true);
            conns.remove(&o.session);
            continue;
        }
        c.queued.fetch_add(b.len(), Ordering::Relaxed);
        let _ = c.tx.send(b);
    }
}
