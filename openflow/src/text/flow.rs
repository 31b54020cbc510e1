//! `ovs-ofctl` text for whole flows, groups and meters: what `add-flow`,
//! `add-group` and `add-meter` accept, and what `ofp-print`, `dump-flows`,
//! `dump-groups` and `dump-meters` print (OpenFlow 1.3).

use super::{
    ParseError, format_match, format_port, parse_match_items, parse_port, parse_uint, split_top,
};
use crate::action::{format_actions, parse_actions};
use crate::instruction::{format_instructions, parse_instructions};
use crate::message::{
    Bucket, FlowMod, FlowModCommand, GroupMod, GroupModCommand, GroupType, MeterBand, MeterMod,
    MeterModCommand, PacketOut, flow_mod_flags as ff, group_id, meter_flags as mf, port_no,
};
use crate::message::{FlowStats, GroupDesc, MeterConfig};
use std::fmt::Write as _;

/// `OFP_DEFAULT_PRIORITY`.
pub const DEFAULT_PRIORITY: u16 = 0x8000;
/// `OFPTT_ALL`.
pub const TABLE_ALL: u8 = 0xff;
/// `OFP_NO_BUFFER`.
pub const NO_BUFFER: u32 = 0xffff_ffff;

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::new(msg))
}

fn num<T: TryFrom<u128>>(key: &str, v: &str, bits: u32) -> Result<T, ParseError> {
    let n = parse_uint(v, bits).map_err(|e| ParseError::new(format!("{key}: {e}")))?;
    T::try_from(n).map_err(|_| ParseError::new(format!("{key}: {v} out of range")))
}

