//! WRITE ATOMIC(16) (SBC-4 5.48): the blocks are replaced all-or-nothing,
//! against concurrent reads and across a crash — offered only by backends
//! that say so (`BackendCaps::atomic_write`: thin volumes, which write every
//! chunk of it to new chunks and switch the mappings in one commit).
//!
//! VPD B0h advertises MAXIMUM ATOMIC TRANSFER LENGTH = MAXIMUM TRANSFER
//! LENGTH, ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY 0 (any),
//! and no atomic boundaries (MAXIMUM ATOMIC BOUNDARY SIZE 0), so a non-zero
//! ATOMIC BOUNDARY is an invalid field.

use super::{accepted_transfer, check_writable, max_transfer};
use crate::scsi::cdb::WriteAtomic16;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::extent::Extent;

/// VPD B0h's MAXIMUM ATOMIC TRANSFER LENGTH in blocks: MAXIMUM TRANSFER
/// LENGTH (0 when the backend has no atomic writes).
pub(crate) fn max_atomic_transfer(ctx: &Ctx<'_>) -> u32 {
    if ctx.caps.atomic_write {
        max_transfer(ctx.state, &ctx.caps).min(u32::from(u16::MAX))
    } else {
        0
    }
}

/// The longest WRITE ATOMIC(16) served: as for WRITE, what the ring
/// carries even beyond the advertised maximum (libiscsi over SG_IO sends up
/// to 240 blocks whatever VPD B0h says, and the kernel's own backstores
/// serve such writes); the whole command is atomic whatever its length.
fn accepted_atomic_transfer(ctx: &Ctx<'_>) -> u32 {
    if ctx.caps.atomic_write {
        accepted_transfer(ctx.state, &ctx.caps).min(u32::from(u16::MAX))
    } else {
        0
    }
}

/// WRITE ATOMIC(16): WRPROTECT must be 0 (no protection information), DPO
/// is a hint, FUA as for WRITE. The range is checked before the length
/// (a range beyond the end is LOGICAL BLOCK ADDRESS OUT OF RANGE whatever
/// its length, as libiscsi's BeyondEol expects).
pub(crate) fn write_atomic16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = WriteAtomic16::parse(ctx.cdb)?;
    if c.wrprotect() != 0 {
        return Err(ScsiError::cdb(1, 7));
    }
    if c.atomic_boundary() != 0 {
        return Err(ScsiError::cdb(10, 7));
    }
    let blocks = u32::from(c.transfer_length());
    let ext = Extent::new(
        c.lba(),
        u64::from(blocks),
        ctx.caps.num_blocks,
        ctx.caps.block_size,
    )?;
    if blocks > accepted_atomic_transfer(ctx) {
        return Err(ScsiError::cdb(12, 7));
    }
    check_writable(&ctx.caps)?;
    if ext.blocks == 0 {
        return Ok(Reply::None);
    }
    let data = ctx.data_out_prefix(ext.bytes, 12)?;
    let fua = ctx.state.effective_fua(&ctx.caps, c.fua());
    let _gate = ctx.state.write_gate();
    ctx.state.backend().write_atomic_from(ext.lba, &data, fua)?;
    Ok(Reply::None)
}
