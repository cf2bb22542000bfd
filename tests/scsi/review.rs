//! Review findings of issue 14 part 2, one test each: unsupported service
//! actions, REPORT SUPPORTED OPERATION CODES option 3 and the commands LIO
//! answers, MODE SELECT (PF, LONGLBA, field pointers), START STOP UNIT as
//! the kernel answers it, MAXIMUM PRE-FETCH LENGTH, blocks over 1 MiB in
//! write_zeroes, ENOSPC/EDQUOT as out of space.

use std::io;
use std::sync::Arc;

use crate::util::narrow::fit;
use crate::util::scsi::*;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BackendError, BlockBackend};
use tcmud_core::scsi::{status, Lun, LunConfig, SenseKey};

/// SKSV field pointer bytes (15..18) of a sense.
fn field_pointer(s: &tcmud_core::scsi::Sense) -> [u8; 3] {
    let f = s.to_fixed();
    [f[15], f[16], f[17]]
}

#[test]
fn unsupported_service_action_of_a_supported_opcode_is_an_invalid_field() {
    // A thick backend: GET LBA STATUS (9Eh/12h) is not supported, READ
    // CAPACITY(16) (9Eh/10h) is.
    let thick = BackendCaps {
        thin: false,
        ..caps()
    };
    let t = dev_with(thick, LunConfig::default());
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9E; // SERVICE ACTION IN(16)
    cdb[1] = 0x12; // GET LBA STATUS
    cdb[13] = 32; // ALLOCATION LENGTH
    let s = expect_sense(&t.lun, &cdb, &[], SenseKey::IllegalRequest, 0x24, 0);
    assert_eq!(field_pointer(&s), [0xCC, 0, 1], "byte 1, bit 4");
    cdb[1] = 0x1F; // no such service action
    expect_sense(&t.lun, &cdb, &[], SenseKey::IllegalRequest, 0x24, 0);
    // An unknown opcode stays INVALID COMMAND OPERATION CODE.
    expect_sense(
        &t.lun,
        &[0xFF, 0, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x20,
        0,
    );
}

/// REPORT SUPPORTED OPERATION CODES with `options`, opcode `op`, service
/// action `sa`.
fn rsoc(lun: &Lun, options: u8, op: u8, sa: u16) -> Vec<u8> {
    let s = sa.to_be_bytes();
    // MAINTENANCE IN, RSOC, options, opcode, SA (2), ALLOCATION LENGTH (4)
    let cdb = [0xA3, 0x0C, options, op, s[0], s[1], 0, 0, 0x10, 0, 0, 0];
    expect_data(lun, &cdb, &[], 4096)
}

#[test]
fn rsoc_reporting_option_3_and_the_commands_lio_answers() {
    let t = dev();
    // Option 3, READ(10) (no service actions: the field is ignored).
    let d = rsoc(&t.lun, 3, 0x28, 0x55);
    assert_eq!(d[1] & 0x07, 3, "SUPPORT 011b");
    assert_eq!(u16::from_be_bytes([d[2], d[3]]), 10, "CDB SIZE");
    assert_eq!(d[4], 0x28);
    // Option 3, READ CAPACITY(16) and an unknown service action of 9Eh.
    assert_eq!(rsoc(&t.lun, 3, 0x9E, 0x10)[1] & 0x07, 3);
    assert_eq!(rsoc(&t.lun, 3, 0x9E, 0x11)[1] & 0x07, 1, "SUPPORT 001b");
    // LIO answers these for a TCMU device: listed as supported.
    assert_eq!(rsoc(&t.lun, 1, 0x16, 0)[1] & 0x07, 3, "RESERVE(6)");
    assert_eq!(rsoc(&t.lun, 1, 0x57, 0)[1] & 0x07, 3, "RELEASE(10)");
    assert_eq!(
        rsoc(&t.lun, 2, 0x5E, 0x01)[1] & 0x07,
        3,
        "PR IN READ RESERVATION"
    );
    assert_eq!(
        rsoc(&t.lun, 2, 0x5F, 0x07)[1] & 0x07,
        3,
        "PR OUT REGISTER AND MOVE"
    );
    let all = rsoc(&t.lun, 0, 0, 0);
    let listed: Vec<(u8, u16)> = all[4..]
        .chunks(8)
        .map(|c| (c[0], u16::from_be_bytes([c[2], c[3]])))
        .collect();
    for want in [
        (0x16, 0),
        (0x17, 0),
        (0x56, 0),
        (0x57, 0),
        (0x5E, 3),
        (0x5F, 0),
        (0xA0, 0),
    ] {
        assert!(listed.contains(&want), "{want:02x?} not listed");
    }
}

/// MODE SELECT(10) parameter list: header with LONGLBA, one block
/// descriptor of `bd` bytes, no pages.
fn ms10_list(long_lba: bool, bd: &[u8]) -> Vec<u8> {
    let bdl = fit::<u16, _>(bd.len()).to_be_bytes();
    let mut v = vec![0, 0, 0, 0, u8::from(long_lba), 0, bdl[0], bdl[1]];
    v.extend_from_slice(bd);
    v
}

#[test]
fn mode_select_pf_longlba_and_field_pointers() {
    let t = dev();
    // PF=0 with a parameter list: INVALID FIELD IN CDB, byte 1 bit 4.
    let short_bd = [0, 0, 0, 0, 0, 0, 0x02, 0x00]; // block length 512
    let mut l6 = vec![0, 0, 0, 8];
    l6.extend_from_slice(&short_bd);
    let s = expect_sense(
        &t.lun,
        &[0x15, 0x00, 0, 0, 12, 0],
        &l6,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(field_pointer(&s), [0xCC, 0, 1]);
    expect_good(&t.lun, &[0x15, 0x10, 0, 0, 12, 0], &l6);
    // MODE SELECT(6), wrong BLOCK LENGTH: parameter list byte 4 + 5.
    let mut bad = l6.clone();
    bad[10] = 0x10; // 4096
    let s = expect_sense(
        &t.lun,
        &[0x15, 0x10, 0, 0, 12, 0],
        &bad,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    assert_eq!(field_pointer(&s), [0x80, 0, 9]);
    // MODE SELECT(10) with LONGLBA and a 16-byte descriptor: GOOD.
    let mut long_bd = [0u8; 16];
    long_bd[12..16].copy_from_slice(&512u32.to_be_bytes());
    let l = ms10_list(true, &long_bd);
    expect_good(&t.lun, &[0x55, 0x10, 0, 0, 0, 0, 0, 0, fit(l.len()), 0], &l);
    // The same 16 bytes without LONGLBA are two short descriptors: refused
    // at BLOCK DESCRIPTOR LENGTH (byte 6).
    let l = ms10_list(false, &long_bd);
    let s = expect_sense(
        &t.lun,
        &[0x55, 0x10, 0, 0, 0, 0, 0, 0, fit(l.len()), 0],
        &l,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    assert_eq!(field_pointer(&s), [0x80, 0, 6]);
    // LONGLBA, wrong block length: byte 8 + 12.
    long_bd[12..16].copy_from_slice(&4096u32.to_be_bytes());
    let l = ms10_list(true, &long_bd);
    let s = expect_sense(
        &t.lun,
        &[0x55, 0x10, 0, 0, 0, 0, 0, 0, fit(l.len()), 0],
        &l,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    assert_eq!(field_pointer(&s), [0x80, 0, 20]);
}

#[test]
fn start_stop_unit_as_the_kernel_answers_it() {
    let t = dev();
    // IMMED=1, START=1: GOOD.
    expect_good(&t.lun, &[0x1B, 0x01, 0, 0, 0x01, 0], &[]);
    // (CDB byte 1 and 4, expected field pointer) for each refused form.
    let refused: [([u8; 6], [u8; 3]); 5] = [
        ([0x1B, 0x00, 0, 0, 0x01, 0], [0xC8, 0, 1]), // IMMED=0
        ([0x1B, 0x01, 0, 0, 0x00, 0], [0xC8, 0, 4]), // START=0 (stop)
        ([0x1B, 0x01, 0, 0, 0x03, 0], [0xC9, 0, 4]), // LOEJ
        ([0x1B, 0x01, 0, 0, 0x05, 0], [0xCA, 0, 4]), // NO_FLUSH
        ([0x1B, 0x01, 0, 0, 0x31, 0], [0xCF, 0, 4]), // POWER CONDITION 3
    ];
    for (cdb, fp) in refused {
        let s = expect_sense(&t.lun, &cdb, &[], SenseKey::IllegalRequest, 0x24, 0);
        assert_eq!(field_pointer(&s), fp, "{cdb:02x?}");
    }
}

#[test]
fn maximum_prefetch_length_is_zero() {
    let t = dev();
    let d = expect_data(&t.lun, &[0x12, 0x01, 0xB0, 0, 64, 0], &[], 64);
    assert_eq!(&d[16..20], &[0, 0, 0, 0], "MAXIMUM PREFETCH LENGTH");
    assert_ne!(&d[8..12], &[0, 0, 0, 0], "MAXIMUM TRANSFER LENGTH");
}

/// A backend over memory that fails every write it makes no progress with
/// (an empty one) and can be told to fail writes with an OS error.
struct Checked {
    mem: MemBackend,
    errno: Option<i32>,
}

impl BlockBackend for Checked {
    fn caps(&self) -> BackendCaps {
        self.mem.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.mem.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        assert!(
            !data.is_empty(),
            "a write of nothing: write_zeroes makes no progress"
        );
        if let Some(e) = self.errno {
            return Err(BackendError::Write(io::Error::from_raw_os_error(e)));
        }
        self.mem.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.mem.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.mem.unmap(lba, blocks)
    }
}

#[test]
fn write_zeroes_of_blocks_over_1_mib_makes_progress() {
    let b = Checked {
        mem: MemBackend::new(2 << 20, 4),
        errno: None,
    };
    b.write(0, &vec![7u8; 4 << 20], false).unwrap();
    b.write_zeroes(0, 3, false).unwrap();
    let mut back = vec![1u8; 4 << 20];
    b.read(0, &mut back).unwrap();
    assert!(back.iter().all(|&x| x == 0), "two 2 MiB blocks read zero");
}

#[test]
fn enospc_and_edquot_are_space_allocation_failed() {
    for (errno, key, asc, ascq) in [
        (libc::ENOSPC, SenseKey::DataProtect, 0x27, 0x07),
        (libc::EDQUOT, SenseKey::DataProtect, 0x27, 0x07),
        (libc::EIO, SenseKey::MediumError, 0x0C, 0x00),
    ] {
        let b = Arc::new(Checked {
            mem: MemBackend::new(BS, BLOCKS),
            errno: Some(errno),
        });
        let lun = Lun::new(LunConfig::default(), b);
        let ua = lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []);
        assert_eq!(ua.status, status::CHECK_CONDITION, "power-on UA");
        expect_sense(
            &lun,
            &write16_cdb(0, 1, false),
            &pattern(1, 9),
            key,
            asc,
            ascq,
        );
    }
}
