//! The local switch (Open vSwitch) through `ovs-vsctl`.

use crate::error::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// External-id keys this plugin sets on the Interface it plugs.
pub const KEY_IFACE_ID: &str = "iface-id";
pub const KEY_NETWORK: &str = "plexus-cni-network";
pub const KEY_CONTAINER: &str = "plexus-cni-container";
pub const KEY_IFNAME: &str = "plexus-cni-ifname";

#[derive(Debug, Clone)]
pub struct Ovs {
    pub db: Option<String>,
    pub no_wait: bool,
}

/// An Interface row: name and external_ids.
#[derive(Debug, Clone)]
pub struct IfaceRow {
    pub name: String,
    pub external_ids: BTreeMap<String, String>,
}

impl Ovs {
    fn run(&self, args: &[&str], wait: bool) -> CniResult<String> {
        let mut c = Command::new("ovs-vsctl");
        if let Some(db) = &self.db {
            c.arg(format!("--db={db}"));
        }
        c.arg("--timeout=10");
        if !wait || self.no_wait {
            c.arg("--no-wait");
        }
        let out = c.args(args).stdin(Stdio::null()).output().map_err(|e| {
            CniError::new(SWITCH_FAILURE, "running ovs-vsctl failed", e.to_string())
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(CniError::new(
                SWITCH_FAILURE,
                "switch operation failed",
                format!(
                    "ovs-vsctl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ))
        }
    }

    /// Plugs `iface` into `bridge` with our external_ids (idempotent).
    pub fn add_port(&self, bridge: &str, iface: &str, ids: &[(&str, &str)]) -> CniResult<()> {
        let sets: Vec<String> = ids
            .iter()
            .map(|(k, v)| format!("external_ids:{k}=\"{v}\""))
            .collect();
        let mut args = vec![
            "--may-exist",
            "add-port",
            bridge,
            iface,
            "--",
            "set",
            "Interface",
            iface,
        ];
        args.extend(sets.iter().map(String::as_str));
        self.run(&args, true).map(drop)
    }

    /// Reads the Interface row (if any) and deletes its port in one transaction.
    pub fn take_port(&self, iface: &str) -> CniResult<Option<IfaceRow>> {
        let cond = format!("name={iface}");
        let out = self.run(
            &[
                "--format=json",
                "--",
                "--columns=name,external_ids",
                "find",
                "Interface",
                &cond,
                "--",
                "--if-exists",
                "del-port",
                iface,
            ],
            false,
        )?;
        Ok(parse_rows(&out)?.into_iter().next())
    }

    /// Interfaces carrying `external_ids:KEY=VALUE`.
    pub fn find(&self, key: &str, value: &str) -> CniResult<Vec<IfaceRow>> {
        let cond = format!("external_ids:{key}=\"{value}\"");
        let out = self.run(
            &[
                "--format=json",
                "--columns=name,external_ids",
                "find",
                "Interface",
                &cond,
            ],
            false,
        )?;
        parse_rows(&out)
    }

    pub fn bridge_exists(&self, bridge: &str) -> CniResult<bool> {
        let mut c = Command::new("ovs-vsctl");
        if let Some(db) = &self.db {
            c.arg(format!("--db={db}"));
        }
        let st = c
            .args(["--timeout=5", "br-exists", bridge])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| {
                CniError::new(SWITCH_FAILURE, "running ovs-vsctl failed", e.to_string())
            })?;
        match st.code() {
            Some(0) => Ok(true),
            Some(2) => Ok(false),
            _ => Err(CniError::new(
                SWITCH_FAILURE,
                "switch unreachable",
                format!("ovs-vsctl br-exists {bridge}: {st}"),
            )),
        }
    }
}

/// `ovs-vsctl --format=json` table output with columns name, external_ids.
fn parse_rows(out: &str) -> CniResult<Vec<IfaceRow>> {
    let bad = |d: String| CniError::new(SWITCH_FAILURE, "unexpected ovs-vsctl output", d);
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| bad(format!("{e}: {out}")))?;
    let mut rows = Vec::new();
    for r in v["data"].as_array().into_iter().flatten() {
        let name = r[0].as_str().unwrap_or_default().to_owned();
        let mut external_ids = BTreeMap::new();
        for kv in r[1][1].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (kv[0].as_str(), kv[1].as_str()) {
                external_ids.insert(k.to_owned(), v.to_owned());
            }
        }
        rows.push(IfaceRow { name, external_ids });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_find_output() {
        let out = r#"{"data":[["plx1",["map",[["iface-id","p-1"],["plexus-cni-network","n"]]]]],"headings":["name","external_ids"]}"#;
        let rows = super::parse_rows(out).unwrap();
        assert_eq!(rows[0].name, "plx1");
        assert_eq!(rows[0].external_ids["iface-id"], "p-1");
    }
}
