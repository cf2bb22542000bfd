//! Vital product data pages 00h, 80h, 83h, 8Fh, B0h, B1h, B2h. Every limit and
//! bit comes from [`BackendCaps`](crate::backend::BackendCaps) and the
//! [`LunConfig`](crate::scsi::LunConfig).

use super::ascii_field;
use crate::scsi::ctx::Ctx;
use crate::scsi::error::ScsiError;
use crate::scsi::sbc::atomic::max_atomic_transfer;
use crate::scsi::sbc::limits;

const SUPPORTED: [u8; 7] = [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];

/// Builds VPD page `code` (INVALID FIELD IN CDB if unsupported).
pub(crate) fn page(ctx: &Ctx<'_>, code: u8) -> Result<Vec<u8>, ScsiError> {
    let body = match code {
        0x00 => SUPPORTED.to_vec(),
        0x80 => ctx
            .state
            .config()
            .serial
            .bytes()
            .filter(|b| (0x20..0x7F).contains(b))
            .collect(),
        0x83 => device_identification(ctx),
        0x8F => crate::scsi::copy::vpd::third_party_copy(),
        0xB0 => block_limits(ctx),
        0xB1 => block_device_characteristics(ctx),
        0xB2 => logical_block_provisioning(ctx),
        _ => return Err(ScsiError::cdb(2, 7)),
    };
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut d = vec![0x00, code];
    d.extend_from_slice(&len.to_be_bytes()); // PAGE LENGTH
    d.extend_from_slice(&body);
    Ok(d)
}

/// 83h: an NAA IEEE Registered Extended designator and a T10 vendor ID
/// designator, both associated with the logical unit; with ALUA, the
/// relative target port and target port group of this daemon's port.
fn device_identification(ctx: &Ctx<'_>) -> Vec<u8> {
    let cfg = ctx.state.config();
    let mut d = vec![0x01, 0x03, 0x00, 0x10]; // binary, LU, type NAA, length 16
    d.extend_from_slice(&cfg.naa);
    let mut t10 = ascii_field(&cfg.vendor, 8);
    t10.extend(ascii_field(&cfg.product, 16));
    t10.extend(
        cfg.serial
            .bytes()
            .filter(|b| (0x21..0x7F).contains(b))
            .take(200),
    );
    let t10_len = u8::try_from(t10.len()).unwrap_or(u8::MAX);
    d.extend_from_slice(&[0x02, 0x01, 0x00, t10_len]); // ASCII, LU, type T10 vendor ID
    d.extend(t10);
    if let Some(alua) = &cfg.alua {
        d.extend(crate::scsi::alua::port_designators(alua));
    }
    d
}

/// B0h: block limits (SBC-3 6.5.3).
fn block_limits(ctx: &Ctx<'_>) -> Vec<u8> {
    let l = limits(ctx.state, &ctx.caps);
    let mut d = vec![0u8; 0x3C];
    d[0] = 0x01; // WSNZ: WRITE SAME with zero blocks is rejected
    d[1] = l.max_compare_write; // MAXIMUM COMPARE AND WRITE LENGTH
    d[2..4].copy_from_slice(&l.optimal_granularity.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    d[4..8].copy_from_slice(&l.max_transfer.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    d[8..12].copy_from_slice(&l.optimal_transfer.to_be_bytes()); // OPTIMAL TRANSFER LENGTH
                                                                 // MAXIMUM PREFETCH LENGTH stays 0: PRE-FETCH does not enforce one.
    if ctx.caps.thin {
        d[16..20].copy_from_slice(&l.max_unmap.to_be_bytes()); // MAXIMUM UNMAP LBA COUNT
        d[20..24].copy_from_slice(&ctx.caps.max_unmap_descriptors.to_be_bytes()); // ... DESCRIPTOR COUNT
        d[24..28].copy_from_slice(&l.unmap_granularity.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
        d[28] = 0x80; // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
    }
    d[32..40].copy_from_slice(&l.max_write_same.to_be_bytes()); // MAXIMUM WRITE SAME LENGTH
                                                                // MAXIMUM ATOMIC TRANSFER LENGTH; ATOMIC ALIGNMENT, ATOMIC TRANSFER
                                                                // LENGTH GRANULARITY and the atomic boundary fields stay 0
    d[40..44].copy_from_slice(&max_atomic_transfer(ctx).to_be_bytes());
    d
}

/// B1h: non-rotating medium; WABEREQ 01b (reads after SANITIZE BLOCK
/// ERASE succeed) when BLOCK ERASE is supported.
fn block_device_characteristics(ctx: &Ctx<'_>) -> Vec<u8> {
    let mut d = vec![0u8; 0x3C];
    d[1] = 0x01; // MEDIUM ROTATION RATE: non-rotating
    if ctx.caps.thin && ctx.caps.zeroes_after_unmap {
        d[3] = 0x40; // WABEREQ 01b
    }
    d
}

/// B2h: logical block provisioning (SBC-3 6.5.4).
fn logical_block_provisioning(ctx: &Ctx<'_>) -> Vec<u8> {
    let c = &ctx.caps;
    let mut flags = 0u8;
    if c.thin {
        flags |= 0x80 | 0x40 | 0x20; // LBPU, LBPWS, LBPWS10
    }
    if c.thin && c.zeroes_after_unmap {
        flags |= 0x04; // LBPRZ
    }
    let provisioning_type = if c.thin { 0x02 } else { 0x00 };
    vec![0x00, flags, provisioning_type, 0x00]
}
