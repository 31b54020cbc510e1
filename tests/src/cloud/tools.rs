//! Interactive tools against a running cloud topology: `iperf A B` (iperf3
//! TCP throughput between two hosts) and `trace NODE DST` (the switch of the
//! host's chassis explains the packet the host would send to DST).

use super::spec::Cloud;
use super::state::{HostState, State, state_dir};
use crate::proc::run_ok;
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn load(cloud: &Cloud) -> Result<State> {
    State::load(&state_dir(cloud.name()))
        .with_context(|| format!("is topology {} up?", cloud.name()))
}

fn host<'a>(st: &'a State, name: &str) -> Result<&'a HostState> {
    st.hosts
        .iter()
        .find(|h| h.name == name)
        .with_context(|| format!("no host {name:?} (hosts: {})", names(st)))
}

fn names(st: &State) -> String {
    st.hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// iperf3 from host `a` to host `b` for `secs` seconds; returns a summary
/// line (sender/receiver bits/s and retransmits from iperf3's JSON).
pub fn iperf(cloud: &Cloud, a: &str, b: &str, secs: u32) -> Result<String> {
    let st = load(cloud)?;
    let (ha, hb) = (host(&st, a)?, host(&st, b)?);
    let port = "5201";
    // One-off server (`-1`): it exits after one test; killed below if the client fails.
    let mut srv = Command::new("ip")
        .args([
            "netns", "exec", &hb.netns, "iperf3", "-s", "-1", "-B", &hb.ip, "-p", port,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s (apt-get install iperf3)")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = run_ok(
        Command::new("ip").args([
            "netns",
            "exec",
            &ha.netns,
            "iperf3",
            "-c",
            &hb.ip,
            "-p",
            port,
            "-t",
            &secs.to_string(),
            "--connect-timeout",
            "3000",
            "-J",
        ]),
        Duration::from_secs(u64::from(secs) + 20),
    );
    let _ = srv.kill();
    let _ = srv.wait();
    let out = out.with_context(|| format!("iperf3 {} -> {}", ha.ip, hb.ip))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let end = &v["end"];
    let sent = end["sum_sent"]["bits_per_second"].as_f64().unwrap_or(0.0);
    let recv = end["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let retr = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    if recv <= 0.0 {
        bail!(
            "iperf3 {} -> {}: nothing received: {}",
            ha.ip,
            hb.ip,
            v["error"]
        );
    }
    Ok(format!(
        "{a} ({}) -> {b} ({}): {:.2} Gbit/s received, {:.2} Gbit/s sent, {retr} retransmits, {secs} s",
        ha.ip,
        hb.ip,
        recv / 1e9,
        sent / 1e9
    ))
}

/// What to trace: a protocol and, for TCP/UDP, a destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceProto {
    Icmp,
    Tcp,
    Udp,
}

/// The OpenFlow flow (ovs-ofctl syntax) of the packet host `node` would send
/// to `dst` (a host name or an IPv4 address), and the switch's explanation of
/// it (`plexus-appctl trace` or `ovs-appctl ofproto/trace`).
pub fn trace(
    cloud: &Cloud,
    node: &str,
    dst: &str,
    proto: TraceProto,
    port: u16,
) -> Result<(String, String)> {
    let st = load(cloud)?;
    let src = host(&st, node)?;
    let dst_ip: Ipv4Addr = match st.hosts.iter().find(|h| h.name == dst) {
        Some(h) => h.ip.parse()?,
        None => dst.parse().with_context(|| {
            format!(
                "{dst:?} is neither a host ({}) nor an IPv4 address",
                names(&st)
            )
        })?,
    };
    // The next hop and its MAC, as the host's own stack resolves them.
    let route = run_ok(
        Command::new("ip").args(["-n", &src.netns, "route", "get", &dst_ip.to_string()]),
        Duration::from_secs(5),
    )?;
    let words: Vec<&str> = route.split_whitespace().collect();
    let hop = words
        .iter()
        .position(|w| *w == "via")
        .and_then(|i| words.get(i + 1))
        .map_or(dst_ip.to_string(), |s| (*s).to_owned());
    let _ = run_ok(
        Command::new("ip").args(["netns", "exec", &src.netns, "ping", "-c1", "-W1", &hop]),
        Duration::from_secs(3),
    );
    let neigh = run_ok(
        Command::new("ip").args(["-n", &src.netns, "neigh", "show", &hop]),
        Duration::from_secs(5),
    )?;
    let w: Vec<&str> = neigh.split_whitespace().collect();
    let dl_dst = w
        .iter()
        .position(|x| *x == "lladdr")
        .and_then(|i| w.get(i + 1))
        .map(|s| (*s).to_owned())
        .with_context(|| format!("{node} cannot resolve the MAC of next hop {hop}: {neigh:?}"))?;
    let ch = st
        .chassis
        .iter()
        .find(|c| c.name == src.chassis)
        .context("host's chassis")?;
    let iface = format!("{}-{}", cloud.name(), src.name);
    let in_port = ofport(&ch.ofctl_target, &iface)?;
    let l4 = match proto {
        TraceProto::Icmp => "icmp,icmp_type=8,icmp_code=0".to_owned(),
        TraceProto::Tcp => format!("tcp,tp_src=40000,tp_dst={port},tcp_flags=+syn"),
        TraceProto::Udp => format!("udp,tp_src=40000,tp_dst={port}"),
    };
    let flow = format!(
        "in_port={in_port},dl_src={},dl_dst={dl_dst},{l4},nw_src={},nw_dst={dst_ip},nw_ttl=64",
        src.mac, src.ip
    );
    let dir = state_dir(cloud.name());
    let text = if ch.kind == "ovs" {
        let odir = dir.join(format!("ovs-{}", ch.name));
        let ctl = std::fs::read_dir(&odir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with("ovs-vswitchd.")
                        && n.to_string_lossy().ends_with(".ctl")
                })
            })
            .with_context(|| format!("no ovs-vswitchd control socket in {}", odir.display()))?;
        run_ok(
            Command::new("ovs-appctl")
                .arg("-t")
                .arg(ctl)
                .args(["ofproto/trace", "br0", &flow]),
            Duration::from_secs(10),
        )?
    } else {
        let appctl = super::find_bin("plexus-appctl")?;
        run_ok(
            Command::new(appctl)
                .arg("-t")
                .arg(dir.join(format!("vswitchd-{}.ctl", ch.name)))
                .args(["trace", "br0", &flow]),
            Duration::from_secs(10),
        )?
    };
    Ok((flow, text))
}

