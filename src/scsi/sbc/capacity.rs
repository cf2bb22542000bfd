//! READ CAPACITY (10) and (16).

use super::limits;
use crate::scsi::cdb::ReadCapacity10;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// READ CAPACITY(10): last LBA (FFFFFFFFh when it does not fit) and block
/// length.
pub(crate) fn read_capacity10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ReadCapacity10::parse(ctx.cdb)?;
    if !cdb.pmi() && cdb.lba() != 0 {
        return Err(ScsiError::cdb(2, 7)); // LBA without PMI
    }
    let last = ctx.caps.num_blocks.saturating_sub(1);
    let mut d = u32::try_from(last)
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    d.extend_from_slice(&ctx.caps.block_size.to_be_bytes());
    Ok(Reply::Data(d))
}

/// READ CAPACITY(16): also LBPME/LBPRZ and the physical block exponent.
pub(crate) fn read_capacity16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let caps = &ctx.caps;
    let mut d = vec![0u8; 32];
    d[..8].copy_from_slice(&caps.num_blocks.saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&caps.block_size.to_be_bytes());
    d[13] = limits(ctx.state, caps).lbppbe & 0x0F;
    if caps.thin {
        d[14] |= 0x80; // LBPME
        if caps.zeroes_after_unmap {
            d[14] |= 0x40; // LBPRZ
        }
    }
    Ok(Reply::Data(d))
}
