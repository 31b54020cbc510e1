//! A small synchronous rtnetlink client: just the link/address/route
//! requests the plugin needs (no `ip` exec). Every socket lives in the network
//! namespace of the thread that opened it (see [`crate::netns::run_in`]).

use crate::nlsock::RawSock;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const NLA_F_NESTED: u16 = 0x8000;

const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn fmt_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One request under construction: header, fixed part, attributes.
#[derive(Debug)]
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(fixed);
        pad(&mut buf);
        Self { buf }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn begin_raw(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn pad(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// `struct ifinfomsg`.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    // bytes 0..4: family AF_UNSPEC, pad, type
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// A veth pair for [`Netlink::create_veth`].
#[derive(Debug, Clone, Copy)]
pub struct VethReq<'a> {
    pub host: &'a str,
    pub host_mac: [u8; 6],
    /// Set as the host side's alias.
    pub alias: &'a str,
    pub mtu: u32,
    pub peer: &'a str,
    /// An open file of the peer's netns.
    pub peer_ns: RawFd,
    pub peer_mac: Option<[u8; 6]>,
}

/// `RTM_NEWLINK` creating a veth pair (see [`Netlink::create_veth`]).
fn msg_create_veth(r: &VethReq<'_>) -> Msg {
    // NLM_F_ECHO: the kernel (6.1+) also sends the new host side's link
    // notification back to this socket; its IFLA_LINK is the pod side's
    // ifindex, so the pod side needs no lookup (one RTNL round fewer).
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        &ifinfomsg(0, IFF_UP, IFF_UP),
    );
    m.attr_str(IFLA_IFNAME, r.host)
        .attr(IFLA_ADDRESS, &r.host_mac)
        .attr_u32(IFLA_MTU, r.mtu);
    let li = m.begin(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "veth");
    let data = m.begin(IFLA_INFO_DATA);
    let p = m.begin_raw(VETH_INFO_PEER);
    m.raw(&ifinfomsg(0, 0, 0));
    // The pod side asks for one queue each way: otherwise it gets one per
    // possible CPU and is cut down to one after it is registered, and the
    // cut waits for an expedited RCU grace period while holding the RTNL
    // lock. The host side keeps that wait on purpose: measured with 100
    // concurrent ADDs, removing it too let ovs-vswitchd (which reconfigures
    // every bridge on each link notification) run 56-69 reconfigurations
    // instead of 3-9 and made the ADDs slower; removing only the pod side's
    // made them faster (BENCHMARKS.md, session 7).
    m.attr_str(IFLA_IFNAME, r.peer)
        .attr_u32(IFLA_MTU, r.mtu)
        .attr_u32(IFLA_NUM_TX_QUEUES, 1)
        .attr_u32(IFLA_NUM_RX_QUEUES, 1)
        .attr_u32(IFLA_NET_NS_FD, r.peer_ns as u32);
    if let Some(mac) = &r.peer_mac {
        m.attr(IFLA_ADDRESS, mac);
    }
    m.end(p);
    m.end(data);
    m.end(li);
    m
}

/// `RTM_NEWLINK` setting a link's alias (`ifalias`) and, with `no_ll`,
/// turning its IPv6 address generation off (`addrgenmode none`), as one
/// change (one link notification). Sent before the link has carrier (for a
/// veth: before its peer goes up): the host side of a pod's veth is a switch
/// port and needs no link-local address, whose DAD, MLD reports and address
/// notifications would otherwise reach the switch (which re-reads every
/// interface's addresses on each of them).
fn msg_alias_no_ll(name: &str, alias: &str, no_ll: bool) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(0, 0, 0));
    m.attr_str(IFLA_IFNAME, name)
        .attr(IFLA_IFALIAS, alias.as_bytes());
    if no_ll {
        let af = m.begin(IFLA_AF_SPEC);
        let v6 = m.begin(libc::AF_INET6 as u16);
        m.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
        m.end(v6);
        m.end(af);
    }
    m
}

/// `RTM_NEWLINK`: MAC (optional) and up.
fn msg_mac_up(index: i32, mac: Option<&[u8; 6]>) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, IFF_UP, IFF_UP));
    if let Some(mac) = mac {
        m.attr(IFLA_ADDRESS, mac);
    }
    m
}

