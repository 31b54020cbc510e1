//! Control-socket commands: parsing, and execution against a full pipeline
//! without ports (no root needed).

use std::time::Instant;

use plexus_openflow::OfpError;
use plexus_openflow::message::{FlowModCommand, PacketIn, PacketOut, PortMod};
use plexus_openflow::text::flow::parse_flow_mod;

use super::*;
use crate::agent::{AgentConfig, Switch};
use crate::datapath::full::FullPipeline;
use crate::datapath::{DpPort, Engine, PortInfo, Sink};

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

#[test]
fn parse_commands_and_aliases() {
    assert_eq!(parse(&words(&["help"])).unwrap().verb, Verb::Help);
    assert_eq!(parse(&words(&["version"])).unwrap().verb, Verb::Version);
    assert_eq!(
        parse(&words(&["dpif/dump-flows"])).unwrap().verb,
        Verb::DumpCache
    );
    assert_eq!(
        parse(&words(&["dpif/flush"])).unwrap().verb,
        Verb::CacheFlush
    );
    assert_eq!(
        parse(&words(&["dump-flows", "br0", "3"])).unwrap().verb,
        Verb::DumpFlows { table: Some(3) }
    );
    assert_eq!(
        parse(&words(&["dump-flows", "br0"])).unwrap().verb,
        Verb::DumpFlows { table: None }
    );
    let c = parse(&words(&["--format", "json", "show"])).unwrap();
    assert!(c.json);
    assert_eq!(c.verb, Verb::Show);
    let c = parse(&words(&["dump-cache", "--format=json"])).unwrap();
    assert!(c.json);
    assert_eq!(c.verb, Verb::DumpCache);
    assert_eq!(parse(&words(&["--version"])).unwrap().verb, Verb::Version);
    let Verb::Trace {
        bridge,
        flow,
        packet,
    } = parse(&words(&["ofproto/trace", "br0", "in_port=1,tcp,tp_dst=80"]))
        .unwrap()
        .verb
    else {
        panic!("not a trace");
    };
    assert_eq!(bridge.as_deref(), Some("br0"));
    assert_eq!(flow.exact(FieldId::TcpDst), Some(80));
    assert_eq!(packet, None);
    // FLOW PACKET without a bridge.
    let hex = "ffffffffffff0000000000010806";
    let Verb::Trace { bridge, packet, .. } =
        parse(&words(&["trace", "in_port=2", hex])).unwrap().verb
    else {
        panic!("not a trace");
    };
    assert_eq!(bridge, None);
    assert_eq!(packet.map(|p| p.len()), Some(14));
}

#[test]
fn malformed_commands_get_precise_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no command given"),
        (&["frobnicate"], "\"frobnicate\" is not a valid command"),
        (
            &["show", "extra"],
            "show: takes no arguments, got \"extra\"",
        ),
        (&["trace"], "trace: usage"),
        (
            &["trace", "in_port=1,tp_dst=80"],
            "tp_dst: prerequisites not met",
        ),
        (&["trace", "in_port=1,bogus=3"], "bogus"),
        (
            &["trace", "br0", "in_port=1", "zz"],
            "bad packet hex \"zz\"",
        ),
        (
            &["trace", "br0", "in_port=1", "0011"],
            "shorter than an Ethernet header",
        ),
        (&["trace", "a", "b", "c", "d"], "too many arguments"),
        (&["dump-flows", "br0", "300"], "bad table \"300\""),
        (&["dump-flows", "br0", "x"], "bad table \"x\""),
        (
            &["--format", "yaml", "show"],
            "--format yaml: expected text or json",
        ),
        (&["--frob", "show"], "--frob: unknown option"),
        (&["show", "--format"], "--format needs text or json"),
    ];
    for (args, want) in cases {
        let e = parse(&words(args)).unwrap_err();
        assert!(e.contains(want), "{args:?}: {e:?} lacks {want:?}");
    }
}

