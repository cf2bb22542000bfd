//! [`FileBackend`]: a raw image file (tcmu-runner's `file/` backstore
//! format) accessed with pread/pwrite.
//!
//! `fdatasync` makes FUA writes and flushes durable; UNMAP punches holes
//! (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`), falling back to writing
//! zeros where the filesystem cannot; GET LBA STATUS uses
//! `SEEK_DATA`/`SEEK_HOLE`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};
use nix::unistd::{lseek, Whence};

use super::{
    Allocation, BackendCaps, BackendError, BlockBackend, BlockSink, BlockSource, Resources,
};

/// Largest range one UNMAP descriptor may cover (1 Mi blocks; initiator
/// test suites treat larger explicit limits as insane).
const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
/// Largest number of UNMAP descriptors per command.
const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// A raw image file.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    /// Capabilities except `num_blocks`, which lives in `num_blocks`.
    caps: BackendCaps,
    num_blocks: AtomicU64,
    nowait: NowaitReads,
    writes: WriteTurns,
}

/// Large buffered writes to one file take turns here. The kernel runs
/// buffered writes to a file one at a time anyway (ext4, xfs and tmpfs hold
/// the inode's lock exclusively for each), and a writer waiting for that
/// lock spins for as long as the holder is copying: for a large write that
/// is the whole copy, CPU the rest of the path (the kernel's own copies into
/// the data area) could have had. Waiting here, a writer sleeps instead.
/// Small writes run side by side (their spins are short, and a sleep and a
/// wake-up would cost more); they only wait while a large one is running.
#[derive(Debug, Default)]
pub(crate) struct WriteTurns {
    turns: std::sync::RwLock<()>,
}

/// Writes of at least this many bytes take turns ([`WriteTurns`]).
pub(crate) const LARGE_WRITE: usize = 64 << 10;

impl WriteTurns {
    /// Runs `write` of `len` bytes: a large one when no other write of this
    /// file runs, a small one when no large one does.
    pub(crate) fn take<T>(&self, len: usize, write: impl FnOnce() -> T) -> T {
        if len >= LARGE_WRITE {
            return self.alone(write);
        }
        let _turn = self
            .turns
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        write()
    }

    /// Runs `f` while no write of this file runs (e.g. a change of its
    /// length that a concurrent write past the old end must not race).
    pub(crate) fn alone<T>(&self, f: impl FnOnce() -> T) -> T {
        let _turn = self
            .turns
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f()
    }
}

/// `RWF_NOWAIT` reads of one file ([`BlockSink::pread_nowait_at`]), given
/// up for good once the file refuses them (`EOPNOTSUPP`).
#[derive(Debug, Default)]
pub(crate) struct NowaitReads {
    refused: AtomicBool,
}

impl NowaitReads {
    /// Reads `len` bytes of `fd` at `off` into `[at, at + len)` of `sink`
    /// without waiting: true when all of them were read. Any failure is
    /// false: the blocking read that follows decides (and reports).
    pub(crate) fn read(
        &self,
        sink: &mut dyn BlockSink,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        off: u64,
    ) -> bool {
        if self.refused.load(Ordering::Relaxed) {
            return false;
        }
        match sink.pread_nowait_at(at, len, fd, off) {
            Ok(n) => n == len,
            Err(e) => {
                if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                    tracing::debug!(
                        "RWF_NOWAIT reads not supported: every read goes to an I/O thread"
                    );
                    self.refused.store(true, Ordering::Relaxed);
                }
                false
            }
        }
    }
}

/// Opens `path` with `opts` and `O_NOATIME`, so that no read updates the
/// file's access time: that is a metadata change which can wait for the
/// file system's journal, and reads may run where nothing must wait
/// ([`BlockBackend::read_nowait`]). Without it when the kernel refuses it
/// (`EPERM`: the daemon does not own the file).
pub(crate) fn open_noatime(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut noatime = opts.clone();
    noatime.custom_flags(libc::O_NOATIME);
    match noatime.open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => opts.open(path),
        r => r,
    }
}

impl FileBackend {
    /// Opens an existing image; its size (rounded down to whole blocks) is
    /// the capacity.
    pub fn open(path: &Path, block_size: u32, read_only: bool) -> io::Result<FileBackend> {
        let file = open_noatime(OpenOptions::new().read(true).write(!read_only), path)?;
        FileBackend::from_file(file, block_size, read_only)
    }

    /// Opens or creates an image and extends it to `size_bytes` if it is
    /// smaller (never shrinks it).
    pub fn create(path: &Path, block_size: u32, size_bytes: u64) -> io::Result<FileBackend> {
        let file = open_noatime(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            path,
        )?;
        if file.metadata()?.len() < size_bytes {
            file.set_len(size_bytes)?;
        }
        FileBackend::from_file(file, block_size, false)
    }

