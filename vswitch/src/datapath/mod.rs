//! The datapath thread: owns the ports and the pipeline ([`Engine`]),
//! runs batched rx → process → tx, and between batches applies what the
//! control side sends over a channel ([`Ctl`]) through the OpenFlow
//! [`Agent`](crate::agent::Agent), which answers on the connections directly.
//!
//! Nothing on the per-packet path takes a lock: control messages arrive on
//! an mpsc channel drained between batches; a pipe wakes the thread from
//! poll(2) when a message is queued while it sleeps.

pub mod engine;
pub mod full;
pub mod simple;

pub use engine::{Engine, PortInfo, Sink};

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plexus_openflow::conn::{ConnHandle, DecodeFailure};
use plexus_openflow::error::{OfpError, PortModFailedCode};
use plexus_openflow::message::{self as ofm, Message, PacketIn, PacketOut, PortMod};

use crate::agent::{Agent, FailMode, Switch};
use crate::flow::TunnelMeta;
use crate::port::{DEFAULT_BATCH, LinkState, PacketBatch, Port};
use crate::sys;

/// Opens a port; run on the datapath thread (so the port lands in the
/// datapath's network namespace and never crosses threads).
pub struct PortOpener(pub Box<dyn FnOnce() -> anyhow::Result<Box<dyn Port>> + Send>);

impl std::fmt::Debug for PortOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortOpener")
    }
}

/// A port as seen from the control side (answers [`Ctl::AddPort`] and
/// [`Ctl::Snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSnapshot {
    /// OpenFlow port number.
    pub ofport: u32,
    /// Interface name.
    pub name: String,
    /// Ethernet address.
    pub hw_addr: [u8; 6],
    /// Interface index (0 if unknown).
    pub ifindex: u32,
    /// Link state.
    pub link: LinkState,
    /// Counters.
    pub stats: crate::port::PortStats,
}

/// A reply channel of a [`Ctl`] request.
pub type Reply<T> = tokio::sync::oneshot::Sender<T>;

/// A control-side event for the datapath thread.
#[derive(Debug)]
pub enum Ctl {
    /// A controller connection came up (`id` unique per connection).
    Connected { id: u64, handle: ConnHandle },
    /// It went away.
    Disconnected { id: u64 },
    /// A decoded message.
    Msg { id: u64, xid: u32, msg: Message },
    /// A BUNDLE_ADD of a flow-mod (without bundle properties), already in
    /// the form the agent queues (built on the connection's task).
    BundleFlowMod {
        id: u64,
        xid: u32,
        bundle_id: u32,
        flags: u16,
        queued: crate::agent::Queued,
    },
    /// A frame that did not decode (answered with the codec's OFPT_ERROR).
    Bad { id: u64, failure: DecodeFailure },
    /// Adds OpenFlow port `ofport` between batches (the other ports keep
    /// forwarding); controllers get PORT_STATUS ADD. Fails if the number is
    /// taken or the opener fails.
    AddPort {
        ofport: u32,
        open: PortOpener,
        done: Option<Reply<Result<PortSnapshot, String>>>,
    },
    /// Removes a port (flows stay; output to it drops); PORT_STATUS DELETE.
    /// Answers whether the port existed.
    DelPort {
        ofport: u32,
        done: Option<Reply<bool>>,
    },
    /// Changes the fail mode.
    SetFailMode(FailMode),
    /// Changes the datapath id reported in FEATURES_REPLY.
    SetDatapathId(u64),
    /// Reports every port's state and counters.
    Snapshot(Reply<Vec<PortSnapshot>>),
    /// Stops the datapath loop ([`run`] returns; the ports are closed).
    Shutdown,
    /// Who connection `id` is (for `show`): the active target or the
    /// passive peer; `primary` for active controller connections (they
    /// decide fail-mode standalone, like OVS primary controllers).
    Peer {
        id: u64,
        name: String,
        primary: bool,
    },
    /// A control-socket command ([`crate::appctl`]); the text answer goes
    /// back on `reply`.
    Appctl {
        cmd: crate::appctl::Command,
        reply: tokio::sync::oneshot::Sender<crate::appctl::Reply>,
    },
}

