use super::*;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use plexus_openflow::error::*;
use plexus_openflow::message::{GroupModCommand, MeterModCommand};
use plexus_openflow::oxm::MatchField;
use plexus_openflow::text::{parse_flow_mod, parse_group_mod, parse_meter_mod};

const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn ports(n: u32) -> Vec<PortInfo> {
    (1..=n)
        .map(|i| PortInfo {
            port_no: i,
            name: format!("p{i}"),
            hw_addr: [0x02, 0xaa, 0, 0, 0, i as u8],
            live: true,
        })
        .collect()
}

fn pipe() -> Pipeline {
    let mut p = Pipeline::new(16);
    p.set_ports(&ports(4));
    p
}

fn t0() -> Instant {
    Instant::now()
}

fn add(p: &mut Pipeline, s: &str) {
    let fm = parse_flow_mod(s, FlowModCommand::Add).unwrap_or_else(|e| panic!("{s}: {e}"));
    p.flow_mod(&fm, t0())
        .unwrap_or_else(|e| panic!("{s}: {e:?}"));
}

fn fm(p: &mut Pipeline, s: &str, c: FlowModCommand) -> Result<(), OfpError> {
    let fm = parse_flow_mod(s, c).unwrap_or_else(|e| panic!("{s}: {e}"));
    p.flow_mod(&fm, t0())
}

fn group(p: &mut Pipeline, s: &str, c: GroupModCommand) -> Result<(), OfpError> {
    p.group_mod(&parse_group_mod(s, c).unwrap_or_else(|e| panic!("{s}: {e}")))
}

fn meter(p: &mut Pipeline, s: &str, c: MeterModCommand) -> Result<(), OfpError> {
    p.meter_mod(&parse_meter_mod(s, c).unwrap_or_else(|e| panic!("{s}: {e}")))
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let payload = [0xabu8; 18];
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(src, dst, ttl)
        .tcp(sport, dport, 1000, 4096);
    let payload = [0x55u8; 10];
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

/// Processes `frame` from `in_port`; returns (port, bytes) outputs and packet-ins.
fn run(p: &mut Pipeline, in_port: u32, frame: &[u8]) -> (Vec<(u32, Vec<u8>)>, Vec<Emit>) {
    run_at(p, in_port, frame, t0())
}

fn run_at(
    p: &mut Pipeline,
    in_port: u32,
    frame: &[u8],
    now: Instant,
) -> (Vec<(u32, Vec<u8>)>, Vec<Emit>) {
    let mut pkt = PacketBuf::from_slice(frame);
    let mut out = Vec::new();
    p.process(in_port, &mut pkt, now, &mut out);
    let mut outs = Vec::new();
    let mut pins = Vec::new();
    for e in &out {
        match e {
            Emit::Output { port, .. } => outs.push((*port, e.bytes(&pkt).to_vec())),
            Emit::PacketIn { .. } => pins.push(e.clone()),
        }
    }
    (outs, pins)
}

fn ports_of(o: &[(u32, Vec<u8>)]) -> Vec<u32> {
    o.iter().map(|x| x.0).collect()
}

/// Checks IPv4 header and L4 checksums of a frame.
fn assert_checksums_ok(f: &[u8]) {
    let s = SlicedPacket::from_ethernet(f).expect("parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        return;
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "ipv4 csum");
    match &s.transport {
        Some(TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            if uh.checksum != 0 {
                let c = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(uh.checksum, c, "udp csum");
            }
        }
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            let c = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(th.checksum, c, "tcp csum");
        }
        _ => {}
    }
}

// ------------------------------------------------------------ flow_mod

#[test]
fn table_miss_drops_and_miss_flow_sends_no_match() {
    let mut p = pipe();
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, pi) = run(&mut p, 1, &f);
    assert!(o.is_empty() && pi.is_empty());
    add(&mut p, "priority=0,actions=CONTROLLER:128");
    let (o, pi) = run(&mut p, 1, &f);
    assert!(o.is_empty());
    match &pi[0] {
        Emit::PacketIn {
            reason: r,
            data,
            total_len,
            match_,
            buffer_id,
            ..
        } => {
            assert_eq!(*r, reason::NO_MATCH);
            assert_eq!(data.len(), f.len().min(128));
            assert_eq!(*total_len as usize, f.len());
            assert_eq!(match_.exact(FieldId::InPort), Some(1));
            assert_eq!(*buffer_id, OFP_NO_BUFFER);
        }
        e => panic!("{e:?}"),
    }
    add(&mut p, "priority=5,udp,actions=controller");
    let (_, pi) = run(&mut p, 1, &f);
    assert!(matches!(&pi[0], Emit::PacketIn { reason: 1, .. }));
}

#[test]
fn output_goto_and_write_actions() {
    let mut p = pipe();
    add(&mut p, "table=0,in_port=1,actions=goto_table:1");
    add(
        &mut p,
        "table=1,udp,actions=output:2,write_actions(output:3)",
    );
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, _) = run(&mut p, 1, &f);
    assert_eq!(ports_of(&o), vec![2, 3]);
    assert_eq!(o[0].1, f);
    // Table 1 miss: the action set is discarded.
    let (o, _) = run(&mut p, 1, &tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 64));
    assert!(o.is_empty());
    // Output to the ingress port is dropped unless IN_PORT.
    add(&mut p, "table=0,in_port=2,actions=output:2,output:in_port");
    let (o, _) = run(&mut p, 2, &f);
    assert_eq!(ports_of(&o), vec![2]);
}

#[test]
fn flow_mod_errors_have_exact_codes() {
    let mut p = pipe();
    let e = |r: Result<(), OfpError>| r.unwrap_err();
    assert_eq!(
        e(fm(&mut p, "table=20,actions=drop", FlowModCommand::Add)),
        OfpError::FlowModFailed(FlowModFailedCode::BadTableId)
    );
    assert_eq!(
        e(fm(
            &mut p,
            "table=2,actions=goto_table:1",
            FlowModCommand::Add
        )),
        OfpError::BadInstruction(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        e(fm(
            &mut p,
            "table=2,actions=goto_table:2",
            FlowModCommand::Add
        )),
        OfpError::BadInstruction(BadInstructionCode::BadTableId)
    );
    assert_eq!(
        e(fm(&mut p, "actions=output:99", FlowModCommand::Add)),
        OfpError::BadAction(BadActionCode::BadOutPort)
    );
    assert_eq!(
        e(fm(&mut p, "actions=group:7", FlowModCommand::Add)),
        OfpError::BadAction(BadActionCode::BadOutGroup)
    );
    assert_eq!(
        e(fm(&mut p, "actions=meter:3,output:1", FlowModCommand::Add)),
        OfpError::MeterModFailed(MeterModFailedCode::InvalidMeter)
    );
    assert_eq!(
        e(fm(
            &mut p,
            "actions=set_field:10.0.0.1->ip_src",
            FlowModCommand::Add
        )),
        OfpError::BadAction(BadActionCode::MatchInconsistent)
    );
    assert_eq!(
        e(fm(&mut p, "actions=pop_vlan", FlowModCommand::Add)),
        OfpError::BadAction(BadActionCode::MatchInconsistent)
    );
    add(&mut p, "priority=10,ip,nw_src=10.0.0.0/8,actions=drop");
    assert_eq!(
        e(fm(
            &mut p,
            "priority=10,ip,nw_dst=10.1.0.0/16,check_overlap,actions=drop",
            FlowModCommand::Add
        )),
        OfpError::FlowModFailed(FlowModFailedCode::Overlap)
    );
    // Different priority: no overlap.
    fm(
        &mut p,
        "priority=11,ip,nw_dst=10.1.0.0/16,check_overlap,actions=drop",
        FlowModCommand::Add,
    )
    .unwrap();
    // Disjoint at the same priority: fine.
    fm(
        &mut p,
        "priority=10,ip,nw_src=11.0.0.0/8,check_overlap,actions=drop",
        FlowModCommand::Add,
    )
    .unwrap();
}

#[test]
fn add_replaces_identical_keeping_counts_unless_reset() {
    let mut p = pipe();
    add(&mut p, "udp,actions=output:2");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    run(&mut p, 1, &f);
    run(&mut p, 1, &f);
    add(&mut p, "udp,actions=output:3");
    assert_eq!(p.flow_count(0), 1);
    let req = FlowStatsRequest {
        table_id: TABLE_ALL,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        ..Default::default()
    };
    let s = p.flow_stats(&req, t0()).unwrap();
    assert_eq!(s[0].packet_count, 2);
    assert_eq!(s[0].byte_count, 2 * f.len() as u64);
    let (o, _) = run(&mut p, 1, &f);
    assert_eq!(ports_of(&o), vec![3]);
    add(&mut p, "udp,reset_counts,actions=output:3");
    assert_eq!(p.flow_stats(&req, t0()).unwrap()[0].packet_count, 0);
}

#[test]
fn modify_and_delete_strict_and_loose() {
    let mut p = pipe();
    add(
        &mut p,
        "priority=10,cookie=0x1,ip,nw_src=10.0.0.1,actions=output:1",
    );
    add(
        &mut p,
        "priority=20,cookie=0x2,ip,nw_src=10.0.0.2,actions=output:2",
    );
    add(&mut p, "priority=30,cookie=0x3,udp,actions=output:3");
    // Non-strict modify of nothing adds nothing.
    fm(&mut p, "tcp,actions=output:4", FlowModCommand::Modify).unwrap();
    assert_eq!(p.flow_count(0), 3);
    // Cookie filter.
    fm(
        &mut p,
        "cookie=0x2/0xff,ip,actions=output:4",
        FlowModCommand::Modify,
    )
    .unwrap();
    let req = FlowStatsRequest {
        table_id: 0,
        out_port: 4,
        out_group: group_id::ANY,
        ..Default::default()
    };
    let s = p.flow_stats(&req, t0()).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].cookie, 2);
    // Strict modify needs the priority.
    fm(
        &mut p,
        "priority=11,ip,nw_src=10.0.0.1,actions=output:4",
        FlowModCommand::ModifyStrict,
    )
    .unwrap();
    assert_eq!(p.flow_stats(&req, t0()).unwrap().len(), 1);
    fm(
        &mut p,
        "priority=10,ip,nw_src=10.0.0.1,actions=output:4",
        FlowModCommand::ModifyStrict,
    )
    .unwrap();
    assert_eq!(p.flow_stats(&req, t0()).unwrap().len(), 2);
    // Delete with out_port filter.
    fm(&mut p, "out_port=3", FlowModCommand::Delete).unwrap();
    assert_eq!(p.flow_count(0), 2);
    fm(&mut p, "priority=20,ip", FlowModCommand::DeleteStrict).unwrap();
    assert_eq!(p.flow_count(0), 2);
    fm(
        &mut p,
        "priority=20,ip,nw_src=10.0.0.2",
        FlowModCommand::DeleteStrict,
    )
    .unwrap();
    assert_eq!(p.flow_count(0), 1);
    // Delete all tables.
    add(&mut p, "table=3,actions=drop");
    fm(&mut p, "", FlowModCommand::Delete).unwrap();
    assert_eq!(p.flow_count(0) + p.flow_count(3), 0);
}

