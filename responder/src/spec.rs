//! The Plexus responder TLV: what a `controller(userdata=…)` action carries so that a
//! switch (or the controller, for a switch that sends the packet-in) can answer without
//! any other state.
//!
//! ```text
//! 'P' 'L' 'X' 'R'  version(1)=1  kind(1)  body…
//! arp / icmp4:  mac(6) ipv4(4)
//! nd:           mac(6) ipv6(16) flags(1: bit0 = router)
//! icmp6:        mac(6) ipv6(16)
//! dhcp4:        server_mac(6) server_ip(4) client_mac(6) client_ip(4) prefix_len(1)
//!               lease_secs(4) mtu(2, 0 = none) router(4, 0.0.0.0 = none)
//!               n_dns(1) dns(4 × n_dns) domain_len(1) domain(domain_len)
//! ```
//!
//! All integers are big-endian. Decoding checks every length and value and rejects trailing
//! bytes; it never panics.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// First four bytes of every Plexus responder userdata.
pub const MAGIC: [u8; 4] = *b"PLXR";
/// Format version.
pub const VERSION: u8 = 1;
/// Most DNS servers a DHCP spec carries.
pub const MAX_DNS: usize = 8;

/// Responder kinds (the TLV's kind byte); also the index of per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    Arp = 1,
    Nd = 2,
    Icmp4Echo = 3,
    Icmp6Echo = 4,
    Dhcp4 = 5,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Arp,
        Kind::Nd,
        Kind::Icmp4Echo,
        Kind::Icmp6Echo,
        Kind::Dhcp4,
    ];

    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// Stable name (counters, appctl, JSON).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Arp => "arp",
            Kind::Nd => "nd",
            Kind::Icmp4Echo => "icmp4_echo",
            Kind::Icmp6Echo => "icmp6_echo",
            Kind::Dhcp4 => "dhcp4",
        }
    }

    /// Index into per-kind arrays (0-based).
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

/// DHCPv4 lease parameters given by the controller for one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp4Spec {
    /// Ethernet source of replies (the router MAC).
    pub server_mac: [u8; 6],
    /// Server identifier and IP source of replies (the subnet's gateway address).
    pub server_ip: Ipv4Addr,
    /// The only client this spec answers (the port's MAC: port security).
    pub client_mac: [u8; 6],
    /// The leased address.
    pub client_ip: Ipv4Addr,
    /// Subnet prefix length (1..=32).
    pub prefix_len: u8,
    /// Lease time in seconds (≥ 60).
    pub lease_secs: u32,
    /// Interface MTU option (26), if any (68..=65535).
    pub mtu: Option<u16>,
    /// Router option (3), if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers option (6), at most [`MAX_DNS`].
    pub dns: Vec<Ipv4Addr>,
    /// Domain name option (15), at most 255 bytes of printable ASCII.
    pub domain: Option<String>,
}

/// A responder's parameters: everything the reply needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// Answers ARP requests for `ip` with `mac`.
    Arp { mac: [u8; 6], ip: Ipv4Addr },
    /// Answers neighbour solicitations for `ip` with an advertisement of `mac`.
    Nd {
        mac: [u8; 6],
        ip: Ipv6Addr,
        router: bool,
    },
    /// Answers ICMP echo requests to `ip` (from `mac`).
    Icmp4Echo { mac: [u8; 6], ip: Ipv4Addr },
    /// Answers ICMPv6 echo requests to `ip` (from `mac`).
    Icmp6Echo { mac: [u8; 6], ip: Ipv6Addr },
    /// DHCPv4 server for one client.
    Dhcp4(Box<Dhcp4Spec>),
}

