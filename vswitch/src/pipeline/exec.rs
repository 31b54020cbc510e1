//! Execution: replays a translation's [`Op`]s on the packet bytes.

use super::packet::{self, PacketBuf};
use super::xlate::{DropReason, Op};
use super::{Emit, OutData, Pipeline};
use plexus_openflow::message::{MeterBand, OFP_NO_BUFFER, meter_flags, port_no};
use std::time::Instant;

impl Pipeline {
    /// Outputs so far that reference the current packet bytes get a copy
    /// (the packet is about to change).
    fn materialize(&mut self, pkt: &PacketBuf, out: &mut [Emit]) {
        for i in self.pending.drain(..) {
            if let Some(Emit::Output { data, .. }) = out.get_mut(i) {
                let mut v = self.spare.pop().unwrap_or_default();
                v.clear();
                v.extend_from_slice(pkt.data());
                *data = OutData::Copy(v);
            }
        }
    }

    pub(crate) fn execute(
        &mut self,
        ops: &[Op],
        in_port: u32,
        pkt: &mut PacketBuf,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        self.pending.clear();
        let saved_depth = self.saved.len();
        let mut queue = None;
        for (i, op) in ops.iter().enumerate() {
            if op.modifies() {
                self.materialize(pkt, out);
            }
            match op {
                Op::Output(port) => {
                    out.push(Emit::Output {
                        port: *port,
                        queue,
                        data: OutData::Packet,
                        tunnel: None,
                    });
                    self.pending.push(out.len() - 1);
                }
                Op::OutputTunnel(t) => {
                    out.push(Emit::Output {
                        port: t.0,
                        queue,
                        data: OutData::Packet,
                        tunnel: Some(t.1),
                    });
                    self.pending.push(out.len() - 1);
                }
                Op::PacketIn(s) => {
                    let d = pkt.data();
                    let n = if s.max_len == super::NO_BUFFER_LEN {
                        d.len()
                    } else {
                        d.len().min(s.max_len as usize)
                    };
                    out.push(Emit::PacketIn {
                        reason: s.reason,
                        table_id: s.table_id,
                        cookie: s.cookie,
                        match_: s.match_.clone(),
                        data: d[..n].to_vec(),
                        total_len: d.len().min(u16::MAX as usize) as u16,
                        buffer_id: OFP_NO_BUFFER,
                        full: (self.buffer_packet_ins && n < d.len()).then(|| d.to_vec()),
                        userdata: s.userdata.clone(),
                        controller_id: s.controller_id,
                    });
                }
                Op::SetField { field, value, mask } => {
                    packet::set_field(pkt.data_mut(), *field, *value, *mask)
                }
                Op::PushVlan(t) => packet::push_vlan(pkt, *t),
                Op::PopVlan => packet::pop_vlan(pkt),
                Op::PushMpls(t) => packet::push_mpls(pkt, *t),
                Op::PopMpls(t) => packet::pop_mpls(pkt, *t),
                Op::PushPbb(t) => packet::push_pbb(pkt, *t),
                Op::PopPbb => packet::pop_pbb(pkt),
                Op::SetNwTtl(t) => packet::set_ip_ttl(pkt.data_mut(), *t),
                Op::DecNwTtl => {
                    if let Some(t) = packet::ip_ttl(pkt.data()) {
                        packet::set_ip_ttl(pkt.data_mut(), t.saturating_sub(1));
                    }
                }
                Op::SetMplsTtl(t) => packet::set_mpls_ttl(pkt.data_mut(), *t),
                Op::DecMplsTtl => {
                    if let Some(t) = packet::mpls_ttl(pkt.data()) {
                        packet::set_mpls_ttl(pkt.data_mut(), t.saturating_sub(1));
                    }
                }
                Op::CopyTtlIn => {
                    if let Some(t) = packet::mpls_ttl(pkt.data()) {
                        packet::inner_ttl_set(pkt.data_mut(), t);
                    }
                }
                Op::CopyTtlOut => {
                    if let Some(t) = packet::inner_ttl(pkt.data()) {
                        packet::set_mpls_ttl(pkt.data_mut(), t);
                    }
                }
                Op::SetQueue(q) => queue = Some(*q),
                Op::Meter(id) => match self.meter_pass(*id, pkt.len(), now) {
                    MeterVerdict::Pass => {}
                    MeterVerdict::Drop => {
                        self.counters.meter_drops += 1;
                        break;
                    }
                    MeterVerdict::Remark(prec) => {
                        self.materialize(pkt, out);
                        packet::dscp_remark(pkt.data_mut(), prec);
                    }
                },
                Op::Normal => self.normal(in_port, pkt, now, out),
                Op::Learn(fm) => self.learn(fm, now),
                Op::Table => {
                    self.materialize(pkt, out);
                    self.process_nested(in_port, pkt, now, out);
                }
                Op::Save => {
                    let mut v = self.spare.pop().unwrap_or_default();
                    v.clear();
                    v.extend_from_slice(pkt.data());
                    self.saved.push(v);
                }
                Op::Restore => {
                    if let Some(v) = self.saved.pop() {
                        pkt.load(&v);
                        self.recycle(v);
                    }
                }
                Op::Ct(c) => {
                    let r = self.conntrack.execute(pkt.data_mut(), &c.req, now);
                    if r.drop {
                        self.counters.ct_drops += 1;
                        break;
                    }
                    if let Some(table) = c.recirc {
                        let last = i + 1 == ops.len();
                        if !last {
                            let mut v = self.spare.pop().unwrap_or_default();
                            v.clear();
                            v.extend_from_slice(pkt.data());
                            self.saved.push(v);
                        }
                        self.recirculate(table, c, &r, in_port, pkt, now, out);
                        if !last {
                            self.materialize(pkt, out);
                            if let Some(v) = self.saved.pop() {
                                pkt.load(&v);
                                self.recycle(v);
                            }
                        }
                    }
                }
                Op::Recirc(r) => {
                    self.materialize(pkt, out);
                    self.reparse_continue(r, in_port, pkt, now, out);
                    break;
                }
                Op::Drop(r) => {
                    match r {
                        DropReason::ResubmitLimit => self.counters.resubmit_limit += 1,
                        DropReason::TtlExpired => self.counters.ttl_expired += 1,
                    }
                    break;
                }
            }
        }
        // A meter/drop may have broken out inside a bucket: restore the
        // packet to what the caller's outputs expect.
        while self.saved.len() > saved_depth {
            if let Some(v) = self.saved.pop() {
                self.materialize(pkt, out);
                pkt.load(&v);
                self.recycle(v);
            }
        }
    }

