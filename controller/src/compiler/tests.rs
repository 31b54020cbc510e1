use super::*;
use plexus_openflow::message::FlowModCommand;
use proptest::prelude::*;

fn rule(
    dir: Direction,
    proto: Protocol,
    ports: Option<(u16, u16)>,
    remote: Option<&str>,
    group: Option<&str>,
) -> SecurityGroupRule {
    SecurityGroupRule {
        direction: dir,
        ethertype: Ethertype::Ipv4,
        protocol: proto,
        port_min: ports.map(|p| p.0),
        port_max: ports.map(|p| p.1),
        remote_cidr: remote.map(str::to_string),
        remote_group_id: group.map(str::to_string),
    }
}

fn sample() -> Model {
    let mut m = Model {
        vni: 1000,
        ..Default::default()
    };
    for (i, c) in ["c1", "c2", "c3"].iter().enumerate() {
        m.chassis.insert(
            c.to_string(),
            ChassisInfo {
                vtep: Ipv4Addr::new(192, 0, 2, i as u8 + 1),
                tunnel_ofport: 1,
            },
        );
    }
    m.groups.insert(
        "web".into(),
        Group {
            key: 1,
            rules: vec![
                rule(
                    Direction::Ingress,
                    Protocol::Tcp,
                    Some((80, 80)),
                    None,
                    None,
                ),
                rule(
                    Direction::Ingress,
                    Protocol::Tcp,
                    Some((8000, 8100)),
                    Some("10.0.0.0/24"),
                    None,
                ),
                rule(Direction::Ingress, Protocol::Any, None, None, Some("web")),
                rule(Direction::Egress, Protocol::Any, None, None, None),
            ],
        },
    );
    for i in 0..4u16 {
        m.ports.insert(
            format!("p{i}"),
            LPort {
                key: i + 1,
                mac: [2, 0, 0, 0, 0, i as u8 + 1],
                ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 2))],
                port_security: i != 3,
                groups: if i < 2 { vec!["web".into()] } else { vec![] },
                binding: Some((format!("c{}", i % 2 + 1), 10 + i as u32)),
                dhcp: (i == 0).then(dhcp_params),
            },
        );
    }
    m
}

#[test]
fn port_ranges_to_masks() {
    assert_eq!(port_range_masks(80, 80), vec![(80, 0xffff)]);
    assert_eq!(port_range_masks(0, 65535), vec![(0, 0)]);
    assert_eq!(port_range_masks(1024, 2047), vec![(1024, 0xfc00)]);
    // Cover exactly the range.
    for (lo, hi) in [(1, 1000), (8000, 8100), (3, 65535), (65535, 65535)] {
        let ms = port_range_masks(lo, hi);
        for p in 0..=65535u16 {
            let hit = ms.iter().filter(|(v, m)| p & m == *v).count();
            assert_eq!(
                hit,
                usize::from((lo..=hi).contains(&p)),
                "{lo}..={hi} at {p}"
            );
        }
    }
}

#[test]
fn pipeline_shape_and_every_flow_parses() {
    let m = sample();
    let flows = compile_full(&m);
    // p0, p2 on c1; p1, p3 on c2; c3 hosts nothing: no flows, not in the mesh.
    assert!(!flows.contains_key("c3"));
    let c1 = &flows["c1"];
    assert!(c1.contains("table=0,priority=100,in_port=10,actions=set_field:1->reg14,write_metadata:0x3e8,goto_table:10"));
    assert!(c1.contains("table=10,priority=90,ip,reg14=1,dl_src=02:00:00:00:00:01,nw_src=10.0.0.2,actions=goto_table:20"));
    assert!(c1.contains("table=20,priority=100,ip,reg14=1,actions=ct(table=21,zone=1)"));
    assert!(c1.contains("table=41,priority=100,ct_state=+new+trk,tcp,tp_dst=80,reg15=1,actions=ct(commit,zone=1),goto_table:50"));
    // Remote group `web` = p0 and p1: one conjunction (id = key 1 << 16 | rule 2) of
    // the member port (clause 1) and the peer address in this VPC (clause 2).
    assert!(c1.contains(
        "table=41,priority=100,ct_state=+new+trk,reg15=1,actions=conjunction(65538,1/2)"
    ));
    for peer in ["10.0.0.2", "10.0.0.3"] {
        assert!(c1.contains(&format!("table=41,priority=100,ct_state=+new+trk,ip,metadata=0x3e8,nw_src={peer},actions=conjunction(65538,2/2)")));
    }
    assert!(c1.contains("table=41,priority=100,conj_id=65538,ip,metadata=0x3e8,actions=ct(commit,zone=NXM_NX_REG15[0..15]),goto_table:50"));
    assert!(
        !c1.iter().any(|f| f.contains("nw_src=10.0.0.3,actions=ct(")),
        "no cross product"
    );
    // p1 lives on c2: reached through the tunnel with the VPC's VNI.
    assert!(c1.contains("table=30,priority=100,metadata=0x3e8,dl_dst=02:00:00:00:00:02,actions=set_field:0x3e8->tun_id,set_field:192.0.2.2->tun_dst,output:1"));
    // p2 has no groups: no ct stage; p3 has no port security.
    assert!(c1.contains("table=20,priority=90,reg14=3,actions=goto_table:22"));
    assert!(!c1.iter().any(|f| f.contains("ct(table=21,zone=3)")));
    assert!(flows["c2"].contains("table=10,priority=90,reg14=4,actions=goto_table:20"));
    for (c, fs) in &flows {
        let mods = to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        assert_eq!(mods.len(), fs.len());
    }
}

