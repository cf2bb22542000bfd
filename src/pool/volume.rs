//! Volumes: the data path (plan under the state mutex, I/O outside it) and
//! the [`BlockBackend`] implementation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::backend::{Allocation, BackendCaps, BackendError, BackendEvent, BlockBackend};

use super::{Pool, PoolError, DIRTY_LIMIT};

/// What a write to one chunk needs, decided under the state mutex.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The chunk is mapped and not shared: overwrite it.
    InPlace(u64),
    /// The chunk is shared: copy `old` into the new chunk `new`, then write.
    Cow { old: u64, new: u64 },
    /// Unmapped: `new` was allocated; `zero` unless it reads as zeros already.
    Fresh { new: u64, zero: bool },
}

/// A volume or snapshot of a [`Pool`], usable as a [`BlockBackend`].
pub struct Volume {
    pool: Pool,
    id: u64,
    name: String,
    read_only: bool,
    block_size: u32,
    size: AtomicU64,
    gate: Arc<RwLock<()>>,
    seen_low_water: AtomicU64,
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
    ) -> Volume {
        let gate = pool.gate(id);
        let seen = pool.state().low_water_epoch;
        Volume {
            pool,
            id,
            name: name.to_string(),
            read_only: rec.kind == super::VolumeKind::Snapshot,
            block_size: rec.block_size,
            size: AtomicU64::new(rec.size_bytes),
            gate,
            seen_low_water: AtomicU64::new(seen),
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

    pub(crate) fn resized(&self, size: u64) {
        self.size.store(size, Ordering::Release);
        self.capacity_changed.store(true, Ordering::Release);
    }

    /// Byte range of `len` bytes at `lba`, checked against the size.
    fn range(&self, lba: u64, len: usize) -> Result<u64, BackendError> {
        let bs = u64::from(self.block_size);
        let blocks = len as u64 / bs;
        let bad = BackendError::OutOfRange { lba, blocks };
        if len as u64 % bs != 0 {
            return Err(bad);
        }
        let end = lba
            .checked_add(blocks)
            .ok_or(BackendError::OutOfRange { lba, blocks })?;
        if end > self.size_bytes() / bs {
            return Err(bad);
        }
        Ok(lba * bs)
    }
}

fn rd(e: std::io::Error) -> BackendError {
    BackendError::Read(e)
}

fn wr(e: std::io::Error) -> BackendError {
    BackendError::Write(e)
}

impl Pool {
    /// Splits `[off, off+len)` into per-chunk spans: (logical chunk, offset
    /// in chunk, position in the buffer, length).
    fn spans(&self, off: u64, len: usize) -> impl Iterator<Item = (u64, u64, usize, usize)> {
        let cs = self.inner.chunk_size;
        let shift = self.inner.chunk_shift;
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let pos = off + done as u64;
            let in_off = pos & (cs - 1);
            let n = ((cs - in_off) as usize).min(len - done);
            let item = (pos >> shift, in_off, done, n);
            done += n;
            Some(item)
        })
    }

    pub(crate) fn read_bytes(
        &self,
        vol: u64,
        off: u64,
        buf: &mut [u8],
    ) -> Result<(), BackendError> {
        let cs = self.inner.chunk_size;
        for (l, in_off, at, n) in self.spans(off, buf.len()) {
            let dst = &mut buf[at..at + n];
            match self.state().lookup(vol, l) {
                Some(c) => self.inner.data.read_at(dst, c * cs + in_off).map_err(rd)?,
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    /// The chunk mapped at `l` and whether it is shared. A chunk whose
    /// unsharing is not durable yet counts as shared until a commit makes it
    /// durable: this runs that commit (the module docs say why).
    fn lookup_exclusive(&self, vol: u64, l: u64) -> Result<Option<(u64, bool)>, PoolError> {
        loop {
            let pending = {
                let st = self.state();
                match st.lookup(vol, l) {
                    None => return Ok(None),
                    Some(c) if st.refcount(c) > 1 => return Ok(Some((c, true))),
                    Some(c) if !st.unshare_pending(c) => return Ok(Some((c, false))),
                    Some(_) => true,
                }
            };
            if pending {
                self.flush()?;
            }
        }
    }

    fn plan_write(&self, vol: u64, l: u64) -> Result<Plan, PoolError> {
        let cs = self.inner.chunk_size;
        for attempt in 0..2 {
            let looked = self.lookup_exclusive(vol, l)?;
            let res = {
                let mut st = self.state();
                match looked {
                    Some((c, false)) => return Ok(Plan::InPlace(c)),
                    Some((old, true)) => st.alloc().map(|(new, _)| Plan::Cow { old, new }),
                    None => st.alloc().map(|(new, fresh)| Plan::Fresh {
                        new,
                        zero: !(fresh && new * cs >= self.inner.data.file_len()),
                    }),
                }
            };
            match res {
                Err(PoolError::OutOfSpace)
                    if attempt == 0 && !self.state().pending_free.is_empty() =>
                {
                    // Chunks freed since the last commit become reusable once
                    // their unmapping is durable.
                    self.flush()?;
                }
                other => return other,
            }
        }
        Err(PoolError::OutOfSpace)
    }

    /// Writes `data` at byte `off` of volume `vol`. Returns whether metadata
    /// changed (a chunk was allocated).
    pub(crate) fn write_bytes(
        &self,
        vol: u64,
        off: u64,
        data: &[u8],
    ) -> Result<bool, BackendError> {
        let cs = self.inner.chunk_size;
        let io = &self.inner.data;
        let mut changed = false;
        for (l, in_off, at, n) in self.spans(off, data.len()) {
            let src = &data[at..at + n];
            let plan = self.plan_write(vol, l)?;
            let res = match plan {
                Plan::InPlace(c) => io.write_at(src, c * cs + in_off),
                Plan::Fresh { new, zero } if zero && n as u64 != cs => {
                    let mut buf = vec![0u8; cs as usize];
                    buf[in_off as usize..in_off as usize + n].copy_from_slice(src);
                    io.write_at(&buf, new * cs)
                }
                Plan::Fresh { new, .. } => io.write_at(src, new * cs + in_off),
                Plan::Cow { new, .. } if n as u64 == cs => io.write_at(src, new * cs),
                Plan::Cow { old, new } => {
                    let mut buf = vec![0u8; cs as usize];
                    io.read_at(&mut buf, old * cs).and_then(|()| {
                        buf[in_off as usize..in_off as usize + n].copy_from_slice(src);
                        io.write_at(&buf, new * cs)
                    })
                }
            };
            let mut st = self.state();
            match (plan, res) {
                (Plan::InPlace(_), r) => r.map_err(wr)?,
                (Plan::Cow { new, .. } | Plan::Fresh { new, .. }, Err(e)) => {
                    st.unalloc(new);
                    return Err(wr(e));
                }
                (Plan::Cow { old, new }, Ok(())) => {
                    st.map_set(vol, l, new);
                    st.decref(old);
                    changed = true;
                }
                (Plan::Fresh { new, .. }, Ok(())) => {
                    st.map_set(vol, l, new);
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// Deallocates whole chunks of `[off, off+len)` and zeroes partial ones.
    pub(crate) fn discard_bytes(&self, vol: u64, off: u64, len: u64) -> Result<(), BackendError> {
        let cs = self.inner.chunk_size;
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let l = pos >> self.inner.chunk_shift;
            let in_off = pos & (cs - 1);
            let n = (cs - in_off).min(end - pos);
            if n == cs {
                self.state().map_remove(vol, l);
            } else {
                let shared = self.lookup_exclusive(vol, l)?;
                let zeros = vec![0u8; n as usize];
                match shared {
                    None => {}
                    Some((c, false)) => self
                        .inner
                        .data
                        .write_at(&zeros, c * cs + in_off)
                        .map_err(wr)?,
                    Some((_, true)) => {
                        self.write_bytes(vol, pos, &zeros)?;
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Commits when too much metadata is pending.
    fn maybe_commit(&self) -> Result<(), PoolError> {
        let big = self.state().dirty.len() > DIRTY_LIMIT;
        if big {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes a FUA write durable: a data sync suffices when no metadata is
    /// pending, otherwise a full commit.
    fn fua(&self) -> Result<(), BackendError> {
        let clean = self.state().dirty.is_empty();
        if clean {
            self.inner.data.sync_data().map_err(BackendError::Flush)
        } else {
            self.flush().map_err(|e| match e {
                PoolError::Io { source, .. } => BackendError::Flush(source),
                other => BackendError::Metadata(other.to_string()),
            })
        }
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
        }
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let off = self.range(lba, buf.len())?;
        let _g = self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.pool.read_bytes(self.id, off, buf)
    }

    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let off = self.range(lba, data.len())?;
        {
            let _g = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.pool.write_bytes(self.id, off, data)?;
        }
        if fua {
            self.pool.fua()?;
        }
        self.pool.maybe_commit()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.pool.flush().map_err(|e| match e {
            PoolError::Io { source, .. } => BackendError::Flush(source),
            other => BackendError::Metadata(other.to_string()),
        })
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
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
        let st = self.pool.state();
        let empty = std::collections::BTreeMap::new();
        let map = st.maps.get(&self.id).unwrap_or(&empty);
        let mapped = map.contains_key(&l0);
        let run_end_chunk = if mapped {
            let mut e = l0 + 1;
            for (&k, _) in map.range(l0 + 1..) {
                if k != e || e.saturating_mul(cs) >= end {
                    break;
                }
                e += 1;
            }
            e
        } else {
            map.range(l0 + 1..).next().map_or(u64::MAX, |(&k, _)| k)
        };
        let run_end = run_end_chunk.saturating_mul(cs).min(end);
        Ok(Allocation {
            mapped,
            blocks: ((run_end - start) / bs).max(1),
        })
    }

    fn poll_event(&self) -> Option<BackendEvent> {
        if self.capacity_changed.swap(false, Ordering::AcqRel) {
            return Some(BackendEvent::CapacityChanged);
        }
        let epoch = self.pool.state().low_water_epoch;
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
