//! A hostile or corrupted ring: every corruption yields a RingError (or a
//! completable bad entry), never a panic or a hang.

use std::time::Duration;

use tcmud_core::ring::layout::*;
use tcmud_core::ring::{Completion, DataIn, Entry, Fault, Ring, RingError, TmrType};
use tcmud_core::sim::{Corruption, KernelSim, SimConfig, SimDir};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];

/// Walks the ring once; the iterator must end on its own (bounded).
fn walk(ring: &mut Ring) -> (Vec<Entry>, Vec<RingError>) {
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    for (n, e) in ring.fetch().enumerate() {
        assert!(n < 100_000, "fetch did not terminate");
        match e {
            Ok(x) => ok.push(x),
            Err(x) => err.push(x),
        }
    }
    (ok, err)
}

struct Case {
    sim: KernelSim,
    ring: Ring,
    a: u16,
    b: u16,
    c: u16,
}

/// A good command, the command (or TMR) to corrupt, then another good one
/// queued after the corruption.
fn case(corruption: Corruption, tmr: bool) -> Case {
    let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let a = sim.submit(&READ10, SimDir::In(4096)).unwrap();
    let b = if tmr {
        sim.submit_tmr(TmrType::LunReset, &[a]).unwrap();
        0
    } else {
        sim.submit(&READ10, SimDir::In(2 * 4096)).unwrap()
    };
    sim.corrupt(corruption).unwrap();
    let c = sim.submit(&READ10, SimDir::In(512)).unwrap();
    Case { sim, ring, a, b, c }
}

fn ids(entries: &[Entry]) -> Vec<u16> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Cmd(c) => Some(c.cmd_id),
            Entry::Tmr(_) => None,
        })
        .collect()
}

/// Completes everything in flight (bad entries with CHECK CONDITION) and
/// checks the simulated kernel accepts it all.
fn finish(k: &mut Case, entries: &[Entry], errs: &[RingError]) -> Vec<(u16, u8)> {
    for id in ids(entries) {
        k.ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    }
    for e in errs {
        if let Some(id) = e.completable_cmd_id() {
            k.ring
                .complete(
                    Completion::check_condition(id, &[0x70, 0, 0x04]),
                    DataIn::NONE,
                )
                .unwrap();
        }
    }
    assert_eq!(k.ring.in_flight(), 0);
    k.ring.kick().unwrap();
    k.sim.wait_kick(Duration::from_secs(1)).unwrap();
    let done = k.sim.process_completions().unwrap();
    assert_eq!(k.sim.broken(), None);
    let mut v: Vec<(u16, u8)> = done.iter().map(|d| (d.cmd_id, d.status)).collect();
    v.sort();
    v
}

fn completable(corruption: Corruption, fault: Fault) {
    let mut k = case(corruption, false);
    let (ok, errs) = walk(&mut k.ring);
    assert_eq!(ids(&ok), [k.a, k.c], "{corruption:?}");
    assert_eq!(errs.len(), 1, "{corruption:?}: {errs:?}");
    match &errs[0] {
        RingError::BadEntry {
            cmd_id, fault: f, ..
        } => {
            assert_eq!(*cmd_id, Some(k.b), "{corruption:?}");
            assert_eq!(*f, fault, "{corruption:?}");
        }
        e => panic!("{corruption:?}: {e:?}"),
    }
    let done = finish(&mut k, &ok, &errs);
    assert_eq!(done, [(k.a, 0), (k.b, 2), (k.c, 0)], "{corruption:?}");
}

#[test]
fn bad_cdb_offsets_are_completable() {
    let data_end = SimConfig::default().data_size as u64 + 64 * 1024;
    for off in [0, 127, 128, 128 + 120, 128 + 300, data_end, u64::MAX] {
        completable(Corruption::CdbOffset(off), Fault::CdbOutOfBounds);
    }
}

#[test]
fn bad_cdbs_are_completable() {
    completable(Corruption::CdbBytes(0x7f, 255), Fault::CdbTooLong);
    completable(Corruption::CdbBytes(0x7f, 200), Fault::CdbOutOfBounds);
}

