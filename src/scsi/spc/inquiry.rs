//! INQUIRY: standard data and the route to VPD pages.

use super::{ascii_field, vpd};
use crate::scsi::cdb::Inquiry;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::fixed_len::u8_len;

/// VERSION DESCRIPTORs: SAM-5, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];

/// INQUIRY (SPC-4 6.6): standard data when EVPD=0, else the VPD page.
pub(crate) fn inquiry(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Inquiry::parse(ctx.cdb)?;
    if cdb.cmddt() {
        return Err(ScsiError::cdb(1, 1)); // CMDDT (obsolete)
    }
    if cdb.evpd() {
        return vpd::page(ctx, cdb.page_code()).map(Reply::Data);
    }
    if cdb.page_code() != 0 {
        return Err(ScsiError::cdb(2, 7)); // PAGE CODE without EVPD
    }
    Ok(Reply::Data(standard(ctx)))
}

fn standard(ctx: &Ctx<'_>) -> Vec<u8> {
    let cfg = ctx.state.config();
    let mut d = vec![0u8; 74];
    d[0] = 0x00; // PERIPHERAL QUALIFIER 0, DEVICE TYPE 0 (direct access block)
    d[2] = 0x06; // VERSION: SPC-4
    d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = u8_len(d.len() - 5); // ADDITIONAL LENGTH
    d[5] = 0x08; // 3PC: EXTENDED COPY (LID1)
    if cfg.alua.is_some() {
        d[5] |= 0x30; // TPGS 11b: implicit and explicit ALUA
    }
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(&ascii_field(&cfg.vendor, 8));
    d[16..32].copy_from_slice(&ascii_field(&cfg.product, 16));
    d[32..36].copy_from_slice(&ascii_field(&cfg.revision, 4));
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        let at = 58 + 2 * i;
        d[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    d
}