/// The control side's end: queue a [`Ctl`] and wake the datapath thread.
#[derive(Debug)]
pub struct CtlSender {
    tx: mpsc::Sender<Ctl>,
    pending: Arc<AtomicBool>,
    pipe: Arc<PipeWriter>,
    /// Messages sent and not yet taken by the datapath thread.
    queued: Arc<AtomicUsize>,
    /// False once the receiver is gone.
    rx_alive: Arc<AtomicBool>,
}

impl Clone for CtlSender {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            pending: self.pending.clone(),
            pipe: self.pipe.clone(),
            queued: self.queued.clone(),
            rx_alive: self.rx_alive.clone(),
        }
    }
}

/// [`CtlSender::send_throttled`] waits while more messages than this are queued…
pub const CTL_HIGH: usize = 4096;
/// …until fewer than this are.
pub const CTL_LOW: usize = 1024;

impl CtlSender {
    /// Queues `c`; false if the datapath thread is gone.
    pub fn send(&self, c: Ctl) -> bool {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(c).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // One byte per false→true transition; the datapath clears the flag
        // (reading exactly that byte) before it drains the channel.
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = (&*self.pipe).write_all(&[1]);
        }
        true
    }

    /// [`send`](Self::send) for a connection's messages: while the datapath
    /// thread is more than [`CTL_HIGH`] messages behind, first waits (up to
    /// 1 s, blocking the calling thread) until it is below [`CTL_LOW`]. On the
    /// daemon's current-thread runtime this pauses the connections' readers
    /// too, so a burst waits in the socket (TCP flow control) instead of in
    /// memory: a controller's 438k-message bundle otherwise ran ~300 MiB of
    /// decoded messages ahead of the datapath thread.
    pub fn send_throttled(&self, c: Ctl) -> bool {
        if self.queued.load(Ordering::Relaxed) > CTL_HIGH {
            let until = Instant::now() + Duration::from_secs(1);
            while self.queued.load(Ordering::Relaxed) > CTL_LOW
                && self.rx_alive.load(Ordering::Relaxed)
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        self.send(c)
    }

    /// Messages queued and not yet taken by the datapath thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The datapath thread's end of the control channel.
#[derive(Debug)]
pub struct CtlReceiver {
    rx: mpsc::Receiver<Ctl>,
    pending: Arc<AtomicBool>,
    pipe: PipeReader,
    queued: Arc<AtomicUsize>,
    rx_alive: Arc<AtomicBool>,
}

impl CtlReceiver {
    /// The next queued message, if any.
    pub fn try_recv(&self) -> Option<Ctl> {
        let c = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }
}

impl Drop for CtlReceiver {
    fn drop(&mut self) {
        self.rx_alive.store(false, Ordering::Relaxed);
    }
}

/// A control channel (sender for the control side, receiver for the datapath).
pub fn ctl_channel() -> std::io::Result<(CtlSender, CtlReceiver)> {
    let (r, w) = std::io::pipe()?;
    let (tx, rx) = mpsc::channel();
    let pending = Arc::new(AtomicBool::new(false));
    let queued = Arc::new(AtomicUsize::new(0));
    let rx_alive = Arc::new(AtomicBool::new(true));
    Ok((
        CtlSender {
            tx,
            pending: pending.clone(),
            pipe: Arc::new(w),
            queued: queued.clone(),
            rx_alive: rx_alive.clone(),
        },
        CtlReceiver {
            rx,
            pending,
            pipe: r,
            queued,
            rx_alive,
        },
    ))
}

/// One port of the datapath.
pub struct DpPort {
    /// OpenFlow port number.
    pub ofport: u32,
    /// The port.
    pub port: Box<dyn Port>,
    tx: PacketBatch,
    hw_addr: [u8; 6],
    /// `OFPPC_*` as set by PORT_MOD.
    config: u32,
    link: LinkState,
    since: Instant,
    /// Packet-ins from this port: a token bucket ([`PinLimit`]).
    pin: PinBucket,
    /// [`Port::is_inert`], cached.
    inert: bool,
}

/// Packet-in counters of one port (`plexus-appctl show`): `sent` passed to
/// the agent, `dropped` by the rate limit.
pub use plexus_responder::ratelimit::Counters as PinCounters;
/// Per-port packet-in rate limit (packets per second and burst; `rate` 0:
/// unlimited), as OVS's `controller_rate_limit`/`controller_burst_limit`
/// but per ingress port, so one flooding port cannot starve the others
/// or the controller. The same token bucket limits the responder
/// packet-ins of Open vSwitch chassis in the controller.
pub use plexus_responder::ratelimit::RateLimit as PinLimit;
use plexus_responder::ratelimit::TokenBucket as PinBucket;

impl DpPort {
    /// Wraps an opened port as OpenFlow port `ofport`.
    pub fn new(ofport: u32, port: Box<dyn Port>) -> Self {
        let hw_addr = sys::if_hwaddr(port.name()).unwrap_or_default();
        let link = port.link_state();
        let inert = port.is_inert();
        Self {
            ofport,
            port,
            tx: PacketBatch::unallocated(),
            inert,
            hw_addr,
            config: 0,
            link,
            since: Instant::now(),
            pin: PinBucket::new(PinLimit::default(), Instant::now()),
        }
    }

    /// Sets this port's packet-in rate limit.
    pub fn set_packet_in_limit(&mut self, limit: PinLimit) {
        self.pin = PinBucket::new(limit, Instant::now());
    }

    /// This port's packet-in limit and counters.
    pub fn packet_ins(&self) -> (PinLimit, PinCounters) {
        (self.pin.limit(), self.pin.counters())
    }

    fn info(&self) -> PortInfo {
        PortInfo {
            ofport: self.ofport,
            name: self.port.name().to_string(),
            hw_addr: self.hw_addr,
            live: self.link.oper_up && self.config & OFPPC_PORT_DOWN == 0,
            no_fwd: self.config & OFPPC_NO_FWD != 0,
            no_flood: self.config & OFPPC_NO_FLOOD != 0,
        }
    }

    /// The `ofp_port` description.
    pub fn desc(&self) -> ofm::Port {
        let mut state = 0;
        if !self.link.oper_up {
            state |= OFPPS_LINK_DOWN;
        } else {
            state |= OFPPS_LIVE;
        }
        let mut config = self.config;
        if !self.link.admin_up {
            config |= OFPPC_PORT_DOWN;
        }
        ofm::Port {
            port_no: self.ofport,
            hw_addr: self.hw_addr,
            name: self.port.name().to_string(),
            config,
            state,
            curr: OFPPF_10GB_FD | OFPPF_COPPER,
            advertised: 0,
            supported: 0,
            peer: 0,
            curr_speed: 10_000_000,
            max_speed: 0,
        }
    }

    /// The control side's view of this port.
    pub fn snapshot(&self) -> PortSnapshot {
        PortSnapshot {
            ofport: self.ofport,
            name: self.port.name().to_string(),
            hw_addr: self.hw_addr,
            ifindex: sys::ifindex(self.port.name()).unwrap_or(0),
            link: self.link,
            stats: self.port.stats(),
        }
    }

    /// Port statistics.
    pub fn stats(&self, now: Instant) -> ofm::PortStats {
        let s = self.port.stats();
        let d = now.saturating_duration_since(self.since);
        ofm::PortStats {
            port_no: self.ofport,
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_dropped: s.rx_drops,
            tx_dropped: s.tx_drops,
            rx_errors: s.rx_errors,
            tx_errors: s.tx_errors,
            rx_frame_err: 0,
            rx_over_err: 0,
            rx_crc_err: 0,
            collisions: 0,
            duration_sec: d.as_secs() as u32,
            duration_nsec: d.subsec_nanos(),
        }
    }
}

impl std::fmt::Debug for DpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpPort")
            .field("ofport", &self.ofport)
            .field("name", &self.port.name())
            .field("config", &self.config)
            .field("link", &self.link)
            .finish()
    }
}