/// Splits `s` at the first top-level `actions=` (everything after it is the
/// action list, which may itself contain `=` and commas).
fn split_actions(s: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let bytes = s.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            // Keywords start with an ASCII letter, which is always a char
            // boundary (UTF-8 continuation bytes are >= 0x80).
            b'a'..=b'z' | b'A'..=b'Z' if depth == 0 => {
                let rest = &s[i..];
                let at_item_start = i == 0 || matches!(bytes[i - 1], b',' | b' ' | b'\t');
                if at_item_start {
                    for kw in ["actions=", "action=", "instructions="] {
                        let rb = rest.as_bytes();
                        if rb.len() >= kw.len()
                            && rb[..kw.len()].eq_ignore_ascii_case(kw.as_bytes())
                        {
                            return (&s[..i], Some(&rest[kw.len()..]));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (s, None)
}

/// Splits a flow's non-action part into items: commas and whitespace both
/// separate (as in `ovs-ofctl`), except inside parentheses.
fn items(s: &str) -> Vec<&str> {
    split_top(s)
        .into_iter()
        .flat_map(|i| i.split_whitespace())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Parses a flow as `ovs-ofctl add-flow` / `mod-flows` / `del-flows` do:
/// match fields, flow attributes (`table`, `priority`, `cookie`,
/// `idle_timeout`, `hard_timeout`, `send_flow_rem`, `check_overlap`,
/// `reset_counts`, `no_packet_counts`, `no_byte_counts`, `out_port`,
/// `out_group`, `buffer_id`) and, for add/modify, `actions=`.
/// Statistics pasted from `dump-flows` (`duration`, `n_packets`, `n_bytes`,
/// `idle_age`, `hard_age`) are accepted and ignored, as OVS does.
pub fn parse_flow_mod(s: &str, command: FlowModCommand) -> Result<FlowMod, ParseError> {
    let (head, acts) = split_actions(s);
    let is_delete = matches!(
        command,
        FlowModCommand::Delete | FlowModCommand::DeleteStrict
    );
    let list = items(head);
    let (match_, rest) = parse_match_items(&list)?;
    let mut fm = FlowMod {
        cookie: 0,
        cookie_mask: 0,
        table_id: if is_delete { TABLE_ALL } else { 0 },
        command,
        idle_timeout: 0,
        hard_timeout: 0,
        priority: DEFAULT_PRIORITY,
        buffer_id: NO_BUFFER,
        out_port: port_no::ANY,
        out_group: group_id::ANY,
        flags: 0,
        match_,
        instructions: Vec::new(),
    };
    for item in rest {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item.trim(), None),
        };
        let need = || value.ok_or_else(|| ParseError::new(format!("field {key} missing value")));
        match key {
            "send_flow_rem" => fm.flags |= ff::SEND_FLOW_REM,
            "check_overlap" => fm.flags |= ff::CHECK_OVERLAP,
            "reset_counts" => fm.flags |= ff::RESET_COUNTS,
            "no_packet_counts" => fm.flags |= ff::NO_PKT_COUNTS,
            "no_byte_counts" => fm.flags |= ff::NO_BYT_COUNTS,
            "table" => {
                let v = need()?;
                fm.table_id = if v.eq_ignore_ascii_case("all") {
                    TABLE_ALL
                } else {
                    num(key, v, 8)?
                };
                if fm.table_id == TABLE_ALL && !is_delete {
                    return err("table=255 (all tables) is only valid for deleting flows");
                }
            }
            "priority" => fm.priority = num(key, need()?, 16)?,
            "idle_timeout" => fm.idle_timeout = num(key, need()?, 16)?,
            "hard_timeout" => fm.hard_timeout = num(key, need()?, 16)?,
            "buffer_id" => fm.buffer_id = num(key, need()?, 32)?,
            "out_port" => fm.out_port = parse_port(need()?)?,
            "out_group" => {
                let v = need()?;
                fm.out_group = if v.eq_ignore_ascii_case("any") {
                    group_id::ANY
                } else {
                    num(key, v, 32)?
                };
            }
            "cookie" => {
                let v = need()?;
                match v.split_once('/') {
                    Some((c, m)) => {
                        if command == FlowModCommand::Add {
                            return err("cannot set cookie mask when adding a flow");
                        }
                        fm.cookie = num(key, c, 64)?;
                        fm.cookie_mask = num(key, m, 64)?;
                    }
                    None => fm.cookie = num(key, v, 64)?,
                }
            }
            "duration" | "n_packets" | "n_bytes" | "idle_age" | "hard_age" | "importance" => {}
            _ => return err(format!("{key}: unknown field or flow attribute")),
        }
    }
    match (acts, is_delete) {
        (Some(a), false) => fm.instructions = parse_instructions(a)?,
        (None, false) => return err("must specify an action"),
        (Some(_), true) => return err("actions are not allowed when deleting flows"),
        (None, true) => {}
    }
    Ok(fm)
}

fn command_name(c: FlowModCommand) -> &'static str {
    match c {
        FlowModCommand::Add => "ADD",
        FlowModCommand::Modify => "MOD",
        FlowModCommand::ModifyStrict => "MOD_STRICT",
        FlowModCommand::Delete => "DEL",
        FlowModCommand::DeleteStrict => "DEL_STRICT",
    }
}

fn put_flags(s: &mut String, flags: u16) {
    for (bit, name) in [
        (ff::SEND_FLOW_REM, "send_flow_rem"),
        (ff::CHECK_OVERLAP, "check_overlap"),
        (ff::RESET_COUNTS, "reset_counts"),
        (ff::NO_PKT_COUNTS, "no_packet_counts"),
        (ff::NO_BYT_COUNTS, "no_byte_counts"),
    ] {
        if flags & bit != 0 {
            let _ = write!(s, "{name} ");
        }
    }
}

/// Formats a match with its priority the way OVS's `match_format` does
/// (`priority=N,` first unless it is the default).
pub fn format_match_with_priority(m: &crate::oxm::Match, priority: u16) -> String {
    let body = format_match(m);
    if priority == DEFAULT_PRIORITY {
        body
    } else if body.is_empty() {
        format!("priority={priority}")
    } else {
        format!("priority={priority},{body}")
    }
}

/// The body `ovs-ofctl ofp-print` prints for an OpenFlow 1.3 FLOW_MOD (the
/// text after `OFPT_FLOW_MOD (OF1.3) (xid=0x…):`, without the leading space).
pub fn format_flow_mod(fm: &FlowMod) -> String {
    let mut s = String::new();
    s.push_str(command_name(fm.command));
    if fm.table_id != 0 {
        let _ = write!(s, " table:{}", fm.table_id);
    }
    s.push(' ');
    s.push_str(&format_match_with_priority(&fm.match_, fm.priority));
    if !s.ends_with(' ') {
        s.push(' ');
    }
    // OpenFlow 1.3 carries one cookie field: for add it is the new cookie,
    // for modify/delete it is matched under cookie_mask.
    let is_add = fm.command == FlowModCommand::Add;
    let new_cookie = if is_add || fm.cookie_mask == 0 {
        fm.cookie
    } else {
        0
    };
    if new_cookie != 0 && new_cookie != u64::MAX {
        let _ = write!(s, "cookie:{:#x} ", new_cookie);
    }
    if fm.cookie_mask != 0 {
        let _ = write!(s, "cookie:{:#x}/{:#x} ", fm.cookie, fm.cookie_mask);
    }
    if fm.idle_timeout != 0 {
        let _ = write!(s, "idle:{} ", fm.idle_timeout);
    }
    if fm.hard_timeout != 0 {
        let _ = write!(s, "hard:{} ", fm.hard_timeout);
    }
    if fm.buffer_id != NO_BUFFER {
        let _ = write!(s, "buf:{:#x} ", fm.buffer_id);
    }
    if fm.out_port != port_no::ANY {
        let _ = write!(s, "out_port:{} ", format_port(fm.out_port));
    }
    put_flags(&mut s, fm.flags);
    s.push_str("actions=");
    s.push_str(&format_instructions(&fm.instructions));
    s
}

/// `ofp_print_duration`: seconds with three decimals.
fn format_duration(sec: u32, nsec: u32) -> String {
    let msec = nsec / 1_000_000;
    format!("{sec}.{msec:03}s")
}

/// One line of `ovs-ofctl dump-flows` (without the leading space).
/// `show_stats` false gives the `--no-stats` form.
pub fn format_flow_stats(fs: &FlowStats, show_stats: bool) -> String {
    let mut s = String::new();
    if show_stats || fs.cookie != 0 {
        let _ = write!(s, "cookie={:#x}, ", fs.cookie);
    }
    if show_stats {
        let _ = write!(
            s,
            "duration={}, ",
            format_duration(fs.duration_sec, fs.duration_nsec)
        );
    }
    if show_stats || fs.table_id != 0 {
        let _ = write!(s, "table={}, ", fs.table_id);
    }
    if show_stats {
        let _ = write!(
            s,
            "n_packets={}, n_bytes={}, ",
            fs.packet_count, fs.byte_count
        );
    }
    if fs.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", fs.idle_timeout);
    }
    if fs.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", fs.hard_timeout);
    }
    put_flags(&mut s, fs.flags);
    let m = format_match_with_priority(&fs.match_, fs.priority);
    if !m.is_empty() {
        s.push_str(&m);
        s.push(' ');
    }
    s.push_str("actions=");
    s.push_str(&format_instructions(&fs.instructions));
    s
}