/// Why a userdata blob is not a valid responder spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// Does not start with [`MAGIC`]: not a Plexus responder (an ordinary packet-in).
    NotPlexus,
    BadVersion(u8),
    UnknownKind(u8),
    /// Shorter than its kind needs.
    Truncated,
    /// Bytes after the body.
    Trailing(usize),
    /// A field has an invalid value.
    BadField(&'static str),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NotPlexus => write!(f, "not a Plexus responder userdata"),
            SpecError::BadVersion(v) => write!(f, "unsupported responder version {v}"),
            SpecError::UnknownKind(k) => write!(f, "unknown responder kind {k}"),
            SpecError::Truncated => write!(f, "responder userdata truncated"),
            SpecError::Trailing(n) => write!(f, "{n} trailing bytes after the responder body"),
            SpecError::BadField(n) => write!(f, "invalid responder field {n}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// Whether `userdata` claims to be a Plexus responder (starts with [`MAGIC`]).
pub fn is_plexus(userdata: &[u8]) -> bool {
    userdata.starts_with(&MAGIC)
}

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpecError> {
        if self.0.len() < n {
            return Err(SpecError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, SpecError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SpecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, SpecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn mac(&mut self) -> Result<[u8; 6], SpecError> {
        let mut m = [0u8; 6];
        m.copy_from_slice(self.take(6)?);
        Ok(m)
    }
    fn v4(&mut self) -> Result<Ipv4Addr, SpecError> {
        Ok(Ipv4Addr::from(self.u32()?))
    }
    fn v6(&mut self) -> Result<Ipv6Addr, SpecError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(Ipv6Addr::from(a))
    }
}

fn unicast_mac(m: &[u8; 6], name: &'static str) -> Result<(), SpecError> {
    if m[0] & 1 != 0 || *m == [0; 6] {
        return Err(SpecError::BadField(name));
    }
    Ok(())
}

fn unicast_v4(a: Ipv4Addr, name: &'static str) -> Result<(), SpecError> {
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(SpecError::BadField(name));
    }
    Ok(())
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty() && d.len() <= 255 && d.bytes().all(|b| b.is_ascii_graphic())
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Arp { .. } => Kind::Arp,
            Spec::Nd { .. } => Kind::Nd,
            Spec::Icmp4Echo { .. } => Kind::Icmp4Echo,
            Spec::Icmp6Echo { .. } => Kind::Icmp6Echo,
            Spec::Dhcp4(_) => Kind::Dhcp4,
        }
    }

    /// Checks the values [`Spec::decode`] would reject (so an encoder never emits a
    /// spec the switch refuses).
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            Spec::Arp { mac, ip } | Spec::Icmp4Echo { mac, ip } => {
                unicast_mac(mac, "mac")?;
                unicast_v4(*ip, "ip")
            }
            Spec::Nd { mac, ip, .. } | Spec::Icmp6Echo { mac, ip } => {
                unicast_mac(mac, "mac")?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(SpecError::BadField("ip"));
                }
                Ok(())
            }
            Spec::Dhcp4(d) => {
                unicast_mac(&d.server_mac, "server_mac")?;
                unicast_mac(&d.client_mac, "client_mac")?;
                unicast_v4(d.server_ip, "server_ip")?;
                unicast_v4(d.client_ip, "client_ip")?;
                if !(1..=32).contains(&d.prefix_len) {
                    return Err(SpecError::BadField("prefix_len"));
                }
                if d.lease_secs < 60 {
                    return Err(SpecError::BadField("lease_secs"));
                }
                if d.mtu.is_some_and(|m| m < 68) {
                    return Err(SpecError::BadField("mtu"));
                }
                if let Some(r) = d.router {
                    unicast_v4(r, "router")?;
                }
                if d.dns.len() > MAX_DNS {
                    return Err(SpecError::BadField("dns"));
                }
                if d.domain.as_deref().is_some_and(|s| !valid_domain(s)) {
                    return Err(SpecError::BadField("domain"));
                }
                Ok(())
            }
        }
    }

    /// The userdata bytes (call [`Spec::validate`] first; invalid values are encoded
    /// as given and then refused by [`Spec::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&MAGIC);
        v.push(VERSION);
        v.push(self.kind() as u8);
        match self {
            Spec::Arp { mac, ip } | Spec::Icmp4Echo { mac, ip } => {
                v.extend_from_slice(mac);
                v.extend_from_slice(&ip.octets());
            }
            Spec::Nd { mac, ip, router } => {
                v.extend_from_slice(mac);
                v.extend_from_slice(&ip.octets());
                v.push(u8::from(*router));
            }
            Spec::Icmp6Echo { mac, ip } => {
                v.extend_from_slice(mac);
                v.extend_from_slice(&ip.octets());
            }
            Spec::Dhcp4(d) => {
                v.extend_from_slice(&d.server_mac);
                v.extend_from_slice(&d.server_ip.octets());
                v.extend_from_slice(&d.client_mac);
                v.extend_from_slice(&d.client_ip.octets());
                v.push(d.prefix_len);
                v.extend_from_slice(&d.lease_secs.to_be_bytes());
                v.extend_from_slice(&d.mtu.unwrap_or(0).to_be_bytes());
                v.extend_from_slice(&d.router.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
                v.push(d.dns.len().min(255) as u8);
                for a in &d.dns {
                    v.extend_from_slice(&a.octets());
                }
                let dom = d.domain.as_deref().unwrap_or("").as_bytes();
                v.push(dom.len().min(255) as u8);
                v.extend_from_slice(&dom[..dom.len().min(255)]);
            }
        }
        v
    }

    /// The userdata in `ovs-ofctl` syntax (`50.4c.58.52.01…`), for
    /// `controller(userdata=…)` in flow text.
    pub fn ofctl_userdata(&self) -> String {
        let b = self.encode();
        let mut s = String::with_capacity(b.len() * 3);
        for (i, x) in b.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(&format!("{x:02x}"));
        }
        s
    }

    /// Parses and validates userdata.
    pub fn decode(userdata: &[u8]) -> Result<Spec, SpecError> {
        if !is_plexus(userdata) {
            return Err(SpecError::NotPlexus);
        }
        let mut r = Rd(&userdata[4..]);
        let ver = r.u8()?;
        if ver != VERSION {
            return Err(SpecError::BadVersion(ver));
        }
        let k = r.u8()?;
        let kind = Kind::from_u8(k).ok_or(SpecError::UnknownKind(k))?;
        let spec = match kind {
            Kind::Arp => Spec::Arp {
                mac: r.mac()?,
                ip: r.v4()?,
            },
            Kind::Icmp4Echo => Spec::Icmp4Echo {
                mac: r.mac()?,
                ip: r.v4()?,
            },
            Kind::Nd => {
                let mac = r.mac()?;
                let ip = r.v6()?;
                let flags = r.u8()?;
                if flags & !1 != 0 {
                    return Err(SpecError::BadField("flags"));
                }
                Spec::Nd {
                    mac,
                    ip,
                    router: flags & 1 != 0,
                }
            }
            Kind::Icmp6Echo => Spec::Icmp6Echo {
                mac: r.mac()?,
                ip: r.v6()?,
            },
            Kind::Dhcp4 => {
                let server_mac = r.mac()?;
                let server_ip = r.v4()?;
                let client_mac = r.mac()?;
                let client_ip = r.v4()?;
                let prefix_len = r.u8()?;
                let lease_secs = r.u32()?;
                let mtu = Some(r.u16()?).filter(|m| *m != 0);
                let router = Some(r.v4()?).filter(|a| !a.is_unspecified());
                let n = r.u8()? as usize;
                if n > MAX_DNS {
                    return Err(SpecError::BadField("dns"));
                }
                let mut dns = Vec::with_capacity(n);
                for _ in 0..n {
                    dns.push(r.v4()?);
                }
                let dl = r.u8()? as usize;
                let domain = if dl == 0 {
                    None
                } else {
                    let b = r.take(dl)?;
                    let s = std::str::from_utf8(b).map_err(|_| SpecError::BadField("domain"))?;
                    Some(s.to_string())
                };
                Spec::Dhcp4(Box::new(Dhcp4Spec {
                    server_mac,
                    server_ip,
                    client_mac,
                    client_ip,
                    prefix_len,
                    lease_secs,
                    mtu,
                    router,
                    dns,
                    domain,
                }))
            }
        };
        if !r.0.is_empty() {
            return Err(SpecError::Trailing(r.0.len()));
        }
        spec.validate()?;
        Ok(spec)
    }
}
