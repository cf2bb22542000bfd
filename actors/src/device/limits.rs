//! The kernel device's transfer limits, read from configfs
//! (`attrib/hw_max_sectors`, `attrib/hw_block_size`,
//! `attrib/optimal_sectors`, `attrib/max_write_same_len`) and the ring's
//! geometry, at device open and again on RECONFIG.

use std::path::Path;

use tcmud_core::scsi::{DeviceLimits, DEFAULT_HW_MAX_SECTORS};

/// What the ring can carry, known once it is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingCapacity {
    /// Data area in bytes.
    pub data_area_bytes: usize,
    /// Command area in bytes.
    pub cmdr_size: u32,
}

/// The device's limits: from `configfs_dir` when there is one (a missing
/// or unreadable `hw_max_sectors` is the kernel's default, 128, with a
/// warning), otherwise only what the ring can carry (simulator, tests).
pub(crate) fn read_device_limits(configfs_dir: Option<&Path>, ring: RingCapacity) -> DeviceLimits {
    let mut limits = DeviceLimits {
        hw_max_sectors: None,
        hw_block_size: 512,
        optimal_sectors: None,
        max_write_same_len: None,
        data_area_bytes: ring.data_area_bytes,
        cmdr_size: ring.cmdr_size,
    };
    let Some(dir) = configfs_dir else {
        return limits;
    };
    let attrib = dir.join("attrib");
    limits.hw_max_sectors = Some(match read_u32(&attrib.join("hw_max_sectors")) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e,
                default = DEFAULT_HW_MAX_SECTORS, "cannot read hw_max_sectors; using the kernel's default");
            DEFAULT_HW_MAX_SECTORS
        }
    });
    match read_u32(&attrib.join("hw_block_size")) {
        Ok(n) if n > 0 => limits.hw_block_size = n,
        Ok(_) | Err(_) => {
            tracing::warn!(dir = %dir.display(), "cannot read hw_block_size; assuming 512")
        }
    }
    limits.optimal_sectors = read_u32(&attrib.join("optimal_sectors"))
        .ok()
        .filter(|&n| n > 0);
    limits.max_write_same_len = read_u32(&attrib.join("max_write_same_len"))
        .ok()
        .filter(|&n| n > 0);
    limits
}

/// A decimal u32 from a configfs attribute.
fn read_u32(path: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: RingCapacity = RingCapacity {
        data_area_bytes: 1 << 30,
        cmdr_size: (8 << 20) - 128,
    };

    #[test]
    fn reads_the_attributes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("attrib")).unwrap();
        std::fs::write(t.path().join("attrib/hw_max_sectors"), "1024\n").unwrap();
        std::fs::write(t.path().join("attrib/hw_block_size"), "4096\n").unwrap();
        std::fs::write(t.path().join("attrib/optimal_sectors"), "256\n").unwrap();
        std::fs::write(t.path().join("attrib/max_write_same_len"), "65535\n").unwrap();
        let l = read_device_limits(Some(t.path()), RING);
        assert_eq!(l.max_write_same_len, Some(65535));
        assert_eq!(l.hw_max_sectors, Some(1024));
        assert_eq!(l.hw_block_size, 4096);
        assert_eq!(l.optimal_sectors, Some(256));
        assert_eq!(l.max_transfer_blocks(4096), 1024);
    }

    #[test]
    fn unreadable_is_the_kernel_default_and_no_configfs_is_the_ring() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("attrib")).unwrap();
        std::fs::write(t.path().join("attrib/hw_max_sectors"), "lots\n").unwrap();
        let l = read_device_limits(Some(t.path()), RING);
        assert_eq!(l.max_transfer_blocks(512), 128);
        let none = read_device_limits(None, RING);
        assert_eq!(none.hw_max_sectors, None);
        assert!(none.max_transfer_blocks(512) > 1 << 20);
    }
}