    /// Serves an already open image: a regular file, or a block device, whose own
    /// size (rounded down to whole blocks) is the capacity. A block device is not
    /// thin (no holes to report, UNMAP not advertised as zeroing).
    pub fn from_file(file: File, block_size: u32, read_only: bool) -> io::Result<FileBackend> {
        if block_size == 0 || !block_size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "block size must be a power of two",
            ));
        }
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        // A block device's metadata length is 0: its size is where a seek to the end lands.
        let len = if block_device {
            u64::try_from(lseek(file.as_fd(), 0, Whence::SeekEnd)?).unwrap_or(0)
        } else {
            meta.len()
        };
        let fs_block = u32::try_from(meta.blksize()).unwrap_or(4096);
        let caps = BackendCaps {
            block_size,
            num_blocks: len / u64::from(block_size),
            thin: !block_device,
            zeroes_after_unmap: !block_device,
            unmap_granularity: (fs_block / block_size).max(1),
            max_unmap_blocks: MAX_UNMAP_BLOCKS,
            max_unmap_descriptors: MAX_UNMAP_DESCRIPTORS,
            volatile_cache: true,
            read_only,
            atomic_write: false,
        };
        let num_blocks = AtomicU64::new(caps.num_blocks);
        Ok(FileBackend {
            file,
            caps,
            num_blocks,
            nowait: NowaitReads::default(),
            writes: WriteTurns::default(),
        })
    }

    /// Grows or shrinks the image to `size_bytes` (rounded down to whole
    /// blocks); the caller then reports CAPACITY DATA HAS CHANGED
    /// ([`crate::scsi::Lun::capacity_changed`]).
    pub fn resize(&self, size_bytes: u64) -> io::Result<()> {
        let bs = u64::from(self.caps.block_size);
        let blocks = size_bytes / bs;
        self.file.set_len(blocks * bs)?;
        self.num_blocks.store(blocks, Ordering::Release);
        Ok(())
    }

    fn blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Byte range of `blocks` blocks at `lba`, checked against the capacity.
    fn span(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BackendError> {
        let bs = u64::from(self.caps.block_size);
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks() => Ok((lba * bs, blocks * bs)),
            _ => Err(BackendError::OutOfRange { lba, blocks }),
        }
    }

    /// Writes zeros over `len` bytes at `off`, 1 MiB at a time.
    fn zero_fill(&self, off: u64, len: u64) -> Result<(), BackendError> {
        const STEP: usize = 1 << 20;
        let zeros = vec![0u8; STEP];
        let mut done = 0;
        while done < len {
            let n = (STEP as u64).min(len - done);
            let chunk = zeros
                .get(..usize::try_from(n).unwrap_or(0))
                .unwrap_or_default();
            self.writes
                .take(chunk.len(), || self.file.write_all_at(chunk, off + done))
                .map_err(BackendError::Write)?;
            done += n;
        }
        Ok(())
    }

    fn blocks_of(&self, len: usize) -> u64 {
        u64::try_from(len).unwrap_or(u64::MAX) / u64::from(self.caps.block_size)
    }
}

fn off_t(v: u64) -> Result<libc::off_t, BackendError> {
    libc::off_t::try_from(v).map_err(|_| BackendError::OutOfRange { lba: v, blocks: 0 })
}

