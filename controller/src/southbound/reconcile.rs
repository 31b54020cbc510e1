//! Desired vs installed flows: pure planning of the flow-mods that turn one into the other.
//!
//! A full reconcile compares flows in binary form first: key = table + priority + the
//! match's OXM encoding with its fields in a canonical order, value = the instructions'
//! encoding. The switch's flow stats are reduced to that form as they are read (nothing
//! else of them is kept); each desired text is parsed once and encoded the same way.
//! Equal encodings are equal flows. What is left on either side (none after a restart
//! against plexus-vswitchd; a switch such as Open vSwitch may report instructions in
//! another order or spelling) is compared by a canonical text built from the *decoded*
//! structures with the `ovs-ofctl` formatter, so equal flows compare equal whatever OXM
//! order or spelling either side used.
//!
//! Only flows carrying the Plexus cookie ([`COOKIE`] under [`COOKIE_MASK`]) are ever read,
//! deleted or replaced; deletes are strict (table + priority + match + cookie mask).
//! A removed flow whose key is re-added with other instructions is not deleted: the add
//! replaces it in place (no window without the flow).

use crate::compiler::{Delta, Flow, FlowRefs, GROUP_BASE, GROUP_MASK, is_group};
use plexus_openflow::Match;
use plexus_openflow::instruction::{Instruction, format_instructions};
use plexus_openflow::message::{
    FlowMod, FlowModCommand, FlowStats, GroupDesc, GroupMod, GroupModCommand, group_id, port_no,
};
use plexus_openflow::text::flow::{
    format_group, format_match_with_priority, parse_flow_mod, parse_group_mod,
};
use plexus_openflow::wire::Reader;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// `PLX` in the cookie's high bits marks Plexus-owned flows.
pub const COOKIE: u64 = 0x0050_4c58 << 40;
pub const COOKIE_MASK: u64 = 0x00ff_ffff << 40;

/// Canonical identity of a flow in a switch table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    pub table: u8,
    pub priority: u16,
    pub match_text: String,
}

impl FlowKey {
    fn new(table: u8, priority: u16, m: &Match) -> Self {
        FlowKey {
            table,
            priority,
            match_text: format_match_with_priority(m, priority),
        }
    }
}

/// A parsed desired flow.
#[derive(Debug, Clone)]
pub struct Desired {
    pub key: FlowKey,
    pub actions: String,
    pub add: FlowMod,
}

/// Parses one desired flow (compiler text) into an add carrying the Plexus cookie.
pub fn parse_desired(text: &str) -> Result<Desired, String> {
    let mut fm =
        parse_flow_mod(text, FlowModCommand::Add).map_err(|e| format!("flow `{text}`: {e}"))?;
    fm.cookie = COOKIE;
    fm.cookie_mask = 0;
    Ok(Desired {
        key: FlowKey::new(fm.table_id, fm.priority, &fm.match_),
        actions: format_instructions(&fm.instructions),
        add: fm,
    })
}

/// Parses one desired flow (compiler text) into an add carrying the Plexus cookie.
pub fn parse_add(text: &str) -> Result<FlowMod, String> {
    let mut fm =
        parse_flow_mod(text, FlowModCommand::Add).map_err(|e| format!("flow `{text}`: {e}"))?;
    fm.cookie = COOKIE;
    fm.cookie_mask = 0;
    Ok(fm)
}

/// A strict delete of exactly one Plexus-owned flow.
pub fn strict_delete(table: u8, priority: u16, m: &Match) -> FlowMod {
    let mut fm = FlowMod::add(m.clone(), Vec::new());
    fm.command = FlowModCommand::DeleteStrict;
    fm.table_id = table;
    fm.priority = priority;
    fm.cookie = COOKIE;
    fm.cookie_mask = COOKIE_MASK;
    fm.out_port = port_no::ANY;
    fm.out_group = group_id::ANY;
    fm
}

/// What to send, in order: group adds/modifies (before the flows that reference them),
/// flow deletes, flow adds, then group deletes (after the flows that referenced them).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub group_adds: Vec<GroupMod>,
    pub deletes: Vec<FlowMod>,
    pub adds: Vec<FlowMod>,
    /// More flows to add, as desired text: parsed one by one as they are sent (a switch
    /// that holds nothing yet gets 100k+ adds, which parsed at once would be ~1 KiB each).
    pub add_texts: Vec<Flow>,
    pub group_deletes: Vec<GroupMod>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn len(&self) -> usize {
        self.group_adds.len() + self.deletes.len() + self.flow_adds() + self.group_deletes.len()
    }
    /// Flows added (`adds` and `add_texts`).
    pub fn flow_adds(&self) -> usize {
        self.adds.len() + self.add_texts.len()
    }
}