/// Strips the statistics `dump-flows` prints (duration, counters, ages), so
/// two dumps can be compared for their flow content.
pub fn strip_flow_stats(line: &str) -> String {
    line.trim()
        .split(", ")
        .filter(|part| {
            ![
                "duration=",
                "n_packets=",
                "n_bytes=",
                "idle_age=",
                "hard_age=",
            ]
            .iter()
            .any(|p| part.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn group_type_name(t: GroupType) -> &'static str {
    match t {
        GroupType::All => "all",
        GroupType::Select => "select",
        GroupType::Indirect => "indirect",
        GroupType::FastFailover => "ff",
    }
}

fn parse_bucket(s: &str, group_type: GroupType) -> Result<Bucket, ParseError> {
    let mut b = Bucket {
        weight: if group_type == GroupType::Select {
            1
        } else {
            0
        },
        watch_port: port_no::ANY,
        watch_group: group_id::ANY,
        actions: Vec::new(),
    };
    let mut acts: Vec<String> = Vec::new();
    let (head, tail) = split_actions(s);
    for item in split_top(head) {
        let (k, v) = match item.split_once([':', '=']) {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item.trim(), None),
        };
        match (k.to_ascii_lowercase().as_str(), v) {
            ("weight", Some(v)) => b.weight = num("weight", v, 16)?,
            ("watch_port", Some(v)) => b.watch_port = parse_port(v)?,
            ("watch_group", Some(v)) => b.watch_group = num("watch_group", v, 32)?,
            ("bucket_id", Some(_)) => return err("bucket_id needs OpenFlow 1.5"),
            _ => acts.push(item.to_string()),
        }
    }
    if let Some(t) = tail {
        acts.push(t.to_string());
    }
    if acts.is_empty() {
        return err("bucket must specify actions");
    }
    b.actions = parse_actions(&acts.join(","))?;
    if group_type == GroupType::FastFailover
        && b.watch_port == port_no::ANY
        && b.watch_group == group_id::ANY
    {
        return err("fast failover bucket requires watch_port or watch_group");
    }
    Ok(b)
}

/// Parses a group as `ovs-ofctl add-group`/`mod-group`/`del-groups` do:
/// `group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=...`.
pub fn parse_group_mod(s: &str, command: GroupModCommand) -> Result<GroupMod, ParseError> {
    // Cut at each top-level "bucket=".
    let mut parts: Vec<&str> = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = s.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ => {}
        }
        if depth == 0 && bytes[i..].starts_with(b"bucket=") && (i == 0 || bytes[i - 1] == b',') {
            parts.push(&s[start..i]);
            start = i;
        }
    }
    parts.push(&s[start..]);
    let head = parts[0].trim_end_matches(',');
    let mut gid = None;
    let mut gtype = None;
    for item in split_top(head) {
        match item.split_once('=') {
            Some(("group_id", v)) => {
                gid = Some(if v.eq_ignore_ascii_case("all") {
                    group_id::ALL
                } else {
                    num::<u32>("group_id", v, 32)?
                })
            }
            Some(("type", v)) => {
                gtype = Some(match v {
                    "all" => GroupType::All,
                    "select" => GroupType::Select,
                    "indirect" => GroupType::Indirect,
                    "ff" | "fast_failover" => GroupType::FastFailover,
                    _ => return err(format!("{v}: unknown group type")),
                })
            }
            _ => return err(format!("{item}: unknown keyword")),
        }
    }
    let group_id = gid.ok_or_else(|| ParseError::new("must specify a group_id"))?;
    if command != GroupModCommand::Delete && group_id > group_id::MAX {
        return err(format!("invalid group id {group_id}"));
    }
    let group_type = match (gtype, command) {
        (Some(t), _) => t,
        (None, GroupModCommand::Delete) => GroupType::All,
        (None, _) => return err("must specify a type"),
    };
    let mut buckets = Vec::new();
    for p in &parts[1..] {
        let body = p.trim_end_matches(',').trim_start_matches("bucket=");
        buckets.push(parse_bucket(body, group_type)?);
    }
    if command == GroupModCommand::Delete && !buckets.is_empty() {
        return err("buckets are not allowed when deleting groups");
    }
    if group_type == GroupType::Indirect && buckets.len() != 1 {
        return err("indirect group must have exactly one bucket");
    }
    Ok(GroupMod {
        command,
        group_type,
        group_id,
        buckets,
    })
}