/// The OpenFlow port number of `iface` on the switch at `target`
/// (`ovs-ofctl dump-ports-desc`: ` N(name): addr:…`).
fn ofport(target: &str, iface: &str) -> Result<u32> {
    let out = run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "dump-ports-desc", target]),
        Duration::from_secs(10),
    )?;
    parse_ofport(&out, iface).with_context(|| format!("no port {iface} on {target}:\n{out}"))
}

fn parse_ofport(desc: &str, iface: &str) -> Option<u32> {
    desc.lines().find_map(|l| {
        let (n, rest) = l.trim_start().split_once('(')?;
        let name = rest.split_once(')')?.0;
        (name == iface).then(|| n.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_numbers_come_from_dump_ports_desc() {
        let desc = "OFPST_PORT_DESC reply (OF1.3) (xid=0x2):\n 1(tt-a): addr:aa:bb:cc:dd:ee:01\n     config:     0\n 12(tt-b): addr:aa:bb:cc:dd:ee:02\n LOCAL(br0): addr:aa:bb:cc:dd:ee:03\n";
        assert_eq!(parse_ofport(desc, "tt-a"), Some(1));
        assert_eq!(parse_ofport(desc, "tt-b"), Some(12));
        assert_eq!(parse_ofport(desc, "br0"), None);
        assert_eq!(parse_ofport(desc, "tt-c"), None);
    }
}
