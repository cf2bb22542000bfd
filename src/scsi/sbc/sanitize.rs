//! SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE (thin backends that read
//! deallocated blocks as zeros: every block deallocated) and EXIT FAILURE
//! MODE. CRYPTOGRAPHIC ERASE is not supported (INVALID FIELD IN CDB, as for
//! any unknown service action).
//!
//! The operation runs to completion inside the command, IMMED or not (the
//! status then comes late, which an initiator cannot tell from a slow
//! device). While it runs every other command but INQUIRY, REPORT LUNS and
//! REQUEST SENSE gets NOT READY, SANITIZE IN PROGRESS (04/1B) and REQUEST
//! SENSE reports that; if it fails (or panics) the unit enters the failure
//! mode: MEDIUM ERROR, SANITIZE COMMAND FAILED (31/03) until a SANITIZE
//! completes, or until EXIT FAILURE MODE when the failed one had AUSE=1.

use super::check_writable;
use crate::scsi::cdb::Sanitize;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// SANITIZE's operation code.
pub(crate) const OPCODE: u8 = 0x48;

/// One overwrite write: at most this many bytes of pattern per backend
/// call.
const CHUNK_BYTES: usize = 1 << 20;

/// Checks the fields every service action shares.
fn parse<'a>(ctx: &Ctx<'a>) -> Result<Sanitize<'a>, ScsiError> {
    let c = Sanitize::parse(ctx.cdb)?;
    if c.znr() {
        return Err(ScsiError::cdb(1, 6)); // ZNR: not a zoned device
    }
    if let Some(byte) = c.reserved_byte() {
        return Err(ScsiError::cdb(byte, 7));
    }
    Ok(c)
}

/// A service action without a parameter list: PARAMETER LIST LENGTH 0.
fn no_parameter_list(c: &Sanitize<'_>) -> Result<(), ScsiError> {
    if c.parameter_list_length() != 0 {
        return Err(ScsiError::cdb(7, 7));
    }
    Ok(())
}

/// BLOCK ERASE: deallocates every block (a thin volume gives all its
/// chunks back; the blocks then read as zeros, VPD B1h WABEREQ 01b).
pub(crate) fn block_erase(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = parse(ctx)?;
    no_parameter_list(&c)?;
    check_writable(&ctx.caps)?;
    let run = ctx.state.sanitize_begin(c.ause())?;
    let backend = ctx.state.backend();
    let total = ctx.caps.num_blocks;
    let step = u64::from(ctx.caps.max_unmap_blocks.max(1));
    let mut lba = 0;
    while lba < total {
        let n = step.min(total - lba);
        backend.unmap(lba, n)?;
        lba += n;
    }
    backend.flush()?;
    run.finish();
    Ok(Reply::None)
}

/// OVERWRITE: every block gets the INITIALIZATION PATTERN, repeated to
/// fill it. The passes of OVERWRITE COUNT (inverting the pattern between
/// passes with INVERT) end in the same bytes whatever their number, so the
/// last pass is the one written.
pub(crate) fn overwrite(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = parse(ctx)?;
    let bs = usize::try_from(ctx.caps.block_size).unwrap_or(usize::MAX);
    let list_len = usize::from(c.parameter_list_length());
    // A 4-byte header and 1 to block-size bytes of pattern.
    if list_len < 5 || list_len > bs.saturating_add(4) {
        return Err(ScsiError::cdb(7, 7));
    }
    let list = ctx
        .data_out
        .get(..list_len)
        .ok_or(ScsiError::ParameterListLength)?;
    let (invert, test, count) = (list[0] & 0x80 != 0, (list[0] >> 5) & 0x03, list[0] & 0x1F);
    // A bad parameter list is INVALID FIELD IN CDB at PARAMETER LIST
    // LENGTH, as libiscsi expects: TEST not 0, OVERWRITE COUNT 0, or an
    // INITIALIZATION PATTERN LENGTH of 0, above the block size or beyond
    // the list.
    let ipl = usize::from(u16::from_be_bytes([list[2], list[3]]));
    if test != 0 || count == 0 || ipl == 0 || ipl > bs || ipl > list_len - 4 {
        return Err(ScsiError::cdb(7, 7));
    }
    check_writable(&ctx.caps)?;
    let mut pattern: Vec<u8> = list[4..4 + ipl].iter().copied().cycle().take(bs).collect();
    if invert && count % 2 == 0 {
        pattern.iter_mut().for_each(|b| *b = !*b);
    }
    let blocks_per_write = (CHUNK_BYTES / bs.max(1)).max(1);
    let buf = pattern.repeat(blocks_per_write);
    let run = ctx.state.sanitize_begin(c.ause())?;
    let backend = ctx.state.backend();
    let total = ctx.caps.num_blocks;
    let mut lba = 0;
    while lba < total {
        let n = (blocks_per_write as u64).min(total - lba);
        let len = usize::try_from(n).unwrap_or(blocks_per_write) * bs;
        backend.write(lba, buf.get(..len).unwrap_or_default(), false)?;
        lba += n;
    }
    backend.flush()?;
    run.finish();
    Ok(Reply::None)
}

/// EXIT FAILURE MODE: leaves the failure mode of a SANITIZE that failed
/// with AUSE=1.
pub(crate) fn exit_failure_mode(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let c = parse(ctx)?;
    no_parameter_list(&c)?;
    ctx.state.sanitize_exit_failure_mode()?;
    Ok(Reply::None)
}
