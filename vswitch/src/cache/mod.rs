//! Fast-path caches in front of the OpenFlow tables, OVS-style:
//! exact-match cache (EMC, per thread, full key) → megaflow cache (masked
//! key, masks learned from the classifier's wildcards) → slow path.
//!
//! **Revalidation by generation.** Every entry carries the [`Generation`]
//! value the forwarding thread had *entered its batch with* when it computed
//! the entry. Any table change bumps the generation; a lookup with a newer
//! generation treats older entries as misses (and the slow path recomputes
//! and overwrites them). The agent answers a BARRIER only after
//! [`Generation::quiesced`] says every forwarding thread has entered a batch
//! at the new generation, so no packet processed after a FLOW_MOD + BARRIER
//! reply can take an action computed from the old tables.
//!
//! The action handle `A` is whatever the slow path produces (an `Arc` of the
//! translated actions, an index…); it is cloned on hits. Lookups don't
//! allocate; inserts may (slow path only).

use crate::flow::{FlowKey, PreHashedBuild};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(test)]
mod tests;

/// The table generation shared by the control thread and the forwarding
/// threads, with per-reader slots for barrier quiescence.
#[derive(Debug)]
pub struct Generation {
    current: AtomicU64,
    readers: Box<[AtomicU64]>,
}

/// A reader slot value meaning "not in a batch".
const IDLE: u64 = u64::MAX;

impl Generation {
    /// A clock at generation 1 with `n_readers` forwarding-thread slots.
    pub fn new(n_readers: usize) -> Self {
        Self {
            current: AtomicU64::new(1),
            readers: (0..n_readers).map(|_| AtomicU64::new(IDLE)).collect(),
        }
    }

    /// The current generation.
    #[inline]
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    /// Called by the control thread *after* changing the tables; returns the
    /// new generation.
    pub fn bump(&self) -> u64 {
        self.current.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Called by forwarding thread `reader` at the start of each batch;
    /// returns the generation to use for every lookup and insert of the batch.
    #[inline]
    pub fn enter(&self, reader: usize) -> u64 {
        let slot = &self.readers[reader];
        let mut g = self.current();
        loop {
            slot.store(g, Ordering::SeqCst);
            // Re-check: a bump between the load and the store would otherwise
            // be missed by a concurrent `quiesced` that saw the slot idle.
            let now = self.current();
            if now == g {
                return g;
            }
            g = now;
        }
    }

    /// Called by forwarding thread `reader` when it goes idle (no batch).
    pub fn leave(&self, reader: usize) {
        self.readers[reader].store(IDLE, Ordering::SeqCst);
    }

    /// Whether every reader is idle or in a batch at generation `>= epoch`:
    /// from then on no packet can use an entry older than `epoch`.
    pub fn quiesced(&self, epoch: u64) -> bool {
        self.readers
            .iter()
            .all(|r| r.load(Ordering::SeqCst) >= epoch)
    }
}

/// Keys with at most this many non-zero words fit in the EMC.
const EMC_WORDS: usize = 12;

/// A key in compact form: bitmap of non-zero words, then those words.
type CompactKey = (u64, [u64; EMC_WORDS]);

fn compact(key: &FlowKey) -> Option<CompactKey> {
    let mut map = 0u64;
    let mut out = [0u64; EMC_WORDS];
    let mut n = 0;
    for (i, &w) in key.w.iter().enumerate() {
        if w != 0 {
            *out.get_mut(n)? = w;
            n += 1;
            map |= 1 << i;
        }
    }
    Some((map, out))
}

#[derive(Debug, Clone)]
struct EmcEntry<A> {
    hash: u64,
    epoch: u64,
    /// The full key, compressed (two cache lines instead of six).
    key: CompactKey,
    action: A,
    /// Hit since the last [`ExactMatchCache::sweep`].
    used: bool,
}

/// Exact-match cache: a small 2-way hashed table of full keys (per thread).
/// Keys are stored compressed (non-zero words only); a key with more than
/// 12 non-zero words is not cached here (the megaflow cache still serves it).
#[derive(Debug)]
pub struct ExactMatchCache<A> {
    slots: Box<[Option<EmcEntry<A>>]>,
    mask: usize,
    victim: bool,
}

impl<A: Clone> ExactMatchCache<A> {
    /// A cache of `capacity` entries, rounded up to a power of two (min 2).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(2).next_power_of_two();
        Self {
            slots: (0..n).map(|_| None).collect(),
            mask: n - 1,
            victim: false,
        }
    }

