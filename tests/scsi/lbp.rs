//! Logical block provisioning: UNMAP, WRITE SAME (UNMAP/NDOB/ANCHOR),
//! GET LBA STATUS, over MemBackend and FileBackend.

use std::sync::Arc;

use crate::util::narrow::fit;
use crate::util::scsi::*;
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::scsi::{Lun, LunConfig, SenseKey};

fn unmap_cdb(list_len: u16, anchor: bool) -> [u8; 10] {
    let [h, l] = list_len.to_be_bytes();
    [0x42, u8::from(anchor), 0, 0, 0, 0, 0, h, l, 0] // UNMAP, ANCHOR, PARAMETER LIST LENGTH
}

/// An UNMAP parameter list with correct header lengths.
fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let bd_len = fit::<u16, _>(ranges.len() * 16);
    let mut v = Vec::new();
    v.extend_from_slice(&(bd_len + 6).to_be_bytes()); // UNMAP DATA LENGTH
    v.extend_from_slice(&bd_len.to_be_bytes()); // UNMAP BLOCK DESCRIPTOR DATA LENGTH
    v.extend_from_slice(&[0; 4]);
    for (lba, n) in ranges {
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    v
}

fn ws16(lba: u64, blocks: u32, flags: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x93; // WRITE SAME(16)
    c[1] = flags; // WRPROTECT | ANCHOR 0x10 | UNMAP 0x08 | NDOB 0x01
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[10..14].copy_from_slice(&blocks.to_be_bytes()); // NUMBER OF LOGICAL BLOCKS
    c
}

fn ws10(lba: u32, blocks: u16, flags: u8) -> [u8; 10] {
    let [a, b, c, d] = lba.to_be_bytes();
    let [h, l] = blocks.to_be_bytes();
    [0x41, flags, a, b, c, d, 0, h, l, 0] // WRITE SAME(10)
}

fn get_lba_status(lba: u64, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9E; // SERVICE ACTION IN(16)
    c[1] = 0x12; // GET LBA STATUS
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // STARTING LBA
    c[10..14].copy_from_slice(&alloc.to_be_bytes()); // ALLOCATION LENGTH
    c
}

/// (lba, blocks, provisioning status) descriptors of a GET LBA STATUS reply.
fn descriptors(d: &[u8]) -> Vec<(u64, u32, u8)> {
    assert_eq!(
        u32::from_be_bytes(d[..4].try_into().unwrap()) as usize + 4,
        d.len()
    );
    d[8..]
        .chunks(16)
        .map(|c| {
            (
                u64::from_be_bytes(c[..8].try_into().unwrap()),
                u32::from_be_bytes(c[8..12].try_into().unwrap()),
                c[12],
            )
        })
        .collect()
}

#[test]
fn unmap_deallocates_and_reads_zero() {
    let t = dev();
    write16(&t.lun, 0, &pattern(32, 0xEE));
    assert_eq!(t.mem.allocated_chunks(), 4);
    let list = unmap_list(&[(0, 8), (12, 4), (24, 8)]);
    expect_good(&t.lun, &unmap_cdb(fit(list.len()), false), &list);
    assert_eq!(
        t.mem.allocated_chunks(),
        2,
        "chunks 0 and 3 freed, chunk 1 zeroed in part"
    );
    let d = read16(&t.lun, 0, 32);
    assert_eq!(d[..8 * 512], pattern(8, 0)[..]);
    assert_eq!(d[8 * 512..12 * 512], pattern(4, 0xEE)[..]);
    assert_eq!(d[12 * 512..16 * 512], pattern(4, 0)[..]);
    assert_eq!(d[16 * 512..24 * 512], pattern(8, 0xEE)[..]);
    assert_eq!(d[24 * 512..], pattern(8, 0)[..]);
}

