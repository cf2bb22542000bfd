//! MODE SENSE(6)/(10) and MODE SELECT(6)/(10) through `Lun::execute`.

use crate::util::narrow::fit;
use crate::util::scsi::*;
use tcmud_core::scsi::{LunConfig, SenseKey};

#[test]
fn mode_sense6_all_pages_with_block_descriptor() {
    let t = dev();
    let d = expect_data(&t.lun, &[0x1A, 0, 0x3F, 0, 255, 0], &[], 255); // MODE SENSE(6), all pages
    assert_eq!(usize::from(d[0]) + 1, d.len(), "MODE DATA LENGTH");
    assert_eq!(d[2], 0x10, "DPOFUA, not WP");
    assert_eq!(d[3], 8, "BLOCK DESCRIPTOR LENGTH");
    assert_eq!(
        &d[4..12],
        &[0, 0, 0x10, 0, 0, 0, 0x02, 0],
        "4096 blocks of 512"
    );
    assert_eq!(&d[12..14], &[0x01, 0x0A]);
    assert_eq!(&d[24..27], &[0x08, 0x12, 0x04], "caching page, WCE");
    assert_eq!(&d[44..46], &[0x0A, 0x0A]);
    assert_eq!(d.len(), 56);
    // DBD: no descriptor.
    let d = expect_data(&t.lun, &[0x1A, 0x08, 0x08, 0, 255, 0], &[], 255);
    assert_eq!((d[0], d[3], d[4]), (23, 0, 0x08));
    // Saved values: 39/00; unknown page: 24/00; subpage 01: 24/00.
    expect_sense(
        &t.lun,
        &[0x1A, 0, 0xC8, 0, 255, 0],
        &[],
        SenseKey::IllegalRequest,
        0x39,
        0,
    );
    expect_sense(
        &t.lun,
        &[0x1A, 0, 0x1C, 0, 255, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    expect_sense(
        &t.lun,
        &[0x1A, 0, 0x08, 1, 255, 0],
        &[],
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
}

#[test]
fn mode_sense10_long_lba_descriptor() {
    let t = dev();
    let cdb = [0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0]; // MODE SENSE(10), LLBAA, caching
    let d = expect_data(&t.lun, &cdb, &[], 255);
    assert_eq!(usize::from(u16::from_be_bytes([d[0], d[1]])) + 2, d.len());
    assert_eq!(d[4] & 1, 1, "LONGLBA");
    assert_eq!(&d[6..8], &[0, 16]);
    assert_eq!(&d[8..16], &4096u64.to_be_bytes());
    assert_eq!(&d[20..24], &512u32.to_be_bytes());
    assert_eq!(&d[24..27], &[0x08, 0x12, 0x04]);
}

#[test]
fn mode_select_toggles_wce_and_makes_writes_fua() {
    let t = dev();
    let mut page = expect_data(&t.lun, &[0x1A, 0x08, 0x08, 0, 255, 0], &[], 255); // current caching page, DBD
    page[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
    page[6] &= !0x04; // clear WCE
    let len = fit::<u8, _>(page.len());
    expect_good(&t.lun, &[0x15, 0x10, 0, 0, len, 0], &page); // MODE SELECT(6), PF
    assert!(!t.lun.write_cache_enabled());
    assert_eq!(t.mem.stats().flushes, 1, "disabling WCE flushed the cache");
    let d = expect_data(&t.lun, &[0x1A, 0x08, 0x08, 0, 255, 0], &[], 255);
    assert_eq!(d[6] & 0x04, 0);
    write16(&t.lun, 0, &pattern(1, 7));
    assert_eq!(t.mem.stats().fua_writes, 1, "WCE=0 writes through");
    // And back via MODE SELECT(10) with a block descriptor.
    let mut p10 = vec![0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0x10, 0, 0, 0, 0x02, 0];
    p10.extend_from_slice(&page[4..]);
    p10[8 + 8 + 2] |= 0x04;
    let l = fit::<u8, _>(p10.len());
    expect_good(&t.lun, &[0x55, 0x10, 0, 0, 0, 0, 0, 0, l, 0], &p10);
    assert!(t.lun.write_cache_enabled());
}

#[test]
fn mode_select_rejects_unchangeable_fields_and_short_lists() {
    let t = dev();
    let mut page = expect_data(&t.lun, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[], 255); // control page
    page[0] = 0;
    page[7] ^= 0x10; // QUEUE ALGORITHM MODIFIER is not changeable
    let len = fit::<u8, _>(page.len());
    let s = expect_sense(
        &t.lun,
        &[0x15, 0x10, 0, 0, len, 0],
        &page,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    assert_eq!(
        &s.to_fixed()[15..18],
        &[0x80, 0, 7],
        "SKSV, parameter list byte 7"
    );
    // Parameter list length larger than the data sent: INVALID FIELD IN
    // CDB (the kernel's target_cmd_size_check for control CDBs).
    expect_sense(
        &t.lun,
        &[0x15, 0x10, 0, 0, 40, 0],
        &page,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // SP=1.
    expect_sense(
        &t.lun,
        &[0x15, 0x11, 0, 0, len, 0],
        &page,
        SenseKey::IllegalRequest,
        0x24,
        0,
    );
    // Wrong block length in the descriptor.
    let bad = [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    expect_sense(
        &t.lun,
        &[0x15, 0x10, 0, 0, 12, 0],
        &bad,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
    // WCE without a volatile cache.
    let c = tcmud_core::backend::BackendCaps {
        volatile_cache: false,
        ..caps()
    };
    let t2 = dev_with(c, LunConfig::default());
    let mut p = expect_data(&t2.lun, &[0x1A, 0x08, 0x08, 0, 255, 0], &[], 255);
    p[0] = 0;
    p[6] |= 0x04;
    let l = fit::<u8, _>(p.len());
    expect_sense(
        &t2.lun,
        &[0x15, 0x10, 0, 0, l, 0],
        &p,
        SenseKey::IllegalRequest,
        0x26,
        0,
    );
}

/// SWP in the control mode page is changeable: while it is on, the LUN is
/// write-protected (WP in MODE SENSE, DATA PROTECT / WRITE PROTECTED on
/// writes and SANITIZE); turned off, writes work again.
#[test]
fn mode_select_swp_write_protects_the_lun() {
    let t = dev();
    // MODE SENSE(6) control page, changeable values: SWP (page byte 4 bit 3).
    let ch = expect_data(&t.lun, &[0x1A, 0x08, 0x4A, 0, 255, 0], &[], 255);
    assert_eq!(ch[4 + 4] & 0x08, 0x08, "SWP changeable");
    let mut page = expect_data(&t.lun, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[], 255);
    assert_eq!(page[2] & 0x80, 0, "no WP");
    page[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
    page[2] = 0;
    page[4 + 4] |= 0x08; // SWP
    let len = fit::<u8, _>(page.len());
    expect_good(&t.lun, &[0x15, 0x10, 0, 0, len, 0], &page);
    let now = expect_data(&t.lun, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[], 255);
    assert_eq!((now[2] & 0x80, now[8] & 0x08), (0x80, 0x08), "WP and SWP");
    expect_sense(
        &t.lun,
        &write16_cdb(0, 1, false),
        &pattern(1, 7),
        SenseKey::DataProtect,
        0x27,
        0,
    );
    let erase = [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]; // SANITIZE BLOCK ERASE
    expect_sense(&t.lun, &erase, &[], SenseKey::DataProtect, 0x27, 0);
    assert_eq!(read16(&t.lun, 0, 1), pattern(1, 0));
    page[4 + 4] &= !0x08;
    expect_good(&t.lun, &[0x15, 0x10, 0, 0, len, 0], &page);
    write16(&t.lun, 0, &pattern(1, 7));
    assert_eq!(read16(&t.lun, 0, 1), pattern(1, 7));
}
