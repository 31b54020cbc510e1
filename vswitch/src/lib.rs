//! The Plexus userspace virtual switch: ports, pipeline, caches, OpenFlow agent.
//!
//! * [`port`] — the batched [`port::Port`] trait and its implementations: AF_XDP
//!   ([`port::afxdp`]), AF_PACKET ([`port::afpacket`]) and tap ([`port::tap`]).
//! * [`sys`] — the only place with `unsafe`: thin, audited wrappers around the
//!   syscalls the ports need (bpf(2), AF_XDP rings, packet sockets, tun, poll,
//!   signals, CPU affinity). Every `unsafe` block carries a `// SAFETY:` comment.
//! * [`flow`] — frame + metadata → fixed-size [`flow::FlowKey`], field access by OXM id.
//! * [`classifier`] — one OpenFlow table as a tuple-space-search classifier that also
//!   reports the bits it examined (megaflow wildcards).
//! * [`cache`] — exact-match cache and megaflow cache with generation-based revalidation.
//! * [`conntrack`] — userspace connection tracking with NAT (OVS userspace conntrack
//!   semantics), driven by the pipeline's `ct` action.
//!
//! * [`appctl`] — the daemon's control socket (`plexus-appctl`: trace, dump-flows,
//!   dump-cache, show, cache-flush, fdb/show).
//! * [`conf_file`] — the `plexus-vswitchd --config FILE` (TOML) settings.
//!
//! The fast-path core (`flow`, `classifier`, `cache`) is sans-IO and allocation-free per packet.
#![deny(unsafe_code)]

pub mod agent;
pub mod appctl;
pub mod cache;
pub mod classifier;
pub mod conf_file;
pub mod conntrack;
pub mod datapath;
pub mod flow;
#[doc(hidden)]
pub mod fuzz;
pub mod ovsdb_config;
pub mod pipeline;
pub mod port;
#[allow(unsafe_code)]
pub mod sys;
