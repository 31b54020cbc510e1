//! The control socket of `plexus-vswitchd` (like `ovs-appctl`): commands,
//! their parsing, and their execution on the datapath thread.
//!
//! A request is a list of words (`trace br0 in_port=1,tcp,tp_dst=80`),
//! parsed on the control side into a [`Command`] (a malformed request is
//! answered there with a precise message and never reaches the datapath),
//! then carried to the datapath thread as [`Ctl::Appctl`](crate::datapath::Ctl)
//! with a reply channel, where [`execute`] answers it between batches. No
//! lock is taken on the packet path; a traced packet is translated on a
//! read-only view of the tables (no counters, no cache, no MAC learning).
//!
//! [`server`] is the unix-socket listener and the client function the
//! `plexus-appctl` binary uses.

pub mod server;

use std::fmt::Write as _;
use std::time::Instant;

use plexus_openflow::message::{FlowStatsRequest, group_id, port_no};
use plexus_openflow::oxm::{FieldId, Match};
use plexus_openflow::text::flow::format_flow_stats;
use plexus_openflow::text::{format_field_value, format_match, parse_match};
use serde_json::json;

use crate::agent::{Agent, FailMode, Switch};
use crate::flow::{FlowKey, MaskedKey, PacketMeta, parse_into};
use crate::pipeline::Op;
use crate::pipeline::trace::{TraceStep, key_match, masked_key_match};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Help,
    Version,
    /// Bridge, ports, controllers.
    Show,
    /// The OpenFlow tables (`ovs-ofctl dump-flows` format), optionally one table.
    DumpFlows {
        table: Option<u8>,
    },
    /// The megaflow cache.
    DumpCache,
    /// Empty the EMC and megaflow caches.
    CacheFlush,
    /// The NORMAL MAC table.
    FdbShow,
    /// Forget the learned MACs.
    FdbFlush,
    /// Local responder counters (replies and drops per kind, DHCP exchanges).
    ResponderShow,
    /// Explain a packet through the tables.
    Trace {
        bridge: Option<String>,
        /// The flow as given (`ovs-ofctl` match syntax).
        flow: Match,
        /// A frame to parse instead of building the packet from `flow`.
        packet: Option<Vec<u8>>,
    },
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    /// `--format json`.
    pub json: bool,
}

/// The answer: success flag and text (or JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: text.into(),
        }
    }

    pub fn err(text: impl Into<String>) -> Self {
        Self {
            ok: false,
            text: text.into(),
        }
    }
}

/// The commands and their arguments (`help`).
pub const HELP: &str = "\
The available commands are:
  help                          this list
  version                       the daemon's version
  show                          bridge, ports (type, link, stats), controllers
  dump-flows [BRIDGE] [TABLE]   the OpenFlow tables (ovs-ofctl format)
  dump-cache                    megaflows (mask, hits, actions), EMC size
  cache-flush                   empty the EMC and megaflow caches
  fdb/show [BRIDGE]             MAC addresses learned by NORMAL
  fdb/flush [BRIDGE]            forget the learned MAC addresses
  responder/show                local responders (ARP, ND, ICMP echo, DHCPv4):
                                replies and drops per kind, DHCP exchanges
  trace [BRIDGE] FLOW [PACKET]  explain a packet through the tables; FLOW in
                                ovs-ofctl match syntax (in_port=1,tcp,tp_dst=80),
                                PACKET an optional Ethernet frame in hex
Options (before the command): --format text|json
Aliases: ofproto/trace, dpif/dump-flows (dump-cache), dpif/flush (cache-flush),
  ofctl/dump-flows (dump-flows), version (--version)
";

