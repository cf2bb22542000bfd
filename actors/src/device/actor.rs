//! The device actor: one per uio minor. It waits for kicks, fetches ring
//! entries into the in-flight table, hands commands to the backstore's I/O
//! threads, writes finished results back and kicks the kernel once per
//! batch. All its state that matters lives in [`DeviceShared`], so a
//! restarted incarnation carries on where the crashed one stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tcmud_core::ring::{
    Cdb, CmdRequest, DataSpans, Entry, Fault, Ring, RingError, SharedData, TmrRequest,
};
use tcmud_core::scsi::{is_read, IoPlan, OpClass};

use super::async_io;
use super::direction::{direction, Dir};
use super::exec::{self, Job};
use super::fault::FaultPoint;
use super::inflight::{DoneRef, InFlight, InsertError, Outcome, QueuedRef, SlotKey};
use super::lifecycle::Phase;
use super::outcome::{
    aborted, completion, data_in, internal_target_failure, invalid_field_in_cdb, CHECK_CONDITION,
    GOOD,
};
use super::shared::{lock, Counters, DeviceShared};
use super::wake::{wake_stream, Wake};

/// READs up to this many bytes are first tried on the device's thread
/// without waiting ([`exec::try_nowait`]).
const NOWAIT_READ_MAX: usize = 64 << 10;

/// How many of those READs one round of the actor serves itself.
const NOWAIT_READS_PER_PUMP: usize = 1;

/// The actor serving one device's ring.
pub struct DeviceActor {
    shared: Arc<DeviceShared>,
    ring: Ring,
    tick: Duration,
    /// The housekeeping tick, while armed: only while the device has work
    /// that no event may end (commands in flight, a drain, armed faults),
    /// or always when the idle watch is not running.
    tick_armed: Option<SpawnHandle>,
    /// The process-wide idle watch looks at this device's ring
    /// ([`super::idle_watch`]).
    watched: bool,
    need_kick: bool,
    /// The backend never blocks: run commands on this thread.
    inline_io: bool,
    /// Jobs to run on this thread (kept to reuse its allocation).
    inline_jobs: Vec<Job>,
}

impl DeviceActor {
    pub(crate) fn new(
        shared: Arc<DeviceShared>,
        ring: Ring,
        tick: Duration,
        watched: bool,
    ) -> DeviceActor {
        let inline_io = !shared.backstore.backend().may_block();
        DeviceActor {
            shared,
            ring,
            tick,
            tick_armed: None,
            watched,
            need_kick: false,
            inline_io,
            inline_jobs: Vec::new(),
        }
    }

