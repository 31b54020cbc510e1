//! The model store: a transactional key-value store of JSON objects with a global
//! revision, IPAM allocations, and a change feed.
//!
//! [`Store`] is the backend-neutral trait; [`RedbStore`] is the embedded single-file
//! backend, [`EtcdStore`](crate::store_etcd::EtcdStore) the etcd one, and [`AnyStore`]
//! either (what the API, the engine and the xDS feed hold). Writes happen in a closure given a [`Txn`]; either all of
//! it commits (one new revision) or none of it does. Every object written in a transaction
//! gets that transaction's revision, which is also its ETag.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch};

/// Errors of the store (and of transaction closures, which may fail with any `E` that
/// converts from this).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("corrupt record {key}: {err}")]
    Corrupt { key: String, err: String },
    /// The store's file system is full (ENOSPC, EDQUOT): the transaction was not
    /// committed. Writes work again once space is freed.
    #[error("no space left for the store: {0}")]
    NoSpace(String),
}

fn io_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match &e {
            redb::StorageError::Io(io) if io_full(io) => StoreError::NoSpace(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// The errors that wrap a [`redb::StorageError`]: classified by it.
macro_rules! storage_err {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(s) => s.into(),
                    e => StoreError::Backend(e.to_string()),
                }
            }
        }
    )*};
}
storage_err!(DatabaseError, TransactionError, TableError, CommitError);

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match &e {
            redb::Error::Io(io) if io_full(io) => StoreError::NoSpace(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Whether `e` is redb's "a previous I/O error occurred" (the database must be
/// closed and reopened before it takes writes again).
fn previous_io(e: &redb::TransactionError) -> bool {
    matches!(
        e,
        redb::TransactionError::Storage(redb::StorageError::PreviousIo)
    )
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: String,
    pub id: String,
    pub revision: u64,
    pub value: Value,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put,
    Delete,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub kind: String,
    pub id: String,
    pub op: Op,
}

/// Operations inside a write transaction.
pub trait Txn {
    /// The revision this transaction will commit as.
    fn revision(&self) -> u64;
    fn get(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// All objects of a kind, ordered by id.
    fn list(&mut self, kind: &str) -> Result<Vec<Record>, StoreError>;
    /// Creates or replaces; returns the new revision.
    fn put(&mut self, kind: &str, id: &str, value: &Value) -> Result<u64, StoreError>;
    /// Returns whether the object existed.
    fn delete(&mut self, kind: &str, id: &str) -> Result<bool, StoreError>;
    /// A named counter (VNIs, tunnel keys): returns the next value, starting at `start`.
    fn next_counter(&mut self, name: &str, start: u64) -> Result<u64, StoreError>;
    /// IPAM: allocations of a pool (e.g. a subnet id) as (address, owner).
    fn ipam_list(&mut self, pool: &str) -> Result<Vec<(String, String)>, StoreError>;
    fn ipam_get(&mut self, pool: &str, addr: &str) -> Result<Option<String>, StoreError>;
    fn ipam_put(&mut self, pool: &str, addr: &str, owner: &str) -> Result<(), StoreError>;
    fn ipam_delete(&mut self, pool: &str, addr: &str) -> Result<bool, StoreError>;
}

/// A model store.
pub trait Store: Send + Sync + 'static {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// Up to `limit` objects of `kind` with id > `after`, ordered by id.
    fn list(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
    fn count(&self, kind: &str) -> Result<u64, StoreError>;
    /// IPAM allocations of a pool.
    fn ipam_list(&self, pool: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Runs `f` in one write transaction; commits if it returns `Ok` and anything was
    /// written. Returns `f`'s value and the committed revision.
    fn write<T, E>(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<T, E>) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
        Self: Sized;
    /// The latest committed revision.
    fn revision(&self) -> u64;
    /// Changes, in commit order, from now on.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
    /// The latest committed revision, as a watch.
    fn watch_revision(&self) -> watch::Receiver<u64>;
}

/// Either backend.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Redb(RedbStore),
    Etcd(crate::store_etcd::EtcdStore),
}

impl From<RedbStore> for AnyStore {
    fn from(s: RedbStore) -> Self {
        AnyStore::Redb(s)
    }
}

impl From<crate::store_etcd::EtcdStore> for AnyStore {
    fn from(s: crate::store_etcd::EtcdStore) -> Self {
        AnyStore::Etcd(s)
    }
}

impl AnyStore {
    /// `redb` or `etcd`.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Redb(_) => "redb",
            AnyStore::Etcd(_) => "etcd",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Redb($s) => $e,
            AnyStore::Etcd($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        delegate!(self, s => s.get(kind, id))
    }
    fn list(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        delegate!(self, s => s.list(kind, after, limit))
    }
    fn count(&self, kind: &str) -> Result<u64, StoreError> {
        delegate!(self, s => s.count(kind))
    }
    fn ipam_list(&self, pool: &str) -> Result<Vec<(String, String)>, StoreError> {
        delegate!(self, s => s.ipam_list(pool))
    }
    fn write<T, E>(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<T, E>) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        delegate!(self, s => s.write(f))
    }
    fn revision(&self) -> u64 {
        delegate!(self, s => s.revision())
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        delegate!(self, s => s.subscribe())
    }
    fn watch_revision(&self) -> watch::Receiver<u64> {
        delegate!(self, s => s.watch_revision())
    }
}

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const IPAM: TableDefinition<'_, &str, &str> = TableDefinition::new("ipam");
const REVISION: &str = "revision";

fn okey(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

fn ikey(pool: &str, addr: &str) -> String {
    format!("{pool}/{addr}")
}

/// Smallest string greater than every string starting with `prefix/`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}0") // '0' is the byte after '/'
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        err: e.to_string(),
    })
}

