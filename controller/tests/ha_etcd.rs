//! HA system test: three `plexus-controller`s on a 3-member etcd cluster; exactly one
//! (the elected leader) programs a private userspace Open vSwitch chassis (it connects to
//! the switch's management socket, `endpoint.openflow`), the followers serve the API.
//! The model is written through a follower. Then the leader is killed with SIGKILL during
//! a ping flood between two hosts: a follower must take over (elected, connected,
//! reconciled), the flows on the switch must stay untouched (no delete, no add: durations
//! keep growing), the flood must lose nothing, every committed object must still be
//! there, and a write after the failover is realized by the new leader.
//!
//! Needs root, Open vSwitch and etcd (skips otherwise, fails under `CI=true`).

use plexus_tests::etcd::EtcdCluster;
use plexus_tests::netns::{Netns, unique_name, veth};
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{Api, Controller, duration_of, free_port, plexus_flows};

/// One of the three HA controllers.
struct Member {
    ctl: Controller,
    api: u16,
    node: String,
}

impl Member {
    fn start(node: &str, store: &str, prefix: &str, log: &std::path::Path) -> Member {
        let api = free_port();
        let listen = format!("127.0.0.1:{api}");
        let ctl = Controller::start(
            [
                "--listen",
                &listen,
                "--store",
                store,
                "--etcd-prefix",
                prefix,
                "--node-id",
                node,
                "--election-ttl",
                "2",
                "--insecure-no-auth",
            ],
            "info",
            log,
        );
        Member {
            ctl,
            api,
            node: node.to_string(),
        }
    }

    fn kill9(&mut self) {
        self.ctl.kill9();
    }
}

/// Roles of all controllers (None = not answering).
async fn roles(apis: &[Api]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for a in apis {
        out.push(
            a.status()
                .await
                .and_then(|s| s["controller"]["role"].as_str().map(str::to_string)),
        );
    }
    out
}

