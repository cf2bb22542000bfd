//! The in-flight table: every command fetched from the ring and not yet
//! completed to it. It lives outside the device actor, so that a restarted
//! actor knows what was fetched, what is running, and which results are
//! waiting to be written: every command is completed exactly once.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use tcmud_core::ring::CmdRequest;
use tcmud_core::scsi::Sense;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// SCSI status.
    pub status: u8,
    /// Sense data (for CHECK CONDITION), written to the ring in fixed
    /// format.
    pub sense: Option<Sense>,
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
    /// The kernel queued it after this moment (the last look at the ring
    /// that did not see it): what its `cmd_time_out` is measured from.
    pub since: Instant,
    /// When the look that found it started: what its latency is measured
    /// from.
    pub fetched: Instant,
}

/// Names one slot of the table: its place in the slab and its fetch
/// sequence number (fetch order; also what makes a key to a slot that was
/// removed and reused stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotKey {
    idx: u32,
    seq: u64,
}

/// One slab place: the slot and the key naming it.
#[derive(Debug)]
struct Place {
    key: SlotKey,
    slot: Slot,
}

/// Why a fetched command could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InsertError {
    /// Its cmd_id is already in flight (a kernel bug we must not answer
    /// twice).
    #[error("cmd_id already in flight")]
    IdInFlight,
    /// The slab cannot name another place (at most one place per cmd_id
    /// is ever in use, so this takes a broken table).
    #[error("in-flight table full")]
    Full,
}

/// A command handed to an executor (an I/O thread, the device's own
/// thread, an asynchronous backend): what [`InFlight::start`] takes to run
/// it. Stale once the command was cancelled or forgotten meanwhile.
#[must_use = "a dispatched command is started, or cancelled through its key"]
#[derive(Debug)]
pub(crate) struct Dispatched {
    key: SlotKey,
    token: u64,
}

impl Dispatched {
    /// The command's key (to cancel it when no executor takes it).
    pub fn key(&self) -> SlotKey {
        self.key
    }
}

/// A command being executed: its result is stored by [`Running::finish`]
/// (or [`Running::panicked`]), which consume it, so a command's execution
/// ends exactly once.
#[must_use = "a running command must be finished exactly once"]
#[derive(Debug)]
pub(crate) struct Running {
    key: SlotKey,
    token: u64,
}

/// Where a finished execution's result went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landed {
    /// Stored for completion to the ring.
    Stored,
    /// Dropped: the command was completed otherwise meanwhile (a failed
    /// device, an abort) or forgotten (a ring reset, an abandoning drain).
    Dropped,
}

/// A command waiting for an executor: its key and request, looked up once.
#[derive(Debug)]
pub(crate) struct QueuedRef<'a> {
    /// Its key (to dispatch or cancel it).
    pub key: SlotKey,
    /// The slot.
    pub slot: &'a Slot,
}

/// A finished command ready to be written to the ring: its key, request
/// and result, looked up once.
#[derive(Debug)]
pub(crate) struct DoneRef<'a> {
    /// Its key (to remove it once written).
    pub key: SlotKey,
    /// The slot.
    pub slot: &'a Slot,
    /// Its result.
    pub out: Outcome,
}

