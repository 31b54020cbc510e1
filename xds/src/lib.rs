//! xDS control plane: ADS, SotW and delta, LDS/RDS/CDS/EDS snapshots.
//!
//! - [`resource`]: type URLs, encoded resources, consistency-checked [`Snapshot`]s.
//! - [`cache`]: the per-node [`SnapshotCache`] with ACK/NACK status.
//! - [`server`]: the tonic [`XdsServer`] (ADS + per-type services, SotW + delta).
//! - [`bootstrap`]: Envoy and gRPC bootstrap files pointing at the ADS server.
//! - [`wire`]: responses pre-encoded once per snapshot and shared across streams.
//! - [`model`] / [`translate`]: the typed service model the controller feeds, and its
//!   translation to Envoy (listener on VIP:port) and proxyless gRPC (`api_listener`) resources.

pub mod bootstrap;
pub mod cache;
pub mod fuzz;
pub mod model;
pub mod resource;
pub mod server;
pub mod translate;
pub mod wire;

pub use cache::{NodeStatus, SnapshotCache, node_class};
pub use envoy_types;
pub use model::Service;
pub use resource::{ResourceType, Snapshot, SnapshotError};
pub use server::XdsServer;
