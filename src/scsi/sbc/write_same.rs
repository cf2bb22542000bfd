//! WRITE SAME (10/16) with the UNMAP and NDOB bits.

use super::{check_writable, limits};
use crate::backend::BlockBackend;
use crate::scsi::cdb::{Block10, Block16};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::extent::Extent;

/// Largest single backend write while replicating a pattern.
const CHUNK_BYTES: usize = 1 << 20;

/// The byte-1 fields of WRITE SAME (10/16).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteSameBits {
    /// WRPROTECT.
    pub wrprotect: u8,
    /// ANCHOR.
    pub anchor: bool,
    /// UNMAP.
    pub unmap: bool,
    /// NDOB (WRITE SAME(16) only).
    pub ndob: bool,
}

impl WriteSameBits {
    /// WRITE SAME(10): byte 1 bit 0 is reserved there, so no NDOB.
    pub(crate) fn ten(c: &Block10<'_>) -> WriteSameBits {
        WriteSameBits {
            wrprotect: c.protect(),
            anchor: c.anchor(),
            unmap: c.unmap(),
            ndob: false,
        }
    }
    /// WRITE SAME(16).
    pub(crate) fn sixteen(c: &Block16<'_>) -> WriteSameBits {
        WriteSameBits {
            wrprotect: c.protect(),
            anchor: c.anchor(),
            unmap: c.unmap(),
            ndob: c.ndob(),
        }
    }
}

/// WRITE SAME(10).
pub(crate) fn write_same10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = Block10::parse(ctx.cdb)?;
    write_same(ctx, c.lba(), c.transfer_length(), WriteSameBits::ten(&c), 7)
}

/// WRITE SAME(16).
pub(crate) fn write_same16(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = Block16::parse(ctx.cdb)?;
    write_same(
        ctx,
        c.lba(),
        c.transfer_length(),
        WriteSameBits::sixteen(&c),
        10,
    )
}

fn write_same(
    ctx: &mut Ctx<'_>,
    lba: u64,
    blocks: u32,
    bits: WriteSameBits,
    len_byte: u16,
) -> Result<Reply, ScsiError> {
    if bits.wrprotect != 0 {
        return Err(ScsiError::cdb(1, 7)); // WRPROTECT
    }
    if bits.anchor {
        return Err(ScsiError::cdb(1, 4)); // ANCHOR: not supported (ANC_SUP=0)
    }
    let WriteSameBits { unmap, ndob, .. } = bits;
    if unmap && !ctx.caps.thin {
        return Err(ScsiError::cdb(1, 3));
    }
    // WSNZ=1: zero blocks is invalid; so is more than MAXIMUM WRITE SAME LENGTH.
    if blocks == 0 || u64::from(blocks) > limits(ctx.state, &ctx.caps).max_write_same {
        return Err(ScsiError::cdb(len_byte, 7));
    }
    let ext = Extent::new(lba, u64::from(blocks), ctx.caps.num_blocks, 1)?;
    check_writable(&ctx.caps)?;
    let bs = usize::try_from(ctx.caps.block_size).unwrap_or(usize::MAX);
    let zero_block;
    let pattern = if ndob {
        zero_block = vec![0u8; bs];
        &zero_block[..]
    } else if ctx.data_out.len() == bs {
        ctx.data_out
    } else {
        // The data-out buffer must be exactly one logical block.
        return Err(ScsiError::cdb(len_byte, 7));
    };
    let fua = ctx.state.effective_fua(&ctx.caps, false);
    let backend = ctx.state.backend();
    let _gate = ctx.state.write_gate();
    if pattern.iter().all(|&b| b == 0) {
        // Deallocate only when asked to and when deallocated blocks read zero.
        backend.write_zeroes(ext.lba, ext.blocks, unmap && ctx.caps.zeroes_after_unmap)?;
        if fua {
            backend.flush()?;
        }
        return Ok(Reply::None);
    }
    write_pattern(backend.as_ref(), &ext, pattern, fua)?;
    Ok(Reply::None)
}

/// Writes `pattern` (one block) to every block of `ext`, up to 1 MiB per
/// backend call.
fn write_pattern(
    backend: &dyn BlockBackend,
    ext: &Extent,
    pattern: &[u8],
    fua: bool,
) -> Result<(), ScsiError> {
    let bs = pattern.len().max(1);
    let per_io = (CHUNK_BYTES / bs).max(1);
    let buf: Vec<u8> = pattern.iter().copied().cycle().take(bs * per_io).collect();
    let mut done = 0u64;
    while done < ext.blocks {
        let n = u64::try_from(per_io).unwrap_or(1).min(ext.blocks - done);
        let len = usize::try_from(n).unwrap_or(0) * bs;
        backend.write(ext.lba + done, buf.get(..len).unwrap_or_default(), fua)?;
        done += n;
    }
    Ok(())
}
