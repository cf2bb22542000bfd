//! The data file behind a small trait, so that tests can drop unsynced writes.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::file::{NowaitReads, WriteTurns};
use crate::backend::{BlockSink, BlockSource};

/// Positional I/O on the pool's data file.
///
/// Writes are volatile until [`DataIo::sync_data`] returns; a crash may keep
/// any subset of the writes issued since the last sync.
pub trait DataIo: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `off`; bytes past the end read as zeros.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Reads `len` bytes at `off` into `[at, at + len)` of `sink`, as
    /// [`DataIo::read_at`]. The default reads into a buffer and copies it;
    /// [`FileIo`] reads straight into the sink (e.g. the ring's data area).
    fn read_into(
        &self,
        sink: &mut dyn BlockSink,
        at: usize,
        len: usize,
        off: u64,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, off)?;
        sink.write_at(at, &buf)
    }
    /// Reads `len` bytes at `off` into `[at, at + len)` of `sink` only as
    /// far as that needs no wait for a device (`BlockSink::pread_nowait_at`);
    /// `false`: not all of them (the caller reads again with
    /// [`DataIo::read_into`]). The default never tries.
    fn read_nowait(&self, sink: &mut dyn BlockSink, at: usize, len: usize, off: u64) -> bool {
        let _ = (sink, at, len, off);
        false
    }
    /// Writes all of `buf` at `off`, extending the file if needed.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Writes bytes `[at, at + len)` of `src` at `off`, as
    /// [`DataIo::write_at`]. The default copies them into a buffer first;
    /// [`FileIo`] writes straight from the source.
    fn write_from(&self, src: &dyn BlockSource, at: usize, len: usize, off: u64) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        src.read_at(at, &mut buf)?;
        self.write_at(&buf, off)
    }
    /// Allocates host space for `[off, off + len)` without changing the
    /// file's length (`fallocate(FALLOC_FL_KEEP_SIZE)`), so that later
    /// writes there never need space. Best effort where the file system
    /// cannot preallocate; a full file system is an error (ENOSPC). The
    /// default does nothing.
    fn preallocate(&self, off: u64, len: u64) -> io::Result<()> {
        let _ = (off, len);
        Ok(())
    }
    /// Makes every write issued before this call durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes (what a read past it returns zeros for).
    fn file_len(&self) -> u64;
    /// Grows the file to at least `len` bytes (sparse); never shrinks.
    fn grow_to(&self, len: u64) -> io::Result<()>;
}

/// [`DataIo`] on a real file with pread/pwrite/fdatasync.
#[derive(Debug)]
pub struct FileIo {
    file: File,
    len: AtomicU64,
    nowait: NowaitReads,
    /// Every write takes its turn here, and [`DataIo::grow_to`] runs alone:
    /// `set_len` to a length below a concurrent write past the old end
    /// would cut that write off (it read back as zeros).
    writes: WriteTurns,
    /// Changes made (writes, preallocations, new lengths), counted when
    /// each ends (failed ones too: they may have changed bytes).
    changes: AtomicU64,
    /// `changes` as read when the last completed `fdatasync` began: every
    /// change counted up to there is durable. A sync that finds nothing
    /// counted since skips the system call (a snapshot of a volume at rest
    /// commits with one sync less); one that finds a sync running still
    /// makes its own, so it never returns before the bytes are durable.
    synced: AtomicU64,
    /// `fdatasync` calls made.
    syncs: AtomicU64,
}

impl FileIo {
    /// Wraps an open read-write file.
    pub fn new(file: File) -> io::Result<FileIo> {
        let len = file.metadata()?.len();
        Ok(FileIo {
            file,
            len: AtomicU64::new(len),
            nowait: NowaitReads::default(),
            writes: WriteTurns::default(),
            // what an earlier process left unsynced is synced by the first commit
            changes: AtomicU64::new(1),
            synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        })
    }
}

impl FileIo {
    /// Counts a change, after it ended (see `changes`).
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Records that the file reaches `end` at least: an overwrite (the
    /// usual write) reads the length and changes nothing.
    fn grew_to(&self, end: u64) {
        if end > self.len.load(Ordering::Acquire) {
            self.len.fetch_max(end, Ordering::AcqRel);
        }
    }

    /// `fdatasync` calls made so far (those skipped not counted).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl DataIo for FileIo {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    fn read_into(
        &self,
        sink: &mut dyn BlockSink,
        at: usize,
        len: usize,
        off: u64,
    ) -> io::Result<()> {
        let n = sink.pread_at(at, len, self.file.as_fd(), off)?;
        sink.zero_at(at + n, len - n)
    }

    fn read_nowait(&self, sink: &mut dyn BlockSink, at: usize, len: usize, off: u64) -> bool {
        self.nowait.read(sink, at, len, self.file.as_fd(), off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let res = self.writes.take(buf.len(), || {
            self.file.write_all_at(buf, off)?;
            self.grew_to(off + buf.len() as u64);
            Ok(())
        });
        self.changed();
        res
    }

    fn write_from(&self, src: &dyn BlockSource, at: usize, len: usize, off: u64) -> io::Result<()> {
        let res = self.writes.take(len, || {
            src.pwrite_at(at, len, self.file.as_fd(), off)?;
            self.grew_to(off + len as u64);
            Ok(())
        });
        self.changed();
        res
    }

    fn preallocate(&self, off: u64, len: u64) -> io::Result<()> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let range = i64::try_from(off)
            .and_then(|o| i64::try_from(len).map(|l| (o, l)))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let res = fallocate(
            &self.file,
            FallocateFlags::FALLOC_FL_KEEP_SIZE,
            range.0,
            range.1,
        );
        self.changed();
        match res {
            Ok(()) => Ok(()),
            // The file system cannot preallocate: stay sparse.
            Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let seen = self.changes.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= seen {
            return Ok(());
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data()?;
        self.synced.fetch_max(seen, Ordering::AcqRel);
        Ok(())
    }

    fn file_len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn grow_to(&self, len: u64) -> io::Result<()> {
        if len <= self.file_len() {
            return Ok(());
        }
        // No write is in progress meanwhile, and the length is read from
        // the file itself: set_len only ever grows it.
        self.writes.alone(|| {
            if len > self.file.metadata()?.len() {
                let res = self.file.set_len(len);
                self.changed();
                res?;
            }
            self.len.fetch_max(len, Ordering::AcqRel);
            Ok(())
        })
    }
}

#[cfg(test)]
#[path = "io_tests.rs"]
mod tests;