/// Parses a request's words. The output options (`--format text|json`,
/// `--json`) may stand anywhere; every other word starting with `--` is an
/// error.
pub fn parse(words: &[String]) -> Result<Command, String> {
    let mut json = false;
    let mut args: Vec<String> = Vec::with_capacity(words.len());
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--format" => {
                let f = it.next().ok_or("--format needs text or json")?;
                json = match f.as_str() {
                    "json" => true,
                    "text" => false,
                    _ => return Err(format!("--format {f}: expected text or json")),
                };
            }
            "--format=json" | "--json" => json = true,
            "--format=text" => json = false,
            "--version" => args.push("version".into()),
            o if o.starts_with("--") => return Err(format!("{o}: unknown option (try help)")),
            _ => args.push(w.clone()),
        }
    }
    let Some((name, rest)) = args.split_first() else {
        return Err("no command given (try help)".into());
    };
    let no_args = |v: Verb| {
        if rest.is_empty() {
            Ok(v)
        } else {
            Err(format!(
                "{name}: takes no arguments, got \"{}\"",
                rest.join(" ")
            ))
        }
    };
    let verb = match name.as_str() {
        "help" | "list-commands" => no_args(Verb::Help)?,
        "version" => no_args(Verb::Version)?,
        "show" | "ofproto/show" => no_args(Verb::Show)?,
        "responder/show" => no_args(Verb::ResponderShow)?,
        "dump-cache" | "dpif/dump-flows" | "dpctl/dump-flows" => no_args(Verb::DumpCache)?,
        "cache-flush" | "dpif/flush" | "dpctl/del-flows" | "revalidator/purge" => {
            no_args(Verb::CacheFlush)?
        }
        "fdb/show" | "fdb/flush" => {
            if rest.len() > 1 {
                return Err(format!("{name}: takes at most a bridge name"));
            }
            if name == "fdb/show" {
                Verb::FdbShow
            } else {
                Verb::FdbFlush
            }
        }
        "dump-flows" | "ofctl/dump-flows" => {
            if rest.len() > 2 {
                return Err(format!("{name}: at most BRIDGE and TABLE"));
            }
            // The last word, if numeric, is the table; a non-numeric first
            // word is the bridge.
            let table = match rest.last() {
                Some(t) if t.bytes().all(|b| b.is_ascii_digit()) || t.starts_with("table=") => {
                    let n = t.trim_start_matches("table=");
                    Some(
                        n.parse::<u8>()
                            .ok()
                            .filter(|&n| n < 255)
                            .ok_or_else(|| format!("{name}: bad table \"{t}\" (0..=254)"))?,
                    )
                }
                Some(_) if rest.len() == 2 => {
                    return Err(format!("{name}: bad table \"{}\"", rest[1]));
                }
                _ => None,
            };
            Verb::DumpFlows { table }
        }
        "trace" | "ofproto/trace" => parse_trace(rest)?,
        other => return Err(format!("\"{other}\" is not a valid command (try help)")),
    };
    Ok(Command { verb, json })
}

fn parse_trace(rest: &[String]) -> Result<Verb, String> {
    let usage = "trace: usage: trace [BRIDGE] FLOW [PACKET-HEX]";
    let (bridge, flow, packet) = match rest {
        [] => return Err(usage.into()),
        [f] => (None, f, None),
        [a, b] if is_hex_frame(b) => (None, a, Some(b)),
        [a, b] => (Some(a.clone()), b, None),
        [a, b, c] => (Some(a.clone()), b, Some(c)),
        _ => return Err(format!("{usage} (too many arguments)")),
    };
    let flow = parse_match(flow).map_err(|e| format!("trace: bad flow \"{flow}\": {e}"))?;
    let packet = match packet {
        None => None,
        Some(h) => Some(unhex(h).ok_or_else(|| format!("trace: bad packet hex \"{h}\""))?),
    };
    if let Some(p) = &packet
        && p.len() < 14
    {
        return Err(format!(
            "trace: packet of {} bytes is shorter than an Ethernet header",
            p.len()
        ));
    }
    Ok(Verb::Trace {
        bridge,
        flow,
        packet,
    })
}

