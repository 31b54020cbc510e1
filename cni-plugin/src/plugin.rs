//! The verbs: ADD, DEL, CHECK, STATUS, GC, VERSION.

use crate::config::{Command, ControllerConf, Env, LATEST, NetConf, SUPPORTED_VERSIONS};
use crate::controller::{Controller, Created, PendingPort};
use crate::error::*;
use crate::link::{self, PodPlan, VethPlan};
use crate::netns;
use crate::ovs::{self, Ovs};
use plexus_api::{Port, PortBinding, PortSpec};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;

/// What the verbs run with: nothing shared (one plugin process per call), or
/// the per-node daemon's shared controller and OVSDB connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx<'a> {
    shared: Option<&'a crate::daemon::Shared>,
}

impl<'a> Ctx<'a> {
    /// Calls served by the daemon, sharing its connections.
    pub fn daemon(shared: &'a crate::daemon::Shared) -> Self {
        Self {
            shared: Some(shared),
        }
    }

    fn controller(&self, c: &ControllerConf) -> CniResult<Controller> {
        let ctl = Controller::new(c)?;
        Ok(match self.shared {
            Some(s) => {
                let pool = s.http_pool(ctl.authority());
                ctl.pooled(pool)
            }
            None => ctl,
        })
    }

    /// The subnet (the daemon caches it briefly: its CIDR and gateway are
    /// all ADD needs, and they do not change under a running pod).
    fn subnet(&self, ctl: &Controller, id: &str) -> CniResult<plexus_api::Subnet> {
        match self.shared {
            Some(s) => s.subnet(ctl, id),
            None => ctl.subnet(id),
        }
    }

    fn ovs(&self, conf: &NetConf) -> CniResult<Ovs> {
        match self.shared {
            Some(s) => s.ovs(conf.ovsdb.as_deref(), conf.ovs_wait),
            None => Ovs::connect(conf.ovsdb.as_deref(), conf.ovs_wait),
        }
    }
}

/// Runs one invocation in this process: returns the stdout JSON (None: print nothing).
pub fn run(env: &Env, stdin: &[u8]) -> CniResult<Option<Value>> {
    run_with(Ctx::default(), env, stdin)
}

