//! A bounded CLOCK cache of decoded metadata pages for format 3 (issue 13,
//! `docs/pool-scale-design.md`, "Bounded cache"); the pool's is in `pagestore`.
//!
//! Entries are keyed by page id and carry a size in bytes; the cache holds at
//! most `max_pages` entries and `max_bytes` bytes *of clean entries*. Dirty
//! entries (changed since the last commit) and entries in a commit that has
//! not ended are pinned: never evicted, since the cache holds their only
//! copy until the commit has written them. When only pinned entries are
//! left the cache may exceed its capacity; [`PageCache::dirty_bytes`] tells
//! the pool when to commit.
//!
//! Commit protocol: [`PageCache::take_dirty`] (step 1) hands out the dirty
//! entries and an epoch, keeping them pinned; [`PageCache::end_commit`]
//! (after step 3) unpins them unless they were dirtied again meanwhile;
//! [`PageCache::abort_commit`] makes them dirty again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Hashes a page id (a u64 handed out in sequence, never chosen by an
/// outsider) with one multiply: the index is on every metadata lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by page id with [`IdHasher`].
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hit, miss and eviction counts and current occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get` calls that found the page.
    pub hits: u64,
    /// `get` calls that did not.
    pub misses: u64,
    /// Entries evicted to stay within capacity.
    pub evictions: u64,
    /// Entries held.
    pub pages: usize,
    /// Bytes held.
    pub bytes: usize,
    /// Entries pinned (dirty or in a commit).
    pub pinned_pages: usize,
    /// Bytes pinned.
    pub pinned_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    bytes: usize,
    /// Changed since the last `take_dirty`.
    dirty: bool,
    /// Handed to the commit of this epoch, which has not ended.
    committing: Option<u64>,
}

impl Entry {
    fn pinned(&self) -> bool {
        self.dirty || self.committing.is_some()
    }
}

/// The cache: a CLOCK ring of slots and an index by page id. The index
/// holds the values, so that a hit reads the index and the value (the
/// slot's reference bit is set beside, off the lookup's path).
#[derive(Debug)]
pub struct PageCache<V: ?Sized> {
    slots: Vec<Option<Entry>>,
    /// The CLOCK reference bit of each slot (beside the slots: a hit only
    /// stores into it).
    referenced: Vec<bool>,
    free_slots: Vec<usize>,
    index: IdMap<(usize, Arc<V>)>,
    hand: usize,
    max_bytes: usize,
    max_pages: usize,
    bytes: usize,
    pinned_bytes: usize,
    pinned_pages: usize,
    epoch: u64,
    stats: CacheStats,
}

impl<V: ?Sized> PageCache<V> {
    /// A cache of at most `max_pages` entries and `max_bytes` bytes (both ≥ 1).
    pub fn new(max_pages: usize, max_bytes: usize) -> PageCache<V> {
        PageCache {
            slots: Vec::new(),
            referenced: Vec::new(),
            free_slots: Vec::new(),
            index: IdMap::default(),
            hand: 0,
            max_bytes: max_bytes.max(1),
            max_pages: max_pages.max(1),
            bytes: 0,
            pinned_bytes: 0,
            pinned_pages: 0,
            epoch: 0,
            stats: CacheStats::default(),
        }
    }

    /// The page `id`, marking it recently used.
    pub fn get(&mut self, id: u64) -> Option<Arc<V>> {
        match self.index.get(&id) {
            Some((s, v)) => {
                if let Some(r) = self.referenced.get_mut(*s) {
                    *r = true;
                }
                self.stats.hits += 1;
                Some(Arc::clone(v))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// `f` of entry `id` if it is cached, without handing out a reference
    /// to it (a hit as for [`PageCache::get`]).
    pub fn peek_with<R>(&mut self, id: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let (s, v) = self.index.get(&id)?;
        let out = f(v);
        // a store alone (no load of the slot on the lookup's path)
        if let Some(r) = self.referenced.get_mut(*s) {
            *r = true;
        }
        self.stats.hits += 1;
        Some(out)
    }

    /// Whether `id` is held (no statistics, no reference bit).
    pub fn contains(&self, id: u64) -> bool {
        self.index.contains_key(&id)
    }

    /// Caches a page read from the store. Keeps a dirty or committing
    /// entry's state if `id` is already held (the store copy is older then:
    /// the cached value wins).
    pub fn insert_clean(&mut self, id: u64, value: Arc<V>, bytes: usize) {
        if self.index.contains_key(&id) {
            return;
        }
        self.put(id, value, bytes, false);
    }

    /// Caches a changed page; it stays pinned until the commit that writes it ends.
    pub fn insert_dirty(&mut self, id: u64, value: Arc<V>, bytes: usize) {
        self.put(id, value, bytes, true);
    }

    fn put(&mut self, id: u64, value: Arc<V>, bytes: usize, dirty: bool) {
        let committing = self.remove_entry(id).and_then(|(e, _)| e.committing);
        let e = Entry {
            id,
            bytes,
            dirty,
            committing,
        };
        self.account(&e, true);
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s] = Some(e);
                self.referenced[s] = false;
                s
            }
            None => {
                self.slots.push(Some(e));
                self.referenced.push(false);
                self.slots.len() - 1
            }
        };
        self.index.insert(id, (slot, value));
        self.evict();
    }

    /// Drops page `id` (the page was deleted); a pinned entry too.
    pub fn remove(&mut self, id: u64) -> Option<Arc<V>> {
        self.remove_entry(id).map(|(_, v)| v)
    }

    fn remove_entry(&mut self, id: u64) -> Option<(Entry, Arc<V>)> {
        let (s, v) = self.index.remove(&id)?;
        let e = self.slots.get_mut(s)?.take()?;
        self.free_slots.push(s);
        self.account(&e, false);
        Some((e, v))
    }

    fn account(&mut self, e: &Entry, add: bool) {
        let pinned = e.pinned();
        if add {
            self.bytes += e.bytes;
            if pinned {
                self.pinned_bytes += e.bytes;
                self.pinned_pages += 1;
            }
        } else {
            self.bytes -= e.bytes;
            if pinned {
                self.pinned_bytes -= e.bytes;
                self.pinned_pages -= 1;
            }
        }
    }

    fn over(&self) -> bool {
        self.bytes > self.max_bytes || self.index.len() > self.max_pages
    }

    /// Sweeps the clock hand until within capacity or only pinned entries remain.
    fn evict(&mut self) {
        // two full turns clear every reference bit; more finds nothing new
        if self.slots.is_empty() {
            return;
        }
        let mut budget = 2 * self.slots.len();
        while self.over() && self.pinned_pages < self.index.len() && budget > 0 {
            budget -= 1;
            self.hand = (self.hand + 1) % self.slots.len();
            let Some(e) = self.slots[self.hand].as_mut() else {
                continue;
            };
            if e.pinned() {
                continue;
            }
            if let Some(r) = self.referenced.get_mut(self.hand).filter(|r| **r) {
                *r = false;
                continue;
            }
            let id = e.id;
            self.remove_entry(id);
            self.stats.evictions += 1;
        }
    }

    /// The byte capacity.
    pub fn capacity_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes of dirty or committing entries.
    pub fn dirty_bytes(&self) -> usize {
        self.pinned_bytes
    }

    /// Step 1 of a commit: the dirty entries (sorted by id) and the commit's
    /// epoch. They stay pinned until [`PageCache::end_commit`] or
    /// [`PageCache::abort_commit`] with that epoch. Commits are serialised:
    /// end or abort one before taking the next.
    pub fn take_dirty(&mut self) -> (u64, Vec<(u64, Arc<V>)>) {
        let epoch = self.epoch;
        self.epoch += 1;
        let mut out = Vec::new();
        for e in self.slots.iter_mut().flatten() {
            if e.dirty {
                e.dirty = false;
                e.committing = Some(epoch);
                if let Some((_, v)) = self.index.get(&e.id) {
                    out.push((e.id, Arc::clone(v)));
                }
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        (epoch, out)
    }

    /// The commit of `epoch` is durable: its entries become evictable unless
    /// dirtied again since.
    pub fn end_commit(&mut self, epoch: u64) {
        self.finish(epoch, false);
    }

    /// The commit of `epoch` failed: its entries are dirty again.
    pub fn abort_commit(&mut self, epoch: u64) {
        self.finish(epoch, true);
    }

    fn finish(&mut self, epoch: u64, redirty: bool) {
        let mut unpinned = (0, 0);
        for e in self.slots.iter_mut().flatten() {
            if e.committing.is_some_and(|c| c <= epoch) {
                e.committing = None;
                e.dirty |= redirty;
                if !e.pinned() {
                    unpinned.0 += 1;
                    unpinned.1 += e.bytes;
                }
            }
        }
        self.pinned_pages -= unpinned.0;
        self.pinned_bytes -= unpinned.1;
        self.evict();
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            pages: self.index.len(),
            bytes: self.bytes,
            pinned_pages: self.pinned_pages,
            pinned_bytes: self.pinned_bytes,
            ..self.stats
        }
    }
}

#[cfg(test)]
#[path = "pagecache_tests.rs"]
mod tests;
