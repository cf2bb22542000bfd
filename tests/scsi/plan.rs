//! Lun::plan_async: what an asynchronous backend is handed is exactly what
//! the handlers would have run; anything they would reject, or that needs
//! the LUN's attention first, is left to execute_io.

use crate::util::narrow::fit;
use crate::util::scsi::*;
use tcmud_core::scsi::IoPlan;

fn rw10(op: u8, flags: u8, lba: u32, blocks: u16, control: u8) -> [u8; 10] {
    let [a, b, c, d] = lba.to_be_bytes();
    let [h, l] = blocks.to_be_bytes();
    [op, flags, a, b, c, d, 0, h, l, control] // OP, flags, LBA, GROUP, LENGTH, CONTROL
}

fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89; // COMPARE AND WRITE
    c[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    c[13] = blocks; // NUMBER OF LOGICAL BLOCKS
    c
}

#[test]
fn plain_data_commands_are_planned() {
    let d = dev();
    let bs = BS as usize;
    assert_eq!(
        d.lun.plan_async(&rw10(0x28, 0, 8, 4, 0), 0, 4 * bs),
        Some(IoPlan::Read {
            lba: 8,
            bytes: 4 * bs
        })
    );
    assert_eq!(
        d.lun.plan_async(&write16_cdb(100, 2, true), 2 * bs, 0),
        Some(IoPlan::Write {
            lba: 100,
            bytes: 2 * bs,
            fua: true
        })
    );
    assert_eq!(
        d.lun.plan_async(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 0), // SYNCHRONIZE CACHE(10)
        Some(IoPlan::Flush)
    );
    assert_eq!(
        d.lun.plan_async(&caw(7, 1), 2 * bs, 0),
        Some(IoPlan::CompareAndWrite {
            lba: 7,
            bytes: bs,
            fua: false
        })
    );
}

#[test]
fn what_a_handler_would_reject_is_not_planned() {
    let d = dev();
    let bs = BS as usize;
    let end = fit::<u32, _>(BLOCKS);
    for (cdb, out, inl) in [
        (rw10(0x28, 0, 0, 1, 0x04).to_vec(), 0, bs), // NACA in CONTROL
        (rw10(0x28, 0x20, 0, 1, 0).to_vec(), 0, bs), // RDPROTECT
        (rw10(0x28, 0, end - 1, 2, 0).to_vec(), 0, 2 * bs), // past the end
        (rw10(0x28, 0, 0, 0, 0).to_vec(), 0, 0),     // zero length
        (rw10(0x28, 0, 0, 4, 0).to_vec(), 0, 2 * bs), // short data-in buffer
        (rw10(0x2a, 0, 0, 4, 0).to_vec(), 2 * bs, 0), // short data-out
        (caw(0, 1).to_vec(), 3 * bs, 0),             // CAW with the wrong data-out length
        (caw(0, 0).to_vec(), 0, 0),                  // CAW of no block
        (vec![0x12, 0, 0, 0, 96, 0], 0, 96),         // INQUIRY: not a data command
    ] {
        assert_eq!(d.lun.plan_async(&cdb, out, inl), None, "{cdb:02x?}");
    }
}

#[test]
fn a_pending_unit_attention_is_reported_first() {
    let d = dev();
    d.lun.capacity_changed();
    let read = rw10(0x28, 0, 0, 1, 0);
    assert_eq!(d.lun.plan_async(&read, 0, BS as usize), None);
    // execute_io reports it; then the READ is planned.
    let (r, _) = run(&d.lun, &read, &[], BS as usize);
    assert_eq!(r.status, 2);
    assert!(d.lun.plan_async(&read, 0, BS as usize).is_some());
}

fn unmap_params(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    let n = u16::try_from(ranges.len() * 16).unwrap();
    p[0..2].copy_from_slice(&(n + 6).to_be_bytes()); // UNMAP DATA LENGTH
    p[2..4].copy_from_slice(&n.to_be_bytes()); // BLOCK DESCRIPTOR DATA LENGTH
    for &(lba, blocks) in ranges {
        p.extend(lba.to_be_bytes());
        p.extend(blocks.to_be_bytes());
        p.extend([0u8; 4]);
    }
    p
}

fn unmap_cdb(len: usize) -> [u8; 10] {
    let [h, l] = u16::try_from(len).unwrap().to_be_bytes();
    [0x42, 0, 0, 0, 0, 0, 0, h, l, 0]
}

fn write_same16(lba: u64, blocks: u32, flags: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x93;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn unmap_and_write_same_are_planned_from_their_data_out() {
    let d = dev();
    let bs = BS as usize;
    let p = unmap_params(&[(10, 6)]);
    assert_eq!(
        d.lun.plan_async_param(&unmap_cdb(p.len()), &p),
        Some(IoPlan::Unmap { lba: 10, blocks: 6 })
    );
    let empty = unmap_params(&[]);
    assert_eq!(
        d.lun.plan_async_param(&unmap_cdb(empty.len()), &empty),
        Some(IoPlan::Unmap { lba: 0, blocks: 0 })
    );
    let mut pattern = vec![0u8; bs];
    assert_eq!(
        d.lun.plan_async_param(&write_same16(4, 9, 0x08), &pattern),
        Some(IoPlan::WriteSame {
            lba: 4,
            blocks: 9,
            zero: true,
            deallocate: true,
            fua: false
        })
    );
    pattern[3] = 1;
    assert_eq!(
        d.lun.plan_async_param(&write_same16(4, 9, 0x08), &pattern),
        Some(IoPlan::WriteSame {
            lba: 4,
            blocks: 9,
            zero: false,
            deallocate: false,
            fua: false
        })
    );
    // NDOB: no data-out, zeros.
    assert_eq!(
        d.lun.plan_async_param(&write_same16(0, 1, 0x01), &[]),
        Some(IoPlan::WriteSame {
            lba: 0,
            blocks: 1,
            zero: true,
            deallocate: false,
            fua: false
        })
    );
}

#[test]
fn unusual_unmap_and_write_same_are_left_to_the_handlers() {
    let d = dev();
    let bs = BS as usize;
    let end = BLOCKS;
    let two = unmap_params(&[(0, 1), (8, 1)]);
    let past = unmap_params(&[(end - 1, 2)]);
    let mut anchored = unmap_cdb(24);
    anchored[1] = 0x01;
    let one = unmap_params(&[(0, 1)]);
    for (cdb, out) in [
        (unmap_cdb(two.len()).to_vec(), two.clone()), // two descriptors
        (unmap_cdb(past.len()).to_vec(), past),       // past the end
        (anchored.to_vec(), one.clone()),             // ANCHOR
        (unmap_cdb(40).to_vec(), one),                // list longer than sent
        (write_same16(0, 0, 0).to_vec(), vec![1; bs]), // zero blocks (WSNZ)
        (write_same16(0, 1, 0).to_vec(), vec![1; bs + 1]), // not one block
        (write_same16(end, 1, 0).to_vec(), vec![1; bs]), // past the end
        (write_same16(0, 1, 0x20).to_vec(), vec![1; bs]), // WRPROTECT
        (write_same16(0, 1, 0x10).to_vec(), vec![1; bs]), // ANCHOR
    ] {
        assert_eq!(d.lun.plan_async_param(&cdb, &out), None, "{cdb:02x?}");
        // ...and the handler reports it (or runs it, for the two descriptors).
        let (r, _) = run(&d.lun, &cdb, &out, 0);
        if cdb[0] == 0x42 && out.len() == two.len() {
            assert_eq!(r.status, 0);
        } else {
            assert_eq!(r.status, 2, "{cdb:02x?}");
        }
    }
}
