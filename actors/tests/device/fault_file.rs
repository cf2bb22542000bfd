//! Run-time fault injection for VM scenarios (`fault-injection` feature):
//! a trigger file named by `TCMUD_FAULT_FILE` is armed by the device tick,
//! and the actor restarts without losing a command.
//!
//! `cargo test -p tcmud --features fault-injection --test integration device::fault_file`

use crate::util::{own_process, test_name};
use std::sync::Arc;

use crate::util::device::backends::Slow;
use crate::util::device::workload::{random_io, Expect};
use crate::util::device::{run, BS_U32};
use tcmud::device::fault::FAULT_FILE_ENV;
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::sim::SimConfig;

#[test]
fn trigger_file_arms_panics_at_run_time() {
    // Every device of the process reads the variable: set it in a process
    // of its own.
    if !own_process(&test_name!(trigger_file_arms_panics_at_run_time)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("panic");
    std::fs::write(&trigger, "reply@40,emulate@80").unwrap();
    // The only test of this process: nothing else reads the variable.
    std::env::set_var(FAULT_FILE_ENV, &trigger);
    let mem = Arc::new(MemBackend::new(BS_U32, 2048));
    let slow = Arc::new(Slow::new(mem, 300, 1));
    let run = run(
        "fault-file",
        SimConfig::default(),
        slow,
        2,
        RestartBudget::default(),
        None,
        |sim| random_io(sim, 600, 16, 2048, 13, Expect::AllGood),
    );
    assert_eq!(run.result.errors, Vec::<String>::new());
    assert_eq!(run.result.broken, None);
    assert_eq!(run.result.completed, 600);
    assert_eq!(run.stats.restarts, 2);
    assert!(!trigger.exists(), "the trigger file is consumed");
}
