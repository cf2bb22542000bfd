//! Errors of the ring layer.

use std::io;

/// Why an entry or the ring walk was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `cmd_head` is outside the ring or not 8-aligned.
    BadHead,
    /// `cmd_tail` (read back on resync) is outside the ring or not 8-aligned.
    BadTail,
    /// An entry header says length 0: the walk cannot advance.
    ZeroLength,
    /// An entry runs past the end of the command ring.
    PastRingEnd,
    /// An entry runs past `cmd_head` (into space the kernel has not filled).
    PastHead,
    /// A command entry shorter than `sizeof(struct tcmu_cmd_entry)` (112).
    ShortCommand,
    /// A TMR entry shorter than its fixed part (32).
    ShortTmr,
    /// `cmd_id` 0 (the kernel never allocates it).
    ZeroCmdId,
    /// `cmd_id` already in flight.
    DuplicateCmdId,
    /// The iov array does not fit in the entry (absurd `iov_cnt`s).
    IovCount,
    /// An iov lies outside the data area.
    IovOutOfBounds,
    /// The iov lengths add up past `usize`.
    IovTotal,
    /// `cdb_off` is outside the entry, or the CDB does not fit in it.
    CdbOutOfBounds,
    /// The CDB is longer than 260 bytes.
    CdbTooLong,
    /// `cmd_cnt` of a TMR entry does not fit in the entry.
    TmrCount,
}

/// Everything that can go wrong in the ring layer.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The mailbox is not a valid ABI-2 mailbox for this mapping.
    #[error("bad mailbox: {0}")]
    BadMailbox(String),
    /// An access outside the mapping (or the data area) was refused.
    #[error("out of bounds: offset {off} length {len}")]
    OutOfBounds {
        /// Offset from the start of the mapping.
        off: u64,
        /// Length of the access.
        len: u64,
    },
    /// The ring walk cannot go on: the ring must be reset. The fetch cursor
    /// stays at `off` (ring offset) and nothing after it was consumed.
    #[error("ring corrupt at ring offset {off}: {fault:?}")]
    Corrupt {
        /// Ring offset of the offending entry (or of the cursor).
        off: u32,
        /// What is wrong.
        fault: Fault,
    },
    /// One entry was malformed and skipped; the walk goes on. When `cmd_id`
    /// is `Some`, the command is in flight and MUST still be completed
    /// (e.g. with CHECK CONDITION), or the initiator hangs.
    #[error("bad entry at ring offset {off} (cmd_id {cmd_id:?}): {fault:?}")]
    BadEntry {
        /// Ring offset of the entry.
        off: u32,
        /// The command id, when it can be completed.
        cmd_id: Option<u16>,
        /// What is wrong.
        fault: Fault,
    },
    /// A completion for a command that is not in flight (never fetched, or
    /// already completed). Nothing was written: the kernel would mark the
    /// ring BROKEN.
    #[error("cmd_id {0} is not in flight")]
    NotInFlight(u16),
    /// The kernel reset the ring since it was last synchronised
    /// (`action/reset_ring`): it failed and freed every command in flight, so
    /// nothing was written. Resynchronise ([`crate::ring::Ring::resync_from_tail`]).
    #[error("the ring was reset by the kernel; completion of cmd_id {0} withheld")]
    ResetByKernel(u16),
    /// A cursor given to `set_fetch_cursor` is invalid.
    #[error("bad cursor {0}")]
    BadCursor(u32),
    /// The peer closed the event fd.
    #[error("event fd closed")]
    EventClosed,
    /// A caller buffer is smaller than needed.
    #[error("buffer of {got} bytes, need {need}")]
    ShortBuffer {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// Internal bookkeeping disagrees with itself (a bug, reported not panicked).
    #[error("internal ring state error: {0}")]
    Internal(&'static str),
}

impl RingError {
    /// The command id a bad entry carries, when it must still be completed.
    pub fn completable_cmd_id(&self) -> Option<u16> {
        match self {
            RingError::BadEntry { cmd_id, .. } => *cmd_id,
            _ => None,
        }
    }

    /// True when the ring cannot be walked further without a reset.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RingError::Corrupt { .. } | RingError::BadMailbox(_) | RingError::EventClosed
        )
    }

    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        RingError::Io {
            op,
            source: source.into(),
        }
    }
}
