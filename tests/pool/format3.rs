//! Format 3 (page tree, issue 13) wired into the pool: snapshots share the
//! tree (O(1) keys per snapshot), data and reference counts survive reopen,
//! a delete cut by a crash resumes at the next open.

use std::time::{Duration, Instant};

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::store::MetaStore;
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

const CHUNK: u32 = 4096;

fn cfg(chunks: u64) -> PoolConfig {
    PoolConfig {
        chunk_size: CHUNK,
        capacity_bytes: chunks * u64::from(CHUNK),
        low_water_pct: 100,
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        format: 3,
        ..PoolOptions::default()
    }
}

fn block(tag: u64) -> Vec<u8> {
    let mut b = vec![0u8; CHUNK as usize];
    for (i, x) in b.chunks_mut(8).enumerate() {
        x.copy_from_slice(&(tag * 1_000_003 + i as u64).to_le_bytes());
    }
    b
}

fn keys_with(store: &MemStore, tag: u8) -> usize {
    store
        .load_all()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.first() == Some(&tag) && k.len() == 9)
        .count()
}

/// Writes chunk `i` of `name` with `tag(i)` for i in `range`.
fn fill(pool: &Pool, name: &str, range: std::ops::Range<u64>, tag: impl Fn(u64) -> u64) {
    let v = pool.open_volume(name).unwrap();
    for i in range {
        v.write(i, &block(tag(i)), false).unwrap();
    }
    pool.flush().unwrap();
}

fn assert_reads(pool: &Pool, name: &str, range: std::ops::Range<u64>, tag: impl Fn(u64) -> u64) {
    let v = pool.open_volume(name).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    for i in range {
        v.read(i, &mut buf).unwrap();
        assert!(buf == block(tag(i)), "{name}: chunk {i} differs");
    }
}

#[test]
fn snapshot_shares_the_tree_and_copies_on_write() {
    let store = MemStore::new();
    let data = CrashIo::new();
    let pool = Pool::create_with_opts(
        &cfg(8192),
        Box::new(store.clone()),
        Box::new(data.clone()),
        &opts(),
    )
    .unwrap();
    pool.create_volume("v", 2000 * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..2000, |i| i);
    assert_eq!(keys_with(&store, b'M'), 0, "format 3 writes no M keys");
    let pages = keys_with(&store, b'P');
    assert!(pages >= 5, "{pages} pages for 2,000 mappings at depth 2");
    let before = store.load_all().unwrap();
    pool.snapshot("v", "s").unwrap();
    let after = store.load_all().unwrap();
    let changed = after.iter().filter(|kv| !before.contains(kv)).count();
    assert!(changed <= 6, "a snapshot changed {changed} keys");
    assert_eq!(keys_with(&store, b'P'), pages, "a snapshot copies no page");
    assert_eq!(pool.usage().unwrap().allocated_chunks, 2000);
    // overwrite half of the volume: the snapshot keeps the old data
    fill(&pool, "v", 0..1000, |i| i + 7777);
    assert_reads(&pool, "s", 0..2000, |i| i);
    assert_reads(&pool, "v", 0..1000, |i| i + 7777);
    assert_reads(&pool, "v", 1000..2000, |i| i);
    assert_eq!(pool.usage().unwrap().allocated_chunks, 3000);
    assert!(pool.check().unwrap().is_clean());
    pool.delete_volume("s").unwrap();
    assert_eq!(pool.usage().unwrap().allocated_chunks, 2000);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    pool.close().unwrap();
    let pool = Pool::open_with(Box::new(store), Box::new(data)).unwrap();
    assert_reads(&pool, "v", 0..1000, |i| i + 7777);
    assert_reads(&pool, "v", 1000..2000, |i| i);
    assert_eq!(pool.usage().unwrap().allocated_chunks, 2000);
}

#[test]
fn a_directory_pool_of_format_3_reopens_with_a_small_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let small = PoolOptions {
        metadata_cache: 64 << 10,
        ..opts()
    };
    let pool = Pool::create_opts(&dir, &cfg(16384), &small).unwrap();
    pool.create_volume("v", 6000 * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..6000, |i| i * 3);
    pool.snapshot("v", "s").unwrap();
    pool.clone_snapshot("s", "c").unwrap();
    fill(&pool, "c", 100..200, |i| i + 1);
    pool.close().unwrap();
    let seal = std::fs::read_to_string(dir.join("meta.seal")).unwrap_or_default();
    assert!(seal.contains("format 3\n"), "seal: {seal}");
    let pool = Pool::open_opts(&dir, &small).unwrap();
    assert_reads(&pool, "v", 0..6000, |i| i * 3);
    assert_reads(&pool, "s", 0..6000, |i| i * 3);
    assert_reads(&pool, "c", 100..200, |i| i + 1);
    assert_reads(&pool, "c", 200..6000, |i| i * 3);
    assert_eq!(pool.usage().unwrap().allocated_chunks, 6100);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// A pool of 16,384 chunks on a [`MemStore`] and a [`CrashIo`] whose
