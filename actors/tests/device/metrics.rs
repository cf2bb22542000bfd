//! Device metrics: each command counted once in the latency histogram of
//! its operation class, CHECK CONDITIONs by sense key, task management
//! notifications; the histograms' buckets are cumulative and end at the
//! count.

use std::sync::Arc;

use crate::util::device::workload::{clear_unit_attention, one, read10, write10};
use crate::util::device::{run, BS, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::ring::TmrType;
use tcmud_core::scsi::OpClass;
use tcmud_core::sim::{SimConfig, SimDir};

const BLOCKS: u64 = 2048;

/// UNMAP(10) of `blocks` at `lba`: the CDB and its parameter list.
fn unmap(lba: u64, blocks: u32) -> (Vec<u8>, Vec<u8>) {
    let mut list = vec![0u8; 24];
    list[0..2].copy_from_slice(&22u16.to_be_bytes()); // UNMAP DATA LENGTH
    list[2..4].copy_from_slice(&16u16.to_be_bytes()); // BLOCK DESCRIPTOR DATA LENGTH
    list[8..16].copy_from_slice(&lba.to_be_bytes());
    list[16..20].copy_from_slice(&blocks.to_be_bytes());
    let cdb = vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]; // PARAMETER LIST LENGTH 24
    (cdb, list)
}

#[test]
fn counters_and_latency_histograms_rise_by_what_was_done() {
    let mem = Arc::new(MemBackend::new(BS_U32, BLOCKS));
    let failing = Arc::clone(&mem);
    let r = run(
        "metrics",
        SimConfig::default(),
        mem,
        2,
        RestartBudget::default(),
        None,
        move |sim| {
            // TEST UNIT READY until GOOD: the first ones get the power-on
            // UNIT ATTENTION.
            let turs = clear_unit_attention(sim) as u64;
            for i in 0..10 {
                assert_eq!(one(sim, &read10(i, 1), SimDir::In(BS)).status, 0);
            }
            for i in 0..7 {
                let data = vec![7u8; 2 * BS];
                assert_eq!(
                    one(sim, &write10(100 + 2 * i, 2), SimDir::Out(data)).status,
                    0
                );
            }
            for _ in 0..2 {
                let sync = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // SYNCHRONIZE CACHE(10)
                assert_eq!(one(sim, &sync, SimDir::None).status, 0);
            }
            for i in 0..3 {
                let (cdb, list) = unmap(100 + 8 * i, 8);
                assert_eq!(one(sim, &cdb, SimDir::Out(list)).status, 0);
            }
            // ILLEGAL REQUEST: a READ past the end, an unsupported opcode.
            let past = one(
                sim,
                &read10(usize::try_from(BLOCKS).unwrap(), 1),
                SimDir::In(BS),
            );
            assert_eq!((past.status, past.sense[2] & 0xf), (2, 5));
            let vendor = one(sim, &[0x02, 0, 0, 0, 0, 0], SimDir::None);
            assert_eq!((vendor.status, vendor.sense[2] & 0xf), (2, 5));
            // MEDIUM ERROR from the backend.
            failing.fail_next_reads(1);
            let bad = one(sim, &read10(5, 1), SimDir::In(BS));
            assert_eq!((bad.status, bad.sense[2] & 0xf), (2, 3));
            // A task management notification with nothing left to cancel.
            sim.submit_tmr(TmrType::AbortTask, &[]).unwrap();
            sim.kick().unwrap();
            // A command after it: fetched after the TMR entry.
            assert_eq!(one(sim, &[0u8; 6], SimDir::None).status, 0);
            turs
        },
    );
    let turs = r.result;
    let s = r.stats;
    assert_eq!(r.failure, None);
    let count = |c: OpClass| {
        let (_, h) = r.latency.iter().find(|(k, _)| *k == c).unwrap();
        h.count
    };
    // Reads: 10 good, one past the end, one failed by the backend.
    assert_eq!(count(OpClass::Read), 12);
    assert_eq!(count(OpClass::Write), 7);
    assert_eq!(count(OpClass::Flush), 2);
    assert_eq!(count(OpClass::Unmap), 3);
    // TEST UNIT READYs (the last one included) and the vendor opcode.
    assert_eq!(count(OpClass::Other), turs + 2);
    assert_eq!(s.completed, 12 + 7 + 2 + 3 + turs + 2);
    assert_eq!(s.sense_keys[6], turs - 1, "unit attentions");
    assert_eq!(s.sense_keys[5], 2, "illegal requests");
    assert_eq!(s.sense_keys[3], 1, "medium errors");
    assert_eq!(s.sense_keys.iter().sum::<u64>(), s.errors);
    assert_eq!((s.task_management, s.aborted), (1, 0));
    for (class, h) in &r.latency {
        assert_eq!(h.buckets.len(), 19, "{class:?}");
        assert!(h
            .buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, h.count)));
        assert_eq!(h.count > 0, h.sum_seconds > 0.0, "{class:?}: {h:?}");
    }
}
