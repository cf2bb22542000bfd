//! Regressions found by libiscsi's iscsi-test-cu over the real kernel path
//! (tests/conformance/run-libiscsi.sh): one test per fix, named after the
//! libiscsi test that failed.

use crate::util::scsi::*;
use tcmud_core::scsi::{LunConfig, SenseKey};

fn inquiry_vpd(page: u8, alloc: u16) -> [u8; 6] {
    let [h, l] = alloc.to_be_bytes();
    [0x12, 0x01, page, h, l, 0] // INQUIRY, EVPD, PAGE CODE, ALLOCATION LENGTH
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

/// SCSI.Inquiry.BlockLimits: MAXIMUM UNMAP LBA COUNT stays at or below
/// 1 Mi blocks even when the backend could unmap more in one go, and UNMAP
/// enforces the advertised value.
#[test]
fn inquiry_block_limits_max_unmap_capped() {
    let big = tcmud_core::backend::BackendCaps {
        num_blocks: 8 << 20,
        max_unmap_blocks: 4 << 20,
        ..caps()
    };
    let t = dev_with(big, LunConfig::default());
    let b0 = expect_data(&t.lun, &inquiry_vpd(0xB0, 64), &[], 64);
    assert_eq!(be32(&b0, 20), 1 << 20, "MAXIMUM UNMAP LBA COUNT");
    assert!(
        u64::from_be_bytes(b0[36..44].try_into().unwrap()) <= 1 << 20,
        "MAXIMUM WRITE SAME LENGTH"
    );

    let unmap = |blocks: u32| {
        let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
        list.extend_from_slice(&0u64.to_be_bytes());
        list.extend_from_slice(&blocks.to_be_bytes());
        list.extend_from_slice(&[0; 4]);
        list
    };
    let cdb = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]; // UNMAP, PARAMETER LIST LENGTH 24
    expect_good(&t.lun, &cdb, &unmap(1 << 20));
    expect_sense(
        &t.lun,
        &cdb,
        &unmap((1 << 20) + 1),
        SenseKey::IllegalRequest,
        0x26,
        0x00,
    );
}

fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89; // COMPARE AND WRITE
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[13] = blocks; // NUMBER OF LOGICAL BLOCKS
    c
}

/// SCSI.CompareAndWrite.Simple/Miscompare: libiscsi sends 256 blocks'
/// worth of data with NUMBER OF LOGICAL BLOCKS 0 (256 truncated to a
/// byte). Zero blocks with no data is GOOD; zero blocks with data is a
/// length mismatch: INVALID FIELD IN CDB, nothing written.
#[test]
fn compare_and_write_zero_blocks_with_data_is_rejected() {
    let t = dev();
    write16(&t.lun, 0, &pattern(1, b'A'));
    expect_good(&t.lun, &caw(0, 0), &[]);
    let out = [pattern(1, b'A'), pattern(1, b'B')].concat();
    expect_sense(
        &t.lun,
        &caw(0, 0),
        &out,
        SenseKey::IllegalRequest,
        0x24,
        0x00,
    );
    assert_eq!(read16(&t.lun, 0, 1), pattern(1, b'A'));
}

/// SCSI.WriteSame16.Unmap writes 65536 blocks with one WRITE(16) whenever
/// MAXIMUM WRITE SAME LENGTH allows 65536, without looking at MAXIMUM
/// TRANSFER LENGTH: the transfer limit is 32 MiB worth of blocks (65536 at
/// 512 bytes), OPTIMAL TRANSFER LENGTH stays at 4 MiB.
#[test]
fn write16_of_65536_blocks_is_within_the_transfer_limit() {
    let big = tcmud_core::backend::BackendCaps {
        num_blocks: 1 << 17,
        ..caps()
    };
    let t = dev_with(big, LunConfig::default());
    let b0 = expect_data(&t.lun, &inquiry_vpd(0xB0, 64), &[], 64);
    assert_eq!(be32(&b0, 8), 65536, "MAXIMUM TRANSFER LENGTH");
    assert_eq!(be32(&b0, 12), 8192, "OPTIMAL TRANSFER LENGTH");
    write16(&t.lun, 0, &pattern(65536, 0xFF));
    assert_eq!(read16(&t.lun, 65535, 1), pattern(1, 0xFF));
    let too_long = write16_cdb(0, 65537, false);
    expect_sense(
        &t.lun,
        &too_long,
        &pattern(65537, 0),
        SenseKey::IllegalRequest,
        0x24,
        0x00,
    );

    // 4096-byte blocks: 32 MiB is 8192 blocks.
    let t4k = dev_with(
        tcmud_core::backend::BackendCaps {
            block_size: 4096,
            ..caps()
        },
        LunConfig::default(),
    );
    let b0 = expect_data(&t4k.lun, &inquiry_vpd(0xB0, 64), &[], 64);
    assert_eq!(be32(&b0, 8), 8192, "MAXIMUM TRANSFER LENGTH (4 KiB blocks)");
    assert_eq!(
        be32(&b0, 12),
        1024,
        "OPTIMAL TRANSFER LENGTH (4 KiB blocks)"
    );
}