#[test]
fn wire_words_roundtrip_and_reject_garbage() {
    let w = words(&["trace", "br0", "in_port=1,tcp"]);
    assert_eq!(server::decode_words(&server::encode_words(&w)).unwrap(), w);
    assert!(server::decode_words(b"").unwrap_err().contains("empty"));
    assert!(server::decode_words(b"show").unwrap_err().contains("NUL"));
    assert!(
        server::decode_words(b"\xff\0")
            .unwrap_err()
            .contains("UTF-8")
    );
}

#[test]
fn resolve_targets() {
    assert_eq!(
        server::resolve_target(Some("/tmp/x.ctl")),
        std::path::PathBuf::from("/tmp/x.ctl")
    );
    assert!(server::resolve_target(Some("123")).ends_with("plexus-vswitchd.123.ctl"));
    assert!(server::resolve_target(None).ends_with("plexus-vswitchd.ctl"));
}

/// A switch with the full pipeline and no real ports.
struct TestSwitch {
    e: FullPipeline,
    ports: Vec<DpPort>,
}

impl Switch for TestSwitch {
    fn engine(&mut self) -> &mut dyn Engine {
        &mut self.e
    }
    fn ports(&self) -> &[DpPort] {
        &self.ports
    }
    fn packet_out(&mut self, _po: &PacketOut) -> Result<Vec<PacketIn>, OfpError> {
        Ok(Vec::new())
    }
    fn port_mod(&mut self, _pm: &PortMod) -> Result<(), OfpError> {
        Ok(())
    }
}

#[derive(Default)]
struct Collect(Vec<(u32, Vec<u8>)>);

impl Sink for Collect {
    fn output(&mut self, port: u32, frame: &[u8]) {
        self.0.push((port, frame.to_vec()));
    }
    fn packet_in(&mut self, _pi: PacketIn) {}
}

fn setup() -> (Agent, TestSwitch) {
    let agent = Agent::new(AgentConfig {
        datapath_id: 0xabc,
        bridge: "br0".into(),
        ..Default::default()
    });
    let mut e = FullPipeline::new();
    let ports: Vec<PortInfo> = (1..=3)
        .map(|n| PortInfo {
            ofport: n,
            name: format!("p{n}"),
            hw_addr: [2, 0, 0, 0, 0, n as u8],
            live: true,
            no_fwd: false,
            no_flood: false,
        })
        .collect();
    e.set_ports(&ports);
    (
        agent,
        TestSwitch {
            e,
            ports: Vec::new(),
        },
    )
}

fn add(sw: &mut TestSwitch, line: &str, cmd: FlowModCommand) {
    let fm = parse_flow_mod(line, cmd).expect("flow parses");
    sw.e.flow_mod(&fm, Instant::now()).expect("flow_mod");
}

fn run(agent: &mut Agent, sw: &mut TestSwitch, args: &[&str]) -> Reply {
    let cmd = parse(&words(args)).expect("command parses");
    execute(&cmd, agent, sw)
}

