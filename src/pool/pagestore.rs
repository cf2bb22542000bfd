//! The format-3 [`PageStore`] of a pool: pages in the metadata store (`P`
//! keys) behind a bounded [`PageCache`], page reference counts (`Q` keys),
//! page ids from `next_page`, and the changes of one commit.
//!
//! Nothing is written when the tree changes: changed pages stay pinned in
//! the cache, deleted ids and changed counts are remembered, and
//! [`SledPages::take_changes`] turns them into key changes for the pool's
//! commit (step 1); [`SledPages::end_commit`] or [`SledPages::abort_commit`]
//! ends it. A cache miss reads the store: a page that is not pinned is the
//! same there (pinned pages are never evicted).
//!
//! Page reference counts are read on demand and remembered; the remembered
//! counts are trimmed to those still changing when they pass their share
//! of the cache, so their memory stays bounded, not proportional to the pool.
//!
//! # Two tiers
//!
//! Pages are cached twice over, within one budget (`metadata_cache`, split
//! by [`CacheSplit`]): *decoded* pages (4 KiB+ each: what the tree changes,
//! and every pinned page) and *encoded* pages (the bytes of the `P` value:
//! ~0.6 KiB for a leaf of chunks allocated in order, at most ~2.6 KiB for
//! random ones; plus an 80-byte index). A data-path lookup
//! ([`SledPages::slot`]) reads one slot of an encoded page in place
//! ([`indexed_slot`]: at most 64 varints) without decoding it, so a
//! tree several times the decoded tier still reads without a store `get`
//! while its encoded form fits. Every page read from the store enters the
//! encoded tier; interior pages (few, on every path) and pages the tree
//! works on enter the decoded tier too. The encoded tier holds clean bytes
//! only: a page that changes leaves it, and re-enters it with the bytes its
//! commit writes. In front of both, `TreeMeta` keeps a memo of recent
//! lookups (`memo`), whose share of the budget [`CacheSplit`] also sets.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::format::{self, TAG_PAGE, TAG_PAGE_REFS};
use super::page::{indexed, indexed_slot, indexed_stored, Page, PageId, INDEX_LEN};
use super::pagecache::{CacheStats, IdMap, PageCache};
use super::store::{Change, MetaStore};
use super::tree::{PageStore, TreeError};

/// Default `metadata_cache`: 64 MiB for the page tiers and sled's cache.
pub const DEFAULT_METADATA_CACHE: u64 = 64 << 20;

/// Smallest `metadata_cache` the config and the CLI accept.
pub const MIN_METADATA_CACHE: u64 = 1 << 20;

/// Memory a decoded page takes in the cache (slots, bitmap, header).
pub const PAGE_MEMORY: usize = std::mem::size_of::<Page>();

/// Memory an encoded page takes beyond its bytes: the cache slot (40 B)
/// and its reference bit, the index entry with the value's pointer (32 B,
/// ~46 B with the table's slack), the `Arc` header (16 B).
pub const ENCODED_OVERHEAD: usize = 104;

/// Memory a remembered page reference count takes (hash map entry and slack).
const REFS_ENTRY: usize = 32;

/// How `metadata_cache` is shared out (bytes): 1/16 decoded pages (what the
/// tree works on and the pages waiting for a commit; at least 16), 3/4
/// encoded pages (what lookups read: ~6 times as many pages per byte), 1/16
/// the mapping memo (`memo`: recent lookups, one cache line each), 1/32
/// remembered page counts, 1/16 sled's own cache (`cache_capacity`, at
/// least 128 KiB; sled's memory was measured at up to 2× its setting,
/// `docs/pool-scale-design.md` §5), the rest (1/32) slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSplit {
    /// Decoded pages.
    pub decoded: usize,
    /// Encoded pages.
    pub encoded: usize,
    /// The mapping memo.
    pub memo: usize,
    /// Remembered page reference counts.
    pub refs: usize,
    /// sled's `cache_capacity`.
    pub sled: u64,
}

