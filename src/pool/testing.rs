//! Fault-injection layers for tests: an in-memory metadata store that can
//! fail its commits and a data file that forgets unsynced writes on a
//! simulated crash. Not part of the public API: built for the crate's own
//! tests and, with the `testing` feature, for its integration tests and
//! benchmarks (which enable it through a dev-dependency on the crate).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::guard as lock;
use super::io::DataIo;

pub use super::memstore::MemStore;

impl MemStore {
    /// An independent copy of what is committed now.
    pub fn crash_image(&self) -> MemStore {
        MemStore {
            kv: Arc::new(Mutex::new(lock(&self.kv).clone())),
            fail: Arc::default(),
            gets: Arc::default(),
        }
    }

    /// `get` calls so far (all clones together).
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    /// While `on`, every commit fails with EIO and changes nothing (a
    /// failed sync of the metadata).
    pub fn fail_commits(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }
}

#[derive(Clone)]
enum Op {
    /// Bytes at an offset of the in-memory file.
    Write(usize, Vec<u8>),
    /// The file's new length.
    Grow(usize),
}

/// An offset or length of the in-memory file (an error past `usize`).
fn mem_off(v: u64) -> io::Result<usize> {
    usize::try_from(v).map_err(|_| io::Error::other(format!("offset {v} past memory")))
}

#[derive(Default)]
struct Crash {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
}

fn apply(buf: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(off, data) => {
            let off = *off;
            if buf.len() < off + data.len() {
                buf.resize(off + data.len(), 0);
            }
            buf[off..off + data.len()].copy_from_slice(data);
        }
        Op::Grow(len) => {
            if buf.len() < *len {
                buf.resize(*len, 0);
            }
        }
    }
}

/// A [`DataIo`] in memory that tracks which writes are durable. Clones share
/// the contents; [`CrashIo::crash_image`] builds what a disk could hold after
/// a crash now.
#[derive(Clone, Default)]
pub struct CrashIo {
    inner: Arc<Mutex<Crash>>,
    fail: Arc<AtomicBool>,
}

impl CrashIo {
    /// An empty file.
    pub fn new() -> CrashIo {
        CrashIo::default()
    }

    /// The file after a crash: everything synced, plus each unsynced write
    /// (whole, in order) for which `keep` returns true.
    pub fn crash_image(&self, keep: &mut dyn FnMut() -> bool) -> CrashIo {
        let c = lock(&self.inner);
        let mut img = c.durable.clone();
        for op in &c.unsynced {
            if keep() {
                apply(&mut img, op);
            }
        }
        CrashIo {
            inner: Arc::new(Mutex::new(Crash {
                current: img.clone(),
                durable: img,
                unsynced: Vec::new(),
            })),
            fail: Arc::default(),
        }
    }

    /// While `on`, every sync fails with EIO, and (as Linux does after a
    /// failed write-back) the writes it covered are dropped: a later sync
    /// succeeds without them.
    pub fn fail_syncs(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }

    /// Number of writes not yet synced.
    pub fn unsynced_writes(&self) -> usize {
        lock(&self.inner).unsynced.len()
    }
}

impl DataIo for CrashIo {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let c = lock(&self.inner);
        buf.fill(0);
        if let Some(rest) = mem_off(off).ok().and_then(|off| c.current.get(off..)) {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut c = lock(&self.inner);
        let op = Op::Write(mem_off(off)?, buf.to_vec());
        apply(&mut c.current, &op);
        c.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut c = lock(&self.inner);
        let ops = std::mem::take(&mut c.unsynced);
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        for op in &ops {
            apply(&mut c.durable, op);
        }
        Ok(())
    }

    fn file_len(&self) -> u64 {
        lock(&self.inner).current.len() as u64
    }

    fn grow_to(&self, len: u64) -> io::Result<()> {
        let mut c = lock(&self.inner);
        if (c.current.len() as u64) < len {
            let op = Op::Grow(mem_off(len)?);
            apply(&mut c.current, &op);
            c.unsynced.push(op);
        }
        Ok(())
    }
}
