//! ORWRITE(16) (SBC-4 5.11): each data-out byte ORed into the block's
//! byte, atomically per command (the LUN's COMPARE AND WRITE gate is held
//! from the read to the write, so no other write interleaves).

use super::{check_writable, BlockRequest};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// ORWRITE(16): ORPROTECT must be 0 (no protection information); DPO is
/// a hint; FUA as for WRITE.
pub(crate) fn orwrite16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let req = BlockRequest::sixteen(ctx.cdb)?;
    req.check_protect()?;
    let ext = req.extent(ctx)?;
    check_writable(&ctx.caps)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let data = ctx
        .data_out
        .get(..ext.bytes)
        .ok_or_else(|| ScsiError::cdb(req.len_byte, 7))?;
    let fua = ctx.state.effective_fua(&ctx.caps, req.fua);
    let backend = ctx.state.backend();
    let _gate = ctx.state.caw_gate();
    let mut blocks = vec![0u8; ext.bytes];
    backend.read(ext.lba, &mut blocks)?;
    blocks.iter_mut().zip(data).for_each(|(b, d)| *b |= d);
    backend.write(ext.lba, &blocks, fua)?;
    Ok(Reply::None)
}
