//! Thin-provisioned volumes in a pool: a sled database for all metadata and a
//! data file of fixed-size chunks.
//!
//! A pool directory holds `tcmud-pool` (marker), `lock` (flock + holder pid),
//! `meta/` (sled) and `data` (chunks). The layout is drawn in
//! `docs/pool-format.md`. Volumes are thin: a chunk is allocated on the first
//! write to it, snapshots and clones share chunks by reference count, and a
//! write to a shared chunk copies it first.
//!
//! # Metadata formats
//!
//! New pools are format 3 (issue 13, `docs/pool-format.md`): each volume's
//! mappings are a copy-on-write radix tree of 512-slot pages in sled, read
//! on demand through a bounded page cache (`pagestore`, `treemeta`); a
//! snapshot or clone shares the origin's root page (O(1)); a delete hands
//! the tree to a job that releases it in bounded steps. Format 2 (one sled
//! key per mapping, everything loaded at open) is still read and written
//! on request (`PoolOptions::format`); open migrates it to format 3. The
//! commit protocol below is the same for both: format 3's dirty pages,
//! page counts and space-map pages join the batch at step 1.
//!
//! # Concurrency
//!
//! The metadata lives in memory (`state`, format 3: the cached part of it) under one mutex; a lookup returns
//! a plan (unmapped, mapped in place, copy-on-write, fresh chunk) and the data
//! I/O runs outside that mutex (`datapath`); physically contiguous pieces of
//! a request go out as one pread/pwrite. A read within one chunk whose
//! mapping the memo holds (format 3, `memo`) takes no pool lock at all: the
//! memo is a table of sequence-locked sets that the state mutex's holder
//! alone changes. Each volume has a gate (reader-writer lock):
//! reads and in-place overwrites (every chunk touched already mapped to this
//! volume alone) share it, writes that allocate or copy and discards take it
//! exclusively, and catalog operations (snapshot, delete, shrink) take it to
//! see a stable volume.
//!
//! # Durability ordering
//!
//! Metadata changes are never written to sled as they happen: they collect
//! in a dirty batch in memory and reach sled only in a *commit*, which runs
//! in [`Pool::flush`] (and after catalog operations), serialised by a commit
//! mutex, in this order:
//!
//! 1. take the dirty batch and the list of chunks it frees (under the state
//!    mutex). A write registers its mapping only after its data write
//!    returned, so every data write the batch refers to has been issued;
//! 2. grow the data file to the committed high-water mark, then fdatasync it:
//!    the data of every chunk a new mapping points to, and every in-place
//!    overwrite acknowledged before the flush, is now durable. The commits of
//!    a delete (its catalog change, its steps) skip this sync when their
//!    batch maps no chunk and raises no high-water mark
//!    (`Batch::needs_data_sync`): nothing they make durable points at data,
//!    and they must not make I/O on other volumes wait for the writeback of
//!    overwrites that no flush asked for;
//! 3. apply the batch to sled atomically (`apply_batch`) with the next
//!    commit sequence number, `flush` sled, then make that flush durable
//!    ([`store::SledStore`]): `fdatasync` of `meta/db` (sled's flush is a
//!    `sync_file_range`, which persists neither a grown log's size and
//!    extents nor the drive's write cache), and, when names in `meta/` or
//!    `meta/blobs/` changed since the last commit, `fsync` of each new file
//!    and of the directory; meanwhile, on a thread of its own, `meta.seal`
//!    is rewritten and `fdatasync`ed ([`seal`]) naming the commit before
//!    this one (durable already: the seal never names a commit sled may
//!    lack) and the data length step 2 made durable. The new mappings,
//!    reference counts and free entries are durable when the commit returns;
//! 4. only now move the chunks this batch freed to the free list.
//!
//! A chunk reserved by a write still in flight is committed as free (its
//! reference count and the mapping to it enter the dirty batch together,
//! after its data write returned), so a commit racing the write can leak
//! nothing. Step 2 before 3 means a durable mapping never points at a chunk
//! whose data is not durable. Step 4 after 3 means a freed chunk is never
//! reused (and overwritten by another volume) while a durable mapping of its
//! old owner could still point at it, so a crash can never show one
//! volume's data through another's mapping. A chunk taken from the free list is written
//! whole on first use (a partial first write is merged into zeros, a
//! copy-on-write into the old contents) so no byte of its earlier life
//! survives; only chunks past the data file's end, which read as zeros, are
//! written partially, and those are first preallocated whole. In-place
//! overwrites touch only chunks the volume owns alone *in the durable
//! metadata too*: a chunk whose reference count fell
//! to one in changes not yet committed (another volume copied away from it,
//! or a sharer was deleted) may still be mapped by that other volume after a
//! crash, so the first in-place write to it runs a commit first. Their
//! durability comes from step 2. A FUA write runs a commit when metadata is
//! pending, and only an fdatasync otherwise.
//!
//! Sled's own background flushing is disabled; it is only written in step 3.
//!
//! # Host space
//!
//! The data file is sparse. A chunk enters a volume either written whole
//! (a copy, a reused chunk, a full-chunk write: every block allocated by
//! the write) or, past the file's end, written partially after
//! `fallocate(FALLOC_FL_KEEP_SIZE)` of the whole chunk
//! ([`io::DataIo::preallocate`], a megabyte of chunks at a time).
//! So an overwrite of an allocated, unshared chunk never needs host space
//! (on file systems that overwrite in place).
//!
//! [`PoolOptions::sparse_data`] (off by default) skips that preallocation:
//! the host file system then holds only the blocks written, so a pool of
//! 4 Mi chunks of 64 KiB with 4 KiB written in each takes 16 GiB, not
//! 256 GiB. The price: a later write to the unwritten rest of such a chunk
//! (an in-place overwrite, or a copy-on-write of it) needs host space, so
//! with the host full it fails where a preallocated pool's would not.
//! Nothing acknowledged is lost silently: on file systems that reserve
//! space at `write` (ext4 and XFS with delayed allocation, btrfs) that
//! write fails with the pool's out-of-space error before it is
//! acknowledged; on one that allocates only at write-back, the
//! `fdatasync` of the next flush or FUA write fails, that flush reports
//! the error and the pool fails (below), never committing metadata past
//! it. A pool whose host file system can run full under it should keep
//! the default. Two MiB past the end of
//! sled's log are kept preallocated the same way (renewed after each
//! commit), so commits go on for a while on a full host. ENOSPC (or
//! EDQUOT) from any write, preallocation or commit is the pool's
//! out-of-space error (DATA PROTECT / SPACE ALLOCATION FAILED WRITE
//! PROTECT), not a medium error;
//! one from a sync or a sled commit also fails the pool. A write that finds
//! no free chunk while chunks are being freed (changes not committed yet,
//! or the commit running now) waits for that commit and tries again.
//!
//! # The exact sync sequence
//!
//! - create: make the directory; create `lock`, `data`; open sled (it
//!   writes `meta/conf`, `meta/db`, `meta/blobs/`), then `fdatasync`
//!   `meta/db` and `fsync` every file in `meta/`, `meta/` and
//!   `meta/blobs/`; the first commit (steps 2-3, which also creates and
//!   syncs `meta.seal` and `fsync`s the pool directory for its name); write
//!   and `fsync` the marker `tcmud-pool`; `fsync` the pool directory and its
//!   parent.
//! - open: rewrite the seal as open and `fdatasync` it before sled opens;
//!   remove unfinished `meta/snap.*.generating` files (sled would take one
//!   for its newest snapshot and fail as corrupt) and `fsync` `meta/`;
//!   after sled opened (it writes a snapshot at every open) the same syncs
//!   of `meta/` as at create. An open that fails after sled wrote puts a
//!   closed seal back only if `meta/` still matches its checksum.
//! - commit: `fdatasync(data)`; sled `apply_batch` + `flush`;
//!   `fdatasync(meta/db)`; new files of `meta/`, `meta/blobs/` and those
//!   directories `fsync`ed; `fdatasync(meta.seal)`.
//! - FUA write with no metadata pending: `fdatasync(data)` (shared between
//!   concurrent FUA writes).
//! - close: a commit; sled closed; `fdatasync(meta/db)` and the new files
//!   of `meta/` and the directory `fsync`ed again (sled may write on
//!   close); the seal written with the CRC of `meta/` and `fdatasync`ed.
//!
//! A failed `fdatasync` or sled write is never retried: Linux reports a
//! write-back error once and marks the pages clean, so a retry would
//! "succeed" and commit mappings to data that never reached the disk. The
//! pool fails instead (`failure.rs`, [`Pool::writable`]): writes get DATA
//! PROTECT / WRITE PROTECTED (or the out-of-space error when the host file
//! system was full), reads go on, nothing more is committed, and the pool
//! is not sealed, so the next open verifies it.
//!
//! # Unclean shutdown
//!
//! The seal says `open` from open to close: found so at open, it is the
//! needs-check flag (as dm-thin's). Open then recounts reference counts and
//! the free list from the mappings (everything `check` verifies) before it
//! returns the pool, and refuses read-write on a mismatch
//! ([`PoolErrorKind::NeedsRepair`]); [`Pool::open_for_repair`] opens it anyway
//! for check and repair. The in-memory state trusts those counts: without
//! this a read-write open could hand out a chunk still mapped elsewhere or
//! overwrite a shared chunk in place.

