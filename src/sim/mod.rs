//! A userspace model of the kernel side of a TCMU ring, for tests, benches
//! and examples.
//!
//! [`KernelSim`] lays out a shared region the way `target_core_user.c` does
//! and plays the kernel's part on it:
//!
//! - the region is a memfd: a 128-byte mailbox (version 2, `flags` from
//!   [`SimConfig::flags`], `cmdr_off` 128, `cmdr_size`), the command ring,
//!   then the data area of `data_size` bytes in blocks of `data_block`;
//! - [`KernelSim::submit`] queues a command like `queue_cmd_ring`: data
//!   blocks taken lowest-first from a bitmap, contiguous blocks merged into
//!   one iov, entry size `max(48 + 16 * iovs, 112) + round_up(cdb_len, 8)`,
//!   the CDB right after the iovs, `cdb_off`/`iov_base` counted from the
//!   start of the mapping, a PAD at the end of the ring only when the entry
//!   does not fit before it, one byte always kept free, `cmd_id` the lowest
//!   free id in 1..=65535, `cmd_head` stored with Release. When the ring or
//!   the data area is full it returns [`SimError::Full`] (the kernel would
//!   queue the command internally until space frees up);
//! - [`KernelSim::submit_tmr`] queues a TMR entry like `queue_tmr_ring`;
//! - [`KernelSim::kick`] / [`KernelSim::wait_kick`]: 4-byte messages on a
//!   `SOCK_SEQPACKET` socketpair standing in for the uio fd (the other end
//!   is [`SimDevice::event_fd`]);
//! - [`KernelSim::process_completions`] walks from the last cleaned offset to
//!   `cmd_tail` like `tcmu_handle_completions`: PAD and TMR slots are
//!   stepped over, each command slot's `cmd_id` is looked up, and an unknown
//!   or repeated id marks the ring BROKEN ([`KernelSim::broken`]) and stops
//!   processing, as in the kernel. `UNKNOWN_OP` and `READ_LEN` are honoured
//!   as the kernel does; without `CAP_OOOC` in the flags, a response in a
//!   slot that belonged to another command is also BROKEN (the userspace
//!   broke the in-order contract);
//! - [`KernelSim::time_out`] plays the command timer: the initiator sees
//!   CHECK CONDITION, the command stays in the ring until userspace
//!   completes it, which then only reclaims it;
//! - hostile modes ([`KernelSim::corrupt`], [`KernelSim::write_raw`],
//!   [`KernelSim::set_head_raw`]) damage entries, offsets and the mailbox
//!   for robustness tests.
//!
//! ```
//! use std::time::Duration;
//! use tcmud_core::ring::{Completion, DataIn, Entry, Ring};
//! use tcmud_core::sim::{KernelSim, SimConfig, SimDir};
//!
//! let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
//! let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
//! let id = sim.submit(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], SimDir::In(512)).unwrap();
//! sim.kick().unwrap();
//! ring.drain_events().unwrap();
//! let Some(Ok(Entry::Cmd(cmd))) = ring.fetch().next() else { panic!() };
//! assert_eq!(cmd.cmd_id, id);
//! ring.write_data_in(&cmd.data, &[7u8; 512]).unwrap();
//! ring.complete(Completion::good(cmd.cmd_id), DataIn::new(&cmd.data, 512)).unwrap();
//! ring.kick().unwrap();
//! assert!(sim.wait_kick(Duration::from_secs(1)).unwrap());
//! let done = sim.process_completions().unwrap();
//! assert_eq!(done[0].data_in, vec![7u8; 512]);
//! assert!(sim.broken().is_none());
//! ```

mod blocks;
mod completions;
mod entry;
mod hostile;
mod kernel;
mod leak;
mod notify;

use std::fs::File;
use std::os::fd::OwnedFd;

pub use hostile::Corruption;
pub use kernel::KernelSim;
pub use leak::{find_leak, leak_pattern, leak_probes, LeakProbe, LEAK_WORD};

use crate::ring::layout::{CAP_OOOC, CAP_READ_LEN, CAP_TMR};
use crate::ring::RingError;

/// Shape of the simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Command ring size in bytes (multiple of 8, 224 to 64 MiB). The kernel
    /// uses `cmd_ring_size_mb * 1 MiB - 128`.
    pub cmdr_size: u32,
    /// Data area size in bytes (a multiple of `data_block`).
    pub data_size: usize,
    /// Data block size (the kernel's is 4096 times `data_pages_per_blk`).
    pub data_block: usize,
    /// Mailbox capability flags (`CAP_*` from [`crate::ring::layout`]).
    pub flags: u16,
}

impl Default for SimConfig {
    /// 64 KiB ring (incl. mailbox), 1 MiB data area in 4 KiB blocks,
    /// OOOC + READ_LEN + TMR.
    fn default() -> SimConfig {
        SimConfig {
            cmdr_size: 64 * 1024 - 128,
            data_size: 1024 * 1024,
            data_block: 4096,
            flags: CAP_OOOC | CAP_READ_LEN | CAP_TMR,
        }
    }
}

