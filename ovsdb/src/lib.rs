//! RFC 7047 OVSDB: JSON-RPC codec, schema, transactional database, server and client.
//!
//! Layers (the protocol core is sans-IO; tokio is only used in [`server`] and [`client`]):
//! - [`schema`], [`datum`]: schema parsing with all column types/constraints and the RFC 7047 JSON forms.
//! - [`rpc`]: JSON-RPC 1.0 messages and a bounded streaming framer (bytes in, JSON values out).
//! - [`db`]: the in-memory transactional database (`transact` with every operation, referential
//!   integrity, garbage collection, constraint checks) producing committed change sets.
//! - [`storage`]: the durable append-only log with torn-tail recovery and compaction.
//! - [`server`]: the sans-IO server core (sessions, monitors, locks) and its tokio listener.
//! - [`client`]: a typed async client with a monitor-driven replica.

pub mod client;
pub mod datum;
pub mod db;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod monitor;
pub mod rpc;
pub mod schema;
pub mod server;
pub mod storage;

pub use datum::{Atom, Datum};
pub use error::OvsdbError;
pub use schema::DatabaseSchema;
pub use uuid::Uuid;
