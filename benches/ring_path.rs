//! Commands per second through simulator → ring → SCSI emulation → null
//! backend, on one thread, next to a plain memcpy of the same bytes.
//!
//! `cargo bench --bench ring_path` prints one table: 4 KiB READ/WRITE at
//! queue depth 1 and 32 (commands/s) and 1 MiB READ/WRITE (GB/s) with the
//! ratio to memcpy of the same payload in the same run. The simulator's own
//! work (entry placement, data copies, completion walk) is inside the
//! measurement, as the kernel's would be. Set `TCMUD_BENCH_SECS` to change
//! the time per row (default 1 s).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcmud_core::backend::null::NullBackend;
use tcmud_core::ring::{Completion, Entry, Ring};
use tcmud_core::scsi::{Lun, LunConfig};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const BS: u32 = 512;

struct Path {
    sim: KernelSim,
    ring: Ring,
    lun: Lun,
    out: Vec<u8>,
    inb: Vec<u8>,
}

impl Path {
    fn new() -> Path {
        let cfg = SimConfig {
            cmdr_size: (8 << 20) - 128,
            data_size: 256 << 20,
            ..SimConfig::default()
        };
        let (sim, dev) = KernelSim::new(cfg).expect("simulator");
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
        }
    }

    /// Runs one batch of `qd` commands of `bytes` each; returns commands done.
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
                SimDir::Out(payload.to_vec())
            } else {
                SimDir::In(bytes)
            };
            self.sim.submit(&cdb, dir).expect("submit");
        }
        self.sim.kick().expect("kick");
        self.ring.drain_events().expect("drain");
        let mut done = Vec::with_capacity(qd);
        let mut it = self.ring.fetch();
        let mut cmds = Vec::with_capacity(qd);
        for e in &mut it {
            if let Ok(Entry::Cmd(cmd)) = e {
                cmds.push(cmd);
            }
        }
        for cmd in cmds {
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
            done.push(Completion::status(cmd.cmd_id, rsp.status, None));
        }
        let n = done.len();
        for c in done {
            self.ring.complete(c).expect("complete");
        }
        self.ring.kick().expect("kick");
        let _ = self.sim.wait_kick(Duration::ZERO);
        let finished = self.sim.process_completions().expect("completions");
        assert_eq!(finished.len(), n);
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

/// Commands per second for `qd`-deep batches of `bytes`-sized commands.
fn path_rate(write: bool, bytes: usize, qd: usize) -> f64 {
    let mut p = Path::new();
    let payload = vec![0x5au8; bytes];
    for _ in 0..8 {
        p.batch(write, bytes, qd, &payload);
    }
    let start = Instant::now();
    let mut cmds = 0usize;
    while start.elapsed() < secs() {
        cmds += p.batch(write, bytes, qd, &payload);
    }
    cmds as f64 / start.elapsed().as_secs_f64()
}

/// Copies per second of `bytes` with a plain memcpy.
fn memcpy_rate(bytes: usize) -> f64 {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < secs() {
        for _ in 0..16 {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
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
    println!(
        "{:<22} {:>14} {:>14} {:>10}",
        "workload", "path", "memcpy", "ratio"
    );
    for (write, name) in [(false, "read"), (true, "write")] {
        for qd in [1usize, 32] {
            let r = path_rate(write, 4096, qd);
            let m = memcpy_rate(4096);
            println!(
                "{:<22} {:>10.0} c/s {:>10.0} c/s {:>10.3}",
                format!("4k {name} qd{qd}"),
                r,
                m,
                r / m
            );
        }
    }
    for (write, name) in [(false, "read"), (true, "write")] {
        let r = path_rate(write, 1 << 20, 8) * (1u64 << 20) as f64 / 1e9;
        let m = memcpy_rate(1 << 20) * (1u64 << 20) as f64 / 1e9;
        println!(
            "{:<22} {:>10.2} GB/s {:>9.2} GB/s {:>10.3}",
            format!("1M {name} qd8"),
            r,
            m,
            r / m
        );
    }
}
