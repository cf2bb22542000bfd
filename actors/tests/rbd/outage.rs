//! The RBD backstore across a cluster outage: the OSD is SIGKILLed while
//! writes are in flight and started again (tests/ceph/cluster.sh kill-osd /
//! start-osd). Without `osd_op_timeout` the writes wait and complete when
//! it is back; with one they fail NOT READY / LOGICAL UNIT COMMUNICATION
//! FAILURE and succeed when the initiator retries. Either way every
//! acknowledged write reads back. Each test holds the cluster exclusively
//! (`util::rbd::cluster_outage`): the outage would stall the other RBD
//! tests. Built with the `rbd` feature only.

use std::time::{Duration, Instant};

use crate::util::device::run_image;
use crate::util::device::workload::{clear_unit_attention, one};
use crate::util::rbd::*;
use tcmud_core::sim::{KernelSim, SimCompletion, SimDir};

const MIB: u64 = 1 << 20;

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
        .map(|b| (b * 31 + i * 7 + 1).to_le_bytes()[0])
        .collect()
}

#[test]
fn writes_in_flight_across_an_osd_restart_complete_and_read_back() {
    let _outage = cluster_outage();
    let name = create_image("dev-outage", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let r = run_image("rbd-outage", &bs, 4, |sim| {
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
    });
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
    let _outage = cluster_outage();
    let name = create_image("dev-timeout", 8 * MIB);
    let bs = open(&name, ";osd_op_timeout=2", 8 * MIB);
    let r = run_image("rbd-timeout", &bs, 2, |sim| {
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
    });
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

/// No thread waits per I/O: with the OSD down, writes outstanding in
/// librbd and a single I/O thread, an INQUIRY (which takes that thread)
/// still completes first. With the writes on the I/O thread (the blocking
/// path) it would queue behind them until the OSD is back.
#[test]
fn io_waiting_on_the_cluster_holds_no_thread() {
    let _outage = cluster_outage();
    let name = create_image("dev-async", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let r = run_image("rbd-async", &bs, 1, |sim| {
        clear_unit_attention(sim);
        cluster_sh("kill-osd");
        let mut writes = Vec::new();
        for i in 0..4u64 {
            let id = sim
                .submit(&write16(i * 8, 8, false), SimDir::Out(pattern(i)))
                .unwrap();
            writes.push(id);
        }
        sim.kick().unwrap();
        let inquiry = sim.submit(&[0x12, 0, 0, 0, 96, 0], SimDir::In(96)).unwrap();
        sim.kick().unwrap();
        // The bound only limits how long a failing run takes.
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            collect_within(sim, 1, Duration::from_secs(30)).remove(0)
        }));
        cluster_sh("start-osd");
        let first = first.ok();
        let n = if first.is_some() { 4 } else { 5 };
        let rest = collect_within(sim, n, Duration::from_secs(120));
        (inquiry, writes, first, rest)
    });
    let (inquiry, writes, first, rest) = r.result;
    let first = first.expect("nothing completed while the OSD was down");
    assert_eq!(first.cmd_id, inquiry, "the INQUIRY completes first");
    assert_eq!(first.status, 0);
    for c in &rest {
        assert!(writes.contains(&c.cmd_id));
        assert_eq!(c.status, 0, "{:?}", sense(&c.sense));
    }
    for i in 0..4u64 {
        assert_eq!(read_back(&name, i * 8 * 512, 8 * 512), pattern(i));
    }
}

/// The initiator's retry of a command failing NOT READY (the reopen is
/// the event waited for; the pause only spaces the retries).
fn until_good(sim: &mut KernelSim, cdb: &[u8], dir: SimDir) -> (SimCompletion, usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut not_ready = 0;
    loop {
        let c = one(sim, cdb, dir.clone());
        if c.status == 0 {
            return (c, not_ready);
        }
        assert_eq!(sense(&c.sense), (0x02, 0x08, 0x00), "NOT READY 08/00");
        assert!(Instant::now() < deadline, "no reopen within 120 s");
        not_ready += 1;
        let _ = sim.wait_kick(Duration::from_millis(20));
    }
}

