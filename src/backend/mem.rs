//! [`MemBackend`]: an in-memory thin backend for tests, with fault
//! injection.
//!
//! Storage is kept in chunks of `unmap_granularity` blocks that exist only
//! once written, so deallocated blocks read as zeros and
//! [`BlockBackend::allocation`] reports real runs.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Mutex, MutexGuard};

use super::{
    Allocation, BackendCaps, BackendError, BackendEvent, BlockBackend, BlockSink, BlockSource,
    Resources,
};

/// Counters and injected faults of a [`MemBackend`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemStats {
    /// Successful writes.
    pub writes: u64,
    /// Successful writes with FUA.
    pub fua_writes: u64,
    /// Successful flushes.
    pub flushes: u64,
    /// Successful unmap calls.
    pub unmaps: u64,
}

#[derive(Debug, Default)]
struct State {
    caps_override: Option<BackendCaps>,
    chunks: HashMap<u64, Vec<u8>>,
    fail_reads: u32,
    fail_writes: u32,
    fail_flushes: u32,
    chunk_limit: Option<usize>,
    events: VecDeque<BackendEvent>,
    stats: MemStats,
}

/// In-memory backend. `Send + Sync`; one mutex guards all state.
#[derive(Debug)]
pub struct MemBackend {
    state: Mutex<State>,
}

impl MemBackend {
    /// A thin backend of `num_blocks` blocks: 8-block chunks, LBPRZ, a
    /// volatile cache, up to 1 Mi blocks and 256 descriptors per UNMAP.
    pub fn new(block_size: u32, num_blocks: u64) -> MemBackend {
        MemBackend::with_caps(BackendCaps {
            block_size,
            num_blocks,
            thin: true,
            zeroes_after_unmap: true,
            unmap_granularity: 8,
            max_unmap_blocks: 1 << 20,
            max_unmap_descriptors: 256,
            volatile_cache: true,
            read_only: false,
            atomic_write: false,
        })
    }

