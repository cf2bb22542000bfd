//! Format-3 metadata of a pool in memory: the volumes' trees (`T`), delete
//! jobs (`D`), pages through [`SledPages`] and chunk counts in a
//! [`SpaceMap`] (`S`, `R`, `Z`). The pool's [`State`](super::state::State)
//! holds one of these for format-3 pools and routes lookups, mappings,
//! snapshots and deletes here.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::format::{self, TreeRecord, TAG_DELETE, TAG_REF, TAG_TREE};
use super::memo::{MapMemo, MemoWriter};
use super::page::{PageId, SLOTS, SLOT_BITS};
use super::pagestore::{CacheSplit, SledPages};
use super::spacemap::{ChunkRefs, SpaceError, SpaceMap, SPACE_PAGE_CHUNKS};
use super::store::{Change, MetaStore};
use super::tree::{self, DeleteJob, PageStore, Root, TreeError};
use super::PoolError;
use crate::narrow::index_mod;

/// Leaves (or shared subtrees) released per delete step: 8,192 mappings.
pub const DELETE_STEP: usize = 16;

/// A volume's tree and its mapped-chunk count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolTree {
    /// The tree.
    pub root: Root,
    /// Chunks mapped.
    pub mapped: u64,
}

/// What the in-place write rule says about a logical chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Not mapped.
    Unmapped,
    /// Mapped to this chunk, shared now (a page on the path or the chunk).
    Shared(u64),
    /// Mapped, exclusive now but maybe shared in the durable metadata.
    Pending(u64),
    /// Mapped, exclusive now and durably.
    Exclusive(u64),
}

/// [`SpaceMap`] counts recording chunks whose count fell but stayed above 0.
struct Counting<'a> {
    space: &'a mut SpaceMap,
    unshared: &'a mut HashSet<u64>,
}

impl ChunkRefs for Counting<'_> {
    fn count(&self, chunk: u64) -> Result<u32, SpaceError> {
        self.space.count(chunk)
    }
    fn inc(&mut self, chunk: u64) -> Result<u32, SpaceError> {
        self.space.inc(chunk)
    }
    fn dec(&mut self, chunk: u64) -> Result<u32, SpaceError> {
        let n = self.space.dec(chunk)?;
        if n > 0 {
            self.unshared.insert(chunk);
        }
        Ok(n)
    }
}

/// A tree failure is a corruption of the metadata (or a failed store read).
pub(crate) fn tree_err(e: TreeError) -> PoolError {
    match e {
        TreeError::Store(s) => PoolError::store(s),
        other => PoolError::corrupt(format!("mapping tree: {other}")),
    }
}

fn index(l: u64, level: u8) -> usize {
    index_mod(l >> (SLOT_BITS * u32::from(level)), SLOTS)
}

/// Format-3 metadata (see the module docs).
#[derive(Debug)]
pub struct TreeMeta {
    /// Pages and page counts.
    pub pages: SledPages,
    /// Chunk counts.
    pub space: SpaceMap,
    /// Per volume id.
    pub trees: BTreeMap<u64, VolTree>,
    dirty_trees: BTreeSet<u64>,
    /// Delete jobs by id.
    pub jobs: BTreeMap<u64, DeleteJob>,
    dirty_jobs: BTreeSet<u64>,
    space_dirty: bool,
    /// Leaves released per delete step.
    pub step_leaves: usize,
    /// Some page may have a reference count above 1 (durably or not). Only
    /// [`TreeMeta::share`] (snapshot, clone) makes a page count rise, and
    /// a delete job holds the pages of a tree that shared them, so this is
    /// false only while no volume has an origin, no delete job runs and
    /// no share happened since open (`State::load_tree`
    /// sets it from the catalog). While false, the in-place write rule
    /// needs no page counts ([`TreeMeta::sharing`]).
    pub pages_shared: bool,
    /// Recent lookups (`memo`): an entry is forgotten when its mapping
    /// changes (`map`, `unmap`), all of them when a tree is deleted.
    memo: MemoWriter,
    /// A chunk was mapped (`map`) since the last commit took its changes:
    /// that commit must make the data file durable before the mapping
    /// (`State::take_batch`). Unmaps, deletes and snapshots point at no
    /// data not already mapped.
    pub data_mapped: bool,
}

