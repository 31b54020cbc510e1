//! Network namespaces and veth pairs owned by a test or a topology run.
//!
//! A [`Netns`] created by [`Netns::create`] is deleted on drop (with every
//! interface inside it); one obtained by [`Netns::existing`] is left alone.

use crate::proc::run_ok;
use anyhow::{Result, bail};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `ip ARGS...` and returns its stdout.
pub fn ip(args: &[&str]) -> Result<String> {
    run_ok(Command::new("ip").args(args), IP_TIMEOUT)
}

/// Names of the network namespaces that currently exist.
pub fn list() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// True when a namespace of this name exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// A unique, short (≤ 15 chars, so it also fits interface names) name with
/// `prefix`, made of this process's pid and a counter.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let s = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    s.chars().take(15).collect()
}

/// A network namespace; deleted on drop if this handle created it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

impl Netns {
    /// Creates namespace `name` (error if it already exists) with `lo` up.
    pub fn create(name: &str) -> Result<Self> {
        if exists(name) {
            bail!("network namespace {name} already exists");
        }
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
            owned: true,
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Refers to an existing namespace without taking ownership.
    pub fn existing(name: &str) -> Result<Self> {
        if !exists(name) {
            bail!("network namespace {name} does not exist");
        }
        Ok(Self {
            name: name.to_owned(),
            owned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Gives up ownership: the namespace survives this handle.
    pub fn persist(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }

    /// Deletes the namespace now (if owned); errors are reported.
    pub fn delete(mut self) -> Result<()> {
        let owned = std::mem::replace(&mut self.owned, false);
        if owned && exists(&self.name) {
            ip(&["netns", "del", &self.name])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned
            && exists(&self.name)
            && let Err(e) = ip(&["netns", "del", &self.name])
        {
            eprintln!("warning: deleting netns {}: {e:#}", self.name);
        }
    }
}

/// Creates a veth pair: `a` inside namespace `ns_a`, `b` inside `ns_b`, both up.
/// The pair disappears with either namespace.
pub fn veth(a: &str, ns_a: &Netns, b: &str, ns_b: &Netns) -> Result<()> {
    ip(&[
        "link",
        "add",
        a,
        "netns",
        ns_a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b,
        "netns",
        ns_b.name(),
    ])?;
    ns_a.ip(&["link", "set", a, "up"])?;
    ns_b.ip(&["link", "set", b, "up"])?;
    Ok(())
}
