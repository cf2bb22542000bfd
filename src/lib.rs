//! tcmud core: everything of the TCMU daemon that is not actors.
//!
//! - [`ring`]: the kernel's shared command ring (mailbox, entries, data
//!   area) — all of the project's `unsafe` lives there;
//! - [`sim`]: a userspace model of the kernel side of the ring;
//! - [`scsi`]: CDB parsing and SBC/SPC emulation over a [`backend`];
//! - [`backend`]: the block-backend trait and simple backends;
//! - [`pool`]: thin-provisioned volumes (sled metadata, chunked data file);
//! - [`netlink`]: the TCM-USER generic-netlink message codec.

pub mod backend;
pub mod latency;
mod narrow;
pub mod netlink;
pub mod pool;
pub mod ring;
pub mod scsi;
pub mod sim;
