//! SBC block commands through `Lun::execute` over a MemBackend.

use crate::util::narrow::{fit, LowByte};
use crate::util::scsi::*;
use tcmud_core::backend::BackendCaps;
use tcmud_core::scsi::{LunConfig, SenseKey};

fn rw10(op: u8, flags: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let [a, b, c, d] = lba.to_be_bytes();
    let [h, l] = blocks.to_be_bytes();
    [op, flags, a, b, c, d, 0, h, l, 0] // OP, flags, LBA, GROUP, TRANSFER LENGTH, CONTROL
}

fn rw16(op: u8, flags: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags; // protect / DPO / FUA / BYTCHK
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[10..14].copy_from_slice(&blocks.to_be_bytes()); // TRANSFER LENGTH
    c
}

fn rw12(op: u8, lba: u32, blocks: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[6..10].copy_from_slice(&blocks.to_be_bytes()); // TRANSFER LENGTH
    c
}

fn numbered(blocks: usize) -> Vec<u8> {
    (0..blocks * BS as usize)
        .map(|i| (i * 7 % 251).low_byte())
        .collect()
}

#[test]
fn write_then_read_in_every_cdb_size() {
    let t = dev();
    let data = numbered(4);
    expect_good(&t.lun, &rw10(0x2A, 0, 10, 4), &data); // WRITE(10)
    assert_eq!(expect_data(&t.lun, &rw10(0x28, 0, 10, 4), &[], 2048), data); // READ(10)
    assert_eq!(expect_data(&t.lun, &rw12(0xA8, 10, 4), &[], 2048), data); // READ(12)
    assert_eq!(read16(&t.lun, 10, 4), data);
    assert_eq!(
        expect_data(&t.lun, &[0x08, 0, 0, 10, 4, 0], &[], 2048),
        data
    ); // READ(6)
    let d2 = numbered(2).iter().map(|b| b ^ 0xFF).collect::<Vec<_>>();
    expect_good(&t.lun, &[0x0A, 0, 0, 20, 2, 0], &d2); // WRITE(6) LBA 20, 2 blocks
    expect_good(&t.lun, &rw12(0xAA, 30, 2), &d2); // WRITE(12)
    assert_eq!(read16(&t.lun, 20, 2), d2);
    assert_eq!(read16(&t.lun, 30, 2), d2);
}

#[test]
fn read6_and_write6_zero_length_means_256_blocks() {
    let t = dev();
    let data = numbered(256);
    expect_good(&t.lun, &[0x0A, 0, 0, 0, 0, 0], &data); // WRITE(6), TRANSFER LENGTH 0 = 256
    let d = expect_data(&t.lun, &[0x08, 0, 0, 0, 0, 0], &[], 256 * 512); // READ(6)
    assert_eq!(d, data);
}

