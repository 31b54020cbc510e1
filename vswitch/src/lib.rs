//! The Plexus userspace virtual switch: ports, pipeline, caches, OpenFlow agent.
//!
//! Fast-path core (sans-IO, allocation-free per packet):
//! - [`flow`]: frame + metadata → fixed-size [`flow::FlowKey`], field access by OXM id.
//! - [`classifier`]: one OpenFlow table as a tuple-space-search classifier that also
//!   reports the bits it examined (megaflow wildcards).
//! - [`cache`]: exact-match cache and megaflow cache with generation-based revalidation.

pub mod cache;
pub mod classifier;
pub mod flow;
