//! No stale data-area bytes reach the initiator through the device actor.
//! The simulated kernel gathers data-in like `tcmu_handle_completion` (the
//! whole buffer unless READ_LEN says less; read_len 0 ignored; READ_LEN
//! ignored without CAP_READ_LEN) and, like the kernel, leaves data blocks as
//! earlier commands left them and hands out the lowest free ones. Ordinary
//! WRITEs and READs fill the data area with a pattern, then commands with
//! oversized or unexpected data-in buffers must return no pattern byte: on
//! a backend run on the actor's thread (memory), one run on I/O threads with
//! READs tried on the actor's thread first (file image), a failed device,
//! and commands aborted by a task management function.

use std::sync::Arc;
use std::time::Duration;

use crate::util::device::backends::Gate;
use crate::util::device::workload::{
    clear_unit_attention, collect, is_hw_error, one, read10, write10,
};
use crate::util::device::{run, start, BS, BS_U32};
use tcmud::device::{FaultPlan, FaultPoint, RestartBudget};
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN, CAP_TMR};
use tcmud_core::ring::TmrType;
use tcmud_core::sim::{
    find_leak, leak_pattern, leak_probes, KernelSim, SimCompletion, SimConfig, SimDir,
};

const DISK_BLOCKS: u64 = 4096;
/// Never written: reads return zeros.
const CLEAN_LBA: u32 = 3000;
/// One fill command: 64 KiB, the largest probe buffer.
const PIECE: usize = 64 << 10;

/// `pieces` concurrent 64 KiB WRITEs of the pattern from LBA 0, then READs
/// of them: the lowest `pieces * 64 KiB` of the data area hold the pattern.
fn fill(sim: &mut KernelSim, pieces: usize, failed: bool) {
    let blocks = PIECE / BS;
    for write in [true, false] {
        for i in 0..pieces {
            let (cdb, dir) = if write {
                (
                    write10(i * blocks, blocks),
                    SimDir::Out(leak_pattern(PIECE)),
                )
            } else {
                (read10(i * blocks, blocks), SimDir::In(PIECE))
            };
            sim.submit(&cdb, dir).unwrap();
        }
        sim.kick().unwrap();
        for c in collect(sim, pieces) {
            if failed {
                assert!(is_hw_error(&c), "a failed device's command: {c:?}");
            } else {
                assert_eq!(c.status, 0, "fill command");
            }
        }
    }
}

/// Every probe, each after a refill; returns the probes that leaked and
/// every completion.
fn probe_all(sim: &mut KernelSim, failed: bool) -> (Vec<String>, Vec<SimCompletion>) {
    sim.set_poison_data_in(false); // stale bytes, as the kernel leaves them
    if !failed {
        clear_unit_attention(sim);
    }
    let whole = SimConfig::default().data_size / PIECE;
    fill(sim, whole, failed);
    let mut leaks = Vec::new();
    let mut all = Vec::new();
    for p in leak_probes(CLEAN_LBA) {
        fill(sim, 2, failed);
        let c = one(sim, &p.cdb, SimDir::In(p.data_in));
        if let Some(at) = find_leak(&c.data_in) {
            leaks.push(format!(
                "{} (status {}, read_len {:?}): {} bytes back, pattern at {at}",
                p.name,
                c.status,
                c.read_len,
                c.data_in.len()
            ));
        }
        all.push(c);
    }
    assert_eq!(sim.broken(), None);
    (leaks, all)
}

fn check(name: &str, flags: u16, backend: Arc<dyn BlockBackend>, io_threads: usize) {
    let cfg = SimConfig {
        flags,
        ..SimConfig::default()
    };
    let r = run(
        name,
        cfg,
        backend,
        io_threads,
        RestartBudget::default(),
        None,
        |sim| probe_all(sim, false),
    );
    let (leaks, done) = r.result;
    assert!(leaks.is_empty(), "{name} leaked:\n{}", leaks.join("\n"));
    assert!(r.failure.is_none());
    // Some probes succeed, some are rejected: both kinds were covered.
    assert!(done.iter().any(|c| c.status == 0) && done.iter().any(|c| c.status == 2));
}

fn mem() -> Arc<dyn BlockBackend> {
    Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS))
}

