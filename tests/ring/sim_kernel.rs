//! The simulator behaves like the kernel: entry sizing, PAD placement, id
//! allocation, back-pressure, and BROKEN on bad completions.

use std::time::Duration;

use tcmud_core::ring::layout::*;
use tcmud_core::ring::{Completion, DataIn, Entry, Ring};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir, SimError};

const TUR: [u8; 6] = [0; 6];
const READ16: [u8; 16] = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];

fn setup(cfg: SimConfig) -> (KernelSim, Ring) {
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    (sim, ring)
}

fn raw_u32(sim: &KernelSim, off: usize) -> u32 {
    let mut b = [0u8; 4];
    sim.read_raw(off, &mut b).unwrap();
    u32::from_ne_bytes(b)
}

fn raw_u64(sim: &KernelSim, off: usize) -> u64 {
    let mut b = [0u8; 8];
    sim.read_raw(off, &mut b).unwrap();
    u64::from_ne_bytes(b)
}

#[test]
fn mailbox_is_laid_out_like_the_kernel() {
    let cfg = SimConfig::default();
    let (sim, _dev) = KernelSim::new(cfg).unwrap();
    let mut mb = [0u8; 16];
    sim.read_raw(0, &mut mb).unwrap();
    assert_eq!(u16::from_ne_bytes([mb[0], mb[1]]), 2);
    assert_eq!(u16::from_ne_bytes([mb[2], mb[3]]), cfg.flags);
    assert_eq!(raw_u32(&sim, MB_CMDR_OFF), 128);
    assert_eq!(raw_u32(&sim, MB_CMDR_SIZE), cfg.cmdr_size);
    assert_eq!(sim.data_off(), 128 + cfg.cmdr_size as usize);
    assert_eq!(sim.region_len(), sim.data_off() + cfg.data_size);
}

#[test]
fn entry_size_iovs_and_cdb_placement() {
    let (mut sim, _ring) = setup(SimConfig::default());
    // 3 blocks of data-in (contiguous: one iov) and a 16-byte CDB:
    // max(48 + 16, 112) + 16 = 128.
    let id = sim.submit(&READ16, SimDir::In(3 * 4096 - 5)).unwrap();
    assert_eq!(id, 1);
    let e = 128;
    assert_eq!(raw_u32(&sim, e + HDR_LEN_OP), 128 | OP_CMD);
    assert_eq!(raw_u32(&sim, e + REQ_IOV_CNT), 1);
    assert_eq!(raw_u32(&sim, e + REQ_IOV_BIDI_CNT), 0);
    assert_eq!(raw_u64(&sim, e + REQ_CDB_OFF), (e + 112) as u64);
    assert_eq!(raw_u64(&sim, e + REQ_IOV), sim.data_off() as u64);
    assert_eq!(raw_u64(&sim, e + REQ_IOV + 8), 3 * 4096 - 5);
    assert_eq!(sim.head(), 128);
    // A variable-length CDB (0x7f, additional length 24 -> 32 bytes).
    let mut var = [0u8; 32];
    var[0] = 0x7f;
    var[7] = 24;
    sim.submit(&var, SimDir::None).unwrap();
    assert_eq!(raw_u32(&sim, 128 + 128) & !7, 112 + 32);
    assert!(matches!(
        sim.submit(&var[..20], SimDir::None),
        Err(SimError::BadCdb)
    ));
}

