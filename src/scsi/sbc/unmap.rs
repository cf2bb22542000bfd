//! UNMAP (SBC-3 5.28): every descriptor is validated before any block is
//! deallocated.

use super::{check_writable, limits};
use crate::scsi::cdb::Unmap;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::extent::Extent;

const HEADER: usize = 8;
const DESCRIPTOR: usize = 16;

/// UNMAP: deallocates the ranges of the parameter list's block descriptors.
pub(crate) fn unmap(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Unmap::parse(ctx.cdb)?;
    if cdb.anchor() {
        return Err(ScsiError::cdb(1, 0)); // anchored LBAs not supported
    }
    let list_len = usize::from(cdb.parameter_list_length());
    if list_len == 0 {
        return Ok(Reply::None);
    }
    if list_len < HEADER {
        return Err(ScsiError::ParameterListLength);
    }
    let list = ctx
        .data_out
        .get(..list_len)
        .ok_or(ScsiError::ParameterListLength)?;
    check_writable(&ctx.caps)?;
    let bd_len = list
        .get(2..4)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    // Only descriptors wholly inside both the stated and the sent length count.
    let usable = bd_len.min(list_len - HEADER) / DESCRIPTOR;
    if usable > usize::try_from(ctx.caps.max_unmap_descriptors).unwrap_or(usize::MAX) {
        return Err(ScsiError::param(2));
    }
    let max_blocks = limits(ctx.state, &ctx.caps).max_unmap;
    let mut ranges = Vec::with_capacity(usable);
    for i in 0..usable {
        let at = HEADER + i * DESCRIPTOR;
        let d = list
            .get(at..at + DESCRIPTOR)
            .ok_or(ScsiError::ParameterListLength)?;
        let lba = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let blocks = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        if blocks > max_blocks {
            return Err(ScsiError::param(at + 8));
        }
        ranges.push(Extent::new(lba, u64::from(blocks), ctx.caps.num_blocks, 1)?);
    }
    let _gate = ctx.state.write_gate();
    for r in ranges.iter().filter(|r| r.blocks > 0) {
        ctx.state.backend().unmap(r.lba, r.blocks)?;
    }
    Ok(Reply::None)
}