impl CacheSplit {
    /// The split of `cache_bytes`. The decoded tier holds at least 16 pages
    /// (a path of ≤ 8 and room to move), so a tiny cache is exceeded.
    pub fn of(cache_bytes: u64) -> CacheSplit {
        let m = usize::try_from(cache_bytes).unwrap_or(usize::MAX);
        CacheSplit {
            decoded: (m / 16).max(16 * PAGE_MEMORY),
            encoded: (m / 4 * 3).max(16 * (PAGE_MEMORY + ENCODED_OVERHEAD)),
            memo: m / 16,
            refs: (m / 32).max(1024 * REFS_ENTRY),
            sled: (cache_bytes / 16).max(128 << 10),
        }
    }
}

/// Pages of a format-3 pool (see the module docs).
pub struct SledPages {
    source: Arc<dyn MetaStore>,
    cache: PageCache<Page>,
    /// Clean pages as their stored bytes (module docs, "Two tiers").
    encoded: PageCache<[u8]>,
    /// Known reference counts (from `Q`, 1 when absent, or set since).
    refs: IdMap<u32>,
    /// Counts changed since the last take.
    dirty_refs: BTreeSet<PageId>,
    /// Counts taken by commits that have not ended (the store may not hold
    /// them yet: never forgotten before).
    committing_refs: BTreeSet<PageId>,
    /// Pages deleted since the last take.
    freed: BTreeSet<PageId>,
    next_id: PageId,
    next_dirty: bool,
    /// Pages whose count fell in changes not yet durable: the durable tree
    /// may still share them (the in-place write rule, `datapath`).
    unshared: HashSet<PageId>,
    /// The same for the commit running now.
    unshared_committing: HashSet<PageId>,
    /// Epoch of the commit running now.
    epoch: Option<u64>,
    max_refs: usize,
}

impl std::fmt::Debug for SledPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledPages")
            .field("next_id", &self.next_id)
            .field("cache", &self.cache.stats())
            .finish_non_exhaustive()
    }
}

fn store_err(e: super::PoolError) -> TreeError {
    TreeError::Store(e.to_string())
}

impl SledPages {
    /// Pages read from `source`, cached within `cache_bytes` (shared out as
    /// [`CacheSplit::of`] says, sled's part excepted: the store is opened
    /// with it); the next page id handed out is `next_id` (≥ 1).
    pub fn new(source: Arc<dyn MetaStore>, cache_bytes: u64, next_id: PageId) -> SledPages {
        let split = CacheSplit::of(cache_bytes);
        let pages = split.decoded / PAGE_MEMORY;
        let encoded_pages =
            split.encoded / (INDEX_LEN + crate::pool::page::HEADER_LEN + ENCODED_OVERHEAD);
        SledPages {
            source,
            cache: PageCache::new(pages, split.decoded),
            encoded: PageCache::new(encoded_pages, split.encoded),
            refs: IdMap::default(),
            dirty_refs: BTreeSet::new(),
            committing_refs: BTreeSet::new(),
            freed: BTreeSet::new(),
            next_id: next_id.max(1),
            next_dirty: false,
            unshared: HashSet::new(),
            unshared_committing: HashSet::new(),
            epoch: None,
            max_refs: split.refs / REFS_ENTRY,
        }
    }

    /// The next page id to hand out.
    pub fn next_id(&self) -> PageId {
        self.next_id
    }

    /// Cache counters (decoded tier).
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Cache counters of the encoded tier.
    pub fn encoded_stats(&self) -> CacheStats {
        self.encoded.stats()
    }

    /// Memory of both tiers and the remembered counts (sled's own cache,
    /// sized when the store was opened, not included).
    pub fn memory_bytes(&self) -> usize {
        self.cache.stats().bytes + self.encoded.stats().bytes + self.refs.len() * REFS_ENTRY
    }

    /// Page reference counts remembered now.
    pub fn remembered_refs(&self) -> usize {
        self.refs.len()
    }

