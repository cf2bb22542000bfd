//! Where the time of the last commit and of the last snapshot or clone
//! went (issue 13: a snapshot's worst case against the disk's own
//! `fdatasync`). Recorded on every commit, read by benches and tools
//! through [`Pool::last_commit_phases`] and [`Pool::last_share_phases`].

use std::sync::Mutex;
use std::time::Duration;

use super::{guard, Pool};

/// The steps of one commit (see the module docs of `pool`, "Durability
/// ordering"), each measured on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitPhases {
    /// Waiting for the commit lock (another commit running).
    pub commit_lock_wait: Duration,
    /// Taking the batch under the state lock, the wait for it included.
    pub take: Duration,
    /// Growing the data file and its `fdatasync` (step 2; zero-cost when
    /// nothing was written since the last sync).
    pub data_sync: Duration,
    /// sled's `apply_batch` and `flush` (its `sync_file_range`).
    pub store_apply: Duration,
    /// `fdatasync` of `meta/db` and the syncs of new names in `meta/`.
    pub meta_sync: Duration,
    /// Rewriting `meta.seal` and its `fdatasync`, beside `store_apply` and
    /// `meta_sync` (from the spawn of the thread that does it).
    pub seal: Duration,
    /// The whole commit, from asking for the commit lock to the end.
    pub total: Duration,
}

/// The steps of one snapshot or clone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharePhases {
    /// Waiting for the source volume's gate (its writes in flight).
    pub gate_wait: Duration,
    /// Waiting for the state lock.
    pub lock_wait: Duration,
    /// The catalog and tree work under the state lock (O(1) for format 3).
    pub work: Duration,
    /// The commit that makes the new volume durable.
    pub commit: CommitPhases,
    /// The whole operation.
    pub total: Duration,
}

/// The last recorded phases.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    commit: Mutex<CommitPhases>,
    share: Mutex<SharePhases>,
}

impl Phases {
    pub(crate) fn set_commit(&self, p: CommitPhases) {
        *guard(&self.commit) = p;
    }

    pub(crate) fn commit(&self) -> CommitPhases {
        *guard(&self.commit)
    }

    pub(crate) fn set_share(&self, p: SharePhases) {
        *guard(&self.share) = p;
    }
}

impl Pool {
    /// Where the time of the last commit went.
    pub fn last_commit_phases(&self) -> CommitPhases {
        self.inner.phases.commit()
    }

    /// Where the time of the last snapshot or clone went.
    pub fn last_share_phases(&self) -> SharePhases {
        *guard(&self.inner.phases.share)
    }
}