fn with_l3(mut m: Model) -> Model {
    m.l3 = L3 {
        router_mac: router_mac(m.vni),
        gateways: [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 1, 1)].into(),
        gateways6: [Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)].into(),
        lb_zone: 100,
        ..Default::default()
    };
    m.services.insert(
        "s1".into(),
        Service {
            group_id: GROUP_BASE | 7,
            vip: Ipv4Addr::new(10, 0, 0, 200),
            port: 80,
            udp: false,
            backends: vec![
                SvcBackend {
                    ip: Ipv4Addr::new(10, 0, 0, 2),
                    port: 8080,
                    weight: 3,
                },
                SvcBackend {
                    ip: Ipv4Addr::new(10, 0, 0, 3),
                    port: 8080,
                    weight: 1,
                },
            ],
            affinity_timeout: None,
        },
    );
    m
}

#[test]
fn services_and_routing_compile_on_every_vpc_chassis() {
    let m = with_l3(sample());
    let flows = compile_full(&m);
    assert!(!flows.contains_key("c3"));
    for c in ["c1", "c2"] {
        let fs = &flows[c];
        // The select group: one bucket per backend, weights kept, ct commit + DNAT.
        assert!(fs.contains("group_id=1342177287,type=select,bucket=weight:3,actions=ct(commit,table=25,zone=100,nat(dst=10.0.0.2:8080)),bucket=weight:1,actions=ct(commit,table=25,zone=100,nat(dst=10.0.0.3:8080))"), "{c}");
        assert!(fs.contains("table=22,priority=100,tcp,metadata=0x3e8,nw_dst=10.0.0.200,tp_dst=80,actions=ct(table=23,zone=100,nat)"));
        assert!(fs.contains("table=22,priority=90,tcp,metadata=0x3e8,nw_src=10.0.0.3,tp_src=8080,actions=ct(table=23,zone=100,nat)"));
        assert!(fs.contains("table=23,priority=100,ct_state=+new+trk,tcp,metadata=0x3e8,nw_dst=10.0.0.200,tp_dst=80,actions=group:1342177287"));
        // ARP answered for the VIP and both gateways with the router MAC, ICMP echo for
        // the gateways, by the local responders.
        let rmac = router_mac(m.vni);
        for ip in ["10.0.0.200", "10.0.0.1", "10.0.1.1"] {
            let a: Ipv4Addr = ip.parse().unwrap();
            let want = format!(
                "table=25,priority=100,arp,metadata=0x3e8,arp_op=1,arp_tpa={ip},actions={}",
                responder_action(&Responder::Arp { mac: rmac, ip: a })
            );
            assert!(fs.contains(&want), "{c} {ip}");
        }
        let echo = Responder::Icmp4Echo {
            mac: rmac,
            ip: Ipv4Addr::new(10, 0, 1, 1),
        };
        assert!(fs.contains(&format!(
            "table=25,priority=100,icmp,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8,nw_dst=10.0.1.1,icmp_type=8,icmp_code=0,actions={}",
            responder_action(&echo)
        )));
        // IPv6 gateway: ND (router flag) and ICMPv6 echo.
        let gw6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        assert!(fs.contains(&format!(
            "table=20,priority=110,icmp6,metadata=0x3e8,icmp_type=135,icmp_code=0,nd_target=fd00::1,actions={}",
            responder_action(&Responder::Nd { mac: rmac, ip: gw6, router: true })
        )));
        assert!(fs.contains(&format!(
            "table=20,priority=110,icmp6,metadata=0x3e8,ipv6_dst=fd00::1,icmp_type=128,icmp_code=0,actions={}",
            responder_action(&Responder::Icmp6Echo { mac: rmac, ip: gw6 })
        )));
        // Distributed routing to every port, on every chassis of the VPC.
        assert!(fs.contains("table=25,priority=50,ip,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8,nw_dst=10.0.0.3,actions=dec_ttl,set_field:0a:00:00:00:03:e8->eth_src,set_field:02:00:00:00:00:02->eth_dst,goto_table:30"));
        let mods = to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        let groups = to_group_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        assert_eq!(mods.len() + groups.len(), fs.len());
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0]
                .buckets
                .iter()
                .map(|b| b.weight)
                .collect::<Vec<_>>(),
            vec![3, 1]
        );
    }
}

