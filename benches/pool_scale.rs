//! Pool metadata at scale (issue 13): one run, one table, one row per size.
//!
//! Per size N (mapped chunks; 64 KiB chunks unless `TCMUD_SCALE_CHUNK_KIB`
//! says otherwise, sparse data file), in a fresh
//! child process so that VmRSS/VmHWM belong to that size alone:
//!
//! 1. setup: one volume of N chunks, a 4 KiB write into every chunk, a flush
//!    every 65,536 writes: setup rate (chunks mapped per second), VmRSS after,
//!    bytes under `meta/` (and per mapped chunk);
//! 2. 4 KiB random read and write on that volume vs a raw file holding the
//!    same bytes at the same offsets (4 KiB at the start of every chunk,
//!    written beforehand, sparse between), same random indices, batches of
//!    256 run on both sides, which side first alternating, the median of
//!    the ratios over pairs of batches (the ratio of the total times in the
//!    notes): "cold" = page cache of the data, raw and
//!    `meta/` files dropped first, indices over the whole volume; "warm" = a
//!    working set of 16,384 chunks read once before timing;
//! 3. p99 latency of 4 KiB random writes on another (small, fully written)
//!    volume, idle;
//! 4. up to 10 snapshots of the big volume (each timed), VmRSS after them;
//! 5. a clone of the first snapshot (timed);
//! 6. deleting the last five snapshots, one after the other (each timed),
//!    while the other volume takes 4 KiB random writes: their p99 during
//!    the deletes (the writes of the five pooled: one delete lasts a few
//!    ms); and, just before, their p99 during a control: five times four
//!    4 KiB writes with an `fdatasync` each to a file beside the pool (the
//!    file system's cost of the delete's commit, which is all this delete
//!    does: its tree is shared);
//! 7. close; then, in another fresh process, open after that clean close
//!    (timed) and its VmRSS;
//! 8. in that process: the big volume, the clone and the snapshots but the
//!    last deleted (each drops a count of the shared root), then the last
//!    snapshot, now the only holder of every page and chunk, deleted while
//!    the other volume takes 4 KiB random writes: their p99 against idle (µs;
//!    idle taken after an untimed write of every block of the other volume:
//!    this process opened the pool cold, and after the setup's gigabytes the
//!    file system's own mapping of the data file is cold too) and the chunks
//!    freed, in the notes.
//!
//! Today's format needs several KiB of RAM per mapping and per snapshot, so
//! the run goes as far as the machine allows and says where it stopped: a
//! size whose setup would pass the RAM budget (estimated from the previous
//! size's RSS per chunk) is skipped; steps 4-7 are each taken only while
//! the process stays within the budget (the first snapshot needs room for
//! one step, later ones leave room for the clone and the delete); the notes
//! under the table name what was skipped and why.
//!
//! `cargo bench --bench pool_scale`
//! env: `TCMUD_SCALE_CHUNKS=65536,1048576,4194304,1048576@2` (sizes, default
//! these; `N@M`: N chunks with a metadata cache of M MiB for that row alone,
//! the default row having the tree 4× the cache),
//! `TCMUD_SCALE_RAM_GIB` (budget; default min(16, MemAvailable - 4)),
//! `TCMUD_BENCH_DIR` (where the pools go, default /tmp), `TCMUD_SCALE_CHUNK_KIB`
//! (chunk size, default 64), `TCMUD_SCALE_CACHE_MIB` (metadata cache, default
//! 64), `TCMUD_SCALE_SPARSE` (default 1: the pool's `sparse_data` option, so
//! 4 Mi chunks of 64 KiB take 16 GiB of host space, not 256),
//! `TCMUD_SCALE_RESERVE_GIB` (host space left to others, default 10: a row
//! whose data would not leave it is not run), `TCMUD_SCALE_IO_OPS` (random
//! I/O operations per phase, default 20,000), `TCMUD_SCALE_PUNCH` (1: the
//! setup's data is punched out after each flush: metadata figures without
//! the host space, no random-I/O columns).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

mod support;
use support::{rss, tree_bytes};
#[path = "support/two_threads.rs"]
mod support_two_threads;
use support_two_threads::two_threads;

const BLOCK: u32 = 4096;
const FLUSH_EVERY: u64 = 65_536;
const SNAPSHOTS: usize = 10;
/// Bare `fdatasync`s of a 4 KiB write timed before each snapshot.
const SYNC_PROBES: usize = 3;
/// Random I/O operations per phase unless `TCMUD_SCALE_IO_OPS` says otherwise.
const IO_OPS: usize = 20_000;
const WARM_SET: u64 = 16_384;
const OTHER_CHUNKS: u64 = 4096;
/// Snapshots deleted in step 6 (at most; with two or more taken, one
/// stays for step 8).
const DELETES: usize = 5;

const LAT_OPS: usize = 20_000;
const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;
const DEFAULT_SIZES: &str = "65536,1048576,4194304,1048576@2";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn mem_available() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Host space kept free for the machine's other users: the raw file of
/// the random-I/O comparison is written only if it leaves this much
/// (`TCMUD_SCALE_RESERVE_GIB`, default 10).
fn reserve() -> u64 {
    env_u64("TCMUD_SCALE_RESERVE_GIB").unwrap_or(10) << 30
}

/// `TCMUD_SCALE_PUNCH=1`: metadata figures only, for hosts without the
/// space for the data (see the note it prints).
fn punch_mode() -> bool {
    env_u64("TCMUD_SCALE_PUNCH").is_some_and(|v| v != 0)
}

/// Bytes free on the file system holding `p`.
fn free_bytes(p: &Path) -> u64 {
    nix::sys::statvfs::statvfs(p).map_or(0, |s| s.blocks_available() * s.fragment_size())
}

