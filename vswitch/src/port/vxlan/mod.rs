//! Userspace VXLAN tunnel ports (RFC 7348), after Open vSwitch's `vxlan`
//! interface type.
//!
//! A [`VxlanPort`] is a logical OpenFlow port. Its options are OVS's:
//! `remote_ip` (an address or `flow`: taken from `tun_dst` at output),
//! `key` (VNI, or `flow`: `tun_id`), `local_ip` (optional with a fixed
//! `remote_ip`: then the route's preferred source), `dst_port`
//! (4789), `tos` (number or `inherit`), `ttl` (number or `inherit`, default
//! 64), `df_default` (true), plus `underlay` (the interface carrying
//! `local_ip`; found by address when omitted).
//!
//! **Underlay I/O.** The port owns two kernel sockets in the namespace of
//! the underlay interface, which holds `local_ip` in the kernel (as OVS
//! wants the tunnel endpoint address on a bridge's internal port):
//! * receive: a UDP socket bound to `local_ip:dst_port`. The kernel
//!   validates the outer IPv4/UDP headers, reassembles, answers ARP for
//!   `local_ip`, and since the port is bound no ICMP port-unreachable goes
//!   back to the peer. The port strips the 8-byte VXLAN header and returns
//!   the inner frame with its [`TunnelMeta`] (`tun_id` = VNI, `tun_src` =
//!   the peer, `tun_dst` = `local_ip`) through [`Port::rx_tunnel`].
//! * transmit: an AF_PACKET socket (protocol 0: it receives nothing) bound
//!   to the underlay interface. Outer Ethernet/IPv4/UDP/VXLAN headers are
//!   written in place in front of the inner frame in the port's transmit
//!   buffer (the one copy every port makes from the pipeline's packet);
//!   nothing is allocated per packet. The outer UDP source port is a hash
//!   of the inner flow (RFC 7348 §5) in 32768..61000 (OVS's range), the UDP
//!   checksum is 0, the IPv4 header checksum is computed.
//!
//! **Next hop.** The kernel's routing and neighbour tables are asked over
//! rtnetlink ([`netlink::Rtnl`]): route to the remote (`oif`, gateway, MTU
//! metric), neighbour entry of the next hop. Results are cached per remote
//! and refreshed every second (unresolved ones every 50 ms). An unresolved
//! neighbour is handed to the kernel to resolve (`RTM_NEWNEIGH` +
//! `NTF_USE`: it sends the ARP request itself); packets meanwhile are
//! dropped and counted (`no_neigh`). A stale entry is re-confirmed the same
//! way while it is still used.
//!
//! **Decap checks.** VXLAN flags must be exactly `I` (as OVS), else
//! `bad_header`; no port with that remote takes the VNI: `unknown_vni`; no
//! port takes that outer source: `remote_mismatch` (counted on the port
//! that read the datagram).
//!
//! **MTU.** An inner frame whose encapsulation exceeds the next hop's MTU
//! (route MTU or the underlay's link MTU) is dropped (`mtu_drops`); for an
//! IPv4 inner packet with DF an ICMP "fragmentation needed" (for IPv6 an
//! ICMPv6 "packet too big") with the usable inner MTU is returned towards
//! the inner sender, as the kernel's VXLAN device does: it is received on
//! this port as if it came out of the tunnel (tunnel metadata of the
//! packet that did not fit, addresses swapped), so the flows deliver it.
//!
//! Several ports may share `local_ip:dst_port` (one UDP socket per address
//! and namespace, [`endpoint`]): a received datagram goes to the port whose
//! fixed `remote_ip` is its outer source, else to a `remote_ip=flow` port,
//! and the port's `key` must match its VNI (as OVS's tunnel port lookup).
//! Two ports with the same `remote_ip` and `key` on one address are refused.

mod endpoint;
pub mod netlink;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::endpoint::{Endpoint, Route};
use self::netlink::{Link, Rtnl, nud};
use super::{FRAME_BUF, LinkState, PacketBatch, Port, PortError, PortStats};
use crate::flow::TunnelMeta;
use crate::sys;
use crate::sys::packet::PacketSocket;

/// IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// Bytes added in front of the inner frame: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const ENCAP_LEN: usize = 50;
/// Outer IPv4 + UDP + VXLAN: what the encapsulation adds to the inner
/// frame's length as counted against the underlay (IP) MTU.
pub const OUTER_L3_OVERHEAD: usize = 36;
/// Outer UDP source port range (OVS: `tnl_udp_port_min/max`).
pub const SRC_PORT_MIN: u16 = 32768;
/// Exclusive upper end of the source port range.
pub const SRC_PORT_MAX: u16 = 61000;
const STRIDE: usize = FRAME_BUF + 64;
const TX_BATCH: usize = 64;
const REFRESH: Duration = Duration::from_secs(1);
const REFRESH_UNRESOLVED: Duration = Duration::from_millis(50);
const MAX_HOPS: usize = 4096;
const MAX_PENDING_ICMP: usize = 16;

/// `remote_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    Fixed(Ipv4Addr),
    /// From the flow's `tun_dst` at output.
    Flow,
}

/// `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A VNI (24 bits).
    Fixed(u32),
    /// From the flow's `tun_id` at output (low 24 bits); any VNI is accepted.
    Flow,
}

/// An outer header byte: fixed, or copied from the inner IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdrByte {
    Fixed(u8),
    Inherit,
}

/// A VXLAN port's configuration (OVS `Interface` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    pub remote: Remote,
    pub key: Key,
    pub local_ip: Ipv4Addr,
    pub dst_port: u16,
    pub tos: HdrByte,
    pub ttl: HdrByte,
    /// Set DF in the outer header.
    pub df: bool,
    /// Underlay interface; `None`: the one holding `local_ip`.
    pub underlay: Option<String>,
}

fn parse_num(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

impl VxlanConfig {
    /// From OVS-style options (`remote_ip`, `key`, `local_ip`, `dst_port`,
    /// `tos`, `ttl`, `df_default`, `underlay`; `in_key`/`out_key` are
    /// accepted when equal to `key`-style values and to each other).
    pub fn from_options<'a>(
        opts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut remote = None;
        let mut key = None;
        let mut local_ip = None;
        let mut c = VxlanConfig {
            remote: Remote::Flow,
            key: Key::Fixed(0),
            local_ip: Ipv4Addr::UNSPECIFIED,
            dst_port: VXLAN_PORT,
            tos: HdrByte::Fixed(0),
            ttl: HdrByte::Fixed(64),
            df: true,
            underlay: None,
        };
        for (k, v) in opts {
            let (k, v) = (k.trim(), v.trim());
            let bad = || format!("vxlan option {k}: bad value {v:?}");
            match k {
                "remote_ip" => {
                    remote = Some(if v == "flow" {
                        Remote::Flow
                    } else {
                        Remote::Fixed(v.parse().map_err(|_| bad())?)
                    })
                }
                "key" | "in_key" | "out_key" => {
                    let nk = if v == "flow" {
                        Key::Flow
                    } else {
                        let n = parse_num(v).filter(|&n| n <= 0xff_ffff).ok_or_else(bad)?;
                        Key::Fixed(n as u32)
                    };
                    if key.is_some_and(|o| o != nk) {
                        return Err("vxlan: in_key/out_key/key differ (not supported)".into());
                    }
                    key = Some(nk);
                }
                "local_ip" => local_ip = Some(v.parse::<Ipv4Addr>().map_err(|_| bad())?),
                "dst_port" => {
                    c.dst_port = v.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?;
                }
                "tos" | "ttl" => {
                    let b = if v == "inherit" {
                        HdrByte::Inherit
                    } else {
                        HdrByte::Fixed(v.parse().map_err(|_| bad())?)
                    };
                    if k == "tos" {
                        c.tos = b;
                    } else {
                        if b == HdrByte::Fixed(0) {
                            return Err(bad());
                        }
                        c.ttl = b;
                    }
                }
                "df_default" => {
                    c.df = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad()),
                    }
                }
                "csum" if v == "false" => {}
                "underlay" if !v.is_empty() => c.underlay = Some(v.to_string()),
                _ => return Err(format!("vxlan: unsupported option {k}={v}")),
            }
        }
        c.remote = remote.ok_or("vxlan: remote_ip is required (an address or flow)")?;
        c.key = key.unwrap_or(Key::Fixed(0));
        // Without local_ip a fixed remote's route gives it (at open).
        c.local_ip = match (local_ip, c.remote) {
            (Some(l), _) => l,
            (None, Remote::Fixed(_)) => Ipv4Addr::UNSPECIFIED,
            (None, Remote::Flow) => return Err("vxlan: remote_ip=flow needs local_ip".into()),
        };
        if local_ip.is_some() && (c.local_ip.is_unspecified() || c.local_ip.is_multicast()) {
            return Err("vxlan: local_ip must be a unicast address".into());
        }
        if let Remote::Fixed(r) = c.remote
            && (r.is_unspecified() || r.is_multicast() || r.is_broadcast())
        {
            return Err("vxlan: remote_ip must be a unicast address or flow".into());
        }
        Ok(c)
    }

    /// From `k=v,k=v,...`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut v = Vec::new();
        for kv in s.split(',').filter(|x| !x.trim().is_empty()) {
            let (k, val) = kv
                .split_once('=')
                .ok_or_else(|| format!("vxlan: expected key=value, got {kv:?}"))?;
            v.push((k, val));
        }
        Self::from_options(v)
    }
}