/// `RTM_NEWADDR`: `addr/prefix` on the link.
fn msg_add_addr(index: i32, addr: IpAddr, prefix: u8) -> Msg {
    let mut fixed = [0u8; 8];
    fixed[0] = family(&addr);
    fixed[1] = prefix;
    fixed[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
    let b = ip_bytes(&addr);
    m.attr(IFA_LOCAL, &b).attr(IFA_ADDRESS, &b);
    m
}

/// `RTM_NEWROUTE`: `dst/len` via `gw` out of the link (main table).
fn msg_add_route(index: i32, dst: IpAddr, dst_len: u8, gw: Option<IpAddr>) -> Msg {
    let mut fixed = [0u8; 12];
    fixed[0] = family(&dst);
    fixed[1] = dst_len;
    fixed[4] = RT_TABLE_MAIN;
    fixed[5] = RTPROT_BOOT;
    fixed[6] = RT_SCOPE_UNIVERSE;
    fixed[7] = RTN_UNICAST;
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &fixed);
    if dst_len > 0 {
        m.attr(RTA_DST, &ip_bytes(&dst));
    }
    if let Some(gw) = gw {
        m.attr(RTA_GATEWAY, &ip_bytes(&gw));
    }
    m.attr_u32(RTA_OIF, index as u32);
    m
}

/// Iterates `(type, payload)` over netlink attributes.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        let adv = len.next_multiple_of(4).min(b.len());
        b = &b[adv..];
        Some((ty, payload))
    })
}

/// A NETLINK_ROUTE socket with request/ack and dump helpers.
#[derive(Debug)]
pub struct Netlink {
    sock: RawSock,
    seq: u32,
    buf: Vec<u8>,
}

/// A link as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: i32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    /// `IFLA_INFO_KIND` (`veth`, `tun`, ...; empty for physical devices).
    pub kind: String,
    /// A tun/tap device's properties (`IFLA_INFO_DATA` of kind `tun`).
    pub tun: Option<TunInfo>,
}

/// What the kernel reports about a tun/tap device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunInfo {
    /// A tap (Ethernet frames), not a tun (IP packets).
    pub tap: bool,
    /// Frames carry the 4-byte packet-information header (`IFF_NO_PI` not set).
    pub pi: bool,
    pub multi_queue: bool,
    pub persist: bool,
}

/// A route as read back: `dst` is CIDR (`0.0.0.0/0` for default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: String,
    pub gateway: Option<String>,
}

