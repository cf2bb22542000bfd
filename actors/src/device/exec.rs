//! One command's execution on an I/O thread: the SCSI emulation over the
//! backstore, with its result stored in the in-flight table (so a restarted
//! actor finds it) before the actor is woken.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::direction::is_compare_and_write;
use super::fault::FaultPoint;
use super::inflight::Outcome;
use super::outcome::{internal_target_failure, GOOD};
use super::shared::{lock, Counters, DeviceShared};

/// A command handed to an I/O thread.
pub(crate) struct Job {
    pub seq: u64,
    pub token: u64,
    pub cdb: Vec<u8>,
    pub data_out: Vec<u8>,
    pub data_in_len: usize,
}

/// Panics of one command after which it is no longer retried.
const MAX_PANICS_PER_COMMAND: u32 = 2;

/// Runs `job` (on an I/O thread).
pub(crate) fn run(shared: &Arc<DeviceShared>, job: Job) {
    let _span = shared.span.enter();
    if !lock(&shared.table).start(job.seq, job.token) {
        return; // cancelled (TMR), superseded or completed by a failed device
    }
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut data_in = vec![0u8; job.data_in_len];
        let r = shared.lun.execute(&job.cdb, &job.data_out, &mut data_in);
        data_in.truncate(r.data_in_len.min(job.data_in_len));
        shared.faults.count_executed();
        shared.faults.hit(FaultPoint::Emulate);
        Outcome {
            status: r.status,
            sense: r.sense.map(|s| s.to_fixed().to_vec()).unwrap_or_default(),
            data_in,
        }
    }));
    Counters::add(&shared.counters.executed, 1);
    persist_write_cache(shared);
    match res {
        Ok(out) => {
            if out.status != GOOD {
                tracing::debug!(cdb = ?job.cdb.first(), status = out.status, "command failed");
            }
            lock(&shared.table).finish(job.seq, job.token, out);
            shared.wake.notify_one();
        }
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            // Safe to run again unless it may have half-run a COMPARE AND
            // WRITE; a command that keeps panicking is failed, not retried.
            let caw = is_compare_and_write(&job.cdb);
            let mut table = lock(&shared.table);
            let panics = table.panicked(job.seq, job.token, !caw, internal_target_failure());
            if panics > MAX_PANICS_PER_COMMAND {
                table.cancel_unstarted(job.seq, internal_target_failure());
            }
            drop(table);
            tracing::error!(panic = %msg, caw, panics, "SCSI emulation panicked");
            shared.report_crash(format!("I/O thread panicked: {msg}"));
        }
    }
}

/// After a MODE SELECT changed WCE: write it to configfs before the command
/// completes, so that a restarted daemon keeps what the initiator chose.
fn persist_write_cache(shared: &DeviceShared) {
    let Some(on) = shared.lun.take_selected_write_cache() else {
        return;
    };
    let Some(dir) = &shared.configfs_dir else {
        return;
    };
    match super::store_configfs_write_cache(dir, on) {
        Ok(()) => tracing::info!(
            write_cache = on,
            "write cache set by MODE SELECT, saved in configfs"
        ),
        Err(e) => tracing::error!(write_cache = on, error = %e,
            "cannot save the write-cache setting in configfs; a daemon restart will revert it"),
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
