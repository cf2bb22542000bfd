//! The device threads: a fixed set of actix arbiters that device actors are
//! spread over (the least loaded first), so the thread count follows the
//! configuration, not the number of devices.
//!
//! A device actor only waits on its ring and hands blocking work to the I/O
//! threads, so many share one thread. Each runs under its own
//! restart-on-panic wrapper: a panic restarts (or fails) that device alone,
//! and the other actors of the thread carry on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Arbiter, ArbiterHandle};

/// Shared device threads; cheap to clone. The arbiters stop when the last
/// clone and the last device placed on them are gone.
#[derive(Debug, Clone)]
pub struct DeviceThreads {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    arbiter: Arbiter,
    /// Devices on it now.
    devices: AtomicUsize,
}

/// A device's place on one of the threads: counts it there until dropped.
#[derive(Debug)]
pub(crate) struct Placement {
    inner: Arc<Inner>,
    slot: usize,
}

impl DeviceThreads {
    /// Starts `threads` (at least 1) device threads. Call inside an actix
    /// System.
    pub fn new(threads: usize) -> std::io::Result<DeviceThreads> {
        let slots = (0..threads.max(1))
            .map(|_| {
                Arbiter::try_new().map(|arbiter| Slot {
                    arbiter,
                    devices: AtomicUsize::new(0),
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(DeviceThreads {
            inner: Arc::new(Inner { slots }),
        })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.inner.slots.len()
    }

    /// How many devices each thread serves now.
    pub fn load(&self) -> Vec<usize> {
        self.inner
            .slots
            .iter()
            .map(|s| s.devices.load(Ordering::Relaxed))
            .collect()
    }

    /// Books a device on the thread with the fewest devices.
    pub(crate) fn place(&self) -> (ArbiterHandle, Placement) {
        let slot = self
            .inner
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.devices.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i);
        let s = &self.inner.slots[slot];
        s.devices.fetch_add(1, Ordering::Relaxed);
        (
            s.arbiter.handle(),
            Placement {
                inner: Arc::clone(&self.inner),
                slot,
            },
        )
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(s) = self.inner.slots.get(self.slot) {
            s.devices.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for s in &self.slots {
            s.arbiter.stop();
        }
    }
}
