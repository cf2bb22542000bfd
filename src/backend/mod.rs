//! The block-backend contract between the SCSI emulation and storage.
//!
//! The SCSI layer ([`crate::scsi`]) knows nothing of pools, files or actors:
//! it calls a [`BlockBackend`]. Thin pool volumes ([`crate::pool`]), raw
//! files ([`file`](mod@file)), memory ([`mem`]) and the null sink ([`null`]) implement
//! it. Everything a LUN advertises (LBPME, LBPRZ, WCE, VPD B0/B2 limits) is
//! derived from [`BackendCaps`], never written as a literal.
//!
//! Addresses are in logical blocks of `caps().block_size` bytes; buffers are
//! whole blocks. Implementations must reject out-of-range I/O with
//! [`BackendError::OutOfRange`] rather than panic.

use std::io;

use crate::ring::SharedData;

pub mod buf;
pub mod file;
pub mod mem;
pub mod null;

pub use buf::{BlockSink, BlockSource, SinkPrefix, SourcePrefix};

/// What a backend can do. The SCSI layer computes every advertised limit and
/// bit from this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendCaps {
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Capacity in logical blocks.
    pub num_blocks: u64,
    /// The backend can deallocate blocks (thin provisioning: UNMAP, WRITE SAME
    /// with UNMAP, GET LBA STATUS). Drives LBPME, LBPU, LBPWS, LBPWS10.
    pub thin: bool,
    /// Deallocated blocks read back as zeros (LBPRZ).
    pub zeroes_after_unmap: bool,
    /// Deallocation granularity in logical blocks (a pool chunk), >= 1.
    pub unmap_granularity: u32,
    /// Largest number of blocks one UNMAP descriptor / WRITE SAME may cover.
    pub max_unmap_blocks: u32,
    /// Largest number of UNMAP block descriptors in one command.
    pub max_unmap_descriptors: u32,
    /// The backend has a volatile write cache that [`BlockBackend::flush`]
    /// makes durable; WCE is then changeable in the caching mode page.
    pub volatile_cache: bool,
    /// The backend refuses writes (a snapshot): DATA PROTECT on write.
    pub read_only: bool,
    /// [`BlockBackend::write_atomic_from`] is all-or-nothing, against
    /// concurrent reads and across a crash: WRITE ATOMIC(16) is offered.
    pub atomic_write: bool,
}

/// Allocation state of a run of blocks, for GET LBA STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The run is mapped (allocated) rather than deallocated.
    pub mapped: bool,
    /// Length of the run in blocks, starting at the queried LBA (>= 1).
    pub blocks: u64,
}

/// Provisioning resources of a thin backend (LOG SENSE page 0Ch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Bytes that can still be allocated (pool-wide: shared with other
    /// volumes, or the file system's free space).
    pub available_bytes: u64,
    /// Bytes allocated to this volume or image.
    pub used_bytes: u64,
}

/// Asynchronous conditions a backend reports, which the SCSI layer turns
/// into unit attentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// Free space fell below the pool's low-water mark
    /// (THIN PROVISIONING SOFT THRESHOLD REACHED, 38/07).
    LowWaterMark,
    /// The capacity changed (CAPACITY DATA HAS CHANGED, 2A/09).
    CapacityChanged,
}

