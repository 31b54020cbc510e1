//! Host and container link configuration. First version: `ip -batch -` (one
//! exec per namespace), isolated here so it can be replaced by netlink.

use crate::error::*;
use crate::netns;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `ip -batch -` with `lines` on stdin (in the calling thread's netns).
pub fn ip_batch(lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running ip: {e}"))?;
    {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut s = lines.join("\n");
        s.push('\n');
        stdin
            .write_all(s.as_bytes())
            .map_err(|e| format!("writing to ip: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch [{}]: {}",
            lines.join("; "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip ARGS` and returns stdout.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What ADD puts on the wire.
#[derive(Debug, Clone)]
pub struct VethPlan<'a> {
    pub host: &'a str,
    pub host_mac: &'a str,
    pub ifname: &'a str,
    pub mac: &'a str,
    pub mtu: u32,
    pub netns: &'a Path,
    /// `10.0.0.5/24`
    pub cidr: &'a str,
    pub gateway: Option<&'a str>,
}

/// Creates the veth pair (peer directly in the netns), configures the
/// container side (address, up, default route) and brings the host side up.
pub fn create_veth(p: &VethPlan<'_>) -> CniResult<()> {
    let add = format!(
        "link add name {} address {} mtu {} type veth peer name {} address {} mtu {} netns {}",
        p.host,
        p.host_mac,
        p.mtu,
        p.ifname,
        p.mac,
        p.mtu,
        p.netns.display()
    );
    let up = format!("link set {} up", p.host);
    let host = [add, up];
    if let Err(e) = ip_batch(&host) {
        if !e.contains("File exists") {
            return Err(link_err(e));
        }
        // A leftover of a crashed ADD (same container + ifname): replace it.
        let _ = ip(&["link", "del", p.host]);
        let _ = netns::run_in(p.netns, || ip(&["link", "del", p.ifname]));
        ip_batch(&host).map_err(link_err)?;
    }
    let mut inner = vec![
        format!("addr add {} dev {}", p.cidr, p.ifname),
        format!("link set {} up", p.ifname),
    ];
    if let Some(gw) = p.gateway {
        inner.push(format!("route add default via {gw} dev {}", p.ifname));
    }
    netns::run_in(p.netns, || ip_batch(&inner))
        .map_err(|e| link_err(format!("entering {}: {e}", p.netns.display())))?
        .map_err(link_err)
}

/// Deletes the host side of the pair (and with it the container side);
/// a missing device is fine.
pub fn delete_host(host: &str) -> CniResult<()> {
    match ip(&["link", "del", host]) {
        Ok(_) => Ok(()),
        Err(e) if e.contains("Cannot find device") || e.contains("does not exist") => Ok(()),
        Err(e) => Err(link_err(e)),
    }
}

/// `ip -j addr show dev IFNAME` + `ip -j route show dev IFNAME` inside the netns.
pub fn inspect(netns: &Path, ifname: &str) -> CniResult<Option<(String, String)>> {
    netns::run_in(netns, || {
        let a = ip(&["-j", "addr", "show", "dev", ifname]);
        let r = ip(&["-j", "route", "show", "dev", ifname]);
        match (a, r) {
            (Ok(a), Ok(r)) => Ok(Some((a, r))),
            (Err(e), _) | (_, Err(e))
                if e.contains("does not exist") || e.contains("Cannot find device") =>
            {
                Ok(None)
            }
            (Err(e), _) | (_, Err(e)) => Err(link_err(e)),
        }
    })
    .map_err(|e| {
        CniError::new(
            UNKNOWN_CONTAINER,
            "container network namespace unavailable",
            format!("{}: {e}", netns.display()),
        )
    })?
}

fn link_err(e: String) -> CniError {
    CniError::new(LINK_FAILURE, "link configuration failed", e)
}
