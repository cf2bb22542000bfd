//! State of a device that outlives its actor: the in-flight table, the SCSI
//! LUN, the backstore, the [`Lifecycle`] and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tcmud_core::latency::{HistogramSnapshot, LatencyHistogram};
use tcmud_core::ring::HeadProbe;
use tcmud_core::scsi::{Lun, OpClass};
use tokio::sync::{oneshot, Notify};

use super::cmd_timeout::CmdTimeout;
use super::fault::Faults;
use super::inflight::InFlight;
use super::lifecycle::{Lifecycle, Phase};
use super::wce_save::WriteCacheSaver;
use crate::backstore::BackstoreHandle;

/// Counters of one device (since it was spawned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Commands completed to the ring.
    pub completed: u64,
    /// Commands executed by the SCSI emulation.
    pub executed: u64,
    /// Completed with a status other than GOOD.
    pub errors: u64,
    /// Data-out bytes copied from the ring.
    pub bytes_out: u64,
    /// Data-in bytes copied to the ring.
    pub bytes_in: u64,
    /// Times the device actor was restarted after a panic.
    pub restarts: u64,
    /// Ring resets from outside (`action/reset_ring`) detected and resynced.
    pub ring_resets: u64,
    /// Commands not executed because the kernel's `cmd_time_out` may have
    /// failed them back already (completed with ABORTED COMMAND).
    pub timed_out: u64,
    /// Commands executed that finished after the kernel's `cmd_time_out`
    /// (the kernel ignored their status).
    pub late: u64,
    /// Commands completed with CHECK CONDITION, by sense key (0-15).
    pub sense_keys: [u64; 16],
    /// Task management notifications from the kernel (`TCMU_OP_TMR`).
    pub task_management: u64,
    /// Commands a task management request cancelled before they ran
    /// (completed with ABORTED COMMAND).
    pub aborted: u64,
    /// Rounds the device actor ran (each one a wake-up: a kick, a finished
    /// command, a stop or failure, its own housekeeping tick). An idle
    /// device has none.
    pub wakeups: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub completed: AtomicU64,
    pub executed: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub restarts: AtomicU64,
    pub ring_resets: AtomicU64,
    pub timed_out: AtomicU64,
    pub late: AtomicU64,
    pub sense_keys: [AtomicU64; 16],
    pub task_management: AtomicU64,
    pub aborted: AtomicU64,
    pub wakeups: AtomicU64,
    /// Fetch-to-completion time by [`OpClass`] (its `index()`).
    pub latency: [LatencyHistogram; OpClass::ALL.len()],
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DeviceStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceStats {
            completed: g(&self.completed),
            executed: g(&self.executed),
            errors: g(&self.errors),
            bytes_out: g(&self.bytes_out),
            bytes_in: g(&self.bytes_in),
            restarts: g(&self.restarts),
            ring_resets: g(&self.ring_resets),
            timed_out: g(&self.timed_out),
            late: g(&self.late),
            sense_keys: std::array::from_fn(|i| self.sense_keys.get(i).map_or(0, g)),
            task_management: g(&self.task_management),
            aborted: g(&self.aborted),
            wakeups: g(&self.wakeups),
        }
    }

    /// The latency histograms, by class.
    pub fn latency(&self) -> Vec<(OpClass, HistogramSnapshot)> {
        OpClass::ALL
            .iter()
            .zip(&self.latency)
            .map(|(c, h)| (*c, h.snapshot()))
            .collect()
    }
}

/// Everything about a device that survives a restart of its actor.
pub(crate) struct DeviceShared {
    pub minor: u32,
    pub name: String,
    pub span: tracing::Span,
    pub table: Mutex<InFlight>,
    pub wake: Notify,
    pub lun: Arc<Lun>,
    pub backstore: BackstoreHandle,
    pub faults: Faults,
    pub counters: Counters,
    /// The device's configfs directory, where settings changed by the
    /// initiator are written back (None: simulator, or not found).
    pub configfs_dir: Option<std::path::PathBuf>,
    /// Writes MODE SELECT's write-cache choice to `configfs_dir` outside
    /// the command (None without a configfs directory).
    pub wce_saver: Option<Arc<WriteCacheSaver>>,
    /// What the ring can carry (for the transfer limits re-read on
    /// RECONFIG).
    pub ring_capacity: super::limits::RingCapacity,
    /// The kernel's command timeout (configfs; re-read on RECONFIG).
    pub cmd_timeout: CmdTimeout,
    /// How long a drain may wait for running commands (None: for ever).
    drain_timeout: Option<Duration>,
    /// Serving, draining, flushing, flushed, finished; failure and crash.
    lifecycle: Mutex<Lifecycle>,
    /// The ring's `cmd_head`, for the idle watch ([`super::idle_watch`]):
    /// set by the actor while it holds the ring, cleared before the ring
    /// is dropped (the probe keeps the mapping alive). Never locked while
    /// holding `table` (the watch locks this, then `table`).
    pub probe: Mutex<Option<HeadProbe>>,
}

