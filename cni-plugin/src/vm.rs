//! VM attachment over a tap (`plexus port attach --tap NAME PORT` / `detach`).
//!
//! Attach creates the tap (persistent, `IFF_TAP | IFF_NO_PI`, optionally
//! multi-queue) or adopts an existing one, brings it up, binds the
//! controller port to `chassis` + tap name (`PUT /v1/ports/{id}/binding`)
//! and plugs the tap into the local switch as a system port in the same
//! single OVSDB transaction the CNI plugin uses, with
//! `external_ids:iface-id=PORT`. Whether attach created the tap is recorded
//! on the Interface row (`plexus-tap-created`), so detach — which unplugs,
//! unbinds and deletes the tap only if attach created it — needs no other
//! state. qemu then opens the tap by name (`-netdev tap,ifname=NAME,
//! script=no,downscript=no`), and the VM uses the port's MAC.

use crate::controller::Controller;
use crate::error::*;
use crate::nl::Netlink;
use crate::ovs::{self, Ovs};
use crate::tun;
use plexus_api::{Port, PortBinding};

/// External-id keys of a tap attachment.
pub const KEY_ATTACH: &str = "plexus-attach";
pub const KEY_TAP_CREATED: &str = "plexus-tap-created";

/// What `attach` needs.
#[derive(Debug, Clone)]
pub struct TapAttach<'a> {
    pub tap: &'a str,
    pub port_id: &'a str,
    pub chassis_id: &'a str,
    pub bridge: &'a str,
    /// OVSDB endpoint (`unix:PATH`, `tcp:IP:PORT`; default ovs-vsctl's).
    pub ovsdb: Option<&'a str>,
    /// Wait until the switch applied the change (`cur_cfg`).
    pub ovs_wait: bool,
    /// Create the tap with `IFF_MULTI_QUEUE` (qemu `queues=N`, vhost).
    pub multi_queue: bool,
    /// Owner uid of a created tap (qemu not running as root).
    pub owner: Option<u32>,
    pub mtu: Option<u32>,
}

/// The outcome of an attach.
#[derive(Debug, Clone)]
pub struct Attached {
    pub port: Port,
    /// The tap did not exist and was created (detach will delete it).
    pub created: bool,
}

/// The outcome of a detach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The interface unplugged (None: the port was not attached).
    pub iface: Option<String>,
    pub tap_deleted: bool,
}

fn link_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        LINK_FAILURE,
        "tap configuration failed",
        format!("{what}: {e}"),
    )
}

fn invalid(details: String) -> CniError {
    CniError::new(INVALID_CONFIG, "invalid tap attachment", details)
}

/// Creates tap `name` or checks that an existing `name` is a usable tap;
/// `Ok(true)` when it was created here.
pub fn ensure_tap(
    nl: &mut Netlink,
    name: &str,
    multi_queue: bool,
    owner: Option<u32>,
) -> CniResult<bool> {
    if !tun::valid_ifname(name) {
        return Err(invalid(format!("{name:?} is not a valid interface name")));
    }
    match nl.link(name).map_err(|e| link_err(name, e))? {
        Some(l) => match l.tun {
            Some(t) if t.tap && !t.pi => {
                if multi_queue && !t.multi_queue {
                    return Err(invalid(format!(
                        "{name} exists as a single-queue tap; multi-queue was asked for"
                    )));
                }
                Ok(false)
            }
            Some(t) if !t.tap => Err(invalid(format!("{name} is a tun device, not a tap"))),
            Some(_) => Err(invalid(format!(
                "{name} is a tap with packet information (no IFF_NO_PI)"
            ))),
            None => Err(invalid(format!(
                "{name} exists and is not a tap (kind {:?})",
                if l.kind.is_empty() { "device" } else { &l.kind }
            ))),
        },
        None => {
            let q = tun::open_queue(name, multi_queue)
                .map_err(|e| link_err(&format!("creating tap {name}"), e))?;
            let done = tun::set_persist(&q, true)
                .and_then(|()| owner.map_or(Ok(()), |u| tun::set_owner(&q, u)));
            if let Err(e) = done {
                // Not persistent yet: closing the queue removes the device.
                return Err(link_err(&format!("configuring tap {name}"), e));
            }
            Ok(true)
        }
    }
}

/// Deletes a tap this module created; a missing device is fine.
fn delete_tap(nl: &mut Netlink, name: &str) -> CniResult<bool> {
    match nl.link(name).map_err(|e| link_err(name, e))? {
        Some(l) if l.tun.is_some() => {
            nl.delete_link(name)
                .map_err(|e| link_err(&format!("deleting tap {name}"), e))?;
            Ok(true)
        }
        // Gone, or replaced by something that is not a tap: leave it.
        _ => Ok(false),
    }
}

