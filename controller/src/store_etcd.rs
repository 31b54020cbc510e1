//! The etcd v3 backend of the [`Store`] (for HA: several controllers share one model).
//!
//! Layout under `PREFIX/s/`: `o/KIND/ID` → the [`Record`] as JSON, `i/POOL/ADDR` → the
//! IPAM owner, `c/NAME` → a counter, `rev` → the store revision (decimal).
//!
//! - **Reads** are served from a local cache of the whole keyspace, loaded with one range
//!   read and kept current by an etcd watch (the change feed: every watched etcd revision
//!   becomes [`Change`]s and a new [`Store::watch_revision`] value, which drives the
//!   engine). A controller's own writes are visible to its reads when `write` returns.
//! - **Writes** run the closure against the cache (plus an overlay of its own writes), then
//!   commit every write of the closure and `rev = N+1` in one etcd transaction guarded by
//!   `mod_revision(rev) == the cache's`: every store write touches `rev`, so the commit
//!   fails if anyone (this or another controller) committed since the cache was read; the
//!   cache then catches up to the conflicting revision and the closure runs again
//!   (optimistic concurrency, serializable). ETag/If-Match and IPAM's no-duplicate check
//!   run inside the closure, so they hold across controllers.
//!
//! The store's methods are synchronous (as the redb backend's): they run the etcd client
//! on the store's own small tokio runtime and wait; call them from blocking threads
//! (`spawn_blocking`), as the API and the engine do.

use crate::store::{Change, Op, Record, Store, StoreError, Txn};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, TxnOp,
    TxnOpResponse, WatchOptions,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{broadcast, watch};

/// How long a write waits for its own commit to come back through the watch.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Conflicting commits (other writers) tolerated before a write gives up.
const MAX_ATTEMPTS: usize = 1000;

fn berr(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

/// Parses `etcd://HOST:PORT[,HOST:PORT...]` (or `http://` URLs, comma-separated) into
/// client endpoints.
pub fn parse_endpoints(spec: &str) -> Result<Vec<String>, String> {
    let rest = spec
        .strip_prefix("etcd://")
        .ok_or_else(|| format!("{spec:?}: expected etcd://HOST:PORT[,HOST:PORT...]"))?;
    let mut out = Vec::new();
    for e in rest.split(',') {
        let e = e.trim().trim_end_matches('/');
        if e.is_empty() {
            return Err(format!("{spec:?}: empty endpoint"));
        }
        let hostport = e.strip_prefix("http://").unwrap_or(e);
        let ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok || hostport.contains('/') {
            return Err(format!("{spec:?}: endpoint {e:?} is not HOST:PORT"));
        }
        out.push(format!("http://{hostport}"));
    }
    Ok(out)
}

/// The cached keyspace.
#[derive(Debug, Default)]
struct Cache {
    /// `KIND/ID` → record.
    objects: BTreeMap<String, Record>,
    /// `POOL/ADDR` → owner.
    ipam: BTreeMap<String, String>,
    counters: BTreeMap<String, u64>,
    /// The store revision (`rev` key).
    revision: u64,
    /// `mod_revision` of the `rev` key (0: absent).
    rev_modrev: i64,
}

fn range<'a, V>(
    m: &'a BTreeMap<String, V>,
    prefix: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let lo = format!("{prefix}/");
    let hi = format!("{prefix}0"); // '0' is the byte after '/'
    m.range(lo..hi)
}