/// A `--vxlan NAME[=OFPORT]:OPTIONS` command-line spec.
pub fn parse_cli_spec(spec: &str) -> Result<(String, Option<u32>, VxlanConfig), String> {
    let (head, opts) = spec
        .split_once(':')
        .ok_or_else(|| format!("--vxlan {spec}: expected NAME[=OFPORT]:remote_ip=...,..."))?;
    let (name, ofport) = match head.split_once('=') {
        Some((n, p)) => (
            n,
            Some(
                p.parse::<u32>()
                    .map_err(|_| format!("--vxlan {spec}: bad port number"))?,
            ),
        ),
        None => (head, None),
    };
    if name.is_empty() || name.len() >= 16 {
        return Err(format!("--vxlan {spec}: bad port name"));
    }
    Ok((name.to_string(), ofport, VxlanConfig::parse(opts)?))
}

/// Why a received datagram is not a VXLAN frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecapError {
    /// Shorter than the VXLAN header plus an Ethernet header.
    Short,
    /// Flags other than exactly `I`, or reserved bits set.
    BadHeader,
}

/// Splits a VXLAN UDP payload into (VNI, inner frame).
pub fn decap(payload: &[u8]) -> Result<(u32, &[u8]), DecapError> {
    if payload.len() < 8 + 14 {
        return Err(DecapError::Short);
    }
    if payload[0..4] != [0x08, 0, 0, 0] || payload[7] != 0 {
        return Err(DecapError::BadHeader);
    }
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    Ok((vni, &payload[8..]))
}

/// The outer headers of one encapsulated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub vni: u32,
    pub tos: u8,
    pub ttl: u8,
    pub df: bool,
    pub ip_id: u16,
}