impl TreeMeta {
    /// Empty metadata of a new pool.
    pub fn new(source: Arc<dyn MetaStore>, capacity: u64, cache: u64) -> TreeMeta {
        TreeMeta {
            pages: SledPages::new(source, cache, 1),
            space: SpaceMap::new(capacity),
            trees: BTreeMap::new(),
            dirty_trees: BTreeSet::new(),
            jobs: BTreeMap::new(),
            dirty_jobs: BTreeSet::new(),
            space_dirty: true,
            step_leaves: DELETE_STEP,
            pages_shared: false,
            memo: MemoWriter::new(CacheSplit::of(cache).memo),
            data_mapped: false,
        }
    }

    /// Loads what open needs: `next_page`, `T`, `D`, `S`, `R` (format 3's
    /// side map). Pages load on demand.
    pub fn load(
        source: Arc<dyn MetaStore>,
        capacity: u64,
        cache: u64,
        volumes: &BTreeSet<u64>,
    ) -> Result<TreeMeta, PoolError> {
        let next = match source.get(format::KEY_NEXT_PAGE)? {
            Some(v) => format::be_u64(&v, "next page id")?,
            None => 1,
        };
        let mut trees = BTreeMap::new();
        for (k, v) in source.scan_prefix(&[TAG_TREE])? {
            let id = key_id(&k, "tree key")?;
            let r = TreeRecord::decode(&v, "volume tree")?;
            let root = Root {
                page: r.root,
                depth: r.depth,
            };
            root.top().map_err(tree_err)?;
            trees.insert(
                id,
                VolTree {
                    root,
                    mapped: r.count,
                },
            );
        }
        for id in volumes {
            trees.entry(*id).or_insert(VolTree {
                root: Root::EMPTY,
                mapped: 0,
            });
        }
        let mut jobs = BTreeMap::new();
        for (k, v) in source.scan_prefix(&[TAG_DELETE])? {
            let id = key_id(&k, "delete job key")?;
            let r = TreeRecord::decode(&v, "delete job")?;
            let root = Root {
                page: r.root,
                depth: r.depth,
            };
            root.top().map_err(tree_err)?;
            jobs.insert(
                id,
                DeleteJob {
                    root,
                    cursor: r.count,
                },
            );
        }
        let mut pages = Vec::new();
        for (k, v) in source.scan_prefix(&[format::TAG_SPACE])? {
            let p: [u8; 4] = k[1..]
                .try_into()
                .map_err(|_| PoolError::corrupt(format!("bad space key {k:?}")))?;
            pages.push((u64::from(u32::from_be_bytes(p)), v));
        }
        let mut overflow = BTreeMap::new();
        for (k, v) in source.scan_prefix(&[TAG_REF])? {
            overflow.insert(
                key_id(&k, "side-map key")?,
                format::be_u32(&v, "side-map count")?,
            );
        }
        let space = SpaceMap::load(capacity, pages, overflow)
            .map_err(|e| PoolError::corrupt(e.to_string()))?;
        Ok(TreeMeta {
            pages: SledPages::new(source, cache, next),
            space,
            trees,
            dirty_trees: BTreeSet::new(),
            jobs,
            dirty_jobs: BTreeSet::new(),
            space_dirty: false,
            step_leaves: DELETE_STEP,
            pages_shared: true,
            memo: MemoWriter::new(CacheSplit::of(cache).memo),
            data_mapped: false,
        })
    }

    fn counting<'a>(space: &'a mut SpaceMap, unshared: &'a mut HashSet<u64>) -> Counting<'a> {
        Counting { space, unshared }
    }

    /// A new, empty volume.
    pub fn add_volume(&mut self, id: u64) {
        self.trees.insert(
            id,
            VolTree {
                root: Root::EMPTY,
                mapped: 0,
            },
        );
        self.dirty_trees.insert(id);
    }

