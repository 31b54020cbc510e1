//! Per-node snapshot cache with ACK/NACK status (go-control-plane's `SnapshotCache`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::resource::{ResourceType, Snapshot, SnapshotError};

/// A rejected update as reported by the client's `error_detail`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nack {
    /// Version we sent that the client rejected (SotW: type version; delta: system version).
    pub version: String,
    /// Nonce of the rejected response.
    pub nonce: String,
    /// `error_detail.code`.
    pub code: i32,
    /// `error_detail.message`.
    pub message: String,
    /// Unix time in milliseconds.
    pub at_ms: u64,
}

/// Per node, per type protocol status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeStatus {
    /// Last version sent to the node.
    pub last_sent_version: Option<String>,
    /// Last version the node ACKed.
    pub last_acked_version: Option<String>,
    /// Last NACK (cleared by a later ACK of a newer version? no: kept for inspection).
    pub last_nack: Option<Nack>,
    /// Whether the most recent response of this type was NACKed (cleared by the next ACK).
    pub rejected: bool,
    /// Counters.
    pub responses: u64,
    /// ACKs received.
    pub acks: u64,
    /// NACKs received.
    pub nacks: u64,
}

/// Status of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// Open streams of this node.
    pub streams: u64,
    /// Label of the snapshot currently published for the node.
    pub snapshot_label: Option<String>,
    /// Per type (`CDS`, `EDS`, `LDS`, `RDS`).
    pub types: BTreeMap<String, TypeStatus>,
    /// Requests for type URLs this server does not serve.
    pub unknown_type_requests: u64,
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses sent.
    pub responses: AtomicU64,
    /// ACKs received.
    pub acks: AtomicU64,
    /// NACKs received.
    pub nacks: AtomicU64,
    /// Requests ignored because of a stale or unknown nonce.
    pub stale_nonces: AtomicU64,
    /// Requests for unknown type URLs.
    pub unknown_types: AtomicU64,
    /// Streams opened.
    pub streams_opened: AtomicU64,
}

struct NodeEntry {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    status: Arc<Mutex<NodeStatus>>,
    /// Published with [`SnapshotCache::set_snapshot`]/[`SnapshotCache::set_snapshots`]
    /// (a node-specific snapshot), not following the default one.
    pinned: bool,
    /// Node class (see [`node_class`]), chosen by the default snapshots.
    class: String,
}

/// The class of a node for [`SnapshotCache::set_default_snapshot_for`]: `grpc` for
/// proxyless gRPC clients (their `user_agent_name` names gRPC), `""` otherwise (Envoy).
pub fn node_class(node: &envoy_types::pb::envoy::config::core::v3::Node) -> &'static str {
    if node.user_agent_name.to_ascii_lowercase().contains("grpc") {
        "grpc"
    } else {
        ""
    }
}

/// A stream's handle on its node's status: updates take the node's own lock only, not
/// the cache-wide one.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeRef {
    pub(crate) id: String,
    status: Arc<Mutex<NodeStatus>>,
}

impl NodeRef {
    fn with_type<R>(&self, ty: ResourceType, f: impl FnOnce(&mut TypeStatus) -> R) -> R {
        let mut st = self.status.lock().unwrap();
        if !st.types.contains_key(ty.short()) {
            st.types.insert(ty.short().into(), TypeStatus::default());
        }
        f(st.types.get_mut(ty.short()).unwrap())
    }
}