mod catalog;
mod check;
mod check3;
mod chunkmap;
mod datapath;
pub mod dump;
mod durable;
pub mod error;
mod failure;
pub mod format;
mod groupsync;
mod identity;
pub mod inspect;
pub mod io;
mod lock;
mod memo;
mod memstore;
pub mod migrate;
mod open;
pub mod page;
pub mod pagecache;
pub mod pagestore;
pub mod phases;
pub mod seal;
mod share;
pub mod spacemap;
mod state;
pub mod store;
/// Test fakes (fault injection): for the crate's own tests, and with the
/// `testing` feature for its integration tests and benchmarks; not part of
/// the API.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree;
pub mod treemeta;
mod view2;
mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

pub use check::{CheckReport, Metadata, Problem, RepairReport, Undecoded};
pub use error::{PoolError, PoolErrorKind};
pub use format::VolumeKind;
pub use identity::random_bytes;
pub use memo::MemoCounts;
pub use volume::Volume;

use io::DataIo;
use lock::PoolLock;
use state::State;
use store::MetaStore;

/// Settings fixed (chunk size) or changeable (capacity, low water) for a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Chunk size in bytes: a power of two from 4 KiB to 1 MiB.
    pub chunk_size: u32,
    /// Maximum size of the data file in bytes (rounded down to chunks).
    pub capacity_bytes: u64,
    /// Percentage of capacity allocated at which a low-water event is raised.
    pub low_water_pct: u8,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 16 << 30,
            low_water_pct: 90,
        }
    }
}

