//! `attack` checks: an attacker host crafts hostile frames against a victim
//! host and the check asserts that none of them arrives at any other host,
//! that the switch dropped them with a drop flow of the expected pipeline
//! stage whose `n_packets` grew by at least the number sent, and that no
//! neighbour table was poisoned.
//!
//! Frames are sent from the attacker's namespace by `plexus-topo attack-send`
//! (an AF_PACKET socket on `eth0`, [`crate::rawsock`]) and counted in every
//! other host's namespace by `plexus-topo attack-recv`, which counts incoming
//! frames carrying the attempt's random 4-byte marker ([`super::frames`]).
//! When the victim shares the attacker's VPC, two control attempts (a plain
//! ICMP echo and a plain ARP request, both from the attacker's own MAC and
//! address) must arrive: they prove the sender and the receivers work.

use super::frames::{self, BROADCAST, Ip4, Mac, tcpf};
use super::{Running, dump_flows};
use crate::rawsock::RawSock;
use crate::topo::Outcome;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One kind of attack (`attacks = [...]` in a `kind = "attack"` check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Frames from a random MAC and from the victim's MAC (MAC theft).
    SpoofMac,
    /// The attacker's MAC with a neighbour's and the victim's IPv4 address as source.
    SpoofIp,
    /// Gratuitous ARP (broadcast) claiming the victim's and a neighbour's address.
    ArpGratuitous,
    /// ARP replies to the victim claiming a neighbour's address (one with a
    /// forged sender hardware address).
    ArpReply,
    /// Unsolicited ICMPv6 neighbour advertisements (override) claiming the
    /// victim's and a neighbour's link-local address.
    NdSpoof,
    /// DHCPDISCOVERs with random client hardware addresses, from random source
    /// MACs and from the attacker's own MAC; with no DHCP server in the model
    /// none may be flooded to another port.
    DhcpStarve,
    /// IPv4 fragments to the victim's blocked TCP port: a tiny first fragment
    /// (8 bytes, no complete TCP header), its tail, an overlapping pair and an
    /// orphan non-first fragment.
    Fragments,
    /// TCP without a handshake: ACK, PSH+ACK with data, FIN+ACK and RST to
    /// the victim's blocked port (`+new` matching no rule), and segments that
    /// may not open a connection to its allowed port: SYN+ACK, XMAS, NULL,
    /// SYN+FIN (conntrack `+inv`).
    TcpNoHandshake,
    /// ACK, PSH+ACK, FIN+ACK and RST to the victim's *allowed* port with no
    /// connection. Conntrack (plexus-vswitchd's like Open vSwitch's
    /// `tcp_valid_new`) picks such mid-stream segments up as `+new`; the
    /// compiler's SG stage admits a new TCP connection only on SYN without
    /// ACK, so they die in the SG conntrack table.
    TcpPickup,
    /// Plain traffic (ICMP, UDP, TCP SYN) from the attacker's own MAC and IP
    /// to a host of another VPC (e.g. another tenant's overlapping address).
    Overlap,
    /// Control: plain ICMP echo requests to a victim in the same VPC (must arrive).
    ControlIcmp,
    /// Control: plain ARP requests to a victim in the same VPC (must arrive).
    ControlArp,
    /// VXLAN datagrams from an intruder on the underlay to the victim's
    /// chassis, one per VNI in turn (see [`vxlan_forge`]).
    VxlanForge,
}