#[test]
fn timeouts_and_flow_removed() {
    let mut p = pipe();
    let now = t0();
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let m = |s: &str| parse_flow_mod(s, FlowModCommand::Add).unwrap();
    p.flow_mod(
        &m("priority=1,udp,idle_timeout=5,send_flow_rem,actions=output:2"),
        now,
    )
    .unwrap();
    p.flow_mod(
        &m("priority=2,tcp,hard_timeout=10,send_flow_rem,actions=output:2"),
        now,
    )
    .unwrap();
    p.flow_mod(&m("priority=3,arp,hard_timeout=10,actions=output:2"), now)
        .unwrap();
    run_at(&mut p, 1, &f, now + Duration::from_secs(4));
    assert!(p.expire(now + Duration::from_secs(6)).is_empty());
    let r = p.expire(now + Duration::from_secs(9));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, removed_reason::IDLE_TIMEOUT);
    assert_eq!(r[0].packet_count, 1);
    let r = p.expire(now + Duration::from_secs(10));
    assert_eq!(r.len(), 1, "no flow-removed without send_flow_rem");
    assert_eq!(r[0].reason, removed_reason::HARD_TIMEOUT);
    assert_eq!(r[0].priority, 2);
    assert_eq!(p.flow_count(0), 0);
    // Delete sends flow-removed too.
    p.flow_mod(&m("udp,send_flow_rem,actions=output:2"), now)
        .unwrap();
    fm(&mut p, "udp", FlowModCommand::Delete).unwrap();
    let r = p.expire(now);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, removed_reason::DELETE);
}

// ------------------------------------------------------------- actions

#[test]
fn set_field_rewrites_with_valid_checksums() {
    let mut p = pipe();
    add(
        &mut p,
        "tcp,actions=set_field:192.168.1.1->ip_src,set_field:8080->tcp_dst,\
         set_field:02:00:00:00:00:99->eth_dst,mod_nw_tos:0x20,output:2",
    );
    add(
        &mut p,
        "udp,actions=set_field:172.16.0.9->ip_dst,set_field:53->udp_src,output:2",
    );
    let f = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 64);
    let (o, _) = run(&mut p, 1, &f);
    let g = &o[0].1;
    assert_checksums_ok(g);
    let s = SlicedPacket::from_ethernet(g).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [192, 168, 1, 1]);
    assert_eq!(g[15] >> 2, 0x20 >> 2);
    let Some(TransportSlice::Tcp(t)) = &s.transport else {
        panic!()
    };
    assert_eq!(t.destination_port(), 8080);
    assert_eq!(&g[0..6], &[2, 0, 0, 0, 0, 0x99]);
    let (o, _) = run(&mut p, 1, &udp([10, 0, 0, 1], [10, 0, 0, 2], 7, 8));
    assert_checksums_ok(&o[0].1);
}

#[test]
fn vlan_push_pop_and_set_vid() {
    let mut p = pipe();
    add(
        &mut p,
        "in_port=1,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2",
    );
    add(&mut p, "in_port=3,dl_vlan=100,actions=pop_vlan,output:4");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, _) = run(&mut p, 1, &f);
    let g = &o[0].1;
    assert_eq!(g.len(), f.len() + 4);
    assert_eq!(&g[12..16], &[0x81, 0x00, 0x00, 100]);
    assert_eq!(&g[16..], &f[12..]);
    let (o, _) = run(&mut p, 3, g);
    assert_eq!(o[0].1, f);
}

#[test]
fn output_copies_only_when_modified_after() {
    let mut p = pipe();
    add(
        &mut p,
        "in_port=1,ip,actions=output:2,set_field:10.9.9.9->ip_dst,output:3,output:4",
    );
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let mut pkt = PacketBuf::from_slice(&f);
    let mut out = Vec::new();
    p.process(1, &mut pkt, t0(), &mut out);
    assert!(matches!(&out[0], Emit::Output { data: OutData::Copy(v), .. } if *v == f));
    assert!(matches!(
        &out[1],
        Emit::Output {
            data: OutData::Packet,
            ..
        }
    ));
    assert!(matches!(
        &out[2],
        Emit::Output {
            data: OutData::Packet,
            ..
        }
    ));
    assert_eq!(&out[1].bytes(&pkt)[30..34], &[10, 9, 9, 9]);
}

#[test]
fn flood_all_local_normal() {
    let mut p = pipe();
    add(&mut p, "in_port=1,actions=flood");
    add(&mut p, "in_port=2,actions=all");
    add(&mut p, "in_port=3,actions=local");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    p.set_port_live(3, false);
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![2, 4]);
    assert_eq!(ports_of(&run(&mut p, 2, &f).0), vec![1, 3, 4]);
    assert!(run(&mut p, 3, &f).0.is_empty(), "no local port: drop");
    let mut ps = ports(4);
    ps.push(PortInfo {
        port_no: port_no::LOCAL,
        name: "br".into(),
        hw_addr: [0; 6],
        live: true,
    });
    p.set_ports(&ps);
    assert_eq!(ports_of(&run(&mut p, 3, &f).0), vec![port_no::LOCAL]);
    // NORMAL: flood unknown, then learn.
    add(&mut p, "priority=60000,actions=normal");
    let ab = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2); // MAC1 -> MAC2
    assert_eq!(ports_of(&run(&mut p, 1, &ab).0), vec![2, 3, 4]);
    let mut ba = ab.clone();
    ba[0..6].copy_from_slice(&MAC1);
    ba[6..12].copy_from_slice(&MAC2);
    assert_eq!(ports_of(&run(&mut p, 2, &ba).0), vec![1]);
    assert_eq!(ports_of(&run(&mut p, 1, &ab).0), vec![2]);
}

#[test]
fn dec_ttl_and_invalid_ttl_packet_in() {
    let mut p = pipe();
    add(&mut p, "ip,actions=dec_ttl,output:2");
    let (o, _) = run(&mut p, 1, &tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 64));
    assert_eq!(o[0].1[22], 63);
    assert_checksums_ok(&o[0].1);
    let (o, pi) = run(&mut p, 1, &tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 1));
    assert!(o.is_empty());
    assert!(matches!(&pi[0], Emit::PacketIn { reason: 2, .. }));
    assert_eq!(p.counters.ttl_expired, 1);
}

