//! Pool benchmark (custom harness, one run, prints a table with ratios):
//!
//! - 4 KiB random write / read IOPS and 1 MiB sequential write / read MB/s
//!   through the pool API vs pwrite/pread on a preallocated raw file;
//! - space amplification: bytes on disk after writing N GiB of random data,
//!   over N;
//! - metadata memory after writing (bounded by the metadata cache), and
//!   sled bytes per TiB.
//!
//! Goals: pool >= 0.8x raw on every I/O row; space amplification <= 1.05.
//! `cargo bench --bench pool` (TCMUD_BENCH_GIB=N changes N, default 1).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig};

#[path = "support/two_threads.rs"]
mod support_two_threads;
use support_two_threads::two_threads;

const SET: u64 = 256 << 20; // working set of the I/O rows
const RAND_OPS: u64 = 40_000;
const MIB: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Runs `a` and `b` alternately five times each; the best time of each,
/// in seconds (the machine is shared: the best run is the least disturbed).
fn best_of(mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let (mut ta, mut tb) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        ta = ta.min(a());
        tb = tb.min(b());
    }
    (ta, tb)
}

/// Runs `a` and `b` over `offsets` in batches of 256, each batch on both
/// sides, which side first alternating (the side that runs second over the
/// same offsets is faster: see `interleaved` in `pool_scale.rs`), three
/// passes; returns the seconds per pass spent in each.
fn interleaved(offsets: &[u64], mut a: impl FnMut(u64), mut b: impl FnMut(u64)) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0, 0.0);
    for _ in 0..3 {
        for (i, batch) in offsets.chunks(256).enumerate() {
            if i % 2 == 0 {
                ta += time(|| batch.iter().for_each(|&p| a(p)));
                tb += time(|| batch.iter().for_each(|&p| b(p)));
            } else {
                tb += time(|| batch.iter().for_each(|&p| b(p)));
                ta += time(|| batch.iter().for_each(|&p| a(p)));
            }
        }
    }
    (ta / 3.0, tb / 3.0)
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

