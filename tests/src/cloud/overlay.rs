//! The overlay as seen on the underlay: every chassis has a port on a Linux
//! bridge (`ul`) in the run's underlay namespace, holding its VTEP address.
//! The `vxlan` check captures one chassis' underlay port with an AF_PACKET
//! socket (`plexus-topo vxlan-capture`, run inside the underlay namespace)
//! while one host pings another on a different chassis, and decodes each
//! frame: outer IPv4/UDP 4789/VXLAN (VNI) and the inner IPv4 packet.

use super::Running;
use crate::proc::run_with_timeout;
use crate::rawsock::RawSock;
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// IANA VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// One frame seen on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// VXLAN: outer addresses, VNI, inner IPv4 source/destination/protocol (if the
    /// inner frame is IPv4).
    Vxlan {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        vni: u32,
        inner: Option<(Ipv4Addr, Ipv4Addr, u8)>,
    },
    /// A plain IPv4 packet (not VXLAN): source, destination, protocol.
    Ipv4(Ipv4Addr, Ipv4Addr, u8),
    /// Anything else (ARP on the underlay, IPv6, ...).
    Other,
}

fn ipv4(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst, p[9], &p[ihl..]))
}

/// The EtherType and payload of an Ethernet frame (one 802.1Q tag skipped).
fn ether(f: &[u8]) -> Option<(u16, &[u8])> {
    if f.len() < 14 {
        return None;
    }
    let t = u16::from_be_bytes([f[12], f[13]]);
    if t == 0x8100 && f.len() >= 18 {
        return Some((u16::from_be_bytes([f[16], f[17]]), &f[18..]));
    }
    Some((t, &f[14..]))
}

/// Decodes one underlay frame.
pub fn decode(frame: &[u8]) -> Seen {
    let Some((0x0800, p)) = ether(frame) else {
        return Seen::Other;
    };
    let Some((src, dst, proto, l4)) = ipv4(p) else {
        return Seen::Other;
    };
    if proto == 17 && l4.len() >= 16 && u16::from_be_bytes([l4[2], l4[3]]) == VXLAN_PORT {
        let vx = &l4[8..];
        if vx[0] & 0x08 != 0 {
            let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
            let inner = match ether(&vx[8..]) {
                Some((0x0800, ip)) => ipv4(ip).map(|(s, d, pr, _)| (s, d, pr)),
                _ => None,
            };
            return Seen::Vxlan {
                src,
                dst,
                vni,
                inner,
            };
        }
    }
    Seen::Ipv4(src, dst, proto)
}

/// One line per frame for the runner (`plexus-topo vxlan-capture`).
pub fn format_seen(s: &Seen) -> String {
    match s {
        Seen::Vxlan {
            src,
            dst,
            vni,
            inner,
        } => match inner {
            Some((a, b, p)) => format!("vxlan {src} {dst} {vni} {a} {b} {p}"),
            None => format!("vxlan {src} {dst} {vni} - - -"),
        },
        Seen::Ipv4(a, b, p) => format!("ipv4 {a} {b} {p}"),
        Seen::Other => "other".into(),
    }
}

/// Parses a line of [`format_seen`].
pub fn parse_seen(line: &str) -> Option<Seen> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        ["vxlan", s, d, v, a, b, p] => Some(Seen::Vxlan {
            src: s.parse().ok()?,
            dst: d.parse().ok()?,
            vni: v.parse().ok()?,
            inner: match (a.parse(), b.parse(), p.parse()) {
                (Ok(a), Ok(b), Ok(p)) => Some((a, b, p)),
                _ => None,
            },
        }),
        ["ipv4", a, b, p] => Some(Seen::Ipv4(
            a.parse().ok()?,
            b.parse().ok()?,
            p.parse().ok()?,
        )),
        ["other"] => Some(Seen::Other),
        _ => None,
    }
}

/// Captures on `iface` (in the current namespace) for `secs`, printing a line per frame.
pub fn capture(iface: &str, secs: u64) -> Result<()> {
    let s = RawSock::open(iface)?;
    s.set_timeout(Duration::from_millis(100))?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65536];
    println!("ready");
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Some((n, _)) = s.recv_both(&mut buf)? {
            println!("{}", format_seen(&decode(&buf[..n])));
        }
    }
    Ok(())
}

