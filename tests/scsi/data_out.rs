//! Data-out length against the CDB (the kernel's `target_cmd_size_check`):
//! a data CDB with more or less data than it names is ILLEGAL REQUEST,
//! INVALID FIELD IN COMMAND INFORMATION UNIT (0E/03) and changes nothing;
//! a parameter list is read up to its PARAMETER LIST LENGTH only, so a
//! hostile data-out length never sizes a copy.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::util::scsi::*;
use tcmud_core::backend::BlockSource;
use tcmud_core::scsi::{status, SenseKey};

/// WRITE(10) of `blocks` at `lba`.
fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    // opcode, flags, LBA (4), group, TRANSFER LENGTH (2), control
    [0x2A, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

#[test]
fn write_with_more_or_less_data_than_the_cdb_names_changes_nothing() {
    let t = dev();
    write16(&t.lun, 0, &pattern(4, b'A'));
    // Two blocks named, three sent: not a silent two-block write.
    expect_sense(
        &t.lun,
        &write10(0, 2),
        &pattern(3, b'B'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    // Two blocks named, one sent: not a partial write.
    expect_sense(
        &t.lun,
        &write10(0, 2),
        &pattern(1, b'B'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    // WRITE AND VERIFY(16) the same.
    let mut wv = write16_cdb(0, 1, false);
    wv[0] = 0x8E;
    expect_sense(
        &t.lun,
        &wv,
        &pattern(2, b'B'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    assert_eq!(
        read16(&t.lun, 0, 4),
        pattern(4, b'A'),
        "nothing was written"
    );
    // The right length still writes.
    expect_good(&t.lun, &write10(0, 2), &pattern(2, b'C'));
    assert_eq!(read16(&t.lun, 0, 2), pattern(2, b'C'));
}

#[test]
fn verify_and_write_same_want_exactly_their_data() {
    let t = dev();
    write16(&t.lun, 0, &pattern(2, b'A'));
    // VERIFY(10), BYTCHK=01b, 1 block, 2 blocks sent (the first matches).
    let v = [0x2F, 0x02, 0, 0, 0, 0, 0, 0, 1, 0];
    expect_sense(
        &t.lun,
        &v,
        &pattern(2, b'A'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    expect_good(&t.lun, &v, &pattern(1, b'A'));
    // VERIFY(10), BYTCHK=00b (medium only) with data: 0E/03.
    let v0 = [0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    expect_sense(
        &t.lun,
        &v0,
        &pattern(1, b'A'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    // WRITE SAME(10) of 2 blocks with two blocks of data: 0E/03, nothing written.
    let ws = [0x41, 0, 0, 0, 0, 0, 0, 0, 2, 0];
    expect_sense(
        &t.lun,
        &ws,
        &pattern(2, b'Z'),
        SenseKey::IllegalRequest,
        0x0E,
        0x03,
    );
    assert_eq!(read16(&t.lun, 0, 2), pattern(2, b'A'));
}

#[test]
fn a_parameter_list_is_read_up_to_its_length_only() {
    let t = dev();
    write16(&t.lun, 0, &pattern(2, b'A'));
    // UNMAP, PARAMETER LIST LENGTH 24, one descriptor (LBA 0, 2 blocks),
    // followed by garbage that is not part of the list.
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&2u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    list.extend_from_slice(&[0xFF; 100]);
    expect_good(&t.lun, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list);
    assert_eq!(
        read16(&t.lun, 0, 2),
        pattern(2, 0),
        "unmapped blocks read zero"
    );
    // Fewer bytes than PARAMETER LIST LENGTH: INVALID FIELD IN CDB at byte 7.
    let s = expect_sense(
        &t.lun,
        &[0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0],
        &list[..24],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(
        &s.to_fixed()[15..18],
        &[0xCF, 0, 7],
        "SKSV, C/D, BPV, bit 7, byte 7"
    );
}

/// A data-out whose iovecs claim 1 TiB but hold `data` (as a hostile
/// ring entry can: iovecs overlapping the same data pages); records the
/// largest read asked of it.
struct Hostile {
    data: Vec<u8>,
    largest_read: AtomicUsize,
}

impl BlockSource for Hostile {
    fn len(&self) -> usize {
        1 << 40
    }
    fn read_at(&self, at: usize, dst: &mut [u8]) -> io::Result<()> {
        self.largest_read.fetch_max(dst.len(), Ordering::Relaxed);
        for (i, b) in dst.iter_mut().enumerate() {
            *b = self.data.get(at + i).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn pwrite_at(&self, _: usize, _: usize, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        Err(io::Error::other("not used"))
    }
}

#[test]
fn hostile_data_out_lengths_do_not_size_the_copy() {
    let t = dev();
    write16(&t.lun, 0, &pattern(2, b'A'));
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&2u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    let src = Hostile {
        data: list,
        largest_read: AtomicUsize::new(0),
    };
    let mut none: &mut [u8] = &mut [];
    // UNMAP, PARAMETER LIST LENGTH 24.
    let r = t
        .lun
        .execute_io(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &src, &mut none);
    assert_eq!(r.status, status::GOOD, "{:?}", r.sense);
    assert_eq!(
        src.largest_read.load(Ordering::Relaxed),
        24,
        "copied what the CDB names"
    );
    assert_eq!(read16(&t.lun, 0, 2), pattern(2, 0));
    // MODE SELECT(10) of 0 bytes and COMPARE AND WRITE of 1 block: no
    // copy of 1 TiB either, an error for the length mismatch.
    let r = t
        .lun
        .execute_io(&[0x55, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], &src, &mut none);
    assert_eq!(r.status, status::GOOD);
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1; // NUMBER OF LOGICAL BLOCKS
    let r = t.lun.execute_io(&caw, &src, &mut none);
    assert_eq!(r.status, status::CHECK_CONDITION);
    assert_eq!(src.largest_read.load(Ordering::Relaxed), 24);
}
