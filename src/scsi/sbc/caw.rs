//! COMPARE AND WRITE (SBC-3 5.2): atomic per LUN.

use super::{check_writable, first_difference, limits};
use crate::backend::CompareWrite;
use crate::scsi::cdb::CompareAndWrite;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::extent::Extent;

/// COMPARE AND WRITE: the data-out buffer holds the verify blocks followed
/// by the write blocks. The LUN's CAW gate is held exclusively from the
/// read to the write, so no other write to the LUN interleaves.
pub(crate) fn compare_and_write(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = CompareAndWrite::parse(ctx.cdb)?;
    if c.wrprotect() != 0 {
        return Err(ScsiError::cdb(1, 7)); // WRPROTECT
    }
    let blocks = c.number_of_logical_blocks();
    if blocks > limits(ctx.state, &ctx.caps).max_compare_write {
        return Err(ScsiError::cdb(13, 7));
    }
    let ext = Extent::new(
        c.lba(),
        u64::from(blocks),
        ctx.caps.num_blocks,
        ctx.caps.block_size,
    )?;
    // The data-out buffer must hold exactly the verify and the write blocks,
    // also when NUMBER OF LOGICAL BLOCKS is 0 (then none may be sent): LIO
    // passes COMPARE AND WRITE to TCMU without checking the length, and
    // rejects such a mismatch itself for the backends it emulates.
    if ext.bytes.checked_mul(2) != Some(ctx.data_out.len()) {
        return Err(ScsiError::cdb(13, 7));
    }
    check_writable(&ctx.caps)?;
    if blocks == 0 {
        return Ok(Reply::None);
    }
    let (verify, write) = ctx.data_out.split_at(ext.bytes);
    let fua = ctx.state.effective_fua(&ctx.caps, c.fua());
    let backend = ctx.state.backend();
    if let Some(r) = backend.compare_and_write(ext.lba, verify, write, fua) {
        return match r? {
            CompareWrite::Written => Ok(Reply::None),
            CompareWrite::Miscompare(offset) => Err(ScsiError::Miscompare { offset }),
        };
    }
    let _gate = ctx.state.caw_gate();
    let mut current = vec![0u8; ext.bytes];
    backend.read(ext.lba, &mut current)?;
    if let Some(offset) = first_difference(&current, verify) {
        return Err(ScsiError::Miscompare {
            offset: offset as u64,
        });
    }
    backend.write(ext.lba, write, fua)?;
    Ok(Reply::None)
}
