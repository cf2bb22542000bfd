//! Test backends: random latency, and a gate that holds I/O until opened.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BackendError, BlockBackend};

/// A MemBackend whose reads and writes take a random 0..max_us.
pub struct Slow {
    pub inner: Arc<MemBackend>,
    seed: AtomicU64,
    max_us: u64,
}

impl Slow {
    pub fn new(inner: Arc<MemBackend>, max_us: u64, seed: u64) -> Slow {
        Slow {
            inner,
            seed: AtomicU64::new(seed | 1),
            max_us,
        }
    }

    fn delay(&self) {
        let mut x = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        if self.max_us > 0 {
            std::thread::sleep(Duration::from_micros(x % self.max_us));
        }
    }
}

impl BlockBackend for Slow {
    fn caps(&self) -> BackendCaps {
        self.inner.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.delay();
        self.inner.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.delay();
        self.inner.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.inner.unmap(lba, blocks)
    }
}

/// A MemBackend whose reads wait until the gate is opened.
pub struct Gate {
    pub inner: Arc<MemBackend>,
    open: Mutex<bool>,
    cv: Condvar,
    entered: AtomicUsize,
}

impl Gate {
    pub fn new(inner: Arc<MemBackend>) -> Gate {
        Gate {
            inner,
            open: Mutex::new(false),
            cv: Condvar::new(),
            entered: AtomicUsize::new(0),
        }
    }

    /// Lets every waiting and future read through.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Reads that reached the gate so far.
    pub fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s) until `n` reads reached the gate.
    pub fn wait_entered(&self, n: usize) {
        for _ in 0..10_000 {
            if self.entered() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("only {} reads reached the gate", self.entered());
    }
}

impl BlockBackend for Gate {
    fn caps(&self) -> BackendCaps {
        self.inner.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        drop(open);
        self.inner.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.inner.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.inner.unmap(lba, blocks)
    }
}