/// Attaches tap `a.tap` to controller port `a.port_id` (see the module docs).
/// On error everything this call did is undone.
pub fn attach(ctl: &Controller, a: &TapAttach<'_>) -> CniResult<Attached> {
    let port = ctl.port(a.port_id)?.ok_or_else(|| {
        CniError::new(
            CONTROLLER_REJECTED,
            "no such port",
            format!("the controller has no port {}", a.port_id),
        )
    })?;
    let binding = PortBinding {
        chassis_id: a.chassis_id.to_owned(),
        iface: a.tap.to_owned(),
    };
    if let Some(b) = &port.spec.binding
        && *b != binding
    {
        return Err(CniError::new(
            CONTROLLER_REJECTED,
            "port is attached elsewhere",
            format!(
                "port {} is bound to interface {} on chassis {}: detach it first",
                port.id, b.iface, b.chassis_id
            ),
        ));
    }
    let was_bound = port.spec.binding.is_some();
    let ovs = Ovs::connect(a.ovsdb, a.ovs_wait)?;
    let prior = ovs.interface(a.tap)?;
    if let Some(r) = &prior
        && let Some(owner) = r.external_ids.get(ovs::KEY_IFACE_ID)
        && owner != a.port_id
    {
        return Err(CniError::new(
            SWITCH_FAILURE,
            "interface is plugged for another port",
            format!("{} carries iface-id {owner} on the switch", a.tap),
        ));
    }
    let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
    let created_now = ensure_tap(&mut nl, a.tap, a.multi_queue, a.owner)?;
    // A re-attach keeps the record of who created the tap.
    let created = created_now
        || prior.as_ref().is_some_and(|r| {
            r.external_ids.get(KEY_TAP_CREATED).map(String::as_str) == Some("true")
        });
    let undo = |nl: &mut Netlink, bound: bool| {
        if bound && !was_bound {
            let _ = ctl.unbind_port(a.port_id);
        }
        if created_now {
            let _ = delete_tap(nl, a.tap);
        }
    };
    let up = (|| {
        let l = nl
            .link(a.tap)
            .map_err(|e| link_err(a.tap, e))?
            .ok_or_else(|| link_err(a.tap, "vanished"))?;
        if let Some(m) = a.mtu {
            nl.set_mtu(l.index, m)
                .map_err(|e| link_err(&format!("{}: set MTU {m}", a.tap), e))?;
        }
        nl.set_mac_up(l.index, None)
            .map_err(|e| link_err(&format!("{}: set up", a.tap), e))
    })();
    if let Err(e) = up {
        undo(&mut nl, false);
        return Err(e);
    }
    let port = match ctl.bind_port(a.port_id, &binding) {
        Ok(p) => p,
        Err(e) => {
            undo(&mut nl, false);
            return Err(e);
        }
    };
    let created_s = if created { "true" } else { "false" };
    if let Err(e) = ovs.add_port(
        a.bridge,
        a.tap,
        &[
            (ovs::KEY_IFACE_ID, a.port_id),
            (KEY_ATTACH, "tap"),
            (KEY_TAP_CREATED, created_s),
        ],
    ) {
        undo(&mut nl, true);
        return Err(e);
    }
    Ok(Attached { port, created })
}

/// Detaches port `port_id`: unplugs its interface (`tap`, or the port's
/// binding), deletes the tap if attach created it, unbinds the port.
/// Detaching a port that is not attached succeeds and does nothing.
pub fn detach(
    ctl: &Controller,
    port_id: &str,
    tap: Option<&str>,
    ovsdb: Option<&str>,
) -> CniResult<Detached> {
    let port = ctl.port(port_id)?.ok_or_else(|| {
        CniError::new(
            CONTROLLER_REJECTED,
            "no such port",
            format!("the controller has no port {port_id}"),
        )
    })?;
    let bound = port.spec.binding.as_ref().map(|b| b.iface.as_str());
    if let (Some(t), Some(b)) = (tap, bound)
        && t != b
    {
        return Err(invalid(format!(
            "port {port_id} is bound to interface {b}, not {t}"
        )));
    }
    let Some(iface) = tap.or(bound) else {
        return Ok(Detached {
            iface: None,
            tap_deleted: false,
        });
    };
    if !tun::valid_ifname(iface) {
        return Err(invalid(format!("{iface:?} is not a valid interface name")));
    }
    let ovs = Ovs::connect(ovsdb, false)?;
    let row = ovs.interface(iface)?;
    if let Some(r) = &row
        && let Some(owner) = r.external_ids.get(ovs::KEY_IFACE_ID)
        && owner != port_id
    {
        return Err(CniError::new(
            SWITCH_FAILURE,
            "interface is plugged for another port",
            format!("{iface} carries iface-id {owner} on the switch"),
        ));
    }
    let created = row
        .as_ref()
        .is_some_and(|r| r.external_ids.get(KEY_TAP_CREATED).map(String::as_str) == Some("true"));
    if row.is_some() {
        ovs.take_port(iface)?;
    }
    let tap_deleted = if created {
        let mut nl = Netlink::open().map_err(|e| link_err("netlink socket", e))?;
        delete_tap(&mut nl, iface)?
    } else {
        false
    };
    if port.spec.binding.is_some() {
        ctl.unbind_port(port_id)?;
    }
    Ok(Detached {
        iface: Some(iface.to_owned()),
        tap_deleted,
    })
}
