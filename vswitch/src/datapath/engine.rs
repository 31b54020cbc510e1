//! The interface between the datapath thread and a flow pipeline.
//!
//! [`Engine`] is what the datapath thread and the OpenFlow agent need from the
//! pipeline: table/group/meter modifications, per-packet processing into a
//! [`Sink`], packet-out, expiry and the statistics behind the multipart
//! replies. [`super::simple::SimplePipeline`] is a small built-in implementation
//! (one classifier per table, output/controller/goto); the full pipeline
//! plugs in behind the same trait.

use std::time::Instant;

use crate::flow::TunnelMeta;

use plexus_openflow::error::OfpError;
use plexus_openflow::message::{
    AggregateStats, FlowMod, FlowRemoved, FlowStats, FlowStatsRequest, GroupDesc, GroupMod,
    GroupStats, MeterConfig, MeterMod, MeterStats, PacketIn, PacketOut, TableStats,
};

/// One switch port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub ofport: u32,
    /// Interface name.
    pub name: String,
    /// Ethernet address.
    pub hw_addr: [u8; 6],
    /// Link is up (usable for flooding and fast-failover liveness).
    pub live: bool,
    /// `OFPPC_NO_FWD`: frames are not sent out of this port.
    pub no_fwd: bool,
    /// `OFPPC_NO_FLOOD`: excluded from FLOOD.
    pub no_flood: bool,
}

/// Where processed frames go.
pub trait Sink {
    /// Send `frame` out of OpenFlow port `port` (a physical port; the engine
    /// resolves IN_PORT/ALL/FLOOD itself).
    fn output(&mut self, port: u32, frame: &[u8]);
    /// Send a packet-in to the controllers (the agent applies roles and the
    /// asynchronous-message masks).
    fn packet_in(&mut self, pi: PacketIn);
    /// A packet-in whose `data` was truncated, with the whole packet for
    /// the agent to buffer (see [`crate::pipeline::Pipeline::buffer_packet_ins`]).
    fn packet_in_full(&mut self, pi: PacketIn, full: Vec<u8>) {
        let _ = full;
        self.packet_in(pi);
    }
    /// Send `frame` out of tunnel port `port` with the flow's tunnel
    /// metadata (`set_field:..->tun_id/tun_dst`, or what it was received with).
    fn output_tunnel(&mut self, port: u32, frame: &[u8], tun: &TunnelMeta) {
        let _ = tun;
        self.output(port, frame);
    }
}

/// The flow pipeline driven by the datapath thread.
pub trait Engine: Send + std::fmt::Debug {
    /// The current set of ports.
    fn set_ports(&mut self, ports: &[PortInfo]);
    /// FLOW_MOD; on error nothing changed. Returns FLOW_REMOVED messages for
    /// deleted flows that asked for them.
    fn flow_mod(&mut self, fm: &FlowMod, now: Instant) -> Result<Vec<FlowRemoved>, OfpError>;
    /// GROUP_MOD.
    fn group_mod(&mut self, gm: &GroupMod) -> Result<(), OfpError>;
    /// METER_MOD.
    fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), OfpError>;
    /// Runs one frame received on `in_port` through the tables.
    fn process(&mut self, in_port: u32, frame: &[u8], now: Instant, out: &mut dyn Sink);
    /// Runs one decapsulated frame received on tunnel port `in_port` with
    /// its tunnel metadata (matched as `tun_id`/`tun_src`/`tun_dst`).
    fn process_tunnel(
        &mut self,
        in_port: u32,
        frame: &[u8],
        tun: &TunnelMeta,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let _ = tun;
        self.process(in_port, frame, now, out);
    }
    /// The OpenFlow ports that are tunnels (outputs to them carry the
    /// flow's tunnel metadata).
    fn set_tunnel_ports(&mut self, ports: &[u32]) {
        let _ = ports;
    }
    /// PACKET_OUT (with `data`; buffering is the agent's concern).
    fn packet_out(
        &mut self,
        po: &PacketOut,
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), OfpError>;
    /// Removes flows whose idle/hard timeout passed; returns the
    /// FLOW_REMOVED messages for those with `OFPFF_SEND_FLOW_REM`.
    fn expire(&mut self, now: Instant) -> Vec<FlowRemoved>;
    /// Flow statistics (multipart FLOW).
    fn flow_stats(&self, req: &FlowStatsRequest, now: Instant) -> Result<Vec<FlowStats>, OfpError>;
    /// Flow statistics, encoded: `emit` gets each selected flow's
    /// `ofp_flow_stats` entry in turn, so the agent packs them into multipart
    /// frames without first building a [`FlowStats`] for every flow (a
    /// restarted controller reads all 400k+ flows this way).
    fn flow_stats_encoded(
        &self,
        req: &FlowStatsRequest,
        now: Instant,
        emit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), OfpError> {
        let mut buf = Vec::new();
        for fs in self.flow_stats(req, now)? {
            buf.clear();
            crate::pipeline::put_flow_stats(
                &mut buf,
                &fs,
                |o| fs.match_.encode(o),
                &fs.instructions,
            );
            emit(&buf);
        }
        Ok(())
    }
    /// Aggregate statistics (multipart AGGREGATE).
    fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, OfpError>;
    /// Per-table statistics.
    fn table_stats(&self) -> Vec<TableStats>;
    /// Group descriptions.
    fn group_desc(&self) -> Vec<GroupDesc>;
    /// Group statistics (`group_id` may be `OFPG_ALL`).
    fn group_stats(&self, group_id: u32, now: Instant) -> Vec<GroupStats>;
    /// Meter configuration (`meter_id` may be `OFPM_ALL`).
    fn meter_config(&self, meter_id: u32) -> Vec<MeterConfig>;
    /// Meter statistics (`meter_id` may be `OFPM_ALL`).
    fn meter_stats(&self, meter_id: u32, now: Instant) -> Vec<MeterStats>;
    /// Counters of the local responders (`controller(userdata=<Plexus TLV>)`
    /// answered on the datapath thread), for engines that have them.
    fn responder_stats(&self) -> Option<plexus_responder::Stats> {
        None
    }
    /// The full OpenFlow pipeline behind this engine, if it is one (for
    /// the control socket's `trace`, `dump-cache`, `fdb/show`).
    fn pipeline(&self) -> Option<&crate::pipeline::Pipeline> {
        None
    }
    /// Mutable access to the same (`cache-flush`, `fdb/flush`).
    fn pipeline_mut(&mut self) -> Option<&mut crate::pipeline::Pipeline> {
        None
    }
    /// Fail-mode standalone without a controller: runs the frame through
    /// NORMAL only (MAC learning). Returns false if the engine has no
    /// NORMAL (the datapath then floods).
    fn process_normal(
        &mut self,
        _in_port: u32,
        _frame: &[u8],
        _now: Instant,
        _out: &mut dyn Sink,
    ) -> bool {
        false
    }
}
