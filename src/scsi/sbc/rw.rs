//! READ and WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16).

use super::{check_writable, BlockRequest};
use crate::backend::{BlockSink, SinkPrefix};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

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

/// Reads straight into the data-in buffer: the caller's sink (e.g. the
/// ring's data area) or the plain buffer (DPO and RARC are hints and
/// ignored).
fn read(ctx: &mut Ctx<'_>, req: BlockRequest) -> Result<Reply, ScsiError> {
    req.check_protect()?;
    let ext = req.extent(ctx)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let backend = ctx.state.backend();
    let mut plain: &mut [u8];
    let sink: &mut dyn BlockSink = match ctx.direct.as_mut() {
        Some(d) => &mut *d.inb,
        None => {
            plain = &mut *ctx.data_in;
            &mut plain
        }
    };
    if let Some(mut window) = SinkPrefix::new(&mut *sink, ext.bytes) {
        if ctx.nowait {
            if !backend.read_nowait(ext.lba, &mut window)? {
                return Err(ScsiError::WouldBlock);
            }
        } else {
            backend.read_into(ext.lba, &mut window)?;
        }
        return Ok(Reply::InPlace(ext.bytes));
    }
    if ctx.nowait {
        return Err(ScsiError::WouldBlock);
    }
    // The initiator's buffer is shorter than the transfer: read it all,
    // return what fits.
    let mut buf = vec![0u8; ext.bytes];
    backend.read(ext.lba, &mut buf)?;
    let n = sink.len();
    sink.write_at(0, buf.get(..n).unwrap_or_default())
        .map_err(ScsiError::DataTransfer)?;
    Ok(Reply::InPlace(n))
}

/// Writes straight from the data-out: the caller's source or the plain
/// bytes.
fn write(ctx: &mut Ctx<'_>, req: BlockRequest, verify: bool) -> Result<Reply, ScsiError> {
    req.check_protect()?;
    let ext = req.extent(ctx)?;
    check_writable(&ctx.caps)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let data = ctx.data_out_prefix(ext.bytes, req.len_byte)?;
    let fua = ctx.state.effective_fua(&ctx.caps, req.fua || verify);
    let _gate = ctx.state.write_gate();
    ctx.state.backend().write_from(ext.lba, &data, fua)?;
    Ok(Reply::None)
}