/// What a key under the store prefix is.
enum Key<'a> {
    Object(&'a str),
    Ipam(&'a str),
    Counter(&'a str),
    Rev,
}

fn classify(rel: &str) -> Option<Key<'_>> {
    if rel == "rev" {
        Some(Key::Rev)
    } else if let Some(k) = rel.strip_prefix("o/") {
        Some(Key::Object(k))
    } else if let Some(k) = rel.strip_prefix("i/") {
        Some(Key::Ipam(k))
    } else {
        rel.strip_prefix("c/").map(Key::Counter)
    }
}

#[derive(Debug)]
struct Shared {
    /// `PREFIX/s/`.
    prefix: String,
    cache: RwLock<Cache>,
    feed: broadcast::Sender<Change>,
    rev: watch::Sender<u64>,
    /// The etcd revision the cache reflects.
    applied: watch::Sender<i64>,
    /// Serialises this process's writers (conflicts then only come from others).
    writer: Mutex<()>,
    /// Watch (re)starts and full reloads, for tests and metrics.
    reloads: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn rel<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.prefix.as_str())
    }

    /// Applies one key's new value (or deletion) to `c`; returns the object change, if
    /// it is an object (its revision is filled in by the caller for deletes).
    fn apply_kv(&self, c: &mut Cache, kv: &KeyValue, op: Op) -> Option<(String, String, Op)> {
        let rel = self.rel(kv.key())?;
        match (classify(rel)?, op) {
            (Key::Rev, Op::Put) => {
                match std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    Some(v) => c.revision = v,
                    None => tracing::error!(key = rel, "etcd store: corrupt revision"),
                }
                c.rev_modrev = kv.mod_revision();
                None
            }
            (Key::Rev, Op::Delete) => {
                c.revision = 0;
                c.rev_modrev = 0;
                None
            }
            (Key::Object(k), Op::Put) => match serde_json::from_slice::<Record>(kv.value()) {
                Ok(r) => {
                    let ch = (r.kind.clone(), r.id.clone(), Op::Put);
                    c.objects.insert(k.to_string(), r);
                    Some(ch)
                }
                Err(e) => {
                    tracing::error!(key = rel, error = %e, "etcd store: corrupt record skipped");
                    None
                }
            },
            (Key::Object(k), Op::Delete) => {
                let r = c.objects.remove(k)?;
                Some((r.kind, r.id, Op::Delete))
            }
            (Key::Ipam(k), Op::Put) => {
                c.ipam.insert(
                    k.to_string(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                );
                None
            }
            (Key::Ipam(k), Op::Delete) => {
                c.ipam.remove(k);
                None
            }
            (Key::Counter(k), Op::Put) => {
                match std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    Some(v) => drop(c.counters.insert(k.to_string(), v)),
                    None => tracing::error!(key = rel, "etcd store: corrupt counter"),
                }
                None
            }
            (Key::Counter(k), Op::Delete) => {
                c.counters.remove(k);
                None
            }
        }
    }
}

/// Shuts the store's runtime down when the last handle goes.
#[derive(Debug)]
struct RtGuard(Mutex<Option<Runtime>>);

impl Drop for RtGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_background();
        }
    }
}

/// The etcd backend.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    client: Arc<Client>,
    handle: Handle,
    _rt: Arc<RtGuard>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.shared.prefix)
            .field("revision", &*self.shared.rev.borrow())
            .field("applied", &*self.shared.applied.borrow())
            .finish()
    }
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://HOST:PORT`), loads the keyspace under
    /// `prefix` (e.g. `/plexus`) and starts following it.
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plexus-etcd")
            .enable_all()
            .build()
            .map_err(berr)?;
        let handle = rt.handle().clone();
        let guard = Arc::new(RtGuard(Mutex::new(Some(rt))));
        let eps = endpoints.to_vec();
        let client = run_on(&handle, async move {
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
            Client::connect(eps, Some(opts)).await
        })?
        .map_err(berr)?;
        let (feed, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            prefix: format!("{}/s/", prefix.trim_end_matches('/')),
            cache: RwLock::new(Cache::default()),
            feed,
            rev: watch::channel(0).0,
            applied: watch::channel(0).0,
            writer: Mutex::new(()),
            reloads: Default::default(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(sync_task(shared.clone(), client.clone(), ready_tx));
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "etcd: no answer from {endpoints:?} within 15 s"
                )));
            }
        }
        Ok(Self {
            shared,
            client: Arc::new(client),
            handle,
            _rt: guard,
        })
    }

    /// The etcd client (leader election uses the same connection).
    pub fn client(&self) -> Client {
        Client::clone(&self.client)
    }

    /// The runtime the client runs on.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Full (re)loads of the keyspace since connecting (1 = just the initial load).
    pub fn reloads(&self) -> u64 {
        self.shared
            .reloads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.shared.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_on(&self.handle, fut)
    }

    /// The `mod_revision` of the store's `rev` key in etcd now (linearizable read).
    fn rev_modrev_now(&self, rev_key: &str) -> Result<i64, StoreError> {
        let mut client = Client::clone(&self.client);
        let key = rev_key.to_string();
        let resp = self
            .run(async move { client.get(key, None).await })?
            .map_err(berr)?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0))
    }

    /// Waits until the cache reflects etcd revision `rev`.
    fn wait_applied(&self, rev: i64) -> Result<(), StoreError> {
        if *self.shared.applied.borrow() >= rev {
            return Ok(());
        }
        let mut rx = self.shared.applied.subscribe();
        self.run(async move {
            tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|a| *a >= rev))
                .await
                .map(|r| r.is_ok())
        })?
        .map_err(|_| {
            StoreError::Backend(format!(
                "etcd: watch did not deliver revision {rev} within {APPLY_TIMEOUT:?}"
            ))
        })
        .and_then(|ok| {
            ok.then_some(())
                .ok_or_else(|| StoreError::Backend("etcd: store closed".into()))
        })
    }
}