    fn tree(&self, vol: u64) -> Result<VolTree, PoolError> {
        self.trees
            .get(&vol)
            .copied()
            .ok_or_else(|| PoolError::corrupt(format!("volume id {vol} has no tree")))
    }

    /// The chunk `l` of `vol` maps to.
    pub fn lookup(&mut self, vol: u64, l: u64) -> Result<Option<u64>, PoolError> {
        if let Some(found) = self.memo.get(vol, l) {
            return Ok(found);
        }
        self.memo.missed();
        let found = self.lookup_tree(vol, l)?;
        self.memo.put(vol, l, found);
        Ok(found)
    }

    /// The mapping memo, for lookups without the state mutex (the data
    /// path's reads; see `memo`).
    pub fn memo_reader(&self) -> Arc<MapMemo> {
        self.memo.reader()
    }

    /// Bytes of the mapping memo's table.
    pub fn memo_bytes(&self) -> usize {
        self.memo.capacity_bytes()
    }

    /// [`TreeMeta::lookup`] in the tree, past the memo.
    fn lookup_tree(&mut self, vol: u64, l: u64) -> Result<Option<u64>, PoolError> {
        let Some(t) = self.trees.get(&vol).copied() else {
            return Ok(None);
        };
        let root = t.root;
        root.top().map_err(tree_err)?;
        if root.page == 0 || !root.covers(l) {
            return Ok(None);
        }
        // tree::lookup, reading each slot in place (no page reference taken)
        let mut id = root.page;
        for level in (0..root.depth).rev() {
            match self
                .pages
                .slot(id, level, index(l, level))
                .map_err(tree_err)?
            {
                None => return Ok(None),
                Some(c) if level == 0 => return Ok(Some(c)),
                Some(child) => id = child,
            }
        }
        Ok(None)
    }

    /// [`TreeMeta::lookup`] from cached pages only: `None` when a page on
    /// the path would have to be read from the store.
    pub fn lookup_cached(&mut self, vol: u64, l: u64) -> Option<Option<u64>> {
        if let Some(found) = self.memo.get(vol, l) {
            return Some(found);
        }
        self.memo.missed();
        let found = self.lookup_cached_tree(vol, l)?;
        self.memo.put(vol, l, found);
        Some(found)
    }

    /// [`TreeMeta::lookup_cached`] in the tree, past the memo.
    fn lookup_cached_tree(&mut self, vol: u64, l: u64) -> Option<Option<u64>> {
        let Some(t) = self.trees.get(&vol).copied() else {
            return Some(None);
        };
        let root = t.root;
        if root.page == 0 || !root.covers(l) {
            return Some(None);
        }
        let mut id = root.page;
        for level in (0..root.depth).rev() {
            // a bad page: let the waiting path report it
            let slot = self.pages.slot_cached(id, level, index(l, level))?.ok()?;
            match slot {
                None => return Some(None),
                Some(c) if level == 0 => return Some(Some(c)),
                Some(child) => id = child,
            }
        }
        Some(None)
    }

    /// Whether `l` of `vol` may be overwritten in place: every page on its
    /// path and its chunk have count 1, now and in the durable metadata.
    /// Page counts are not read while no page can be shared
    /// ([`TreeMeta::pages_shared`]), the chunk's while the space map counts
    /// no chunk twice: an overwrite then touches only the path's slots.
    ///
    /// While neither kind of count is read, the answer depends on the
    /// mapping alone, which the memo answers when it holds it.
    pub fn sharing(
        &mut self,
        vol: u64,
        l: u64,
        chunk_unshare_pending: impl Fn(u64) -> bool,
    ) -> Result<Sharing, PoolError> {
        let counts_read = self.pages_shared || self.space.shared_chunks() > 0;
        if !counts_read {
            if let Some(found) = self.memo.get(vol, l) {
                return Ok(match found {
                    None => Sharing::Unmapped,
                    Some(c) if chunk_unshare_pending(c) => Sharing::Pending(c),
                    Some(c) => Sharing::Exclusive(c),
                });
            }
        }
        if !counts_read {
            self.memo.missed();
        }
        let found = self.sharing_tree(vol, l, chunk_unshare_pending)?;
        let mapped = match found {
            Sharing::Unmapped => None,
            Sharing::Shared(c) | Sharing::Pending(c) | Sharing::Exclusive(c) => Some(c),
        };
        self.memo.put(vol, l, mapped);
        Ok(found)
    }

