//! The in-flight table: every command fetched from the ring and not yet
//! completed to it. It lives outside the device actor, so that a restarted
//! actor knows what was fetched, what is running, and which results are
//! waiting to be written: every command is completed exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tcmud_core::ring::CmdRequest;

/// Where a command is in its life.
#[derive(Debug)]
pub(crate) enum SlotState {
    /// Fetched; not yet handed to an I/O thread.
    Queued,
    /// Handed to an I/O thread under `token`; not started (cancellable).
    Dispatched {
        /// Identifies this dispatch; stale jobs carry another token.
        token: u64,
    },
    /// An I/O thread is executing it.
    Running {
        /// The dispatch being executed.
        token: u64,
    },
    /// Finished; the result is not yet written to the ring.
    Done(Outcome),
}

/// A finished command's result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// SCSI status.
    pub status: u8,
    /// Sense data (for CHECK CONDITION).
    pub sense: Vec<u8>,
    /// Data-in bytes the emulation put into the command's buffers (in the
    /// ring's data area: nothing is copied at completion).
    pub data_in_len: usize,
}

/// One fetched command.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The request as copied out of the ring.
    pub req: CmdRequest,
    /// Lifecycle state.
    pub state: SlotState,
    /// Executions that panicked so far.
    pub panics: u32,
}

/// Fetched, not yet completed commands in fetch order, plus the ring's
/// fetch cursor as of the last recorded fetch.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    fetch_cursor: Option<u32>,
    next_seq: u64,
    next_token: u64,
    slots: BTreeMap<u64, Slot>,
    by_id: HashMap<u16, u64>,
    // Indexes over `slots` by state, so a wake-up does not scan everything.
    queued: BTreeSet<u64>,
    done: BTreeSet<u64>,
}

