//! MODE SELECT(6)/(10): only fields the changeable mask allows may differ
//! from the current values (today: WCE, when the backend has a volatile
//! cache).

use super::mode::{page, PageControl};
use crate::scsi::cdb::{Spc10, Spc6};
use crate::scsi::error::ScsiError;
use crate::scsi::table::{Ctx, Reply};

/// MODE SELECT(6).
pub(crate) fn mode_select6(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Spc6::parse(ctx.cdb)?;
    mode_select(ctx, cdb.byte1(), usize::from(cdb.byte4()), false)
}

/// MODE SELECT(10).
pub(crate) fn mode_select10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Spc10::parse(ctx.cdb)?;
    mode_select(ctx, cdb.byte1(), usize::from(cdb.length()), true)
}

fn mode_select(ctx: &Ctx<'_>, byte1: u8, list_len: usize, long: bool) -> Result<Reply, ScsiError> {
    if byte1 & 0x01 != 0 {
        return Err(ScsiError::cdb(1, 0)); // SP: saved pages are not supported
    }
    if list_len == 0 {
        return Ok(Reply::None);
    }
    let list = ctx
        .data_out
        .get(..list_len)
        .ok_or(ScsiError::ParameterListLength)?;
    let (hdr_len, bdl) = if long {
        let b = list.get(..8).ok_or(ScsiError::ParameterListLength)?;
        (8, usize::from(u16::from_be_bytes([b[6], b[7]])))
    } else {
        let b = list.get(..4).ok_or(ScsiError::ParameterListLength)?;
        (4, usize::from(b[3]))
    };
    let descriptor = list
        .get(hdr_len..hdr_len + bdl)
        .ok_or(ScsiError::ParameterListLength)?;
    check_block_descriptor(ctx, descriptor, hdr_len)?;
    let mut wce = None;
    let mut off = hdr_len + bdl;
    while off < list.len() {
        let hdr = list
            .get(off..off + 2)
            .ok_or(ScsiError::ParameterListLength)?;
        if hdr[0] & 0x40 != 0 {
            return Err(ScsiError::InvalidFieldInParameterList {
                byte: to_u16(off),
                bit: Some(6),
            });
        }
        let code = hdr[0] & 0x3F;
        let current = page(ctx, code, PageControl::Current).ok_or(
            ScsiError::InvalidFieldInParameterList {
                byte: to_u16(off),
                bit: Some(5),
            },
        )?;
        let mask = page(ctx, code, PageControl::Changeable).unwrap_or_default();
        if usize::from(hdr[1]) + 2 != current.len() {
            return Err(ScsiError::param(off + 1));
        }
        let new = list
            .get(off..off + current.len())
            .ok_or(ScsiError::ParameterListLength)?;
        for (i, ((n, c), m)) in new.iter().zip(&current).zip(&mask).enumerate().skip(2) {
            if (n ^ c) & !m != 0 {
                return Err(ScsiError::param(off + i));
            }
        }
        if code == 0x08 {
            wce = new.get(2).map(|b| b & 0x04 != 0);
        }
        off += current.len();
    }
    if let Some(on) = wce {
        ctx.lun.set_wce(on);
    }
    Ok(Reply::None)
}

/// A block descriptor, if sent, must repeat the current geometry.
fn check_block_descriptor(ctx: &Ctx<'_>, d: &[u8], at: usize) -> Result<(), ScsiError> {
    let block_len = match d.len() {
        0 => return Ok(()),
        8 => d
            .get(5..8)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]])),
        16 => d
            .get(12..16)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        _ => return Err(ScsiError::param(at.saturating_sub(1))),
    };
    if block_len != Some(ctx.caps.block_size) {
        return Err(ScsiError::param(at + d.len() - 3));
    }
    Ok(())
}

fn to_u16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}