/// How a pool is created and opened beyond [`PoolConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Metadata format of a new pool: [`format::CURRENT_FORMAT`] (2, one
    /// key per mapping) or [`format::TREE_FORMAT`] (3, the page tree).
    pub format: u32,
    /// Format 3: bytes of decoded metadata pages kept in memory.
    pub metadata_cache: u64,
    /// Format 3: leaves a delete job releases per step (one step holds the
    /// state lock; a commit follows every few steps).
    pub delete_step: usize,
    /// Leave the unwritten rest of a chunk written partially past the data
    /// file's end a hole instead of preallocating it (module docs, "Host
    /// space"): host space in proportion to the bytes written, not to the
    /// chunks, at the price of overwrites that may find the host file
    /// system full. Default `false` (preallocate).
    pub sparse_data: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            format: format::CURRENT_FORMAT,
            metadata_cache: pagestore::DEFAULT_METADATA_CACHE,
            delete_step: treemeta::DELETE_STEP,
            sparse_data: false,
        }
    }
}

/// One catalog entry as reported by [`Pool::list_volumes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Name.
    pub name: String,
    /// Volume or snapshot.
    pub kind: VolumeKind,
    /// Logical (provisioned) size in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Bytes of chunks mapped by this volume (shared chunks count fully).
    pub allocated_bytes: u64,
    /// Name of the volume or snapshot it was made from, if known and alive.
    pub origin: Option<String>,
    /// Its identity ([`Pool::volume_identity`]), if one is stored yet.
    pub identity: Option<[u8; format::IDENT_LEN]>,
}

/// Space usage of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Maximum number of chunks.
    pub capacity_chunks: u64,
    /// Chunks referenced by at least one volume or snapshot.
    pub allocated_chunks: u64,
    /// `capacity_chunks - allocated_chunks`.
    pub free_chunks: u64,
    /// Low-water mark in percent.
    pub low_water_pct: u8,
    /// Per volume: allocated vs provisioned bytes.
    pub volumes: Vec<VolumeInfo>,
}

impl PoolUsage {
    /// Allocation is at or above the low-water mark (the rule the pool
    /// raises its low-water event by).
    pub fn above_low_water(&self) -> bool {
        state::past_low_water(
            self.allocated_chunks,
            self.capacity_chunks,
            self.low_water_pct,
        )
    }
}