impl InFlight {
    /// Records a fetched command and the fetch cursor after it. Returns its
    /// sequence number, or `None` if the cmd_id is already in flight (a
    /// kernel bug we must not answer twice).
    pub fn insert(&mut self, req: CmdRequest, cursor: u32) -> Option<u64> {
        self.fetch_cursor = Some(cursor);
        if self.by_id.contains_key(&req.cmd_id) {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(req.cmd_id, seq);
        self.queued.insert(seq);
        self.slots.insert(
            seq,
            Slot {
                req,
                state: SlotState::Queued,
                panics: 0,
            },
        );
        Some(seq)
    }

    /// Records a command the ring could not parse but that must still be
    /// completed (with `out`).
    pub fn insert_done(&mut self, req: CmdRequest, cursor: u32, out: Outcome) -> Option<u64> {
        let seq = self.insert(req, cursor)?;
        self.cancel_unstarted(seq, out);
        Some(seq)
    }

    /// The cmd_ids in flight, in fetch order.
    pub fn cmd_ids(&self) -> Vec<u16> {
        self.slots.values().map(|s| s.req.cmd_id).collect()
    }

    /// Records the fetch cursor after a non-command entry (TMR, PAD).
    pub fn set_fetch_cursor(&mut self, cursor: u32) {
        self.fetch_cursor = Some(cursor);
    }

    /// The fetch cursor as of the last recorded entry.
    pub fn fetch_cursor(&self) -> Option<u32> {
        self.fetch_cursor
    }

    /// Number of commands in flight.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No command in flight.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot `seq` (its state is changed only through this table).
    pub fn get(&self, seq: u64) -> Option<&Slot> {
        self.slots.get(&seq)
    }

    /// Sequence number of the command with `cmd_id`.
    pub fn seq_of(&self, cmd_id: u16) -> Option<u64> {
        self.by_id.get(&cmd_id).copied()
    }

    /// Commands not yet handed to an I/O thread, in fetch order.
    pub fn queued(&self) -> Vec<u64> {
        self.queued.iter().copied().collect()
    }

    /// Marks `seq` dispatched and returns the job's token.
    pub fn dispatch(&mut self, seq: u64) -> Option<u64> {
        let token = self.next_token;
        let slot = self.slots.get_mut(&seq)?;
        self.next_token += 1;
        slot.state = SlotState::Dispatched { token };
        self.queued.remove(&seq);
        Some(token)
    }

    /// An I/O thread starts job `token` of `seq`: true if it should run
    /// (not cancelled, not superseded, not already finished).
    pub fn start(&mut self, seq: u64, token: u64) -> bool {
        match self.slots.get_mut(&seq) {
            Some(slot) if matches!(slot.state, SlotState::Dispatched { token: t } if t == token) => {
                slot.state = SlotState::Running { token };
                true
            }
            _ => false,
        }
    }

    /// Job `token` of `seq` finished: store its result unless the command
    /// was meanwhile completed otherwise (device failed, aborted).
    pub fn finish(&mut self, seq: u64, token: u64, out: Outcome) -> bool {
        match self.slots.get_mut(&seq) {
            Some(slot) if matches!(slot.state, SlotState::Running { token: t } if t == token) => {
                slot.state = SlotState::Done(out);
                self.done.insert(seq);
                true
            }
            _ => false,
        }
    }

    /// Job `token` of `seq` panicked: it goes back to `Queued` to run again
    /// (`retry`) or finishes with `fallback`. Returns the panic count.
    pub fn panicked(&mut self, seq: u64, token: u64, retry: bool, fallback: Outcome) -> u32 {
        match self.slots.get_mut(&seq) {
            Some(slot) if matches!(slot.state, SlotState::Running { token: t } if t == token) => {
                slot.panics += 1;
                if retry {
                    slot.state = SlotState::Queued;
                    self.queued.insert(seq);
                } else {
                    slot.state = SlotState::Done(fallback);
                    self.done.insert(seq);
                }
                slot.panics
            }
            _ => 0,
        }
    }

    /// Completes every command that has not started with `out` (a failed
    /// device). Running ones are left to finish: their job reads or writes
    /// the command's buffers in the ring, which the kernel may hand to
    /// another command as soon as this one is completed.
    pub fn finish_all_unfinished(&mut self, out: &Outcome) -> usize {
        let mut n = 0;
        for (seq, slot) in &mut self.slots {
            if matches!(slot.state, SlotState::Queued | SlotState::Dispatched { .. }) {
                slot.state = SlotState::Done(out.clone());
                self.done.insert(*seq);
                n += 1;
            }
        }
        self.queued.clear();
        n
    }

    /// Cancels `seq` if it has not started: it finishes with `out`.
    pub fn cancel_unstarted(&mut self, seq: u64, out: Outcome) -> bool {
        match self.slots.get_mut(&seq) {
            Some(slot)
                if matches!(slot.state, SlotState::Queued | SlotState::Dispatched { .. }) =>
            {
                slot.state = SlotState::Done(out);
                self.queued.remove(&seq);
                self.done.insert(seq);
                true
            }
            _ => false,
        }
    }

    /// Finished commands that may be written now, in fetch order: all of
    /// them with out-of-order completion, else the finished prefix.
    pub fn writable(&self, out_of_order: bool) -> Vec<u64> {
        if out_of_order {
            return self.done.iter().copied().collect();
        }
        self.slots
            .iter()
            .take_while(|(_, s)| matches!(s.state, SlotState::Done(_)))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Removes `seq` once its completion is in the ring.
    pub fn remove(&mut self, seq: u64) -> Option<Slot> {
        let slot = self.slots.remove(&seq)?;
        self.by_id.remove(&slot.req.cmd_id);
        self.queued.remove(&seq);
        self.done.remove(&seq);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcmud_core::ring::{Cdb, DataSpans};

    fn req(cmd_id: u16) -> CmdRequest {
        CmdRequest {
            cmd_id,
            cdb: Cdb::new(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(),
            data: DataSpans::empty(),
            bidi: DataSpans::empty(),
        }
    }

    fn out(status: u8) -> Outcome {
        Outcome {
            status,
            ..Outcome::default()
        }
    }

    #[test]
    fn lifecycle_with_tokens() {
        let mut t = InFlight::default();
        let a = t.insert(req(7), 112).unwrap();
        let b = t.insert(req(9), 224).unwrap();
        assert!(t.insert(req(7), 336).is_none(), "cmd_id already in flight");
        assert_eq!(t.fetch_cursor(), Some(336));
        assert_eq!(t.queued(), vec![a, b]);
        let ta = t.dispatch(a).unwrap();
        assert!(!t.start(a, ta + 100), "a stale job does not run");
        assert!(t.start(a, ta));
        assert!(!t.start(a, ta), "nor twice");
        assert!(!t.cancel_unstarted(a, out(2)), "running: not cancellable");
        assert!(t.finish(a, ta, out(0)));
        assert_eq!(t.writable(false), vec![a]);
        let tb = t.dispatch(b).unwrap();
        assert!(t.cancel_unstarted(b, out(2)));
        assert!(!t.start(b, tb), "cancelled before it started");
        assert_eq!(t.writable(true), vec![a, b]);
        t.remove(a);
        assert_eq!(t.cmd_ids(), vec![9]);
        assert_eq!(t.seq_of(7), None);
        t.remove(b);
        assert!(t.is_empty());
    }

    #[test]
    fn in_order_writes_only_the_finished_prefix() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        let tb = t.dispatch(b).unwrap();
        assert!(t.start(b, tb) && t.finish(b, tb, out(0)));
        assert!(t.writable(false).is_empty());
        assert_eq!(t.writable(true), vec![b]);
        assert_eq!(t.finish_all_unfinished(&out(2)), 1);
        assert_eq!(t.writable(false), vec![a, b]);
    }

    #[test]
    fn a_failed_device_waits_for_running_jobs() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        let ta = t.dispatch(a).unwrap();
        assert!(t.start(a, ta));
        // Only b (not started) is failed; a still owns its ring buffers.
        assert_eq!(t.finish_all_unfinished(&out(2)), 1);
        assert_eq!(t.writable(true), vec![b]);
        assert!(t.finish(a, ta, out(0)), "a's own result is kept");
        assert_eq!(t.writable(true), vec![a, b]);
        assert!(matches!(t.get(a).map(|s| &s.state), Some(SlotState::Done(o)) if o.status == 0));
    }

    #[test]
    fn panicked_job_is_requeued_or_failed() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let ta = t.dispatch(a).unwrap();
        assert!(t.start(a, ta));
        assert_eq!(t.panicked(a, ta, true, out(2)), 1);
        assert_eq!(t.queued(), vec![a]);
        let ta = t.dispatch(a).unwrap();
        assert!(t.start(a, ta));
        assert_eq!(t.panicked(a, ta, false, out(2)), 2);
        assert!(t.queued().is_empty());
        assert_eq!(t.writable(false), vec![a]);
        assert!(
            !t.finish(a, ta, out(0)),
            "a finished slot is not overwritten"
        );
    }
}
