//! READ and WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16).

use super::{check_writable, BlockRequest};
use crate::scsi::error::ScsiError;
use crate::scsi::table::{Ctx, Reply};

/// READ(6).
pub(crate) fn read6(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    read(ctx, BlockRequest::six(ctx.cdb)?)
}
/// READ(10).
pub(crate) fn read10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    read(ctx, BlockRequest::ten(ctx.cdb)?)
}
/// READ(12).
pub(crate) fn read12(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    read(ctx, BlockRequest::twelve(ctx.cdb)?)
}
/// READ(16).
pub(crate) fn read16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    read(ctx, BlockRequest::sixteen(ctx.cdb)?)
}
/// WRITE(6).
pub(crate) fn write6(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::six(ctx.cdb)?, false)
}
/// WRITE(10).
pub(crate) fn write10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::ten(ctx.cdb)?, false)
}
/// WRITE(12).
pub(crate) fn write12(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::twelve(ctx.cdb)?, false)
}
/// WRITE(16).
pub(crate) fn write16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::sixteen(ctx.cdb)?, false)
}
/// WRITE AND VERIFY(10): the write is made durable (the verification of
/// data just written cannot fail).
pub(crate) fn write_verify10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::ten(ctx.cdb)?, true)
}
/// WRITE AND VERIFY(12).
pub(crate) fn write_verify12(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::twelve(ctx.cdb)?, true)
}
/// WRITE AND VERIFY(16).
pub(crate) fn write_verify16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    write(ctx, BlockRequest::sixteen(ctx.cdb)?, true)
}

/// Reads straight into `data_in` (DPO and RARC are hints and ignored).
fn read(ctx: &mut Ctx<'_>, req: BlockRequest) -> Result<Reply, ScsiError> {
    req.check_protect()?;
    let ext = req.extent(ctx)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let backend = ctx.lun.backend();
    if let Some(buf) = ctx.data_in.get_mut(..ext.bytes) {
        backend.read(ext.lba, buf)?;
        return Ok(Reply::InPlace(ext.bytes));
    }
    // The initiator's buffer is shorter than the transfer: read it all,
    // return what fits.
    let mut buf = vec![0u8; ext.bytes];
    backend.read(ext.lba, &mut buf)?;
    let n = ctx.data_in.len();
    if let Some(src) = buf.get(..n) {
        ctx.data_in.copy_from_slice(src);
    }
    Ok(Reply::InPlace(n))
}

fn write(ctx: &mut Ctx<'_>, req: BlockRequest, verify: bool) -> Result<Reply, ScsiError> {
    req.check_protect()?;
    let ext = req.extent(ctx)?;
    check_writable(&ctx.caps)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let data = ctx
        .data_out
        .get(..ext.bytes)
        .ok_or(ScsiError::cdb(req.len_byte, 7))?;
    let fua = ctx.lun.effective_fua(&ctx.caps, req.fua() || verify);
    let _gate = ctx.lun.write_gate();
    ctx.lun.backend().write(ext.lba, data, fua)?;
    Ok(Reply::None)
}
