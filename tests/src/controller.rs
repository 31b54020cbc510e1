//! A small OpenFlow 1.3 test controller built on `plexus-openflow`.
//!
//! Blocking API (tests and `plexus-topo` are synchronous) over the crate's
//! tokio connection layer, which runs on a private runtime:
//!
//! - [`ControllerListener::bind`] listens (`ptcp:0:127.0.0.1` by default);
//!   give [`ControllerListener::target`] to the switch (`Ovs::builder().controller(..)`)
//!   and [`ControllerListener::accept`] the switch's connection.
//! - [`Switch::connect`] connects actively instead (a switch's `ptcp:`
//!   listener or the bridge's `unix:…/BRIDGE.mgmt` socket, as `ovs-ofctl` does).
//!
//! A [`Switch`] has done the FEATURES handshake ([`Switch::datapath_id`]) and
//! offers flow/group/meter installation from `ovs-ofctl` text (checked for
//! errors with a barrier, or as one ONF bundle like `ovs-ofctl --bundle`),
//! dumps formatted exactly as `ovs-ofctl -O OpenFlow13 dump-*` prints them,
//! packet-out, and packet-in reception.

use anyhow::{Context, Result, anyhow, bail};
use plexus_openflow::conn::{ConnError, ConnHandle, Connection, Incoming, Listener, Target};
use plexus_openflow::message::{
    BundleAdd, BundleControl, BundleCtrlType, FlowModCommand, FlowStats, FlowStatsRequest,
    GroupModCommand, GroupStats, MeterModCommand, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, PacketIn, PacketIn2, bundle_flags, group_id, packet_in_format, port_no,
};
use plexus_openflow::text::flow::{
    TABLE_ALL, format_flow_stats, format_group_desc, format_meter_config, parse_flow_mod,
    parse_group_mod, parse_meter_mod, parse_packet_out,
};
use plexus_openflow::{Match, Message, OfpError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// How long one request may take before the controller gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `OFPM_ALL`.
const METER_ALL: u32 = 0xffff_ffff;

fn runtime() -> Result<Arc<Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plexus-ctl")
            .enable_all()
            .build()
            .context("starting the controller's tokio runtime")?,
    ))
}

fn conn_config() -> plexus_openflow::conn::Config {
    plexus_openflow::conn::Config {
        // OVS is configured with inactivity_probe=0, but answers probes anyway.
        probe_interval: Some(Duration::from_secs(15)),
        ..Default::default()
    }
}

/// What the switch said to one message: `Ok(())`, or the OFPT_ERROR it sent
/// (typed error and the data, i.e. the start of the offending message).
pub type Outcome = std::result::Result<(), (OfpError, Vec<u8>)>;

/// A listening controller socket.
#[derive(Debug)]
pub struct ControllerListener {
    rt: Arc<Runtime>,
    listener: Listener,
}

impl ControllerListener {
    /// Listens on an ephemeral loopback TCP port.
    pub fn bind() -> Result<Self> {
        Self::bind_on("ptcp:0:127.0.0.1")
    }

    /// Listens on a passive target (`ptcp:PORT[:IP]`, `punix:PATH`).
    pub fn bind_on(target: &str) -> Result<Self> {
        let rt = runtime()?;
        let t = target.parse().with_context(|| format!("target {target}"))?;
        let listener = rt
            .block_on(Listener::bind(&t, None))
            .with_context(|| format!("listening on {target}"))?;
        Ok(Self { rt, listener })
    }

    /// The active target a switch connects to (`tcp:127.0.0.1:PORT`, `unix:PATH`).
    pub fn target(&self) -> String {
        self.listener.connect_target().to_string()
    }

    /// Waits up to `timeout` for a switch to connect, then runs HELLO and FEATURES.
    pub fn accept(&self, timeout: Duration) -> Result<Switch> {
        let (stream, peer) = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, self.listener.accept()).await })
            .map_err(|_| {
                anyhow!(
                    "no switch connected to {} within {timeout:?}",
                    self.target()
                )
            })?
            .context("accepting a switch connection")?;
        let conn = self
            .rt
            .block_on(Connection::accept(stream, &conn_config()))
            .with_context(|| format!("OpenFlow handshake with {peer}"))?;
        Switch::start(self.rt.clone(), conn)
    }
}