    #[inline]
    fn idx(&self, hash: u64) -> (usize, usize) {
        (hash as usize & self.mask, (hash >> 32) as usize & self.mask)
    }

    /// The action cached for `key` (with `hash = key.hash()`) at `epoch`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64, epoch: u64) -> Option<&A> {
        let (a, b) = self.idx(hash);
        let mut ck = None;
        for i in [a, b] {
            if let Some(e) = &self.slots[i]
                && e.hash == hash
                && e.epoch == epoch
            {
                if ck.is_none() {
                    ck = Some(compact(key)?);
                }
                if ck.as_ref() == Some(&e.key) {
                    let e = self.slots[i].as_mut()?;
                    // Written only on the first hit after a sweep: a hot entry's
                    // cache line is not dirtied per packet.
                    if !e.used {
                        e.used = true;
                    }
                    return Some(&e.action);
                }
            }
        }
        None
    }

    /// Empties the slots not valid at `epoch` and those not hit since the
    /// previous sweep (they hold their action, e.g. an `Arc` of compiled
    /// actions, until overwritten). Returns how many.
    pub fn sweep(&mut self, epoch: u64) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if let Some(e) = s {
                if e.epoch != epoch || !e.used {
                    *s = None;
                    n += 1;
                } else {
                    e.used = false;
                }
            }
        }
        n
    }

    /// Caches `action` for `key`: into an empty, stale or same-key slot of
    /// its two candidates, else evicting one of them (alternately).
    pub fn insert(&mut self, key: &FlowKey, hash: u64, epoch: u64, action: A) {
        let Some(ck) = compact(key) else {
            return;
        };
        let (a, b) = self.idx(hash);
        let free = |s: &Option<EmcEntry<A>>| match s {
            None => true,
            Some(e) => e.epoch != epoch || (e.hash == hash && e.key == ck),
        };
        let i = if free(&self.slots[a]) {
            a
        } else if free(&self.slots[b]) {
            b
        } else {
            self.victim = !self.victim;
            if self.victim { a } else { b }
        };
        self.slots[i] = Some(EmcEntry {
            hash,
            epoch,
            key: ck,
            action,
            used: true,
        });
    }

    /// Drops every entry.
    pub fn flush(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }

    /// Number of occupied slots, stale ones included.
    pub fn occupied(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Number of entries valid at `epoch`.
    pub fn len_at(&self, epoch: u64) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.epoch == epoch)
            .count()
    }
}

/// One megaflow.
#[derive(Debug, Clone)]
pub struct Megaflow<A> {
    /// Masked key.
    pub key: FlowKey,
    pub epoch: u64,
    pub action: A,
    /// Packets that hit this megaflow (for stats push and `dump-cache`).
    pub hits: u64,
    /// When it was installed (slow path only; `dump-cache` age).
    pub created: std::time::Instant,
    /// `hits` at the last [`MegaflowCache::sweep`] (idle detection).
    pub swept_hits: u64,
}

#[derive(Debug)]
struct McSubtable<A> {
    mask: FlowKey,
    words: Box<[u8]>,
    map: HashMap<u64, Vec<Megaflow<A>>, PreHashedBuild>,
    hits: u64,
    len: usize,
}

/// Megaflow cache: masked key → action, one hash table per distinct mask
/// (a classifier without priorities: megaflows computed at the same
/// generation never disagree where they overlap).
#[derive(Debug)]
pub struct MegaflowCache<A> {
    subtables: Vec<McSubtable<A>>,
    by_mask: HashMap<FlowKey, usize>,
    len: usize,
    capacity: usize,
}

impl<A: Clone> MegaflowCache<A> {
    /// A cache holding at most `capacity` megaflows.
    pub fn new(capacity: usize) -> Self {
        Self {
            subtables: Vec::new(),
            by_mask: HashMap::new(),
            len: 0,
            capacity,
        }
    }

    /// Number of megaflows (including stale ones not yet purged).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct masks.
    pub fn n_masks(&self) -> usize {
        self.subtables.len()
    }