    /// One round: fetch, dispatch, write finished results, kick, and see
    /// whether a requested stop is complete.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        Counters::add(&self.shared.counters.wakeups, 1);
        if let Some(msg) = self.shared.take_crash() {
            // An I/O thread panicked: crash this actor too, so the panic goes
            // through the restart budget (a failed device just carries on).
            if !self.shared.is_failed() {
                panic!("{msg}");
            }
        }
        if let Err(e) = self.ring.drain_events() {
            tracing::debug!(error = %e, "draining uio events");
        }
        if self.ring.reset_by_kernel() {
            self.resync_after_reset();
        }
        let failed = self.shared.is_failed();
        // After a reset, jobs of forgotten commands may still be writing to the
        // backstore: the initiator's retries of those commands wait until they
        // ended, so that no stale write lands after its retry.
        let orphans = lock(&self.shared.table).orphans();
        if !self.shared.draining() && orphans == 0 && self.fetch(failed) > 0 {
            // The kernel sends no event when cmd_time_out changes (it can
            // while no LUN exports the device): read it again, at most every
            // few seconds, when commands come (what it applies to).
            self.shared
                .cmd_timeout
                .reread_for_commands(self.shared.configfs_dir.as_deref());
        }
        if failed {
            lock(&self.shared.table).finish_all_unfinished(internal_target_failure());
        } else {
            self.dispatch();
        }
        self.enforce_drain_deadline();
        let written = self.reply();
        if written > 0 || self.need_kick || self.ring.kick_pending() {
            if let Err(e) = self.ring.kick() {
                tracing::error!(error = %e, "kicking the kernel failed");
            }
            self.need_kick = false;
        }
        self.check_drained(ctx);
        self.arm_tick(ctx);
    }

    /// Arms the housekeeping tick if the device needs it and it is not
    /// armed. An idle device needs none: a kick or a notification wakes it,
    /// and the idle watch keeps its look at the ring fresh.
    fn arm_tick(&mut self, ctx: &mut Context<Self>) {
        if self.tick_armed.is_some() || !self.needs_tick() {
            return;
        }
        self.tick_armed = Some(ctx.run_later(self.tick, |act, ctx| {
            act.tick_armed = None;
            act.tick(ctx);
        }));
    }

    /// Commands in flight (a hung backstore must still meet the drain
    /// deadline; a lost wake-up must not stall them), a drain, jobs of
    /// forgotten commands, armed faults (the trigger file and `timer`
    /// triggers live in the tick), or no idle watch.
    fn needs_tick(&self) -> bool {
        if !self.watched || self.shared.faults.live() || self.shared.draining() {
            return true;
        }
        let table = lock(&self.shared.table);
        !table.is_empty() || table.orphans() > 0
    }

    /// The kernel reset the ring (`action/reset_ring` from outside): it has
    /// failed every command in flight and freed their ids, so none of them may
    /// be completed (the kernel would mark the ring broken). Forget them and
    /// walk again from the mailbox's `cmd_tail`.
    fn resync_after_reset(&mut self) {
        let (dropped, running) = lock(&self.shared.table).forget_all();
        self.ring.resync_from_tail();
        let cursor = self.ring.fetch_cursor();
        lock(&self.shared.table).set_fetch_cursor(cursor);
        Counters::add(&self.shared.counters.ring_resets, 1);
        tracing::warn!(
            dropped,
            running,
            cursor,
            "command ring reset from outside (action/reset_ring?): commands in flight \
             dropped (the kernel failed them), resynchronised"
        );
    }

    /// Copies every new ring entry into the in-flight table, each with the
    /// fetch cursor after it (what a restarted actor resumes from). Returns
    /// how many commands were recorded.
    fn fetch(&mut self, failed: bool) -> usize {
        let mut recorded = 0;
        let mut table = lock(&self.shared.table);
        table.begin_fetch();
        let mut walk = self.ring.fetch();
        while let Some(entry) = walk.next() {
            let cursor = walk.cursor();
            match entry {
                Ok(Entry::Cmd(req)) => {
                    let id = req.cmd_id;
                    match table.insert(req, cursor) {
                        Ok(key) if failed => {
                            table.cancel_unstarted(key, internal_target_failure());
                        }
                        Ok(_) => recorded += 1,
                        Err(InsertError::IdInFlight) => {
                            tracing::error!(cmd_id = id, "kernel reused an in-flight cmd_id");
                        }
                        Err(e @ InsertError::Full) => {
                            tracing::error!(cmd_id = id, error = %e, "command not recorded");
                        }
                    }
                }
                Ok(Entry::Tmr(tmr)) => {
                    let cancelled = abort(&mut table, &tmr);
                    let k = &self.shared.counters;
                    Counters::add(&k.task_management, 1);
                    Counters::add(&k.aborted, cancelled);
                    table.set_fetch_cursor(cursor);
                }
                Err(e) => match e.completable_cmd_id() {
                    Some(cmd_id) => {
                        tracing::error!(error = %e, "malformed command entry");
                        if let Some(req) = placeholder(cmd_id) {
                            if let Err(err) = table.insert_done(req, cursor, malformed_entry(&e)) {
                                tracing::error!(cmd_id, error = %err, "malformed entry not recorded");
                            }
                        }
                    }
                    None if e.is_fatal() => {
                        drop(table);
                        self.shared.fail(format!("ring unusable: {e}"));
                        return recorded;
                    }
                    None => tracing::error!(error = %e, "skipped a bad ring entry"),
                },
            }
        }
        // PADs and skipped entries after the last command.
        table.set_fetch_cursor(walk.cursor());
        recorded
    }

    /// Hands queued commands to their executors, each with views of its own
    /// buffers in the ring's data area (no copy): an asynchronous backend,
    /// this thread, or an I/O thread ([`DeviceActor::route`]).
    fn dispatch(&mut self) {
        let mut table = lock(&self.shared.table);
        let mut inline = std::mem::take(&mut self.inline_jobs);
        let mut planned = Vec::new();
        let mut own_reads = NOWAIT_READS_PER_PUMP;
        while let Some(queued) = table.next_queued() {
            // next_queued returns a queued command until its state moves
            // on: every path below dispatches or cancels it.
            let key = queued.key;
            let p = match prepare(&self.ring, &queued) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "command buffers outside the data area");
                    table.cancel_unstarted(key, internal_target_failure());
                    continue;
                }
            };
            Counters::add(&self.shared.counters.bytes_out, p.bytes_out);
            let Some(dispatched) = table.dispatch(key) else {
                continue; // not queued any more: next_queued skips it
            };
            let job = Job {
                dispatched,
                cdb: p.cdb,
                data_out: p.data_out,
                data_in: p.data_in,
                since: p.since,
            };
            match self.route(&job, p.dir, &mut own_reads) {
                Route::Async(plan) => planned.push((job, plan)),
                Route::Inline => inline.push(job),
                Route::IoThread => {
                    if let Err(key) = self.spawn_job(job) {
                        table.cancel_unstarted(key, internal_target_failure());
                    }
                }
            }
        }
        drop(table);
        // Without the table lock: an asynchronous backend is handed its
        // commands, this thread runs its own.
        for (job, plan) in planned {
            async_io::submit(&self.shared, job, plan);
        }
        for job in inline.drain(..) {
            if self.inline_io {
                exec::run(&self.shared, job, false);
                continue;
            }
            if let Some(job) = exec::try_nowait(&self.shared, job) {
                if let Err(key) = self.spawn_job(job) {
                    lock(&self.shared.table).cancel_unstarted(key, internal_target_failure());
                }
            }
        }
        self.inline_jobs = inline;
    }

    /// Where `job` runs. An asynchronous backend is handed its data
    /// commands. A backend that never waits runs everything here. So does
    /// one small READ per round that may be a page-cache hit: no hand-off
    /// to an I/O thread and back for it, while the others run in parallel
    /// on the I/O threads (one thread doing every read itself was slower in
    /// the VM benchmark than spreading them).
    fn route(&self, job: &Job, dir: Dir, own_reads: &mut usize) -> Route {
        if let Some(plan) = async_io::plan(&self.shared, job) {
            return Route::Async(plan);
        }
        let own_read = *own_reads > 0
            && dir == Dir::In
            && job
                .data_in
                .as_ref()
                .is_some_and(|d| d.view().len() <= NOWAIT_READ_MAX)
            && is_read(job.cdb.as_bytes());
        if own_read {
            *own_reads -= 1;
        }
        match self.inline_io || own_read {
            true => Route::Inline,
            false => Route::IoThread,
        }
    }

    /// Hands `job` to an I/O thread; gives back its key when they are gone.
    fn spawn_job(&self, job: Job) -> Result<(), SlotKey> {
        let key = job.dispatched.key();
        let shared = Arc::clone(&self.shared);
        let spawned = self
            .shared
            .backstore
            .spawn_io(move || exec::run(&shared, job, true));
        if !spawned {
            tracing::error!("backstore I/O threads are gone");
            return Err(key);
        }
        Ok(())
    }

    /// Writes finished results to the ring (in fetch order unless the kernel
    /// completes out of order). Returns how many were completed.
    fn reply(&mut self) -> usize {
        let mut table = lock(&self.shared.table);
        let mut written = 0;
        let mut reset = false;
        let now = Instant::now();
        // Any order: without CAP_OOOC the ring keeps each response in its
        // own slot and moves cmd_tail over the finished front itself.
        while let Some(done) = table.next_done() {
            self.shared.faults.hit(FaultPoint::Reply);
            let DoneRef { key, slot, out } = done;
            // The data-in bytes are already in the command's buffers; the
            // ring zeroes the rest of them (every completion goes here).
            let c = completion(slot.req.cmd_id, &out);
            let key_of_sense = out
                .sense
                .filter(|_| out.status == CHECK_CONDITION)
                .map(|s| s.key as u8);
            let class = OpClass::of(slot.req.cdb.as_bytes());
            let took = now.saturating_duration_since(slot.fetched);
            match self.ring.complete(c, data_in(&slot.req, &out)) {
                Ok(()) => {
                    table.remove(key);
                    written += 1;
                    let k = &self.shared.counters;
                    Counters::add(&k.completed, 1);
                    Counters::add(&k.bytes_in, out.data_in_len as u64);
                    if out.status != GOOD {
                        Counters::add(&k.errors, 1);
                    }
                    if let Some(c) = key_of_sense.and_then(|s| k.sense_keys.get(usize::from(s))) {
                        Counters::add(c, 1);
                    }
                    if let Some(h) = k.latency.get(class.index()) {
                        h.record(took);
                    }
                }
                Err(RingError::ResetByKernel(_)) => {
                    // A reset from outside landed since this round's check:
                    // nothing in flight may be answered; forget it all below.
                    reset = true;
                    break;
                }
                Err(e) => {
                    // The ring refused it (e.g. not in flight as far as it
                    // knows): trying again could complete it twice, which
                    // breaks the kernel's ring. Drop it; the kernel times it
                    // out.
                    let cmd_id = table.remove(key).map(|s| s.req.cmd_id);
                    tracing::error!(error = %e, ?cmd_id, "completing a command failed; dropped");
                    Counters::add(&self.shared.counters.errors, 1);
                }
            }
        }
        drop(table);
        if reset {
            self.resync_after_reset();
        }
        written
    }

    /// A drain that waited longer than the drain timeout (a hung backstore):
    /// commands not started are failed, running ones abandoned (left to the
    /// kernel's command timeout, their buffers untouched by anyone else), and
    /// the device closes without waiting for them or for a final flush.
    fn enforce_drain_deadline(&mut self) {
        if !self.shared.claim_drain_overdue() {
            return;
        }
        let (failed, abandoned) = {
            let mut table = lock(&self.shared.table);
            let failed = table.finish_all_unfinished(internal_target_failure());
            (failed, table.abandon_running())
        };
        self.shared.add_abandoned(abandoned);
        tracing::error!(
            timeout = ?self.shared.drain_timeout(),
            failed,
            abandoned,
            "drain deadline passed (backstore I/O hung): commands not started failed, \
             running ones abandoned to the kernel's timeout; closing without the final flush"
        );
    }

    /// After `stop()`: once nothing is in flight, flush on an I/O thread,
    /// then stop the actor.
    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        let drain = match self.shared.phase() {
            Phase::Serving | Phase::Finished => return,
            Phase::Flushed(_) => {
                ctx.stop();
                return;
            }
            Phase::Draining(d) | Phase::Flushing(d) => d,
        };
        let busy = {
            let table = lock(&self.shared.table);
            !table.is_empty() || (table.orphans() > 0 && !drain.forced)
        };
        if busy {
            return;
        }
        if drain.forced {
            // The backstore hangs: a flush would too.
            self.shared.set_flushed();
            ctx.stop();
            return;
        }
        if !self.shared.claim_flush() {
            return; // the flush is running
        }
        let shared = Arc::clone(&self.shared);
        let spawned = self.shared.backstore.spawn_io(move || {
            if let Err(e) = shared.backstore.flush() {
                tracing::error!(parent: &shared.span, error = %e, "final flush failed");
            }
            shared.set_flushed();
        });
        if !spawned {
            self.shared.set_flushed();
        }
    }

    /// The housekeeping tick, armed while needed ([`DeviceActor::arm_tick`]):
    /// the drain deadline, a safety net for lost wake-ups, fault triggers.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.shared.faults.poll_trigger_file();
        self.shared.faults.hit(FaultPoint::Timer);
        tracing::trace!(stats = ?self.shared.counters.snapshot(), "tick");
        if !self.watched {
            // Nobody else looks at the ring of an idle device.
            self.shared
                .cmd_timeout
                .reread_if_due(self.shared.configfs_dir.as_deref());
        }
        self.pump(ctx);
    }
}

