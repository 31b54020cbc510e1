//! RFC 7047 OVSDB: JSON-RPC codec, schema, transactional database, server and client.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
