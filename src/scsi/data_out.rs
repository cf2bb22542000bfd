//! The data-out length each CDB implies, checked once by the dispatcher
//! before any handler runs and before any data-out is copied (so hostile
//! iovec lengths never size an allocation). The semantics are the kernel's
//! `target_cmd_size_check`:
//!
//! - a data CDB (WRITE, WRITE AND VERIFY, VERIFY with BYTCHK, WRITE SAME)
//!   must come with exactly the bytes its CDB names; anything else is
//!   ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (0E/03),
//!   never a silent truncation or a partial write;
//! - a parameter list (MODE SELECT, UNMAP, SEND DIAGNOSTIC) shorter than its
//!   PARAMETER LIST LENGTH is INVALID FIELD IN CDB (the kernel's "overflow
//!   for WRITE control CDB"); bytes beyond it are not part of the command
//!   and are not read.
//!
//! COMPARE AND WRITE keeps INVALID FIELD IN CDB at NUMBER OF LOGICAL BLOCKS
//! for a mismatch: libiscsi sends 256 blocks of data with that one-byte
//! field wrapped to 0 and expects exactly that answer.

use super::cdb::{
    Block10, Block12, Block16, CompareAndWrite, MaintenanceOut, ModeSelect10, ModeSelect6, Rw6,
    SendDiagnostic, ThirdPartyCopy, WriteAtomic16,
};
use super::error::ScsiError;

/// Checks the data-out length `sent` against the CDB (with logical blocks
/// of `block_size` bytes); returns how many data-out bytes the command
/// uses.
pub(crate) type OutCheck = fn(cdb: &[u8], block_size: u32, sent: usize) -> Result<usize, ScsiError>;

/// `blocks` logical blocks, exactly.
fn exact_blocks(blocks: u32, block_size: u32, sent: usize) -> Result<usize, ScsiError> {
    let expected = u64::from(blocks) * u64::from(block_size);
    match usize::try_from(expected) {
        Ok(n) if n == sent => Ok(n),
        _ => Err(ScsiError::DataOutLength {
            expected,
            sent: sent as u64,
        }),
    }
}

/// A parameter list of `len` bytes whose length field is CDB byte `byte`.
fn param_list(len: usize, byte: u16, sent: usize) -> Result<usize, ScsiError> {
    if sent < len {
        return Err(ScsiError::cdb(byte, 7));
    }
    Ok(len)
}

/// WRITE(6): TRANSFER LENGTH blocks (0 means 256).
pub(crate) fn write6(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    exact_blocks(Rw6::parse(cdb)?.transfer_length(), bs, sent)
}
/// WRITE / WRITE AND VERIFY (10).
pub(crate) fn write10(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    exact_blocks(Block10::parse(cdb)?.transfer_length(), bs, sent)
}
/// WRITE / WRITE AND VERIFY (12).
pub(crate) fn write12(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    exact_blocks(Block12::parse(cdb)?.transfer_length(), bs, sent)
}
/// WRITE / WRITE AND VERIFY (16).
pub(crate) fn write16(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    exact_blocks(Block16::parse(cdb)?.transfer_length(), bs, sent)
}

/// WRITE ATOMIC(16): its 16-bit TRANSFER LENGTH.
pub(crate) fn write_atomic16(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    exact_blocks(
        u32::from(WriteAtomic16::parse(cdb)?.transfer_length()),
        bs,
        sent,
    )
}

/// VERIFY: BYTCHK 00b sends nothing, 01b the VERIFICATION LENGTH's blocks,
/// 11b one block (none when the length is 0); 10b is reserved (INVALID
/// FIELD IN CDB, whatever was sent).
fn verify(bytchk: u8, blocks: u32, bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let n = match bytchk {
        0b00 => 0,
        0b01 => blocks,
        0b11 => blocks.min(1),
        _ => return Err(ScsiError::cdb(1, 2)),
    };
    exact_blocks(n, bs, sent)
}
/// VERIFY(10).
pub(crate) fn verify10(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let c = Block10::parse(cdb)?;
    verify(c.bytchk(), c.transfer_length(), bs, sent)
}
/// VERIFY(12).
pub(crate) fn verify12(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let c = Block12::parse(cdb)?;
    verify(c.bytchk(), c.transfer_length(), bs, sent)
}
/// VERIFY(16).
pub(crate) fn verify16(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let c = Block16::parse(cdb)?;
    verify(c.bytchk(), c.transfer_length(), bs, sent)
}