/// Errors a backend returns; [`crate::scsi`] maps each to sense data in one
/// place.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The range lies (partly) beyond the end of the device.
    #[error("block range {lba}+{blocks} is beyond the device end")]
    OutOfRange {
        /// First block of the range.
        lba: u64,
        /// Number of blocks.
        blocks: u64,
    },
    /// A write needed a new chunk and the pool has none free.
    #[error("no free space left in the pool")]
    OutOfSpace,
    /// The backend is read-only (a snapshot).
    #[error("the device is read-only")]
    ReadOnly,
    /// Reading the medium failed.
    #[error("read failed: {0}")]
    Read(#[source] io::Error),
    /// Writing the medium failed.
    #[error("write failed: {0}")]
    Write(#[source] io::Error),
    /// Flushing (making writes durable) failed.
    #[error("flush failed: {0}")]
    Flush(#[source] io::Error),
    /// The backend failed earlier (a sync of its data or metadata did not
    /// complete) and refuses writes until it is reopened; the message
    /// names it and the first failure.
    #[error("{0}")]
    Failed(String),
    /// The backend's metadata failed; the message says what.
    #[error("metadata error: {0}")]
    Metadata(String),
    /// The storage does not answer for now (a network backstore whose
    /// cluster is unreachable); the command may succeed when retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// What a backend's own COMPARE AND WRITE found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareWrite {
    /// The blocks matched and were written.
    Written,
    /// They differ, first at this byte offset from the start of the range;
    /// nothing was written.
    Miscompare(u64),
}

/// Called once when an asynchronous operation completes (on a thread of
/// the backend's).
pub type AsyncDone<T> = Box<dyn FnOnce(Result<T, BackendError>) + Send + 'static>;

/// A backend that runs the common data commands asynchronously: the caller
/// submits and is called back on completion, no thread waits per I/O.
/// Ranges are validated by the caller ([`crate::scsi::Lun::plan_async`]).
/// A submission that fails is reported through `done` too.
pub trait AsyncBackend: Send + Sync {
    /// Reads `into.view().len()` bytes at block `lba` straight into `into`
    /// (a command's buffers in the ring's data area, no bounce buffer);
    /// `done` runs once they are there (or with the error, the buffers'
    /// contents then unspecified).
    fn submit_read(&self, lba: u64, into: SharedData, done: AsyncDone<()>);
    /// Writes the bytes of `from` (a command's buffers in the data area,
    /// taken from there without a copy of ours) at block `lba`, durable on
    /// completion with `fua`.
    fn submit_write(&self, lba: u64, from: SharedData, fua: bool, done: AsyncDone<()>);
    /// Makes every completed write durable.
    fn submit_flush(&self, done: AsyncDone<()>);
    /// Whether [`AsyncBackend::submit_compare_and_write`] can do `bytes` at
    /// block `lba` (e.g. not across two of the backend's objects).
    fn can_compare_and_write(&self, lba: u64, bytes: usize) -> bool;
    /// COMPARE AND WRITE of `verify`/`write` (same length) at block `lba`,
    /// atomic against every writer of the storage.
    fn submit_compare_and_write(
        &self,
        lba: u64,
        verify: Vec<u8>,
        write: Vec<u8>,
        fua: bool,
        done: AsyncDone<CompareWrite>,
    );
    /// Deallocates `blocks` blocks at `lba` (UNMAP), as
    /// [`BlockBackend::unmap`].
    fn submit_unmap(&self, lba: u64, blocks: u64, done: AsyncDone<()>);
    /// Makes `blocks` blocks at `lba` read as zeros, deallocating them with
    /// `deallocate` (WRITE SAME of zeros), as [`BlockBackend::write_zeroes`].
    fn submit_write_zeroes(&self, lba: u64, blocks: u64, deallocate: bool, done: AsyncDone<()>);
    /// Writes `pattern` (one block) to each of `blocks` blocks at `lba`
    /// (WRITE SAME), durable on completion with `fua`.
    fn submit_write_same(
        &self,
        lba: u64,
        blocks: u64,
        pattern: Vec<u8>,
        fua: bool,
        done: AsyncDone<()>,
    );
}

/// Block storage as the SCSI emulation sees it.
///
/// Methods take `&self`: a backend is shared between the threads that run
/// I/O, and synchronises internally.
pub trait BlockBackend: Send + Sync {
    /// What the backend can do, for INQUIRY, READ CAPACITY, MODE SENSE.
    fn caps(&self) -> BackendCaps;

    /// Reads `buf.len() / block_size` blocks at `lba` into `buf`.
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError>;

    /// Writes `data` (whole blocks) at `lba`. With `fua` the data is durable
    /// when this returns.
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError>;

    /// Reads `sink.len() / block_size` blocks at `lba` into `sink`.
    ///
    /// The default reads into the sink directly when it is plain memory
    /// and through a temporary buffer otherwise; backends override it to
    /// fill any sink in place (e.g. `pread` straight into the ring's data
    /// area). A failure of the sink itself is [`BackendError::Read`].
    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        if let Some(buf) = sink.as_mut_slice() {
            return self.read(lba, buf);
        }
        let mut buf = vec![0u8; sink.len()];
        self.read(lba, &mut buf)?;
        sink.write_at(0, &buf).map_err(BackendError::Read)
    }

    /// Tries [`BlockBackend::read_into`] without waiting for a device or a
    /// lock held across I/O: `Ok(true)` when `sink` was filled, `Ok(false)`
    /// when that would have waited (the sink's contents are then
    /// unspecified and the caller reads again with `read_into`, from a
    /// thread that may block). Lets a caller serve page-cache hits on its
    /// own thread. The default never tries.
    fn read_nowait(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<bool, BackendError> {
        let _ = (lba, sink);
        Ok(false)
    }

    /// Writes `src` (whole blocks) at `lba`, as [`BlockBackend::write`].
    ///
    /// The default writes plain memory directly and anything else through
    /// a temporary buffer; backends override it to take the bytes straight
    /// from the source. A failure of the source is [`BackendError::Write`].
    fn write_from(&self, lba: u64, src: &dyn BlockSource, fua: bool) -> Result<(), BackendError> {
        if let Some(data) = src.as_slice() {
            return self.write(lba, data, fua);
        }
        let mut buf = vec![0u8; src.len()];
        src.read_at(0, &mut buf).map_err(BackendError::Write)?;
        self.write(lba, &buf, fua)
    }

    /// Writes `src` (whole blocks) at `lba` all-or-nothing: a concurrent
    /// read sees all of the old blocks or all of the new ones, and so does
    /// the device after a crash (WRITE ATOMIC(16)). Only called when
    /// `caps().atomic_write` says so; the default refuses.
    fn write_atomic_from(
        &self,
        lba: u64,
        src: &dyn BlockSource,
        fua: bool,
    ) -> Result<(), BackendError> {
        let _ = (lba, src, fua);
        Err(BackendError::Write(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend has no atomic writes",
        )))
    }

    /// Makes every write that returned before this call durable.
    fn flush(&self) -> Result<(), BackendError>;

    /// COMPARE AND WRITE done by the storage itself, atomically against
    /// every writer of it (other hosts included): `None` (the default)
    /// when it cannot, and the SCSI layer then reads, compares and writes
    /// under the LUN's own gate.
    fn compare_and_write(
        &self,
        lba: u64,
        verify: &[u8],
        write: &[u8],
        fua: bool,
    ) -> Option<Result<CompareWrite, BackendError>> {
        let _ = (lba, verify, write, fua);
        None
    }

    /// Whether a call may wait on a device, a file or a lock held across
    /// I/O (the default). A backend that only touches memory (null, memory)
    /// says `false`: the daemon then runs its commands on the device's own
    /// thread instead of handing them to I/O threads.
    fn may_block(&self) -> bool {
        true
    }

    /// Deallocates `blocks` blocks at `lba` (or zeroes what cannot be
    /// deallocated, so that the range reads as zeros afterwards when
    /// `zeroes_after_unmap` is advertised).
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError>;

    /// Makes `blocks` blocks at `lba` read as zeros; with `deallocate` the
    /// backend may deallocate them instead of writing zeros.
    fn write_zeroes(&self, lba: u64, blocks: u64, deallocate: bool) -> Result<(), BackendError> {
        let caps = self.caps();
        if deallocate && caps.thin && caps.zeroes_after_unmap {
            return self.unmap(lba, blocks);
        }
        let bs = u64::from(caps.block_size);
        // At least one block per write, also for blocks over 1 MiB.
        let per_io: u64 = ((1 << 20) / bs.max(1)).max(1);
        let zeros = vec![0u8; usize::try_from(per_io * bs).unwrap_or(1 << 20)];
        let mut done = 0u64;
        while done < blocks {
            let n = per_io.min(blocks - done);
            let len = usize::try_from(n * bs).unwrap_or(zeros.len());
            self.write(lba + done, &zeros[..len], false)?;
            done += n;
        }
        Ok(())
    }

    /// The allocation state of the run of blocks that starts at `lba`,
    /// looking at most `max_blocks` ahead. Backends that are not thin report
    /// everything mapped.
    fn allocation(&self, lba: u64, max_blocks: u64) -> Result<Allocation, BackendError> {
        let caps = self.caps();
        if lba >= caps.num_blocks {
            return Err(BackendError::OutOfRange { lba, blocks: 1 });
        }
        Ok(Allocation {
            mapped: true,
            blocks: max_blocks.min(caps.num_blocks - lba).max(1),
        })
    }

    /// The backend's asynchronous side, if it has one (the daemon then
    /// submits READ/WRITE/SYNCHRONIZE CACHE to it instead of running them
    /// on an I/O thread).
    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        None
    }

    /// Makes the `blocks` blocks at `lba` hold what `src`'s blocks at
    /// `src_lba` hold without copying data: the two ranges then share
    /// storage, copied on the next write to either (EXTENDED COPY between
    /// volumes of one pool). `Ok(false)` when this backend cannot do it for
    /// these two backends and this range (the default; the caller then
    /// copies the data). The caller checks both ranges against the
    /// capacities first.
    fn share_blocks(
        &self,
        src: &dyn BlockBackend,
        src_lba: u64,
        lba: u64,
        blocks: u64,
    ) -> Result<bool, BackendError> {
        let _ = (src, src_lba, lba, blocks);
        Ok(false)
    }

    /// The backend as [`std::any::Any`], for [`BlockBackend::share_blocks`]
    /// to recognise a backend of its own kind; `None` (the default) for
    /// backends that share nothing.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Makes this client the owner of a unit other daemons export too
    /// (ALUA: a SET TARGET PORT GROUPS naming this daemon's group
    /// active/optimized), waiting until it is: `Ok(true)` once it owns it,
    /// `Ok(false)` when it cannot (the default: no owner to move).
    fn take_ownership(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Takes the next pending asynchronous event, if any.
    fn poll_event(&self) -> Option<BackendEvent> {
        None
    }

    /// Its provisioning resources, if it keeps count (thin volumes, sparse
    /// images); `None` (the default) leaves LOG SENSE page 0Ch out.
    fn resources(&self) -> Option<Resources> {
        None
    }
}
