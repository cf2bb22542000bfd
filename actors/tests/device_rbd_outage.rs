//! The RBD backstore across a cluster outage: the OSD is SIGKILLed while
//! writes are in flight and started again (tests/ceph/cluster.sh kill-osd /
//! start-osd). Without `osd_op_timeout` the writes wait and complete when
//! it is back; with one they fail NOT READY / LOGICAL UNIT COMMUNICATION
//! FAILURE and succeed when the initiator retries. Either way every
//! acknowledged write reads back. In a binary of its own: the outage would
//! stall the other RBD tests. Built with the `rbd` feature only.
#![cfg(feature = "rbd")]

mod device_common;
mod rbd_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use device_common::run;
use device_common::workload::{clear_unit_attention, one};
use rbd_common::*;
use tcmud::device::RestartBudget;
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

const MIB: u64 = 1 << 20;

/// One outage at a time (they share the cluster's only OSD).
static OUTAGE: Mutex<()> = Mutex::new(());

fn cluster_sh(cmd: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/ceph/cluster.sh");
    let st = Command::new(script)
        .arg(cmd)
        .arg(cluster_dir())
        .status()
        .expect("run cluster.sh");
    assert!(st.success(), "cluster.sh {cmd} failed");
}

/// Collects `n` completions, waiting up to `limit` (the cluster's restart
/// and librados' resend are the events waited for).
fn collect_within(sim: &mut KernelSim, n: usize, limit: Duration) -> Vec<SimCompletion> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} completions",
            got.len()
        );
        let _ = sim.wait_kick(Duration::from_millis(50)).unwrap();
        got.extend(sim.process_completions().unwrap());
    }
    got
}

fn pattern(i: u64) -> Vec<u8> {
    (0..8 * 512u64)
        .map(|b| (b * 31 + i * 7 + 1) as u8)
        .collect()
}

#[test]
fn writes_in_flight_across_an_osd_restart_complete_and_read_back() {
    let _one = OUTAGE.lock().unwrap_or_else(|p| p.into_inner());
    let name = create_image("dev-outage", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let r = run(
        "rbd-outage",
        SimConfig::default(),
        bs.backend(),
        4,
        RestartBudget::default(),
        None,
        |sim| {
            clear_unit_attention(sim);
            // Some writes before, then the OSD dies with 16 more submitted.
            for i in 0..8u64 {
                let c = one(sim, &write16(i * 8, 8, false), SimDir::Out(pattern(i)));
                assert_eq!(c.status, 0);
            }
            cluster_sh("kill-osd");
            for i in 8..24u64 {
                sim.submit(&write16(i * 8, 8, false), SimDir::Out(pattern(i)))
                    .unwrap();
            }
            sim.kick().unwrap();
            cluster_sh("start-osd");
            let done = collect_within(sim, 16, Duration::from_secs(120));
            let reads: Vec<_> = (0..24u64)
                .map(|i| one(sim, &read16(i * 8, 8), SimDir::In(8 * 512)))
                .collect();
            (done, reads)
        },
    );
    let (done, reads) = r.result;
    for c in &done {
        assert_eq!(c.status, 0, "{:?}", sense(&c.sense));
    }
    for (i, c) in reads.iter().enumerate() {
        assert_eq!(c.status, 0);
        assert_eq!(c.data_in, pattern(i as u64), "block run {i}");
        assert_eq!(
            read_back(&name, i as u64 * 8 * 512, 8 * 512),
            pattern(i as u64)
        );
    }
    assert!(r.failure.is_none());
}

#[test]
fn with_osd_op_timeout_an_outage_is_not_ready_then_retried() {
    let _one = OUTAGE.lock().unwrap_or_else(|p| p.into_inner());
    let name = create_image("dev-timeout", 8 * MIB);
    let bs = open(&name, ";osd_op_timeout=2", 8 * MIB);
    let r = run(
        "rbd-timeout",
        SimConfig::default(),
        bs.backend(),
        2,
        RestartBudget::default(),
        None,
        |sim| {
            clear_unit_attention(sim);
            let first = one(sim, &write16(0, 8, false), SimDir::Out(pattern(0)));
            cluster_sh("kill-osd");
            sim.submit(&write16(8, 8, false), SimDir::Out(pattern(1)))
                .unwrap();
            sim.kick().unwrap();
            let failed = collect_within(sim, 1, Duration::from_secs(60)).remove(0);
            cluster_sh("start-osd");
            // The initiator's retry, until the cluster answers again.
            let deadline = Instant::now() + Duration::from_secs(120);
            let retried = loop {
                let c = one(sim, &write16(8, 8, false), SimDir::Out(pattern(1)));
                if c.status == 0 || Instant::now() > deadline {
                    break c;
                }
                assert_eq!(sense(&c.sense), (0x02, 0x08, 0x00), "NOT READY 08/00");
            };
            let read = one(sim, &read16(0, 16), SimDir::In(16 * 512));
            (first, failed, retried, read)
        },
    );
    let (first, failed, retried, read) = r.result;
    assert_eq!(first.status, 0);
    assert_eq!(failed.status, 2);
    assert_eq!(
        sense(&failed.sense),
        (0x02, 0x08, 0x00),
        "NOT READY, LOGICAL UNIT COMMUNICATION FAILURE"
    );
    assert_eq!(retried.status, 0, "{:?}", sense(&retried.sense));
    let mut want = pattern(0);
    want.extend(pattern(1));
    assert_eq!(read.data_in, want);
    assert!(r.failure.is_none(), "the device was kept");
}
