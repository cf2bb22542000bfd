//! The supervisor's handle on a running device.

use std::sync::Arc;

use super::shared::{DeviceShared, DeviceStats};
use crate::backstore::BackstoreError;

/// A running device. Dropping it does not stop the device; call
/// [`DeviceHandle::stop`].
pub struct DeviceHandle {
    pub(crate) shared: Arc<DeviceShared>,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("minor", &self.shared.minor)
            .field("name", &self.shared.name)
            .field("failed", &self.shared.failure())
            .finish()
    }
}

impl DeviceHandle {
    /// Drains the device: no new commands are taken from the ring, the ones
    /// in flight are finished and completed, the backstore is flushed, then
    /// the ring is closed. Returns when all of that is done.
    pub async fn stop(self) {
        self.stop_reporting().await;
    }

    /// [`DeviceHandle::stop`], returning how many commands the drain
    /// deadline abandoned (left uncompleted in the ring).
    pub async fn stop_reporting(self) -> usize {
        // No new EXTENDED COPY (of another device) reaches it from now on.
        super::copy_targets::leave(&self.shared.lun);
        let rx = self.shared.request_stop();
        let _ = rx.await;
        let abandoned = self.shared.abandoned();
        tracing::info!(parent: &self.shared.span, stats = ?self.stats(), abandoned, "device stopped");
        abandoned
    }

    /// Grows the backstore to `new_size` bytes (on an I/O thread) and
    /// resolves once it has, or with why not (a shrink is refused). A
    /// volume reports the change as a backend event, from which the LUN
    /// queues CAPACITY DATA HAS CHANGED (queuing it here too would raise the
    /// unit attention twice); an image file raises none, so it is queued
    /// here.
    pub fn resize(
        &self,
        new_size: u64,
    ) -> impl std::future::Future<Output = Result<(), BackstoreError>> + 'static {
        let bs = self.shared.backstore.clone();
        let grow = self.shared.backstore.run(move || bs.resize(new_size));
        self.resize_through(new_size, async move { grow.await.and_then(|r| r) })
    }

    /// [`DeviceHandle::resize`] with the backstore grown by `grow` (the
    /// backstore's actor, in the daemon); the device re-reads its limits
    /// and announces the new capacity.
    pub fn resize_through<G>(
        &self,
        new_size: u64,
        grow: G,
    ) -> impl std::future::Future<Output = Result<(), BackstoreError>> + 'static + use<G>
    where
        G: std::future::Future<Output = Result<(), BackstoreError>> + 'static,
    {
        self.reread_limits();
        let shared = Arc::clone(&self.shared);
        async move {
            let done = grow.await;
            match &done {
                Ok(()) => {
                    if shared.backstore.resize_needs_announce() {
                        shared.lun.capacity_changed();
                    }
                    tracing::info!(parent: &shared.span, new_size, "device resized");
                }
                Err(e) => {
                    tracing::error!(parent: &shared.span, new_size, error = %e, "resize refused")
                }
            }
            done
        }
    }

    /// The kernel changed the write-cache setting (RECONFIG WRITECACHE).
    /// While a value chosen by MODE SELECT is still being saved to configfs,
    /// the event is the echo of that write (or of a value superseded since):
    /// the initiator's latest choice stands.
    pub fn set_write_cache(&self, on: bool) {
        self.reread_limits();
        if self.shared.wce_saver.as_ref().is_some_and(|s| s.busy()) {
            tracing::debug!(parent: &self.shared.span, on,
                "write cache event while saving MODE SELECT's choice: kept the choice");
            return;
        }
        tracing::info!(parent: &self.shared.span, on, "write cache setting");
        self.shared.lun.set_write_cache(on);
    }

    /// Reads the device's transfer limits and command timeout again
    /// (configfs and the ring) and applies them: done on every RECONFIG (a resize or a
    /// write-cache change go through [`DeviceHandle::resize`] and
    /// [`DeviceHandle::set_write_cache`], which call it).
    pub fn reread_limits(&self) {
        let limits = super::limits::read_device_limits(
            self.shared.configfs_dir.as_deref(),
            self.shared.ring_capacity,
        );
        tracing::debug!(parent: &self.shared.span, ?limits, "device limits");
        self.shared.lun.set_device_limits(&limits);
        self.shared
            .cmd_timeout
            .reread(self.shared.configfs_dir.as_deref());
    }

    /// The device failed (restart budget exhausted, or its ring unusable).
    pub fn is_failed(&self) -> bool {
        self.shared.is_failed()
    }

    /// The device actor is gone (its ring closed): stopped, or abandoned
    /// after repeated panics.
    pub fn is_finished(&self) -> bool {
        self.shared.finished()
    }

    /// Why the device failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// The kernel's command timeout as last read (None: none).
    pub fn cmd_time_out(&self) -> Option<std::time::Duration> {
        self.shared.cmd_timeout.get()
    }

    /// Sets the command timeout (tests; a device reads it from configfs).
    pub fn set_cmd_time_out(&self, t: std::time::Duration) {
        self.shared.cmd_timeout.set(t);
    }

    /// Counters since the device was spawned.
    pub fn stats(&self) -> DeviceStats {
        self.shared.counters.snapshot()
    }

    /// Fetch-to-completion latency histograms, by operation class.
    pub fn latency(
        &self,
    ) -> Vec<(
        tcmud_core::scsi::OpClass,
        tcmud_core::latency::HistogramSnapshot,
    )> {
        self.shared.counters.latency()
    }

    /// Commands currently in flight.
    pub fn in_flight(&self) -> usize {
        super::shared::lock(&self.shared.table).len()
    }

    /// The uio minor.
    pub fn minor(&self) -> u32 {
        self.shared.minor
    }

    /// The uio name (`tcm-user/<hba>/<dev>/<dev_config>`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}
