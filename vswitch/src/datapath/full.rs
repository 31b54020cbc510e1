//! [`Engine`] for the full OpenFlow pipeline ([`crate::pipeline::Pipeline`]):
//! header rewrites, groups, meters, NX actions, megaflow cache.

use std::time::Instant;

use plexus_openflow::error::OfpError;
use plexus_openflow::message::{
    AggregateStats, FlowMod, FlowRemoved, FlowStats, FlowStatsRequest, GroupDesc, GroupMod,
    GroupStats, MeterConfig, MeterMod, MeterStats, PacketIn, PacketOut, TableStats,
};

use super::engine::{Engine, PortInfo, Sink};
use crate::flow::TunnelMeta;
use crate::pipeline::{self, Emit, OutData, PacketBuf, Pipeline};

/// Number of OpenFlow tables announced and used.
pub const N_TABLES: u8 = 254;

/// See the module documentation.
#[derive(Debug)]
pub struct FullPipeline {
    p: Pipeline,
    pkt: PacketBuf,
    emits: Vec<Emit>,
}

impl Default for FullPipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl FullPipeline {
    pub fn new() -> Self {
        Self {
            p: Pipeline::new(N_TABLES),
            pkt: PacketBuf::new(),
            emits: Vec::with_capacity(16),
        }
    }

    /// The wrapped pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.p
    }

    fn deliver(&mut self, out: &mut dyn Sink) {
        let Self { p, pkt, emits } = self;
        for e in emits.drain(..) {
            match e {
                Emit::Output {
                    port, data, tunnel, ..
                } => {
                    let bytes = match &data {
                        OutData::Packet => pkt.data(),
                        OutData::Copy(v) => v.as_slice(),
                    };
                    match &tunnel {
                        Some(t) => out.output_tunnel(port, bytes, t),
                        None => out.output(port, bytes),
                    }
                    if let OutData::Copy(v) = data {
                        p.recycle(v);
                    }
                }
                Emit::PacketIn {
                    reason,
                    table_id,
                    cookie,
                    match_,
                    data,
                    total_len,
                    buffer_id,
                    full,
                    ..
                } => {
                    let pi = PacketIn {
                        buffer_id,
                        total_len,
                        reason,
                        table_id,
                        cookie,
                        match_,
                        data,
                    };
                    match full {
                        Some(f) => out.packet_in_full(pi, f),
                        None => out.packet_in(pi),
                    }
                }
            }
        }
    }
}

impl Engine for FullPipeline {
    fn set_ports(&mut self, ports: &[PortInfo]) {
        let v: Vec<pipeline::PortInfo> = ports
            .iter()
            .map(|p| pipeline::PortInfo {
                port_no: p.ofport,
                name: p.name.clone(),
                hw_addr: p.hw_addr,
                live: p.live && !p.no_fwd,
            })
            .collect();
        self.p.set_ports(&v);
    }

    fn flow_mod(&mut self, fm: &FlowMod, now: Instant) -> Result<Vec<FlowRemoved>, OfpError> {
        self.p.flow_mod(fm, now)?;
        Ok(self.p.take_flow_removed())
    }

    fn group_mod(&mut self, gm: &GroupMod) -> Result<(), OfpError> {
        self.p.group_mod(gm)
    }

    fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), OfpError> {
        self.p.meter_mod(mm)
    }

    fn process(&mut self, in_port: u32, frame: &[u8], now: Instant, out: &mut dyn Sink) {
        self.pkt.load(frame);
        self.p.process(in_port, &mut self.pkt, now, &mut self.emits);
        self.deliver(out);
    }

    fn process_tunnel(
        &mut self,
        in_port: u32,
        frame: &[u8],
        tun: &TunnelMeta,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        self.pkt.load(frame);
        self.p
            .process_tunnel(in_port, tun, &mut self.pkt, now, &mut self.emits);
        self.deliver(out);
    }

    fn set_tunnel_ports(&mut self, ports: &[u32]) {
        self.p.set_tunnel_ports(ports);
    }

    fn packet_out(
        &mut self,
        po: &PacketOut,
        now: Instant,
        out: &mut dyn Sink,
    ) -> Result<(), OfpError> {
        let r = self.p.packet_out(po, now, &mut self.emits);
        self.deliver(out);
        r
    }

    fn expire(&mut self, now: Instant) -> Vec<FlowRemoved> {
        self.p.expire(now)
    }

    fn flow_stats(&self, req: &FlowStatsRequest, now: Instant) -> Result<Vec<FlowStats>, OfpError> {
        self.p.flow_stats(req, now)
    }

    fn aggregate_stats(&self, req: &FlowStatsRequest) -> Result<AggregateStats, OfpError> {
        self.p.aggregate_stats(req)
    }

    fn table_stats(&self) -> Vec<TableStats> {
        self.p.table_stats()
    }

    fn group_desc(&self) -> Vec<GroupDesc> {
        self.p.group_desc()
    }

    fn group_stats(&self, group_id: u32, _now: Instant) -> Vec<GroupStats> {
        self.p.group_stats(group_id)
    }

    fn meter_config(&self, meter_id: u32) -> Vec<MeterConfig> {
        self.p.meter_config(meter_id)
    }

    fn meter_stats(&self, meter_id: u32, _now: Instant) -> Vec<MeterStats> {
        self.p.meter_stats(meter_id)
    }

    fn pipeline(&self) -> Option<&Pipeline> {
        Some(&self.p)
    }

    fn pipeline_mut(&mut self) -> Option<&mut Pipeline> {
        Some(&mut self.p)
    }

    fn process_normal(
        &mut self,
        in_port: u32,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) -> bool {
        self.pkt.load(frame);
        self.p
            .process_normal(in_port, &mut self.pkt, now, &mut self.emits);
        self.deliver(out);
        true
    }
}