/// Holds the published snapshot of each node and wakes its streams on change.
#[derive(Default)]
pub struct SnapshotCache {
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
    /// Snapshots of nodes without a node-specific one, per node class (see
    /// [`Self::set_default_snapshot_for`]); `""` is the fallback for every class.
    defaults: Mutex<BTreeMap<String, Arc<Snapshot>>>,
    /// Server-wide counters.
    pub metrics: Metrics,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn entry<'a>(
        &self,
        nodes: &'a mut BTreeMap<String, NodeEntry>,
        node: &str,
    ) -> &'a mut NodeEntry {
        if !nodes.contains_key(node) {
            let default = self.default_for("");
            let status = NodeStatus {
                snapshot_label: default.as_ref().map(|s| s.label.clone()),
                ..Default::default()
            };
            nodes.insert(
                node.to_string(),
                NodeEntry {
                    tx: watch::Sender::new(default),
                    status: Arc::new(Mutex::new(status)),
                    pinned: false,
                    class: String::new(),
                },
            );
        }
        nodes.get_mut(node).unwrap()
    }

    fn with_node<R>(&self, node: &str, f: impl FnOnce(&mut NodeEntry) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap();
        f(self.entry(&mut nodes, node))
    }

    fn default_for(&self, class: &str) -> Option<Arc<Snapshot>> {
        let d = self.defaults.lock().unwrap();
        d.get(class).or_else(|| d.get("")).cloned()
    }

    /// Publishes `snap` (after its consistency check) to every node that has no
    /// node-specific snapshot, including nodes that connect later: the controller's
    /// "same configuration for every proxy" mode. An inconsistent snapshot is refused
    /// and the previous one stays published.
    pub fn set_default_snapshot(&self, snap: Snapshot) -> Result<(), SnapshotError> {
        self.set_default_snapshot_for("", snap)
    }

    /// Like [`Self::set_default_snapshot`] for the nodes of one class ([`node_class`]),
    /// e.g. `grpc` for proxyless gRPC clients; class `""` is the fallback of all.
    pub fn set_default_snapshot_for(
        &self,
        class: &str,
        snap: Snapshot,
    ) -> Result<(), SnapshotError> {
        snap.check()?;
        let snap = Arc::new(snap);
        let nodes = self.nodes.lock().unwrap();
        self.defaults
            .lock()
            .unwrap()
            .insert(class.to_string(), snap.clone());
        for e in nodes.values() {
            if e.pinned {
                continue;
            }
            let applies = e.class == class
                || (class.is_empty() && !self.defaults.lock().unwrap().contains_key(&e.class));
            if applies {
                e.status.lock().unwrap().snapshot_label = Some(snap.label.clone());
                e.tx.send_replace(Some(snap.clone()));
            }
        }
        Ok(())
    }

    /// The default snapshot of a node class, if any (falling back to class `""`).
    pub fn default_snapshot(&self, class: &str) -> Option<Arc<Snapshot>> {
        self.default_for(class)
    }

    /// Publishes a snapshot for `node` after checking its consistency; every stream of
    /// the node is woken and pushes what changed. An inconsistent snapshot is refused
    /// and the previous one stays published.
    pub fn set_snapshot(&self, node: &str, snap: Snapshot) -> Result<(), SnapshotError> {
        snap.check()?;
        let snap = Arc::new(snap);
        self.with_node(node, |e| {
            e.pinned = true;
            e.status.lock().unwrap().snapshot_label = Some(snap.label.clone());
            e.tx.send_replace(Some(snap));
        });
        Ok(())
    }

    /// Publishes one snapshot to many nodes (checked once, shared by all of them).
    pub fn set_snapshots<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a str>,
        snap: Snapshot,
    ) -> Result<(), SnapshotError> {
        snap.check()?;
        let snap = Arc::new(snap);
        let mut all = self.nodes.lock().unwrap();
        for node in nodes {
            let e = self.entry(&mut all, node);
            e.pinned = true;
            e.status.lock().unwrap().snapshot_label = Some(snap.label.clone());
            e.tx.send_replace(Some(snap.clone()));
        }
        Ok(())
    }

    /// Removes a node's own snapshot (its streams keep their last state, nothing is
    /// pushed; the node follows the default snapshot again from its next stream on).
    pub fn clear_snapshot(&self, node: &str) {
        self.nodes.lock().unwrap().remove(node);
    }

    /// The snapshot currently published for `node`.
    pub fn snapshot(&self, node: &str) -> Option<Arc<Snapshot>> {
        self.nodes
            .lock()
            .unwrap()
            .get(node)
            .and_then(|e| e.tx.borrow().clone())
    }

    /// Watches a node's snapshot (creating the node entry).
    pub fn watch(&self, node: &str) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.with_node(node, |e| e.tx.subscribe())
    }

    /// Status of one node.
    pub fn node_status(&self, node: &str) -> Option<NodeStatus> {
        self.nodes
            .lock()
            .unwrap()
            .get(node)
            .map(|e| e.status.lock().unwrap().clone())
    }

    /// Status of every known node.
    pub fn status(&self) -> BTreeMap<String, NodeStatus> {
        self.nodes
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.status.lock().unwrap().clone()))
            .collect()
    }

    /// Status as JSON (for the controller's REST API).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.status()).unwrap_or_default()
    }

    /// Opens a stream of `node`: its snapshot watch and status handle.
    pub(crate) fn stream_opened(
        &self,
        node: &str,
        class: &str,
    ) -> (watch::Receiver<Option<Arc<Snapshot>>>, NodeRef) {
        self.metrics.streams_opened.fetch_add(1, Ordering::Relaxed);
        let default = self.default_for(class);
        self.with_node(node, |e| {
            if !e.pinned && e.class != class {
                class.clone_into(&mut e.class);
                if let Some(d) = default {
                    e.status.lock().unwrap().snapshot_label = Some(d.label.clone());
                    e.tx.send_replace(Some(d));
                }
            }
            e.status.lock().unwrap().streams += 1;
            (
                e.tx.subscribe(),
                NodeRef {
                    id: node.to_string(),
                    status: e.status.clone(),
                },
            )
        })
    }

    pub(crate) fn stream_closed(&self, n: &NodeRef) {
        let mut st = n.status.lock().unwrap();
        st.streams = st.streams.saturating_sub(1);
    }

    pub(crate) fn record_sent(&self, n: &NodeRef, ty: ResourceType, version: &str) {
        self.metrics.responses.fetch_add(1, Ordering::Relaxed);
        n.with_type(ty, |t| {
            if t.last_sent_version.as_deref() != Some(version) {
                t.last_sent_version = Some(version.to_string());
            }
            t.responses += 1;
        });
    }

    pub(crate) fn record_ack(&self, n: &NodeRef, ty: ResourceType, version: &str) {
        n.with_type(ty, |t| {
            if t.last_acked_version.as_deref() != Some(version) {
                t.last_acked_version = Some(version.to_string());
            }
            t.rejected = false;
            t.acks += 1;
        });
        // Counted last: a reader that sees the counter also sees the status.
        self.metrics.acks.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn record_nack(
        &self,
        n: &NodeRef,
        ty: ResourceType,
        version: &str,
        nonce: &str,
        code: i32,
        message: &str,
    ) {
        tracing::warn!(
            node = n.id,
            ty = ty.short(),
            version,
            nonce,
            message,
            "xDS NACK"
        );
        n.with_type(ty, |t| {
            t.last_nack = Some(Nack {
                version: version.to_string(),
                nonce: nonce.to_string(),
                code,
                message: message.to_string(),
                at_ms: now_ms(),
            });
            t.rejected = true;
            t.nacks += 1;
        });
        self.metrics.nacks.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn record_unknown_type(&self, n: &NodeRef, url: &str) {
        self.metrics.unknown_types.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            node = n.id,
            url,
            "xDS request for an unknown type URL ignored"
        );
        n.status.lock().unwrap().unknown_type_requests += 1;
    }
}
