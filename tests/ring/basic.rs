//! Fetch and completion against the kernel simulator: data in/out, bidi,
//! PAD at wrap, in-order and out-of-order completion, TMR, READ_LEN,
//! UNKNOWN_OP, sense, cursors.

use std::time::Duration;

use crate::util::narrow::LowByte;
use crate::util::ring::fetch_cmds;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN, CAP_TMR, HDR_CMD_ID, OP_PAD};
use tcmud_core::ring::{
    CmdRequest, Completion, DataIn, Entry, Ring, RingError, TmrType, STATUS_CHECK_CONDITION,
};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const TUR: [u8; 6] = [0; 6];

fn setup(cfg: SimConfig) -> (KernelSim, Ring) {
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    (sim, ring)
}

fn cfg(flags: u16) -> SimConfig {
    SimConfig {
        flags,
        ..SimConfig::default()
    }
}

fn round_trip(sim: &mut KernelSim, ring: &mut Ring) -> Vec<SimCompletion> {
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    let done = sim.process_completions().unwrap();
    assert_eq!(sim.broken(), None);
    done
}

#[test]
fn data_out_in_and_none() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    assert!(ring.caps().ooo && ring.caps().read_len && ring.caps().tmr && !ring.caps().keep_buf);
    let out: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let w = sim.submit(&WRITE10, SimDir::Out(out.clone())).unwrap();
    let r = sim.submit(&READ10, SimDir::In(9000)).unwrap();
    let t = sim.submit(&TUR, SimDir::None).unwrap();
    sim.kick().unwrap();
    assert_eq!(ring.drain_events().unwrap(), 1);
    assert_eq!(ring.drain_events().unwrap(), 0);
    let cmds = fetch_cmds(&mut ring);
    assert_eq!(cmds.iter().map(|c| c.cmd_id).collect::<Vec<_>>(), [w, r, t]);
    assert_eq!(cmds[0].cdb.as_bytes(), &WRITE10);
    assert_eq!(cmds[0].data.len(), 10_000);
    // Three contiguous 4 KiB blocks merge into one iov.
    assert_eq!(cmds[0].data.span_count(), 1);
    let mut buf = vec![0u8; 10_000];
    assert_eq!(ring.read_data_out(&cmds[0].data, &mut buf).unwrap(), 10_000);
    assert_eq!(buf, out);
    assert_eq!(cmds[1].data.len(), 9000);
    let pattern: Vec<u8> = (0..9000u32).map(|i| (i * 3).low_byte()).collect();
    assert_eq!(ring.write_data_in(&cmds[1].data, &pattern).unwrap(), 9000);
    assert!(cmds[2].data.is_empty() && cmds[2].bidi.is_empty());
    assert_eq!(cmds[2].cdb.as_bytes(), &TUR);
    assert_eq!(ring.in_flight(), 3);
    for c in &cmds {
        ring.complete(Completion::good(c.cmd_id), DataIn::NONE)
            .unwrap();
    }
    assert_eq!(ring.in_flight(), 0);
    assert!(ring.kick_pending());
    let done = round_trip(&mut sim, &mut ring);
    assert!(!ring.kick_pending());
    assert_eq!(done.len(), 3);
    assert_eq!(done[1].cmd_id, r);
    assert_eq!(done[1].data_in, pattern);
    assert!(done.iter().all(|d| d.status == 0 && d.sense.is_empty()));
    assert_eq!(sim.outstanding(), 0);
    assert_eq!(sim.blocks_in_use(), 0);
}

#[test]
fn bidi_spans_are_separate() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let id = sim
        .submit(
            &[0x53, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            SimDir::Bidi {
                out: vec![9u8; 4096],
                in_len: 4096,
            },
        )
        .unwrap();
    let cmds = fetch_cmds(&mut ring);
    let c = &cmds[0];
    assert_eq!((c.cmd_id, c.data.len(), c.bidi.len()), (id, 4096, 4096));
    let mut out = vec![0u8; 4096];
    ring.read_data_out(&c.data, &mut out).unwrap();
    assert_eq!(out, vec![9u8; 4096]);
    ring.write_data_in(&c.bidi, &[4u8; 4096]).unwrap();
    ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done[0].data_in, vec![4u8; 4096]);
}

