//! The test controller (`plexus_tests::controller`, built on `plexus-openflow`)
//! drives a real userspace Open vSwitch: flows with NX extensions, groups and
//! meters installed over our codec and read back with our multipart requests
//! must print exactly as `ovs-ofctl -O OpenFlow13 dump-*` prints the same
//! tables; errors OVS returns decode to the right `OfpError`; packet-out in,
//! packet-in (NXT_PACKET_IN2) out. Needs root and Open vSwitch.

use plexus_openflow::error::{
    BadActionCode, BadInstructionCode, BadMatchCode, FlowModFailedCode, GroupModFailedCode,
    MeterModFailedCode,
};
use plexus_openflow::message::{FlowModCommand, GroupModCommand, MeterModCommand};
use plexus_openflow::oxm::FieldId;
use plexus_openflow::text::flow::{
    parse_flow_mod, parse_group_mod, parse_meter_mod, strip_flow_stats,
};
use plexus_openflow::{Message, OfpError};
use plexus_tests::controller::{ControllerListener, Switch, ofctl_entries, ofctl_meter_entries};
use plexus_tests::ovs::Ovs;
use plexus_tests::{require_root, require_tool};
use std::collections::BTreeSet;
use std::time::Duration;

fn prereqs() -> bool {
    require_tool("ovs-vswitchd")
        && require_tool("ovsdb-server")
        && require_tool("ovs-ofctl")
        && require_tool("socat")
        && require_tool("ip")
        && require_root()
}

/// A private OVS whose bridge connects to our controller.
fn switch(dpid: u64) -> (Ovs, Switch) {
    let l = ControllerListener::bind().expect("listen");
    let ovs = Ovs::builder()
        .dpid(dpid)
        .controller(&l.target())
        .start()
        .expect("start OVS");
    let sw = l.accept(Duration::from_secs(20)).expect("switch connects");
    assert_eq!(sw.datapath_id(), dpid);
    (ovs, sw)
}

const METERS: &[&str] = &[
    "meter=1,kbps,band=type=drop,rate=1000",
    "meter=2,pktps,burst,stats,band=type=drop,rate=100,burst_size=20",
    "meter=3,kbps,burst,band=type=drop,rate=2000,burst_size=500",
    "meter=4,pktps,band=type=drop,rate=10",
];

const GROUPS: &[&str] = &[
    "group_id=1,type=all,bucket=output:1,bucket=output:2",
    "group_id=2,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=output:2",
    "group_id=3,type=indirect,bucket=actions=set_field:00:00:00:00:00:02->eth_dst,output:3",
    "group_id=4,type=ff,bucket=watch_port:1,actions=output:1,bucket=watch_port:2,actions=output:2",
    "group_id=5,type=all,bucket=actions=group:3,bucket=actions=resubmit(,10)",
];