#[test]
fn static_routes_go_to_the_next_hop_port_by_longest_prefix() {
    let mut m = with_l3(sample());
    // p3 (10.0.0.5, port security off) routes 172.16.0.0/16 and a /32; p2 a default route.
    m.l3.routes = [
        (Ipv4Addr::new(172, 16, 0, 0), 16, Ipv4Addr::new(10, 0, 0, 5)),
        (Ipv4Addr::new(172, 16, 9, 1), 32, Ipv4Addr::new(10, 0, 0, 5)),
        (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 0, 0, 4)),
        // No port owns this next hop: no flow.
        (
            Ipv4Addr::new(192, 168, 0, 0),
            24,
            Ipv4Addr::new(10, 0, 0, 99),
        ),
    ]
    .into();
    let flows = compile_full(&m);
    let r = "table=25,priority={P},ip,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8{M},actions=dec_ttl,set_field:0a:00:00:00:03:e8->eth_src,set_field:{MAC}->eth_dst,goto_table:30";
    let want =
        |p: &str, m: &str, mac: &str| r.replace("{P}", p).replace("{M}", m).replace("{MAC}", mac);
    for c in ["c1", "c2"] {
        let fs = &flows[c];
        assert!(
            fs.contains(&want("26", ",nw_dst=172.16.0.0/16", "02:00:00:00:00:04")),
            "{c}"
        );
        assert!(
            fs.contains(&want("42", ",nw_dst=172.16.9.1", "02:00:00:00:00:04")),
            "{c}"
        );
        assert!(fs.contains(&want("10", "", "02:00:00:00:00:03")), "{c}");
        assert!(!fs.iter().any(|f| f.contains("192.168.0.0")));
        to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
    }
    // Incremental: moving the next hop's port or removing a route touches only that port.
    let mut e = Engine::new(m.clone());
    let mut p3 = e.model().ports["p3"].clone();
    p3.mac = [2, 0, 0, 0, 0, 0x33];
    e.apply(Change::PutPort("p3".into(), p3));
    assert_eq!(e.flows(), compile_full(e.model()));
    assert!(e.flows()["c1"].contains(&want("26", ",nw_dst=172.16.0.0/16", "02:00:00:00:00:33")));
    let mut l3 = e.model().l3.clone();
    l3.routes.retain(|r| r.1 != 16);
    let d = e.apply(Change::PutL3(l3));
    assert_eq!(e.flows(), compile_full(e.model()));
    for c in ["c1", "c2"] {
        assert_eq!(d.removed[c].len(), 1, "{:?}", d.removed[c]);
        assert!(d.added.get(c).is_none_or(|a| a.is_empty()));
    }
}

#[test]
fn client_ip_affinity_learns_and_dispatches() {
    let mut m = with_l3(sample());
    m.services.get_mut("s1").unwrap().affinity_timeout = Some(60);
    let flows = compile_full(&m);
    for c in ["c1", "c2"] {
        let fs = &flows[c];
        let svc = "tcp,metadata=0x3e8,nw_dst=10.0.0.200,tp_dst=80";
        assert!(fs.contains(&format!("table=23,priority=100,ct_state=+new+trk,{svc},actions=set_field:0->reg12,set_field:0->reg13,resubmit(,28),goto_table:24")), "{c}");
        assert!(fs.contains(&format!(
            "table=24,priority=90,{svc},actions=group:1342177287"
        )));
        assert!(fs.contains(&format!("table=24,priority=100,{svc},reg12=0xa000003,reg13=0x1f90,actions=learn(table=28,idle_timeout=60,priority=100,eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_DST[],OXM_OF_METADATA[],load:NXM_NX_REG12[]->NXM_NX_REG12[],load:NXM_NX_REG13[0..15]->NXM_NX_REG13[0..15]),ct(commit,table=25,zone=100,nat(dst=10.0.0.3:8080))")), "{c}");
        let g = fs.iter().find(|f| is_group(f)).unwrap();
        assert_eq!(
            g,
            "group_id=1342177287,type=select,bucket=weight:3,actions=set_field:0xa000002->reg12,set_field:0x1f90->reg13,resubmit(,24),bucket=weight:1,actions=set_field:0xa000003->reg12,set_field:0x1f90->reg13,resubmit(,24)"
        );
        let mods = to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        let groups = to_group_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        assert_eq!(mods.len() + groups.len(), fs.len());
    }
    // Turning affinity off is a change of the service unit only.
    let mut e = Engine::new(m);
    let mut s = e.model().services["s1"].clone();
    s.affinity_timeout = None;
    e.apply(Change::PutService("s1".into(), s));
    assert_eq!(e.last_recomputed, 1);
    assert_eq!(e.flows(), compile_full(e.model()));
    assert!(!e.flows()["c1"].iter().any(|f| f.contains("learn(")));
}

#[test]
fn removing_a_backend_modifies_only_the_group_and_its_reply_flow() {
    let mut e = Engine::new(with_l3(sample()));
    let mut s = e.model().services["s1"].clone();
    s.backends.truncate(1);
    let d = e.apply(Change::PutService("s1".into(), s));
    assert_eq!(e.last_recomputed, 1);
    assert_eq!(e.flows(), compile_full(e.model()));
    for c in ["c1", "c2"] {
        let rm = &d.removed[c];
        let add = &d.added[c];
        assert_eq!(rm.len(), 2, "{rm:?}");
        assert!(rm.iter().any(|f| f.contains("nw_src=10.0.0.3,tp_src=8080")));
        assert_eq!(add.len(), 1);
        assert!(add.iter().all(|f| is_group(f) && !f.contains("10.0.0.3")));
    }
}

