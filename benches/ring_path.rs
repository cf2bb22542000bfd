//! Commands per second through simulator → ring → SCSI emulation → null
//! backend, on one thread, next to a plain memcpy of the same bytes.
//!
//! `cargo bench --bench ring_path` prints one table: 4 KiB READ/WRITE at
//! queue depth 1 and 32 (commands/s) and 1 MiB READ/WRITE (GB/s) with the
//! ratio to memcpy of the same payload in the same run. Rates are given per
//! elapsed second and per second of the thread's CPU time (from
//! `/proc/thread-self/schedstat`), which holds up on a loaded machine; the
//! ratio uses CPU time. `TCMUD_BENCH_QD_1M` sets the queue depth of the
//! 1 MiB rows (default 8; the data area working set is that many MiB). The simulator's own
//! work (entry placement, data copies, completion walk) is inside the
//! measurement, as the kernel's would be. Set `TCMUD_BENCH_SECS` to change
//! the time per row (default 1 s). For instruction counts (stable on a
//! loaded machine) set `TCMUD_BENCH_ITERS=n` to run exactly `n` batches per
//! row instead, and `TCMUD_BENCH_ONLY=<text>` to run only the rows whose
//! name contains it, e.g.
//! `TCMUD_BENCH_ITERS=2000 TCMUD_BENCH_ONLY="4k read qd32" valgrind
//! --tool=callgrind --toggle-collect='*Path*batch*' <bench binary> --bench`:
//! the collected `Ir` divided by the commands printed is instructions per
//! command.
//!
//! Commands run zero-copy: `Lun::execute_io` over the ring's view of each
//! command's buffers (`Ring::data`), so the backend fills or drains the
//! data area itself. `TCMUD_BENCH_COPY=1` runs the copying path instead
//! (data area → buffer → `Lun::execute` → buffer → data area), for
//! comparison in the same build; `TCMUD_BENCH_BARE=1` leaves out the SCSI
//! layer and the backend call (reads zero-fill the data area directly,
//! writes do nothing): the floor of the path, the simulator's work plus the
//! null backend's fill.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcmud_core::backend::null::NullBackend;
use tcmud_core::backend::BlockSink;
use tcmud_core::ring::{CmdRequest, Completion, DataIn, Entry, Ring};
use tcmud_core::scsi::{Lun, LunConfig, ScsiResponse};
use tcmud_core::sim::{KernelSim, SimConfig, SimDirRef};

const BS: u32 = 512;

struct Path {
    sim: KernelSim,
    ring: Ring,
    lun: Lun,
    out: Vec<u8>,
    inb: Vec<u8>,
    cmds: Vec<CmdRequest>,
    /// Responses with the data-in bytes written, in the order of `cmds`.
    done: Vec<(Completion, usize)>,
    /// Copy through buffers instead of the zero-copy path.
    copy: bool,
    /// No SCSI layer: only the null backend's own work (zero-fill reads).
    bare: bool,
}

