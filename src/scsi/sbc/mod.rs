//! SBC-3 block commands: READ/WRITE, VERIFY, capacity, cache, thin
//! provisioning (UNMAP, WRITE SAME, GET LBA STATUS), COMPARE AND WRITE,
//! ORWRITE, WRITE ATOMIC, SANITIZE and READ DEFECT DATA.

pub(crate) mod atomic;
pub(crate) mod capacity;
pub(crate) mod caw;
pub(crate) mod defects;
pub(crate) mod lba_status;
pub(crate) mod orwrite;
pub(crate) mod rw;
pub(crate) mod sanitize;
pub(crate) mod sync;
pub(crate) mod unmap;
pub(crate) mod verify;
pub(crate) mod write_same;

use super::cdb::{Block10, Block12, Block16, Rw6};
use super::ctx::Ctx;
use super::error::ScsiError;
use super::extent::Extent;
use super::state::LunState;
use crate::backend::BackendCaps;

/// Limits a LUN advertises (VPD B0h, READ CAPACITY(16)) and enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_transfer: u32,
    /// OPTIMAL TRANSFER LENGTH.
    pub optimal_transfer: u32,
    /// MAXIMUM UNMAP LBA COUNT (0 when the backend cannot unmap).
    pub max_unmap: u32,
    pub max_compare_write: u8,
    pub max_write_same: u64,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub lbppbe: u8,
    pub optimal_granularity: u16,
    /// OPTIMAL UNMAP GRANULARITY: the backend's unmap granularity rounded
    /// up to a whole number of physical blocks (their least common
    /// multiple), so that an initiator aligning its unmaps to it never
    /// splits a physical block.
    pub unmap_granularity: u32,
}

/// Upper bound of MAXIMUM UNMAP LBA COUNT whatever the backend allows: one
/// UNMAP descriptor or WRITE SAME with UNMAP deallocates at most 1 Mi
/// blocks, which bounds the time one command holds the write gate (and is
/// the bound libiscsi's BlockLimits test expects).
pub(crate) const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;

/// Upper bound of one command's data in bytes (MAXIMUM TRANSFER LENGTH is
/// capped at this many bytes' worth of blocks): bounds the buffer one
/// command needs, whatever the block size.
pub(crate) const MAX_TRANSFER_BYTES: u32 = 32 << 20;

/// OPTIMAL TRANSFER LENGTH in bytes (4 MiB), below the maximum: larger
/// commands are accepted but gain nothing.
const OPTIMAL_TRANSFER_BYTES: u32 = 4 << 20;

/// MAXIMUM TRANSFER LENGTH in blocks (of [`limits`]; checked on every
/// READ/WRITE, so computed alone).
pub(crate) fn max_transfer(lun: &LunState, caps: &BackendCaps) -> u32 {
    let block_size = caps.block_size.max(1);
    lun.transfer_blocks_advertised()
        .min(MAX_TRANSFER_BYTES / block_size)
        .max(1)
}

/// The longest READ/WRITE/VERIFY served, in blocks: at least MAXIMUM
/// TRANSFER LENGTH, more when the ring carries more than the kernel
/// device's `hw_max_sectors` (as the kernel's own backstores serve
/// commands longer than they advertise).
pub(crate) fn accepted_transfer(lun: &LunState, caps: &BackendCaps) -> u32 {
    let block_size = caps.block_size.max(1);
    lun.transfer_blocks_accepted()
        .min(MAX_TRANSFER_BYTES / block_size)
        .max(max_transfer(lun, caps))
}