/// The `vxlan` check.
pub fn check_vxlan(r: &Running, exe: &std::path::Path, from: &str, to: &str) -> Outcome {
    let what = format!("{from} -> {to} crosses the underlay as VXLAN with its VPC's VNI");
    let result = (|| -> Result<String> {
        let (a, b) = (r.host(from)?, r.host(to)?);
        let ch = |n: &str| {
            r.state
                .chassis
                .iter()
                .find(|c| c.name == n)
                .with_context(|| format!("no chassis {n}"))
        };
        let (ca, cb) = (ch(&a.chassis)?, ch(&b.chassis)?);
        let ul = &r.state.underlay_netns;
        if ul.is_empty() || ca.underlay_port.is_empty() {
            bail!("the run has no underlay");
        }
        let (va, vb): (Ipv4Addr, Ipv4Addr) = (ca.vtep.parse()?, cb.vtep.parse()?);
        let (ia, ib): (Ipv4Addr, Ipv4Addr) = (a.ip.parse()?, b.ip.parse()?);
        let mut cap = Command::new("ip")
            .args(["netns", "exec", ul])
            .arg(exe)
            .args(["vxlan-capture", "--iface", &ca.underlay_port, "--secs", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the underlay capture")?;
        let mut out = cap.stdout.take().context("capture stdout")?;
        // Wait for "ready" (the socket is open) before sending.
        let mut first = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut first).context("capture did not start")?;
        let ping = run_with_timeout(
            Command::new("ip").args([
                "netns", "exec", &a.netns, "ping", "-c", "5", "-i", "0.2", "-W", "1", &b.ip,
            ]),
            Duration::from_secs(10),
        )?;
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest)?;
        let status = cap.wait()?;
        if !status.success() {
            let mut e = String::new();
            if let Some(mut s) = cap.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut s, &mut e);
            }
            bail!("capture failed: {e}");
        }
        let seen: Vec<Seen> = rest.lines().filter_map(parse_seen).collect();
        let (mut req, mut rep, mut wrong_vni, mut clear) = (0, 0, Vec::new(), 0);
        for s in &seen {
            match s {
                Seen::Vxlan {
                    src,
                    dst,
                    vni,
                    inner: Some((x, y, 1)),
                } => {
                    let fwd = (*src, *dst, *x, *y) == (va, vb, ia, ib);
                    let back = (*src, *dst, *x, *y) == (vb, va, ib, ia);
                    if fwd || back {
                        if *vni != a.vni {
                            wrong_vni.push(*vni);
                        } else if fwd {
                            req += 1;
                        } else {
                            rep += 1;
                        }
                    }
                }
                Seen::Ipv4(x, y, _) if [ia, ib].contains(x) || [ia, ib].contains(y) => clear += 1,
                _ => {}
            }
        }
        if !ping.success() {
            bail!(
                "{from} could not ping {to} ({} underlay frames seen)",
                seen.len()
            );
        }
        if !wrong_vni.is_empty() {
            bail!(
                "VXLAN frames of the pair carry VNI {wrong_vni:?}, the VPC's is {}",
                a.vni
            );
        }
        if clear > 0 {
            bail!("{clear} frames of the hosts crossed the underlay unencapsulated");
        }
        if req < 4 || rep < 4 {
            bail!(
                "expected ≥4 of the 5 ICMP requests {va} -> {vb} and ≥4 replies back as VXLAN VNI {}, saw {req} and {rep} ({} frames)",
                a.vni,
                seen.len()
            );
        }
        Ok(format!(
            "{req} requests {va} -> {vb} and {rep} replies {vb} -> {va} as VXLAN VNI {} (inner {ia} <-> {ib}); none in clear",
            a.vni
        ))
    })();
    Outcome {
        what,
        result: result.map_err(|e| format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(outer: bool, vni: u32) -> Vec<u8> {
        let inner_ip = {
            let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
            ip.extend([10, 0, 0, 11, 10, 0, 0, 12]);
            ip.extend([8, 0, 0, 0, 0, 1, 0, 1]);
            ip
        };
        let mut inner = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        inner.extend(inner_ip);
        if !outer {
            return inner;
        }
        let mut udp = vec![0xc0, 0x00, 0x12, 0xb5, 0, 0, 0, 0];
        udp.extend([0x08, 0, 0, 0]);
        udp.extend(&vni.to_be_bytes()[1..]);
        udp.push(0);
        udp.extend(inner);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend([192, 0, 2, 1, 192, 0, 2, 2]);
        ip.extend(udp);
        let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
        f.extend(ip);
        f
    }

    #[test]
    fn decodes_vxlan_and_clear_frames() {
        let s = decode(&frame(true, 4097));
        assert_eq!(
            s,
            Seen::Vxlan {
                src: "192.0.2.1".parse().unwrap(),
                dst: "192.0.2.2".parse().unwrap(),
                vni: 4097,
                inner: Some((
                    "10.0.0.11".parse().unwrap(),
                    "10.0.0.12".parse().unwrap(),
                    1
                )),
            }
        );
        assert_eq!(parse_seen(&format_seen(&s)), Some(s));
        let c = decode(&frame(false, 0));
        assert_eq!(
            c,
            Seen::Ipv4(
                "10.0.0.11".parse().unwrap(),
                "10.0.0.12".parse().unwrap(),
                1
            )
        );
        assert_eq!(parse_seen(&format_seen(&c)), Some(c));
        assert_eq!(decode(&[0u8; 10]), Seen::Other);
    }
}