/// A thin pool. Cheap to clone (an `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("dir", &self.inner.dir)
            .field("chunk_size", &self.inner.chunk_size)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    dir: Option<PathBuf>,
    store: Arc<dyn MetaStore>,
    data: Box<dyn DataIo>,
    chunk_size: u64,
    /// `chunk_size` as the superblock holds it (and as a buffer length).
    chunk_bytes: u32,
    chunk_shift: u32,
    /// Metadata format (2 or 3).
    format: u32,
    state: Mutex<State>,
    /// Format 3: the mapping memo of `state`'s `TreeMeta`, read by the data
    /// path without the state mutex (`memo`).
    memo: Option<Arc<memo::MapMemo>>,
    commit: Mutex<()>,
    /// Shares data syncs between concurrent FUA writes.
    group_sync: groupsync::GroupSync,
    gates: Mutex<HashMap<u64, Arc<RwLock<()>>>>,
    /// Sequence number of the last commit (also in sled and the seal).
    seq: std::sync::atomic::AtomicU64,
    open: Mutex<HashMap<u64, Vec<Weak<Volume>>>>,
    /// Volume identities read or created so far, by volume id. Taken
    /// before `state`, never while holding it.
    idents: Mutex<HashMap<u64, [u8; format::IDENT_LEN]>>,
    /// Chunks from the open's high-water mark up to this one have host
    /// space preallocated (see `datapath`).
    preallocated_to: Mutex<u64>,
    /// [`PoolOptions::sparse_data`]: partial fresh chunks not preallocated.
    sparse_data: bool,
    /// Set by the first sync error (see [`failure`]).
    failed: std::sync::OnceLock<failure::Failure>,
    /// Durations of [`Pool::flush`].
    commit_latency: crate::latency::LatencyHistogram,
    /// Phases of the last commit and snapshot ([`phases`]).
    phases: phases::Phases,
    /// A thread runs the delete jobs (`Pool::spawn_delete_worker`).
    delete_worker: std::sync::atomic::AtomicBool,
    _lock: Option<PoolLock>,
}

/// Uncommitted changes beyond which a write commits on its own.
const DIRTY_LIMIT: usize = 1 << 16;