/// Where a dispatched command runs.
enum Route {
    /// Submitted to the asynchronous backend as this plan.
    Async(IoPlan),
    /// On the device's thread (a backend that never blocks, or a small READ
    /// tried without waiting).
    Inline,
    /// On one of the backstore's I/O threads.
    IoThread,
}

/// What a queued command's job needs, taken from its slot.
struct Prepared {
    cdb: Cdb,
    /// The kernel queued it after this moment.
    since: Instant,
    dir: Dir,
    /// The data-out buffers (a data-out command's).
    data_out: Option<SharedData>,
    /// The data-in buffers: a data-in command's, or a bidirectional one's
    /// bidi buffers.
    data_in: Option<SharedData>,
    /// Data-out bytes the command brings (counted as it is dispatched).
    bytes_out: u64,
}

/// Prepares `queued`'s job, sharing its buffers in the ring's data area:
/// only a data-out command's buffers as the backend's source, only a
/// data-in (or bidirectional) command's as its sink.
fn prepare(ring: &Ring, queued: &QueuedRef<'_>) -> Result<Prepared, RingError> {
    let req = &queued.slot.req;
    let dir = direction(req.cdb.as_bytes());
    let share = |wanted: bool, spans: &DataSpans| match wanted && !spans.is_empty() {
        true => ring.share_data(spans).map(Some),
        false => Ok(None),
    };
    // A bidirectional command's data-in goes to its bidi buffers.
    let bidi = !req.bidi.is_empty();
    let in_spans = if bidi { &req.bidi } else { &req.data };
    let data_out = share(dir == Dir::Out, &req.data)?;
    let data_in = share(dir == Dir::In || bidi, in_spans)?;
    Ok(Prepared {
        cdb: req.cdb.clone(),
        since: queued.slot.since,
        dir,
        data_out,
        data_in,
        bytes_out: match dir {
            Dir::Out => req.data.len() as u64,
            Dir::In | Dir::None => 0,
        },
    })
}

