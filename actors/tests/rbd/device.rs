//! The RBD backstore behind the real device actor, driven by the kernel
//! simulator, against a real single-node cluster (tests/ceph/cluster.sh):
//! data integrity under concurrency, flush, COMPARE AND WRITE, UNMAP and
//! GET LBA STATUS, identity. Built with the `rbd` feature only.

use crate::util::device::run_image;
use crate::util::device::workload::{clear_unit_attention, collect, one, random_io, Expect};
use crate::util::rbd::*;
use tcmud_core::sim::SimDir;

const MIB: u64 = 1 << 20;

#[test]
fn random_io_with_verify_is_exact() {
    let _cluster = cluster();
    const BLOCKS: usize = 4096; // 2 MiB
    let name = create_image("dev-rand", BLOCKS as u64 * 512);
    let bs = open(&name, "", BLOCKS as u64 * 512);
    let r = run_image("rbd-rand", &bs, 4, |sim| {
        random_io(sim, 1500, 32, BLOCKS, 17, Expect::AllGood)
    });
    assert_eq!(r.result.errors, Vec::<String>::new());
    assert_eq!(r.result.broken, None);
    assert_eq!((r.result.completed, r.result.good), (1500, 1500));
    assert!(r.failure.is_none());
}

#[test]
fn fua_writes_and_sync_cache_reach_the_cluster() {
    let _cluster = cluster();
    let name = create_image("dev-flush", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 7 % 253) as u8).collect();
    let d2 = data.clone();
    let r = run_image("rbd-flush", &bs, 2, move |sim| {
        clear_unit_attention(sim);
        let w = one(sim, &write16(100, 8, true), SimDir::Out(d2.clone()));
        let w2 = one(sim, &write16(300, 8, false), SimDir::Out(d2));
        // SYNCHRONIZE CACHE(10), whole device.
        let s = one(sim, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::None);
        (w.status, w2.status, s.status)
    });
    assert_eq!(r.result, (0, 0, 0));
    // What another client of the cluster reads.
    assert_eq!(read_back(&name, 100 * 512, data.len()), data);
    assert_eq!(read_back(&name, 300 * 512, data.len()), data);
}

