//! Checked block ranges.

use super::error::ScsiError;

/// A range of logical blocks that lies within the medium, with the byte
/// length already computed without overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// First logical block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// `blocks * block_size`.
    pub bytes: usize,
}

impl Extent {
    /// Checks `lba + blocks <= num_blocks` without overflow (LBA OUT OF
    /// RANGE otherwise; a zero-length range may start at `num_blocks`).
    pub fn new(
        lba: u64,
        blocks: u64,
        num_blocks: u64,
        block_size: u32,
    ) -> Result<Extent, ScsiError> {
        let bytes = match lba.checked_add(blocks) {
            Some(end) if end <= num_blocks => blocks
                .checked_mul(u64::from(block_size))
                .and_then(|b| usize::try_from(b).ok()),
            _ => None,
        };
        match bytes {
            Some(bytes) => Ok(Extent { lba, blocks, bytes }),
            None => Err(ScsiError::LbaOutOfRange),
        }
    }
}