const OFPPC_PORT_DOWN: u32 = 1 << 0;
const OFPPC_NO_RECV: u32 = 1 << 2;
const OFPPC_NO_FWD: u32 = 1 << 5;
const OFPPC_NO_FLOOD: u32 = 1 << 3;
const OFPPC_NO_PACKET_IN: u32 = 1 << 6;
const OFPPS_LINK_DOWN: u32 = 1 << 0;
const OFPPS_LIVE: u32 = 1 << 2;
const OFPPF_10GB_FD: u32 = 1 << 6;
const OFPPF_COPPER: u32 = 1 << 11;

/// Ports + pipeline: what the agent operates on.
#[derive(Debug)]
pub struct Core {
    /// Sorted by OpenFlow port number: every output finds its port by
    /// binary search ([`port_mut`]), O(log ports) at 10k ports.
    ports: Vec<DpPort>,
    engine: Box<dyn Engine>,
    pins: Vec<Pin>,
    /// The poll(2) descriptor set must be rebuilt (ports were added/removed).
    fds_stale: bool,
    /// Indices into `ports` of the ports that can receive (not
    /// [`Port::is_inert`]): the ones each round polls.
    rx_ports: Vec<usize>,
}

/// A packet-in, with the whole packet when it was truncated and the agent
/// buffers packet-ins.
type Pin = (PacketIn, Option<Vec<u8>>);