impl BlockBackend for FileBackend {
    fn caps(&self) -> BackendCaps {
        BackendCaps {
            num_blocks: self.blocks(),
            ..self.caps
        }
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let (off, _) = self.span(lba, self.blocks_of(buf.len()))?;
        self.file
            .read_exact_at(buf, off)
            .map_err(BackendError::Read)
    }

    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        if self.caps.read_only {
            return Err(BackendError::ReadOnly);
        }
        let (off, _) = self.span(lba, self.blocks_of(data.len()))?;
        self.writes
            .take(data.len(), || self.file.write_all_at(data, off))
            .map_err(BackendError::Write)?;
        if fua {
            self.file.sync_data().map_err(BackendError::Write)?;
        }
        Ok(())
    }

    /// `pread` straight into the sink (into the ring's data area for a
    /// command's buffers).
    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        let len = sink.len();
        let (off, _) = self.span(lba, self.blocks_of(len))?;
        let n = sink
            .pread_at(0, len, self.file.as_fd(), off)
            .map_err(BackendError::Read)?;
        if n < len {
            // The image shrank under us: as `read_exact_at` would.
            return Err(BackendError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// One `preadv2(RWF_NOWAIT)` attempt per buffer span: served on the
    /// caller's thread when the bytes are in the page cache.
    fn read_nowait(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<bool, BackendError> {
        let len = sink.len();
        let (off, _) = self.span(lba, self.blocks_of(len))?;
        Ok(self.nowait.read(sink, 0, len, self.file.as_fd(), off))
    }

    /// `pwrite` straight from the source.
    fn write_from(&self, lba: u64, src: &dyn BlockSource, fua: bool) -> Result<(), BackendError> {
        if self.caps.read_only {
            return Err(BackendError::ReadOnly);
        }
        let len = src.len();
        let (off, _) = self.span(lba, self.blocks_of(len))?;
        self.writes
            .take(len, || src.pwrite_at(0, len, self.file.as_fd(), off))
            .map_err(BackendError::Write)?;
        if fua {
            self.file.sync_data().map_err(BackendError::Write)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.file.sync_data().map_err(BackendError::Flush)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        if self.caps.read_only {
            return Err(BackendError::ReadOnly);
        }
        let (off, len) = self.span(lba, blocks)?;
        let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match fallocate(&self.file, mode, off_t(off)?, off_t(len)?) {
            Ok(()) => Ok(()),
            // No hole punching here: zero the range instead (LBPRZ holds).
            Err(Errno::EOPNOTSUPP) | Err(Errno::ENOSYS) => self.zero_fill(off, len),
            Err(e) => Err(BackendError::Write(e.into())),
        }
    }

    /// A sparse image (thin): the file system's space available to it and
    /// the bytes the image has allocated (`st_blocks`).
    fn resources(&self) -> Option<Resources> {
        if !self.caps.thin {
            return None;
        }
        let fs = nix::sys::statvfs::fstatvfs(self.file.as_fd()).ok()?;
        let meta = self.file.metadata().ok()?;
        Some(Resources {
            available_bytes: fs.blocks_available().saturating_mul(fs.fragment_size()),
            used_bytes: meta.blocks().saturating_mul(512),
        })
    }

    fn allocation(&self, lba: u64, max_blocks: u64) -> Result<Allocation, BackendError> {
        if lba >= self.blocks() {
            return Err(BackendError::OutOfRange { lba, blocks: 1 });
        }
        let bs = u64::from(self.caps.block_size);
        let limit = max_blocks.min(self.blocks() - lba).max(1);
        let off = off_t(lba * bs)?;
        let (mapped, next) = match lseek(&self.file, off, Whence::SeekData) {
            Ok(data) if data > off => (false, data),
            Ok(_) => match lseek(&self.file, off, Whence::SeekHole) {
                Ok(hole) => (true, hole),
                Err(e) => return Err(BackendError::Read(e.into())),
            },
            // ENXIO: no data at or after `off`, the rest is a hole.
            Err(Errno::ENXIO) => (false, off_t(self.blocks() * bs)?),
            // No SEEK_DATA support: report everything mapped.
            Err(_) => {
                return Ok(Allocation {
                    mapped: true,
                    blocks: limit,
                })
            }
        };
        let run_bytes = u64::try_from(next - off).unwrap_or(0);
        // A partial block counts toward the run that covers its start.
        let blocks = run_bytes.div_ceil(bs).clamp(1, limit);
        Ok(Allocation { mapped, blocks })
    }
}

#[cfg(test)]
mod write_turns_tests {
    use super::{WriteTurns, LARGE_WRITE};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    /// Runs four writers of `len` bytes at once; returns the most that ran
    /// inside `take` together.
    fn most_at_once(len: usize) -> usize {
        let turns = WriteTurns::default();
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..5 {
                        turns.take(len, || {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            inside.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn large_writes_run_one_at_a_time() {
        assert_eq!(most_at_once(LARGE_WRITE), 1);
        assert_eq!(most_at_once(1 << 20), 1);
    }

    #[test]
    fn small_writes_run_side_by_side() {
        // Four threads each inside for 2 ms, five times: they overlap.
        assert!(most_at_once(4096) > 1);
    }

    #[test]
    fn a_small_write_waits_for_a_large_one() {
        let turns = WriteTurns::default();
        let large_running = AtomicUsize::new(0);
        let overlapped = AtomicUsize::new(0);
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                turns.take(LARGE_WRITE, || {
                    large_running.store(1, Ordering::SeqCst);
                    go.wait();
                    std::thread::sleep(Duration::from_millis(20));
                    large_running.store(0, Ordering::SeqCst);
                });
            });
            s.spawn(|| {
                go.wait();
                turns.take(512, || {
                    overlapped.fetch_add(large_running.load(Ordering::SeqCst), Ordering::SeqCst);
                });
            });
        });
        assert_eq!(overlapped.load(Ordering::SeqCst), 0);
    }
}