/// A hex string long enough to be a frame (at least an Ethernet header).
fn is_hex_frame(s: &str) -> bool {
    s.len() >= 28 && !s.contains('=') && unhex(s).is_some()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Runs `cmd` against the agent and switch (on the datapath thread).
pub fn execute(cmd: &Command, agent: &mut Agent, sw: &mut dyn Switch) -> Reply {
    let now = Instant::now();
    match &cmd.verb {
        Verb::Help => Reply::ok(HELP),
        Verb::Version => Reply::ok(format!(
            "plexus-vswitchd (Plexus) {}\nOpenFlow versions 0x4:0x4\n",
            env!("CARGO_PKG_VERSION")
        )),
        Verb::Show => show(cmd.json, agent, sw, now),
        Verb::ResponderShow => match sw.engine().responder_stats() {
            Some(s) if cmd.json => Reply::ok(s.to_json()),
            Some(s) => Reply::ok(s.to_text()),
            None => Reply::err("this datapath engine has no local responders"),
        },
        Verb::DumpFlows { table } => dump_flows(*table, sw, now),
        Verb::DumpCache => dump_cache(cmd.json, sw),
        Verb::CacheFlush => match sw.engine().pipeline_mut() {
            Some(p) => {
                let n = p.cache_summary().megaflows;
                p.cache_flush();
                Reply::ok(format!("flushed {n} megaflows\n"))
            }
            None => Reply::err("cache-flush: this pipeline has no flow cache"),
        },
        Verb::FdbShow => fdb_show(cmd.json, sw, now),
        Verb::FdbFlush => match sw.engine().pipeline_mut() {
            Some(p) => {
                p.mac_flush();
                Reply::ok("table successfully flushed\n")
            }
            None => Reply::err("fdb/flush: this pipeline has no NORMAL"),
        },
        Verb::Trace {
            bridge,
            flow,
            packet,
        } => {
            if let Some(b) = bridge
                && *b != agent.config().bridge
            {
                return Reply::err(format!(
                    "{b}: unknown bridge (this is {})",
                    agent.config().bridge
                ));
            }
            trace(
                &agent.config().bridge,
                flow,
                packet.as_deref(),
                cmd.json,
                sw,
                now,
            )
        }
    }
}

fn fail_mode_name(f: FailMode) -> &'static str {
    match f {
        FailMode::Secure => "secure",
        FailMode::Standalone => "standalone",
    }
}

fn mac(a: [u8; 6]) -> String {
    plexus_openflow::text::format_mac(u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[10..].copy_from_slice(&a);
        b
    }))
}

fn show(json: bool, agent: &Agent, sw: &mut dyn Switch, now: Instant) -> Reply {
    let cfg = agent.config();
    let conns = agent.connections(now);
    let standalone_active = cfg.fail_mode == FailMode::Standalone && !agent.has_primary();
    let flows: usize = sw
        .engine()
        .table_stats()
        .iter()
        .map(|t| t.active_count as usize)
        .sum();
    let ports: Vec<_> = sw
        .ports()
        .iter()
        .map(|p| {
            let d = p.desc();
            let st = p.stats(now);
            let link = p.port.link_state();
            (p.ofport, d, st, link, p.port.kind())
        })
        .collect();
    if json {
        let v = json!({
            "bridge": cfg.bridge,
            "datapath_id": format!("{:016x}", cfg.datapath_id),
            "fail_mode": fail_mode_name(cfg.fail_mode),
            "standalone_active": standalone_active,
            "flows": flows,
            "packet_in_buffers": cfg.packet_in_buffers,
            "packet_in_buffers_in_use": agent.buffers_in_use(now),
            "ports": ports.iter().map(|(no, d, st, link, kind)| json!({
                "ofport": no, "name": d.name, "type": kind, "hw_addr": mac(d.hw_addr),
                "admin_up": link.admin_up, "link_up": link.oper_up, "config": d.config, "state": d.state,
                "rx_packets": st.rx_packets, "rx_bytes": st.rx_bytes, "rx_dropped": st.rx_dropped,
                "rx_errors": st.rx_errors, "tx_packets": st.tx_packets, "tx_bytes": st.tx_bytes,
                "tx_dropped": st.tx_dropped, "tx_errors": st.tx_errors,
            })).collect::<Vec<_>>(),
            "controllers": cfg.controllers.iter().map(|t| {
                let c = conns.iter().find(|c| c.primary && c.name == *t);
                json!({"target": t, "connected": c.is_some(), "role": c.map(|c| c.role),
                       "connected_secs": c.map(|c| c.connected_secs)})
            }).collect::<Vec<_>>(),
            "listeners": cfg.listeners,
            "connections": conns.iter().map(|c| json!({
                "id": c.id, "peer": c.name, "primary": c.primary, "role": c.role,
                "connected_secs": c.connected_secs,
            })).collect::<Vec<_>>(),
        });
        return Reply::ok(format!("{v:#}\n"));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: dpid {:016x}, fail-mode {}{}, {} flows",
        cfg.bridge,
        cfg.datapath_id,
        fail_mode_name(cfg.fail_mode),
        if standalone_active {
            " (no controller: forwarding by NORMAL)"
        } else {
            ""
        },
        flows
    );
    if cfg.packet_in_buffers > 0 {
        let _ = writeln!(
            s,
            "packet-in buffers: {} ({} in use)",
            cfg.packet_in_buffers,
            agent.buffers_in_use(now)
        );
    }
    let _ = writeln!(s, "ports:");
    for (no, d, st, link, kind) in &ports {
        let _ = writeln!(
            s,
            " {}({}): type {kind}, addr {}, admin {}, link {}",
            no,
            d.name,
            mac(d.hw_addr),
            if link.admin_up && d.config & 1 == 0 {
                "up"
            } else {
                "down"
            },
            if link.oper_up { "up" } else { "down" },
        );
        let _ = writeln!(
            s,
            "     rx pkts={} bytes={} drop={} errs={}",
            st.rx_packets, st.rx_bytes, st.rx_dropped, st.rx_errors
        );
        let _ = writeln!(
            s,
            "     tx pkts={} bytes={} drop={} errs={}",
            st.tx_packets, st.tx_bytes, st.tx_dropped, st.tx_errors
        );
    }
    let _ = writeln!(s, "controllers:");
    if cfg.controllers.is_empty() && cfg.listeners.is_empty() {
        let _ = writeln!(s, " (none)");
    }
    for t in &cfg.controllers {
        match conns.iter().find(|c| c.primary && c.name == *t) {
            Some(c) => {
                let _ = writeln!(
                    s,
                    " {t}: active, connected for {}s, role {}",
                    c.connected_secs, c.role
                );
            }
            None => {
                let _ = writeln!(s, " {t}: active, not connected (retrying)");
            }
        }
    }
    for l in &cfg.listeners {
        let _ = writeln!(s, " {l}: listening");
    }
    for c in conns.iter().filter(|c| !c.primary) {
        let _ = writeln!(
            s,
            "   {}: connected for {}s, role {}",
            if c.name.is_empty() { "(peer)" } else { &c.name },
            c.connected_secs,
            c.role
        );
    }
    Reply::ok(s)
}