const FLOWS: &[&str] = &[
    "priority=100,in_port=1,actions=output:2",
    "priority=100,in_port=2,actions=output:1",
    "priority=90,ip,nw_src=10.0.0.0/24,actions=load:0x5->NXM_NX_REG0[],goto_table:10",
    "priority=80,arp,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],resubmit(,5)",
    "priority=70,tcp,tp_dst=80,actions=ct(commit,zone=5,nat(dst=10.0.0.2:80)),resubmit(,20)",
    "priority=70,tcp,tp_dst=443,actions=ct(table=30,zone=NXM_NX_REG1[0..15])",
    "priority=60,ct_state=+est+trk,ip,actions=output:3",
    "priority=60,ct_state=-new+trk,ct_zone=5,tcp,actions=output:4",
    "priority=50,udp,tp_dst=53,actions=learn(table=40,idle_timeout=60,priority=10,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),output:5",
    "priority=40,ip,nw_dst=192.168.1.1,actions=conjunction(1,1/2)",
    "priority=40,tcp,tp_dst=22,actions=conjunction(1,2/2)",
    "priority=40,conj_id=1,ip,actions=output:6",
    "priority=30,dl_type=0x88cc,actions=controller(userdata=01.02.03)",
    "priority=30,ip,nw_ttl=1,actions=dec_ttl,output:2",
    "priority=20,actions=note:de.ad.be.ef",
    "priority=25,ip,actions=write_metadata:0x1234/0xffff,goto_table:1",
    "priority=24,udp,tp_dst=4789,actions=set_field:0x64->tun_id,output:7",
    "priority=23,ipv6,actions=set_field:fe80::1->ipv6_src,output:8",
    "priority=22,dl_vlan=10,actions=pop_vlan,output:9",
    "priority=21,in_port=9,actions=push_vlan:0x8100,set_field:4106->vlan_vid,output:1",
    "priority=19,reg0=0x5,actions=group:1",
    "priority=18,reg1=0x10/0xf0,actions=meter:1,output:3",
    "priority=17,tcp6,tp_src=1000,actions=clear_actions",
    "priority=16,icmp,icmp_type=8,actions=write_actions(output:3)",
    "priority=15,dl_src=00:11:22:33:44:55,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop",
    "priority=14,tun_id=0x5,actions=move:NXM_NX_TUN_ID[0..15]->NXM_NX_REG2[0..15],resubmit(10,20)",
    "priority=13,pkt_mark=0x1,actions=set_field:0x2->pkt_mark,ct_clear,output:in_port",
    "priority=12,ct_mark=0x1/0x1,actions=output:NXM_NX_REG3[0..15]",
    "priority=11,udp,actions=ct(commit,zone=7,exec(set_field:0x1->ct_mark),nat(src=10.1.0.1-10.1.0.10:1000-2000,random))",
    "cookie=0x42,priority=10,ip,nw_dst=10.9.0.0/16,idle_timeout=30,hard_timeout=60,actions=output:2",
    "priority=8,sctp,tp_dst=5000,actions=set_field:5001->sctp_dst,output:3",
    "priority=7,tcp,tcp_flags=+syn-ack,actions=output:4",
    "priority=6,metadata=0x1/0xff,actions=output:5",
    "priority=5,ipv6,ipv6_dst=2001:db8::/32,actions=dec_ttl,output:6",
    "priority=4,arp,arp_op=1,arp_tpa=10.0.0.1,actions=set_field:2->arp_op,output:in_port",
    "priority=3,reg5=0x7,actions=meter:2,group:2",
    "priority=2,reg6=0x1,actions=group:4",
    "table=1,priority=0,actions=drop",
    "table=5,priority=1,ip,actions=mod_nw_dst:10.0.0.1,output:1",
    "table=5,priority=2,arp,actions=output:NXM_NX_REG0[0..15]",
    "table=10,priority=10,reg0=0x5,actions=mod_dl_src:00:00:00:00:00:01,resubmit(,20)",
    "table=20,priority=0,actions=CONTROLLER:128",
    "table=30,priority=10,ct_state=+new+trk,tcp,actions=ct(commit,zone=5),output:2",
    "table=40,priority=0,actions=resubmit(,41)",
    "table=41,priority=0,actions=group:5",
];