/// The embedded backend: one redb file.
#[derive(Debug, Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The group commit's state, with the write transaction being filled;
    /// declared before `db` so that the transaction is dropped first.
    state: Mutex<Group>,
    /// Signalled when a batch's commit ends: its outcome is recorded and the
    /// next batch may open.
    turn: Condvar,
    /// Writers that have entered [`Store::write`] and not yet run their
    /// closure. Counted before they take `state`, so that the last writer of
    /// a batch sees the ones queued behind it and leaves the commit to them.
    joining: AtomicUsize,
    /// The open database; replaced after an I/O failure (see [`RedbStore::reopen`]).
    db: Mutex<Option<Arc<redb::Database>>>,
    path: std::path::PathBuf,
    feed: broadcast::Sender<Change>,
    rev: watch::Sender<u64>,
}

/// Most closures in one batch: bounds the wait of its first writer while
/// new writers keep joining.
const BATCH_CAP: usize = 256;

/// Group commit (a leader/follower writer queue, as in LevelDB, except that
/// each writer runs its own closure on its own thread).
///
/// Writers run their closures one after another, under the `state` lock, in
/// one shared redb write transaction: each gets its own revision and has its
/// own writes undone if it fails. A writer that finishes its closure while
/// other writers have arrived and not yet run theirs (`joining` > 0) leaves
/// the batch open and waits; the last one to run (or the one that fills the
/// batch, or one whose undo failed) closes it: it takes the transaction and
/// commits it, durably, outside the lock, then records the outcome for every
/// writer of the batch. Writers arriving during that commit cannot open a
/// transaction (redb allows one at a time), so they wait for it to end and
/// then form the next batch together: under load a commit carries every write
/// that arrived during the previous one. Nobody's `write` returns before the
/// batch holding its changes is durable.
#[derive(Default)]
struct Group {
    txn: Option<redb::WriteTransaction>,
    /// Number of the batch `txn` belongs to.
    batch: u64,
    /// Closures run in this batch.
    members: usize,
    changes: Vec<Change>,
    revision: u64,
    dirty: bool,
    /// A closure's writes could not be undone: the batch must abort.
    poisoned: Option<String>,
    /// A batch's transaction has been taken and is being committed outside
    /// the lock: no transaction can be opened until it ends.
    committing: bool,
    /// The last batch whose outcome is recorded (batches end in order).
    done: u64,
    /// Durable redb commits made (one per batch).
    commits: u64,
    /// Recent failed batches and why.
    failed: VecDeque<(u64, StoreError)>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("open", &self.txn.is_some())
            .field("batch", &self.batch)
            .field("members", &self.members)
            .field("revision", &self.revision)
            .field("dirty", &self.dirty)
            .field("committing", &self.committing)
            .field("done", &self.done)
            .field("commits", &self.commits)
            .finish()
    }
}

