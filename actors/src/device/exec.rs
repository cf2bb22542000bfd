//! One command's execution on an I/O thread: the SCSI emulation over the
//! backstore, with its result stored in the in-flight table (so a restarted
//! actor finds it) before the actor is woken.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use tcmud_core::backend::{BlockSink, BlockSource};
use tcmud_core::ring::{Cdb, SharedData};
use tcmud_core::scsi::ScsiResponse;

use super::direction::safe_to_retry;
use super::fault::FaultPoint;
use super::inflight::{Dispatched, Outcome};
use super::outcome::{internal_target_failure, timed_out, GOOD};
use super::shared::{lock, Counters, DeviceShared};

/// A command handed to an I/O thread. Its buffers are the command's own
/// pages in the ring's data area: the backend reads into and writes from
/// them directly. The in-flight table keeps the command from being
/// completed while the job runs.
pub(crate) struct Job {
    /// The command's place in the in-flight table, started once by
    /// whichever executor runs the job.
    pub dispatched: Dispatched,
    pub cdb: Cdb,
    /// Data-out buffers (WRITE and friends).
    pub data_out: Option<SharedData>,
    /// Data-in buffers (READ, INQUIRY, ...; the bidi buffers if any).
    pub data_in: Option<SharedData>,
    /// The kernel queued it after this moment ([`super::cmd_timeout`]).
    pub since: Instant,
}

/// Panics of one command after which it is no longer retried.
const MAX_PANICS_PER_COMMAND: u32 = 2;

/// Runs `job` (on an I/O thread, or on the device's thread for a backend
/// that never blocks). `notify` wakes the device actor when it is done
/// (not needed when the actor runs it itself).
pub(crate) fn run(shared: &Arc<DeviceShared>, job: Job, notify: bool) {
    let _span = shared.span.enter();
    let Job {
        dispatched,
        cdb,
        data_out,
        data_in,
        since,
    } = job;
    let Some(running) = lock(&shared.table).start(dispatched) else {
        return; // cancelled (TMR), superseded or completed by a failed device
    };
    if shared.cmd_timeout.expired(since) {
        // The kernel may have failed it back to the initiator already: a
        // late execution (a WRITE above all) would undo what came after.
        Counters::add(&shared.counters.timed_out, 1);
        tracing::warn!(
            opcode = cdb.as_bytes().first().copied().unwrap_or(0),
            waited = ?since.elapsed(),
            cmd_time_out = ?shared.cmd_timeout.get(),
            "command older than cmd_time_out not executed (the kernel has failed it back)"
        );
        let _ = running.finish(&mut lock(&shared.table), timed_out());
        if notify {
            shared.wake.notify_one();
        }
        return;
    }
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut no_in: &mut [u8] = &mut [];
        let no_out: &[u8] = &[];
        let out_view = data_out.as_ref().map(SharedData::view);
        let mut in_view = data_in.as_ref().map(SharedData::view);
        let src: &dyn BlockSource = match &out_view {
            Some(v) => v,
            None => &no_out,
        };
        let sink: &mut dyn BlockSink = match &mut in_view {
            Some(v) => v,
            None => &mut no_in,
        };
        let capacity = sink.len();
        let r = shared.lun.execute_io(cdb.as_bytes(), src, sink);
        shared.faults.count_executed();
        shared.faults.hit(FaultPoint::Emulate);
        outcome(r, capacity)
    }));
    Counters::add(&shared.counters.executed, 1);
    persist_write_cache(shared);
    if shared.cmd_timeout.expired(since) {
        Counters::add(&shared.counters.late, 1);
        tracing::warn!(
            opcode = cdb.as_bytes().first().copied().unwrap_or(0),
            took = ?since.elapsed(),
            "command finished after cmd_time_out (the kernel ignores its status)"
        );
    }
    match res {
        Ok(out) => {
            if out.status != GOOD {
                tracing::debug!(cdb = ?cdb.as_bytes().first(), status = out.status, "command failed");
            }
            let _ = running.finish(&mut lock(&shared.table), out);
            if notify {
                shared.wake.notify_one();
            }
        }
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            // Safe to run again unless it may have half-run a COMPARE AND
            // WRITE; a command that keeps panicking is failed, not retried.
            let retry = safe_to_retry(cdb.as_bytes());
            let key = running.key();
            let mut table = lock(&shared.table);
            let panics = running
                .panicked(&mut table, retry, internal_target_failure())
                .unwrap_or(0);
            if panics > MAX_PANICS_PER_COMMAND {
                table.cancel_unstarted(key, internal_target_failure());
            }
            drop(table);
            tracing::error!(panic = %msg, retry, panics, "SCSI emulation panicked");
            shared.report_crash(format!("I/O thread panicked: {msg}"));
        }
    }
}

/// Tries `job`, a READ dispatched but not started, on the device's own
/// thread without waiting (a page-cache hit: no hand-off to an I/O thread
/// and back). Gives the job back when it would wait, or when the attempt
/// panicked (it then runs on an I/O thread, where panics are counted and
/// retried). Reads have no side effects, so a discarded attempt costs
/// nothing but its time. Not a fault-injection point.
pub(crate) fn try_nowait(shared: &DeviceShared, job: Job) -> Option<Job> {
    let Some(data_in) = job.data_in.as_ref() else {
        return Some(job);
    };
    if shared.cmd_timeout.expired(job.since) {
        return Some(job); // run() completes it without executing it
    }
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut view = data_in.view();
        let capacity = view.len();
        shared
            .lun
            .try_execute_nowait(job.cdb.as_bytes(), &mut view)
            .map(|r| outcome(r, capacity))
    }));
    let out = match res {
        Ok(Some(out)) => out,
        Ok(None) => return Some(job),
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            tracing::error!(panic = %msg, "READ without waiting panicked; handing it to an I/O thread");
            return Some(job);
        }
    };
    shared.faults.count_executed();
    Counters::add(&shared.counters.executed, 1);
    let mut table = lock(&shared.table);
    // Not started elsewhere (it was never handed out); a TMR may have
    // cancelled it meanwhile, which `start` sees.
    if let Some(running) = table.start(job.dispatched) {
        let _ = running.finish(&mut table, out);
    }
    None
}

/// A command's result as the table keeps it.
pub(crate) fn outcome(r: ScsiResponse, capacity: usize) -> Outcome {
    Outcome {
        status: r.status,
        sense: r.sense,
        data_in_len: r.data_in_len.min(capacity),
    }
}

/// After a MODE SELECT changed WCE: hand it to the saver, which writes it to
/// configfs in the background (so that a restarted daemon keeps what the
/// initiator chose). Never written here: with netlink replies that write
/// waits for the supervisor, which may be waiting for this command.
fn persist_write_cache(shared: &DeviceShared) {
    let Some(on) = shared.lun.take_selected_write_cache() else {
        return;
    };
    if let Some(saver) = &shared.wce_saver {
        saver.save(on);
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
