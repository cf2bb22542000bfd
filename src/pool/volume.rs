//! Volumes: the data path (plan under the state mutex, I/O outside it) and
//! the [`BlockBackend`] implementation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::backend::{
    Allocation, BackendCaps, BackendError, BackendEvent, BlockBackend, BlockSink, BlockSource,
    Resources,
};

use super::{Pool, PoolError};

/// A volume or snapshot of a [`Pool`], usable as a [`BlockBackend`].
pub struct Volume {
    pool: Pool,
    id: u64,
    name: String,
    read_only: bool,
    block_size: u32,
    size: AtomicU64,
    pub(super) gate: Arc<RwLock<()>>,
    seen_low_water: AtomicU64,
    /// The pool's count of low-water crossings (read without the state
    /// lock: `poll_event` runs on every command).
    low_water_epoch: Arc<AtomicU64>,
    capacity_changed: AtomicBool,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Volume {
    pub(crate) fn new(
        pool: Pool,
        id: u64,
        name: &str,
        rec: &super::format::VolumeRecord,
        read_only: bool,
    ) -> Volume {
        let gate = pool.gate(id);
        let low_water_epoch = Arc::clone(&pool.state().low_water_epoch);
        let seen = low_water_epoch.load(Ordering::Acquire);
        Volume {
            pool,
            id,
            name: name.to_string(),
            read_only: read_only || rec.kind == super::VolumeKind::Snapshot,
            block_size: rec.block_size,
            size: AtomicU64::new(rec.size_bytes),
            gate,
            seen_low_water: AtomicU64::new(seen),
            low_water_epoch,
            capacity_changed: AtomicBool::new(false),
        }
    }

    /// Name the volume had when opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Logical size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.block_size
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn resized(&self, size: u64) {
        self.size.store(size, Ordering::Release);
        self.capacity_changed.store(true, Ordering::Release);
    }

    /// Byte range of `len` bytes at `lba`, checked against the size.
    fn range(&self, lba: u64, len: usize) -> Result<u64, BackendError> {
        let bs = u64::from(self.block_size);
        let len = len as u64;
        // on every I/O: shifts, not divisions, for the usual block sizes
        let (blocks, rem, size_blocks) = if bs.is_power_of_two() {
            let s = bs.trailing_zeros();
            (len >> s, len & (bs - 1), self.size_bytes() >> s)
        } else {
            (len / bs, len % bs, self.size_bytes() / bs)
        };
        let bad = BackendError::OutOfRange { lba, blocks };
        if rem != 0 {
            return Err(bad);
        }
        let end = lba
            .checked_add(blocks)
            .ok_or(BackendError::OutOfRange { lba, blocks })?;
        if end > size_blocks {
            return Err(bad);
        }
        Ok(lba * bs)
    }
}

impl BlockBackend for Volume {
    fn caps(&self) -> BackendCaps {
        let bs = self.block_size;
        let per_chunk = (self.pool.chunk_size() / bs).max(1);
        BackendCaps {
            block_size: bs,
            num_blocks: self.size_bytes() / u64::from(bs),
            thin: true,
            zeroes_after_unmap: true,
            unmap_granularity: per_chunk,
            max_unmap_blocks: (1u32 << 30) / bs,
            max_unmap_descriptors: 256,
            volatile_cache: true,
            read_only: self.read_only,
            atomic_write: true,
        }
    }

    fn read(&self, lba: u64, mut buf: &mut [u8]) -> Result<(), BackendError> {
        self.read_into(lba, &mut buf)
    }

    /// Reads straight into the sink (`pread` into the ring's data area for
    /// a command's buffers; zeros for unmapped chunks).
    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        let off = self.range(lba, sink.len())?;
        let _g = self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.pool.read_into(self.id, off, sink)
    }

    /// Without waiting for the volume gate (a writer that allocates holds
    /// it across I/O), the metadata lock or the data file's device.
    fn read_nowait(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<bool, BackendError> {
        let off = self.range(lba, sink.len())?;
        let _g = match self.gate.try_read() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        self.pool.read_nowait(self.id, off, sink)
    }

    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.write_from(lba, &data, fua)
    }