impl Group {
    /// Batch `batch`'s outcome, once recorded.
    fn outcome(&self, batch: u64) -> Option<Result<(), StoreError>> {
        if self.done < batch {
            return None;
        }
        Some(match self.failed.iter().find(|(b, _)| *b == batch) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A prior value, to undo one closure's writes inside a shared batch.
enum Undo {
    Object(String, Option<Vec<u8>>),
    Meta(String, Option<u64>),
    Ipam(String, Option<String>),
}

impl RedbStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Database::create(path)?;
        let w = db.begin_write()?;
        {
            w.open_table(OBJECTS)?;
            w.open_table(IPAM)?;
            w.open_table(META)?;
        }
        w.commit()?;
        let r = db.begin_read()?;
        let rev = r
            .open_table(META)?
            .get(REVISION)?
            .map(|v| v.value())
            .unwrap_or(0);
        let (feed, _) = broadcast::channel(4096);
        let (rev, _) = watch::channel(rev);
        Ok(Self {
            inner: Arc::new(Inner {
                db: Mutex::new(Some(Arc::new(db))),
                path: path.to_path_buf(),
                feed,
                rev,
                state: Mutex::default(),
                turn: Condvar::new(),
                joining: AtomicUsize::new(0),
            }),
        })
    }
}

impl RedbStore {
    /// The open database.
    fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        lock(&self.inner.db)
            .clone()
            .ok_or_else(|| StoreError::Backend("store is being reopened".into()))
    }

