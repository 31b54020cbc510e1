//! rtnetlink requests for the VXLAN underlay: route lookup (`RTM_GETROUTE`
//! for one destination, as `ip route get`), neighbour lookup
//! (`RTM_GETNEIGH` for one address), asking the kernel to resolve a
//! neighbour (`RTM_NEWNEIGH` with `NTF_USE`, as `ip neigh replace … use`:
//! the kernel sends the ARP probe and keeps the entry fresh), link MTU/MAC
//! (`RTM_GETLINK`) and the interface holding an address (`RTM_GETADDR`
//! dump). Messages are built and parsed here (safe code); the socket is
//! [`crate::sys::netlink::NetlinkSocket`].

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::sys::netlink::NetlinkSocket;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ROOT: u16 = 0x100;
const NLM_F_MATCH: u16 = 0x200;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWLINK: u16 = 16;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFA_LOCAL: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const NTF_USE: u8 = 0x01;
const AF_INET: u8 = libc::AF_INET as u8;

/// Neighbour states (`NUD_*`).
pub mod nud {
    pub const INCOMPLETE: u16 = 0x01;
    pub const REACHABLE: u16 = 0x02;
    pub const STALE: u16 = 0x04;
    pub const DELAY: u16 = 0x08;
    pub const PROBE: u16 = 0x10;
    pub const FAILED: u16 = 0x20;
    pub const NOARP: u16 = 0x40;
    pub const PERMANENT: u16 = 0x80;
    /// States whose link-layer address may be used.
    pub const VALID: u16 = REACHABLE | STALE | DELAY | PROBE | NOARP | PERMANENT;
}

/// The kernel's answer to a route lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub oif: u32,
    pub gateway: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
    /// Route MTU metric, if set.
    pub mtu: Option<u32>,
}

/// A neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    pub state: u16,
    pub lladdr: Option<[u8; 6]>,
}

/// Link attributes the underlay needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub mtu: u32,
    pub mac: [u8; 6],
    /// `IFF_UP` and `IFF_RUNNING`.
    pub up: bool,
}

/// An rtnetlink client (one blocking socket, replies awaited with a timeout).
#[derive(Debug)]
pub struct Rtnl {
    sock: NetlinkSocket,
    seq: u32,
    buf: Vec<u8>,
}

/// Iterates over the netlink messages in a datagram: (type, flags, seq, payload).
fn messages(mut d: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if d.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(d[0..4].try_into().ok()?) as usize;
        if len < 16 || len > d.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([d[4], d[5]]);
        let seq = u32::from_ne_bytes(d[8..12].try_into().ok()?);
        let payload = &d[16..len];
        d = &d[align(len).min(d.len())..];
        Some((ty, seq, payload))
    })
}

/// Iterates over route attributes: (type without flags, value).
pub(crate) fn attrs(mut d: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        if len < 4 || len > d.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([d[2], d[3]]) & 0x3fff;
        let v = &d[4..len];
        d = &d[align(len).min(d.len())..];
        Some((ty, v))
    })
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
}

fn u32_ne(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes)
}