/// A packet-in, from OFPT_PACKET_IN or NXT_PACKET_IN2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInEvent {
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// The packet's metadata match (in_port, registers, ...).
    pub metadata: Match,
    /// `controller(userdata=…)` (NXT_PACKET_IN2 only).
    pub userdata: Option<Vec<u8>>,
    pub data: Vec<u8>,
    /// `OFP_NO_BUFFER` unless the switch buffered the packet.
    pub buffer_id: u32,
    /// The packet's length before truncation.
    pub total_len: u32,
}

impl From<PacketIn> for PacketInEvent {
    fn from(p: PacketIn) -> Self {
        Self {
            reason: p.reason,
            table_id: p.table_id,
            cookie: p.cookie,
            metadata: p.match_,
            userdata: None,
            buffer_id: p.buffer_id,
            total_len: u32::from(p.total_len),
            data: p.data,
        }
    }
}

impl From<PacketIn2> for PacketInEvent {
    fn from(p: PacketIn2) -> Self {
        Self {
            reason: p.reason.unwrap_or(0),
            table_id: p.table_id.unwrap_or(0),
            cookie: p.cookie.unwrap_or(0),
            metadata: p.metadata.unwrap_or_default(),
            userdata: p.userdata,
            buffer_id: p.buffer_id.unwrap_or(u32::MAX),
            total_len: p.full_len.unwrap_or(p.packet.len() as u32),
            data: p.packet,
        }
    }
}

/// A connected switch (after the FEATURES handshake).
#[derive(Debug)]
pub struct Switch {
    rt: Arc<Runtime>,
    handle: ConnHandle,
    incoming: Mutex<Incoming>,
    datapath_id: u64,
    n_tables: u8,
    next_bundle: AtomicU32,
}

impl Switch {
    /// Connects to a switch's listener (`tcp:IP:PORT`, `unix:PATH` — e.g.
    /// the bridge's `BRIDGE.mgmt` socket) and runs HELLO and FEATURES.
    pub fn connect(target: &str) -> Result<Switch> {
        let rt = runtime()?;
        let t: Target = target.parse().with_context(|| format!("target {target}"))?;
        let conn = rt
            .block_on(Connection::connect_to(&t, &conn_config()))
            .with_context(|| format!("connecting to {target}"))?;
        Switch::start(rt, conn)
    }

    fn start(rt: Arc<Runtime>, conn: Connection) -> Result<Switch> {
        let Connection {
            handle, incoming, ..
        } = conn;
        let mut sw = Switch {
            rt,
            handle,
            incoming: Mutex::new(incoming),
            datapath_id: 0,
            n_tables: 0,
            next_bundle: AtomicU32::new(1),
        };
        match sw.request(&Message::FeaturesRequest)? {
            Message::FeaturesReply(f) => {
                sw.datapath_id = f.datapath_id;
                sw.n_tables = f.n_tables;
            }
            other => bail!("FEATURES_REQUEST answered with {other:?}"),
        }
        Ok(sw)
    }

    pub fn datapath_id(&self) -> u64 {
        self.datapath_id
    }

    pub fn n_tables(&self) -> u8 {
        self.n_tables
    }

    /// The underlying connection handle (for raw frames and custom requests).
    pub fn handle(&self) -> &ConnHandle {
        &self.handle
    }