    /// The cache's capacity in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.cache.capacity_bytes()
    }

    /// Bytes of pages waiting for a commit.
    pub fn dirty_bytes(&self) -> usize {
        self.cache.dirty_bytes()
    }

    /// Whether any page change waits for a commit.
    pub fn has_changes(&self) -> bool {
        self.next_dirty
            || !self.freed.is_empty()
            || !self.dirty_refs.is_empty()
            || self.cache.stats().pinned_pages > 0 && self.epoch.is_none()
    }

    /// Whether page `id`'s count fell in changes not yet durable.
    pub fn unshare_pending(&self, id: PageId) -> bool {
        (!self.unshared.is_empty() && self.unshared.contains(&id))
            || (!self.unshared_committing.is_empty() && self.unshared_committing.contains(&id))
    }

    /// Step 1 of a commit: every page change as key changes.
    pub fn take_changes(&mut self, out: &mut Vec<Change>) {
        let (epoch, dirty) = self.cache.take_dirty();
        self.epoch = Some(epoch);
        for (id, page) in dirty {
            let bytes = page.encode();
            // the page's content now; if it changes before the commit ends,
            // `put` drops it from the encoded tier again
            let x = indexed(&page, &bytes);
            let size = x.len() + ENCODED_OVERHEAD;
            self.encoded.remove(id);
            self.encoded.insert_clean(id, Arc::from(x), size);
            out.push((format::id_key(TAG_PAGE, id), Some(bytes)));
        }
        for id in std::mem::take(&mut self.dirty_refs) {
            self.committing_refs.insert(id);
            if self.freed.contains(&id) {
                continue;
            }
            let n = self.refs.get(&id).copied().unwrap_or(1);
            let v = (n >= 2).then(|| n.to_be_bytes().to_vec());
            out.push((format::id_key(TAG_PAGE_REFS, id), v));
        }
        for id in std::mem::take(&mut self.freed) {
            out.push((format::id_key(TAG_PAGE, id), None));
            out.push((format::id_key(TAG_PAGE_REFS, id), None));
        }
        if std::mem::take(&mut self.next_dirty) {
            out.push((
                format::KEY_NEXT_PAGE.to_vec(),
                Some(self.next_id.to_be_bytes().to_vec()),
            ));
        }
        let unshared = std::mem::take(&mut self.unshared);
        self.unshared_committing.extend(unshared);
    }

    /// The commit that took the changes is durable.
    pub fn end_commit(&mut self) {
        if let Some(e) = self.epoch.take() {
            self.cache.end_commit(e);
        }
        self.unshared_committing.clear();
        self.committing_refs.clear();
        self.trim_refs();
    }

    /// Forgets the remembered counts the store holds (those not changed
    /// since, nor in a commit) once they pass their share of the cache.
    fn trim_refs(&mut self) {
        if self.refs.len() > self.max_refs {
            let (dirty, committing) = (&self.dirty_refs, &self.committing_refs);
            self.refs
                .retain(|id, _| dirty.contains(id) || committing.contains(id));
        }
    }

    /// The commit failed: its pages stay pinned (the caller keeps its key
    /// changes for the next commit).
    pub fn abort_commit(&mut self) {
        if let Some(e) = self.epoch.take() {
            self.cache.abort_commit(e);
        }
        let committing = std::mem::take(&mut self.unshared_committing);
        self.unshared.extend(committing);
    }
}

impl SledPages {
    /// Slot `i` of page `id`, which must sit at `level` (read from the
    /// store on a cache miss): the step of a data-path lookup, without
    /// taking a reference to the page.
    pub fn slot(&mut self, id: PageId, level: u8, i: usize) -> Result<Option<u64>, TreeError> {
        if let Some(v) = self.slot_cached(id, level, i) {
            return v;
        }
        let page = self.read(id)?;
        super::tree::expect_level(id, &page, level)?;
        if level > 0 {
            self.cache
                .insert_clean(id, Arc::new(page.clone()), PAGE_MEMORY);
        }
        Ok(page.get(i))
    }