/// Writes back and drops from the page cache every file under `p`.
fn drop_cache(p: &Path) {
    let Ok(m) = std::fs::metadata(p) else { return };
    if m.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.filter_map(Result::ok) {
                drop_cache(&e.path());
            }
        }
        return;
    }
    if let Ok(f) = File::open(p) {
        let _ = f.sync_data();
        // Advisory: failure only makes the cold rows warmer.
        let _ = nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }
}

/// Walks `p`'s data segments (`SEEK_DATA`/`SEEK_HOLE`): the file system
/// looks up every extent and caches it (ext4's extent status cache), so
/// that the cold rows compare two files whose extents are equally cached.
/// Without it the raw file, written last, had all of its 4 Mi extents
/// cached and the pool's data file, written first, had lost most of them to
/// the cache's shrinker: a cold pool write looked its extent up on disk.
/// Returns the segments walked.
fn map_extents(p: &Path) -> u64 {
    use nix::unistd::{lseek, Whence};
    let Ok(f) = File::open(p) else { return 0 };
    let (mut pos, mut segments) = (0i64, 0u64);
    while let Ok(start) = lseek(&f, pos, Whence::SeekData) {
        let Ok(end) = lseek(&f, start, Whence::SeekHole) else {
            break;
        };
        segments += 1;
        pos = end;
    }
    segments
}

fn progress(n: u64, what: &str) {
    eprintln!("[pool_scale {n}] {what}");
}

/// A note for the table (why a cell is empty), also on stderr.
fn note(n: u64, key: &str, text: &str) {
    progress(n, text);
    emit(&format!("note_{key}"), text);
}

fn emit(key: &str, v: impl std::fmt::Display) {
    println!("RESULT {key}={v}");
    let _ = std::io::stdout().flush();
}

/// `TCMUD_SCALE_FORMAT` (2 or 3; default: what new pools get),
/// `TCMUD_SCALE_CACHE_MIB` (format 3's metadata cache; default 64) and
/// `TCMUD_SCALE_SPARSE` (1, the default: the pool's `sparse_data` option, a
/// 4 KiB write into a fresh chunk takes 4 KiB of host space; 0: the pool's
/// default, the whole chunk preallocated).
fn pool_options() -> PoolOptions {
    let d = PoolOptions::default();
    PoolOptions {
        format: env_u64("TCMUD_SCALE_FORMAT").map_or(d.format, |f| {
            u32::try_from(f).unwrap_or_else(|_| panic!("TCMUD_SCALE_FORMAT={f}: no such format"))
        }),
        metadata_cache: env_u64("TCMUD_SCALE_CACHE_MIB").map_or(d.metadata_cache, |m| m << 20),
        sparse_data: env_u64("TCMUD_SCALE_SPARSE").is_none_or(|v| v != 0),
        ..d
    }
}

/// Chunk size: `TCMUD_SCALE_CHUNK_KIB` (a power of two, 4..=1024; default 64).
/// Small chunks put many mappings on a small host disk: every chunk written
/// is allocated whole.
/// Read once: the pool's side of the timed loops calls this per operation,
/// and a `getenv` there was part of what the pool was measured at.
fn chunk() -> u64 {
    static CHUNK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *CHUNK.get_or_init(|| {
        env_u64("TCMUD_SCALE_CHUNK_KIB")
            .filter(|k| k.is_power_of_two() && (4..=1024).contains(k))
            .map_or(64 << 10, |k| k << 10)
    })
}

fn blocks_per_chunk() -> u64 {
    chunk() / u64::from(BLOCK)
}

/// A random `r` reduced to an index below `len` (`r % len`, which fits).
fn index_below(r: u64, len: usize) -> usize {
    usize::try_from(r % len as u64).expect("below len")
}

fn env_u64(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|s| s.parse().ok())
}

#[allow(clippy::cast_possible_truncation)] // the rank: floor of a fraction of the length
fn percentile(lat: &mut [f64], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat.sort_by(f64::total_cmp);
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
}

/// "p50 / max" of `v` in ms (one decimal).
fn p50_max(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let max = v.iter().copied().fold(0.0, f64::max);
    format!("{:.1} / {max:.1}", percentile(v, 0.5))
}

/// Warm 4 KiB reads of `ops` (chunk indices) from two threads at once,
/// each half of them, the pool's volume against the raw file: the raw
/// file's total time over the pool's, four passes with the side that runs
/// first alternating. Two threads is a daemon's device and I/O threads
/// reading volumes of one pool; a lookup that serialises them shows here.
fn warm_reads_two_threads(ops: &[u64], vol: &tcmud_core::pool::Volume, raw: &File) -> f64 {
    let (tp, tr) = two_threads(
        ops,
        4,
        &|l, b| vol.read(l * blocks_per_chunk(), b).unwrap(),
        &|l, b| raw.read_exact_at(b, l * chunk()).unwrap(),
    );
    tr / tp
}

/// Runs `a` (the pool) and `b` (the raw file) over `idx` in alternating
/// batches of 256, each batch on both sides, `a` first in even batches and
/// `b` first in odd ones: the median over pairs of batches of b's time / a's
/// time (the pool's speed as a multiple of the raw file's: a pair that the
/// loaded machine's scheduler stalls moves one ratio, not the figure), the
/// ratio of the total times, and the medians over the batches of the time
/// per operation of `a` and of `b` (µs).
///
/// The order alternates because the side that runs second is faster: the
/// pool's data file read as a plain file at the raw file's offsets, warm,
/// took 1.34-1.38 µs per read against the raw file's 1.15-1.17 when it ran
/// first, and 1.21-1.39 against 1.35-1.60 when it ran second (2026-12-06,
/// 1 Mi chunks, kernel 6.18): the same page indices in the same order,
/// just before, make the second run ~15 % faster whichever file it reads.
/// A pair holds one batch of each order, so its ratio carries no such bias.
fn interleaved(
    idx: &[u64],
    mut a: impl FnMut(u64),
    mut b: impl FnMut(u64),
) -> (f64, f64, f64, f64) {
    let (mut ta, mut tb) = (0.0, 0.0);
    let mut ratios = Vec::new();
    let (mut per_a, mut per_b) = (Vec::new(), Vec::new());
    let mut pair = (0.0, 0.0);
    for (i, batch) in idx.chunks(256).enumerate() {
        let (x, y) = if i % 2 == 0 {
            let x = time(|| batch.iter().for_each(|&p| a(p)));
            (x, time(|| batch.iter().for_each(|&p| b(p))))
        } else {
            let y = time(|| batch.iter().for_each(|&p| b(p)));
            (time(|| batch.iter().for_each(|&p| a(p))), y)
        };
        per_a.push(x * 1e6 / batch.len() as f64);
        per_b.push(y * 1e6 / batch.len() as f64);
        ta += x;
        tb += y;
        pair = (pair.0 + x, pair.1 + y);
        if i % 2 == 1 {
            ratios.push(pair.1 / pair.0);
            pair = (0.0, 0.0);
        }
    }
    if ratios.is_empty() {
        ratios.push(pair.1 / pair.0);
    }
    (
        percentile(&mut ratios, 0.5),
        tb / ta,
        percentile(&mut per_a, 0.5),
        percentile(&mut per_b, 0.5),
    )
}

