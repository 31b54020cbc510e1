//! Tests of the private-OVS harness itself (needs root and Open vSwitch).

use plexus_tests::netns;
use plexus_tests::ovs::{NetnsMode, Ovs, process_alive};
use plexus_tests::{require_root, require_tool};

fn prereqs() -> bool {
    require_tool("ovs-vswitchd")
        && require_tool("ovsdb-server")
        && require_tool("ovs-ofctl")
        && require_tool("ip")
        && require_root()
}

#[test]
fn start_add_flow_dump_stop_leaves_nothing() {
    if !prereqs() {
        return;
    }
    let ovs = Ovs::builder().dpid(0x42).start().expect("start OVS");
    let dir = ovs.state_dir().to_path_buf();
    let ns = ovs.netns().expect("private netns").name().to_owned();
    let pids = ovs.pids();
    assert_eq!(pids.len(), 2, "ovsdb-server + ovs-vswitchd pids: {pids:?}");
    assert!(process_alive(pids[0], "ovsdb-server"));
    assert!(process_alive(pids[1], "ovs-vswitchd"));
    assert!(netns::exists(&ns));

    // Bridge as configured.
    let br = ovs
        .vsctl(&[
            "get",
            "bridge",
            "br0",
            "datapath_type",
            "fail_mode",
            "protocols",
        ])
        .unwrap();
    assert_eq!(br, "netdev\nsecure\n[OpenFlow13]\n");
    let limit = ovs
        .vsctl(&["get", "Open_vSwitch", ".", "other_config:flow-limit"])
        .unwrap();
    assert_eq!(limit.trim(), "\"0\"");

    // A port with a requested OpenFlow number (a veth inside OVS's netns).
    let sw_ns = netns::Netns::existing(&ns).unwrap();
    sw_ns
        .ip(&["link", "add", "hp1", "type", "veth", "peer", "name", "hp1b"])
        .unwrap();
    sw_ns.ip(&["link", "set", "hp1", "up"]).unwrap();
    ovs.add_port("hp1", 7).unwrap();
    let ports = ovs.ofctl(&["dump-ports-desc"]).unwrap();
    assert!(ports.contains(" 7(hp1): addr:"), "{ports}");

    ovs.ofctl(&["add-flow", "priority=10,in_port=7,actions=drop"])
        .unwrap();
    let flows = ovs.ofctl(&["dump-flows"]).unwrap();
    assert!(
        flows.contains("priority=10,in_port=7 actions=drop"),
        "dump-flows: {flows}"
    );
    let features = ovs.ofctl(&["show"]).unwrap();
    assert!(features.contains("dpid:0000000000000042"), "{features}");

    ovs.stop().expect("clean stop");
    for (pid, name) in pids.iter().zip(["ovsdb-server", "ovs-vswitchd"]) {
        assert!(!process_alive(*pid, name), "{name}[{pid}] still running");
    }
    assert!(!dir.exists(), "state dir {} left behind", dir.display());
    assert!(!netns::exists(&ns), "netns {ns} left behind");
}

#[test]
fn drop_cleans_up_and_named_netns_is_kept_if_not_ours() {
    if !prereqs() {
        return;
    }
    let name = netns::unique_name("plxhk");
    let keep = netns::Netns::create(&name).unwrap();
    let (dir, pids) = {
        let ovs = Ovs::builder()
            .netns(NetnsMode::Named(name.clone()))
            .bridge("brx")
            .start()
            .unwrap();
        assert!(ovs.mgmt_socket().ends_with("brx.mgmt"));
        let flows = ovs.ofctl(&["dump-flows"]).unwrap();
        assert!(
            !flows.contains("actions="),
            "fresh bridge has flows: {flows:?}"
        );
        (ovs.state_dir().to_path_buf(), ovs.pids())
    }; // dropped here
    assert!(!dir.exists());
    assert!(pids.iter().all(|p| !process_alive(*p, "ovs-vswitchd")));
    assert!(pids.iter().all(|p| !process_alive(*p, "ovsdb-server")));
    assert!(netns::exists(&name), "a netns we did not create must stay");
    keep.delete().unwrap();
    assert!(!netns::exists(&name));
}

#[test]
fn cleanup_stale_stops_a_persisted_instance() {
    if !prereqs() {
        return;
    }
    let dir = std::path::PathBuf::from(format!("/tmp/plx-stale-{}", std::process::id()));
    let ovs = Ovs::builder().state_dir(&dir).no_bridge().start().unwrap();
    let ns = ovs.netns().unwrap().name().to_owned();
    let pids = ovs.pids();
    let kept = ovs.persist();
    assert_eq!(kept, dir);
    assert!(process_alive(pids[1], "ovs-vswitchd"));
    plexus_tests::ovs::cleanup_stale(&dir).unwrap();
    assert!(!dir.exists());
    assert!(!process_alive(pids[0], "ovsdb-server"));
    assert!(!process_alive(pids[1], "ovs-vswitchd"));
    // The persisted private netns is owned by nobody now: remove it here.
    assert!(netns::exists(&ns));
    netns::ip(&["netns", "del", &ns]).unwrap();
}
