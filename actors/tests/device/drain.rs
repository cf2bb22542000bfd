//! Draining on stop() and task management: commands in flight when stop()
//! is called are all completed before it returns, the backstore is flushed,
//! and nothing new is fetched afterwards; commands aborted by a TMR before
//! they started still get a completion (ABORTED COMMAND), running ones
//! finish normally.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::util::device::backends::Gate;
use crate::util::device::workload::{clear_unit_attention, collect, read10};
use crate::util::device::{start, BS, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::ring::TmrType;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

#[test]
fn stop_completes_in_flight_commands_and_flushes() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    mem.write(0, &[0x5au8; 8 * BS], false).unwrap();
    let gate = Arc::new(Gate::new(Arc::clone(&mem)));
    let flushes_before = mem.stats().flushes;
    actix::System::new().block_on(async {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = start(
            "drain",
            dev,
            gate.clone(),
            2,
            RestartBudget::default(),
            None,
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
        let g = Arc::clone(&gate);
        let initiator = std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let mut ids = HashSet::new();
            for i in 0..10 {
                ids.insert(sim.submit(&read10(i % 8, 1), SimDir::In(BS)).unwrap());
            }
            sim.kick().unwrap();
            g.wait_entered(2); // both I/O threads hold a read at the gate
            tx.send(()).unwrap();
            stopped_rx.recv().unwrap();
            let done = collect(&mut sim, 10);
            // A command queued after the stop is never fetched (the ring
            // is closed: the simulated uio fd has no reader any more).
            sim.submit(&read10(0, 1), SimDir::In(BS)).unwrap();
            let _ = sim.kick();
            std::thread::sleep(Duration::from_millis(100));
            let late = sim.process_completions().unwrap();
            (
                ids,
                done,
                late,
                sim.outstanding(),
                sim.broken().map(str::to_owned),
            )
        });
        rx.await.unwrap();
        let mut stop = Box::pin(handle.stop());
        assert!(
            futures::poll!(stop.as_mut()).is_pending(),
            "stop waits for the reads"
        );
        gate.open();
        stop.await;
        stopped_tx.send(()).unwrap();
        let (ids, done, late, outstanding, broken) = initiator.join().unwrap();
        assert_eq!(broken, None);
        let got: HashSet<u16> = done.iter().map(|c| c.cmd_id).collect();
        assert_eq!(got, ids, "every in-flight command completed once");
        assert_eq!(done.len(), 10);
        for c in &done {
            assert_eq!(c.status, 0);
            assert_eq!(c.data_in, vec![0x5au8; BS]);
        }
        assert!(late.is_empty());
        assert_eq!(outstanding, 1);
    });
    assert!(mem.stats().flushes > flushes_before, "stop() flushed");
}

#[test]
fn tmr_cancels_unstarted_commands_which_still_complete() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    let gate = Arc::new(Gate::new(Arc::clone(&mem)));
    actix::System::new().block_on(async {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = start("tmr", dev, gate.clone(), 1, RestartBudget::default(), None);
        let g = Arc::clone(&gate);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let ids: Vec<u16> = (0..20)
                .map(|i| sim.submit(&read10(i, 1), SimDir::In(BS)).unwrap())
                .collect();
            sim.kick().unwrap();
            g.wait_entered(1); // the single I/O thread is busy with one read
            sim.submit_tmr(TmrType::LunReset, &ids).unwrap();
            sim.kick().unwrap();
            let aborted = collect(&mut sim, 19);
            g.open();
            let rest = collect(&mut sim, 1);
            let _ = tx.send((ids, aborted, rest, sim.broken().map(str::to_owned)));
        });
        let (ids, aborted, rest, broken) = rx.await.unwrap();
        assert_eq!(broken, None);
        for c in &aborted {
            assert_eq!(c.status, 2);
            assert_eq!(c.sense[2] & 0xf, 0x0b, "ABORTED COMMAND");
        }
        assert_eq!(rest[0].status, 0, "the running read finishes normally");
        let mut all: Vec<u16> = aborted.iter().chain(&rest).map(|c| c.cmd_id).collect();
        all.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(all, want);
        handle.stop().await;
    });
}
