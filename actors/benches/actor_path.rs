//! The whole daemon path, next to baselines in the same run: simulator →
//! device actor → backstore I/O threads → backend, for a null backend, a
//! thin pool volume and a `file/` image, against memcpy (null) and
//! pread/pwrite on a raw file (thin, file).
//!
//! `cargo bench -p tcmud --bench actor_path` prints three tables (medians
//! of `TCMUD_BENCH_REPS` alternated runs): rates per second of CPU time of
//! the whole process (every thread: initiator/simulator, device actor, I/O
//! threads), per second of CPU time of the daemon's threads only (the whole
//! process less the initiator thread, which plays the kernel), and per
//! elapsed second, with ratios to the baselines. Rows: 4 KiB
//! random READ/WRITE at QD 1, 32 and 128 (commands/s) and 1 MiB sequential
//! READ/WRITE at `TCMUD_BENCH_QD_1M` (GB/s).
//!
//! Baselines: memcpy of the payload on one thread; pread/pwrite on a
//! preallocated raw file of the same working set with `min(qd, 4)` threads
//! (4 = the backstore's I/O threads per device, the concurrency the daemon
//! itself can reach), random 4 KiB / sequential 1 MiB offsets like the path.
//! Thin volume, image and raw file are written in full before the runs
//! (page cache warm, chunks allocated). Devices run with the write cache on
//! (no flush per write) unless `TCMUD_BENCH_WRITE_THROUGH=1`, which also
//! makes the raw baseline `fdatasync` after every write.
//!
//! Knobs: `TCMUD_BENCH_SECS` (per run, default 1), `TCMUD_BENCH_REPS`
//! (default 3), `TCMUD_BENCH_ONLY=<text>` (the row of that name, else rows whose name
//! contains it),
//! `TCMUD_BENCH_COLUMNS=null,thin,file`, `TCMUD_BENCH_QD_1M` (default 8),
//! `TCMUD_BENCH_SET_MIB` (working set, default 128), `TCMUD_BENCH_DIR`
//! (where pool and files live, default the temp dir), `TCMUD_BENCH_ITERS=n`
//! (exactly `n` commands per path run and no baselines, for callgrind).

mod support;

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, DeviceSetup};
use support::lane::{sim_config, Lane, Load, Pattern, BS, BS_U32};
use support::{knob, median, procfs, secs};
use tcmud::backstore::{
    open_backstore, BackstoreHandle, BackstoreKind, DevConfig, OpenPolicy, PoolRegistry, PoolSpec,
    DEFAULT_IO_THREADS,
};
use tcmud_core::backend::null::NullBackend;
use tcmud_core::pool::PoolConfig;

const MIB: usize = 1 << 20;

/// One workload row.
#[derive(Clone, Copy)]
struct Row {
    write: bool,
    bytes: usize,
    qd: usize,
}

impl Row {
    fn name(&self) -> String {
        let size = if self.bytes >= MIB { "1M" } else { "4k" };
        let op = if self.write { "write" } else { "read" };
        format!("{size} {op} qd{}", self.qd)
    }
    fn load(&self) -> Load {
        Load {
            write: self.write,
            bytes: self.bytes,
            qd: self.qd,
            pattern: if self.bytes >= MIB {
                Pattern::Sequential
            } else {
                Pattern::Random
            },
        }
    }
}

/// Items (commands or copies) over wall and CPU seconds.
#[derive(Clone, Copy, Default)]
struct Sample {
    items: f64,
    wall: f64,
    cpu: f64,
    /// CPU time of the daemon's threads only (device actor, I/O threads):
    /// the whole process less the initiator thread, which plays the kernel.
    /// Baselines: their `cpu`.
    daemon: f64,
    /// Context switches of the whole process (path runs only).
    switches: f64,
    /// Minor page faults of the whole process (path runs only).
    faults: f64,
}

impl Sample {
    fn wall_rate(&self) -> f64 {
        self.items / self.wall.max(1e-9)
    }
    fn cpu_rate(&self) -> f64 {
        self.items / self.cpu.max(1e-9)
    }
    fn daemon_rate(&self) -> f64 {
        self.items / self.daemon.max(1e-9)
    }
    fn rate(&self, basis: Basis) -> f64 {
        match basis {
            Basis::Cpu => self.cpu_rate(),
            Basis::Daemon => self.daemon_rate(),
            Basis::Wall => self.wall_rate(),
        }
    }
}

