//! One OpenFlow table: a tuple-space-search classifier.
//!
//! Rules are `(priority, Match)` converted to a [`MaskedKey`]. Rules with the
//! same mask share a *subtable*: a hash map from masked key to the rules with
//! that exact masked value, sorted by priority. A lookup visits subtables in
//! descending order of their highest priority and stops as soon as the best
//! rule found outranks every rule of the remaining subtables.
//!
//! **Ties.** OpenFlow leaves overlapping rules of equal priority undefined;
//! here the rule inserted first (lowest [`RuleId`]) wins, always, whatever the
//! subtable layout (subtables whose highest priority *equals* the best found
//! are still visited).
//!
//! **Wildcards.** [`Classifier::lookup`] ORs the mask of every subtable it
//! visits into the caller's wildcard key (OVS's approach without staged
//! lookup): any key equal to the packet on those bits visits the same
//! subtables with the same hits and gets the same rule, so
//! `(key & wc, wc)` is a valid megaflow for the result.
//!
//! **Non-strict selection** (OpenFlow 1.3.5 §6.4, MODIFY/DELETE): a rule is
//! selected when its match is equal to or more specific than the flow-mod's:
//! every field of the flow-mod is matched by the rule with at least its mask
//! bits and agreeing values ([`MaskedKey::is_within`]). Strict selection needs
//! the identical match and priority. Cookie and out_port/out_group filters are
//! the caller's (pass them as the `filter` closure).
//!
//! **Conjunctive rules** (OVS's `conjunction(id, k/n)`, see
//! [`ConjClause`]): a rule whose only actions are conjunction clauses is
//! *soft*: it never wins a lookup by itself. A lookup collects the soft rules
//! that match with a priority above the best ordinary (*hard*) rule; at each
//! such priority, highest first, a conjunction `id` is complete when every
//! one of its `n` clauses has a matching soft rule; then the table is looked
//! up again (hard rules only) with `conj_id = id`, and the rule found there
//! wins unless the hard rule outranks it. If no conjunction completes (or
//! no `conj_id` rule matches), the soft rules are ignored and the hard rule
//! wins — OVS's semantics (`classifier_lookup__`). Several complete
//! conjunctions at one priority: the lowest id is tried first. Clauses of
//! one id that disagree on `n` never complete.
//!
//! Lookups take `&self` and do not allocate (a table with conjunctive rules
//! allocates a small vector per lookup); counters are atomics.

use crate::flow::{FlowKey, MaskedKey, PreHashedBuild};
use plexus_openflow::Match;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

mod compact;
#[cfg(test)]
mod tests;

pub use compact::CompactMatch;

/// A rule's identity, unique for the classifier's lifetime and increasing
/// with insertion order (the tie-breaker).
pub type RuleId = u64;

/// Packet and byte counters of a rule.
#[derive(Debug, Default)]
pub struct RuleStats {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl RuleStats {
    /// Credits `packets` packets of `bytes` total.
    #[inline]
    pub fn add(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Copies counts from another rule (FLOW_MOD ADD replacing a rule
    /// without `OFPFF_RESET_COUNTS`).
    pub fn copy_from(&self, other: &RuleStats) {
        self.packets.store(other.packets(), Ordering::Relaxed);
        self.bytes.store(other.bytes(), Ordering::Relaxed);
    }
}

/// One clause of a conjunctive rule: `conjunction(id, clause+1/n_clauses)`
/// (`clause` 0-based, as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConjClause {
    pub id: u32,
    pub clause: u8,
    pub n_clauses: u8,
}

/// One rule and its payload (`T`: actions/instructions, cookie, timeouts…).
#[derive(Debug)]
pub struct Rule<T> {
    pub id: RuleId,
    pub priority: u16,
    /// The match as received (for dump-flows, flow stats and flow-removed),
    /// compactly; its key bits are the subtable's (mask) and the entry's
    /// (value), and [`Rule::key`] derives them again.
    pub matches: CompactMatch,
    pub data: T,
    pub stats: RuleStats,
    /// Conjunction clauses: non-empty for a soft (conjunctive) rule.
    pub conj: Box<[ConjClause]>,
}

impl<T> Rule<T> {
    /// The match as received.
    pub fn match_(&self) -> Match {
        self.matches.to_match()
    }