#[test]
fn nx_regs_resubmit_note_controller_userdata() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,in_port=1,actions=load:0x2->NXM_NX_REG0[],note:aa.bb,resubmit(,1)",
    );
    add(
        &mut p,
        "table=1,reg0=2,actions=move:NXM_NX_REG0[]->NXM_NX_REG1[],resubmit(,2)",
    );
    add(
        &mut p,
        "table=2,reg1=2,actions=output:NXM_NX_REG1[],controller(userdata=01.02,reason=no_match)",
    );
    let (o, pi) = run(&mut p, 1, &udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2));
    assert_eq!(ports_of(&o), vec![2]);
    match &pi[0] {
        Emit::PacketIn {
            reason,
            userdata,
            match_,
            table_id,
            ..
        } => {
            assert_eq!(*reason, 0);
            assert_eq!(userdata.as_deref(), Some(&[1u8, 2][..]));
            assert_eq!(match_.exact(FieldId::Reg0), Some(2));
            assert_eq!(match_.exact(FieldId::Reg1), Some(2));
            assert_eq!(*table_id, 2);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn resubmit_loop_is_bounded() {
    let mut p = pipe();
    add(&mut p, "table=0,actions=output:2,resubmit(,0)");
    let (o, _) = run(&mut p, 1, &udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2));
    assert!(o.is_empty());
    assert_eq!(p.counters.resubmit_limit, 1);
}

// -------------------------------------------------------------- groups

#[test]
fn group_errors_and_chaining() {
    let mut p = pipe();
    group(
        &mut p,
        "group_id=1,type=all,bucket=output:2,bucket=output:3",
        GroupModCommand::Add,
    )
    .unwrap();
    assert_eq!(
        group(
            &mut p,
            "group_id=1,type=all,bucket=output:2",
            GroupModCommand::Add
        )
        .unwrap_err(),
        OfpError::GroupModFailed(GroupModFailedCode::GroupExists)
    );
    assert_eq!(
        group(
            &mut p,
            "group_id=9,type=all,bucket=output:2",
            GroupModCommand::Modify
        )
        .unwrap_err(),
        OfpError::GroupModFailed(GroupModFailedCode::UnknownGroup)
    );
    assert_eq!(
        group(
            &mut p,
            "group_id=3,type=all,bucket=output:77",
            GroupModCommand::Add
        )
        .unwrap_err(),
        OfpError::BadAction(BadActionCode::BadOutPort)
    );
    group(
        &mut p,
        "group_id=2,type=indirect,bucket=group:1",
        GroupModCommand::Add,
    )
    .unwrap();
    assert_eq!(
        group(
            &mut p,
            "group_id=1,type=all,bucket=group:2",
            GroupModCommand::Modify
        )
        .unwrap_err(),
        OfpError::GroupModFailed(GroupModFailedCode::Loop)
    );
    add(&mut p, "in_port=1,actions=group:2");
    assert_eq!(
        ports_of(&run(&mut p, 1, &udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2)).0),
        vec![2, 3]
    );
    let gs = p.group_stats(2);
    assert_eq!(gs[0].packet_count, 1);
    assert_eq!(gs[0].ref_count, 1);
    assert_eq!(p.group_stats(1)[0].bucket_stats, vec![(1, 60), (1, 60)]);
    // Deleting a group removes the flows that use it.
    group(&mut p, "group_id=2", GroupModCommand::Delete).unwrap();
    assert_eq!(p.flow_count(0), 0);
    assert_eq!(p.group_desc().len(), 1);
}

#[test]
fn all_group_buckets_see_their_own_copy() {
    let mut p = pipe();
    group(
        &mut p,
        "group_id=1,type=all,bucket=set_field:10.0.0.9->ip_dst,output:2,bucket=output:3",
        GroupModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,ip,actions=group:1");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, _) = run(&mut p, 1, &f);
    assert_eq!(ports_of(&o), vec![2, 3]);
    assert_eq!(&o[0].1[30..34], &[10, 0, 0, 9]);
    assert_checksums_ok(&o[0].1);
    assert_eq!(o[1].1, f);
}

#[test]
fn select_group_spreads_by_hash_and_is_stable() {
    let mut p = pipe();
    group(
        &mut p,
        "group_id=1,type=select,bucket=weight:1,output:2,bucket=weight:1,output:3,bucket=weight:2,output:4",
        GroupModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,actions=group:1");
    let mut count = BTreeMap::new();
    for i in 0..400u16 {
        let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i, 80);
        let (o, _) = run(&mut p, 1, &f);
        assert_eq!(o.len(), 1);
        // Stable.
        assert_eq!(run(&mut p, 1, &f).0[0].0, o[0].0);
        *count.entry(o[0].0).or_insert(0) += 1;
    }
    assert!(
        count[&2] > 50 && count[&3] > 50 && count[&4] > 120,
        "{count:?}"
    );
}

/// 10k flows over 4 weighted buckets land within 5 % (relative) of the
/// weights; removing a bucket moves only its own flows; adding one takes
/// flows only for itself (rendezvous hashing, not modulo).
#[test]
fn select_group_is_weighted_and_consistent_across_bucket_changes() {
    let mut p = Pipeline::new(16);
    p.set_ports(&ports(6));
    let four = "group_id=1,type=select,bucket=weight:1,output:2,bucket=weight:1,output:3,\
                bucket=weight:2,output:4,bucket=weight:4,output:5";
    group(&mut p, four, GroupModCommand::Add).unwrap();
    add(&mut p, "in_port=1,actions=group:1");
    let flows: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            udp(
                [10, 1, (i >> 8) as u8, i as u8],
                [10, 0, 0, 2],
                1024 + (i % 50_000) as u16,
                80,
            )
        })
        .collect();
    let pick = |p: &mut Pipeline, f: &[u8]| -> u32 {
        let (o, _) = run(p, 1, f);
        assert_eq!(o.len(), 1);
        o[0].0
    };
    let before: Vec<u32> = flows.iter().map(|f| pick(&mut p, f)).collect();
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for &b in &before {
        *count.entry(b).or_default() += 1;
    }
    for (port, w) in [(2u32, 1.0f64), (3, 1.0), (4, 2.0), (5, 4.0)] {
        let want = 10_000.0 * w / 8.0;
        let got = count[&port] as f64;
        assert!(
            (got - want).abs() <= 0.05 * want,
            "port {port}: {got} flows, want {want} ± 5 %: {count:?}"
        );
    }
    // Remove the bucket to port 3: only its flows move.
    let three = "group_id=1,type=select,bucket=weight:1,output:2,\
                 bucket=weight:2,output:4,bucket=weight:4,output:5";
    group(&mut p, three, GroupModCommand::Modify).unwrap();
    let after: Vec<u32> = flows.iter().map(|f| pick(&mut p, f)).collect();
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(*a, 3, "a flow still goes to the removed bucket");
        if *b != 3 {
            assert_eq!(a, b, "a flow moved although its bucket stayed");
        }
    }
    // Add a bucket to port 6: flows move only to it.
    let five = "group_id=1,type=select,bucket=weight:1,output:2,\
                bucket=weight:2,output:4,bucket=weight:4,output:5,bucket=weight:1,output:6";
    group(&mut p, five, GroupModCommand::Modify).unwrap();
    let added: Vec<u32> = flows.iter().map(|f| pick(&mut p, f)).collect();
    let mut moved = 0;
    for (a, n) in after.iter().zip(&added) {
        if a != n {
            assert_eq!(*n, 6, "a flow moved to an old bucket");
            moved += 1;
        }
    }
    // The new bucket's fair share: 1/8 of the flows.
    assert!((1000..1500).contains(&moved), "moved {moved}");
}

#[test]
fn fast_failover_uses_first_live_bucket() {
    let mut p = pipe();
    group(
        &mut p,
        "group_id=1,type=ff,bucket=watch_port:2,output:2,bucket=watch_port:3,output:3",
        GroupModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,actions=group:1");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![2]);
    p.set_port_live(2, false);
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![3]);
    p.set_port_live(3, false);
    assert!(run(&mut p, 1, &f).0.is_empty());
    p.set_port_live(2, true);
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![2]);
}

// -------------------------------------------------------------- meters

#[test]
fn meter_errors() {
    let mut p = pipe();
    meter(
        &mut p,
        "meter=1,pktps,band=type=drop,rate=10",
        MeterModCommand::Add,
    )
    .unwrap();
    assert_eq!(
        meter(
            &mut p,
            "meter=1,pktps,band=type=drop,rate=10",
            MeterModCommand::Add
        )
        .unwrap_err(),
        OfpError::MeterModFailed(MeterModFailedCode::MeterExists)
    );
    assert_eq!(
        meter(
            &mut p,
            "meter=2,pktps,band=type=drop,rate=10",
            MeterModCommand::Modify
        )
        .unwrap_err(),
        OfpError::MeterModFailed(MeterModFailedCode::UnknownMeter)
    );
    assert_eq!(
        meter(
            &mut p,
            "meter=3,kbps,band=type=drop,rate=0",
            MeterModCommand::Add
        )
        .unwrap_err(),
        OfpError::MeterModFailed(MeterModFailedCode::BadRate)
    );
    // DSCP remark bands are supported.
    meter(
        &mut p,
        "meter=3,kbps,band=type=dscp_remark,rate=10,prec_level=1",
        MeterModCommand::Add,
    )
    .unwrap();
    meter(&mut p, "meter=3", MeterModCommand::Delete).unwrap();
    add(&mut p, "in_port=1,actions=meter:1,output:2");
    assert_eq!(p.meter_stats(1)[0].flow_count, 1);
    assert_eq!(p.meter_config(METER_ALL).len(), 1);
    meter(&mut p, "meter=1", MeterModCommand::Delete).unwrap();
    assert_eq!(p.flow_count(0), 0, "deleting a meter removes its flows");
}

