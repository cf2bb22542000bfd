//! RECEIVE COPY RESULTS (SPC-4 6.18): OPERATING PARAMETERS, COPY STATUS
//! and FAILED SEGMENT DETAILS, from what [`held`](super::held) keeps.

use super::{
    MAX_CONCURRENT_COPIES, MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH,
    MAX_SEGMENT_DESCRIPTORS,
};
use crate::scsi::cdb::ThirdPartyCopy;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::fixed_len::u8_len;
use crate::scsi::sense::status;

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS (SPC-4 6.18.4).
pub(crate) fn operating_parameters(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    check_cdb(ctx.cdb, false)?;
    let bs = ctx.caps.block_size.max(1);
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    // MAXIMUM SEGMENT LENGTH: what one block → block descriptor can name.
    let max_segment = u32::from(u16::MAX).saturating_mul(bs);
    d[16..20].copy_from_slice(&max_segment.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE
    // TRANSFER SIZE: 0 (no inline data, no data held, no streams).
    d[34..36].copy_from_slice(&u16::from(MAX_CONCURRENT_COPIES).to_be_bytes()); // TOTAL CONCURRENT COPIES
    d[36] = MAX_CONCURRENT_COPIES; // MAXIMUM CONCURRENT COPIES
    d[37] = u8::try_from(bs.trailing_zeros()).unwrap_or(0); // DATA SEGMENT GRANULARITY (log2)
    let implemented = [
        super::params::SEGMENT_BLOCK_TO_BLOCK,
        super::params::CSCD_IDENTIFICATION,
    ];
    d[43] = u8_len(implemented.len()); // IMPLEMENTED DESCRIPTOR LIST LENGTH
    d.extend_from_slice(&implemented);
    let len = u32::try_from(d.len() - 4).unwrap_or(0);
    d[..4].copy_from_slice(&len.to_be_bytes()); // AVAILABLE DATA
    Ok(Reply::Data(d))
}

/// RECEIVE COPY RESULTS, COPY STATUS (SPC-4 6.18.3): INVALID FIELD IN CDB
/// for a list identifier with nothing held.
pub(crate) fn copy_status(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let id = check_cdb(ctx.cdb, true)?;
    let o = ctx.state.copies().held_outcome(id, false)?;
    let mut d = vec![0u8; 12];
    d[3] = 8; // AVAILABLE DATA
    d[4] = match o.failed {
        None => 0x01,    // completed, no errors
        Some(_) => 0x02, // completed with errors
    };
    d[5..7].copy_from_slice(&o.segments.to_be_bytes()); // SEGMENTS PROCESSED
    let (units, count) = transfer_count(o.bytes);
    d[7] = units; // TRANSFER COUNT UNITS
    d[8..12].copy_from_slice(&count.to_be_bytes()); // TRANSFER COUNT
    Ok(Reply::Data(d))
}

/// RECEIVE COPY RESULTS, FAILED SEGMENT DETAILS (SPC-4 6.18.5): the
/// status and sense data a failed copy ended with, returned once.
pub(crate) fn failed_segment_details(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let id = check_cdb(ctx.cdb, true)?;
    let o = ctx.state.copies().held_outcome(id, true)?;
    let sense = o.failed.map(|s| s.to_fixed()).unwrap_or_default();
    let mut d = vec![0u8; 60];
    d[56] = status::CHECK_CONDITION; // COPY COMMAND STATUS
    d[58..60].copy_from_slice(&u16::try_from(sense.len()).unwrap_or(0).to_be_bytes());
    d.extend_from_slice(&sense);
    let len = u32::try_from(d.len() - 4).unwrap_or(0);
    d[..4].copy_from_slice(&len.to_be_bytes()); // AVAILABLE DATA
    Ok(Reply::Data(d))
}

/// The reserved bytes of a RECEIVE COPY RESULTS CDB; the LIST IDENTIFIER
/// when the service action uses one (else it must be 0).
fn check_cdb(cdb: &[u8], uses_list_id: bool) -> Result<u8, ScsiError> {
    let c = ThirdPartyCopy::parse(cdb)?;
    if !uses_list_id && c.list_identifier() != 0 {
        return Err(ScsiError::cdb(2, 7));
    }
    if let Some(b) = c.reserved_byte(3) {
        return Err(ScsiError::cdb(b, 7));
    }
    Ok(c.list_identifier())
}

/// TRANSFER COUNT UNITS and TRANSFER COUNT for `bytes`: the smallest unit
/// (bytes, KiB, MiB, ... ) in which the count fits 32 bits.
fn transfer_count(bytes: u64) -> (u8, u32) {
    let mut v = bytes;
    for units in 0u8..=6 {
        if let Ok(n) = u32::try_from(v) {
            return (units, n);
        }
        v >>= 10;
    }
    (6, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::transfer_count;

    #[test]
    fn transfer_count_picks_the_unit_that_fits() {
        assert_eq!(transfer_count(0), (0, 0));
        assert_eq!(transfer_count(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(transfer_count(1 << 32), (1, 1 << 22));
        assert_eq!(transfer_count(u64::MAX), (4, (1 << 24) - 1));
    }
}
