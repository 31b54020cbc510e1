//! Userspace connection tracking, sans-IO, with the semantics of OVS's
//! userspace conntrack (`lib/conntrack.c`).
//!
//! * Connections are keyed by (zone, tuple); both directions are indexed
//!   in one hash map, so a packet finds its connection and its direction in
//!   one lookup. Entries live in a slab; lookups and updates of existing
//!   connections allocate nothing.
//! * States: `trk` always; `new` (no committed connection, or an unanswered
//!   TCP SYN retransmission), `est` (packet valid for a committed
//!   connection), `rpl` (reply direction), `rel` (ICMP error quoting a
//!   tracked connection), `inv` (untrackable, or out of the TCP window),
//!   `snat`/`dnat` (NAT applied).
//! * TCP: pf-style window tracking ([`tcp`]); UDP and other IP protocols:
//!   first/multiple/bidirectional; ICMP/ICMPv6 echo request/reply.
//! * Timeouts per protocol and state ([`Timeouts`], OVS defaults), enforced
//!   by a timer wheel ([`Conntrack::advance`]) and checked on lookup: no
//!   entry is seen after its expiry and none stays in memory more than one
//!   tick past it.
//! * Connections are created only by `commit`; `mark`/`label` are set by
//!   `exec` (commit only). Limits: a global maximum and per-zone limits; a
//!   commit over a limit drops the packet and is counted.
//! * NAT: SNAT/DNAT to address and port ranges, persistent/hash/random
//!   selection, never a duplicate tuple (the candidate reply tuple must be
//!   unused in the zone); packets of the connection are rewritten in both
//!   directions (IPv4/IPv6, L4 checksums), ICMP errors included.

mod pkt;
pub mod tcp;
#[cfg(test)]
mod tests;

use plexus_openflow::oxm::ct_state as cs;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

pub use pkt::{ICMP_REP, ICMP_REQ};

/// A connection's tuple in one direction. IPv4 addresses are in the low 32
/// bits. ICMP echo: `sport` is the identifier and `dport` is
/// [`ICMP_REQ`]/[`ICMP_REP`]. Other protocols without ports: 0/0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub v6: bool,
}

impl Tuple {
    /// The tuple of the opposite direction.
    pub fn reverse(&self) -> Tuple {
        let icmp = matches!(self.proto, pkt::ICMP | pkt::ICMP6);
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: if icmp { self.sport } else { self.dport },
            dport: if icmp { self.dport ^ 1 } else { self.sport },
            proto: self.proto,
            v6: self.v6,
        }
    }

    fn has_ports(&self) -> bool {
        matches!(self.proto, pkt::TCP | pkt::UDP | pkt::SCTP)
    }

    fn fmt_addr(&self, a: u128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}", Ipv6Addr::from(a))
        } else {
            write!(f, "{}", Ipv4Addr::from(a as u32))
        }
    }
}

impl fmt::Display for Tuple {
    /// `src=..,dst=..,sport=..,dport=..` (ICMP: `id=..,type=..,code=0`), as
    /// `ovs-appctl dpctl/dump-conntrack` prints a tuple.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("src=")?;
        self.fmt_addr(self.src, f)?;
        f.write_str(",dst=")?;
        self.fmt_addr(self.dst, f)?;
        if matches!(self.proto, pkt::ICMP | pkt::ICMP6) {
            let ty = match (self.v6, self.dport) {
                (false, ICMP_REQ) => 8,
                (false, _) => 0,
                (true, ICMP_REQ) => 128,
                (true, _) => 129,
            };
            write!(f, ",id={},type={ty},code=0", self.sport)
        } else if self.has_ports() {
            write!(f, ",sport={},dport={}", self.sport, self.dport)
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    zone: u16,
    t: Tuple,
}

/// FxHash-style hasher for connection keys.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
}

type FxBuild = BuildHasherDefault<Fx>;

fn fx_hash(vals: &[u128]) -> u64 {
    let mut h = Fx(0x243f_6a88_85a3_08d3);
    for v in vals {
        h.write_u128(*v);
    }
    h.finish()
}

/// Timeout classes (OVS `CT_TM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    TcpFirstPacket,
    TcpOpening,
    TcpEstablished,
    TcpClosing,
    TcpFinWait,
    TcpClosed,
    OtherFirst,
    OtherMultiple,
    OtherBidir,
    IcmpFirst,
    IcmpReply,
}