/// Whether a group id is in the range Plexus owns.
pub fn is_plexus_group(id: u32) -> bool {
    id & GROUP_MASK == GROUP_BASE
}

/// Parses a desired group; returns it with its canonical text.
fn parse_desired_group(text: &str) -> Result<(GroupMod, String), String> {
    let g =
        parse_group_mod(text, GroupModCommand::Add).map_err(|e| format!("group `{text}`: {e}"))?;
    let canon = format_group(g.group_id, g.group_type, &g.buckets);
    Ok((g, canon))
}

fn group_delete(id: u32) -> GroupMod {
    GroupMod {
        command: GroupModCommand::Delete,
        group_type: plexus_openflow::message::GroupType::All,
        group_id: id,
        buckets: Vec::new(),
    }
}

/// Groups: make the switch's Plexus-range groups (`installed`) equal the desired ones.
fn plan_groups_full(
    installed: &[GroupDesc],
    desired: &BTreeSet<Flow>,
    plan: &mut Plan,
) -> Result<(), String> {
    let have: BTreeMap<u32, String> = installed
        .iter()
        .filter(|g| is_plexus_group(g.group_id))
        .map(|g| {
            (
                g.group_id,
                format_group(g.group_id, g.group_type, &g.buckets),
            )
        })
        .collect();
    let mut want = BTreeSet::new();
    for t in desired.iter().filter(|t| is_group(t)) {
        let (mut g, canon) = parse_desired_group(t)?;
        want.insert(g.group_id);
        match have.get(&g.group_id) {
            Some(h) if *h == canon => {}
            Some(_) => {
                g.command = GroupModCommand::Modify;
                plan.group_adds.push(g);
            }
            None => plan.group_adds.push(g),
        }
    }
    for id in have.keys().filter(|id| !want.contains(id)) {
        plan.group_deletes.push(group_delete(*id));
    }
    Ok(())
}

fn plan_groups_delta(
    old: &BTreeSet<Flow>,
    new: &BTreeSet<Flow>,
    plan: &mut Plan,
) -> Result<(), String> {
    let ids =
        |set: &BTreeSet<Flow>, skip: &BTreeSet<Flow>| -> Result<BTreeMap<u32, GroupMod>, String> {
            set.iter()
                .filter(|t| is_group(t) && !skip.contains(*t))
                .map(|t| parse_desired_group(t).map(|(g, _)| (g.group_id, g)))
                .collect()
        };
    let gone = ids(old, new)?;
    let came = ids(new, old)?;
    let old_ids: BTreeSet<u32> = old
        .iter()
        .filter(|t| is_group(t))
        .map(|t| parse_desired_group(t).map(|(g, _)| g.group_id))
        .collect::<Result<_, _>>()?;
    for (id, mut g) in came {
        if old_ids.contains(&id) {
            g.command = GroupModCommand::Modify;
        }
        plan.group_adds.push(g);
    }
    let new_ids: BTreeSet<u32> = new
        .iter()
        .filter(|t| is_group(t))
        .map(|t| parse_desired_group(t).map(|(g, _)| g.group_id))
        .collect::<Result<_, _>>()?;
    for id in gone.keys().filter(|id| !new_ids.contains(id)) {
        plan.group_deletes.push(group_delete(*id));
    }
    Ok(())
}

/// The binary identity of a flow: table, priority and the match's OXM TLVs with the
/// fields sorted (a switch may report them in another order than they were sent).
fn bin_key(table: u8, priority: u16, m: &Match) -> Vec<u8> {
    let mut fields = m.fields.clone();
    fields.sort_by_key(|f| f.field);
    let mut out = Vec::with_capacity(3 + 12 * fields.len());
    out.push(table);
    out.extend_from_slice(&priority.to_be_bytes());
    Match { fields }.encode_oxms(&mut out);
    out
}

fn bin_instructions(i: &[Instruction]) -> Vec<u8> {
    let mut out = Vec::new();
    Instruction::encode_list(i, &mut out);
    out
}

