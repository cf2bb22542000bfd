//! SPC commands through `Lun::execute`: INQUIRY/VPD, MODE SENSE/SELECT,
//! REQUEST SENSE, unit attentions, REPORT SUPPORTED OPERATION CODES.

use std::sync::Arc;

use crate::util::scsi::*;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BackendError, BackendEvent, BlockBackend};
use tcmud_core::scsi::{status, Lun, LunConfig, LunIdentity, SenseKey};

const TUR: [u8; 6] = [0x00, 0, 0, 0, 0, 0]; // TEST UNIT READY
const REQUEST_SENSE: [u8; 6] = [0x03, 0, 0, 0, 252, 0]; // alloc 252

fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let [hi, lo] = alloc.to_be_bytes();
    [0x12, u8::from(evpd), page, hi, lo, 0] // INQUIRY, EVPD, PAGE CODE, ALLOCATION LENGTH
}

#[test]
fn power_on_unit_attention_is_reported_once_and_spares_inquiry() {
    let mem = Arc::new(MemBackend::new(BS, BLOCKS));
    let lun = Lun::new(LunConfig::default(), mem);
    // INQUIRY and REQUEST SENSE's neighbour REPORT LUNS are not blocked...
    expect_data(&lun, &inquiry(false, 0, 96), &[], 96);
    // ...TEST UNIT READY is, and consumes the UA.
    let s = expect_sense(&lun, &TUR, &[], SenseKey::UnitAttention, 0x29, 0x00);
    assert_eq!(s.to_fixed()[7], 10, "ADDITIONAL SENSE LENGTH");
    expect_good(&lun, &TUR, &[]);
}

#[test]
fn request_sense_returns_and_clears_pending_unit_attention() {
    let mem = Arc::new(MemBackend::new(BS, BLOCKS));
    let lun = Lun::new(LunConfig::default(), mem);
    let d = expect_data(&lun, &REQUEST_SENSE, &[], 252);
    assert_eq!(d.len(), 18);
    assert_eq!((d[0], d[2], d[12], d[13]), (0x70, 0x06, 0x29, 0x00));
    let d = expect_data(&lun, &REQUEST_SENSE, &[], 252);
    assert_eq!(
        (d[2], d[12], d[13]),
        (0x00, 0x00, 0x00),
        "NO SENSE afterwards"
    );
    // DESC=1: descriptor format.
    let d = expect_data(&lun, &[0x03, 0x01, 0, 0, 252, 0], &[], 252);
    assert_eq!(d[0], 0x72);
}

#[test]
fn unit_attentions_from_capacity_change_write_cache_and_backend_events() {
    let t = dev();
    t.lun.capacity_changed();
    expect_sense(&t.lun, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x09);
    t.mem.push_event(BackendEvent::LowWaterMark);
    expect_sense(&t.lun, &TUR, &[], SenseKey::UnitAttention, 0x38, 0x07);
    t.lun.set_write_cache(false);
    expect_sense(&t.lun, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x01);
    assert!(!t.lun.write_cache_enabled());
    expect_good(&t.lun, &TUR, &[]);
}

#[test]
fn standard_inquiry_fields_and_allocation_length() {
    let t = dev();
    let d = expect_data(&t.lun, &inquiry(false, 0, 255), &[], 255);
    assert_eq!(d[0], 0x00, "direct-access block device");
    assert_eq!(d[2], 0x06, "SPC-4");
    assert_eq!(d[3] & 0x0F, 2, "RESPONSE DATA FORMAT");
    assert_eq!(usize::from(d[4]) + 5, d.len(), "ADDITIONAL LENGTH");
    assert_eq!(&d[8..16], b"TCMUD   ");
    assert_eq!(&d[16..32], b"VIRTUAL-DISK    ");
    assert_eq!(
        &d[58..64],
        &[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0],
        "SAM-5, SPC-4, SBC-3"
    );
    // Allocation length 5 truncates; data-in capacity 3 truncates further.
    assert_eq!(expect_data(&t.lun, &inquiry(false, 0, 5), &[], 96).len(), 5);
    assert_eq!(expect_data(&t.lun, &inquiry(false, 0, 96), &[], 3).len(), 3);
}

