//! VERIFY (10/12/16): BYTCHK 00b checks the medium, 01b compares the
//! data-out buffer, 11b compares one data-out block against every block.

use super::{first_difference, BlockRequest};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// VERIFY(10).
pub(crate) fn verify10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    verify(ctx, BlockRequest::ten(ctx.cdb)?)
}
/// VERIFY(12).
pub(crate) fn verify12(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    verify(ctx, BlockRequest::twelve(ctx.cdb)?)
}
/// VERIFY(16).
pub(crate) fn verify16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    verify(ctx, BlockRequest::sixteen(ctx.cdb)?)
}

fn verify(ctx: &mut Ctx<'_>, req: BlockRequest) -> Result<Reply, ScsiError> {
    req.check_protect()?;
    let bytchk = req.bytchk;
    if bytchk == 0b10 {
        return Err(ScsiError::cdb(1, 2));
    }
    let ext = req.extent(ctx)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let mut medium = vec![0u8; ext.bytes];
    ctx.state.backend().read(ext.lba, &mut medium)?;
    let bs = usize::try_from(ctx.caps.block_size)
        .unwrap_or(usize::MAX)
        .max(1);
    let diff = match bytchk {
        0b00 => None,
        0b01 => {
            let expected = ctx
                .data_out
                .get(..ext.bytes)
                .ok_or_else(|| ScsiError::cdb(req.len_byte, 7))?;
            first_difference(&medium, expected)
        }
        _ => {
            let block = ctx
                .data_out
                .get(..bs)
                .ok_or_else(|| ScsiError::cdb(req.len_byte, 7))?;
            medium
                .chunks(bs)
                .enumerate()
                .find_map(|(i, m)| first_difference(m, block).map(|o| i * bs + o))
        }
    };
    match diff {
        Some(offset) => Err(ScsiError::Miscompare {
            offset: offset as u64,
        }),
        None => Ok(Reply::None),
    }
}
