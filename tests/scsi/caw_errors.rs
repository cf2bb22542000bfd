//! COMPARE AND WRITE, backend errors mapped to sense, and resize.

use crate::util::scsi::*;
use tcmud_core::backend::BackendCaps;
use tcmud_core::scsi::SenseKey;

fn rw10(op: u8, flags: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let [a, b, c, d] = lba.to_be_bytes();
    let [h, l] = blocks.to_be_bytes();
    [op, flags, a, b, c, d, 0, h, l, 0] // OP, flags, LBA, GROUP, TRANSFER LENGTH, CONTROL
}

fn caw(lba: u64, blocks: u8, fua: bool) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89; // COMPARE AND WRITE
    c[1] = if fua { 0x08 } else { 0 }; // FUA
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[13] = blocks; // NUMBER OF LOGICAL BLOCKS
    c
}

#[test]
fn compare_and_write_success_and_miscompare() {
    let t = dev();
    write16(&t.lun, 50, &pattern(2, 0x11));
    let out = [pattern(2, 0x11), pattern(2, 0x22)].concat();
    expect_good(&t.lun, &caw(50, 2, true), &out);
    assert_eq!(read16(&t.lun, 50, 2), pattern(2, 0x22));
    assert_eq!(t.mem.stats().fua_writes, 1);
    // Now the compare data is stale: MISCOMPARE with the offset, nothing written.
    let mut stale = [pattern(2, 0x22), pattern(2, 0x33)].concat();
    stale[513] = 0;
    let s = expect_sense(
        &t.lun,
        &caw(50, 2, false),
        &stale,
        SenseKey::Miscompare,
        0x1D,
        0,
    );
    assert_eq!(&s.to_fixed()[3..7], &513u32.to_be_bytes());
    assert_eq!(read16(&t.lun, 50, 2), pattern(2, 0x22));
    // Zero blocks: GOOD; more than the maximum: invalid; beyond the end: out of range.
    expect_good(&t.lun, &caw(50, 0, false), &[]);
    expect_sense(
        &t.lun,
        &caw(0, 65, false),
        &pattern(130, 0),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &caw(BLOCKS, 1, false),
        &pattern(2, 0),
        SenseKey::IllegalRequest,
        0x21,
        0,
    );
    // Data-out shorter or longer than 2 * blocks.
    expect_sense(
        &t.lun,
        &caw(0, 2, false),
        &pattern(3, 0),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &caw(0, 1, false),
        &pattern(4, 0),
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

#[test]
fn backend_errors_map_to_sense() {
    let t = dev();
    t.mem.fail_next_reads(1);
    expect_sense(
        &t.lun,
        &rw10(0x28, 0, 0, 1),
        &[],
        SenseKey::MediumError,
        0x11,
        0,
    );
    t.mem.fail_next_writes(1);
    expect_sense(
        &t.lun,
        &rw10(0x2A, 0, 0, 1),
        &pattern(1, 1),
        SenseKey::MediumError,
        0x0C,
        0,
    );
    t.mem.fail_next_flushes(1);
    expect_sense(
        &t.lun,
        &rw10(0x35, 0, 0, 0),
        &[],
        SenseKey::MediumError,
        0x0C,
        0,
    );
    t.mem.set_chunk_limit(Some(0));
    expect_sense(
        &t.lun,
        &rw10(0x2A, 0, 0, 1),
        &pattern(1, 1),
        SenseKey::DataProtect,
        0x27,
        0x07,
    );
    t.mem.set_chunk_limit(None);
    write16(&t.lun, 0, &pattern(1, 1));
    // Read-only: writes fail with WRITE PROTECTED, reads work; WP in MODE SENSE.
    t.mem.set_caps(BackendCaps {
        read_only: true,
        ..caps()
    });
    expect_sense(
        &t.lun,
        &rw10(0x2A, 0, 0, 1),
        &pattern(1, 1),
        SenseKey::DataProtect,
        0x27,
        0,
    );
    expect_sense(
        &t.lun,
        &caw(0, 1, false),
        &pattern(2, 1),
        SenseKey::DataProtect,
        0x27,
        0,
    );
    assert_eq!(read16(&t.lun, 0, 1), pattern(1, 1));
    let d = expect_data(&t.lun, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[], 255);
    assert_eq!(d[2] & 0x80, 0x80, "WP");
}

#[test]
fn resize_reports_capacity_changed_and_new_size() {
    let t = dev();
    t.mem.set_caps(BackendCaps {
        num_blocks: 8192,
        ..caps()
    });
    expect_sense(
        &t.lun,
        &[0x00, 0, 0, 0, 0, 0],
        &[],
        SenseKey::UnitAttention,
        0x2A,
        0x09,
    );
    let d = expect_data(&t.lun, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8);
    assert_eq!(&d[..4], &8191u32.to_be_bytes());
}

/// Threads increment a counter in block 7 with read + COMPARE AND WRITE,
/// retrying on MISCOMPARE, while other threads write block 8: no increment
/// is lost, so the compare and the write were atomic.
#[test]
fn compare_and_write_is_atomic_under_concurrency() {
    use std::sync::Arc;
    let t = Arc::new(dev());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    loop {
                        let cur = read16(&t.lun, 7, 1);
                        let n = u64::from_be_bytes(cur[..8].try_into().unwrap());
                        let mut next = cur.clone();
                        next[..8].copy_from_slice(&(n + 1).to_be_bytes());
                        let (r, _) = run(&t.lun, &caw(7, 1, false), &[cur, next].concat(), 0);
                        if r.status == 0 {
                            break;
                        }
                        assert_eq!(r.sense.unwrap().key, SenseKey::Miscompare);
                    }
                    write16(&t.lun, 8, &pattern(1, 0x42));
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let d = read16(&t.lun, 7, 1);
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), 200);
}