    /// [`TreeMeta::sharing`] in the tree, past the memo.
    fn sharing_tree(
        &mut self,
        vol: u64,
        l: u64,
        chunk_unshare_pending: impl Fn(u64) -> bool,
    ) -> Result<Sharing, PoolError> {
        let Some(t) = self.trees.get(&vol).copied() else {
            return Ok(Sharing::Unmapped);
        };
        let root = t.root;
        if root.page == 0 || !root.covers(l) {
            return Ok(Sharing::Unmapped);
        }
        let (mut shared, mut pending) = (false, false);
        let mut id: PageId = root.page;
        let page_counts = self.pages_shared;
        for level in (0..root.depth).rev() {
            let pages = &mut self.pages;
            if page_counts {
                shared |= pages.refs(id).map_err(tree_err)? != 1;
                pending |= pages.unshare_pending(id);
            }
            match pages.slot(id, level, index(l, level)).map_err(tree_err)? {
                None => return Ok(Sharing::Unmapped),
                Some(c) if level == 0 => {
                    // while no chunk is counted twice, `c` is counted once
                    // (and its byte, a memory access of its own, is not read)
                    if self.space.shared_chunks() > 0 {
                        shared |= self
                            .space
                            .count(c)
                            .map_err(|e| PoolError::corrupt(e.to_string()))?
                            != 1;
                    }
                    pending |= chunk_unshare_pending(c);
                    return Ok(if shared {
                        Sharing::Shared(c)
                    } else if pending {
                        Sharing::Pending(c)
                    } else {
                        Sharing::Exclusive(c)
                    });
                }
                Some(child) => id = child,
            }
        }
        Ok(Sharing::Unmapped)
    }

    /// Hands out a free chunk (reserved until mapped or returned).
    pub fn allocate(&mut self) -> Option<u64> {
        self.space.allocate()
    }

    /// Returns a reserved chunk whose write failed.
    pub fn unreserve(&mut self, c: u64) {
        self.space.unreserve(c);
    }

    /// Maps `l` of `vol` to reserved chunk `c` (the chunk it replaces loses
    /// a reference). Returns whether a chunk was freed.
    pub fn map(
        &mut self,
        vol: u64,
        l: u64,
        c: u64,
        unshared: &mut HashSet<u64>,
    ) -> Result<bool, PoolError> {
        let mut t = self.tree(vol)?;
        self.memo.forget(vol, l);
        self.data_mapped = true;
        let mut refs = Self::counting(&mut self.space, unshared);
        let r = tree::map(&mut self.pages, &mut refs, &mut t.root, l, c).map_err(tree_err)?;
        if r.old.is_none() {
            t.mapped += 1;
        }
        self.space_dirty = true;
        self.trees.insert(vol, t);
        self.dirty_trees.insert(vol);
        Ok(r.freed)
    }

    /// Unmaps `l` of `vol`; returns the chunk it mapped, if any.
    pub fn unmap(
        &mut self,
        vol: u64,
        l: u64,
        unshared: &mut HashSet<u64>,
    ) -> Result<Option<u64>, PoolError> {
        let Some(mut t) = self.trees.get(&vol).copied() else {
            return Ok(None);
        };
        self.memo.forget(vol, l);
        let mut refs = Self::counting(&mut self.space, unshared);
        let r = tree::unmap(&mut self.pages, &mut refs, &mut t.root, l).map_err(tree_err)?;
        if r.old.is_some() {
            t.mapped -= 1;
            self.space_dirty = true;
            self.trees.insert(vol, t);
            self.dirty_trees.insert(vol);
        }
        Ok(r.old)
    }

