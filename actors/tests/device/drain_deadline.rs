//! A drain with a deadline: when a backstore I/O hangs, `stop()` returns once
//! the drain timeout passed. Commands not started are failed (HARDWARE ERROR,
//! INTERNAL TARGET FAILURE); the hung one is left uncompleted (the kernel
//! fails it when its cmd_time_out expires; its buffers are never handed to
//! another command behind the job's back).

use std::sync::Arc;
use std::time::Duration;

use crate::util::device::backends::Gate;
use crate::util::device::workload::{clear_unit_attention, collect, read10};
use crate::util::device::{sim_options, sim_spec, BS, BS_U32};
use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device_with, DeviceOptions, RestartBudget};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

#[test]
fn stop_gives_up_on_a_hung_backstore_after_the_drain_timeout() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    let gate = Arc::new(Gate::new(Arc::clone(&mem)));
    let bs = BackstoreHandle::new(
        gate.clone(),
        BackstoreKind::Other {
            name: "memory".into(),
        },
        1,
    )
    .unwrap();
    let (stopped, completions, outstanding, broken) = actix::System::new().block_on(async {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let opts = DeviceOptions {
            tick: Duration::from_millis(10),
            drain_timeout: Some(Duration::from_millis(200)),
            ..sim_options(dev)
        };
        let handle =
            spawn_device_with(sim_spec("hung", RestartBudget::default()), bs, opts).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
        let g = Arc::clone(&gate);
        let initiator = std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            for i in 0..5 {
                sim.submit(&read10(i, 1), SimDir::In(BS)).unwrap();
            }
            sim.kick().unwrap();
            g.wait_entered(1); // the single I/O thread hangs in one read
            tx.send(()).unwrap();
            stopped_rx.recv().unwrap();
            // The four that never started were failed before the ring closed.
            let done = collect(&mut sim, 4);
            (done, sim.outstanding(), sim.broken().map(str::to_owned))
        });
        rx.await.unwrap();
        // The backstore never answers while we wait (the gate stays shut).
        let stopped = tokio::time::timeout(Duration::from_secs(30), handle.stop_reporting())
            .await
            .ok();
        // The hung command was abandoned (left uncompleted in the ring).
        assert_eq!(stopped, Some(1));
        let stopped = stopped.is_some();
        stopped_tx.send(()).unwrap();
        let (done, outstanding, broken) = initiator.join().unwrap();
        (stopped, done, outstanding, broken)
    });
    gate.open(); // let the hung job end (its result is dropped)
    assert!(stopped, "stop() waited for the hung backstore I/O");
    assert_eq!(broken, None);
    assert_eq!(completions.len(), 4);
    for c in &completions {
        assert_eq!(c.status, 2, "CHECK CONDITION");
        assert_eq!(c.sense[2] & 0xf, 0x04, "HARDWARE ERROR");
        assert_eq!(
            (c.sense[12], c.sense[13]),
            (0x44, 0x00),
            "INTERNAL TARGET FAILURE"
        );
    }
    assert_eq!(
        outstanding, 1,
        "the hung command is left to the kernel's timeout"
    );
}