    /// Closes and reopens the database file. redb refuses every write after
    /// an I/O error (a full disk) until the database is reopened; reopening
    /// recovers the last committed state. Committed data is never touched.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = lock(&self.inner.db);
        if let Some(old) = slot.take() {
            drop(old);
        }
        match redb::Database::create(&self.inner.path) {
            Ok(db) => {
                tracing::warn!(path = %self.inner.path.display(), "store reopened after an I/O error");
                *slot = Some(Arc::new(db));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Durable redb commits made since opening (group commit: concurrent
    /// writes share one).
    pub fn commits(&self) -> u64 {
        lock(&self.inner.state).commits
    }

    /// Runs one writer's closure in the open batch, opening one if there is
    /// none. A failed (or panicking) closure has its own writes undone; if
    /// they cannot be, the batch is poisoned.
    fn run<T, E>(
        &self,
        g: &mut Group,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<T, E>,
    ) -> Result<(T, u64), Failed<E>>
    where
        E: From<StoreError>,
    {
        if g.txn.is_none() {
            // No other write transaction is alive (none is open and none is
            // being committed), so this does not wait. (The database handle
            // is dropped before a reopen.)
            let first = {
                let db = self.db()?;
                db.begin_write()
            };
            let t = match first {
                Err(e) if previous_io(&e) => {
                    // An earlier commit failed (disk full): reopen, then retry.
                    self.reopen()?;
                    self.db()?.begin_write().map_err(StoreError::from)?
                }
                r => r.map_err(StoreError::from)?,
            };
            g.txn = Some(t);
            g.batch += 1;
        }
        let Some(w) = g.txn.as_ref() else {
            return Err(StoreError::Backend("no write transaction".into()).into());
        };
        g.members += 1;
        let current = w
            .open_table(META)
            .map_err(StoreError::from)?
            .get(REVISION)
            .map_err(StoreError::from)?
            .map(|v| v.value())
            .unwrap_or(0);
        let mut txn = RedbTxn {
            objects: w.open_table(OBJECTS).map_err(StoreError::from)?,
            meta: w.open_table(META).map_err(StoreError::from)?,
            ipam: w.open_table(IPAM).map_err(StoreError::from)?,
            revision: current + 1,
            changes: Vec::new(),
            dirty: false,
            undo: Vec::new(),
        };
        // A panic must not leave its writes in the batch, nor leave the
        // batch without a writer to close it: it is caught here, undone like
        // an error, and resumed once the batch is taken care of.
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(&mut txn)));
        let r = match r {
            Ok(Ok(out)) if txn.dirty => txn
                .meta
                .insert(REVISION, current + 1)
                .map(|_| out)
                .map_err(|e| Failed::Err(StoreError::from(e).into())),
            Ok(Ok(out)) => return Ok((out, current)),
            Ok(Err(e)) => Err(Failed::Err(e)),
            Err(p) => Err(Failed::Panic(p)),
        };
        match r {
            Ok(out) => {
                g.changes.append(&mut txn.changes);
                g.revision = current + 1;
                g.dirty = true;
                Ok((out, current + 1))
            }
            Err(e) => {
                // Undo this closure's writes; the batch's others stay.
                if let Err(u) = txn.rollback() {
                    g.poisoned = Some(u.to_string());
                }
                Err(e)
            }
        }
    }

    /// Ends the open batch. If anything was written in it, commits it (or
    /// aborts it if poisoned) outside the lock, then records the outcome for
    /// its writers, publishes its changes and wakes everyone waiting; the
    /// returned guard is the relocked state. If nothing was written, nobody
    /// waits for it: the transaction is just released (the error is that of
    /// releasing it).
    fn close<'a>(
        &'a self,
        mut g: MutexGuard<'a, Group>,
    ) -> (MutexGuard<'a, Group>, Result<(), StoreError>) {
        let Some(txn) = g.txn.take() else {
            return (g, Ok(()));
        };
        g.members = 0;
        if !g.dirty && g.poisoned.is_none() {
            return (g, txn.abort().map_err(StoreError::from));
        }
        let batch = g.batch;
        let changes = std::mem::take(&mut g.changes);
        let revision = g.revision;
        let poisoned = g.poisoned.take();
        g.dirty = false;
        g.committing = true;
        drop(g);
        // The fsync happens here, unlocked: writers arriving meanwhile queue
        // up for the next batch.
        let r = match poisoned {
            None => txn.commit().map_err(StoreError::from),
            Some(p) => {
                let _ = txn.abort();
                Err(StoreError::Backend(format!("batch aborted: {p}")))
            }
        };
        let mut g = lock(&self.inner.state);
        g.committing = false;
        g.done = batch;
        match r {
            Ok(()) => {
                g.commits += 1;
                // Changes before the revision: whoever wakes on the revision finds
                // every change up to it in the feed. (Under the lock, and only one
                // batch commits at a time: batches are published in order.)
                for ch in changes {
                    let _ = self.inner.feed.send(ch);
                }
                self.inner.rev.send_replace(revision);
            }
            Err(e) => {
                g.failed.push_back((batch, e));
                if g.failed.len() > 64 {
                    g.failed.pop_front();
                }
            }
        }
        self.inner.turn.notify_all();
        (g, Ok(()))
    }
}

/// Why a closure did not complete.
enum Failed<E> {
    Err(E),
    Panic(Box<dyn std::any::Any + Send>),
}