fn format_bucket(s: &mut String, b: &Bucket, t: GroupType) {
    s.push_str("bucket=");
    if b.weight != if t == GroupType::Select { 1 } else { 0 } {
        let _ = write!(s, "weight:{},", b.weight);
    }
    if b.watch_port != port_no::ANY {
        let _ = write!(s, "watch_port:{},", format_port(b.watch_port));
    }
    if b.watch_group != group_id::ANY {
        let _ = write!(s, "watch_group:{},", b.watch_group);
    }
    s.push_str("actions=");
    s.push_str(&format_actions(&b.actions));
}

/// `group_id=…,type=…,bucket=…` as `dump-groups` prints it.
pub fn format_group(group_id: u32, t: GroupType, buckets: &[Bucket]) -> String {
    let mut s = format!("group_id={group_id},type={}", group_type_name(t));
    for b in buckets {
        s.push(',');
        format_bucket(&mut s, b, t);
    }
    s
}

pub fn format_group_desc(g: &GroupDesc) -> String {
    format_group(g.group_id, g.group_type, &g.buckets)
}

/// The body `ofp-print` prints for GROUP_MOD (`ADD group_id=…`), without the
/// leading newline and space.
pub fn format_group_mod(g: &GroupMod) -> String {
    let cmd = match g.command {
        GroupModCommand::Add => "ADD",
        GroupModCommand::Modify => "MOD",
        GroupModCommand::Delete => "DEL",
    };
    format!(
        "{cmd} {}",
        format_group(g.group_id, g.group_type, &g.buckets)
    )
}