/// The port numbered `ofport` in `ports` (sorted by number).
#[inline]
fn port_mut(ports: &mut [DpPort], ofport: u32) -> Option<&mut DpPort> {
    let i = ports.binary_search_by_key(&ofport, |p| p.ofport).ok()?;
    Some(&mut ports[i])
}

struct PortSink<'a> {
    ports: &'a mut [DpPort],
    pins: &'a mut Vec<Pin>,
    in_port: u32,
}

impl PortSink<'_> {
    fn push_pin(&mut self, pi: PacketIn, full: Option<Vec<u8>>) {
        // Packet-ins of packets received on a port: that port's config
        // (NO_PACKET_IN) and rate limit; others (packet-out from the
        // controller) are not limited.
        let pass = match port_mut(self.ports, self.in_port) {
            Some(p) if p.config & OFPPC_NO_PACKET_IN != 0 => false,
            Some(p) => p.pin.take(Instant::now()),
            None => true,
        };
        if pass {
            self.pins.push((pi, full));
        }
    }
}

impl Sink for PortSink<'_> {
    fn output(&mut self, port: u32, frame: &[u8]) {
        if let Some(p) = port_mut(self.ports, port) {
            // vxlan: a tunnel port without flow metadata (NORMAL, packet-out)
            // encapsulates with its fixed options.
            if p.port.is_tunnel() {
                p.port.push_tunnel(frame, None);
                return;
            }
            if p.tx.capacity() == 0 {
                p.tx = PacketBatch::new(DEFAULT_BATCH);
            } else if p.tx.is_full() {
                p.port.tx_batch(&mut p.tx);
            }
            p.tx.push(frame);
        }
    }

    // vxlan: outputs to tunnel ports with the flow's tunnel metadata.
    fn output_tunnel(&mut self, port: u32, frame: &[u8], tun: &TunnelMeta) {
        match port_mut(self.ports, port) {
            Some(p) if p.port.is_tunnel() => p.port.push_tunnel(frame, Some(tun)),
            _ => self.output(port, frame),
        }
    }

    fn packet_in(&mut self, pi: PacketIn) {
        self.push_pin(pi, None);
    }

    fn packet_in_full(&mut self, pi: PacketIn, full: Vec<u8>) {
        self.push_pin(pi, Some(full));
    }
}

impl Core {
    fn flush_tx(&mut self) {
        for p in &mut self.ports {
            if !p.tx.is_empty() {
                p.port.tx_batch(&mut p.tx);
            }
            if !p.inert {
                p.port.flush();
            }
        }
    }

    fn port_infos(&self) -> Vec<PortInfo> {
        self.ports.iter().map(DpPort::info).collect()
    }