/// A switch flow with the Plexus cookie, reduced to its encoded identity
/// ([`bin_key`]) followed by its encoded instructions, in one allocation: a few hundred
/// bytes instead of the decoded structures, for the 100k+ flows a switch lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFlow {
    bytes: Box<[u8]>,
    /// Length of the key at the start of `bytes`.
    key_len: u32,
}

impl InstalledFlow {
    fn new(fs: &FlowStats) -> Self {
        let mut bytes = bin_key(fs.table_id, fs.priority, &fs.match_);
        let key_len = bytes.len() as u32;
        Instruction::encode_list(&fs.instructions, &mut bytes);
        InstalledFlow {
            bytes: bytes.into_boxed_slice(),
            key_len,
        }
    }
    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }
    fn instructions(&self) -> &[u8] {
        &self.bytes[self.key_len as usize..]
    }
    fn table(&self) -> u8 {
        self.bytes[0]
    }
    fn priority(&self) -> u16 {
        u16::from_be_bytes([self.bytes[1], self.bytes[2]])
    }
    fn match_(&self) -> Result<Match, String> {
        Match::decode_oxms(&mut Reader::new(&self.key()[3..])).map_err(|e| format!("{e:?}"))
    }
    fn decode_instructions(&self) -> Result<Vec<Instruction>, String> {
        let i = self.instructions();
        Instruction::decode_list(&mut Reader::new(i), i.len()).map_err(|e| format!("{e:?}"))
    }
    /// The canonical text identity and actions (the fallback comparison).
    fn text(&self) -> Result<(FlowKey, String), String> {
        Ok((
            FlowKey::new(self.table(), self.priority(), &self.match_()?),
            format_instructions(&self.decode_instructions()?),
        ))
    }
}

/// Reduces the switch's Plexus flows to [`InstalledFlow`]s (foreign cookies are left
/// out); can run while the desired set is still being computed.
pub fn canon_installed(installed: Vec<FlowStats>) -> Vec<InstalledFlow> {
    installed
        .into_iter()
        .filter(|f| f.cookie & COOKIE_MASK == COOKIE)
        .map(|fs| InstalledFlow::new(&fs))
        .collect()
}

/// Full reconciliation: `installed` is what the switch reports (any cookie; foreign flows
/// are ignored), `desired` the compiler's flows for this chassis.
pub fn plan_full(
    installed: &[FlowStats],
    installed_groups: &[GroupDesc],
    desired: &BTreeSet<Flow>,
) -> Result<Plan, String> {
    plan_full_canon(
        canon_installed(installed.to_vec()),
        installed_groups,
        desired,
    )
}

/// Desired flows compared in binary form with the installed ones.
#[derive(Default)]
struct Found {
    /// Installed with the same key and instructions (indexes into the installed flows).
    same: Vec<usize>,
    /// Installed with the same key, other instruction encodings.
    other: Vec<(usize, FlowMod)>,
    /// No installed flow has their key.
    absent: Vec<FlowMod>,
}

/// Parses (once) and looks up desired flows among the installed encodings.
fn find_desired(
    texts: &[&Flow],
    have: &HashMap<&[u8], usize>,
    installed: &[InstalledFlow],
) -> Result<Found, String> {
    let mut out = Found::default();
    for t in texts {
        let fm = parse_add(t)?;
        let key = bin_key(fm.table_id, fm.priority, &fm.match_);
        match have.get(key.as_slice()) {
            Some(&i) if *installed[i].instructions() == *bin_instructions(&fm.instructions) => {
                out.same.push(i)
            }
            Some(&i) => out.other.push((i, fm)),
            None => out.absent.push(fm),
        }
    }
    Ok(out)
}

