//! xDS control plane: ADS, SotW and delta, LDS/RDS/CDS/EDS snapshots.
//!
//! Skeleton: this crate is filled in by its own issue (see docs/ARCHITECTURE.md).
