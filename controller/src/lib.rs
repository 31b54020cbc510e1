//! The Plexus controller: model, REST API, store, incremental compiler, southbound.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