pub(crate) fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    fn from_parts(
        dir: Option<PathBuf>,
        store: Arc<dyn MetaStore>,
        data: Box<dyn DataIo>,
        st: State,
        seq: u64,
        pool_lock: Option<PoolLock>,
        opts: &PoolOptions,
    ) -> Pool {
        let chunk_size = u64::from(st.sb.chunk_size);
        let fresh_from = st.fresh_from;
        Pool {
            inner: Arc::new(Inner {
                dir,
                store,
                data,
                chunk_size,
                chunk_bytes: st.sb.chunk_size,
                chunk_shift: chunk_size.trailing_zeros(),
                format: if st.t3.is_some() {
                    format::TREE_FORMAT
                } else {
                    format::LEGACY_FORMAT
                },
                memo: st.t3.as_ref().map(|t| t.memo_reader()),
                state: Mutex::new(st),
                commit: Mutex::new(()),
                group_sync: groupsync::GroupSync::default(),
                gates: Mutex::new(HashMap::new()),
                seq: std::sync::atomic::AtomicU64::new(seq),
                open: Mutex::new(HashMap::new()),
                idents: Mutex::new(HashMap::new()),
                preallocated_to: Mutex::new(fresh_from),
                sparse_data: opts.sparse_data,
                failed: std::sync::OnceLock::new(),
                commit_latency: crate::latency::LatencyHistogram::default(),
                phases: phases::Phases::default(),
                delete_worker: std::sync::atomic::AtomicBool::new(false),
                _lock: pool_lock,
            }),
        }
    }

    /// The pool directory (None for pools on test stores).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.inner.dir.as_deref()
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.inner.chunk_bytes
    }

    fn state(&self) -> MutexGuard<'_, State> {
        guard(&self.inner.state)
    }

    /// How many times allocation has risen to the low-water mark since the
    /// pool was opened (a pool opened past the mark starts at 0): a watcher
    /// that remembers the last value sees each crossing once.
    pub fn low_water_crossings(&self) -> u64 {
        self.state()
            .low_water_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn gate(&self, id: u64) -> Arc<RwLock<()>> {
        guard(&self.inner.gates).entry(id).or_default().clone()
    }

    /// Makes every acknowledged write and every metadata change durable
    /// (the commit described in the module docs).
    pub fn flush(&self) -> Result<(), PoolError> {
        let asked = std::time::Instant::now();
        let _c = guard(&self.inner.commit);
        self.flush_timed(asked, true)
    }

    /// Makes every metadata change durable, syncing the data file only if
    /// the changes need it (they map a chunk or raise the data file's
    /// length: `Batch::needs_data_sync`). For the commits of deletes: they
    /// must not wait for the writeback of other volumes' overwrites, which
    /// only a flush asks to be durable.
    pub(crate) fn commit_metadata(&self) -> Result<(), PoolError> {
        let asked = std::time::Instant::now();
        let _c = guard(&self.inner.commit);
        self.flush_timed(asked, false)
    }

    /// How long the pool's commits took (every [`Pool::flush`], and the
    /// commits of write-through and FUA writes), from taking the pending
    /// changes to their durability.
    pub fn commit_latency(&self) -> crate::latency::HistogramSnapshot {
        self.inner.commit_latency.snapshot()
    }

    /// [`Pool::flush`] for a caller that holds the commit lock.
    pub(crate) fn flush_locked(&self) -> Result<(), PoolError> {
        self.flush_timed(std::time::Instant::now(), true)
    }

    /// The commit, for a caller holding the commit lock since asking for
    /// it at `asked`; its phases are recorded ([`Pool::last_commit_phases`]).
    /// `data`: sync the data file even if the batch does not need it (the
    /// caller asked for every acknowledged write to be durable).
    fn flush_timed(&self, asked: std::time::Instant, data: bool) -> Result<(), PoolError> {
        let start = std::time::Instant::now();
        let mut ph = phases::CommitPhases {
            commit_lock_wait: start - asked,
            ..Default::default()
        };
        let batch = self.state().take_batch();
        ph.take = start.elapsed();
        let sync_data = data || batch.needs_data_sync;
        let res = self.inner.commit_batch(&batch, &mut ph, sync_data);
        self.inner.commit_latency.record(start.elapsed());
        ph.total = asked.elapsed();
        self.inner.phases.set_commit(ph);
        let mut st = self.state();
        match res {
            Ok(()) => {
                st.batch_committed(batch, sync_data);
                Ok(())
            }
            Err(e) => {
                st.restore_batch(batch);
                Err(e)
            }
        }
    }

    /// Flushes and releases the pool (also done, best effort, on drop of the
    /// last handle).
    pub fn close(self) -> Result<(), PoolError> {
        self.flush()
    }

    /// Space usage, pool-wide and per volume.
    pub fn usage(&self) -> Result<PoolUsage, PoolError> {
        let volumes = self.list_volumes()?;
        let st = self.state();
        Ok(PoolUsage {
            chunk_size: st.sb.chunk_size,
            capacity_chunks: st.sb.capacity_chunks,
            allocated_chunks: st.used_chunks(),
            free_chunks: st.sb.capacity_chunks.saturating_sub(st.used_chunks()),
            low_water_pct: st.sb.low_water_pct,
            volumes,
        })
    }

    /// Grows (or shrinks down to the high-water mark) the pool's capacity.
    pub fn set_capacity(&self, capacity_bytes: u64) -> Result<(), PoolError> {
        self.writable()?;
        {
            let mut st = self.state();
            let chunks = capacity_bytes / self.inner.chunk_size;
            if chunks < st.sb.hwm {
                return Err(PoolError::invalid_argument(format!(
                    "capacity {capacity_bytes} is below the {} chunks already handed out",
                    st.sb.hwm
                )));
            }
            st.sb.capacity_chunks = chunks;
            if let Some(t) = st.t3.as_mut() {
                t.grow(chunks);
            }
            st.dirty_super();
            st.update_low_water();
        }
        self.flush()
    }

    /// Changes the low-water mark (percent of capacity allocated).
    pub fn set_low_water(&self, pct: u8) -> Result<(), PoolError> {
        self.writable()?;
        if pct > 100 {
            return Err(PoolError::invalid_argument(format!(
                "low water {pct}% > 100%"
            )));
        }
        {
            let mut st = self.state();
            st.sb.low_water_pct = pct;
            st.dirty_super();
            st.update_low_water();
        }
        self.flush()
    }

    /// Bytes of metadata on disk (sled) — for space accounting.
    pub fn metadata_bytes(&self) -> u64 {
        self.inner.store.size_bytes()
    }

    /// Lookups of a chunk's mapping the mapping memo answered and lookups
    /// that went to the tree, since the pool was opened (`None`: a
    /// format-2 pool, which has no memo).
    pub fn memo_counts(&self) -> Option<MemoCounts> {
        self.inner.memo.as_ref().map(|m| m.counts())
    }

    /// Bytes of memory the in-memory metadata uses: mapping tables,
    /// reference counts, free lists (format 3: the page tiers, the mapping
    /// memo's whole table, the space map).
    pub fn metadata_memory_bytes(&self) -> u64 {
        let st = self.state();
        if let Some(t) = &st.t3 {
            return (t.pages.memory_bytes() + t.memo_bytes()) as u64 + t.space.capacity();
        }
        let maps: u64 = st.maps.values().map(|m| m.memory_bytes()).sum();
        maps + st.refs.capacity() as u64 * 4
            + (st.free.capacity() + st.pending_free.capacity()) as u64 * 8
    }
}