#[test]
fn pad_at_wrap_is_skipped_and_passed_by_the_tail() {
    // 1024-byte ring: 112-byte TUR entries (112 + 8 for the CDB = 120).
    let c = SimConfig {
        cmdr_size: 1024,
        ..SimConfig::default()
    };
    let (mut sim, mut ring) = setup(c);
    let mut seen = 0;
    for round in 0..40 {
        let id = sim.submit(&TUR, SimDir::None).unwrap();
        let cmds = fetch_cmds(&mut ring);
        assert_eq!(cmds.len(), 1, "round {round}");
        assert_eq!(cmds[0].cmd_id, id);
        ring.complete(Completion::good(id), DataIn::NONE).unwrap();
        let done = round_trip(&mut sim, &mut ring);
        assert_eq!(done.len(), 1);
        seen += 1;
        assert_eq!(ring.fetch_cursor(), sim.head());
        assert_eq!(ring.completion_cursor(), sim.tail().unwrap());
    }
    assert_eq!(seen, 40);
    // 1024 / 120 is not whole: at least one PAD was written and walked.
    let mut hdr = [0u8; 4];
    sim.read_raw(128 + 960, &mut hdr).unwrap();
    assert_eq!(u32::from_ne_bytes(hdr) & 7, OP_PAD);
}

#[test]
fn in_order_ring_queues_out_of_order_completions() {
    let (mut sim, mut ring) = setup(cfg(CAP_READ_LEN));
    let ids: Vec<u16> = (0..4)
        .map(|_| sim.submit(&TUR, SimDir::None).unwrap())
        .collect();
    let cmds = fetch_cmds(&mut ring);
    assert_eq!(cmds.len(), 4);
    let tail0 = sim.tail().unwrap();
    // Newest first: the tail must not move until the oldest is done.
    for id in ids[1..].iter().rev() {
        ring.complete(Completion::good(*id), DataIn::NONE).unwrap();
        assert_eq!(sim.tail().unwrap(), tail0);
    }
    assert!(!ring.kick_pending());
    ring.complete(Completion::good(ids[0]), DataIn::NONE)
        .unwrap();
    assert_ne!(sim.tail().unwrap(), tail0);
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done.iter().map(|d| d.cmd_id).collect::<Vec<_>>(), ids);
}

#[test]
fn ooo_completion_reuses_the_tail_slot() {
    let (mut sim, mut ring) = setup(cfg(CAP_OOOC));
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&READ10, SimDir::In(512)).unwrap();
    let cmds = fetch_cmds(&mut ring);
    ring.write_data_in(&cmds[1].data, &[1u8; 512]).unwrap();
    ring.complete(Completion::good(b), DataIn::NONE).unwrap();
    // b's response went into a's slot (the first one), with b's id.
    let mut id = [0u8; 2];
    sim.read_raw(128 + HDR_CMD_ID, &mut id).unwrap();
    assert_eq!(u16::from_ne_bytes(id), b);
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!((done.len(), done[0].cmd_id), (1, b));
    assert_eq!(done[0].data_in, vec![1u8; 512]);
    assert!(ring.is_in_flight(a));
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done[0].cmd_id, a);
    assert_eq!(sim.outstanding(), 0);
}

#[test]
fn completing_twice_or_unknown_is_refused_without_writing() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let id = sim.submit(&TUR, SimDir::None).unwrap();
    fetch_cmds(&mut ring);
    assert!(matches!(
        ring.complete(Completion::good(id + 1), DataIn::NONE),
        Err(RingError::NotInFlight(n)) if n == id + 1
    ));
    ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    assert!(matches!(
        ring.complete(Completion::good(id), DataIn::NONE),
        Err(RingError::NotInFlight(_))
    ));
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done.len(), 1);
}

