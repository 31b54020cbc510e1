//! The Plexus userspace virtual switch: ports, pipeline, caches, OpenFlow agent.
//!
//! * [`port`] — the batched [`port::Port`] trait and its implementations: AF_XDP
//!   ([`port::afxdp`]), AF_PACKET ([`port::afpacket`]) and tap ([`port::tap`]).
//! * [`sys`] — the only place with `unsafe`: thin, audited wrappers around the
//!   syscalls the ports need (bpf(2), AF_XDP rings, packet sockets, tun, poll,
//!   signals, CPU affinity). Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! The flow key, classifier and pipeline modules are added beside these.
#![deny(unsafe_code)]

pub mod port;
#[allow(unsafe_code)]
pub mod sys;