/// Fetched, not yet completed commands, plus the ring's fetch cursor as of
/// the last recorded fetch.
///
/// Slots live in a slab (no allocation per command once it has grown to
/// the queue depth); an index by cmd_id (slab place + 1, 0 for none; grown
/// to the highest id seen, and the kernel hands out the lowest free ids, so
/// it stays as small as the queue depth a device uses) finds
/// a command for a TMR and refuses an id already in flight. The commands
/// waiting for an I/O thread and those waiting to be written to the ring
/// are queues of keys, checked when taken (a key whose slot was removed or
/// moved on is skipped), so no state change has to search them.
pub(crate) struct InFlight {
    fetch_cursor: Option<u32>,
    next_seq: u64,
    next_token: u64,
    places: Vec<Option<Place>>,
    free: Vec<u32>,
    by_id: Vec<u32>,
    queued: VecDeque<SlotKey>,
    done: VecDeque<SlotKey>,
    /// Tokens of jobs still running for commands forgotten by
    /// [`InFlight::forget_all`] (their results are dropped when they end).
    orphans: HashSet<u64>,
    /// When the ring was last looked at for new commands.
    last_look: Instant,
    /// `last_look` before the current look: commands fetched now were
    /// queued after it.
    pass_since: Instant,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("len", &self.len())
            .field("fetch_cursor", &self.fetch_cursor)
            .field("next_seq", &self.next_seq)
            .field("queued", &self.queued.len())
            .field("done", &self.done.len())
            .finish_non_exhaustive()
    }
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            fetch_cursor: None,
            next_seq: 0,
            next_token: 0,
            places: Vec::new(),
            free: Vec::new(),
            by_id: Vec::new(),
            queued: VecDeque::new(),
            done: VecDeque::new(),
            orphans: HashSet::new(),
            last_look: Instant::now(),
            pass_since: Instant::now(),
        }
    }
}

impl InFlight {
    /// A look at the ring for new commands starts: the ones it finds were
    /// queued after the previous look.
    pub fn begin_fetch(&mut self) {
        self.pass_since = self.last_look;
        self.last_look = Instant::now();
    }

    /// A look from outside the actor (the idle watch) found nothing past
    /// the fetch cursor at `at`: commands fetched later were queued after
    /// it, as after a look of the actor's own.
    pub fn saw_empty_at(&mut self, at: Instant) {
        if at > self.last_look {
            self.last_look = at;
        }
    }

    /// Records a fetched command and the fetch cursor after it. Returns its
    /// key.
    pub fn insert(&mut self, req: CmdRequest, cursor: u32) -> Result<SlotKey, InsertError> {
        self.fetch_cursor = Some(cursor);
        let cmd_id = usize::from(req.cmd_id);
        if self.by_id.len() <= cmd_id {
            self.by_id.resize(cmd_id + 1, 0);
        }
        if self.by_id.get(cmd_id).is_none_or(|&i| i != 0) {
            return Err(InsertError::IdInFlight);
        }
        let (idx, reused) = match self.free.pop() {
            Some(idx) => (idx, true),
            None => {
                let idx = u32::try_from(self.places.len()).map_err(|_| InsertError::Full)?;
                (idx, false)
            }
        };
        // The id index holds place + 1 (0: none).
        let Some(id_entry) = idx.checked_add(1) else {
            if reused {
                self.free.push(idx);
            }
            return Err(InsertError::Full);
        };
        let key = SlotKey {
            idx,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let place = Some(Place {
            key,
            slot: Slot {
                req,
                state: SlotState::Queued,
                panics: 0,
                since: self.pass_since,
                fetched: self.last_look,
            },
        });
        match self.places.get_mut(idx as usize) {
            Some(p) => *p = place,
            None => self.places.push(place),
        }
        if let Some(i) = self.by_id.get_mut(cmd_id) {
            *i = id_entry;
        }
        self.queued.push_back(key);
        Ok(key)
    }

    /// Records a command the ring could not parse but that must still be
    /// completed (with `out`).
    pub fn insert_done(
        &mut self,
        req: CmdRequest,
        cursor: u32,
        out: Outcome,
    ) -> Result<SlotKey, InsertError> {
        let key = self.insert(req, cursor)?;
        self.cancel_unstarted(key, out);
        Ok(key)
    }

    /// The cmd_ids in flight (in no particular order).
    pub fn cmd_ids(&self) -> Vec<u16> {
        self.places
            .iter()
            .flatten()
            .map(|p| p.slot.req.cmd_id)
            .collect()
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
        // Every place holds a command or is on the free list.
        self.places.len() - self.free.len()
    }

    /// No command in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot `key` (its state is changed only through this table).
    pub fn get(&self, key: SlotKey) -> Option<&Slot> {
        self.place(key).map(|p| &p.slot)
    }

    fn place(&self, key: SlotKey) -> Option<&Place> {
        self.places
            .get(key.idx as usize)
            .and_then(Option::as_ref)
            .filter(|p| p.key == key)
    }

    fn slot_mut(&mut self, key: SlotKey) -> Option<&mut Slot> {
        self.places
            .get_mut(key.idx as usize)
            .and_then(Option::as_mut)
            .filter(|p| p.key == key)
            .map(|p| &mut p.slot)
    }

    /// Key of the command with `cmd_id` (for task management).
    pub fn key_of(&self, cmd_id: u16) -> Option<SlotKey> {
        let idx = self.by_id.get(usize::from(cmd_id))?.checked_sub(1)?;
        let p = self.places.get(idx as usize)?.as_ref()?;
        (p.slot.req.cmd_id == cmd_id).then_some(p.key)
    }

    /// The next command waiting for an I/O thread (fetch order, but a
    /// command re-queued after a panic goes to the back). It stays first in
    /// line until [`InFlight::dispatch`] or [`InFlight::cancel_unstarted`]
    /// moves it on: a crash in between leaves it queued, not stranded.
    pub fn next_queued(&mut self) -> Option<QueuedRef<'_>> {
        // Skip keys of slots that were removed or moved on since queued.
        let key = loop {
            let key = *self.queued.front()?;
            if matches!(self.get(key).map(|s| &s.state), Some(SlotState::Queued)) {
                break key;
            }
            self.queued.pop_front();
        };
        self.get(key).map(|slot| QueuedRef { key, slot })
    }