impl Netlink {
    /// Opens a socket in the calling thread's netns.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            sock: RawSock::open()?,
            seq: 0,
            buf: vec![0u8; 64 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request with NLM_F_ACK and waits for its ack (`Err` = the errno).
    fn request(&mut self, m: Msg) -> io::Result<()> {
        let mut m = m;
        let flags = u16::from_ne_bytes([m.buf[6], m.buf[7]]) | NLM_F_ACK;
        m.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let seq = self.next_seq();
        self.sock.send(&m.finish(seq))?;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for (ty, mseq, payload) in messages(&self.buf[..n]) {
                if mseq != seq || ty != NLMSG_ERROR {
                    continue;
                }
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-libc::EPROTO);
                return if code == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-code))
                };
            }
        }
    }

    /// Sends several requests in one `send` (each with NLM_F_ACK) and waits
    /// for every ack; the kernel runs them in order. `Err` = the first
    /// failure (`(index of the request, errno)`).
    fn batch(&mut self, msgs: Vec<Msg>) -> Result<(), (usize, io::Error)> {
        self.batch_with(msgs, |_, _, _| {})
    }

    /// [`Self::batch`], also handing every reply that is not an ack (an
    /// `NLM_F_ECHO` echo) to `reply` as `(index of the request, type,
    /// payload)`.
    fn batch_with(
        &mut self,
        msgs: Vec<Msg>,
        mut reply: impl FnMut(usize, u16, &[u8]),
    ) -> Result<(), (usize, io::Error)> {
        let first = self.seq.wrapping_add(1);
        let mut buf = Vec::new();
        let n = msgs.len();
        for mut m in msgs {
            let flags = u16::from_ne_bytes([m.buf[6], m.buf[7]]) | NLM_F_ACK;
            m.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
            let seq = self.next_seq();
            buf.extend_from_slice(&m.finish(seq));
        }
        self.sock.send(&buf).map_err(|e| (0, e))?;
        let mut acked = 0;
        let mut failed: Option<(usize, io::Error)> = None;
        while acked < n {
            let len = self.sock.recv(&mut self.buf).map_err(|e| (acked, e))?;
            for (ty, mseq, payload) in messages(&self.buf[..len]) {
                let i = mseq.wrapping_sub(first) as usize;
                if i >= n {
                    continue;
                }
                if ty != NLMSG_ERROR {
                    reply(i, ty, payload);
                    continue;
                }
                acked += 1;
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-libc::EPROTO);
                if code != 0 && failed.as_ref().is_none_or(|(j, _)| i < *j) {
                    failed = Some((i, io::Error::from_raw_os_error(-code)));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Sends a dump request and returns each reply's payload (after nlmsghdr).
    fn dump(&mut self, m: Msg) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.next_seq();
        self.sock.send(&m.finish(seq))?;
        let mut out = Vec::new();
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for (ty, mseq, payload) in messages(&self.buf[..n]) {
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EPROTO);
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => out.push((ty, payload.to_vec())),
                }
            }
        }
    }

    /// Creates a veth pair: `host` here, already up but without carrier
    /// until the peer goes up, then given its alias and no IPv6 address
    /// generation by a second request in the same `send` (see
    /// [`msg_alias_no_ll`]); `peer` directly in the netns `peer_ns` (an open
    /// netns file) with its final name (and `peer_mac` if given), down: the
    /// kernel cannot bring a veth's peer up while creating it (ENOTCONN).
    /// Two changes (two link notifications) on the host side, where creating
    /// it down and bringing it up after the alias took three: ovs-vswitchd,
    /// sharing the netns, reconfigures its bridges on link notifications.
    ///
    /// Returns the peer's ifindex (in its netns) when the kernel echoed the
    /// creation (Linux 6.1+), `None` otherwise.
    pub fn create_veth(&mut self, req: &VethReq<'_>) -> io::Result<Option<i32>> {
        let alias = |no_ll| msg_alias_no_ll(req.host, req.alias, no_ll);
        let mut peer = None;
        let sent = self.batch_with(vec![msg_create_veth(req), alias(true)], |i, ty, p| {
            if i == 0 && ty == RTM_NEWLINK {
                peer = link_peer_index(p);
            }
        });
        match sent {
            Ok(()) => Ok(peer),
            // No IPv6 in the kernel: the second request was refused as a whole.
            Err((1, e)) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                self.request(alias(false)).map(|()| peer)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// `(name, alias)` of every link whose alias starts with `prefix`.
    pub fn links_with_alias(&mut self, prefix: &str) -> io::Result<Vec<(String, String)>> {
        let m = Msg::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0));
        let mut out = Vec::new();
        for (ty, p) in self.dump(m)? {
            if ty != RTM_NEWLINK || p.len() < 16 {
                continue;
            }
            let (mut name, mut alias) = (String::new(), String::new());
            for (t, d) in attrs(&p[16..]) {
                let text = || String::from_utf8_lossy(d).trim_end_matches('\0').to_owned();
                match t {
                    IFLA_IFNAME => name = text(),
                    IFLA_IFALIAS => alias = text(),
                    _ => {}
                }
            }
            if alias.starts_with(prefix) {
                out.push((name, alias));
            }
        }
        Ok(out)
    }

    /// Deletes a link by name.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_DELLINK, 0, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        self.request(m)
    }

    /// Looks a link up by name (`Ok(None)`: no such device).
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        let seq = self.next_seq();
        self.sock.send(&m.finish(seq))?;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for (ty, mseq, payload) in messages(&self.buf[..n]) {
                if mseq != seq {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    let code = payload
                        .get(0..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(-libc::EPROTO);
                    return match -code {
                        libc::ENODEV => Ok(None),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
                if ty == RTM_NEWLINK && payload.len() >= 16 {
                    return Ok(Some(parse_link(payload)));
                }
            }
        }
    }

    /// Sets the MTU of a link.
    pub fn set_mtu(&mut self, index: i32, mtu: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, 0, 0));
        m.attr_u32(IFLA_MTU, mtu);
        self.request(m)
    }

    /// Sets MAC (optional) and brings the link up.
    pub fn set_mac_up(&mut self, index: i32, mac: Option<&[u8; 6]>) -> io::Result<()> {
        self.request(msg_mac_up(index, mac))
    }

    /// Adds `addr/prefix` to the link.
    pub fn add_addr(&mut self, index: i32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.request(msg_add_addr(index, addr, prefix))
    }

    /// Adds a route `dst/len` via `gw` out of the link (main table).
    pub fn add_route(
        &mut self,
        index: i32,
        dst: IpAddr,
        dst_len: u8,
        gw: Option<IpAddr>,
    ) -> io::Result<()> {
        self.request(msg_add_route(index, dst, dst_len, gw))
    }

    /// The pod side's configuration in one `send`: MAC (optional) and up,
    /// `addr/prefix`, then the default route via `gw` (optional). `Err`
    /// names the step that failed.
    pub fn configure(
        &mut self,
        index: i32,
        mac: Option<&[u8; 6]>,
        addr: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> Result<(), (&'static str, io::Error)> {
        let mut msgs = vec![msg_mac_up(index, mac), msg_add_addr(index, addr, prefix)];
        if let Some(gw) = gw {
            let any = match gw {
                IpAddr::V4(_) => IpAddr::from([0u8; 4]),
                IpAddr::V6(_) => IpAddr::from([0u8; 16]),
            };
            msgs.push(msg_add_route(index, any, 0, Some(gw)));
        }
        self.batch(msgs).map_err(|(i, e)| {
            const STEP: [&str; 3] = ["set MAC/up", "add address", "add default route"];
            (STEP[i.min(2)], e)
        })
    }

    /// Addresses on the link as `addr/prefix`.
    pub fn addrs(&mut self, index: i32) -> io::Result<Vec<String>> {
        let m = Msg::new(RTM_GETADDR, NLM_F_DUMP, &[0u8; 8]);
        let mut out = Vec::new();
        for (ty, p) in self.dump(m)? {
            if ty != 20 || p.len() < 8 {
                continue;
            }
            let (fam, plen) = (p[0], p[1]);
            let idx = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) as i32;
            if idx != index {
                continue;
            }
            let (mut local, mut address) = (None, None);
            for (t, d) in attrs(&p[8..]) {
                match t {
                    IFA_LOCAL => local = to_ip(fam, d),
                    IFA_ADDRESS => address = to_ip(fam, d),
                    _ => {}
                }
            }
            if let Some(a) = local.or(address) {
                out.push(format!("{a}/{plen}"));
            }
        }
        Ok(out)
    }

    /// Main-table routes out of the link.
    pub fn routes(&mut self, index: i32) -> io::Result<Vec<RouteInfo>> {
        let m = Msg::new(RTM_GETROUTE, NLM_F_DUMP, &[0u8; 12]);
        let mut out = Vec::new();
        for (ty, p) in self.dump(m)? {
            if ty != 24 || p.len() < 12 {
                continue;
            }
            let (fam, dlen, mut table) = (p[0], p[1], u32::from(p[4]));
            let (mut dst, mut gw, mut oif) = (None, None, None);
            for (t, d) in attrs(&p[12..]) {
                match t {
                    RTA_DST => dst = to_ip(fam, d),
                    RTA_GATEWAY => gw = to_ip(fam, d),
                    RTA_OIF if d.len() == 4 => {
                        oif = Some(i32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
                    }
                    RTA_TABLE if d.len() == 4 => {
                        table = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
                    }
                    _ => {}
                }
            }
            if oif != Some(index) || table != u32::from(RT_TABLE_MAIN) {
                continue;
            }
            let dst = match dst {
                Some(d) => format!("{d}/{dlen}"),
                None if fam == libc::AF_INET6 as u8 => "::/0".to_owned(),
                None => "0.0.0.0/0".to_owned(),
            };
            out.push(RouteInfo {
                dst,
                gateway: gw.map(|g| g.to_string()),
            });
        }
        Ok(out)
    }
}