/// The child for one size: everything but the reopen. Prints RESULT lines.
fn run_size(n: u64, dir: &Path, budget: u64, open_per_mapping: f64, snap_per_chunk: f64) {
    let pool_dir = dir.join("pool");
    let cfg = PoolConfig {
        chunk_size: u32::try_from(chunk()).expect("at most 1 MiB"),
        capacity_bytes: (n + OTHER_CHUNKS + 65_536) * chunk(),
        low_water_pct: 100,
    };
    let data_need = (n + OTHER_CHUNKS) * u64::from(BLOCK);
    let free = free_bytes(dir);
    let punch = punch_mode();
    if punch {
        note(
            n,
            "punch",
            "metadata only (TCMUD_SCALE_PUNCH=1): the data written by the setup was punched \
             out of the pool's data file after each flush (mappings intact, the bytes read \
             back as zeros), so the random I/O against the raw file was not run",
        );
    } else if free < data_need + reserve() {
        note(
            n,
            "space",
            &format!(
                "not run: the pool's data needs {:.1} GiB and {:.1} GiB are free ({:.0} GiB \
                 kept for others)",
                data_need as f64 / GIB,
                free as f64 / GIB,
                reserve() as f64 / GIB
            ),
        );
        emit("failed", "no host space");
        return;
    }
    let pool = Pool::create_opts(&pool_dir, &cfg, &pool_options()).unwrap();
    pool.create_volume("big", n * chunk(), BLOCK).unwrap();
    let big = pool.open_volume("big").unwrap();
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1).to_le_bytes()[0]).collect();

    // 1. setup
    progress(n, "setup: writing 4 KiB into every chunk");
    let t = Instant::now();
    let data_file = File::options()
        .write(true)
        .open(pool_dir.join("data"))
        .unwrap();
    let mut punched = 0u64;
    for l in 0..n {
        big.write(l * blocks_per_chunk(), &page, false).unwrap();
        if (l + 1) % FLUSH_EVERY == 0 {
            big.flush().unwrap();
            if punch {
                // a fresh pool hands out chunks in order: these are the
                // ones written since the last flush
                let end = (l + 1) * chunk();
                nix::fcntl::fallocate(
                    &data_file,
                    nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                        | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    punched as i64,
                    (end - punched) as i64,
                )
                .unwrap();
                punched = end;
            }
            if (l + 1) % (FLUSH_EVERY * 16) == 0 {
                progress(
                    n,
                    &format!(
                        "setup: {} chunks, {:.0} s",
                        l + 1,
                        t.elapsed().as_secs_f64()
                    ),
                );
            }
        }
    }
    big.flush().unwrap();
    let setup_s = t.elapsed().as_secs_f64();
    emit("setup_rate", n as f64 / setup_s);
    emit("rss_write", rss().0);
    emit("meta_bytes", tree_bytes(&pool_dir.join("meta")));

    pool.create_volume("other", OTHER_CHUNKS * chunk(), BLOCK)
        .unwrap();
    let other = pool.open_volume("other").unwrap();
    for l in 0..OTHER_CHUNKS {
        other.write(l * blocks_per_chunk(), &page, false).unwrap();
    }
    other.flush().unwrap();

    // 2. random I/O vs raw
    let raw_need = n * u64::from(BLOCK);
    let free = free_bytes(dir);
    if punch {
        // noted above
    } else if free < raw_need + reserve() {
        note(
            n,
            "raw",
            &format!(
                "random I/O not run: the raw file needs {:.1} GiB and {:.1} GiB are free \
                 ({:.0} GiB kept for others)",
                raw_need as f64 / GIB,
                free as f64 / GIB,
                reserve() as f64 / GIB
            ),
        );
    } else {
        random_io(n, dir, &pool_dir, &pool, &big, &page);
    }
    emit("meta_mem", pool.metadata_memory_bytes());
    big.flush().unwrap();

    // 3. idle write latency on the other volume
    let mut r = Rng(0x1d1e ^ n);
    progress(n, "idle write latency on another volume");
    let other_write = |r: &mut Rng| timed_other_write(&other, &page, r);
    let mut idle: Vec<f64> = (0..LAT_OPS).map(|_| other_write(&mut r)).collect();
    emit("p99_idle_ms", percentile(&mut idle, 0.99) * 1e3);
    emit("max_idle_ms", percentile(&mut idle, 1.0) * 1e3);
    other.flush().unwrap();

    // 4. snapshots. Each step is taken only if the process stays within
    // the RAM budget with half a step to spare (the first step is estimated
    // from the previous size).
    let mut snap_ms = Vec::new();
    let mut mappings = n + OTHER_CHUNKS;
    // a whole number of chunks: the floor of the product
    #[allow(clippy::cast_possible_truncation)]
    let mut step = (snap_per_chunk * n as f64) as u64;
    // Room for `k` more steps of `step` bytes, with a quarter step to spare.
    // A delete of N mappings takes about two snapshot steps (measured:
    // VmHWM +2.6 GiB deleting 262,144 mappings, +1.4 GiB per snapshot).
    let fits = |k: u64, step: u64| rss().0 + k * step + step / 4 <= budget;
    let over = |what: &str, k: u64, step: u64| {
        format!(
            "{what} skipped: VmRSS {:.1} GiB + {k} steps of {:.1} GiB (what is left of \
             snapshot, clone, delete; a delete takes 2) pass the {:.0} GiB budget",
            rss().0 as f64 / GIB,
            step as f64 / GIB,
            budget as f64 / GIB
        )
    };
    let probe_path = dir.join("sync-probe");
    let probe = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe_path)
        .unwrap();
    probe.write_all_at(&vec![1u8; 1 << 20], 0).unwrap();
    probe.sync_all().unwrap();
    let mut probe_ms: Vec<f64> = Vec::new();
    let mut snap_phases: Vec<tcmud_core::pool::phases::SharePhases> = Vec::new();
    for i in 0..SNAPSHOTS {
        // The first snapshot needs room for itself; later ones leave room
        // for the clone and the delete too.
        let k = if i == 0 { 1 } else { 4 };
        if !fits(k, step) {
            note(
                n,
                "snapshots",
                &over(&format!("snapshot {}", i + 1), k, step),
            );
            break;
        }
        if open_per_mapping > 0.0 && open_per_mapping * (mappings + 2 * n) as f64 > budget as f64 {
            let need = open_per_mapping * (mappings + 2 * n) as f64 / GIB;
            note(
                n,
                "snapshots",
                &format!(
                    "snapshot {} skipped: reopening would need ~{need:.0} GiB",
                    i + 1
                ),
            );
            break;
        }
        // the disk's own sync, in the same conditions: a bare fdatasync
        // of a 4 KiB write to a file beside the pool
        for k in 0..SYNC_PROBES {
            let at = ((i * SYNC_PROBES + k) % 256) as u64 * 4096;
            probe_ms.push(
                time(|| {
                    probe.write_all_at(&page[..4096], at).unwrap();
                    probe.sync_data().unwrap();
                }) * 1e3,
            );
        }
        let before = rss().0;
        let ms = time(|| pool.snapshot("big", &format!("snap-{i}")).unwrap()) * 1e3;
        snap_phases.push(pool.last_share_phases());
        snap_ms.push(ms);
        mappings += n;
        let after = rss().0;
        progress(
            n,
            &format!(
                "snapshot {i}: {ms:.0} ms, VmRSS {:.0} MiB",
                after as f64 / MIB
            ),
        );
        step = after.saturating_sub(before).max(1);
    }
    drop(probe);
    let _ = std::fs::remove_file(&probe_path);
    emit("sync_probe", p50_max(&mut probe_ms));
    emit("sync_probes", probe_ms.len());
    let phase = |f: &dyn Fn(&tcmud_core::pool::phases::SharePhases) -> std::time::Duration| {
        let mut v: Vec<f64> = snap_phases
            .iter()
            .map(|p| f(p).as_secs_f64() * 1e3)
            .collect();
        p50_max(&mut v)
    };
    emit(
        "snap_phases",
        format!(
            "whole (inside the pool) {}: gate wait {}, state lock wait {}, tree work {}, \
             commit lock wait {}, taking the batch {}, data fdatasync {}, sled apply+flush {}, \
             meta/db fdatasync {}, seal write+fdatasync (beside sled's) {}",
            phase(&|p| p.total),
            phase(&|p| p.gate_wait),
            phase(&|p| p.lock_wait),
            phase(&|p| p.work),
            phase(&|p| p.commit.commit_lock_wait),
            phase(&|p| p.commit.take),
            phase(&|p| p.commit.data_sync),
            phase(&|p| p.commit.store_apply),
            phase(&|p| p.commit.meta_sync),
            phase(&|p| p.commit.seal),
        ),
    );
    let (rss_snaps, _) = rss();
    emit("snapshots", snap_ms.len());
    emit("rss_snaps", rss_snaps);
    emit("snap_step", step);
    emit("meta_bytes_snaps", tree_bytes(&pool_dir.join("meta")));
    if !snap_ms.is_empty() {
        emit(
            "snap_min_ms",
            snap_ms.iter().copied().fold(f64::MAX, f64::min),
        );
        emit("snap_max_ms", snap_ms.iter().copied().fold(0.0, f64::max));
        emit("snap_p50_ms", percentile(&mut snap_ms.clone(), 0.5));
    }

    // 5. clone
    let snapped = !snap_ms.is_empty();
    if snapped && fits(3, step) {
        let clone_ms = time(|| pool.clone_snapshot("snap-0", "clone-0").unwrap()) * 1e3;
        mappings += n;
        emit("clone_ms", clone_ms);
        progress(n, &format!("clone: {clone_ms:.0} ms"));
    } else if snapped {
        note(n, "clone", &over("clone", 3, step));
    }

    // 6. delete the last snapshots, one after the other, while writing to
    // the other volume
    if snapped && fits(2, step) {
        progress(
            n,
            "bare fdatasyncs beside the pool under load (step 6's control)",
        );
        // Several deletes, their writes pooled: one such delete lasts a few
        // ms, too few writes for a p99 that is not one stray stall.
        let deletes = DELETES.min(snap_ms.len().saturating_sub(1)).max(1);
        let mut control = Vec::new();
        for _ in 0..deletes {
            control.extend(syncs_under_load(dir, 4, || other_write(&mut r)));
        }
        emit("p99_syncs_ms", percentile(&mut control, 0.99) * 1e3);
        emit("syncs_writes", control.len());
        progress(n, &format!("deleting {deletes} snapshots under load"));
        let mut during = Vec::new();
        let mut times = Vec::new();
        for k in 0..deletes {
            let victim = format!("snap-{}", snap_ms.len() - 1 - k);
            let (s, w) = delete_under_load(&pool, &victim, || other_write(&mut r));
            times.push(s);
            during.extend(w);
            mappings -= n;
        }
        emit("deletes", deletes);
        emit("delete_s", percentile(&mut times, 1.0));
        emit("p99_delete_ms", percentile(&mut during, 0.99) * 1e3);
        emit("max_delete_ms", percentile(&mut during, 1.0) * 1e3);
        emit("delete_writes", during.len());
    } else if snapped {
        note(n, "delete", &over("delete", 2, step));
    }
    emit("rss_hwm", rss().1);

    let _ = std::fs::remove_file(dir.join("raw"));

    // 7. clean close (the reopen runs in the next process)
    drop((big, other));
    let close_s = time(|| pool.close().unwrap());
    emit("close_s", close_s);
    emit("mappings", mappings);
}