/// delete jobs free one leaf per step; the options it was made with.
fn stepping_pool() -> (Pool, MemStore, CrashIo, PoolOptions) {
    let store = MemStore::new();
    let (pool, data, o) = stepping_pool_on(store.clone(), 16384);
    (pool, store, data, o)
}

/// A pool of `chunks` chunks on `store` and a [`CrashIo`] whose delete jobs
/// free one leaf per step; the options it was made with.
fn stepping_pool_on(store: impl MetaStore + 'static, chunks: u64) -> (Pool, CrashIo, PoolOptions) {
    let data = CrashIo::new();
    let o = PoolOptions {
        delete_step: 1,
        ..opts()
    };
    let pool =
        Pool::create_with_opts(&cfg(chunks), Box::new(store), Box::new(data.clone()), &o).unwrap();
    (pool, data, o)
}

/// [`stepping_pool`] with volume "v" of 6,000 chunks (chunk `i` holds
/// `block(i)`) and volume "w" of 16 (`block(i + 5)`), all written.
fn stepping_pool_v_and_w() -> (Pool, MemStore, CrashIo, PoolOptions) {
    let (pool, store, data, o) = stepping_pool();
    pool.create_volume("v", 6000 * u64::from(CHUNK), CHUNK)
        .unwrap();
    pool.create_volume("w", 16 * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..6000, |i| i);
    fill(&pool, "w", 0..16, |i| i + 5);
    (pool, store, data, o)
}