/// Builds one request: header, fixed body, attributes.
fn build(ty: u16, flags: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m.extend_from_slice(body);
    m.resize(align(m.len()), 0);
    for (t, v) in attrs {
        m.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&t.to_ne_bytes());
        m.extend_from_slice(v);
        m.resize(align(m.len()), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&ty.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

impl Rtnl {
    /// Opens the socket (replies awaited for at most 200 ms).
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            sock: NetlinkSocket::open_route(Duration::from_millis(200))?,
            seq: 1,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends a request and feeds every reply message of its sequence number
    /// to `on` (type, payload) until the reply is complete: one message for
    /// a plain request, `NLMSG_DONE` for a dump, the ack for `NLM_F_ACK`.
    /// A netlink error reply becomes `Err` (errno).
    fn request(
        &mut self,
        ty: u16,
        flags: u16,
        body: &[u8],
        at: &[(u16, &[u8])],
        mut on: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_ROOT != 0 && ty % 4 == 2;
        let ack = flags & NLM_F_ACK != 0;
        self.sock
            .send(&build(ty, flags | NLM_F_REQUEST, seq, body, at))?;
        // Bounded: every iteration either waits (≤ timeout) or consumes data.
        for _ in 0..10_000 {
            let n = self.sock.recv(&mut self.buf)?;
            let mut done = false;
            for (t, s, p) in messages(&self.buf[..n]) {
                if s != seq {
                    continue; // a late reply to an earlier, abandoned request
                }
                match t {
                    NLMSG_ERROR => {
                        let e = p.get(..4).and_then(|b| b.try_into().ok());
                        let e = e.map(i32::from_ne_bytes).unwrap_or(-libc::EIO);
                        if e != 0 {
                            return Err(io::Error::from_raw_os_error(-e));
                        }
                        done = true;
                    }
                    NLMSG_DONE => done = true,
                    _ => {
                        on(t, p);
                        if !dump && !ack {
                            done = true;
                        }
                    }
                }
            }
            if done {
                return Ok(());
            }
        }
        Err(io::Error::other("netlink: reply never completed"))
    }

    /// `ip route get DST`.
    pub fn route_get(&mut self, dst: Ipv4Addr) -> io::Result<Route> {
        let mut body = [0u8; 12];
        body[0] = AF_INET;
        body[1] = 32; // rtm_dst_len
        let mut r = None;
        self.request(
            RTM_GETROUTE,
            0,
            &body,
            &[(RTA_DST, &dst.octets())],
            |t, p| {
                if t != RTM_NEWROUTE || p.len() < 12 {
                    return;
                }
                let mut route = Route {
                    oif: 0,
                    gateway: None,
                    prefsrc: None,
                    mtu: None,
                };
                for (a, v) in attrs(&p[12..]) {
                    match a {
                        RTA_OIF => route.oif = u32_ne(v).unwrap_or(0),
                        RTA_GATEWAY => route.gateway = ipv4(v),
                        RTA_PREFSRC => route.prefsrc = ipv4(v),
                        RTA_METRICS => {
                            for (m, mv) in attrs(v) {
                                if m == RTAX_MTU {
                                    route.mtu = u32_ne(mv).filter(|&x| x > 0);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                r = Some(route);
            },
        )?;
        r.ok_or_else(|| io::Error::other("netlink: no route in reply"))
    }

    fn ndmsg(ifindex: u32, state: u16, flags: u8) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = AF_INET;
        b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        b[8..10].copy_from_slice(&state.to_ne_bytes());
        b[10] = flags;
        b
    }

    /// `ip neigh get IP dev IFINDEX`; `None` if there is no entry.
    pub fn neigh_get(&mut self, ifindex: u32, ip: Ipv4Addr) -> io::Result<Option<Neigh>> {
        let body = Self::ndmsg(ifindex, 0, 0);
        let mut r = None;
        let res = self.request(
            RTM_GETNEIGH,
            0,
            &body,
            &[(NDA_DST, &ip.octets())],
            |t, p| {
                if t != RTM_NEWNEIGH || p.len() < 12 {
                    return;
                }
                let state = u16::from_ne_bytes([p[8], p[9]]);
                let lladdr = attrs(&p[12..])
                    .find(|(a, _)| *a == NDA_LLADDR)
                    .and_then(|(_, v)| <[u8; 6]>::try_from(v).ok());
                r = Some(Neigh { state, lladdr });
            },
        );
        match res {
            Ok(()) => Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the kernel to resolve (or re-confirm) neighbour `ip` on
    /// `ifindex`: `RTM_NEWNEIGH` with `NTF_USE` creates the entry if needed
    /// and runs the kernel's resolution (ARP probe) as if it had a packet for it.
    pub fn neigh_use(&mut self, ifindex: u32, ip: Ipv4Addr) -> io::Result<()> {
        let body = Self::ndmsg(ifindex, 0, NTF_USE);
        self.request(
            RTM_NEWNEIGH,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &body,
            &[(NDA_DST, &ip.octets())],
            |_, _| {},
        )
    }

    /// MTU, MAC and state of interface `ifindex`.
    pub fn link_get(&mut self, ifindex: u32) -> io::Result<Link> {
        let mut body = [0u8; 16];
        body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        let mut r = None;
        self.request(RTM_GETLINK, 0, &body, &[], |t, p| {
            if t != RTM_NEWLINK || p.len() < 16 {
                return;
            }
            let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
            let mut l = Link {
                mtu: 1500,
                mac: [0; 6],
                up: flags & (libc::IFF_UP as u32) != 0 && flags & (libc::IFF_RUNNING as u32) != 0,
            };
            for (a, v) in attrs(&p[16..]) {
                match a {
                    IFLA_MTU => l.mtu = u32_ne(v).unwrap_or(1500),
                    IFLA_ADDRESS => {
                        if let Ok(m) = <[u8; 6]>::try_from(v) {
                            l.mac = m;
                        }
                    }
                    _ => {}
                }
            }
            r = Some(l);
        })?;
        r.ok_or_else(|| io::Error::other("netlink: no link in reply"))
    }

    /// The interface holding IPv4 address `ip` (`ip -4 addr` dump).
    pub fn addr_ifindex(&mut self, ip: Ipv4Addr) -> io::Result<Option<u32>> {
        let mut body = [0u8; 8];
        body[0] = AF_INET;
        let mut r = None;
        self.request(RTM_GETADDR, NLM_F_ROOT | NLM_F_MATCH, &body, &[], |t, p| {
            if t != RTM_NEWADDR || p.len() < 8 || r.is_some() {
                return;
            }
            let idx = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
            let hit = attrs(&p[8..])
                .any(|(a, v)| (a == IFA_LOCAL || a == IFA_ADDRESS) && ipv4(v) == Some(ip));
            if hit {
                r = Some(idx);
            }
        })?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_walk_messages_and_attrs() {
        let m = build(
            RTM_GETROUTE,
            NLM_F_REQUEST,
            7,
            &[1, 2, 3],
            &[(RTA_DST, &[10, 0, 0, 1])],
        );
        assert_eq!(m.len() % 4, 0);
        let v: Vec<_> = messages(&m).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, RTM_GETROUTE);
        assert_eq!(v[0].1, 7);
        let a: Vec<_> = attrs(&v[0].2[4..]).collect();
        assert_eq!(a, vec![(RTA_DST, &[10u8, 0, 0, 1][..])]);
        // Truncated/garbage input never panics and yields nothing bogus.
        assert_eq!(messages(&m[..10]).count(), 0);
        assert_eq!(attrs(&[0xff, 0xff, 1]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
    }
}