    /// Marks the queued command `key` dispatched: the handle an executor
    /// starts it with.
    pub fn dispatch(&mut self, key: SlotKey) -> Option<Dispatched> {
        let token = self.next_token;
        let slot = self.slot_mut(key)?;
        if !matches!(slot.state, SlotState::Queued) {
            return None;
        }
        slot.state = SlotState::Dispatched { token };
        self.next_token += 1;
        Some(Dispatched { key, token })
    }

    /// An executor starts the dispatched command: the handle to finish it
    /// with, or `None` when it must not run (cancelled, superseded, already
    /// finished).
    pub fn start(&mut self, job: Dispatched) -> Option<Running> {
        let Dispatched { key, token } = job;
        let slot = self.slot_mut(key)?;
        if !matches!(slot.state, SlotState::Dispatched { token: t } if t == token) {
            return None;
        }
        slot.state = SlotState::Running { token };
        Some(Running { key, token })
    }

    /// The running slot of `run`, if the command is still the one it ran
    /// (else the job's token stops counting as an orphan).
    fn running_slot(&mut self, run: &Running) -> Option<&mut Slot> {
        let token = run.token;
        let live = self
            .slot_mut(run.key)
            .is_some_and(|s| matches!(s.state, SlotState::Running { token: t } if t == token));
        if !live {
            self.orphans.remove(&token);
            return None;
        }
        self.slot_mut(run.key)
    }
}

impl Running {
    /// The command's key.
    pub fn key(&self) -> SlotKey {
        self.key
    }

    /// The execution ended with `out`: stored unless the command was
    /// meanwhile completed otherwise or forgotten.
    pub fn finish(self, table: &mut InFlight, out: Outcome) -> Landed {
        let Some(slot) = table.running_slot(&self) else {
            return Landed::Dropped;
        };
        slot.state = SlotState::Done(out);
        table.done.push_back(self.key);
        Landed::Stored
    }

    /// The execution panicked: the command goes back to `Queued` to run
    /// again (`retry`) or finishes with `fallback`. Returns its panic count
    /// (`None`: the command was completed otherwise or forgotten).
    pub fn panicked(self, table: &mut InFlight, retry: bool, fallback: Outcome) -> Option<u32> {
        let slot = table.running_slot(&self)?;
        slot.panics += 1;
        slot.state = match retry {
            true => SlotState::Queued,
            false => SlotState::Done(fallback),
        };
        let panics = slot.panics;
        match retry {
            true => table.queued.push_back(self.key),
            false => table.done.push_back(self.key),
        }
        Some(panics)
    }
}

