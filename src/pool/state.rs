//! In-memory pool state: catalog, mappings, reference counts, free lists and
//! the batch of metadata changes not yet committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::chunkmap::ChunkMap;
use super::treemeta::{Sharing, TreeMeta};

use super::format::{self, Key, Superblock, VolumeRecord, TAG_FREE, TAG_REF};
use super::store::Change;
use super::PoolError;

/// The authoritative in-memory copy of the metadata (sled is its durable copy).
#[derive(Debug)]
pub(crate) struct State {
    pub sb: Superblock,
    pub catalog: BTreeMap<String, VolumeRecord>,
    /// Per volume id: logical chunk -> physical chunk.
    pub maps: BTreeMap<u64, ChunkMap>,
    /// Reference count of every chunk below `sb.hwm`.
    pub refs: Vec<u32>,
    /// Chunks whose freeing is durable: safe to hand out.
    pub free: Vec<u64>,
    /// Chunks freed in memory whose unmapping is not committed yet.
    pub pending_free: Vec<u64>,
    /// Chunks the commit running now frees (they join `free` when it ends).
    pub committing_frees: usize,
    /// Chunks handed out by raising `hwm` since open and never written: they
    /// read as zeros while they lie past the data file's end.
    pub fresh_from: u64,
    /// Uncommitted metadata changes (last write wins per key).
    pub dirty: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Chunks with a reference count above zero.
    pub used: u64,
    /// The low-water event has been raised and not re-armed.
    pub low_water_raised: bool,
    /// Chunks whose reference count dropped (to one or more) in changes not
    /// yet durable: the durable metadata may still share them, so they must
    /// not be overwritten in place before the next commit.
    pub unshared: std::collections::HashSet<u64>,
    /// The same for the batch being committed now.
    pub unshared_committing: std::collections::HashSet<u64>,
    /// Counts upward crossings of the low-water mark (volumes compare it
    /// with the value they last reported). Shared with the volumes, which
    /// read it on every command without taking the state lock.
    pub low_water_epoch: Arc<AtomicU64>,
    /// Format 3: the page trees and space map (then `maps`, `refs`, `free`
    /// and `pending_free` stay empty).
    pub t3: Option<Box<TreeMeta>>,
    /// `hwm` as of the last commit that synced the data file (0 at open:
    /// the first commit syncs it).
    pub data_synced_hwm: u64,
}

/// A batch taken for commit.
pub(crate) struct Batch {
    pub changes: Vec<Change>,
    pub frees: Vec<u64>,
    pub hwm: u64,
    /// The batch maps chunks (their data must be durable first) or raises
    /// the data file's length past what a data sync made durable: its
    /// commit syncs the data file before the metadata, whatever asked for
    /// it. False: only a caller that asked for the data's durability (a
    /// flush) needs that sync.
    pub needs_data_sync: bool,
}

impl State {
    /// A new, empty pool.
    pub fn new(sb: Superblock) -> State {
        let mut st = State {
            sb,
            catalog: BTreeMap::new(),
            maps: BTreeMap::new(),
            refs: Vec::new(),
            free: Vec::new(),
            pending_free: Vec::new(),
            committing_frees: 0,
            fresh_from: 0,
            dirty: BTreeMap::new(),
            used: 0,
            low_water_raised: false,
            unshared: Default::default(),
            unshared_committing: Default::default(),
            low_water_epoch: Arc::default(),
            t3: None,
            data_synced_hwm: 0,
        };
        st.put(
            format::KEY_FORMAT.to_vec(),
            format::LEGACY_FORMAT.to_be_bytes().to_vec(),
        );
        st.dirty_super();
        st
    }

