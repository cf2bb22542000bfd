//! No command waits for the actor's housekeeping tick: with the tick set to
//! an hour, every command must be fetched because of a kick and written back
//! because of a finished job. A lost wake-up stalls the workload (its 20 s
//! no-progress check fails) instead of costing one tick period, which is how
//! it would show in the VM benchmark (the daemon's tick is 1 s).

use std::sync::Arc;
use std::time::Duration;

use crate::util::device::backends::Slow;
use crate::util::device::workload::{random_io, Expect};
use crate::util::device::{run_ticking, BS, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::sim::SimConfig;

const DISK_BLOCKS: usize = 4096;
const HOUR: Duration = Duration::from_secs(3600);

/// Runs 2000 commands one at a time (any lost wake-up stalls the next
/// command), then 4000 with 32 outstanding.
fn check(name: &str, backend: Arc<dyn BlockBackend>, io_threads: usize, own_thread: bool) {
    check_depth(name, Arc::clone(&backend), io_threads, own_thread, 1, 2000);
    check_depth(name, backend, io_threads, own_thread, 32, 4000);
}

fn check_depth(
    name: &str,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    own_thread: bool,
    depth: usize,
    n: usize,
) {
    // The workload's model starts from zeros: zero the disk first.
    backend
        .write(0, &vec![0u8; DISK_BLOCKS * BS], false)
        .unwrap();
    let run = run_ticking(
        name,
        SimConfig::default(),
        backend,
        io_threads,
        own_thread,
        HOUR,
        RestartBudget::default(),
        None,
        move |sim| random_io(sim, n, depth, DISK_BLOCKS, 11, Expect::AllGood),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new(), "{name} depth {depth}");
    assert_eq!(r.broken, None, "{name}");
    assert_eq!((r.completed, r.good), (n, n), "{name} depth {depth}");
    assert!(run.failure.is_none(), "{name}");
}

#[test]
fn instant_backend_never_needs_the_tick() {
    let mem = || Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64));
    check("instant-4", mem(), 4, true);
    check("instant-1", mem(), 1, false);
}

#[test]
fn slow_backend_never_needs_the_tick() {
    let mem = Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64));
    check("slow", Arc::new(Slow::new(mem, 200, 5)), 4, true);
}

#[test]
fn file_backend_never_needs_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let file = FileBackend::create(&path, BS_U32, (DISK_BLOCKS * BS) as u64).unwrap();
    check("file", Arc::new(file), 4, true);
}

#[test]
fn thin_volume_never_needs_the_tick() {
    use tcmud_core::pool::{Pool, PoolConfig};
    let dir = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: 64 << 10,
        capacity_bytes: 4 * (DISK_BLOCKS * BS) as u64,
        low_water_pct: 95,
    };
    let pool = Pool::create(dir.path(), &cfg).unwrap();
    pool.create_volume("v", (DISK_BLOCKS * BS) as u64, BS_U32)
        .unwrap();
    // Reads are tried on the device's thread first (page-cache hits),
    // writes go to the I/O threads: both must wake the actor.
    check("thin", pool.open_volume("v").unwrap(), 4, true);
}