    /// A new volume `new` sharing `src`'s tree: +1 on its root page, O(1).
    pub fn share(&mut self, src: u64, new: u64) -> Result<(), PoolError> {
        let t = self.tree(src)?;
        self.pages_shared = true;
        let root = tree::share(&mut self.pages, t.root).map_err(tree_err)?;
        self.trees.insert(
            new,
            VolTree {
                root,
                mapped: t.mapped,
            },
        );
        self.dirty_trees.insert(new);
        Ok(())
    }

    /// Removes `vol`'s tree and queues a delete job (id: the volume id) for it.
    pub fn start_delete(&mut self, vol: u64) {
        // ids are never reused (`next_volume_id`): this only keeps the
        // memo exact should that ever change
        self.memo.clear();
        if let Some(t) = self.trees.remove(&vol) {
            self.dirty_trees.insert(vol);
            if t.root.page != 0 {
                self.jobs.insert(vol, tree::delete_job(t.root));
                self.dirty_jobs.insert(vol);
            }
        }
    }

    /// One bounded step of delete job `of` if there is one, else of the
    /// first; returns whether jobs remain.
    pub fn delete_step(
        &mut self,
        unshared: &mut HashSet<u64>,
        of: Option<u64>,
    ) -> Result<bool, PoolError> {
        let first = || self.jobs.keys().next().copied();
        let Some(id) = of.filter(|id| self.jobs.contains_key(id)).or_else(first) else {
            return Ok(false);
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(false);
        };
        let mut refs = Self::counting(&mut self.space, unshared);
        let out = tree::delete_step(&mut self.pages, &mut refs, job, self.step_leaves.max(1))
            .map_err(tree_err)?;
        self.space_dirty = true;
        self.dirty_jobs.insert(id);
        if out.done {
            self.jobs.remove(&id);
        }
        Ok(!self.jobs.is_empty())
    }

    /// Every mapping of `vol` at or after logical chunk `from` (for shrink).
    pub fn mappings_from(&mut self, vol: u64, from: u64) -> Result<Vec<u64>, PoolError> {
        let t = self.tree(vol)?;
        let all = tree::mappings(&mut self.pages, t.root).map_err(tree_err)?;
        Ok(all
            .into_iter()
            .map(|(l, _)| l)
            .filter(|&l| l >= from)
            .collect())
    }

    /// The first mapped logical chunk in `from..to`, skipping empty subtrees.
    pub fn next_mapped(&mut self, vol: u64, from: u64, to: u64) -> Result<Option<u64>, PoolError> {
        let Some(t) = self.trees.get(&vol).copied() else {
            return Ok(None);
        };
        if t.root.page == 0 || from >= to {
            return Ok(None);
        }
        let top = t.root.top().map_err(tree_err)?;
        next_in(&mut self.pages, t.root.page, top, 0, from, to).map_err(tree_err)
    }

    /// Mapped chunks of `vol`.
    pub fn mapped(&self, vol: u64) -> u64 {
        self.trees.get(&vol).map_or(0, |t| t.mapped)
    }

    /// Chunks with a reference.
    pub fn used(&self) -> u64 {
        self.space.used_chunks()
    }

    /// Whether any change waits for a commit.
    pub fn has_changes(&self) -> bool {
        self.space_dirty
            || !self.dirty_trees.is_empty()
            || !self.dirty_jobs.is_empty()
            || self.pages.has_changes()
    }

    /// Step 1 of a commit: every change as key changes (appended after the
    /// pool's own, so they win for the same key); the chunks freed go to
    /// `frees` (released after the commit).
    pub fn take_changes(&mut self, out: &mut Vec<Change>, frees: &mut Vec<u64>) {
        for id in std::mem::take(&mut self.dirty_trees) {
            let v = self.trees.get(&id).map(|t| {
                TreeRecord {
                    root: t.root.page,
                    depth: t.root.depth,
                    count: t.mapped,
                }
                .encode()
            });
            out.push((format::id_key(TAG_TREE, id), v));
        }
        for id in std::mem::take(&mut self.dirty_jobs) {
            let v = self.jobs.get(&id).map(|j| {
                TreeRecord {
                    root: j.root.page,
                    depth: j.root.depth,
                    count: j.cursor,
                }
                .encode()
            });
            out.push((format::id_key(TAG_DELETE, id), v));
        }
        self.pages.take_changes(out);
        if std::mem::take(&mut self.space_dirty) {
            for (p, bytes) in self.space.take_dirty() {
                let p = u32::try_from(p).unwrap_or(u32::MAX);
                out.push((format::space_key(p), Some(bytes)));
            }
            for (c, n) in self.space.take_dirty_overflow() {
                out.push((
                    format::chunk_key(TAG_REF, c),
                    n.map(|n| n.to_be_bytes().to_vec()),
                ));
            }
            let z: Vec<u8> = self
                .space
                .summary()
                .iter()
                .flat_map(|z| z.to_be_bytes())
                .collect();
            out.push((format::KEY_SUMMARY.to_vec(), Some(z)));
        }
        frees.extend(self.space.take_freed());
    }

