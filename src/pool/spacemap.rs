//! Chunk reference counts of format 3 (issue 13, `docs/pool-scale-design.md`):
//! one byte per chunk in space pages of 4,096 chunks (sled `S` + page), 255
//! meaning "the count is in the side map" (sled `R` + chunk), and a free-count
//! summary per space page (sled `Z`) that steers allocation.
//!
//! A chunk's count is the number of tree *leaves* pointing at it. A chunk is
//! free when its count is 0, unless it is *reserved* (handed out by
//! [`SpaceMap::allocate`] to a write still in flight) or *pending-free* (its
//! count fell to 0 in changes not yet committed: it becomes allocatable only
//! after [`SpaceMap::release`], at step 4 of a commit).

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::narrow::{index_mod, min_len};

/// Chunks per space page.
pub const SPACE_PAGE_CHUNKS: u64 = SPACE_PAGE_LEN as u64;
/// Bytes of a space page (one per chunk): [`SPACE_PAGE_CHUNKS`] as a length.
pub const SPACE_PAGE_LEN: usize = 4096;
/// Byte value meaning "count ≥ 255, look in the side map".
pub const OVERFLOW: u8 = 255;

/// A reference-count operation the metadata does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpaceError {
    /// The chunk lies past the pool's capacity.
    #[error("chunk {chunk} is past the pool's {capacity} chunks")]
    OutOfRange {
        /// The chunk.
        chunk: u64,
        /// Chunks in the pool.
        capacity: u64,
    },
    /// A decrement of a chunk whose count is already 0.
    #[error("chunk {0} has no reference to drop")]
    Underflow(u64),
    /// A first reference to a chunk that was not allocated (reserved) first.
    #[error("chunk {0} gets its first reference without being reserved")]
    NotReserved(u64),
    /// A count above `u32::MAX`.
    #[error("chunk {0} has too many references")]
    Overflow(u64),
    /// Stored space-page bytes have the wrong length or disagree with the side map.
    #[error("space page {page} is corrupt: {why}")]
    Corrupt {
        /// Space page number.
        page: u64,
        /// What is wrong.
        why: String,
    },
}

/// Reference counts of chunks as the mapping tree needs them.
pub trait ChunkRefs {
    /// The count of `chunk`.
    fn count(&self, chunk: u64) -> Result<u32, SpaceError>;
    /// Adds one reference; returns the new count.
    fn inc(&mut self, chunk: u64) -> Result<u32, SpaceError>;
    /// Drops one reference; returns the new count (0: the chunk is pending-free).
    fn dec(&mut self, chunk: u64) -> Result<u32, SpaceError>;
}

/// Per-chunk counts, the free summary and the allocation cursor.
#[derive(Debug, Clone)]
pub struct SpaceMap {
    capacity: u64,
    pages: Vec<Option<Box<[u8]>>>,
    overflow: BTreeMap<u64, u32>,
    /// Chunks with count 0 per space page (the durable `Z` meaning).
    zeros: Vec<u16>,
    /// Reserved or pending-free chunks per space page (in memory only).
    held: Vec<u16>,
    reserved: BTreeSet<u64>,
    pending_free: BTreeSet<u64>,
    dirty: BTreeSet<u64>,
    /// Chunks whose side-map entry changed since the last take.
    overflow_dirty: BTreeSet<u64>,
    cursor: u64,
    /// Chunks with a count of 2 or more (while none is, a mapped chunk is
    /// known to be counted once without reading its byte).
    shared: u64,
}

/// The space page of `chunk`, a chunk below the capacity: its page is below
/// [`page_count`] of the capacity, the length of the map's page vectors.
#[allow(clippy::cast_possible_truncation)] // below a Vec length (see above)
fn page_of(chunk: u64) -> usize {
    let p = chunk / SPACE_PAGE_CHUNKS;
    debug_assert!(usize::try_from(p).is_ok(), "chunk {chunk} past any page");
    p as usize
}

