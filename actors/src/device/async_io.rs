//! READ, WRITE, SYNCHRONIZE CACHE, COMPARE AND WRITE, UNMAP (one
//! descriptor) and WRITE SAME on a backend with an asynchronous side
//! ([`AsyncBackend`], the RBD backstore): the LUN validates the command
//! ([`Lun::plan_async`](tcmud_core::scsi::Lun::plan_async),
//! [`Lun::plan_async_param`](tcmud_core::scsi::Lun::plan_async_param)), the
//! backend is handed it, and its completion, on the backend's own thread,
//! stores the result in the in-flight table and wakes the actor, as an I/O
//! thread's job does ([`super::exec::run`]). No thread waits for the I/O.
//! Writers hold the LUN's COMPARE AND WRITE gate from submission to
//! completion (admitted without waiting; see `tcmud_core::scsi::WriteToken`),
//! so a COMPARE AND WRITE the SCSI layer emulates (one across two RBD
//! objects) is atomic against them.
//!
//! Exactly once: the slot is marked running before submission and only
//! the completion finishes it, also when the actor restarted meanwhile
//! (the table outlives it). The data-in buffer is written whole before
//! the command is finished (the data-leak rule).

use std::sync::Arc;

use tcmud_core::backend::{AsyncBackend, BackendError, BlockSource, CompareWrite};
use tcmud_core::ring::{Cdb, SharedData};
use tcmud_core::scsi::IoPlan;

use super::exec::{outcome, Job};
use super::inflight::Running;
use super::outcome::internal_target_failure;
use super::shared::{lock, Counters, DeviceShared};

/// Largest data-out of an UNMAP or WRITE SAME planned here (an UNMAP
/// parameter list of one descriptor, a pattern block of up to 32 KiB).
const MAX_PARAM_BYTES: usize = 32 << 10;

/// The plan for `job` when the backend runs it asynchronously, `None`
/// when it takes the I/O threads (another command, or anything unusual,
/// which [`super::exec::run`] handles as always).
pub(crate) fn plan(shared: &DeviceShared, job: &Job) -> Option<IoPlan> {
    shared.backstore.backend().as_async()?;
    if shared.cmd_timeout.expired(job.since) {
        return None; // exec::run completes it without executing it
    }
    let len = |d: &Option<SharedData>| d.as_ref().map_or(0, |d| d.view().len());
    let cdb = job.cdb.as_bytes();
    if matches!(cdb.first(), Some(0x42 | 0x41 | 0x93)) {
        // UNMAP and WRITE SAME: planned from their (small) data-out.
        let n = len(&job.data_out);
        if n > MAX_PARAM_BYTES {
            return None;
        }
        let mut params = vec![0u8; n];
        if let Some(d) = &job.data_out {
            d.view().read_at(0, &mut params).ok()?;
        }
        return shared.lun.plan_async_param(cdb, &params);
    }
    let plan = shared
        .lun
        .plan_async(cdb, len(&job.data_out), len(&job.data_in))?;
    if let IoPlan::CompareAndWrite { lba, bytes, .. } = plan {
        let backend = shared.backstore.backend();
        if !backend.as_async()?.can_compare_and_write(lba, bytes) {
            return None;
        }
    }
    Some(plan)
}

/// Submits `job` as `plan`. Called without the table lock held.
pub(crate) fn submit(shared: &Arc<DeviceShared>, job: Job, plan: IoPlan) {
    let _span = shared.span.enter();
    let Job {
        dispatched,
        cdb,
        data_out,
        data_in,
        since: _,
    } = job;
    let Some(running) = lock(&shared.table).start(dispatched) else {
        return; // cancelled (TMR) or superseded meanwhile
    };
    let backend = shared.backstore.backend();
    let Some(io) = backend.as_async() else {
        let _ = running.finish(&mut lock(&shared.table), internal_target_failure());
        shared.wake.notify_one();
        return;
    };
    let sh = Arc::clone(shared);
    let capacity = data_in.as_ref().map_or(0, |d| d.view().len());
    if matches!(plan, IoPlan::Read { .. } | IoPlan::Flush) {
        let finish = move |r| complete(&sh, running, &cdb, &plan, capacity, r);
        return submit_plan(io, data_out, data_in, plan, finish);
    }
    // A writer: it holds the LUN's COMPARE AND WRITE gate shared from
    // submission to completion (deferred, not waiting, while an emulated
    // COMPARE AND WRITE holds it).
    let lun = Arc::clone(&shared.lun);
    lun.admit_async_write(Box::new(move |gate| {
        let backend = sh.backstore.backend();
        let Some(io) = backend.as_async() else {
            let _ = running.finish(&mut lock(&sh.table), internal_target_failure());
            sh.wake.notify_one();
            return;
        };
        let sh2 = Arc::clone(&sh);
        let finish = move |r| {
            drop(gate);
            complete(&sh2, running, &cdb, &plan, capacity, r)
        };
        submit_plan(io, data_out, data_in, plan, finish);
    }));
}