/// [`plan_full`] with the switch's flows already reduced ([`canon_installed`]).
///
/// Same plan as comparing every flow by its canonical text (key → actions: installed
/// keys not desired are deleted, desired ones missing or with other actions added),
/// but a flow is formatted only when the binary forms cannot decide: every desired text
/// is parsed once, encoded and looked up among the installed encodings. A binary key
/// found means the same text key; an absent one can only have the text key of an
/// installed flow left unmatched with its table and priority.
pub fn plan_full_canon(
    installed: Vec<InstalledFlow>,
    installed_groups: &[GroupDesc],
    desired: &BTreeSet<Flow>,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    plan_groups_full(installed_groups, desired, &mut plan)?;
    if installed.is_empty() {
        // Nothing to compare with: every flow is added, parsed when sent.
        plan.add_texts = desired.iter().filter(|t| !is_group(t)).cloned().collect();
        return Ok(plan);
    }
    let have: HashMap<&[u8], usize> = installed
        .iter()
        .enumerate()
        .map(|(i, f)| (f.key(), i))
        .collect();
    // Parsing 100k+ desired flows is the cost of a reconnect: two halves in parallel.
    let texts: Vec<&Flow> = desired.iter().filter(|t| !is_group(t)).collect();
    let (a, b) = texts.split_at(texts.len() / 2);
    let run = |part: &[&Flow]| find_desired(part, &have, &installed);
    let (ra, rb) = if texts.len() < 4096 {
        (run(a), run(b))
    } else {
        std::thread::scope(|s| {
            let hb = s.spawn(|| run(b));
            let ra = run(a);
            let rb = hb
                .join()
                .unwrap_or_else(|_| Err("flow parser panicked".to_string()));
            (ra, rb)
        })
    };
    let (ra, rb) = (ra?, rb?);
    drop(have);
    let mut matched = vec![false; installed.len()];
    for i in ra.same.into_iter().chain(rb.same) {
        matched[i] = true;
    }
    for (i, fm) in ra.other.into_iter().chain(rb.other) {
        matched[i] = true;
        let actions = format_instructions(&installed[i].decode_instructions()?);
        if format_instructions(&fm.instructions) != actions {
            plan.adds.push(fm);
        }
    }
    let absent = ra.absent.into_iter().chain(rb.absent);
    let left: Vec<&InstalledFlow> = installed
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(f, _)| f)
        .collect();
    let tp: BTreeSet<(u8, u16)> = left.iter().map(|f| (f.table(), f.priority())).collect();
    // The rest, by canonical text.
    let mut want: BTreeMap<FlowKey, (String, FlowMod)> = BTreeMap::new();
    for fm in absent {
        if !tp.contains(&(fm.table_id, fm.priority)) {
            plan.adds.push(fm);
            continue;
        }
        let key = FlowKey::new(fm.table_id, fm.priority, &fm.match_);
        want.insert(key, (format_instructions(&fm.instructions), fm));
    }
    // An unmatched installed flow with the text key of a matched one (the same flow
    // spelled differently) is kept, as the text comparison does: only the matched flows
    // with an unmatched one's table and priority are formatted.
    let mut kept: BTreeSet<FlowKey> = BTreeSet::new();
    if !left.is_empty() {
        for (f, _) in installed.iter().zip(&matched).filter(|(_, m)| **m) {
            if tp.contains(&(f.table(), f.priority())) {
                kept.insert(FlowKey::new(f.table(), f.priority(), &f.match_()?));
            }
        }
    }
    let mut have: BTreeMap<FlowKey, String> = BTreeMap::new();
    for f in left {
        let (key, actions) = f.text()?;
        if want.contains_key(&key) {
            have.insert(key, actions);
        } else if !kept.contains(&key) {
            plan.deletes
                .push(strict_delete(f.table(), f.priority(), &f.match_()?));
        }
    }
    for (key, (actions, add)) in want {
        if have.get(&key) != Some(&actions) {
            plan.adds.push(add);
        }
    }
    // By table and priority, as the text keys order them.
    plan.adds.sort_by_key(|f| (f.table_id, f.priority));
    Ok(plan)
}

/// Incremental: the switch holds `old` (as installed by us); make it hold `new`.
pub fn plan_delta(old: &BTreeSet<Flow>, new: &BTreeSet<Flow>) -> Result<Plan, String> {
    let mut plan = Plan::default();
    plan_groups_delta(old, new, &mut plan)?;
    let mut added_keys = BTreeSet::new();
    for t in new.difference(old).filter(|t| !is_group(t)) {
        let d = parse_desired(t)?;
        added_keys.insert(d.key);
        plan.adds.push(d.add);
    }
    for t in old.difference(new).filter(|t| !is_group(t)) {
        let d = parse_desired(t)?;
        if !added_keys.contains(&d.key) {
            plan.deletes
                .push(strict_delete(d.add.table_id, d.add.priority, &d.add.match_));
        }
    }
    Ok(plan)
}

