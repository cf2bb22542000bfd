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
//! counts are trimmed after a commit to those still changing, so their
//! memory stays proportional to the cache's use, not to the pool.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::format::{self, TAG_PAGE, TAG_PAGE_REFS};
use super::page::{Page, PageId};
use super::pagecache::{CacheStats, IdMap, PageCache};
use super::store::{Change, MetaStore};
use super::tree::{PageStore, TreeError};

/// Default `metadata_cache`: 64 MiB of decoded pages.
pub const DEFAULT_METADATA_CACHE: u64 = 64 << 20;

/// Memory a decoded page takes in the cache (slots, bitmap, header).
pub const PAGE_MEMORY: usize = std::mem::size_of::<Page>();

/// Pages of a format-3 pool (see the module docs).
pub struct SledPages {
    source: Arc<dyn MetaStore>,
    cache: PageCache<Page>,
    /// Known reference counts (from `Q`, 1 when absent, or set since).
    refs: IdMap<u32>,
    /// Counts changed since the last take.
    dirty_refs: BTreeSet<PageId>,
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
    /// Pages read from `source`, cached up to `cache_bytes`; the next page id
    /// handed out is `next_id` (≥ 1).
    pub fn new(source: Arc<dyn MetaStore>, cache_bytes: u64, next_id: PageId) -> SledPages {
        // at least 16 pages: a path (≤ 8 pages) and room to move
        let bytes = usize::try_from(cache_bytes)
            .unwrap_or(usize::MAX)
            .max(16 * PAGE_MEMORY);
        let pages = bytes / PAGE_MEMORY;
        SledPages {
            source,
            cache: PageCache::new(pages, bytes),
            refs: IdMap::default(),
            dirty_refs: BTreeSet::new(),
            freed: BTreeSet::new(),
            next_id: next_id.max(1),
            next_dirty: false,
            unshared: HashSet::new(),
            unshared_committing: HashSet::new(),
            epoch: None,
            max_refs: pages * 4,
        }
    }

    /// The next page id to hand out.
    pub fn next_id(&self) -> PageId {
        self.next_id
    }

    /// Cache counters.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
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
            out.push((format::id_key(TAG_PAGE, id), Some(page.encode())));
        }
        for id in std::mem::take(&mut self.dirty_refs) {
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
        if self.refs.len() > self.max_refs {
            let keep = &self.dirty_refs;
            self.refs.retain(|id, _| keep.contains(id));
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
        let at = |p: &Page| -> Result<Option<u64>, TreeError> {
            super::tree::expect_level(id, p, level)?;
            Ok(p.get(i))
        };
        if let Some(v) = self.cache.peek_with(id, at) {
            return v;
        }
        let page = self.get(id)?;
        at(&page)
    }

    /// Page `id` if it is cached (no store read).
    pub fn get_cached(&mut self, id: PageId) -> Option<Arc<Page>> {
        self.cache.get(id)
    }
}

impl PageStore for SledPages {
    fn get(&mut self, id: PageId) -> Result<Arc<Page>, TreeError> {
        if let Some(p) = self.cache.get(id) {
            return Ok(p);
        }
        if id == 0 || self.freed.contains(&id) {
            return Err(TreeError::MissingPage(id));
        }
        let bytes = self
            .source
            .get(&format::id_key(TAG_PAGE, id))
            .map_err(store_err)?
            .ok_or(TreeError::MissingPage(id))?;
        let page = Arc::new(Page::decode(&bytes)?);
        self.cache.insert_clean(id, Arc::clone(&page), PAGE_MEMORY);
        Ok(page)
    }

    fn put(&mut self, id: PageId, page: Page) -> Result<(), TreeError> {
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
