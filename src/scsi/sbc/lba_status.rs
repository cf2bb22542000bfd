//! GET LBA STATUS (SERVICE ACTION IN(16), 12h).

use crate::scsi::cdb::Block16;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// Most descriptors returned by one command.
const MAX_DESCRIPTORS: usize = 64;

/// GET LBA STATUS: runs of mapped/deallocated blocks from the starting LBA,
/// as many as the allocation length can hold (at least one).
pub(crate) fn get_lba_status(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = Block16::parse(ctx.cdb)?;
    let start = c.lba();
    let end = ctx.caps.num_blocks;
    if start >= end {
        return Err(ScsiError::LbaOutOfRange);
    }
    let alloc = usize::try_from(c.transfer_length()).unwrap_or(usize::MAX);
    let wanted = (alloc.saturating_sub(8) / 16).clamp(1, MAX_DESCRIPTORS);
    let mut d = vec![0u8; 8];
    let mut lba = start;
    while lba < end && (d.len() - 8) / 16 < wanted {
        let remaining = end - lba;
        let a = ctx.state.backend().allocation(lba, remaining)?;
        let blocks = a.blocks.clamp(1, remaining).min(u64::from(u32::MAX));
        d.extend_from_slice(&lba.to_be_bytes());
        d.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
        d.push(if a.mapped { 0x00 } else { 0x01 }); // PROVISIONING STATUS
        d.extend_from_slice(&[0, 0, 0]);
        lba += blocks;
    }
    let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[..4].copy_from_slice(&len.to_be_bytes()); // PARAMETER DATA LENGTH
    Ok(Reply::Data(d))
}