fn dump_flows(table: Option<u8>, sw: &mut dyn Switch, now: Instant) -> Reply {
    let req = FlowStatsRequest {
        table_id: table.unwrap_or(0xff),
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        cookie: 0,
        cookie_mask: 0,
        match_: Match::new(),
    };
    match sw.engine().flow_stats(&req, now) {
        Ok(v) => {
            let mut s = String::new();
            for fs in &v {
                let _ = writeln!(s, " {}", format_flow_stats(fs, true));
            }
            Reply::ok(s)
        }
        Err(e) => Reply::err(format!("dump-flows: {e:?}")),
    }
}

/// A datapath operation in OVS `Datapath actions:` style.
fn format_op(
    op: &Op,
    p: Option<&crate::pipeline::Pipeline>,
    flow: &FlowKey,
    now: Instant,
) -> String {
    match op {
        Op::Output(n) => n.to_string(),
        // vxlan: output to a tunnel port with the flow's tunnel metadata.
        Op::OutputTunnel(t) => format!(
            "set(tunnel(tun_id={:#x},src={},dst={},flags={:#x})),{}",
            t.1.id,
            std::net::Ipv4Addr::from(t.1.src),
            std::net::Ipv4Addr::from(t.1.dst),
            t.1.flags,
            t.0
        ),
        Op::PacketIn(pi) => format!(
            "userspace(controller(reason={},table={},cookie={:#x},max_len={}))",
            match pi.reason {
                0 => "no_match",
                1 => "action",
                2 => "invalid_ttl",
                _ => "other",
            },
            pi.table_id,
            pi.cookie,
            pi.max_len
        ),
        Op::SetField { field, value, mask } => {
            let m = (*mask != field.full_mask()).then_some(*mask);
            format!(
                "set({}={})",
                field.name(),
                format_field_value(*field, *value, m)
            )
        }
        Op::PushVlan(t) => format!("push_vlan(tpid={t:#06x})"),
        Op::PopVlan => "pop_vlan".into(),
        Op::PushMpls(t) => format!("push_mpls(eth_type={t:#06x})"),
        Op::PopMpls(t) => format!("pop_mpls(eth_type={t:#06x})"),
        Op::PushPbb(t) => format!("push_pbb(eth_type={t:#06x})"),
        Op::PopPbb => "pop_pbb".into(),
        Op::SetNwTtl(t) => format!("set(ipv4(ttl={t}))"),
        Op::DecNwTtl => "dec_ttl".into(),
        Op::SetMplsTtl(t) => format!("set(mpls(ttl={t}))"),
        Op::DecMplsTtl => "dec_mpls_ttl".into(),
        Op::CopyTtlIn => "copy_ttl_in".into(),
        Op::CopyTtlOut => "copy_ttl_out".into(),
        Op::SetQueue(q) => format!("set_queue({q})"),
        Op::Meter(m) => format!("meter({m})"),
        Op::Normal => {
            let dst = flow.get(FieldId::EthDst).to_be_bytes();
            let mut d = [0u8; 6];
            d.copy_from_slice(&dst[10..]);
            let vlan = flow.get(FieldId::VlanVid) as u16 & 0xfff;
            match p.and_then(|p| p.normal_lookup(vlan, d, now)) {
                Some(port) => format!("NORMAL(learned: {port})"),
                None => "NORMAL(flood)".into(),
            }
        }
        Op::Learn(fm) => format!("learn(table={})", fm.table_id),
        Op::Table => "table".into(),
        Op::Save => "clone(".into(),
        Op::Restore => ")".into(),
        Op::Drop(r) => format!("drop({r:?})"),
        Op::Ct(c) => match c.recirc {
            Some(t) => format!("ct(zone={},commit={},table={t})", c.req.zone, c.req.commit),
            None => format!("ct(zone={},commit={})", c.req.zone, c.req.commit),
        },
        Op::Recirc(r) => format!("recirc(table={})", r.table),
    }
}