/// Runs `fut` on `handle` and waits for it from a synchronous caller.
fn run_on<T: Send + 'static>(
    handle: &Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    if Handle::try_current().is_ok_and(|h| h.id() == handle.id()) {
        return Err(StoreError::Backend(
            "etcd store called synchronously from its own runtime".into(),
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| StoreError::Backend("etcd: client runtime stopped".into()))
}

/// Loads the keyspace, then follows it with a watch; reloads after any watch failure.
async fn sync_task(
    sh: Arc<Shared>,
    mut client: Client,
    ready: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match load(&sh, &mut client).await {
            Ok(rev) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                backoff = Duration::from_millis(100);
                if let Err(e) = follow(&sh, &mut client, rev).await {
                    tracing::warn!(error = %e, "etcd store: watch ended; reloading");
                }
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, "etcd store: reload failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Reads the whole keyspace into a fresh cache (emitting the differences to the old one
/// as changes); returns the etcd revision read.
async fn load(sh: &Shared, client: &mut Client) -> Result<i64, StoreError> {
    let resp = client
        .get(sh.prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(berr)?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    let mut fresh = Cache::default();
    for kv in resp.kvs() {
        sh.apply_kv(&mut fresh, kv, Op::Put);
    }
    let changes = {
        let mut c = sh.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut changes = Vec::new();
        for (k, r) in &fresh.objects {
            if c.objects.get(k) != Some(r) {
                changes.push(Change {
                    revision: r.revision,
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                    op: Op::Put,
                });
            }
        }
        for (k, r) in &c.objects {
            if !fresh.objects.contains_key(k) {
                changes.push(Change {
                    revision: fresh.revision,
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                    op: Op::Delete,
                });
            }
        }
        *c = fresh;
        changes
    };
    publish(sh, changes, rev);
    sh.reloads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(rev)
}

fn publish(sh: &Shared, changes: Vec<Change>, etcd_rev: i64) {
    let revision = sh.cache.read().unwrap_or_else(|e| e.into_inner()).revision;
    for ch in changes {
        let _ = sh.feed.send(ch);
    }
    sh.rev.send_if_modified(|r| {
        let m = *r != revision;
        *r = revision;
        m
    });
    sh.applied.send_if_modified(|a| {
        let m = etcd_rev > *a;
        if m {
            *a = etcd_rev;
        }
        m
    });
}

/// Follows the keyspace from etcd revision `rev` + 1 until the watch fails.
async fn follow(sh: &Shared, client: &mut Client, rev: i64) -> Result<(), StoreError> {
    let mut ws = client
        .watch(
            sh.prefix.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1)
                    .with_progress_notify(),
            ),
        )
        .await
        .map_err(berr)?;
    loop {
        let Some(msg) = ws.message().await.map_err(berr)? else {
            return Err(berr("watch stream closed"));
        };
        if msg.canceled() || msg.compact_revision() > 0 {
            return Err(berr(format!(
                "watch canceled (compacted at {}): {}",
                msg.compact_revision(),
                msg.cancel_reason()
            )));
        }
        let header_rev = msg.header().map(|h| h.revision()).unwrap_or(0);
        let mut changes = Vec::new();
        {
            let mut c = sh.cache.write().unwrap_or_else(|e| e.into_inner());
            // Events of one etcd revision are one store transaction (with its `rev`).
            let events = msg.events();
            let mut i = 0;
            while i < events.len() {
                let r = events[i].kv().map(|kv| kv.mod_revision()).unwrap_or(0);
                let mut pending = Vec::new();
                while i < events.len() && events[i].kv().map(|kv| kv.mod_revision()) == Some(r) {
                    let e = &events[i];
                    if let Some(kv) = e.kv() {
                        let op = match e.event_type() {
                            EventType::Put => Op::Put,
                            EventType::Delete => Op::Delete,
                        };
                        if let Some(ch) = sh.apply_kv(&mut c, kv, op) {
                            pending.push(ch);
                        }
                    }
                    i += 1;
                }
                // A guard against a malformed event without a key-value.
                if pending.is_empty() && events.get(i).is_some_and(|e| e.kv().is_none()) {
                    i += 1;
                }
                changes.extend(pending.into_iter().map(|(kind, id, op)| Change {
                    revision: c.revision,
                    kind,
                    id,
                    op,
                }));
            }
        }
        publish(sh, changes, header_rev);
    }
}

/// A write transaction: the cache plus this closure's writes.
struct EtcdTxn<'a> {
    base: &'a Cache,
    revision: u64,
    objects: BTreeMap<String, Option<Record>>,
    ipam: BTreeMap<String, Option<String>>,
    counters: BTreeMap<String, u64>,
    dirty: bool,
}

impl EtcdTxn<'_> {
    fn object(&self, k: &str) -> Option<&Record> {
        match self.objects.get(k) {
            Some(o) => o.as_ref(),
            None => self.base.objects.get(k),
        }
    }
    fn owner(&self, k: &str) -> Option<&String> {
        match self.ipam.get(k) {
            Some(o) => o.as_ref(),
            None => self.base.ipam.get(k),
        }
    }
}

