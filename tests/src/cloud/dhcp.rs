//! Hosts configured like VMs (a real DHCP client, busybox `udhcpc`, against the
//! switch's local DHCP responder) and the `dhcp` check.
//!
//! The client runs in the host's namespace with a small script that applies the lease
//! (address, default route, MTU) and writes the options it got to a file, which the
//! check compares with the model. Who answered is shown by counters: plexus-vswitchd's
//! `plexus-appctl responder/show` and the controller's per-chassis
//! `responder_replies`/`responder_drops` (`GET /v1/status`).

use super::spec::DhcpSpec;
use super::state::HostState;
use super::{Running, find_bin, ping_once};
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The udhcpc script: applies the lease and records the options.
const SCRIPT: &str = r#"#!/bin/sh
# Written by plexus-topo: applies a udhcpc lease and records its options.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    {
      echo "event=$1"; echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"
      echo "dns=$dns"; echo "domain=$domain"; echo "mtu=$mtu"; echo "lease=$lease"
      echo "serverid=$serverid"; echo "broadcast=$broadcast"
    } > "$PLX_DHCP_OUT"
    ;;
  nak|leasefail)
    echo "event=$1" > "$PLX_DHCP_OUT"
    ;;
esac
exit 0
"#;

/// What the client got: the options as udhcpc exported them.
pub type Lease = BTreeMap<String, String>;

fn script(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("udhcpc.sh");
    if !p.exists() {
        std::fs::write(&p, SCRIPT).with_context(|| format!("writing {}", p.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(p)
}

/// Runs `udhcpc` once on the host's `eth0` (bounded: 5 discovers, 1 s apart) and
/// returns the lease it applied.
pub fn obtain(dir: &Path, netns: &str, host: &str) -> Result<Lease> {
    let s = script(dir)?;
    let out = dir.join(format!("dhcp-{host}.lease"));
    let _ = std::fs::remove_file(&out);
    crate::proc::run_ok(
        Command::new("ip")
            .args(["netns", "exec", netns, "env"])
            .arg(format!("PLX_DHCP_OUT={}", out.display()))
            .args(["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n"])
            .args(["-t", "5", "-T", "1", "-A", "1"])
            .args(["-O", "mtu", "-O", "dns", "-O", "domain", "-O", "router"])
            .arg("-s")
            .arg(&s),
        Duration::from_secs(20),
    )
    .with_context(|| format!("{host}: udhcpc got no lease"))?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("{host}: no lease recorded"))?;
    let lease: Lease = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    if lease.get("event").map(String::as_str) != Some("bound") {
        bail!("{host}: DHCP ended with {lease:?}");
    }
    Ok(lease)
}

/// The subnet a host's spec names, with whether a router serves it.
fn subnet_of<'a>(r: &'a Running, host: &str) -> Result<(&'a super::spec::SubnetSpec, bool)> {
    let h = r
        .cloud
        .hosts
        .iter()
        .find(|h| h.name.get_ref() == host)
        .with_context(|| format!("no host {host}"))?;
    let t = r
        .cloud
        .tenants
        .iter()
        .find(|t| t.name.get_ref() == h.tenant.get_ref())
        .context("tenant")?;
    let v = t
        .vpcs
        .iter()
        .find(|v| v.name.get_ref() == h.vpc.get_ref())
        .context("vpc")?;
    let s = v
        .subnets
        .iter()
        .find(|s| s.name.get_ref() == h.subnet.get_ref())
        .context("subnet")?;
    let routed = v
        .routers
        .iter()
        .any(|rt| rt.subnets.iter().any(|n| n.get_ref() == s.name.get_ref()));
    Ok((s, routed))
}

/// Checks a lease against the model: the port's address, the subnet's prefix, the
/// gateway as router (routed subnets), DNS, domain, MTU, lease time.
pub fn check_lease(
    lease: &Lease,
    port_ip: &str,
    cidr: &str,
    routed: bool,
    d: &DhcpSpec,
) -> Result<Ipv4Addr> {
    let net: ipnet::Ipv4Net = cidr.parse().with_context(|| format!("cidr {cidr}"))?;
    let gw = Ipv4Addr::from(u32::from(net.network()) + 1);
    let get = |k: &str| lease.get(k).map(String::as_str).unwrap_or("");
    let mut errs = Vec::new();
    if get("ip") != port_ip {
        errs.push(format!("ip {} (port has {port_ip})", get("ip")));
    }
    if get("mask") != net.prefix_len().to_string() {
        errs.push(format!(
            "mask {} (subnet /{})",
            get("mask"),
            net.prefix_len()
        ));
    }
    if get("serverid") != gw.to_string() {
        errs.push(format!("server id {} (gateway {gw})", get("serverid")));
    }
    let want_router = if routed {
        gw.to_string()
    } else {
        String::new()
    };
    if get("router") != want_router {
        errs.push(format!("router {:?} (want {want_router:?})", get("router")));
    }
    if get("dns") != d.dns_servers.join(" ") {
        errs.push(format!("dns {:?} (want {:?})", get("dns"), d.dns_servers));
    }
    if get("domain") != d.domain_name.clone().unwrap_or_default() {
        errs.push(format!("domain {:?}", get("domain")));
    }
    let mtu = d.mtu.map(|m| m.to_string()).unwrap_or_default();
    if get("mtu") != mtu {
        errs.push(format!("mtu {:?} (want {mtu:?})", get("mtu")));
    }
    let lt = d.lease_seconds.unwrap_or(43_200).max(60).to_string();
    if get("lease") != lt {
        errs.push(format!("lease {:?} (want {lt})", get("lease")));
    }
    if errs.is_empty() {
        Ok(gw)
    } else {
        bail!("lease differs from the model: {}", errs.join("; "))
    }
}

/// `up` for a `dhcp = true` host: obtain the lease and check it.
pub(super) fn configure_host(r: &Running, h: &HostState) -> Result<String> {
    let (s, routed) = subnet_of(r, &h.name)?;
    let d = s
        .dhcp
        .as_ref()
        .with_context(|| format!("host {} has dhcp = true but its subnet has no dhcp", h.name))?;
    let lease = obtain(&r.dir, &h.netns, &h.name)?;
    check_lease(&lease, &h.ip, s.cidr.get_ref(), routed, d)?;
    Ok(format!("{}/{}", lease["ip"], lease["mask"]))
}

/// Responder counters: (plexus-vswitchd `responder/show` JSON if any, controller's
/// (replies, drops) for the chassis).
fn counters(r: &Running, chassis: &str) -> Result<(Option<Value>, (u64, u64))> {
    let ch = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == chassis)
        .with_context(|| format!("no chassis {chassis}"))?;
    let local = if ch.kind == "plexus-vswitchd" {
        let ctl = r.dir.join(format!("vswitchd-{chassis}.ctl"));
        let out = crate::proc::run_ok(
            Command::new(find_bin("plexus-appctl")?)
                .arg("-t")
                .arg(&ctl)
                .args(["--format", "json", "responder/show"]),
            Duration::from_secs(10),
        )?;
        Some(serde_json::from_str::<Value>(&out).context("responder/show JSON")?)
    } else {
        None
    };
    let st = r.api.get("/v1/status")?;
    let c = &st["chassis"][&ch.id];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    Ok((local, (n("responder_replies"), n("responder_drops"))))
}