/// Timeouts per class (defaults: OVS userspace conntrack's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_first_packet: Duration,
    pub tcp_opening: Duration,
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_closed: Duration,
    pub other_first: Duration,
    pub other_multiple: Duration,
    pub other_bidir: Duration,
    pub icmp_first: Duration,
    pub icmp_reply: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            tcp_first_packet: s(30),
            tcp_opening: s(30),
            tcp_established: s(24 * 3600),
            tcp_closing: s(15 * 60),
            tcp_fin_wait: s(45),
            tcp_closed: s(30),
            other_first: s(60),
            other_multiple: s(60),
            other_bidir: s(30),
            icmp_first: s(60),
            icmp_reply: s(30),
        }
    }
}

impl Timeouts {
    pub fn get(&self, t: Timeout) -> Duration {
        use Timeout::*;
        match t {
            TcpFirstPacket => self.tcp_first_packet,
            TcpOpening => self.tcp_opening,
            TcpEstablished => self.tcp_established,
            TcpClosing => self.tcp_closing,
            TcpFinWait => self.tcp_fin_wait,
            TcpClosed => self.tcp_closed,
            OtherFirst => self.other_first,
            OtherMultiple => self.other_multiple,
            OtherBidir => self.other_bidir,
            IcmpFirst => self.icmp_first,
            IcmpReply => self.icmp_reply,
        }
    }
}

/// Per-protocol connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    Tcp([tcp::Peer; 2]),
    /// UDP and other protocols: 0 first, 1 multiple, 2 bidirectional.
    Other(u8),
    /// ICMP echo: whether a reply was seen.
    Icmp(bool),
}

/// NAT flags of a connection.
pub mod nat_kind {
    pub const SRC: u8 = 1;
    pub const DST: u8 = 2;
}

#[derive(Debug, Clone)]
struct Conn {
    /// `[original, reply]` keys (the reply key reflects NAT).
    keys: [Key; 2],
    mark: u32,
    label: u128,
    nat: u8,
    proto: ProtoState,
    /// Nanoseconds since the tracker's epoch.
    expires: u64,
    /// The wheel tick this connection is queued at (0: not queued).
    wheel_tick: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
}

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// NAT to apply when committing a new connection (`nat(src=..)`/`nat(dst=..)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatSpec {
    /// `nat_kind::SRC` or `DST`; 0 for a bare `nat`.
    pub kind: u8,
    /// Address range (IPv4 in the low 32 bits); `None`: keep the address.
    pub addr: Option<(u128, u128)>,
    /// Port range; `None`: keep the port (SNAT: an ephemeral port on collision).
    pub ports: Option<(u16, u16)>,
    pub persistent: bool,
    pub random: bool,
}

/// One `ct` action execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtRequest {
    pub zone: u16,
    pub commit: bool,
    pub force: bool,
    /// `Some` when the action has `nat` (bare or with a range).
    pub nat: Option<NatSpec>,
    /// `exec(set_field:v/m->ct_mark)`: (value, mask).
    pub mark: Option<(u32, u32)>,
    pub label: Option<(u128, u128)>,
}

/// What conntrack reports for a packet (the ct match fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtResult {
    pub state: u32,
    pub zone: u16,
    pub mark: u32,
    pub label: u128,
    /// Original-direction tuple (`ct_nw_*`, `ct_tp_*`); ICMP: type/code in the ports.
    pub orig: Option<Tuple>,
    /// The packet must be dropped (table or zone full on commit).
    pub drop: bool,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtCounters {
    pub packets: u64,
    pub lookups_hit: u64,
    pub lookups_miss: u64,
    pub invalid: u64,
    pub related: u64,
    pub committed: u64,
    pub expired: u64,
    pub flushed: u64,
    /// Commits refused because the table is at its global maximum.
    pub table_full: u64,
    /// Commits refused by a zone limit.
    pub zone_full: u64,
    /// Commits whose NAT found no free tuple.
    pub nat_exhausted: u64,
    pub nat_applied: u64,
}