    /// Builds the state from every key of the store. Tolerates inconsistencies
    /// that `check` reports (they never cause out-of-bounds access here).
    pub fn load(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<State, PoolError> {
        let mut sb = None;
        let mut catalog = BTreeMap::new();
        let mut maps: BTreeMap<u64, ChunkMap> = BTreeMap::new();
        let mut ref_keys = Vec::new();
        let mut free_keys = Vec::new();
        for (k, v) in kvs {
            match format::parse_key(k) {
                Some(Key::Super) => sb = Some(format::decode::<Superblock>(v, "superblock")?),
                Some(Key::Volume(name)) => {
                    let rec: VolumeRecord = format::decode(v, &format!("volume {name:?}"))?;
                    catalog.insert(name, rec);
                }
                Some(Key::Map(vol, l)) => {
                    let c = format::be_u64(v, "mapping")?;
                    maps.entry(vol).or_default().insert(l, c);
                }
                Some(Key::Ref(c)) => ref_keys.push((c, format::be_u32(v, "refcount")?)),
                Some(Key::Free(c)) => free_keys.push(c),
                Some(Key::Format | Key::Seq | Key::Ident(_)) | None => {}
            }
        }
        let sb = sb.ok_or_else(|| PoolError::corrupt("superblock missing"))?;
        validate_super(&sb)?;
        let hwm = usize::try_from(sb.hwm)
            .map_err(|_| PoolError::corrupt(format!("high-water mark {} too large", sb.hwm)))?;
        let mut refs = vec![0u32; hwm];
        for (c, n) in ref_keys {
            if let Some(r) = usize::try_from(c).ok().and_then(|i| refs.get_mut(i)) {
                *r = n;
            }
        }
        let free: Vec<u64> = free_keys
            .into_iter()
            .filter(|&c| usize::try_from(c).ok().and_then(|i| refs.get(i)) == Some(&0))
            .rev()
            .collect();
        let used = refs.iter().filter(|&&r| r > 0).count() as u64;
        for id in catalog.values().map(|r| r.id) {
            maps.entry(id).or_default();
        }
        let fresh_from = sb.hwm;
        let mut st = State {
            sb,
            catalog,
            maps,
            refs,
            free,
            pending_free: Vec::new(),
            committing_frees: 0,
            fresh_from,
            dirty: BTreeMap::new(),
            used,
            low_water_raised: false,
            unshared: Default::default(),
            unshared_committing: Default::default(),
            low_water_epoch: Arc::default(),
            t3: None,
            data_synced_hwm: 0,
        };
        st.low_water_raised = st.above_low_water();
        Ok(st)
    }

    /// A new, empty format-3 pool.
    pub fn new_tree(sb: Superblock, t3: TreeMeta) -> State {
        let mut st = State::new(sb);
        st.t3 = Some(Box::new(t3));
        st.put(
            format::KEY_FORMAT.to_vec(),
            format::TREE_FORMAT.to_be_bytes().to_vec(),
        );
        st
    }

    /// A format-3 pool's state from its superblock, catalog and tree
    /// metadata (read by [`TreeMeta::load`]): O(volumes).
    pub fn load_tree(
        sb: Superblock,
        catalog: BTreeMap<String, VolumeRecord>,
        t3: TreeMeta,
    ) -> Result<State, PoolError> {
        validate_super(&sb)?;
        let mut st = State::new(sb);
        st.dirty.clear();
        // Pages are shared only by snapshots and clones (which have an
        // origin) and by the trees delete jobs still hold.
        let mut t3 = t3;
        t3.pages_shared = catalog.values().any(|r| r.origin.is_some()) || !t3.jobs.is_empty();
        st.catalog = catalog;
        st.fresh_from = st.sb.hwm;
        st.t3 = Some(Box::new(t3));
        st.used = st.used_chunks();
        st.low_water_raised = st.above_low_water();
        Ok(st)
    }

    /// Chunks with a reference count above zero.
    pub fn used_chunks(&self) -> u64 {
        match &self.t3 {
            Some(t) => t.used(),
            None => self.used,
        }
    }

    /// Whether metadata changes wait for a commit.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || self.t3.as_ref().is_some_and(|t| t.has_changes())
    }

    /// Whether so much waits for a commit that a write should commit first:
    /// [`super::DIRTY_LIMIT`] keys, or (format 3) pinned pages above half the cache.
    pub fn too_dirty(&self, limit: usize) -> bool {
        self.dirty.len() > limit
            || self
                .t3
                .as_ref()
                .is_some_and(|t| t.pages.dirty_bytes() > t.pages.capacity_bytes() / 2)
    }

