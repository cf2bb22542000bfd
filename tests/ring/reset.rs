//! `action/reset_ring` from outside, against the kernel simulator: the ring
//! notices (the mailbox `cmd_tail` is not the one it stored, or `cmd_head`
//! went behind the fetch cursor) and a resync walks the new entries from 0;
//! completing a command the kernel already failed breaks the ring.

use std::time::Duration;

use tcmud_core::ring::{Completion, DataIn, Entry, Ring};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const TUR: [u8; 6] = [0; 6];

fn setup(cfg: SimConfig) -> (KernelSim, Ring) {
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    (sim, ring)
}

fn ids(ring: &mut Ring) -> Vec<u16> {
    ring.fetch()
        .map(|e| match e.unwrap() {
            Entry::Cmd(c) => c.cmd_id,
            Entry::Tmr(t) => panic!("unexpected tmr {t:?}"),
        })
        .collect()
}

fn complete_and_check(sim: &mut KernelSim, ring: &mut Ring, ids: &[u16]) -> usize {
    for &id in ids {
        ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    sim.process_completions().unwrap().len()
}

/// Both ways a reset shows: with a completed prefix (our tail moved, the
/// mailbox's went back to 0) and with nothing completed yet (tail 0 on both
/// sides, but `cmd_head` is now behind the fetch cursor).
#[test]
fn a_reset_is_detected_and_resync_serves_new_commands() {
    for completed_first in [true, false] {
        let (mut sim, mut ring) = setup(SimConfig::default());
        let mut first = Vec::new();
        for _ in 0..6 {
            first.push(sim.submit(&TUR, SimDir::None).unwrap());
        }
        sim.kick().unwrap();
        assert_eq!(ids(&mut ring), first);
        if completed_first {
            assert_eq!(complete_and_check(&mut sim, &mut ring, &first[..2]), 2);
        }
        assert!(!ring.reset_by_kernel(), "nothing happened yet");
        let failed = sim.reset_ring().unwrap();
        assert_eq!(failed.len(), if completed_first { 4 } else { 6 });
        // One new command (head moves from 0 to one entry, behind our cursor).
        let new = sim.submit(&TUR, SimDir::None).unwrap();
        sim.kick().unwrap();
        assert!(ring.reset_by_kernel(), "completed_first={completed_first}");
        ring.resync_from_tail();
        assert!(!ring.reset_by_kernel());
        assert_eq!(ids(&mut ring), vec![new]);
        assert_eq!(complete_and_check(&mut sim, &mut ring, &[new]), 1);
        assert_eq!(sim.broken(), None);
        assert_eq!(sim.outstanding(), 0);
    }
}

/// What the detection prevents: answering a command the reset already failed
/// (the kernel would mark the ring broken). `complete` checks for a reset
/// itself and withholds the answer, so a reset that lands between the
/// device's own check and its completions breaks nothing.
#[test]
fn completing_a_command_failed_by_the_reset_is_withheld() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    sim.kick().unwrap();
    assert_eq!(ids(&mut ring), vec![a, b]);
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    sim.reset_ring().unwrap();
    let err = ring
        .complete(Completion::good(b), DataIn::NONE)
        .unwrap_err();
    assert!(
        matches!(err, tcmud_core::ring::RingError::ResetByKernel(id) if id == b),
        "{err}"
    );
    ring.kick().unwrap();
    let _ = sim.wait_kick(Duration::from_millis(200));
    let _ = sim.process_completions();
    assert_eq!(sim.broken(), None);
    // and serving goes on after the resync
    ring.resync_from_tail();
    let c = sim.submit(&TUR, SimDir::None).unwrap();
    sim.kick().unwrap();
    assert_eq!(ids(&mut ring), vec![c]);
    assert_eq!(complete_and_check(&mut sim, &mut ring, &[c]), 1);
    assert_eq!(sim.broken(), None);
}
