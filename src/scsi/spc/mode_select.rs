//! MODE SELECT(6)/(10): only fields the changeable mask allows may differ
//! from the current values (today: WCE, when the backend has a volatile
//! cache, and SWP).

use super::mode::{page, PageControl};
use crate::scsi::cdb::{ModeSelect10, ModeSelect6};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// MODE SELECT(6).
pub(crate) fn mode_select6(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ModeSelect6::parse(ctx.cdb)?;
    let list_len = usize::from(cdb.parameter_list_length());
    mode_select(ctx, cdb.sp(), cdb.pf(), list_len, false)
}

/// MODE SELECT(10).
pub(crate) fn mode_select10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ModeSelect10::parse(ctx.cdb)?;
    let list_len = usize::from(cdb.parameter_list_length());
    mode_select(ctx, cdb.sp(), cdb.pf(), list_len, true)
}

fn mode_select(
    ctx: &Ctx<'_>,
    sp: bool,
    pf: bool,
    list_len: usize,
    ten: bool,
) -> Result<Reply, ScsiError> {
    if sp {
        return Err(ScsiError::cdb(1, 0)); // SP: saved pages are not supported
    }
    if list_len == 0 {
        return Ok(Reply::None);
    }
    if !pf {
        // PF=0: vendor-specific pages, which there are none of (the
        // kernel's spc_emulate_modeselect refuses them the same way).
        return Err(ScsiError::cdb(1, 4));
    }
    let list = ctx
        .data_out
        .get(..list_len)
        .ok_or(ScsiError::ParameterListLength)?;
    // Header: MODE SELECT(10) has LONGLBA (byte 4 bit 0) and a 16-bit
    // BLOCK DESCRIPTOR LENGTH in bytes 6-7; MODE SELECT(6) an 8-bit one
    // in byte 3.
    let (hdr_len, bdl, bdl_byte, long_lba) = if ten {
        let b = list.get(..8).ok_or(ScsiError::ParameterListLength)?;
        (
            8,
            usize::from(u16::from_be_bytes([b[6], b[7]])),
            6,
            b[4] & 0x01 != 0,
        )
    } else {
        let b = list.get(..4).ok_or(ScsiError::ParameterListLength)?;
        (4, usize::from(b[3]), 3, false)
    };
    let descriptor = list
        .get(hdr_len..hdr_len + bdl)
        .ok_or(ScsiError::ParameterListLength)?;
    check_block_descriptor(ctx, descriptor, hdr_len, bdl_byte, long_lba)?;
    let mut wce = None;
    let mut swp = None;
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
        if code == 0x0A {
            swp = new.get(4).map(|b| b & 0x08 != 0);
        }
        off += current.len();
    }
    if let Some(on) = wce {
        ctx.state.set_wce(on)?;
    }
    if let Some(on) = swp {
        ctx.state.set_swp(on);
    }
    Ok(Reply::None)
}

/// A block descriptor, if sent, must repeat the current geometry. There is
/// at most one, of the size LONGLBA selects (16 bytes with LONGLBA, else
/// 8); `at` is its offset in the list, `bdl_byte` the offset of BLOCK
/// DESCRIPTOR LENGTH.
fn check_block_descriptor(
    ctx: &Ctx<'_>,
    d: &[u8],
    at: usize,
    bdl_byte: usize,
    long_lba: bool,
) -> Result<(), ScsiError> {
    let (size, block_len_at) = if long_lba { (16, 12) } else { (8, 5) };
    if d.is_empty() {
        return Ok(());
    }
    if d.len() != size {
        return Err(ScsiError::param(bdl_byte));
    }
    let block_len = d
        .get(block_len_at..size)
        .map(|b| b.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)));
    if block_len != Some(ctx.caps.block_size) {
        return Err(ScsiError::param(at + block_len_at));
    }
    Ok(())
}

fn to_u16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}