/// [`run`] with the daemon's shared connections (or none).
pub fn run_with(cx: Ctx<'_>, env: &Env, stdin: &[u8]) -> CniResult<Option<Value>> {
    if env.command == Command::Version {
        let asked = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
            .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
            .unwrap_or_else(|| LATEST.to_owned());
        return Ok(Some(json!({
            "cniVersion": asked,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let conf = NetConf::parse(stdin)?;
    trace("parsed");
    match env.command {
        Command::Add => add(cx, env, &conf).map(Some),
        Command::Del => del(cx, env, &conf).map(|()| None),
        Command::Check => check(cx, env, &conf).map(|()| None),
        Command::Status => status(cx, &conf).map(|()| None),
        Command::Gc => gc(cx, &conf).map(|()| None),
        Command::Version => unreachable!(),
    }
}

/// Host-side veth name: `plx` + 12 hex digits of a hash of container id and ifname.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    format!("plx{:012x}", fnv1a(container_id, ifname) & 0xffff_ffff_ffff)
}

fn fnv1a(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Locally administered unicast MAC for the host side.
fn host_mac(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(ifname, container_id).to_be_bytes();
    format!(
        "0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0], h[1], h[2], h[3], h[4]
    )
}

/// `binding.iface` and the port name identify the attachment on the controller.
/// It is the switch port's name (the host-side veth), which is how the
/// controller's southbound finds the port's ofport (`PORT_DESC`).
pub fn binding_iface(container_id: &str, ifname: &str) -> String {
    host_ifname(container_id, ifname)
}

fn port_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!("cni/{network}/{container_id}/{ifname}")
}

/// Alias of the host-side veth (`ifalias`, up to 255 bytes).
fn link_alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("plexus-cni/{network}/{container_id}/{ifname}")
}

/// Test hook: `PLEXUS_CNI_TEST_PAUSE=after-veth` makes ADD sleep (up to
/// 60 s) right after creating the veth, so a test can kill -9 it there.
fn test_pause(point: &str) {
    if std::env::var("PLEXUS_CNI_TEST_PAUSE").as_deref() == Ok(point) {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// `PLEXUS_CNI_TRACE=1`: per-step timestamps on stderr (see [`crate::trace`]).
fn trace(what: &str) {
    crate::trace::step(what);
}

fn joined<T>(r: std::thread::Result<CniResult<T>>) -> CniResult<T> {
    r.unwrap_or_else(|_| {
        Err(CniError::new(
            IO_FAILURE,
            "internal error",
            "worker thread panicked",
        ))
    })
}

/// Creates the attachment's controller port; a port left bound to the same
/// attachment by a crashed ADD is replaced.
fn create_port(ctl: &Controller, spec: &PortSpec, binding: &PortBinding) -> CniResult<Port> {
    finish_port(ctl, ctl.send_create_port(spec)?, spec, binding)
}

/// [`create_port`] from a request already sent.
fn finish_port(
    ctl: &Controller,
    sent: PendingPort<'_>,
    spec: &PortSpec,
    binding: &PortBinding,
) -> CniResult<Port> {
    match sent.finish()? {
        Created::Port(p) => Ok(*p),
        Created::BindingTaken => {
            for p in ctl.ports()? {
                if p.spec.binding.as_ref() == Some(binding) {
                    ctl.delete_port(&p.id)?;
                }
            }
            match ctl.create_port(spec)? {
                Created::Port(p) => Ok(*p),
                Created::BindingTaken => Err(CniError::new(
                    CONTROLLER_REJECTED,
                    "controller port binding conflict",
                    binding.iface.clone(),
                )),
            }
        }
    }
}

/// ADD. Two phases, each running its independent parts in parallel:
/// 1. controller: read the subnet ‖ create the port (IPAM) — local: create the
///    veth (peer straight into the pod netns) and connect to OVSDB;
/// 2. pod netns: MAC, up, address, default route ‖ OVSDB: plug the port
///    with `iface-id` = the controller port (needs phase 1's port id).
///
/// The daemon serves many calls at once and runs a call's steps on its one
/// thread: subnet from its cache, the port request sent, the veth created
/// while the controller allocates, the port's answer read, then the switch
/// plug and the pod's MAC, address and route.
fn add(cx: Ctx<'_>, env: &Env, conf: &NetConf) -> CniResult<Value> {
    let ctl = cx.controller(conf.controller()?)?;
    let subnet_id = conf.subnet()?;
    let chassis = conf.chassis()?;
    let bridge = conf.bridge()?;
    let netns = Path::new(&env.netns);
    if !netns.exists() {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            "container network namespace does not exist",
            env.netns.clone(),
        ));
    }
    let prev = match &conf.prev_result {
        Some(p) if p.is_object() => Some(p.clone()),
        Some(_) => {
            return Err(CniError::new(
                DECODE_FAILURE,
                "failed to decode prevResult",
                "prevResult is not an object",
            ));
        }
        None => None,
    };
    let mut ips: Vec<String> = conf
        .runtime_config
        .ips
        .iter()
        .map(|s| s.split('/').next().unwrap_or(s).to_owned())
        .collect();
    if ips.is_empty()
        && let Some(ip) = env.args.get("IP")
    {
        ips.push(ip.clone());
    }
    let mac = conf
        .runtime_config
        .mac
        .clone()
        .or_else(|| env.args.get("MAC").cloned());
    let binding = PortBinding {
        chassis_id: chassis.to_owned(),
        iface: binding_iface(&env.container_id, &env.ifname),
    };
    let spec = PortSpec {
        subnet_id: subnet_id.to_owned(),
        name: port_name(&conf.name, &env.container_id, &env.ifname),
        mac,
        ips,
        port_security: true,
        security_groups: conf.security_groups.clone(),
        binding: Some(binding.clone()),
    };
    let host = host_ifname(&env.container_id, &env.ifname);
    let hmac = host_mac(&env.container_id, &env.ifname);
    let alias = link_alias(&conf.name, &env.container_id, &env.ifname);

    let veth = VethPlan {
        host: &host,
        alias: &alias,
        host_mac: &hmac,
        ifname: &env.ifname,
        mtu: conf.mtu(),
        netns,
        pod_mac: spec.mac.as_deref(),
    };
    // Phase 1. The daemon overlaps without a thread per step (it serves many
    // calls at once): the port request is on the wire while the veth is made.
    let (subnet, port, local) = if cx.shared.is_some() {
        fn not_attempted<T>() -> CniResult<T> {
            Err(CniError::new(IO_FAILURE, "not attempted", ""))
        }
        let subnet = cx.subnet(&ctl, subnet_id);
        trace("add:subnet-read");
        if subnet.is_err() {
            (subnet, not_attempted(), not_attempted())
        } else {
            let sent = ctl.send_create_port(&spec);
            trace("add:port-sent");
            let local = if sent.is_ok() {
                let l = link::create_veth(&veth);
                trace("add:veth-created");
                test_pause("after-veth");
                l
            } else {
                not_attempted()
            };
            let port = sent.and_then(|p| finish_port(&ctl, p, &spec, &binding));
            trace("add:port-created");
            let local = local.and_then(|peer| Ok((peer, cx.ovs(conf)?)));
            (subnet, port, local)
        }
    } else {
        std::thread::scope(|s| {
            // The subnet read is quicker than the port creation: the OVSDB
            // connection is made on its thread, beside the veth.
            let subnet = s.spawn(|| {
                let r = ctl.subnet(subnet_id);
                trace("add:subnet-read");
                let o = cx.ovs(conf);
                trace("add:ovsdb-connected");
                (r, o)
            });
            let port = s.spawn(|| {
                let r = create_port(&ctl, &spec, &binding);
                trace("add:port-created");
                r
            });
            let local = link::create_veth(&veth);
            trace("add:veth-created");
            test_pause("after-veth");
            let (subnet, ovs) = subnet.join().unwrap_or_else(|_| {
                let e = CniError::new(IO_FAILURE, "internal error", "worker thread panicked");
                (Err(e.clone()), Err(e))
            });
            let local = local.and_then(|peer| Ok((peer, ovs?)));
            (subnet, joined(port.join()), local)
        })
    };
    let rollback = |port: Option<&Port>, ovs: Option<&Ovs>| {
        if let Some(o) = ovs {
            let _ = o.take_port(&host);
        }
        let _ = link::delete_host(&host);
        if let Some(p) = port {
            let _ = ctl.delete_port(&p.id);
        }
    };
    let (port, (pod_index, ovs)) = match (subnet, port, local) {
        (Ok(sub), Ok(port), Ok(local)) => match &conf.vpc {
            Some(vpc) if *vpc != sub.spec.vpc_id => {
                rollback(Some(&port), None);
                return Err(CniError::new(
                    INVALID_CONFIG,
                    "invalid network configuration",
                    format!("subnet {subnet_id} is not in vpc {vpc}"),
                ));
            }
            _ => ((port, sub), local),
        },
        (sub, port, local) => {
            let err = [
                sub.err(),
                port.as_ref().err().cloned(),
                local.as_ref().err().cloned(),
            ]
            .into_iter()
            .flatten()
            .next();
            rollback(port.as_ref().ok(), None);
            return Err(err.unwrap_or_else(|| CniError::new(IO_FAILURE, "internal error", "")));
        }
    };
    let (port, subnet) = port;
    let prefix_len = subnet
        .spec
        .cidr
        .split_once('/')
        .map(|(_, l)| l.to_owned())
        .unwrap_or_else(|| "32".into());
    let gateway = subnet.spec.gateway.clone();

    // Phase 2.
    let result = (|| {
        let mac = port.spec.mac.clone().unwrap_or_default();
        let ip = port.spec.ips.first().cloned().ok_or_else(|| {
            CniError::new(
                CONTROLLER_REJECTED,
                "controller returned no address",
                port.id.clone(),
            )
        })?;
        let cidr = format!("{ip}/{prefix_len}");
        // The pod side was created with the MAC asked for, if any.
        let mac_set = spec
            .mac
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(&mac));
        let plan = PodPlan {
            ifname: &env.ifname,
            mac: (!mac.is_empty() && !mac_set).then_some(mac.as_str()),
            netns,
            cidr: &cidr,
            gateway: gateway.as_deref(),
            index: pod_index,
        };
        let ids = [
            (ovs::KEY_IFACE_ID, port.id.as_str()),
            (ovs::KEY_NETWORK, conf.name.as_str()),
            (ovs::KEY_CONTAINER, env.container_id.as_str()),
            (ovs::KEY_IFNAME, env.ifname.as_str()),
        ];
        let (pod, sw) = if cx.shared.is_some() {
            let sw = ovs.add_port(bridge, &host, &ids);
            trace("add:switch-port-added");
            let pod = if sw.is_ok() {
                let r = link::configure_pod_visiting(&plan);
                trace("add:pod-configured");
                r
            } else {
                Ok(())
            };
            (pod, sw)
        } else {
            std::thread::scope(|s| {
                // The pod side on a thread inside its netns, the switch port here.
                let pod = netns::spawn_in(s, netns, || {
                    let r = link::configure_pod_here(&plan);
                    trace("add:pod-configured");
                    r
                });
                let sw = ovs.add_port(bridge, &host, &ids);
                trace("add:switch-port-added");
                let pod = match pod {
                    Ok(h) => match h.join() {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => Err(link::netns_error(netns, e)),
                        Err(_) => Err(CniError::new(
                            IO_FAILURE,
                            "internal error",
                            "pod netns thread panicked",
                        )),
                    },
                    Err(e) => Err(link::netns_error(netns, e)),
                };
                (pod, sw)
            })
        };
        sw?;
        pod?;
        Ok(build_result(
            conf,
            env,
            prev.as_ref(),
            &host,
            &hmac,
            &mac,
            &cidr,
            gateway.as_deref(),
        ))
    })();
    if result.is_err() {
        // Roll back what this ADD made; the error is what the runtime sees.
        rollback(Some(&port), Some(&ovs));
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn build_result(
    conf: &NetConf,
    env: &Env,
    prev: Option<&Value>,
    host: &str,
    host_mac: &str,
    mac: &str,
    cidr: &str,
    gateway: Option<&str>,
) -> Value {
    let v11 = conf.at_least("1.1.0");
    let pre1 = !conf.at_least("1.0.0");
    let mut interfaces: Vec<Value> = prev
        .and_then(|p| p["interfaces"].as_array().cloned())
        .unwrap_or_default();
    let mut ips: Vec<Value> = prev
        .and_then(|p| p["ips"].as_array().cloned())
        .unwrap_or_default();
    let mut routes: Vec<Value> = prev
        .and_then(|p| p["routes"].as_array().cloned())
        .unwrap_or_default();
    let dns = prev
        .and_then(|p| p.get("dns").cloned())
        .unwrap_or_else(|| json!({}));
    let mut hostif = json!({"name": host, "mac": host_mac});
    let mut podif = json!({"name": env.ifname, "mac": mac, "sandbox": env.netns});
    if v11 {
        hostif["mtu"] = json!(conf.mtu());
        podif["mtu"] = json!(conf.mtu());
    }
    interfaces.push(hostif);
    let pod_index = interfaces.len();
    interfaces.push(podif);
    let mut ipc = json!({"address": cidr, "interface": pod_index});
    if let Some(gw) = gateway {
        ipc["gateway"] = json!(gw);
    }
    if pre1 {
        ipc["version"] = json!(if cidr.contains(':') { "6" } else { "4" });
    }
    ips.push(ipc);
    if let Some(gw) = gateway {
        let dst = if gw.contains(':') {
            "::/0"
        } else {
            "0.0.0.0/0"
        };
        routes.push(json!({"dst": dst, "gw": gw}));
    }
    json!({
        "cniVersion": conf.cni_version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

/// DEL: the OVSDB row names the controller port (iface-id); the switch row
/// and then the controller port go on one thread while the veth is deleted
/// on another.
fn del(cx: Ctx<'_>, env: &Env, conf: &NetConf) -> CniResult<()> {
    let host = host_ifname(&env.container_id, &env.ifname);
    let ctl = conf
        .controller
        .as_ref()
        .map(|c| cx.controller(c))
        .transpose()?;
    let (remote, link) = std::thread::scope(|s| {
        let remote = s.spawn(|| -> CniResult<()> {
            let row = cx.ovs(conf)?.take_port(&host)?;
            trace("del:switch-port-deleted");
            let Some(ctl) = &ctl else { return Ok(()) };
            match row.and_then(|r| r.external_ids.get(ovs::KEY_IFACE_ID).cloned()) {
                Some(id) => {
                    let r = ctl.delete_port(&id);
                    trace("del:controller-port-deleted");
                    r
                }
                None => {
                    // Half-done ADD (port created, switch not plugged) or already gone.
                    let want = binding_iface(&env.container_id, &env.ifname);
                    let name = port_name(&conf.name, &env.container_id, &env.ifname);
                    for p in ctl.ports()? {
                        if p.spec.name == name
                            || p.spec.binding.as_ref().is_some_and(|b| b.iface == want)
                        {
                            ctl.delete_port(&p.id)?;
                        }
                    }
                    Ok(())
                }
            }
        });
        // The daemon answers once the veth is gone and lets the kernel
        // finish its teardown meanwhile.
        let link = if cx.shared.is_some() {
            link::delete_host_until_gone(&host)
        } else {
            link::delete_host(&host)
        };
        trace("del:veth-deleted");
        (joined(remote.join()), link)
    });
    remote?;
    link
}

fn check(cx: Ctx<'_>, env: &Env, conf: &NetConf) -> CniResult<()> {
    if !conf.at_least("0.4.0") {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            format!(
                "CHECK needs cniVersion >= 0.4.0, config is {}",
                conf.cni_version
            ),
        ));
    }
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            INVALID_CONFIG,
            "invalid network configuration",
            "CHECK needs prevResult",
        )
    })?;
    let fail = |d: String| CniError::new(CHECK_FAILED, "check failed", d);
    let netns = Path::new(&env.netns);
    if !netns.exists() {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            "container network namespace does not exist",
            env.netns.clone(),
        ));
    }
    let ifaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    let (idx, pod_if) = ifaces
        .iter()
        .enumerate()
        .find(|(_, i)| {
            i["name"].as_str() == Some(&env.ifname) && i["sandbox"].as_str() == Some(&env.netns)
        })
        .ok_or_else(|| {
            fail(format!(
                "prevResult has no interface {} in {}",
                env.ifname, env.netns
            ))
        })?;
    let Some(pod) = link::inspect(netns, &env.ifname)? else {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            "container interface does not exist",
            format!("{} in {}", env.ifname, env.netns),
        ));
    };
    if let Some(mac) = pod_if["mac"].as_str()
        && !pod.mac.eq_ignore_ascii_case(mac)
    {
        return Err(fail(format!("{}: MAC {} != {mac}", env.ifname, pod.mac)));
    }
    if let Some(mtu) = pod_if["mtu"].as_u64()
        && u64::from(pod.mtu) != mtu
    {
        return Err(fail(format!("{}: MTU {} != {mtu}", env.ifname, pod.mtu)));
    }
    let have: HashSet<&str> = pod.addrs.iter().map(String::as_str).collect();
    let mut my_ips = Vec::new();
    for ip in prev["ips"].as_array().into_iter().flatten() {
        if ip["interface"].as_u64() == Some(idx as u64) {
            let a = ip["address"].as_str().unwrap_or_default();
            if !have.contains(a) {
                return Err(fail(format!(
                    "{}: address {a} missing (have {have:?})",
                    env.ifname
                )));
            }
            my_ips.push(a.split('/').next().unwrap_or_default().to_owned());
        }
    }
    for r in prev["routes"].as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().unwrap_or_default();
        let gw = r["gw"].as_str();
        let found = pod
            .routes
            .iter()
            .any(|x| x.dst == dst && (gw.is_none() || x.gateway.as_deref() == gw));
        if !found {
            return Err(fail(format!("route {r} missing in {}", env.netns)));
        }
    }
    // The switch port and the controller binding.
    let host = host_ifname(&env.container_id, &env.ifname);
    let rows = cx.ovs(conf)?.find(ovs::KEY_CONTAINER, &env.container_id)?;
    let row = rows
        .iter()
        .find(|r| r.name == host)
        .ok_or_else(|| fail(format!("switch port {host} missing")))?;
    let port_id = row
        .external_ids
        .get(ovs::KEY_IFACE_ID)
        .ok_or_else(|| fail(format!("switch port {host} has no iface-id")))?;
    let ctl = cx.controller(conf.controller()?)?;
    let port: Port = ctl
        .port(port_id)?
        .ok_or_else(|| fail(format!("controller port {port_id} missing")))?;
    let want = binding_iface(&env.container_id, &env.ifname);
    if port.spec.binding.as_ref().map(|b| b.iface.as_str()) != Some(want.as_str())
        || conf
            .chassis
            .as_deref()
            .is_some_and(|c| port.spec.binding.as_ref().map(|b| b.chassis_id.as_str()) != Some(c))
    {
        return Err(fail(format!(
            "controller port {port_id} is not bound to {want}"
        )));
    }
    for ip in &my_ips {
        if !port.spec.ips.contains(ip) {
            return Err(fail(format!("controller port {port_id} does not own {ip}")));
        }
    }
    Ok(())
}