fn merged<'a, V: Clone>(
    base: &'a BTreeMap<String, V>,
    overlay: &'a BTreeMap<String, Option<V>>,
    prefix: &str,
) -> BTreeMap<&'a String, V> {
    let mut m: BTreeMap<&String, V> = range(base, prefix).map(|(k, v)| (k, v.clone())).collect();
    for (k, v) in range(overlay, prefix) {
        match v {
            Some(v) => drop(m.insert(k, v.clone())),
            None => drop(m.remove(k)),
        }
    }
    m
}

impl Txn for EtcdTxn<'_> {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn get(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.object(&format!("{kind}/{id}")).cloned())
    }

    fn list(&mut self, kind: &str) -> Result<Vec<Record>, StoreError> {
        Ok(merged(&self.base.objects, &self.objects, kind)
            .into_values()
            .collect())
    }

    fn put(&mut self, kind: &str, id: &str, value: &Value) -> Result<u64, StoreError> {
        self.objects.insert(
            format!("{kind}/{id}"),
            Some(Record {
                kind: kind.into(),
                id: id.into(),
                revision: self.revision,
                value: value.clone(),
            }),
        );
        self.dirty = true;
        Ok(self.revision)
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let k = format!("{kind}/{id}");
        let existed = self.object(&k).is_some();
        if existed {
            self.objects.insert(k, None);
            self.dirty = true;
        }
        Ok(existed)
    }

    fn next_counter(&mut self, name: &str, start: u64) -> Result<u64, StoreError> {
        let v = self
            .counters
            .get(name)
            .or_else(|| self.base.counters.get(name))
            .copied()
            .unwrap_or(start);
        self.counters.insert(name.to_string(), v + 1);
        self.dirty = true;
        Ok(v)
    }

    fn ipam_list(&mut self, pool: &str) -> Result<Vec<(String, String)>, StoreError> {
        let skip = pool.len() + 1;
        Ok(merged(&self.base.ipam, &self.ipam, pool)
            .into_iter()
            .map(|(k, v)| (k[skip..].to_string(), v))
            .collect())
    }

    fn ipam_get(&mut self, pool: &str, addr: &str) -> Result<Option<String>, StoreError> {
        Ok(self.owner(&format!("{pool}/{addr}")).cloned())
    }

    fn ipam_put(&mut self, pool: &str, addr: &str, owner: &str) -> Result<(), StoreError> {
        self.ipam
            .insert(format!("{pool}/{addr}"), Some(owner.to_string()));
        self.dirty = true;
        Ok(())
    }

    fn ipam_delete(&mut self, pool: &str, addr: &str) -> Result<bool, StoreError> {
        let k = format!("{pool}/{addr}");
        let existed = self.owner(&k).is_some();
        if existed {
            self.ipam.insert(k, None);
            self.dirty = true;
        }
        Ok(existed)
    }
}

