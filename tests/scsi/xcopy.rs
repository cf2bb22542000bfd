//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS through the SCSI layer:
//! copies within one LUN and between LUNs of one registry, the sense for
//! hostile parameter lists, held copy results, VPD 8Fh, and chunk sharing
//! between volumes of one pool (data right after writes to either side,
//! no chunk copied, `check` clean, durable across reopen).

use std::sync::Arc;

use crate::util::narrow::{fit, LowByte};
use crate::util::scsi::*;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};
use tcmud_core::scsi::{status, Lun, LunConfig, LunIdentity, LunRegistry, SenseKey};

/// EXTENDED COPY (LID1) CDB with PARAMETER LIST LENGTH `len`.
fn xcopy_cdb(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83; // EXTENDED COPY, service action 00h (LID1)
    c[10..14].copy_from_slice(&len.to_be_bytes()); // PARAMETER LIST LENGTH
    c
}

/// RECEIVE COPY RESULTS CDB: service action, list id, allocation length.
fn rcr_cdb(sa: u8, list_id: u8, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id; // LIST IDENTIFIER
    c[10..14].copy_from_slice(&alloc.to_be_bytes()); // ALLOCATION LENGTH
    c
}

/// One block → block segment.
struct Seg {
    src: u16,
    dst: u16,
    blocks: u16,
    src_lba: u64,
    dst_lba: u64,
}

/// A parameter list: header (list id, LIST ID USAGE), one E4h NAA CSCD
/// descriptor per designator (512-byte blocks), the segments.
fn xcopy_list(list_id: u8, usage: u8, naas: &[[u8; 16]], segs: &[Seg]) -> Vec<u8> {
    let mut l = vec![0u8; 16];
    l[0] = list_id; // LIST IDENTIFIER
    l[1] = usage << 3; // LIST ID USAGE
    l[2..4].copy_from_slice(&fit::<u16, _>(naas.len() * 32).to_be_bytes()); // CSCD DESCRIPTOR LIST LENGTH
    l[8..12].copy_from_slice(&fit::<u32, _>(segs.len() * 28).to_be_bytes()); // SEGMENT DESCRIPTOR LIST LENGTH
    for naa in naas {
        let mut d = [0u8; 32];
        d[0] = 0xE4; // identification descriptor
        d[4] = 0x01; // CODE SET binary
        d[5] = 0x03; // ASSOCIATION LU, DESIGNATOR TYPE NAA
        d[7] = 16; // DESIGNATOR LENGTH
        d[8..24].copy_from_slice(naa);
        d[29..32].copy_from_slice(&BS.to_be_bytes()[1..]); // DISK BLOCK LENGTH
        l.extend_from_slice(&d);
    }
    for s in segs {
        let mut d = [0u8; 28];
        d[0] = 0x02; // block → block
        d[3] = 0x18; // DESCRIPTOR LENGTH
        d[4..6].copy_from_slice(&s.src.to_be_bytes()); // SOURCE CSCD DESCRIPTOR ID
        d[6..8].copy_from_slice(&s.dst.to_be_bytes()); // DESTINATION CSCD DESCRIPTOR ID
        d[10..12].copy_from_slice(&s.blocks.to_be_bytes()); // NUMBER OF BLOCKS
        d[12..20].copy_from_slice(&s.src_lba.to_be_bytes()); // SOURCE LBA
        d[20..28].copy_from_slice(&s.dst_lba.to_be_bytes()); // DESTINATION LBA
        l.extend_from_slice(&d);
    }
    l
}