/// `OFPM_*` reserved meter ids.
pub mod meter_id {
    pub const MAX: u32 = 0xffff_0000;
    pub const SLOWPATH: u32 = 0xffff_fffd;
    pub const CONTROLLER: u32 = 0xffff_fffe;
    pub const ALL: u32 = 0xffff_ffff;
}

/// Parses a meter as `ovs-ofctl add-meter`/`mod-meter`/`del-meters` do:
/// `meter=1,kbps,burst,stats,bands=type=drop,rate=1000,burst_size=100`.
pub fn parse_meter_mod(s: &str, command: MeterModCommand) -> Result<MeterMod, ParseError> {
    let (head, bands_str) = match s.find("band") {
        Some(i) => {
            let rest = &s[i..];
            let eq = rest
                .find('=')
                .ok_or_else(|| ParseError::new("must specify bands"))?;
            (&s[..i], Some(&rest[eq + 1..]))
        }
        None => (s, None),
    };
    let want_bands = command != MeterModCommand::Delete;
    let mut meter_id = 0u32;
    let mut flags = 0u16;
    let tokens: Vec<&str> = head
        .split([',', ' ', '\t', '='])
        .filter(|t| !t.is_empty())
        .collect();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            "kbps" if want_bands => flags |= mf::KBPS,
            "pktps" if want_bands => flags |= mf::PKTPS,
            "burst" if want_bands => flags |= mf::BURST,
            "stats" if want_bands => flags |= mf::STATS,
            "meter" => {
                let v = tokens
                    .get(i + 1)
                    .ok_or_else(|| ParseError::new("field meter missing value"))?;
                meter_id = match *v {
                    "all" => meter_id::ALL,
                    "controller" => meter_id::CONTROLLER,
                    "slowpath" => meter_id::SLOWPATH,
                    _ => {
                        let id: u32 = num("meter", v, 32)?;
                        if id == 0 || id > meter_id::MAX {
                            return err("invalid value for meter");
                        }
                        id
                    }
                };
                i += 1;
            }
            t => return err(format!("unknown keyword {t}")),
        }
        i += 1;
    }
    if meter_id == 0 {
        return err("must specify 'meter'");
    }
    let mut bands = Vec::new();
    if want_bands {
        if flags & (mf::KBPS | mf::PKTPS) == 0 {
            return err("meter must specify either 'kbps' or 'pktps'");
        }
        let b = bands_str.ok_or_else(|| ParseError::new("must specify bands"))?;
        let toks: Vec<&str> = b
            .split([',', ' ', '\t', '='])
            .filter(|t| !t.is_empty())
            .collect();
        if !toks.len().is_multiple_of(2) {
            return err(format!("field {} missing value", toks[toks.len() - 1]));
        }
        // (type, rate, burst, prec_level)
        let mut cur: Option<(u8, u32, u32, u8)> = None;
        let mut done = Vec::new();
        for kv in toks.chunks(2) {
            let (k, v) = (kv[0], kv[1]);
            match k {
                "type" => {
                    if let Some(c) = cur.take() {
                        done.push(c);
                    }
                    let t = match v {
                        "drop" => 1,
                        "dscp_remark" => 2,
                        _ => return err(format!("field type unknown value {v}")),
                    };
                    cur = Some((t, 0, 0, 0));
                }
                _ => {
                    let c = cur.as_mut().ok_or_else(|| {
                        ParseError::new("band must start with the 'type' keyword")
                    })?;
                    match k {
                        "rate" => c.1 = num(k, v, 32)?,
                        "burst_size" => c.2 = num(k, v, 32)?,
                        "prec_level" => c.3 = num(k, v, 8)?,
                        _ => return err(format!("unknown keyword {k}")),
                    }
                }
            }
        }
        done.extend(cur);
        if done.is_empty() {
            return err("must specify bands");
        }
        for (t, rate, burst_size, prec_level) in done {
            bands.push(match t {
                1 => MeterBand::Drop { rate, burst_size },
                _ => MeterBand::DscpRemark {
                    rate,
                    burst_size,
                    prec_level,
                },
            });
        }
    }
    Ok(MeterMod {
        command,
        flags,
        meter_id,
        bands,
    })
}