    /// The megaflow valid at `epoch` that matches `key`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, epoch: u64) -> Option<&A> {
        let (si, h, ei) = self.find(key, epoch)?;
        let st = &mut self.subtables[si];
        st.hits += 1;
        let e = &mut st.map.get_mut(&h)?[ei];
        e.hits += 1;
        Some(&e.action)
    }

    #[inline]
    fn find(&self, key: &FlowKey, epoch: u64) -> Option<(usize, u64, usize)> {
        for (si, st) in self.subtables.iter().enumerate() {
            let h = key.hash_masked(&st.mask, &st.words);
            let Some(bucket) = st.map.get(&h) else {
                continue;
            };
            for (ei, e) in bucket.iter().enumerate() {
                // A stale entry is a miss, but another mask may still hold a
                // current megaflow for this key: keep looking.
                if e.epoch == epoch
                    && st.words.iter().all(|&i| {
                        let i = i as usize;
                        (key.w[i] ^ e.key.w[i]) & st.mask.w[i] == 0
                    })
                {
                    return Some((si, h, ei));
                }
            }
        }
        None
    }

    /// Installs the megaflow `(key & mask) → action` computed at `epoch`
    /// (the generation the caller's batch entered with, not the current one).
    /// Replaces a megaflow with the same masked key. When full, stale entries
    /// are purged first; if still full the megaflow is not cached (returns
    /// false).
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowKey, epoch: u64, action: A) -> bool {
        let value = key.and(mask);
        if self.len >= self.capacity {
            self.purge_stale(epoch);
        }
        let si = match self.by_mask.get(mask) {
            Some(&si) => si,
            None => {
                if self.len >= self.capacity {
                    return false;
                }
                self.subtables.push(McSubtable {
                    mask: *mask,
                    words: mask.nonzero_words().into_boxed_slice(),
                    map: HashMap::default(),
                    hits: 0,
                    len: 0,
                });
                self.by_mask.insert(*mask, self.subtables.len() - 1);
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let h = value.hash_masked(mask, &st.words);
        let bucket = st.map.entry(h).or_default();
        if let Some(e) = bucket.iter_mut().find(|e| e.key == value) {
            e.epoch = epoch;
            e.action = action;
            e.created = std::time::Instant::now();
            e.swept_hits = e.hits;
            return true;
        }
        if self.len >= self.capacity {
            return false;
        }
        bucket.push(Megaflow {
            key: value,
            epoch,
            action,
            hits: 0,
            created: std::time::Instant::now(),
            swept_hits: 0,
        });
        st.len += 1;
        self.len += 1;
        true
    }

    /// Revalidator housekeeping, run every `period` (OVS removes stale
    /// megaflows after a table change and idle ones after `max-idle`, 10 s):
    /// removes the megaflows not valid at `epoch` (never used again: a lookup
    /// treats them as misses) and those without a hit since the previous
    /// sweep that were installed at least `period` before `now`. Without it
    /// the cache only purged when full (65,536 entries per cache), so every
    /// table change and every new connection left an entry behind, each
    /// holding its compiled actions: the RSS of a switch under churn grew
    /// steadily. Frees table space once most of it is empty. Returns the
    /// number removed.
    pub fn sweep(
        &mut self,
        epoch: u64,
        now: std::time::Instant,
        period: std::time::Duration,
    ) -> usize {
        let before = self.len;
        self.retain(|_, e| {
            let idle = e.hits == e.swept_hits && now.saturating_duration_since(e.created) >= period;
            e.swept_hits = e.hits;
            e.epoch == epoch && !idle
        });
        for st in &mut self.subtables {
            if st.map.capacity() > 4 * st.map.len() + 64 {
                st.map.shrink_to_fit();
            }
        }
        if self.by_mask.capacity() > 4 * self.by_mask.len() + 64 {
            self.by_mask.shrink_to_fit();
        }
        before - self.len
    }

    /// Removes entries not valid at `epoch` and empty masks.
    pub fn purge_stale(&mut self, epoch: u64) {
        self.retain(|_, e| e.epoch == epoch);
    }

    /// Keeps only the megaflows for which `f(mask, entry)` holds.
    pub fn retain(&mut self, mut f: impl FnMut(&FlowKey, &mut Megaflow<A>) -> bool) {
        let mut removed = 0;
        for st in &mut self.subtables {
            let mask = st.mask;
            st.map.retain(|_, bucket| {
                let before = bucket.len();
                bucket.retain_mut(|e| f(&mask, e));
                removed += before - bucket.len();
                st.len -= before - bucket.len();
                !bucket.is_empty()
            });
        }
        self.len -= removed;
        self.subtables.retain(|st| st.len > 0);
        self.reindex();
    }

    /// OVS-style revalidation: recomputes each megaflow with the new tables.
    /// `f(masked_key, mask)` returns the new action and the wildcards the new
    /// lookup needed; the entry is re-stamped with `epoch` when those fit in
    /// its mask, and removed otherwise. Returns (kept, removed).
    pub fn revalidate(
        &mut self,
        epoch: u64,
        mut f: impl FnMut(&FlowKey, &FlowKey) -> Option<(A, FlowKey)>,
    ) -> (usize, usize) {
        let (mut kept, mut removed) = (0, 0);
        self.retain(|mask, e| match f(&e.key, mask) {
            Some((action, wc)) if wc.is_subset_of(mask) => {
                e.action = action;
                e.epoch = epoch;
                kept += 1;
                true
            }
            _ => {
                removed += 1;
                false
            }
        });
        (kept, removed)
    }

    /// Orders masks by hit count (most used first), as OVS's dpcls does
    /// periodically, and resets the counts.
    pub fn sort_by_hits(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.hits));
        for st in &mut self.subtables {
            st.hits = 0;
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_mask.clear();
        for (i, st) in self.subtables.iter().enumerate() {
            self.by_mask.insert(st.mask, i);
        }
    }

    /// Drops everything.
    pub fn flush(&mut self) {
        self.subtables.clear();
        self.by_mask.clear();
        self.len = 0;
    }

    /// Every megaflow with its mask (`dump-cache`).
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Megaflow<A>)> {
        self.subtables
            .iter()
            .flat_map(|st| st.map.values().flatten().map(move |e| (&st.mask, e)))
    }
}