/// Step 2: 4 KiB random reads and writes on `big` against a raw file
/// holding the same bytes at the same offsets.
fn random_io(
    n: u64,
    dir: &Path,
    pool_dir: &Path,
    pool: &Pool,
    big: &tcmud_core::pool::Volume,
    page: &[u8],
) {
    progress(n, "random I/O vs raw file");
    let raw_path = dir.join("raw");
    let raw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&raw_path)
        .unwrap();
    // The same bytes at the same offsets as the volume: 4 KiB at the
    // start of every chunk, sparse between (the pool's data file is laid
    // out so too, chunk by chunk).
    for l in 0..n {
        raw.write_all_at(page, l * chunk()).unwrap();
    }
    raw.sync_data().unwrap();
    let mut r = Rng(0x5eed ^ n);
    let ops = env_u64("TCMUD_SCALE_IO_OPS")
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(IO_OPS);
    let cold_r: Vec<u64> = (0..ops).map(|_| r.next() % n).collect();
    let cold_w: Vec<u64> = (0..ops).map(|_| r.next() % n).collect();
    let warm: Vec<u64> = (0..WARM_SET.min(n)).map(|_| r.next() % n).collect();
    let warm_ops: Vec<u64> = (0..ops)
        .map(|i| warm[index_below(r.next().wrapping_add(i as u64), warm.len())])
        .collect();
    let (mut b1, mut b2) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut pool_read = |l: u64| {
        big.read(l * blocks_per_chunk(), &mut b1).unwrap();
        black_box(&b1);
    };
    let mut raw_read = |l: u64| {
        raw.read_exact_at(&mut b2, l * chunk()).unwrap();
        black_box(&b2);
    };
    drop_cache(pool_dir);
    drop_cache(&raw_path);
    let pool_data = pool_dir.join("data");
    let t0 = Instant::now();
    let segments = (map_extents(&pool_data), map_extents(&raw_path));
    note(
        n,
        "extents",
        &format!(
            "data segments walked before the cold rows (pool data file, raw file): {} / {} in {:.1} s",
            segments.0,
            segments.1,
            t0.elapsed().as_secs_f64()
        ),
    );
    let (m, t, ua, ub) = interleaved(&cold_r, &mut pool_read, &mut raw_read);
    emit("read_cold", m);
    emit("read_cold_total", t);
    emit("read_cold_us", format!("{ua:.2}/{ub:.2}"));
    let (m, t, ua, ub) = interleaved(
        &cold_w,
        |l| big.write(l * blocks_per_chunk(), page, false).unwrap(),
        |l| raw.write_all_at(page, l * chunk()).unwrap(),
    );
    emit("write_cold", m);
    emit("write_cold_total", t);
    emit("write_cold_us", format!("{ua:.2}/{ub:.2}"));
    for &l in &warm {
        pool_read(l);
        raw_read(l);
    }
    let before = pool.memo_counts();
    let (m, t, ua, ub) = interleaved(&warm_ops, &mut pool_read, &mut raw_read);
    if let (Some(a), Some(b)) = (before, pool.memo_counts()) {
        let (hits, misses) = (b.hits - a.hits, b.misses - a.misses);
        note(
            n,
            "memo",
            &format!(
                "warm reads: the mapping memo answered {hits} of {} lookups ({:.1} %)",
                hits + misses,
                100.0 * hits as f64 / (hits + misses).max(1) as f64
            ),
        );
    }
    emit("read_warm", m);
    emit("read_warm_total", t);
    emit("read_warm_us", format!("{ua:.2}/{ub:.2}"));
    emit("read_warm_2t", warm_reads_two_threads(&warm_ops, big, &raw));
    let (m, t, ua, ub) = interleaved(
        &warm_ops,
        |l| big.write(l * blocks_per_chunk(), page, false).unwrap(),
        |l| raw.write_all_at(page, l * chunk()).unwrap(),
    );
    emit("write_warm", m);
    emit("write_warm_total", t);
    emit("write_warm_us", format!("{ua:.2}/{ub:.2}"));
    // The raw file stays until the timed steps are over: unlinking
    // gigabytes (online discard, journal) made the next fdatasyncs — the
    // snapshots' commits — wait for it (22-41 ms instead of ~1 ms).
    drop(raw);
}