    /// Applies a port/config control event; returns it back if it is one
    /// for the agent. `Err(())` = shut down.
    fn port_ctl(&mut self, c: Ctl, agent: &mut Agent) -> Result<Option<Ctl>, ()> {
        const OFPPR_ADD: u8 = 0;
        const OFPPR_DELETE: u8 = 1;
        match c {
            Ctl::AddPort { ofport, open, done } => {
                let r = match self.ports.binary_search_by_key(&ofport, |p| p.ofport) {
                    Ok(_) => Err(format!("OpenFlow port {ofport} is in use")),
                    Err(at) => match (open.0)() {
                        Ok(port) => {
                            let mut p = DpPort::new(ofport, port);
                            p.set_packet_in_limit(PinLimit::per_second(
                                agent.config().packet_in_rate,
                            ));
                            let (snap, desc) = (p.snapshot(), p.desc());
                            self.ports.insert(at, p);
                            self.ports_changed();
                            agent.port_event(OFPPR_ADD, vec![desc]);
                            Ok(snap)
                        }
                        Err(e) => Err(format!("{e:#}")),
                    },
                };
                if let Some(d) = done {
                    let _ = d.send(r);
                }
            }
            Ctl::DelPort { ofport, done } => {
                let found = match self.ports.binary_search_by_key(&ofport, |p| p.ofport).ok() {
                    Some(i) => {
                        let mut p = self.ports.remove(i);
                        if !p.tx.is_empty() {
                            p.port.tx_batch(&mut p.tx);
                        }
                        p.port.flush();
                        let desc = p.desc();
                        drop(p);
                        self.ports_changed();
                        agent.port_event(OFPPR_DELETE, vec![desc]);
                        true
                    }
                    None => false,
                };
                if let Some(d) = done {
                    let _ = d.send(found);
                }
            }
            Ctl::SetFailMode(m) => agent.set_fail_mode(m),
            Ctl::SetDatapathId(d) => agent.set_datapath_id(d),
            Ctl::Snapshot(reply) => {
                let _ = reply.send(self.ports.iter().map(DpPort::snapshot).collect());
            }
            Ctl::Shutdown => return Err(()),
            c => return Ok(Some(c)),
        }
        Ok(None)
    }

    fn ports_changed(&mut self) {
        self.rx_ports = (0..self.ports.len())
            .filter(|&i| !self.ports[i].inert)
            .collect();
        let infos = self.port_infos();
        self.engine.set_ports(&infos);
        self.sync_tunnel_ports();
        self.fds_stale = true;
    }

    /// vxlan: tells the engine which ports are tunnels.
    fn sync_tunnel_ports(&mut self) {
        let t: Vec<u32> = self
            .ports
            .iter()
            .filter(|p| p.port.is_tunnel())
            .map(|p| p.ofport)
            .collect();
        self.engine.set_tunnel_ports(&t);
    }
}

impl Switch for Core {
    fn engine(&mut self) -> &mut dyn Engine {
        self.engine.as_mut()
    }

    fn ports(&self) -> &[DpPort] {
        &self.ports
    }

    fn packet_out(&mut self, po: &PacketOut) -> Result<Vec<PacketIn>, OfpError> {
        let mut pins = Vec::new();
        let mut sink = PortSink {
            ports: &mut self.ports,
            pins: &mut pins,
            in_port: po.in_port,
        };
        let r = self.engine.packet_out(po, Instant::now(), &mut sink);
        self.flush_tx();
        r.map(|()| pins.into_iter().map(|(pi, _)| pi).collect())
    }

    fn port_mod(&mut self, pm: &PortMod) -> Result<(), OfpError> {
        let Some(p) = port_mut(&mut self.ports, pm.port_no) else {
            return Err(OfpError::PortModFailed(PortModFailedCode::BadPort));
        };
        if pm.hw_addr != p.hw_addr {
            return Err(OfpError::PortModFailed(PortModFailedCode::BadHwAddr));
        }
        p.config = (p.config & !pm.mask) | (pm.config & pm.mask);
        let infos = self.port_infos();
        self.engine.set_ports(&infos);
        Ok(())
    }
}