#[test]
fn a_delete_cut_by_a_crash_resumes_at_open() {
    let (pool, store, data, o) = stepping_pool_v_and_w();
    let mut image = None;
    pool.delete_volume_with_progress("v", &mut |_, _| {
        if image.is_none() {
            image = Some((store.crash_image(), data.crash_image(&mut || true)));
        }
    })
    .unwrap();
    assert_eq!(pool.usage().unwrap().allocated_chunks, 16);
    let (s2, d2) = image.expect("the delete committed between steps");
    assert!(
        keys_with(&s2, b'D') == 1,
        "the crash image holds the delete job"
    );
    let pool = Pool::open_with_opts(Box::new(s2.clone()), Box::new(d2), &o).unwrap();
    assert!(pool.list_volumes().unwrap().iter().all(|v| v.name != "v"));
    assert_reads(&pool, "w", 0..16, |i| i + 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.usage().unwrap().allocated_chunks > 16 {
        assert!(
            Instant::now() < deadline,
            "the resumed delete did not finish"
        );
        std::thread::yield_now();
    }
    // the worker's last commit may still be running: flush waits for it
    pool.flush().unwrap();
    assert_eq!(keys_with(&s2, b'D'), 0);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_reads(&pool, "w", 0..16, |i| i + 5);
}

/// A [`MemStore`] whose page reads fail while `broken` is set.
#[derive(Clone)]
struct BrokenPages {
    inner: MemStore,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl MetaStore for BrokenPages {
    fn load_all(&self) -> Result<tcmud_core::pool::store::Entries, tcmud_core::pool::PoolError> {
        self.inner.load_all()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, tcmud_core::pool::PoolError> {
        if key.first() == Some(&b'P') && self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(tcmud_core::pool::PoolError::io(
                "reading a page (test)",
                std::io::Error::other("injected"),
            ));
        }
        self.inner.get(key)
    }
    fn commit(
        &self,
        changes: Vec<tcmud_core::pool::store::Change>,
    ) -> Result<(), tcmud_core::pool::PoolError> {
        self.inner.commit(changes)
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
}

/// A delete whose step cannot read a page of the tree fails the pool: the
/// catalog change and the half-released leaf stay uncommitted (no later
/// commit, another volume's flush included, makes them durable), and the
/// store still holds the volume whole.
#[test]
fn a_delete_step_that_cannot_read_a_page_fails_the_pool_uncommitted() {
    let (pool, store, data, o) = stepping_pool_v_and_w();
    pool.close().unwrap();
    let pages = BrokenPages {
        inner: store.clone(),
        broken: Default::default(),
    };
    // reopened: v's leaves are not in memory, the delete step reads them
    let pool = Pool::open_with_opts(Box::new(pages.clone()), Box::new(data.clone()), &o).unwrap();
    pages
        .broken
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(pool.delete_volume("v").is_err());
    pages
        .broken
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(pool.writable().is_err(), "the pool is failed");
    let w = pool.open_volume("w").unwrap();
    let _ = w.write(0, &block(99), false);
    let _ = w.flush();
    drop(w);
    drop(pool);
    let pool = Pool::open_with_opts(Box::new(store.clone()), Box::new(data.clone()), &o).unwrap();
    assert!(pool.list_volumes().unwrap().iter().any(|v| v.name == "v"));
    assert_reads(&pool, "v", 0..6000, |i| i);
    assert_reads(&pool, "w", 0..16, |i| i + 5);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// Waits (up to a minute) until the pool's allocated chunks are `n`.
fn wait_allocated(pool: &Pool, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.usage().unwrap().allocated_chunks != n {
        assert!(Instant::now() < deadline, "{what}: did not finish");
        std::thread::yield_now();
    }
}

/// A delete in the background returns once the volume is gone (durably);
/// a thread frees its chunks step by step; two deletes in a row both
/// finish. (A job cut by a close or a crash resumes at open:
/// `a_delete_cut_by_a_crash_resumes_at_open`.)
#[test]
fn a_delete_in_the_background_frees_everything() {
    let (pool, store, data, o) = stepping_pool();
    for (name, n) in [("v", 6000u64), ("x", 3000), ("w", 16)] {
        pool.create_volume(name, n * u64::from(CHUNK), CHUNK)
            .unwrap();
    }
    fill(&pool, "v", 0..6000, |i| i);
    fill(&pool, "x", 0..3000, |i| i + 1);
    fill(&pool, "w", 0..16, |i| i + 5);
    pool.flush().unwrap();
    assert_eq!(pool.delete_volume_in_background("v").unwrap(), 6000);
    // gone from the catalog, durably, when the call returns
    let image = Pool::open_with_opts(
        Box::new(store.crash_image()),
        Box::new(data.crash_image(&mut || true)),
        &o,
    )
    .unwrap();
    assert!(image.list_volumes().unwrap().iter().all(|v| v.name != "v"));
    drop(image);
    assert_eq!(pool.delete_volume_in_background("x").unwrap(), 3000);
    wait_allocated(&pool, 16, "two deletes in the background");
    pool.flush().unwrap();
    assert_eq!(keys_with(&store, b'D'), 0, "no delete job left");
    assert_reads(&pool, "w", 0..16, |i| i + 5);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// A [`MemStore`] that counts its commits.
#[derive(Clone)]
struct CountingStore {
    inner: MemStore,
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingStore {
    /// Commits so far.
    fn count(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A stepping pool of `chunks` chunks on a [`CountingStore`], with volume
/// "v" of `mapped` chunks, each written.
fn counting_pool(chunks: u64, mapped: u64) -> (Pool, CountingStore) {
    let store = CountingStore {
        inner: MemStore::new(),
        commits: Default::default(),
    };
    let (pool, _, _) = stepping_pool_on(store.clone(), chunks);
    pool.create_volume("v", mapped * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..mapped, |i| i);
    (pool, store)
}

impl MetaStore for CountingStore {
    fn load_all(&self) -> Result<tcmud_core::pool::store::Entries, tcmud_core::pool::PoolError> {
        self.inner.load_all()
    }
    fn commit(
        &self,
        changes: Vec<tcmud_core::pool::store::Change>,
    ) -> Result<(), tcmud_core::pool::PoolError> {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.commit(changes)
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
}

/// A delete job commits by time (at most every 100 ms, plus its first and
/// last commits), not every few steps: each commit's syncs stall the other
/// volumes' writes, so a fast delete must not commit often. (On a machine
/// slow enough to take seconds over these steps the bound grows with the
/// time taken, and the check weakens; it never fails for slowness.)
#[test]
fn a_delete_commits_by_time_not_by_steps() {
    let (pool, store) = counting_pool(40_000, 32_768);
    pool.flush().unwrap();
    let before = store.count();
    let mut steps = 0u64;
    let t = Instant::now();
    pool.delete_volume_with_progress("v", &mut |d, _| steps = d)
        .unwrap();
    let took = t.elapsed();
    let commits = store.count() - before;
    assert_eq!(pool.usage().unwrap().allocated_chunks, 0);
    assert!(steps >= 60, "{steps} steps: too few to tell");
    let bound = 3 + u64::try_from(took.as_millis() / 100).unwrap_or(u64::MAX - 3);
    assert!(
        commits <= bound,
        "{commits} commits for {steps} steps in {took:?} (at most {bound})"
    );
}

/// Deleting a snapshot that shares its whole tree takes one step (one
/// count of the shared root dropped), and that step goes with the commit
/// that takes the snapshot out of the catalog: one commit, in the
/// foreground and in the background (each commit's syncs stall the writes
/// of the other volumes beside it). A delete of more than one step still
/// commits the catalog first (`a_delete_cut_by_a_crash_resumes_at_open`).
#[test]
fn deleting_a_snapshot_that_shares_its_tree_is_one_commit() {
    let (pool, store) = counting_pool(4096, 2048);
    let commits = || store.count();
    for background in [false, true] {
        pool.snapshot("v", "s").unwrap();
        pool.flush().unwrap();
        let before = commits();
        if background {
            pool.delete_volume_in_background("s").unwrap();
        } else {
            pool.delete_volume("s").unwrap();
        }
        pool.flush().unwrap();
        assert_eq!(
            commits() - before,
            1,
            "commits of a one-step delete (background: {background})"
        );
        assert!(pool.list_volumes().unwrap().iter().all(|v| v.name != "s"));
    }
    assert_eq!(pool.usage().unwrap().allocated_chunks, 2048);
    assert_reads(&pool, "v", 0..2048, |i| i);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// A volume of 1 EiB (2^48 chunks: a tree of depth 6) costs pages only on
/// the paths written; snapshots and clones of it share them; the
/// allocation map skips its unwritten span without visiting it.
#[test]
fn a_sparse_huge_volume_costs_only_its_written_paths() {
    let store = MemStore::new();
    let data = CrashIo::new();
    let pool = Pool::create_with_opts(
        &cfg(64),
        Box::new(store.clone()),
        Box::new(data.clone()),
        &opts(),
    )
    .unwrap();
    let size = 1u64 << 60;
    pool.create_volume("huge", size, CHUNK).unwrap();
    let last = size / u64::from(CHUNK) - 1;
    let spots = [0, 1 << 30, last];
    let v = pool.open_volume("huge").unwrap();
    for (i, &c) in spots.iter().enumerate() {
        v.write(c, &block(i as u64), false).unwrap();
    }
    pool.flush().unwrap();
    // three paths of six pages, the root shared: at most 16 pages
    let pages = keys_with(&store, b'P');
    assert!(pages <= 16, "{pages} pages");
    pool.snapshot("huge", "snap").unwrap();
    pool.clone_snapshot("snap", "copy").unwrap();
    assert_eq!(
        keys_with(&store, b'P'),
        pages,
        "snapshot and clone copy no page"
    );
    let c = pool.open_volume("copy").unwrap();
    c.write(last, &block(99), false).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    c.read(last, &mut buf).unwrap();
    assert!(buf == block(99));
    v.read(last, &mut buf).unwrap();
    assert!(buf == block(2));
    // the allocation map: mapped at 0, then one run of holes up to 2^30
    let a = v.allocation(1, u64::MAX).unwrap();
    assert!(!a.mapped);
    assert_eq!(a.blocks, (1 << 30) - 1);
    drop((v, c));
    pool.delete_volume("snap").unwrap();
    pool.delete_volume("copy").unwrap();
    assert_eq!(pool.usage().unwrap().allocated_chunks, 3);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(keys_with(&store, b'P') <= pages);
}

#[test]
fn repeated_snapshots_and_clones_between_writes_keep_reference_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let pool = Pool::create_opts(&dir, &cfg(4096), &opts()).unwrap();
    pool.create_volume("v", 64 * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..64, |i| i);
    for round in 0..20u64 {
        pool.snapshot("v", &format!("s{round}")).unwrap();
        pool.clone_snapshot(&format!("s{round}"), &format!("c{round}"))
            .unwrap();
        let r = pool.check().unwrap();
        assert!(
            r.is_clean(),
            "after snapshot+clone {round}: {:?}",
            r.problems
        );
        fill(&pool, "v", (round * 3) % 64..(round * 3) % 64 + 5, |i| {
            i + 1000 * round
        });
        let r = pool.check().unwrap();
        assert!(r.is_clean(), "after writes {round}: {:?}", r.problems);
    }
    pool.close().unwrap();
    let insp = tcmud_core::pool::inspect::inspect(&dir, &mut |_, _| {}).unwrap();
    assert!(
        insp.report.is_clean(),
        "read-only check: {:?}",
        insp.report.problems
    );
    let pool = Pool::open_opts(&dir, &opts()).unwrap();
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "after reopen: {:?}", r.problems);
}

/// After a reopen, a write to a volume whose pages a snapshot or a clone
/// shares goes to a copy: the pool tells from the catalog (a volume with
/// an origin) that page counts must be read, without reading them at open.
#[test]
fn writes_after_reopen_leave_shared_pages_alone() {
    let store = MemStore::new();
    let data = CrashIo::new();
    let pool = Pool::create_with_opts(
        &cfg(16384),
        Box::new(store.clone()),
        Box::new(data.clone()),
        &opts(),
    )
    .unwrap();
    pool.create_volume("v", 3000 * u64::from(CHUNK), CHUNK)
        .unwrap();
    fill(&pool, "v", 0..3000, |i| i);
    pool.snapshot("v", "s").unwrap();
    pool.close().unwrap();
    let reopen =
        || Pool::open_with_opts(Box::new(store.clone()), Box::new(data.clone()), &opts()).unwrap();
    let pool = reopen();
    fill(&pool, "v", 0..3000, |i| i + 1);
    assert_reads(&pool, "s", 0..3000, |i| i);
    assert_reads(&pool, "v", 0..3000, |i| i + 1);
    // a clone of the snapshot, the origin volume and the snapshot deleted:
    // the clone alone holds the tree, its pages are counted once again
    pool.clone_snapshot("s", "c").unwrap();
    pool.delete_volume("v").unwrap();
    pool.close().unwrap();
    let pool = reopen();
    fill(&pool, "c", 0..1500, |i| i + 2);
    assert_reads(&pool, "s", 0..3000, |i| i);
    assert_reads(&pool, "c", 0..1500, |i| i + 2);
    assert_reads(&pool, "c", 1500..3000, |i| i);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// Every change of a mapping reaches reads that came before it: the
/// mapping memo (format 3) never answers with a mapping the tree no longer
/// has. Each step reads first (so the memo holds the chunk), then changes
/// the mapping, then reads through both read paths.
#[test]
fn reads_see_every_mapping_change_after_a_read() {
    let pool = Pool::create_with_opts(
        &cfg(4096),
        Box::new(MemStore::new()),
        Box::new(CrashIo::new()),
        &opts(),
    )
    .unwrap();
    pool.create_volume("v", 64 * u64::from(CHUNK), CHUNK)
        .unwrap();
    let v = pool.open_volume("v").unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    let read_both = |v: &tcmud_core::pool::Volume, i: u64, want: &[u8], what: &str| {
        let mut b = vec![0u8; CHUNK as usize];
        v.read(i, &mut b).unwrap();
        assert!(b == want, "{what}: read of chunk {i} is stale");
        let mut b = vec![1u8; CHUNK as usize];
        if v.read_nowait(i, &mut b).unwrap() {
            assert!(b == want, "{what}: read_nowait of chunk {i} is stale");
        }
    };
    let zeros = vec![0u8; CHUNK as usize];
    // unmapped, then written
    v.read(3, &mut buf).unwrap();
    v.write(3, &block(1), false).unwrap();
    read_both(&v, 3, &block(1), "first write");
    // overwritten in place
    v.write(3, &block(2), false).unwrap();
    read_both(&v, 3, &block(2), "overwrite");
    // after a snapshot: read, then copy-on-write to a new chunk
    pool.snapshot("v", "s").unwrap();
    read_both(&v, 3, &block(2), "after snapshot");
    v.write(3, &block(3), false).unwrap();
    read_both(&v, 3, &block(3), "copy on write");
    let s = pool.open_volume_read_only("s").unwrap();
    read_both(
        &s,
        3,
        &block(2),
        "snapshot after the origin's copy on write",
    );
    // unmapped again
    v.unmap(3, 1).unwrap();
    read_both(&v, 3, &zeros, "unmap");
    // a volume deleted and created again under the same name
    v.write(5, &block(4), false).unwrap();
    read_both(&v, 5, &block(4), "before delete");
    drop(v);
    pool.delete_volume("v").unwrap();
    pool.create_volume("v", 64 * u64::from(CHUNK), CHUNK)
        .unwrap();
    let v = pool.open_volume("v").unwrap();
    read_both(&v, 5, &zeros, "recreated volume");
    assert!(pool.check().unwrap().is_clean());
}