/// A count of chunks of one space page (at most [`SPACE_PAGE_CHUNKS`], which
/// fits the `u16` of a summary entry).
#[allow(clippy::cast_possible_truncation)] // at most SPACE_PAGE_CHUNKS < 2^16
fn page_chunks(n: u64) -> u16 {
    const _: () = assert!(SPACE_PAGE_CHUNKS <= u16::MAX as u64);
    debug_assert!(n <= SPACE_PAGE_CHUNKS, "{n} chunks in one page");
    n as u16
}

/// Space pages of a pool of `capacity` chunks. One that does not fit `usize`
/// (a capacity read from a corrupt superblock on a 32-bit host) becomes
/// `usize::MAX`, which no vector can hold: sizing the map then panics
/// ("capacity overflow") as any capacity too large for memory does, instead
/// of holding fewer pages than chunks.
fn page_count(capacity: u64) -> usize {
    usize::try_from(capacity.div_ceil(SPACE_PAGE_CHUNKS)).unwrap_or(usize::MAX)
}

impl SpaceMap {
    /// Every chunk of a pool of `capacity` chunks free.
    pub fn new(capacity: u64) -> SpaceMap {
        let n = page_count(capacity);
        let mut m = SpaceMap {
            capacity: 0,
            pages: Vec::new(),
            overflow: BTreeMap::new(),
            zeros: Vec::with_capacity(n),
            held: Vec::with_capacity(n),
            reserved: BTreeSet::new(),
            pending_free: BTreeSet::new(),
            dirty: BTreeSet::new(),
            overflow_dirty: BTreeSet::new(),
            cursor: 0,
            shared: 0,
        };
        m.grow(capacity);
        m
    }

    /// Chunks with a count of 2 or more (shared by several leaves).
    pub fn shared_chunks(&self) -> u64 {
        self.shared
    }

    /// Chunks in the pool.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Adds free chunks up to `capacity` (never shrinks).
    pub fn grow(&mut self, capacity: u64) {
        if capacity <= self.capacity {
            return;
        }
        let n = page_count(capacity);
        self.pages.resize_with(n, || None);
        self.zeros.resize(n, 0);
        self.held.resize(n, 0);
        for p in 0..n {
            let start = (p as u64 * SPACE_PAGE_CHUNKS).max(self.capacity);
            let end = ((p as u64 + 1) * SPACE_PAGE_CHUNKS).min(capacity);
            if end > start {
                self.zeros[p] += page_chunks(end - start);
                self.dirty.insert(p as u64);
            }
        }
        self.capacity = capacity;
    }

    fn check(&self, chunk: u64) -> Result<(), SpaceError> {
        if chunk < self.capacity {
            Ok(())
        } else {
            Err(SpaceError::OutOfRange {
                chunk,
                capacity: self.capacity,
            })
        }
    }

    fn byte(&self, chunk: u64) -> u8 {
        let p = page_of(chunk);
        match self.pages.get(p) {
            Some(Some(b)) => b[index_mod(chunk, SPACE_PAGE_LEN)],
            _ => 0,
        }
    }

    fn set_byte(&mut self, chunk: u64, v: u8) {
        let p = page_of(chunk);
        let page = self.pages[p].get_or_insert_with(|| vec![0; SPACE_PAGE_LEN].into());
        page[index_mod(chunk, SPACE_PAGE_LEN)] = v;
        self.dirty.insert(p as u64);
    }

    fn set_count(&mut self, chunk: u64, n: u32) {
        match (self.byte(chunk) >= 2, n >= 2) {
            (false, true) => self.shared += 1,
            (true, false) => self.shared -= 1,
            _ => {}
        }
        match u8::try_from(n) {
            Ok(b) if b < OVERFLOW => {
                self.set_byte(chunk, b);
                if self.overflow.remove(&chunk).is_some() {
                    self.overflow_dirty.insert(chunk);
                }
            }
            _ => {
                self.set_byte(chunk, OVERFLOW);
                self.overflow.insert(chunk, n);
                self.overflow_dirty.insert(chunk);
            }
        }
    }

