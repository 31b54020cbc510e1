//! tokio connection layer.
//!
//! STUB: filled in by the connection-layer work.