impl Inner {
    /// Steps 2 and 3 of the commit: data durable, then metadata (with the
    /// next sequence number) and, beside it, the seal naming the commit
    /// before. A failed sync fails the pool
    /// ([`failure`]): it is never retried.
    fn commit_batch(
        &self,
        batch: &state::Batch,
        ph: &mut phases::CommitPhases,
        sync_data: bool,
    ) -> Result<(), PoolError> {
        use std::sync::atomic::Ordering;
        use std::time::Instant;
        self.writable()?;
        let t = Instant::now();
        self.data
            .grow_to(batch.hwm * self.chunk_size)
            .map_err(|e| PoolError::io("growing the data file", e))?;
        if sync_data {
            self.data
                .sync_data()
                .map_err(|e| self.fail_io("syncing the data file", e))?;
        }
        ph.data_sync = t.elapsed();
        if batch.changes.is_empty() {
            return Ok(());
        }
        let prev = self.seq.load(Ordering::Acquire);
        let seq = prev + 1;
        let mut changes = batch.changes.clone();
        changes.push((format::KEY_SEQ.to_vec(), Some(seq.to_be_bytes().to_vec())));
        // The seal takes the sequence number of the commit before, durable
        // already, and the data length step 2 made durable: so it is written
        // and synced beside sled's commit, not after it (one sync less on a
        // commit's path), and never names a commit sled may not hold.
        let seal = self.dir.as_ref().map(|dir| {
            (
                dir,
                seal::Seal {
                    format: self.format,
                    seq: prev,
                    data_len: batch.hwm * self.chunk_size,
                    closed_crc: None,
                },
            )
        });
        let (stored, sealed) = std::thread::scope(|s| {
            let sealing = seal.map(|(dir, seal)| {
                // timed from the spawn: a thread that waits for a CPU
                // delays the commit as much as a slow sync
                let t = Instant::now();
                s.spawn(move || (seal.write(dir, true), t.elapsed()))
            });
            let t = Instant::now();
            let stored = self.store.commit(changes).map(|()| t.elapsed());
            let sealed = sealing.map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Err(std::io::Error::other("the seal's writer panicked")),
                        std::time::Duration::ZERO,
                    )
                })
            });
            (stored, sealed)
        });
        let store = stored.map_err(|e| self.fail(e))?;
        ph.meta_sync = self.store.last_sync().min(store);
        ph.store_apply = store - ph.meta_sync;
        self.seq.store(seq, Ordering::Release);
        if let Some((res, took)) = sealed {
            ph.seal = took;
            res.map_err(|e| self.fail_io("writing the pool seal", e))?;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _c = guard(&self.commit);
        let batch = guard(&self.state).take_batch();
        let hwm = batch.hwm;
        if let Err(e) = self.commit_batch(&batch, &mut phases::CommitPhases::default(), true) {
            tracing::error!(error = %e, "flushing the pool on close failed; not sealing it");
            return;
        }
        let Some(dir) = &self.dir else { return };
        if let Err(e) = self.store.close() {
            tracing::error!(error = %e, "closing the metadata failed; not sealing the pool");
            return;
        }
        let sealed = seal::meta_crc(&dir.join(open::META_DIR)).and_then(|crc| {
            seal::Seal {
                format: self.format,
                seq: self.seq.load(std::sync::atomic::Ordering::Acquire),
                data_len: hwm * self.chunk_size,
                closed_crc: Some(crc),
            }
            .write(dir, true)
        });
        if let Err(e) = sealed {
            tracing::error!(error = %e, "sealing the pool on close failed");
        }
    }
}
