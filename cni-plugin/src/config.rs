//! The network configuration (stdin) and the CNI_* environment.

use crate::error::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// Versions this plugin speaks (VERSION's `supportedVersions`).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest supported version.
pub const LATEST: &str = "1.1.0";

/// Where the controller is and how to authenticate.
#[derive(Debug, Clone, Deserialize)]
pub struct ControllerConf {
    /// `http://HOST:PORT` (plain HTTP; loopback or a trusted node network).
    pub url: String,
    /// File whose first line is the bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Per-request timeout in milliseconds (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// `runtimeConfig` (capabilities the runtime fills in).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default, rename = "portMappings")]
    pub port_mappings: Vec<Value>,
}

/// The plugin's network configuration. Unknown keys are ignored (conflists carry
/// keys for other plugins and runtimes).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default)]
    pub controller: Option<ControllerConf>,
    #[serde(default)]
    pub vpc: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Chassis id this node is registered as on the controller (port binding).
    #[serde(default)]
    pub chassis: Option<String>,
    /// MTU of the pod interface (the overlay MTU); default 1450.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The local switch bridge.
    #[serde(default)]
    pub bridge: Option<String>,
    /// OVSDB of the local switch (`unix:/path/db.sock` or `tcp:…`); default: ovs-vsctl's.
    #[serde(default)]
    pub ovsdb: Option<String>,
    /// Wait for ovs-vswitchd to apply the new port (`cur_cfg`, as ovs-vsctl
    /// does) before ADD returns; default false (see `ovs.rs` for why).
    #[serde(default)]
    pub ovs_wait: bool,
    /// The per-node daemon's socket (`plexus-cni daemon --socket PATH`): when
    /// set, the plugin forwards the call there instead of doing the work
    /// itself (see [`crate::daemon`]).
    #[serde(default)]
    pub daemon_socket: Option<PathBuf>,
    /// Accepted for compatibility with earlier configs (not waiting is the default now).
    #[serde(default)]
    pub ovs_no_wait: bool,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parses stdin: decode failure → 6, missing/ill-typed keys → 7, version → 1.
    pub fn parse(stdin: &[u8]) -> CniResult<Self> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                DECODE_FAILURE,
                "failed to decode network configuration",
                e.to_string(),
            )
        })?;
        let conf: NetConf = serde_json::from_value(v).map_err(|e| {
            CniError::new(
                INVALID_CONFIG,
                "invalid network configuration",
                e.to_string(),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                "incompatible CNI versions",
                format!(
                    "config is \"{}\", plugin supports {:?}",
                    conf.cni_version, SUPPORTED_VERSIONS
                ),
            ));
        }
        if conf.name.is_empty() {
            return Err(CniError::new(
                INVALID_CONFIG,
                "invalid network configuration",
                "name must not be empty",
            ));
        }
        if !conf.runtime_config.port_mappings.is_empty() {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                "unsupported field",
                "runtimeConfig.portMappings is not supported by plexus-cni (chain the portmap plugin)",
            ));
        }
        Ok(conf)
    }

    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(1450)
    }

    pub fn controller(&self) -> CniResult<&ControllerConf> {
        self.controller
            .as_ref()
            .ok_or_else(|| missing("controller"))
    }

    pub fn subnet(&self) -> CniResult<&str> {
        self.subnet.as_deref().ok_or_else(|| missing("subnet"))
    }

    pub fn chassis(&self) -> CniResult<&str> {
        self.chassis.as_deref().ok_or_else(|| missing("chassis"))
    }

    pub fn bridge(&self) -> CniResult<&str> {
        self.bridge.as_deref().ok_or_else(|| missing("bridge"))
    }

    /// Version comparison helper: is the config's version at least `v`?
    pub fn at_least(&self, v: &str) -> bool {
        version_key(&self.cni_version) >= version_key(v)
    }
}

fn missing(field: &str) -> CniError {
    CniError::new(
        INVALID_CONFIG,
        "invalid network configuration",
        format!("`{field}` is required"),
    )
}

/// `1.0.0` → (1, 0, 0) for ordering.
pub fn version_key(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The CNI_* environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: HashMap<String, String>,
    pub path: String,
}

impl Env {
    /// Reads and checks the CNI_* variables the verb needs (failures → 4).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> CniResult<Self> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            Some(other) => return Err(bad_env(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(bad_env("CNI_COMMAND is not set".into())),
        };
        let needs_ctr = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let netns = get("CNI_NETNS").unwrap_or_default();
        if needs_ctr {
            if container_id.is_empty() {
                return Err(bad_env("CNI_CONTAINERID is not set".into()));
            }
            if !valid_container_id(&container_id) {
                return Err(bad_env(format!(
                    "CNI_CONTAINERID {container_id:?}: must start with an alphanumeric and contain only alphanumerics, '_', '.', '-'"
                )));
            }
            if ifname.is_empty() {
                return Err(bad_env("CNI_IFNAME is not set".into()));
            }
            if !valid_ifname(&ifname) {
                return Err(bad_env(format!(
                    "CNI_IFNAME {ifname:?} is not a valid interface name"
                )));
            }
            if matches!(command, Command::Add | Command::Check) && netns.is_empty() {
                return Err(bad_env("CNI_NETNS is not set".into()));
            }
        }
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
            path: get("CNI_PATH").unwrap_or_default(),
        })
    }
}

fn bad_env(details: String) -> CniError {
    CniError::new(INVALID_ENV, "invalid environment variables", details)
}

fn valid_container_id(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `K=V;K2=V2` (CNI_ARGS) → map; malformed pairs → 4.
pub fn parse_args(s: &str) -> CniResult<HashMap<String, String>> {
    let mut m = HashMap::new();
    for kv in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(bad_env(format!("CNI_ARGS: {kv:?} is not KEY=VALUE")));
        };
        m.insert(k.to_owned(), v.to_owned());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_names() {
        let a = parse_args("IgnoreUnknown=1;K8S_POD_NAME=x").unwrap();
        assert_eq!(a["K8S_POD_NAME"], "x");
        assert_eq!(parse_args("bad").unwrap_err().code, INVALID_ENV);
        assert!(valid_container_id("abc-1.2_3"));
        assert!(!valid_container_id("-abc"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(valid_ifname("eth0"));
        assert!(version_key("1.1.0") > version_key("0.4.0"));
    }

    #[test]
    fn config_errors() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, DECODE_FAILURE);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            INVALID_CONFIG
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"plexus-cni"}"#)
                .unwrap_err()
                .code,
            INCOMPATIBLE_VERSION
        );
    }
}