fn to_ip(fam: u8, d: &[u8]) -> Option<IpAddr> {
    if fam == libc::AF_INET as u8 {
        <[u8; 4]>::try_from(d).ok().map(IpAddr::from)
    } else if fam == libc::AF_INET6 as u8 {
        <[u8; 16]>::try_from(d).ok().map(IpAddr::from)
    } else {
        None
    }
}

/// `IFLA_LINK` of an `RTM_NEWLINK` payload: for a veth, its peer's ifindex.
fn link_peer_index(p: &[u8]) -> Option<i32> {
    let index = attrs(p.get(16..)?)
        .find(|(t, d)| *t == IFLA_LINK && d.len() == 4)
        .map(|(_, d)| i32::from_ne_bytes([d[0], d[1], d[2], d[3]]))?;
    (index > 0).then_some(index)
}

fn parse_link(p: &[u8]) -> LinkInfo {
    let index = i32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let (mut mac, mut mtu) = (String::new(), 0);
    let (mut kind, mut data) = (String::new(), None);
    for (t, d) in attrs(&p[16..]) {
        match t {
            IFLA_ADDRESS => mac = fmt_mac(d),
            IFLA_MTU if d.len() == 4 => mtu = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]),
            IFLA_LINKINFO => {
                for (it, id) in attrs(d) {
                    match it {
                        IFLA_INFO_KIND => {
                            kind = String::from_utf8_lossy(id)
                                .trim_end_matches('\0')
                                .to_owned()
                        }
                        IFLA_INFO_DATA => data = Some(id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let tun = (kind == "tun").then(|| {
        let mut ti = TunInfo::default();
        for (t, d) in attrs(data.unwrap_or_default()) {
            let v = d.first().copied().unwrap_or(0);
            match t {
                IFLA_TUN_TYPE => ti.tap = v == 2,
                IFLA_TUN_PI => ti.pi = v != 0,
                IFLA_TUN_PERSIST => ti.persist = v != 0,
                IFLA_TUN_MULTI_QUEUE => ti.multi_queue = v != 0,
                _ => {}
            }
        }
        ti
    });
    LinkInfo {
        index,
        mac,
        mtu,
        up: flags & IFF_UP != 0,
        kind,
        tun,
    }
}

/// Splits a datagram into `(type, seq, payload)` messages.
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        let payload = &b[16..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, seq, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_nested_attributes_with_lengths() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfomsg(0, 0, 0));
        let li = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.end(li);
        let b = m.finish(7);
        assert_eq!(b.len(), 16 + 16 + 4 + 12);
        assert_eq!(
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len()
        );
        let got: Vec<_> = attrs(&b[32..]).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, IFLA_LINKINFO);
        let inner: Vec<_> = attrs(got[0].1).collect();
        assert_eq!(inner, vec![(IFLA_INFO_KIND, &b"veth\0"[..])]);
        assert_eq!(parse_mac("0a:00:00:00:00:ff"), Some([10, 0, 0, 0, 0, 255]));
        assert_eq!(parse_mac("0a:00"), None);
        assert_eq!(fmt_mac(&[10, 0, 0, 0, 0, 255]), "0a:00:00:00:00:ff");
    }

    #[test]
    fn a_veth_echo_names_the_peer_index() {
        let echo = |attrs: &dyn Fn(&mut Msg)| {
            let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(9, 0, 0));
            attrs(&mut m);
            m.finish(1)[16..].to_vec()
        };
        let p = echo(&|m| {
            m.attr_str(IFLA_IFNAME, "plx0").attr_u32(IFLA_LINK, 2);
        });
        assert_eq!(link_peer_index(&p), Some(2));
        // No IFLA_LINK (not a paired device), a bad length, a truncated header.
        let p = echo(&|m| {
            m.attr_str(IFLA_IFNAME, "plx0");
        });
        assert_eq!(link_peer_index(&p), None);
        let p = echo(&|m| {
            m.attr(IFLA_LINK, &[2, 0]);
        });
        assert_eq!(link_peer_index(&p), None);
        assert_eq!(link_peer_index(&[0; 8]), None);
    }
}
