//! Host and container link configuration over rtnetlink ([`crate::nl`]):
//! the veth is created with its peer directly in the pod's netns under its
//! final name; the pod side is configured from a thread inside that netns.

use crate::error::*;
use crate::netns;
use crate::nl::{self, Netlink, RouteInfo, VethReq};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// What ADD creates on the host side.
#[derive(Debug, Clone)]
pub struct VethPlan<'a> {
    pub host: &'a str,
    /// Set as the host side's alias: lets GC find veths of crashed ADDs.
    pub alias: &'a str,
    pub host_mac: &'a str,
    pub ifname: &'a str,
    pub mtu: u32,
    pub netns: &'a Path,
    /// When known before the veth exists (the runtime asked for it): the
    /// pod side is created with this MAC.
    pub pod_mac: Option<&'a str>,
}

/// The pod side's configuration.
#[derive(Debug, Clone)]
pub struct PodPlan<'a> {
    pub ifname: &'a str,
    pub mac: Option<&'a str>,
    pub netns: &'a Path,
    /// `10.0.0.5/24`
    pub cidr: &'a str,
    pub gateway: Option<&'a str>,
    /// The pod side's ifindex when [`create_veth`] learnt it; looked up by
    /// `ifname` otherwise.
    pub index: Option<i32>,
}

fn link_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        LINK_FAILURE,
        "link configuration failed",
        format!("{what}: {e}"),
    )
}

fn netns_err(p: &Path, e: io::Error) -> CniError {
    CniError::new(
        UNKNOWN_CONTAINER,
        "container network namespace unavailable",
        format!("{}: {e}", p.display()),
    )
}

fn mac_of(s: &str) -> CniResult<[u8; 6]> {
    nl::parse_mac(s).ok_or_else(|| {
        CniError::new(
            INVALID_CONFIG,
            "invalid network configuration",
            format!("bad MAC address {s:?}"),
        )
    })
}

/// Creates the veth pair: host side up in the calling thread's netns, the
/// peer (down, MTU set) in the pod netns under its final name. A leftover
/// pair of a crashed ADD of the same attachment is replaced. The host side
/// gets its alias (and no IPv6 link-local address) in one request after the
/// pair exists, before the pod side can bring its carrier up. Returns the
/// pod side's ifindex when the kernel reported it (see [`Netlink::create_veth`]).
pub fn create_veth(p: &VethPlan<'_>) -> CniResult<Option<i32>> {
    let ns = File::open(p.netns).map_err(|e| netns_err(p.netns, e))?;
    let req = VethReq {
        host: p.host,
        host_mac: mac_of(p.host_mac)?,
        alias: p.alias,
        mtu: p.mtu,
        peer: p.ifname,
        peer_ns: ns.as_raw_fd(),
        peer_mac: p.pod_mac.map(mac_of).transpose()?,
    };
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    let create = |nl: &mut Netlink| nl.create_veth(&req);
    let what = || format!("creating veth {}/{}", p.host, p.ifname);
    match create(&mut nl) {
        Ok(peer) => Ok(peer),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // A leftover of a crashed ADD (same container + ifname): replace it.
            let _ = nl.delete_link(p.host);
            let _ = netns::run_in(p.netns, || {
                Netlink::open().and_then(|mut n| n.delete_link(p.ifname))
            });
            create(&mut nl).map_err(|e| link_err(&what(), e))
        }
        Err(e) => Err(link_err(&what(), e)),
    }
}

/// `(name, alias)` of host links whose alias starts with `prefix`.
pub fn links_with_alias(prefix: &str) -> CniResult<Vec<(String, String)>> {
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    nl.links_with_alias(prefix)
        .map_err(|e| link_err("listing links", e))
}

/// Inside the pod netns: MAC, up, address, default route via the gateway.
pub fn configure_pod(p: &PodPlan<'_>) -> CniResult<()> {
    netns::run_in(p.netns, || configure_pod_here(p)).map_err(|e| netns_err(p.netns, e))?
}

/// [`configure_pod`]'s work, on a thread already inside the pod netns
/// ([`netns::spawn_in`]): the link lookup unless [`create_veth`] gave its
/// index, then MAC/up, address and default route in one netlink `send`.
pub fn configure_pod_here(p: &PodPlan<'_>) -> CniResult<()> {
    let nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    configure_pod_with(nl, p)
}