fn format_ops(
    ops: &[Op],
    p: Option<&crate::pipeline::Pipeline>,
    flow: &FlowKey,
    now: Instant,
) -> String {
    if ops.is_empty() {
        return "drop".into();
    }
    ops.iter()
        .map(|o| format_op(o, p, flow, now))
        .collect::<Vec<_>>()
        .join(",")
}

/// The flow key to trace: the match's values, or the parsed frame with the
/// match's metadata (in_port, metadata, registers, tunnel id, mark) on top.
pub fn trace_key(flow: &Match, packet: Option<&[u8]>) -> FlowKey {
    let mk = MaskedKey::from_match(flow);
    let given = mk.value.and(&mk.mask);
    let Some(frame) = packet else {
        return given;
    };
    let meta = PacketMeta {
        in_port: flow.exact(FieldId::InPort).unwrap_or(0) as u32,
        ..Default::default()
    };
    let mut key = FlowKey::ZERO;
    let _ = parse_into(&mut key, frame, &meta);
    for f in [FieldId::Metadata, FieldId::TunnelId, FieldId::PktMark]
        .into_iter()
        .chain(FieldId::all().filter(|f| f.is_register()))
    {
        if let Some(v) = flow.get(f) {
            key.set_masked(f, v.value, v.mask_or_full());
        }
    }
    key
}

fn trace(
    bridge: &str,
    flow: &Match,
    packet: Option<&[u8]>,
    json: bool,
    sw: &mut dyn Switch,
    now: Instant,
) -> Reply {
    let Some(p) = sw.engine().pipeline() else {
        return Reply::err("trace: needs the full pipeline (not --simple-pipeline)");
    };
    let key = trace_key(flow, packet);
    let t = p.trace(&key);
    let flow_s = format_match(&key_match(&key));
    let final_s = if t.final_flow == t.flow {
        "unchanged".to_string()
    } else {
        format_match(&key_match(&t.final_flow))
    };
    let megaflow = format_match(&masked_key_match(&key, &t.mask));
    let actions = format_ops(&t.ops, Some(p), &t.final_flow, now);
    if json {
        let steps: Vec<_> = t
            .steps
            .iter()
            .map(|s| match s {
                TraceStep::Table { depth, table, rule } => json!({
                    "depth": depth, "table": table,
                    "rule": rule.as_ref().map(|r| json!({
                        "priority": r.priority, "cookie": format!("{:#x}", r.cookie),
                        "match": format_match(&r.match_),
                        "actions": plexus_openflow::instruction::format_instructions(&r.instructions),
                    })),
                }),
                TraceStep::Bucket { depth, group, group_type, bucket, actions } => json!({
                    "depth": depth, "group": group, "type": format!("{group_type:?}").to_lowercase(),
                    "bucket": bucket, "actions": plexus_openflow::action::text::format_actions(actions),
                }),
            })
            .collect();
        let v = json!({
            "bridge": bridge, "flow": flow_s, "steps": steps, "final_flow": final_s,
            "megaflow": megaflow, "datapath_actions": actions,
        });
        return Reply::ok(format!("{v:#}\n"));
    }
    let mut s = String::new();
    let _ = writeln!(s, "Flow: {flow_s}\n");
    let title = format!("bridge(\"{bridge}\")");
    let _ = writeln!(s, "{title}\n{}", "-".repeat(title.len()));
    for step in &t.steps {
        match step {
            TraceStep::Table { depth, table, rule } => {
                let ind = " ".repeat(1 + 4 * *depth as usize);
                match rule {
                    Some(r) => {
                        let m = format_match(&r.match_);
                        let _ = write!(s, "{ind}{table}. ");
                        if !m.is_empty() {
                            let _ = write!(s, "{m}, ");
                        }
                        let _ = writeln!(s, "priority {}, cookie {:#x}", r.priority, r.cookie);
                        let _ = writeln!(
                            s,
                            "{ind}    actions={}",
                            plexus_openflow::instruction::format_instructions(&r.instructions)
                        );
                    }
                    None => {
                        let _ = writeln!(s, "{ind}{table}. No match.");
                        let _ = writeln!(s, "{ind}    drop");
                    }
                }
            }
            TraceStep::Bucket {
                depth,
                group,
                group_type,
                bucket,
                actions,
            } => {
                let ind = " ".repeat(5 + 4 * *depth as usize);
                let _ = writeln!(
                    s,
                    "{ind}group:{group} ({}) bucket {bucket}: actions={}",
                    format!("{group_type:?}").to_lowercase(),
                    plexus_openflow::action::text::format_actions(actions)
                );
            }
        }
    }
    let _ = writeln!(s, "\nFinal flow: {final_s}");
    let _ = writeln!(s, "Megaflow: {megaflow}");
    let _ = writeln!(s, "Datapath actions: {actions}");
    Reply::ok(s)
}