fn format_meter_id(s: &mut String, id: u32) {
    let _ = match id {
        meter_id::ALL => write!(s, "meter=all"),
        meter_id::CONTROLLER => write!(s, "meter=controller"),
        meter_id::SLOWPATH => write!(s, "meter=slowpath"),
        _ => write!(s, "meter={id}"),
    };
}

fn format_meter_flags(s: &mut String, flags: u16) {
    for (bit, name) in [
        (mf::KBPS, "kbps"),
        (mf::PKTPS, "pktps"),
        (mf::BURST, "burst"),
        (mf::STATS, "stats"),
    ] {
        if flags & bit != 0 {
            let _ = write!(s, "{name} ");
        }
    }
    let rest = flags & !(mf::KBPS | mf::PKTPS | mf::BURST | mf::STATS);
    if rest != 0 {
        let _ = write!(s, "flags:{rest:#x} ");
    }
}

fn format_band(s: &mut String, flags: u16, b: &MeterBand) {
    let (rate, burst) = match b {
        MeterBand::Drop { rate, burst_size } => {
            s.push_str("type=drop");
            (*rate, *burst_size)
        }
        MeterBand::DscpRemark {
            rate, burst_size, ..
        } => {
            s.push_str("type=dscp_remark");
            (*rate, *burst_size)
        }
        MeterBand::Experimenter {
            rate, burst_size, ..
        } => {
            s.push_str("type=65535");
            (*rate, *burst_size)
        }
    };
    let _ = write!(s, " rate={rate}");
    if flags & mf::BURST != 0 {
        let _ = write!(s, " burst_size={burst}");
    }
    if let MeterBand::DscpRemark { prec_level, .. } = b {
        let _ = write!(s, " prec_level={prec_level}");
    }
}

/// `meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100` as OVS
/// prints a meter configuration (bands each on their own line).
pub fn format_meter(meter_id: u32, flags: u16, bands: &[MeterBand]) -> String {
    let mut s = String::new();
    format_meter_id(&mut s, meter_id);
    s.push(' ');
    format_meter_flags(&mut s, flags);
    s.push_str("bands=");
    for b in bands {
        s.push('\n');
        format_band(&mut s, flags, b);
    }
    s
}

pub fn format_meter_config(m: &MeterConfig) -> String {
    format_meter(m.meter_id, m.flags, &m.bands)
}

/// The body `ofp-print` prints for METER_MOD: `ADD meter=1 kbps bands=…`.
pub fn format_meter_mod(m: &MeterMod) -> String {
    let cmd = match m.command {
        MeterModCommand::Add => "ADD",
        MeterModCommand::Modify => "MOD",
        MeterModCommand::Delete => "DEL",
    };
    format!("{cmd} {}", format_meter(m.meter_id, m.flags, &m.bands))
}