#[test]
fn pktps_meter_drops_above_rate() {
    let mut p = pipe();
    meter(
        &mut p,
        "meter=1,pktps,burst,band=type=drop,rate=100,burst_size=10",
        MeterModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,actions=meter:1,output:2");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let start = t0();
    // 1000 packets over one second (1 per ms): 100 pps + 10 burst pass.
    let mut passed = 0;
    for i in 0..1000u64 {
        let (o, _) = run_at(&mut p, 1, &f, start + Duration::from_millis(i));
        passed += o.len();
    }
    assert!((105..=115).contains(&passed), "{passed}");
    let s = &p.meter_stats(1)[0];
    assert_eq!(s.packet_in_count, 1000);
    assert_eq!(s.band_stats[0].0, 1000 - passed as u64);
}

#[test]
fn kbps_meter_drops_above_rate() {
    let mut p = pipe();
    meter(
        &mut p,
        "meter=1,kbps,band=type=drop,rate=480",
        MeterModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,actions=meter:1,output:2");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2); // 60 bytes = 480 bits
    let start = t0();
    let mut passed = 0;
    // 4000 packets in 2 s (2 per ms) = 960 kbps offered; 480 kbps = 1000 pps.
    for i in 0..4000u64 {
        let (o, _) = run_at(&mut p, 1, &f, start + Duration::from_micros(i * 500));
        passed += o.len();
    }
    // 1 s of burst (1000 packets) + 2 s × 1000 pps.
    assert!((2900..=3100).contains(&passed), "{passed}");
}

// ---------------------------------------------------------- packet-out

#[test]
fn packet_out_actions_and_table() {
    let mut p = pipe();
    add(&mut p, "in_port=1,actions=output:3");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let po = PacketOut {
        buffer_id: OFP_NO_BUFFER,
        in_port: 1,
        actions: vec![Action::output(2), Action::output(port_no::TABLE)],
        data: f.clone(),
    };
    let mut out = Vec::new();
    p.packet_out(&po, t0(), &mut out).unwrap();
    let ports: Vec<u32> = out
        .iter()
        .map(|e| match e {
            Emit::Output { port, data, .. } => {
                assert_eq!(*data, OutData::Copy(f.clone()));
                *port
            }
            _ => panic!(),
        })
        .collect();
    assert_eq!(ports, vec![2, 3]);
    let bad = PacketOut {
        actions: vec![Action::output(99)],
        ..po
    };
    assert_eq!(
        p.packet_out(&bad, t0(), &mut out).unwrap_err(),
        OfpError::BadAction(BadActionCode::BadOutPort)
    );
}

#[test]
fn stats_tables_and_aggregate() {
    let mut p = pipe();
    add(&mut p, "table=0,udp,actions=goto_table:1");
    add(&mut p, "table=1,udp,tp_dst=2,actions=output:2");
    run(&mut p, 1, &udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2));
    run(&mut p, 1, &udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 3));
    let ts = p.table_stats();
    assert_eq!((ts[0].lookup_count, ts[0].matched_count), (2, 2));
    assert_eq!((ts[1].lookup_count, ts[1].matched_count), (2, 1));
    assert_eq!(ts[1].active_count, 1);
    let req = FlowStatsRequest {
        table_id: TABLE_ALL,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        ..Default::default()
    };
    let a = p.aggregate_stats(&req).unwrap();
    assert_eq!((a.flow_count, a.packet_count), (2, 3));
}

// ---------------------------------------------------------------- learn, mpls

#[test]
fn learn_adds_a_flow_and_refreshes_it() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,actions=learn(table=1,hard_timeout=60,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],\
         output:NXM_OF_IN_PORT[]),resubmit(,1)",
    );
    add(&mut p, "table=1,priority=0,actions=flood");
    let ab = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2); // MAC1 -> MAC2
    assert_eq!(ports_of(&run(&mut p, 1, &ab).0), vec![2, 3, 4]);
    assert_eq!(p.flow_count(1), 2);
    let g = p.generation();
    run(&mut p, 1, &ab);
    assert_eq!(p.generation(), g, "refreshing a learned flow keeps caches");
    let mut ba = ab.clone();
    ba[0..6].copy_from_slice(&MAC1);
    ba[6..12].copy_from_slice(&MAC2);
    assert_eq!(ports_of(&run(&mut p, 3, &ba).0), vec![1]);
}

#[test]
fn mpls_push_pop_roundtrip() {
    let mut p = pipe();
    add(
        &mut p,
        "in_port=1,ip,actions=push_mpls:0x8847,set_field:42->mpls_label,output:2",
    );
    add(
        &mut p,
        "in_port=2,mpls,mpls_label=42,actions=dec_mpls_ttl,pop_mpls:0x0800,output:3",
    );
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, _) = run(&mut p, 1, &f);
    let m = &o[0].1;
    assert_eq!(m.len(), f.len() + 4);
    assert_eq!(&m[12..14], &[0x88, 0x47]);
    let lse = u32::from_be_bytes([m[14], m[15], m[16], m[17]]);
    assert_eq!(lse >> 12, 42);
    assert_eq!((lse >> 8) & 1, 1, "bottom of stack");
    assert_eq!(lse & 0xff, 64, "ttl copied from IP");
    let (o, _) = run(&mut p, 2, m);
    assert_eq!(o[0].1, f);
}

#[test]
fn pop_mpls_then_goto_matches_inner_l3_l4() {
    for cache in [false, true] {
        let mut p = pipe();
        p.set_cache_enabled(cache);
        add(
            &mut p,
            "in_port=1,ip,actions=push_mpls:0x8847,set_field:42->mpls_label,output:2",
        );
        add(
            &mut p,
            "table=0,in_port=2,mpls,actions=pop_mpls:0x0800,write_metadata:0x5/0xff,goto_table:1",
        );
        add(
            &mut p,
            "table=1,metadata=0x5,udp,nw_dst=10.0.0.2,tp_dst=2,actions=set_field:10.0.0.9->nw_dst,output:3",
        );
        add(&mut p, "table=1,priority=0,actions=output:4");
        let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        let (o, _) = run(&mut p, 1, &f);
        let m = o[0].1.clone();
        for _ in 0..2 {
            let (o, _) = run(&mut p, 2, &m);
            assert_eq!(ports_of(&o), vec![3], "cache={cache}");
            let want = udp([10, 0, 0, 1], [10, 0, 0, 9], 1, 2);
            assert_eq!(&o[0].1[..34], &want[..34]);
            assert_checksums_ok(&o[0].1);
        }
        let g = udp([10, 0, 0, 1], [10, 0, 0, 3], 1, 2);
        let (o, _) = run(&mut p, 1, &g);
        let m = o[0].1.clone();
        let (o, _) = run(&mut p, 2, &m);
        assert_eq!(ports_of(&o), vec![4], "other dst misses in table 1");
        assert_eq!(o[0].1, g);
    }
}

#[test]
fn dscp_remark_band_raises_drop_precedence_above_rate() {
    let mut p = pipe();
    meter(
        &mut p,
        "meter=1,pktps,bands=type=dscp_remark,rate=1,prec_level=1",
        MeterModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,actions=meter:1,output:2");
    let mut f = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 64);
    packet::set_field(&mut f, FieldId::IpDscp, 18, 0x3f);
    let now = t0();
    let (o, _) = run_at(&mut p, 1, &f, now);
    assert_eq!(o[0].1[15] >> 2, 18, "within rate: unchanged");
    let (o, _) = run_at(&mut p, 1, &f, now);
    assert_eq!(o[0].1[15] >> 2, 20, "AF21 -> AF22 above rate");
    assert_checksums_ok(&o[0].1);
    let mut g = o[0].1.clone();
    packet::dscp_remark(&mut g, 3);
    assert_eq!(g[15] >> 2, 22, "saturates at drop precedence 3");
}

