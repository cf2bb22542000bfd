//! What the copy manager keeps about the EXTENDED COPY commands of one
//! logical unit ([`CopyResults`]): the copies running now and the results
//! held for RECEIVE COPY RESULTS.
//!
//! SPC-4 keeps copy results per I_T nexus; TCMU does not say which
//! initiator sent a command, so they are kept per logical unit (as unit
//! attentions are). Held: the results of a command with LIST ID USAGE 00b
//! that started copying (one refused while its parameter list was being
//! checked has nothing to report beyond its sense data), until a new
//! EXTENDED COPY names the same list identifier, or, for failed segment
//! details, until they were returned once. At most [`MAX_HELD`] lists are
//! held; the oldest goes first.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::params::ListIdUsage;
use super::MAX_CONCURRENT_COPIES;
use crate::scsi::error::ScsiError;
use crate::scsi::sense::Sense;

/// Lists whose results are held at once, per logical unit.
pub(crate) const MAX_HELD: usize = 16;

/// The outcome of one EXTENDED COPY that started copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Segments processed (completed, plus the failed one).
    pub segments: u16,
    /// Bytes written to destinations (or made to share storage).
    pub bytes: u64,
    /// The sense data it ended with, when it failed.
    pub failed: Option<Sense>,
}

/// Results held for one list identifier.
#[derive(Debug)]
struct Held {
    list_id: u8,
    outcome: Outcome,
    /// FAILED SEGMENT DETAILS were returned: no longer held.
    details_sent: bool,
}

/// The copy manager's state of one logical unit.
#[derive(Debug, Default)]
struct CopyState {
    held: VecDeque<Held>,
    /// List identifiers of copies running now (LIST ID USAGE 00b/10b).
    running: Vec<u8>,
    /// Copies running now, whatever their usage.
    running_count: usize,
}

/// The copies of one logical unit running now and the results held.
#[derive(Debug, Default)]
pub(crate) struct CopyResults {
    state: Mutex<CopyState>,
}

/// A running EXTENDED COPY ([`CopyResults::begin`]); ends with
/// [`CopyRun::finish`] (or on drop, holding nothing).
#[must_use]
pub(crate) struct CopyRun<'a> {
    results: &'a CopyResults,
    list_id: Option<u8>,
    hold: bool,
}

impl CopyResults {
    /// Registers a starting EXTENDED COPY: OPERATION IN PROGRESS when one
    /// with the same list identifier runs, INSUFFICIENT RESOURCES when
    /// [`MAX_CONCURRENT_COPIES`] run. Drops the results held for its list
    /// identifier.
    pub(crate) fn begin(&self, list_id: u8, usage: ListIdUsage) -> Result<CopyRun<'_>, ScsiError> {
        let mut st = self.lock();
        let id = (usage != ListIdUsage::Disabled).then_some(list_id);
        if let Some(id) = id {
            if st.running.contains(&id) {
                return Err(ScsiError::CopyInProgress { resources: false });
            }
        }
        if st.running_count >= usize::from(MAX_CONCURRENT_COPIES) {
            return Err(ScsiError::CopyInProgress { resources: true });
        }
        if let Some(id) = id {
            st.running.push(id);
            st.held.retain(|h| h.list_id != id);
        }
        st.running_count += 1;
        Ok(CopyRun {
            results: self,
            list_id: id,
            hold: usage == ListIdUsage::Hold,
        })
    }

    /// The outcome held for `list_id` (INVALID FIELD IN CDB at LIST
    /// IDENTIFIER when none is); `failed` asks for failed segment details,
    /// which are then no longer held.
    pub(crate) fn held_outcome(&self, list_id: u8, failed: bool) -> Result<Outcome, ScsiError> {
        let mut st = self.lock();
        let h = st
            .held
            .iter_mut()
            .find(|h| {
                h.list_id == list_id && (!failed || (h.outcome.failed.is_some() && !h.details_sent))
            })
            .ok_or_else(|| ScsiError::cdb(2, 7))?;
        h.details_sent |= failed;
        Ok(h.outcome)
    }

    fn lock(&self) -> MutexGuard<'_, CopyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CopyRun<'_> {
    /// The copy ended with `outcome`: held for RECEIVE COPY RESULTS when its
    /// LIST ID USAGE asked for it.
    pub fn finish(self, outcome: Outcome) {
        if let (true, Some(id)) = (self.hold, self.list_id) {
            let mut st = self.results.lock();
            if st.held.len() >= MAX_HELD {
                st.held.pop_front();
            }
            st.held.push_back(Held {
                list_id: id,
                outcome,
                details_sent: false,
            });
        }
    }
}

impl Drop for CopyRun<'_> {
    fn drop(&mut self) {
        let mut st = self.results.lock();
        if let Some(id) = self.list_id {
            st.running.retain(|&l| l != id);
        }
        st.running_count = st.running_count.saturating_sub(1);
    }
}