#[test]
fn every_entry_size_reaches_the_ring_intact() {
    // CDBs of 6..=260 bytes (entries from 120 to 376 bytes) over stale
    // bytes of earlier entries: each is fetched with its exact CDB and iov.
    let (mut sim, mut ring) = setup(SimConfig::default());
    for round in 0..2u8 {
        for extra in (0..=252u8).step_by(4) {
            let mut cdb = vec![0xeeu8; 8 + usize::from(extra)];
            cdb[0] = 0x7f;
            cdb[7] = extra;
            cdb[1] = round;
            let id = sim.submit(&cdb, SimDir::In(4096)).unwrap();
            let tur = sim.submit(&TUR, SimDir::None).unwrap();
            sim.kick().unwrap();
            let got: Vec<_> = ring.fetch().map(|e| e.unwrap()).collect();
            let [Entry::Cmd(a), Entry::Cmd(b)] = &got[..] else {
                panic!("{got:?}");
            };
            assert_eq!((a.cmd_id, a.cdb.as_bytes()), (id, &cdb[..]));
            assert_eq!((a.data.len(), a.data.span_count()), (4096, 1));
            assert_eq!((b.cmd_id, b.cdb.as_bytes()), (tur, &TUR[..]));
            for id in [id, tur] {
                ring.complete(Completion::good(id), DataIn::NONE).unwrap();
            }
            ring.kick().unwrap();
            sim.wait_kick(Duration::from_secs(1)).unwrap();
            assert_eq!(sim.process_completions().unwrap().len(), 2);
        }
    }
    assert!(sim.broken().is_none());
}

#[test]
fn ids_are_lowest_free_and_reused() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let ids: Vec<u16> = (0..3)
        .map(|_| sim.submit(&TUR, SimDir::None).unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let _ = ring.fetch().count();
    ring.complete(Completion::good(2), DataIn::NONE).unwrap();
    ring.kick().unwrap();
    sim.wait_kick(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.process_completions().unwrap()[0].cmd_id, 2);
    assert_eq!(sim.submit(&TUR, SimDir::None).unwrap(), 2);
    assert_eq!(sim.submit(&TUR, SimDir::None).unwrap(), 4);
}

#[test]
fn back_pressure_on_ring_and_data_area() {
    let cfg = SimConfig {
        cmdr_size: 1024,
        data_size: 8 * 4096,
        ..SimConfig::default()
    };
    let (mut sim, _ring) = setup(cfg);
    let mut n = 0;
    while sim.submit(&TUR, SimDir::None).is_ok() {
        n += 1;
        assert!(n < 100);
    }
    // 120-byte entries, one byte kept free: 8 fit in 1023 bytes.
    assert_eq!(n, 8);
    assert!(matches!(
        sim.submit(&TUR, SimDir::None),
        Err(SimError::Full)
    ));

    let (mut sim, _ring) = setup(SimConfig {
        cmdr_size: 64 * 1024 - 128,
        ..cfg
    });
    sim.submit(&READ16, SimDir::In(5 * 4096)).unwrap();
    assert!(matches!(
        sim.submit(&READ16, SimDir::In(4 * 4096)),
        Err(SimError::Full)
    ));
    sim.submit(&READ16, SimDir::In(3 * 4096)).unwrap();
    assert!(matches!(
        sim.submit(&READ16, SimDir::In(9 * 4096)),
        Err(SimError::TooBig)
    ));
}

#[test]
fn pad_only_when_the_entry_does_not_fit() {
    let cfg = SimConfig {
        cmdr_size: 8 * 120 + 64,
        ..SimConfig::default()
    };
    let (mut sim, mut ring) = setup(cfg);
    for _ in 0..7 {
        sim.submit(&TUR, SimDir::None).unwrap();
    }
    // 840 used; 184 to the end: the 8th fits exactly without PAD.
    assert_eq!(ring.fetch().count(), 7);
    for id in 1..=7 {
        ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    }
    ring.kick().unwrap();
    sim.wait_kick(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.process_completions().unwrap().len(), 7);
    sim.submit(&TUR, SimDir::None).unwrap();
    assert_eq!(sim.head(), 960);
    // 64 left: the next entry needs a PAD of 64 first and lands at 0.
    sim.submit(&TUR, SimDir::None).unwrap();
    assert_eq!(raw_u32(&sim, 128 + 960), 64 | OP_PAD);
    assert_eq!(sim.head(), 120);
    let fetched: Vec<_> = ring.fetch().collect();
    assert_eq!(fetched.len(), 2);
    assert!(fetched.iter().all(|e| matches!(e, Ok(Entry::Cmd(_)))));
}

