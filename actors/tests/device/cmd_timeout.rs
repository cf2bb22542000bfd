//! The kernel's cmd_time_out: a command that waited longer than the device's
//! `attrib/cmd_time_out` (read from configfs at open and at every RECONFIG)
//! has been failed back to the initiator by the kernel. It is completed (the
//! kernel frees its ring entry) without being executed: a late WRITE would put
//! old data over what the initiator wrote since. It is logged and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::device::backends::Gate;
use crate::util::device::workload::{clear_unit_attention, collect, read10, write10};
use crate::util::device::{sim_options, sim_spec, BS, BS_U32};
use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device_with, DeviceOptions, RestartBudget};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

/// Waits until `d` has passed since `t` (the timeout itself is what is
/// tested: the wait is for the clock, not a guess at how long work takes).
fn wait_past(t: Instant, d: Duration) {
    while t.elapsed() < d {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_write_older_than_cmd_time_out_is_not_executed() {
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
    let cfgfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cfgfs.path().join("attrib")).unwrap();
    std::fs::write(cfgfs.path().join("attrib/cmd_time_out"), "1\n").unwrap();
    let spec = tcmud::device::DeviceSpec {
        configfs_dir: Some(cfgfs.path().to_path_buf()),
        ..sim_spec("timeout", RestartBudget::default())
    };
    let cfg_dir = cfgfs.path().to_path_buf();
    let (late, fresh, stats, broken) = actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let opts = DeviceOptions {
            tick: Duration::from_millis(10),
            ..sim_options(dev)
        };
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        assert_eq!(handle.cmd_time_out(), Some(Duration::from_secs(1)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let g = Arc::clone(&gate);
        let initiator = std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            // The only I/O thread hangs in a READ; the WRITE behind it waits.
            sim.submit(&read10(0, 1), SimDir::In(BS)).unwrap();
            sim.kick().unwrap();
            g.wait_entered(1);
            let queued = Instant::now();
            sim.submit(&write10(10, 1), SimDir::Out(vec![0xa5; BS]))
                .unwrap();
            sim.kick().unwrap();
            // The kernel would fail the WRITE back now.
            wait_past(queued, Duration::from_millis(1100));
            g.open();
            let late = collect(&mut sim, 2);
            let _ = tx.send(());
            (sim, late)
        });
        rx.await.unwrap();
        let (mut sim, late) = initiator.join().unwrap();
        // cmd_time_out 0 (no timeout), re-read as on a RECONFIG: commands run.
        std::fs::write(cfg_dir.join("attrib/cmd_time_out"), "0\n").unwrap();
        handle.reread_limits();
        assert_eq!(handle.cmd_time_out(), None);
        let fresh = std::thread::spawn(move || {
            sim.submit(&write10(20, 1), SimDir::Out(vec![0x5a; BS]))
                .unwrap();
            sim.kick().unwrap();
            let c = collect(&mut sim, 1);
            (c, sim.broken().map(str::to_owned))
        })
        .join()
        .unwrap();
        let stats = handle.stats();
        handle.stop().await;
        (late, fresh.0, stats, fresh.1)
    });
    assert_eq!(broken, None);
    let read = late.iter().find(|c| c.data_in.len() == BS || c.status == 0);
    assert!(read.is_some(), "{late:?}");
    let write = late
        .iter()
        .find(|c| c.status != 0)
        .expect("the late WRITE completed with an error");
    assert_eq!(write.status, 2, "CHECK CONDITION");
    assert_eq!(write.sense[2] & 0xf, 0x0b, "ABORTED COMMAND");
    assert_eq!(
        (write.sense[12], write.sense[13]),
        (0x2e, 0x01),
        "COMMAND TIMEOUT BEFORE PROCESSING"
    );
    let mut block = vec![0u8; BS];
    mem.read(10, &mut block).unwrap();
    assert_eq!(block, vec![0u8; BS], "the timed-out WRITE was executed");
    assert_eq!(stats.timed_out, 1);
    assert_eq!(fresh[0].status, 0);
    mem.read(20, &mut block).unwrap();
    assert_eq!(block, vec![0x5a; BS]);
}