#[test]
fn pbb_push_set_isid_match_and_pop_then_goto() {
    for cache in [false, true] {
        let mut p = pipe();
        p.set_cache_enabled(cache);
        add(
            &mut p,
            "in_port=1,ip,actions=push_pbb:0x88e7,set_field:0x654321->pbb_isid,output:2",
        );
        add(
            &mut p,
            "table=0,in_port=2,dl_type=0x88e7,pbb_isid=0x654321,actions=output:3",
        );
        add(
            &mut p,
            "table=0,in_port=3,dl_type=0x88e7,actions=pop_pbb,goto_table:1",
        );
        add(&mut p, "table=1,udp,tp_dst=2,actions=output:4");
        add(&mut p, "table=1,priority=0,actions=output:1");
        let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        let (o, _) = run(&mut p, 1, &f);
        let m = o[0].1.clone();
        assert_eq!(m.len(), f.len() + 18);
        assert_eq!(&m[..12], &f[..12], "B-DA/B-SA copied");
        assert_eq!(&m[12..14], &[0x88, 0xe7]);
        assert_eq!(&m[14..18], &[0x00, 0x65, 0x43, 0x21]);
        assert_eq!(&m[18..], &f[..]);
        let (o, _) = run(&mut p, 2, &m);
        assert_eq!(ports_of(&o), vec![3], "pbb_isid match, cache={cache}");
        for _ in 0..2 {
            let (o, _) = run(&mut p, 3, &m);
            assert_eq!(
                ports_of(&o),
                vec![4],
                "inner UDP after pop_pbb, cache={cache}"
            );
            assert_eq!(o[0].1, f);
        }
        let g = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 7);
        let (o, _) = run(&mut p, 1, &g);
        let (o, _) = run(&mut p, 3, &o[0].1.clone());
        assert_eq!(ports_of(&o), vec![1]);
        assert_eq!(o[0].1, g);
    }
}

#[test]
fn write_actions_set_runs_in_spec_order() {
    let mut p = pipe();
    // Written in reverse order; the set runs push_vlan before set_field.
    add(
        &mut p,
        "in_port=1,actions=write_actions(output:2,set_field:4101->vlan_vid,push_vlan:0x8100)",
    );
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let (o, _) = run(&mut p, 1, &f);
    assert_eq!(&o[0].1[12..16], &[0x81, 0x00, 0x00, 5]);
    // clear_actions in a later table empties the set.
    add(
        &mut p,
        "in_port=2,actions=write_actions(output:3),goto_table:1",
    );
    add(&mut p, "table=1,actions=clear_actions");
    assert!(run(&mut p, 2, &f).0.is_empty());
}

#[test]
fn group_delete_sends_flow_removed() {
    let mut p = pipe();
    group(
        &mut p,
        "group_id=5,type=all,bucket=output:2",
        GroupModCommand::Add,
    )
    .unwrap();
    add(&mut p, "in_port=1,send_flow_rem,actions=group:5");
    group(&mut p, "group_id=5", GroupModCommand::Delete).unwrap();
    let r = p.expire(t0());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, removed_reason::GROUP_DELETE);
}

// ------------------------------------------------------- cache == slow path

mod cache_prop {
    use super::*;
    use proptest::prelude::*;

    const FLOWS: &[&str] = &[
        "table=0,priority=10,in_port=1,actions=goto_table:1",
        "table=0,priority=20,udp,tp_dst=53,actions=output:3",
        "table=0,priority=5,ip,nw_dst=10.0.0.0/24,actions=set_field:10.1.1.1->ip_src,goto_table:1",
        "table=0,priority=30,tcp,tp_src=1001,actions=dec_ttl,output:4",
        "table=0,priority=1,actions=controller",
        "table=1,priority=10,udp,actions=output:2",
        "table=1,priority=11,ip,nw_src=10.1.1.1,actions=load:0x7->NXM_NX_REG0[],resubmit(,2)",
        "table=1,priority=12,tcp,actions=group:1",
        "table=1,priority=1,actions=write_actions(output:4)",
        "table=2,reg0=7,actions=output:3,push_vlan:0x8100,output:2",
        "table=2,priority=0,actions=normal",
    ];

    #[derive(Debug, Clone)]
    enum Step {
        Add(usize),
        Del(usize),
        Pkt {
            port: u32,
            dst: u8,
            sport: u16,
            dport: u16,
            tcp: bool,
            ttl: u8,
        },
        PortDown(u32, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..FLOWS.len()).prop_map(Step::Add),
            (0..FLOWS.len()).prop_map(Step::Del),
            (
                1..4u32,
                0..3u8,
                1000..1003u16,
                prop_oneof![Just(53u16), Just(80)],
                any::<bool>(),
                1..3u8
            )
                .prop_map(|(port, dst, sport, dport, tcp, ttl)| Step::Pkt {
                    port,
                    dst,
                    sport,
                    dport,
                    tcp,
                    ttl: ttl * 32 - 31,
                }),
            (2..5u32, any::<bool>()).prop_map(|(p, l)| Step::PortDown(p, l)),
        ]
    }

    fn setup(cache: bool) -> Pipeline {
        let mut p = pipe();
        p.set_cache_enabled(cache);
        group(
            &mut p,
            "group_id=1,type=ff,bucket=watch_port:2,output:2,bucket=watch_port:3,output:3",
            GroupModCommand::Add,
        )
        .unwrap();
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn cached_result_equals_slow_path(steps in proptest::collection::vec(step(), 1..60)) {
            let mut a = setup(true);
            let mut b = setup(false);
            let now = t0();
            for s in steps {
                match s {
                    Step::Add(i) => {
                        let ra = fm(&mut a, FLOWS[i], FlowModCommand::Add);
                        let rb = fm(&mut b, FLOWS[i], FlowModCommand::Add);
                        prop_assert_eq!(ra, rb);
                    }
                    Step::Del(i) => {
                        let s = FLOWS[i].split(",actions").next().unwrap();
                        let ra = fm(&mut a, s, FlowModCommand::DeleteStrict);
                        let rb = fm(&mut b, s, FlowModCommand::DeleteStrict);
                        prop_assert_eq!(ra, rb);
                    }
                    Step::PortDown(p, live) => {
                        a.set_port_live(p, live);
                        b.set_port_live(p, live);
                    }
                    Step::Pkt { port, dst, sport, dport, tcp: is_tcp, ttl } => {
                        let d = [10, 0, dst, 2];
                        let f = if is_tcp {
                            tcp([10, 0, 0, 1], d, sport, dport, ttl)
                        } else {
                            udp([10, 0, 0, 1], d, sport, dport)
                        };
                        let ra = run_at(&mut a, port, &f, now);
                        let rb = run_at(&mut b, port, &f, now);
                        prop_assert_eq!(&ra, &rb);
                        for (_, bytes) in &ra.0 {
                            assert_checksums_ok(bytes);
                        }
                    }
                }
            }
            prop_assert_eq!(a.table_stats(), b.table_stats());
            prop_assert!(a.counters.cache_hits + a.counters.cache_misses > 0 || a.counters.packets == 0);
        }
    }
}

#[test]
fn no_stale_action_after_flow_mod() {
    let mut p = pipe();
    add(&mut p, "udp,actions=output:2");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    for _ in 0..3 {
        assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![2]);
    }
    assert!(p.counters.cache_hits >= 2);
    fm(&mut p, "udp,actions=output:3", FlowModCommand::Modify).unwrap();
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![3]);
    add(&mut p, "priority=40000,udp,tp_dst=2,actions=output:4");
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![4]);
    fm(&mut p, "udp,tp_dst=2", FlowModCommand::Delete).unwrap();
    assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![3]);
    // Per-flow counters are credited on cache hits too.
    let req = FlowStatsRequest {
        table_id: 0,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        ..Default::default()
    };
    assert_eq!(p.flow_stats(&req, t0()).unwrap()[0].packet_count, 5);
}

// ------------------------------------------------------------ conntrack

fn tcp_flags(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    syn: bool,
    ack: Option<u32>,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC1, MAC2)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 4096);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

/// The stateful firewall of `ovs-actions(7)`, with a zone: new connections
/// only from port 1, replies allowed back.
fn firewall(p: &mut Pipeline) {
    add(p, "table=0,priority=1,actions=drop");
    add(
        p,
        "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=5)",
    );
    add(
        p,
        "table=1,in_port=1,ip,ct_state=+trk+new,actions=ct(commit,zone=5),output:2",
    );
    add(p, "table=1,in_port=1,ip,ct_state=+trk+est,actions=output:2");
    add(p, "table=1,in_port=2,ip,ct_state=+trk+new,actions=drop");
    add(p, "table=1,in_port=2,ip,ct_state=+trk+est,actions=output:1");
    add(p, "table=1,priority=0,actions=drop");
}