/// WRITE SAME(10): one block.
pub(crate) fn write_same10(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    Block10::parse(cdb)?;
    exact_blocks(1, bs, sent)
}
/// WRITE SAME(16): one block, none with NDOB.
pub(crate) fn write_same16(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let ndob = Block16::parse(cdb)?.ndob();
    exact_blocks(u32::from(!ndob), bs, sent)
}

/// COMPARE AND WRITE: the verify and the write blocks.
pub(crate) fn compare_and_write(cdb: &[u8], bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let blocks = u32::from(CompareAndWrite::parse(cdb)?.number_of_logical_blocks());
    exact_blocks(blocks * 2, bs, sent).map_err(|_| ScsiError::cdb(13, 7))
}

/// MODE SELECT(6): PARAMETER LIST LENGTH in byte 4.
pub(crate) fn mode_select6(cdb: &[u8], _bs: u32, sent: usize) -> Result<usize, ScsiError> {
    param_list(
        usize::from(ModeSelect6::parse(cdb)?.parameter_list_length()),
        4,
        sent,
    )
}
/// MODE SELECT(10) and UNMAP: PARAMETER LIST LENGTH in bytes 7-8.
pub(crate) fn param_list10(cdb: &[u8], _bs: u32, sent: usize) -> Result<usize, ScsiError> {
    // The same field in both: MODE SELECT(10)'s view reads it for either.
    let len = ModeSelect10::parse(cdb)?.parameter_list_length();
    param_list(usize::from(len), 7, sent)
}
/// EXTENDED COPY: PARAMETER LIST LENGTH in bytes 10-13; a list longer
/// than the copy manager takes ([`MAX_PARAMETER_LIST`]) is PARAMETER LIST
/// LENGTH ERROR before anything is copied.
///
/// [`MAX_PARAMETER_LIST`]: super::copy::MAX_PARAMETER_LIST
pub(crate) fn extended_copy(cdb: &[u8], _bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let len = ThirdPartyCopy::parse(cdb)?.length();
    if len > super::copy::MAX_PARAMETER_LIST {
        return Err(ScsiError::ParameterListLength);
    }
    param_list(usize::try_from(len).unwrap_or(usize::MAX), 10, sent)
}
/// SET TARGET PORT GROUPS: PARAMETER LIST LENGTH in bytes 6-9.
pub(crate) fn maintenance_out(cdb: &[u8], _bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let len = MaintenanceOut::parse(cdb)?.parameter_list_length();
    param_list(usize::try_from(len).unwrap_or(usize::MAX), 6, sent)
}
/// SEND DIAGNOSTIC: PARAMETER LIST LENGTH in bytes 3-4.
pub(crate) fn send_diagnostic(cdb: &[u8], _bs: u32, sent: usize) -> Result<usize, ScsiError> {
    let len = usize::from(SendDiagnostic::parse(cdb)?.parameter_list_length());
    param_list(len, 3, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cdbs_want_exactly_their_blocks() {
        // WRITE(10), 2 blocks.
        let w = [0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0];
        assert_eq!(write10(&w, 512, 1024).unwrap(), 1024);
        assert!(matches!(
            write10(&w, 512, 512),
            Err(ScsiError::DataOutLength { .. })
        ));
        assert!(matches!(
            write10(&w, 512, 4096),
            Err(ScsiError::DataOutLength { .. })
        ));
        // WRITE(6) of 0 = 256 blocks.
        assert_eq!(
            write6(&[0x0A, 0, 0, 0, 0, 0], 512, 256 * 512).unwrap(),
            256 * 512
        );
        // WRITE SAME(16) with NDOB: no data.
        let ws = [0x93, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
        assert_eq!(write_same16(&ws, 512, 0).unwrap(), 0);
        assert!(write_same16(&ws, 512, 512).is_err());
        // VERIFY(10) BYTCHK=00b: nothing; 11b: one block.
        let v0 = [0x2F, 0, 0, 0, 0, 0, 0, 0, 4, 0];
        assert_eq!(verify10(&v0, 512, 0).unwrap(), 0);
        assert!(verify10(&v0, 512, 512).is_err());
        let v3 = [0x2F, 0x06, 0, 0, 0, 0, 0, 0, 4, 0];
        assert_eq!(verify10(&v3, 512, 512).unwrap(), 512);
    }

    #[test]
    fn parameter_lists_use_the_cdb_length() {
        // UNMAP, PARAMETER LIST LENGTH 24.
        let u = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
        assert_eq!(param_list10(&u, 512, 1 << 30).unwrap(), 24);
        assert!(matches!(
            param_list10(&u, 512, 16),
            Err(ScsiError::InvalidFieldInCdb { byte: 7, .. })
        ));
    }
}