    /// The commit is durable: release its freed chunks, unpin its pages.
    pub fn committed(&mut self, frees: &[u64]) {
        self.space.release(frees);
        self.pages.end_commit();
    }

    /// The commit failed (its key changes went back to the pool's dirty map).
    pub fn aborted(&mut self) {
        self.pages.abort_commit();
    }

    /// Grows the space map to `capacity` chunks.
    pub fn grow(&mut self, capacity: u64) {
        if capacity > self.space.capacity() {
            self.space.grow(capacity);
            self.space_dirty = true;
        }
    }
}

fn key_id(k: &[u8], what: &str) -> Result<u64, PoolError> {
    format::be_u64(k.get(1..).unwrap_or_default(), what)
}

fn next_in<S: PageStore>(
    store: &mut S,
    id: PageId,
    level: u8,
    base: u64,
    from: u64,
    to: u64,
) -> Result<Option<u64>, TreeError> {
    let page = store.get(id)?;
    let span = 1u64
        .checked_shl(SLOT_BITS * u32::from(level))
        .unwrap_or(u64::MAX);
    for (slot, v) in page.iter() {
        let lo = base.saturating_add(span.saturating_mul(slot as u64));
        let hi = lo.saturating_add(span);
        if hi <= from {
            continue;
        }
        if lo >= to {
            return Ok(None);
        }
        if level == 0 {
            return Ok(Some(lo));
        }
        if let Some(l) = next_in(store, v, level - 1, lo, from, to)? {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// Space pages (`S` keys) a pool of `capacity` chunks has at most.
pub fn space_pages(capacity: u64) -> u64 {
    capacity.div_ceil(SPACE_PAGE_CHUNKS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::testing::MemStore;

    /// A lookup that must not wait reads no page from the store: it says
    /// "not cached" instead, and succeeds once a normal lookup cached them.
    #[test]
    fn cached_lookup_reads_nothing_from_the_store() {
        let store = MemStore::new();
        let src: Arc<dyn MetaStore> = Arc::new(store.clone());
        let mut t = TreeMeta::new(Arc::clone(&src), 1 << 16, 0);
        t.add_volume(1);
        let mut unshared = HashSet::new();
        for l in 0..512 * 40 {
            let c = t.allocate().unwrap();
            t.map(1, l, c, &mut unshared).unwrap();
        }
        let (mut changes, mut frees) = (Vec::new(), Vec::new());
        t.take_changes(&mut changes, &mut frees);
        store.commit(changes).unwrap();
        t.committed(&frees);
        // a fresh cache of 16 pages: leaf 0 is not in it after reading 39 others
        let mut fresh = TreeMeta::load(src, 1 << 16, 0, &[1].into()).unwrap();
        for l in (512..512 * 40).step_by(512) {
            assert!(fresh.lookup(1, l).unwrap().is_some());
        }
        assert_eq!(fresh.lookup_cached(1, 3), None, "leaf 0 is not cached");
        let c = fresh.lookup(1, 3).unwrap();
        assert!(c.is_some());
        assert_eq!(fresh.lookup_cached(1, 4), Some(fresh.lookup(1, 4).unwrap()));
        assert_eq!(fresh.lookup_cached(2, 4), Some(None), "no such volume");
    }
}