impl AttackKind {
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::SpoofMac => "spoof-mac",
            AttackKind::SpoofIp => "spoof-ip",
            AttackKind::ArpGratuitous => "arp-gratuitous",
            AttackKind::ArpReply => "arp-reply",
            AttackKind::NdSpoof => "nd-spoof",
            AttackKind::DhcpStarve => "dhcp-starve",
            AttackKind::Fragments => "fragments",
            AttackKind::TcpNoHandshake => "tcp-no-handshake",
            AttackKind::TcpPickup => "tcp-pickup",
            AttackKind::Overlap => "overlap",
            AttackKind::ControlIcmp => "control-icmp",
            AttackKind::ControlArp => "control-arp",
            AttackKind::VxlanForge => "vxlan-forge",
        }
    }

    fn is_control(self) -> bool {
        matches!(self, AttackKind::ControlIcmp | AttackKind::ControlArp)
    }

    /// Tables of the controller's pipeline whose drop flows must count the
    /// attempt (10 port security, 21/41 SG conntrack, 30 L2).
    fn drop_tables(self, cross_vpc: bool) -> Vec<u8> {
        let mut t = match self {
            AttackKind::SpoofMac
            | AttackKind::SpoofIp
            | AttackKind::ArpGratuitous
            | AttackKind::ArpReply => vec![10],
            AttackKind::NdSpoof => vec![10],
            AttackKind::DhcpStarve => vec![10, 30],
            AttackKind::Fragments | AttackKind::TcpNoHandshake | AttackKind::TcpPickup => {
                vec![21, 41]
            }
            AttackKind::Overlap => vec![30],
            AttackKind::ControlIcmp | AttackKind::ControlArp => vec![],
            // The classifier: no decap rule for this VTEP (or VNI).
            AttackKind::VxlanForge => vec![0],
        };
        if cross_vpc && !t.is_empty() && !t.contains(&30) {
            t.push(30);
        }
        t
    }

    /// The default list: every attack, plus the controls for a victim in the
    /// attacker's VPC or the overlap attack for one in another VPC.
    pub fn defaults(same_vpc: bool) -> Vec<AttackKind> {
        let mut v = Vec::new();
        if same_vpc {
            v.extend([AttackKind::ControlIcmp, AttackKind::ControlArp]);
        }
        v.extend([
            AttackKind::SpoofMac,
            AttackKind::SpoofIp,
            AttackKind::ArpGratuitous,
            AttackKind::ArpReply,
            AttackKind::NdSpoof,
            AttackKind::DhcpStarve,
            AttackKind::Fragments,
            AttackKind::TcpNoHandshake,
            AttackKind::TcpPickup,
        ]);
        if !same_vpc {
            v.push(AttackKind::Overlap);
        }
        v
    }
}

/// What `attack-send` needs (passed as one JSON argument).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendSpec {
    pub kind: AttackKind,
    /// Attempts (each may be several frames).
    pub count: u32,
    pub marker: [u8; 4],
    pub mac: String,
    pub ip: Ipv4Addr,
    pub victim_mac: String,
    pub victim_ip: Ipv4Addr,
    /// Another host of the victim's VPC (or the victim again).
    pub neighbour_ip: Ipv4Addr,
    pub neighbour_mac: String,
    pub blocked_port: u16,
    pub allowed_port: u16,
    /// The interface to send on.
    #[serde(default = "default_iface")]
    pub iface: String,
    /// `vxlan-forge`: the VNIs to cycle through; the outer frame goes from
    /// `mac`/`ip` to the VTEP at `victim_mac`/`victim_ip`, the inner one to
    /// the host at `neighbour_mac`/`neighbour_ip`.
    #[serde(default)]
    pub vnis: Vec<u32>,
}

fn default_iface() -> String {
    "eth0".into()
}