#[test]
fn memory_backend_on_the_actor_thread() {
    check("leak-mem", CAP_OOOC | CAP_READ_LEN | CAP_TMR, mem(), 1);
    // Older kernels copy the whole buffer; and in-order completion.
    check("leak-mem-noreadlen", CAP_OOOC | CAP_TMR, mem(), 1);
    check("leak-mem-inorder", 0, mem(), 1);
}

#[test]
fn file_image_on_io_threads() {
    let dir = tempfile::tempdir().unwrap();
    for (i, flags) in [CAP_OOOC | CAP_READ_LEN, CAP_OOOC].into_iter().enumerate() {
        let img = dir.path().join(format!("img{i}"));
        let f = FileBackend::create(&img, BS_U32, DISK_BLOCKS * BS as u64).unwrap();
        check("leak-file", flags, Arc::new(f), 2);
    }
}

#[test]
fn failed_device() {
    // The first command panics and the budget allows no restart: every
    // command after it gets HARDWARE ERROR.
    let plan = FaultPlan {
        triggers: vec![(FaultPoint::Emulate, 1)],
    };
    let budget = RestartBudget {
        max_restarts: 0,
        window: Duration::from_secs(600),
    };
    for flags in [CAP_OOOC | CAP_READ_LEN, CAP_OOOC] {
        let cfg = SimConfig {
            flags,
            ..SimConfig::default()
        };
        let r = run(
            "leak-failed",
            cfg,
            mem(),
            1,
            budget,
            Some(plan.clone()),
            |sim| {
                // The command that fails the device.
                let first = one(sim, &[0u8; 6], SimDir::In(PIECE));
                assert!(is_hw_error(&first), "{first:?}");
                probe_all(sim, true)
            },
        );
        let (leaks, done) = r.result;
        assert!(
            leaks.is_empty(),
            "failed device leaked:\n{}",
            leaks.join("\n")
        );
        assert!(done.iter().all(is_hw_error));
        assert!(r.failure.is_some());
    }
}

#[test]
fn aborted_commands() {
    let mem = Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS));
    let gate = Arc::new(Gate::new(Arc::clone(&mem)));
    actix::System::new().block_on(async {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = start(
            "leak-tmr",
            dev,
            gate.clone(),
            1,
            RestartBudget::default(),
            None,
        );
        let g = Arc::clone(&gate);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            sim.set_poison_data_in(false);
            clear_unit_attention(&mut sim);
            // WRITEs only (READs wait at the gate): the whole data area
            // holds the pattern.
            let whole = SimConfig::default().data_size / PIECE;
            let blocks = PIECE / BS;
            for i in 0..whole {
                let cdb = write10(i * blocks, blocks);
                sim.submit(&cdb, SimDir::Out(leak_pattern(PIECE))).unwrap();
            }
            sim.kick().unwrap();
            assert!(collect(&mut sim, whole).iter().all(|c| c.status == 0));
            // One READ holds the only I/O thread; the probes queue behind
            // it and are aborted before they start.
            sim.submit(&read10(CLEAN_LBA as usize, 1), SimDir::In(BS))
                .unwrap();
            sim.kick().unwrap();
            g.wait_entered(1);
            let probes: Vec<_> = leak_probes(CLEAN_LBA).into_iter().take(10).collect();
            let ids: Vec<u16> = probes
                .iter()
                .map(|p| sim.submit(&p.cdb, SimDir::In(p.data_in)).unwrap())
                .collect();
            sim.submit_tmr(TmrType::AbortTaskSet, &ids).unwrap();
            sim.kick().unwrap();
            let aborted = collect(&mut sim, ids.len());
            g.open();
            let read = collect(&mut sim, 1);
            let _ = tx.send((aborted, read, sim.broken().map(str::to_owned)));
        });
        let (aborted, read, broken) = rx.await.unwrap();
        assert_eq!(broken, None);
        for c in &aborted {
            assert_eq!((c.status, c.sense[2] & 0xf), (2, 0x0b), "ABORTED COMMAND");
            assert_eq!(find_leak(&c.data_in), None, "{c:?}");
        }
        assert_eq!(read[0].status, 0);
        assert_eq!(read[0].data_in, vec![0u8; BS]);
        handle.stop().await;
    });
}