impl<E: From<StoreError>> From<StoreError> for Failed<E> {
    fn from(e: StoreError) -> Self {
        Failed::Err(e.into())
    }
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

struct RedbTxn<'a> {
    objects: redb::Table<'a, &'static str, &'static [u8]>,
    meta: redb::Table<'a, &'static str, u64>,
    ipam: redb::Table<'a, &'static str, &'static str>,
    revision: u64,
    changes: Vec<Change>,
    dirty: bool,
    undo: Vec<Undo>,
}

impl RedbTxn<'_> {
    /// Restores every value this closure changed, newest first.
    fn rollback(&mut self) -> Result<(), StoreError> {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Object(k, Some(v)) => drop(self.objects.insert(k.as_str(), v.as_slice())?),
                Undo::Object(k, None) => drop(self.objects.remove(k.as_str())?),
                Undo::Meta(k, Some(v)) => drop(self.meta.insert(k.as_str(), v)?),
                Undo::Meta(k, None) => drop(self.meta.remove(k.as_str())?),
                Undo::Ipam(k, Some(v)) => drop(self.ipam.insert(k.as_str(), v.as_str())?),
                Undo::Ipam(k, None) => drop(self.ipam.remove(k.as_str())?),
            }
        }
        Ok(())
    }
}

impl Txn for RedbTxn<'_> {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn get(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let k = okey(kind, id);
        match self.objects.get(k.as_str())? {
            Some(v) => Ok(Some(decode(&k, v.value())?)),
            None => Ok(None),
        }
    }

    fn list(&mut self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let lo = format!("{kind}/");
        let hi = prefix_end(kind);
        let mut out = Vec::new();
        for e in self.objects.range(lo.as_str()..hi.as_str())? {
            let (k, v) = e?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn put(&mut self, kind: &str, id: &str, value: &Value) -> Result<u64, StoreError> {
        let rec = Record {
            kind: kind.into(),
            id: id.into(),
            revision: self.revision,
            value: value.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Backend(e.to_string()))?;
        let k = okey(kind, id);
        let old = self
            .objects
            .insert(k.as_str(), bytes.as_slice())?
            .map(|v| v.value().to_vec());
        self.undo.push(Undo::Object(k, old));
        self.dirty = true;
        self.changes.push(Change {
            revision: self.revision,
            kind: kind.into(),
            id: id.into(),
            op: Op::Put,
        });
        Ok(self.revision)
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let k = okey(kind, id);
        let old = self.objects.remove(k.as_str())?.map(|v| v.value().to_vec());
        let existed = old.is_some();
        if existed {
            self.undo.push(Undo::Object(k, old));
            self.dirty = true;
            self.changes.push(Change {
                revision: self.revision,
                kind: kind.into(),
                id: id.into(),
                op: Op::Delete,
            });
        }
        Ok(existed)
    }

    fn next_counter(&mut self, name: &str, start: u64) -> Result<u64, StoreError> {
        let k = format!("counter/{name}");
        let v = self
            .meta
            .get(k.as_str())?
            .map(|v| v.value())
            .unwrap_or(start);
        let old = self.meta.insert(k.as_str(), v + 1)?.map(|o| o.value());
        self.undo.push(Undo::Meta(k, old));
        self.dirty = true;
        Ok(v)
    }

    fn ipam_list(&mut self, pool: &str) -> Result<Vec<(String, String)>, StoreError> {
        let lo = format!("{pool}/");
        let hi = prefix_end(pool);
        let mut out = Vec::new();
        for e in self.ipam.range(lo.as_str()..hi.as_str())? {
            let (k, v) = e?;
            out.push((k.value()[lo.len()..].to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    fn ipam_get(&mut self, pool: &str, addr: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .ipam
            .get(ikey(pool, addr).as_str())?
            .map(|v| v.value().to_string()))
    }

    fn ipam_put(&mut self, pool: &str, addr: &str, owner: &str) -> Result<(), StoreError> {
        let k = ikey(pool, addr);
        let old = self
            .ipam
            .insert(k.as_str(), owner)?
            .map(|o| o.value().to_string());
        self.undo.push(Undo::Ipam(k, old));
        self.dirty = true;
        Ok(())
    }

    fn ipam_delete(&mut self, pool: &str, addr: &str) -> Result<bool, StoreError> {
        let k = ikey(pool, addr);
        let old = self.ipam.remove(k.as_str())?.map(|o| o.value().to_string());
        let r = old.is_some();
        if r {
            self.undo.push(Undo::Ipam(k, old));
        }
        self.dirty |= r;
        Ok(r)
    }
}

impl Store for RedbStore {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(OBJECTS)?;
        let k = okey(kind, id);
        match t.get(k.as_str())? {
            Some(v) => Ok(Some(decode(&k, v.value())?)),
            None => Ok(None),
        }
    }

    fn list(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(OBJECTS)?;
        let lo = format!("{kind}/");
        let hi = prefix_end(kind);
        let mut out = Vec::new();
        let start = after.map(|a| okey(kind, a));
        for e in t.range(lo.as_str()..hi.as_str())? {
            let (k, v) = e?;
            if let Some(s) = &start
                && k.value() <= s.as_str()
            {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn count(&self, kind: &str) -> Result<u64, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(OBJECTS)?;
        if kind.is_empty() {
            return Ok(t.len()?);
        }
        let lo = format!("{kind}/");
        let hi = prefix_end(kind);
        Ok(t.range(lo.as_str()..hi.as_str())?.count() as u64)
    }

    fn ipam_list(&self, pool: &str) -> Result<Vec<(String, String)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(IPAM)?;
        let lo = format!("{pool}/");
        let hi = prefix_end(pool);
        let mut out = Vec::new();
        for e in t.range(lo.as_str()..hi.as_str())? {
            let (k, v) = e?;
            out.push((k.value()[lo.len()..].to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    fn write<T, E>(&self, f: &mut dyn FnMut(&mut dyn Txn) -> Result<T, E>) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        let inner = &*self.inner;
        inner.joining.fetch_add(1, Ordering::SeqCst);
        let mut g = lock(&inner.state);
        // While a batch commits no transaction can be opened: wait, then
        // form the next batch with everyone who arrived meanwhile.
        while g.committing {
            g = wait(&inner.turn, g);
        }
        let ran = self.run(&mut g, f);
        let left = inner.joining.fetch_sub(1, Ordering::SeqCst) - 1;
        let batch = g.batch;
        // Whether this writer's result hangs on the batch: its changes are
        // in it, or it read some that are. (A poisoned batch is closed at
        // once, by the writer that poisoned it.)
        let durable = ran.is_ok() && g.dirty;
        let mut released = Ok(());
        if g.txn.is_some() && (left == 0 || g.members >= BATCH_CAP || g.poisoned.is_some()) {
            // Nobody else is about to run a closure in this batch (or it is
            // full, or doomed): this writer closes it, whether its own
            // closure succeeded or not.
            (g, released) = self.close(g);
        }
        let out = match ran {
            Ok(out) => out,
            Err(Failed::Err(e)) => return Err(e),
            Err(Failed::Panic(p)) => {
                drop(g);
                panic::resume_unwind(p)
            }
        };
        released?;
        if durable {
            // Until the batch's closer records it.
            let r = loop {
                if let Some(r) = g.outcome(batch) {
                    break r;
                }
                g = wait(&inner.turn, g);
            };
            r?;
        }
        Ok(out)
    }

    fn revision(&self) -> u64 {
        *self.inner.rev.borrow()
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.feed.subscribe()
    }

    fn watch_revision(&self) -> watch::Receiver<u64> {
        self.inner.rev.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let ((), rev) = s
                .write::<_, StoreError>(&mut |t| {
                    t.put("tenants", "a", &json!({"name": "a"}))?;
                    t.put("tenants", "b", &json!({"name": "b"}))?;
                    t.ipam_put("s1", "10.0.0.2", "p1")?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(rev, 1);
            s.write::<_, StoreError>(&mut |t| t.delete("tenants", "b").map(|_| ()))
                .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.revision(), 2);
        let a = s.get("tenants", "a").unwrap().unwrap();
        assert_eq!(a.revision, 1);
        assert_eq!(a.value, json!({"name": "a"}));
        assert!(s.get("tenants", "b").unwrap().is_none());
        assert_eq!(
            s.ipam_list("s1").unwrap(),
            vec![("10.0.0.2".into(), "p1".into())]
        );
    }

    #[test]
    fn failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("db")).unwrap();
        let r = s.write::<(), StoreError>(&mut |t| {
            t.put("tenants", "a", &json!({}))?;
            Err(StoreError::Backend("boom".into()))
        });
        assert!(r.is_err());
        assert!(s.get("tenants", "a").unwrap().is_none());
        assert_eq!(s.revision(), 0);
    }

    #[test]
    fn concurrent_writers_group_commit_with_per_writer_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 48;
        {
            let s = RedbStore::open(&path).unwrap();
            let revs: Vec<Result<u64, StoreError>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        let s = s.clone();
                        sc.spawn(move || {
                            s.write::<_, StoreError>(&mut |t| {
                                t.put("ports", &format!("p{i:02}"), &json!(i))?;
                                t.ipam_put("s1", &format!("10.0.0.{i}"), &format!("p{i:02}"))?;
                                if i % 7 == 3 {
                                    return Err(StoreError::Backend("boom".into()));
                                }
                                Ok(())
                            })
                            .map(|((), r)| r)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut ok: Vec<u64> = revs
                .iter()
                .filter_map(|r| r.as_ref().ok().copied())
                .collect();
            ok.sort_unstable();
            let failed = (0..n).filter(|i| i % 7 == 3).count();
            // One revision per successful writer, no gaps, no duplicates.
            assert_eq!(ok, (1..=(n - failed) as u64).collect::<Vec<_>>());
            assert_eq!(s.revision(), (n - failed) as u64);
        }
        let s = RedbStore::open(&path).unwrap();
        for i in 0..n {
            let present = s.get("ports", &format!("p{i:02}")).unwrap().is_some();
            assert_eq!(present, i % 7 != 3, "p{i:02}");
        }
        let leases = s.ipam_list("s1").unwrap();
        assert_eq!(leases.len(), (0..n).filter(|i| i % 7 != 3).count());
        assert!(
            leases
                .iter()
                .all(|(_, o)| o[1..].parse::<usize>().unwrap() % 7 != 3)
        );
    }

    /// Spins until `n` writers have entered `write` and not yet run their
    /// closure (or 20 s pass).
    fn await_joining(s: &RedbStore, n: usize) {
        let t0 = std::time::Instant::now();
        while s.inner.joining.load(Ordering::SeqCst) < n
            && t0.elapsed() < std::time::Duration::from_secs(20)
        {
            std::thread::yield_now();
        }
    }

    #[test]
    fn writers_queued_behind_a_writer_share_one_commit() {
        // The first writer stays in its closure until the 63 others have
        // entered `write` (and so queued behind it): all 64 then make up one
        // batch, committed once by the last to run. (Before, each queued
        // writer raced for its own commit: dozens of one-write commits.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 64;
        {
            let s = RedbStore::open(&path).unwrap();
            let before = s.commits();
            let (inside, wait_inside) = std::sync::mpsc::channel();
            let revs: Vec<u64> = std::thread::scope(|sc| {
                let s0 = s.clone();
                let first = sc.spawn(move || {
                    s0.write::<_, StoreError>(&mut |t| {
                        let _ = inside.send(());
                        // Itself included.
                        await_joining(&s0, n);
                        t.put("ports", "p00", &json!(0))
                    })
                    .unwrap()
                    .1
                });
                wait_inside.recv().unwrap();
                let rest: Vec<_> = (1..n)
                    .map(|i| {
                        let s = s.clone();
                        sc.spawn(move || {
                            s.write::<_, StoreError>(&mut |t| {
                                t.put("ports", &format!("p{i:02}"), &json!(i))
                            })
                            .unwrap()
                            .1
                        })
                    })
                    .collect();
                std::iter::once(first)
                    .chain(rest)
                    .map(|h| h.join().unwrap())
                    .collect()
            });
            assert_eq!(s.commits() - before, 1);
            let mut revs = revs;
            revs.sort_unstable();
            assert_eq!(revs, (1..=n as u64).collect::<Vec<_>>());
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.revision(), n as u64);
        assert_eq!(s.count("ports").unwrap(), n as u64);
    }

    /// `n` writers in one batch (as above); the last to run its closure
    /// fails (`panic`: panics) after writing. It must still commit the
    /// others' writes, and only theirs.
    fn last_writer_fails(panic: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 16;
        {
            let s = RedbStore::open(&path).unwrap();
            let (inside, wait_inside) = std::sync::mpsc::channel();
            let results: Vec<std::thread::Result<Result<u64, StoreError>>> =
                std::thread::scope(|sc| {
                    let hs: Vec<_> = (0..n)
                        .map(|i| {
                            let s = s.clone();
                            let inside = inside.clone();
                            let h = sc.spawn(move || {
                                s.write::<_, StoreError>(&mut |t| {
                                    if i == 0 {
                                        let _ = inside.send(());
                                        await_joining(&s, n);
                                    }
                                    t.put("ports", &format!("p{i:02}"), &json!(i))?;
                                    if s.inner.joining.load(Ordering::SeqCst) == 1 {
                                        assert!(!panic, "last writer panics");
                                        return Err(StoreError::Backend("last fails".into()));
                                    }
                                    Ok(())
                                })
                                .map(|((), r)| r)
                            });
                            if i == 0 {
                                wait_inside.recv().unwrap();
                            }
                            h
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join()).collect()
                });
            let failed = results.iter().filter(|r| !matches!(r, Ok(Ok(_)))).count();
            assert_eq!(failed, 1);
            assert_eq!(
                results.iter().filter(|r| r.is_err()).count(),
                usize::from(panic)
            );
            assert_eq!(s.commits(), 1);
            assert_eq!(s.revision(), n as u64 - 1);
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.count("ports").unwrap(), n as u64 - 1);
    }

    #[test]
    fn last_writer_of_a_batch_fails_and_still_commits_it() {
        last_writer_fails(false);
    }

    #[test]
    fn last_writer_of_a_batch_panics_and_still_commits_it() {
        last_writer_fails(true);
    }

    #[test]
    fn list_pages_by_id_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("db")).unwrap();
        s.write::<_, StoreError>(&mut |t| {
            for i in 0..5 {
                t.put("vpcs", &format!("v{i}"), &json!(i))?;
            }
            t.put("vpcs-x", "zz", &json!(0))?;
            t.put("tenants", "t", &json!(0))?;
            Ok(())
        })
        .unwrap();
        let p1 = s.list("vpcs", None, 2).unwrap();
        assert_eq!(
            p1.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["v0", "v1"]
        );
        let p2 = s.list("vpcs", Some("v1"), 10).unwrap();
        assert_eq!(p2.len(), 3);
        assert_eq!(s.count("vpcs").unwrap(), 5);
    }

    #[tokio::test]
    async fn change_feed_reports_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("db")).unwrap();
        let mut rx = s.subscribe();
        let mut w = s.watch_revision();
        s.write::<_, StoreError>(&mut |t| t.put("chassis", "c", &json!({})))
            .unwrap();
        let c = rx.recv().await.unwrap();
        assert_eq!(
            c,
            Change {
                revision: 1,
                kind: "chassis".into(),
                id: "c".into(),
                op: Op::Put
            }
        );
        w.changed().await.unwrap();
        assert_eq!(*w.borrow(), 1);
    }
}
