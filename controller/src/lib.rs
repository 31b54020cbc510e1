//! The Plexus controller: model, REST API, store, IPAM, incremental compiler.
//!
//! - [`store`]: the store trait, the embedded redb backend, the change feed.
//! - [`ipam`]: per-subnet address allocation inside store transactions.
//! - [`api`]: the REST API (axum + utoipa), auth, metrics.
//! - [`compiler`]: model → per-chassis OpenFlow flows, full and incremental.
//! - [`model_from_store`]: the compiler's per-VPC models from the store and switch ports.
//! - [`southbound`]: per-chassis OpenFlow sessions, reconcile without flushing, realized
//!   revisions.
//!
//! - [`xds`]: the xDS feed: services and their traffic policy → Envoy / proxyless gRPC.
//!
//! - [`store_etcd`]: the etcd backend of the store (HA: several controllers, one model).
//! - [`ha`]: leader election over etcd leases (only the leader programs switches).
//!
//! OVSDB sessions are not built yet.

pub mod api;
pub mod compiler;
pub mod ha;
pub mod ipam;
pub mod model_from_store;
pub mod southbound;
pub mod store;
pub mod store_etcd;
pub mod tls;
pub mod xds;
