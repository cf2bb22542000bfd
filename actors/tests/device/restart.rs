//! Crash restart of the device actor: panics injected in the SCSI emulation
//! (I/O threads), in the reply path and in the timer. The actor restarts and
//! every command is still completed exactly once with correct data, the
//! simulated kernel never sees an unknown or repeated cmd_id, a COMPARE AND
//! WRITE is never executed twice, and an exhausted restart budget fails the
//! device cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::device::backends::Slow;
use crate::util::device::workload::{
    clear_unit_attention, is_hw_error, random_io, random_io_tmr, Expect, Rng,
};
use crate::util::device::{run, run_on, BS, BS_U32};
use tcmud::device::{FaultPlan, FaultPoint, RestartBudget};
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::ring::layout::{CAP_READ_LEN, CAP_TMR};
use tcmud_core::sim::{SimConfig, SimDir};

const DISK_BLOCKS: usize = 4096;

fn slow_backend(seed: u64) -> Arc<Slow> {
    let mem = Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64));
    Arc::new(Slow::new(mem, 200, seed))
}

fn generous() -> RestartBudget {
    RestartBudget {
        max_restarts: 1000,
        window: Duration::from_secs(60),
    }
}

#[test]
fn random_panics_lose_and_repeat_nothing() {
    random_panics(SimConfig::default(), &[3, 17, 2024], |s| slow_backend(s));
}

/// A memory backend never blocks: its commands run on the device's own
/// thread (no I/O-thread hand-off). Panics there are handled the same way.
#[test]
fn random_panics_with_commands_run_on_the_device_thread() {
    let mem =
        |_seed| -> Arc<dyn BlockBackend> { Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64)) };
    assert!(!mem(0).may_block());
    random_panics(SimConfig::default(), &[11, 4242], mem);
}

#[test]
fn random_panics_on_an_in_order_ring() {
    let cfg = SimConfig {
        flags: CAP_READ_LEN | CAP_TMR,
        ..SimConfig::default()
    };
    random_panics(cfg, &[5, 99], |s| slow_backend(s));
}

fn random_panics(cfg: SimConfig, seeds: &[u64], backend: impl Fn(u64) -> Arc<dyn BlockBackend>) {
    for (i, &seed) in seeds.iter().enumerate() {
        let mut rng = Rng(seed);
        let n = 2000u64;
        let cmds = usize::try_from(n).unwrap();
        let mut triggers = Vec::new();
        for _ in 0..6 {
            triggers.push((FaultPoint::Emulate, rng.below(n - 200)));
            triggers.push((FaultPoint::Reply, rng.below(n - 200)));
        }
        triggers.push((FaultPoint::Timer, rng.below(n / 2)));
        let sure = 12; // emulate + reply triggers all fire before the end
        let plan = FaultPlan { triggers };
        // Alternate between an own device thread and the System's arbiter.
        let run = run_on(
            "panics",
            cfg,
            backend(seed),
            4,
            generous(),
            Some(plan),
            i % 2 == 0,
            move |sim| random_io(sim, cmds, 48, DISK_BLOCKS, seed, Expect::AllGood),
        );
        let r = run.result;
        assert_eq!(r.errors, Vec::<String>::new(), "seed {seed}");
        assert_eq!(r.broken, None, "seed {seed}");
        assert_eq!((r.completed, r.good), (cmds, cmds), "seed {seed}");
        assert!(run.stats.restarts >= sure, "seed {seed}: {:?}", run.stats);
        assert!(run.failure.is_none());
    }
}

#[test]
fn timer_panic_restarts_the_actor() {
    let plan = FaultPlan {
        triggers: vec![(FaultPoint::Timer, 0), (FaultPoint::Timer, 0)],
    };
    let run = run(
        "timer",
        SimConfig::default(),
        slow_backend(5),
        2,
        generous(),
        Some(plan),
        |sim| {
            // Long enough for several 10 ms ticks.
            let r = random_io(sim, 400, 8, DISK_BLOCKS, 77, Expect::AllGood);
            std::thread::sleep(Duration::from_millis(100));
            r
        },
    );
    assert_eq!(run.result.errors, Vec::<String>::new());
    assert_eq!(run.result.broken, None);
    assert_eq!(run.stats.restarts, 2);
}

#[test]
fn exhausted_budget_fails_the_device_cleanly() {
    let plan = FaultPlan {
        triggers: (1..=4).map(|i| (FaultPoint::Reply, i * 50)).collect(),
    };
    let budget = RestartBudget {
        max_restarts: 3,
        window: Duration::from_secs(600),
    };
    let run = run(
        "budget",
        SimConfig::default(),
        slow_backend(8),
        4,
        budget,
        Some(plan),
        |sim| random_io(sim, 1000, 32, DISK_BLOCKS, 5, Expect::GoodOrFailed),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new());
    assert_eq!(r.broken, None);
    assert_eq!(r.completed, 1000, "every command completed exactly once");
    assert!(
        r.hw_errors > 0,
        "commands after the failure get HARDWARE ERROR"
    );
    assert!(r.good >= 150, "commands before the failure ran: {r:?}");
    let why = run.failure.expect("device failed");
    assert!(why.contains("restart budget"), "{why}");
    assert_eq!(run.stats.restarts, 4);
}