#[test]
fn incremental_delta_is_exact() {
    let mut e = Engine::new(sample());
    assert_eq!(e.flows(), compile_full(e.model()));
    let before = e.flows();
    // p2 joins `web`: p2 and the ports referencing `web` as remote group recompute.
    let mut p2 = e.model().ports["p2"].clone();
    p2.groups = vec!["web".into()];
    let d = e.apply(Change::PutPort("p2".into(), p2));
    assert!(e.last_recomputed <= 4, "{}", e.last_recomputed);
    let after = e.flows();
    assert_eq!(after, compile_full(e.model()));
    for c in ["c1", "c2"] {
        let b = before.get(c).cloned().unwrap_or_default();
        let a = after.get(c).cloned().unwrap_or_default();
        let added: BTreeSet<_> = a.difference(&b).cloned().collect();
        let removed: BTreeSet<_> = b.difference(&a).cloned().collect();
        assert_eq!(strs(d.added.get(c)), added, "{c}");
        assert_eq!(strs(d.removed.get(c)), removed, "{c}");
    }
    assert!(
        d.added["c2"].iter().any(|f| f.contains("nw_src=10.0.0.4")),
        "p1 now admits p2"
    );
}

#[test]
fn tunnel_mesh_spans_only_chassis_sharing_the_vpc() {
    let mut m = sample();
    m.chassis.get_mut("c2").unwrap().tunnel_ofport = 7;
    let flows = compile_full(&m);
    let decap = |fs: &BTreeSet<String>| -> Vec<String> {
        fs.iter()
            .filter(|f| f.starts_with("table=0,") && f.contains("tun_id="))
            .cloned()
            .collect()
    };
    // c1 and c2 host ports of the VPC: each accepts the VNI only from the other's VTEP
    // and feeds it to the LB stage (un-DNAT of replies from remote backends).
    assert_eq!(
        decap(&flows["c1"]),
        [
            "table=0,priority=100,in_port=1,tun_id=0x3e8,tun_src=192.0.2.2,actions=write_metadata:0x3e8,goto_table:22"
        ]
    );
    assert_eq!(
        decap(&flows["c2"]),
        [
            "table=0,priority=100,in_port=7,tun_id=0x3e8,tun_src=192.0.2.1,actions=write_metadata:0x3e8,goto_table:22"
        ]
    );
    // c2's ports are reached from c1 through c1's tunnel port, and vice versa.
    assert!(flows["c2"].contains("table=30,priority=100,metadata=0x3e8,dl_dst=02:00:00:00:00:01,actions=set_field:0x3e8->tun_id,set_field:192.0.2.1->tun_dst,output:7"));
    // Broadcast from a local port floods locally and to every peer VTEP.
    assert!(
        flows["c1"]
            .iter()
            .any(|f| f.starts_with("table=30,priority=110,")
                && f.ends_with("set_field:0x3e8->tun_id,set_field:192.0.2.2->tun_dst,output:1"))
    );
    // No chassis talks to c3 (no port of the VPC there).
    assert!(flows.values().flatten().all(|f| !f.contains("192.0.2.3")));

    // A port appears on c3: the mesh grows to three, incrementally as in full.
    let mut e = Engine::new(m);
    let mut p = e.model().ports["p2"].clone();
    p.binding = Some(("c3".into(), 30));
    let d = e.apply(Change::PutPort(
        "p9".into(),
        LPort {
            key: 9,
            mac: [2, 0, 0, 0, 0, 9],
            ..p
        },
    ));
    assert_eq!(e.flows(), compile_full(e.model()));
    let flows = e.flows();
    assert_eq!(decap(&flows["c3"]).len(), 2);
    for c in ["c1", "c2"] {
        assert!(
            d.added[c].iter().any(|f| f.contains("tun_src=192.0.2.3")),
            "{c}"
        );
        assert!(
            flows[c]
                .iter()
                .any(|f| f.contains("dl_dst=02:00:00:00:00:09")
                    && f.contains("set_field:192.0.2.3->tun_dst")),
            "{c}"
        );
    }
    // It leaves again: c3 drops out of the mesh and holds nothing.
    let d = e.apply(Change::DelPort("p9".into()));
    assert!(!e.flows().contains_key("c3"));
    assert!(
        d.removed["c1"]
            .iter()
            .any(|f| f.contains("tun_src=192.0.2.3"))
    );
    assert_eq!(e.flows(), compile_full(e.model()));
}

#[test]
fn remote_chassis_reach_a_port_before_its_switch_reports_it() {
    let mut m = sample();
    let full = compile_full(&m);
    // p1 lives on c2; c2's switch has not reported its interface (a controller restart
    // before c2 reconnected): c1's flows must be exactly the same, c2 has no flow
    // classifying or outputting to it.
    m.ports.get_mut("p1").unwrap().binding = Some(("c2".into(), OFPORT_UNKNOWN));
    let partial = compile_full(&m);
    assert_eq!(partial["c1"], full["c1"]);
    assert!(
        partial["c2"]
            .iter()
            .all(|f| !f.contains("in_port=11,") && !f.contains("output:11"))
    );
    assert!(full["c2"].iter().any(|f| f.contains("in_port=11,")));
    assert!(partial["c2"].iter().all(|f| !f.contains("output:0")));
    // Reported later: only c2's flows change, incrementally as in full.
    let mut e = Engine::new(m);
    let mut p1 = e.model().ports["p1"].clone();
    p1.binding = Some(("c2".into(), 11));
    let d = e.apply(Change::PutPort("p1".into(), p1));
    assert_eq!(e.flows(), full);
    assert!(!d.added.contains_key("c1") && !d.removed.contains_key("c1"));
}

