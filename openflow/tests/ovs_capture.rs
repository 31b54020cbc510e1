//! Golden bytes from Open vSwitch: `ovs-ofctl` talks to a fake OpenFlow 1.3
//! switch (`plexus_tests::capture`) that records every frame it is sent.
//! These tests check the capture machinery itself, using only the framing of
//! `plexus_openflow::wire`; codec tests use `capture_ofctl` to get the exact
//! bytes OVS encodes for a flow, group, meter, bundle or port-mod.

use plexus_openflow::wire::{Frame, OFP_VERSION, OfpHeader, frame};
use plexus_tests::capture::{capture_ofctl, ofpt, payload_frames, try_capture_ofctl};
use plexus_tests::ofctl::ofp_print_bytes;
use plexus_tests::require_tool;

fn types(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.iter().map(|f| f[1]).collect()
}

/// Every captured frame is one whole, well-framed OpenFlow 1.3 message.
fn assert_well_framed(frames: &[Vec<u8>]) {
    for f in frames {
        assert_eq!(frame(f).unwrap(), Frame::Complete(f.len()), "{f:02x?}");
        let h = OfpHeader::parse(f).unwrap();
        assert_eq!(h.version, OFP_VERSION);
        assert_eq!(usize::from(h.length), f.len());
    }
}

#[test]
fn add_flow_yields_a_flow_mod() {
    if !require_tool("ovs-ofctl") {
        return;
    }
    let frames = capture_ofctl(&["add-flow", "in_port=1,actions=output:2"]);
    assert_well_framed(&frames);
    // ovs-ofctl first looks up table and port names (each on a connection of
    // its own: HELLO + multipart query), then sends HELLO, the FLOW_MOD and the
    // barrier it waits on.
    let t = types(&frames);
    assert_eq!(t.first(), Some(&ofpt::HELLO), "{t:?}");
    assert!(
        t.ends_with(&[ofpt::HELLO, ofpt::FLOW_MOD, ofpt::BARRIER_REQUEST]),
        "{t:?}"
    );
    let payload = payload_frames(&frames);
    assert_eq!(payload.len(), 1);
    let fm = &payload[0];
    assert_eq!(fm[1], 14);
    let text = ofp_print_bytes(fm).unwrap();
    assert!(
        text.contains("OFPT_FLOW_MOD (OF1.3)") && text.contains("ADD in_port=1 actions=output:2"),
        "{text}"
    );
}

#[test]
fn bundle_add_flows_is_wrapped_in_onf_bundle_messages() {
    if !require_tool("ovs-ofctl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.txt");
    std::fs::write(
        &file,
        "priority=10,in_port=1,actions=output:2\npriority=10,in_port=2,actions=output:1\n",
    )
    .unwrap();
    let frames = capture_ofctl(&["--bundle", "add-flows", file.to_str().unwrap()]);
    assert_well_framed(&frames);
    // All experimenter frames are ONF (0x4f4e4600) bundle control (2300) or
    // add-message (2301); the two FLOW_MODs travel inside add-messages.
    let exp: Vec<(u32, u32)> = frames
        .iter()
        .filter(|f| f[1] == ofpt::EXPERIMENTER)
        .map(|f| {
            (
                u32::from_be_bytes(f[8..12].try_into().unwrap()),
                u32::from_be_bytes(f[12..16].try_into().unwrap()),
            )
        })
        .collect();
    assert!(exp.iter().all(|(v, _)| *v == 0x4f4e_4600), "{exp:x?}");
    let ctrl = exp.iter().filter(|(_, t)| *t == 2300).count();
    let adds = exp.iter().filter(|(_, t)| *t == 2301).count();
    assert_eq!(adds, 2, "{exp:?}");
    assert!(ctrl >= 2, "open and commit at least: {exp:?}");
    let text: String = frames.iter().map(|f| ofp_print_bytes(f).unwrap()).collect();
    assert!(text.contains("OPEN_REQUEST"), "{text}");
    assert!(text.contains("COMMIT_REQUEST"), "{text}");
    assert!(text.contains("in_port=2 actions=output:1"), "{text}");
    // Bundle control is session traffic; the add-messages are payload.
    assert_eq!(payload_frames(&frames).len(), 2);
}