#[test]
fn bad_iovs_are_completable() {
    let cfg = SimConfig::default();
    let data_off = 128 + u64::from(cfg.cmdr_size);
    let end = data_off + cfg.data_size as u64;
    for (c, f) in [
        (Corruption::IovBase(0, 0), Fault::IovOutOfBounds),
        (Corruption::IovBase(0, data_off - 1), Fault::IovOutOfBounds),
        (Corruption::IovBase(0, end - 4096), Fault::IovOutOfBounds),
        (Corruption::IovBase(0, u64::MAX), Fault::IovOutOfBounds),
        (Corruption::IovLen(0, u64::MAX), Fault::IovOutOfBounds),
        (Corruption::IovLen(0, end), Fault::IovOutOfBounds),
        (Corruption::IovCount(u32::MAX), Fault::IovCount),
        (Corruption::IovCount(5), Fault::IovOutOfBounds),
        (Corruption::IovCount(6), Fault::IovCount),
        (Corruption::BidiCount(1000), Fault::IovCount),
        (Corruption::DifCount(u32::MAX), Fault::IovCount),
    ] {
        completable(c, f);
    }
}

#[test]
fn unusable_command_headers_are_skipped() {
    for (c, f) in [
        (Corruption::CmdId(0), Fault::ZeroCmdId),
        (Corruption::CmdId(1), Fault::DuplicateCmdId),
    ] {
        let mut k = case(c, false);
        let (ok, errs) = walk(&mut k.ring);
        assert_eq!(ids(&ok), [k.a, k.c]);
        assert!(matches!(
            errs[..],
            [RingError::BadEntry { cmd_id: None, fault, .. }] if fault == f
        ));
        assert!(!errs[0].is_fatal());
    }
}

#[test]
fn fatal_lengths_stop_the_walk_in_place() {
    for (c, f) in [
        (Corruption::ZeroLength, Fault::ZeroLength),
        (Corruption::LengthPastEnd, Fault::PastRingEnd),
        (Corruption::Length(4096), Fault::PastHead),
    ] {
        let mut k = case(c, false);
        let (ok, errs) = walk(&mut k.ring);
        assert_eq!(ids(&ok), [k.a], "{c:?}");
        match &errs[..] {
            [e @ RingError::Corrupt { fault, .. }] => {
                assert_eq!(*fault, f, "{c:?}");
                assert!(e.is_fatal());
            }
            e => panic!("{c:?}: {e:?}"),
        }
        // The cursor stays on the bad entry: the same error again.
        let cursor = k.ring.fetch_cursor();
        let (ok2, errs2) = walk(&mut k.ring);
        assert!(ok2.is_empty());
        assert_eq!(errs2.len(), 1);
        assert_eq!(k.ring.fetch_cursor(), cursor);
        // The good command fetched before can still be completed.
        k.ring
            .complete(Completion::good(k.a), DataIn::NONE)
            .unwrap();
    }
}

#[test]
fn short_command_entry_is_not_completable() {
    let mut k = case(Corruption::Length(16), false);
    let (ok, errs) = walk(&mut k.ring);
    assert_eq!(ids(&ok), [k.a]);
    assert!(matches!(
        errs[0],
        RingError::BadEntry {
            cmd_id: None,
            fault: Fault::ShortCommand,
            ..
        }
    ));
    // What follows is the rest of the old entry: the walk must still end.
    assert!(errs.len() >= 2);
}

#[test]
fn unknown_opcodes_are_flagged_and_skipped() {
    for op in 3..8u8 {
        let mut k = case(Corruption::Opcode(op), false);
        let (ok, errs) = walk(&mut k.ring);
        assert!(errs.is_empty());
        assert_eq!(ids(&ok), [k.a, k.c]);
        let mut uflags = [0u8];
        // a: 112 + one iov (16) = 128 bytes; b follows it.
        k.sim.read_raw(128 + 128 + HDR_UFLAGS, &mut uflags).unwrap();
        assert_eq!(uflags[0] & UFLAG_UNKNOWN_OP, UFLAG_UNKNOWN_OP);
        // The kernel completes the flagged slot with CHECK CONDITION.
        let done = finish(&mut k, &ok, &errs);
        assert!(done.contains(&(k.b, 2)), "{done:?}");
    }
}