/// EMC + megaflow cache of one forwarding thread.
#[derive(Debug)]
pub struct FlowCache<A> {
    pub emc: ExactMatchCache<A>,
    pub megaflows: MegaflowCache<A>,
    pub stats: CacheStats,
    promote_tick: u32,
}

/// A megaflow hit is copied into the EMC once every this many hits.
pub const EMC_INSERT_INV: u32 = 16;

/// Hit/miss counters of a [`FlowCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    pub misses: u64,
}

impl<A: Clone> FlowCache<A> {
    pub fn new(emc_entries: usize, megaflows: usize) -> Self {
        Self {
            emc: ExactMatchCache::new(emc_entries),
            megaflows: MegaflowCache::new(megaflows),
            stats: CacheStats::default(),
            promote_tick: 0,
        }
    }

    /// EMC, then megaflows (promoting every [`EMC_INSERT_INV`]-th hit into
    /// the EMC). `None`: take the
    /// slow path, then [`insert`](Self::insert).
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, epoch: u64) -> Option<A> {
        let hash = key.hash();
        if let Some(a) = self.emc.lookup(key, hash, epoch) {
            self.stats.emc_hits += 1;
            return Some(a.clone());
        }
        if let Some(a) = self.megaflows.lookup(key, epoch) {
            let a = a.clone();
            self.stats.megaflow_hits += 1;
            // Promote only every EMC_INSERT_INV-th megaflow hit (OVS: 1/100
            // at random): with more live flows than EMC slots, promoting on
            // every hit makes each packet evict another flow's entry.
            self.promote_tick = self.promote_tick.wrapping_add(1);
            if self.promote_tick.is_multiple_of(EMC_INSERT_INV) {
                self.emc.insert(key, hash, epoch, a.clone());
            }
            return Some(a);
        }
        self.stats.misses += 1;
        None
    }

    /// Sweeps the EMC and the megaflows (see [`ExactMatchCache::sweep`] and
    /// [`MegaflowCache::sweep`]); returns how many megaflows went.
    pub fn sweep(
        &mut self,
        epoch: u64,
        now: std::time::Instant,
        period: std::time::Duration,
    ) -> usize {
        self.emc.sweep(epoch);
        self.megaflows.sweep(epoch, now, period)
    }

    /// Installs the slow path's result for `key` with wildcards `wc`.
    pub fn insert(&mut self, key: &FlowKey, wc: &FlowKey, epoch: u64, action: A) {
        self.megaflows.insert(key, wc, epoch, action.clone());
        self.emc.insert(key, key.hash(), epoch, action);
    }
}
