//! Mode pages (01h read-write error recovery, 08h caching, 0Ah control:
//! SWP changeable) and MODE SENSE(6)/(10).

use crate::scsi::cdb::{ModeSense10, ModeSense6};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// PAGE CONTROL values we serve (saved values are not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    Changeable,
    Default,
}

/// Page codes in the order MODE SENSE returns them for 3Fh.
pub(crate) const PAGE_CODES: [u8; 3] = [0x01, 0x08, 0x0A];

/// Mode page `code` as seen through `pc`, or `None` if unsupported.
pub(crate) fn page(ctx: &Ctx<'_>, code: u8, pc: PageControl) -> Option<Vec<u8>> {
    use PageControl::*;
    match code {
        // READ-WRITE ERROR RECOVERY: nothing is changeable; all zeros.
        0x01 => Some(with_header(0x01, vec![0u8; 10])),
        0x08 => {
            let mut p = vec![0u8; 18];
            let wce = match pc {
                Current => ctx.state.write_cache_enabled(),
                Changeable => ctx.caps.volatile_cache,
                Default => {
                    ctx.caps.volatile_cache && ctx.state.config().write_cache.unwrap_or(true)
                }
            };
            if wce {
                p[0] = 0x04; // WCE (RCD stays 0: the read cache is enabled)
            }
            Some(with_header(0x08, p))
        }
        0x0A => {
            let mut p = vec![0u8; 10];
            if pc != Changeable {
                p[0] = 0x02; // GLTSD: no implicit log saving
                p[1] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
            }
            let swp = match pc {
                Current => ctx.state.software_write_protect(),
                Changeable => true,
                Default => false,
            };
            if swp {
                p[2] = 0x08; // SWP: software write protect
            }
            Some(with_header(0x0A, p))
        }
        _ => None,
    }
}

fn with_header(code: u8, body: Vec<u8>) -> Vec<u8> {
    let mut p = vec![code, u8::try_from(body.len()).unwrap_or(0)];
    p.extend(body);
    p
}

/// The fields MODE SENSE(6) and (10) share.
struct Request {
    long: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    page_code: u8,
    subpage: u8,
}

/// MODE SENSE(6).
pub(crate) fn mode_sense6(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ModeSense6::parse(ctx.cdb)?;
    let req = Request {
        long: false,
        dbd: cdb.dbd(),
        llbaa: false,
        pc: cdb.pc(),
        page_code: cdb.page_code(),
        subpage: cdb.subpage_code(),
    };
    mode_sense(ctx, &req).map(Reply::Data)
}

/// MODE SENSE(10).
pub(crate) fn mode_sense10(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ModeSense10::parse(ctx.cdb)?;
    let req = Request {
        long: true,
        dbd: cdb.dbd(),
        llbaa: cdb.llbaa(),
        pc: cdb.pc(),
        page_code: cdb.page_code(),
        subpage: cdb.subpage_code(),
    };
    mode_sense(ctx, &req).map(Reply::Data)
}

fn mode_sense(ctx: &Ctx<'_>, req: &Request) -> Result<Vec<u8>, ScsiError> {
    let pc = match req.pc {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => return Err(ScsiError::SavingParametersNotSupported),
    };
    if req.subpage != 0 && req.subpage != 0xFF {
        return Err(ScsiError::cdb(3, 7));
    }
    let mut pages = Vec::new();
    if req.page_code == 0x3F {
        for code in PAGE_CODES {
            pages.extend(page(ctx, code, pc).unwrap_or_default());
        }
    } else {
        pages = page(ctx, req.page_code, pc).ok_or_else(|| ScsiError::cdb(2, 5))?;
    }
    let descriptor = if req.dbd {
        Vec::new()
    } else {
        block_descriptor(ctx, req.long && req.llbaa)
    };
    // DEVICE-SPECIFIC PARAMETER: WP, DPOFUA.
    let dsp = if ctx.caps.read_only { 0x80 } else { 0x00 } | 0x10;
    let mut d = Vec::with_capacity(8 + descriptor.len() + pages.len());
    if req.long {
        let total = 8 + descriptor.len() + pages.len();
        d.extend_from_slice(&u16::try_from(total - 2).unwrap_or(u16::MAX).to_be_bytes());
        d.extend_from_slice(&[0, dsp, u8::from(descriptor.len() == 16), 0]);
        d.extend_from_slice(&u16::try_from(descriptor.len()).unwrap_or(0).to_be_bytes());
    } else {
        let total = 4 + descriptor.len() + pages.len();
        d.extend_from_slice(&[u8::try_from(total - 1).unwrap_or(u8::MAX), 0, dsp]);
        d.push(u8::try_from(descriptor.len()).unwrap_or(0));
    }
    d.extend(descriptor);
    d.extend(pages);
    Ok(d)
}

/// The short (8-byte) or long (16-byte) block descriptor.
fn block_descriptor(ctx: &Ctx<'_>, long: bool) -> Vec<u8> {
    let blocks = ctx.caps.num_blocks;
    let mut d = Vec::with_capacity(16);
    if long {
        d.extend_from_slice(&blocks.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&ctx.caps.block_size.to_be_bytes());
    } else {
        d.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
        d.extend_from_slice(&ctx.caps.block_size.to_be_bytes());
        d[4] = 0; // DENSITY CODE / reserved
    }
    d
}
