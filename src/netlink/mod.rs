//! TODO: netlink
