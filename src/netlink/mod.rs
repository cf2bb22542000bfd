//! The TCM-USER generic-netlink message codec (pure: bytes in, bytes out).
//!
//! The kernel's `target_core_user` module announces device changes on the
//! generic-netlink family `TCM-USER` (multicast group `config`, version 2):
//! `ADDED_DEVICE`, `REMOVED_DEVICE` and `RECONFIG_DEVICE`. A daemon that sent
//! `SET_FEATURES(SUPP_KERN_CMD_REPLY = 1)` must answer each with the matching
//! `*_DONE` message carrying `CMD_STATUS` and `DEVICE_ID`.
//!
//! This module works on the generic-netlink *payload*: the 4-byte genl header
//! (`cmd`, `version`, reserved) followed by netlink attributes. The netlink
//! header and the socket belong to the daemon (which uses `neli`).
//!
//! - [`parse_event`] turns a payload into a typed [`NlEvent`]; it never
//!   panics, ignores unknown attributes and reports missing ones as
//!   [`NlError`];
//! - [`emit_done`] and [`emit_set_features`] build the daemon's messages;
//! - [`UioName`] splits the uio name `tcm-user/<hba>/<dev>/<dev_config>`.

mod attr;
mod error;
mod event;
mod reply;
mod uio_name;

#[cfg(test)]
mod tests;

pub use attr::{AttrIter, RawAttr};
pub use error::NlError;
pub use event::{parse_event, NlCmd, NlEvent, Reconfig};
pub use reply::{emit_done, emit_event, emit_set_features, DoneReply};
pub use uio_name::{UioName, UIO_PREFIX};

/// Name of the kernel's generic-netlink family.
pub const FAMILY_NAME: &str = "TCM-USER";
/// Name of the multicast group the kernel announces devices on.
pub const MCAST_GROUP: &str = "config";
/// Version of the family (`TCMU_NL_VERSION` is 2 in the kernel).
pub const FAMILY_VERSION: u8 = 2;
/// Length of the generic-netlink header (`cmd`, `version`, `reserved`).
pub const GENL_HDR_LEN: usize = 4;

/// `TCMU_CMD_*` numbers.
pub mod cmd {
    /// Kernel: a device was added.
    pub const ADDED_DEVICE: u8 = 1;
    /// Kernel: a device was removed.
    pub const REMOVED_DEVICE: u8 = 2;
    /// Kernel: a device was reconfigured.
    pub const RECONFIG_DEVICE: u8 = 3;
    /// Daemon: reply to `ADDED_DEVICE`.
    pub const ADDED_DEVICE_DONE: u8 = 4;
    /// Daemon: reply to `REMOVED_DEVICE`.
    pub const REMOVED_DEVICE_DONE: u8 = 5;
    /// Daemon: reply to `RECONFIG_DEVICE`.
    pub const RECONFIG_DEVICE_DONE: u8 = 6;
    /// Daemon: announce features (`SUPP_KERN_CMD_REPLY`).
    pub const SET_FEATURES: u8 = 7;
}

/// `TCMU_ATTR_*` numbers.
pub mod attr_type {
    /// uio name (NUL-terminated string).
    pub const DEVICE: u16 = 1;
    /// uio minor (u32).
    pub const MINOR: u16 = 2;
    /// Alignment padding for u64 attributes.
    pub const PAD: u16 = 3;
    /// New dev_config (string).
    pub const DEV_CFG: u16 = 4;
    /// New device size in bytes (u64).
    pub const DEV_SIZE: u16 = 5;
    /// New write-cache setting (u8).
    pub const WRITECACHE: u16 = 6;
    /// Reply status: 0 or a negative errno (s32).
    pub const CMD_STATUS: u16 = 7;
    /// Device index the reply refers to (u32).
    pub const DEVICE_ID: u16 = 8;
    /// Daemon supports kernel command replies (u8).
    pub const SUPP_KERN_CMD_REPLY: u16 = 9;
}