/// Finishes a planned command (its `running` execution) with the
/// backend's outcome `r`.
fn complete(
    sh: &DeviceShared,
    running: Running,
    cdb: &Cdb,
    plan: &IoPlan,
    capacity: usize,
    r: Result<CompareWrite, BackendError>,
) {
    let resp = match r {
        Ok(CompareWrite::Miscompare(at)) => sh.lun.planned_miscompare(at),
        Ok(CompareWrite::Written) => sh.lun.planned_response(cdb.as_bytes(), plan, Ok(())),
        Err(e) => sh.lun.planned_response(cdb.as_bytes(), plan, Err(e)),
    };
    Counters::add(&sh.counters.executed, 1);
    let _ = running.finish(&mut lock(&sh.table), outcome(resp, capacity));
    sh.wake.notify_one();
}

fn submit_plan(
    io: &dyn AsyncBackend,
    data_out: Option<SharedData>,
    data_in: Option<SharedData>,
    plan: IoPlan,
    finish: impl FnOnce(Result<CompareWrite, BackendError>) + Send + 'static,
) {
    let written = |r: Result<(), BackendError>| r.map(|()| CompareWrite::Written);
    match plan {
        IoPlan::Read { lba, bytes } => {
            // Straight into the command's buffers (the first `bytes` of
            // them; the ring zeroes the rest at completion).
            let Some(into) = data_in.and_then(|d| d.prefix(bytes)) else {
                return finish(Err(no_buffer()));
            };
            io.submit_read(lba, into, Box::new(move |r| finish(written(r))));
        }
        IoPlan::Write { lba, bytes, fua } => {
            // Straight from the command's buffers.
            let Some(from) = data_out.and_then(|d| d.prefix(bytes)) else {
                return finish(Err(no_buffer()));
            };
            io.submit_write(lba, from, fua, Box::new(move |r| finish(written(r))));
        }
        IoPlan::Flush => io.submit_flush(Box::new(move |r| finish(written(r)))),
        IoPlan::CompareAndWrite { lba, bytes, fua } => {
            let Some(data_out) = data_out else {
                return finish(Err(no_buffer()));
            };
            let mut verify = vec![0u8; bytes];
            let mut write = vec![0u8; bytes];
            let view = data_out.view();
            if let Err(e) = view
                .read_at(0, &mut verify)
                .and_then(|()| view.read_at(bytes, &mut write))
            {
                return finish(Err(BackendError::Write(e)));
            }
            io.submit_compare_and_write(lba, verify, write, fua, Box::new(finish));
        }
        IoPlan::Unmap { blocks: 0, .. } => finish(Ok(CompareWrite::Written)),
        IoPlan::Unmap { lba, blocks } => {
            io.submit_unmap(lba, blocks, Box::new(move |r| finish(written(r))));
        }
        IoPlan::WriteSame {
            lba,
            blocks,
            zero: true,
            deallocate,
            fua,
        } => {
            let then_flush = move |r: Result<(), BackendError>| finish(written(r));
            // FUA here only comes from a volatile cache with WCE off; the
            // one asynchronous backend (RBD, no client cache) has none.
            let _ = fua;
            io.submit_write_zeroes(lba, blocks, deallocate, Box::new(then_flush));
        }
        IoPlan::WriteSame {
            lba, blocks, fua, ..
        } => {
            let Some(data_out) = data_out else {
                return finish(Err(no_buffer()));
            };
            let view = data_out.view();
            let mut pattern = vec![0u8; view.len()];
            if let Err(e) = view.read_at(0, &mut pattern) {
                return finish(Err(BackendError::Write(e)));
            }
            io.submit_write_same(
                lba,
                blocks,
                pattern,
                fua,
                Box::new(move |r| finish(written(r))),
            );
        }
    }
}

fn no_buffer() -> BackendError {
    BackendError::Metadata("planned data command without its buffer".into())
}