/// One 4 KiB write at a random block of the other volume: its time (s).
fn timed_other_write(other: &tcmud_core::pool::Volume, page: &[u8], r: &mut Rng) -> f64 {
    let lba = r.next() % (OTHER_CHUNKS * blocks_per_chunk());
    let t = Instant::now();
    other.write(lba, page, false).unwrap();
    t.elapsed().as_secs_f64()
}

/// Deletes `name` on a thread of its own while `write` runs (a timed write
/// on another volume) until the delete returns: the delete's time (s) and
/// the times of the writes beside it.
fn delete_under_load(pool: &Pool, name: &str, write: impl FnMut() -> f64) -> (f64, Vec<f64>) {
    under_load(|| pool.delete_volume(name).unwrap(), write)
}

/// Runs `task` on a thread of its own while `write` runs until the task
/// returns: the task's time (s) and the times of the writes beside it.
fn under_load(task: impl FnOnce() + Send, mut write: impl FnMut() -> f64) -> (f64, Vec<f64>) {
    let done = AtomicBool::new(false);
    let mut during = Vec::new();
    let task_s = std::thread::scope(|sc| {
        let runner = sc.spawn(|| {
            let s = time(task);
            done.store(true, Ordering::Release);
            s
        });
        while !done.load(Ordering::Acquire) {
            during.push(write());
        }
        runner.join().unwrap()
    });
    (task_s, during)
}