/// A small xorshift generator seeded from /dev/urandom (random MACs, ids).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut b = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut b);
        }
        Rng(u64::from_le_bytes(b) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A random unicast, locally administered MAC.
    fn mac(&mut self) -> Mac {
        let b = self.next().to_le_bytes();
        [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
    }
}

fn mac_of(s: &str) -> Result<Mac> {
    frames::parse_mac(s).with_context(|| format!("{s:?} is not a MAC address"))
}

/// The frames of one attack.
pub fn build(spec: &SendSpec) -> Result<Vec<Vec<u8>>> {
    let mut rng = Rng::new();
    let me = mac_of(&spec.mac)?;
    let vm = mac_of(&spec.victim_mac)?;
    let nm = mac_of(&spec.neighbour_mac)?;
    let mk = spec.marker;
    let (ip, vip, nip) = (spec.ip, spec.victim_ip, spec.neighbour_ip);
    let udp_to_victim = |src_mac: Mac, src: Ipv4Addr, id: u16| {
        let u = frames::udp(src, vip, 40000, 7, &mk);
        frames::ipv4(
            vm,
            src_mac,
            Ip4 {
                src,
                dst: vip,
                proto: 17,
                id,
                frag_off: 0,
                more_frags: false,
            },
            &u,
            mk,
        )
    };
    let mut out = Vec::new();
    for i in 0..spec.count {
        let id = (rng.next() & 0xffff) as u16;
        match spec.kind {
            AttackKind::VxlanForge => {
                let vni = *spec
                    .vnis
                    .get(i as usize % spec.vnis.len().max(1))
                    .context("vxlan-forge without VNIs")?;
                // The inner frame: UDP to the host, from a random MAC and a
                // neighbour's address, as a chassis of its VPC would carry it.
                let isrc = {
                    let mut o = nip.octets();
                    o[3] = if o[3] == 250 { 251 } else { 250 };
                    Ipv4Addr::from(o)
                };
                let inner_udp = frames::udp(isrc, nip, 40000, 7, &mk);
                let inner = frames::ipv4(
                    nm,
                    rng.mac(),
                    Ip4 {
                        src: isrc,
                        dst: nip,
                        proto: 17,
                        id,
                        frag_off: 0,
                        more_frags: false,
                    },
                    &inner_udp,
                    mk,
                );
                let mut vx = vec![0x08, 0, 0, 0];
                vx.extend_from_slice(&(vni << 8).to_be_bytes());
                vx.extend_from_slice(&inner);
                let outer_udp = frames::udp(ip, vip, 50000 + (i as u16 % 1000), 4789, &vx);
                out.push(frames::ipv4(
                    vm,
                    me,
                    Ip4 {
                        src: ip,
                        dst: vip,
                        proto: 17,
                        id,
                        frag_off: 0,
                        more_frags: false,
                    },
                    &outer_udp,
                    mk,
                ));
            }
            AttackKind::ControlIcmp => {
                let e = frames::icmp_echo(0x5058, i as u16, &mk);
                out.push(frames::ipv4(
                    vm,
                    me,
                    Ip4 {
                        src: ip,
                        dst: vip,
                        proto: 1,
                        id,
                        frag_off: 0,
                        more_frags: false,
                    },
                    &e,
                    mk,
                ));
            }
            AttackKind::ControlArp => {
                out.push(frames::arp(vm, me, 1, me, ip, [0; 6], vip, mk));
            }
            AttackKind::SpoofMac => {
                out.push(udp_to_victim(rng.mac(), ip, id));
                out.push(udp_to_victim(vm, ip, id.wrapping_add(1)));
            }
            AttackKind::SpoofIp => {
                out.push(udp_to_victim(me, nip, id));
                out.push(udp_to_victim(me, vip, id.wrapping_add(1)));
            }
            AttackKind::ArpGratuitous => {
                out.push(frames::arp(BROADCAST, me, 1, me, vip, [0; 6], vip, mk));
                out.push(frames::arp(BROADCAST, me, 1, me, nip, [0; 6], nip, mk));
            }
            AttackKind::ArpReply => {
                out.push(frames::arp(vm, me, 2, me, nip, vm, vip, mk));
                out.push(frames::arp(vm, me, 2, rng.mac(), nip, vm, vip, mk));
            }
            AttackKind::NdSpoof => {
                let mine = frames::link_local(me);
                out.push(frames::nd_advert(
                    frames::ALL_NODES_MAC,
                    me,
                    mine,
                    "ff02::1".parse()?,
                    frames::link_local(vm),
                    me,
                    mk,
                ));
                out.push(frames::nd_advert(
                    vm,
                    me,
                    mine,
                    frames::link_local(vm),
                    frames::link_local(nm),
                    me,
                    mk,
                ));
            }
            AttackKind::DhcpStarve => {
                for own in [false, true] {
                    let chaddr = rng.mac();
                    let src_mac = if own { me } else { chaddr };
                    let d = frames::dhcp_discover(rng.next() as u32, chaddr, mk);
                    let any = Ipv4Addr::UNSPECIFIED;
                    let u = frames::udp(any, Ipv4Addr::BROADCAST, 68, 67, &d);
                    out.push(frames::ipv4(
                        BROADCAST,
                        src_mac,
                        Ip4 {
                            src: any,
                            dst: Ipv4Addr::BROADCAST,
                            proto: 17,
                            id: id.wrapping_add(u16::from(own)),
                            frag_off: 0,
                            more_frags: false,
                        },
                        &u,
                        mk,
                    ));
                }
            }
            AttackKind::Fragments => {
                let seq = u32::from_be_bytes(mk);
                let t = frames::tcp(ip, vip, 40001, spec.blocked_port, seq, 0, tcpf::SYN, &mk);
                let h = |id: u16, frag_off: u16, more_frags: bool| Ip4 {
                    src: ip,
                    dst: vip,
                    proto: 6,
                    id,
                    frag_off,
                    more_frags,
                };
                // Tiny first fragment (ports + seq only) and its tail.
                out.push(frames::ipv4(vm, me, h(id, 0, true), &t[..8], mk));
                out.push(frames::ipv4(vm, me, h(id, 1, false), &t[8..], mk));
                // Overlapping pair: a whole header, then bytes 8.. rewritten.
                let id2 = id.wrapping_add(1);
                let mut first = t.clone();
                first.extend_from_slice(&mk);
                out.push(frames::ipv4(vm, me, h(id2, 0, true), &first, mk));
                let mut over = vec![0u8; 16];
                over[..4].copy_from_slice(&mk);
                out.push(frames::ipv4(vm, me, h(id2, 1, false), &over, mk));
                // An orphan non-first fragment.
                let mut orphan = mk.to_vec();
                orphan.resize(16, 0);
                out.push(frames::ipv4(
                    vm,
                    me,
                    h(id.wrapping_add(2), 100, false),
                    &orphan,
                    mk,
                ));
            }
            AttackKind::TcpNoHandshake | AttackKind::TcpPickup => {
                let seq = rng.next() as u32;
                let mid_stream = [
                    tcpf::ACK,
                    tcpf::PSH | tcpf::ACK,
                    tcpf::FIN | tcpf::ACK,
                    tcpf::RST,
                ];
                let mut segs: Vec<(u16, u8)> = Vec::new();
                if spec.kind == AttackKind::TcpPickup {
                    segs.extend(mid_stream.map(|f| (spec.allowed_port, f)));
                } else {
                    segs.extend(mid_stream.map(|f| (spec.blocked_port, f)));
                    segs.extend(
                        [
                            tcpf::SYN | tcpf::ACK,
                            tcpf::FIN | tcpf::SYN | tcpf::RST | tcpf::PSH | tcpf::ACK | tcpf::URG,
                            0,
                            tcpf::SYN | tcpf::FIN,
                        ]
                        .map(|f| (spec.allowed_port, f)),
                    );
                }
                // A fresh source port per attempt: no earlier state helps.
                let sport = 20000 + (rng.next() % 20000) as u16;
                for (n, (dport, flags)) in segs.into_iter().enumerate() {
                    let t = frames::tcp(ip, vip, sport, dport, seq, seq ^ 0x5a5a, flags, &mk);
                    out.push(frames::ipv4(
                        vm,
                        me,
                        Ip4 {
                            src: ip,
                            dst: vip,
                            proto: 6,
                            id: id.wrapping_add(n as u16),
                            frag_off: 0,
                            more_frags: false,
                        },
                        &t,
                        mk,
                    ));
                }
            }
            AttackKind::Overlap => {
                let e = frames::icmp_echo(0x5058, i as u16, &mk);
                let base = Ip4 {
                    src: ip,
                    dst: vip,
                    proto: 1,
                    id,
                    frag_off: 0,
                    more_frags: false,
                };
                out.push(frames::ipv4(vm, me, base, &e, mk));
                out.push(udp_to_victim(me, ip, id.wrapping_add(1)));
                let t = frames::tcp(ip, vip, 40003, spec.allowed_port, 1, 0, tcpf::SYN, &mk);
                out.push(frames::ipv4(
                    vm,
                    me,
                    Ip4 {
                        proto: 6,
                        id: id.wrapping_add(2),
                        ..base
                    },
                    &t,
                    mk,
                ));
            }
        }
    }
    Ok(out)
}

/// `plexus-topo attack-send JSON`: sends the frames of one attack on its
/// interface (`eth0` of a host);
/// returns how many were sent.
pub fn send_main(spec_json: &str) -> Result<usize> {
    let spec: SendSpec = serde_json::from_str(spec_json).context("attack spec")?;
    let frames = build(&spec)?;
    let sock = RawSock::open(&spec.iface)?;
    for f in &frames {
        sock.send(f)?;
        // Paced so that no switch queue overflows: a drop must be the pipeline's.
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(frames.len())
}

/// `plexus-topo attack-recv`: counts incoming frames on `iface` carrying each
/// marker until `stop` exists or `max` passes; returns the counts.
pub fn recv_main(iface: &str, markers: &[[u8; 4]], stop: &Path, max: Duration) -> Result<Vec<u64>> {
    let sock = RawSock::open(iface)?;
    sock.set_timeout(Duration::from_millis(100))?;
    let mut counts = vec![0u64; markers.len()];
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    println!("ready");
    while t0.elapsed() < max && !stop.exists() {
        if let Some(n) = sock.recv(&mut buf)? {
            for (m, c) in markers.iter().zip(counts.iter_mut()) {
                if frames::has_marker(&buf[..n], *m) {
                    *c += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// The intruder's veth pair on the underlay bridge (removed on drop).
struct Intruder<'a> {
    netns: &'a str,
    link: &'static str,
}

impl Drop for Intruder<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", self.netns, "link", "del", self.link])
            .stderr(Stdio::null())
            .status();
    }
}

/// `ip -n NS -j ARGS` as JSON.
fn ip_json(netns: &str, args: &[&str]) -> Result<serde_json::Value> {
    let out = crate::proc::run_ok(
        Command::new("ip").args(["-n", netns, "-j"]).args(args),
        Duration::from_secs(10),
    )?;
    serde_json::from_str(&out).with_context(|| format!("ip -j {args:?}: {out}"))
}

/// The `vxlan-forge` check (see [`super::spec::CheckSpec::VxlanForge`]).
pub fn vxlan_forge(r: &Running, exe: &Path, to: &str, count: u32) -> Outcome {
    let what = format!("forged VXLAN from the underlay to {to}'s chassis: every VNI dropped");
    Outcome {
        result: vxlan_forge_inner(r, exe, to, count).map_err(|e| format!("{e:#}")),
        what,
    }
}

fn vxlan_forge_inner(r: &Running, exe: &Path, to: &str, count: u32) -> Result<String> {
    let v = r.host(to)?.clone();
    let ch = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == v.chassis)
        .context("victim's chassis")?
        .clone();
    let ul = r.state.underlay_netns.as_str();
    if ul.is_empty() {
        anyhow::bail!("the run has no underlay");
    }
    // The chassis' underlay interface: the one holding its VTEP address.
    let addrs = ip_json(&ch.netns, &["addr", "show"])?;
    let (vtep_mac, prefix) = addrs
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|l| {
            let a = l["addr_info"]
                .as_array()?
                .iter()
                .find(|a| a["local"] == ch.vtep.as_str())?;
            Some((l["address"].as_str()?.to_owned(), a["prefixlen"].as_u64()?))
        })
        .with_context(|| format!("no interface with VTEP {} on {}", ch.vtep, ch.name))?;
    let vtep: Ipv4Addr = ch.vtep.parse().context("VTEP address")?;
    let taken: Vec<&str> = r.state.chassis.iter().map(|c| c.vtep.as_str()).collect();
    let me = (200u8..=253)
        .map(|o| {
            let mut b = vtep.octets();
            b[3] = o;
            Ipv4Addr::from(b)
        })
        .find(|a| !taken.contains(&a.to_string().as_str()))
        .context("no free underlay address")?;
    // The intruder: a veth on the underlay bridge with an address of the
    // underlay subnet that is no chassis' VTEP.
    let intruder = Intruder {
        netns: ul,
        link: "plxfx0",
    };
    let ipn = |args: &[&str]| {
        crate::proc::run_ok(
            Command::new("ip").args(["-n", ul]).args(args),
            Duration::from_secs(10),
        )
    };
    let _ = ipn(&["link", "del", intruder.link]);
    ipn(&[
        "link",
        "add",
        intruder.link,
        "type",
        "veth",
        "peer",
        "name",
        "plxfx1",
    ])?;
    ipn(&["link", "set", "plxfx1", "master", "ul", "up"])?;
    ipn(&[
        "addr",
        "add",
        &format!("{me}/{prefix}"),
        "dev",
        intruder.link,
    ])?;
    ipn(&["link", "set", intruder.link, "up"])?;
    let my_mac = ip_json(ul, &["link", "show", intruder.link])?[0]["address"]
        .as_str()
        .context("intruder MAC")?
        .to_owned();
    // Every VPC's VNI in the run, and one no VPC has.
    let mut vnis: Vec<u32> = r.state.hosts.iter().map(|h| h.vni).collect();
    vnis.sort_unstable();
    vnis.dedup();
    vnis.push(vnis.last().copied().unwrap_or(0) + 4242);
    let mut rng = Rng::new();
    let marker = ((rng.next() as u32) | 0x8080_8080).to_be_bytes();
    let exe_s = exe.to_string_lossy().into_owned();
    let stop = r
        .dir
        .join(format!("vxlan-forge-stop-{}", marker_hex(marker)));
    let rx = start_receivers(r, &exe_s, None, &marker_hex(marker), &stop)?;
    let spec = SendSpec {
        kind: AttackKind::VxlanForge,
        count: count * vnis.len() as u32,
        marker,
        mac: my_mac,
        ip: me,
        victim_mac: vtep_mac,
        victim_ip: vtep,
        neighbour_ip: v.ip.parse()?,
        neighbour_mac: v.mac.clone(),
        blocked_port: 0,
        allowed_port: 0,
        iface: intruder.link.into(),
        vnis: vnis.clone(),
    };
    let tables = AttackKind::VxlanForge.drop_tables(false);
    let before = drop_counters(&ch.ofctl_target)?;
    let sent_out = crate::proc::run_ok(
        Command::new("ip").args([
            "netns",
            "exec",
            ul,
            &exe_s,
            "attack-send",
            &serde_json::to_string(&spec)?,
        ]),
        Duration::from_secs(30),
    )?;
    let sent: u64 = sent_out
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("attack-send printed {sent_out:?}"))?;
    let mut total;
    let mut grown = Vec::new();
    let t0 = Instant::now();
    loop {
        let after = drop_counters(&ch.ofctl_target)?;
        grown.clear();
        total = 0;
        for (flow, (t, n)) in &after {
            let old = before.get(flow).map_or(0, |x| x.1);
            if *n > old && tables.contains(t) {
                total += n - old;
                grown.push(format!("[{flow}] +{}", n - old));
            }
        }
        if total >= sent || t0.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = rx.collect()?;
    let at: Vec<String> = seen
        .iter()
        .filter(|(_, c)| c.first().copied().unwrap_or(0) > 0)
        .map(|(n, c)| format!("{n}: {}", c[0]))
        .collect();
    drop(intruder);
    if !at.is_empty() {
        anyhow::bail!(
            "sent {sent} from {me} to {} (VNIs {vnis:?}), SEEN at {} (isolation violated)",
            ch.vtep,
            at.join(", ")
        );
    }
    if total < sent {
        anyhow::bail!(
            "sent {sent} from {me} to {} (VNIs {vnis:?}), seen 0 at the hosts, but table 0 drop flows on {} counted only {total}: {}",
            ch.vtep,
            ch.name,
            grown.join("; ")
        );
    }
    Ok(format!(
        "sent {sent} from {me} (not a VTEP) to {} with VNIs {vnis:?}, seen 0 at the hosts; dropped and counted on {} (+{total}): {}",
        ch.vtep,
        ch.name,
        grown.join("; ")
    ))
}

pub fn marker_hex(m: [u8; 4]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_marker(s: &str) -> Option<[u8; 4]> {
    let v = u32::from_str_radix(s, 16).ok()?;
    (s.len() == 8).then(|| v.to_be_bytes())
}

/// Drop flows of a switch: flow (without stats) → (table, n_packets).
fn drop_counters(target: &str) -> Result<BTreeMap<String, (u8, u64)>> {
    let mut m = BTreeMap::new();
    for l in dump_flows(target)? {
        if !l.trim_end().ends_with("actions=drop") {
            continue;
        }
        let field = |k: &str| {
            l.split([',', ' '])
                .find_map(|p| p.trim().strip_prefix(k))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let (Some(t), Some(n)) = (field("table="), field("n_packets=")) else {
            continue;
        };
        let key = plexus_openflow::text::flow::strip_flow_stats(&l);
        m.insert(key, (t as u8, n));
    }
    Ok(m)
}

/// Receivers in every host but the attacker; killed on drop.
struct Receivers {
    kids: Vec<(String, Child)>,
    stop: PathBuf,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for (_, c) in &mut self.kids {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.stop);
    }
}

/// Starts `attack-recv` for `markers` (comma-separated hex) in every host's
/// namespace but `skip`'s, and waits until each has bound its socket.
fn start_receivers(
    r: &Running,
    exe: &str,
    skip: Option<&str>,
    markers: &str,
    stop: &Path,
) -> Result<Receivers> {
    let _ = std::fs::remove_file(stop);
    let mut rx = Receivers {
        kids: Vec::new(),
        stop: stop.to_path_buf(),
    };
    for h in r
        .state
        .hosts
        .iter()
        .filter(|h| Some(h.name.as_str()) != skip)
    {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.netns,
                exe,
                "attack-recv",
                "--markers",
                markers,
            ])
            .arg("--stop")
            .arg(stop)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting attack-recv")?;
        rx.kids.push((h.name.clone(), child));
    }
    for (name, child) in &mut rx.kids {
        let so = child.stdout.as_mut().context("receiver stdout")?;
        let mut line = [0u8; 6];
        std::io::Read::read_exact(so, &mut line)
            .with_context(|| format!("attack-recv in {name} did not start"))?;
    }
    Ok(rx)
}

impl Receivers {
    /// Lets the last frames land, stops the receivers and returns each
    /// host's count per marker.
    fn collect(mut self) -> Result<BTreeMap<String, Vec<u64>>> {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&self.stop, b"")?;
        let mut seen = BTreeMap::new();
        for (name, child) in std::mem::take(&mut self.kids) {
            let o = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&o.stdout);
            let counts: Vec<u64> = text
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .with_context(|| {
                    format!(
                        "attack-recv in {name}: {text} {}",
                        String::from_utf8_lossy(&o.stderr)
                    )
                })?;
            seen.insert(name, counts);
        }
        Ok(seen)
    }
}

