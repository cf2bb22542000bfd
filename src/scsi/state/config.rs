//! [`LunConfig`]: what a logical unit is configured with, apart from its
//! backend.

use crate::scsi::alua::AluaConfig;
use crate::scsi::identity::{LunIdentity, LIO_COMPANY_ID};

/// Identity and limits of a logical unit that do not come from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConfig {
    /// T10 VENDOR IDENTIFICATION (up to 8 ASCII characters).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (up to 16 ASCII characters).
    pub product: String,
    /// PRODUCT REVISION LEVEL (up to 4 ASCII characters).
    pub revision: String,
    /// Unit serial number (VPD page 80h and the T10 vendor ID designator).
    pub serial: String,
    /// The NAA designator of VPD page 83h (16 bytes: NAA 6, IEEE
    /// Registered Extended; [`LunIdentity::naa6`]).
    pub naa: [u8; 16],
    /// MAXIMUM TRANSFER LENGTH wanted, in blocks (capped at 32 MiB worth
    /// of blocks and by the kernel device: [`crate::scsi::Lun::set_device_limits`]);
    /// READ/WRITE/VERIFY longer than this or than the ring carries fail
    /// with INVALID FIELD IN CDB.
    pub max_transfer_blocks: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH wanted, in blocks (capped at 255 and
    /// at half of `max_transfer_blocks`).
    pub max_compare_write_blocks: u8,
    /// MAXIMUM WRITE SAME LENGTH in blocks (capped by the backend's
    /// MAXIMUM UNMAP LBA COUNT on thin backends).
    pub max_write_same_blocks: u64,
    /// Physical block size in bytes (READ CAPACITY(16) LOGICAL BLOCKS PER
    /// PHYSICAL BLOCK EXPONENT, OPTIMAL TRANSFER LENGTH GRANULARITY); 0 or
    /// anything not above the logical block size means one logical block
    /// per physical block.
    pub physical_block_size: u32,
    /// Initial WCE; `None` means "on when the backend has a volatile cache".
    pub write_cache: Option<bool>,
    /// Implicit ALUA among the daemons exporting this unit (TPGS in
    /// INQUIRY, the port designators of VPD 83h, REPORT TARGET PORT
    /// GROUPS); `None`: no ALUA.
    pub alua: Option<AluaConfig>,
}

impl LunConfig {
    /// The default configuration with the identity `id`: VPD 80h unit
    /// serial = the id in hex, VPD 83h NAA 6 designator from it.
    pub fn identified(id: LunIdentity) -> LunConfig {
        LunConfig {
            serial: id.serial(),
            naa: id.naa6(LIO_COMPANY_ID),
            ..LunConfig::default()
        }
    }
}

impl Default for LunConfig {
    fn default() -> Self {
        LunConfig {
            vendor: "TCMUD".into(),
            product: "VIRTUAL-DISK".into(),
            revision: "0001".into(),
            serial: "0".into(),
            naa: LunIdentity([0; 16]).naa6(LIO_COMPANY_ID),
            max_transfer_blocks: 65536,
            max_compare_write_blocks: 64,
            // The kernel's iblock backstore's max_write_same_len: bounds
            // the work of one command, and keeps a WRITE SAME within what
            // one READ of the same range can bring back through SG_IO
            // (65535 sectors on tcm_loop).
            max_write_same_blocks: 0xFFFF,
            physical_block_size: 0,
            write_cache: None,
            alua: None,
        }
    }
}
