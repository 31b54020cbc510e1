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
pub mod daemon;
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
/// `plexus-cni daemon …` runs the per-node daemon ([`daemon`]); otherwise
/// this is a CNI call (runtimes pass no arguments).
pub fn main_entry() -> i32 {
    trace::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("daemon") {
        return daemon::main(&args[1..]);
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let out = match (config::Env::from_env(|k| std::env::var(k).ok()), read) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(error::CniError::new(
            error::IO_FAILURE,
            "reading stdin failed",
            e.to_string(),
        )),
        (Ok(env), Ok(_)) => match daemon_socket(&env, &stdin) {
            Some(sock) => match daemon::forward(&sock, env.command, &stdin) {
                Ok((code, out)) => {
                    trace::step("exit");
                    let _ = std::io::stdout().lock().write_all(&out);
                    return code;
                }
                Err(e) => Err(e),
            },
            None => plugin::run(&env, &stdin),
        },
    };
    let (code, text) = render(out, &stdin);
    trace::step("exit");
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    code
}

/// The daemon's socket when the configuration names one (VERSION is
/// always answered here).
fn daemon_socket(env: &config::Env, stdin: &[u8]) -> Option<std::path::PathBuf> {
    if env.command == config::Command::Version {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    v["daemon_socket"].as_str().map(std::path::PathBuf::from)
}

/// A call's outcome as the exit code and stdout. Errors carry the config's
/// version when it is one we speak.
pub(crate) fn render(
    out: error::CniResult<Option<serde_json::Value>>,
    stdin: &[u8],
) -> (i32, String) {
    match out {
        Ok(Some(v)) => (0, format!("{v}\n")),
        Ok(None) => (0, String::new()),
        Err(e) => {
            let version = serde_json::from_slice::<serde_json::Value>(stdin)
                .ok()
                .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
                .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| config::LATEST.to_owned());
            (1, format!("{}\n", e.to_json(&version)))
        }
    }
}
