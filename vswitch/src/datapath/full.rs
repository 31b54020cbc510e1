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
use plexus_responder::{Handled, Responder};

/// Number of OpenFlow tables announced and used.
pub const N_TABLES: u8 = 254;

/// See the module documentation.
#[derive(Debug)]
pub struct FullPipeline {
    p: Pipeline,
    pkt: PacketBuf,
    emits: Vec<Emit>,
    /// Local responders: `controller(userdata=<Plexus responder TLV>)` is answered
    /// here, out of the ingress port, instead of becoming a PACKET_IN.
    responder: Responder,
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
            responder: Responder::new(),
        }
    }

    /// The wrapped pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.p
    }

    fn deliver(&mut self, in_port: u32, out: &mut dyn Sink) {
        let Self {
            p,
            pkt,
            emits,
            responder,
        } = self;
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
                    userdata,
                    ..
                } => {
                    // A Plexus responder answers locally (whole packet: the
                    // compiled actions use the default max_len of 65535).
                    if let Some(ud) = userdata.as_deref() {
                        let frame = full.as_deref().unwrap_or(&data);
                        match responder.handle(ud, frame) {
                            Handled::NotPlexus => {}
                            Handled::Reply(_) => {
                                out.output(in_port, responder.reply());
                                continue;
                            }
                            Handled::Done => continue,
                        }
                    }
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
        self.deliver(in_port, out);
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
        self.deliver(in_port, out);
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
        self.deliver(po.in_port, out);
        r
    }

    fn expire(&mut self, now: Instant) -> Vec<FlowRemoved> {
        self.p.expire(now)
    }

    fn responder_stats(&self) -> Option<plexus_responder::Stats> {
        Some(self.responder.stats().clone())
    }

    fn flow_stats(&self, req: &FlowStatsRequest, now: Instant) -> Result<Vec<FlowStats>, OfpError> {
        self.p.flow_stats(req, now)
    }

    fn flow_stats_encoded(
        &self,
        req: &FlowStatsRequest,
        now: Instant,
        emit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), OfpError> {
        self.p.flow_stats_encoded(req, now, emit)
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
        self.deliver(in_port, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_openflow::message::FlowModCommand;
    use plexus_openflow::text::parse_flow_mod;
    use plexus_responder::{Kind, Spec};
    use std::net::Ipv4Addr;

    #[derive(Default)]
    struct Collect {
        out: Vec<(u32, Vec<u8>)>,
        pins: Vec<PacketIn>,
    }

    impl Sink for Collect {
        fn output(&mut self, port: u32, frame: &[u8]) {
            self.out.push((port, frame.to_vec()));
        }
        fn packet_in(&mut self, pi: PacketIn) {
            self.pins.push(pi);
        }
    }

    const RMAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 7];
    const CMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 5];

    fn arp_request(tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&CMAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&CMAC);
        f.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&tpa);
        f
    }

    fn engine(flows: &[String]) -> FullPipeline {
        let mut e = FullPipeline::new();
        let ports: Vec<PortInfo> = (1..=2)
            .map(|i| PortInfo {
                ofport: i,
                name: format!("p{i}"),
                hw_addr: [0, 0, 0, 0, 0, i as u8],
                live: true,
                no_fwd: false,
                no_flood: false,
            })
            .collect();
        e.set_ports(&ports);
        for f in flows {
            let fm = parse_flow_mod(f, FlowModCommand::Add).unwrap();
            e.flow_mod(&fm, Instant::now()).unwrap();
        }
        e
    }

    #[test]
    fn plexus_userdata_is_answered_locally_without_packet_in() {
        let spec = Spec::Arp {
            mac: RMAC,
            ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        let mut e = engine(&[
            format!(
                "priority=10,arp,arp_tpa=10.0.0.1,actions=controller(userdata={})",
                spec.ofctl_userdata()
            ),
            "priority=5,arp,actions=controller(userdata=01.02.03)".into(),
        ]);
        let mut sink = Collect::default();
        e.process(2, &arp_request([10, 0, 0, 1]), Instant::now(), &mut sink);
        assert!(sink.pins.is_empty(), "no PACKET_IN for a Plexus responder");
        assert_eq!(sink.out.len(), 1);
        let (port, reply) = &sink.out[0];
        assert_eq!(*port, 2, "out of the ingress port");
        assert_eq!(&reply[0..6], &CMAC);
        assert_eq!(&reply[20..22], &[0, 2], "ARP reply");
        assert_eq!(&reply[22..28], &RMAC);
        let st = e.responder_stats().unwrap();
        assert_eq!(st.replies(Kind::Arp), 1);
        // Other userdata: an ordinary packet-in.
        let mut sink = Collect::default();
        e.process(1, &arp_request([10, 0, 0, 9]), Instant::now(), &mut sink);
        assert!(sink.out.is_empty());
        assert_eq!(sink.pins.len(), 1);
        assert_eq!(e.responder_stats().unwrap().replies(Kind::Arp), 1);
    }

    #[test]
    fn plexus_userdata_drop_is_counted_not_sent() {
        let spec = Spec::Arp {
            mac: RMAC,
            ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        // The flow is broader than the spec: a request for another address is
        // dropped by the responder, counted, never flooded or sent up.
        let mut e = engine(&[format!(
            "priority=10,arp,actions=controller(userdata={})",
            spec.ofctl_userdata()
        )]);
        let mut sink = Collect::default();
        e.process(1, &arp_request([10, 0, 0, 9]), Instant::now(), &mut sink);
        assert!(sink.out.is_empty() && sink.pins.is_empty());
        let st = e.responder_stats().unwrap();
        assert_eq!(
            st.drops(Kind::Arp, plexus_responder::DropReason::WrongTarget),
            1
        );
        // A Plexus magic with a broken body: bad_spec, nothing sent.
        let mut e =
            engine(&["priority=10,arp,actions=controller(userdata=50.4c.58.52.01.01.00)".into()]);
        let mut sink = Collect::default();
        e.process(1, &arp_request([10, 0, 0, 1]), Instant::now(), &mut sink);
        assert!(sink.out.is_empty() && sink.pins.is_empty());
        assert_eq!(e.responder_stats().unwrap().bad_spec, 1);
    }

    fn ns_frame(target: [u8; 16]) -> Vec<u8> {
        // NS from fd00::5 to the solicited-node group of `target`, SLL option.
        let src: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        let mut dst = [0u8; 16];
        dst[..2].copy_from_slice(&[0xff, 0x02]);
        dst[11..13].copy_from_slice(&[0x01, 0xff]);
        dst[13..].copy_from_slice(&target[13..]);
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target);
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&CMAC);
        // ICMPv6 checksum over the pseudo-header.
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&src);
        add(&dst);
        add(&(icmp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(&icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let ck = !(sum as u16);
        icmp[2..4].copy_from_slice(&ck.to_be_bytes());
        let mut f = vec![0x33, 0x33, dst[12], dst[13], dst[14], dst[15]];
        f.extend_from_slice(&CMAC);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, 255]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn nd_target_flow_and_neighbour_advertisement() {
        let gw: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        let spec = Spec::Nd {
            mac: RMAC,
            ip: gw,
            router: true,
        };
        // The same flow text the controller compiles for an IPv6 gateway.
        let mut e = engine(&[format!(
            "priority=110,icmp6,icmp_type=135,icmp_code=0,nd_target=fd00::1,actions=controller(userdata={})",
            spec.ofctl_userdata()
        )]);
        let mut sink = Collect::default();
        e.process(1, &ns_frame(gw.octets()), Instant::now(), &mut sink);
        assert!(sink.pins.is_empty());
        assert_eq!(sink.out.len(), 1);
        let (port, na) = &sink.out[0];
        assert_eq!(*port, 1);
        assert_eq!(&na[0..6], &CMAC, "to the solicitor");
        assert_eq!(na[14 + 6], 58);
        assert_eq!(na[54], 136, "neighbour advertisement");
        assert_eq!(na[54 + 4], 0b1110_0000, "router, solicited, override");
        assert_eq!(&na[54 + 8..54 + 24], &gw.octets());
        assert_eq!(&na[54 + 26..54 + 32], &RMAC, "target link-layer address");
        // Another target does not match the flow: table miss, nothing answered.
        let mut sink = Collect::default();
        let other: std::net::Ipv6Addr = "fd00::9".parse().unwrap();
        e.process(1, &ns_frame(other.octets()), Instant::now(), &mut sink);
        assert!(sink.out.is_empty());
        assert_eq!(e.responder_stats().unwrap().replies(Kind::Nd), 1);
    }
}