    /// The match as key bits.
    pub fn key(&self) -> MaskedKey {
        MaskedKey::from_match(&self.match_())
    }
}

/// A rule reference inside a subtable: (priority, id, slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ref {
    priority: u16,
    id: RuleId,
    slot: u32,
}

impl Ref {
    /// Whether `self` wins over `other`: higher priority, then lower id.
    #[inline]
    fn beats(&self, other: &Ref) -> bool {
        self.priority > other.priority || (self.priority == other.priority && self.id < other.id)
    }
}

#[derive(Debug)]
struct Entry {
    /// The masked value shared by the rules: only the subtable's mask words
    /// (in `Subtable::words` order), to keep entries small and cache-friendly.
    key: Box<[u64]>,
    /// Best first.
    rules: Vec<Ref>,
}

#[derive(Debug)]
struct Subtable {
    mask: FlowKey,
    /// Non-zero words of `mask`.
    words: Box<[u8]>,
    map: HashMap<u64, Vec<Entry>, PreHashedBuild>,
    /// Rule count per priority (for `max_priority`).
    priorities: BTreeMap<u16, u32>,
    max_priority: u16,
    n_rules: usize,
}

impl Subtable {
    fn new(mask: FlowKey) -> Self {
        Self {
            words: mask.nonzero_words().into_boxed_slice(),
            mask,
            map: HashMap::default(),
            priorities: BTreeMap::new(),
            max_priority: 0,
            n_rules: 0,
        }
    }

    /// The compact form of a masked value.
    fn compact(&self, value: &FlowKey) -> Box<[u64]> {
        self.words
            .iter()
            .map(|&i| value.w[i as usize] & self.mask.w[i as usize])
            .collect()
    }

    /// The full masked value of an entry.
    fn expand(&self, e: &Entry) -> FlowKey {
        let mut k = FlowKey::ZERO;
        for (&i, &v) in self.words.iter().zip(e.key.iter()) {
            k.w[i as usize] = v;
        }
        k
    }

    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        key.hash_masked(&self.mask, &self.words)
    }

    /// The entry holding `key`'s masked value, if any.
    #[inline]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<&Entry> {
        let bucket = self.map.get(&hash)?;
        bucket.iter().find(|e| {
            self.words
                .iter()
                .zip(e.key.iter())
                .all(|(&i, &v)| key.w[i as usize] & self.mask.w[i as usize] == v)
        })
    }

    fn add_priority(&mut self, p: u16) {
        *self.priorities.entry(p).or_insert(0) += 1;
        self.n_rules += 1;
        self.max_priority = self.max_priority.max(p);
    }

    fn remove_priority(&mut self, p: u16) {
        if let Some(c) = self.priorities.get_mut(&p) {
            *c -= 1;
            if *c == 0 {
                self.priorities.remove(&p);
            }
        }
        self.n_rules -= 1;
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }
}

