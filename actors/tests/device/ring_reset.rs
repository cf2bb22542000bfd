//! `action/reset_ring` from outside while commands are in flight: the device
//! actor notices, drops what the kernel already failed (never completes those
//! ids: the kernel would mark the ring broken) and serves the reset ring from
//! its start.

use std::sync::Arc;

use crate::util::device::backends::Gate;
use crate::util::device::workload::{clear_unit_attention, one, read10, write10};
use crate::util::device::{run, BS, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::sim::{SimConfig, SimDir};

#[test]
fn an_outside_ring_reset_drops_what_was_in_flight_and_serving_goes_on() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    let gate = Arc::new(Gate::new(Arc::clone(&mem)));
    let g = Arc::clone(&gate);
    let run = run(
        "reset",
        SimConfig::default(),
        gate,
        2,
        RestartBudget::default(),
        None,
        move |sim| {
            clear_unit_attention(sim);
            for i in 0..10 {
                sim.submit(&read10(i, 1), SimDir::In(BS)).unwrap();
            }
            sim.kick().unwrap();
            g.wait_entered(2); // both I/O threads hold a read at the gate
            let failed = sim.reset_ring().unwrap().len();
            // the reads the kernel failed now finish inside tcmud
            g.open();
            // A TEST UNIT READY (no data buffer) is fetched only once every job
            // of a forgotten command ended: until then, a forgotten READ still
            // copies into data-area blocks the kernel may already have given to
            // a new command (it frees them at the reset, under the job), which
            // tcmud cannot prevent. Its completion is the point from which the
            // data of new commands is tcmud's alone.
            let tur = one(sim, &[0u8; 6], SimDir::None);
            assert_eq!(tur.status, 0, "TEST UNIT READY after the reset");
            let mut bad = Vec::new();
            for i in 0..40usize {
                let lba = 100 + i;
                let data = vec![u8::try_from(i).expect("i < 40") ^ 0x5a; BS];
                let w = one(sim, &write10(lba, 1), SimDir::Out(data.clone()));
                let r = one(sim, &read10(lba, 1), SimDir::In(BS));
                if w.status != 0 || r.status != 0 || r.data_in != data {
                    bad.push((lba, w.status, r.status));
                }
            }
            (
                failed,
                bad,
                sim.broken().map(str::to_owned),
                sim.outstanding(),
            )
        },
    );
    let (failed, bad, broken, outstanding) = run.result;
    assert_eq!(failed, 10, "the reset failed every read");
    assert_eq!(broken, None);
    assert_eq!(bad, Vec::<(usize, u8, u8)>::new());
    assert_eq!(outstanding, 0);
    assert_eq!(run.stats.ring_resets, 1);
    assert!(run.failure.is_none(), "{:?}", run.failure);
}