/// [`configure_pod`]'s work from the calling thread, which stays in its
/// namespace: only the netlink socket is opened inside the pod netns
/// ([`netns::visit`]). The daemon's way: no thread per call.
pub fn configure_pod_visiting(p: &PodPlan<'_>) -> CniResult<()> {
    let nl = netns::visit(p.netns, Netlink::open)
        .map_err(|e| netns_err(p.netns, e))?
        .map_err(|e| link_err("netlink socket in the pod netns", e))?;
    configure_pod_with(nl, p)
}

fn configure_pod_with(mut nl: Netlink, p: &PodPlan<'_>) -> CniResult<()> {
    let mac = p.mac.map(mac_of).transpose()?;
    let (addr, plen) = parse_cidr(p.cidr).ok_or_else(|| {
        CniError::new(
            CONTROLLER_REJECTED,
            "controller returned a bad address",
            p.cidr.to_owned(),
        )
    })?;
    let gw: Option<IpAddr> = match p.gateway {
        Some(g) => Some(g.parse().map_err(|_| {
            CniError::new(
                CONTROLLER_REJECTED,
                "controller returned a bad gateway",
                g.to_owned(),
            )
        })?),
        None => None,
    };
    let index = match p.index {
        Some(i) => i,
        None => {
            nl.link(p.ifname)
                .map_err(|e| link_err(p.ifname, e))?
                .ok_or_else(|| link_err(p.ifname, "missing in the pod netns"))?
                .index
        }
    };
    nl.configure(index, mac.as_ref(), addr, plen, gw)
        .map_err(|(step, e)| {
            let what = match step {
                "add address" => format!("{}: add {}", p.ifname, p.cidr),
                "add default route" => format!(
                    "{}: default via {}",
                    p.ifname,
                    p.gateway.unwrap_or_default()
                ),
                s => format!("{}: {s}", p.ifname),
            };
            link_err(&what, e)
        })
}

/// The netns error of [`netns::spawn_in`] as a CNI error.
pub fn netns_error(p: &Path, e: io::Error) -> CniError {
    netns_err(p, e)
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    Some((a.parse().ok()?, l.parse().ok()?))
}

/// Deletes a link in the calling thread's netns; a missing device is fine.
pub fn delete_host(host: &str) -> CniResult<()> {
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    match nl.delete_link(host) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(link_err(&format!("deleting {host}"), e)),
    }
}

/// Whether a link exists in the calling thread's netns.
/// [`delete_host`] that returns as soon as the link is gone from the host
/// (unlisted: its name free, nothing left to see), while the kernel's
/// teardown goes on: `RTM_DELLINK` only returns after the unregistration's
/// RCU barrier and reference wait, 10–30 ms of a DEL here. The request runs
/// on its own thread, which the daemon outlives; a one-shot plugin process
/// would wait for it at exit anyway.
pub fn delete_host_until_gone(host: &str) -> CniResult<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("plexus-cni-dellink".into())
        .spawn(move || {
            let _ = tx.send(delete_host(&name));
        })
        .map_err(|e| link_err("starting the link deletion", e))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    loop {
        match rx.recv_timeout(std::time::Duration::from_micros(500)) {
            // Done (or failed) before we saw it gone.
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(link_err(
                    &format!("deleting {host}"),
                    "deletion thread ended",
                ));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if nl.link(host).map_err(|e| link_err(host, e))?.is_none() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(link_err(
                &format!("deleting {host}"),
                "still present after 10 s",
            ));
        }
    }
}

pub fn exists(name: &str) -> CniResult<bool> {
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    nl.link(name)
        .map(|l| l.is_some())
        .map_err(|e| link_err(name, e))
}

/// The pod interface as read back (CHECK).
#[derive(Debug, Clone)]
pub struct PodLink {
    pub mac: String,
    pub mtu: u32,
    /// `addr/prefix`
    pub addrs: Vec<String>,
    pub routes: Vec<RouteInfo>,
}

/// Reads the interface, its addresses and routes inside the netns
/// (`Ok(None)`: no such interface).
pub fn inspect(netns: &Path, ifname: &str) -> CniResult<Option<PodLink>> {
    netns::run_in(netns, || -> CniResult<Option<PodLink>> {
        let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
        let Some(link) = nl.link(ifname).map_err(|e| link_err(ifname, e))? else {
            return Ok(None);
        };
        let addrs = nl.addrs(link.index).map_err(|e| link_err(ifname, e))?;
        let routes = nl.routes(link.index).map_err(|e| link_err(ifname, e))?;
        Ok(Some(PodLink {
            mac: link.mac,
            mtu: link.mtu,
            addrs,
            routes,
        }))
    })
    .map_err(|e| netns_err(netns, e))?
}