fn dump_cache(json: bool, sw: &mut dyn Switch) -> Reply {
    let Some(p) = sw.engine().pipeline() else {
        return Reply::err("dump-cache: this pipeline has no flow cache");
    };
    let now = Instant::now();
    let sum = p.cache_summary();
    let flows = p.megaflows();
    let line = |m: &crate::pipeline::trace::MegaflowDump| {
        let mut k = format_match(&masked_key_match(&m.key, &m.mask));
        if let Some(t) = m.recirc_table {
            k = format!("recirc(table={t}),{k}");
        }
        (k, format_ops(&m.ops, Some(p), &m.key, now))
    };
    if json {
        let v = json!({
            "generation": sum.generation, "enabled": sum.enabled,
            "megaflows": sum.megaflows, "masks": sum.masks, "emc_entries": sum.emc_entries,
            "emc_hits": sum.stats.emc_hits, "megaflow_hits": sum.stats.megaflow_hits,
            "misses": sum.stats.misses,
            "flows": flows.iter().map(|m| {
                let (k, a) = line(m);
                json!({"match": k, "hits": m.hits, "age_ms": m.age.as_millis() as u64,
                       "stale": m.stale, "actions": a})
            }).collect::<Vec<_>>(),
        });
        return Reply::ok(format!("{v:#}\n"));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "megaflows: {} ({} masks), EMC entries: {}, generation {}{}",
        sum.megaflows,
        sum.masks,
        sum.emc_entries,
        sum.generation,
        if sum.enabled { "" } else { " (cache disabled)" }
    );
    let _ = writeln!(
        s,
        "lookups: emc hits {}, megaflow hits {}, misses {}",
        sum.stats.emc_hits, sum.stats.megaflow_hits, sum.stats.misses
    );
    for m in &flows {
        let (k, a) = line(m);
        let _ = writeln!(
            s,
            "{k}, hits:{}, age:{:.1}s{}, actions:{a}",
            m.hits,
            m.age.as_secs_f64(),
            if m.stale { ", stale" } else { "" }
        );
    }
    Reply::ok(s)
}

fn fdb_show(json: bool, sw: &mut dyn Switch, now: Instant) -> Reply {
    let Some(p) = sw.engine().pipeline() else {
        return Reply::err("fdb/show: this pipeline has no NORMAL");
    };
    let t = p.mac_table(now);
    if json {
        let v: Vec<_> = t
            .iter()
            .map(|e| json!({"port": e.port, "vlan": e.vlan, "mac": mac(e.mac), "age": e.age.as_secs()}))
            .collect();
        return Reply::ok(format!("{:#}\n", json!(v)));
    }
    let mut s = String::from(" port  VLAN  MAC                Age\n");
    for e in &t {
        let _ = writeln!(
            s,
            "{:>5}  {:>4}  {}  {:>3}",
            e.port,
            e.vlan,
            mac(e.mac),
            e.age.as_secs()
        );
    }
    Reply::ok(s)
}

#[cfg(test)]
mod tests;
