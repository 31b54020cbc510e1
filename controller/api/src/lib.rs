//! REST API request/response types shared by the controller, CLI, CNI plugin and harness.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
