//! CNI 1.1 plugin that attaches pods to Plexus.
//!
//! `plexus-cni` is driven like every CNI plugin: `CNI_COMMAND` and friends in
//! the environment, the network configuration on stdin, a result or an error
//! JSON on stdout. ADD creates a port on the controller (IPAM there), a veth
//! pair (container side named `CNI_IFNAME` in `CNI_NETNS` with the port's MAC,
//! address, default route via the subnet gateway and the overlay MTU) and
//! plugs the host side into the local Open vSwitch bridge with
//! `external_ids:iface-id=PORT_ID`. Links are configured over rtnetlink
//! ([`nl`]), the switch over OVSDB JSON-RPC ([`ovs`]); nothing is exec'd.
//! See [`config`] for the configuration keys and [`error`] for the error codes.
//!
//! The crate also attaches VMs: [`vm`] creates or adopts a tap ([`tun`]),
//! plugs it into the switch with the same OVSDB transaction and binds the
//! controller port; the `plexus port attach --tap` CLI drives it.

pub mod config;
pub mod controller;
pub mod error;
pub mod fuzz;
pub mod http;
pub mod link;
pub mod netns;
pub mod nl;
mod nlsock;
pub mod ovs;
pub mod plugin;
pub mod trace;
pub mod tun;
pub mod vm;

use std::io::{Read, Write};

/// The binary's entry point: returns the process exit code.
pub fn main_entry() -> i32 {
    trace::init();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let out = match (config::Env::from_env(|k| std::env::var(k).ok()), read) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(error::CniError::new(
            error::IO_FAILURE,
            "reading stdin failed",
            e.to_string(),
        )),
        (Ok(env), Ok(_)) => plugin::run(&env, &stdin),
    };
    // Errors carry the config's version when it is one we speak.
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| config::LATEST.to_owned());
    trace::step("exit");
    let mut so = std::io::stdout().lock();
    match out {
        Ok(Some(v)) => {
            let _ = writeln!(so, "{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(so, "{}", e.to_json(&version));
            1
        }
    }
}