#[test]
fn unknown_cmd_id_breaks_the_ring() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let id = sim.submit(&TUR, SimDir::None).unwrap();
    let _ = ring.fetch().count();
    ring.complete(Completion::good(id), DataIn::NONE).unwrap();
    // Userspace scribbles a wrong id into the answered slot.
    sim.write_raw(128 + HDR_CMD_ID, &999u16.to_ne_bytes())
        .unwrap();
    assert!(sim.process_completions().unwrap().is_empty());
    assert!(sim.broken().unwrap().contains("999"));
    assert!(matches!(
        sim.submit(&TUR, SimDir::None),
        Err(SimError::Broken(_))
    ));
    assert!(sim.process_completions().unwrap().is_empty());
}

#[test]
fn repeated_cmd_id_breaks_the_ring() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    let _ = ring.fetch().count();
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    ring.complete(Completion::good(b), DataIn::NONE).unwrap();
    sim.write_raw(128 + 120 + HDR_CMD_ID, &a.to_ne_bytes())
        .unwrap();
    let done = sim.process_completions().unwrap();
    assert_eq!(done.len(), 1);
    assert!(sim.broken().is_some());
}

#[test]
fn slot_reuse_without_ooo_breaks_the_ring() {
    let (mut sim, mut ring) = setup(SimConfig {
        flags: CAP_READ_LEN,
        ..SimConfig::default()
    });
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    let _ = ring.fetch().count();
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    ring.complete(Completion::good(b), DataIn::NONE).unwrap();
    // Swap the ids: each answer now sits in the other command's slot.
    sim.write_raw(128 + HDR_CMD_ID, &b.to_ne_bytes()).unwrap();
    sim.write_raw(128 + 120 + HDR_CMD_ID, &a.to_ne_bytes())
        .unwrap();
    assert!(sim.process_completions().unwrap().is_empty());
    assert!(sim.broken().unwrap().contains("CAP_OOOC"));
}

#[test]
fn tail_beyond_head_breaks_the_ring() {
    let (mut sim, _ring) = setup(SimConfig::default());
    sim.submit(&TUR, SimDir::None).unwrap();
    sim.write_raw(MB_CMD_TAIL, &240u32.to_ne_bytes()).unwrap();
    sim.process_completions().unwrap();
    assert!(sim.broken().unwrap().contains("beyond"));
}

#[test]
fn bad_configs_are_refused() {
    for cfg in [
        SimConfig {
            cmdr_size: 100,
            ..SimConfig::default()
        },
        SimConfig {
            cmdr_size: 4097,
            ..SimConfig::default()
        },
        SimConfig {
            data_size: 5000,
            ..SimConfig::default()
        },
        SimConfig {
            data_block: 0,
            ..SimConfig::default()
        },
    ] {
        assert!(matches!(KernelSim::new(cfg), Err(SimError::BadConfig(_))));
    }
}

#[test]
fn kicks_travel_both_ways() {
    let (mut sim, ring) = setup(SimConfig::default());
    assert!(!sim.wait_kick(Duration::from_millis(1)).unwrap());
    ring.kick().unwrap();
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(1)).unwrap());
    assert!(!sim.wait_kick(Duration::from_millis(1)).unwrap());
    sim.kick().unwrap();
    sim.kick().unwrap();
    assert_eq!(ring.drain_events().unwrap(), 2);
}

#[test]
fn timed_out_commands_complete_once_to_the_initiator() {
    let (mut sim, mut ring) = setup(SimConfig::default());
    let a = sim.submit(&TUR, SimDir::None).unwrap();
    let b = sim.submit(&TUR, SimDir::None).unwrap();
    let seen = sim.time_out(a).unwrap();
    assert_eq!((seen.cmd_id, seen.status), (a, 2));
    assert!(sim.time_out(a).is_none());
    assert_eq!(sim.outstanding(), 2);
    let _ = ring.fetch().count();
    ring.complete(Completion::good(a), DataIn::NONE).unwrap();
    ring.complete(Completion::good(b), DataIn::NONE).unwrap();
    let done = sim.process_completions().unwrap();
    assert_eq!(done.iter().map(|d| d.cmd_id).collect::<Vec<_>>(), [b]);
    assert_eq!(sim.outstanding(), 0);
    assert_eq!(sim.broken(), None);
}