    /// Side-map entries changed since the last call: (chunk, count), `None`
    /// when the entry is gone (`R` keys to write or remove).
    pub fn take_dirty_overflow(&mut self) -> Vec<(u64, Option<u32>)> {
        let dirty = std::mem::take(&mut self.overflow_dirty);
        dirty
            .into_iter()
            .map(|c| (c, self.overflow.get(&c).copied()))
            .collect()
    }

    /// Whether chunks wait for a commit before they may be reused.
    pub fn has_pending_free(&self) -> bool {
        !self.pending_free.is_empty()
    }

    /// Chunks with count 0 that are neither reserved nor pending-free.
    pub fn free_chunks(&self) -> u64 {
        self.zeros
            .iter()
            .zip(&self.held)
            .map(|(z, h)| u64::from(z - h))
            .sum()
    }

    /// Chunks with count > 0.
    pub fn used_chunks(&self) -> u64 {
        self.capacity - self.zeros.iter().map(|z| u64::from(*z)).sum::<u64>()
    }

    /// Hands out a free chunk (count 0, not reserved, not pending-free), found
    /// from a rotating cursor through the free summary, and reserves it until
    /// its first [`ChunkRefs::inc`] or [`SpaceMap::unreserve`]. `None` when full.
    pub fn allocate(&mut self) -> Option<u64> {
        let n = self.zeros.len();
        if n == 0 {
            return None;
        }
        let start_page = page_of(self.cursor.min(self.capacity - 1));
        for k in 0..=n {
            let p = (start_page + k) % n;
            if self.zeros[p] == self.held[p] {
                continue;
            }
            let base = p as u64 * SPACE_PAGE_CHUNKS;
            let end = (base + SPACE_PAGE_CHUNKS).min(self.capacity);
            let from = if k == 0 { self.cursor.max(base) } else { base };
            let found = (from..end)
                .chain(base..from)
                .find(|&c| self.byte(c) == 0 && !self.is_held(c));
            if let Some(c) = found {
                self.reserved.insert(c);
                self.held[p] += 1;
                self.cursor = if c + 1 >= self.capacity { 0 } else { c + 1 };
                return Some(c);
            }
        }
        None
    }

    fn is_held(&self, c: u64) -> bool {
        self.reserved.contains(&c) || self.pending_free.contains(&c)
    }

    /// Gives back a reserved chunk that got no reference (its write failed).
    pub fn unreserve(&mut self, chunk: u64) {
        if self.reserved.remove(&chunk) {
            self.held[page_of(chunk)] -= 1;
        }
    }

    /// Chunks whose count fell to 0 and that are not yet released (step 1 of
    /// a commit takes them; step 4 hands the same list to [`SpaceMap::release`]).
    pub fn take_freed(&mut self) -> Vec<u64> {
        self.pending_free.iter().copied().collect()
    }

    /// Makes chunks taken by [`SpaceMap::take_freed`] allocatable (step 4 of
    /// a commit, after the metadata naming them free is durable).
    pub fn release(&mut self, chunks: &[u64]) {
        for &c in chunks {
            if self.pending_free.remove(&c) {
                self.held[page_of(c)] -= 1;
            }
        }
    }

    /// Whether `chunk` is waiting for a commit before it may be reused.
    pub fn is_pending_free(&self, chunk: u64) -> bool {
        self.pending_free.contains(&chunk)
    }

    /// Space pages changed since the last call, with their bytes (`S`
    /// values); the commit writes [`SpaceMap::overflow`] entries of those
    /// pages alongside.
    pub fn take_dirty(&mut self) -> Vec<(u64, Vec<u8>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty.into_iter().map(|p| (p, self.page_bytes(p))).collect()
    }

    /// The stored bytes of space page `p` (4,096, one per chunk; zero past capacity).
    pub fn page_bytes(&self, p: u64) -> Vec<u8> {
        match usize::try_from(p).ok().and_then(|p| self.pages.get(p)) {
            Some(Some(b)) => b.to_vec(),
            _ => vec![0; SPACE_PAGE_LEN],
        }
    }

    /// The free summary (`Z`): count-0 chunks per space page.
    pub fn summary(&self) -> &[u16] {
        &self.zeros
    }