#[test]
fn a_blocklisted_client_reopens_and_loses_no_acknowledged_write() {
    let _outage = cluster_outage();
    let name = create_image("dev-blocklist", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let n2 = name.clone();
    let r = run_image("rbd-blocklist", &bs, 2, move |sim| {
        clear_unit_attention(sim);
        for i in 0..8u64 {
            let c = one(sim, &write16(i * 8, 8, false), SimDir::Out(pattern(i)));
            assert_eq!(c.status, 0);
        }
        // Mid-I/O: 8 writes submitted, then the client is blocklisted.
        let ids: Vec<u16> = (8..16u64)
            .map(|i| {
                sim.submit(&write16(i * 8, 8, false), SimDir::Out(pattern(i)))
                    .unwrap()
            })
            .collect();
        sim.kick().unwrap();
        let old = blocklist_watchers(&n2);
        assert_eq!(old.len(), 1, "one client: {old:?}");
        let racing = collect_within(sim, 8, Duration::from_secs(120));
        // What failed is retried by the initiator, then 8 more writes.
        let failed = (8..16u64).filter(|&i| {
            let id = ids[usize::try_from(i - 8).unwrap()];
            racing.iter().any(|c| c.cmd_id == id && c.status != 0)
        });
        let mut not_ready = 0;
        for i in failed.collect::<Vec<_>>().into_iter().chain(16..24) {
            let (c, n) = until_good(sim, &write16(i * 8, 8, false), SimDir::Out(pattern(i)));
            assert_eq!(c.status, 0);
            not_ready += n;
        }
        let reads: Vec<_> = (0..24u64)
            .map(|i| one(sim, &read16(i * 8, 8), SimDir::In(8 * 512)))
            .collect();
        (old, racing, not_ready, reads, watchers(&n2))
    });
    let (old, racing, not_ready, reads, now) = r.result;
    for c in &racing {
        assert!(
            c.status == 0 || sense(&c.sense) == (0x02, 0x08, 0x00),
            "{:?}",
            sense(&c.sense)
        );
    }
    eprintln!(
        "{} of 8 racing writes failed NOT READY, {not_ready} retries before the reopen",
        racing.iter().filter(|c| c.status != 0).count()
    );
    for (i, c) in reads.iter().enumerate() {
        assert_eq!(c.status, 0, "{:?}", sense(&c.sense));
        assert_eq!(c.data_in, pattern(i as u64), "block run {i}");
        assert_eq!(
            read_back(&name, i as u64 * 8 * 512, 8 * 512),
            pattern(i as u64)
        );
    }
    assert_eq!(now.len(), 1, "reopened: one new client {now:?}");
    assert_ne!(now, old, "a new client address after the reopen");
    assert!(r.failure.is_none(), "the device was kept");
}

#[test]
fn an_image_deleted_while_served_fails_its_lun_and_not_the_others() {
    let _outage = cluster_outage();
    let name = create_image("dev-deleted", 8 * MIB);
    let other = create_image("dev-survivor", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let bs2 = open(&other, "", 8 * MIB);
    let n2 = name.clone();
    let r = run_image("rbd-deleted", &bs, 2, move |sim| {
        clear_unit_attention(sim);
        let w = one(sim, &write16(0, 8, false), SimDir::Out(pattern(0)));
        assert_eq!(w.status, 0);
        // `rbd rm` refuses an image with watchers: blocklist ours (and
        // any reopened one) until the removal goes through.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            blocklist_watchers(&n2);
            match ceph_cli("rbd", &["rm", &format!("rbd/{n2}")]) {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "rbd rm: {e}"),
            }
        }
        // Commands fail NOT READY while the reopen runs, then for good.
        let deadline = Instant::now() + Duration::from_secs(120);
        let gone = loop {
            let c = one(sim, &read16(0, 8), SimDir::In(8 * 512));
            assert_ne!(c.status, 0, "a read of a deleted image succeeded");
            if sense(&c.sense) != (0x02, 0x08, 0x00) {
                break c;
            }
            assert!(Instant::now() < deadline, "still NOT READY after 120 s");
            let _ = sim.wait_kick(Duration::from_millis(20));
        };
        let write = one(sim, &write16(8, 8, false), SimDir::Out(pattern(1)));
        (gone, write)
    });
    let (gone, write) = r.result;
    assert_eq!(
        sense(&gone.sense),
        (0x04, 0x44, 0x00),
        "HARDWARE ERROR 44/00"
    );
    assert_eq!(
        sense(&write.sense),
        (0x04, 0x44, 0x00),
        "HARDWARE ERROR 44/00"
    );
    // Another LUN of the same process keeps serving.
    let r2 = run_image("rbd-survivor", &bs2, 2, |sim| {
        clear_unit_attention(sim);
        let w = one(sim, &write16(0, 8, false), SimDir::Out(pattern(5)));
        let rd = one(sim, &read16(0, 8), SimDir::In(8 * 512));
        (w.status, rd.status, rd.data_in)
    });
    assert_eq!(r2.result, (0, 0, pattern(5)));
    assert_eq!(read_back(&other, 0, 8 * 512), pattern(5));
}