struct Row {
    name: &'static str,
    unit: &'static str,
    pool: f64,
    raw: f64,
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            disk_bytes(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    n
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`:
    // do nothing then (the benchmark writes over a GiB).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let gib: u64 = std::env::var("TCMUD_BENCH_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let tmp =
        tempfile::tempdir_in(std::env::var("TCMUD_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let cfg = PoolConfig {
        chunk_size: 64 << 10,
        capacity_bytes: (gib + 2) << 30,
        low_water_pct: 95,
    };
    let pool = Pool::create(&tmp.path().join("pool"), &cfg).unwrap();
    pool.create_volume("io", SET, 512).unwrap();
    let vol = pool.open_volume("io").unwrap();
    let raw: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp.path().join("raw"))
        .unwrap();
    let mib = random_bytes(MIB, 7);
    let page = random_bytes(4096, 9);
    let blocks_per_mib = (MIB / 512) as u64;
    let mut rows = Vec::new();

    // 1 MiB sequential writes: the pool allocates as it goes (first pass),
    // the raw file is preallocated by the same pass.
    let (seq_w_pool, seq_w_raw) = best_of(
        || {
            time(|| {
                for i in 0..SET / MIB as u64 {
                    vol.write(i * blocks_per_mib, &mib, false).unwrap();
                }
            })
        },
        || {
            time(|| {
                for i in 0..SET / MIB as u64 {
                    raw.write_all_at(&mib, i * MIB as u64).unwrap();
                }
            })
        },
    );
    let mbs = |s: f64| SET as f64 / s / 1e6;
    rows.push(Row {
        name: "1 MiB sequential write",
        unit: "MB/s",
        pool: mbs(seq_w_pool),
        raw: mbs(seq_w_raw),
    });
    vol.flush().unwrap();
    raw.sync_data().unwrap();

    let mut buf = vec![0u8; MIB];
    let mut buf2 = vec![0u8; MIB];
    let (seq_r_pool, seq_r_raw) = best_of(
        || {
            time(|| {
                for i in 0..SET / MIB as u64 {
                    vol.read(i * blocks_per_mib, &mut buf).unwrap();
                    black_box(&buf);
                }
            })
        },
        || {
            time(|| {
                for i in 0..SET / MIB as u64 {
                    raw.read_exact_at(&mut buf2, i * MIB as u64).unwrap();
                    black_box(&buf2);
                }
            })
        },
    );
    rows.push(Row {
        name: "1 MiB sequential read",
        unit: "MB/s",
        pool: mbs(seq_r_pool),
        raw: mbs(seq_r_raw),
    });

    let pages = SET / 4096;
    let offsets: Vec<u64> = {
        let mut r = Rng(42);
        (0..RAND_OPS).map(|_| r.next() % pages).collect()
    };
    let iops = |s: f64| RAND_OPS as f64 / s;
    // Random rows interleave pool and raw file in small batches over the
    // same offsets, so both see the same machine load and their page caches
    // evolve alike; both files start written back and dropped from the cache.
    let pool_file = File::open(tmp.path().join("pool/data")).unwrap();
    let settle = |f: &File| {
        f.sync_data().unwrap();
        // Advisory: failure only makes the rows less comparable.
        let _ =
            nix::fcntl::posix_fadvise(f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    };
    vol.flush().unwrap();
    settle(&pool_file);
    settle(&raw);
    let (rw_pool, rw_raw) = interleaved(
        &offsets,
        |p| vol.write(p * 8, &page, false).unwrap(),
        |p| raw.write_all_at(&page, p * 4096).unwrap(),
    );
    rows.push(Row {
        name: "4 KiB random write",
        unit: "IOPS",
        pool: iops(rw_pool),
        raw: iops(rw_raw),
    });
    let mut pbuf = vec![0u8; 4096];
    let mut pbuf2 = vec![0u8; 4096];
    let (rr_pool, rr_raw) = interleaved(
        &offsets,
        |p| {
            vol.read(p * 8, &mut pbuf).unwrap();
            black_box(&pbuf);
        },
        |p| {
            raw.read_exact_at(&mut pbuf2, p * 4096).unwrap();
            black_box(&pbuf2);
        },
    );
    rows.push(Row {
        name: "4 KiB random read",
        unit: "IOPS",
        pool: iops(rr_pool),
        raw: iops(rr_raw),
    });

    // The same random reads from two threads at once (a daemon's device and
    // I/O threads reading volumes of one pool), over six passes.
    let (mt_pool, mt_raw) =
        two_threads(&offsets, 6, &|p, b| vol.read(p * 8, b).unwrap(), &|p, b| {
            raw.read_exact_at(b, p * 4096).unwrap()
        });
    rows.push(Row {
        name: "4 KiB random read, 2 threads",
        unit: "IOPS",
        pool: iops(mt_pool / 6.0),
        raw: iops(mt_raw / 6.0),
    });

    // Informational: the same random reads on the pool's data file directly
    // (no pool code): how much of the read gap is the two files' page-cache
    // state rather than the pool.
    let mut b3 = vec![0u8; 4096];
    let (d_pool, d_raw) = interleaved(
        &offsets,
        |p| {
            pool_file.read_exact_at(&mut b3, p * 4096).unwrap();
            black_box(&b3);
        },
        |p| {
            raw.read_exact_at(&mut pbuf2, p * 4096).unwrap();
            black_box(&pbuf2);
        },
    );
    rows.push(Row {
        name: "4 KiB random read, data file w/o pool*",
        unit: "IOPS",
        pool: iops(d_pool),
        raw: iops(d_raw),
    });

    // Informational: 4 KiB random writes that allocate (first write to each
    // chunk zero-fills or extends it) and with a flush every 256 writes.
    pool.create_volume("fresh", SET, 512).unwrap();
    let fresh = pool.open_volume("fresh").unwrap();
    let raw2 = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp.path().join("raw2"))
        .unwrap();
    raw2.set_len(SET).unwrap();
    let n_first = 4096usize;
    let rf_pool = time(|| {
        for &p in offsets.iter().take(n_first) {
            fresh.write(p * 8, &page, false).unwrap();
        }
    });
    let rf_raw = time(|| {
        for &p in offsets.iter().take(n_first) {
            raw2.write_all_at(&page, p * 4096).unwrap();
        }
    });
    rows.push(Row {
        name: "4 KiB random first write (allocating)*",
        unit: "IOPS",
        pool: n_first as f64 / rf_pool,
        raw: n_first as f64 / rf_raw,
    });
    let n_sync = 8192usize;
    let rs_pool = time(|| {
        for (i, &p) in offsets.iter().take(n_sync).enumerate() {
            vol.write(p * 8, &page, false).unwrap();
            if i % 256 == 255 {
                vol.flush().unwrap();
            }
        }
    });
    let rs_raw = time(|| {
        for (i, &p) in offsets.iter().take(n_sync).enumerate() {
            raw.write_all_at(&page, p * 4096).unwrap();
            if i % 256 == 255 {
                raw.sync_data().unwrap();
            }
        }
    });
    rows.push(Row {
        name: "4 KiB random write + flush/256*",
        unit: "IOPS",
        pool: n_sync as f64 / rs_pool,
        raw: n_sync as f64 / rs_raw,
    });
    drop((vol, fresh));
    pool.close().unwrap();

    // Space amplification and metadata size: N GiB of random data.
    let sdir = tmp.path().join("space");
    let spool = Pool::create(&sdir, &cfg).unwrap();
    let n_bytes = gib << 30;
    spool.create_volume("big", n_bytes, 4096).unwrap();
    let big = spool.open_volume("big").unwrap();
    let t_fill = time(|| {
        let mut chunk_order: Vec<u64> = (0..n_bytes / MIB as u64).collect();
        let mut r = Rng(5);
        for i in (1..chunk_order.len()).rev() {
            chunk_order.swap(
                i,
                usize::try_from(r.next() % (i as u64 + 1)).expect("at most i"),
            );
        }
        for (k, i) in chunk_order.into_iter().enumerate() {
            let data = random_bytes(MIB, i + 11);
            big.write(i * (MIB as u64 / 4096), &data, false).unwrap();
            if k % 64 == 63 {
                big.flush().unwrap();
            }
        }
        big.flush().unwrap();
    });
    let mem = spool.metadata_memory_bytes();
    let sled_bytes = spool.metadata_bytes();
    drop(big);
    spool.close().unwrap();
    let on_disk = disk_bytes(&sdir);
    let amp = on_disk as f64 / n_bytes as f64;
    let per_tib = |b: u64| b as f64 * 1024.0 / gib as f64;

    println!();
    println!(
        "tcmud pool benchmark (chunk 64 KiB, working set {} MiB, page cache)",
        SET >> 20
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "row", "pool", "raw file", "ratio"
    );
    for r in &rows {
        println!(
            "{:<40} {:>9.0} {:<4} {:>9.0} {:<4} {:>7.2}x",
            r.name,
            r.pool,
            r.unit,
            r.raw,
            r.unit,
            r.pool / r.raw
        );
    }
    println!("(* informational rows, not goals)");
    println!(
        "space amplification: {:.4} ({} bytes on disk for {} GiB written in {:.1} s)",
        amp, on_disk, gib, t_fill
    );
    // Format 3's metadata memory is bounded by `metadata_cache`, not
    // proportional to what is written: printed as measured, not per TiB
    // (pool_scale measures it at 4 Mi mapped chunks).
    println!(
        "metadata in memory after writing {} GiB: {:.1} MiB (bounded by metadata_cache, {} MiB); sled on disk: {:.0} MiB per TiB",
        gib,
        mem as f64 / (1u64 << 20) as f64,
        tcmud_core::pool::PoolOptions::default().metadata_cache >> 20,
        per_tib(sled_bytes) / (1u64 << 20) as f64
    );
    println!("metadata memory per TiB provisioned and never written: 0 (thin: no mapping entries)");
    let goals = rows
        .iter()
        .filter(|r| !r.name.ends_with('*'))
        .all(|r| r.pool / r.raw >= 0.8)
        && amp <= 1.05;
    println!(
        "goals (>= 0.8x raw on every goal row, amplification <= 1.05): {}",
        if goals { "met" } else { "NOT met" }
    );
}