/// Incremental: the switch holds what we installed; `added`/`removed` is the exact change
/// of the desired set since then (as [`Union`] reports it). Same plan as [`plan_delta`]
/// on the two full sets, without walking them.
pub fn plan_from_delta(added: &BTreeSet<Flow>, removed: &BTreeSet<Flow>) -> Result<Plan, String> {
    let mut plan = Plan::default();
    // Groups: an id both removed and added is modified in place.
    let mut gone: BTreeMap<u32, GroupMod> = BTreeMap::new();
    for t in removed.iter().filter(|t| is_group(t)) {
        let (g, _) = parse_desired_group(t)?;
        gone.insert(g.group_id, g);
    }
    for t in added.iter().filter(|t| is_group(t)) {
        let (mut g, _) = parse_desired_group(t)?;
        if gone.remove(&g.group_id).is_some() {
            g.command = GroupModCommand::Modify;
        }
        plan.group_adds.push(g);
    }
    for id in gone.keys() {
        plan.group_deletes.push(group_delete(*id));
    }
    let mut added_keys = BTreeSet::new();
    for t in added.iter().filter(|t| !is_group(t)) {
        let d = parse_desired(t)?;
        added_keys.insert(d.key);
        plan.adds.push(d.add);
    }
    for t in removed.iter().filter(|t| !is_group(t)) {
        let d = parse_desired(t)?;
        if !added_keys.contains(&d.key) {
            plan.deletes
                .push(strict_delete(d.add.table_id, d.add.priority, &d.add.match_));
        }
    }
    Ok(plan)
}

/// The net change of one chassis' desired set (flows and groups, compiler text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetDelta {
    pub added: BTreeSet<Flow>,
    pub removed: BTreeSet<Flow>,
}

impl SetDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Flows and groups added plus removed.
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    /// `f` entered the set.
    pub fn add(&mut self, f: &Flow) {
        if !self.removed.remove(f) {
            self.added.insert(f.clone());
        }
    }

    /// `f` left the set.
    pub fn remove(&mut self, f: &Flow) {
        if !self.added.remove(f) {
            self.removed.insert(f.clone());
        }
    }

    /// Appends `next` (a later change) to this one.
    pub fn then(&mut self, next: &SetDelta) {
        for f in &next.removed {
            self.remove(f);
        }
        for f in &next.added {
            self.add(f);
        }
    }
}

/// Per-chassis union of several engines' outputs with reference counts (the same flow,
/// e.g. a table's default drop, is wanted by every VPC on the chassis). Every call
/// records the net change per chassis in `changes` (taken by [`Union::take_changes`]).
/// A flow already present keeps the text it was first added with.
#[derive(Debug, Clone, Default)]
pub struct Union {
    counts: BTreeMap<String, HashMap<Flow, usize>>,
    changes: BTreeMap<String, SetDelta>,
}

impl Union {
    pub fn add_flows(&mut self, flows: &FlowRefs) {
        for (c, fs) in flows {
            let m = self.counts.entry(c.clone()).or_default();
            for f in fs {
                if let Some(n) = m.get_mut(f) {
                    *n += 1;
                    continue;
                }
                m.insert(f.clone(), 1);
                self.changes.entry(c.clone()).or_default().add(f);
            }
        }
    }

    pub fn remove_flows(&mut self, flows: &FlowRefs) {
        for (c, fs) in flows {
            let Some(m) = self.counts.get_mut(c) else {
                continue;
            };
            for f in fs {
                if let Some(n) = m.get_mut(f) {
                    *n -= 1;
                    if *n == 0 {
                        let (k, _) = m.remove_entry(f).expect("present");
                        self.changes.entry(c.clone()).or_default().remove(&k);
                    }
                }
            }
            if m.is_empty() {
                self.counts.remove(c);
            }
        }
    }

    /// Applies one engine delta (its removals, then its additions).
    pub fn apply(&mut self, d: &Delta) {
        self.remove_flows(&d.removed);
        self.add_flows(&d.added);
    }

    /// The net change per chassis since the last call.
    pub fn take_changes(&mut self) -> BTreeMap<String, SetDelta> {
        let mut c = std::mem::take(&mut self.changes);
        c.retain(|_, d| !d.is_empty());
        c
    }