    /// Token-bucket check of meter `id` for a packet of `len` bytes: the
    /// exceeded band with the highest rate applies.
    fn meter_pass(&mut self, id: u32, len: usize, now: Instant) -> MeterVerdict {
        let Some(m) = self.meters.get_mut(&id) else {
            return MeterVerdict::Pass;
        };
        m.packets += 1;
        m.bytes += len as u64;
        let pktps = m.flags & meter_flags::PKTPS != 0;
        let cost: u128 = if pktps { 1000 } else { len as u128 * 8 } * 1_000_000_000;
        let mut worst: Option<usize> = None;
        for (i, b) in m.state.iter_mut().enumerate() {
            let cap = b.burst as u128 * 1000 * 1_000_000_000;
            if let Some(last) = b.last {
                let ns = now.saturating_duration_since(last).as_nanos();
                b.tokens = (b.tokens + ns * b.rate as u128 * 1000).min(cap);
            }
            b.last = Some(now);
            if b.tokens >= cost {
                b.tokens -= cost;
            } else if worst.is_none_or(|w| m_rate(&m.bands[w]) < b.rate) {
                worst = Some(i);
            }
        }
        match worst {
            Some(i) => {
                let b = &mut m.state[i];
                b.packets += 1;
                b.bytes += len as u64;
                match m.bands[i] {
                    MeterBand::DscpRemark { prec_level, .. } => MeterVerdict::Remark(prec_level),
                    _ => MeterVerdict::Drop,
                }
            }
            None => MeterVerdict::Pass,
        }
    }

    /// The NORMAL action: MAC learning on (VLAN, source MAC), forward to the
    /// learned port or flood.
    fn normal(&mut self, in_port: u32, pkt: &PacketBuf, now: Instant, out: &mut Vec<Emit>) {
        let d = pkt.data();
        if d.len() < 14 {
            return;
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&d[0..6]);
        src.copy_from_slice(&d[6..12]);
        let tpid = u16::from_be_bytes([d[12], d[13]]);
        let vlan = if (tpid == 0x8100 || tpid == 0x88a8) && d.len() >= 16 {
            u16::from_be_bytes([d[14], d[15]]) & 0xfff
        } else {
            0
        };
        if src[0] & 1 == 0 {
            self.mac.insert((vlan, src), (in_port, now));
        }
        if self.mac.len() > 8192 {
            let aging = self.mac_aging;
            self.mac
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < aging);
        }
        let learned = (dst[0] & 1 == 0)
            .then(|| self.mac.get(&(vlan, dst)))
            .flatten()
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.mac_aging)
            .map(|(p, _)| *p);
        match learned {
            Some(p) if p == in_port => {}
            Some(p) => {
                if self.ports.get(&p).is_some_and(|i| i.live) {
                    out.push(Emit::Output {
                        port: p,
                        queue: None,
                        data: OutData::Packet,
                        tunnel: None,
                    });
                    self.pending.push(out.len() - 1);
                }
            }
            None => {
                for (&no, info) in &self.ports {
                    if no != in_port && info.live && no != port_no::LOCAL {
                        out.push(Emit::Output {
                            port: no,
                            queue: None,
                            data: OutData::Packet,
                            tunnel: None,
                        });
                        self.pending.push(out.len() - 1);
                    }
                }
            }
        }
    }
}

/// What a meter does with a packet.
enum MeterVerdict {
    Pass,
    Drop,
    /// A DSCP remark band: raise the drop precedence by this much.
    Remark(u8),
}

fn m_rate(b: &plexus_openflow::message::MeterBand) -> u32 {
    use plexus_openflow::message::MeterBand::*;
    match b {
        Drop { rate, .. } | DscpRemark { rate, .. } | Experimenter { rate, .. } => *rate,
    }
}