/// A TCP/IPv4 frame 00:..:01 → 00:..:02, 10.0.0.1 → 10.0.0.2, dport 80.
fn tcp_frame(dport: u16) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip = [
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    f.extend_from_slice(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x02;
    f.extend_from_slice(&tcp);
    f
}

#[test]
fn trace_names_tables_rules_and_changes_after_flow_mod() {
    let (mut agent, mut sw) = setup();
    use FlowModCommand::*;
    add(
        &mut sw,
        "table=0,priority=100,cookie=0x5,in_port=1,tcp,tp_dst=80,actions=resubmit(,1),goto_table:2",
        Add,
    );
    add(&mut sw, "table=1,priority=10,ip,actions=mod_nw_tos:4", Add);
    add(&mut sw, "table=2,priority=7,ip,actions=output:2", Add);
    add(&mut sw, "table=0,priority=0,actions=drop", Add);
    let flow =
        "in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,tcp,nw_dst=10.0.0.2,tp_dst=80";
    let r = run(&mut agent, &mut sw, &["trace", "br0", flow]);
    assert!(r.ok, "{}", r.text);
    let t = &r.text;
    assert!(t.contains("bridge(\"br0\")"), "{t}");
    assert!(
        t.contains(" 0. tcp,in_port=1,tp_dst=80, priority 100, cookie 0x5"),
        "{t}"
    );
    assert!(t.contains("actions=resubmit(,1),goto_table:2"), "{t}");
    assert!(t.contains("     1. ip, priority 10, cookie 0x0"), "{t}");
    assert!(t.contains(" 2. ip, priority 7"), "{t}");
    assert!(t.contains("Final flow: "), "{t}");
    assert!(t.contains("nw_tos=4"), "final flow has the rewrite: {t}");
    assert!(t.contains("Megaflow: "), "{t}");
    let mega = t.lines().find(|l| l.starts_with("Megaflow:")).unwrap();
    assert!(
        mega.contains("in_port=1") && mega.contains("tp_dst=80"),
        "{mega}"
    );
    let acts = t
        .lines()
        .find(|l| l.starts_with("Datapath actions:"))
        .unwrap();
    assert!(
        acts.contains("set(ip_dscp=1)") && acts.ends_with(",2"),
        "{acts}"
    );

    // Another port: the priority-0 drop flow.
    let r = run(&mut agent, &mut sw, &["trace", "in_port=3,tcp,tp_dst=80"]);
    assert!(r.text.contains(" 0. priority 0, cookie 0x0"), "{}", r.text);
    assert!(r.text.contains("Datapath actions: drop"), "{}", r.text);

    // FLOW_MOD changes the answer.
    add(&mut sw, "table=2,priority=7,ip,actions=output:3", Modify);
    let r = run(&mut agent, &mut sw, &["trace", "br0", flow]);
    let acts = r
        .text
        .lines()
        .find(|l| l.starts_with("Datapath actions:"))
        .unwrap()
        .to_string();
    assert!(acts.ends_with(",3"), "{acts}");

    // A table miss says so.
    add(&mut sw, "table=2,priority=7,ip", Delete);
    let r = run(&mut agent, &mut sw, &["trace", "br0", flow]);
    assert!(r.text.contains(" 2. No match."), "{}", r.text);

    // Unknown bridge.
    let r = run(&mut agent, &mut sw, &["trace", "br9", flow]);
    assert!(
        !r.ok && r.text.contains("br9: unknown bridge"),
        "{}",
        r.text
    );

    // JSON.
    let r = run(&mut agent, &mut sw, &["--format", "json", "trace", flow]);
    let v: serde_json::Value = serde_json::from_str(&r.text).expect("json");
    assert_eq!(v["steps"][0]["table"], 0);
    assert_eq!(v["steps"][0]["rule"]["priority"], 100);
}

#[test]
fn trace_from_a_hex_frame_and_groups() {
    let (mut agent, mut sw) = setup();
    let gm = plexus_openflow::text::flow::parse_group_mod(
        "group_id=7,type=select,bucket=output:2,bucket=output:3",
        plexus_openflow::message::GroupModCommand::Add,
    )
    .unwrap();
    sw.e.group_mod(&gm).unwrap();
    add(
        &mut sw,
        "priority=5,tcp,tp_dst=443,actions=group:7",
        FlowModCommand::Add,
    );
    let hex: String = tcp_frame(443).iter().map(|b| format!("{b:02x}")).collect();
    let r = run(&mut agent, &mut sw, &["trace", "br0", "in_port=1", &hex]);
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains("priority 5"), "{}", r.text);
    assert!(r.text.contains("group:7 (select) bucket"), "{}", r.text);
    assert!(
        r.text.contains("nw_src=10.0.0.1"),
        "flow from the frame: {}",
        r.text
    );
    let acts = r
        .text
        .lines()
        .find(|l| l.starts_with("Datapath actions:"))
        .unwrap();
    assert!(acts.ends_with(": 2") || acts.ends_with(": 3"), "{acts}");
}