#[test]
fn ct_stateful_firewall() {
    for cache in [true, false] {
        let mut p = pipe();
        p.set_cache_enabled(cache);
        firewall(&mut p);
        let a = [10, 0, 0, 1];
        let b = [10, 0, 0, 2];
        // Port 2 cannot open a connection.
        assert!(run(&mut p, 2, &udp(b, a, 53, 5000)).0.is_empty());
        assert!(p.conntrack.is_empty());
        // Port 1 can; the reply and further traffic flow.
        for _ in 0..3 {
            let (o, _) = run(&mut p, 1, &udp(a, b, 5000, 53));
            assert_eq!(ports_of(&o), vec![2]);
            let (o, _) = run(&mut p, 2, &udp(b, a, 53, 5000));
            assert_eq!(ports_of(&o), vec![1]);
        }
        assert_eq!(p.conntrack.len(), 1);
        assert_eq!(p.conntrack.dump(Some(5), t0()).len(), 1);
        // TCP: SYN, SYN+ACK, ACK.
        let (o, _) = run(&mut p, 1, &tcp_flags(a, b, 40000, 80, true, None));
        assert_eq!(ports_of(&o), vec![2]);
        let (o, _) = run(&mut p, 2, &tcp_flags(b, a, 80, 40000, true, Some(1001)));
        assert_eq!(ports_of(&o), vec![1]);
        // An unsolicited SYN+ACK from port 2 is invalid: dropped.
        assert!(
            run(&mut p, 2, &tcp_flags(b, a, 81, 40000, true, Some(1)))
                .0
                .is_empty()
        );
        assert_eq!(p.conntrack.len(), 2);
        assert!(p.counters.recirculations > 0);
    }
}

#[test]
fn ct_fields_visible_after_recirculation_and_cleared_in_other_fork() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,ip,ct_state=-trk,actions=ct(table=1,zone=7,commit,exec(set_field:0x2a->ct_mark)),output:4",
    );
    add(
        &mut p,
        "table=1,ip,ct_state=+trk+new,ct_zone=7,ct_mark=0x2a,ct_nw_src=10.0.0.1,ct_nw_proto=17,ct_tp_dst=53,actions=output:2",
    );
    add(
        &mut p,
        "table=1,ip,ct_state=+trk+est,ct_mark=0x2a,actions=output:3",
    );
    // OVS forks: the recirculated copy goes to table 1, the original
    // continues untracked (output:4).
    let (o, _) = run(&mut p, 1, &udp([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53));
    assert_eq!(ports_of(&o), vec![2, 4]);
    // The second original-direction UDP packet is still +new (OVS's
    // first → multiple), the third +est.
    let (o, _) = run(&mut p, 1, &udp([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53));
    assert_eq!(ports_of(&o), vec![2, 4]);
    let (o, _) = run(&mut p, 1, &udp([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53));
    assert_eq!(ports_of(&o), vec![3, 4]);
    // ct_clear resets the fields.
    add(
        &mut p,
        "table=1,priority=200,ip,ct_state=+trk,nw_src=10.0.0.9,actions=ct_clear,resubmit(,2)",
    );
    add(&mut p, "table=2,ip,ct_state=-trk,actions=output:1");
    let (o, _) = run(&mut p, 2, &udp([10, 0, 0, 9], [10, 0, 0, 2], 1, 2));
    assert_eq!(ports_of(&o), vec![1, 4]);
}

#[test]
fn ct_dnat_load_balancer_and_reply_unnat() {
    for cache in [true, false] {
        let mut p = pipe();
        p.set_cache_enabled(cache);
        add(
            &mut p,
            "table=0,ip,ct_state=-trk,actions=ct(table=1,zone=1,nat)",
        );
        add(
            &mut p,
            "table=1,in_port=1,tcp,nw_dst=10.0.0.100,tp_dst=80,ct_state=+trk+new,actions=ct(commit,zone=1,nat(dst=10.0.0.10:8080)),output:2",
        );
        add(
            &mut p,
            "table=1,in_port=1,ip,ct_state=+trk+est,actions=output:2",
        );
        add(
            &mut p,
            "table=1,in_port=2,ip,ct_state=+trk+est,actions=output:1",
        );
        let client = [10, 0, 0, 1];
        let vip = [10, 0, 0, 100];
        let be = [10, 0, 0, 10];
        let (o, _) = run(&mut p, 1, &tcp_flags(client, vip, 40000, 80, true, None));
        assert_eq!(ports_of(&o), vec![2]);
        let f = &o[0].1;
        assert_eq!(&f[30..34], &be);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 8080);
        assert_checksums_ok(f);
        // The backend's reply leaves towards the client from the VIP.
        let (o, _) = run(
            &mut p,
            2,
            &tcp_flags(be, client, 8080, 40000, true, Some(1001)),
        );
        assert_eq!(ports_of(&o), vec![1]);
        let f = &o[0].1;
        assert_eq!(&f[26..30], &vip);
        assert_eq!(u16::from_be_bytes([f[34], f[35]]), 80);
        assert_checksums_ok(f);
        // Established client traffic keeps being DNATed (bare nat in table 0).
        let (o, _) = run(
            &mut p,
            1,
            &tcp_flags(client, vip, 40000, 80, false, Some(1001)),
        );
        assert_eq!(ports_of(&o), vec![2]);
        assert_eq!(&o[0].1[30..34], &be);
        let d = p.conntrack.dump(None, t0());
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "tcp,orig=(src=10.0.0.1,dst=10.0.0.100,sport=40000,dport=80),reply=(src=10.0.0.10,dst=10.0.0.1,sport=8080,dport=40000),zone=1,protoinfo=(state=ESTABLISHED)"
        );
    }
}

/// Service load balancing as the controller compiles it: new connections
/// pick a backend through a select group of `ct(commit,nat(dst=…))` buckets,
/// established ones go through conntrack only. After a bucket is removed,
/// every established connection (also those on the removed backend) keeps
/// its backend, and new connections never pick the removed one.
#[test]
fn lb_established_connections_keep_their_backend_across_bucket_changes() {
    let mut p = Pipeline::new(16);
    p.set_ports(&ports(4));
    let bucket = |ip: &str, port: u32| {
        format!("bucket=weight:1,actions=ct(commit,zone=1,nat(dst={ip}:8080)),output:{port}")
    };
    let three = format!(
        "group_id=1,type=select,{},{},{}",
        bucket("10.0.0.11", 2),
        bucket("10.0.0.12", 3),
        bucket("10.0.0.13", 4)
    );
    group(&mut p, &three, GroupModCommand::Add).unwrap();
    add(
        &mut p,
        "table=0,ip,ct_state=-trk,actions=ct(table=1,zone=1,nat)",
    );
    add(
        &mut p,
        "table=1,in_port=1,tcp,nw_dst=10.0.0.100,tp_dst=80,ct_state=+trk+new,actions=group:1",
    );
    for (ip, port) in [("10.0.0.11", 2), ("10.0.0.12", 3), ("10.0.0.13", 4)] {
        add(
            &mut p,
            &format!("table=1,in_port=1,ip,nw_dst={ip},ct_state=+trk+est,actions=output:{port}"),
        );
        add(
            &mut p,
            &format!("table=1,in_port={port},ip,ct_state=+trk+est,actions=output:1"),
        );
    }
    let client = [10, 0, 0, 1];
    let vip = [10, 0, 0, 100];
    // 300 connections: SYN → backend, SYN-ACK back (establishes the entry).
    let mut backend_of = Vec::new();
    for i in 0..300u16 {
        let sport = 20000 + i;
        let (o, _) = run(&mut p, 1, &tcp_flags(client, vip, sport, 80, true, None));
        assert_eq!(o.len(), 1, "connection {i}");
        let (port, f) = (o[0].0, o[0].1.clone());
        let be: [u8; 4] = f[30..34].try_into().unwrap();
        let (r, _) = run(
            &mut p,
            port,
            &tcp_flags(be, client, 8080, sport, true, Some(1001)),
        );
        assert_eq!(ports_of(&r), vec![1], "reply of connection {i}");
        assert_eq!(&r[0].1[26..30], &vip, "reply comes from the VIP");
        backend_of.push(port);
    }
    for port in [2, 3, 4] {
        assert!(
            backend_of.iter().filter(|&&b| b == port).count() > 50,
            "{backend_of:?}"
        );
    }
    // Remove the backend on port 3.
    let two = format!(
        "group_id=1,type=select,{},{}",
        bucket("10.0.0.11", 2),
        bucket("10.0.0.13", 4)
    );
    group(&mut p, &two, GroupModCommand::Modify).unwrap();
    for (i, &port) in backend_of.iter().enumerate() {
        let sport = 20000 + i as u16;
        let (o, _) = run(
            &mut p,
            1,
            &tcp_flags(client, vip, sport, 80, false, Some(1001)),
        );
        assert_eq!(ports_of(&o), vec![port], "established connection {i} moved");
    }
    // New connections avoid the removed backend.
    for i in 0..200u16 {
        let (o, _) = run(
            &mut p,
            1,
            &tcp_flags(client, vip, 40000 + i, 80, true, None),
        );
        assert_eq!(o.len(), 1);
        assert_ne!(o[0].0, 3, "new connection {i} went to the removed backend");
    }
}

