//! Device actor throughput against the kernel simulator, as a ratio to a
//! baseline: the same commands served by a plain single-threaded loop over
//! the core library (Ring + Lun, no actors, no I/O threads).
//!
//! `cargo bench -p tcmud --bench device_throughput`. Compare `actor/*`
//! with `direct/*`: the actor adds the in-flight table, I/O-thread
//! hand-off and wake-ups; with a slow backend it should win through
//! concurrency. Measured on the shared 2-core dev box (noisy), 2000 reads:
//! memory backend actor/direct ≈ 0.6–1.0 (the hand-off costs nothing
//! measurable), 50 µs backend actor/direct ≈ 0.3 (4 I/O threads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device_with, DeviceOptions, DeviceSpec};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BackendError, BlockBackend};
use tcmud_core::ring::{Completion, DataIn, Entry, Ring};
use tcmud_core::scsi::{data_direction, DataDirection, Lun, LunConfig};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const BS: usize = BS_U32 as usize;
const BS_U32: u32 = 512;
const BLOCKS: usize = 8; // 4 KiB commands
const DISK_BLOCKS: u64 = 16384;
const DEPTH: usize = 32;
const COMMANDS: usize = 2000;

/// A backend that sleeps `us` microseconds per read (a disk-like latency).
struct Latency(MemBackend, u64);

impl BlockBackend for Latency {
    fn caps(&self) -> BackendCaps {
        self.0.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        if self.1 > 0 {
            std::thread::sleep(Duration::from_micros(self.1));
        }
        self.0.read(lba, buf)
    }
    fn write(&self, lba: u64, d: &[u8], fua: bool) -> Result<(), BackendError> {
        self.0.write(lba, d, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.0.flush()
    }
    fn unmap(&self, lba: u64, n: u64) -> Result<(), BackendError> {
        self.0.unmap(lba, n)
    }
}

fn backend(us: u64) -> Arc<dyn BlockBackend> {
    Arc::new(Latency(MemBackend::new(BS_U32, DISK_BLOCKS), us))
}

fn read10(i: usize) -> Vec<u8> {
    let extents = usize::try_from(DISK_BLOCKS).expect("a bench disk") / BLOCKS;
    let lba = u32::try_from((i * 37) % extents * BLOCKS).expect("an LBA of the disk");
    let l = lba.to_be_bytes();
    let n = u8::try_from(BLOCKS).expect("a short READ(10)");
    vec![0x28, 0, l[0], l[1], l[2], l[3], 0, 0, n, 0]
}

/// Plays the initiator: keeps DEPTH reads outstanding until `n` completed;
/// `serve` is called when there is nothing to collect (the direct loop).
fn initiate(sim: &mut KernelSim, n: usize, mut serve: impl FnMut()) {
    let (mut submitted, mut completed, mut outstanding) = (0, 0, 0);
    while completed < n {
        let before = submitted;
        while submitted < n && outstanding < DEPTH {
            sim.submit(&read10(submitted), SimDir::In(BLOCKS * BS))
                .unwrap();
            submitted += 1;
            outstanding += 1;
        }
        if submitted > before {
            sim.kick().unwrap();
        }
        serve();
        let _ = sim.wait_kick(Duration::from_millis(10)).unwrap();
        let done = sim.process_completions().unwrap().len();
        completed += done;
        outstanding -= done;
    }
    assert!(sim.broken().is_none());
}

/// Baseline: one thread, Ring + Lun, no actor.
fn direct(n: usize, us: u64) -> Duration {
    let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let lun = Lun::new(LunConfig::default(), backend(us));
    let t0 = Instant::now();
    let mut buf = vec![0u8; BLOCKS * BS];
    initiate(&mut sim, n, || {
        let _ = ring.drain_events();
        let entries: Vec<_> = ring.fetch().collect();
        for e in entries {
            let Ok(Entry::Cmd(c)) = e else { continue };
            let cdb = c.cdb.as_bytes();
            let out = if data_direction(cdb) == Some(DataDirection::Out) {
                let mut v = vec![0u8; c.data.len()];
                ring.read_data_out(&c.data, &mut v).unwrap();
                v
            } else {
                Vec::new()
            };
            let r = lun.execute(cdb, &out, &mut buf[..c.data.len()]);
            ring.write_data_in(&c.data, &buf[..r.data_in_len]).unwrap();
            let done = match r.sense_bytes() {
                Some(s) => Completion::check_condition(c.cmd_id, &s),
                None => Completion::good(c.cmd_id),
            };
            let data_in = match data_direction(cdb) {
                Some(DataDirection::Out) => DataIn::data_out(&c.data),
                _ => DataIn::new(&c.data, r.data_in_len),
            };
            ring.complete(done, data_in).unwrap();
        }
        ring.kick().unwrap();
    });
    t0.elapsed()
}

/// The real device actor with 4 I/O threads.
fn actor(n: usize, us: u64) -> Duration {
    actix::System::new().block_on(async move {
        let (dev_tx, dev_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
            dev_tx.send(dev).unwrap();
            let t0 = Instant::now();
            initiate(&mut sim, n, || {});
            let _ = done_tx.send(t0.elapsed());
        });
        let dev = dev_rx.recv().unwrap();
        let bs = BackstoreHandle::new(backend(us), BackstoreKind::Other { name: "mem".into() }, 4)
            .unwrap();
        let spec = DeviceSpec::simulated("thin/p/v", DISK_BLOCKS * BS as u64);
        let opts = DeviceOptions::simulated(dev);
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let t = done_rx.await.unwrap();
        handle.stop().await;
        t
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("device_4k_reads_qd32");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, us) in [("mem", 0u64), ("50us", 50)] {
        g.bench_function(format!("direct/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| direct(COMMANDS, us)).sum())
        });
        g.bench_function(format!("actor/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| actor(COMMANDS, us)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
