//! The RBD backstore behind the real device actor, driven by the kernel
//! simulator, against a real single-node cluster (tests/ceph/cluster.sh):
//! data integrity under concurrency, flush, COMPARE AND WRITE, UNMAP and
//! GET LBA STATUS, identity. Built with the `rbd` feature only.
#![cfg(feature = "rbd")]

mod device_common;
mod rbd_common;

use device_common::run;
use device_common::workload::{clear_unit_attention, collect, one, random_io, Expect};
use rbd_common::*;
use tcmud::device::RestartBudget;
use tcmud_core::sim::{SimConfig, SimDir};

const MIB: u64 = 1 << 20;

#[test]
fn random_io_with_verify_is_exact() {
    const BLOCKS: usize = 4096; // 2 MiB
    let name = create_image("dev-rand", BLOCKS as u64 * 512);
    let bs = open(&name, "", BLOCKS as u64 * 512);
    let r = run(
        "rbd-rand",
        SimConfig::default(),
        bs.backend(),
        4,
        RestartBudget::default(),
        None,
        |sim| random_io(sim, 1500, 32, BLOCKS, 17, Expect::AllGood),
    );
    assert_eq!(r.result.errors, Vec::<String>::new());
    assert_eq!(r.result.broken, None);
    assert_eq!((r.result.completed, r.result.good), (1500, 1500));
    assert!(r.failure.is_none());
}

#[test]
fn fua_writes_and_sync_cache_reach_the_cluster() {
    let name = create_image("dev-flush", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 7 % 253) as u8).collect();
    let d2 = data.clone();
    let r = run(
        "rbd-flush",
        SimConfig::default(),
        bs.backend(),
        2,
        RestartBudget::default(),
        None,
        move |sim| {
            clear_unit_attention(sim);
            let w = one(sim, &write16(100, 8, true), SimDir::Out(d2.clone()));
            let w2 = one(sim, &write16(300, 8, false), SimDir::Out(d2));
            // SYNCHRONIZE CACHE(10), whole device.
            let s = one(sim, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::None);
            (w.status, w2.status, s.status)
        },
    );
    assert_eq!(r.result, (0, 0, 0));
    // What another client of the cluster reads.
    assert_eq!(read_back(&name, 100 * 512, data.len()), data);
    assert_eq!(read_back(&name, 300 * 512, data.len()), data);
}

#[test]
fn compare_and_write_is_atomic_and_reports_miscompares() {
    let name = create_image("dev-caw", 8 * MIB);
    let bs = open(&name, "", 8 * MIB);
    let r = run(
        "rbd-caw",
        SimConfig::default(),
        bs.backend(),
        4,
        RestartBudget::default(),
        None,
        |sim| {
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
        },
    );
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
    // 16 MiB: four 4 MiB objects of 8192 blocks.
    let name = create_image("dev-unmap", 16 * MIB);
    let bs = open(&name, "", 16 * MIB);
    let r = run(
        "rbd-unmap",
        SimConfig::default(),
        bs.backend(),
        2,
        RestartBudget::default(),
        None,
        |sim| {
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
        },
    );
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