/// An OpenFlow table.
#[derive(Debug)]
pub struct Classifier<T> {
    slots: Vec<Option<Rule<T>>>,
    free: Vec<u32>,
    /// Rule id → slot. Ids are unique increasing integers, so they index
    /// the map as they are ([`PreHashedBuild`]) instead of through SipHash:
    /// the pipeline credits rule statistics through this map per packet.
    ids: HashMap<RuleId, u32, PreHashedBuild>,
    subtables: Vec<Subtable>,
    by_mask: HashMap<FlowKey, usize>,
    /// Subtable indices, highest `max_priority` first.
    order: Vec<u32>,
    next_id: RuleId,
    version: u64,
    /// Number of soft (conjunctive) rules: 0 keeps lookups on the fast path.
    n_soft: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Classifier<T> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::default(),
            subtables: Vec::new(),
            by_mask: HashMap::new(),
            order: Vec::new(),
            next_id: 1,
            version: 0,
            n_soft: 0,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of subtables (distinct masks).
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Increases on every change (insert, remove, `get_mut`): caches built
    /// from an older version may be stale.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The highest-priority rule matching `key` (ties: lowest id), ORing
    /// the bits examined into `wc`. Conjunctive rules are resolved as the
    /// module documentation describes.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, wc: &mut FlowKey) -> Option<&Rule<T>> {
        if self.n_soft != 0 {
            return self.lookup_conj(key, wc);
        }
        let mut best: Option<Ref> = None;
        for &si in &self.order {
            let st = &self.subtables[si as usize];
            if let Some(b) = &best
                && st.max_priority < b.priority
            {
                break;
            }
            for &i in st.words.iter() {
                wc.w[i as usize] |= st.mask.w[i as usize];
            }
            if let Some(e) = st.find(key, st.hash(key)) {
                let cand = e.rules[0];
                if best.as_ref().is_none_or(|b| cand.beats(b)) {
                    best = Some(cand);
                }
            }
        }
        best.and_then(|r| self.slots[r.slot as usize].as_ref())
    }

    fn is_soft(&self, r: &Ref) -> bool {
        self.slots[r.slot as usize]
            .as_ref()
            .is_some_and(|x| !x.conj.is_empty())
    }

    /// The best hard rule matching `key`; with `soft`, also collects the
    /// matching soft rules that outrank every hard rule seen so far.
    fn lookup_hard(
        &self,
        key: &FlowKey,
        wc: &mut FlowKey,
        mut soft: Option<&mut Vec<Ref>>,
    ) -> Option<Ref> {
        let mut best: Option<Ref> = None;
        for &si in &self.order {
            let st = &self.subtables[si as usize];
            if let Some(b) = &best
                && st.max_priority < b.priority
            {
                break;
            }
            for &i in st.words.iter() {
                wc.w[i as usize] |= st.mask.w[i as usize];
            }
            if let Some(e) = st.find(key, st.hash(key)) {
                for r in &e.rules {
                    if best.as_ref().is_some_and(|b| !r.beats(b)) {
                        break;
                    }
                    if self.is_soft(r) {
                        if let Some(s) = soft.as_deref_mut() {
                            s.push(*r);
                        }
                        continue;
                    }
                    best = Some(*r);
                    break;
                }
            }
        }
        best
    }

    #[cold]
    fn lookup_conj(&self, key: &FlowKey, wc: &mut FlowKey) -> Option<&Rule<T>> {
        let mut soft = Vec::new();
        let hard = self.lookup_hard(key, wc, Some(&mut soft));
        let hard_pri = hard.map(|h| h.priority as i32).unwrap_or(-1);
        soft.retain(|r| r.priority as i32 > hard_pri);
        soft.sort_unstable_by_key(|r| std::cmp::Reverse(r.priority));
        let mut i = 0;
        while i < soft.len() {
            let p = soft[i].priority;
            let j = i + soft[i..].iter().take_while(|r| r.priority == p).count();
            // conj id -> (n_clauses, clauses seen); n 0 = clauses disagree on
            // n_clauses, so the conjunction never completes.
            let mut seen: BTreeMap<u32, (u8, u64)> = BTreeMap::new();
            for r in &soft[i..j] {
                let Some(rule) = self.slots[r.slot as usize].as_ref() else {
                    continue;
                };
                for c in rule.conj.iter() {
                    let e = seen.entry(c.id).or_insert((c.n_clauses, 0));
                    if e.0 != c.n_clauses {
                        e.0 = 0;
                    } else if c.clause < 64 {
                        e.1 |= 1 << c.clause;
                    }
                }
            }
            for (id, (n, bits)) in seen {
                let full = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                if n == 0 || bits != full {
                    continue;
                }
                let mut k2 = *key;
                k2.set_loc(crate::flow::layout::CONJ_ID, id as u128);
                if let Some(r) = self.lookup_hard(&k2, wc, None) {
                    let win = match hard {
                        Some(h) if h.priority > r.priority => h,
                        _ => r,
                    };
                    return self.slots[win.slot as usize].as_ref();
                }
            }
            i = j;
        }
        hard.and_then(|r| self.slots[r.slot as usize].as_ref())
    }

    /// [`lookup`](Self::lookup) without wildcard tracking.
    pub fn lookup_only(&self, key: &FlowKey) -> Option<&Rule<T>> {
        let mut wc = FlowKey::ZERO;
        self.lookup(key, &mut wc)
    }

    /// Adds a rule. A rule with the identical match and priority is replaced
    /// and returned (OpenFlow ADD; copy its counters unless `RESET_COUNTS`).
    /// The match must be validated (prerequisites) by the caller.
    pub fn insert(&mut self, matches: Match, priority: u16, data: T) -> (RuleId, Option<Rule<T>>) {
        self.insert_conj(matches, priority, data, Box::default())
    }

    /// [`insert`](Self::insert) of a rule with conjunction clauses (soft
    /// when `conj` is non-empty).
    pub fn insert_conj(
        &mut self,
        matches: Match,
        priority: u16,
        data: T,
        conj: Box<[ConjClause]>,
    ) -> (RuleId, Option<Rule<T>>) {
        let key = MaskedKey::from_match(&matches);
        let replaced = self
            .find_strict_key(&key, priority)
            .and_then(|id| self.remove(id));
        let id = self.next_id;
        self.next_id += 1;
        let rule = Rule {
            id,
            priority,
            matches: CompactMatch::new(&matches),
            data,
            stats: RuleStats::default(),
            conj,
        };
        if !rule.conj.is_empty() {
            self.n_soft += 1;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(rule);
                s
            }
            None => {
                self.slots.push(Some(rule));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(id, slot);
        let si = match self.by_mask.get(&key.mask) {
            Some(&si) => si,
            None => {
                self.subtables.push(Subtable::new(key.mask));
                self.by_mask.insert(key.mask, self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let r = Ref { priority, id, slot };
        let h = st.hash(&key.value);
        let compact = st.compact(&key.value);
        let bucket = st.map.entry(h).or_default();
        match bucket.iter_mut().find(|e| e.key == compact) {
            Some(e) => {
                let pos = e.rules.partition_point(|x| x.beats(&r));
                e.rules.insert(pos, r);
            }
            None => bucket.push(Entry {
                key: compact,
                rules: vec![r],
            }),
        }
        let old_max = st.max_priority;
        let was_empty = st.n_rules == 0;
        st.add_priority(priority);
        if was_empty || st.max_priority != old_max {
            self.reorder();
        }
        self.version += 1;
        (id, replaced)
    }

    /// Removes a rule by id.
    pub fn remove(&mut self, id: RuleId) -> Option<Rule<T>> {
        let slot = self.ids.remove(&id)?;
        let rule = self.slots[slot as usize].take()?;
        self.free.push(slot);
        if !rule.conj.is_empty() {
            self.n_soft -= 1;
        }
        let key = rule.key();
        let si = self.by_mask[&key.mask];
        let st = &mut self.subtables[si];
        let h = st.hash(&key.value);
        let compact = st.compact(&key.value);
        if let Some(bucket) = st.map.get_mut(&h) {
            if let Some(ei) = bucket.iter().position(|e| e.key == compact) {
                bucket[ei].rules.retain(|r| r.id != id);
                if bucket[ei].rules.is_empty() {
                    bucket.swap_remove(ei);
                }
            }
            if bucket.is_empty() {
                st.map.remove(&h);
            }
        }
        let old_max = st.max_priority;
        st.remove_priority(rule.priority);
        if st.n_rules == 0 {
            let mask = st.mask;
            self.by_mask.remove(&mask);
            self.subtables.swap_remove(si);
            if si < self.subtables.len() {
                let moved = self.subtables[si].mask;
                self.by_mask.insert(moved, si);
            }
            self.reorder();
        } else if st.max_priority != old_max {
            self.reorder();
        }
        self.version += 1;
        Some(rule)
    }

    fn reorder(&mut self) {
        self.order = (0..self.subtables.len() as u32).collect();
        let st = &self.subtables;
        self.order.sort_by(|&a, &b| {
            st[b as usize]
                .max_priority
                .cmp(&st[a as usize].max_priority)
                .then(a.cmp(&b))
        });
    }

    pub fn get(&self, id: RuleId) -> Option<&Rule<T>> {
        let slot = *self.ids.get(&id)?;
        self.slots[slot as usize].as_ref()
    }

    /// Mutable access to a rule's payload (MODIFY). Bumps the version.
    pub fn get_mut(&mut self, id: RuleId) -> Option<&mut Rule<T>> {
        let slot = *self.ids.get(&id)?;
        self.version += 1;
        self.slots[slot as usize].as_mut()
    }

    /// Replaces a rule's conjunction clauses (MODIFY changing its actions).
    pub fn set_conj(&mut self, id: RuleId, conj: Box<[ConjClause]>) {
        let Some(&slot) = self.ids.get(&id) else {
            return;
        };
        let Some(r) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let was_soft = !r.conj.is_empty();
        let soft = !conj.is_empty();
        r.conj = conj;
        self.note_soft(was_soft, soft);
        self.version += 1;
    }

    /// All rules, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule<T>> {
        self.slots.iter().flatten()
    }

    fn find_strict_key(&self, key: &MaskedKey, priority: u16) -> Option<RuleId> {
        let st = &self.subtables[*self.by_mask.get(&key.mask)?];
        let e = st.find(&key.value, st.hash(&key.value))?;
        e.rules
            .iter()
            .find(|r| r.priority == priority)
            .map(|r| r.id)
    }

    /// The rule with exactly this match and priority (strict selection).
    pub fn find_strict(&self, m: &Match, priority: u16) -> Option<RuleId> {
        self.find_strict_key(&MaskedKey::from_match(m), priority)
    }

    /// Whether a rule of `priority` overlaps `key` (some packet matches
    /// both: `OFPFF_CHECK_OVERLAP`), leaving out rules `skip` accepts.
    pub fn overlaps(
        &self,
        key: &MaskedKey,
        priority: u16,
        mut skip: impl FnMut(&Rule<T>) -> bool,
    ) -> bool {
        for st in &self.subtables {
            if !st.priorities.contains_key(&priority) {
                continue;
            }
            let both = st.mask.and(&key.mask);
            for bucket in st.map.values() {
                for e in bucket {
                    let hit = e.rules.iter().any(|r| {
                        r.priority == priority
                            && self.slots[r.slot as usize]
                                .as_ref()
                                .is_some_and(|x| !skip(x))
                    });
                    if hit && st.expand(e).eq_masked(&key.value, &both) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Rules selected non-strictly by `m` (equal or more specific matches,
    /// any priority), in id order.
    pub fn find_loose(&self, m: &Match) -> Vec<RuleId> {
        if m.fields.is_empty() {
            // Every rule (a full flow dump or aggregate): no key to compare.
            let mut out: Vec<RuleId> = self.ids.keys().copied().collect();
            out.sort_unstable();
            return out;
        }
        let f = MaskedKey::from_match(m);
        let mut out = Vec::new();
        for st in &self.subtables {
            if !f.mask.is_subset_of(&st.mask) {
                continue;
            }
            for bucket in st.map.values() {
                for e in bucket {
                    if st.expand(e).eq_masked(&f.value, &f.mask) {
                        out.extend(e.rules.iter().map(|r| r.id));
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// DELETE_STRICT: removes the rule with this match and priority if
    /// `filter` accepts it.
    pub fn remove_strict(
        &mut self,
        m: &Match,
        priority: u16,
        filter: impl FnOnce(&Rule<T>) -> bool,
    ) -> Option<Rule<T>> {
        let id = self.find_strict(m, priority)?;
        if filter(self.get(id)?) {
            self.remove(id)
        } else {
            None
        }
    }

    /// DELETE (non-strict): removes every selected rule `filter` accepts.
    pub fn remove_loose(
        &mut self,
        m: &Match,
        mut filter: impl FnMut(&Rule<T>) -> bool,
    ) -> Vec<Rule<T>> {
        let ids: Vec<RuleId> = self
            .find_loose(m)
            .into_iter()
            .filter(|id| self.get(*id).is_some_and(&mut filter))
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// MODIFY_STRICT: applies `f` to the rule with this match and priority
    /// if `filter` accepts it. Returns whether a rule was modified (OpenFlow
    /// 1.3: no match means no change, not an add).
    pub fn modify_strict(
        &mut self,
        m: &Match,
        priority: u16,
        filter: impl FnOnce(&Rule<T>) -> bool,
        f: impl FnOnce(&mut Rule<T>),
    ) -> bool {
        let Some(id) = self.find_strict(m, priority) else {
            return false;
        };
        if !self.get(id).is_some_and(filter) {
            return false;
        }
        match self.get_mut(id) {
            Some(r) => {
                let was_soft = !r.conj.is_empty();
                f(r);
                let soft = !r.conj.is_empty();
                self.note_soft(was_soft, soft);
                true
            }
            None => false,
        }
    }

    /// Keeps the soft-rule count right when a MODIFY changed `conj`.
    fn note_soft(&mut self, was: bool, is: bool) {
        match (was, is) {
            (false, true) => self.n_soft += 1,
            (true, false) => self.n_soft -= 1,
            _ => {}
        }
    }

    /// MODIFY (non-strict): applies `f` to every selected rule `filter`
    /// accepts; returns how many.
    pub fn modify_loose(
        &mut self,
        m: &Match,
        mut filter: impl FnMut(&Rule<T>) -> bool,
        mut f: impl FnMut(&mut Rule<T>),
    ) -> usize {
        let mut n = 0;
        for id in self.find_loose(m) {
            if !self.get(id).is_some_and(&mut filter) {
                continue;
            }
            if let Some(r) = self.get_mut(id) {
                let was_soft = !r.conj.is_empty();
                f(r);
                let soft = !r.conj.is_empty();
                self.note_soft(was_soft, soft);
                n += 1;
            }
        }
        n
    }
}
