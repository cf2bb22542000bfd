//! Errors of the netlink codec.

use thiserror::Error;

/// Why a TCM-USER message could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NlError {
    /// The payload is shorter than the 4-byte genl header.
    #[error("generic-netlink payload too short: {0} bytes")]
    ShortHeader(usize),
    /// An attribute header or its length points outside the payload.
    #[error("malformed attribute at offset {offset}: {why}")]
    BadAttr {
        /// Byte offset of the attribute in the payload.
        offset: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The command is not an event the kernel sends.
    #[error("unexpected TCM-USER command {0}")]
    UnknownCmd(u8),
    /// A required attribute is absent.
    #[error("missing attribute {0}")]
    Missing(&'static str),
    /// An attribute has the wrong size or content.
    #[error("attribute {name} is invalid: {why}")]
    Invalid {
        /// Attribute name.
        name: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A RECONFIG event carries none of DEV_CFG, DEV_SIZE, WRITECACHE.
    #[error("RECONFIG_DEVICE without DEV_CFG, DEV_SIZE or WRITECACHE")]
    EmptyReconfig,
    /// A string attribute does not fit into a u16 attribute length.
    #[error("attribute too long: {0} bytes")]
    TooLong(usize),
    /// A uio name is not `tcm-user/<hba>/<dev>/<dev_config>`.
    #[error("uio name {name:?} is not tcm-user/<hba>/<dev>/<dev_config>: {why}")]
    BadUioName {
        /// The name as received.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}