#[test]
fn sense_read_len_and_unknown_op() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let cc = sim.submit(&READ10, SimDir::In(512)).unwrap();
    let short = sim.submit(&READ10, SimDir::In(4096)).unwrap();
    let unk = sim
        .submit(&[0xc5, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::None)
        .unwrap();
    let cmds = fetch_cmds(&mut ring);
    let sense = [
        0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
    ];
    ring.complete(Completion::check_condition(cc, &sense), DataIn::NONE)
        .unwrap();
    ring.write_data_in(&cmds[1].data, &[3u8; 100]).unwrap();
    ring.complete(Completion::good(short), DataIn::new(&cmds[1].data, 100))
        .unwrap();
    ring.complete(Completion::unknown_op(unk), DataIn::NONE)
        .unwrap();
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done[0].status, STATUS_CHECK_CONDITION);
    assert_eq!(&done[0].sense[..18], &sense);
    // The rest of the 96-byte buffer is zeroed, not left with the
    // request's bytes (cdb_off, the iov) that shared the slot.
    assert_eq!(done[0].sense.len(), 96);
    assert!(done[0].sense[18..].iter().all(|&b| b == 0));
    assert!(done[0].data_in.is_empty());
    assert_eq!(done[1].read_len, Some(100));
    assert_eq!(done[1].data_in, vec![3u8; 100]);
    assert!(done[2].unknown_op);
    assert_eq!(done[2].status, STATUS_CHECK_CONDITION);
}

#[test]
fn read_len_not_sent_without_the_cap() {
    let (mut sim, mut ring) = setup(cfg(CAP_OOOC));
    let id = sim.submit(&READ10, SimDir::In(1024)).unwrap();
    let cmds = fetch_cmds(&mut ring);
    ring.write_data_in(&cmds[0].data, &[8u8; 1024]).unwrap();
    ring.complete(Completion::good(id), DataIn::new(&cmds[0].data, 10))
        .unwrap();
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done[0].read_len, None);
    // The whole buffer goes out: what the command did not write is zeros.
    assert_eq!(done[0].data_in.len(), 1024);
    assert_eq!(&done[0].data_in[..10], &[8u8; 10]);
    assert!(done[0].data_in[10..].iter().all(|&b| b == 0));
}

#[test]
fn tmr_entries_are_fetched_and_stepped_over() {
    let (mut sim, mut ring) = setup(cfg(CAP_OOOC | CAP_TMR));
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    sim.submit_tmr(TmrType::AbortTask, &[b]).unwrap();
    let c = sim.submit(&TUR, SimDir::None).unwrap();
    let entries: Vec<Entry> = ring.fetch().map(|e| e.unwrap()).collect();
    assert_eq!(entries.len(), 4);
    match &entries[2] {
        Entry::Tmr(t) => {
            assert_eq!(t.tmr_type, TmrType::AbortTask);
            assert_eq!(t.cmd_ids, vec![b]);
        }
        e => panic!("{e:?}"),
    }
    for id in [c, b, a] {
        ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    }
    let done = round_trip(&mut sim, &mut ring);
    let mut got: Vec<u16> = done.iter().map(|d| d.cmd_id).collect();
    got.sort();
    assert_eq!(got, vec![a, b, c]);
    assert_eq!(ring.completion_cursor(), sim.head());
}

#[test]
fn a_lone_tmr_moves_the_tail_and_asks_for_a_kick() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    sim.submit_tmr(TmrType::LunReset, &[]).unwrap();
    assert_eq!(ring.fetch().count(), 1);
    assert!(ring.kick_pending());
    assert_eq!(sim.tail().unwrap(), sim.head());
}