impl Path {
    fn new() -> Path {
        let cfg = SimConfig {
            cmdr_size: (8 << 20) - 128,
            data_size: 256 << 20,
            ..SimConfig::default()
        };
        let (mut sim, dev) = KernelSim::new(cfg).expect("simulator");
        sim.set_poison_data_in(false); // the kernel does not poison
        let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).expect("ring");
        let cfg = LunConfig {
            max_transfer_blocks: 1 << 16,
            ..LunConfig::default()
        };
        let lun = Lun::new(cfg, Arc::new(NullBackend::new(BS, 1 << 30)));
        let _ = lun.execute(&[0; 6], &[], &mut []); // power-on unit attention
        Path {
            sim,
            ring,
            lun,
            out: vec![0; 1 << 20],
            inb: vec![0; 1 << 20],
            cmds: Vec::with_capacity(64),
            done: Vec::with_capacity(64),
            copy: std::env::var("TCMUD_BENCH_COPY").is_ok_and(|v| v == "1"),
            bare: std::env::var("TCMUD_BENCH_BARE").is_ok_and(|v| v == "1"),
        }
    }

    /// The copying path (`TCMUD_BENCH_COPY=1`): data-out copied out of the
    /// data area into a buffer, `Lun::execute` over buffers, data-in copied
    /// back into the data area.
    fn execute_copying(&mut self, write: bool, cmd: &CmdRequest) -> ScsiResponse {
        let len = cmd.data.len();
        if write {
            self.ring
                .read_data_out(&cmd.data, &mut self.out[..len])
                .expect("data out");
        }
        let rsp = self
            .lun
            .execute(cmd.cdb.as_bytes(), &self.out[..len], &mut self.inb[..len]);
        if !write {
            self.ring
                .write_data_in(&cmd.data, &self.inb[..rsp.data_in_len])
                .expect("data in");
        }
        rsp
    }

    /// Runs one batch of `qd` commands of `bytes` each; returns commands done.
    #[inline(never)]
    fn batch(&mut self, write: bool, bytes: usize, qd: usize, payload: &[u8]) -> usize {
        let blocks = u16::try_from(bytes / BS as usize).expect("transfer fits READ(10)");
        let [bh, bl] = blocks.to_be_bytes();
        for i in 0..qd {
            let lba = u32::try_from(i * usize::from(blocks))
                .expect("lba")
                .to_be_bytes();
            let op = if write { 0x2a } else { 0x28 };
            let cdb = [op, 0, lba[0], lba[1], lba[2], lba[3], 0, bh, bl, 0];
            let dir = if write {
                SimDirRef::Out(payload)
            } else {
                SimDirRef::In(bytes)
            };
            self.sim.submit_ref(&cdb, dir).expect("submit");
        }
        self.sim.kick().expect("kick");
        self.ring.drain_events().expect("drain");
        for e in self.ring.fetch() {
            if let Ok(Entry::Cmd(cmd)) = e {
                self.cmds.push(cmd);
            }
        }
        let mut cmds = std::mem::take(&mut self.cmds);
        for cmd in &cmds {
            let rsp = if self.copy {
                self.execute_copying(write, cmd)
            } else if self.bare {
                if !write {
                    let mut sink = self.ring.data(&cmd.data).expect("data spans");
                    sink.zero_at(0, cmd.data.len()).expect("fill");
                }
                ScsiResponse::good(cmd.data.len())
            } else {
                // Zero-copy: the backend fills or drains the data area.
                let data = self.ring.data(&cmd.data).expect("data spans");
                let (mut sink, mut none): (_, &mut [u8]) = (data, &mut []);
                let empty: &[u8] = &[];
                if write {
                    self.lun.execute_io(cmd.cdb.as_bytes(), &data, &mut none)
                } else {
                    self.lun.execute_io(cmd.cdb.as_bytes(), &empty, &mut sink)
                }
            };
            let c = Completion::status(cmd.cmd_id, rsp.status, None);
            self.done.push((c, rsp.data_in_len));
        }
        let n = self.done.len();
        for ((c, written), cmd) in self.done.drain(..).zip(cmds.drain(..)) {
            let data_in = if write {
                DataIn::data_out(&cmd.data)
            } else {
                DataIn::new(&cmd.data, written)
            };
            self.ring.complete(c, data_in).expect("complete");
        }
        self.cmds = cmds; // keeps its capacity
        self.ring.kick().expect("kick");
        let _ = self.sim.wait_kick(Duration::ZERO);
        // The simulator gathers data-in into its reused buffer: the kernel's
        // one copy into the initiator's scatter list.
        let want = if write { 0 } else { bytes };
        let finished = self
            .sim
            .process_completions_with(|c| {
                assert_eq!(c.status, 0);
                assert_eq!(c.data_in.len(), want);
                assert_eq!(c.data_in.last().copied().unwrap_or(0), 0);
            })
            .expect("completions");
        assert_eq!(finished, n);
        n
    }
}

fn secs() -> Duration {
    let s = std::env::var("TCMUD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(s)
}

/// Fixed number of batches per row (`TCMUD_BENCH_ITERS`), if set.
fn iters() -> Option<usize> {
    std::env::var("TCMUD_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
}

/// Whether the row `name` runs (`TCMUD_BENCH_ONLY` filter).
fn selected(name: &str) -> bool {
    std::env::var("TCMUD_BENCH_ONLY").map_or(true, |f| name.contains(&f))
}

/// This thread's time on a CPU (`/proc/thread-self/schedstat`, ns), so
/// rates stay meaningful on a loaded machine; `None` where unavailable.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ns))
}

/// A rate per wall second and per CPU second of this thread.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
    count: usize,
}