#[test]
fn snat_through_a_gateway_chassis() {
    let mut m = with_l3(sample());
    m.l3.cidrs = vec![(Ipv4Addr::new(10, 0, 0, 0), 16)];
    // c3 hosts no port of the VPC: as the gateway chassis it joins the mesh.
    m.l3.snat = Some(Snat {
        chassis: "c3".into(),
        ip: Ipv4Addr::new(203, 0, 113, 10),
        mac: external_mac(1000),
        nexthop_mac: [2, 0, 0, 0, 0, 0xfe],
        ext_ofport: 9,
    });
    let flows = compile_full(&m);
    let c3 = &flows["c3"];
    // Traffic of the VPC from c1 and c2 arrives at c3 with the VPC's VNI.
    assert!(c3.contains("table=0,priority=100,in_port=1,tun_id=0x3e8,tun_src=192.0.2.1,actions=write_metadata:0x3e8,goto_table:22"));
    for c in ["c1", "c2"] {
        assert!(flows[c].contains("table=25,priority=10,ip,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8,actions=set_field:0x3e8->tun_id,set_field:192.0.2.3->tun_dst,output:1"), "{c}");
        assert!(flows[c].contains("table=25,priority=20,ip,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8,nw_dst=10.0.0.0/16,actions=drop"), "{c}");
    }
    assert!(c3.contains(
        "table=25,priority=10,ip,metadata=0x3e8,dl_dst=0a:00:00:00:03:e8,actions=goto_table:26"
    ));
    assert!(c3.contains("table=26,priority=100,ip,metadata=0x3e8,actions=ct(commit,table=27,zone=100,nat(src=203.0.113.10))"));
    assert!(c3.contains("table=27,priority=100,ip,metadata=0x3e8,actions=dec_ttl,set_field:0a:01:00:00:03:e8->eth_src,set_field:02:00:00:00:00:fe->eth_dst,output:9"));
    assert!(c3.contains("table=0,priority=100,ip,in_port=9,nw_dst=203.0.113.10,actions=write_metadata:0x3e8,goto_table:1"));
    assert!(c3.contains("table=1,priority=100,ip,metadata=0x3e8,actions=ct(table=2,zone=100,nat)"));
    assert!(c3.contains("table=2,priority=100,ct_state=-new+est+trk,ip,metadata=0x3e8,actions=set_field:0a:00:00:00:03:e8->eth_dst,goto_table:25"));
    assert!(c3.iter().any(|f| {
        f.starts_with("table=0,priority=110,arp,in_port=9,arp_op=1,arp_tpa=203.0.113.10,")
            && f.ends_with("IN_PORT")
    }));
    // Routed replies reach every port from c3 (routes and remote L2 entries).
    assert!(c3.contains("table=30,priority=100,metadata=0x3e8,dl_dst=02:00:00:00:00:02,actions=set_field:0x3e8->tun_id,set_field:192.0.2.2->tun_dst,output:1"));
    for (c, fs) in &flows {
        let mods = to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{c}: {f}: {e:?}"));
        assert_eq!(mods.len() + to_group_mods(fs).unwrap().len(), fs.len());
    }
    // Incrementally: the gateway moves to c1 and its port is not reported yet.
    let mut e = Engine::new(m);
    let mut l3 = e.model().l3.clone();
    let s = l3.snat.as_mut().unwrap();
    s.chassis = "c1".into();
    s.ext_ofport = OFPORT_UNKNOWN;
    e.apply(Change::PutL3(l3));
    assert_eq!(e.flows(), compile_full(e.model()));
    assert!(!e.flows().contains_key("c3"));
    assert!(e.flows()["c1"].iter().all(|f| !f.starts_with("table=26,")));
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Port {
        n: u8,
        chassis: u8,
        groups: u8,
        ip: u8,
        sec: bool,
        bound: bool,
        /// The switch has reported the interface (else [`OFPORT_UNKNOWN`]).
        reported: bool,
    },
    DelPort(u8),
    Group {
        n: u8,
        rules: Vec<(bool, u8, u8, u8)>,
    },
    DelGroup(u8),
    Chassis {
        n: u8,
        vtep: u8,
    },
    DelChassis(u8),
    Service {
        n: u8,
        vip: u8,
        backends: Vec<(u8, u8)>,
    },
    DelService(u8),
    L3 {
        gateways: u8,
        zone: u8,
        /// SNAT through chassis `c{.0}`; `.1`: its external port is reported.
        snat: Option<(u8, bool)>,
        routes: u8,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8u8, 0..4u8, 0..8u8, 0..4u8, any::<bool>(), prop::bool::weighted(0.8), prop::bool::weighted(0.8)).prop_map(|(n, chassis, groups, ip, sec, bound, reported)| Op::Port { n, chassis, groups, ip, sec, bound, reported }),
        1 => (0..8u8).prop_map(Op::DelPort),
        2 => (0..3u8, prop::collection::vec((any::<bool>(), 0..4u8, 0..3u8, 0..4u8), 0..4)).prop_map(|(n, rules)| Op::Group { n, rules }),
        1 => (0..3u8).prop_map(Op::DelGroup),
        1 => (0..4u8, 0..3u8).prop_map(|(n, vtep)| Op::Chassis { n, vtep }),
        1 => (0..4u8).prop_map(Op::DelChassis),
        2 => (0..3u8, 0..3u8, prop::collection::vec((0..8u8, 1..4u8), 0..4)).prop_map(|(n, vip, backends)| Op::Service { n, vip, backends }),
        1 => (0..3u8).prop_map(Op::DelService),
        1 => (0..8u8, 0..2u8, prop::option::of((0..4u8, any::<bool>())), 0..16u8).prop_map(|(gateways, zone, snat, routes)| Op::L3 { gateways, zone, snat, routes }),
    ]
}

