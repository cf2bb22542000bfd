//! READ, WRITE, SYNCHRONIZE CACHE and COMPARE AND WRITE on a backend with an asynchronous
//! side ([`AsyncBackend`], the RBD backstore): the LUN validates the
//! command ([`Lun::plan_async`](tcmud_core::scsi::Lun::plan_async)), the
//! backend is handed it, and its completion, on the backend's own thread,
//! stores the result in the in-flight table and wakes the actor, as an I/O
//! thread's job does ([`super::exec::run`]). No thread waits for the I/O.
//!
//! Exactly once: the slot is marked running before submission and only
//! the completion finishes it, also when the actor restarted meanwhile
//! (the table outlives it). The data-in buffer is written whole before
//! the command is finished (the data-leak rule).

use std::sync::Arc;

use tcmud_core::backend::{AsyncBackend, BackendError, BlockSink, BlockSource, CompareWrite};
use tcmud_core::ring::SharedData;
use tcmud_core::scsi::IoPlan;

use super::exec::{outcome, Job};
use super::outcome::internal_target_failure;
use super::shared::{lock, Counters, DeviceShared};

/// The plan for `job` when the backend runs it asynchronously, `None`
/// when it takes the I/O threads (another command, or anything unusual,
/// which [`super::exec::run`] handles as always).
pub(crate) fn plan(shared: &DeviceShared, job: &Job) -> Option<IoPlan> {
    shared.backstore.backend().as_async()?;
    if shared.cmd_timeout.expired(job.since) {
        return None; // exec::run completes it without executing it
    }
    let len = |d: &Option<SharedData>| d.as_ref().map_or(0, |d| d.view().len());
    let plan = shared
        .lun
        .plan_async(job.cdb.as_bytes(), len(&job.data_out), len(&job.data_in))?;
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
    let finish = move |r: Result<CompareWrite, BackendError>| {
        let resp = match r {
            Ok(CompareWrite::Miscompare(at)) => sh.lun.planned_miscompare(at),
            Ok(CompareWrite::Written) => sh.lun.planned_response(cdb.as_bytes(), &plan, Ok(())),
            Err(e) => sh.lun.planned_response(cdb.as_bytes(), &plan, Err(e)),
        };
        Counters::add(&sh.counters.executed, 1);
        let _ = running.finish(&mut lock(&sh.table), outcome(resp, capacity));
        sh.wake.notify_one();
    };
    submit_plan(io, data_out, data_in, plan, finish);
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
            let Some(data_in) = data_in else {
                return finish(Err(no_buffer()));
            };
            io.submit_read(
                lba,
                bytes,
                Box::new(move |r| {
                    let r = r.and_then(|buf| {
                        let mut view = data_in.view();
                        match buf.get(..bytes) {
                            Some(b) => view.write_at(0, b).map_err(BackendError::Read),
                            None => Err(BackendError::Read(std::io::Error::from(
                                std::io::ErrorKind::UnexpectedEof,
                            ))),
                        }
                    });
                    finish(written(r))
                }),
            );
        }
        IoPlan::Write { lba, bytes, fua } => {
            let Some(data_out) = data_out else {
                return finish(Err(no_buffer()));
            };
            let mut data = vec![0u8; bytes];
            if let Err(e) = data_out.view().read_at(0, &mut data) {
                return finish(Err(BackendError::Write(e)));
            }
            io.submit_write(lba, data, fua, Box::new(move |r| finish(written(r))));
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
    }
}

fn no_buffer() -> BackendError {
    BackendError::Metadata("planned data command without its buffer".into())
}