/// A dumped connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    pub zone: u16,
    pub orig: Tuple,
    pub reply: Tuple,
    pub mark: u32,
    pub label: u128,
    pub nat: u8,
    pub proto: ProtoState,
    /// Time left before expiry.
    pub expires_in: Duration,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl fmt::Display for ConnEntry {
    /// `ovs-appctl dpctl/dump-conntrack` style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.orig.proto, self.orig.v6) {
            (pkt::TCP, _) => "tcp",
            (pkt::UDP, _) => "udp",
            (pkt::ICMP, _) => "icmp",
            (pkt::ICMP6, _) => "icmpv6",
            (pkt::SCTP, _) => "sctp",
            _ => "other",
        };
        write!(f, "{name},orig=({}),reply=({})", self.orig, self.reply)?;
        if self.zone != 0 {
            write!(f, ",zone={}", self.zone)?;
        }
        if self.mark != 0 {
            write!(f, ",mark={}", self.mark)?;
        }
        if self.label != 0 {
            write!(f, ",labels=0x{:x}", self.label)?;
        }
        if let ProtoState::Tcp(p) = self.proto {
            // OVS prints the more advanced of the two states, coalesced as
            // its non-verbose dump does (`ct-dpif.c` coalesce_tcp_state:
            // FIN_WAIT_2 shows as TIME_WAIT, SYN_RECV as ESTABLISHED).
            let s = tcp::coalesce(p[0].state.max(p[1].state));
            write!(f, ",protoinfo=(state={})", tcp::state_name(s))?;
        }
        Ok(())
    }
}

/// Configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtConfig {
    /// Global maximum number of connections.
    pub max_conns: usize,
    /// Limit for zones without an explicit one (0: none).
    pub default_zone_limit: u32,
    pub timeouts: Timeouts,
    /// Timer wheel granularity.
    pub tick: Duration,
    /// Timer wheel slots.
    pub wheel_slots: usize,
}

impl Default for CtConfig {
    fn default() -> Self {
        Self {
            max_conns: 3_000_000,
            default_zone_limit: 0,
            timeouts: Timeouts::default(),
            tick: Duration::from_millis(100),
            wheel_slots: 1024,
        }
    }
}

/// The connection tracker.
#[derive(Debug)]
pub struct Conntrack {
    cfg: CtConfig,
    epoch: Instant,
    tick_ns: u64,
    map: HashMap<Key, (u32, u8), FxBuild>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    n_conns: usize,
    zone_limits: HashMap<u16, u32>,
    zone_counts: HashMap<u16, u32>,
    wheel: Vec<Vec<(u32, u32)>>,
    wheel_scratch: Vec<(u32, u32)>,
    cur_tick: u64,
    rng: u64,
    pub counters: CtCounters,
    /// Refused commits (`table_full + zone_full`) already reported by
    /// [`Conntrack::refusal_report`], and when the last report was made.
    refused_reported: u64,
    last_report_ns: Option<u64>,
}

/// Minimum interval between two [`Conntrack::refusal_report`] messages.
pub const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(5);

impl Default for Conntrack {
    fn default() -> Self {
        Self::new(CtConfig::default(), Instant::now())
    }
}

/// Lookup outcome.
#[derive(Clone, Copy)]
struct Found {
    idx: u32,
    reply: bool,
}

impl Conntrack {
    /// A tracker whose clock starts at `epoch` (every `now` passed later must
    /// not be earlier).
    pub fn new(cfg: CtConfig, epoch: Instant) -> Self {
        let tick_ns = (cfg.tick.as_nanos() as u64).max(1);
        let slots = cfg.wheel_slots.max(4);
        Self {
            cfg,
            epoch,
            tick_ns,
            map: HashMap::with_capacity_and_hasher(1024, FxBuild::default()),
            slots: Vec::new(),
            free: Vec::new(),
            n_conns: 0,
            zone_limits: HashMap::new(),
            zone_counts: HashMap::new(),
            wheel: (0..slots).map(|_| Vec::new()).collect(),
            wheel_scratch: Vec::new(),
            cur_tick: 0,
            rng: 0x853c_49e6_748f_ea9b,
            counters: CtCounters::default(),
            refused_reported: 0,
            last_report_ns: None,
        }
    }

    pub fn config(&self) -> &CtConfig {
        &self.cfg
    }

