//! CNI 1.1 plugin that attaches pods to Plexus.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
