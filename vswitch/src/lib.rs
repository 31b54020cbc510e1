//! The Plexus userspace virtual switch: ports, pipeline, caches, OpenFlow agent.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