#[test]
fn dump_flows_cache_flush_and_fdb() {
    let (mut agent, mut sw) = setup();
    add(
        &mut sw,
        "priority=9,cookie=0x7,in_port=1,actions=output:2",
        FlowModCommand::Add,
    );
    add(
        &mut sw,
        "table=3,priority=1,actions=NORMAL",
        FlowModCommand::Add,
    );
    let r = run(&mut agent, &mut sw, &["dump-flows"]);
    assert!(r.ok);
    assert_eq!(r.text.lines().count(), 2, "{}", r.text);
    assert!(
        r.text.contains("cookie=0x7,") && r.text.contains("priority=9,in_port=1 actions=output:2"),
        "{}",
        r.text
    );
    let r = run(&mut agent, &mut sw, &["dump-flows", "br0", "3"]);
    assert_eq!(r.text.lines().count(), 1, "{}", r.text);
    assert!(r.text.contains("table=3"), "{}", r.text);

    // Cache: empty, then one megaflow after traffic, then empty after flush.
    let r = run(&mut agent, &mut sw, &["dump-cache"]);
    assert!(r.text.starts_with("megaflows: 0 "), "{}", r.text);
    let mut out = Collect::default();
    for _ in 0..3 {
        sw.e.process(1, &tcp_frame(80), Instant::now(), &mut out);
    }
    assert_eq!(out.0.len(), 3);
    let r = run(&mut agent, &mut sw, &["dump-cache"]);
    assert!(r.text.starts_with("megaflows: 1 "), "{}", r.text);
    let line = r.text.lines().nth(2).expect("a megaflow line");
    assert!(line.starts_with("in_port=1,"), "{line}");
    assert!(line.ends_with("actions:2"), "{line}");
    assert!(
        line.contains(", hits:") && line.contains(", age:"),
        "{line}"
    );
    let r = run(&mut agent, &mut sw, &["--format", "json", "dump-cache"]);
    let v: serde_json::Value = serde_json::from_str(&r.text).expect("json");
    assert_eq!(v["megaflows"], 1);
    assert_eq!(v["flows"][0]["actions"], "2");
    let r = run(&mut agent, &mut sw, &["cache-flush"]);
    assert_eq!(r.text, "flushed 1 megaflows\n");
    let r = run(&mut agent, &mut sw, &["dump-cache"]);
    assert!(r.text.starts_with("megaflows: 0 "), "{}", r.text);

    // fdb: NORMAL learns the source MAC.
    let r = run(&mut agent, &mut sw, &["fdb/show"]);
    assert_eq!(r.text.lines().count(), 1, "header only: {}", r.text);
    let mut out = Collect::default();
    assert!(sw.e.process_normal(2, &tcp_frame(80), Instant::now(), &mut out));
    let flooded: Vec<u32> = out.0.iter().map(|(p, _)| *p).collect();
    assert_eq!(flooded, vec![1, 3]);
    let r = run(&mut agent, &mut sw, &["fdb/show"]);
    assert!(
        r.text.contains("    2     0  00:00:00:00:00:01"),
        "{}",
        r.text
    );
    run(&mut agent, &mut sw, &["fdb/flush"]);
    let r = run(&mut agent, &mut sw, &["fdb/show"]);
    assert_eq!(r.text.lines().count(), 1, "{}", r.text);
}

#[test]
fn show_and_version() {
    let (mut agent, mut sw) = setup();
    let r = run(&mut agent, &mut sw, &["show"]);
    assert!(r.ok);
    assert!(
        r.text
            .starts_with("br0: dpid 0000000000000abc, fail-mode secure"),
        "{}",
        r.text
    );
    let r = run(&mut agent, &mut sw, &["--format", "json", "show"]);
    let v: serde_json::Value = serde_json::from_str(&r.text).expect("json");
    assert_eq!(v["datapath_id"], "0000000000000abc");
    let r = run(&mut agent, &mut sw, &["version"]);
    assert!(r.text.contains(env!("CARGO_PKG_VERSION")));
    let r = run(&mut agent, &mut sw, &["responder/show"]);
    assert!(
        r.ok && r.text.contains("dhcp4 replies=0 drops=0"),
        "{}",
        r.text
    );
    let r = run(&mut agent, &mut sw, &["--format", "json", "responder/show"]);
    let v: serde_json::Value = serde_json::from_str(&r.text).expect("json");
    assert_eq!(v["arp"]["replies"], 0);
    assert_eq!(v["dhcp4"]["drops"]["foreign"], 0);
    assert!(parse(&words(&["responder/show", "x"])).is_err());
    assert!(
        run(&mut agent, &mut sw, &["help"])
            .text
            .contains("trace [BRIDGE] FLOW")
    );
}