#[test]
fn ct_snat_port_range_many_connections() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,in_port=1,ip,actions=ct(commit,zone=2,nat(src=192.168.0.1-192.168.0.2:5000-5099)),output:2",
    );
    add(
        &mut p,
        "table=0,in_port=2,ip,actions=ct(table=1,zone=2,nat)",
    );
    add(&mut p, "table=1,ip,ct_state=+trk+est+rpl,actions=output:1");
    let server = [10, 1, 0, 1];
    let mut seen = std::collections::HashSet::new();
    for i in 0..250u32 {
        let client = [10, 0, (i >> 8) as u8, i as u8];
        let (o, _) = run(&mut p, 1, &udp(client, server, 1234, 53));
        if i < 200 {
            assert_eq!(ports_of(&o), vec![2], "conn {i}");
            let f = &o[0].1;
            let src: [u8; 4] = f[26..30].try_into().unwrap();
            let sport = u16::from_be_bytes([f[34], f[35]]);
            assert!(src == [192, 168, 0, 1] || src == [192, 168, 0, 2]);
            assert!((5000..5100).contains(&sport));
            assert!(seen.insert((src, sport)), "duplicate {src:?}:{sport}");
            assert_checksums_ok(f);
            // The reply finds its way back to the right client.
            let (r, _) = run(&mut p, 2, &udp(server, src, 53, sport));
            assert_eq!(ports_of(&r), vec![1]);
            assert_eq!(&r[0].1[30..34], &client);
            assert_eq!(u16::from_be_bytes([r[0].1[36], r[0].1[37]]), 1234);
        } else {
            // 2 addresses × 100 ports exhausted: not committed, not NATed.
            assert_eq!(&o[0].1[26..30], &client);
        }
    }
    assert_eq!(p.conntrack.len(), 200);
    assert_eq!(p.conntrack.counters.nat_exhausted, 50);
}

#[test]
fn ct_table_full_drops_new_keeps_existing() {
    let mut p = pipe();
    firewall(&mut p);
    p.conntrack.set_zone_limit(5, Some(2));
    let b = [10, 0, 0, 2];
    for i in 0..4u8 {
        let (o, _) = run(&mut p, 1, &udp([10, 0, 0, 1], b, 100 + i as u16, 53));
        assert_eq!(o.is_empty(), i >= 2, "conn {i}");
    }
    assert_eq!(p.counters.ct_drops, 2);
    let (o, _) = run(&mut p, 2, &udp(b, [10, 0, 0, 1], 53, 100));
    assert_eq!(ports_of(&o), vec![1]);
}

#[test]
fn ct_validation_errors() {
    let mut p = pipe();
    let bad = |p: &mut Pipeline, s: &str| fm(p, s, FlowModCommand::Add).unwrap_err();
    use BadActionCode as B;
    assert_eq!(
        bad(&mut p, "table=0,actions=ct(table=1)"),
        OfpError::BadAction(B::MatchInconsistent)
    );
    assert_eq!(
        bad(&mut p, "table=0,ip,actions=nat(src=10.0.0.1)"),
        OfpError::BadAction(B::BadSetArgument)
    );
    assert_eq!(
        bad(&mut p, "table=0,ip,actions=set_field:1->ct_mark"),
        OfpError::BadAction(B::BadSetArgument)
    );
    assert_eq!(
        bad(&mut p, "table=0,ip,actions=ct(exec(set_field:1->ct_mark))"),
        OfpError::BadAction(B::BadArgument)
    );
    assert_eq!(
        bad(&mut p, "table=0,ipv6,actions=ct(commit,nat(src=10.0.0.1))"),
        OfpError::BadAction(B::MatchInconsistent)
    );
    fm(&mut p, "table=0,ip,actions=ct(commit,zone=NXM_NX_REG0[0..15],exec(set_field:1->ct_mark,set_field:2->ct_label)),ct_clear", FlowModCommand::Add).unwrap();
}

#[test]
fn ct_zone_from_register_and_cache_keys_on_metadata() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,in_port=1,ip,actions=set_field:7->reg0,goto_table:1",
    );
    add(
        &mut p,
        "table=0,in_port=2,ip,actions=set_field:8->reg0,goto_table:1",
    );
    add(
        &mut p,
        "table=1,ip,actions=ct(commit,zone=NXM_NX_REG0[0..15],table=2)",
    );
    add(&mut p, "table=2,ct_zone=7,reg0=7,actions=output:3");
    add(&mut p, "table=2,ct_zone=8,reg0=8,actions=output:4");
    let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    for _ in 0..2 {
        assert_eq!(ports_of(&run(&mut p, 1, &f).0), vec![3]);
        assert_eq!(ports_of(&run(&mut p, 2, &f).0), vec![4]);
    }
    assert_eq!(p.conntrack.zone_count(7), 1);
    assert_eq!(p.conntrack.zone_count(8), 1);
}