/// Parses a packet-out as `ovs-ofctl packet-out SWITCH 'in_port=1
/// packet=HEX actions=...'` does (`buffer_id` is also accepted).
pub fn parse_packet_out(s: &str) -> Result<PacketOut, ParseError> {
    let (head, acts) = split_actions(s);
    let mut po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port_no::CONTROLLER,
        actions: Vec::new(),
        data: Vec::new(),
    };
    for item in items(head) {
        match item.split_once('=') {
            Some(("in_port", v)) => po.in_port = parse_port(v)?,
            Some(("buffer_id", v)) => po.buffer_id = num("buffer_id", v, 32)?,
            Some(("packet", v)) => po.data = crate::action::text::parse_hex_bytes(v)?,
            _ => return err(format!("{item}: unknown keyword")),
        }
    }
    po.actions = parse_actions(acts.ok_or_else(|| ParseError::new("must specify actions"))?)?;
    if po.buffer_id == NO_BUFFER && po.data.is_empty() {
        return err("must specify packet");
    }
    Ok(po)
}

/// The first line `ofp-print` prints for PACKET_OUT:
/// `in_port=1 actions=output:2 data_len=42` (the packet's own dissection,
/// which OVS prints on the next line, is not part of the codec).
pub fn format_packet_out(po: &PacketOut) -> String {
    let mut s = String::new();
    let mut m = crate::oxm::Match::new();
    m.set(crate::oxm::FieldId::InPort, po.in_port as u128);
    s.push_str(&format_match(&m));
    s.push_str(" actions=");
    s.push_str(&format_actions(&po.actions));
    if po.buffer_id == NO_BUFFER {
        let _ = write!(s, " data_len={}", po.data.len());
    } else {
        let _ = write!(s, " buffer=0x{:08x}", po.buffer_id);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_roundtrip_text() {
        let fm = parse_flow_mod(
            "table=1,priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,cookie=0x5,idle_timeout=10,send_flow_rem,actions=ct(commit,zone=5,nat(dst=10.0.0.2:80)),resubmit(,20)",
            FlowModCommand::Add,
        )
        .unwrap();
        assert_eq!(fm.table_id, 1);
        assert_eq!(fm.priority, 100);
        assert_eq!(
            format_flow_mod(&fm),
            "ADD table:1 priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80 cookie:0x5 idle:10 send_flow_rem actions=ct(commit,zone=5,nat(dst=10.0.0.2:80)),resubmit(,20)"
        );
    }

    #[test]
    fn flow_errors() {
        assert!(parse_flow_mod("in_port=1", FlowModCommand::Add).is_err());
        assert!(parse_flow_mod("in_port=1,actions=drop", FlowModCommand::Delete).is_err());
        assert!(parse_flow_mod("bogus=1,actions=drop", FlowModCommand::Add).is_err());
        assert!(parse_flow_mod("table=255,actions=drop", FlowModCommand::Add).is_err());
        assert!(parse_flow_mod("cookie=1/1,actions=drop", FlowModCommand::Add).is_err());
        assert_eq!(
            parse_flow_mod("in_port=1", FlowModCommand::Delete)
                .unwrap()
                .table_id,
            255
        );
    }

    #[test]
    fn groups_and_meters() {
        let g = parse_group_mod(
            "group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=output:2",
            GroupModCommand::Add,
        )
        .unwrap();
        assert_eq!(g.buckets.len(), 2);
        assert_eq!(
            format_group_mod(&g),
            "ADD group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=actions=output:2"
        );
        assert!(
            parse_group_mod("group_id=1,type=ff,bucket=output:1", GroupModCommand::Add).is_err()
        );
        let m = parse_meter_mod(
            "meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100",
            MeterModCommand::Add,
        )
        .unwrap();
        assert_eq!(
            format_meter_mod(&m),
            "ADD meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100"
        );
        assert!(parse_meter_mod("meter=1,band=type=drop,rate=1", MeterModCommand::Add).is_err());
        assert!(
            parse_meter_mod("meter=0,kbps,band=type=drop,rate=1", MeterModCommand::Add).is_err()
        );
    }
}