/// Options of one `attack` check.
#[derive(Debug, Clone)]
pub struct AttackCheck<'a> {
    pub attacker: &'a str,
    pub victim: &'a str,
    pub attacks: Option<&'a [AttackKind]>,
    pub count: u32,
    pub blocked_port: u16,
    pub allowed_port: u16,
}

/// Runs one `attack` check: one outcome per attack plus the neighbour tables.
pub fn run_check(r: &Running, exe: &Path, c: &AttackCheck<'_>) -> Vec<Outcome> {
    let mut out = Vec::new();
    if let Err(e) = run_inner(r, exe, c, &mut out) {
        out.push(Outcome {
            what: format!("attack {} -> {}", c.attacker, c.victim),
            result: Err(format!("{e:#}")),
        });
    }
    out
}

fn vpc_of<'a>(r: &'a Running, host: &str) -> Option<(&'a str, &'a str)> {
    r.cloud
        .hosts
        .iter()
        .find(|h| h.name.get_ref() == host)
        .map(|h| (h.tenant.get_ref().as_str(), h.vpc.get_ref().as_str()))
}

fn run_inner(r: &Running, exe: &Path, c: &AttackCheck<'_>, out: &mut Vec<Outcome>) -> Result<()> {
    let a = r.host(c.attacker)?.clone();
    let v = r.host(c.victim)?.clone();
    let same_vpc = vpc_of(r, c.attacker) == vpc_of(r, c.victim);
    let kinds = c
        .attacks
        .map(<[AttackKind]>::to_vec)
        .unwrap_or_else(|| AttackKind::defaults(same_vpc));
    let neighbour = r
        .state
        .hosts
        .iter()
        .find(|h| h.name != a.name && h.name != v.name && vpc_of(r, &h.name) == vpc_of(r, &v.name))
        .unwrap_or(&v)
        .clone();
    let chassis = r
        .state
        .chassis
        .iter()
        .find(|ch| ch.name == a.chassis)
        .context("attacker's chassis")?
        .clone();
    let mut rng = Rng::new();
    let markers: Vec<[u8; 4]> = kinds
        .iter()
        .map(|_| ((rng.next() as u32) | 0x8080_8080).to_be_bytes())
        .collect();
    let stop = r
        .dir
        .join(format!("attack-stop-{}", marker_hex(markers[0])));
    let _ = std::fs::remove_file(&stop);
    let exe_s = exe.to_string_lossy().into_owned();
    let mlist = markers
        .iter()
        .map(|m| marker_hex(*m))
        .collect::<Vec<_>>()
        .join(",");
    // Warm the path to a victim of the attacker's VPC (on another chassis:
    // the tunnel's next hop must be resolved, or the first frames, the
    // controls, die in the switch's neighbour resolution as OVS's do).
    if same_vpc {
        let _ = crate::proc::run_ok(
            Command::new("ip").args([
                "netns", "exec", &a.netns, "ping", "-c", "2", "-W", "1", &v.ip,
            ]),
            Duration::from_secs(5),
        );
    }
    let rx = start_receivers(r, &exe_s, Some(&a.name), &mlist, &stop)?;
    let mut results = Vec::new();
    for (kind, marker) in kinds.iter().zip(&markers) {
        let spec = SendSpec {
            kind: *kind,
            count: c.count,
            marker: *marker,
            mac: a.mac.clone(),
            ip: a.ip.parse()?,
            victim_mac: v.mac.clone(),
            victim_ip: v.ip.parse()?,
            neighbour_ip: neighbour.ip.parse()?,
            neighbour_mac: neighbour.mac.clone(),
            blocked_port: c.blocked_port,
            allowed_port: c.allowed_port,
            iface: default_iface(),
            vnis: Vec::new(),
        };
        let tables = kind.drop_tables(!same_vpc);
        let before = drop_counters(&chassis.ofctl_target)?;
        let sent_out = crate::proc::run_ok(
            Command::new("ip").args([
                "netns",
                "exec",
                &a.netns,
                &exe_s,
                "attack-send",
                &serde_json::to_string(&spec)?,
            ]),
            Duration::from_secs(20),
        )?;
        let sent: u64 = sent_out
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("attack-send printed {sent_out:?}"))?;
        // Switch counters may lag (OVS revalidators): poll up to 3 s.
        let mut grown = Vec::new();
        let mut total;
        let t0 = Instant::now();
        loop {
            let after = drop_counters(&chassis.ofctl_target)?;
            grown.clear();
            total = 0;
            for (flow, (t, n)) in &after {
                let old = before.get(flow).map_or(0, |x| x.1);
                if *n > old && tables.contains(t) {
                    total += n - old;
                    grown.push(format!("[{flow}] +{}", n - old));
                }
            }
            if tables.is_empty() || total >= sent || t0.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        results.push((*kind, sent, tables, total, grown));
    }
    let seen = rx.collect()?;
    for (i, (kind, sent, tables, total, grown)) in results.into_iter().enumerate() {
        let at: Vec<String> = seen
            .iter()
            .filter(|(_, cs)| cs.get(i).copied().unwrap_or(0) > 0)
            .map(|(n, cs)| format!("{n}: {}", cs[i]))
            .collect();
        let at_victim = seen
            .get(&v.name)
            .and_then(|cs| cs.get(i))
            .copied()
            .unwrap_or(0);
        let what = format!("attack {} -> {}: {}", a.name, v.name, kind.name());
        let result = if kind.is_control() {
            if at_victim > 0 {
                Ok(format!(
                    "control: sent {sent}, seen {at_victim} at {}",
                    v.name
                ))
            } else {
                Err(format!(
                    "control: sent {sent}, seen 0 at {} (sender or receiver broken)",
                    v.name
                ))
            }
        } else if !at.is_empty() {
            Err(format!(
                "sent {sent}, SEEN at {} (isolation violated)",
                at.join(", ")
            ))
        } else if total < sent {
            Err(format!(
                "sent {sent}, seen 0 at other hosts, but drop flows of tables {tables:?} on {} counted only {total}: {}",
                chassis.name,
                grown.join("; ")
            ))
        } else {
            Ok(format!(
                "sent {sent}, seen 0 at other hosts; dropped and counted (+{total}): {}",
                grown.join("; ")
            ))
        };
        out.push(Outcome { what, result });
    }
    // Neighbour tables: nobody may map an address other than the attacker's
    // own to the attacker's MAC.
    let a_ll = frames::link_local(mac_of(&a.mac)?).to_string();
    let mut poisoned = Vec::new();
    for h in r.state.hosts.iter().filter(|h| h.name != a.name) {
        let t = crate::proc::run_ok(
            Command::new("ip").args(["netns", "exec", &h.netns, "ip", "neigh", "show"]),
            Duration::from_secs(10),
        )?;
        for l in t.lines() {
            let addr = l.split_whitespace().next().unwrap_or("");
            if l.to_ascii_lowercase().contains(&a.mac.to_ascii_lowercase())
                && addr != a.ip
                && addr != a_ll
            {
                poisoned.push(format!("{}: {l}", h.name));
            }
        }
    }
    out.push(Outcome {
        what: format!(
            "attack {} -> {}: neighbour tables not poisoned",
            a.name, v.name
        ),
        result: if poisoned.is_empty() {
            Ok(format!(
                "no host maps another address to {} ({})",
                a.mac, a.name
            ))
        } else {
            Err(format!("POISONED: {}", poisoned.join("; ")))
        },
    });
    Ok(())
}