#[test]
fn group_meter_port_and_delete_commands_are_captured() {
    if !require_tool("ovs-ofctl") {
        return;
    }
    let cases: &[(&[&str], u8, &str)] = &[
        (
            &[
                "add-group",
                "group_id=1,type=all,bucket=output:1,bucket=output:2",
            ],
            ofpt::GROUP_MOD,
            "ADD group_id=1,type=all,bucket=actions=output:1,bucket=actions=output:2",
        ),
        (
            &["add-meter", "meter=1,kbps,band=type=drop,rate=1000"],
            ofpt::METER_MOD,
            "ADD meter=1 kbps bands=\ntype=drop rate=1000",
        ),
        (&["del-flows"], ofpt::FLOW_MOD, "DEL"),
        (&["mod-port", "p2", "down"], ofpt::PORT_MOD, "port: 2"),
    ];
    for (args, ty, want) in cases {
        let frames = capture_ofctl(args);
        assert_well_framed(&frames);
        let payload = payload_frames(&frames);
        assert_eq!(types(&payload), [*ty], "{args:?}: {:?}", types(&frames));
        let text = ofp_print_bytes(&payload[0]).unwrap();
        assert!(text.contains(want), "{args:?}: want {want:?} in\n{text}");
        assert!(!text.contains("decode error"), "{text}");
    }
}

#[test]
fn a_command_that_waits_forever_times_out() {
    if !require_tool("ovs-ofctl") {
        return;
    }
    // `monitor` waits for asynchronous messages that the fake switch never
    // sends: the capture must give up after its 5 s bound, not hang.
    let t0 = std::time::Instant::now();
    let c = try_capture_ofctl(&["monitor"]).unwrap();
    assert!(c.timed_out(), "{c:?}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(c.frames.first().map(|f| f[1]), Some(ofpt::HELLO));
}

/// Every message `ovs-ofctl -O OpenFlow13 --bundle add-flows` sends for the
/// ~290 flows of the golden corpus (HELLOs, name look-ups, ONF bundle
/// control and add-messages, barriers) decodes with our codec and re-encodes
/// to the same bytes; each bundled FLOW_MOD equals our parse of its line.
#[test]
fn bundle_add_flows_decodes_losslessly() {
    use plexus_openflow::Message;
    use plexus_openflow::message::FlowModCommand;
    use plexus_openflow::text::flow::parse_flow_mod;
    if !require_tool("ovs-ofctl") {
        return;
    }
    let flows: Vec<&str> = include_str!("data/golden.in")
        .lines()
        .filter_map(|l| l.strip_prefix("add-flow|"))
        .collect();
    assert!(flows.len() > 250, "{}", flows.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.txt");
    std::fs::write(&file, flows.join("\n") + "\n").unwrap();
    let frames = capture_ofctl(&["--bundle", "add-flows", file.to_str().unwrap()]);
    assert_well_framed(&frames);
    let mut inner = Vec::new();
    for f in &frames {
        let (xid, m) = Message::decode(f).unwrap_or_else(|e| panic!("decode {f:02x?}: {e}"));
        assert_eq!(&m.to_bytes(xid), f, "re-encode of {m:?}");
        if let Message::BundleAdd(add) = m {
            inner.push(*add.message);
        }
    }
    assert_eq!(inner.len(), flows.len(), "one bundle add-message per flow");
    for (msg, text) in inner.iter().zip(&flows) {
        let ours = parse_flow_mod(text, FlowModCommand::Add).unwrap();
        assert_eq!(msg, &Message::FlowMod(ours), "{text}");
    }
}