fn sorted(v: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

fn assert_same(what: &str, ours: &BTreeSet<String>, theirs: &BTreeSet<String>) {
    let only_ours: Vec<_> = ours.difference(theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{what} differ\n  only in our dump:\n    {}\n  only in ovs-ofctl's:\n    {}",
        only_ours
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n    "),
        only_theirs
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n    ")
    );
}

#[test]
fn flows_groups_meters_read_back_as_ovs_ofctl_prints_them() {
    if !prereqs() {
        return;
    }
    let (ovs, sw) = switch(0x5eed);
    for m in METERS {
        sw.add_meter(m).unwrap_or_else(|e| panic!("{e:#}"));
    }
    for g in GROUPS {
        sw.add_group(g).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let (bundled, single) = FLOWS.split_at(FLOWS.len() / 2);
    sw.add_flows(bundled).unwrap_or_else(|e| panic!("{e:#}"));
    sw.add_flows_unbundled(single)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let ours = sorted(sw.dump_flows().unwrap().iter().map(|l| strip_flow_stats(l)));
    assert_eq!(ours.len(), FLOWS.len(), "flows in our dump: {ours:#?}");
    let dump = ovs.ofctl(&["dump-flows"]).unwrap();
    let theirs = sorted(ofctl_entries(&dump).iter().map(|l| strip_flow_stats(l)));
    assert_same("flows", &ours, &theirs);
    // The --no-stats form too.
    let ours_ns = sorted(
        sw.flow_stats()
            .unwrap()
            .iter()
            .map(|f| plexus_openflow::text::flow::format_flow_stats(f, false)),
    );
    let theirs_ns = sorted(ofctl_entries(
        &ovs.ofctl(&["--no-stats", "dump-flows"]).unwrap(),
    ));
    assert_same("flows (--no-stats)", &ours_ns, &theirs_ns);

    let ours = sorted(sw.dump_groups().unwrap());
    assert_eq!(ours.len(), GROUPS.len());
    let theirs = sorted(ofctl_entries(&ovs.ofctl(&["dump-groups"]).unwrap()));
    assert_same("groups", &ours, &theirs);

    // Group statistics: ids, reference counts (flows using the group) and
    // bucket counts as `dump-group-stats` reports them.
    let ours = sorted(sw.group_stats().unwrap().iter().map(|g| {
        format!(
            "group_id={},ref_count={},packet_count={},buckets={}",
            g.group_id,
            g.ref_count,
            g.packet_count,
            g.bucket_stats.len()
        )
    }));
    assert_eq!(ours.len(), GROUPS.len());
    let stats = ovs.ofctl(&["dump-group-stats"]).unwrap();
    let theirs = sorted(ofctl_entries(&stats).iter().map(|l| {
        let field = |k: &str| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix(k))
                .unwrap_or("?")
                .to_owned()
        };
        format!(
            "group_id={},ref_count={},packet_count={},buckets={}",
            field("group_id="),
            field("ref_count="),
            field("packet_count="),
            l.matches("bucket").count()
        )
    }));
    assert_same("group stats", &ours, &theirs);

    let ours = sorted(sw.dump_meters().unwrap());
    assert_eq!(ours.len(), METERS.len());
    let theirs = sorted(ofctl_meter_entries(&ovs.ofctl(&["dump-meters"]).unwrap()));
    assert_same("meters", &ours, &theirs);

    sw.close();
    ovs.stop().unwrap();
}

fn flow(s: &str) -> plexus_openflow::message::FlowMod {
    parse_flow_mod(s, FlowModCommand::Add).unwrap()
}

/// Sends `msg`, expects OVS to reject it with `want`, and checks the
/// connection is still usable (a barrier is answered).
fn expect_error(sw: &Switch, what: &str, msg: &Message, want: OfpError) {
    let got = sw.send_checked(msg).expect("connection");
    assert_eq!(got, Err(want), "{what}");
    sw.barrier()
        .unwrap_or_else(|e| panic!("barrier after {what}: {e:#}"));
}

