//! EXTENDED COPY (LID1): resolve the CSCDs, check every segment, then copy
//! segment by segment (sharing storage where the backends can).

use std::sync::Arc;

use super::held::Outcome;
use super::params::{self, Cscd, Segment};
use super::PIECE_BYTES;
use crate::backend::BlockBackend;
use crate::scsi::cdb::ThirdPartyCopy;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::sense::Asc;
use crate::scsi::state::{LunState, SanitizeState};

/// A copy target: the LUN the command came to, or another one served here.
enum Target<'a> {
    This(&'a LunState),
    Other(Arc<LunState>),
}

impl Target<'_> {
    fn lun(&self) -> &LunState {
        match self {
            Target::This(l) => l,
            Target::Other(l) => l,
        }
    }
}

/// One checked segment: the LUNs and the ranges.
struct Planned<'t, 'a> {
    src: &'t Target<'a>,
    dst: &'t Target<'a>,
    seg: Segment,
}

/// EXTENDED COPY (LID1) (SPC-4 6.4). A PARAMETER LIST LENGTH of 0 copies
/// nothing.
pub(crate) fn extended_copy(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ThirdPartyCopy::parse(ctx.cdb)?;
    if let Some(b) = cdb.reserved_byte(2) {
        return Err(ScsiError::cdb(b, 7));
    }
    if ctx.data_out.is_empty() {
        return Ok(Reply::None);
    }
    // A new copy with a list identifier ends what was held for it, also
    // when its own list turns out to be invalid.
    let (list_id, usage) = params::header(ctx.data_out)?;
    let run = ctx.state.copies().begin(list_id, usage)?;
    let list = params::parse(ctx.data_out)?;
    let targets = list
        .cscds
        .iter()
        .map(|c| resolve(ctx.state, c))
        .collect::<Result<Vec<_>, _>>()?;
    let planned = list
        .segments
        .iter()
        .map(|s| plan(&targets, *s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outcome = Outcome {
        segments: 0,
        bytes: 0,
        failed: None,
    };
    for p in &planned {
        outcome.segments = outcome.segments.saturating_add(1);
        match copy_segment(p) {
            Ok(bytes) => outcome.bytes = outcome.bytes.saturating_add(bytes),
            Err(e) => {
                let aborted = ScsiError::CopyAborted(e.to_sense().asc_pair());
                tracing::warn!(segment = outcome.segments - 1, error = %e, "EXTENDED COPY aborted");
                outcome.failed = Some(aborted.to_sense());
                run.finish(outcome);
                return Err(aborted);
            }
        }
    }
    run.finish(outcome);
    Ok(Reply::None)
}

/// The LUN a CSCD descriptor names: a block device with an NAA designator
/// of a LUN served here, whose block size the descriptor states. COPY
/// ABORTED, COPY TARGET DEVICE NOT REACHABLE for any other designator.
fn resolve<'a>(this: &'a LunState, c: &Cscd) -> Result<Target<'a>, ScsiError> {
    let unreachable = ScsiError::CopyAborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
    if c.device_type != 0 {
        return Err(ScsiError::CopyAborted(
            Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE,
        ));
    }
    // Binary NAA designator associated with the logical unit.
    if c.code_set != 1 || c.association != 0 || c.designator_type != 3 {
        return Err(unreachable);
    }
    let target = if c.designator == this.config().naa {
        Target::This(this)
    } else {
        match this.copy_registry().and_then(|r| r.find(&c.designator)) {
            Some(l) => Target::Other(l),
            None => return Err(unreachable),
        }
    };
    if c.block_length != target.lun().caps().block_size {
        return Err(ScsiError::param(c.at + 29));
    }
    Ok(target)
}

