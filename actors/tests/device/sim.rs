//! The real device actor against the kernel simulator: thousands of random
//! commands with random backend latencies, checked byte for byte, every
//! command completed exactly once.

use std::sync::Arc;

use crate::util::device::backends::Slow;
use crate::util::device::workload::{random_io, Expect};
use crate::util::device::{run, run_on, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN, CAP_TMR};
use tcmud_core::sim::SimConfig;

const DISK_BLOCKS: usize = 4096;

fn backend(seed: u64) -> (Arc<MemBackend>, Arc<Slow>) {
    let mem = Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64));
    let slow = Arc::new(Slow::new(Arc::clone(&mem), 300, seed));
    (mem, slow)
}

#[test]
fn out_of_order_random_io_is_exact() {
    let (_mem, slow) = backend(7);
    let run = run(
        "ooo",
        SimConfig::default(),
        slow,
        4,
        RestartBudget::default(),
        None,
        |sim| random_io(sim, 3000, 48, DISK_BLOCKS, 42, Expect::AllGood),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new());
    assert_eq!(r.broken, None);
    assert_eq!((r.submitted, r.completed, r.good), (3000, 3000, 3000));
    assert!(run.stats.completed >= 3000);
    assert_eq!(run.stats.restarts, 0);
    assert!(run.failure.is_none());
}

#[test]
fn in_order_ring_random_io_is_exact() {
    let (_mem, slow) = backend(9);
    let cfg = SimConfig {
        flags: CAP_READ_LEN | CAP_TMR,
        ..SimConfig::default()
    };
    // This one runs the actor on the System's own arbiter (own_thread off).
    let run = run_on(
        "inorder",
        cfg,
        slow,
        4,
        RestartBudget::default(),
        None,
        false,
        |sim| random_io(sim, 2000, 32, DISK_BLOCKS, 4242, Expect::AllGood),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new());
    assert_eq!(r.broken, None);
    assert_eq!((r.completed, r.good), (2000, 2000));
}

#[test]
fn stop_flushes_and_persists_writes() {
    let (mem, slow) = backend(11);
    let run = run(
        "flush",
        SimConfig {
            flags: CAP_OOOC,
            ..SimConfig::default()
        },
        slow,
        2,
        RestartBudget::default(),
        None,
        |sim| random_io(sim, 300, 16, DISK_BLOCKS, 99, Expect::AllGood),
    );
    assert_eq!(run.result.errors, Vec::<String>::new());
    assert_eq!(run.result.completed, 300);
    assert!(mem.stats().flushes >= 1, "stop() must flush the backstore");
}