    /// The side map (`R`): counts ≥ 255.
    pub fn overflow(&self) -> &BTreeMap<u64, u32> {
        &self.overflow
    }

    /// Rebuilds a map from stored space pages (`S`, missing pages all zero)
    /// and side map (`R`), validating both.
    pub fn load(
        capacity: u64,
        pages: impl IntoIterator<Item = (u64, Vec<u8>)>,
        overflow: BTreeMap<u64, u32>,
    ) -> Result<SpaceMap, SpaceError> {
        let mut m = SpaceMap::new(capacity);
        for (p, bytes) in pages {
            let corrupt = |why: String| SpaceError::Corrupt { page: p, why };
            if bytes.len() as u64 != SPACE_PAGE_CHUNKS {
                return Err(corrupt(format!("{} bytes", bytes.len())));
            }
            let base = p.saturating_mul(SPACE_PAGE_CHUNKS);
            if base >= capacity {
                return Err(corrupt("past the pool's capacity".into()));
            }
            let ix = page_of(base);
            if m.pages[ix].is_some() {
                return Err(corrupt("given twice".into()));
            }
            let live = min_len(capacity - base, SPACE_PAGE_LEN);
            if bytes[live..].iter().any(|b| *b != 0) {
                return Err(corrupt("counts past the pool's capacity".into()));
            }
            let used = bytes.iter().filter(|b| **b != 0).count();
            m.shared += bytes.iter().filter(|b| **b >= 2).count() as u64;
            m.zeros[ix] -=
                u16::try_from(used).map_err(|_| corrupt(format!("{used} chunks in use")))?;
            m.pages[ix] = Some(bytes.into());
        }
        for (&c, &n) in &overflow {
            if c >= capacity || m.byte(c) != OVERFLOW || n < u32::from(OVERFLOW) {
                return Err(SpaceError::Corrupt {
                    page: c / SPACE_PAGE_CHUNKS,
                    why: format!("side-map entry {c} = {n} does not match its byte"),
                });
            }
        }
        m.overflow = overflow;
        if let Some(p) = m.pages.iter().enumerate().find_map(|(p, b)| {
            let b = b.as_ref()?;
            let base = p as u64 * SPACE_PAGE_CHUNKS;
            b.iter()
                .enumerate()
                .any(|(i, v)| *v == OVERFLOW && !m.overflow.contains_key(&(base + i as u64)))
                .then_some(p)
        }) {
            return Err(SpaceError::Corrupt {
                page: p as u64,
                why: "a count of 255 has no side-map entry".into(),
            });
        }
        m.dirty.clear();
        Ok(m)
    }
}

impl ChunkRefs for SpaceMap {
    fn count(&self, chunk: u64) -> Result<u32, SpaceError> {
        self.check(chunk)?;
        Ok(match self.byte(chunk) {
            OVERFLOW => self
                .overflow
                .get(&chunk)
                .copied()
                .unwrap_or(u32::from(OVERFLOW)),
            b => u32::from(b),
        })
    }

    fn inc(&mut self, chunk: u64) -> Result<u32, SpaceError> {
        let n = self.count(chunk)?;
        if n == 0 {
            if !self.reserved.remove(&chunk) {
                return Err(SpaceError::NotReserved(chunk));
            }
            let p = page_of(chunk);
            self.held[p] -= 1;
            self.zeros[p] -= 1;
        }
        let n = n.checked_add(1).ok_or(SpaceError::Overflow(chunk))?;
        self.set_count(chunk, n);
        Ok(n)
    }

    fn dec(&mut self, chunk: u64) -> Result<u32, SpaceError> {
        let n = self.count(chunk)?;
        let n = n.checked_sub(1).ok_or(SpaceError::Underflow(chunk))?;
        self.set_count(chunk, n);
        if n == 0 {
            let p = page_of(chunk);
            self.zeros[p] += 1;
            self.held[p] += 1;
            self.pending_free.insert(chunk);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "spacemap_tests.rs"]
mod tests;