fn status(cx: Ctx<'_>, conf: &NetConf) -> CniResult<()> {
    let unavailable =
        |e: CniError| CniError::new(NOT_AVAILABLE, "plugin not available", e.to_string());
    cx.controller(conf.controller()?)?
        .ready()
        .map_err(unavailable)?;
    let bridge = conf.bridge()?;
    if !cx
        .ovs(conf)
        .and_then(|o| o.bridge_exists(bridge))
        .map_err(unavailable)?
    {
        return Err(CniError::new(
            NOT_AVAILABLE,
            "plugin not available",
            format!("bridge {bridge} does not exist"),
        ));
    }
    Ok(())
}

fn gc(cx: Ctx<'_>, conf: &NetConf) -> CniResult<()> {
    let valid: HashSet<(String, String)> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let ovs = cx.ovs(conf)?;
    let ctl = cx.controller(conf.controller()?)?;
    let mut first_err = None;
    for row in ovs.find(ovs::KEY_NETWORK, &conf.name)? {
        let key = (
            row.external_ids
                .get(ovs::KEY_CONTAINER)
                .cloned()
                .unwrap_or_default(),
            row.external_ids
                .get(ovs::KEY_IFNAME)
                .cloned()
                .unwrap_or_default(),
        );
        if valid.contains(&key) {
            continue;
        }
        let r = ovs
            .take_port(&row.name)
            .and_then(|_| link::delete_host(&row.name))
            .and_then(|()| match row.external_ids.get(ovs::KEY_IFACE_ID) {
                Some(id) => ctl.delete_port(id),
                None => Ok(()),
            });
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    // Veths of ADDs that never reached the switch (crashed half-ADDs).
    let alias_prefix = link_alias(&conf.name, "", "");
    let alias_prefix = alias_prefix.trim_end_matches('/');
    for (name, alias) in link::links_with_alias(&format!("{alias_prefix}/"))? {
        let Some((cid, ifname)) = alias[alias_prefix.len() + 1..].rsplit_once('/') else {
            continue;
        };
        if !valid.contains(&(cid.to_owned(), ifname.to_owned()))
            && let Err(e) = link::delete_host(&name)
        {
            first_err.get_or_insert(e);
        }
    }
    let prefix = format!("cni/{}/", conf.name);
    for p in ctl.ports()? {
        let Some(rest) = p.spec.name.strip_prefix(&prefix) else {
            continue;
        };
        if conf
            .chassis
            .as_deref()
            .is_some_and(|c| p.spec.binding.as_ref().map(|b| b.chassis_id.as_str()) != Some(c))
        {
            continue;
        }
        let Some((cid, ifname)) = rest.rsplit_once('/') else {
            continue;
        };
        if !valid.contains(&(cid.to_owned(), ifname.to_owned()))
            && let Err(e) = ctl.delete_port(&p.id)
        {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_and_stable() {
        let a = host_ifname("abc", "eth0");
        assert_eq!(a.len(), 15);
        assert_eq!(a, host_ifname("abc", "eth0"));
        assert_ne!(a, host_ifname("abc", "eth1"));
        assert!(host_mac("abc", "eth0").starts_with("0a:"));
    }
}