#[test]
fn compare_and_write_is_atomic_and_reports_miscompares() {
    let _cluster = cluster();
    let name = create_image("dev-caw", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let r = run_image("rbd-caw", &bs, 4, |sim| {
        clear_unit_attention(sim);
        let w = one(sim, &write16(10, 1, false), SimDir::Out(vec![0x11; 512]));
        assert_eq!(w.status, 0);
        let mut out = vec![0x11; 512];
        out.extend(vec![0x22; 512]);
        let ok = one(sim, &caw(10, 1), SimDir::Out(out));
        // The block now holds 0x22: verify data matching for 100 bytes
        // then differing miscompares at byte 100, and writes nothing.
        let mut out = vec![0x22; 100];
        out.extend(vec![0x11; 412]);
        out.extend(vec![0x44; 512]);
        let mis = one(sim, &caw(10, 1), SimDir::Out(out));
        // Eight at once, all expecting 0x22 and each writing its own
        // byte: exactly one may win.
        for i in 0..8u8 {
            let mut o = vec![0x22; 512];
            o.extend(vec![0x30 + i; 512]);
            sim.submit(&caw(10, 1), SimDir::Out(o)).unwrap();
        }
        sim.kick().unwrap();
        let race = collect(sim, 8);
        let back = one(sim, &read16(10, 1), SimDir::In(512));
        (ok, mis, race, back)
    });
    let (ok, mis, race, back) = r.result;
    assert_eq!(ok.status, 0, "{:?}", sense(&ok.sense));
    assert_eq!(mis.status, 2);
    assert_eq!(sense(&mis.sense), (0x0e, 0x1d, 0x00), "MISCOMPARE");
    // INFORMATION: the offset of the first differing byte.
    assert_eq!(mis.sense[0] & 0x80, 0x80, "VALID");
    assert_eq!(&mis.sense[3..7], &100u32.to_be_bytes());
    let winners: Vec<_> = race.iter().filter(|c| c.status == 0).collect();
    assert_eq!(winners.len(), 1, "{race:?}");
    for c in race.iter().filter(|c| c.status != 0) {
        assert_eq!(sense(&c.sense), (0x0e, 0x1d, 0x00));
    }
    let b = back.data_in[0];
    assert!((0x30..0x38).contains(&b), "{b:#x}");
    assert!(back.data_in.iter().all(|&x| x == b));
    assert_eq!(read_back(&name, 10 * 512, 512), vec![b; 512]);
}

#[test]
fn unmap_deallocates_and_get_lba_status_reports_it() {
    let _cluster = cluster();
    // 16 MiB: four 4 MiB objects of 8192 blocks.
    let name = create_image("dev-unmap", 16 * MIB);
    let bs = open(&name, "", 16 * MIB);
    let r = run_image("rbd-unmap", &bs, 2, |sim| {
        clear_unit_attention(sim);
        let w = one(
            sim,
            &write16(8192, 16, false),
            SimDir::Out(vec![0xab; 16 * 512]),
        );
        assert_eq!(w.status, 0);
        let at0 = one(sim, &get_lba_status(0), SimDir::In(4096));
        let at_obj1 = one(sim, &get_lba_status(8192), SimDir::In(4096));
        let (cdb, params) = unmap(8192, 8192);
        let u = one(sim, &cdb, SimDir::Out(params));
        let after = one(sim, &get_lba_status(8192), SimDir::In(4096));
        let read = one(sim, &read16(8192, 16), SimDir::In(16 * 512));
        (at0, at_obj1, u, after, read)
    });
    let (at0, at_obj1, u, after, read) = r.result;
    assert_eq!(at0.status, 0, "{:?}", sense(&at0.sense));
    assert_eq!(
        first_status(&at0.data_in),
        (0, 8192, 1),
        "object 0 unallocated"
    );
    let (lba, blocks, st) = first_status(&at_obj1.data_in);
    assert_eq!((lba, st), (8192, 0), "object 1 mapped");
    assert!(blocks >= 16, "{blocks}");
    assert_eq!(u.status, 0, "{:?}", sense(&u.sense));
    let (lba, _, st) = first_status(&after.data_in);
    assert_eq!((lba, st), (8192, 1), "object 1 deallocated by UNMAP");
    assert!(read.data_in.iter().all(|&b| b == 0));
}

#[test]
fn identity_comes_from_the_image_not_the_dev_config() {
    let _cluster = cluster();
    let a = create_image("dev-id-a", 4 * MIB);
    let b = create_image("dev-id-b", 4 * MIB);
    let ia = open(&a, "", 4 * MIB).identity().unwrap();
    // The same image with other options, from another connection.
    let ia2 = open(&a, ";osd_op_timeout=30;lbppbe=3", 4 * MIB)
        .identity()
        .unwrap();
    let ib = open(&b, "", 4 * MIB).identity().unwrap();
    assert_eq!(ia, ia2);
    assert_ne!(ia, ib);
}

#[test]
fn a_missing_image_fails_its_open_clearly() {
    let _cluster = cluster();
    let dc = format!("rbd/rbd/no-such-image;conf={}", conf().display());
    let (cfg, opts) = tcmud::backstore::DevConfig::parse_with_options(&dc)
        .unwrap()
        .unwrap();
    let e = tcmud::backstore::open_backstore_with(
        &cfg,
        &opts,
        MIB,
        512,
        &tcmud::backstore::PoolRegistry::new(Vec::new()),
        &tcmud::backstore::OpenPolicy {
            may_create: false,
            file_roots: &[],
        },
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no-such-image") && msg.contains("no such"),
        "{msg}"
    );
}

#[test]
fn write_same_and_unaligned_unmap_across_objects_read_back() {
    let _cluster = cluster();
    // 16 MiB: objects of 8192 blocks; every range below crosses block 8192.
    let name = create_image("dev-wsame", 16 * MIB);
    let bs = open(&name, "", 16 * MIB);
    let pat: Vec<u8> = (0..512u32).map(|i| (i * 13 % 251) as u8 + 1).collect();
    let p2 = pat.clone();
    let r = run_image("rbd-wsame", &bs, 2, move |sim| {
        clear_unit_attention(sim);
        // The pattern over 64 blocks from 8160, then UNMAP of 8 blocks
        // in its middle (not object-aligned: zeroed, not skipped).
        let ws = one(sim, &write_same16(8160, 64, false, false), SimDir::Out(p2));
        let (cdb, params) = unmap(8188, 8);
        let u = one(sim, &cdb, SimDir::Out(params));
        // WRITE SAME of zeros with UNMAP over all of object 2 (written
        // first): deallocated.
        let w = one(
            sim,
            &write16(24000, 8, false),
            SimDir::Out(vec![9; 8 * 512]),
        );
        assert_eq!(w.status, 0);
        let mapped = one(sim, &get_lba_status(16384), SimDir::In(4096));
        assert_eq!(first_status(&mapped.data_in).2, 0, "object 2 mapped");
        let wz = one(
            sim,
            &write_same16(16384, 8192, true, true),
            SimDir::Out(Vec::new()),
        );
        let st = one(sim, &get_lba_status(16384), SimDir::In(4096));
        (ws, u, wz, st)
    });
    let (ws, u, wz, st) = r.result;
    assert_eq!(ws.status, 0, "{:?}", sense(&ws.sense));
    assert_eq!(u.status, 0, "{:?}", sense(&u.sense));
    assert_eq!(wz.status, 0, "{:?}", sense(&wz.sense));
    // What another client of the cluster reads.
    let back = read_back(&name, 8160 * 512, 64 * 512);
    for (i, block) in back.chunks(512).enumerate() {
        let lba = 8160 + i as u64;
        if (8188..8196).contains(&lba) {
            assert!(block.iter().all(|&b| b == 0), "block {lba} not unmapped");
        } else {
            assert_eq!(block, &pat[..], "block {lba}");
        }
    }
    let (lba, blocks, state) = first_status(&st.data_in);
    assert_eq!((lba, state), (16384, 1), "object 2 deallocated");
    assert!(blocks >= 8192, "{blocks}");
    assert_eq!(read_back(&name, 24000 * 512, 8 * 512), vec![0; 8 * 512]);
}

#[test]
fn compare_and_write_across_objects_is_atomic_against_writes() {
    let _cluster = cluster();
    // A COMPARE AND WRITE across an object boundary is read, compare,
    // write under the LUN's gate. One WRITE of the same blocks races it
    // (asynchronous, not on an I/O thread), submitted after a chain of
    // `round % 6` WRITEs elsewhere so that it comes at a different point of
    // the COMPARE AND WRITE each round. Atomic means the WRITE lands before
    // the read (a miscompare) or after the write: either way the blocks
    // end up holding the WRITE's data, never the COMPARE AND WRITE's.
    let name = create_image("dev-caw-x", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    const LBA: u64 = 8190; // blocks 8190..8194 straddle objects 0 and 1
    const ROUNDS: u8 = 36;
    let r = run_image("rbd-caw-x", &bs, 4, |sim| {
        clear_unit_attention(sim);
        let mut out = Vec::new();
        for round in 0..ROUNDS {
            let old = vec![round; 4 * 512];
            let w = one(sim, &write16(LBA, 4, false), SimDir::Out(old.clone()));
            assert_eq!(w.status, 0);
            let mut c = old;
            c.extend(vec![0xff; 4 * 512]);
            let caw_id = sim.submit(&caw(LBA, 4), SimDir::Out(c)).unwrap();
            let mut ahead = round % 6;
            let next = |sim: &mut tcmud_core::sim::KernelSim, ahead: u8| {
                let lba = if ahead > 0 { 0 } else { LBA };
                sim.submit(&write16(lba, 4, false), SimDir::Out(vec![0x80; 4 * 512]))
                    .unwrap();
                sim.kick().unwrap();
            };
            next(sim, ahead);
            // Command ids are unique among outstanding commands only.
            let (mut caw_done, mut writes_ok) = (None, true);
            let mut left = usize::from(round % 6) + 2;
            while left > 0 {
                for c in collect(sim, 1) {
                    left -= 1;
                    if c.cmd_id == caw_id && caw_done.is_none() {
                        caw_done = Some(c);
                        continue;
                    }
                    writes_ok &= c.status == 0;
                    if ahead > 0 {
                        ahead -= 1;
                        next(sim, ahead);
                    }
                }
            }
            let back = one(sim, &read16(LBA, 4), SimDir::In(4 * 512));
            out.push((caw_done, writes_ok, back.data_in));
        }
        out
    });
    let mut caw_good = 0;
    for (round, (caw_done, writes_ok, back)) in r.result.into_iter().enumerate() {
        let c = caw_done.expect("COMPARE AND WRITE completed");
        caw_good += usize::from(c.status == 0);
        assert!(
            c.status == 0 || sense(&c.sense) == (0x0e, 0x1d, 0x00),
            "round {round}: {c:?}"
        );
        assert!(writes_ok, "round {round}: a WRITE failed");
        assert!(
            back.iter().all(|&b| b == 0x80),
            "round {round}: blocks hold {:#x}.. (COMPARE AND WRITE status {}), not the WRITE's",
            back[0],
            c.status
        );
    }
    eprintln!("COMPARE AND WRITE succeeded in {caw_good} of {ROUNDS} rounds");
}
