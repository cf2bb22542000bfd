//! Helpers shared by the scsi_* integration tests.

use std::sync::Arc;

use super::narrow::fit;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BlockBackend};
use tcmud_core::scsi::{status, Lun, LunConfig, ScsiResponse, Sense, SenseKey};

pub const BS: u32 = 512;
pub const BLOCKS: u64 = 4096;

pub struct Dev {
    pub lun: Lun,
    pub mem: Arc<MemBackend>,
}

/// Default thin MemBackend caps used by the tests.
pub fn caps() -> BackendCaps {
    MemBackend::new(BS, BLOCKS).caps()
}

/// A LUN over a MemBackend with `caps`, with the power-on unit attention
/// already consumed.
pub fn dev_with(caps: BackendCaps, cfg: LunConfig) -> Dev {
    let mem = Arc::new(MemBackend::with_caps(caps));
    let lun = Lun::new(cfg, mem.clone());
    let r = lun.execute(&[0x00, 0, 0, 0, 0, 0], &[], &mut []);
    assert_eq!(r.status, status::CHECK_CONDITION, "power-on UA expected");
    Dev { lun, mem }
}

pub fn dev() -> Dev {
    dev_with(caps(), LunConfig::default())
}

/// Runs a command with a data-in buffer of `in_len` bytes.
pub fn run(lun: &Lun, cdb: &[u8], out: &[u8], in_len: usize) -> (ScsiResponse, Vec<u8>) {
    let mut buf = vec![0xA5u8; in_len];
    let r = lun.execute(cdb, out, &mut buf);
    assert!(r.data_in_len <= in_len);
    buf.truncate(r.data_in_len);
    (r, buf)
}

/// Asserts GOOD and returns the data-in bytes.
#[track_caller]
pub fn expect_data(lun: &Lun, cdb: &[u8], out: &[u8], in_len: usize) -> Vec<u8> {
    let (r, data) = run(lun, cdb, out, in_len);
    assert_eq!(r.status, status::GOOD, "expected GOOD, got {:?}", r.sense);
    assert!(r.sense.is_none());
    data
}

/// Asserts GOOD with no data.
#[track_caller]
pub fn expect_good(lun: &Lun, cdb: &[u8], out: &[u8]) {
    let data = expect_data(lun, cdb, out, 0);
    assert!(data.is_empty());
}

/// Asserts CHECK CONDITION with this key/ASC/ASCQ; returns the sense.
#[track_caller]
pub fn expect_sense(lun: &Lun, cdb: &[u8], out: &[u8], key: SenseKey, asc: u8, ascq: u8) -> Sense {
    let (r, _) = run(lun, cdb, out, 4096);
    assert_eq!(
        r.status,
        status::CHECK_CONDITION,
        "expected CHECK CONDITION for {cdb:02x?}"
    );
    let s = r.sense.expect("sense");
    let fixed = s.to_fixed();
    assert_eq!(fixed[0] & 0x7F, 0x70, "fixed format, current");
    assert_eq!(fixed[2] & 0x0F, key as u8, "sense key: {s:?}");
    assert_eq!((fixed[12], fixed[13]), (asc, ascq), "ASC/ASCQ: {s:?}");
    s
}

/// READ(16) of `blocks` blocks at `lba`.
pub fn read16(lun: &Lun, lba: u64, blocks: u32) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x88; // READ(16)
    cdb[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes()); // TRANSFER LENGTH
    expect_data(lun, &cdb, &[], blocks as usize * BS as usize)
}

/// WRITE(16) CDB.
pub fn write16_cdb(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8A; // WRITE(16)
    cdb[1] = if fua { 0x08 } else { 0 }; // FUA
    cdb[2..10].copy_from_slice(&lba.to_be_bytes()); // LOGICAL BLOCK ADDRESS
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes()); // TRANSFER LENGTH
    cdb
}

/// WRITE(16) of `data` at `lba`.
pub fn write16(lun: &Lun, lba: u64, data: &[u8]) {
    let cdb = write16_cdb(lba, fit(data.len() / BS as usize), false);
    expect_good(lun, &cdb, data);
}

/// `blocks` blocks filled with `byte`.
pub fn pattern(blocks: usize, byte: u8) -> Vec<u8> {
    vec![byte; blocks * BS as usize]
}
