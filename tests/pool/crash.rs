//! Crash test: random workloads with periodic flushes, cut at random points.
//!
//! The data file is a [`CrashIo`] that keeps, at a crash, everything synced
//! plus a random subset of the unsynced writes; the metadata is a
//! [`MemStore`] whose commits are atomic and durable (what sled guarantees
//! for what it flushed). Crash images are taken between operations and
//! inside commits (data synced, metadata not yet committed). Each image is
//! opened and must show, for every block, the value it had at the last
//! completed flush or a value written since — never another volume's data
//! or freed data — and check clean. `TCMUD_CRASH_POINTS=N` raises the number
//! of crash points (default 1200). A second test takes images of a real pool
//! directory (sled + data file) while it is open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tcmud_core::backend::{BackendError, BlockBackend};

use crate::util::narrow::ix;
use tcmud_core::pool::store::{Change, Entries, MetaStore};
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolError, PoolOptions};

const BS32: u32 = 512;
const BS: u64 = BS32 as u64;
const BS_LEN: usize = BS32 as usize;
const CHUNK32: u32 = 4096;
const CHUNK: u64 = CHUNK32 as u64;
const PER_CHUNK: u64 = CHUNK / BS;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

fn block_of(tag: u64) -> Vec<u8> {
    tag.to_le_bytes().repeat(BS_LEN / 8)
}

fn tag_of(b: &[u8]) -> Option<u64> {
    let tag = u64::from_le_bytes(b[..8].try_into().unwrap());
    (b == block_of(tag).as_slice()).then_some(tag)
}

#[derive(Clone)]
struct MVol {
    durable: Vec<u64>,
    since: Vec<Vec<u64>>,
    current: Vec<u64>,
    snapshot: bool,
}

impl MVol {
    fn new(blocks: usize, snapshot: bool, from: Option<&MVol>) -> MVol {
        let cur = from.map_or(vec![0; blocks], |m| m.current.clone());
        MVol {
            durable: cur.clone(),
            since: vec![Vec::new(); cur.len()],
            current: cur,
            snapshot,
        }
    }
    fn set(&mut self, b: usize, tag: u64) {
        self.current[b] = tag;
        self.since[b].push(tag);
    }
    fn flushed(&mut self) {
        self.durable = self.current.clone();
        self.since = vec![Vec::new(); self.current.len()];
    }
}

type Model = BTreeMap<String, MVol>;

fn all_flushed(m: &mut Model) {
    m.values_mut().for_each(MVol::flushed);
}

/// Called just before a commit is applied.
type Hook = Box<dyn FnMut() + Send>;

/// A [`MemStore`] that runs a hook just before each commit is applied.
#[derive(Clone)]
struct HookStore {
    inner: MemStore,
    hook: Arc<Mutex<Option<Hook>>>,
}

impl MetaStore for HookStore {
    fn load_all(&self) -> Result<Entries, PoolError> {
        self.inner.load_all()
    }
    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError> {
        // Held through the commit: whoever holds the hook mutex sees no
        // commit happen.
        let mut hook = self.hook.lock().unwrap();
        if let Some(h) = hook.as_mut() {
            h();
        }
        self.inner.commit(changes)
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
}

/// Opens a crash image and verifies it against the model. Returns the pool.
fn verify(pool: &Pool, model: &Model, ctx: &str) {
    let names: Vec<String> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        names,
        model.keys().cloned().collect::<Vec<_>>(),
        "{ctx}: catalog"
    );
    for (n, m) in model {
        let v = pool.open_volume(n).unwrap();
        let mut buf = vec![0u8; m.current.len() * BS_LEN];
        v.read(0, &mut buf).unwrap();
        for (b, blk) in buf.chunks(BS_LEN).enumerate() {
            let tag =
                tag_of(blk).unwrap_or_else(|| panic!("{ctx}: {n} block {b} is torn or foreign"));
            assert!(
                tag == m.durable[b] || m.since[b].contains(&tag),
                "{ctx}: {n} block {b} shows {tag:#x}; durable {:#x}, written since {:x?}",
                m.durable[b],
                m.since[b]
            );
        }
    }
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{ctx}: check: {:?}", r.problems);
}