#[test]
fn zero_length_transfers_are_good_but_range_checked() {
    let t = dev();
    expect_good(&t.lun, &rw10(0x28, 0, 0, 0), &[]); // READ(10) 0 blocks at 0
    expect_good(&t.lun, &rw10(0x2A, 0, fit(BLOCKS), 0), &[]); // WRITE(10) 0 blocks at the end
    expect_sense(
        &t.lun,
        &rw10(0x28, 0, fit::<u32, _>(BLOCKS) + 1, 0),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &rw16(0x88, 0, u64::MAX, 0),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
}

#[test]
fn beyond_end_of_medium_and_overflow() {
    let t = dev();
    expect_sense(
        &t.lun,
        &rw10(0x28, 0, fit::<u32, _>(BLOCKS) - 1, 2),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &rw16(0x88, 0, u64::MAX, 1),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &rw16(0x8A, 0, u64::MAX - 1, 4),
        &pattern(4, 1),
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &[0x08, 0x1F, 0xFF, 0xFF, 1, 0],
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    // The last block itself is fine.
    write16(&t.lun, BLOCKS - 1, &pattern(1, 9));
    assert_eq!(read16(&t.lun, BLOCKS - 1, 1), pattern(1, 9));
}

#[test]
fn transfer_longer_than_maximum_is_invalid_field() {
    let cfg = LunConfig {
        max_transfer_blocks: 16,
        ..LunConfig::default()
    };
    let t = dev_with(caps(), cfg);
    let s = expect_sense(
        &t.lun,
        &rw10(0x28, 0, 0, 17),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(
        &s.to_fixed()[15..18],
        &[0xC0 | 0x08 | 7, 0, 7],
        "TRANSFER LENGTH field"
    );
    expect_data(&t.lun, &rw10(0x28, 0, 0, 16), &[], 16 * 512);
}

#[test]
fn protection_fields_are_rejected() {
    let t = dev();
    expect_sense(
        &t.lun,
        &rw10(0x28, 0x20, 0, 1),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // RDPROTECT 1
    expect_sense(
        &t.lun,
        &rw16(0x8A, 0xE0, 0, 1),
        &pattern(1, 0),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &rw10(0x2F, 0x40, 0, 1),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // VRPROTECT
}

#[test]
fn short_data_out_and_short_data_in_do_not_panic() {
    let t = dev();
    // Less data-out than the CDB names: INVALID FIELD IN COMMAND
    // INFORMATION UNIT.
    expect_sense(
        &t.lun,
        &rw10(0x2A, 0, 0, 4),
        &pattern(3, 1),
        SenseKey::IllegalRequest,
        0x0E,
        3,
    );
    write16(&t.lun, 0, &numbered(4));
    let (r, d) = run(&t.lun, &rw10(0x28, 0, 0, 4), &[], 1000);
    assert_eq!(r.status, 0);
    assert_eq!(d, numbered(4)[..1000]);
}

#[test]
fn fua_and_dpo() {
    let t = dev();
    expect_good(&t.lun, &rw10(0x2A, 0x08, 0, 1), &pattern(1, 1)); // WRITE(10) FUA
    expect_good(&t.lun, &rw10(0x2A, 0x10, 1, 1), &pattern(1, 1)); // WRITE(10) DPO
    assert_eq!(t.mem.stats().writes, 2);
    assert_eq!(t.mem.stats().fua_writes, 1);
    expect_good(&t.lun, &rw10(0x2E, 0x02, 2, 1), &pattern(1, 2)); // WRITE AND VERIFY(10), BYTCHK
    expect_good(&t.lun, &rw16(0x8E, 0, 3, 1), &pattern(1, 3)); // WRITE AND VERIFY(16)
    assert_eq!(t.mem.stats().fua_writes, 3);
    assert_eq!(
        read16(&t.lun, 2, 2),
        [pattern(1, 2), pattern(1, 3)].concat()
    );
}

#[test]
fn verify_bytchk_modes_and_miscompare_offset() {
    let t = dev();
    let data = numbered(2);
    write16(&t.lun, 100, &data);
    expect_good(&t.lun, &rw10(0x2F, 0x00, 100, 2), &[]); // VERIFY(10), BYTCHK 00
    expect_good(&t.lun, &rw10(0x2F, 0x02, 100, 2), &data); // BYTCHK 01
    let mut bad = data.clone();
    bad[700] ^= 1;
    let s = expect_sense(
        &t.lun,
        &rw16(0x8F, 0x02, 100, 2),
        &bad,
        SenseKey::Miscompare,
        0x1D,
        0,
    );
    let f = s.to_fixed();
    assert_eq!(f[0], 0xF0, "VALID");
    assert_eq!(
        &f[3..7],
        &700u32.to_be_bytes(),
        "INFORMATION: offset of the first difference"
    );
    // BYTCHK 11: one block compared against each.
    write16(&t.lun, 200, &pattern(3, 0x5A));
    expect_good(&t.lun, &rw10(0x2F, 0x06, 200, 3), &pattern(1, 0x5A));
    let mut mixed = pattern(3, 0x5A);
    mixed[2 * 512 + 5] = 0;
    write16(&t.lun, 200, &mixed);
    let s = expect_sense(
        &t.lun,
        &rw10(0x2F, 0x06, 200, 3),
        &pattern(1, 0x5A),
        SenseKey::Miscompare,
        0x1D,
        0,
    );
    assert_eq!(
        s.information,
        Some(2 * 512 + 5),
        "offset into the verified range"
    );
}

#[test]
fn verify12_bytchk0_is_good_and_reserved_bytchk_is_invalid() {
    let t = dev();
    expect_good(&t.lun, &rw12(0xAF, 0, 8), &[]);
    expect_sense(
        &t.lun,
        &rw10(0x2F, 0x04, 0, 1),
        &pattern(1, 0),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &rw10(0x2F, 0, fit(BLOCKS), 1),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
}

#[test]
fn synchronize_cache_and_prefetch() {
    let t = dev();
    expect_good(&t.lun, &rw10(0x35, 0, 0, 0), &[]); // SYNCHRONIZE CACHE(10), whole medium
    expect_good(&t.lun, &rw16(0x91, 0, 10, 20), &[]); // SYNCHRONIZE CACHE(16)
    assert_eq!(t.mem.stats().flushes, 2);
    expect_sense(
        &t.lun,
        &rw16(0x91, 0, BLOCKS, 1),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_good(&t.lun, &rw10(0x34, 0, 0, 10), &[]); // PRE-FETCH(10)
    expect_good(&t.lun, &rw16(0x90, 0x02, 5, 0), &[]); // PRE-FETCH(16), IMMED, to the end
    expect_sense(
        &t.lun,
        &rw10(0x34, 0, fit::<u32, _>(BLOCKS) - 1, 2),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
}

#[test]
fn read_capacity_10_and_16() {
    let t = dev();
    let d = expect_data(&t.lun, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8); // READ CAPACITY(10)
    assert_eq!(d, [0, 0, 0x0F, 0xFF, 0, 0, 0x02, 0]);
    // LBA without PMI is invalid.
    expect_sense(
        &t.lun,
        &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9E; // SERVICE ACTION IN(16)
    cdb[1] = 0x10; // READ CAPACITY(16)
    cdb[13] = 32; // ALLOCATION LENGTH
    let d = expect_data(&t.lun, &cdb, &[], 32);
    assert_eq!(&d[..8], &4095u64.to_be_bytes());
    assert_eq!(&d[8..12], &512u32.to_be_bytes());
    assert_eq!(d[13], 0, "one logical block per physical block by default");
    assert_eq!(d[14], 0xC0, "LBPME, LBPRZ");
    cdb[13] = 12;
    assert_eq!(
        expect_data(&t.lun, &cdb, &[], 32).len(),
        12,
        "allocation length"
    );
    let cfg = LunConfig {
        physical_block_size: 4096,
        ..LunConfig::default()
    };
    let t4k = dev_with(caps(), cfg);
    cdb[13] = 32;
    let d = expect_data(&t4k.lun, &cdb, &[], 32);
    assert_eq!(d[13], 3, "8 logical blocks per 4096-byte physical block");
    let d = expect_data(&t4k.lun, &[0x12, 1, 0xB0, 0, 64, 0], &[], 64); // INQUIRY VPD B0h
    assert_eq!(&d[6..8], &[0, 8], "OPTIMAL TRANSFER LENGTH GRANULARITY");
    // OPTIMAL UNMAP GRANULARITY is whole physical blocks: the backend's
    // granularity rounded up to a multiple of 8 (4 KiB), kept when it
    // already is one; UNMAP GRANULARITY ALIGNMENT stays 0 (LBA 0 aligned).
    for (backend, want) in [(1u32, 8u32), (8, 8), (12, 24), (128, 128)] {
        let c = BackendCaps {
            unmap_granularity: backend,
            ..caps()
        };
        let t = dev_with(
            c,
            LunConfig {
                physical_block_size: 4096,
                ..LunConfig::default()
            },
        );
        let d = expect_data(&t.lun, &[0x12, 1, 0xB0, 0, 64, 0], &[], 64);
        assert_eq!(
            &d[28..32],
            &want.to_be_bytes(),
            "backend granularity {backend}"
        );
        assert_eq!(d[32], 0x80, "UGAVALID, alignment 0");
    }
    // A device beyond 2^32 blocks reports FFFFFFFFh in READ CAPACITY(10).
    let big = BackendCaps {
        num_blocks: 1 << 33,
        ..caps()
    };
    let t = dev_with(big, LunConfig::default());
    let d = expect_data(&t.lun, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8);
    assert_eq!(&d[..4], &[0xFF; 4]);
}

/// A write-protected LUN (a snapshot, or `;ro` in the dev_config): MODE
/// SENSE sets WP, every write-class command fails with DATA PROTECT, WRITE
/// PROTECTED (07/27/00) and leaves the blocks as they were; reads and
/// SYNCHRONIZE CACHE are GOOD.
#[test]
fn write_protected_lun_refuses_every_write_class_command() {
    let t = dev();
    let ro = dev_with(
        BackendCaps {
            read_only: true,
            ..caps()
        },
        LunConfig::default(),
    );
    let lun = &ro.lun;
    let before = read16(lun, 0, 16);
    let one = pattern(1, 0x5A);
    let mut caw = rw16(0x89, 0, 8, 0); // COMPARE AND WRITE
    caw[13] = 1; // NUMBER OF LOGICAL BLOCKS
    let unmap = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]; // UNMAP, PARAMETER LIST LENGTH 24
    let mut unmap_list = vec![0, 22, 0, 16, 0, 0, 0, 0]; // header: data length, descriptor length
    unmap_list.extend_from_slice(&8u64.to_be_bytes()); // LBA
    unmap_list.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0]); // 4 blocks
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("WRITE(6)", vec![0x0A, 0, 0, 8, 1, 0], one.clone()),
        ("WRITE(10)", rw10(0x2A, 0, 8, 1).to_vec(), one.clone()),
        ("WRITE(12)", rw12(0xAA, 8, 1).to_vec(), one.clone()),
        ("WRITE(16)", rw16(0x8A, 0, 8, 1).to_vec(), one.clone()),
        (
            "WRITE AND VERIFY(10)",
            rw10(0x2E, 0, 8, 1).to_vec(),
            one.clone(),
        ),
        (
            "WRITE AND VERIFY(12)",
            {
                let mut c = rw12(0xAE, 8, 1);
                c[1] = 0;
                c.to_vec()
            },
            one.clone(),
        ),
        (
            "WRITE AND VERIFY(16)",
            rw16(0x8E, 0, 8, 1).to_vec(),
            one.clone(),
        ),
        ("WRITE SAME(10)", rw10(0x41, 0, 8, 4).to_vec(), one.clone()),
        ("WRITE SAME(16)", rw16(0x93, 0, 8, 4).to_vec(), one.clone()),
        (
            "WRITE SAME(16) UNMAP",
            rw16(0x93, 0x08, 8, 4).to_vec(),
            one.clone(),
        ),
        (
            "WRITE SAME(16) NDOB",
            rw16(0x93, 0x01, 8, 4).to_vec(),
            vec![],
        ),
        // UNMAP set and no data-out (libiscsi's ReadOnlySBC): write
        // protection is answered before the data-out length.
        (
            "WRITE SAME(10) UNMAP, no data",
            rw10(0x41, 0x08, 8, 4).to_vec(),
            vec![],
        ),
        (
            "WRITE SAME(16) UNMAP, no data",
            rw16(0x93, 0x08, 8, 4).to_vec(),
            vec![],
        ),
        (
            "WRITE(10), short data",
            rw10(0x2A, 0, 8, 2).to_vec(),
            one.clone(),
        ),
        ("UNMAP", unmap.to_vec(), unmap_list),
        (
            "COMPARE AND WRITE",
            caw.to_vec(),
            [&before[8 * 512..9 * 512], &one[..]].concat(),
        ),
        ("ORWRITE(16)", rw16(0x8B, 0, 8, 1).to_vec(), one.clone()),
        (
            "SANITIZE BLOCK ERASE",
            vec![0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![],
        ),
        (
            "SANITIZE OVERWRITE",
            vec![0x48, 0x01, 0, 0, 0, 0, 0, 0, 5, 0],
            vec![1, 0, 0, 1, 0xAA],
        ),
    ];
    for (name, cdb, out) in &cases {
        let (r, _) = run(lun, cdb, out, 0);
        let s = r
            .sense
            .unwrap_or_else(|| panic!("{name}: GOOD on a write-protected LUN"));
        let f = s.to_fixed();
        assert_eq!(
            (f[2] & 0x0F, f[12], f[13]),
            (SenseKey::DataProtect as u8, 0x27, 0x00),
            "{name}"
        );
    }
    assert_eq!(read16(lun, 0, 16), before, "nothing changed");
    expect_good(lun, &rw10(0x35, 0, 0, 0), &[]); // SYNCHRONIZE CACHE(10)
    expect_good(lun, &rw16(0x91, 0, 0, 0), &[]); // SYNCHRONIZE CACHE(16)
                                                 // MODE SENSE(6): DEVICE-SPECIFIC PARAMETER (byte 2) bit 7 = WP.
    let m6 = expect_data(lun, &[0x1A, 0x08, 0x3F, 0, 0xFF, 0], &[], 255);
    assert_eq!(m6[2] & 0x80, 0x80, "MODE SENSE(6) WP");
    // MODE SENSE(10): DEVICE-SPECIFIC PARAMETER is byte 3.
    let m10 = expect_data(lun, &[0x5A, 0x08, 0x3F, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096);
    assert_eq!(m10[3] & 0x80, 0x80, "MODE SENSE(10) WP");
    // A writable LUN: WP clear.
    let w6 = expect_data(&t.lun, &[0x1A, 0x08, 0x3F, 0, 0xFF, 0], &[], 255);
    assert_eq!(w6[2] & 0x80, 0, "writable: no WP");
}

/// READ DEFECT DATA (10)/(12): empty lists in the requested format, the
/// header truncated by the allocation length, format 111b refused.
#[test]
fn read_defect_data_returns_empty_lists_in_the_requested_format() {
    let t = dev();
    for req in [0x00u8, 0x18 | 0x03, 0x10 | 0x04, 0x08 | 0x05, 0x06] {
        // READ DEFECT DATA(10): REQ_PLIST/REQ_GLIST/FORMAT, ALLOCATION LENGTH 32.
        let d = expect_data(&t.lun, &[0x37, 0, req, 0, 0, 0, 0, 0, 32, 0], &[], 32);
        assert_eq!(d, [0, req, 0, 0], "(10) request {req:02x}");
        // READ DEFECT DATA(12): same in byte 1, ADDRESS DESCRIPTOR INDEX 5.
        let cdb = [0xB7, req, 0, 0, 0, 5, 0, 0, 0, 32, 0, 0];
        let d = expect_data(&t.lun, &cdb, &[], 32);
        assert_eq!(d, [0, req, 0, 0, 0, 0, 0, 0], "(12) request {req:02x}");
    }
    let d = expect_data(&t.lun, &[0x37, 0, 0x18, 0, 0, 0, 0, 0, 2, 0], &[], 32);
    assert_eq!(d, [0, 0x18], "allocation length");
    let s = expect_sense(
        &t.lun,
        &[0x37, 0, 0x07, 0, 0, 0, 0, 0, 32, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(s.to_fixed()[16..18], [0, 2]);
    let s = expect_sense(
        &t.lun,
        &[0xB7, 0x27, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(s.to_fixed()[16..18], [0, 1]);
}

/// ORWRITE(16): each data-out byte is ORed into the block; zero blocks,
/// range, ORPROTECT and data-out length are checked like WRITE(16).
#[test]
fn orwrite16_ors_the_data_into_the_blocks() {
    let t = dev();
    let mut old = numbered(3);
    old.iter_mut().for_each(|b| *b &= 0x0F);
    write16(&t.lun, 10, &old);
    let add: Vec<u8> = (0..3 * BS as usize)
        .map(|i| (i % 7).low_byte() * 0x10)
        .collect();
    expect_good(&t.lun, &rw16(0x8B, 0, 10, 3), &add); // ORWRITE(16)
    let want: Vec<u8> = old.iter().zip(&add).map(|(a, b)| a | b).collect();
    assert_eq!(read16(&t.lun, 10, 3), want);
    assert_eq!(read16(&t.lun, 13, 1), pattern(1, 0), "next block untouched");
    expect_good(&t.lun, &rw16(0x8B, 0x08, 10, 0), &[]); // 0 blocks, FUA
    expect_sense(
        &t.lun,
        &rw16(0x8B, 0, BLOCKS - 1, 2),
        &pattern(2, 1),
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    expect_sense(
        &t.lun,
        &rw16(0x8B, 0x20, 10, 1),
        &pattern(1, 1),
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // ORPROTECT
    expect_sense(
        &t.lun,
        &rw16(0x8B, 0, 10, 2),
        &pattern(1, 1),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    assert_eq!(
        read16(&t.lun, 10, 3),
        want,
        "failed commands changed nothing"
    );
}

fn sanitize(sa: u8, ause: bool, list_len: u16) -> [u8; 10] {
    let [h, l] = list_len.to_be_bytes();
    // SANITIZE, IMMED|ZNR|AUSE|SERVICE ACTION, reserved, PARAMETER LIST LENGTH, CONTROL.
    [
        0x48,
        sa | if ause { 0x20 } else { 0 },
        0,
        0,
        0,
        0,
        0,
        h,
        l,
        0,
    ]
}

/// OVERWRITE parameter list: OVERWRITE COUNT (and INVERT), the pattern.
fn overwrite_list(invert: bool, count: u8, pattern: &[u8]) -> Vec<u8> {
    let mut l = vec![u8::from(invert) << 7 | count, 0];
    l.extend_from_slice(&fit::<u16, _>(pattern.len()).to_be_bytes()); // INITIALIZATION PATTERN LENGTH
    l.extend_from_slice(pattern);
    l
}

#[test]
fn sanitize_block_erase_deallocates_every_block() {
    let t = dev();
    write16(&t.lun, 0, &numbered(16));
    write16(&t.lun, BLOCKS - 8, &numbered(8));
    expect_good(&t.lun, &sanitize(0x02, false, 0), &[]); // BLOCK ERASE
    assert_eq!(read16(&t.lun, 0, 16), pattern(16, 0));
    assert_eq!(read16(&t.lun, BLOCKS - 8, 8), pattern(8, 0));
    // GET LBA STATUS: one deallocated run over the whole LUN.
    let mut gls = [0u8; 16];
    gls[0] = 0x9E;
    gls[1] = 0x12;
    gls[13] = 64;
    let d = expect_data(&t.lun, &gls, &[], 64);
    assert_eq!(&d[8..16], &0u64.to_be_bytes());
    assert_eq!(&d[16..20], &fit::<u32, _>(BLOCKS).to_be_bytes());
    assert_eq!(d[20], 1, "deallocated");
    // VPD B1h: WABEREQ 01b (reads succeed after BLOCK ERASE).
    let b1 = expect_data(&t.lun, &[0x12, 1, 0xB1, 0, 64, 0], &[], 64);
    assert_eq!(b1[7] >> 6, 1, "WABEREQ");
    // A parameter list is an error for BLOCK ERASE and EXIT FAILURE MODE.
    for sa in [0x02, 0x1F] {
        let s = expect_sense(
            &t.lun,
            &sanitize(sa, false, 8),
            &[0; 8],
            SenseKey::IllegalRequest,
            0x24,
            0,
        );
        assert_eq!(
            s.to_fixed()[16..18],
            [0, 7],
            "field pointer: PARAMETER LIST LENGTH"
        );
    }
}

#[test]
fn sanitize_overwrite_writes_the_pattern_and_checks_its_list() {
    let t = dev();
    write16(&t.lun, 0, &numbered(4));
    let list = overwrite_list(false, 1, b"ABCD");
    expect_good(&t.lun, &sanitize(0x01, false, fit(list.len())), &list);
    let abcd: Vec<u8> = b"ABCD"
        .iter()
        .copied()
        .cycle()
        .take(BS as usize * 4)
        .collect();
    assert_eq!(read16(&t.lun, 0, 4), abcd);
    assert_eq!(read16(&t.lun, BLOCKS - 4, 4), abcd);
    // INVERT with an even count ends on the inverted pattern.
    let list = overwrite_list(true, 2, &[0x0F]);
    expect_good(&t.lun, &sanitize(0x01, false, fit(list.len())), &list);
    assert_eq!(read16(&t.lun, 7, 1), pattern(1, 0xF0));
    // A whole block of pattern is allowed.
    let list = overwrite_list(false, 1, &pattern(1, 0xAA));
    expect_good(&t.lun, &sanitize(0x01, false, fit(list.len())), &list);
    assert_eq!(read16(&t.lun, 100, 1), pattern(1, 0xAA));
    // Bad lists: INVALID FIELD IN CDB at PARAMETER LIST LENGTH.
    let big = overwrite_list(false, 1, &pattern(1, 1));
    let mut bad: Vec<(u16, Vec<u8>)> = (0..5).map(|n| (n, big.clone())).collect();
    bad.push((fit::<u16, _>(BS) + 5, [&big[..], &[0]].concat())); // beyond block size + 4
    bad.push((8, overwrite_list(false, 0, b"ABCD"))); // OVERWRITE COUNT 0
    bad.push((8, [&overwrite_list(false, 1, &[])[..], b"ABCD"].concat())); // pattern length 0
    let mut too_long = overwrite_list(false, 1, &pattern(1, 1));
    too_long[2..4].copy_from_slice(&(fit::<u16, _>(BS) + 4).to_be_bytes());
    bad.push((fit::<u16, _>(BS) + 4, too_long)); // pattern longer than a block
    for (len, list) in &bad {
        let s = expect_sense(
            &t.lun,
            &sanitize(0x01, false, *len),
            list,
            SenseKey::IllegalRequest,
            0x24,
            0,
        );
        assert_eq!(s.to_fixed()[16..18], [0, 7], "list length {len}");
    }
    assert_eq!(
        read16(&t.lun, 100, 1),
        pattern(1, 0xAA),
        "refused lists changed nothing"
    );
    // ZNR, reserved bytes, CRYPTOGRAPHIC ERASE (not supported).
    let mut znr = sanitize(0x02, false, 0);
    znr[1] |= 0x40;
    expect_sense(&t.lun, &znr, &[], SenseKey::IllegalRequest, 0x24, 0);
    for byte in 2..7 {
        let mut c = sanitize(0x02, false, 0);
        c[byte] = 1;
        let s = expect_sense(&t.lun, &c, &[], SenseKey::IllegalRequest, 0x24, 0);
        assert_eq!(s.to_fixed()[17], fit::<u8, _>(byte));
    }
    expect_sense(
        &t.lun,
        &sanitize(0x03, false, 0),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

/// A SANITIZE that fails leaves the unit in the failure mode (MEDIUM
/// ERROR, SANITIZE COMMAND FAILED) until a SANITIZE completes or, after
/// one with AUSE=1, EXIT FAILURE MODE.
#[test]
fn a_failed_sanitize_enters_the_failure_mode() {
    let t = dev();
    let list = overwrite_list(false, 1, b"ABCD");
    let ow = |ause| sanitize(0x01, ause, fit(list.len()));
    t.mem.fail_next_writes(1);
    expect_sense(&t.lun, &ow(false), &list, SenseKey::MediumError, 0x0C, 0x00);
    let tur = [0u8; 6];
    expect_sense(&t.lun, &tur, &[], SenseKey::MediumError, 0x31, 0x03);
    expect_sense(
        &t.lun,
        &rw16(0x88, 0, 0, 1),
        &[],
        SenseKey::MediumError,
        0x31,
        0x03,
    );
    expect_data(&t.lun, &[0x12, 0, 0, 0, 36, 0], &[], 36); // INQUIRY still answers
                                                           // AUSE was 0: EXIT FAILURE MODE is refused (field pointer: AUSE).
    let s = expect_sense(
        &t.lun,
        &sanitize(0x1F, false, 0),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!((s.to_fixed()[15] & 7, s.to_fixed()[17]), (5, 1));
    // A failed one with AUSE=1, then EXIT FAILURE MODE.
    t.mem.fail_next_writes(1);
    expect_sense(&t.lun, &ow(true), &list, SenseKey::MediumError, 0x0C, 0x00);
    expect_sense(&t.lun, &tur, &[], SenseKey::MediumError, 0x31, 0x03);
    expect_good(&t.lun, &sanitize(0x1F, false, 0), &[]);
    expect_good(&t.lun, &tur, &[]);
    // A completed SANITIZE also leaves the failure mode.
    t.mem.fail_next_writes(1);
    expect_sense(&t.lun, &ow(false), &list, SenseKey::MediumError, 0x0C, 0x00);
    expect_good(&t.lun, &ow(false), &list);
    expect_good(&t.lun, &tur, &[]);
    // EXIT FAILURE MODE outside the failure mode is GOOD.
    expect_good(&t.lun, &sanitize(0x1F, true, 0), &[]);
}

/// What the SANITIZE test hears from its eraser thread and backend.
enum Event {
    /// The erase is inside the backend's unmap, held there.
    Entered,
    /// The SANITIZE command returned with this status.
    Done(u8),
}

/// A backend whose unmap waits until released: a SANITIZE BLOCK ERASE
/// stays running meanwhile.
struct HeldUnmap {
    mem: std::sync::Arc<tcmud_core::backend::mem::MemBackend>,
    events: std::sync::mpsc::Sender<Event>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl tcmud_core::backend::BlockBackend for HeldUnmap {
    fn caps(&self) -> BackendCaps {
        self.mem.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), tcmud_core::backend::BackendError> {
        self.mem.read(lba, buf)
    }
    fn write(
        &self,
        lba: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<(), tcmud_core::backend::BackendError> {
        self.mem.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), tcmud_core::backend::BackendError> {
        self.mem.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), tcmud_core::backend::BackendError> {
        let _ = self.events.send(Event::Entered);
        let _ = self.release.lock().unwrap().recv();
        self.mem.unmap(lba, blocks)
    }
}

#[test]
fn commands_during_a_sanitize_get_not_ready_sanitize_in_progress() {
    use std::sync::{mpsc, Arc, Mutex};
    use tcmud_core::backend::mem::MemBackend;
    use tcmud_core::scsi::Lun;
    let (events, heard) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let backend = Arc::new(HeldUnmap {
        mem: Arc::new(MemBackend::new(BS, BLOCKS)),
        events: events.clone(),
        release: Mutex::new(release_rx),
    });
    let lun = Arc::new(Lun::new(LunConfig::default(), backend));
    let _ = run(&lun, &[0u8; 6], &[], 0); // power-on UA
    let l = Arc::clone(&lun);
    let eraser = std::thread::spawn(move || {
        let status = run(&l, &sanitize(0x02, false, 0), &[], 0).0.status;
        let _ = events.send(Event::Done(status));
    });
    match heard.recv().unwrap() {
        Event::Entered => {}
        Event::Done(status) => panic!("BLOCK ERASE returned {status:#x} without erasing"),
    }
    expect_sense(&lun, &[0u8; 6], &[], SenseKey::NotReady, 0x04, 0x1B); // TEST UNIT READY
    expect_sense(
        &lun,
        &rw16(0x88, 0, 0, 1),
        &[],
        SenseKey::NotReady,
        0x04,
        0x1B,
    ); // READ(16)
    expect_sense(
        &lun,
        &sanitize(0x02, false, 0),
        &[],
        SenseKey::NotReady,
        0x04,
        0x1B,
    );
    expect_data(&lun, &[0x12, 0, 0, 0, 36, 0], &[], 36); // INQUIRY
    let rs = expect_data(&lun, &[0x03, 0, 0, 0, 18, 0], &[], 18); // REQUEST SENSE
    assert_eq!((rs[2] & 0x0F, rs[12], rs[13]), (0x02, 0x04, 0x1B));
    drop(release);
    eraser.join().unwrap();
    let statuses: Vec<u8> = heard
        .try_iter()
        .filter_map(|e| match e {
            Event::Done(s) => Some(s),
            Event::Entered => None,
        })
        .collect();
    assert_eq!(statuses, [0], "the erase completes GOOD");
    expect_good(&lun, &[0u8; 6], &[]);
}

// ------------------------------------------------------------ WRITE ATOMIC(16)

/// WRITE ATOMIC(16) CDB: ATOMIC BOUNDARY in bytes 10-11, TRANSFER LENGTH in
/// bytes 12-13.
fn write_atomic16_cdb(flags: u8, lba: u64, boundary: u16, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9C;
    c[1] = flags; // WRPROTECT / DPO / FUA
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[10..12].copy_from_slice(&boundary.to_be_bytes()); // ATOMIC BOUNDARY
    c[12..14].copy_from_slice(&blocks.to_be_bytes()); // TRANSFER LENGTH
    c
}

/// A LUN over a 4 MiB thin volume (64 KiB chunks, 128 blocks each) of a
/// pool in `dir`, power-on UA consumed.
fn thin_lun(dir: &std::path::Path) -> (tcmud_core::pool::Pool, tcmud_core::scsi::Lun) {
    use tcmud_core::pool::{Pool, PoolConfig};
    let pool = Pool::create(
        &dir.join("p"),
        &PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 16 << 20,
            low_water_pct: 90,
        },
    )
    .unwrap();
    pool.create_volume("v", 4 << 20, BS).unwrap();
    let vol = pool.open_volume("v").unwrap();
    let cfg = LunConfig {
        max_transfer_blocks: 1024, // MAXIMUM TRANSFER LENGTH
        ..LunConfig::default()
    };
    let lun = tcmud_core::scsi::Lun::new(cfg, vol);
    lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []);
    (pool, lun)
}

#[test]
fn write_atomic16_on_a_thin_volume_writes_and_is_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let (_pool, lun) = thin_lun(dir.path());
    // VPD B0: MAXIMUM ATOMIC TRANSFER LENGTH = MAXIMUM TRANSFER LENGTH,
    // alignment, granularity and boundary fields 0
    let b0 = expect_data(&lun, &[0x12, 0x01, 0xB0, 0, 0xFF, 0], &[], 255);
    let max = u32::from_be_bytes(b0[8..12].try_into().unwrap());
    assert_eq!(max, 1024);
    assert_eq!(
        &b0[44..48],
        &max.to_be_bytes(),
        "MAXIMUM ATOMIC TRANSFER LENGTH"
    );
    assert_eq!(&b0[48..64], &[0u8; 16], "alignment/granularity/boundary");
    // REPORT SUPPORTED OPERATION CODES, one command: supported (011b)
    let r = expect_data(
        &lun,
        &[0xA3, 0x0C, 0x01, 0x9C, 0, 0, 0, 0, 0x01, 0, 0, 0],
        &[],
        256,
    );
    assert_eq!(r[1] & 0x07, 0x03, "WRITE ATOMIC(16) listed as supported");
    assert_eq!(r[4] & 0x18, 0x18, "DPO and FUA in the usage data");

    // across the boundary of chunks 0 and 1, FUA, then read back
    let data: Vec<u8> = (0..16 * BS as usize)
        .map(|i| (i % 251).low_byte())
        .collect();
    expect_good(&lun, &write_atomic16_cdb(0x08, 120, 0, 16), &data);
    assert_eq!(read16(&lun, 120, 16), data);
    assert_eq!(
        read16(&lun, 119, 1),
        pattern(1, 0),
        "the block before untouched"
    );
    assert_eq!(
        read16(&lun, 136, 1),
        pattern(1, 0),
        "the block after untouched"
    );
    // again over what it wrote (the volume owns the chunks alone now)
    expect_good(&lun, &write_atomic16_cdb(0, 120, 0, 16), &pattern(16, 0x5A));
    assert_eq!(read16(&lun, 120, 16), pattern(16, 0x5A));
    assert_eq!(read16(&lun, 0, 1), pattern(1, 0));

    let blocks = (4u64 << 20) / u64::from(BS);
    // 0 blocks: GOOD at LBA 0, out of range past the end
    expect_good(&lun, &write_atomic16_cdb(0, 0, 0, 0), &[]);
    expect_sense(
        &lun,
        &write_atomic16_cdb(0, blocks + 1, 0, 0),
        &[],
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    // beyond the end: LBA OUT OF RANGE even when longer than the maximum
    let long = u16::try_from(max + 1).unwrap();
    let out = pattern(usize::from(long), 1);
    expect_sense(
        &lun,
        &write_atomic16_cdb(0, blocks - 1, 0, long),
        &out,
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    // longer than MAXIMUM ATOMIC TRANSFER LENGTH
    expect_sense(
        &lun,
        &write_atomic16_cdb(0, 0, 0, long),
        &out,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // no atomic boundaries, no protection information
    expect_sense(
        &lun,
        &write_atomic16_cdb(0, 0, 1, 1),
        &pattern(1, 1),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &lun,
        &write_atomic16_cdb(0x20, 0, 0, 1),
        &pattern(1, 1),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(
        read16(&lun, 0, 1),
        pattern(1, 0),
        "refused commands wrote nothing"
    );
}

#[test]
fn write_atomic16_is_not_offered_without_atomic_writes() {
    let d = dev(); // a MemBackend: no atomic writes
    expect_sense(
        &d.lun,
        &write_atomic16_cdb(0, 0, 0, 1),
        &pattern(1, 7),
        SenseKey::IllegalRequest,
        0x20,
        0,
    );
    let b0 = expect_data(&d.lun, &[0x12, 0x01, 0xB0, 0, 0xFF, 0], &[], 255);
    assert_eq!(&b0[44..64], &[0u8; 20], "no atomic fields");
    assert_eq!(read16(&d.lun, 0, 1), pattern(1, 0));
}