    fn wait<T>(&self, fut: impl Future<Output = Result<T, ConnError>>) -> Result<T, ConnError> {
        self.rt.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(ConnError::Io {
                        kind: std::io::ErrorKind::TimedOut,
                        msg: format!("no reply within {REQUEST_TIMEOUT:?}"),
                    })
                })
        })
    }

    /// Sends a request and waits for the message answering it.
    pub fn request(&self, msg: &Message) -> Result<Message> {
        let r = self.handle.request(msg);
        Ok(self.wait(r)?)
    }

    /// Sends a multipart request and returns every reply body, in order.
    pub fn multipart(&self, body: MultipartRequestBody) -> Result<Vec<MultipartReplyBody>> {
        let msg = Message::MultipartRequest(MultipartRequest { flags: 0, body });
        let r = self.handle.multipart(&msg);
        self.wait(r)?
            .into_iter()
            .map(|m| match m {
                Message::MultipartReply(r) => Ok(r.body),
                other => Err(anyhow!("multipart request answered with {other:?}")),
            })
            .collect()
    }

    /// Sends a barrier and waits for its reply.
    pub fn barrier(&self) -> Result<()> {
        let r = self.handle.barrier();
        Ok(self.wait(r)?)
    }

    /// Sends messages that answer only with errors, then a barrier; returns
    /// each message's outcome (`Err(error)` if the switch sent OFPT_ERROR for it).
    /// The outer error is for the connection (closed, timeout, undecodable reply).
    pub fn send_all_checked(&self, msgs: &[Message]) -> Result<Vec<Outcome>> {
        let replies: Vec<_> = msgs.iter().map(|m| self.handle.send_checked(m)).collect();
        let barrier = self.handle.barrier();
        self.wait(barrier)?;
        replies
            .into_iter()
            .map(|r| match self.wait(r) {
                Ok(()) => Ok(Ok(())),
                Err(ConnError::Ofp { error, data }) => Ok(Err((error, data))),
                Err(e) => Err(e.into()),
            })
            .collect()
    }

    /// One message, checked with a barrier: `Ok(Err(error))` if the switch rejected it.
    pub fn send_checked(&self, msg: &Message) -> Result<std::result::Result<(), OfpError>> {
        let mut r = self.send_all_checked(std::slice::from_ref(msg))?;
        Ok(r.pop().expect("one outcome").map_err(|(e, _)| e))
    }

    /// Like [`Switch::send_checked`] for a pre-encoded frame (sent as is,
    /// with a fresh xid), e.g. a message our encoder would refuse to build.
    pub fn send_raw_checked(&self, frame: Vec<u8>) -> Result<std::result::Result<(), OfpError>> {
        let r = self.handle.request_raw(frame);
        let barrier = self.handle.barrier();
        self.wait(barrier)?;
        // A rejected message is answered with OFPT_ERROR (resolving `r`);
        // an accepted one is never answered: give up on it after the barrier.
        let outcome = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_millis(50), r).await });
        match outcome {
            Err(_) => Ok(Ok(())),
            Ok(Err(ConnError::Ofp { error, .. })) => Ok(Err(error)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(frame)) => bail!("unexpected reply {}", crate::ofctl::hex(&frame)),
        }
    }

    fn check_all(&self, what: &str, msgs: Vec<(String, Message)>) -> Result<()> {
        let just: Vec<Message> = msgs.iter().map(|(_, m)| m.clone()).collect();
        let outcomes = self.send_all_checked(&just)?;
        let errs: Vec<String> = msgs
            .iter()
            .zip(outcomes)
            .filter_map(|((text, _), o)| o.err().map(|(e, _)| format!("{text}: {e}")))
            .collect();
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("{what} rejected by the switch: {}", errs.join("; "))
        }
    }

    /// Adds flows (`ovs-ofctl add-flow` syntax) as one atomic, ordered ONF
    /// bundle (what `ovs-ofctl --bundle add-flows` does), then a barrier.
    pub fn add_flows(&self, flows: &[&str]) -> Result<()> {
        let msgs = parse_flows(flows)?;
        self.bundle(msgs.into_iter().map(|(_, m)| m).collect())
    }

    /// Adds flows as individual FLOW_MODs followed by a barrier; every error
    /// the switch returns is reported.
    pub fn add_flows_unbundled(&self, flows: &[&str]) -> Result<()> {
        self.check_all("flows", parse_flows(flows)?)
    }

    /// Commits `msgs` as one ONF bundle (open, add each, commit with
    /// ATOMIC|ORDERED), then a barrier.
    pub fn bundle(&self, msgs: Vec<Message>) -> Result<()> {
        let bundle_id = self.next_bundle.fetch_add(1, Ordering::Relaxed);
        let flags = bundle_flags::ATOMIC | bundle_flags::ORDERED;
        let ctrl = |ctrl_type| {
            Message::BundleControl(BundleControl {
                bundle_id,
                ctrl_type,
                flags,
                properties: Vec::new(),
            })
        };
        match self.request(&ctrl(BundleCtrlType::OpenRequest))? {
            Message::BundleControl(b) if b.ctrl_type == BundleCtrlType::OpenReply => {}
            other => bail!("bundle open answered with {other:?}"),
        }
        let adds: Vec<_> = msgs
            .into_iter()
            .map(|m| {
                self.handle.send_checked(&Message::BundleAdd(BundleAdd {
                    bundle_id,
                    flags,
                    message: Box::new(m),
                    properties: Vec::new(),
                }))
            })
            .collect();
        let commit = self.handle.request(&ctrl(BundleCtrlType::CommitRequest));
        let barrier = self.handle.barrier();
        let commit = self.wait(commit);
        self.wait(barrier)?;
        let mut add_errs = Vec::new();
        for (i, r) in adds.into_iter().enumerate() {
            match self.wait(r) {
                Ok(()) => {}
                Err(ConnError::Ofp { error, .. }) => add_errs.push(format!("message {i}: {error}")),
                Err(e) => return Err(e.into()),
            }
        }
        match commit {
            Ok(Message::BundleControl(b)) if b.ctrl_type == BundleCtrlType::CommitReply => {
                if add_errs.is_empty() {
                    Ok(())
                } else {
                    bail!("bundle committed but: {}", add_errs.join("; "))
                }
            }
            Ok(other) => bail!("bundle commit answered with {other:?}"),
            Err(ConnError::Ofp { error, .. }) => {
                bail!("bundle commit failed: {error}; {}", add_errs.join("; "))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a group (`ovs-ofctl add-group` syntax), checked with a barrier.
    pub fn add_group(&self, group: &str) -> Result<()> {
        let g = parse_group_mod(group, GroupModCommand::Add)
            .with_context(|| format!("parsing group {group}"))?;
        self.check_all("group", vec![(group.to_owned(), Message::GroupMod(g))])
    }

    /// Adds a meter (`ovs-ofctl add-meter` syntax), checked with a barrier.
    pub fn add_meter(&self, meter: &str) -> Result<()> {
        let m = parse_meter_mod(meter, MeterModCommand::Add)
            .with_context(|| format!("parsing meter {meter}"))?;
        self.check_all("meter", vec![(meter.to_owned(), Message::MeterMod(m))])
    }

    /// Every flow (OFPMP_FLOW over all tables).
    pub fn flow_stats(&self) -> Result<Vec<FlowStats>> {
        let req = FlowStatsRequest {
            table_id: TABLE_ALL,
            out_port: port_no::ANY,
            out_group: group_id::ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::new(),
        };
        let mut out = Vec::new();
        for body in self.multipart(MultipartRequestBody::Flow(req))? {
            match body {
                MultipartReplyBody::Flow(f) => out.extend(f),
                other => bail!("flow stats request answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// Flows as `ovs-ofctl -O OpenFlow13 dump-flows` prints them (one line
    /// per flow, without the leading space; with statistics).
    pub fn dump_flows(&self) -> Result<Vec<String>> {
        Ok(self
            .flow_stats()?
            .iter()
            .map(|f| format_flow_stats(f, true))
            .collect())
    }

    /// Statistics of every group (OFPMP_GROUP for `OFPG_ALL`).
    pub fn group_stats(&self) -> Result<Vec<GroupStats>> {
        let mut out = Vec::new();
        let body = MultipartRequestBody::Group {
            group_id: group_id::ALL,
        };
        for body in self.multipart(body)? {
            match body {
                MultipartReplyBody::Group(gs) => out.extend(gs),
                other => bail!("group stats request answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// Groups as `ovs-ofctl -O OpenFlow13 dump-groups` prints them (OFPMP_GROUP_DESC).
    pub fn dump_groups(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for body in self.multipart(MultipartRequestBody::GroupDesc)? {
            match body {
                MultipartReplyBody::GroupDesc(gs) => out.extend(gs.iter().map(format_group_desc)),
                other => bail!("group desc request answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// Meters as `ovs-ofctl -O OpenFlow13 dump-meters` prints them
    /// (OFPMP_METER_CONFIG; each band on its own line after `bands=`).
    pub fn dump_meters(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let body = MultipartRequestBody::MeterConfig {
            meter_id: METER_ALL,
        };
        for body in self.multipart(body)? {
            match body {
                MultipartReplyBody::MeterConfig(ms) => {
                    out.extend(ms.iter().map(format_meter_config))
                }
                other => bail!("meter config request answered with {other:?}"),
            }
        }
        Ok(out)
    }

    /// Sends a packet-out (`ovs-ofctl packet-out` syntax:
    /// `in_port=… packet=HEX actions=…`), checked with a barrier.
    pub fn packet_out(&self, spec: &str) -> Result<()> {
        let po = parse_packet_out(spec).with_context(|| format!("parsing packet-out {spec}"))?;
        self.check_all(
            "packet-out",
            vec![(spec.to_owned(), Message::PacketOut(po))],
        )
    }

    /// Asks for packet-ins as NXT_PACKET_IN2 (carries `controller(userdata=…)`).
    pub fn set_packet_in2(&self) -> Result<()> {
        let m = Message::NxSetPacketInFormat(packet_in_format::NXT_PACKET_IN2);
        match self.send_checked(&m)? {
            Ok(()) => Ok(()),
            Err(e) => bail!("NXT_SET_PACKET_IN_FORMAT rejected: {e}"),
        }
    }

    /// Waits for the next packet-in (other unsolicited messages are skipped).
    pub fn recv_packet_in(&self, timeout: Duration) -> Result<PacketInEvent> {
        let deadline = Instant::now() + timeout;
        let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .rt
                .block_on(async { tokio::time::timeout(left, incoming.recv()).await })
                .map_err(|_| anyhow!("no packet-in within {timeout:?}"))?
                .ok_or_else(|| anyhow!("connection closed while waiting for a packet-in"))?;
            match ev {
                (_, Ok(Message::PacketIn(p))) => return Ok(p.into()),
                (_, Ok(Message::NxPacketIn2(p))) => return Ok(p.into()),
                (_, Ok(_)) => {}
                (xid, Err(e)) => bail!("undecodable message (xid {xid:#x}): {e}"),
            }
        }
    }

    /// Waits for the next PORT_STATUS (other unsolicited messages are skipped).
    pub fn recv_port_status(
        &self,
        timeout: Duration,
    ) -> Result<plexus_openflow::message::PortStatus> {
        let deadline = Instant::now() + timeout;
        let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .rt
                .block_on(async { tokio::time::timeout(left, incoming.recv()).await })
                .map_err(|_| anyhow!("no port-status within {timeout:?}"))?
                .ok_or_else(|| anyhow!("connection closed while waiting for a port-status"))?;
            match ev {
                (_, Ok(Message::PortStatus(p))) => return Ok(p),
                (_, Ok(_)) => {}
                (xid, Err(e)) => bail!("undecodable message (xid {xid:#x}): {e}"),
            }
        }
    }

    /// Closes the connection (queued messages are flushed first).
    pub fn close(self) {
        let h = self.handle.clone();
        self.rt.block_on(async move { h.close().await });
    }
}

fn parse_flows(flows: &[&str]) -> Result<Vec<(String, Message)>> {
    flows
        .iter()
        .map(|f| {
            parse_flow_mod(f, FlowModCommand::Add)
                .map(|fm| ((*f).to_owned(), Message::FlowMod(fm)))
                .with_context(|| format!("parsing flow {f}"))
        })
        .collect()
}

/// The entries of an `ovs-ofctl dump-flows`/`dump-groups` output: every
/// line but the `OFPST_… reply` header, trimmed.
pub fn ofctl_entries(dump: &str) -> Vec<String> {
    dump.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("OFPST_") && !l.starts_with("OFPT_"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The entries of `ovs-ofctl dump-meters`: each `meter=…` line together with
/// its band lines (joined with `\n`, as [`Switch::dump_meters`] formats them).
pub fn ofctl_meter_entries(dump: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in dump.lines() {
        let l = l.trim();
        if l.is_empty() || l.starts_with("OFPST_") {
            continue;
        }
        match out.last_mut() {
            Some(cur) if !l.starts_with("meter=") => {
                cur.push('\n');
                cur.push_str(l);
            }
            _ => out.push(l.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ofctl_dump_parsing() {
        let d = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n cookie=0x0, duration=1.2s, table=0, n_packets=0, n_bytes=0, priority=1 actions=drop\n";
        assert_eq!(
            ofctl_entries(d),
            ["cookie=0x0, duration=1.2s, table=0, n_packets=0, n_bytes=0, priority=1 actions=drop"]
        );
        let m = "OFPST_METER_CONFIG reply (OF1.3) (xid=0x2):\nmeter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100\n\nmeter=2 pktps bands=\ntype=drop rate=5\n";
        assert_eq!(
            ofctl_meter_entries(m),
            [
                "meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100",
                "meter=2 pktps bands=\ntype=drop rate=5"
            ]
        );
    }

    #[test]
    fn listener_target_is_loopback_tcp() {
        let l = ControllerListener::bind().unwrap();
        let t = l.target();
        assert!(t.starts_with("tcp:127.0.0.1:"), "{t}");
        assert!(!t.ends_with(":0"), "{t}");
    }
}