// ---- os-ken OpenFlow 1.3 switch tester cases (ingress/egress bytes as the
// tester's `packet.Packet(...).serialize()` builds them; see BENCHMARKS.md).

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Installs `flows`, sends `ingress` on port 1 twice (slow path, then the
/// cached translation) and expects exactly `egress` on port 2 both times.
fn tester_case(flows: &[&str], ingress: &str, egress: &str) {
    let mut p = pipe();
    for f in flows {
        add(&mut p, f);
    }
    tester_case_on(p, flows, ingress, egress);
}

/// Same, with `flow` (text) getting an OpenFlow `set_field` of `set` in
/// front of its apply-actions (for fields the ovs-ofctl text syntax calls
/// read-only while OpenFlow 1.3 `OFPAT_SET_FIELD` may write them).
fn tester_case_set(flow: &str, set: MatchField, ingress: &str, egress: &str) {
    let mut p = pipe();
    let mut m = parse_flow_mod(flow, FlowModCommand::Add).expect("flow");
    match m.instructions.first_mut() {
        Some(Instruction::ApplyActions(a)) => a.insert(0, Action::SetField(set)),
        other => panic!("{other:?}"),
    }
    p.flow_mod(&m, t0()).expect("flow_mod");
    tester_case_on(p, &[flow], ingress, egress);
}

fn tester_case_on(mut p: Pipeline, flows: &[&str], ingress: &str, egress: &str) {
    let (ing, eg) = (unhex(ingress), unhex(egress));
    for round in 0..2 {
        let (o, pins) = run(&mut p, 1, &ing);
        assert!(pins.is_empty(), "{flows:?} round {round}: packet-in");
        assert_eq!(ports_of(&o), [2], "{flows:?} round {round}");
        assert_eq!(
            o[0].1
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            egress,
            "{flows:?} round {round}"
        );
        assert_eq!(o[0].1, eg);
    }
}

const TCP4: &str = "22222222222212111111111108004520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const MPLS_TCP4: &str = "2222222222221211111111118847000647404520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[test]
fn tester_push_mpls_new_entry_defaults() {
    // action/19_PUSH_MPLS: on IP, label 0, TC 0 (not the IP precedence), TTL copied.
    tester_case(
        &["eth_type=0x0800,actions=push_mpls:0x8847,output:2"],
        TCP4,
        "2222222222221211111111118847000001404520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    // ARP: no TTL to copy, so 0.
    tester_case(
        &["eth_type=0x0806,actions=push_mpls:0x8847,output:2"],
        "22222222222212111111111108060001080006040001121111111111c0a80a0a222222222222c0a81414000000000000000000000000000000000000",
        "2222222222221211111111118847000001000001080006040001121111111111c0a80a0a222222222222c0a81414000000000000000000000000000000000000",
    );
    // 19_PUSH_MPLS (multiple): the new entry copies label, TC and TTL of the outer one, BoS 0.
    tester_case(
        &["eth_type=0x8847,actions=push_mpls:0x8847,output:2"],
        MPLS_TCP4,
        "222222222222121111111111884700064640000647404520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
}

#[test]
fn tester_set_field_eth_type_ip_proto_mpls_bos() {
    // set_field/05_ETH_TYPE: a plain rewrite of the ethertype.
    tester_case_set(
        "eth_type=0x0800,actions=output:2",
        MatchField::exact(FieldId::EthType, 0x8848),
        TCP4,
        "22222222222212111111111188484520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    // 10_IP_PROTO (IPv4): IP checksum and the TCP pseudo-header share updated.
    tester_case_set(
        "ip,ip_proto=6,actions=output:2",
        MatchField::exact(FieldId::IpProto, 17),
        TCP4,
        "22222222222212111111111108004520004b000000004011db13c0a80a0ac0a814142b6708ae000000000000000060000000cb410000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    // 10_IP_PROTO (IPv6): next header and the TCP checksum.
    tester_case_set(
        "ipv6,ip_proto=6,actions=output:2",
        MatchField::exact(FieldId::IpProto, 17),
        "22222222222212111111111186dd620000640037064000100000000000000000000000000010002000000000000000000000000000202b6708ae0000000000000000600000006a5c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "22222222222212111111111186dd620000640037114000100000000000000000000000000010002000000000000000000000000000202b6708ae0000000000000000600000006a510000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    // 36_MPLS_BOS.
    tester_case_set(
        "mpls,mpls_bos=1,actions=output:2",
        MatchField::exact(FieldId::MplsBos, 0),
        MPLS_TCP4,
        "2222222222221211111111118847000646404520004b000000004006db1ec0a80a0ac0a814142b6708ae000000000000000060000000cb4c0000000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    // NX reg_load keeps OVS's rule: these fields are not writable there.
    let mut p = pipe();
    let mut m = parse_flow_mod("ip,actions=output:2", FlowModCommand::Add).expect("flow");
    if let Some(Instruction::ApplyActions(a)) = m.instructions.first_mut() {
        a.insert(
            0,
            Action::RegLoad {
                dst: Subfield {
                    field: FieldId::IpProto,
                    ofs: 0,
                    n_bits: 8,
                },
                value: 17,
            },
        );
    }
    assert_eq!(
        p.flow_mod(&m, t0()),
        Err(OfpError::BadAction(BadActionCode::BadSetArgument))
    );
}

#[test]
fn tester_set_field_nd_target_sll_tll() {
    // set_field/31_IPV6_ND_TARGET: target rewritten, ICMPv6 checksum updated.
    tester_case(
        &["icmp6,icmpv6_type=135,nd_target=20::20,actions=set_field:a0::a0->nd_target,output:2"],
        "22222222222212111111111186dd6200006400203a400010000000000000000000000000001000200000000000000000000000000020870042d100000000002000000000000000000000000000200101121111111111",
        "22222222222212111111111186dd6200006400203a400010000000000000000000000000001000200000000000000000000000000020870041d10000000000a000000000000000000000000000a00101121111111111",
    );
    // 32_IPV6_ND_SLL: the source link-layer address option.
    tester_case(
        &[
            "icmp6,icmpv6_type=135,nd_sll=22:22:22:22:22:22,actions=set_field:aa:aa:aa:aa:aa:aa->nd_sll,output:2",
        ],
        "22222222222212111111111186dd6200006400203a4000100000000000000000000000000010002000000000000000000000000000208700109e00000000002000000000000000000000000000200101222222222222",
        "22222222222212111111111186dd6200006400203a4000100000000000000000000000000010002000000000000000000000000000208700770400000000002000000000000000000000000000200101aaaaaaaaaaaa",
    );
    // 33_IPV6_ND_TLL: the target link-layer address option of an advertisement.
    tester_case(
        &[
            "icmp6,icmpv6_type=136,nd_tll=22:22:22:22:22:22,actions=set_field:aa:aa:aa:aa:aa:aa->nd_tll,output:2",
        ],
        "22222222222212111111111186dd6200006400203a40001000000000000000000000000000100020000000000000000000000000002088000e9e00000000002000000000000000000000000000200201222222222222",
        "22222222222212111111111186dd6200006400203a4000100000000000000000000000000010002000000000000000000000000000208800750400000000002000000000000000000000000000200201aaaaaaaaaaaa",
    );
}

#[test]
fn tester_pop_mpls_pads_short_frame_to_60() {
    // match/19_ICMPV4_TYPE (mpls): 60-byte frame, pop_mpls leaves 56; the
    // tester expects the 60-byte minimum frame (zero padding).
    tester_case(
        &[
            "eth_type=0x8847,actions=pop_mpls:0x0800,goto_table:1",
            "table=1,icmp,icmp_type=8,actions=output:2",
        ],
        "22222222222212111111111188470006474045200024000000004001db4ac0a80a0ac0a81414080059da000000000123456789abcdef000000000000",
        "222222222222121111111111080045200024000000004001db4ac0a80a0ac0a81414080059da000000000123456789abcdef00000000000000000000",
    );
}

#[test]
fn conjunction_flows_through_the_pipeline_and_bad_mixes_are_rejected() {
    let mut p = pipe();
    // Security-group shape: in_port {1,2} × nw_src {10.0.0.1} × tcp/80.
    add(&mut p, "priority=0,actions=drop");
    add(&mut p, "priority=100,in_port=1,actions=conjunction(9,1/3)");
    add(&mut p, "priority=100,in_port=2,actions=conjunction(9,1/3)");
    add(
        &mut p,
        "priority=100,ip,nw_src=10.0.0.1,actions=conjunction(9,2/3),conjunction(10,1/2)",
    );
    add(
        &mut p,
        "priority=100,tcp,tp_dst=80,actions=conjunction(9,3/3)",
    );
    add(&mut p, "priority=100,conj_id=9,ip,actions=output:3");
    let (o, _) = run(&mut p, 1, &tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 64));
    assert_eq!(ports_of(&o), vec![3]);
    // Second packet of the same megaflow, from the cache.
    let (o, _) = run(&mut p, 2, &tcp([10, 0, 0, 1], [10, 0, 0, 2], 1235, 80, 64));
    assert_eq!(ports_of(&o), vec![3]);
    // One clause missing each time: dropped.
    for (inp, src, dport) in [
        (3, [10, 0, 0, 1], 80),
        (1, [10, 0, 0, 7], 80),
        (1, [10, 0, 0, 1], 81),
    ] {
        let (o, _) = run(&mut p, inp, &tcp(src, [10, 0, 0, 2], 1234, dport, 64));
        assert!(o.is_empty(), "{inp} {src:?} {dport}: {o:?}");
    }
    // Removing a clause's flow ends the conjunction (cache invalidated).
    fm(
        &mut p,
        "priority=100,tcp,tp_dst=80",
        FlowModCommand::DeleteStrict,
    )
    .unwrap();
    let (o, _) = run(&mut p, 1, &tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 64));
    assert!(o.is_empty());
    // OVS: a conjunction flow has nothing but conjunction actions.
    for bad in [
        "priority=100,in_port=1,actions=conjunction(9,1/3),output:2",
        "priority=100,in_port=1,actions=write_actions(conjunction(9,1/3))",
    ] {
        assert_eq!(
            fm(&mut p, bad, FlowModCommand::Add),
            Err(OfpError::BadAction(BadActionCode::BadArgument)),
            "{bad}"
        );
    }
}

/// The soak's churn in miniature: a table change every round (a generation
/// bump) and new connections whose megaflows differ (the lookup examines
/// `tp_src`). Stale and idle megaflows must be swept by `expire` (the
/// datapath's housekeeping), or the caches grow by every connection of every
/// round until 65,536 entries each — what made plexus-vswitchd's RSS rise in
/// the soak.
#[test]
fn megaflow_caches_are_swept_under_churn() {
    let mut p = pipe();
    add(
        &mut p,
        "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=5)",
    );
    add(&mut p, "table=1,priority=200,udp,tp_src=7,actions=drop");
    add(
        &mut p,
        "table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit,zone=5),output:2",
    );
    add(
        &mut p,
        "table=1,priority=100,ip,ct_state=+trk+est,actions=output:2",
    );
    let t = t0();
    let (mut most, mut emc_most) = (0, 0);
    for round in 0..200u16 {
        let now = t + Duration::from_secs(u64::from(round));
        add(
            &mut p,
            &format!("table=5,priority=1,reg0={round},actions=drop"),
        );
        for k in 0..10 {
            let (o, _) = run_at(
                &mut p,
                1,
                &udp([10, 0, 0, 1], [10, 0, 0, 2], 10_000 + round * 10 + k, 53),
                now,
            );
            assert_eq!(ports_of(&o), vec![2]);
        }
        most = most.max(p.cache_len() + p.recirc_cache_len());
        emc_most = emc_most.max(
            p.cache.emc.occupied()
                + p.recirc_cache
                    .iter()
                    .flatten()
                    .map(|c| c.emc.occupied())
                    .sum::<usize>(),
        );
        p.expire(now);
    }
    // The exact-match caches too: stale and idle slots are emptied (each
    // pinned its compiled actions until overwritten).
    assert!(
        emc_most <= 6 * 22,
        "{emc_most} EMC slots occupied at the peak"
    );
    // Sweeps every CACHE_SWEEP (5 s = 5 rounds here): at most the entries of
    // the rounds since the last sweep (≤ 11 per round), never 2,000+.
    assert!(
        most <= 6 * 11,
        "{most} megaflows cached at the peak (stale and idle ones kept)"
    );
    // A flow that keeps hitting stays cached across sweeps.
    let hot = udp([10, 0, 0, 1], [10, 0, 0, 2], 999, 53);
    let t1 = t + Duration::from_secs(300);
    for s in 0..30u64 {
        let now = t1 + Duration::from_millis(500 * s);
        for _ in 0..100 {
            run_at(&mut p, 1, &hot, now);
        }
        p.expire(now);
    }
    let misses = p.counters.cache_misses;
    run_at(&mut p, 1, &hot, t1 + Duration::from_secs(15));
    assert_eq!(p.counters.cache_misses, misses, "the hot flow was swept");
}