    /// Whether `l` of `vol` is mapped, and may be written in place (see
    /// `datapath::lookup_exclusive`).
    pub fn sharing(&mut self, vol: u64, l: u64) -> Result<Sharing, PoolError> {
        if let Some(t) = self.t3.as_mut() {
            let (u, uc) = (&self.unshared, &self.unshared_committing);
            return t.sharing(vol, l, |c| {
                (!u.is_empty() && u.contains(&c)) || (!uc.is_empty() && uc.contains(&c))
            });
        }
        Ok(match self.lookup(vol, l)? {
            None => Sharing::Unmapped,
            Some(c) if self.refcount(c) > 1 => Sharing::Shared(c),
            Some(c) if self.unshare_pending(c) => Sharing::Pending(c),
            Some(c) => Sharing::Exclusive(c),
        })
    }

    /// Records the mapping of `l` to the freshly written chunk `new`,
    /// dropping the reference of `old` (the chunk it replaces).
    pub fn register(
        &mut self,
        vol: u64,
        l: u64,
        new: u64,
        old: Option<u64>,
    ) -> Result<(), PoolError> {
        if let Some(t) = self.t3.as_mut() {
            t.map(vol, l, new, &mut self.unshared)?;
            self.used = t.used();
            self.update_low_water();
            return Ok(());
        }
        self.claim(new);
        self.map_set(vol, l, new);
        if let Some(old) = old {
            self.decref(old);
        }
        Ok(())
    }