/// A request standing in for a command whose entry could not be parsed: it
/// is completed (with an error) and never executed.
fn placeholder(cmd_id: u16) -> Option<CmdRequest> {
    Some(CmdRequest {
        cmd_id,
        cdb: Cdb::new(&[0u8; 6])?,
        data: DataSpans::empty(),
        bidi: DataSpans::empty(),
    })
}

/// The result of a command whose ring entry was malformed.
fn malformed_entry(e: &RingError) -> Outcome {
    match e {
        RingError::BadEntry {
            fault: Fault::CdbOutOfBounds | Fault::CdbTooLong,
            ..
        } => invalid_field_in_cdb(),
        _ => internal_target_failure(),
    }
}

/// A task management notification: commands not started yet are cancelled
/// (they still get a completion); running ones finish normally.
/// Returns how many were cancelled.
fn abort(table: &mut InFlight, tmr: &TmrRequest) -> u64 {
    let mut cancelled = 0;
    for id in &tmr.cmd_ids {
        if let Some(key) = table.key_of(*id) {
            if table.cancel_unstarted(key, aborted()) {
                cancelled += 1;
            }
        }
    }
    tracing::info!(tmr = ?tmr.tmr_type, cmds = tmr.cmd_ids.len(), cancelled, "task management");
    cancelled
}