/// Data direction and buffers of a simulated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimDir {
    /// No data.
    None,
    /// Data-out (initiator to target): these bytes are placed in the data
    /// area.
    Out(Vec<u8>),
    /// Data-in of this many bytes (the buffer starts filled with 0xa5).
    In(usize),
    /// Bidirectional: data-out bytes, and a data-in buffer of `in_len`.
    Bidi {
        /// Data-out bytes.
        out: Vec<u8>,
        /// Data-in length.
        in_len: usize,
    },
}

impl SimDir {
    /// The borrowed form [`KernelSim::submit_ref`] takes.
    pub fn as_dir_ref(&self) -> SimDirRef<'_> {
        match self {
            SimDir::None => SimDirRef::None,
            SimDir::Out(v) => SimDirRef::Out(v),
            SimDir::In(n) => SimDirRef::In(*n),
            SimDir::Bidi { out, in_len } => SimDirRef::Bidi {
                out,
                in_len: *in_len,
            },
        }
    }
}

/// [`SimDir`] with borrowed data-out bytes, for [`KernelSim::submit_ref`]
/// (no copy besides the one into the data area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimDirRef<'a> {
    /// No data.
    None,
    /// Data-out bytes.
    Out(&'a [u8]),
    /// Data-in of this many bytes.
    In(usize),
    /// Bidirectional: data-out bytes, and a data-in buffer of `in_len`.
    Bidi {
        /// Data-out bytes.
        out: &'a [u8],
        /// Data-in length.
        in_len: usize,
    },
}

/// The file and event fd a [`crate::ring::Ring`] is built from:
/// `Ring::from_parts(&dev.map, dev.len, dev.event_fd)`.
#[derive(Debug)]
pub struct SimDevice {
    /// The shared region (a memfd).
    pub map: File,
    /// Its length in bytes.
    pub len: usize,
    /// Userspace end of the event socketpair.
    pub event_fd: OwnedFd,
}

/// What the simulated kernel made of one completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCompletion {
    /// The completed command.
    pub cmd_id: u16,
    /// SCSI status as the initiator sees it (CHECK CONDITION for UNKNOWN_OP).
    pub status: u8,
    /// The 96-byte sense buffer when the status is CHECK CONDITION (and not
    /// UNKNOWN_OP), empty otherwise.
    pub sense: Vec<u8>,
    /// Data-in bytes transferred to the initiator (truncated by READ_LEN;
    /// empty after CHECK CONDITION without READ_LEN).
    pub data_in: Vec<u8>,
    /// The length completed with when READ_LEN was honoured.
    pub read_len: Option<u32>,
    /// Userspace set UNKNOWN_OP.
    pub unknown_op: bool,
}

/// A completion as [`KernelSim::process_completions_with`] reports it: the
/// fields of [`SimCompletion`], borrowing the simulator's buffers (valid for
/// the callback only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimCompletionRef<'a> {
    /// The completed command.
    pub cmd_id: u16,
    /// SCSI status as the initiator sees it.
    pub status: u8,
    /// The 96-byte sense buffer for CHECK CONDITION, empty otherwise.
    pub sense: &'a [u8],
    /// Data-in bytes transferred to the initiator.
    pub data_in: &'a [u8],
    /// The length completed with when READ_LEN was honoured.
    pub read_len: Option<u32>,
    /// Userspace set UNKNOWN_OP.
    pub unknown_op: bool,
}

impl SimCompletionRef<'_> {
    /// An owned copy.
    pub fn to_completion(&self) -> SimCompletion {
        SimCompletion {
            cmd_id: self.cmd_id,
            status: self.status,
            sense: self.sense.to_vec(),
            data_in: self.data_in.to_vec(),
            read_len: self.read_len,
            unknown_op: self.unknown_op,
        }
    }
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No room in the command ring or the data area (or no free cmd_id).
    #[error("ring or data area full")]
    Full,
    /// The command can never fit (larger than half the ring or the data area).
    #[error("command too big for this ring")]
    TooBig,
    /// The CDB is empty or shorter than its opcode says.
    #[error("bad cdb")]
    BadCdb,
    /// The ring is BROKEN (see [`KernelSim::broken`]).
    #[error("ring broken: {0}")]
    Broken(String),
    /// Invalid [`SimConfig`].
    #[error("bad config: {0}")]
    BadConfig(String),
    /// A hostile mode needs an entry and there is none yet.
    #[error("no entry to corrupt")]
    NoEntry,
    /// Mapping the region failed.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    pub(crate) fn io(op: &'static str, e: impl Into<std::io::Error>) -> SimError {
        SimError::Io {
            op,
            source: e.into(),
        }
    }
}