#[test]
fn inquiry_invalid_fields_point_at_the_field() {
    let t = dev();
    let s = expect_sense(
        &t.lun,
        &inquiry(false, 0x80, 96),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    let f = s.to_fixed();
    assert_eq!(
        &f[15..18],
        &[0x80 | 0x40 | 0x08 | 7, 0, 2],
        "SKSV, C/D, BPV bit 7, byte 2"
    );
    expect_sense(
        &t.lun,
        &inquiry(true, 0x99, 96),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &[0x12, 0x02, 0, 0, 96, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // CMDDT
}

fn cfg_naa() -> [u8; 16] {
    [
        0x60, 0x01, 0x40, 0x50, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xFF, 0xED, 0xCB, 0xA9,
        0x87,
    ]
}

#[test]
fn vpd_80_83_come_from_the_lun_identity() {
    let id = LunIdentity([
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ]);
    let t = dev_with(caps(), LunConfig::identified(id));
    let d = expect_data(&t.lun, &inquiry(true, 0x80, 255), &[], 255);
    assert_eq!(
        &d[4..],
        b"0123456789abcdeffedcba9876543210",
        "unit serial = id in hex"
    );
    let d = expect_data(&t.lun, &inquiry(true, 0x83, 255), &[], 255);
    assert_eq!(
        &d[4..8],
        &[0x01, 0x03, 0x00, 0x10],
        "binary, LU, NAA, 16 bytes"
    );
    // NAA 6, IEEE company id 00-14-05, then the serial's first 25 hex digits.
    assert_eq!(&d[8..24], &cfg_naa());
}

#[test]
fn vpd_pages_derive_from_caps_and_config() {
    let cfg = LunConfig {
        serial: "SER123".into(),
        naa: cfg_naa(),
        ..LunConfig::default()
    };
    let t = dev_with(caps(), cfg);
    let d = expect_data(&t.lun, &inquiry(true, 0x00, 255), &[], 255);
    assert_eq!(d, [0, 0, 0, 7, 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]);
    let d = expect_data(&t.lun, &inquiry(true, 0x80, 255), &[], 255);
    assert_eq!(&d[..4], &[0, 0x80, 0, 6]);
    assert_eq!(&d[4..], b"SER123");
    let d = expect_data(&t.lun, &inquiry(true, 0x83, 255), &[], 255);
    assert_eq!(&d[4..8], &[0x01, 0x03, 0x00, 0x10], "binary NAA designator");
    assert_eq!(&d[8..24], &cfg_naa(), "NAA 6 as configured");
    assert_eq!(d[8] >> 4, 6, "NAA IEEE Registered Extended");
    assert_eq!(&d[24..28], &[0x02, 0x01, 0x00, 30], "ASCII T10 vendor ID");
    assert_eq!(&d[28..36], b"TCMUD   ");
    assert_eq!(&d[52..58], b"SER123");
    let d = expect_data(&t.lun, &inquiry(true, 0xB0, 255), &[], 255);
    assert_eq!(d.len(), 64);
    assert_eq!(d[4] & 1, 1, "WSNZ");
    assert_eq!(d[5], 64, "MAXIMUM COMPARE AND WRITE LENGTH");
    assert_eq!(
        u32::from_be_bytes(d[8..12].try_into().unwrap()),
        65536,
        "MAXIMUM TRANSFER LENGTH"
    );
    assert_eq!(
        u32::from_be_bytes(d[12..16].try_into().unwrap()),
        8192,
        "OPTIMAL TRANSFER LENGTH"
    );
    assert_eq!(
        u32::from_be_bytes(d[20..24].try_into().unwrap()),
        1 << 20,
        "MAXIMUM UNMAP LBA COUNT"
    );
    assert_eq!(
        u32::from_be_bytes(d[24..28].try_into().unwrap()),
        256,
        "MAX UNMAP DESCRIPTORS"
    );
    assert_eq!(
        u32::from_be_bytes(d[28..32].try_into().unwrap()),
        8,
        "OPTIMAL UNMAP GRANULARITY"
    );
    assert_eq!(d[32] & 0x80, 0x80, "UGAVALID");
    assert_eq!(
        u64::from_be_bytes(d[36..44].try_into().unwrap()),
        0xFFFF,
        "MAX WRITE SAME LENGTH (LunConfig default, as the kernel's iblock)"
    );
    let d = expect_data(&t.lun, &inquiry(true, 0xB1, 255), &[], 255);
    assert_eq!(&d[4..6], &[0, 1], "non-rotating");
    let d = expect_data(&t.lun, &inquiry(true, 0xB2, 255), &[], 255);
    assert_eq!(d, [0, 0xB2, 0, 4, 0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0]);
}

#[test]
fn thick_backend_advertises_no_provisioning() {
    let c = tcmud_core::backend::BackendCaps {
        thin: false,
        volatile_cache: false,
        ..caps()
    };
    let t = dev_with(c, LunConfig::default());
    let d = expect_data(&t.lun, &inquiry(true, 0xB2, 255), &[], 255);
    assert_eq!(&d[4..8], &[0, 0, 0, 0]);
    let d = expect_data(&t.lun, &inquiry(true, 0xB0, 255), &[], 255);
    assert_eq!(&d[20..32], &[0; 12], "no unmap limits");
    // UNMAP and GET LBA STATUS are not supported without thin provisioning.
    expect_sense(
        &t.lun,
        &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        &[0; 24],
        SenseKey::IllegalRequest,
        0x20,
        0,
    );
    let mut gls = [0u8; 16];
    gls[0] = 0x9E; // SERVICE ACTION IN(16)
    gls[1] = 0x12; // GET LBA STATUS
    gls[13] = 32; // ALLOCATION LENGTH
    expect_sense(&t.lun, &gls, &[], SenseKey::IllegalRequest, 0x24, 0); // unsupported SA: 24/00
                                                                        // ...nor reported by REPORT SUPPORTED OPERATION CODES.
    let mut rsoc = [0u8; 12];
    rsoc[0] = 0xA3; // MAINTENANCE IN
    rsoc[1] = 0x0C; // REPORT SUPPORTED OPERATION CODES
    rsoc[2] = 0x01; // one command, no service action
    rsoc[3] = 0x42; // UNMAP
    rsoc[9] = 64; // ALLOCATION LENGTH
    assert_eq!(
        expect_data(&t.lun, &rsoc, &[], 64),
        [0, 1, 0, 0],
        "SUPPORT: not supported"
    );
    // Caching page: WCE 0 and not changeable.
    let d = expect_data(&t.lun, &[0x1A, 0x08, 0x48, 0, 255, 0], &[], 255); // MODE SENSE(6) changeable 08h
    assert_eq!(
        d[4..],
        [0x08, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn unknown_opcode_and_service_action() {
    let t = dev();
    expect_sense(
        &t.lun,
        &[0xC5, 0, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x20,
        0,
    );
    expect_sense(&t.lun, &[], &[], SenseKey::IllegalRequest, 0x20, 0);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9E; // SERVICE ACTION IN(16)
    cdb[1] = 0x1F; // unknown service action
    let s = expect_sense(&t.lun, &cdb, &[], SenseKey::IllegalRequest, 0x24, 0);
    assert_eq!(s.to_fixed()[17], 1, "field pointer: byte 1");
    // NACA in the CONTROL byte.
    expect_sense(
        &t.lun,
        &[0x00, 0, 0, 0, 0, 0x04],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // Truncated CDB.
    expect_sense(
        &t.lun,
        &[0x28, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

fn rsoc(options: u8, op: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA3; // MAINTENANCE IN
    cdb[1] = 0x0C; // REPORT SUPPORTED OPERATION CODES
    cdb[2] = options; // RCTD | REPORTING OPTIONS
    cdb[3] = op; // REQUESTED OPERATION CODE
    cdb[4..6].copy_from_slice(&sa.to_be_bytes()); // REQUESTED SERVICE ACTION
    cdb[6..10].copy_from_slice(&alloc.to_be_bytes()); // ALLOCATION LENGTH
    cdb
}

#[test]
fn report_supported_opcodes_all_and_one() {
    let t = dev();
    let d = expect_data(&t.lun, &rsoc(0, 0, 0, 8192), &[], 8192);
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, d.len());
    assert_eq!(len % 8, 0);
    let descs: Vec<&[u8]> = d[4..].chunks(8).collect();
    assert!(
        descs
            .iter()
            .any(|c| c[0] == 0x28 && c[5] == 0 && c[6..8] == [0, 10]),
        "READ(10)"
    );
    assert!(
        descs
            .iter()
            .any(|c| c[0] == 0x9E && c[2..4] == [0, 0x10] && c[5] == 1),
        "READ CAPACITY(16)"
    );
    // Every listed command answers the one-command formats consistently.
    for c in descs {
        let servactv = c[5] & 1 == 1;
        let sa = u16::from_be_bytes([c[2], c[3]]);
        let cdb = if servactv {
            rsoc(2, c[0], sa, 64)
        } else {
            rsoc(1, c[0], 0, 64)
        };
        let one = expect_data(&t.lun, &cdb, &[], 64);
        assert_eq!(one[1] & 0x07, 3, "SUPPORT: supported, op {:02x}", c[0]);
        assert_eq!(&one[2..4], &c[6..8], "CDB SIZE");
        assert_eq!(one.len(), 4 + usize::from(c[7]));
        assert_eq!(one[4], c[0], "usage data starts with the opcode");
        if servactv {
            assert_eq!(u16::from(one[5] & 0x1F), sa);
        }
    }
    // RCTD: 20-byte descriptors with CTDP.
    let d = expect_data(&t.lun, &rsoc(0x80, 0, 0, 8192), &[], 8192);
    assert_eq!((d.len() - 4) % 20, 0);
    assert_eq!(d[4 + 5] & 0x02, 0x02);
    // Unsupported opcode: SUPPORT 1. Opcode with service actions in option 1: 24/00.
    assert_eq!(
        expect_data(&t.lun, &rsoc(1, 0xC5, 0, 64), &[], 64),
        [0, 1, 0, 0]
    );
    expect_sense(
        &t.lun,
        &rsoc(1, 0x9E, 0, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &rsoc(2, 0x28, 0, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &rsoc(5, 0, 0, 64),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // Allocation length applies.
    assert_eq!(expect_data(&t.lun, &rsoc(0, 0, 0, 10), &[], 8192).len(), 10);
}

#[test]
fn report_supported_task_management_functions() {
    let t = dev();
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA3; // MAINTENANCE IN
    cdb[1] = 0x0D; // REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
    cdb[9] = 16; // ALLOCATION LENGTH
    let d = expect_data(&t.lun, &cdb, &[], 16);
    assert_eq!(d, [0xD8, 0, 0, 0]);
    cdb[2] = 0x80; // REPD
    assert_eq!(expect_data(&t.lun, &cdb, &[], 16).len(), 16);
}

#[test]
fn small_commands() {
    let t = dev();
    // START STOP UNIT as the kernel answers it: only IMMED + START (the
    // refused forms are in scsi/review.rs).
    expect_good(&t.lun, &[0x1B, 0x01, 0, 0, 0x01, 0], &[]); // IMMED, START
    expect_sense(
        &t.lun,
        &[0x1B, 0x01, 0, 0, 0x02, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    ); // eject
    expect_good(&t.lun, &[0x1D, 0x04, 0, 0, 0, 0], &[]); // SEND DIAGNOSTIC, SELFTEST
    expect_good(&t.lun, &[0x1D, 0x20, 0, 0, 0, 0], &[]); // background short self-test
    expect_sense(
        &t.lun,
        &[0x1D, 0x24, 0, 0, 0, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &[0x1D, 0x10, 0, 0, 8, 0],
        &[0; 8],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    let d = expect_data(&t.lun, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[], 16); // REPORT LUNS
    assert_eq!(d, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let r = t.lun.execute(&TUR, &[], &mut []);
    assert_eq!((r.status, r.data_in_len), (status::GOOD, 0));
}

fn log_sense(page: u8, subpage: u8, ptr: u16, alloc: u16) -> [u8; 10] {
    let [ph, pl] = ptr.to_be_bytes();
    let [ah, al] = alloc.to_be_bytes();
    // LOG SENSE, SP/PPC, PC=01b | PAGE CODE, SUBPAGE CODE, reserved,
    // PARAMETER POINTER, ALLOCATION LENGTH, CONTROL.
    [0x4D, 0, 0x40 | page, subpage, 0, ph, pl, ah, al, 0]
}

#[test]
fn log_sense_supported_pages_provisioning_and_informational_exceptions() {
    let t = dev();
    // Page 00h: 00h, 0Ch (the backend counts resources), 2Fh.
    let d = expect_data(&t.lun, &log_sense(0x00, 0, 0, 512), &[], 512);
    assert_eq!(
        d,
        [0x80, 0, 0, 3, 0x00, 0x0C, 0x2F],
        "DS, page 00h, length 3"
    );
    // Page 00h subpage FFh: (page, subpage) pairs, SPF set.
    let d = expect_data(&t.lun, &log_sense(0x00, 0xFF, 0, 512), &[], 512);
    assert_eq!(
        d,
        [0xC0, 0xFF, 0, 8, 0x00, 0x00, 0x00, 0xFF, 0x0C, 0x00, 0x2F, 0x00]
    );
    // Page 0Ch: 4096 blocks in 8-block chunks; write 3 chunks' worth.
    write16(&t.lun, 0, &pattern(17, 0x11)); // chunks 0, 1, 2
    let d = expect_data(&t.lun, &log_sense(0x0C, 0, 0, 512), &[], 512);
    assert_eq!(
        &d[..4],
        &[0x8C, 0, 0, 24],
        "DS, page 0Ch, two 12-byte parameters"
    );
    // 0001h available: (512 - 3) chunks * 8 blocks, scope 10b (shared).
    assert_eq!(&d[4..16], &[0, 1, 0x03, 8, 0, 0, 0x0F, 0xE8, 0x02, 0, 0, 0]);
    // 0002h used: 3 chunks * 8 blocks, scope 01b (dedicated).
    assert_eq!(&d[16..28], &[0, 2, 0x03, 8, 0, 0, 0, 24, 0x01, 0, 0, 0]);
    // PARAMETER POINTER 2: only 0002h; beyond it: INVALID FIELD IN CDB.
    let d = expect_data(&t.lun, &log_sense(0x0C, 0, 2, 512), &[], 512);
    assert_eq!((&d[..4], &d[4..6]), (&[0x8C, 0, 0, 12][..], &[0, 2][..]));
    let s = expect_sense(
        &t.lun,
        &log_sense(0x0C, 0, 3, 512),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    assert_eq!(
        s.to_fixed()[16..18],
        [0, 5],
        "field pointer: PARAMETER POINTER"
    );
    // Page 2Fh: no exception, temperature not available.
    let d = expect_data(&t.lun, &log_sense(0x2F, 0, 0, 512), &[], 512);
    assert_eq!(d, [0xAF, 0, 0, 8, 0, 0, 0x03, 4, 0, 0, 0xFF, 0]);
    // Allocation length truncates.
    let d = expect_data(&t.lun, &log_sense(0x0C, 0, 0, 10), &[], 512);
    assert_eq!(d.len(), 10);
    // Unsupported page, subpage, SP, PPC.
    let bad: [(&[u8], u16, u8); 4] = [
        (&log_sense(0x0D, 0, 0, 512), 2, 5),
        (&log_sense(0x0C, 1, 0, 512), 3, 7),
        (&[0x4D, 0x01, 0x4C, 0, 0, 0, 0, 2, 0, 0], 1, 0),
        (&[0x4D, 0x02, 0x4C, 0, 0, 0, 0, 2, 0, 0], 1, 1),
    ];
    for (cdb, byte, bit) in bad {
        let s = expect_sense(&t.lun, cdb, &[], SenseKey::IllegalRequest, 0x24, 0);
        let f = s.to_fixed();
        assert_eq!(
            (u16::from_be_bytes([f[16], f[17]]), f[15] & 7),
            (byte, bit),
            "{cdb:02x?}"
        );
    }
}

#[test]
fn log_sense_leaves_out_provisioning_on_a_thick_backend() {
    let thick = dev_with(
        tcmud_core::backend::BackendCaps {
            thin: false,
            ..caps()
        },
        LunConfig::default(),
    );
    let d = expect_data(&thick.lun, &log_sense(0x00, 0, 0, 512), &[], 512);
    assert_eq!(d, [0x80, 0, 0, 2, 0x00, 0x2F]);
    expect_sense(
        &thick.lun,
        &log_sense(0x0C, 0, 0, 512),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // No SANITIZE BLOCK ERASE (nothing to deallocate), WABEREQ 0; OVERWRITE
    // and EXIT FAILURE MODE stay.
    for (sa, support) in [(0x01u16, 3u8), (0x02, 1), (0x1F, 3)] {
        let d = expect_data(&thick.lun, &rsoc(2, 0x48, sa, 64), &[], 64);
        assert_eq!(d[1] & 7, support, "SANITIZE service action {sa:02x}");
    }
    let b1 = expect_data(&thick.lun, &inquiry(true, 0xB1, 64), &[], 64);
    assert_eq!(b1[7] >> 6, 0, "WABEREQ");
    let erase = [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]; // SANITIZE BLOCK ERASE
    expect_sense(&thick.lun, &erase, &[], SenseKey::IllegalRequest, 0x24, 0);
}

// --- Implicit ALUA: two daemons exporting one unit, ownership-driven ---

fn rtpg(extended: bool, alloc: u32) -> [u8; 12] {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA3; // MAINTENANCE IN
    cdb[1] = 0x0A | if extended { 0x20 } else { 0 }; // PARAMETER DATA FORMAT | REPORT TARGET PORT GROUPS
    cdb[6..10].copy_from_slice(&alloc.to_be_bytes()); // ALLOCATION LENGTH
    cdb
}

/// The port of daemon `group` (1 or 2) of a two-daemon unit, over `mem`.
fn alua_port(group: u16, mem: Arc<MemBackend>) -> (Lun, Arc<tcmud_core::scsi::OwnershipCell>) {
    alua_port_on(group, mem)
}

/// [`alua_port`] over any backend.
fn alua_port_on(
    group: u16,
    backend: Arc<dyn BlockBackend>,
) -> (Lun, Arc<tcmud_core::scsi::OwnershipCell>) {
    alua_port_mode(
        group,
        backend,
        tcmud_core::scsi::NonOwner::ActiveNonOptimized,
    )
}

/// [`alua_port_on`] with the non-owners' state `non_owner`.
fn alua_port_mode(
    group: u16,
    backend: Arc<dyn BlockBackend>,
    non_owner: tcmud_core::scsi::NonOwner,
) -> (Lun, Arc<tcmud_core::scsi::OwnershipCell>) {
    use tcmud_core::scsi::{AluaConfig, AluaPeer, OwnershipCell};
    let peer = 3 - group;
    let cfg = LunConfig {
        alua: Some(AluaConfig {
            group,
            relative_port: group,
            peers: vec![AluaPeer {
                group: peer,
                relative_port: peer,
            }],
            transition_secs: 20,
            non_owner,
            preferred: None,
        }),
        ..LunConfig::identified(LunIdentity([7; 16]))
    };
    let lun = Lun::new(cfg, backend);
    let cell = Arc::new(OwnershipCell::new());
    lun.set_ownership(cell.clone());
    expect_sense(&lun, &TUR, &[], SenseKey::UnitAttention, 0x29, 0x00);
    (lun, cell)
}

/// (group, state, relative port) of each RTPG descriptor.
fn rtpg_groups(d: &[u8]) -> Vec<(u16, u8, u16)> {
    rtpg_groups_supporting(d, 0x8B)
}

/// [`rtpg_groups`], each group's SUPPORTED states `supported` (T_SUP |
/// U_SUP | AN_SUP | AO_SUP: 0x8B; T_SUP | U_SUP | S_SUP | AO_SUP: 0x8D).
fn rtpg_groups_supporting(d: &[u8], supported: u8) -> Vec<(u16, u8, u16)> {
    d.chunks(12)
        .map(|g| {
            assert_eq!(g[1], supported, "SUPPORTED states");
            assert_eq!(g[7], 1, "TARGET PORT COUNT");
            (
                u16::from_be_bytes([g[2], g[3]]),
                g[0] & 0x0F,
                u16::from_be_bytes([g[10], g[11]]),
            )
        })
        .collect()
}

/// VPD 83h designators as (code set, PIV|association|type, body).
fn designators(page: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut d = &page[4..];
    while d.len() >= 4 {
        let len = usize::from(d[3]);
        out.push((d[0] & 0x0F, d[1], d[4..4 + len].to_vec()));
        d = &d[4 + len..];
    }
    out
}

#[test]
fn alua_inquiry_tpgs_and_vpd83_port_designators() {
    let mem = Arc::new(MemBackend::new(BS, BLOCKS));
    let plain = dev();
    let (a, _) = alua_port(1, mem.clone());
    let (b, _) = alua_port(2, mem);
    // TPGS 11b (implicit and explicit) only with ALUA; 3PC stays.
    assert_eq!(
        expect_data(&plain.lun, &inquiry(false, 0, 96), &[], 96)[5],
        0x08
    );
    assert_eq!(expect_data(&a, &inquiry(false, 0, 96), &[], 96)[5], 0x38);
    let da = designators(&expect_data(&a, &inquiry(true, 0x83, 512), &[], 512));
    let db = designators(&expect_data(&b, &inquiry(true, 0x83, 512), &[], 512));
    // Both ports name the same unit (NAA, T10 vendor ID)...
    assert_eq!(da[..2], db[..2]);
    assert_eq!(da[0].1, 0x03, "NAA, logical unit");
    // ...and each its own relative target port (type 4) and group (type 5).
    assert_eq!(
        da[2..],
        [(1, 0x14, vec![0, 0, 0, 1]), (1, 0x15, vec![0, 0, 0, 1])]
    );
    assert_eq!(
        db[2..],
        [(1, 0x14, vec![0, 0, 0, 2]), (1, 0x15, vec![0, 0, 0, 2])]
    );
    assert_eq!(
        designators(&expect_data(
            &plain.lun,
            &inquiry(true, 0x83, 512),
            &[],
            512
        ))
        .len(),
        2
    );
}

#[test]
fn alua_rtpg_states_follow_the_owner_with_a_unit_attention_on_change() {
    use tcmud_core::scsi::Ownership;
    let mem = Arc::new(MemBackend::new(BS, BLOCKS));
    let (a, cell_a) = alua_port(1, mem.clone());
    let (b, cell_b) = alua_port(2, mem);
    // Nobody owns the unit yet: no group is optimized.
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(
        u32::from_be_bytes(d[..4].try_into().unwrap()),
        24,
        "RETURN DATA LENGTH"
    );
    assert_eq!(rtpg_groups(&d[4..]), [(1, 1, 1), (2, 1, 2)]);
    expect_good(&a, &TUR, &[]);
    // Daemon A takes the lock: from both ports, group 1 is active/optimized.
    cell_a.set(Ownership::Local);
    cell_b.set(Ownership::Remote(None));
    for lun in [&a, &b] {
        // The change is reported once, to the next command (ASYMMETRIC
        // ACCESS STATE CHANGED), so the initiator asks again.
        expect_sense(lun, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
        expect_good(lun, &TUR, &[]);
    }
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(1, 0, 1), (2, 1, 2)]);
    assert_eq!(
        (d[4 + 5], d[16 + 5]),
        (0x02, 0x02),
        "STATUS: altered by implicit ALUA"
    );
    let d = expect_data(&b, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(2, 1, 2), (1, 0, 1)]);
    // The lock moves to B (A died or B wrote): the states follow.
    cell_a.set(Ownership::Remote(None));
    cell_b.set(Ownership::Local);
    expect_sense(
        &b,
        &rtpg(false, 512),
        &[],
        SenseKey::UnitAttention,
        0x2A,
        0x06,
    );
    let d = expect_data(&b, &rtpg(true, 512), &[], 512);
    assert_eq!(
        &d[..8],
        &[0, 0, 0, 24, 0x10, 20, 0, 0],
        "extended header, IMPLICIT TRANSITION TIME"
    );
    assert_eq!(rtpg_groups(&d[8..]), [(2, 0, 2), (1, 1, 1)]);
    // An unchanged signal queues nothing.
    cell_b.set(Ownership::Local);
    expect_good(&b, &TUR, &[]);
    // ALLOCATION LENGTH truncates; a reserved PARAMETER DATA FORMAT is refused.
    assert_eq!(expect_data(&b, &rtpg(false, 6), &[], 512).len(), 6);
    let mut bad = rtpg(false, 512);
    bad[1] |= 0x40;
    expect_sense(&b, &bad, &[], SenseKey::IllegalRequest, 0x24, 0x00);
}

#[test]
fn alua_rtpg_is_refused_and_unlisted_without_alua() {
    let t = dev();
    expect_sense(
        &t.lun,
        &rtpg(false, 512),
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0x00,
    );
    assert!(!rsoc_lists(&t.lun, 0xA3, 0x0A));
    let (a, _) = alua_port(1, Arc::new(MemBackend::new(BS, BLOCKS)));
    assert!(rsoc_lists(&a, 0xA3, 0x0A));
}

/// Whether REPORT SUPPORTED OPERATION CODES (all commands) lists `opcode`
/// with service action `sa`.
fn rsoc_lists(lun: &Lun, opcode: u8, sa: u16) -> bool {
    let d = expect_data(lun, &rsoc(0, 0, 0, 8192), &[], 8192);
    d[4..]
        .chunks(8)
        .any(|c| c[0] == opcode && c[2..4] == sa.to_be_bytes())
}

// --- Explicit ALUA: SET TARGET PORT GROUPS ---

/// A SET TARGET PORT GROUPS CDB with a parameter list of `len` bytes.
fn stpg_cdb(len: usize) -> [u8; 12] {
    let len = u32::try_from(len).expect("a test list fits in 32 bits");
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA4; // MAINTENANCE OUT
    cdb[1] = 0x0A; // SET TARGET PORT GROUPS
    cdb[6..10].copy_from_slice(&len.to_be_bytes()); // PARAMETER LIST LENGTH
    cdb
}

/// Its parameter list: a reserved header, then (state, group) descriptors.
fn stpg_list(descs: &[(u8, u16)]) -> Vec<u8> {
    let mut l = vec![0; 4];
    for &(state, group) in descs {
        let [h, lo] = group.to_be_bytes();
        l.extend_from_slice(&[state, 0, h, lo]);
    }
    l
}

/// Memory whose ownership can be taken (or not: `grant`), counting the
/// requests, as the RBD backend takes the image's exclusive lock.
struct Lockable {
    mem: MemBackend,
    grant: bool,
    asked: std::sync::atomic::AtomicUsize,
}

impl BlockBackend for Lockable {
    fn caps(&self) -> BackendCaps {
        self.mem.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.mem.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.mem.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.mem.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.mem.unmap(lba, blocks)
    }
    fn take_ownership(&self) -> Result<bool, BackendError> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.grant)
    }
}

fn lockable(grant: bool) -> Arc<Lockable> {
    Arc::new(Lockable {
        mem: MemBackend::new(BS, BLOCKS),
        grant,
        asked: Default::default(),
    })
}

#[test]
fn alua_stpg_of_this_ports_group_takes_the_ownership_here() {
    use std::sync::atomic::Ordering::SeqCst;
    use tcmud_core::scsi::Ownership;
    let backend = lockable(true);
    let (a, cell) = alua_port_on(1, backend.clone());
    cell.set(Ownership::Remote(None)); // daemon B owns the unit
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    let own = stpg_list(&[(0x0, 1), (0x1, 2)]);
    expect_good(&a, &stpg_cdb(own.len()), &own);
    assert_eq!(
        backend.asked.load(SeqCst),
        1,
        "the backend took the ownership"
    );
    assert_eq!(cell.get(), Ownership::Local);
    // No unit attention for the change the initiator asked for; RTPG
    // shows group 1 optimized, STATUS 01h (altered by SET TARGET PORT
    // GROUPS).
    expect_good(&a, &TUR, &[]);
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(1, 0, 1), (2, 1, 2)]);
    assert_eq!((d[4 + 5], d[16 + 5]), (0x01, 0x01));
    // Asked again: already so, the backend is not asked.
    expect_good(&a, &stpg_cdb(own.len()), &own);
    assert_eq!(backend.asked.load(SeqCst), 1);
    // The peer's group optimized, from this port: only a write through
    // the peer moves the ownership there.
    let peer = stpg_list(&[(0x0, 2)]);
    expect_sense(&a, &stpg_cdb(8), &peer, SenseKey::HardwareError, 0x67, 0x0A);
    assert_eq!(cell.get(), Ownership::Local);
    // A list naming nothing (length 0) is GOOD.
    expect_good(&a, &stpg_cdb(0), &[]);
}

#[test]
fn alua_standby_port_serves_only_what_standby_allows_until_an_stpg_makes_it_the_owner() {
    use std::sync::atomic::Ordering::SeqCst;
    use tcmud_core::scsi::{NonOwner, Ownership};
    let backend = lockable(true);
    let (a, cell) = alua_port_mode(1, backend.clone(), NonOwner::Standby);
    // Nobody owns the unit: both groups standby (S_SUP, not AN_SUP).
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(
        rtpg_groups_supporting(&d[4..], 0x8D),
        [(1, 2, 1), (2, 2, 2)]
    );
    // Media access and TEST UNIT READY: NOT READY, TARGET PORT IN STANDBY
    // STATE; nothing reaches the backend.
    let data = pattern(2, 0xA5);
    let w = write16_cdb(8, 2, false);
    expect_sense(&a, &w, &data, SenseKey::NotReady, 0x04, 0x0B);
    let mut r = [0u8; 16];
    r[0] = 0x88; // READ(16) of one block at 0
    r[13] = 1;
    expect_sense(&a, &r, &[], SenseKey::NotReady, 0x04, 0x0B);
    expect_sense(&a, &TUR, &[], SenseKey::NotReady, 0x04, 0x0B);
    let mut held = vec![0u8; 2 * BS as usize];
    backend.mem.read(8, &mut held).unwrap();
    assert_eq!(held, pattern(2, 0), "a standby port wrote");
    // The fast paths leave the command to the full path, which refuses it.
    assert!(a.plan_async(&w, data.len(), 0).is_none());
    // What a standby port serves: REQUEST SENSE says why it is not ready;
    // INQUIRY, MODE SENSE, REPORT LUNS, REPORT SUPPORTED OPERATION CODES.
    let sense = expect_data(&a, &[0x03, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x02, 0x04, 0x0B));
    expect_data(&a, &inquiry(false, 0, 96), &[], 96);
    expect_data(&a, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[], 255);
    expect_data(&a, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[], 64);
    expect_data(&a, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], &[], 512);
    // A peer's group optimized from here: not this port's to do.
    let peer = stpg_list(&[(0x0, 2)]);
    expect_sense(&a, &stpg_cdb(8), &peer, SenseKey::HardwareError, 0x67, 0x0A);
    // What Linux's scsi_dh_alua sends on failover: its own group optimized.
    let own = stpg_list(&[(0x0, 1)]);
    expect_good(&a, &stpg_cdb(own.len()), &own);
    assert_eq!(backend.asked.load(SeqCst), 1);
    assert_eq!(cell.get(), Ownership::Local);
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(
        rtpg_groups_supporting(&d[4..], 0x8D),
        [(1, 0, 1), (2, 2, 2)]
    );
    // The owner serves everything.
    expect_good(&a, &TUR, &[]);
    expect_good(&a, &w, &data);
    assert_eq!(read16(&a, 8, 2), data);
    assert!(a.plan_async(&w, data.len(), 0).is_some());
    // The ownership moves to the peer: the change is reported, then this
    // port is standby again.
    cell.set(Ownership::Remote(None));
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    expect_sense(&a, &w, &data, SenseKey::NotReady, 0x04, 0x0B);
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(
        rtpg_groups_supporting(&d[4..], 0x8D),
        [(1, 2, 1), (2, 0, 2)]
    );
}

#[test]
fn alua_port_whose_daemon_cannot_reach_the_backend_is_unavailable_until_it_can() {
    use tcmud_core::scsi::Ownership;
    let backend = lockable(true);
    let (a, cell) = alua_port_on(1, backend.clone());
    cell.set(Ownership::Local);
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    let data = pattern(2, 0x5A);
    let w = write16_cdb(8, 2, false);
    expect_good(&a, &w, &data);
    // The cluster stops answering: the change is reported, then this
    // port's group is unavailable and the peer's the initiator's way in.
    assert!(cell.set_reachable(false));
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(1, 3, 1), (2, 0, 2)]);
    // Media access, TEST UNIT READY, even MODE SENSE (a standby port
    // would serve it): NOT READY, TARGET PORT IN UNAVAILABLE STATE;
    // nothing reaches the backend, no asynchronous plan.
    let other = pattern(2, 0xC3);
    expect_sense(&a, &w, &other, SenseKey::NotReady, 0x04, 0x0C);
    expect_sense(&a, &TUR, &[], SenseKey::NotReady, 0x04, 0x0C);
    expect_sense(
        &a,
        &[0x1A, 0x08, 0x3F, 0, 255, 0],
        &[],
        SenseKey::NotReady,
        0x04,
        0x0C,
    );
    assert!(a.plan_async(&w, other.len(), 0).is_none());
    let mut held = vec![0u8; 2 * BS as usize];
    backend.mem.read(8, &mut held).unwrap();
    assert_eq!(held, data, "an unavailable port wrote");
    // What it serves: REQUEST SENSE says why; INQUIRY, REPORT LUNS,
    // REPORT SUPPORTED OPERATION CODES.
    let sense = expect_data(&a, &[0x03, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x02, 0x04, 0x0C));
    expect_data(&a, &inquiry(false, 0, 96), &[], 96);
    expect_data(&a, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[], 64);
    expect_data(&a, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], &[], 512);
    // Reachable again: reported, and the port is the owner's as before.
    assert!(cell.set_reachable(true));
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    expect_good(&a, &TUR, &[]);
    assert_eq!(read16(&a, 8, 2), data);
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(1, 0, 1), (2, 1, 2)]);
}

#[test]
fn alua_stpg_failures_and_bad_lists() {
    use std::sync::atomic::Ordering::SeqCst;
    use tcmud_core::scsi::Ownership;
    // The backend cannot take it: SET TARGET PORT GROUPS COMMAND FAILED,
    // the states as they were.
    let refused = lockable(false);
    let (a, cell) = alua_port_on(1, refused.clone());
    cell.set(Ownership::Remote(None));
    expect_sense(&a, &TUR, &[], SenseKey::UnitAttention, 0x2A, 0x06);
    let own = stpg_list(&[(0x0, 1)]);
    expect_sense(&a, &stpg_cdb(8), &own, SenseKey::HardwareError, 0x67, 0x0A);
    assert_eq!(refused.asked.load(SeqCst), 1);
    assert_eq!(cell.get(), Ownership::Remote(None));
    let d = expect_data(&a, &rtpg(false, 512), &[], 512);
    assert_eq!(rtpg_groups(&d[4..]), [(1, 1, 1), (2, 0, 2)]);
    // Unknown group, unsupported state (standby), two optimized: INVALID
    // FIELD IN PARAMETER LIST, pointing at the field; nothing asked.
    for (list, byte) in [
        (stpg_list(&[(0x0, 7)]), 6u16),
        (stpg_list(&[(0x2, 1)]), 4),
        (stpg_list(&[(0x0, 1), (0x0, 2)]), 8),
    ] {
        let s = expect_sense(
            &a,
            &stpg_cdb(list.len()),
            &list,
            SenseKey::IllegalRequest,
            0x26,
            0x00,
        );
        assert_eq!(
            s.field_pointer.map(|f| (f.in_cdb, f.byte)),
            Some((false, byte))
        );
    }
    // Not a header plus whole descriptors: PARAMETER LIST LENGTH ERROR.
    expect_sense(
        &a,
        &stpg_cdb(6),
        &[0; 6],
        SenseKey::IllegalRequest,
        0x1A,
        0x00,
    );
    assert_eq!(refused.asked.load(SeqCst), 1);
    // Without ALUA: refused, and REPORT SUPPORTED OPERATION CODES lists it
    // only with ALUA.
    let t = dev();
    expect_sense(
        &t.lun,
        &stpg_cdb(8),
        &own,
        SenseKey::IllegalRequest,
        0x24,
        0x00,
    );
    assert!(!rsoc_lists(&t.lun, 0xA4, 0x0A));
    assert!(rsoc_lists(&a, 0xA4, 0x0A));
}