    /// A rate-limited log line about refused new connections: `Some` when
    /// commits were refused (table full or zone limit) since the last
    /// report and the last report is at least [`REFUSAL_REPORT_INTERVAL`]
    /// old; the line carries the counts of every refusal since then, so none
    /// goes unreported, only coalesced. Cheap when nothing was refused.
    pub fn refusal_report(&mut self, now: Instant) -> Option<String> {
        let refused = self.counters.table_full + self.counters.zone_full;
        if refused == self.refused_reported {
            return None;
        }
        let now_ns = self.ns(now);
        let interval = REFUSAL_REPORT_INTERVAL.as_nanos() as u64;
        if self
            .last_report_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < interval)
        {
            return None;
        }
        let n = refused - self.refused_reported;
        self.refused_reported = refused;
        self.last_report_ns = Some(now_ns);
        Some(format!(
            "conntrack: {n} new connection(s) dropped since the last report \
             (table full: {} total, zone limit: {} total; {} of max {} connections in use)",
            self.counters.table_full, self.counters.zone_full, self.n_conns, self.cfg.max_conns
        ))
    }

    /// The per-zone limits set with [`Conntrack::set_zone_limit`], by zone.
    pub fn zone_limits(&self) -> Vec<(u16, u32)> {
        let mut v: Vec<(u16, u32)> = self.zone_limits.iter().map(|(&z, &l)| (z, l)).collect();
        v.sort_unstable();
        v
    }

    /// Changes the global maximum (existing connections stay).
    pub fn set_max_conns(&mut self, n: usize) {
        self.cfg.max_conns = n;
    }

    /// Sets (or with `None` removes) a zone's connection limit.
    pub fn set_zone_limit(&mut self, zone: u16, limit: Option<u32>) {
        match limit {
            Some(l) => self.zone_limits.insert(zone, l),
            None => self.zone_limits.remove(&zone),
        };
    }

    pub fn set_default_zone_limit(&mut self, limit: u32) {
        self.cfg.default_zone_limit = limit;
    }

    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.cfg.timeouts = t;
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.n_conns
    }

    pub fn is_empty(&self) -> bool {
        self.n_conns == 0
    }

    /// Connections in `zone`.
    pub fn zone_count(&self, zone: u16) -> u32 {
        self.zone_counts.get(&zone).copied().unwrap_or(0)
    }

    fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn conn(&self, idx: u32) -> &Conn {
        self.slots[idx as usize].conn.as_ref().expect("live slot")
    }

    fn conn_mut(&mut self, idx: u32) -> &mut Conn {
        self.slots[idx as usize].conn.as_mut().expect("live slot")
    }

    fn lookup(&mut self, key: &Key, now_ns: u64) -> Option<Found> {
        let &(idx, dir) = self.map.get(key)?;
        if self.conn(idx).expires <= now_ns {
            self.remove(idx);
            self.counters.expired += 1;
            return None;
        }
        Some(Found {
            idx,
            reply: dir == 1,
        })
    }

    fn remove(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        let Some(c) = slot.conn.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        self.map.remove(&c.keys[0]);
        self.map.remove(&c.keys[1]);
        self.n_conns -= 1;
        if let Some(n) = self.zone_counts.get_mut(&c.keys[0].zone) {
            *n -= 1;
            if *n == 0 {
                self.zone_counts.remove(&c.keys[0].zone);
            }
        }
        self.free.push(idx);
    }

    // ------------------------------------------------------------- wheel

    /// (Re)arms `idx`'s expiry on the wheel.
    fn schedule(&mut self, idx: u32) {
        let n = self.wheel.len() as u64;
        let tick_ns = self.tick_ns;
        let cur = self.cur_tick;
        let generation = self.slots[idx as usize].generation;
        let c = self.conn_mut(idx);
        let due = c.expires.div_ceil(tick_ns);
        if c.wheel_tick != 0 && c.wheel_tick <= due {
            return; // re-checked (and re-queued) when its slot comes up
        }
        let at = due.clamp(cur + 1, cur + n - 1);
        c.wheel_tick = at;
        self.wheel[(at % n) as usize].push((idx, generation));
    }

    /// Advances the timer wheel to `now`, expiring connections whose
    /// timeout has passed. Cheap when the tick has not changed.
    pub fn advance(&mut self, now: Instant) {
        let now_ns = self.ns(now);
        let target = now_ns / self.tick_ns;
        if target <= self.cur_tick {
            return;
        }
        let n = self.wheel.len() as u64;
        if target - self.cur_tick >= n {
            // A long gap: sweep every slot once.
            self.cur_tick = target;
            let mut all = std::mem::take(&mut self.wheel_scratch);
            for s in &mut self.wheel {
                all.append(s);
            }
            for &(idx, generation) in &all {
                self.wheel_due(idx, generation, |t| t <= target, target);
            }
            all.clear();
            self.wheel_scratch = all;
            return;
        }
        while self.cur_tick < target {
            self.cur_tick += 1;
            let t = self.cur_tick;
            let s = (t % n) as usize;
            let mut v = std::mem::take(&mut self.wheel[s]);
            for &(idx, generation) in &v {
                self.wheel_due(idx, generation, |w| w == t, t);
            }
            v.clear();
            if self.wheel[s].is_empty() {
                self.wheel[s] = v;
            }
        }
    }

    fn wheel_due(&mut self, idx: u32, generation: u32, due: impl Fn(u64) -> bool, tick: u64) {
        let slot = &mut self.slots[idx as usize];
        if slot.generation != generation {
            return;
        }
        let Some(c) = slot.conn.as_mut() else { return };
        if c.wheel_tick == 0 || !due(c.wheel_tick) {
            return;
        }
        c.wheel_tick = 0;
        if c.expires <= tick * self.tick_ns {
            self.remove(idx);
            self.counters.expired += 1;
        } else {
            self.schedule(idx);
        }
    }

    fn set_timeout(&mut self, idx: u32, t: Timeout, now_ns: u64) {
        let d = self.cfg.timeouts.get(t).as_nanos() as u64;
        self.conn_mut(idx).expires = now_ns + d;
        self.schedule(idx);
    }

    // ----------------------------------------------------------- packets

    /// Runs one packet (an Ethernet frame) through the tracker in
    /// `req.zone`: tracks, commits, applies NAT (rewriting `frame`), and
    /// returns the ct fields.
    pub fn execute(&mut self, frame: &mut [u8], req: &CtRequest, now: Instant) -> CtResult {
        self.counters.packets += 1;
        let now_ns = self.ns(now);
        let mut res = CtResult {
            zone: req.zone,
            state: cs::TRK,
            ..Default::default()
        };
        let Some(p) = pkt::parse(frame) else {
            self.counters.invalid += 1;
            res.state |= cs::INV;
            return res;
        };
        if p.related {
            return self.related(frame, &p, req, now_ns, res);
        }
        let key = Key {
            zone: req.zone,
            t: p.tuple,
        };
        let mut found = self.lookup(&key, now_ns);
        if let Some(f) = found
            && f.reply
            && req.force
            && req.commit
        {
            self.remove(f.idx);
            found = None;
        }
        let wscale = if p.tuple.proto == pkt::TCP && p.tcp_flags & tcp::SYN != 0 {
            pkt::tcp_wscale(frame, p.l4)
        } else {
            0
        };
        if let Some(f) = found {
            self.counters.lookups_hit += 1;
            let verdict = self.update(f, &p, wscale, now_ns);
            match verdict {
                tcp::Update::Valid => {
                    res.state |= cs::EST;
                    if f.reply {
                        res.state |= cs::RPL;
                    }
                }
                tcp::Update::ValidNew => res.state |= cs::NEW,
                tcp::Update::Invalid => {
                    self.counters.invalid += 1;
                    res.state = cs::TRK | cs::INV;
                    self.fill(&mut res, &p, Some(f.idx));
                    return res;
                }
                tcp::Update::New => {
                    self.remove(f.idx);
                    return self.not_found(frame, &p, key, req, wscale, now_ns, res);
                }
            }
            let c = self.conn_mut(f.idx);
            let d = f.reply as usize;
            c.packets[d] += 1;
            c.bytes[d] += frame.len() as u64;
            if req.commit {
                self.exec_set(f.idx, req);
            }
            if req.nat.is_some() {
                self.nat_packet(frame, &p, f, &mut res);
            }
            self.fill(&mut res, &p, Some(f.idx));
            return res;
        }
        self.counters.lookups_miss += 1;
        self.not_found(frame, &p, key, req, wscale, now_ns, res)
    }

    /// A packet without a connection: `new` if it may start one (committed
    /// on `commit`), else `inv`.
    #[allow(clippy::too_many_arguments)]
    fn not_found(
        &mut self,
        frame: &mut [u8],
        p: &pkt::Parsed,
        key: Key,
        req: &CtRequest,
        wscale: u8,
        now_ns: u64,
        mut res: CtResult,
    ) -> CtResult {
        // A tuple that is its own reverse (same address and port at both
        // ends, a LAND-style packet) cannot be told apart from its reply:
        // not trackable. Found by the conntrack fuzz target.
        let valid = p.tuple != p.tuple.reverse()
            && match p.tuple.proto {
                pkt::TCP => tcp::valid_new(p),
                pkt::ICMP | pkt::ICMP6 => p.tuple.dport == ICMP_REQ,
                _ => true,
            };
        if !valid {
            self.counters.invalid += 1;
            res.state |= cs::INV;
            self.fill(&mut res, p, None);
            return res;
        }
        res.state |= cs::NEW;
        if req.commit {
            match self.commit(frame, p, key, req, wscale, now_ns) {
                Ok(idx) => {
                    let f = Found { idx, reply: false };
                    if req.nat.is_some() {
                        self.nat_packet(frame, p, f, &mut res);
                    }
                    self.fill(&mut res, p, Some(idx));
                    return res;
                }
                Err(true) => {
                    res.drop = true;
                }
                Err(false) => {}
            }
        }
        self.fill(&mut res, p, None);
        res
    }

    /// Creates the connection. `Err(true)`: over a limit (drop the packet);
    /// `Err(false)`: NAT exhausted (not committed).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        _frame: &mut [u8],
        p: &pkt::Parsed,
        key: Key,
        req: &CtRequest,
        wscale: u8,
        now_ns: u64,
    ) -> Result<u32, bool> {
        if self.n_conns >= self.cfg.max_conns {
            self.counters.table_full += 1;
            return Err(true);
        }
        let limit = self
            .zone_limits
            .get(&req.zone)
            .copied()
            .unwrap_or(self.cfg.default_zone_limit);
        if limit != 0 && self.zone_count(req.zone) >= limit {
            self.counters.zone_full += 1;
            return Err(true);
        }
        let mut reply = Key {
            zone: req.zone,
            t: key.t.reverse(),
        };
        let mut nat = 0;
        if let Some(spec) = req.nat
            && spec.kind != 0
        {
            match self.nat_alloc(&key, &spec) {
                Some((t, k)) => {
                    reply.t = t;
                    nat = k;
                }
                None => {
                    self.counters.nat_exhausted += 1;
                    return Err(false);
                }
            }
        }
        if reply == key || self.map.contains_key(&reply) {
            // The reply tuple belongs to another connection (or is this
            // connection's original tuple): OVS refuses too.
            self.counters.nat_exhausted += 1;
            return Err(false);
        }
        let (proto, tmo) = match p.tuple.proto {
            pkt::TCP => (
                ProtoState::Tcp(tcp::new_conn(p, wscale)),
                Timeout::TcpFirstPacket,
            ),
            pkt::ICMP | pkt::ICMP6 => (ProtoState::Icmp(false), Timeout::IcmpFirst),
            _ => (ProtoState::Other(0), Timeout::OtherFirst),
        };
        let conn = Conn {
            keys: [key, reply],
            mark: 0,
            label: 0,
            nat,
            proto,
            expires: 0,
            wheel_tick: 0,
            packets: [1, 0],
            bytes: [(p.end) as u64, 0],
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].conn = Some(conn);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: Some(conn),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, (idx, 0));
        self.map.insert(reply, (idx, 1));
        self.n_conns += 1;
        *self.zone_counts.entry(req.zone).or_insert(0) += 1;
        self.counters.committed += 1;
        self.set_timeout(idx, tmo, now_ns);
        self.exec_set(idx, req);
        Ok(idx)
    }

    fn exec_set(&mut self, idx: u32, req: &CtRequest) {
        let c = self.conn_mut(idx);
        if let Some((v, m)) = req.mark {
            c.mark = (c.mark & !m) | (v & m);
        }
        if let Some((v, m)) = req.label {
            c.label = (c.label & !m) | (v & m);
        }
    }

    /// Per-protocol tracking of a packet of an existing connection.
    fn update(&mut self, f: Found, p: &pkt::Parsed, wscale: u8, now_ns: u64) -> tcp::Update {
        let c = self.conn_mut(f.idx);
        let (verdict, tmo) = match &mut c.proto {
            ProtoState::Tcp(peers) => tcp::update(peers, f.reply, p, wscale),
            ProtoState::Other(s) => {
                // As OVS's other_conn_update: the second packet of the
                // original direction (first → multiple) is still `new`.
                let mut v = tcp::Update::Valid;
                if f.reply && *s != 2 {
                    *s = 2;
                } else if *s == 0 {
                    *s = 1;
                    v = tcp::Update::ValidNew;
                }
                let t = [
                    Timeout::OtherFirst,
                    Timeout::OtherMultiple,
                    Timeout::OtherBidir,
                ][*s as usize];
                (v, Some(t))
            }
            ProtoState::Icmp(r) => {
                if f.reply {
                    *r = true;
                }
                let t = if *r {
                    Timeout::IcmpReply
                } else {
                    Timeout::IcmpFirst
                };
                (tcp::Update::Valid, Some(t))
            }
        };
        if let Some(t) = tmo {
            self.set_timeout(f.idx, t, now_ns);
        }
        verdict
    }

    /// An ICMP error: `rel` if it quotes a packet of a tracked connection.
    fn related(
        &mut self,
        frame: &mut [u8],
        p: &pkt::Parsed,
        req: &CtRequest,
        now_ns: u64,
        mut res: CtResult,
    ) -> CtResult {
        // The quoted packet went the other way: look up its reverse.
        let key = Key {
            zone: req.zone,
            t: p.tuple.reverse(),
        };
        let Some(f) = self.lookup(&key, now_ns) else {
            self.counters.invalid += 1;
            res.state |= cs::INV;
            return res;
        };
        self.counters.related += 1;
        res.state |= cs::REL;
        if f.reply {
            res.state |= cs::RPL;
        }
        if req.commit {
            self.exec_set(f.idx, req);
        }
        let c = self.conn(f.idx);
        if req.nat.is_some() && c.nat != 0 {
            // The quoted packet's tuple is reverse(key) and maps to the
            // reverse of the other direction's key's reverse: i.e. the
            // other direction's key.
            let other = c.keys[!f.reply as usize].t;
            pkt::rewrite_related(frame, p, &p.tuple, &other);
            res.state |= nat_state(c.nat);
            self.counters.nat_applied += 1;
        }
        let c = self.conn(f.idx);
        res.mark = c.mark;
        res.label = c.label;
        res.orig = Some(orig_fields(&c.keys[0].t));
        res
    }

    /// Rewrites a packet of connection `f` per its NAT.
    fn nat_packet(&mut self, frame: &mut [u8], p: &pkt::Parsed, f: Found, res: &mut CtResult) {
        let c = self.conn(f.idx);
        if c.nat == 0 {
            return;
        }
        // The packet's tuple is keys[dir]; it becomes reverse(keys[!dir]).
        let to = c.keys[!f.reply as usize].t.reverse();
        res.state |= nat_state(c.nat);
        pkt::rewrite(frame, p, &p.tuple, &to);
        self.counters.nat_applied += 1;
    }

    fn fill(&self, res: &mut CtResult, p: &pkt::Parsed, idx: Option<u32>) {
        match idx {
            Some(i) => {
                let c = self.conn(i);
                res.mark = c.mark;
                res.label = c.label;
                res.orig = Some(orig_fields(&c.keys[0].t));
            }
            None => {
                let mut t = orig_fields(&p.tuple);
                if matches!(p.tuple.proto, pkt::ICMP | pkt::ICMP6) {
                    t.sport = p.icmp_type as u16;
                    t.dport = p.icmp_code as u16;
                }
                res.orig = Some(t);
            }
        }
    }

    // --------------------------------------------------------------- NAT

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Picks the reply tuple for a new NATed connection `key`: the first
    /// address/port combination (from a hashed or random start) whose reply
    /// tuple is unused.
    fn nat_alloc(&mut self, key: &Key, spec: &NatSpec) -> Option<(Tuple, u8)> {
        let t = key.t;
        let snat = spec.kind & nat_kind::SRC != 0;
        let (cur_addr, cur_port) = if snat {
            (t.src, t.sport)
        } else {
            (t.dst, t.dport)
        };
        let (amin, amax) = spec.addr.unwrap_or((cur_addr, cur_addr));
        let (amin, amax) = (amin.min(amax), amin.max(amax));
        let n_addr = (amax - amin).saturating_add(1);
        let h = if spec.persistent {
            fx_hash(&[t.src, t.dst])
        } else {
            fx_hash(&[
                t.src,
                t.dst,
                ((t.sport as u128) << 16) | t.dport as u128,
                t.proto as u128,
            ])
        };
        let r = if spec.random { self.next_rand() } else { h };
        // Persistent: the address depends only on the addresses.
        let a_start = if spec.persistent { h } else { r } as u128 % n_addr;
        let ports = t.has_ports();
        // Port candidates: the range, or the original port first (SNAT falls
        // back to the ephemeral range).
        let (pmin, pmax, keep_first) = match (ports, spec.ports) {
            (false, _) => (cur_port, cur_port, false),
            (true, Some((a, b))) => (a.min(b), a.max(b), false),
            (true, None) if snat => (1024, 65535, true),
            (true, None) => (cur_port, cur_port, false),
        };
        let n_port = (pmax - pmin) as u64 + 1;
        let p_start = (r >> 17) % n_port;
        let max_addrs = n_addr.min(1 << 16) as u64;
        for ai in 0..max_addrs {
            let addr = amin + (a_start + ai as u128) % n_addr;
            let cand = |port: u16| {
                let mut rt = t.reverse();
                if snat {
                    rt.dst = addr;
                    if ports {
                        rt.dport = port;
                    }
                } else {
                    rt.src = addr;
                    if ports {
                        rt.sport = port;
                    }
                }
                rt
            };
            if keep_first {
                let rt = cand(cur_port);
                if rt != t
                    && !self.map.contains_key(&Key {
                        zone: key.zone,
                        t: rt,
                    })
                {
                    return Some((rt, spec.kind));
                }
            }
            for pi in 0..n_port {
                let port = pmin + ((p_start + pi) % n_port) as u16;
                let rt = cand(port);
                if rt != t
                    && !self.map.contains_key(&Key {
                        zone: key.zone,
                        t: rt,
                    })
                {
                    return Some((rt, spec.kind));
                }
            }
        }
        None
    }

    // ------------------------------------------------------ management

    /// Removes every connection.
    pub fn flush(&mut self) {
        let live: Vec<u32> = self.live().collect();
        for i in live {
            self.remove(i);
            self.counters.flushed += 1;
        }
    }

    /// Removes the connections of `zone`.
    pub fn flush_zone(&mut self, zone: u16) {
        let live: Vec<u32> = self
            .live()
            .filter(|&i| self.conn(i).keys[0].zone == zone)
            .collect();
        for i in live {
            self.remove(i);
            self.counters.flushed += 1;
        }
    }

    /// Removes the connection with tuple `t` (either direction) in `zone`;
    /// returns whether one existed.
    pub fn flush_tuple(&mut self, zone: u16, t: &Tuple) -> bool {
        match self.map.get(&Key { zone, t: *t }) {
            Some(&(idx, _)) => {
                self.remove(idx);
                self.counters.flushed += 1;
                true
            }
            None => false,
        }
    }

    fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, _)| i as u32)
    }

    /// All connections (optionally one zone's), ordered by zone and tuple.
    pub fn dump(&self, zone: Option<u16>, now: Instant) -> Vec<ConnEntry> {
        let now_ns = self.ns(now);
        let mut v: Vec<ConnEntry> = self
            .slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .filter(|c| zone.is_none_or(|z| c.keys[0].zone == z))
            .map(|c| ConnEntry {
                zone: c.keys[0].zone,
                orig: c.keys[0].t,
                reply: c.keys[1].t,
                mark: c.mark,
                label: c.label,
                nat: c.nat,
                proto: c.proto,
                expires_in: Duration::from_nanos(c.expires.saturating_sub(now_ns)),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        v.sort_by(|a, b| {
            (
                a.zone,
                a.orig.v6,
                a.orig.src,
                a.orig.dst,
                a.orig.proto,
                a.orig.sport,
                a.orig.dport,
            )
                .cmp(&(
                    b.zone,
                    b.orig.v6,
                    b.orig.src,
                    b.orig.dst,
                    b.orig.proto,
                    b.orig.sport,
                    b.orig.dport,
                ))
        });
        v
    }

    /// Debug check of the internal invariants (used by tests).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut n = 0;
        let mut zones: HashMap<u16, u32> = HashMap::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(c) = &s.conn {
                n += 1;
                *zones.entry(c.keys[0].zone).or_default() += 1;
                assert_eq!(self.map.get(&c.keys[0]), Some(&(i as u32, 0)));
                assert_eq!(self.map.get(&c.keys[1]), Some(&(i as u32, 1)));
                assert!(c.wheel_tick != 0, "connection not on the wheel");
            }
        }
        assert_eq!(n, self.n_conns);
        assert_eq!(self.map.len(), 2 * n);
        assert_eq!(zones, self.zone_counts);
    }

    /// Expiry of every connection (for tests): (orig tuple, zone, expiry).
    #[doc(hidden)]
    pub fn expiries(&self) -> Vec<(Tuple, u16, Instant)> {
        self.slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| {
                (
                    c.keys[0].t,
                    c.keys[0].zone,
                    self.epoch + Duration::from_nanos(c.expires),
                )
            })
            .collect()
    }
}

fn nat_state(k: u8) -> u32 {
    let mut s = 0;
    if k & nat_kind::SRC != 0 {
        s |= cs::SNAT;
    }
    if k & nat_kind::DST != 0 {
        s |= cs::DNAT;
    }
    s
}

/// The `ct_nw_*`/`ct_tp_*` view of an original tuple (ICMP: type/code).
fn orig_fields(t: &Tuple) -> Tuple {
    let mut o = *t;
    if matches!(t.proto, pkt::ICMP | pkt::ICMP6) {
        let req = t.dport == ICMP_REQ;
        o.sport = match (t.v6, req) {
            (false, true) => 8,
            (false, false) => 0,
            (true, true) => 128,
            (true, false) => 129,
        };
        o.dport = 0;
    }
    o
}