fn seg(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Seg {
    Seg {
        src,
        dst,
        blocks,
        src_lba,
        dst_lba,
    }
}

fn xcopy(lun: &Lun, list: &[u8]) {
    expect_good(lun, &xcopy_cdb(fit(list.len())), list);
}

#[track_caller]
fn xcopy_sense(lun: &Lun, list: &[u8], key: SenseKey, asc: u8, ascq: u8) {
    expect_sense(lun, &xcopy_cdb(fit(list.len())), list, key, asc, ascq);
}

/// Blocks numbered by LBA (each block's bytes: its LBA and offset).
fn numbered(first: u64, blocks: usize) -> Vec<u8> {
    let mut v = vec![0u8; blocks * BS as usize];
    for (i, b) in v.chunks_mut(BS as usize).enumerate() {
        for (j, x) in b.iter_mut().enumerate() {
            *x = ((first + i as u64) * 7 + j as u64 / 4).low_byte();
        }
    }
    v
}

fn naa(lun: &Lun) -> [u8; 16] {
    lun.config().naa
}

fn identified(n: u8) -> LunConfig {
    LunConfig::identified(LunIdentity([n; 16]))
}

#[test]
fn copies_within_one_lun_and_holds_the_status() {
    let d = dev();
    let data = numbered(0, 64);
    write16(&d.lun, 0, &data);
    let list = xcopy_list(1, 0, &[naa(&d.lun)], &[seg(0, 0, 64, 0, 1000)]);
    xcopy(&d.lun, &list);
    assert_eq!(read16(&d.lun, 1000, 64), data);
    // COPY STATUS: completed, 1 segment, 32 KiB (in bytes).
    let st = expect_data(&d.lun, &rcr_cdb(0x00, 1, 1024), &[], 1024);
    assert_eq!(st, [0, 0, 0, 8, 0x01, 0, 1, 0x00, 0, 0, 0x80, 0]);
    // Nothing held for another list, nor failed segment details for this one.
    expect_sense(
        &d.lun,
        &rcr_cdb(0x00, 2, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &d.lun,
        &rcr_cdb(0x04, 1, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // LIST ID USAGE 10b (discard): the next copy with list 1 drops the
    // held status and holds nothing.
    let list = xcopy_list(1, 2, &[naa(&d.lun)], &[seg(0, 0, 8, 0, 2000)]);
    xcopy(&d.lun, &list);
    expect_sense(
        &d.lun,
        &rcr_cdb(0x00, 1, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(read16(&d.lun, 2000, 8), data[..8 * BS as usize]);
    // A copy refused while its list is checked also ends what was held
    // for its list identifier (libiscsi's ExtendedCopy suite, then
    // ReceiveCopyResults.CopyStatus expecting nothing held for list 1).
    xcopy(
        &d.lun,
        &xcopy_list(1, 0, &[naa(&d.lun)], &[seg(0, 0, 8, 0, 3000)]),
    );
    expect_data(&d.lun, &rcr_cdb(0x00, 1, 1024), &[], 1024);
    let bad = xcopy_list(1, 0, &[naa(&d.lun)], &[seg(0, 1, 8, 0, 3000)]);
    xcopy_sense(&d.lun, &bad, SenseKey::CopyAborted, 0x0D, 0x02);
    expect_sense(
        &d.lun,
        &rcr_cdb(0x00, 1, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

#[test]
fn overlapping_copies_within_one_lun_copy_the_old_data() {
    let d = dev();
    let data = numbered(0, 3000);
    write16(&d.lun, 0, &data[..2048 * BS as usize]);
    write16(&d.lun, 2048, &data[2048 * BS as usize..]);
    // Up by 100 blocks over a 2500-block range (pieces of 1 MiB = 2048
    // blocks: a forward copy would read what it wrote).
    xcopy(
        &d.lun,
        &xcopy_list(0, 3, &[naa(&d.lun)], &[seg(0, 0, 2500, 0, 100)]),
    );
    let got = [read16(&d.lun, 100, 2048), read16(&d.lun, 2148, 452)].concat();
    assert!(got == data[..2500 * BS as usize], "copy up");
    // Down again by 50.
    let before = [read16(&d.lun, 100, 2048), read16(&d.lun, 2148, 452)].concat();
    xcopy(
        &d.lun,
        &xcopy_list(0, 3, &[naa(&d.lun)], &[seg(0, 0, 2500, 100, 50)]),
    );
    let got = [read16(&d.lun, 50, 2048), read16(&d.lun, 2098, 452)].concat();
    assert!(got == before, "copy down");
}

#[test]
fn copies_between_luns_of_one_registry() {
    let reg = LunRegistry::new();
    let a = Arc::new(Lun::new(
        identified(1),
        Arc::new(MemBackend::new(BS, BLOCKS)),
    ));
    let b = Arc::new(Lun::new(
        identified(2),
        Arc::new(MemBackend::new(BS, BLOCKS)),
    ));
    let c = Arc::new(Lun::new(
        identified(3),
        Arc::new(MemBackend::new(BS, BLOCKS)),
    ));
    for l in [&a, &b, &c] {
        let _ = l.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // power-on UA
    }
    reg.register(&a);
    reg.register(&b);
    let data = numbered(5, 40);
    write16(&a, 5, &data);
    // Sent to C (not registered) it cannot reach A or B.
    let list = xcopy_list(0, 3, &[naa(&a), naa(&b)], &[seg(0, 1, 40, 5, 77)]);
    xcopy_sense(&c, &list, SenseKey::CopyAborted, 0x0D, 0x02);
    // Sent to B (a third LUN names source and destination): copied.
    xcopy(&b, &list);
    assert_eq!(read16(&b, 77, 40), data);
    // A LUN that left the registry is unreachable.
    reg.unregister(&a);
    xcopy_sense(&b, &list, SenseKey::CopyAborted, 0x0D, 0x02);
    // A write-protected destination.
    reg.register(&a);
    let ro = Arc::new(Lun::new(
        identified(4),
        Arc::new(MemBackend::with_caps(tcmud_core::backend::BackendCaps {
            read_only: true,
            ..caps()
        })),
    ));
    reg.register(&ro);
    let list = xcopy_list(0, 3, &[naa(&a), naa(&ro)], &[seg(0, 1, 1, 0, 0)]);
    xcopy_sense(&a, &list, SenseKey::CopyAborted, 0x27, 0x00);
}

#[test]
fn hostile_parameter_lists_get_the_spc_sense() {
    let d = dev();
    let me = naa(&d.lun);
    let good = xcopy_list(1, 0, &[me], &[seg(0, 0, 8, 0, 100)]);
    // PARAMETER LIST LENGTH 0: nothing to do.
    expect_good(&d.lun, &xcopy_cdb(0), &[]);
    // Truncated lists (the CDB names what is sent).
    for n in [8, 16 + 31, 16 + 32 + 27] {
        xcopy_sense(&d.lun, &good[..n], SenseKey::IllegalRequest, 0x1A, 0);
    }
    // A PARAMETER LIST LENGTH beyond what the copy manager takes, whatever
    // is sent: refused before anything is copied.
    expect_sense(
        &d.lun,
        &xcopy_cdb(u32::MAX),
        &good,
        SenseKey::IllegalRequest,
        0x1A,
        0,
    );
    // Data-out shorter than the CDB says.
    expect_sense(
        &d.lun,
        &xcopy_cdb(100),
        &good,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // A reserved CDB byte, another service action.
    let mut cdb = xcopy_cdb(fit(good.len()));
    cdb[5] = 1;
    expect_sense(&d.lun, &cdb, &good, SenseKey::IllegalRequest, 0x24, 0);
    let mut cdb = xcopy_cdb(fit(good.len()));
    cdb[1] = 0x01;
    expect_sense(&d.lun, &cdb, &good, SenseKey::IllegalRequest, 0x24, 0);
    // Too many CSCD / segment descriptors.
    let list = xcopy_list(1, 0, &[me; 9], &[seg(0, 0, 8, 0, 100)]);
    xcopy_sense(&d.lun, &list, SenseKey::IllegalRequest, 0x26, 0x06);
    let segs: Vec<Seg> = (0..17).map(|_| seg(0, 0, 1, 0, 100)).collect();
    let list = xcopy_list(1, 0, &[me], &segs);
    xcopy_sense(&d.lun, &list, SenseKey::IllegalRequest, 0x26, 0x08);
    // Unsupported descriptor types.
    let mut list = good.clone();
    list[16] = 0xE0; // Fibre Channel N_Port_Name CSCD
    xcopy_sense(&d.lun, &list, SenseKey::IllegalRequest, 0x26, 0x07);
    let mut list = good.clone();
    list[48] = 0x01; // stream → block segment
    xcopy_sense(&d.lun, &list, SenseKey::IllegalRequest, 0x26, 0x09);
    // A destination index with no CSCD, an unknown designator, another
    // designator type, a non-block device: COPY ABORTED.
    let list = xcopy_list(1, 0, &[me], &[seg(0, 1, 8, 0, 100)]);
    xcopy_sense(&d.lun, &list, SenseKey::CopyAborted, 0x0D, 0x02);
    let list = xcopy_list(1, 0, &[[0x60; 16]], &[seg(0, 0, 8, 0, 100)]);
    xcopy_sense(&d.lun, &list, SenseKey::CopyAborted, 0x0D, 0x02);
    let mut list = good.clone();
    list[21] = 0x01; // T10 vendor ID designator
    xcopy_sense(&d.lun, &list, SenseKey::CopyAborted, 0x0D, 0x02);
    let mut list = good.clone();
    list[17] = 0x01; // sequential-access device
    xcopy_sense(&d.lun, &list, SenseKey::CopyAborted, 0x0D, 0x03);
    // A block length that is not the LUN's.
    let mut list = good.clone();
    list[46] = 0x10;
    xcopy_sense(&d.lun, &list, SenseKey::IllegalRequest, 0x26, 0);
    // Beyond the end of either LUN, and past u64.
    for (s, t) in [(0, BLOCKS - 1), (BLOCKS - 1, 0), (u64::MAX, 0)] {
        let list = xcopy_list(1, 0, &[me], &[seg(0, 0, 8, s, t)]);
        xcopy_sense(&d.lun, &list, SenseKey::CopyAborted, 0, 0);
    }
    // None of these held anything for list 1.
    expect_sense(
        &d.lun,
        &rcr_cdb(0x00, 1, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // The LUN was never written.
    assert_eq!(d.mem.allocated_chunks(), 0);
}

#[test]
fn a_copy_failing_mid_way_holds_failed_segment_details() {
    let reg = LunRegistry::new();
    let a = Arc::new(Lun::new(
        identified(1),
        Arc::new(MemBackend::new(BS, BLOCKS)),
    ));
    let b_mem = Arc::new(MemBackend::new(BS, BLOCKS));
    let b = Arc::new(Lun::new(identified(2), b_mem.clone()));
    for l in [&a, &b] {
        let _ = l.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // power-on UA
        reg.register(l);
    }
    write16(&a, 0, &numbered(0, 16));
    // Segment 0 copies within A; segment 1's write to B fails.
    let list = xcopy_list(
        9,
        0,
        &[naa(&a), naa(&b)],
        &[seg(0, 0, 8, 0, 100), seg(0, 1, 8, 8, 200)],
    );
    b_mem.fail_next_writes(1);
    // The failing write's own sense (MEDIUM ERROR, WRITE ERROR) under
    // COPY ABORTED.
    xcopy_sense(&a, &list, SenseKey::CopyAborted, 0x0C, 0x00);
    assert_eq!(read16(&a, 100, 8), numbered(0, 8), "segment 0 was copied");
    // COPY STATUS: completed with errors, 2 segments processed, 8 blocks.
    let st = expect_data(&a, &rcr_cdb(0x00, 9, 1024), &[], 1024);
    assert_eq!(st, [0, 0, 0, 8, 0x02, 0, 2, 0x00, 0, 0, 0x10, 0]);
    // FAILED SEGMENT DETAILS: CHECK CONDITION and the sense, once.
    let fsd = expect_data(&a, &rcr_cdb(0x04, 9, 1024), &[], 1024);
    assert_eq!(fsd.len(), 78);
    assert_eq!(u32::from_be_bytes([fsd[0], fsd[1], fsd[2], fsd[3]]), 74);
    assert_eq!(fsd[56], status::CHECK_CONDITION);
    assert_eq!(u16::from_be_bytes([fsd[58], fsd[59]]), 18);
    assert_eq!(fsd[60 + 2] & 0x0F, 0x0A, "COPY ABORTED");
    assert_eq!((fsd[60 + 12], fsd[60 + 13]), (0x0C, 0x00));
    expect_sense(
        &a,
        &rcr_cdb(0x04, 9, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // The status stays until a new copy names list 9.
    let st = expect_data(&a, &rcr_cdb(0x00, 9, 1024), &[], 1024);
    assert_eq!(st[4], 0x02);
    let list = xcopy_list(9, 2, &[naa(&a)], &[seg(0, 0, 1, 0, 300)]);
    xcopy(&a, &list);
    expect_sense(
        &a,
        &rcr_cdb(0x00, 9, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

#[test]
fn operating_parameters_vpd_8f_3pc_and_rsoc() {
    let d = dev();
    let op = expect_data(&d.lun, &rcr_cdb(0x03, 0, 1024), &[], 1024);
    assert_eq!(op.len(), 46);
    assert_eq!(u32::from_be_bytes([op[0], op[1], op[2], op[3]]), 42); // AVAILABLE DATA
    assert_eq!(u16::from_be_bytes([op[8], op[9]]), 8); // MAXIMUM CSCD DESCRIPTOR COUNT
    assert_eq!(u16::from_be_bytes([op[10], op[11]]), 16); // MAXIMUM SEGMENT DESCRIPTOR COUNT
    assert_eq!(
        u32::from_be_bytes([op[12], op[13], op[14], op[15]]),
        8 * 32 + 16 * 28
    );
    assert_eq!(
        u32::from_be_bytes([op[16], op[17], op[18], op[19]]),
        65535 * BS
    );
    assert_eq!(op[43], 2);
    assert_eq!(op[44..46], [0x02, 0xE4]);
    // Truncated to the allocation length.
    assert_eq!(
        expect_data(&d.lun, &rcr_cdb(0x03, 0, 10), &[], 1024).len(),
        10
    );
    // A list identifier with OPERATING PARAMETERS, RECEIVE DATA: invalid.
    expect_sense(
        &d.lun,
        &rcr_cdb(0x03, 1, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &d.lun,
        &rcr_cdb(0x01, 0, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // INQUIRY: 3PC.
    let inq = expect_data(&d.lun, &[0x12, 0, 0, 0, 96, 0], &[], 96);
    assert_eq!(inq[5] & 0x08, 0x08);
    // VPD 00h lists 8Fh; 8Fh reads.
    let vpd0 = expect_data(&d.lun, &[0x12, 1, 0x00, 0, 64, 0], &[], 64);
    assert!(vpd0[4..].contains(&0x8F));
    let p = expect_data(&d.lun, &[0x12, 1, 0x8F, 0, 255, 0], &[], 255);
    assert_eq!(p[1], 0x8F);
    assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len() - 4);
    // REPORT SUPPORTED OPERATION CODES, one command: 83h/00h and 84h/03h.
    for (op, sa) in [(0x83u8, 0u8), (0x84, 0x00), (0x84, 0x03), (0x84, 0x04)] {
        let r = expect_data(
            &d.lun,
            &[0xA3, 0x0C, 0x02, op, 0, sa, 0, 0, 1, 0, 0, 0],
            &[],
            256,
        );
        assert_eq!(r[1] & 0x07, 0x03, "{op:02x}/{sa:02x} supported");
        assert_eq!(r[4], op);
    }
}

// ---- chunk sharing between volumes of one pool ----

const CHUNK: u32 = 4096;

fn pool(format: u32) -> (Pool, MemStore, CrashIo) {
    let store = MemStore::new();
    let data = CrashIo::new();
    let pool = Pool::create_with_opts(
        &PoolConfig {
            chunk_size: CHUNK,
            capacity_bytes: 4096 * u64::from(CHUNK),
            low_water_pct: 100,
        },
        Box::new(store.clone()),
        Box::new(data.clone()),
        &PoolOptions {
            format,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    (pool, store, data)
}

/// Two registered LUNs over volumes "a" and "b" (1 MiB each).
fn pool_luns(pool: &Pool) -> (Arc<Lun>, Arc<Lun>) {
    let reg = LunRegistry::new();
    let mut out = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        pool.create_volume(name, 1 << 20, BS).unwrap();
        let vol = pool.open_volume(name).unwrap();
        let lun = Arc::new(Lun::new(identified(i.low_byte() + 1), vol));
        let _ = lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []);
        reg.register(&lun);
        out.push(lun);
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

fn per_chunk() -> u64 {
    u64::from(CHUNK / BS)
}

#[test]
fn chunk_sharing_between_volumes_of_one_pool() {
    for format in [2, 3] {
        let (pool, store, data) = pool(format);
        let (a, b) = pool_luns(&pool);
        let src = numbered(0, 256);
        write16(&a, 0, &src);
        // Old data in b that the copy replaces (its chunks are freed).
        write16(&b, 512, &numbered(999, 64));
        pool.flush().unwrap();
        let used = pool.usage().unwrap().allocated_chunks;
        // 256 blocks = 32 chunks, chunk-aligned on both sides: shared.
        let list = xcopy_list(1, 0, &[naa(&a), naa(&b)], &[seg(0, 1, 256, 0, 512)]);
        xcopy(&a, &list);
        assert_eq!(read16(&b, 512, 256), src, "format {format}");
        let now = pool.usage().unwrap().allocated_chunks;
        assert_eq!(
            now,
            used - 8,
            "format {format}: no chunk copied, b's 8 old chunks freed"
        );
        let r = pool.check().unwrap();
        assert!(r.is_clean(), "format {format}: {:?}", r.problems);
        // Writes to either side copy on write; the other keeps its data.
        write16(&a, 3, &numbered(5000, 2));
        write16(&b, 512 + 100, &numbered(6000, 3));
        let mut want_a = src.clone();
        want_a[3 * 512..5 * 512].copy_from_slice(&numbered(5000, 2));
        let mut want_b = src.clone();
        want_b[100 * 512..103 * 512].copy_from_slice(&numbered(6000, 3));
        assert_eq!(read16(&a, 0, 256), want_a, "format {format}: a");
        assert_eq!(read16(&b, 512, 256), want_b, "format {format}: b");
        assert_eq!(pool.usage().unwrap().allocated_chunks, now + 2);
        // The shared mappings were committed by the copy: a crash now
        // (the later writes neither synced nor committed) keeps them.
        drop((a, b));
        let crashed = store.crash_image();
        let crashed_data = data.crash_image(&mut || false);
        drop(pool);
        let pool = Pool::open_with(Box::new(crashed), Box::new(crashed_data)).unwrap();
        let mut buf = vec![0u8; 256 * BS as usize];
        pool.open_volume("b").unwrap().read(512, &mut buf).unwrap();
        assert!(buf == src, "format {format}: b after the crash");
        pool.open_volume("a").unwrap().read(0, &mut buf).unwrap();
        assert!(buf == src, "format {format}: a after the crash");
        let (a, b) = (
            pool.open_volume("a").unwrap(),
            pool.open_volume("b").unwrap(),
        );
        // After the crash, writes copy on write again, and a commit
        // leaves the pool clean.
        a.write(0, &numbered(7000, 8), false).unwrap();
        b.write(512 + 8, &numbered(8000, 8), false).unwrap();
        pool.flush().unwrap();
        a.read(0, &mut buf).unwrap();
        assert!(buf[..8 * 512] == numbered(7000, 8)[..] && buf[8 * 512..] == src[8 * 512..]);
        b.read(512, &mut buf).unwrap();
        assert!(
            buf[..8 * 512] == src[..8 * 512] && buf[8 * 512..16 * 512] == numbered(8000, 8)[..]
        );
        let r = pool.check().unwrap();
        assert!(r.is_clean(), "format {format}: {:?}", r.problems);
    }
}

#[test]
fn unaligned_copies_between_volumes_share_the_whole_chunks_only() {
    let (pool, _store, _data) = pool(3);
    let (a, b) = pool_luns(&pool);
    let src = numbered(0, 512);
    write16(&a, 0, &src);
    pool.flush().unwrap();
    let used = pool.usage().unwrap().allocated_chunks;
    // Source and destination 3 blocks into a chunk: 5 blocks of head,
    // 48 chunks shared, a tail of 1 block written.
    let list = xcopy_list(
        0,
        3,
        &[naa(&a), naa(&b)],
        &[seg(0, 1, 5 + 48 * 8 + 1, 3, 8 * 10 + 3)],
    );
    xcopy(&b, &list);
    let n = 5 + 48 * 8 + 1;
    assert_eq!(read16(&b, 83, fit(n)), src[3 * 512..(3 + n) * 512]);
    assert_eq!(
        pool.usage().unwrap().allocated_chunks,
        used + 2,
        "head and tail chunks"
    );
    // Misaligned relative to each other: copied block by block.
    let list = xcopy_list(0, 3, &[naa(&a), naa(&b)], &[seg(0, 1, 64, 1, 1024 + 2)]);
    xcopy(&a, &list);
    assert_eq!(read16(&b, 1026, 64), src[512..65 * 512]);
    assert_eq!(per_chunk(), 8);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn sharing_within_one_volume() {
    let (pool, _store, _data) = pool(3);
    let (a, _b) = pool_luns(&pool);
    let src = numbered(0, 64);
    write16(&a, 0, &src);
    pool.flush().unwrap();
    let used = pool.usage().unwrap().allocated_chunks;
    xcopy(&a, &xcopy_list(1, 0, &[naa(&a)], &[seg(0, 0, 64, 0, 1024)]));
    assert_eq!(read16(&a, 1024, 64), src);
    assert_eq!(pool.usage().unwrap().allocated_chunks, used);
    write16(&a, 1024, &numbered(77, 8));
    assert_eq!(read16(&a, 0, 64), src);
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn copies_to_another_pool_leave_unallocated_source_pieces_unallocated() {
    let (p1, _s1, _d1) = pool(3);
    let (p2, _s2, _d2) = pool(3);
    let reg = LunRegistry::new();
    let mut luns = Vec::new();
    for (i, p) in [&p1, &p2].into_iter().enumerate() {
        p.create_volume("v", 4 << 20, BS).unwrap();
        let lun = Arc::new(Lun::new(
            identified(i.low_byte() + 1),
            p.open_volume("v").unwrap(),
        ));
        let _ = lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []);
        reg.register(&lun);
        luns.push(lun);
    }
    let (a, b) = (&luns[0], &luns[1]);
    // 64 KiB written at 1 MiB + 3 blocks in a source of 4 MiB; old data
    // all over the destination.
    let data = numbered(0, 128);
    write16(a, 2048 + 3, &data);
    for i in 0..4u64 {
        write16(b, i * 2048, &numbered(100 + i, 2048));
    }
    // 2 MiB + 5 blocks from block 0: the 1 MiB pieces at 0 (hole), 1 MiB
    // (data), 2 MiB (5 blocks of hole) go as unmap, write, unmap.
    let n = 2 * 2048 + 5;
    let list = xcopy_list(0, 3, &[naa(a), naa(b)], &[seg(0, 1, fit(n), 0, 0)]);
    xcopy(b, &list);
    let mut want = vec![0u8; n * BS as usize];
    want[(2048 + 3) * 512..(2048 + 3 + 128) * 512].copy_from_slice(&data);
    let got = [
        read16(b, 0, 2048),
        read16(b, 2048, 2048),
        read16(b, 4096, 5),
    ]
    .concat();
    assert!(got == want, "destination reads the source (zeros and data)");
    assert_eq!(read16(b, 4096 + 5, 3), numbered(102, 8)[5 * 512..]);
    // The destination's first MiB (256 chunks of 4 KiB) was deallocated,
    // its second written, its last 2 MiB kept (5 blocks zeroed in place).
    assert_eq!(p2.usage().unwrap().allocated_chunks, 256 + 512);
    let r = p2.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}