#[test]
fn bad_tmr_count_is_skipped() {
    for n in [u32::MAX, 5, 1000] {
        let mut k = case(Corruption::TmrCount(n), true);
        let (ok, errs) = walk(&mut k.ring);
        assert_eq!(ids(&ok), [k.a, k.c]);
        assert!(matches!(
            errs[..],
            [RingError::BadEntry {
                cmd_id: None,
                fault: Fault::TmrCount,
                ..
            }]
        ));
        let done = finish(&mut k, &ok, &errs);
        assert_eq!(done.len(), 2);
    }
}

#[test]
fn bad_heads_are_fatal() {
    let size = SimConfig::default().cmdr_size;
    for h in [size, size + 8, 3, u32::MAX] {
        let mut k = case(Corruption::CmdId(7), false);
        // After the last submit, so nothing publishes a good head again.
        k.sim.corrupt(Corruption::Head(h)).unwrap();
        let (ok, errs) = walk(&mut k.ring);
        assert!(ok.is_empty());
        assert!(matches!(
            errs[..],
            [RingError::Corrupt {
                fault: Fault::BadHead,
                ..
            }]
        ));
    }
}

#[test]
fn mailbox_changes_after_open_are_ignored_and_bad_mailboxes_refused() {
    for c in [
        Corruption::Version(3),
        Corruption::CmdrSize(u32::MAX),
        Corruption::CmdrSize(7),
        Corruption::CmdrOff(0),
        Corruption::CmdrOff(u32::MAX),
    ] {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
        let id = sim.submit(&READ10, SimDir::In(4096)).unwrap();
        sim.corrupt(c).unwrap();
        let (ok, errs) = walk(&mut ring);
        assert_eq!((ids(&ok), errs.len()), (vec![id], 0), "{c:?}");
        let (_, fd2) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::empty(),
        )
        .unwrap();
        assert!(matches!(
            Ring::from_parts(&dev.map, dev.len, fd2),
            Err(RingError::BadMailbox(_))
        ));
    }
}

#[test]
fn garbage_entries_never_panic() {
    for seed in 0..400u64 {
        let c = if seed % 2 == 0 {
            Corruption::GarbageBody(seed)
        } else {
            Corruption::GarbageAll(seed)
        };
        let mut k = case(c, seed % 3 == 0);
        let (ok, errs) = walk(&mut k.ring);
        for e in &ok {
            if let Entry::Cmd(cmd) = e {
                let mut buf = vec![0u8; cmd.data.len().min(1 << 20)];
                k.ring.read_data_out(&cmd.data, &mut buf).unwrap();
                k.ring.write_data_in(&cmd.data, &buf).unwrap();
            }
        }
        for id in ids(&ok) {
            k.ring.complete(Completion::good(id), DataIn::NONE).unwrap();
        }
        for e in &errs {
            if let Some(id) = e.completable_cmd_id() {
                k.ring.complete(Completion::good(id), DataIn::NONE).unwrap();
            }
        }
        // The sim may well break on garbage ids; it must not panic.
        let _ = k.sim.process_completions().unwrap();
    }
}

#[test]
fn random_ring_contents_and_heads_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let cfg = SimConfig {
        cmdr_size: 2048,
        data_size: 8 * 4096,
        ..SimConfig::default()
    };
    for _ in 0..300 {
        let (mut sim, dev) = KernelSim::new(cfg).unwrap();
        let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
        let mut bytes = vec![0u8; 2048];
        for chunk in bytes.chunks_mut(8) {
            let v = next();
            // Mostly small lengths and low opcodes, to get deep walks.
            let v = if v % 3 == 0 {
                v & 0x0000_ffff_0000_01ff
            } else {
                v
            };
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        sim.write_raw(128, &bytes).unwrap();
        sim.set_head_raw((next() % 2048) as u32 & !7).unwrap();
        let (ok, errs) = walk(&mut ring);
        for id in ids(&ok)
            .into_iter()
            .chain(errs.iter().filter_map(|e| e.completable_cmd_id()))
        {
            ring.complete(Completion::good(id), DataIn::NONE).unwrap();
        }
        assert_eq!(ring.in_flight(), 0);
    }
}