impl Store for EtcdStore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.cache().objects.get(&format!("{kind}/{id}")).cloned())
    }

    fn list(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let c = self.cache();
        let start = after.map(|a| format!("{kind}/{a}"));
        Ok(range(&c.objects, kind)
            .filter(|(k, _)| start.as_ref().is_none_or(|s| k.as_str() > s.as_str()))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn count(&self, kind: &str) -> Result<u64, StoreError> {
        let c = self.cache();
        if kind.is_empty() {
            return Ok(c.objects.len() as u64);
        }
        Ok(range(&c.objects, kind).count() as u64)
    }

    fn ipam_list(&self, pool: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.cache();
        let skip = pool.len() + 1;
        Ok(range(&c.ipam, pool)
            .map(|(k, v)| (k[skip..].to_string(), v.clone()))
            .collect())
    }

    fn write<T, E>(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<T, E>) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        let _w = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let p = &self.shared.prefix;
        let rev_key = format!("{p}rev");
        for _ in 0..MAX_ATTEMPTS {
            let (out, revision, txn) = {
                let cache = self.cache();
                let mut t = EtcdTxn {
                    base: &cache,
                    revision: cache.revision + 1,
                    objects: BTreeMap::new(),
                    ipam: BTreeMap::new(),
                    counters: BTreeMap::new(),
                    dirty: false,
                };
                let out = f(&mut t);
                if out.is_err() || !t.dirty {
                    // Nothing to commit: the answer stands only if it was computed on
                    // the latest model (a refusal such as 404 or 412 must not come from a
                    // stale cache): check with one linearizable read, else catch up.
                    let seen = cache.rev_modrev;
                    let revision = cache.revision;
                    drop(t);
                    drop(cache);
                    let latest = self.rev_modrev_now(&rev_key)?;
                    if latest == seen {
                        return out.map(|o| (o, revision));
                    }
                    self.wait_applied(latest)?;
                    continue;
                }
                let out = out?;
                let mut ops = Vec::new();
                for (k, v) in &t.objects {
                    let key = format!("{p}o/{k}");
                    ops.push(match v {
                        Some(r) => TxnOp::put(
                            key,
                            serde_json::to_vec(r).map_err(|e| berr(e.to_string()))?,
                            None,
                        ),
                        None => TxnOp::delete(key, None),
                    });
                }
                for (k, v) in &t.ipam {
                    let key = format!("{p}i/{k}");
                    ops.push(match v {
                        Some(o) => TxnOp::put(key, o.as_bytes(), None),
                        None => TxnOp::delete(key, None),
                    });
                }
                for (k, v) in &t.counters {
                    ops.push(TxnOp::put(format!("{p}c/{k}"), v.to_string(), None));
                }
                ops.push(TxnOp::put(rev_key.as_str(), t.revision.to_string(), None));
                let guard = if cache.rev_modrev == 0 {
                    Compare::version(rev_key.as_str(), CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(rev_key.as_str(), CompareOp::Equal, cache.rev_modrev)
                };
                let txn = etcd_client::Txn::new()
                    .when([guard])
                    .and_then(ops)
                    .or_else([TxnOp::get(rev_key.as_str(), None)]);
                (out, t.revision, txn)
            };
            let mut client = Client::clone(&self.client);
            let resp = self
                .run(async move { client.txn(txn).await })?
                .map_err(berr)?;
            if resp.succeeded() {
                let r = resp.header().map(|h| h.revision()).unwrap_or(0);
                self.wait_applied(r)?;
                return Ok((out, revision));
            }
            // Someone committed since the cache was read: catch up with that commit, rerun.
            let seen = resp
                .op_responses()
                .into_iter()
                .find_map(|o| match o {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
                    _ => None,
                })
                .unwrap_or(0);
            self.wait_applied(seen)?;
        }
        Err(berr(format!("write conflicted {MAX_ATTEMPTS} times; giving up")).into())
    }

    fn revision(&self) -> u64 {
        *self.shared.rev.borrow()
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared.feed.subscribe()
    }

    fn watch_revision(&self) -> watch::Receiver<u64> {
        self.shared.rev.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379,127.0.0.1:22379").unwrap(),
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!(
            parse_endpoints("etcd://http://h:1").unwrap(),
            ["http://h:1"]
        );
        for bad in [
            "127.0.0.1:2379",
            "etcd://",
            "etcd://h",
            "etcd://h:x",
            "etcd://a:1,",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad}");
        }
    }
}