/// What a table's rates are per second of.
#[derive(Clone, Copy)]
enum Basis {
    /// CPU time of the whole process.
    Cpu,
    /// CPU time of the daemon's threads.
    Daemon,
    /// Elapsed time.
    Wall,
}

/// The columns of the table.
const COLUMNS: [&str; 3] = ["null", "thin", "file"];

/// Everything one run needs: three devices served by one daemon, and the
/// raw baseline file.
struct Bench {
    lanes: Vec<(&'static str, Lane)>,
    raw: File,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn setup(set: u64, data_bytes: usize, columns: &[&'static str], write_cache: bool) -> Bench {
    let base = std::env::var("TCMUD_BENCH_DIR").unwrap_or_else(|_| "/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("bench dir");
    let reg = PoolRegistry::new(vec![PoolSpec {
        name: "bench".into(),
        path: dir.path().join("pool"),
        config: PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: set * 2 + (64 << 20),
            low_water_pct: 95,
        },
        auto_create: true,
        options: Default::default(),
    }]);
    let fill = vec![0x5au8; MIB];
    let mut devs = Vec::new();
    let mut lanes = Vec::new();
    for &col in columns {
        let (dev_config, backstore) = match col {
            "null" => (
                "null".to_owned(),
                BackstoreHandle::new(
                    Arc::new(NullBackend::new(BS_U32, set / BS)),
                    BackstoreKind::Other {
                        name: "null".into(),
                    },
                    DEFAULT_IO_THREADS,
                )
                .expect("null backstore"),
            ),
            "thin" | "file" => {
                let cfg = if col == "thin" {
                    "thin/bench/vol".to_owned()
                } else {
                    format!("file/{}", dir.path().join("image").display())
                };
                let parsed = DevConfig::parse(&cfg).expect("dev_config").expect("ours");
                let bs = open_backstore(
                    &parsed,
                    set,
                    BS_U32,
                    &reg,
                    &OpenPolicy {
                        may_create: true,
                        file_roots: &[dir.path().to_path_buf()],
                    },
                )
                .expect("open backstore");
                let backend = bs.backend();
                for i in 0..set / MIB as u64 {
                    backend
                        .write(i * MIB as u64 / BS, &fill, false)
                        .expect("prefill");
                }
                bs.flush().expect("flush");
                (cfg, bs)
            }
            other => panic!("unknown column {other}"),
        };
        let (lane, dev) = Lane::new(sim_config(1, data_bytes), set);
        devs.push(DeviceSetup {
            dev_config,
            dev,
            backstore,
            size_bytes: set,
            write_cache,
        });
        lanes.push((col, lane));
    }
    let raw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw"))
        .expect("raw file");
    for i in 0..set / MIB as u64 {
        raw.write_all_at(&fill, i * MIB as u64)
            .expect("prefill raw");
    }
    let mut daemon = Daemon::start();
    daemon.spawn(devs);
    for (col, lane) in &mut lanes {
        assert!(
            lane.ready(Duration::from_secs(10)),
            "{col} device not ready"
        );
    }
    Bench {
        lanes,
        raw,
        daemon,
        _dir: dir,
    }
}

/// The daemon path for `row` on `lane` (after a short warm-up).
fn path(lane: &mut Lane, row: Row, payload: &[u8], count: Option<u64>) -> Sample {
    let warm = Some((row.qd * 4) as u64);
    lane.run(row.load(), payload, secs(), warm);
    let (cpu0, sw0) = (procfs::process_cpu(), procfs::process_switches());
    let own0 = procfs::thread_cpu();
    let faults0 = procfs::process_minor_faults();
    let done = lane.run(row.load(), payload, secs(), count);
    let own = procfs::thread_cpu().saturating_sub(own0);
    let cpu = procfs::process_cpu().saturating_sub(cpu0);
    let switches = procfs::process_switches().saturating_sub(sw0);
    let faults = procfs::process_minor_faults().saturating_sub(faults0);
    Sample {
        items: done.commands as f64,
        wall: done.wall.as_secs_f64(),
        cpu: cpu.as_secs_f64(),
        daemon: cpu.saturating_sub(own).as_secs_f64(),
        switches: switches as f64,
        faults: faults as f64,
    }
}

/// Copies of `bytes` per second with a plain memcpy on this thread.
fn memcpy(bytes: usize) -> Sample {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    let (limit, start, cpu0) = (secs(), Instant::now(), procfs::process_cpu());
    let mut items = 0u64;
    while start.elapsed() < limit {
        for _ in 0..16 {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        items += 16;
    }
    let cpu = procfs::process_cpu().saturating_sub(cpu0).as_secs_f64();
    Sample {
        items: items as f64,
        wall: start.elapsed().as_secs_f64(),
        cpu,
        daemon: cpu,
        switches: 0.0,
        faults: 0.0,
    }
}

/// pread/pwrite of `row` on the raw file with `min(qd, 4)` threads (each
/// write followed by `fdatasync` when `sync`); CPU time is the sum of those
/// threads' own.
fn raw_io(raw: &File, set: u64, row: Row, sync: bool) -> Sample {
    let threads = row.qd.clamp(1, DEFAULT_IO_THREADS);
    let limit = secs();
    let start = Instant::now();
    let results: Vec<(u64, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut buf = vec![0x5au8; row.bytes];
                    let slots = (set / row.bytes as u64).max(1);
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    let mut seq = t as u64;
                    let cpu0 = procfs::thread_cpu();
                    let mut n = 0u64;
                    while start.elapsed() < limit {
                        let slot = if row.bytes >= MIB {
                            seq = (seq + threads as u64) % slots;
                            seq
                        } else {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            rng % slots
                        };
                        let off = slot * row.bytes as u64;
                        if row.write {
                            raw.write_all_at(&buf, off).expect("pwrite");
                            if sync {
                                raw.sync_data().expect("fdatasync");
                            }
                        } else {
                            raw.read_exact_at(&mut buf, off).expect("pread");
                        }
                        n += 1;
                    }
                    (n, procfs::thread_cpu().saturating_sub(cpu0))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("raw thread"))
            .collect()
    });
    let cpu = results.iter().map(|r| r.1.as_secs_f64()).sum();
    Sample {
        items: results.iter().map(|r| r.0).sum::<u64>() as f64,
        wall: start.elapsed().as_secs_f64(),
        cpu,
        daemon: cpu,
        switches: 0.0,
        faults: 0.0,
    }
}

/// Every sample of one row, per column, over the repetitions.
#[derive(Default)]
struct Cells {
    path: Vec<Vec<Sample>>, // [column][rep]
    memcpy: Vec<Sample>,
    raw: Vec<Sample>,
}

fn rows(qd_1m: usize) -> Vec<Row> {
    let mut v = Vec::new();
    for write in [false, true] {
        for qd in [1, 32, 128] {
            v.push(Row {
                write,
                bytes: 4096,
                qd,
            });
        }
    }
    for write in [false, true] {
        v.push(Row {
            write,
            bytes: MIB,
            qd: qd_1m,
        });
    }
    v
}

fn fmt_rate(bytes: usize, rate: f64) -> String {
    if bytes >= MIB {
        format!("{:.2} GB/s", rate * bytes as f64 / 1e9)
    } else if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else {
        format!("{:.0}k", rate / 1e3)
    }
}

/// Prints one markdown table of medians, rates per second of `basis`.
/// Ratios are medians of the per-repetition ratios.
fn print_table(rows: &[(Row, Cells)], columns: &[&str], basis: Basis) {
    let rate = |s: &Sample| s.rate(basis);
    let mut head = String::from("| row |");
    let mut rule = String::from("|---|");
    for c in columns {
        let base = if *c == "null" { "memcpy" } else { "raw" };
        head += &format!(" {c} | {base} | {c}/{base} |");
        rule += "---:|---:|---:|";
    }
    println!("{head}\n{rule}");
    for (row, cells) in rows {
        let mut line = format!("| {} |", row.name());
        for (i, c) in columns.iter().enumerate() {
            let base = if *c == "null" {
                &cells.memcpy
            } else {
                &cells.raw
            };
            let p = &cells.path[i];
            let pm = median(&p.iter().map(rate).collect::<Vec<_>>());
            let bm = median(&base.iter().map(rate).collect::<Vec<_>>());
            let ratios: Vec<f64> = p
                .iter()
                .zip(base.iter())
                .map(|(a, b)| rate(a) / rate(b))
                .collect();
            let r = median(&ratios);
            line += &format!(
                " {} | {} | {r:.3} |",
                fmt_rate(row.bytes, pm),
                fmt_rate(row.bytes, bm)
            );
        }
        println!("{line}");
    }
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let qd_1m = knob("TCMUD_BENCH_QD_1M", 8usize).clamp(1, 128);
    let set = if bench_mode {
        knob("TCMUD_BENCH_SET_MIB", 128u64).max(8) << 20
    } else {
        8 << 20
    };
    let columns: Vec<&'static str> = match std::env::var("TCMUD_BENCH_COLUMNS") {
        Ok(v) => COLUMNS.into_iter().filter(|c| v.contains(c)).collect(),
        Err(_) => COLUMNS.to_vec(),
    };
    let write_cache = knob("TCMUD_BENCH_WRITE_THROUGH", 0u8) == 0;
    let data_bytes = (128 * 4096).max(qd_1m * MIB);
    let mut b = setup(set, data_bytes, &columns, write_cache);
    let payloads = [vec![0xa5u8; 4096], vec![0xa5u8; MIB]];
    let payload = |bytes: usize| &payloads[usize::from(bytes >= MIB)][..];

    // `cargo test --all-targets` runs this without --bench: one short pass
    // of every row through every device, no timing.
    if !bench_mode {
        for row in rows(2) {
            for (col, lane) in &mut b.lanes {
                let n = (row.qd * 2) as u64;
                let s = path(lane, row, payload(row.bytes), Some(n));
                assert_eq!(s.items, n as f64, "{col} {}", row.name());
            }
        }
        b.daemon.stop();
        return;
    }
    let iters = std::env::var("TCMUD_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    // An exact row name selects that row only, other text every row
    // containing it.
    let only = std::env::var("TCMUD_BENCH_ONLY").ok();
    let exact = only
        .as_ref()
        .is_some_and(|f| rows(qd_1m).iter().any(|r| r.name() == *f));
    let reps = knob("TCMUD_BENCH_REPS", 3usize).max(1);
    let mut table: Vec<(Row, Cells)> = rows(qd_1m)
        .into_iter()
        .filter(|r| {
            only.as_ref().is_none_or(|f| {
                if exact {
                    r.name() == *f
                } else {
                    r.name().contains(f.as_str())
                }
            })
        })
        .map(|r| {
            let cells = Cells {
                path: vec![Vec::new(); columns.len()],
                ..Cells::default()
            };
            (r, cells)
        })
        .collect();
    for rep in 0..reps {
        for (row, cells) in &mut table {
            let row = *row;
            for (i, (col, lane)) in b.lanes.iter_mut().enumerate() {
                let s = path(lane, row, payload(row.bytes), iters);
                eprintln!(
                    "rep {rep} {:<14} {col:<5} {:>12} cpu {:>12} daemon cpu {:>12} wall ({} commands, \
                     {:.2} CPUs; per command {:.1} µs CPU, {:.2} context switches, {:.1} page faults)",
                    row.name(),
                    fmt_rate(row.bytes, s.cpu_rate()),
                    fmt_rate(row.bytes, s.daemon_rate()),
                    fmt_rate(row.bytes, s.wall_rate()),
                    s.items,
                    s.cpu / s.wall,
                    s.cpu / s.items * 1e6,
                    s.switches / s.items,
                    s.faults / s.items
                );
                cells.path[i].push(s);
            }
            if iters.is_some() {
                continue;
            }
            if columns.contains(&"null") {
                cells.memcpy.push(memcpy(row.bytes));
            }
            if columns.iter().any(|c| *c != "null") {
                let s = raw_io(&b.raw, set, row, !write_cache);
                eprintln!(
                    "rep {rep} {:<14} raw   {:>12} cpu {:>12} wall",
                    row.name(),
                    fmt_rate(row.bytes, s.cpu_rate()),
                    fmt_rate(row.bytes, s.wall_rate())
                );
                cells.raw.push(s);
            }
        }
    }
    b.daemon.stop();
    if iters.is_some() {
        return;
    }
    println!(
        "daemon path: simulator -> device actor -> backstore I/O threads -> backend \
         ({} MiB working set, write cache {}, median of {reps})",
        set >> 20,
        if write_cache { "on" } else { "off" }
    );
    println!("\nper second of CPU time of the whole process:\n");
    print_table(&table, &columns, Basis::Cpu);
    println!(
        "\nper second of CPU time of the daemon's threads (device actor, I/O threads; \
         not the initiator thread playing the kernel; baselines as above):\n"
    );
    print_table(&table, &columns, Basis::Daemon);
    println!("\nper elapsed (wall) second:\n");
    print_table(&table, &columns, Basis::Wall);
}