/// Writes the [`ENCAP_LEN`] bytes of outer headers into `hdr` for an inner
/// frame of `inner_len` bytes. `hdr` must be at least `ENCAP_LEN` long.
pub fn write_outer(hdr: &mut [u8], o: &Outer, inner_len: usize) {
    let h = &mut hdr[..ENCAP_LEN];
    h[0..6].copy_from_slice(&o.dst_mac);
    h[6..12].copy_from_slice(&o.src_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[1] = o.tos;
    ip[2..4].copy_from_slice(&((20 + 16 + inner_len) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&o.ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&(if o.df { 0x4000u16 } else { 0 }).to_be_bytes());
    ip[8] = o.ttl;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&o.src_ip.octets());
    ip[16..20].copy_from_slice(&o.dst_ip.octets());
    let c = ipv4_header_csum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut h[34..42];
    udp[0..2].copy_from_slice(&o.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&o.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + 8 + inner_len) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let vx = &mut h[42..50];
    vx[0..4].copy_from_slice(&[0x08, 0, 0, 0]);
    vx[4..8].copy_from_slice(&(o.vni << 8).to_be_bytes());
}

/// The IPv4 header checksum of a 20-byte header whose checksum field is zero.
fn ipv4_header_csum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Encapsulates `inner` into `out` (which needs `ENCAP_LEN + inner.len()`
/// bytes); returns the frame length, or `None` if `out` is too small.
pub fn encap(out: &mut [u8], inner: &[u8], o: &Outer) -> Option<usize> {
    let n = ENCAP_LEN + inner.len();
    if out.len() < n {
        return None;
    }
    out[ENCAP_LEN..n].copy_from_slice(inner);
    write_outer(out, o, inner.len());
    Some(n)
}

/// Offset of the IP header behind the Ethernet/VLAN headers, and its ethertype.
fn inner_l3(f: &[u8]) -> Option<(usize, u16)> {
    let mut o = 12;
    let mut t = u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?]);
    while (t == 0x8100 || t == 0x88a8) && f.len() >= o + 6 {
        o += 4;
        t = u16::from_be_bytes([f[o], f[o + 1]]);
    }
    Some((o + 2, t))
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

/// A hash of the inner flow: IP addresses, protocol and L4 ports (first
/// fragment/unfragmented), else the Ethernet addresses and type. Used for
/// the outer UDP source port, so one inner flow keeps one outer 5-tuple.
pub fn inner_flow_hash(f: &[u8]) -> u32 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    let l3 = inner_l3(f);
    let l4 = |proto: u8, at: usize, h: u64| -> u64 {
        if matches!(proto, 6 | 17 | 132) && f.len() >= at + 4 {
            mix(
                h,
                u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]) as u64,
            )
        } else {
            h
        }
    };
    match l3 {
        Some((o, 0x0800)) if f.len() >= o + 20 => {
            let ihl = (f[o] & 0xf) as usize * 4;
            let proto = f[o + 9];
            h = mix(
                h,
                u64::from_be_bytes(f[o + 12..o + 20].try_into().unwrap_or([0; 8])),
            );
            h = mix(h, proto as u64);
            let frag = u16::from_be_bytes([f[o + 6], f[o + 7]]) & 0x3fff;
            if frag == 0 && ihl >= 20 {
                h = l4(proto, o + ihl, h);
            }
        }
        Some((o, 0x86dd)) if f.len() >= o + 40 => {
            for c in f[o + 8..o + 40].chunks_exact(8) {
                h = mix(h, u64::from_be_bytes(c.try_into().unwrap_or([0; 8])));
            }
            let proto = f[o + 6];
            h = mix(h, proto as u64);
            h = l4(proto, o + 40, h);
        }
        _ => {
            if f.len() >= 14 {
                h = mix(h, u64::from_be_bytes(f[0..8].try_into().unwrap_or([0; 8])));
                h = mix(h, u64::from_be_bytes(f[6..14].try_into().unwrap_or([0; 8])));
            }
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Outer UDP source port for an inner flow hash (OVS's scaling).
pub fn src_port(hash: u32) -> u16 {
    let span = (SRC_PORT_MAX - SRC_PORT_MIN) as u64;
    SRC_PORT_MIN + ((hash as u64 * span) >> 32) as u16
}

/// TOS and TTL of the inner IP header (`None` for non-IP).
fn inner_tos_ttl(f: &[u8]) -> Option<(u8, u8)> {
    match inner_l3(f)? {
        (o, 0x0800) if f.len() >= o + 20 => Some((f[o + 1], f[o + 8])),
        (o, 0x86dd) if f.len() >= o + 40 => {
            let tc = (u16::from_be_bytes([f[o], f[o + 1]]) >> 4) as u8;
            Some((tc, f[o + 7]))
        }
        _ => None,
    }
}

/// An ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too
/// big" reply to an oversized inner frame `f`, advertising `mtu` (the
/// inner IP MTU), from the inner destination to the inner sender. `None`
/// if no reply is due (not IP, IPv4 without DF, ICMP error itself).
pub fn too_big_reply(f: &[u8], mtu: u32, out: &mut Vec<u8>) -> Option<()> {
    let (o, t) = inner_l3(f)?;
    out.clear();
    out.extend_from_slice(&f[6..12]);
    out.extend_from_slice(&f[0..6]);
    out.extend_from_slice(&f[12..o]); // VLAN tags + ethertype as received
    match t {
        0x0800 if f.len() >= o + 20 => {
            let ip = &f[o..];
            let ihl = (ip[0] & 0xf) as usize * 4;
            let df = u16::from_be_bytes([ip[6], ip[7]]) & 0x4000 != 0;
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            let icmp_err = ip[9] == 1 && ip.get(ihl).is_some_and(|&ty| !matches!(ty, 0 | 8));
            if !df || frag != 0 || icmp_err || ihl < 20 || ip.len() < ihl {
                return None;
            }
            let quote = &ip[..(ihl + 8).min(ip.len())];
            let total = 20 + 8 + quote.len();
            let l3 = out.len();
            out.extend_from_slice(&[0x45, 0xc0]);
            out.extend_from_slice(&(total as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
            out.extend_from_slice(&ip[16..20]);
            out.extend_from_slice(&ip[12..16]);
            let c = ipv4_header_csum(&out[l3..l3 + 20]);
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            let l4 = out.len();
            out.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
            out.extend_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
            out.extend_from_slice(quote);
            let c = inet_csum(0, &out[l4..]);
            out[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
            Some(())
        }
        0x86dd if f.len() >= o + 40 => {
            let ip = &f[o..];
            if ip[6] == 58 && ip.get(40).is_some_and(|&ty| ty < 128) {
                return None;
            }
            // As much of the packet as fits in the minimum IPv6 MTU.
            let quote = &ip[..ip.len().min(1280 - 48)];
            let plen = 8 + quote.len();
            let l3 = out.len();
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(plen as u16).to_be_bytes());
            out.extend_from_slice(&[58, 64]);
            out.extend_from_slice(&ip[24..40]);
            out.extend_from_slice(&ip[8..24]);
            let l4 = out.len();
            out.extend_from_slice(&[2, 0, 0, 0]);
            out.extend_from_slice(&mtu.to_be_bytes());
            out.extend_from_slice(quote);
            let mut s = 0u32;
            for c in out[l3 + 8..l3 + 40].chunks_exact(2) {
                s += u16::from_be_bytes([c[0], c[1]]) as u32;
            }
            s += plen as u32 + 58;
            let c = inet_csum(s, &out[l4..]);
            out[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
            Some(())
        }
        _ => None,
    }
}

fn inet_csum(mut s: u32, d: &[u8]) -> u16 {
    let mut ch = d.chunks_exact(2);
    for c in &mut ch {
        s += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = ch.remainder() {
        s += (*b as u32) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// VXLAN-specific counters (besides [`PortStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxlanStats {
    /// Frames decapsulated and handed to the pipeline.
    pub decap: u64,
    /// Frames encapsulated and queued for the underlay.
    pub encap: u64,
    /// Received with a VNI other than the fixed `key`.
    pub unknown_vni: u64,
    /// Received from a source other than the fixed `remote_ip`.
    pub remote_mismatch: u64,
    /// Received datagrams that are not VXLAN (short, bad flags, oversized inner).
    pub bad_header: u64,
    /// Output with `remote_ip=flow` but no `tun_dst`.
    pub no_remote: u64,
    /// No route to the remote (or the route leaves by another interface).
    pub no_route: u64,
    /// Next hop not resolved yet (the kernel was asked to resolve it).
    pub no_neigh: u64,
    /// Inner frame too big for the underlay MTU.
    pub mtu_drops: u64,
    /// ICMP frag-needed / ICMPv6 packet-too-big returned to inner senders.
    pub too_big_sent: u64,
    /// Neighbour resolutions asked of the kernel.
    pub neigh_probes: u64,
    /// `recvmmsg` calls that returned datagrams (receive batching: decap /
    /// rx_batches is the mean batch).
    pub rx_batches: u64,
}

#[derive(Debug, Clone, Copy)]
struct Hop {
    mac: Option<[u8; 6]>,
    mtu: u32,
    ok: bool,
    checked: Instant,
    probed: Option<Instant>,
}

/// The underlay interface and the cached next hops.
#[derive(Debug)]
struct Underlay {
    rtnl: Rtnl,
    ifindex: u32,
    link: Link,
    link_checked: Instant,
    hops: HashMap<Ipv4Addr, Hop>,
}

enum HopError {
    NoRoute,
    NoNeigh,
}

impl Underlay {
    fn refresh_link(&mut self, now: Instant) {
        if now.saturating_duration_since(self.link_checked) >= REFRESH {
            self.link_checked = now;
            if let Ok(l) = self.rtnl.link_get(self.ifindex) {
                self.link = l;
            }
        }
    }

    /// Destination MAC and MTU towards `remote`.
    fn resolve(
        &mut self,
        remote: Ipv4Addr,
        now: Instant,
        st: &mut VxlanStats,
    ) -> Result<([u8; 6], u32), HopError> {
        let fresh = self.hops.get(&remote).is_some_and(|h| {
            let age = now.saturating_duration_since(h.checked);
            age < if h.mac.is_some() {
                REFRESH
            } else {
                REFRESH_UNRESOLVED
            }
        });
        if !fresh {
            self.refresh_link(now);
            let prev = self.hops.get(&remote).copied();
            let h = self.lookup(remote, prev, now, st);
            if self.hops.len() >= MAX_HOPS && prev.is_none() {
                self.hops.clear();
            }
            self.hops.insert(remote, h);
        }
        let h = self.hops.get(&remote).ok_or(HopError::NoRoute)?;
        match (h.ok, h.mac) {
            (false, _) => Err(HopError::NoRoute),
            (true, None) => Err(HopError::NoNeigh),
            (true, Some(m)) => Ok((m, h.mtu)),
        }
    }

    fn lookup(
        &mut self,
        remote: Ipv4Addr,
        prev: Option<Hop>,
        now: Instant,
        st: &mut VxlanStats,
    ) -> Hop {
        let mut h = Hop {
            mac: None,
            mtu: self.link.mtu,
            ok: false,
            checked: now,
            probed: prev.and_then(|p| p.probed),
        };
        let Ok(r) = self.rtnl.route_get(remote) else {
            return h;
        };
        if r.oif != self.ifindex {
            return h;
        }
        h.ok = true;
        h.mtu = r.mtu.unwrap_or(self.link.mtu).min(self.link.mtu);
        let next = r.gateway.unwrap_or(remote);
        let n = self.rtnl.neigh_get(r.oif, next).ok().flatten();
        let usable = n
            .filter(|n| n.state & nud::VALID != 0)
            .and_then(|n| n.lladdr);
        h.mac = usable;
        let stale = n.is_some_and(|n| n.state & nud::STALE != 0);
        let in_progress =
            n.is_some_and(|n| n.state & (nud::INCOMPLETE | nud::PROBE | nud::DELAY) != 0);
        let due = h
            .probed
            .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH);
        if (usable.is_none() && !in_progress || stale) && due {
            st.neigh_probes += 1;
            h.probed = Some(now);
            let _ = self.rtnl.neigh_use(r.oif, next);
        }
        h
    }
}

/// A VXLAN tunnel port; see the module documentation.
pub struct VxlanPort {
    name: String,
    cfg: VxlanConfig,
    /// The shared receive socket of `local_ip:dst_port` and this port's id in it.
    ep: Arc<Mutex<Endpoint>>,
    id: u64,
    rx_fd: RawFd,
    rx_tun: Vec<TunnelMeta>,
    tx_sock: PacketSocket,
    tx_buf: Box<[u8]>,
    tx_lens: Vec<u16>,
    underlay: Underlay,
    now: Instant,
    ip_id: u16,
    pending_icmp: Vec<(Vec<u8>, TunnelMeta)>,
    icmp_scratch: Vec<u8>,
    stats: PortStats,
    vx: VxlanStats,
}

impl std::fmt::Debug for VxlanPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VxlanPort")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .field("ifindex", &self.underlay.ifindex)
            .finish()
    }
}

/// Opens a VXLAN port from OVS-style options (e.g. the `options` column of
/// an OVSDB `Interface` row with `type=vxlan`).
pub fn open_from_options<'a>(
    name: &str,
    opts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<VxlanPort, PortError> {
    let cfg = VxlanConfig::from_options(opts).map_err(|e| PortError::Setup {
        port: name.into(),
        what: "vxlan options",
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    VxlanPort::open(name, cfg)
}

impl VxlanPort {
    /// Opens the port's sockets in the calling thread's network namespace.
    pub fn open(name: &str, mut cfg: VxlanConfig) -> Result<Self, PortError> {
        let setup = |what: &'static str| {
            let port = name.to_string();
            move |source: io::Error| PortError::Setup { port, what, source }
        };
        let mut rtnl = Rtnl::open().map_err(setup("rtnetlink socket"))?;
        if cfg.local_ip.is_unspecified()
            && let Remote::Fixed(r) = cfg.remote
        {
            // No local_ip: the kernel's preferred source towards the remote.
            let route = rtnl.route_get(r).map_err(setup("route to remote_ip"))?;
            cfg.local_ip = route.prefsrc.ok_or_else(|| {
                setup("choosing local_ip")(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the route to {r} names no source address; set local_ip"),
                ))
            })?;
        }
        let ifindex = match &cfg.underlay {
            Some(u) => sys::ifindex(u).map_err(|source| PortError::Interface {
                name: u.clone(),
                source,
            })?,
            None => rtnl
                .addr_ifindex(cfg.local_ip)
                .map_err(setup("address lookup"))?
                .ok_or_else(|| {
                    setup("finding the underlay interface")(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no interface holds local_ip {}", cfg.local_ip),
                    ))
                })?,
        };
        let link = rtnl.link_get(ifindex).map_err(setup("underlay link"))?;
        static IDS: AtomicU64 = AtomicU64::new(1);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        let ep = Endpoint::join(
            SocketAddrV4::new(cfg.local_ip, cfg.dst_port),
            id,
            cfg.remote,
            cfg.key,
        )
        .map_err(setup("binding local_ip:dst_port"))?;
        let rx_fd = lock(&ep).sock.as_raw_fd();
        let tx_sock = PacketSocket::open_tx(ifindex, TX_BATCH).map_err(setup("AF_PACKET tx"))?;
        let now = Instant::now();
        Ok(Self {
            name: name.into(),
            cfg,
            ep,
            id,
            rx_fd,
            rx_tun: Vec::with_capacity(256),
            tx_sock,
            tx_buf: vec![0; TX_BATCH * STRIDE].into_boxed_slice(),
            tx_lens: Vec::with_capacity(TX_BATCH),
            underlay: Underlay {
                rtnl,
                ifindex,
                link,
                link_checked: now,
                hops: HashMap::new(),
            },
            now,
            ip_id: 0,
            pending_icmp: Vec::new(),
            icmp_scratch: Vec::new(),
            stats: PortStats::default(),
            vx: VxlanStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VxlanConfig {
        &self.cfg
    }

    /// VXLAN counters.
    pub fn vxlan_stats(&self) -> VxlanStats {
        self.vx
    }

    fn send_queued(&mut self) {
        let n = self.tx_lens.len();
        if n == 0 {
            return;
        }
        match self
            .tx_sock
            .send_batch(&self.tx_buf[..n * STRIDE], STRIDE, &self.tx_lens)
        {
            Ok(sent) => {
                self.stats.tx_packets += sent as u64;
                self.stats.tx_bytes += self.tx_lens[..sent].iter().map(|&l| l as u64).sum::<u64>();
                self.stats.tx_drops += (n - sent) as u64;
            }
            Err(_) => {
                self.stats.tx_errors += 1;
                self.stats.tx_drops += n as u64;
            }
        }
        self.tx_lens.clear();
    }

    fn encap_one(&mut self, inner: &[u8], tun: Option<&TunnelMeta>) {
        let remote = match self.cfg.remote {
            Remote::Fixed(r) => r,
            Remote::Flow => match tun.map(|t| t.dst).filter(|&d| d != 0) {
                Some(d) => Ipv4Addr::from(d),
                None => {
                    self.vx.no_remote += 1;
                    self.stats.tx_drops += 1;
                    return;
                }
            },
        };
        let vni = match self.cfg.key {
            Key::Fixed(k) => k,
            Key::Flow => tun.map_or(0, |t| t.id as u32 & 0xff_ffff),
        };
        let (dst_mac, mtu) = match self.underlay.resolve(remote, self.now, &mut self.vx) {
            Ok(x) => x,
            Err(e) => {
                match e {
                    HopError::NoRoute => self.vx.no_route += 1,
                    HopError::NoNeigh => self.vx.no_neigh += 1,
                }
                self.stats.tx_drops += 1;
                return;
            }
        };
        if inner.len() + OUTER_L3_OVERHEAD > mtu as usize || inner.len() > FRAME_BUF {
            self.vx.mtu_drops += 1;
            self.stats.tx_drops += 1;
            let inner_mtu = (mtu as usize).saturating_sub(OUTER_L3_OVERHEAD + 14) as u32;
            if self.pending_icmp.len() < MAX_PENDING_ICMP
                && too_big_reply(inner, inner_mtu, &mut self.icmp_scratch).is_some()
            {
                self.vx.too_big_sent += 1;
                let meta = TunnelMeta {
                    id: vni as u64,
                    src: u32::from(remote),
                    dst: u32::from(self.cfg.local_ip),
                    ..Default::default()
                };
                self.pending_icmp.push((self.icmp_scratch.clone(), meta));
            }
            return;
        }
        let (itos, ittl) = inner_tos_ttl(inner).unwrap_or((0, 64));
        let o = Outer {
            src_mac: self.underlay.link.mac,
            dst_mac,
            src_ip: self.cfg.local_ip,
            dst_ip: remote,
            src_port: src_port(inner_flow_hash(inner)),
            dst_port: self.cfg.dst_port,
            vni,
            tos: match self.cfg.tos {
                HdrByte::Fixed(t) => t,
                HdrByte::Inherit => itos,
            },
            ttl: match self.cfg.ttl {
                HdrByte::Fixed(t) => t,
                HdrByte::Inherit => ittl.max(1),
            },
            df: self.cfg.df,
            ip_id: self.ip_id,
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        if self.tx_lens.len() == TX_BATCH {
            self.send_queued();
        }
        let i = self.tx_lens.len();
        let slot = &mut self.tx_buf[i * STRIDE..(i + 1) * STRIDE];
        if let Some(n) = encap(slot, inner, &o) {
            self.tx_lens.push(n as u16);
            self.vx.encap += 1;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for VxlanPort {
    fn drop(&mut self) {
        lock(&self.ep).leave(self.id);
    }
}

impl Port for VxlanPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
        batch.clear();
        self.rx_tun.clear();
        self.now = Instant::now();
        self.underlay.refresh_link(self.now);
        while !batch.is_full()
            && let Some((f, meta)) = self.pending_icmp.pop()
        {
            batch.push(&f);
            self.rx_tun.push(meta);
        }
        let local = u32::from(self.cfg.local_ip);
        let ep = self.ep.clone();
        let mut ep = lock(&ep);
        // Frames another port of this endpoint read for us.
        while !batch.is_full()
            && let Some((f, meta)) = ep.dequeue(self.id)
        {
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += f.len() as u64;
            self.vx.decap += 1;
            batch.push(&f);
            self.rx_tun.push(meta);
            ep.recycle(f);
        }
        // The shared receive buffers, taken out while `ep` is used.
        let mut scratch = std::mem::take(&mut ep.scratch);
        let mut slots = std::mem::take(&mut ep.rx_slots);
        let mut rx = ep.rx.take();
        let fd = ep.sock.as_raw_fd();
        // Bounded: at most twice the batch of datagrams per call, taken a
        // `recvmmsg` batch at a time.
        let mut budget = batch.capacity() * 2;
        while !batch.is_full() && budget > 0 {
            let Some(r) = rx.as_mut() else { break };
            let want = (batch.capacity() - batch.len())
                .min(budget)
                .min(slots.len());
            let n = match r.recv(fd, &mut scratch, endpoint::RX_STRIDE, &mut slots[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    self.stats.rx_errors += 1;
                    break;
                }
            };
            self.vx.rx_batches += 1;
            budget = budget.saturating_sub(n);
            for (i, d) in slots[..n].iter().enumerate() {
                let buf = &scratch[i * endpoint::RX_STRIDE..(i + 1) * endpoint::RX_STRIDE];
                let dgram = (d.len != usize::MAX).then(|| &buf[..d.len]);
                let (vni, inner) = match dgram.map(decap) {
                    Some(Ok(x)) if x.1.len() <= FRAME_BUF => x,
                    _ => {
                        self.vx.bad_header += 1;
                        self.stats.rx_drops += 1;
                        continue;
                    }
                };
                let src = d.src;
                let meta = TunnelMeta {
                    id: vni as u64,
                    src: u32::from(src),
                    dst: local,
                    ..Default::default()
                };
                match ep.route(src, vni) {
                    Route::Port(id) if id == self.id && !batch.is_full() => {
                        self.stats.rx_packets += 1;
                        self.stats.rx_bytes += inner.len() as u64;
                        self.vx.decap += 1;
                        batch.push(inner);
                        self.rx_tun.push(meta);
                    }
                    Route::Port(id) => {
                        if !ep.enqueue(id, inner, meta) {
                            self.stats.rx_drops += 1;
                        }
                    }
                    Route::UnknownVni => {
                        self.vx.unknown_vni += 1;
                        self.stats.rx_drops += 1;
                    }
                    Route::UnknownRemote => {
                        self.vx.remote_mismatch += 1;
                        self.stats.rx_drops += 1;
                    }
                }
            }
        }
        ep.rx = rx;
        ep.rx_slots = slots;
        ep.scratch = scratch;
        batch.len()
    }

    fn tx_batch(&mut self, batch: &mut PacketBatch) {
        self.now = Instant::now();
        for i in 0..batch.len() {
            // Split borrow: the frame lives in `batch`, not in `self`.
            let f = batch.get(i);
            self.encap_one(f, None);
        }
        batch.clear();
        self.send_queued();
    }

    fn flush(&mut self) {
        self.send_queued();
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.rx_fd)
    }

    fn link_state(&self) -> LinkState {
        LinkState {
            admin_up: true,
            oper_up: self.underlay.link.up,
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn details(&self) -> String {
        let v = &self.vx;
        format!(
            "vxlan decap {} encap {} unknown_vni {} remote_mismatch {} bad_header {} no_remote {} no_route {} no_neigh {} mtu_drops {} too_big_sent {} neigh_probes {} rx_batches {}",
            v.decap,
            v.encap,
            v.unknown_vni,
            v.remote_mismatch,
            v.bad_header,
            v.no_remote,
            v.no_route,
            v.no_neigh,
            v.mtu_drops,
            v.too_big_sent,
            v.neigh_probes,
            v.rx_batches
        )
    }

    fn kind(&self) -> &'static str {
        "vxlan"
    }

    fn rx_tunnel(&self) -> &[TunnelMeta] {
        &self.rx_tun
    }

    fn is_tunnel(&self) -> bool {
        true
    }

    fn push_tunnel(&mut self, frame: &[u8], tun: Option<&TunnelMeta>) {
        self.encap_one(frame, tun);
    }
}

#[cfg(test)]
mod tests;