/// The control for step 6: `n` 4 KiB writes, each followed by an
/// `fdatasync`, to a file beside the pool (what a delete that frees
/// nothing costs the file system: its commits' syncs), while `write` runs.
fn syncs_under_load(dir: &Path, n: usize, write: impl FnMut() -> f64) -> Vec<f64> {
    let side = dir.join("side-sync");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&side)
        .unwrap();
    let (_, during) = under_load(
        || {
            for i in 0..n as u64 {
                f.write_all_at(&[0x5a; 4096], i * 4096).unwrap();
                f.sync_data().unwrap();
            }
        },
        write,
    );
    let _ = std::fs::remove_file(&side);
    during
}

/// The child that reopens a cleanly closed pool, then step 8.
fn open_size(dir: &Path) {
    let t = Instant::now();
    let pool = Pool::open_opts(&dir.join("pool"), &pool_options()).unwrap();
    emit("open_s", t.elapsed().as_secs_f64());
    emit("rss_open", rss().0);
    sole_delete(&pool);
    drop(pool);
}

/// Step 8: the big volume, its clone and all its snapshots but the last
/// deleted (each releases one count of a shared root), so that the last
/// snapshot alone holds the whole tree and every chunk; then that snapshot
/// deleted (every page and chunk freed, in bounded steps) while the other
/// volume takes 4 KiB random writes: their p99 then against idle, measured
/// just before.
fn sole_delete(pool: &Pool) {
    let n = env_u64("TCMUD_SCALE_N").unwrap_or(0);
    let mut held: Vec<String> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .filter(|name| name != "other")
        .collect();
    // the snapshot with the highest number is deleted last
    held.sort_by_key(|name| {
        name.strip_prefix("snap-")
            .and_then(|i| i.parse::<u64>().ok())
            .map_or(0, |i| i + 1)
    });
    let Some(last) = held.pop().filter(|name| name.starts_with("snap-")) else {
        return;
    };
    progress(n, "deleting every holder of the tree but one snapshot");
    for name in &held {
        pool.delete_volume(name).unwrap();
    }
    let other = pool.open_volume("other").unwrap();
    let page = vec![0x5au8; BLOCK as usize];
    let mut r = Rng(0x50_1e ^ n);
    // This process opened the pool cold, and the file system's extent
    // blocks of the data file may have left the cache: an untimed write of
    // every block of the other volume first, so that the idle p99 counts
    // neither its tree's first reads nor the file system's (at 4 Mi chunks
    // the idle p99 was 110-150 µs after a write per chunk only, and fell
    // as the random writes went on).
    for b in 0..OTHER_CHUNKS * blocks_per_chunk() {
        other.write(b, &page, false).unwrap();
    }
    let other_write = |r: &mut Rng| timed_other_write(&other, &page, r);
    let mut idle: Vec<f64> = (0..LAT_OPS).map(|_| other_write(&mut r)).collect();
    emit("sole_p99_idle_ms", percentile(&mut idle, 0.99) * 1e3);
    progress(
        n,
        &format!("deleting {last}, the tree's only holder, under load"),
    );
    let freed_before = pool.usage().unwrap().allocated_chunks;
    let (delete_s, mut during) = delete_under_load(pool, &last, || other_write(&mut r));
    let freed = freed_before.saturating_sub(pool.usage().unwrap().allocated_chunks);
    emit("sole_delete_s", delete_s);
    emit("sole_freed", freed);
    emit("sole_p99_delete_ms", percentile(&mut during, 0.99) * 1e3);
    emit("sole_max_delete_ms", percentile(&mut during, 1.0) * 1e3);
    emit("sole_delete_writes", during.len());
}

type Results = std::collections::HashMap<String, String>;

/// Estimates from the previous size, handed to the next size's child.
#[derive(Clone, Copy, Default)]
struct Estimates {
    /// VmRSS after writing, per mapped chunk.
    write_per_chunk: f64,
    /// VmRSS added by one snapshot, per mapped chunk.
    snap_per_chunk: f64,
    /// VmRSS of a reopen, per mapping in the pool.
    open_per_mapping: f64,
}

fn child(
    mode: &str,
    (n, cache_mib): (u64, Option<u64>),
    dir: &Path,
    budget: u64,
    est: Estimates,
) -> Results {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    if let Some(m) = cache_mib {
        cmd.env("TCMUD_SCALE_CACHE_MIB", m.to_string());
    }
    let mut ch = cmd
        .env("TCMUD_SCALE_CHILD", mode)
        .env("TCMUD_SCALE_N", n.to_string())
        .env("TCMUD_SCALE_PATH", dir)
        .env("TCMUD_SCALE_BUDGET", budget.to_string())
        .env(
            "TCMUD_SCALE_OPEN_PER_MAPPING",
            est.open_per_mapping.to_string(),
        )
        .env("TCMUD_SCALE_SNAP_PER_CHUNK", est.snap_per_chunk.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut res = Results::new();
    let out = ch.stdout.take().unwrap();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if let Some((k, v)) = line.strip_prefix("RESULT ").and_then(|l| l.split_once('=')) {
            res.insert(k.to_string(), v.to_string());
        } else {
            println!("{line}");
        }
    }
    let status = ch.wait().unwrap();
    if !status.success() {
        res.insert("failed".into(), format!("{mode}: {status}"));
    }
    res
}