    /// Records a change to commit.
    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.dirty.insert(k, Some(v));
    }

    /// Records a removal to commit.
    pub fn del(&mut self, k: Vec<u8>) {
        self.dirty.insert(k, None);
    }

    /// Marks the superblock dirty.
    pub fn dirty_super(&mut self) {
        let v = format::encode(&self.sb);
        self.put(format::KEY_SUPER.to_vec(), v);
    }

    /// Takes everything to commit now.
    pub fn take_batch(&mut self) -> Batch {
        let dirty = std::mem::take(&mut self.dirty);
        let unshared = std::mem::take(&mut self.unshared);
        self.unshared_committing.extend(unshared);
        let mut frees = std::mem::take(&mut self.pending_free);
        let mut changes: Vec<Change> = dirty.into_iter().collect();
        if let Some(t) = self.t3.as_mut() {
            t.take_changes(&mut changes, &mut frees);
        }
        self.committing_frees = frees.len();
        // Format 2 keeps syncing the data file on every commit.
        let mapped = self
            .t3
            .as_mut()
            .is_none_or(|t| std::mem::take(&mut t.data_mapped));
        Batch {
            changes,
            frees,
            hwm: self.sb.hwm,
            needs_data_sync: mapped || self.sb.hwm > self.data_synced_hwm,
        }
    }

    /// The batch taken last is durable (`data_synced`: its commit synced
    /// the data file first).
    pub fn batch_committed(&mut self, b: Batch, data_synced: bool) {
        if data_synced {
            self.data_synced_hwm = self.data_synced_hwm.max(b.hwm);
        }
        self.committing_frees = 0;
        match self.t3.as_mut() {
            Some(t) => t.committed(&b.frees),
            None => self.free.extend(b.frees),
        }
        self.unshared_committing.clear();
    }

    /// Chunks are being freed: by changes not committed yet or by the
    /// commit running now.
    pub fn frees_coming(&self) -> bool {
        if let Some(t) = &self.t3 {
            return t.space.has_pending_free();
        }
        !self.pending_free.is_empty() || self.committing_frees > 0
    }

    /// Chunks freed by changes not committed yet.
    pub fn frees_uncommitted(&self) -> bool {
        if let Some(t) = &self.t3 {
            return self.committing_frees == 0 && t.space.has_pending_free();
        }
        !self.pending_free.is_empty()
    }

    /// True when `c` may still be shared in the durable metadata.
    pub fn unshare_pending(&self, c: u64) -> bool {
        (!self.unshared.is_empty() && self.unshared.contains(&c))
            || (!self.unshared_committing.is_empty() && self.unshared_committing.contains(&c))
    }

    /// Puts a batch whose commit failed back (newer changes win).
    pub fn restore_batch(&mut self, b: Batch) {
        self.committing_frees = 0;
        if b.needs_data_sync {
            if let Some(t) = self.t3.as_mut() {
                t.data_mapped = true;
            }
        }
        let committing = std::mem::take(&mut self.unshared_committing);
        self.unshared.extend(committing);
        // Later changes sit in `dirty` (kept) or, for format 3, in the
        // page cache and space map (taken after `dirty` next time: they win).
        for (k, v) in b.changes {
            self.dirty.entry(k).or_insert(v);
        }
        match self.t3.as_mut() {
            Some(t) => t.aborted(),
            None => self.pending_free.extend(b.frees),
        }
    }

    /// Reserves a chunk for a write (reference count 1 in memory). Nothing
    /// durable changes until [`State::claim`]: a commit in between records
    /// the chunk as free, so a crash cannot leak it. Returns the chunk and
    /// whether it is fresh (handed out by raising `hwm` since open: it reads
    /// as zeros while past the data file's end).
    pub fn alloc(&mut self) -> Result<(u64, bool), PoolError> {
        if let Some(t) = self.t3.as_mut() {
            let c = t.allocate().ok_or_else(PoolError::out_of_space)?;
            if c >= self.sb.hwm {
                self.sb.hwm = c + 1;
                self.dirty_super();
            }
            return Ok((c, c >= self.fresh_from));
        }
        let (c, fresh) = if let Some(c) = self.free.pop() {
            (c, false)
        } else if self.sb.hwm < self.sb.capacity_chunks {
            let c = self.sb.hwm;
            self.sb.hwm += 1;
            self.refs.push(0);
            self.dirty_super();
            self.put(format::chunk_key(TAG_FREE, c), Vec::new());
            (c, c >= self.fresh_from)
        } else {
            return Err(PoolError::out_of_space());
        };
        if let Some(r) = self.ref_mut(c) {
            *r = 1;
        }
        self.used += 1;
        self.update_low_water();
        Ok((c, fresh))
    }

    /// Records a reserved chunk as used (its data is written; a mapping to
    /// it is being recorded in the same batch).
    pub fn claim(&mut self, c: u64) {
        self.del(format::chunk_key(TAG_FREE, c));
        self.set_ref(c, 1);
    }

    /// Returns a reserved, unclaimed chunk (its data write failed).
    pub fn unalloc(&mut self, c: u64) {
        if let Some(t) = self.t3.as_mut() {
            t.unreserve(c);
            return;
        }
        if let Some(r) = self.ref_mut(c) {
            *r = 0;
        }
        self.used -= 1;
        self.free.push(c);
        self.update_low_water();
    }

    /// The count of chunk `c` (None past the high-water mark).
    fn ref_mut(&mut self, c: u64) -> Option<&mut u32> {
        usize::try_from(c).ok().and_then(|i| self.refs.get_mut(i))
    }

    fn set_ref(&mut self, c: u64, n: u32) {
        if let Some(r) = self.ref_mut(c) {
            *r = n;
        }
        if n == 0 {
            self.del(format::chunk_key(TAG_REF, c));
        } else {
            self.put(format::chunk_key(TAG_REF, c), n.to_be_bytes().to_vec());
        }
    }

    /// Reference count of a chunk.
    pub fn refcount(&self, c: u64) -> u32 {
        usize::try_from(c)
            .ok()
            .and_then(|i| self.refs.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Adds a reference.
    pub fn incref(&mut self, c: u64) {
        let n = self.refcount(c).saturating_add(1);
        self.set_ref(c, n);
    }

    /// Drops a reference; a chunk reaching zero becomes pending-free (free
    /// for reuse only once the commit that unmaps it is durable).
    pub fn decref(&mut self, c: u64) {
        let n = self.refcount(c);
        if n == 0 {
            return;
        }
        self.set_ref(c, n - 1);
        if n > 1 {
            self.unshared.insert(c);
        }
        if n == 1 {
            self.used -= 1;
            self.put(format::chunk_key(TAG_FREE, c), Vec::new());
            self.pending_free.push(c);
            self.update_low_water();
        }
    }

    /// [`State::lookup`] without reading the store: `None` when format 3
    /// would have to read a page (a read that must not wait).
    pub fn lookup_nowait(&mut self, vol: u64, l: u64) -> Option<Option<u64>> {
        match self.t3.as_mut() {
            Some(t) => t.lookup_cached(vol, l),
            None => Some(self.maps.get(&vol).and_then(|m| m.get(l))),
        }
    }

    /// Looks up a mapping.
    pub fn lookup(&mut self, vol: u64, l: u64) -> Result<Option<u64>, PoolError> {
        if let Some(t) = self.t3.as_mut() {
            return t.lookup(vol, l);
        }
        Ok(self.maps.get(&vol).and_then(|m| m.get(l)))
    }

    /// Sets a mapping (the caller manages reference counts).
    pub fn map_set(&mut self, vol: u64, l: u64, c: u64) {
        self.maps.entry(vol).or_default().insert(l, c);
        self.put(format::map_key(vol, l), c.to_be_bytes().to_vec());
    }

    /// Maps `l` of `vol` to chunk `c`, which is mapped already (one more
    /// reference to it); the chunk `l` mapped before loses one.
    pub fn share_chunk(&mut self, vol: u64, l: u64, c: u64) -> Result<(), PoolError> {
        if let Some(t) = self.t3.as_mut() {
            t.map(vol, l, c, &mut self.unshared)?;
            self.used = t.used();
            self.update_low_water();
            return Ok(());
        }
        let old = self.lookup(vol, l)?;
        self.incref(c);
        self.map_set(vol, l, c);
        if let Some(old) = old {
            self.decref(old);
        }
        Ok(())
    }

    /// Removes a mapping and drops its reference.
    pub fn map_remove(&mut self, vol: u64, l: u64) -> Result<Option<u64>, PoolError> {
        if let Some(t) = self.t3.as_mut() {
            let old = t.unmap(vol, l, &mut self.unshared)?;
            self.used = t.used();
            self.update_low_water();
            return Ok(old);
        }
        Ok(self.map_remove2(vol, l))
    }

    fn map_remove2(&mut self, vol: u64, l: u64) -> Option<u64> {
        let c = self.maps.get_mut(&vol).and_then(|m| m.remove(l))?;
        self.del(format::map_key(vol, l));
        self.decref(c);
        Some(c)
    }

    /// Allocated chunks at or above the low-water mark.
    pub fn above_low_water(&self) -> bool {
        past_low_water(
            self.used_chunks(),
            self.sb.capacity_chunks,
            self.sb.low_water_pct,
        )
    }

    /// Re-evaluates the low-water state; an upward crossing bumps the epoch
    /// and logs.
    pub fn update_low_water(&mut self) {
        let above = self.above_low_water();
        if above && !self.low_water_raised {
            self.low_water_epoch.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                used_chunks = self.used,
                capacity_chunks = self.sb.capacity_chunks,
                low_water_pct = self.sb.low_water_pct,
                "pool crossed its low-water mark"
            );
        }
        self.low_water_raised = above;
    }
}

/// Rejects superblocks whose values cannot be right.
pub(crate) fn validate_super(sb: &Superblock) -> Result<(), PoolError> {
    if !sb.chunk_size.is_power_of_two() || !(4096..=1 << 20).contains(&sb.chunk_size) {
        return Err(PoolError::corrupt(format!(
            "bad chunk size {}",
            sb.chunk_size
        )));
    }
    if sb.hwm > sb.capacity_chunks || sb.low_water_pct > 100 {
        return Err(PoolError::corrupt(format!(
            "superblock out of range: hwm {} capacity {} low water {}%",
            sb.hwm, sb.capacity_chunks, sb.low_water_pct
        )));
    }
    Ok(())
}

/// The low-water rule: `used` of `capacity` chunks is at or above `pct` %
/// (never for an empty capacity).
pub(crate) fn past_low_water(used: u64, capacity: u64, pct: u8) -> bool {
    let cap = u128::from(capacity);
    cap > 0 && u128::from(used) * 100 >= cap * u128::from(pct)
}