fn strip(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v
        .iter()
        .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_controllers_leader_killed_follower_takes_over_without_churn() {
    if !prereq::require_root()
        || !prereq::require_tools(&[
            "etcd",
            "ovs-vswitchd",
            "ovsdb-server",
            "ovs-vsctl",
            "ovs-ofctl",
            "ping",
            "ip",
        ])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start("plxha", 3, &dir.path().join("etcd")).unwrap();
    let store = cluster.store_url();
    let prefix = "/plexus-ha-test";
    let mut ctls: Vec<Member> = (0..3)
        .map(|i| {
            Member::start(
                &format!("ctl-{i}"),
                &store,
                prefix,
                &dir.path().join(format!("controller-{i}.log")),
            )
        })
        .collect();
    let apis: Vec<Api> = ctls.iter().map(|c| Api::new(c.api)).collect();
    for a in &apis {
        a.wait_up("/readyz").await;
    }
    // Exactly one leader.
    let t0 = Instant::now();
    let leader = loop {
        let r = roles(&apis).await;
        let leaders: Vec<usize> = (0..3)
            .filter(|&i| r[i].as_deref() == Some("leader"))
            .collect();
        let followers = r
            .iter()
            .filter(|x| x.as_deref() == Some("follower"))
            .count();
        if leaders.len() == 1 && followers == 2 {
            break leaders[0];
        }
        assert!(leaders.len() <= 1, "two leaders: {r:?}");
        assert!(t0.elapsed() < Duration::from_secs(20), "no leader: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "initial leader: {} (elected in {:?})",
        ctls[leader].node,
        t0.elapsed()
    );
    let via = &apis[(leader + 1) % 3]; // a follower takes the writes

    let dpid = 0x504c_0000_0042u64;
    let ovs = Ovs::builder().dpid(dpid).start().expect("ovs");
    let sw_ns = Netns::existing(ovs.netns().unwrap().name()).unwrap();
    // Cable the hosts first: the switch's ports exist before the leader connects (a
    // management-socket session gets no port-status messages).
    let host_spec = [
        ("ha1", "02:00:00:00:0c:01", "10.0.0.21"),
        ("ha2", "02:00:00:00:0c:02", "10.0.0.22"),
    ];
    let mut hosts = Vec::new();
    for (i, (iface, mac, ip)) in host_spec.into_iter().enumerate() {
        let ns = Netns::create(&unique_name(&format!("plx{iface}"))).unwrap();
        veth("eth0", &ns, iface, &sw_ns).unwrap();
        ns.ip(&["link", "set", "eth0", "address", mac]).unwrap();
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .unwrap();
        ovs.add_port(iface, i as u32 + 1).unwrap();
        hosts.push(ns);
    }
    let mgmt = format!("unix:{}", ovs.mgmt_socket().display());
    let ch = via
        .post(
            "/v1/chassis",
            json!({"name": "chassis-1", "vtep_ip": "192.0.2.1",
                   "endpoint": {"datapath_id": format!("{dpid:#x}"), "openflow": mgmt}}),
        )
        .await;
    let ch_id = ch["id"].as_str().unwrap().to_string();
    let tenant = via.post("/v1/tenants", json!({"name": "t"})).await;
    let vpc = via
        .post(
            "/v1/vpcs",
            json!({"tenant_id": tenant["id"], "name": "vpc", "cidrs": ["10.0.0.0/24"]}),
        )
        .await;
    let sn = via
        .post(
            "/v1/subnets",
            json!({"vpc_id": vpc["id"], "name": "net", "cidr": "10.0.0.0/24"}),
        )
        .await;
    let sg = via
        .post(
            "/v1/security-groups",
            json!({"tenant_id": tenant["id"], "name": "all", "rules": [
                {"direction": "ingress", "protocol": "any", "remote_cidr": "10.0.0.0/24"},
                {"direction": "egress", "protocol": "any"}]}),
        )
        .await;
    let mut rev = 0;
    for (iface, mac, ip) in host_spec {
        let p = via
            .post(
                "/v1/ports",
                json!({"subnet_id": sn["id"], "name": iface, "mac": mac, "ips": [ip],
                       "security_groups": [sg["id"]],
                       "binding": {"chassis_id": ch_id, "iface": iface}}),
            )
            .await;
        rev = p["revision"].as_u64().unwrap();
    }
    // The leader realizes the model; the followers hold no switch session.
    let t0 = Instant::now();
    loop {
        let s = apis[leader].status().await.unwrap();
        let c = &s["chassis"][&ch_id];
        if c["connected"] == true && c["realized_revision"].as_u64().unwrap_or(0) >= rev {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "not realized: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, a) in apis.iter().enumerate() {
        if i != leader {
            let s = a.status().await.unwrap();
            assert_eq!(s["chassis"], json!({}), "follower {i} holds sessions: {s}");
        }
    }
    // Warm ARP, then flood across the failover.
    let ok = hosts[0]
        .command("ping")
        .args(["-c", "3", "-W", "1", "10.0.0.22"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "ha1 -> ha2 before failover");
    let before = plexus_flows(&ovs);
    assert!(!before.is_empty());
    let flood = hosts[0]
        .command("ping")
        .args(["-i", "0.002", "-c", "4000", "-W", "1", "10.0.0.22"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = ctls[leader].node.clone();
    ctls[leader].kill9();
    let t_kill = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (new_leader, elected) = loop {
        let mut found = None;
        for &i in &survivors {
            if let Some(s) = apis[i].status().await
                && s["controller"]["role"] == "leader"
            {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break (i, t_kill.elapsed());
        }
        assert!(
            t_kill.elapsed() < Duration::from_secs(15),
            "no follower took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let st = loop {
        let s = apis[new_leader].status().await.unwrap();
        let c = s["chassis"][&ch_id].clone();
        if c["connected"] == true
            && c["reconciles"].as_u64().unwrap_or(0) >= 1
            && c["realized_revision"].as_u64().unwrap_or(0) >= rev
        {
            break c;
        }
        assert!(
            t_kill.elapsed() < Duration::from_secs(30),
            "not resynced: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let resynced = t_kill.elapsed();
    println!(
        "HA failover: leader {killed} killed -9; {} elected after {elected:?}, switch reconciled after {resynced:?} (adds {}, deletes {})",
        ctls[new_leader].node, st["flow_adds"], st["flow_deletes"]
    );
    assert_eq!(st["flow_adds"], 0, "takeover re-added flows");
    assert_eq!(st["flow_deletes"], 0, "takeover deleted flows");
    // Exactly one leader among the survivors.
    let r = roles(&apis).await;
    assert_eq!(
        r.iter().filter(|x| x.as_deref() == Some("leader")).count(),
        1,
        "{r:?}"
    );
    let out = flood.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    println!("ping flood (2 ms) across the failover: {summary}");
    assert!(summary.contains(" 0% packet loss"), "{summary}");
    let after = plexus_flows(&ovs);
    assert_eq!(strip(&after), strip(&before), "flows changed");
    let min_before = before
        .iter()
        .map(|l| duration_of(l))
        .fold(f64::MAX, f64::min);
    let min_after = after
        .iter()
        .map(|l| duration_of(l))
        .fold(f64::MAX, f64::min);
    assert!(
        min_after >= min_before + 5.0,
        "flows were re-installed: {min_before} -> {min_after}"
    );
    // No committed object lost; the survivors agree.
    for &i in &survivors {
        let ports = apis[i].get("/v1/ports").await;
        assert_eq!(ports["items"].as_array().unwrap().len(), 2);
        let s = apis[i].status().await.unwrap();
        assert_eq!(s["revision"].as_u64().unwrap(), rev);
    }
    // A write through the other survivor is realized by the new leader.
    let other = survivors
        .iter()
        .copied()
        .find(|&i| i != new_leader)
        .unwrap();
    let sg2 = apis[other]
        .post(
            "/v1/security-groups",
            json!({"tenant_id": tenant["id"], "name": "x", "rules": []}),
        )
        .await;
    let rev2 = sg2["revision"].as_u64().unwrap();
    let t0 = Instant::now();
    loop {
        let s = apis[new_leader].status().await.unwrap();
        if s["chassis"][&ch_id]["realized_revision"]
            .as_u64()
            .unwrap_or(0)
            >= rev2
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "write after failover not realized: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(hosts);
    drop(ovs);
    drop(ctls);
    drop(cluster);
}
