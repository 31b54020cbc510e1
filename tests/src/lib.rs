//! Plexus test harness.
//!
//! - [`ovs`]: a private userspace Open vSwitch (ovsdb-server + ovs-vswitchd,
//!   netdev datapath) started and stopped with `std::process`, cleaned up on drop.
//! - [`controller`]: a blocking OpenFlow 1.3 test controller on `plexus-openflow`
//!   (accept/connect a switch, install flows/groups/meters, dump them, packet-in/out).
//! - [`bench`]: `plexus-topo bench`, the data-plane benchmark (plexus-vswitchd vs OVS
//!   AF_XDP vs the Linux bridge in one run, the referee's method).
//! - [`ofctl`]: `ovs-ofctl` as an oracle (`ofp-print` of raw OpenFlow bytes).
//! - [`capture`]: a fake OpenFlow 1.3 switch on a unix socket that records the
//!   exact frames `ovs-ofctl` sends (golden bytes for the codec).
//! - [`netns`]: network namespaces and veth pairs owned by a test.
//! - [`topo`]: single-switch topology files (static flows) for the `plexus-topo` binary.
//! - [`fabric`]: the fat-tree scale topology (many plexus-vswitchd, static routes).
//! - [`cloud`]: controller-driven topologies (controller, chassis, tenants, hosts, checks)
//!   for `plexus-topo`, with crash-safe run records for `down --all`.
//! - [`etcd`]: a private etcd cluster (N members, kill -9 / restart) for the etcd store.
//! - [`prereq`]: `require_tool` / `require_root`: skip locally, fail in CI.
//! - [`proc`]: running commands with a deadline.
//! - [`progress`]: the live bring-up view (indicatif spinner on a terminal, lines elsewhere).

pub mod bench;
pub mod capture;
pub mod cloud;
pub mod controller;
pub mod etcd;
pub mod fabric;
pub mod netns;
pub mod ofctl;
pub mod ovs;
pub mod prereq;
pub mod proc;
pub mod progress;
pub mod rawsock;
pub mod scale;
pub mod topo;

pub use prereq::{in_ci, require_root, require_tool};