fn router_mac_of(r: &Running, host: &HostState) -> Result<String> {
    let ports = r.api.get("/v1/ports?limit=1000")?;
    let port = ports["items"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == host.name.as_str()))
        .with_context(|| format!("port {}", host.name))?;
    let sn = r.api.get(&format!(
        "/v1/subnets/{}",
        port["subnet_id"].as_str().unwrap_or("")
    ))?;
    let vpc = r
        .api
        .get(&format!("/v1/vpcs/{}", sn["vpc_id"].as_str().unwrap_or("")))?;
    let vni = vpc["vni"].as_u64().context("vni")? as u32;
    let v = vni.to_be_bytes();
    Ok(format!(
        "0a:00:{:02x}:{:02x}:{:02x}:{:02x}",
        v[0], v[1], v[2], v[3]
    ))
}

fn sh(netns: &str, args: &[&str]) -> Result<String> {
    crate::proc::run_ok(
        Command::new("ip").args(["netns", "exec", netns]).args(args),
        Duration::from_secs(15),
    )
}

const FOREIGN_ATTEMPTS: u32 = 5;

/// The `dhcp` check for one host.
pub(super) fn check(r: &Running, exe: &Path, host: &str) -> Outcome {
    let result = (|| -> Result<String> {
        let h = r.host(host)?.clone();
        let kind = r
            .state
            .chassis
            .iter()
            .find(|c| c.name == h.chassis)
            .map(|c| c.kind.clone())
            .unwrap_or_default();
        let (s, routed) = subnet_of(r, host)?;
        let d = s.dhcp.clone().context("the host's subnet has no dhcp")?;
        let rmac = router_mac_of(r, &h)?;
        let (local0, ctl0) = counters(r, &h.chassis)?;
        // Forget everything, then DHCP from scratch.
        sh(&h.netns, &["ip", "-4", "addr", "flush", "dev", "eth0"])?;
        sh(&h.netns, &["ip", "neigh", "flush", "dev", "eth0"])?;
        let lease = obtain(&r.dir, &h.netns, host)?;
        let gw = check_lease(&lease, &h.ip, s.cidr.get_ref(), routed, &d)?;
        let addr = sh(&h.netns, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])?;
        let want = format!("{}/{}", h.ip, lease["mask"]);
        if !addr.contains(&want) {
            bail!("eth0 does not hold {want}: {addr}");
        }
        if let Some(m) = d.mtu {
            let link = sh(&h.netns, &["ip", "-o", "link", "show", "dev", "eth0"])?;
            if !link.contains(&format!(" mtu {m} ")) {
                bail!("eth0 MTU is not {m}: {link}");
            }
        }
        let mut evidence = format!("lease {want}");
        if routed {
            let route = sh(&h.netns, &["ip", "route", "show", "default"])?;
            if !route.contains(&format!("via {gw}")) {
                bail!("no default route via {gw}: {route:?}");
            }
            // The gateway resolves to the router MAC by the ARP responder and answers ping.
            let ar = sh(
                &h.netns,
                &[
                    "arping",
                    "-c",
                    "2",
                    "-w",
                    "4",
                    "-I",
                    "eth0",
                    &gw.to_string(),
                ],
            )?;
            if !ar.to_lowercase().contains(&rmac) {
                bail!("arping {gw}: no reply from {rmac}: {ar}");
            }
            if !(0..3).any(|_| ping_once(&h.netns, &gw.to_string())) {
                bail!("ping {gw}: no answer");
            }
            let neigh = sh(&h.netns, &["ip", "neigh", "show", &gw.to_string()])?;
            if !neigh.contains(&rmac) {
                bail!("ip neigh for {gw} is not {rmac}: {neigh:?}");
            }
            evidence.push_str(&format!(
                ", {gw} is-at {rmac} (arping, ip neigh), ping answered"
            ));
        }
        // Foreign DHCPDISCOVERs (random chaddr, from the host's own MAC and from random
        // MACs) must get nothing and be counted.
        let spec = super::attack::SendSpec {
            kind: super::attack::AttackKind::DhcpStarve,
            count: FOREIGN_ATTEMPTS,
            marker: [0x44, 0x48, 0x43, 0x50],
            mac: h.mac.clone(),
            ip: h.ip.parse()?,
            victim_mac: h.mac.clone(),
            victim_ip: h.ip.parse()?,
            neighbour_ip: h.ip.parse()?,
            neighbour_mac: h.mac.clone(),
            blocked_port: 9,
            allowed_port: 9,
            iface: "eth0".into(),
            vnis: Vec::new(),
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.netns])
            .arg(exe)
            .arg("attack-send")
            .arg(serde_json::to_string(&spec)?);
        crate::proc::run_ok(&mut cmd, Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(300));
        let (local1, ctl1) = counters(r, &h.chassis)?;
        let (dr, dd) = (ctl1.0 - ctl0.0, ctl1.1 - ctl0.1);
        let n = u64::from(FOREIGN_ATTEMPTS);
        let routed_min = if routed { 2 } else { 0 }; // ARP + ICMP echo
        match (kind.as_str(), local0, local1) {
            ("plexus-vswitchd", Some(a), Some(b)) => {
                let g =
                    |v: &Value, p: &[&str]| p.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
                let delta = |p: &[&str]| g(&b, p) - g(&a, p);
                let (offer, ack) = (
                    delta(&["dhcp4_events", "offer"]),
                    delta(&["dhcp4_events", "ack"]),
                );
                let (arp, echo) = (
                    delta(&["arp", "replies"]),
                    delta(&["icmp4_echo", "replies"]),
                );
                let foreign = delta(&["dhcp4", "drops", "foreign"]);
                if offer < 1 || ack < 1 {
                    bail!("plexus-vswitchd counted offer +{offer}, ack +{ack}");
                }
                if routed && (arp < 1 || echo < 1) {
                    bail!("plexus-vswitchd counted arp +{arp}, icmp echo +{echo}");
                }
                if foreign < n {
                    bail!("{n} foreign DISCOVERs, plexus-vswitchd counted {foreign} foreign");
                }
                if dr != 0 || dd != 0 {
                    bail!(
                        "the controller answered {dr} / dropped {dd} responder packet-ins of a plexus-vswitchd chassis"
                    );
                }
                evidence.push_str(&format!(
                    "; plexus-vswitchd answered locally: offer +{offer} ack +{ack} arp +{arp} echo +{echo}, foreign DISCOVERs dropped +{foreign}; controller packet-ins answered +0"
                ));
            }
            ("ovs", _, _) => {
                if dr < 2 + routed_min {
                    bail!(
                        "the controller answered only {dr} responder packet-ins of this OVS chassis"
                    );
                }
                if dd < n {
                    bail!("{n} foreign DISCOVERs, the controller dropped {dd}");
                }
                evidence.push_str(&format!(
                    "; Open vSwitch → controller PACKET_IN2 → PACKET_OUT: +{dr} answered, +{dd} dropped (foreign)"
                ));
            }
            (k, _, _) => bail!("chassis kind {k:?}"),
        }
        Ok(evidence)
    })();
    Outcome {
        what: format!("{host} gets its address by DHCP from the switch"),
        result: result.map_err(|e| format!("{e:#}")),
    }
}