fn main() {
    if let Ok(mode) = std::env::var("TCMUD_SCALE_CHILD") {
        let n = env_u64("TCMUD_SCALE_N").unwrap_or(0);
        let dir = PathBuf::from(std::env::var("TCMUD_SCALE_PATH").unwrap_or_default());
        let budget = env_u64("TCMUD_SCALE_BUDGET").unwrap_or(u64::MAX);
        let f = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0)
        };
        let (opm, spc) = (
            f("TCMUD_SCALE_OPEN_PER_MAPPING"),
            f("TCMUD_SCALE_SNAP_PER_CHUNK"),
        );
        match mode.as_str() {
            "run" => run_size(n, &dir, budget, opm, spc),
            _ => open_size(&dir),
        }
        return;
    }
    // `cargo test --all-targets` runs bench binaries without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // "N" or "N@M" (M MiB of metadata cache for that row)
    let sizes: Vec<(u64, Option<u64>)> = std::env::var("TCMUD_SCALE_CHUNKS")
        .unwrap_or_else(|_| DEFAULT_SIZES.into())
        .split(',')
        .filter_map(|s| match s.trim().split_once('@') {
            Some((n, m)) => Some((n.parse().ok()?, Some(m.parse().ok()?))),
            None => Some((s.trim().parse().ok()?, None)),
        })
        .collect();
    let budget = env_u64("TCMUD_SCALE_RAM_GIB")
        .map(|g| g << 30)
        .unwrap_or_else(|| (16u64 << 30).min(mem_available().saturating_sub(4 << 30)));
    let base = PathBuf::from(std::env::var("TCMUD_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()));
    eprintln!(
        "pool_scale: sizes {sizes:?}, RAM budget {:.1} GiB, pools under {}",
        budget as f64 / GIB,
        base.display()
    );
    // Measured at the previous size (RSS grows linearly with the chunks).
    let mut est = Estimates::default();
    let mut rows: Vec<(u64, Results)> = Vec::new();
    for &(n, cache_mib) in &sizes {
        let row = (n, cache_mib);
        let need = est.write_per_chunk * n as f64 * 1.2;
        if need > budget as f64 {
            let mut r = Results::new();
            r.insert(
                "skipped".into(),
                format!(
                    "would need ~{:.0} GiB RAM just to map them (budget {:.0} GiB)",
                    need / GIB,
                    budget as f64 / GIB
                ),
            );
            eprintln!("pool_scale: {n} chunks skipped: {}", r["skipped"]);
            if let Some(m) = cache_mib {
                r.insert("cache_mib".into(), m.to_string());
            }
            rows.push((n, r));
            continue;
        }
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let mut r = child("run", row, tmp.path(), budget, est);
        if let Some(m) = cache_mib {
            r.insert("cache_mib".into(), m.to_string());
        }
        let num = |r: &Results, k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
        let mappings = num(&r, "mappings").unwrap_or(0.0);
        let open_need = est.open_per_mapping * mappings * 1.2;
        if r.contains_key("failed") {
            // Nothing to reopen.
        } else if open_need > budget as f64 {
            r.insert(
                "note_open".into(),
                format!("reopen skipped: would need ~{:.0} GiB", open_need / GIB),
            );
        } else {
            let open = child("open", row, tmp.path(), budget, est);
            r.extend(open);
        }
        // The data goes right after its row (freeing a large sparse file
        // with online discard takes minutes, but the disk is shared).
        progress(n, "removing the pool");
        drop(tmp);
        if cache_mib.is_some() {
            rows.push((n, r));
            continue;
        }
        if let Some(w) = num(&r, "rss_write") {
            est.write_per_chunk = w / n as f64;
        }
        if let (Some(s), Some(k)) = (num(&r, "snap_step"), num(&r, "snapshots")) {
            if k > 0.0 {
                est.snap_per_chunk = s / n as f64;
            }
        }
        if let Some(o) = num(&r, "rss_open").filter(|_| mappings > 0.0) {
            est.open_per_mapping = o / mappings;
        }
        rows.push((n, r));
    }
    print_table(&rows);
}

fn print_table(rows: &[(u64, Results)]) {
    let f = |r: &Results, k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
    let cell = |v: Option<f64>, fmtf: &dyn Fn(f64) -> String| v.map_or("-".to_string(), fmtf);
    println!();
    let o = pool_options();
    println!(
        "tcmud pool at scale ({} KiB chunks, one 4 KiB write per chunk, format {}, metadata_cache {} MiB, \
         sparse_data {}; raw file: the same 4 KiB at the same offsets)",
        chunk() >> 10,
        o.format,
        o.metadata_cache >> 20,
        if o.sparse_data { "on" } else { "off (chunks preallocated)" }
    );
    println!();
    println!(
        "| mapped chunks | setup rate (chunks/s) | RSS after writing (MiB) | meta on disk (MiB) | meta B/chunk | snapshot p50 / max (ms) | clone (ms) | RSS after snapshots (MiB) | open after clean close (s) | rand read cold / warm (x raw) | rand write cold / warm (x raw) | other-volume write p99 idle / during delete (µs) | delete snapshot (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for (n, r) in rows {
        let label = match r.get("cache_mib") {
            Some(m) => format!("{n}, cache {m} MiB"),
            None => n.to_string(),
        };
        if let Some(s) = r.get("skipped") {
            println!("| {label} | skipped: {s} |{}", " |".repeat(11));
            continue;
        }
        if let Some(s) = r.get("failed") {
            notes.push(format!(
                "{label}: child failed ({s}); cells with - were not reached"
            ));
        }
        let mut keys: Vec<&String> = r.keys().filter(|k| k.starts_with("note_")).collect();
        keys.sort();
        for k in keys {
            notes.push(format!("{label}: {}", r[k]));
        }
        let mib = |k: &str| cell(f(r, k), &|v| format!("{:.0}", v / MIB));
        let meta = f(r, "meta_bytes");
        let snaps = f(r, "snapshots").unwrap_or(0.0);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} |",
            cell(f(r, "setup_rate"), &|v| format!("{v:.0}")),
            mib("rss_write"),
            mib("meta_bytes"),
            cell(meta, &|v| format!("{:.0}", v / *n as f64)),
            match (f(r, "snap_p50_ms"), f(r, "snap_max_ms")) {
                (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                _ => "-".into(),
            },
            cell(f(r, "clone_ms"), &|v| format!("{v:.1}")),
            cell(f(r, "rss_snaps"), &|v| format!(
                "{:.0} ({snaps:.0} snaps)",
                v / MIB
            )),
            cell(f(r, "open_s"), &|v| format!("{v:.2}")),
            cell(f(r, "read_cold"), &|v| format!("{v:.2}")),
            cell(f(r, "read_warm"), &|v| format!("{v:.2}")),
            cell(f(r, "write_cold"), &|v| format!("{v:.2}")),
            cell(f(r, "write_warm"), &|v| format!("{v:.2}")),
            cell(f(r, "p99_idle_ms"), &|v| format!("{:.0}", v * 1e3)),
            cell(f(r, "p99_delete_ms"), &|v| format!("{:.0}", v * 1e3)),
            cell(f(r, "delete_s"), &|v| format!("{v:.2}")),
        );
        if f(r, "sole_delete_s").is_some() {
            notes.push(format!(
                "{label}: the last snapshot as the tree's only holder (volume, clone and other \
                 snapshots deleted first), deleted under load: {} chunks freed in {} s; \
                 other-volume write p99 idle {} µs / during it {} µs, max during it {} ms \
                 ({} writes during it)",
                cell(f(r, "sole_freed"), &|v| format!("{v:.0}")),
                cell(f(r, "sole_delete_s"), &|v| format!("{v:.2}")),
                cell(f(r, "sole_p99_idle_ms"), &|v| format!("{:.0}", v * 1e3)),
                cell(f(r, "sole_p99_delete_ms"), &|v| format!("{:.0}", v * 1e3)),
                cell(f(r, "sole_max_delete_ms"), &|v| format!("{v:.1}")),
                cell(f(r, "sole_delete_writes"), &|v| format!("{v:.0}")),
            ));
        }
        notes.push(format!(
            "{label}: step 6's deletes ({} snapshots, each sharing its whole tree: frees \
             nothing, one commit; the slowest {} ms) against their control, four 4 KiB writes \
             with an fdatasync each to a file beside the pool per delete: other-volume write p99 \
             during the deletes {} µs ({} writes), during the control {} µs ({} writes), idle \
             {} µs",
            cell(f(r, "deletes"), &|v| format!("{v:.0}")),
            cell(f(r, "delete_s"), &|v| format!("{:.1}", v * 1e3)),
            cell(f(r, "p99_delete_ms"), &|v| format!("{:.0}", v * 1e3)),
            cell(f(r, "delete_writes"), &|v| format!("{v:.0}")),
            cell(f(r, "p99_syncs_ms"), &|v| format!("{:.0}", v * 1e3)),
            cell(f(r, "syncs_writes"), &|v| format!("{v:.0}")),
            cell(f(r, "p99_idle_ms"), &|v| format!("{:.0}", v * 1e3)),
        ));
        notes.push(format!(
            "{label}: metadata in memory after the random I/O {} MiB (page tiers and space map, \
             sled's cache apart), VmHWM {} MiB, RSS after reopen {} MiB, close {} s, meta on disk with snapshots {} MiB, \
             other-volume write max latency idle {} ms / during the delete {} ms ({} writes during it)",
            cell(f(r, "meta_mem"), &|v| format!("{:.1}", v / MIB)),
            mib("rss_hwm"),
            mib("rss_open"),
            cell(f(r, "close_s"), &|v| format!("{v:.1}")),
            mib("meta_bytes_snaps"),
            cell(f(r, "max_idle_ms"), &|v| format!("{v:.1}")),
            cell(f(r, "max_delete_ms"), &|v| format!("{v:.1}")),
            cell(f(r, "delete_writes"), &|v| format!("{v:.0}")),
        ));
        notes.push(format!(
            "{label}: random I/O as the ratio of total times instead of the median per batch: \
             read cold / warm {} / {}, write cold / warm {} / {}",
            cell(f(r, "read_cold_total"), &|v| format!("{v:.2}")),
            cell(f(r, "read_warm_total"), &|v| format!("{v:.2}")),
            cell(f(r, "write_cold_total"), &|v| format!("{v:.2}")),
            cell(f(r, "write_warm_total"), &|v| format!("{v:.2}")),
        ));
        notes.push(format!(
            "{label}: warm random reads from two threads at once (each half of the offsets; \
             total time, which side first alternating over four passes): {} x raw",
            cell(f(r, "read_warm_2t"), &|v| format!("{v:.2}")),
        ));
        let us = |k: &str| r.get(k).cloned().unwrap_or_else(|| "-".into());
        notes.push(format!(
            "{label}: snapshot phases p50 / max (ms): {}; bare fdatasync of a 4 KiB write beside \
             the pool p50 / max {} ms ({} samples, taken before each snapshot)",
            us("snap_phases"),
            us("sync_probe"),
            us("sync_probes"),
        ));
        notes.push(format!(
            "{label}: random I/O, median µs per operation pool / raw: read cold {}, warm {}; \
             write cold {}, warm {}",
            us("read_cold_us"),
            us("read_warm_us"),
            us("write_cold_us"),
            us("write_warm_us"),
        ));
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
    println!(
        "goals: snapshot/clone <= 10 ms flat; RSS <= 256 MiB at 4,194,304 chunks + 10 snapshots; \
         meta <= 32 B/chunk; open <= 1 s; random I/O >= 0.7x raw cold, >= 0.8x warm; \
         p99 during delete <= 2x idle"
    );
}