#[test]
fn resync_and_set_fetch_cursor() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    assert_eq!(fetch_cmds(&mut ring).len(), 2);
    // Forget everything: both entries are fetched again.
    ring.resync_from_tail();
    assert_eq!(ring.in_flight(), 0);
    let again = fetch_cmds(&mut ring);
    assert_eq!(again.iter().map(|c| c.cmd_id).collect::<Vec<_>>(), [a, b]);
    let cursor = ring.fetch_cursor();
    // A fresh Ring (in-process restart) that resumes at the saved cursor.
    ring.resync_from_tail();
    ring.set_fetch_cursor(cursor).unwrap();
    assert_eq!(ring.in_flight(), 2);
    assert_eq!(ring.fetch().count(), 0);
    ring.set_in_flight(&[b, a]).unwrap();
    ring.complete(Completion::good(b), DataIn::NONE).unwrap();
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    let done = round_trip(&mut sim, &mut ring);
    assert_eq!(done.len(), 2);
    assert!(ring.set_fetch_cursor(3).is_err());
    assert!(ring.set_fetch_cursor(u32::MAX - 7).is_err());
}

#[test]
fn open_uio_reads_the_sysfs_size() {
    let (sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("uio0");
    let mut bytes = vec![0u8; dev.len];
    sim.read_raw(0, &mut bytes).unwrap();
    std::fs::write(&img, &bytes).unwrap();
    std::fs::create_dir_all(dir.path().join("maps/map0")).unwrap();
    std::fs::write(
        dir.path().join("maps/map0/size"),
        format!("0x{:x}\n", dev.len),
    )
    .unwrap();
    let ring = Ring::open_uio(&img, dir.path()).unwrap();
    assert_eq!(ring.cmdr_size(), SimConfig::default().cmdr_size);
    assert_eq!(ring.data_area_size(), SimConfig::default().data_size);
    std::fs::write(dir.path().join("maps/map0/size"), "junk").unwrap();
    assert!(matches!(
        Ring::open_uio(&img, dir.path()),
        Err(RingError::BadMailbox(_))
    ));
}

#[test]
fn ring_and_requests_are_send() {
    fn send<T: Send>() {}
    send::<Ring>();
    send::<CmdRequest>();
    send::<Completion>();
    send::<KernelSim>();
}

#[test]
fn data_of_a_completed_command_is_refused() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let id = sim.submit(&READ10, SimDir::In(512)).unwrap();
    let cmds = fetch_cmds(&mut ring);
    ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    assert!(matches!(
        ring.write_data_in(&cmds[0].data, &[1u8; 512]),
        Err(RingError::NotInFlight(n)) if n == id
    ));
    let mut buf = [0u8; 16];
    assert!(ring.read_data_out(&cmds[0].data, &mut buf).is_err());
    // Empty spans carry no pages: always fine.
    assert_eq!(ring.read_data_out(&cmds[0].bidi, &mut buf).unwrap(), 0);
}

#[test]
fn data_out_buffers_show_one_zero_byte_if_sent_as_data_in() {
    // The ring does not carry the initiator's direction: the same WRITE
    // CDB once with data-out, once with a data-in buffer (the simulator
    // fills fresh data-in buffers with 0xa5, standing for stale bytes).
    for flags in [CAP_OOOC | CAP_READ_LEN, CAP_OOOC] {
        let (mut sim, mut ring) = setup(cfg(flags));
        let out = sim.submit(&WRITE10, SimDir::Out(vec![9u8; 512])).unwrap();
        let inn = sim.submit(&WRITE10, SimDir::In(4096)).unwrap();
        let cmds = fetch_cmds(&mut ring);
        for c in &cmds {
            ring.complete(Completion::good(c.cmd_id), DataIn::data_out(&c.data))
                .unwrap();
        }
        let done = round_trip(&mut sim, &mut ring);
        let by_id = |id| done.iter().find(|c| c.cmd_id == id).unwrap();
        assert!(by_id(out).data_in.is_empty());
        assert_eq!(by_id(out).read_len, None);
        let got = by_id(inn);
        if flags & CAP_READ_LEN != 0 {
            assert_eq!(got.read_len, Some(1));
            assert_eq!(got.data_in, vec![0u8]);
        } else {
            assert_eq!(got.data_in, vec![0u8; 4096]);
        }
    }
}
