//! System test: `plexus-controller` (subprocess) programs a private userspace Open vSwitch
//! as the only chassis; four hosts in netns, two tenants whose VPCs both use 10.0.0.0/24.
//!
//! Needs root and Open vSwitch (skips otherwise, fails under `CI=true`).

use plexus_tests::netns::{Netns, unique_name, veth};
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{Api, Controller, duration_of, free_port, plexus_flows};

/// The controller under test: redb at `db`, OpenFlow listener on `of`.
fn start_controller(api: u16, of: u16, db: &std::path::Path, log: &std::path::Path) -> Controller {
    let (listen, ofl) = (format!("127.0.0.1:{api}"), format!("ptcp:{of}:127.0.0.1"));
    let db = db.to_string_lossy();
    Controller::start(
        [
            "--listen",
            &listen,
            "--db",
            &db,
            "--insecure-no-auth",
            "--openflow-listen",
            &ofl,
        ],
        "info,plexus_controller=debug",
        log,
    )
}

fn ping(ns: &Netns, ip: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "1", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Pings that must succeed get a few tries (first ARP); pings that must fail get two.
fn reachable(ns: &Netns, ip: &str) -> bool {
    (0..3).any(|_| ping(ns, ip))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_same_cidr_isolation_sg_and_restart_without_churn() {
    if !prereq::require_root()
        || !prereq::require_tools(&[
            "ovs-vswitchd",
            "ovsdb-server",
            "ovs-vsctl",
            "ovs-ofctl",
            "socat",
            "ping",
            "ip",
        ])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plexus.redb");
    let log = dir.path().join("controller.log");
    let (api_port, of_port) = (free_port(), free_port());
    let mut ctl = start_controller(api_port, of_port, &db, &log);
    let api = Api::new(api_port);
    api.wait_up("/healthz").await;

    let dpid = 0x504c_0000_0001u64;
    let ovs = Ovs::builder()
        .controller(&format!("tcp:127.0.0.1:{of_port}"))
        .dpid(dpid)
        .start()
        .expect("ovs");
    let sw_ns = Netns::existing(ovs.netns().unwrap().name()).unwrap();

    // Model: chassis, two tenants each with a VPC 10.0.0.0/24, a subnet, an SG, two ports.
    let ch = api
        .post(
            "/v1/chassis",
            json!({"name": "chassis-1", "vtep_ip": "192.0.2.1",
                   "endpoint": {"datapath_id": format!("{dpid:#x}")}}),
        )
        .await;
    let ch_id = ch["id"].as_str().unwrap().to_string();
    // Hosts: (tenant, iface, ofport, mac, ip).
    let hosts = [
        (0, "a1", 1, "02:00:00:00:0a:01", "10.0.0.11"),
        (0, "a2", 2, "02:00:00:00:0a:02", "10.0.0.12"),
        (1, "b1", 3, "02:00:00:00:0b:01", "10.0.0.11"),
        (1, "b2", 4, "02:00:00:00:0b:02", "10.0.0.13"),
    ];
    let mut sgs = Vec::new();
    let mut subnets = Vec::new();
    let icmp_in = json!({"direction": "ingress", "protocol": "icmp", "remote_cidr": "10.0.0.0/24"});
    let any_out = json!({"direction": "egress", "protocol": "any"});
    for t in ["tenant-a", "tenant-b"] {
        let tenant = api.post("/v1/tenants", json!({"name": t})).await;
        let tid = tenant["id"].as_str().unwrap();
        let vpc = api
            .post(
                "/v1/vpcs",
                json!({"tenant_id": tid, "name": "vpc", "cidrs": ["10.0.0.0/24"]}),
            )
            .await;
        let sn = api
            .post(
                "/v1/subnets",
                json!({"vpc_id": vpc["id"], "name": "net", "cidr": "10.0.0.0/24"}),
            )
            .await;
        let sg = api
            .post(
                "/v1/security-groups",
                json!({"tenant_id": tid, "name": "web", "rules": [icmp_in, any_out]}),
            )
            .await;
        subnets.push(sn["id"].as_str().unwrap().to_string());
        sgs.push(sg);
    }
    let mut host_ns = Vec::new();
    let mut last_rev = 0;
    for (t, iface, ofport, mac, ip) in hosts {
        let ns = Netns::create(&unique_name(&format!("plx{iface}"))).unwrap();
        veth("eth0", &ns, iface, &sw_ns).unwrap();
        ns.ip(&["link", "set", "eth0", "address", mac]).unwrap();
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .unwrap();
        ovs.add_port(iface, ofport).unwrap();
        let p = api
            .post(
                "/v1/ports",
                json!({"subnet_id": subnets[t], "name": iface, "mac": mac, "ips": [ip],
                       "security_groups": [sgs[t]["id"]],
                       "binding": {"chassis_id": ch_id, "iface": iface}}),
            )
            .await;
        last_rev = p["revision"].as_u64().unwrap();
        host_ns.push(ns);
    }
    let (st, took) = api.wait_realized(&ch_id, last_rev).await;
    eprintln!("realized revision {last_rev} in {took:?}: {st}");
    assert_eq!(st["datapath_id"], format!("{dpid:#018x}"));
    let n_flows = st["flow_count"].as_u64().unwrap();
    assert_eq!(plexus_flows(&ovs).len() as u64, n_flows);

    let [h_a1, h_a2, h_b1, h_b2] = [&host_ns[0], &host_ns[1], &host_ns[2], &host_ns[3]];
    // Inside each VPC: reachable (b1 has the same address as a1).
    assert!(reachable(h_a1, "10.0.0.12"), "a1 -> a2");
    assert!(reachable(h_a2, "10.0.0.11"), "a2 -> a1");
    assert!(reachable(h_b1, "10.0.0.13"), "b1 -> b2");
    assert!(reachable(h_b2, "10.0.0.11"), "b2 -> b1");
    // Across VPCs: nothing.
    assert!(
        !ping(h_a1, "10.0.0.13") && !ping(h_a1, "10.0.0.13"),
        "a1 -> b2 must fail"
    );
    assert!(
        !ping(h_b1, "10.0.0.12") && !ping(h_b1, "10.0.0.12"),
        "b1 -> a2 must fail"
    );
    assert!(!ping(h_a2, "10.0.0.13"), "a2 -> b2 must fail");

    // Security group change: tenant A drops the ingress ICMP rule.
    let sg_a = &sgs[0];
    let path = format!("/v1/security-groups/{}", sg_a["id"].as_str().unwrap());
    let spec =
        |rules: Value| json!({"tenant_id": sg_a["tenant_id"], "name": "web", "rules": rules});
    let r = api.put(&path, spec(json!([any_out]))).await;
    let rev = r["revision"].as_u64().unwrap();
    let (_, took) = api.wait_realized(&ch_id, rev).await;
    eprintln!("SG rule removal realized in {took:?}");
    assert!(
        !ping(h_a1, "10.0.0.12") && !ping(h_a1, "10.0.0.12"),
        "a1 -> a2 after deny"
    );
    assert!(reachable(h_b1, "10.0.0.13"), "tenant B unaffected");
    let r = api.put(&path, spec(json!([icmp_in, any_out]))).await;
    let rev = r["revision"].as_u64().unwrap();
    let (st, took) = api.wait_realized(&ch_id, rev).await;
    eprintln!("SG rule restore realized in {took:?}");
    assert!(reachable(h_a1, "10.0.0.12"), "a1 -> a2 after allow");
    assert_eq!(st["flow_count"].as_u64().unwrap(), n_flows);

    // Restart: kill -9 during a ping stream; the new controller must reconcile with no
    // flow-mods at all and the stream must not lose a packet.
    let before = plexus_flows(&ovs);
    let stream = h_a1
        .command("ping")
        .args(["-i", "0.01", "-c", "600", "-W", "1", "10.0.0.12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ctl.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t_restart = Instant::now();
    let _ctl2 = start_controller(api_port, of_port, &db, &log);
    api.wait_up("/healthz").await;
    let (st, _) = api.wait_realized(&ch_id, rev).await;
    let resync = t_restart.elapsed();
    eprintln!("after restart (resynced {resync:?} after start): {st}");
    assert_eq!(st["reconciles"], 1);
    assert_eq!(st["flow_adds"], 0, "restart re-added flows");
    assert_eq!(st["flow_deletes"], 0, "restart deleted flows");
    let out = stream.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("");
    eprintln!("ping stream across the restart: {summary}");
    assert!(summary.contains(" 0% packet loss"), "{summary}");
    let after = plexus_flows(&ovs);
    assert_eq!(after.len(), before.len());
    // Same flows, not re-installed: every duration kept growing.
    let strip = |v: &[String]| -> Vec<String> {
        let mut v: Vec<String> = v
            .iter()
            .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&after), strip(&before));
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
    drop(host_ns);
    drop(ovs);
}

/// Static routes: a router attaches two subnets and routes 172.16.9.0/24 via a port of
/// the second subnet (an appliance host with port security off that owns 172.16.9.1);
/// a host of the first subnet reaches 172.16.9.1 through the distributed router and the
/// route; removing the route through the REST API stops it, putting it back restores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_route_via_an_appliance_port() {
    if !prereq::require_root()
        || !prereq::require_tools(&[
            "ovs-vswitchd",
            "ovsdb-server",
            "ovs-vsctl",
            "ovs-ofctl",
            "socat",
            "ping",
            "ip",
        ])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (api_port, of_port) = (free_port(), free_port());
    let _ctl = start_controller(
        api_port,
        of_port,
        &dir.path().join("plexus.redb"),
        &dir.path().join("controller.log"),
    );
    let api = Api::new(api_port);
    api.wait_up("/healthz").await;
    let dpid = 0x504c_0000_0007u64;
    let ovs = Ovs::builder()
        .controller(&format!("tcp:127.0.0.1:{of_port}"))
        .dpid(dpid)
        .start()
        .expect("ovs");
    let sw_ns = Netns::existing(ovs.netns().unwrap().name()).unwrap();
    let ch = api
        .post(
            "/v1/chassis",
            json!({"name": "chassis-1", "vtep_ip": "192.0.2.1",
                   "endpoint": {"datapath_id": format!("{dpid:#x}")}}),
        )
        .await;
    let ch_id = ch["id"].as_str().unwrap().to_string();
    let tenant = api.post("/v1/tenants", json!({"name": "t"})).await;
    let tid = tenant["id"].as_str().unwrap();
    let vpc = api
        .post(
            "/v1/vpcs",
            json!({"tenant_id": tid, "name": "vpc", "cidrs": ["10.0.0.0/16"]}),
        )
        .await;
    let sn1 = api
        .post(
            "/v1/subnets",
            json!({"vpc_id": vpc["id"], "name": "a", "cidr": "10.0.1.0/24"}),
        )
        .await;
    let sn2 = api
        .post(
            "/v1/subnets",
            json!({"vpc_id": vpc["id"], "name": "b", "cidr": "10.0.2.0/24"}),
        )
        .await;
    let sg = api
        .post(
            "/v1/security-groups",
            json!({"tenant_id": tid, "name": "icmp", "rules": [
                {"direction": "ingress", "protocol": "icmp", "remote_cidr": "10.0.0.0/16"},
                {"direction": "egress", "protocol": "any"}]}),
        )
        .await;
    let route = json!({"destination": "172.16.9.0/24", "nexthop": "10.0.2.10"});
    let router_spec = |routes: Value| {
        json!({"vpc_id": vpc["id"], "name": "r", "subnet_ids": [sn1["id"], sn2["id"]],
               "routes": routes})
    };
    let router = api.post("/v1/routers", router_spec(json!([route]))).await;
    // h1 in subnet a; the appliance in subnet b owns 172.16.9.1 and sends from it, so
    // its port has port security off.
    let mut rev = 0;
    let mut hosts = Vec::new();
    for (iface, ofport, mac, ip, gw, sn, sec) in [
        (
            "sr1",
            1,
            "02:00:00:00:0d:01",
            "10.0.1.10",
            "10.0.1.1",
            &sn1,
            true,
        ),
        (
            "sr2",
            2,
            "02:00:00:00:0d:02",
            "10.0.2.10",
            "10.0.2.1",
            &sn2,
            false,
        ),
    ] {
        let ns = Netns::create(&unique_name(&format!("plx{iface}"))).unwrap();
        veth("eth0", &ns, iface, &sw_ns).unwrap();
        ns.ip(&["link", "set", "eth0", "address", mac]).unwrap();
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .unwrap();
        ns.ip(&["route", "add", "default", "via", gw]).unwrap();
        ovs.add_port(iface, ofport).unwrap();
        let p = api
            .post(
                "/v1/ports",
                json!({"subnet_id": sn["id"], "name": iface, "mac": mac, "ips": [ip],
                       "port_security": sec, "security_groups": [sg["id"]],
                       "binding": {"chassis_id": ch_id, "iface": iface}}),
            )
            .await;
        rev = p["revision"].as_u64().unwrap();
        hosts.push(ns);
    }
    hosts[1]
        .ip(&["addr", "add", "172.16.9.1/32", "dev", "lo"])
        .unwrap();
    api.wait_realized(&ch_id, rev).await;
    let (h1, appliance) = (&hosts[0], &hosts[1]);
    assert!(reachable(h1, "10.0.2.10"), "h1 -> appliance (routed)");
    assert!(
        reachable(h1, "172.16.9.1"),
        "h1 -> 172.16.9.1 via the static route"
    );
    assert!(
        !ping(h1, "172.16.8.1") && !ping(appliance, "172.16.8.1"),
        "no route to 172.16.8.0/24"
    );
    // Remove the route: unreachable; restore it: reachable again.
    let path = format!("/v1/routers/{}", router["id"].as_str().unwrap());
    let r = api.put(&path, router_spec(json!([]))).await;
    api.wait_realized(&ch_id, r["revision"].as_u64().unwrap())
        .await;
    assert!(
        !ping(h1, "172.16.9.1") && !ping(h1, "172.16.9.1"),
        "172.16.9.1 reachable without the route"
    );
    assert!(reachable(h1, "10.0.2.10"), "h1 -> appliance still routed");
    let r = api.put(&path, router_spec(json!([route]))).await;
    api.wait_realized(&ch_id, r["revision"].as_u64().unwrap())
        .await;
    assert!(
        reachable(h1, "172.16.9.1"),
        "172.16.9.1 unreachable after the route came back"
    );
    drop(hosts);
    drop(ovs);
}