impl InFlight {
    /// Completes every command that has not started with `out` (a failed
    /// device). Running ones are left to finish: their job reads or writes
    /// the command's buffers in the ring, which the kernel may hand to
    /// another command as soon as this one is completed.
    pub fn finish_all_unfinished(&mut self, out: Outcome) -> usize {
        let mut n = 0;
        for p in self.places.iter_mut().flatten() {
            if matches!(
                p.slot.state,
                SlotState::Queued | SlotState::Dispatched { .. }
            ) {
                p.slot.state = SlotState::Done(out);
                self.done.push_back(p.key);
                n += 1;
            }
        }
        self.queued.clear();
        n
    }

    /// Cancels `key` if it has not started: it finishes with `out`.
    pub fn cancel_unstarted(&mut self, key: SlotKey, out: Outcome) -> bool {
        match self.slot_mut(key) {
            Some(slot)
                if matches!(slot.state, SlotState::Queued | SlotState::Dispatched { .. }) =>
            {
                slot.state = SlotState::Done(out);
                self.done.push_back(key);
                true
            }
            _ => false,
        }
    }

    /// The next finished command to write to the ring, left in the table
    /// (and first in line) until [`InFlight::remove`] takes it: a crash
    /// between the two writes it again rather than losing it.
    pub fn next_done(&mut self) -> Option<DoneRef<'_>> {
        // Skip keys of slots that were removed or moved on since queued.
        let key = loop {
            let key = *self.done.front()?;
            if matches!(self.get(key).map(|s| &s.state), Some(SlotState::Done(_))) {
                break key;
            }
            self.done.pop_front();
        };
        let slot = self.get(key)?;
        match slot.state {
            SlotState::Done(out) => Some(DoneRef { key, slot, out }),
            _ => None,
        }
    }

    /// Finished commands, in fetch order: all of them with out-of-order
    /// completion, else the finished prefix.
    #[cfg(test)]
    pub fn writable(&self, out_of_order: bool) -> Vec<SlotKey> {
        let mut all = self.in_fetch_order();
        if !out_of_order {
            let end = all
                .iter()
                .position(|k| !matches!(self.get(*k).map(|s| &s.state), Some(SlotState::Done(_))))
                .unwrap_or(all.len());
            all.truncate(end);
        }
        all.retain(|k| matches!(self.get(*k).map(|s| &s.state), Some(SlotState::Done(_))));
        all
    }

    /// Commands waiting for an I/O thread, in fetch order.
    #[cfg(test)]
    pub fn queued(&self) -> Vec<SlotKey> {
        let mut all = self.in_fetch_order();
        all.retain(|k| matches!(self.get(*k).map(|s| &s.state), Some(SlotState::Queued)));
        all
    }

    #[cfg(test)]
    fn in_fetch_order(&self) -> Vec<SlotKey> {
        let mut keys: Vec<SlotKey> = self.places.iter().flatten().map(|p| p.key).collect();
        keys.sort_by_key(|k| k.seq);
        keys
    }

    /// Forgets every command (the kernel reset the ring and failed them all
    /// itself): nothing of them may be written to the ring. Jobs still running
    /// find their slot gone and their result is dropped; until they end they
    /// count as [`InFlight::orphans`]. Returns how many commands were
    /// forgotten and how many of those were running.
    pub fn forget_all(&mut self) -> (usize, usize) {
        let (mut n, mut running) = (0, 0);
        for place in self.places.iter_mut() {
            if let Some(p) = place.take() {
                n += 1;
                if let SlotState::Running { token } = p.slot.state {
                    self.orphans.insert(token);
                    running += 1;
                }
                if let Some(i) = self.by_id.get_mut(usize::from(p.slot.req.cmd_id)) {
                    *i = 0;
                }
                self.free.push(p.key.idx);
            }
        }
        self.queued.clear();
        self.done.clear();
        self.fetch_cursor = None;
        (n, running)
    }

    /// Gives up on the commands an I/O thread is executing (a drain whose
    /// deadline passed: the backstore hangs). They leave the table without a
    /// completion: their buffers stay theirs in the kernel (which fails them
    /// to the initiator when its `cmd_time_out` expires), so a job that ends
    /// later cannot write into buffers handed to another command; its result
    /// is dropped, as for [`InFlight::forget_all`]. Returns how many.
    pub fn abandon_running(&mut self) -> usize {
        let mut n = 0;
        for place in self.places.iter_mut() {
            let token = match place {
                Some(Place {
                    slot:
                        Slot {
                            state: SlotState::Running { token },
                            ..
                        },
                    ..
                }) => *token,
                _ => continue,
            };
            if let Some(p) = place.take() {
                self.orphans.insert(token);
                if let Some(id) = self.by_id.get_mut(usize::from(p.slot.req.cmd_id)) {
                    *id = 0;
                }
                self.free.push(p.key.idx);
                n += 1;
            }
        }
        n
    }

    /// Jobs of forgotten commands still running (see [`InFlight::forget_all`]).
    pub fn orphans(&self) -> usize {
        self.orphans.len()
    }

    /// Removes `key` once its completion is in the ring.
    pub fn remove(&mut self, key: SlotKey) -> Option<Slot> {
        self.place(key)?;
        let place = self.places.get_mut(key.idx as usize)?.take()?;
        if let Some(i) = self.by_id.get_mut(usize::from(place.slot.req.cmd_id)) {
            *i = 0;
        }
        self.free.push(key.idx);
        if self.done.front() == Some(&key) {
            self.done.pop_front();
        }
        Some(place.slot)
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

    /// Another handle on the same dispatch (a stale or duplicated job).
    fn copy(d: &Dispatched) -> Dispatched {
        Dispatched {
            key: d.key,
            token: d.token,
        }
    }

    /// Another handle on the same execution (a job of a forgotten command).
    fn copy_run(r: &Running) -> Running {
        Running {
            key: r.key,
            token: r.token,
        }
    }

    /// Dispatches, starts and finishes `k` with `o`.
    fn run(t: &mut InFlight, k: SlotKey, o: Outcome) -> Landed {
        let d = t.dispatch(k).unwrap();
        t.start(d).unwrap().finish(t, o)
    }

    #[test]
    fn the_id_index_grows_to_the_ids_used() {
        let mut t = InFlight::default();
        assert_eq!(t.by_id.len(), 0, "nothing allocated before a command");
        let a = t.insert(req(3), 1).unwrap();
        assert_eq!(t.by_id.len(), 4);
        assert_eq!(t.key_of(2), None);
        assert_eq!(t.key_of(40_000), None, "beyond the index: not in flight");
        let b = t.insert(req(u16::MAX), 2).unwrap();
        assert_eq!(
            t.insert(req(u16::MAX), 3),
            Err(InsertError::IdInFlight),
            "cmd_id already in flight"
        );
        assert_eq!((t.key_of(3), t.key_of(u16::MAX)), (Some(a), Some(b)));
        t.remove(b);
        assert_eq!(t.key_of(u16::MAX), None);
        assert!(t.insert(req(u16::MAX), 4).is_ok(), "free again");
    }

    #[test]
    fn lifecycle_with_tokens() {
        let mut t = InFlight::default();
        let a = t.insert(req(7), 112).unwrap();
        let b = t.insert(req(9), 224).unwrap();
        assert!(t.insert(req(7), 336).is_err(), "cmd_id already in flight");
        assert_eq!(t.fetch_cursor(), Some(336));
        assert_eq!(t.queued(), vec![a, b]);
        let ta = t.dispatch(a).unwrap();
        let stale = Dispatched {
            key: a,
            token: ta.token + 100,
        };
        assert!(t.start(stale).is_none(), "a stale job does not run");
        let twice = copy(&ta);
        let ra = t.start(ta).unwrap();
        assert!(t.start(twice).is_none(), "nor twice");
        assert!(!t.cancel_unstarted(a, out(2)), "running: not cancellable");
        assert_eq!(ra.finish(&mut t, out(0)), Landed::Stored);
        assert_eq!(t.writable(false), vec![a]);
        let tb = t.dispatch(b).unwrap();
        assert!(t.cancel_unstarted(b, out(2)));
        assert!(t.start(tb).is_none(), "cancelled before it started");
        assert_eq!(t.writable(true), vec![a, b]);
        t.remove(a);
        assert_eq!(t.cmd_ids(), vec![9]);
        assert_eq!(t.key_of(7), None);
        assert_eq!(t.key_of(9), Some(b));
        t.remove(b);
        assert!(t.is_empty());
    }

    #[test]
    fn in_order_writes_only_the_finished_prefix() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        assert_eq!(run(&mut t, b, out(0)), Landed::Stored);
        assert!(t.writable(false).is_empty());
        assert_eq!(t.writable(true), vec![b]);
        assert_eq!(t.finish_all_unfinished(out(2)), 1);
        assert_eq!(t.writable(false), vec![a, b]);
    }

    #[test]
    fn a_failed_device_waits_for_running_jobs() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        let ta = t.dispatch(a).unwrap();
        let ra = t.start(ta).unwrap();
        // Only b (not started) is failed; a still owns its ring buffers.
        assert_eq!(t.finish_all_unfinished(out(2)), 1);
        assert_eq!(t.writable(true), vec![b]);
        assert_eq!(
            ra.finish(&mut t, out(0)),
            Landed::Stored,
            "a's own result is kept"
        );
        assert_eq!(t.writable(true), vec![a, b]);
        assert!(matches!(t.get(a).map(|s| &s.state), Some(SlotState::Done(o)) if o.status == 0));
    }

    #[test]
    fn panicked_job_is_requeued_or_failed() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let ta = t.dispatch(a).unwrap();
        let ra = t.start(ta).unwrap();
        assert_eq!(ra.panicked(&mut t, true, out(2)), Some(1));
        assert_eq!(t.queued(), vec![a]);
        let ta = t.dispatch(a).unwrap();
        let ra = t.start(ta).unwrap();
        let again = copy_run(&ra);
        assert_eq!(ra.panicked(&mut t, false, out(2)), Some(2));
        assert!(t.queued().is_empty());
        assert_eq!(t.writable(false), vec![a]);
        assert_eq!(
            again.finish(&mut t, out(0)),
            Landed::Dropped,
            "a finished slot is not overwritten"
        );
    }

    #[test]
    fn a_key_to_a_removed_slot_is_stale_after_its_place_is_reused() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let ta = t.dispatch(a).unwrap();
        let ra = t.start(ta).unwrap();
        let stale = copy_run(&ra);
        assert_eq!(ra.finish(&mut t, out(0)), Landed::Stored);
        assert_eq!(t.next_done().map(|d| d.key), Some(a));
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none(), "removed once");
        let b = t.insert(req(1), 0).expect("cmd_id 1 is free again");
        assert_ne!(a, b, "same place, new sequence number");
        assert!(t.get(a).is_none());
        assert_eq!(
            stale.finish(&mut t, out(0)),
            Landed::Dropped,
            "a stale job cannot finish the new command"
        );
        assert!(!t.cancel_unstarted(a, out(2)));
        assert!(t.next_done().is_none());
        assert_eq!(t.next_queued().map(|q| q.key), Some(b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn next_done_keeps_the_command_until_it_is_removed() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        assert!(t.cancel_unstarted(b, out(2)));
        assert!(t.cancel_unstarted(a, out(2)));
        // A crash between next_done and remove writes it again, not never.
        assert_eq!(t.next_done().map(|d| d.key), Some(b));
        let d = t.next_done().unwrap();
        assert_eq!((d.key, d.out, d.slot.req.cmd_id), (b, out(2), 2));
        t.remove(b);
        assert_eq!(t.next_done().map(|d| d.key), Some(a));
        t.remove(a);
        assert!(t.next_done().is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn next_queued_skips_cancelled_and_dispatched_commands() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        let c = t.insert(req(3), 0).unwrap();
        assert!(t.cancel_unstarted(a, out(2)));
        let _b = t.dispatch(b).unwrap();
        assert!(t.dispatch(b).is_none(), "not queued any more");
        assert_eq!(t.next_queued().map(|q| q.key), Some(c));
        let _c = t.dispatch(c).unwrap();
        assert_eq!(t.next_queued().map(|q| q.key), None);
    }

    #[test]
    fn many_commands_reuse_a_few_places() {
        let mut t = InFlight::default();
        for round in 0..1000u32 {
            let ids = [(round % 7) as u16, 100 + (round % 5) as u16];
            let keys: Vec<_> = ids
                .iter()
                .map(|&i| t.insert(req(i), round).unwrap())
                .collect();
            for k in &keys {
                assert_eq!(run(&mut t, *k, out(0)), Landed::Stored);
            }
            while let Some(k) = t.next_done().map(|d| d.key) {
                t.remove(k);
            }
            assert!(t.is_empty());
        }
        assert!(t.places.len() <= 2, "{} places", t.places.len());
    }

    #[test]
    fn next_queued_keeps_the_command_until_it_is_dispatched() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 0).unwrap();
        let b = t.insert(req(2), 0).unwrap();
        // A crash between next_queued and dispatch finds it again.
        assert_eq!(t.next_queued().map(|q| q.key), Some(a));
        assert_eq!(t.next_queued().map(|q| q.key), Some(a));
        let _a = t.dispatch(a).unwrap();
        assert_eq!(t.next_queued().map(|q| q.key), Some(b));
        assert!(t.cancel_unstarted(b, out(2)));
        assert_eq!(t.next_queued().map(|q| q.key), None);
    }

    #[test]
    fn key_of_finds_every_cmd_id_and_forgets_removed_ones() {
        let mut t = InFlight::default();
        let lo = t.insert(req(0), 0).unwrap();
        let hi = t.insert(req(u16::MAX), 0).unwrap();
        assert_eq!((t.key_of(0), t.key_of(u16::MAX)), (Some(lo), Some(hi)));
        assert_eq!(t.key_of(1), None);
        assert!(t.cancel_unstarted(lo, out(2)));
        t.remove(lo);
        assert_eq!(t.key_of(0), None);
        // The place is reused by another id; the old id stays unknown.
        let again = t.insert(req(7), 0).unwrap();
        assert_eq!(t.key_of(7), Some(again));
        assert_eq!(t.key_of(0), None);
        assert!(t.insert(req(u16::MAX), 0).is_err(), "still in flight");
    }

    #[test]
    fn forget_all_drops_everything_and_tracks_running_jobs_until_they_end() {
        let mut t = InFlight::default();
        let a = t.insert(req(1), 64).unwrap();
        let b = t.insert(req(2), 128).unwrap();
        let _c = t.insert(req(3), 192).unwrap();
        assert_eq!(t.next_queued().map(|q| q.key), Some(a));
        let ta = t.dispatch(a).unwrap();
        let ra = t.start(ta).unwrap();
        assert_eq!(t.next_queued().map(|q| q.key), Some(b));
        let tb = t.dispatch(b).unwrap(); // dispatched, not started
        assert_eq!(t.forget_all(), (3, 1));
        assert!(t.is_empty());
        assert_eq!(t.orphans(), 1);
        assert!(t.next_done().is_none());
        // The ids are free again, and a new command may reuse a slab place.
        let n = t.insert(req(1), 64).unwrap();
        // The forgotten jobs: the unstarted one never runs, the running one's
        // result is dropped (even if its slab place was reused).
        assert!(t.start(tb).is_none());
        assert_eq!(ra.finish(&mut t, out(0)), Landed::Dropped);
        assert_eq!(t.orphans(), 0);
        assert!(t.next_done().is_none());
        assert!(t.get(n).is_some());
    }
}