/// Runs the datapath loop on the calling thread until SIGTERM/SIGINT.
pub fn run(
    ports: Vec<DpPort>,
    engine: Box<dyn Engine>,
    mut agent: Agent,
    mut ctl: CtlReceiver,
) -> std::io::Result<()> {
    let mut ports = ports;
    ports.sort_by_key(|p| p.ofport);
    let mut core = Core {
        ports,
        engine,
        pins: Vec::new(),
        fds_stale: false,
        rx_ports: Vec::new(),
    };
    let pin_limit = PinLimit::per_second(agent.config().packet_in_rate);
    for p in &mut core.ports {
        p.set_packet_in_limit(pin_limit);
    }
    core.ports_changed();
    if agent.buffers_enabled()
        && let Some(p) = core.engine.pipeline_mut()
    {
        p.buffer_packet_ins = true;
    }
    let mut rx = PacketBatch::new(DEFAULT_BATCH);
    // vxlan: tunnel metadata of the frames in `rx` (copied out of the port).
    let mut rx_tun: Vec<TunnelMeta> = Vec::with_capacity(DEFAULT_BATCH);
    let pipe_fd = ctl.pipe.as_raw_fd();
    let poll_fds = |core: &Core| -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = vec![pipe_fd];
        fds.extend(core.ports.iter().filter_map(|p| p.port.rx_fd()));
        fds
    };
    let mut fds = poll_fds(&core);
    let mut next_housekeeping = Instant::now();
    let mut idle = 0u32;
    while !sys::terminate_requested() {
        // Control messages, in order, between batches.
        if ctl.pending.swap(false, Ordering::AcqRel) {
            let mut b = [0u8; 1];
            let _ = ctl.pipe.read_exact(&mut b);
        }
        while let Some(c) = ctl.try_recv() {
            match core.port_ctl(c, &mut agent) {
                Ok(Some(c)) => agent.handle(c, &mut core),
                Ok(None) => {}
                Err(()) => return Ok(()),
            }
        }
        if core.fds_stale {
            core.fds_stale = false;
            fds = poll_fds(&core);
        }
        // Traffic.
        let now = Instant::now();
        let mut n = 0;
        let standalone = agent.fail_mode() == FailMode::Standalone && !agent.has_primary();
        for k in 0..core.rx_ports.len() {
            let i = core.rx_ports[k];
            for _ in 0..4 {
                let k = core.ports[i].port.rx_batch(&mut rx);
                n += k;
                rx_tun.clear();
                rx_tun.extend_from_slice(core.ports[i].port.rx_tunnel());
                let (in_port, cfg) = (core.ports[i].ofport, core.ports[i].config);
                if cfg & (OFPPC_NO_RECV | OFPPC_PORT_DOWN) == 0 {
                    let Core {
                        ports,
                        engine,
                        pins,
                        ..
                    } = &mut core;
                    let mut sink = PortSink {
                        ports,
                        pins,
                        in_port,
                    };
                    for (j, f) in rx.iter().enumerate() {
                        if standalone {
                            if !engine.process_normal(in_port, f, now, &mut sink) {
                                flood(&mut sink, in_port, f);
                            }
                        } else if let Some(t) = rx_tun.get(j) {
                            engine.process_tunnel(in_port, f, t, now, &mut sink);
                        } else {
                            engine.process(in_port, f, now, &mut sink);
                        }
                    }
                }
                if k < rx.capacity() {
                    break;
                }
            }
        }
        core.flush_tx();
        if !core.pins.is_empty() {
            let pins = std::mem::take(&mut core.pins);
            agent.packet_ins_buffered(pins, now);
        }
        if now >= next_housekeeping {
            next_housekeeping = now + Duration::from_millis(250);
            let removed = core.engine.expire(now);
            agent.flow_removed(removed);
            let mut changed = Vec::new();
            for p in &mut core.ports {
                let l = p.port.link_state();
                if l != p.link {
                    p.link = l;
                    changed.push(p.desc());
                }
            }
            if !changed.is_empty() {
                let infos = core.port_infos();
                core.engine.set_ports(&infos);
                agent.port_status(changed);
            }
        }
        if n > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle > 2 {
            let ms = next_housekeeping
                .saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, 250) as i32;
            sys::poll_readable(&fds, ms)?;
            idle = 0;
        }
    }
    Ok(())
}