/// Times `step` (which returns how many items it did) for the configured
/// time or number of iterations.
fn measure(mut step: impl FnMut() -> usize) -> Rate {
    let limit = secs();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut count = 0usize;
    match iters() {
        Some(n) => {
            for _ in 0..n {
                count += step();
            }
        }
        None => {
            while start.elapsed() < limit {
                count += step();
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_time()) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => wall,
    };
    Rate {
        wall: count as f64 / wall,
        cpu: count as f64 / cpu,
        count,
    }
}

/// Commands per second for `qd`-deep batches of `bytes`-sized commands.
fn path_rate(write: bool, bytes: usize, qd: usize) -> Rate {
    let mut p = Path::new();
    let payload = vec![0x5au8; bytes];
    for _ in 0..8 {
        p.batch(write, bytes, qd, &payload);
    }
    measure(|| p.batch(write, bytes, qd, &payload))
}

/// Copies per second of `bytes` with a plain memcpy over `n` distinct
/// buffer pairs in turn: the working set of a path batch of `n` commands
/// (each command has its own data-area buffer and initiator buffer).
fn memcpy_rate_spread(bytes: usize, n: usize) -> Rate {
    let src = vec![0x5au8; bytes * n];
    let mut dst = vec![0u8; bytes * n];
    measure(|| {
        for (d, s) in dst.chunks_exact_mut(bytes).zip(src.chunks_exact(bytes)) {
            d.copy_from_slice(black_box(s));
            black_box(&mut *d);
        }
        n
    })
}

/// Copies per second of `bytes` with a plain memcpy.
fn memcpy_rate(bytes: usize) -> Rate {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    measure(|| {
        for _ in 0..16 {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        16
    })
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: do one quick pass.
    if !std::env::args().any(|a| a == "--bench") {
        let mut p = Path::new();
        let payload = vec![1u8; 4096];
        assert_eq!(p.batch(true, 4096, 4, &payload), 4);
        assert_eq!(p.batch(false, 4096, 4, &payload), 4);
        return;
    }
    println!("ring path: simulator -> ring -> SCSI -> null backend, one thread");
    println!("(cpu = per second of this thread's CPU time, wall = per elapsed second)");
    println!(
        "{:<14} {:>14} {:>14} {:>14} {:>8} {:>9}",
        "workload", "path wall", "path cpu", "memcpy cpu", "ratio", "commands"
    );
    for (write, name) in [(false, "read"), (true, "write")] {
        for qd in [1usize, 32] {
            let row = format!("4k {name} qd{qd}");
            if !selected(&row) {
                continue;
            }
            let r = path_rate(write, 4096, qd);
            let m = memcpy_rate(4096);
            println!(
                "{:<14} {:>10.0} c/s {:>10.0} c/s {:>10.0} c/s {:>8.3} {:>9}",
                row,
                r.wall,
                r.cpu,
                m.cpu,
                r.cpu / m.cpu,
                r.count
            );
        }
    }
    let gb = (1u64 << 20) as f64 / 1e9;
    let qd_1m = std::env::var("TCMUD_BENCH_QD_1M")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&q| (1..=64).contains(&q))
        .unwrap_or(8);
    println!(
        "(1 MiB rows: memcpy = one 1 MiB buffer pair, hot in cache; spread = {qd_1m} pairs \
         in turn, the working set of a batch of {qd_1m} commands)"
    );
    for (write, name) in [(false, "read"), (true, "write")] {
        let row = format!("1M {name} qd{qd_1m}");
        if !selected(&row) {
            continue;
        }
        let r = path_rate(write, 1 << 20, qd_1m);
        let m = memcpy_rate(1 << 20);
        let spread = memcpy_rate_spread(1 << 20, qd_1m);
        println!(
            "{:<14} {:>9.2} GB/s {:>9.2} GB/s {:>9.2} GB/s {:>8.3} {:>9}   spread memcpy {:.2} GB/s, ratio {:.3}",
            row,
            r.wall * gb,
            r.cpu * gb,
            m.cpu * gb,
            r.cpu / m.cpu,
            r.count,
            spread.cpu * gb,
            r.cpu / spread.cpu
        );
    }
}