    /// Writes straight from the source (`pwrite` out of the ring's data
    /// area for a command's buffers) wherever the bytes go to disk as they
    /// are; partial chunks that need a copy-on-write or zero fill are built
    /// in a buffer as before.
    fn write_from(&self, lba: u64, src: &dyn BlockSource, fua: bool) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        self.pool.writable()?;
        let off = self.range(lba, src.len())?;
        // Overwrites of chunks this volume owns alone share the gate (like
        // reads); anything that allocates or copies takes it exclusively.
        let done = {
            let _g = self
                .gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pool.write_in_place(self.id, off, src)?
        };
        if !done {
            let _g = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pool.write_from(self.id, off, src)?;
        }
        if fua {
            self.pool.fua()?;
        }
        if done {
            // An overwrite in place added no metadata: nothing to commit
            // for it (and no second trip through the state lock).
            return Ok(());
        }
        self.pool.maybe_commit()?;
        Ok(())
    }

    /// WRITE ATOMIC: under the volume's gate held exclusively (no read or
    /// write of the volume in between), every chunk goes to a new chunk and
    /// the mappings switch in one commit ([`Pool::write_relocating`]).
    fn write_atomic_from(
        &self,
        lba: u64,
        src: &dyn BlockSource,
        fua: bool,
    ) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        self.pool.writable()?;
        let off = self.range(lba, src.len())?;
        {
            let _g = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pool.write_relocating(self.id, off, src)?;
        }
        if fua {
            self.pool.fua()?;
        }
        self.pool.maybe_commit()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.pool.flush().map_err(PoolError::into_flush_error)
    }

    /// The pool's free chunks (shared with its other volumes) and the
    /// chunks this volume maps (shared ones counted fully).
    fn resources(&self) -> Option<Resources> {
        let cs = u64::from(self.pool.chunk_size());
        let st = self.pool.state();
        let mapped = match &st.t3 {
            Some(t) => t.mapped(self.id),
            None => st.maps.get(&self.id).map_or(0, |m| m.len() as u64),
        };
        let free = st.sb.capacity_chunks.saturating_sub(st.used_chunks());
        Some(Resources {
            available_bytes: free.saturating_mul(cs),
            used_bytes: mapped.saturating_mul(cs),
        })
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        self.pool.writable()?;
        let bs = u64::from(self.block_size);
        let len = blocks
            .checked_mul(bs)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or(BackendError::OutOfRange { lba, blocks })?;
        let off = self.range(lba, len)?;
        {
            let _g = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pool.discard_bytes(self.id, off, len as u64)?;
        }
        self.pool.maybe_commit()?;
        Ok(())
    }

    fn allocation(&self, lba: u64, max_blocks: u64) -> Result<Allocation, BackendError> {
        let bs = u64::from(self.block_size);
        let num = self.size_bytes() / bs;
        if lba >= num {
            return Err(BackendError::OutOfRange { lba, blocks: 1 });
        }
        let cs = self.pool.inner.chunk_size;
        let start = lba * bs;
        let end = lba.saturating_add(max_blocks.max(1)).min(num) * bs;
        let l0 = start >> self.pool.inner.chunk_shift;
        let _g = self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut st = self.pool.state();
        if let Some(t) = st.t3.as_mut() {
            let last = end.div_ceil(cs);
            let mapped = t.lookup(self.id, l0)?.is_some();
            let run_end_chunk = if mapped {
                let mut e = l0 + 1;
                while e < last && t.lookup(self.id, e)?.is_some() {
                    e += 1;
                }
                e
            } else {
                t.next_mapped(self.id, l0 + 1, last)?.unwrap_or(u64::MAX)
            };
            let run_end = run_end_chunk.saturating_mul(cs).min(end);
            return Ok(Allocation {
                mapped,
                blocks: ((run_end - start) / bs).max(1),
            });
        }
        let Some(map) = st.maps.get(&self.id) else {
            return Ok(Allocation {
                mapped: false,
                blocks: (end - start) / bs,
            });
        };
        let mapped = map.contains(l0);
        let run_end_chunk = if mapped {
            let mut e = l0 + 1;
            while e.saturating_mul(cs) < end && map.contains(e) {
                e += 1;
            }
            e
        } else {
            map.iter_from(l0 + 1).next().map_or(u64::MAX, |(k, _)| k)
        };
        let run_end = run_end_chunk.saturating_mul(cs).min(end);
        Ok(Allocation {
            mapped,
            blocks: ((run_end - start) / bs).max(1),
        })
    }

    /// Shares the source's chunks when `src` is a volume of the same pool
    /// ([`Volume::share_from`]).
    fn share_blocks(
        &self,
        src: &dyn BlockBackend,
        src_lba: u64,
        lba: u64,
        blocks: u64,
    ) -> Result<bool, BackendError> {
        match src.as_any().and_then(|a| a.downcast_ref::<Volume>()) {
            Some(v) => self.share_from(v, src_lba, lba, blocks),
            None => Ok(false),
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn poll_event(&self) -> Option<BackendEvent> {
        if self.capacity_changed.swap(false, Ordering::AcqRel) {
            return Some(BackendEvent::CapacityChanged);
        }
        let epoch = self.low_water_epoch.load(Ordering::Acquire);
        if self.seen_low_water.swap(epoch, Ordering::AcqRel) != epoch {
            return Some(BackendEvent::LowWaterMark);
        }
        None
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let mut open = super::guard(&self.pool.inner.open);
        if let Some(v) = open.get_mut(&self.id) {
            v.retain(|w| w.strong_count() > 0);
            if v.is_empty() {
                open.remove(&self.id);
            }
        }
    }
}