    /// [`SledPages::slot`] from either tier, `None` when page `id` is in
    /// neither (no store read).
    pub fn slot_cached(
        &mut self,
        id: PageId,
        level: u8,
        i: usize,
    ) -> Option<Result<Option<u64>, TreeError>> {
        let at = |p: &Page| -> Result<Option<u64>, TreeError> {
            super::tree::expect_level(id, p, level)?;
            Ok(p.get(i))
        };
        if let Some(v) = self.cache.peek_with(id, at) {
            return Some(v);
        }
        self.encoded.peek_with(id, |b| {
            // the level is byte 2 (checked when the bytes entered the tier)
            match indexed_stored(b).get(2) {
                Some(&l) if l == level => indexed_slot(b, i).map_err(TreeError::from),
                found => Err(TreeError::WrongLevel {
                    id,
                    expected: level,
                    found: found.copied().unwrap_or(u8::MAX),
                }),
            }
        })
    }

    /// Page `id` from the store (decoded and checked); its bytes enter the
    /// encoded tier.
    fn read(&mut self, id: PageId) -> Result<Page, TreeError> {
        if id == 0 || self.freed.contains(&id) {
            return Err(TreeError::MissingPage(id));
        }
        let bytes = self
            .source
            .get(&format::id_key(TAG_PAGE, id))
            .map_err(store_err)?
            .ok_or(TreeError::MissingPage(id))?;
        let page = Page::decode(&bytes)?;
        let x = indexed(&page, &bytes);
        let size = x.len() + ENCODED_OVERHEAD;
        self.encoded.insert_clean(id, Arc::from(x), size);
        Ok(page)
    }
}

impl PageStore for SledPages {
    fn get(&mut self, id: PageId) -> Result<Arc<Page>, TreeError> {
        if let Some(p) = self.cache.get(id) {
            return Ok(p);
        }
        let page = match self
            .encoded
            .peek_with(id, |b| Page::decode(indexed_stored(b)))
        {
            Some(p) => p?,
            None => self.read(id)?,
        };
        let page = Arc::new(page);
        self.cache.insert_clean(id, Arc::clone(&page), PAGE_MEMORY);
        Ok(page)
    }

    fn put(&mut self, id: PageId, page: Page) -> Result<(), TreeError> {
        self.encoded.remove(id);
        self.cache.insert_dirty(id, Arc::new(page), PAGE_MEMORY);
        Ok(())
    }

    fn allocate(&mut self) -> Result<PageId, TreeError> {
        let id = self.next_id;
        self.next_id = id
            .checked_add(1)
            .ok_or_else(|| TreeError::Store("page ids exhausted".into()))?;
        self.next_dirty = true;
        self.refs.insert(id, 1);
        Ok(id)
    }

    fn free(&mut self, id: PageId) -> Result<(), TreeError> {
        self.cache.remove(id);
        self.encoded.remove(id);
        self.refs.remove(&id);
        self.dirty_refs.remove(&id);
        self.unshared.remove(&id);
        self.freed.insert(id);
        Ok(())
    }

    fn refs(&mut self, id: PageId) -> Result<u32, TreeError> {
        if let Some(&n) = self.refs.get(&id) {
            return Ok(n);
        }
        if id == 0 || self.freed.contains(&id) {
            return Err(TreeError::MissingPage(id));
        }
        let n = match self
            .source
            .get(&format::id_key(TAG_PAGE_REFS, id))
            .map_err(store_err)?
        {
            None => 1,
            Some(v) => {
                let n = format::be_u32(&v, "page reference count").map_err(store_err)?;
                if n < 2 {
                    return Err(TreeError::PageRefs(id));
                }
                n
            }
        };
        self.trim_refs();
        self.refs.insert(id, n);
        Ok(n)
    }

    fn set_refs(&mut self, id: PageId, n: u32) -> Result<(), TreeError> {
        if n == 0 {
            return Err(TreeError::PageRefs(id));
        }
        let old = self.refs(id)?;
        if n < old {
            self.unshared.insert(id);
        }
        self.refs.insert(id, n);
        self.dirty_refs.insert(id);
        Ok(())
    }
}

#[cfg(test)]
#[path = "pagestore_tests.rs"]
mod tests;