#[test]
fn unmap_parameter_list_checks() {
    let t = dev();
    write16(&t.lun, 0, &pattern(8, 1));
    // Zero-length list and zero descriptors: GOOD, nothing happens.
    expect_good(&t.lun, &unmap_cdb(0, false), &[]);
    expect_good(&t.lun, &unmap_cdb(8, false), &unmap_list(&[]));
    // A zero-block descriptor is a no-op.
    expect_good(&t.lun, &unmap_cdb(24, false), &unmap_list(&[(0, 0)]));
    // Lists shorter than the header, or than the CDB says.
    expect_sense(
        &t.lun,
        &unmap_cdb(4, false),
        &[0; 4],
        SenseKey::IllegalRequest,
        0x1A,
        0,
    );
    // Less data-out than the CDB's PARAMETER LIST LENGTH: INVALID FIELD IN
    // CDB, as the kernel's target_cmd_size_check ("overflow for WRITE
    // control CDB").
    expect_sense(
        &t.lun,
        &unmap_cdb(40, false),
        &unmap_list(&[(0, 1)]),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // ANCHOR is not supported.
    expect_sense(
        &t.lun,
        &unmap_cdb(24, true),
        &unmap_list(&[(0, 1)]),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // Out of range: nothing of the list is applied.
    let l = unmap_list(&[(0, 8), (BLOCKS - 1, 2)]);
    expect_sense(
        &t.lun,
        &unmap_cdb(fit(l.len()), false),
        &l,
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    let l = unmap_list(&[(u64::MAX, 2)]);
    expect_sense(
        &t.lun,
        &unmap_cdb(fit(l.len()), false),
        &l,
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    assert_eq!(read16(&t.lun, 0, 8), pattern(8, 1));
    // Too many blocks in one descriptor, too many descriptors.
    let l = unmap_list(&[(0, (1 << 20) + 1)]);
    let s = expect_sense(
        &t.lun,
        &unmap_cdb(fit(l.len()), false),
        &l,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    assert_eq!(
        &s.to_fixed()[15..18],
        &[0x80, 0, 16],
        "points at the NUMBER OF LOGICAL BLOCKS"
    );
    let many: Vec<(u64, u32)> = (0..257).map(|i| (i, 1)).collect();
    let l = unmap_list(&many);
    expect_sense(
        &t.lun,
        &unmap_cdb(fit(l.len()), false),
        &l,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    // A block-descriptor length beyond the list: only whole descriptors inside count.
    let mut l = unmap_list(&[(0, 8)]);
    l[3] = 32;
    expect_good(&t.lun, &unmap_cdb(fit(l.len()), false), &l);
    assert_eq!(read16(&t.lun, 0, 8), pattern(8, 0));
}

#[test]
fn write_same_writes_the_pattern() {
    let t = dev();
    let mut block = pattern(1, 0);
    block[0] = 0xAB;
    block[511] = 0xCD;
    expect_good(&t.lun, &ws16(100, 3000, 0), &block);
    let d = read16(&t.lun, 100, 3000);
    assert!(d.chunks(512).all(|c| c == block));
    expect_good(&t.lun, &ws10(10, 2, 0), &pattern(1, 0x77));
    assert_eq!(
        read16(&t.lun, 9, 4),
        [pattern(1, 0), pattern(2, 0x77), pattern(1, 0)].concat()
    );
}

#[test]
fn write_same_unmap_and_ndob_deallocate() {
    let t = dev();
    write16(&t.lun, 0, &pattern(64, 0xFF));
    assert_eq!(t.mem.allocated_chunks(), 8);
    expect_good(&t.lun, &ws16(0, 32, 0x08), &pattern(1, 0)); // UNMAP with a zero block
    assert_eq!(t.mem.allocated_chunks(), 4);
    expect_good(&t.lun, &ws16(32, 32, 0x08 | 0x01), &[]); // UNMAP + NDOB: no data-out
    assert_eq!(t.mem.allocated_chunks(), 0);
    assert_eq!(read16(&t.lun, 0, 64), pattern(64, 0));
    // NDOB without UNMAP writes zeros (allocating).
    expect_good(&t.lun, &ws16(0, 8, 0x01), &[]);
    assert_eq!(read16(&t.lun, 0, 8), pattern(8, 0));
    // UNMAP with non-zero data writes the data.
    expect_good(&t.lun, &ws10(0, 8, 0x08), &pattern(1, 3));
    assert_eq!(read16(&t.lun, 0, 8), pattern(8, 3));
}

#[test]
fn write_same_invalid_fields() {
    let t = dev();
    let z = pattern(1, 0);
    expect_sense(
        &t.lun,
        &ws16(0, 1, 0x10),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // ANCHOR
    expect_sense(
        &t.lun,
        &ws16(0, 1, 0x18),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // ANCHOR + UNMAP
    expect_sense(
        &t.lun,
        &ws16(0, 1, 0x20),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // WRPROTECT
    expect_sense(
        &t.lun,
        &ws16(0, 0, 0),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // WSNZ
    expect_sense(
        &t.lun,
        &ws10(0, 0, 0x08),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &ws16(0, (1 << 20) + 1, 0),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // > MAX WS LEN
    expect_sense(
        &t.lun,
        &ws16(BLOCKS - 1, 2, 0),
        &z,
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &ws16(u64::MAX, 1, 0),
        &z,
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    // Data-out other than one block: INVALID FIELD IN COMMAND INFORMATION
    // UNIT (0E/03).
    expect_sense(
        &t.lun,
        &ws16(0, 1, 0),
        &[1, 2, 3],
        SenseKey::IllegalRequest,
        0x0E,
        3,
    );
    // Data-out must be exactly one block (0E/03 otherwise).
    let two = pattern(2, 0);
    expect_sense(
        &t.lun,
        &ws16(0, 1, 0x08),
        &two,
        SenseKey::IllegalRequest,
        0x0E,
        3,
    );
    // UNMAP on a thick device.
    let c = tcmud_core::backend::BackendCaps {
        thin: false,
        ..caps()
    };
    let t2 = dev_with(c, LunConfig::default());
    expect_sense(
        &t2.lun,
        &ws16(0, 1, 0x08),
        &z,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_good(&t2.lun, &ws16(0, 1, 0), &z);
}

#[test]
fn get_lba_status_reports_runs() {
    let t = dev();
    write16(&t.lun, 16, &pattern(16, 1)); // chunks 2 and 3 mapped
    let d = expect_data(&t.lun, &get_lba_status(0, 1024), &[], 1024);
    assert_eq!(
        descriptors(&d),
        [(0, 16, 1), (16, 16, 0), (32, fit(BLOCKS - 32), 1)]
    );
    let d = expect_data(&t.lun, &get_lba_status(20, 1024), &[], 1024);
    assert_eq!(
        descriptors(&d)[0],
        (20, 12, 0),
        "starts at the requested LBA"
    );
    // Allocation length 24 holds exactly one descriptor.
    let d = expect_data(&t.lun, &get_lba_status(0, 24), &[], 1024);
    assert_eq!(d.len(), 24);
    assert_eq!(&d[..4], &20u32.to_be_bytes());
    expect_sense(
        &t.lun,
        &get_lba_status(BLOCKS, 1024),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
}

#[test]
fn file_backend_round_trip_punch_hole_and_lba_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let fb = FileBackend::create(&path, 512, 4 << 20).unwrap();
    assert_eq!(fb.caps().num_blocks, 8192);
    let lun = Lun::new(LunConfig::default(), Arc::new(fb));
    lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // consume the power-on UA
    let data: Vec<u8> = (0..256 * 512).map(|i| (i % 253) as u8).collect();
    let w = write16_cdb(1024, 256, true);
    expect_good(&lun, &w, &data);
    assert_eq!(read16(&lun, 1024, 256), data);
    assert_eq!(
        std::fs::read(&path).unwrap()[1024 * 512..1280 * 512],
        data[..]
    );
    expect_good(&lun, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]); // SYNCHRONIZE CACHE(10)
    let d = expect_data(&lun, &get_lba_status(0, 4096), &[], 4096);
    let runs = descriptors(&d);
    assert!(
        runs.iter()
            .any(|&(lba, n, st)| st == 0 && lba <= 1024 && lba + u64::from(n) >= 1280),
        "{runs:?}"
    );
    assert_eq!(
        runs[0],
        (0, runs[0].1, 1),
        "the start of a sparse file is a hole"
    );
    let l = unmap_list(&[(1024, 256)]);
    expect_good(&lun, &unmap_cdb(fit(l.len()), false), &l);
    assert_eq!(read16(&lun, 1024, 256), pattern(256, 0));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        4 << 20,
        "KEEP_SIZE"
    );
    // Resized in place.
    let fb = FileBackend::open(&path, 512, false).unwrap();
    fb.resize(8 << 20).unwrap();
    assert_eq!(fb.caps().num_blocks, 16384);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    // Reopened with its size taken from the file.
    let again = FileBackend::open(&path, 4096, true).unwrap();
    assert_eq!(again.caps().num_blocks, 2048);
    assert!(again.caps().read_only);
}
