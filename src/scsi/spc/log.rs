//! LOG SENSE (SPC-4 6.6): supported log pages (00h, subpage 00h and FFh),
//! logical block provisioning (0Ch, SBC-4 6.4.6: resource counts from the
//! pool or the image's file system) and informational exceptions (2Fh:
//! none). Nothing is saved (SP=1 is refused) and there are no thresholds:
//! every page control returns the current values.

use crate::backend::Resources;
use crate::scsi::cdb::LogSense;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

const SUPPORTED_PAGES: u8 = 0x00;
const PROVISIONING: u8 = 0x0C;
const INFORMATIONAL_EXCEPTIONS: u8 = 0x2F;
/// SUBPAGE CODE FFh of page 00h: supported pages and subpages.
const ALL_SUBPAGES: u8 = 0xFF;
/// Parameter control byte: binary, FORMAT AND LINKING 11b.
const BINARY: u8 = 0x03;
/// DS (disable save) in the page header: parameters are not saveable.
const DS: u8 = 0x80;

/// LOG SENSE.
pub(crate) fn log_sense(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = LogSense::parse(ctx.cdb)?;
    if cdb.sp() {
        return Err(ScsiError::cdb(1, 0)); // SP: saving is not supported
    }
    if cdb.ppc() {
        return Err(ScsiError::cdb(1, 1)); // PPC (obsolete)
    }
    let resources = if ctx.caps.thin {
        ctx.state.backend().resources()
    } else {
        None
    };
    let pages = supported(resources.is_some());
    let (page, subpage) = (cdb.page_code(), cdb.subpage_code());
    let ptr = cdb.parameter_pointer();
    if !pages.contains(&page) {
        return Err(ScsiError::cdb(2, 5)); // PAGE CODE
    }
    let body = match (page, subpage) {
        (SUPPORTED_PAGES, 0) | (SUPPORTED_PAGES, ALL_SUBPAGES) if ptr != 0 => {
            return Err(ScsiError::cdb(5, 7)); // no parameters to point at
        }
        (SUPPORTED_PAGES, 0) => pages.clone(),
        (SUPPORTED_PAGES, ALL_SUBPAGES) => {
            let mut d = vec![SUPPORTED_PAGES, 0, SUPPORTED_PAGES, ALL_SUBPAGES];
            for &p in pages.iter().filter(|&&p| p != SUPPORTED_PAGES) {
                d.extend_from_slice(&[p, 0]);
            }
            d
        }
        (_, 0) => {
            let params = match page {
                PROVISIONING => provisioning(resources, ctx.caps.block_size),
                _ => informational_exceptions(),
            };
            let from: Vec<u8> = params
                .iter()
                .filter(|(code, _)| *code >= ptr)
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            if from.is_empty() {
                return Err(ScsiError::cdb(5, 7)); // beyond the last parameter
            }
            from
        }
        _ => return Err(ScsiError::cdb(3, 7)), // SUBPAGE CODE
    };
    let spf = if subpage != 0 { 0x40 } else { 0 };
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut d = vec![DS | spf | page, subpage];
    d.extend_from_slice(&len.to_be_bytes()); // PAGE LENGTH
    d.extend(body);
    Ok(Reply::Data(d))
}

/// The supported page codes, ascending.
fn supported(provisioning: bool) -> Vec<u8> {
    let mut p = vec![SUPPORTED_PAGES];
    if provisioning {
        p.push(PROVISIONING);
    }
    p.push(INFORMATIONAL_EXCEPTIONS);
    p
}

/// 0Ch parameters 0001h (available LBA mapping resource count, scope:
/// not dedicated to this LU) and 0002h (used LBA mapping resource count,
/// scope: dedicated), in logical blocks (THRESHOLD EXPONENT is 0: a
/// threshold set is one block), saturating at FFFFFFFFh.
fn provisioning(r: Option<Resources>, block_size: u32) -> Vec<(u16, Vec<u8>)> {
    let Some(r) = r else { return Vec::new() };
    let blocks =
        |bytes: u64| u32::try_from(bytes / u64::from(block_size.max(1))).unwrap_or(u32::MAX);
    let param = |code: u16, count: u32, scope: u8| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(&[BINARY, 8]); // PARAMETER LENGTH 8
        p.extend_from_slice(&count.to_be_bytes()); // RESOURCE COUNT
        p.extend_from_slice(&[scope, 0, 0, 0]); // SCOPE
        (code, p)
    };
    vec![
        param(0x0001, blocks(r.available_bytes), 0x02),
        param(0x0002, blocks(r.used_bytes), 0x01),
    ]
}

/// 2Fh parameter 0000h: no informational exception (ASC/ASCQ 0), MOST
/// RECENT TEMPERATURE READING FFh (not available).
fn informational_exceptions() -> Vec<(u16, Vec<u8>)> {
    vec![(0x0000, vec![0, 0, BINARY, 4, 0x00, 0x00, 0xFF, 0])]
}