#[test]
fn errors_from_ovs_decode_to_the_right_variant() {
    if !prereqs() {
        return;
    }
    let (ovs, sw) = switch(0xe770);

    // goto_table to a lower table.
    let mut fm = flow("table=5,priority=1,actions=goto_table:6");
    fm.instructions = vec![plexus_openflow::Instruction::GotoTable(2)];
    expect_error(
        &sw,
        "goto_table backwards",
        &Message::FlowMod(fm),
        OfpError::BadInstruction(BadInstructionCode::BadTableId),
    );

    // Output to a group that does not exist.
    expect_error(
        &sw,
        "group:99",
        &Message::FlowMod(flow("priority=1,actions=group:99")),
        OfpError::BadAction(BadActionCode::BadOutGroup),
    );

    // Adding an existing group.
    sw.add_group(GROUPS[0]).unwrap();
    let g = parse_group_mod(GROUPS[0], GroupModCommand::Add).unwrap();
    expect_error(
        &sw,
        "group exists",
        &Message::GroupMod(g),
        OfpError::GroupModFailed(GroupModFailedCode::GroupExists),
    );

    // Modifying a meter that does not exist.
    let m = parse_meter_mod(
        "meter=77,kbps,band=type=drop,rate=10",
        MeterModCommand::Modify,
    )
    .unwrap();
    expect_error(
        &sw,
        "modify unknown meter",
        &Message::MeterMod(m),
        OfpError::MeterModFailed(MeterModFailedCode::UnknownMeter),
    );

    // A dscp_remark band: the userspace datapath only implements drop bands.
    let m = parse_meter_mod(
        "meter=8,kbps,band=type=dscp_remark,rate=100,prec_level=1",
        MeterModCommand::Add,
    )
    .unwrap();
    expect_error(
        &sw,
        "dscp_remark band",
        &Message::MeterMod(m),
        OfpError::MeterModFailed(MeterModFailedCode::BadBand),
    );

    // A flow that uses a meter that does not exist: OVS says INVALID_METER
    // (not UNKNOWN_METER, which it keeps for meter-mods).
    expect_error(
        &sw,
        "meter:55",
        &Message::FlowMod(flow("priority=1,actions=meter:55,output:1")),
        OfpError::MeterModFailed(MeterModFailedCode::InvalidMeter),
    );

    // Adding to table 255 (OFPTT_ALL), which our parser refuses.
    let mut fm = flow("priority=1,actions=drop");
    fm.table_id = 255;
    expect_error(
        &sw,
        "add to table 255",
        &Message::FlowMod(fm),
        OfpError::FlowModFailed(FlowModFailedCode::BadTableId),
    );

    // A match without its prerequisite (tcp_dst without ip/tcp), sent raw.
    let mut fm = flow("priority=1,tcp,tp_dst=80,actions=drop");
    fm.match_.remove(FieldId::EthType);
    fm.match_.remove(FieldId::IpProto);
    let frame = Message::FlowMod(fm).to_bytes(0);
    let got = sw.send_raw_checked(frame).expect("connection");
    assert_eq!(got, Err(OfpError::BadMatch(BadMatchCode::BadPrereq)));
    sw.barrier().expect("barrier after bad prereq");

    // A bundle whose second message fails: nothing of it is committed.
    let err = sw
        .add_flows(&[
            "priority=9,in_port=1,actions=drop",
            "priority=9,actions=group:98",
        ])
        .expect_err("bundle with a bad flow");
    let text = format!("{err:#}");
    assert!(
        text.contains("BAD_OUT_GROUP") || text.contains("BadOutGroup"),
        "{text}"
    );
    assert!(sw.dump_flows().unwrap().is_empty(), "bundle was not atomic");

    sw.close();
    ovs.stop().unwrap();
}

/// An Ethernet/IPv4/UDP frame 10.0.0.1:1234 -> 10.0.0.2:9999 with a 4-byte payload.
fn udp_packet() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total: u16 = 20 + 8 + 4;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&1234u16.to_be_bytes());
    p.extend_from_slice(&9999u16.to_be_bytes());
    p.extend_from_slice(&12u16.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(b"plex");
    p
}

#[test]
fn packet_out_hits_a_flow_that_sends_packet_in2_with_userdata() {
    if !prereqs() {
        return;
    }
    let (ovs, sw) = switch(0x9e7);
    sw.set_packet_in2().unwrap();
    sw.add_flows(&[
        "cookie=0x77,priority=500,udp,tp_dst=9999,actions=load:0xab->NXM_NX_REG3[],controller(userdata=01.02)",
    ])
    .unwrap();
    let pkt = udp_packet();
    let hex: String = pkt.iter().map(|b| format!("{b:02x}")).collect();
    sw.packet_out(&format!("in_port=controller packet={hex} actions=table"))
        .unwrap();
    let pi = sw.recv_packet_in(Duration::from_secs(10)).unwrap();
    assert_eq!(pi.userdata.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(pi.data, pkt);
    assert_eq!(pi.reason, 1, "OFPR_ACTION");
    assert_eq!(pi.table_id, 0);
    assert_eq!(pi.cookie, 0x77);
    assert_eq!(pi.metadata.exact(FieldId::Reg3), Some(0xab));
    assert_eq!(
        pi.metadata.exact(FieldId::InPort),
        Some(u128::from(plexus_openflow::message::port_no::CONTROLLER))
    );
    // The flow counted the packet.
    let flows = sw.flow_stats().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].packet_count, 1);
    drop(ovs);
}
