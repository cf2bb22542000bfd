//! [`DeviceLimits`]: what the kernel device a LUN is served through lets one
//! command carry, from its configfs attributes and the ring's geometry.
//!
//! The kernel's own backstores advertise MAXIMUM TRANSFER LENGTH as
//! `hw_max_sectors` (in `hw_block_size` units) converted to logical blocks,
//! and OPTIMAL TRANSFER LENGTH as `optimal_sectors`; tcmu-runner does the
//! same. On top of that a TCMU command must fit the ring: its data in the
//! data area, its entry (one iovec per data block) in half the command
//! ring, or the kernel fails it before userspace sees it. The advertised
//! maximum is the smaller of the two; what is accepted is what the ring can
//! carry (initiators such as libiscsi over SG_IO send more than advertised,
//! and the kernel's backstores serve it).

/// The kernel's default `hw_max_sectors` for a TCMU device (no
/// `hw_max_sectors=` in the control string).
pub const DEFAULT_HW_MAX_SECTORS: u32 = 128;

/// The kernel's smallest data block (one page): a command's entry has at
/// most one iovec per this many bytes of data, plus one.
const MIN_DATA_BLOCK: u64 = 4096;

/// Fixed part of a command entry (header, counts, `cdb_off`) plus the
/// largest CDB the kernel places after the iovecs, rounded up.
const ENTRY_FIXED_BYTES: u64 = 48 + 264;

/// Bytes per iovec in a command entry.
const IOVEC_BYTES: u64 = 16;

/// Transfer limits of one kernel device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// `attrib/hw_max_sectors`, in `hw_block_size` units; `None` when there
    /// is no configfs to ask (simulator, tests): no limit from it.
    pub hw_max_sectors: Option<u32>,
    /// `attrib/hw_block_size` in bytes.
    pub hw_block_size: u32,
    /// `attrib/optimal_sectors` (logical blocks), when known and non-zero.
    pub optimal_sectors: Option<u32>,
    /// `attrib/max_write_same_len` (logical blocks), when known and
    /// non-zero: MAXIMUM WRITE SAME LENGTH is capped by it, as for the
    /// kernel's own backstores.
    pub max_write_same_len: Option<u32>,
    /// The ring's data area in bytes.
    pub data_area_bytes: usize,
    /// The ring's command area in bytes.
    pub cmdr_size: u32,
}

impl DeviceLimits {
    /// MAXIMUM TRANSFER LENGTH in logical blocks of `block_size` bytes:
    /// `hw_max_sectors` converted from `hw_block_size` units, capped by
    /// the data area and by the entry size the command ring accepts (half
    /// of it, as the kernel requires). At least 1.
    pub fn max_transfer_blocks(&self, block_size: u32) -> u32 {
        let bs = u64::from(block_size.max(1));
        let mut bytes = self.ring_bytes();
        if let Some(sectors) = self.hw_max_sectors {
            bytes = bytes.min(u64::from(sectors) * u64::from(self.hw_block_size.max(1)));
        }
        u32::try_from(bytes / bs).unwrap_or(u32::MAX).max(1)
    }

    /// The longest transfer in logical blocks the ring can carry (its data
    /// area and half its command ring), whatever `hw_max_sectors` says:
    /// what the LUN accepts. Like the kernel's own backstores, which split
    /// what they receive, a command longer than the advertised maximum
    /// but within this is served, not refused. At least 1.
    pub fn ring_transfer_blocks(&self, block_size: u32) -> u32 {
        let bs = u64::from(block_size.max(1));
        u32::try_from(self.ring_bytes() / bs)
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// OPTIMAL TRANSFER LENGTH in logical blocks wanted by the
    /// administrator (`optimal_sectors`), if any; the LUN caps it at the
    /// maximum.
    pub fn optimal_transfer_blocks(&self) -> Option<u32> {
        self.optimal_sectors.filter(|&n| n > 0)
    }

    /// The most data bytes one command can bring through the ring.
    fn ring_bytes(&self) -> u64 {
        let data = u64::try_from(self.data_area_bytes).unwrap_or(u64::MAX);
        let half_ring = u64::from(self.cmdr_size) / 2;
        let iovecs = half_ring.saturating_sub(ENTRY_FIXED_BYTES) / IOVEC_BYTES;
        // n iovecs hold at least (n - 1) whole data blocks.
        let by_entry = iovecs.saturating_sub(1) * MIN_DATA_BLOCK;
        data.min(by_entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_default() -> DeviceLimits {
        DeviceLimits {
            hw_max_sectors: Some(DEFAULT_HW_MAX_SECTORS),
            hw_block_size: 512,
            optimal_sectors: None,
            max_write_same_len: None,
            data_area_bytes: 1 << 30,
            cmdr_size: (8 << 20) - 128,
        }
    }

    #[test]
    fn default_attributes_give_128_blocks() {
        assert_eq!(kernel_default().max_transfer_blocks(512), 128);
    }

    #[test]
    fn hw_max_sectors_is_in_hw_block_size_units() {
        let l = DeviceLimits {
            hw_max_sectors: Some(1024),
            hw_block_size: 4096,
            ..kernel_default()
        };
        assert_eq!(l.max_transfer_blocks(4096), 1024);
        assert_eq!(l.max_transfer_blocks(512), 8192);
    }

    #[test]
    fn the_data_area_caps_it() {
        let l = DeviceLimits {
            hw_max_sectors: Some(65536),
            data_area_bytes: 1 << 20,
            ..kernel_default()
        };
        assert_eq!(l.max_transfer_blocks(512), 2048);
        let unknown = DeviceLimits {
            hw_max_sectors: None,
            ..l
        };
        assert_eq!(unknown.max_transfer_blocks(512), 2048);
    }

    #[test]
    fn a_small_command_ring_caps_it() {
        // 64 KiB ring: (32768 - 312) / 16 = 2028 iovecs, 2027 pages.
        let l = DeviceLimits {
            hw_max_sectors: None,
            cmdr_size: 64 * 1024 - 128,
            ..kernel_default()
        };
        let pages = ((64 * 1024 - 128) / 2 - 312) / 16 - 1;
        assert_eq!(l.max_transfer_blocks(4096), pages);
    }

    #[test]
    fn the_ring_carries_more_than_hw_max_sectors() {
        let l = kernel_default();
        assert_eq!(l.max_transfer_blocks(512), 128);
        assert!(l.ring_transfer_blocks(512) > 1 << 20);
    }

    #[test]
    fn never_zero() {
        let l = DeviceLimits {
            hw_max_sectors: Some(0),
            ..kernel_default()
        };
        assert_eq!(l.max_transfer_blocks(512), 1);
    }
}