pub(crate) fn to_change(op: &Op) -> Change {
    match *op {
        Op::Port {
            n,
            chassis,
            groups,
            ip,
            sec,
            bound,
            reported,
        } => Change::PutPort(
            format!("p{n}"),
            LPort {
                key: n as u16 + 1,
                mac: [2, 0, 0, 0, 0, n + 1],
                ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, ip, n + 2))],
                port_security: sec,
                groups: (0..3)
                    .filter(|g| groups & (1 << g) != 0)
                    .map(|g| format!("g{g}"))
                    .collect(),
                binding: bound.then(|| {
                    let ofport = if reported {
                        10 + n as u32
                    } else {
                        OFPORT_UNKNOWN
                    };
                    (format!("c{chassis}"), ofport)
                }),
                dhcp: (ip == 0).then(dhcp_params),
            },
        ),
        Op::DelPort(n) => Change::DelPort(format!("p{n}")),
        Op::Group { n, ref rules } => Change::PutGroup(
            format!("g{n}"),
            Group {
                key: n as u16 + 1,
                rules: rules
                    .iter()
                    .map(|&(ingress, proto, remote, ports)| {
                        let protocol =
                            [Protocol::Any, Protocol::Tcp, Protocol::Udp, Protocol::Icmp]
                                [proto as usize];
                        let l4 = matches!(protocol, Protocol::Tcp | Protocol::Udp);
                        SecurityGroupRule {
                            direction: if ingress {
                                Direction::Ingress
                            } else {
                                Direction::Egress
                            },
                            ethertype: Ethertype::Ipv4,
                            protocol,
                            port_min: (l4 && ports > 0).then_some(22 * ports as u16),
                            port_max: (l4 && ports > 1).then_some(1000 + ports as u16),
                            remote_cidr: (remote == 1).then(|| "10.0.1.0/24".to_string()),
                            remote_group_id: (remote == 2).then(|| format!("g{}", ports % 3)),
                        }
                    })
                    .collect(),
            },
        ),
        Op::DelGroup(n) => Change::DelGroup(format!("g{n}")),
        Op::Chassis { n, vtep } => Change::PutChassis(
            format!("c{n}"),
            ChassisInfo {
                vtep: Ipv4Addr::new(192, 0, 2, 10 * n + vtep),
                tunnel_ofport: 1 + vtep as u32,
            },
        ),
        Op::DelChassis(n) => Change::DelChassis(format!("c{n}")),
        Op::Service {
            n,
            vip,
            ref backends,
        } => Change::PutService(
            format!("s{n}"),
            Service {
                group_id: GROUP_BASE | (n as u32 + 1),
                vip: Ipv4Addr::new(10, 0, 9, vip),
                port: 80,
                udp: n == 2,
                affinity_timeout: (n == 1).then_some(30),
                backends: backends
                    .iter()
                    .map(|&(b, w)| SvcBackend {
                        ip: Ipv4Addr::new(10, 0, 0, b + 2),
                        port: 8000 + b as u16 % 2,
                        weight: w as u16,
                    })
                    .collect(),
            },
        ),
        Op::DelService(n) => Change::DelService(format!("s{n}")),
        Op::L3 {
            gateways,
            zone,
            snat,
            routes,
        } => Change::PutL3(L3 {
            router_mac: router_mac(5001),
            gateways: (0..3)
                .filter(|g| gateways & (1 << g) != 0)
                .map(|g| Ipv4Addr::new(10, 0, g, 1))
                .collect(),
            gateways6: (0..3)
                .filter(|g| gateways & (1 << g) != 0)
                .map(|g| Ipv6Addr::new(0xfd00, 0, g as u16, 0, 0, 0, 0, 1))
                .collect(),
            lb_zone: 200 + zone as u16,
            cidrs: vec![(Ipv4Addr::new(10, 0, 0, 0), 16)],
            snat: snat.map(|(c, reported)| Snat {
                chassis: format!("c{c}"),
                ip: Ipv4Addr::new(203, 0, 113, 10 + c),
                mac: external_mac(5001),
                nexthop_mac: [2, 0, 0, 0, 0, 0xfe],
                ext_ofport: if reported { 99 } else { OFPORT_UNKNOWN },
            }),
            // Route r via port p{r}'s address when its `ip` choice is r % 4; /0 and /32 too.
            routes: (0..4u8)
                .filter(|r| routes & (1 << r) != 0)
                .map(|r| {
                    let (dst, len) = match r {
                        0 => (Ipv4Addr::UNSPECIFIED, 0),
                        1 => (Ipv4Addr::new(172, 16, 1, 7), 32),
                        _ => (Ipv4Addr::new(172, 16, r, 0), 24),
                    };
                    (dst, len, Ipv4Addr::new(10, 0, r % 4, r + 2))
                })
                .collect(),
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every change, the incremental engine's flows equal a full recompute of the
    /// same model, and the returned delta is exactly the difference.
    #[test]
    fn incremental_equals_full(init in prop::collection::vec(op(), 0..12), ops in prop::collection::vec(op(), 1..25)) {
        let mut m = Model { vni: 5001, l3: L3 { router_mac: router_mac(5001), ..Default::default() }, ..Default::default() };
        for c in 0..3u8 {
            m.chassis.insert(format!("c{c}"), ChassisInfo { vtep: Ipv4Addr::new(192, 0, 2, 10 * c), tunnel_ofport: 1 });
        }
        let mut e = Engine::new(m);
        for o in &init {
            e.apply(to_change(o));
        }
        prop_assert_eq!(e.flows(), compile_full(e.model()));
        for o in &ops {
            let before = e.flows();
            let d = e.apply(to_change(o));
            let after = e.flows();
            prop_assert_eq!(&after, &compile_full(e.model()), "after {:?}", o);
            let chassis: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for c in chassis {
                let b = before.get(c).cloned().unwrap_or_default();
                let a = after.get(c).cloned().unwrap_or_default();
                prop_assert_eq!(strs(d.added.get(c)), a.difference(&b).cloned().collect::<BTreeSet<_>>());
                prop_assert_eq!(strs(d.removed.get(c)), b.difference(&a).cloned().collect::<BTreeSet<_>>());
            }
        }
    }

    /// Changes applied as one batch give the same flows and the exact difference.
    #[test]
    fn batched_equals_full(init in prop::collection::vec(op(), 0..12), batch in prop::collection::vec(op(), 1..12)) {
        let mut m = Model { vni: 5001, l3: L3 { router_mac: router_mac(5001), ..Default::default() }, ..Default::default() };
        for c in 0..3u8 {
            m.chassis.insert(format!("c{c}"), ChassisInfo { vtep: Ipv4Addr::new(192, 0, 2, 10 * c), tunnel_ofport: 1 });
        }
        let mut e = Engine::new(m);
        e.apply_all(init.iter().map(to_change).collect());
        prop_assert_eq!(e.flows(), compile_full(e.model()));
        let before = e.flows();
        let d = e.apply_all(batch.iter().map(to_change).collect());
        let after = e.flows();
        prop_assert_eq!(&after, &compile_full(e.model()));
        let chassis: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for c in chassis {
            let b = before.get(c).cloned().unwrap_or_default();
            let a = after.get(c).cloned().unwrap_or_default();
            prop_assert_eq!(strs(d.added.get(c)), a.difference(&b).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(strs(d.removed.get(c)), b.difference(&a).cloned().collect::<BTreeSet<_>>());
        }
    }
}

/// SECURITY.md "TCP mid-stream pickup": a `+new` TCP segment without SYN, or with
/// SYN+ACK, is dropped above every SG rule in both directions; ND port security lets a
/// port advertise only its own addresses with its own MAC.
#[test]
fn tcp_new_needs_syn_and_nd_port_security() {
    let m = sample();
    let flows = compile_full(&m);
    let c1 = &flows["c1"];
    for (t, reg) in [(21, "reg14"), (41, "reg15")] {
        for tcp in ["tcp", "tcp6"] {
            for fl in ["-syn", "+syn+ack"] {
                let f = format!(
                    "table={t},priority=150,ct_state=+new+trk,{tcp},{reg}=1,tcp_flags={fl},actions=drop"
                );
                assert!(c1.contains(&f), "{f}");
            }
        }
    }
    // p2 has no group: no ct stage, so no TCP flag flows.
    assert!(
        !c1.iter()
            .any(|f| f.contains("tcp_flags") && f.contains("reg14=3"))
    );
    // ND: p0 (02:00:00:00:00:01) may advertise fe80::ff:fe00:1 only.
    let ll = link_local([2, 0, 0, 0, 0, 1]);
    assert_eq!(ll.to_string(), "fe80::ff:fe00:1");
    for tll in ["02:00:00:00:00:01", "00:00:00:00:00:00"] {
        let f = format!(
            "table=10,priority=95,icmp6,reg14=1,dl_src=02:00:00:00:00:01,icmp_type=136,icmp_code=0,ipv6_src=fe80::/10,nd_target=fe80::ff:fe00:1,nd_tll={tll},actions=goto_table:20"
        );
        assert!(c1.contains(&f), "{f}");
    }
    assert!(c1.contains("table=10,priority=95,icmp6,reg14=1,dl_src=02:00:00:00:00:01,icmp_type=135,icmp_code=0,ipv6_src=fe80::/10,nd_sll=02:00:00:00:00:01,actions=goto_table:20"));
    for ty in [135, 136] {
        assert!(c1.contains(&format!(
            "table=10,priority=94,icmp6,reg14=1,icmp_type={ty},actions=drop"
        )));
    }
    // No other NA pass for p0, and p2 (port security, no group) gets the same checks.
    let na_pass: Vec<_> = c1
        .iter()
        .filter(|f| f.contains("reg14=1,") && f.contains("icmp_type=136") && f.contains("goto"))
        .collect();
    assert_eq!(na_pass.len(), 2, "{na_pass:?}");
    assert!(c1.contains("table=10,priority=94,icmp6,reg14=3,icmp_type=136,actions=drop"));
    // p3 has no port security: no ND checks.
    assert!(
        !flows["c2"]
            .iter()
            .any(|f| f.contains("reg14=4") && f.contains("icmp_type"))
    );
    // An IPv6 address of the port is a valid target and source too.
    let mut m6 = sample();
    let a6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    m6.ports.get_mut("p0").unwrap().ips.push(IpAddr::V6(a6));
    let c1 = &compile_full(&m6)["c1"];
    assert!(c1.contains("table=10,priority=95,icmp6,reg14=1,dl_src=02:00:00:00:00:01,icmp_type=136,icmp_code=0,ipv6_src=fd00::2,nd_target=fd00::2,nd_tll=02:00:00:00:00:01,actions=goto_table:20"));
    for fs in compile_full(&m6).values() {
        to_flow_mods(fs).unwrap_or_else(|(f, e)| panic!("{f}: {e:?}"));
    }
}

fn dhcp_params() -> PortDhcp {
    PortDhcp {
        server_ip: Ipv4Addr::new(10, 0, 0, 1),
        prefix_len: 24,
        router: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
        domain: Some("tenant.test".into()),
        lease_secs: 600,
        mtu: Some(1450),
    }
}

/// The userdata of a flow's `controller(userdata=…)` action, decoded.
fn responder_of(flow: &str) -> Responder {
    let fm = plexus_openflow::text::flow::parse_flow_mod(flow, FlowModCommand::Add).unwrap();
    let text = plexus_openflow::instruction::format_instructions(&fm.instructions);
    let hex = text
        .split("userdata=")
        .nth(1)
        .and_then(|t| t.split([')', ',']).next())
        .unwrap_or_else(|| panic!("no userdata in {text}"));
    let bytes: Vec<u8> = hex
        .split('.')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    Responder::decode(&bytes).unwrap()
}

#[test]
fn responders_dhcp_per_port_and_arp_nd_for_port_addresses() {
    let mut m = with_l3(sample());
    m.ports
        .get_mut("p2")
        .unwrap()
        .ips
        .push("fd00::7".parse().unwrap());
    let flows = compile_full(&m);
    let c1 = &flows["c1"];
    // DHCP only on p0 (its subnet serves DHCP), only from its MAC, before port security.
    let dhcp: Vec<&String> = c1
        .iter()
        .filter(|f| f.contains("tp_src=68,tp_dst=67,actions=controller"))
        .collect();
    assert_eq!(dhcp.len(), 1, "{dhcp:?}");
    assert!(dhcp[0].starts_with("table=10,priority=95,udp,reg14=1,dl_src=02:00:00:00:00:01,"));
    let Responder::Dhcp4(d) = responder_of(dhcp[0]) else {
        panic!("not a DHCP responder")
    };
    assert_eq!(d.client_mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(d.client_ip, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(d.server_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(d.server_mac, router_mac(m.vni));
    assert_eq!((d.prefix_len, d.lease_secs, d.mtu), (24, 600, Some(1450)));
    assert_eq!(d.router, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(d.dns, vec![Ipv4Addr::new(10, 0, 0, 53)]);
    assert_eq!(d.domain.as_deref(), Some("tenant.test"));
    assert!(
        !flows["c2"]
            .iter()
            .any(|f| f.contains("tp_dst=67,actions=controller"))
    );
    // Broadcast ARP for every port address, on every chassis, answered with the port's MAC.
    for c in ["c1", "c2"] {
        let f = flows[c]
            .iter()
            .find(|f| f.starts_with("table=25,priority=100,arp,metadata=0x3e8,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.3,"))
            .unwrap_or_else(|| panic!("{c}: no ARP responder for p1"));
        assert_eq!(
            responder_of(f),
            Responder::Arp {
                mac: [2, 0, 0, 0, 0, 2],
                ip: Ipv4Addr::new(10, 0, 0, 3)
            }
        );
        let nd = flows[c]
            .iter()
            // (table 10's ND port security also names the port's own addresses)
            .find(|f| f.contains("nd_target=fd00::7") && f.contains("userdata="))
            .unwrap_or_else(|| panic!("{c}: no ND responder for p2"));
        assert!(nd.contains("dl_dst=33:33:00:00:00:00/ff:ff:00:00:00:00"));
        assert_eq!(
            responder_of(nd),
            Responder::Nd {
                mac: [2, 0, 0, 0, 0, 3],
                ip: "fd00::7".parse().unwrap(),
                router: false
            }
        );
    }
    // The owner's own probes for its address are not answered (RFC 5227).
    assert!(c1.contains(
        "table=25,priority=101,arp,reg14=1,arp_op=1,arp_tpa=10.0.0.2,actions=goto_table:30"
    ));
    // Every flow parses; the responder userdata survives the OpenFlow encoding.
    for fs in flows.values() {
        to_flow_mods(fs).unwrap();
    }
    // Dropping DHCP from the subnet removes exactly the DHCP flow (incremental).
    let mut e = Engine::new(m.clone());
    let mut p0 = m.ports["p0"].clone();
    p0.dhcp = None;
    let delta = e.apply(Change::PutPort("p0".into(), p0));
    assert_eq!(delta.removed["c1"].len(), 1);
    assert!(
        delta.removed["c1"]
            .iter()
            .next()
            .unwrap()
            .contains("tp_dst=67")
    );
    assert!(delta.added.is_empty());
    assert_eq!(e.flows(), compile_full(e.model()));
}

/// A delta's texts as owned strings (to compare with [`Engine::flows`]).
fn strs(s: Option<&BTreeSet<Flow>>) -> BTreeSet<String> {
    s.into_iter().flatten().map(|f| f.to_string()).collect()
}