/// Checks one segment before anything is copied: CSCD indexes that exist
/// (else COPY TARGET DEVICE NOT REACHABLE), equal block sizes, ranges
/// within both LUNs, a writable and idle destination.
fn plan<'t, 'a>(targets: &'t [Target<'a>], seg: Segment) -> Result<Planned<'t, 'a>, ScsiError> {
    let unreachable = ScsiError::CopyAborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE);
    let src = targets
        .get(usize::from(seg.source))
        .ok_or(ScsiError::CopyAborted(
            Asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
        ))?;
    let dst = targets
        .get(usize::from(seg.destination))
        .ok_or(unreachable)?;
    let (sc, dc) = (src.lun().caps(), dst.lun().caps());
    if sc.block_size != dc.block_size {
        return Err(ScsiError::CopyAborted(
            Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE,
        ));
    }
    let blocks = u64::from(seg.blocks);
    let fits = |lba: u64, num: u64| lba.checked_add(blocks).is_some_and(|end| end <= num);
    if !fits(seg.source_lba, sc.num_blocks) || !fits(seg.destination_lba, dc.num_blocks) {
        return Err(ScsiError::CopyAborted(Asc::NO_ADDITIONAL));
    }
    if dc.read_only {
        return Err(ScsiError::CopyAborted(Asc::WRITE_PROTECTED));
    }
    for l in [src.lun(), dst.lun()] {
        if l.sanitize_state() != SanitizeState::Idle {
            return Err(ScsiError::CopyAborted(Asc::SANITIZE_IN_PROGRESS));
        }
    }
    Ok(Planned { src, dst, seg })
}

/// Copies one segment; returns the bytes it covered. The destination's
/// write gate is held shared throughout (no COMPARE AND WRITE lands in
/// the middle of it).
fn copy_segment(p: &Planned<'_, '_>) -> Result<u64, ScsiError> {
    let (src, dst) = (p.src.lun(), p.dst.lun());
    let caps = dst.caps();
    let bs = u64::from(caps.block_size);
    let blocks = u64::from(p.seg.blocks);
    let (s, d) = (p.seg.source_lba, p.seg.destination_lba);
    let _gate = dst.write_gate();
    let fua = dst.effective_fua(&caps, false);
    let same = std::ptr::eq(src, dst) || Arc::ptr_eq(src.backend(), dst.backend());
    let overlap = same && s < d.saturating_add(blocks) && d < s.saturating_add(blocks);
    let chunk = u64::from(caps.unmap_granularity.max(1));
    if caps.thin && chunk > 1 && !overlap && s % chunk == d % chunk {
        // Head up to the destination's next chunk, whole chunks shared,
        // tail.
        let head = ((chunk - d % chunk) % chunk).min(blocks);
        let middle = (blocks - head) / chunk * chunk;
        copy_blocks(src, dst, s, d, head, fua)?;
        let (ms, md) = (s + head, d + head);
        if middle > 0
            && !dst
                .backend()
                .share_blocks(src.backend().as_ref(), ms, md, middle)?
        {
            copy_blocks(src, dst, ms, md, middle, fua)?;
        }
        let done = head + middle;
        copy_blocks(src, dst, s + done, d + done, blocks - done, fua)?;
    } else {
        copy_blocks(src, dst, s, d, blocks, fua)?;
    }
    Ok(blocks * bs)
}

/// Reads and writes `blocks` blocks in pieces of at most [`PIECE_BYTES`];
/// backwards when the destination overlaps the source from above, so that
/// no piece reads what an earlier one wrote.
fn copy_blocks(
    src: &LunState,
    dst: &LunState,
    s: u64,
    d: u64,
    blocks: u64,
    fua: bool,
) -> Result<(), ScsiError> {
    if blocks == 0 {
        return Ok(());
    }
    let bs = u64::from(dst.caps().block_size.max(1));
    let per = (PIECE_BYTES as u64 / bs).max(1);
    let mut buf = vec![0u8; usize::try_from(per.min(blocks) * bs).unwrap_or(PIECE_BYTES)];
    let backwards = d > s && Arc::ptr_eq(src.backend(), dst.backend());
    // A piece the (thin) source has not allocated is deallocated at a
    // destination whose deallocated blocks read as zeros, rather than
    // written with zeros.
    let (sc, dc) = (src.caps(), dst.caps());
    let holes = sc.thin && dc.thin && dc.zeroes_after_unmap;
    let mut done = 0u64;
    while done < blocks {
        let n = per.min(blocks - done);
        let off = if backwards { blocks - done - n } else { done };
        done += n;
        if holes {
            let a = src.backend().allocation(s + off, n)?;
            if !a.mapped && a.blocks >= n {
                dst.backend().unmap(d + off, n)?;
                continue;
            }
        }
        let len = usize::try_from(n * bs).unwrap_or(buf.len());
        let piece = buf.get_mut(..len).ok_or(ScsiError::LbaOutOfRange)?;
        read_piece(src.backend().as_ref(), s + off, piece)?;
        dst.backend().write(d + off, piece, fua)?;
    }
    Ok(())
}

fn read_piece(b: &dyn BlockBackend, lba: u64, buf: &mut [u8]) -> Result<(), ScsiError> {
    b.read(lba, buf).map_err(ScsiError::from)
}