impl Actor for DeviceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.ring.event_fd().try_clone_to_owned() {
            Ok(fd) => match wake_stream(fd, Arc::clone(&self.shared)) {
                Ok(s) => {
                    ctx.add_stream(s);
                }
                Err(e) => {
                    self.shared.fail(format!("cannot wait on the uio fd: {e}"));
                }
            },
            Err(e) => {
                self.shared
                    .fail(format!("cannot duplicate the uio fd: {e}"));
            }
        }
        // Also after a restart: the context dropped the armed tick.
        self.tick_armed = None;
        *lock(&self.shared.probe) = Some(self.ring.head_probe());
        self.pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        tracing::info!(stats = ?self.shared.counters.snapshot(), "device stopped");
    }
}

impl Drop for DeviceActor {
    fn drop(&mut self) {
        // The probe keeps the mapping alive: it goes with the ring.
        lock(&self.shared.probe).take();
    }
}

impl Supervised for DeviceActor {
    /// Rebuilds the actor's own state after a panic: cursors from the ring
    /// mailbox (completion) and the in-flight table (fetch); the next pump
    /// kicks once in case the crashed incarnation completed without kicking.
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        Counters::add(&self.shared.counters.restarts, 1);
        let (cursor, ids) = {
            let table = lock(&self.shared.table);
            (table.fetch_cursor(), table.cmd_ids())
        };
        self.ring.resync_from_tail();
        let restored = match cursor {
            Some(c) => self
                .ring
                .set_fetch_cursor(c)
                .and_then(|()| self.ring.set_in_flight(&ids)),
            None => Ok(()),
        };
        if let Err(e) = restored {
            self.shared.fail(format!(
                "cannot restore the ring cursors after a restart: {e}"
            ));
        }
        self.need_kick = true;
        self.tick_armed = None;
        tracing::warn!("device actor restarted");
    }
}

impl StreamHandler<Wake> for DeviceActor {
    fn handle(&mut self, _wake: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // Never stop because the wake-up stream ended; the tick still runs.
        tracing::warn!("wake-up stream ended");
    }
}