/// Standalone fail mode without a controller, for engines without NORMAL: a hub.
fn flood(sink: &mut PortSink<'_>, in_port: u32, f: &[u8]) {
    let outs: Vec<u32> = sink
        .ports
        .iter()
        .map(|p| p.ofport)
        .filter(|&p| p != in_port)
        .collect();
    for p in outs {
        sink.output(p, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::port::PortStats;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A port fed and drained through shared queues.
    #[derive(Clone, Default)]
    struct Fake {
        name: String,
        rx: Arc<Mutex<VecDeque<Vec<u8>>>>,
        tx: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Port for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
            batch.clear();
            let mut q = self.rx.lock().unwrap();
            while !batch.is_full() {
                let Some(f) = q.pop_front() else { break };
                batch.push(&f);
            }
            batch.len()
        }
        fn tx_batch(&mut self, batch: &mut PacketBatch) {
            self.tx
                .lock()
                .unwrap()
                .extend(batch.iter().map(<[u8]>::to_vec));
            batch.clear();
        }
        fn rx_fd(&self) -> Option<RawFd> {
            None
        }
        fn link_state(&self) -> LinkState {
            LinkState {
                admin_up: true,
                oper_up: true,
            }
        }
        fn stats(&self) -> PortStats {
            PortStats::default()
        }
    }

    fn fake(name: &str) -> Fake {
        Fake {
            name: name.into(),
            ..Default::default()
        }
    }

    fn opener(f: &Fake) -> PortOpener {
        let f = f.clone();
        PortOpener(Box::new(move || Ok(Box::new(f) as Box<dyn Port>)))
    }

    fn ask<T>(ctl: &CtlSender, make: impl FnOnce(Reply<T>) -> Ctl) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(ctl.send(make(tx)));
        rx.blocking_recv().expect("datapath answered")
    }

    /// Waits until `port` transmitted `n` frames in total (bounded).
    fn wait_tx(port: &Fake, n: usize) -> bool {
        for _ in 0..200 {
            if port.tx.lock().unwrap().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The control channel counts what is queued; `send_throttled` waits
    /// while the datapath side is more than `CTL_HIGH` behind and goes on
    /// as soon as it drained below `CTL_LOW` (or after 1 s, or once the
    /// receiver is gone).
    #[test]
    fn control_channel_throttles_a_burst() {
        let (tx, rx) = ctl_channel().unwrap();
        for _ in 0..=CTL_HIGH {
            assert!(tx.send_throttled(Ctl::SetDatapathId(1)));
        }
        assert_eq!(tx.queued(), CTL_HIGH + 1);
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut n = 0;
            while rx.try_recv().is_some() {
                n += 1;
            }
            (n, rx)
        });
        let t = Instant::now();
        assert!(tx.send_throttled(Ctl::SetDatapathId(2)));
        let waited = t.elapsed();
        let (n, rx) = drain.join().unwrap();
        assert!(
            waited >= Duration::from_millis(50),
            "did not wait: {waited:?}"
        );
        assert!(n > CTL_HIGH, "{n}");
        while rx.try_recv().is_some() {}
        assert_eq!(tx.queued(), 0);
        // A burst with nobody draining: bounded wait, then queued anyway;
        // a gone receiver: no wait, and the send fails.
        for _ in 0..=CTL_HIGH {
            tx.send(Ctl::SetDatapathId(3));
        }
        let t = Instant::now();
        assert!(tx.send_throttled(Ctl::SetDatapathId(4)));
        assert!(t.elapsed() >= Duration::from_millis(900));
        drop(rx);
        let t = Instant::now();
        assert!(!tx.send_throttled(Ctl::SetDatapathId(5)));
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn ports_are_added_and_removed_live() {
        let (ctl, ctl_rx) = ctl_channel().unwrap();
        let agent = Agent::new(AgentConfig {
            datapath_id: 1,
            fail_mode: FailMode::Standalone,
            ..Default::default()
        });
        let (a, b, c) = (fake("fa"), fake("fb"), fake("fc"));
        let a2 = a.clone();
        let dp = std::thread::spawn(move || {
            let first = DpPort::new(1, Box::new(a2));
            run(
                vec![first],
                Box::new(full::FullPipeline::new()),
                agent,
                ctl_rx,
            )
        });
        let bcast = [
            vec![0xff; 6],
            vec![2, 0, 0, 0, 0, 1],
            vec![0x88, 0xb5, 1, 2],
        ]
        .concat();

        // Add two ports while running; a taken number is refused.
        for (no, p) in [(2, &b), (3, &c)] {
            let snap = ask(&ctl, |done| Ctl::AddPort {
                ofport: no,
                open: opener(p),
                done: Some(done),
            })
            .expect("added");
            assert_eq!((snap.ofport, snap.name.as_str()), (no, p.name.as_str()));
        }
        let dup = ask(&ctl, |done| Ctl::AddPort {
            ofport: 3,
            open: opener(&fake("fd")),
            done: Some(done),
        });
        assert!(dup.is_err(), "{dup:?}");
        let failing = ask(&ctl, |done| Ctl::AddPort {
            ofport: 4,
            open: PortOpener(Box::new(|| anyhow::bail!("no such device"))),
            done: Some(done),
        });
        assert_eq!(failing.unwrap_err(), "no such device");
        let ports: Vec<u32> = ask(&ctl, Ctl::Snapshot).iter().map(|p| p.ofport).collect();
        assert_eq!(ports, [1, 2, 3]);

        // A broadcast from port 1 reaches both new ports.
        a.rx.lock().unwrap().push_back(bcast.clone());
        assert!(
            wait_tx(&b, 1) && wait_tx(&c, 1),
            "flooded to the added ports"
        );

        // Remove port 3: traffic keeps flowing to 2 only.
        assert!(ask(&ctl, |done| Ctl::DelPort {
            ofport: 3,
            done: Some(done)
        }));
        assert!(!ask(&ctl, |done| Ctl::DelPort {
            ofport: 3,
            done: Some(done)
        }));
        a.rx.lock().unwrap().push_back(bcast.clone());
        assert!(wait_tx(&b, 2), "port 2 still forwards");
        let ports: Vec<u32> = ask(&ctl, Ctl::Snapshot).iter().map(|p| p.ofport).collect();
        assert_eq!(ports, [1, 2]);
        assert_eq!(
            c.tx.lock().unwrap().len(),
            1,
            "removed port got nothing more"
        );

        assert!(ctl.send(Ctl::Shutdown));
        dp.join().unwrap().unwrap();
    }

    /// A packet-in flood on one port is cut to its rate limit (burst, then
    /// `rate`/s), counted as dropped, and does not eat into another port's
    /// budget; packet-ins not from a port (packet-out) are not limited.
    #[test]
    fn packet_in_rate_limit_per_port() {
        let mut ports = vec![
            DpPort::new(1, Box::new(fake("a"))),
            DpPort::new(2, Box::new(fake("b"))),
        ];
        for p in &mut ports {
            p.set_packet_in_limit(PinLimit {
                rate: 100,
                burst: 25,
            });
        }
        let mut pins = Vec::new();
        let pi = PacketIn::default();
        let t0 = Instant::now();
        // 1000 packet-ins from port 1 at once: the burst passes.
        for _ in 0..1000 {
            let mut sink = PortSink {
                ports: &mut ports,
                pins: &mut pins,
                in_port: 1,
            };
            sink.packet_in(pi.clone());
        }
        let first = pins.len();
        assert!((25..=26).contains(&first), "{first} passed the burst of 25");
        // Port 2 still has its own burst.
        for _ in 0..30 {
            let mut sink = PortSink {
                ports: &mut ports,
                pins: &mut pins,
                in_port: 2,
            };
            sink.packet_in(pi.clone());
        }
        assert!((first + 25..=first + 26).contains(&pins.len()));
        // 200 ms later port 1 got about 20 more tokens.
        std::thread::sleep(Duration::from_millis(200));
        let before = pins.len();
        for _ in 0..1000 {
            let mut sink = PortSink {
                ports: &mut ports,
                pins: &mut pins,
                in_port: 1,
            };
            sink.packet_in(pi.clone());
        }
        let refill = pins.len() - before;
        let waited = t0.elapsed().as_secs_f64();
        assert!(refill >= 19, "refill {refill}");
        assert!(
            refill as f64 <= 100.0 * waited + 1.0,
            "refill {refill} in {waited:.3} s"
        );
        let (_, c1) = ports[0].packet_ins();
        assert_eq!(c1.sent + c1.dropped, 2000);
        assert_eq!(c1.sent as usize, first + refill);
        let (_, c2) = ports[1].packet_ins();
        assert_eq!((c2.sent + c2.dropped), 30);
        // Not from a port (e.g. a packet-out's in_port CONTROLLER): unlimited.
        let before = pins.len();
        for _ in 0..100 {
            let mut sink = PortSink {
                ports: &mut ports,
                pins: &mut pins,
                in_port: 0xffff_fffd,
            };
            sink.packet_in(pi.clone());
        }
        assert_eq!(pins.len() - before, 100);
        // Rate 0: unlimited.
        ports[1].set_packet_in_limit(PinLimit::default());
        let before = pins.len();
        for _ in 0..500 {
            let mut sink = PortSink {
                ports: &mut ports,
                pins: &mut pins,
                in_port: 2,
            };
            sink.packet_in(pi.clone());
        }
        assert_eq!(pins.len() - before, 500);
    }
}