    /// The desired flows of `chassis`.
    pub fn flows(&self, chassis: &str) -> BTreeSet<Flow> {
        self.counts
            .get(chassis)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn chassis(&self) -> impl Iterator<Item = &String> {
        self.counts.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(text: &str, cookie: u64) -> FlowStats {
        let fm = parse_flow_mod(text, FlowModCommand::Add).unwrap();
        FlowStats {
            table_id: fm.table_id,
            priority: fm.priority,
            cookie,
            match_: fm.match_,
            instructions: fm.instructions,
            duration_sec: 0,
            duration_nsec: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            packet_count: 0,
            byte_count: 0,
        }
    }

    fn set(v: &[&str]) -> BTreeSet<Flow> {
        v.iter().map(|s| Flow::from(*s)).collect()
    }

    const A: &str = "table=0,priority=100,in_port=1,actions=set_field:5->reg14,goto_table:10";
    const B: &str = "table=50,priority=100,reg15=5,actions=output:1";
    const B2: &str = "table=50,priority=100,reg15=5,actions=output:2";
    const C: &str = "table=10,priority=0,actions=drop";

    #[test]
    fn full_reconcile_touches_only_differences_and_own_flows() {
        let installed = vec![
            stats(A, COOKIE),
            stats(B, COOKIE),
            stats("table=0,priority=5,actions=drop", COOKIE | 7), // stale, ours
            stats("table=0,priority=7,actions=drop", 0x1234),     // foreign
        ];
        let plan = plan_full(&installed, &[], &set(&[A, B2, C])).unwrap();
        assert_eq!(plan.deletes.len(), 1);
        assert_eq!(plan.deletes[0].priority, 5);
        assert_eq!(plan.deletes[0].command, FlowModCommand::DeleteStrict);
        assert_eq!(plan.deletes[0].cookie_mask, COOKIE_MASK);
        let adds: Vec<_> = plan.adds.iter().map(|f| (f.table_id, f.priority)).collect();
        assert_eq!(adds, vec![(10, 0), (50, 100)]);
        assert!(plan.adds.iter().all(|f| f.cookie == COOKIE));
    }

    /// Large sets take the parallel path: the same plan as the per-flow definition.
    #[test]
    fn full_reconcile_of_large_sets_in_parallel() {
        let text = |n: u32, out: u32| {
            format!("table=30,priority=100,reg15={n},metadata=0x7,actions=output:{out}")
        };
        let desired: BTreeSet<Flow> = (0..6000).map(|n| Flow::from(text(n, 1))).collect();
        let mut installed: Vec<FlowStats> = Vec::new();
        // 0..3000 as desired, 3000..4000 with other actions, 6000..6500 not desired,
        // one foreign flow (another cookie) not desired either.
        installed.extend((0..3000).map(|n| stats(&text(n, 1), COOKIE)));
        installed.extend((3000..4000).map(|n| stats(&text(n, 2), COOKIE)));
        installed.extend((6000..6500).map(|n| stats(&text(n, 1), COOKIE)));
        installed.push(stats(&text(9999, 1), 0x1234));
        let plan = plan_full(&installed, &[], &desired).unwrap();
        assert_eq!(plan.adds.len(), 3000, "1000 replaced + 2000 missing");
        assert_eq!(plan.deletes.len(), 500);
        assert!(plan.adds.iter().all(|f| f.cookie == COOKIE));
        let deleted: BTreeSet<String> = plan
            .deletes
            .iter()
            .map(|f| format_match_with_priority(&f.match_, f.priority))
            .collect();
        assert!(
            deleted.iter().all(|m| m.contains("reg15=0x17")
                || m.contains("reg15=0x18")
                || m.contains("reg15=0x19")),
            "{:?}",
            deleted.iter().next()
        );
    }

    /// The plan by canonical text alone (the definition `plan_full` must agree with).
    fn plan_by_text(installed: &[FlowStats], desired: &BTreeSet<Flow>) -> Vec<String> {
        let mut want: BTreeMap<FlowKey, (String, FlowMod)> = BTreeMap::new();
        for t in desired.iter().filter(|t| !is_group(t)) {
            let fm = parse_flow_mod(t, FlowModCommand::Add).unwrap();
            let key = FlowKey::new(fm.table_id, fm.priority, &fm.match_);
            want.insert(key, (format_instructions(&fm.instructions), fm));
        }
        let mut out = Vec::new();
        let mut have: BTreeMap<FlowKey, String> = BTreeMap::new();
        for f in installed
            .iter()
            .filter(|f| f.cookie & COOKIE_MASK == COOKIE)
        {
            let key = FlowKey::new(f.table_id, f.priority, &f.match_);
            if want.contains_key(&key) {
                have.insert(key, format_instructions(&f.instructions));
            } else {
                out.push(format!("delete {key:?}"));
            }
        }
        for (key, (actions, _)) in want {
            if have.get(&key) != Some(&actions) {
                out.push(format!("add {key:?} {actions}"));
            }
        }
        out.sort();
        out
    }

    fn plan_text(p: &Plan) -> Vec<String> {
        let mut out: Vec<String> = p
            .deletes
            .iter()
            .map(|f| {
                format!(
                    "delete {:?}",
                    FlowKey::new(f.table_id, f.priority, &f.match_)
                )
            })
            .chain(
                p.adds
                    .iter()
                    .cloned()
                    .chain(
                        p.add_texts
                            .iter()
                            .map(|t| parse_flow_mod(t, FlowModCommand::Add).unwrap()),
                    )
                    .map(|f| {
                        format!(
                            "add {:?} {}",
                            FlowKey::new(f.table_id, f.priority, &f.match_),
                            format_instructions(&f.instructions)
                        )
                    }),
            )
            .collect();
        out.sort();
        out
    }

    /// The binary comparison and its text fallback give the text comparison's plan:
    /// equal flows, flows whose switch reports the match fields in another order,
    /// other actions, missing, stale (also beside missing ones of the same table and
    /// priority) and foreign flows.
    #[test]
    fn binary_comparison_plans_as_the_text_comparison() {
        let text = |n: u32, out: u32| {
            format!("table=30,priority=100,reg15={n},metadata=0x7,actions=output:{out}")
        };
        let desired: BTreeSet<Flow> = (0..5000)
            .map(|n| Flow::from(text(n, 1)))
            .chain([Flow::from(A), Flow::from(C)])
            .collect();
        let mut installed: Vec<FlowStats> = Vec::new();
        for n in 0..5200u32 {
            let mut f = stats(&text(n, if n % 7 == 3 { 2 } else { 1 }), COOKIE);
            if n % 5 == 1 {
                f.match_.fields.reverse(); // the same match, fields in another order
            }
            if n % 11 != 4 {
                installed.push(f); // every 11th desired flow is missing
            }
        }
        installed.push(stats(B, COOKIE)); // stale, alone in its table
        installed.push(stats("table=10,priority=0,actions=drop", COOKIE)); // = C
        installed.push(stats(&text(9999, 1), 0x1234)); // foreign
        let plan = plan_full(&installed, &[], &desired).unwrap();
        assert_eq!(plan_text(&plan), plan_by_text(&installed, &desired));
        let stale = (5000..5200).filter(|n| n % 11 != 4).count();
        assert_eq!(plan.deletes.len(), stale + 1);
        assert!(!plan.adds.is_empty());
    }

    #[test]
    fn full_reconcile_of_equal_sets_is_empty() {
        let installed: Vec<_> = [A, B, C].iter().map(|t| stats(t, COOKIE)).collect();
        assert!(
            plan_full(&installed, &[], &set(&[A, B, C]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn delta_replaces_in_place_without_delete() {
        let plan = plan_delta(&set(&[A, B]), &set(&[A, B2, C])).unwrap();
        assert!(plan.deletes.is_empty());
        assert_eq!(plan.adds.len(), 2);
        let plan = plan_delta(&set(&[A, B]), &set(&[A])).unwrap();
        assert_eq!(plan.deletes.len(), 1);
        assert!(plan.adds.is_empty());
    }

    #[test]
    fn delta_plan_equals_full_set_plan() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&[A, B], &[A, B2, C]),
            (&[A, B], &[A]),
            (&[G1, B], &[G1B, G2, B]),
            (&[G1, G2], &[G2]),
        ];
        for (old, new) in cases {
            let (o, n) = (set(old), set(new));
            let mut d = SetDelta::default();
            for f in n.difference(&o) {
                d.add(f);
            }
            for f in o.difference(&n) {
                d.remove(f);
            }
            let a = plan_delta(&o, &n).unwrap();
            let b = plan_from_delta(&d.added, &d.removed).unwrap();
            let txt = |p: &Plan| {
                format!(
                    "{:?}",
                    (&p.group_adds, &p.deletes, &p.adds, &p.group_deletes)
                )
            };
            assert_eq!(txt(&a), txt(&b));
        }
    }

    #[test]
    fn union_reports_net_changes() {
        let mut u = Union::default();
        let f = |v: &[&str]| -> FlowRefs { [("c".to_string(), set(v))].into_iter().collect() };
        u.add_flows(&f(&[A, C]));
        u.add_flows(&f(&[B, C]));
        let d = u.take_changes();
        assert_eq!(d["c"].added, set(&[A, B, C]));
        // C is still wanted once; A leaves and comes back: no net change.
        u.remove_flows(&f(&[A, C]));
        u.add_flows(&f(&[A]));
        assert!(u.take_changes().is_empty());
        u.remove_flows(&f(&[B, C]));
        let d = u.take_changes();
        assert_eq!(d["c"].removed, set(&[B, C]));
        let mut acc = SetDelta::default();
        acc.then(&SetDelta {
            added: set(&[A]),
            removed: set(&[]),
        });
        acc.then(&SetDelta {
            added: set(&[]),
            removed: set(&[A, B]),
        });
        assert_eq!(
            acc,
            SetDelta {
                added: set(&[]),
                removed: set(&[B])
            }
        );
    }

    #[test]
    fn union_counts_references() {
        let mut u = Union::default();
        let f = |v: &[&str]| -> FlowRefs { [("c".to_string(), set(v))].into_iter().collect() };
        u.add_flows(&f(&[A, C]));
        u.add_flows(&f(&[B, C]));
        u.remove_flows(&f(&[A, C]));
        assert_eq!(u.flows("c"), set(&[B, C]));
    }

    const G1: &str = "group_id=1342177281,type=select,bucket=weight:1,actions=ct(commit,table=25,zone=9,nat(dst=10.0.0.2:80)),bucket=weight:3,actions=ct(commit,table=25,zone=9,nat(dst=10.0.0.3:80))";
    const G1B: &str = "group_id=1342177281,type=select,bucket=weight:1,actions=ct(commit,table=25,zone=9,nat(dst=10.0.0.2:80))";
    const G2: &str = "group_id=1342177282,type=select,bucket=weight:1,actions=ct(commit,table=25,zone=9,nat(dst=10.0.0.4:80))";

    fn desc(text: &str) -> GroupDesc {
        let g = parse_group_mod(text, GroupModCommand::Add).unwrap();
        GroupDesc {
            group_type: g.group_type,
            group_id: g.group_id,
            buckets: g.buckets,
        }
    }

    #[test]
    fn groups_reconcile_by_difference_and_leave_foreign_groups() {
        let foreign = "group_id=7,type=all,bucket=actions=output:1";
        let stale = "group_id=1342177290,type=select,bucket=weight:1,actions=output:3";
        let installed = vec![desc(G1), desc(foreign), desc(stale)];
        // Same G1: untouched; G2 new: added; stale Plexus group: deleted; foreign: kept.
        let plan = plan_full(&[], &installed, &set(&[G1, G2, A])).unwrap();
        assert_eq!(plan.group_adds.len(), 1);
        assert_eq!(plan.group_adds[0].group_id, 1342177282);
        assert_eq!(plan.group_adds[0].command, GroupModCommand::Add);
        assert_eq!(plan.group_deletes.len(), 1);
        assert_eq!(plan.group_deletes[0].group_id, 1342177290);
        assert_eq!(plan.flow_adds(), 1);
        // A backend removed: the group is modified in place, nothing deleted.
        let plan = plan_full(&[], &[desc(G1)], &set(&[G1B])).unwrap();
        assert_eq!(plan.group_adds.len(), 1);
        assert_eq!(plan.group_adds[0].command, GroupModCommand::Modify);
        assert_eq!(plan.group_adds[0].buckets.len(), 1);
        assert!(plan.group_deletes.is_empty());
        // Nothing to do when the switch already holds the desired groups.
        assert!(
            plan_full(&[], &[desc(G1), desc(G2)], &set(&[G1, G2]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn group_deltas_modify_add_and_delete() {
        let plan = plan_delta(&set(&[G1, B]), &set(&[G1B, G2, B])).unwrap();
        let cmds: BTreeMap<u32, GroupModCommand> = plan
            .group_adds
            .iter()
            .map(|g| (g.group_id, g.command))
            .collect();
        assert_eq!(cmds[&1342177281], GroupModCommand::Modify);
        assert_eq!(cmds[&1342177282], GroupModCommand::Add);
        assert!(plan.group_deletes.is_empty() && plan.adds.is_empty() && plan.deletes.is_empty());
        let plan = plan_delta(&set(&[G1, G2]), &set(&[G2])).unwrap();
        assert!(plan.group_adds.is_empty());
        assert_eq!(plan.group_deletes.len(), 1);
        assert_eq!(plan.group_deletes[0].group_id, 1342177281);
    }
}