/// COMPARE AND WRITE (16) of one block at `lba`: compare with `old`, write `new`.
fn caw(lba: u64, old: u8, new: u8) -> (Vec<u8>, Vec<u8>) {
    let mut cdb = vec![0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = 1;
    let mut data = vec![old; BS];
    data.extend(std::iter::repeat_n(new, BS));
    (cdb, data)
}

#[test]
fn compare_and_write_never_runs_twice() {
    let mem = Arc::new(MemBackend::new(BS_U32, 64));
    let backend: Arc<dyn BlockBackend> = mem.clone();
    // Panic right after the emulation executed CAW number 3, 7 and 11 (the
    // write is done, the result lost).
    let plan = FaultPlan {
        triggers: [3, 7, 11]
            .iter()
            .map(|&k| (FaultPoint::Emulate, k + 1))
            .collect(),
    };
    let run = run(
        "caw",
        SimConfig::default(),
        backend,
        2,
        generous(),
        Some(plan),
        |sim| {
            clear_unit_attention(sim);
            let mut statuses = Vec::new();
            for i in 0..16u8 {
                let (cdb, data) = caw(5, i, i + 1);
                sim.submit(&cdb, SimDir::Out(data)).unwrap();
                sim.kick().unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
                    let done = sim.process_completions().unwrap();
                    if let Some(c) = done.first() {
                        statuses.push((c.status, is_hw_error(c), c.sense.get(2).copied()));
                        break;
                    }
                    assert!(Instant::now() < deadline, "CAW {i} never completed");
                }
            }
            (statuses, sim.broken().map(str::to_owned))
        },
    );
    let (statuses, broken) = run.result;
    assert_eq!(broken, None);
    // No MISCOMPARE (sense key 0x0e): a second execution of a CAW whose
    // write already happened would miscompare.
    for (i, (st, hw, key)) in statuses.iter().enumerate() {
        assert!(*st == 0 || *hw, "CAW {i}: status {st:#x} sense key {key:?}");
    }
    let failed = statuses.iter().filter(|s| s.1).count();
    assert_eq!(
        failed, 3,
        "the panicked CAWs report HARDWARE ERROR: {statuses:?}"
    );
    let mut block = vec![0u8; BS];
    mem.read(5, &mut block).unwrap();
    assert_eq!(block, vec![16u8; BS]);
}

#[test]
fn panics_and_task_aborts_together() {
    let plan = four_panics();
    // One slow I/O thread: commands queue up, so aborts find some unstarted.
    let mem = Arc::new(MemBackend::new(BS_U32, DISK_BLOCKS as u64));
    let slow = Arc::new(Slow::new(mem, 400, 21));
    let run = run(
        "tmr-panics",
        SimConfig::default(),
        slow,
        1,
        generous(),
        Some(plan),
        |sim| random_io_tmr(sim, 1200, 32, DISK_BLOCKS, 8, Expect::AllGood, Some(7)),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new());
    assert_eq!(r.broken, None);
    assert_eq!(r.completed, 1200);
    assert!(r.tmrs > 30, "{r:?}");
    assert!(
        r.aborted > 0,
        "some aborts caught commands not yet started: {r:?}"
    );
    assert_eq!(r.good + r.aborted, 1200);
    assert_eq!(run.stats.restarts, 4);
}

/// The same with a file backend: small READs are served on the device's
/// own thread (page-cache hits), everything else on the I/O thread, while
/// aborts arrive and the actor and I/O thread panic; every command is
/// answered once with the right bytes.
#[test]
fn tmr_and_panics_with_reads_served_on_the_device_thread() {
    let plan = four_panics();
    let dir = tempfile::tempdir().unwrap();
    let file =
        FileBackend::create(&dir.path().join("img"), BS_U32, (DISK_BLOCKS * BS) as u64).unwrap();
    let run = run(
        "tmr-panics-file",
        SimConfig::default(),
        Arc::new(file),
        1,
        generous(),
        Some(plan),
        |sim| random_io_tmr(sim, 1200, 32, DISK_BLOCKS, 9, Expect::AllGood, Some(7)),
    );
    let r = run.result;
    assert_eq!(r.errors, Vec::<String>::new());
    assert_eq!(r.broken, None);
    assert_eq!(r.completed, 1200);
    assert!(r.tmrs > 0 && r.aborted > 0, "{r:?}");
    assert_eq!(r.good + r.aborted, 1200);
    assert_eq!(run.stats.restarts, 4);
}

/// Two panics of the I/O thread and two of the actor, spread over a run.
fn four_panics() -> FaultPlan {
    FaultPlan {
        triggers: vec![
            (FaultPoint::Emulate, 150),
            (FaultPoint::Reply, 400),
            (FaultPoint::Emulate, 700),
            (FaultPoint::Reply, 900),
        ],
    }
}