/// Locks `m`, recovering the data of a poisoned lock: every writer of our
/// tables leaves them consistent between statements, and a panic in the
/// actor must not make its successor panic too.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeviceShared {
    pub fn new(
        minor: u32,
        name: String,
        lun: Arc<Lun>,
        backstore: BackstoreHandle,
        faults: Faults,
        configfs_dir: Option<std::path::PathBuf>,
        ring_capacity: super::limits::RingCapacity,
    ) -> DeviceShared {
        let span = tracing::info_span!("device", minor, name = %name);
        let wce_saver = configfs_dir
            .clone()
            .map(|dir| WriteCacheSaver::new(dir, span.clone()));
        let cmd_timeout = CmdTimeout::read(configfs_dir.as_deref());
        DeviceShared {
            minor,
            name,
            span,
            table: Mutex::new(InFlight::default()),
            wake: Notify::new(),
            lun,
            backstore,
            faults,
            counters: Counters::default(),
            configfs_dir,
            wce_saver,
            ring_capacity,
            cmd_timeout,
            drain_timeout: None,
            lifecycle: Mutex::new(Lifecycle::default()),
            probe: Mutex::new(None),
        }
    }

    /// Why the device failed, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.lifecycle).failure().map(str::to_owned)
    }

    /// The device failed.
    pub fn is_failed(&self) -> bool {
        lock(&self.lifecycle).failure().is_some()
    }

    /// Marks the device failed (first reason wins); its commands then get
    /// CHECK CONDITION. Returns true the first time.
    pub fn fail(&self, reason: String) -> bool {
        let first = lock(&self.lifecycle).fail(reason.clone());
        if first {
            self.faults.disable();
            tracing::error!(parent: &self.span, reason = %reason,
                "device failed: its commands now complete with HARDWARE ERROR");
            // Only the first time: a failure seen on every pump (a corrupt
            // ring) must not wake the actor in a loop.
            self.wake.notify_one();
        }
        first
    }

    /// Records a panic of an I/O thread for the actor to re-raise.
    pub fn report_crash(&self, msg: String) {
        lock(&self.lifecycle).report_crash(msg);
        self.wake.notify_one();
    }

    /// Takes a recorded I/O thread panic.
    pub fn take_crash(&self) -> Option<String> {
        lock(&self.lifecycle).take_crash()
    }

    /// Stop taking new commands; `rx` fires once all are completed and the
    /// backstore flushed.
    pub fn request_stop(&self) -> oneshot::Receiver<()> {
        let rx = lock(&self.lifecycle).request_stop(Instant::now());
        self.wake.notify_one();
        rx
    }

    /// A stop was requested (and the actor is not gone).
    pub fn draining(&self) -> bool {
        lock(&self.lifecycle).drain().is_some()
    }

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        lock(&self.lifecycle).phase()
    }

    /// Sets how long a drain waits for running commands (None: for ever).
    pub fn with_drain_timeout(mut self, timeout: Option<Duration>) -> DeviceShared {
        self.drain_timeout = timeout;
        self
    }

    /// True once, when a drain has waited longer than the drain timeout:
    /// the caller then gives up on the running commands.
    pub fn claim_drain_overdue(&self) -> bool {
        lock(&self.lifecycle).claim_drain_overdue(self.drain_timeout, Instant::now())
    }

    /// Records commands abandoned by the drain deadline.
    pub fn add_abandoned(&self, n: usize) {
        lock(&self.lifecycle).add_abandoned(n);
    }

    /// Commands abandoned by the drain deadline.
    pub fn abandoned(&self) -> usize {
        lock(&self.lifecycle).abandoned()
    }

    /// The drain timeout (None: a drain waits for ever).
    pub fn drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    /// Claims the final flush (true once).
    pub fn claim_flush(&self) -> bool {
        lock(&self.lifecycle).claim_flush()
    }

    /// The final flush is done (or skipped): the actor may stop.
    pub fn set_flushed(&self) {
        lock(&self.lifecycle).set_flushed();
        self.wake.notify_one();
    }

    /// The actor is gone (ring closed).
    pub fn finished(&self) -> bool {
        matches!(self.phase(), Phase::Finished)
    }

    /// The actor is gone (ring closed): wake every `stop()` caller.
    pub fn set_finished(&self) {
        lock(&self.lifecycle).set_finished();
    }
}
