//! SYNCHRONIZE CACHE and PRE-FETCH (10/16).

use super::BlockRequest;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::extent::Extent;

/// SYNCHRONIZE CACHE(10).
pub(crate) fn sync_cache10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    sync_cache(ctx, BlockRequest::ten(ctx.cdb)?)
}
/// SYNCHRONIZE CACHE(16).
pub(crate) fn sync_cache16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    sync_cache(ctx, BlockRequest::sixteen(ctx.cdb)?)
}
/// PRE-FETCH(10).
pub(crate) fn prefetch10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    prefetch(ctx, BlockRequest::ten(ctx.cdb)?)
}
/// PRE-FETCH(16).
pub(crate) fn prefetch16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    prefetch(ctx, BlockRequest::sixteen(ctx.cdb)?)
}

/// The range named by LBA and NUMBER OF LOGICAL BLOCKS (0: to the end).
fn range(ctx: &Ctx<'_>, req: &BlockRequest) -> Result<Extent, ScsiError> {
    let blocks = match req.blocks {
        0 => ctx
            .caps
            .num_blocks
            .checked_sub(req.lba)
            .ok_or(ScsiError::LbaOutOfRange)?,
        n => u64::from(n),
    };
    Extent::new(req.lba, blocks, ctx.caps.num_blocks, 1)
}

/// Flushes the whole backend (a range flush would cost the same).
fn sync_cache(ctx: &mut Ctx<'_>, req: BlockRequest) -> Result<Reply, ScsiError> {
    range(ctx, &req)?;
    ctx.state.backend().flush()?;
    Ok(Reply::None)
}

/// There is no cache to load: GOOD after the range check.
fn prefetch(ctx: &mut Ctx<'_>, req: BlockRequest) -> Result<Reply, ScsiError> {
    range(ctx, &req)?;
    Ok(Reply::None)
}