fn trace(s: &str) {
    if std::env::var_os("TCMUD_CRASH_TRACE").is_some() {
        eprintln!("  {s}");
    }
}

struct Run {
    rng: Rng,
    pool: Pool,
    model: Model,
    next_tag: u64,
    next_name: u32,
}

impl Run {
    fn pick(&mut self, snapshot: Option<bool>) -> Option<String> {
        let names: Vec<&String> = self
            .model
            .iter()
            .filter(|(_, m)| snapshot.is_none_or(|s| m.snapshot == s))
            .map(|(n, _)| n)
            .collect();
        if names.is_empty() {
            return None;
        }
        Some(names[ix(self.rng.below(names.len() as u64))].clone())
    }

    fn name(&mut self, p: &str) -> String {
        self.next_name += 1;
        format!("{p}{}", self.next_name)
    }

    /// One random operation. Returns true for an explicit flush.
    fn step(&mut self) -> bool {
        let r = self.rng.below(100);
        match r {
            0..=49 => {
                let Some(n) = self.pick(Some(false)) else {
                    return false;
                };
                let nb = self.model[&n].current.len() as u64;
                // Within one chunk, so a failed write changes nothing.
                let lba = self.rng.below(nb);
                let room = PER_CHUNK - lba % PER_CHUNK;
                let blocks = 1 + self.rng.below(room.min(nb - lba));
                let fua = self.rng.chance(50);
                let mut buf = Vec::new();
                let mut tags = Vec::new();
                for _ in 0..blocks {
                    self.next_tag += 1;
                    tags.push(self.next_tag);
                    buf.extend(block_of(self.next_tag));
                }
                let res = self.pool.open_volume(&n).unwrap().write(lba, &buf, fua);
                trace(&format!(
                    "write {n} {lba}+{blocks} fua={fua} tags {:x?} -> {res:?}",
                    tags
                ));
                match res {
                    Ok(()) => {
                        let m = self.model.get_mut(&n).unwrap();
                        for (i, t) in tags.into_iter().enumerate() {
                            let b = ix(lba) + i;
                            m.set(b, t);
                            if fua {
                                m.durable[b] = t;
                                m.since[b].clear();
                            }
                        }
                    }
                    Err(BackendError::OutOfSpace) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            50..=64 => {
                let Some(n) = self.pick(Some(false)) else {
                    return false;
                };
                let nb = self.model[&n].current.len() as u64;
                let lba = self.rng.below(nb);
                let blocks = 1 + self.rng.below((nb - lba).min(3 * PER_CHUNK));
                self.pool
                    .open_volume(&n)
                    .unwrap()
                    .unmap(lba, blocks)
                    .unwrap();
                let m = self.model.get_mut(&n).unwrap();
                for b in lba..lba + blocks {
                    m.set(ix(b), 0);
                }
            }
            65..=79 => {
                self.pool.flush().unwrap();
                trace("flush");
                all_flushed(&mut self.model);
                return true;
            }
            80..=84 => {
                if self.model.len() >= 6 {
                    return false;
                }
                let n = self.name("v");
                let chunks = 2 + self.rng.below(8);
                self.pool.create_volume(&n, chunks * CHUNK, BS32).unwrap();
                all_flushed(&mut self.model);
                self.model
                    .insert(n, MVol::new(ix(chunks * PER_CHUNK), false, None));
            }
            85..=88 => {
                let Some(n) = self.pick(None) else {
                    return false;
                };
                if self.model.len() >= 6 {
                    return false;
                }
                let s = self.name("s");
                self.pool.snapshot(&n, &s).unwrap();
                trace(&format!("snapshot {n} -> {s}"));
                all_flushed(&mut self.model);
                let m = MVol::new(0, true, Some(&self.model[&n]));
                self.model.insert(s, m);
            }
            89..=91 => {
                let Some(n) = self.pick(Some(true)) else {
                    return false;
                };
                if self.model.len() >= 6 {
                    return false;
                }
                let c = self.name("c");
                self.pool.clone_snapshot(&n, &c).unwrap();
                trace(&format!("clone {n} -> {c}"));
                all_flushed(&mut self.model);
                let m = MVol::new(0, false, Some(&self.model[&n]));
                self.model.insert(c, m);
            }
            92..=95 => {
                let Some(n) = self.pick(None) else {
                    return false;
                };
                self.pool.delete_volume(&n).unwrap();
                trace(&format!("delete {n}"));
                // A delete commits metadata, not the other volumes'
                // overwrites: only a flush (or a write's FUA) makes those
                // durable.
                self.model.remove(&n);
            }
            _ => {
                let Some(n) = self.pick(Some(false)) else {
                    return false;
                };
                let blocks = PER_CHUNK * (1 + self.rng.below(8)) - self.rng.below(2) * 3;
                self.pool.resize_volume(&n, blocks * BS, true).unwrap();
                trace(&format!("resize {n} {blocks} blocks"));
                all_flushed(&mut self.model);
                let m = self.model.get_mut(&n).unwrap();
                m.current.resize(ix(blocks), 0);
                m.flushed();
            }
        }
        false
    }
}

fn crash_points_wanted() -> u64 {
    std::env::var("TCMUD_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200)
}

#[test]
fn crash_images_keep_acknowledged_writes_and_isolation() {
    crash_images(crash_points_wanted(), &PoolOptions::default());
}

/// The same on format 3 (page tree), with a cache of a few pages and
/// delete jobs of one leaf per step.
#[test]
fn format3_crash_images_keep_acknowledged_writes_and_isolation() {
    let opts = PoolOptions {
        format: 3,
        metadata_cache: 16 << 10,
        delete_step: 1,
        ..PoolOptions::default()
    };
    crash_images(crash_points_wanted() / 2, &opts);
}

fn crash_images(wanted: u64, opts: &PoolOptions) {
    let mut points = 0u64;
    let mut in_commit_points = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let only: Option<u64> = std::env::var("TCMUD_CRASH_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    while points < wanted {
        seed = seed.wrapping_add(0x6a09_e667_f3bc_c909);
        if let Some(o) = only {
            if seed != o && points == 0 {
                seed = o;
            } else if seed != o {
                break;
            }
        }
        let store = HookStore {
            inner: MemStore::new(),
            hook: Arc::new(Mutex::new(None)),
        };
        let data = CrashIo::new();
        let cfg = PoolConfig {
            chunk_size: CHUNK32,
            capacity_bytes: 40 * CHUNK,
            low_water_pct: 80,
        };
        let pool =
            Pool::create_with_opts(&cfg, Box::new(store.clone()), Box::new(data.clone()), opts)
                .unwrap();
        let mut run = Run {
            rng: Rng(seed | 1),
            pool,
            model: Model::new(),
            next_tag: seed << 20,
            next_name: 0,
        };
        for _ in 0..3 {
            let n = run.name("v");
            run.pool.create_volume(&n, 8 * CHUNK, BS32).unwrap();
            run.model
                .insert(n, MVol::new(ix(8 * PER_CHUNK), false, None));
        }
        let captured: Arc<Mutex<Vec<(MemStore, CrashIo)>>> = Arc::default();
        for _ in 0..150 {
            // Arm the in-commit hook for some explicit flushes.
            let arm = run.rng.chance(300);
            if arm {
                let (s, d, cap) = (store.inner.clone(), data.clone(), captured.clone());
                *store.hook.lock().unwrap() = Some(Box::new(move || {
                    cap.lock()
                        .unwrap()
                        .push((s.crash_image(), d.crash_image(&mut || true)));
                }));
            }
            let before = run.model.clone();
            let was_flush = run.step();
            *store.hook.lock().unwrap() = None;
            for (s, d) in captured.lock().unwrap().drain(..) {
                if was_flush {
                    let p = Pool::open_with(Box::new(s), Box::new(d)).unwrap();
                    verify(&p, &before, &format!("seed {seed:#x} in-commit"));
                    points += 1;
                    in_commit_points += 1;
                }
            }
            if run.rng.chance(250) {
                let keep_pm = [0, 500, 1000][ix(run.rng.below(3))];
                let mut r2 = Rng(run.rng.next() | 1);
                let img = data.crash_image(&mut || r2.chance(keep_pm));
                let p =
                    Pool::open_with(Box::new(store.inner.crash_image()), Box::new(img)).unwrap();
                verify(&p, &run.model, &format!("seed {seed:#x} between ops"));
                // The recovered pool keeps working.
                if let Some((n, _)) = run.model.iter().find(|(_, m)| !m.snapshot) {
                    let v = p.open_volume(n).unwrap();
                    v.write(0, &block_of(1), false).unwrap();
                    v.flush().unwrap();
                }
                points += 1;
            }
        }
    }
    eprintln!("crash points verified: {points} ({in_commit_points} inside commits)");
    assert!(points >= wanted || only.is_some());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
    if to.join("tcmud-pool").exists() {
        std::fs::write(to.join("lock"), b"").unwrap();
    }
}

#[test]
fn sled_directory_crash_images() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let cfg = PoolConfig {
        chunk_size: CHUNK32,
        capacity_bytes: 40 * CHUNK,
        low_water_pct: 80,
    };
    let pool = Pool::create(&dir, &cfg).unwrap();
    let mut run = Run {
        rng: Rng(0x1234_5678_9abc_def1),
        pool,
        model: Model::new(),
        next_tag: 1 << 40,
        next_name: 0,
    };
    for _ in 0..3 {
        let n = run.name("v");
        run.pool.create_volume(&n, 8 * CHUNK, BS32).unwrap();
        run.model
            .insert(n, MVol::new(ix(8 * PER_CHUNK), false, None));
    }
    let mut points = 0;
    for i in 0..300 {
        run.step();
        if i % 10 == 9 {
            // A copy of the directory now: sled holds exactly what was
            // committed; the data file copy holds every write issued.
            let img = t.path().join(format!("img{i}"));
            copy_dir(&dir, &img);
            let p = Pool::open(&img).unwrap();
            verify(&p, &run.model, &format!("sled image {i}"));
            drop(p);
            std::fs::remove_dir_all(&img).unwrap();
            points += 1;
        }
    }
    assert_eq!(points, 30);
}

/// Found by the random crash test: a chunk shared by a volume and a clone,
/// unshared by the clone's copy-on-write, must not be overwritten in place
/// by the volume before that unsharing is durable — or a crash shows the
/// volume's new data through the clone's old mapping.
#[test]
fn no_in_place_overwrite_before_unsharing_is_durable() {
    no_in_place_overwrite_before_unsharing(&PoolOptions::default());
}

/// The same on format 3: the rule covers the pages on the path too.
#[test]
fn format3_no_in_place_overwrite_before_unsharing_is_durable() {
    no_in_place_overwrite_before_unsharing(&PoolOptions {
        format: 3,
        ..PoolOptions::default()
    });
}

fn no_in_place_overwrite_before_unsharing(opts: &PoolOptions) {
    let store = MemStore::new();
    let data = CrashIo::new();
    let cfg = PoolConfig {
        chunk_size: CHUNK32,
        capacity_bytes: 64 * CHUNK,
        low_water_pct: 90,
    };
    let pool = Pool::create_with_opts(&cfg, Box::new(store.clone()), Box::new(data.clone()), opts)
        .unwrap();
    pool.create_volume("v", 8 * CHUNK, BS32).unwrap();
    let v = pool.open_volume("v").unwrap();
    v.write(0, &block_of(1), false).unwrap();
    pool.snapshot("v", "s").unwrap();
    pool.clone_snapshot("s", "c").unwrap();
    pool.delete_volume("s").unwrap();
    let c = pool.open_volume("c").unwrap();
    c.write(1, &block_of(2), false).unwrap(); // copy-on-write: c leaves the shared chunk
    v.write(0, &block_of(3), false).unwrap(); // v alone on it now, but not durably
    let img = Pool::open_with(
        Box::new(store.crash_image()),
        Box::new(data.crash_image(&mut || true)),
    )
    .unwrap();
    let mut buf = vec![0u8; BS_LEN];
    img.open_volume("c").unwrap().read(0, &mut buf).unwrap();
    assert_eq!(
        tag_of(&buf),
        Some(1),
        "the clone shows the volume's later write"
    );
    assert!(img.check().unwrap().is_clean());
}

/// Several threads write, discard and flush different volumes at once while
/// crash images are taken: every image checks clean (no chunk reserved by
/// an in-flight write leaks into the committed metadata) and every volume
/// shows only its own data or zeros.
#[test]
fn concurrent_writers_crash_images_are_consistent() {
    let store = HookStore {
        inner: MemStore::new(),
        hook: Arc::new(Mutex::new(None)),
    };
    let data = CrashIo::new();
    let cfg = PoolConfig {
        chunk_size: CHUNK32,
        capacity_bytes: 48 * CHUNK,
        low_water_pct: 90,
    };
    let pool = Pool::create_with(&cfg, Box::new(store.clone()), Box::new(data.clone())).unwrap();
    for v in 0..3 {
        pool.create_volume(&format!("v{v}"), 12 * CHUNK, BS32)
            .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let images = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for v in 0..3u64 {
            let (pool, stop) = (&pool, &stop);
            sc.spawn(move || {
                let vol = pool.open_volume(&format!("v{v}")).unwrap();
                let mut r = Rng(0x51_7cc1_b727_220a ^ ((v + 1) * 0x9e37));
                let mut tag = (v + 1) << 56;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let lba = r.below(12 * PER_CHUNK - 24);
                    match r.below(10) {
                        0 => vol.unmap(lba, 1 + r.below(20)).unwrap(),
                        1 => vol.flush().unwrap(),
                        _ => {
                            let n = 1 + r.below(20);
                            let mut buf = Vec::new();
                            for _ in 0..n {
                                tag += 1;
                                buf.extend(block_of(tag));
                            }
                            match vol.write(lba, &buf, false) {
                                Ok(()) | Err(BackendError::OutOfSpace) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                }
            });
        }
        let mut r = Rng(77);
        for _ in 0..200 {
            std::thread::yield_now();
            // No commit may run between the two images (HookStore::commit
            // holds the hook mutex): together they are one crash state.
            let gate = store.hook.lock().unwrap();
            let s = store.inner.crash_image();
            let keep = r.below(1000);
            let mut r2 = Rng(r.next() | 1);
            let d = data.crash_image(&mut || r2.below(1000) < keep);
            drop(gate);
            images.lock().unwrap().push((s, d));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let images = images.into_inner().unwrap();
    for (i, (s, d)) in images.into_iter().enumerate() {
        let p = Pool::open_with(Box::new(s), Box::new(d)).unwrap();
        let r = p.check().unwrap();
        assert!(r.is_clean(), "image {i}: {:?}", r.problems);
        for v in 0..3u64 {
            let vol = p.open_volume(&format!("v{v}")).unwrap();
            let mut buf = vec![0u8; ix(12 * CHUNK)];
            vol.read(0, &mut buf).unwrap();
            for (b, blk) in buf.chunks(BS_LEN).enumerate() {
                let t = tag_of(blk).unwrap_or_else(|| panic!("image {i}: v{v} block {b} torn"));
                assert!(
                    t == 0 || t >> 56 == v + 1,
                    "image {i}: v{v} block {b} shows {t:#x}"
                );
            }
        }
    }
}

// ------------------------------------------------------------ atomic writes

/// A pool on a [`CrashIo`] whose volume `v` has chunk 1 allocated before
/// chunk 0 (so they are not contiguous in the data file: an in-place
/// overwrite of both is two writes), every block tagged 1, committed.
fn atomic_setup(format: u32) -> (Pool, MemStore, CrashIo, Arc<tcmud_core::pool::Volume>) {
    let store = MemStore::new();
    let data = CrashIo::new();
    let cfg = PoolConfig {
        chunk_size: CHUNK32,
        capacity_bytes: 64 * CHUNK,
        low_water_pct: 90,
    };
    let opts = PoolOptions {
        format,
        ..PoolOptions::default()
    };
    let pool = Pool::create_with_opts(&cfg, Box::new(store.clone()), Box::new(data.clone()), &opts)
        .unwrap();
    pool.create_volume("v", 8 * CHUNK, BS32).unwrap();
    let v = pool.open_volume("v").unwrap();
    v.write(PER_CHUNK, &block_of(1).repeat(ix(PER_CHUNK)), false)
        .unwrap();
    v.write(0, &block_of(1).repeat(ix(PER_CHUNK)), false)
        .unwrap();
    v.flush().unwrap();
    (pool, store, data, v)
}

/// The tags of blocks `0..n` of volume `v` of `pool`.
fn tags(pool: &Pool, n: u64) -> Vec<Option<u64>> {
    let v = pool.open_volume("v").unwrap();
    let mut buf = vec![0u8; ix(n * BS)];
    v.read(0, &mut buf).unwrap();
    buf.chunks(BS_LEN).map(tag_of).collect()
}

/// WRITE ATOMIC's promise across a crash: an atomic write of a whole chunk
/// and half the next, cut before the commit (keeping every other unsynced
/// data write), reads all-old; after the flush all-new; check clean.
#[test]
fn atomic_write_is_all_or_nothing_across_a_crash() {
    for format in [2, 3] {
        let (_pool, store, data, v) = atomic_setup(format);
        let n = PER_CHUNK + PER_CHUNK / 2;
        v.write_atomic_from(0, &block_of(2).repeat(ix(n)).as_slice(), false)
            .unwrap();
        let mut keep = false;
        let img = Pool::open_with(
            Box::new(store.crash_image()),
            Box::new(data.crash_image(&mut || {
                keep = !keep;
                keep
            })),
        )
        .unwrap();
        assert_eq!(
            tags(&img, 2 * PER_CHUNK),
            vec![Some(1); ix(2 * PER_CHUNK)],
            "format {format}: cut before the commit shows the old blocks, all of them"
        );
        assert!(img.check().unwrap().is_clean());
        v.flush().unwrap();
        let img = Pool::open_with(
            Box::new(store.crash_image()),
            Box::new(data.crash_image(&mut || false)),
        )
        .unwrap();
        let mut want = vec![Some(2); ix(n)];
        want.resize(ix(2 * PER_CHUNK), Some(1));
        assert_eq!(
            tags(&img, 2 * PER_CHUNK),
            want,
            "format {format}: after the flush, the new"
        );
        assert!(img.check().unwrap().is_clean());
    }
}

/// A source that, on its second `read_at` (the atomic write has written
/// its first piece), tells the test and waits until a read has run (or a
/// while, when the read cannot run because the write holds the volume).
struct PausingSource {
    data: Vec<u8>,
    calls: std::sync::atomic::AtomicU32,
    paused: std::sync::mpsc::SyncSender<()>,
    resume: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl tcmud_core::backend::BlockSource for PausingSource {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn read_at(&self, at: usize, dst: &mut [u8]) -> std::io::Result<()> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            let _ = self.paused.send(());
            let _ = self
                .resume
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_millis(500));
        }
        dst.copy_from_slice(&self.data[at..at + dst.len()]);
        Ok(())
    }
    fn pwrite_at(
        &self,
        _: usize,
        _: usize,
        _: std::os::fd::BorrowedFd<'_>,
        _: u64,
    ) -> std::io::Result<()> {
        unreachable!("the CrashIo data file copies through read_at")
    }
}

/// A read that runs while an atomic write is half done sees all of the old
/// blocks or all of the new, never a mix: the write holds the volume until
/// its mappings switched. (An ordinary overwrite of chunks the volume owns
/// goes in place, beside reads: the same read sees the first chunk new and
/// the second old.)
#[test]
fn a_read_never_sees_an_atomic_write_half_done() {
    let (_pool, _store, _data, v) = atomic_setup(3);
    let n = PER_CHUNK + PER_CHUNK / 2;
    let (paused_tx, paused_rx) = std::sync::mpsc::sync_channel(1);
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    let src = Arc::new(PausingSource {
        data: block_of(2).repeat(ix(n)),
        calls: Default::default(),
        paused: paused_tx,
        resume: Mutex::new(resume_rx),
    });
    let writer = {
        let (v, src) = (v.clone(), src.clone());
        std::thread::spawn(move || v.write_atomic_from(0, &*src, false))
    };
    paused_rx.recv().unwrap();
    let reader = {
        let v = v.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; ix(n * BS)];
            v.read(0, &mut buf).unwrap();
            let _ = resume_tx.send(());
            buf.chunks(BS_LEN).map(tag_of).collect::<Vec<_>>()
        })
    };
    writer.join().unwrap().unwrap();
    let seen = reader.join().unwrap();
    assert!(
        seen.iter().all(|t| *t == seen[0]) && matches!(seen[0], Some(1) | Some(2)),
        "a read saw the atomic write half done: {seen:?}"
    );
}