/// Computes the limits from the LUN's configuration, the kernel device's
/// limits and the backend.
pub(crate) fn limits(lun: &LunState, caps: &BackendCaps) -> Limits {
    let cfg = lun.config();
    let block_size = caps.block_size.max(1);
    let max_transfer = max_transfer(lun, caps);
    let optimal_transfer = lun
        .device_optimal_transfer()
        .unwrap_or((OPTIMAL_TRANSFER_BYTES / block_size).max(1))
        .min(max_transfer);
    let max_unmap = if caps.thin {
        caps.max_unmap_blocks.min(MAX_UNMAP_LBA_COUNT)
    } else {
        0
    };
    let max_compare_write =
        u8::try_from((max_transfer / 2).min(u32::from(cfg.max_compare_write_blocks)))
            .unwrap_or(u8::MAX);
    let mut max_write_same = cfg
        .max_write_same_blocks
        .min(u64::from(lun.device_max_write_same()));
    if max_unmap > 0 {
        max_write_same = max_write_same.min(u64::from(max_unmap));
    }
    let ratio = cfg.physical_block_size / caps.block_size.max(1);
    let lbppbe = if ratio > 1 && ratio.is_power_of_two() && ratio.trailing_zeros() < 16 {
        u8::try_from(ratio.trailing_zeros()).unwrap_or(0)
    } else {
        0
    };
    Limits {
        max_transfer,
        optimal_transfer,
        max_unmap,
        max_compare_write,
        max_write_same,
        lbppbe,
        optimal_granularity: 1 << lbppbe,
        unmap_granularity: lcm(caps.unmap_granularity.max(1), 1 << lbppbe),
    }
}

/// Least common multiple (saturating at `u32::MAX`) of two non-zero values.
fn lcm(a: u32, b: u32) -> u32 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    (a / x.max(1)).saturating_mul(b)
}

/// The fields READ/WRITE/VERIFY/PRE-FETCH/SYNCHRONIZE CACHE share, decoded
/// from the CDB format their opcode uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRequest {
    pub lba: u64,
    pub blocks: u32,
    /// RDPROTECT / WRPROTECT / VRPROTECT (0 for the 6-byte CDBs).
    pub protect: u8,
    /// FUA (READ/WRITE).
    pub fua: bool,
    /// BYTCHK (VERIFY, WRITE AND VERIFY).
    pub bytchk: u8,
    /// Offset of the length field, for the field pointer.
    pub len_byte: u16,
}

impl BlockRequest {
    pub fn six(cdb: &[u8]) -> Result<Self, ScsiError> {
        let c = Rw6::parse(cdb)?;
        Ok(BlockRequest {
            lba: c.lba(),
            blocks: c.transfer_length(),
            protect: 0,
            fua: false,
            bytchk: 0,
            len_byte: 4,
        })
    }
    pub fn ten(cdb: &[u8]) -> Result<Self, ScsiError> {
        let c = Block10::parse(cdb)?;
        Ok(BlockRequest {
            lba: c.lba(),
            blocks: c.transfer_length(),
            protect: c.protect(),
            fua: c.fua(),
            bytchk: c.bytchk(),
            len_byte: 7,
        })
    }
    pub fn twelve(cdb: &[u8]) -> Result<Self, ScsiError> {
        let c = Block12::parse(cdb)?;
        Ok(BlockRequest {
            lba: c.lba(),
            blocks: c.transfer_length(),
            protect: c.protect(),
            fua: c.fua(),
            bytchk: c.bytchk(),
            len_byte: 6,
        })
    }
    pub fn sixteen(cdb: &[u8]) -> Result<Self, ScsiError> {
        let c = Block16::parse(cdb)?;
        Ok(BlockRequest {
            lba: c.lba(),
            blocks: c.transfer_length(),
            protect: c.protect(),
            fua: c.fua(),
            bytchk: c.bytchk(),
            len_byte: 10,
        })
    }

    /// RDPROTECT/WRPROTECT/VRPROTECT: protection information is not
    /// supported, so any non-zero value is an invalid field.
    pub fn check_protect(&self) -> Result<(), ScsiError> {
        if self.protect != 0 {
            return Err(ScsiError::cdb(1, 7));
        }
        Ok(())
    }

    /// Checks the transfer length against what is accepted
    /// ([`accepted_transfer`]) and the range against the capacity.
    pub fn extent(&self, ctx: &Ctx<'_>) -> Result<Extent, ScsiError> {
        if self.blocks > accepted_transfer(ctx.state, &ctx.caps) {
            return Err(ScsiError::cdb(self.len_byte, 7));
        }
        Extent::new(
            self.lba,
            u64::from(self.blocks),
            ctx.caps.num_blocks,
            ctx.caps.block_size,
        )
    }
}

/// DATA PROTECT, WRITE PROTECTED when the backend is read-only.
pub(crate) fn check_writable(caps: &BackendCaps) -> Result<(), ScsiError> {
    if caps.read_only {
        return Err(crate::backend::BackendError::ReadOnly.into());
    }
    Ok(())
}

/// Offset of the first byte where `a` and `b` differ.
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}