    /// A backend with exactly these capabilities (`block_size` must be
    /// non-zero; `unmap_granularity` 0 is treated as 1).
    pub fn with_caps(caps: BackendCaps) -> MemBackend {
        MemBackend {
            state: Mutex::new(State {
                caps_override: Some(caps),
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the capabilities (e.g. `num_blocks` for a resize, or
    /// `read_only`); queues [`BackendEvent::CapacityChanged`] on a resize.
    pub fn set_caps(&self, caps: BackendCaps) {
        let mut s = self.lock();
        let old = s.caps_override.map(|c| c.num_blocks);
        if old != Some(caps.num_blocks) {
            s.events.push_back(BackendEvent::CapacityChanged);
        }
        s.caps_override = Some(caps);
    }

    /// The next `n` reads fail with [`BackendError::Read`].
    pub fn fail_next_reads(&self, n: u32) {
        self.lock().fail_reads = n;
    }
    /// The next `n` writes fail with [`BackendError::Write`].
    pub fn fail_next_writes(&self, n: u32) {
        self.lock().fail_writes = n;
    }
    /// The next `n` flushes fail with [`BackendError::Flush`].
    pub fn fail_next_flushes(&self, n: u32) {
        self.lock().fail_flushes = n;
    }
    /// Writes that need a new chunk fail with [`BackendError::OutOfSpace`]
    /// once `limit` chunks are allocated (`None`: unlimited).
    pub fn set_chunk_limit(&self, limit: Option<usize>) {
        self.lock().chunk_limit = limit;
    }
    /// Queues an event for [`BlockBackend::poll_event`].
    pub fn push_event(&self, ev: BackendEvent) {
        self.lock().events.push_back(ev);
    }
    /// Number of allocated chunks.
    pub fn allocated_chunks(&self) -> usize {
        self.lock().chunks.len()
    }
    /// Counters of successful operations.
    pub fn stats(&self) -> MemStats {
        self.lock().stats
    }
}

/// Geometry helpers over a caps value.
struct Geo {
    bs: usize,
    chunk_blocks: u64,
}

impl Geo {
    fn of(c: &BackendCaps) -> Geo {
        Geo {
            bs: usize::try_from(c.block_size).unwrap_or(512).max(1),
            chunk_blocks: u64::from(c.unmap_granularity.max(1)),
        }
    }
    fn chunk_bytes(&self) -> usize {
        self.bs * usize::try_from(self.chunk_blocks).unwrap_or(1)
    }
    /// (chunk index, byte offset in chunk, bytes until chunk end) of `lba`.
    fn locate(&self, lba: u64) -> (u64, usize, usize) {
        let within = usize::try_from(lba % self.chunk_blocks).unwrap_or(0) * self.bs;
        (lba / self.chunk_blocks, within, self.chunk_bytes() - within)
    }
}

fn check_range(c: &BackendCaps, lba: u64, len: usize) -> Result<u64, BackendError> {
    let bs = u64::from(c.block_size.max(1));
    let blocks = u64::try_from(len).unwrap_or(u64::MAX) / bs;
    match lba.checked_add(blocks) {
        Some(end) if end <= c.num_blocks && (len as u64) % bs == 0 => Ok(blocks),
        _ => Err(BackendError::OutOfRange { lba, blocks }),
    }
}

fn injected(kind: &str) -> io::Error {
    io::Error::other(format!("injected {kind} fault"))
}

impl BlockBackend for MemBackend {
    /// Memory only: never waits.
    fn may_block(&self) -> bool {
        false
    }

    fn caps(&self) -> BackendCaps {
        self.lock().caps_override.unwrap_or(BackendCaps {
            block_size: 512,
            num_blocks: 0,
            thin: false,
            zeroes_after_unmap: false,
            unmap_granularity: 1,
            max_unmap_blocks: 0,
            max_unmap_descriptors: 0,
            volatile_cache: false,
            read_only: false,
            atomic_write: false,
        })
    }

    fn read(&self, lba: u64, mut buf: &mut [u8]) -> Result<(), BackendError> {
        self.read_into(lba, &mut buf)
    }

    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.write_from(lba, &data, fua)
    }

    /// Copies each chunk straight into the sink (zeros for holes).
    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        let caps = self.caps();
        let len = sink.len();
        check_range(&caps, lba, len)?;
        let mut s = self.lock();
        if s.fail_reads > 0 {
            s.fail_reads -= 1;
            return Err(BackendError::Read(injected("read")));
        }
        let g = Geo::of(&caps);
        let mut off = 0;
        let mut lba = lba;
        while off < len {
            let (chunk, within, room) = g.locate(lba);
            let n = room.min(len - off);
            match s.chunks.get(&chunk).and_then(|c| c.get(within..within + n)) {
                Some(src) => sink.write_at(off, src),
                None => sink.zero_at(off, n),
            }
            .map_err(BackendError::Read)?;
            off += n;
            lba += (n / g.bs) as u64;
        }
        Ok(())
    }

    /// Copies straight from the source into each chunk.
    fn write_from(&self, lba: u64, src: &dyn BlockSource, fua: bool) -> Result<(), BackendError> {
        let caps = self.caps();
        if caps.read_only {
            return Err(BackendError::ReadOnly);
        }
        let len = src.len();
        check_range(&caps, lba, len)?;
        let mut s = self.lock();
        if s.fail_writes > 0 {
            s.fail_writes -= 1;
            return Err(BackendError::Write(injected("write")));
        }
        let g = Geo::of(&caps);
        // Check space for every new chunk first: a failed write changes nothing.
        let first = lba / g.chunk_blocks;
        let blocks = (len / g.bs) as u64;
        let last = (lba + blocks.max(1) - 1) / g.chunk_blocks;
        let new = (first..=last).filter(|c| !s.chunks.contains_key(c)).count();
        if s.chunk_limit.is_some_and(|l| s.chunks.len() + new > l) {
            return Err(BackendError::OutOfSpace);
        }
        let (mut off, mut lba) = (0, lba);
        while off < len {
            let (chunk, within, room) = g.locate(lba);
            let n = room.min(len - off);
            let c = s
                .chunks
                .entry(chunk)
                .or_insert_with(|| vec![0; g.chunk_bytes()]);
            if let Some(dst) = c.get_mut(within..within + n) {
                src.read_at(off, dst).map_err(BackendError::Write)?;
            }
            off += n;
            lba += (n / g.bs) as u64;
        }
        s.stats.writes += 1;
        s.stats.fua_writes += u64::from(fua);
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        let mut s = self.lock();
        if s.fail_flushes > 0 {
            s.fail_flushes -= 1;
            return Err(BackendError::Flush(injected("flush")));
        }
        s.stats.flushes += 1;
        Ok(())
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        let caps = self.caps();
        if caps.read_only {
            return Err(BackendError::ReadOnly);
        }
        match lba.checked_add(blocks) {
            Some(end) if end <= caps.num_blocks => {}
            _ => return Err(BackendError::OutOfRange { lba, blocks }),
        }
        let g = Geo::of(&caps);
        let mut s = self.lock();
        let mut cur = lba;
        while cur < lba + blocks {
            let (chunk, within, room) = g.locate(cur);
            let n = ((room / g.bs) as u64).min(lba + blocks - cur);
            if within == 0 && n == g.chunk_blocks {
                s.chunks.remove(&chunk);
            } else if let Some(c) = s.chunks.get_mut(&chunk) {
                let len = usize::try_from(n).unwrap_or(0) * g.bs;
                c.get_mut(within..within + len).unwrap_or_default().fill(0);
            }
            cur += n;
        }
        s.stats.unmaps += 1;
        Ok(())
    }

    /// Thin only: chunks written so far, and those left below the chunk
    /// limit (or the device's size).
    fn resources(&self) -> Option<Resources> {
        let caps = self.caps();
        if !caps.thin {
            return None;
        }
        let g = Geo::of(&caps);
        let s = self.lock();
        let chunk_bytes = g.chunk_blocks * u64::from(caps.block_size);
        let total = match s.chunk_limit {
            Some(n) => n as u64,
            None => caps.num_blocks.div_ceil(g.chunk_blocks),
        };
        let used = s.chunks.len() as u64;
        Some(Resources {
            available_bytes: total.saturating_sub(used) * chunk_bytes,
            used_bytes: used * chunk_bytes,
        })
    }

    fn allocation(&self, lba: u64, max_blocks: u64) -> Result<Allocation, BackendError> {
        let caps = self.caps();
        if lba >= caps.num_blocks {
            return Err(BackendError::OutOfRange { lba, blocks: 1 });
        }
        let limit = max_blocks.min(caps.num_blocks - lba).max(1);
        if !caps.thin {
            return Ok(Allocation {
                mapped: true,
                blocks: limit,
            });
        }
        let g = Geo::of(&caps);
        let s = self.lock();
        let mapped = s.chunks.contains_key(&(lba / g.chunk_blocks));
        let mut end = (lba / g.chunk_blocks + 1) * g.chunk_blocks;
        // Bounded walk: a run reports at most 64 Ki chunks.
        let stop = lba + limit.min(g.chunk_blocks << 16);
        while end < stop && s.chunks.contains_key(&(end / g.chunk_blocks)) == mapped {
            end += g.chunk_blocks;
        }
        Ok(Allocation {
            mapped,
            blocks: (end - lba).min(limit),
        })
    }

    fn poll_event(&self) -> Option<BackendEvent> {
        self.lock().events.pop_front()
    }
}
