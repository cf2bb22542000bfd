//! Pages of the format-3 mapping tree (issue 13, `docs/pool-scale-design.md`):
//! 512 slots each, a leaf's slots hold physical chunk ids, an interior page's
//! slots hold child page ids.
//!
//! Encoding (drawn in `docs/pool-format.md`, "Format 3"):
//!
//! ```text
//! byte 0      format version of the page coding (1)
//! byte 1      kind: 0 = leaf, 1 = interior
//! byte 2      level: 0 for a leaf, 1..=7 for an interior page
//! byte 3      reserved, 0
//! bytes 4..68 presence bitmap: slot i is present iff bit (i % 8) of byte 4 + i / 8 is set
//! then        one entry per present slot, in slot order: the zig-zag LEB128 varint of
//!             (value - previous value) as a wrapping 64-bit difference; previous = 0
//!             before the first entry
//! ```
//!
//! Decoding checks everything (length, version, kind/level, canonical varints,
//! no trailing bytes, no page id 0 in an interior page), so for every byte
//! string `b` that decodes, `encode(decode(b)) == b`.

use thiserror::Error;

/// Slots per page (logical chunks per leaf, children per interior page).
pub const SLOTS: usize = 512;
/// Bits of a logical chunk number consumed per tree level.
pub const SLOT_BITS: u32 = 9;
/// Highest level of a page: a tree of 8 levels (0..=7) covers every u64 logical chunk.
pub const MAX_LEVEL: u8 = 7;
/// Page coding version written in byte 0.
pub const PAGE_VERSION: u8 = 1;
/// Bytes before the entries: header (4) and presence bitmap (64).
pub const HEADER_LEN: usize = 4 + BITMAP_WORDS * 8;
/// Longest possible encoding: header plus 512 ten-byte varints.
pub const MAX_ENCODED_LEN: usize = HEADER_LEN + SLOTS * 10;

const BITMAP_WORDS: usize = SLOTS / 64;

/// A page id (sled key `P` + id). 0 is never a page: it means "no page".
pub type PageId = u64;

/// What a page's slots hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Slots hold physical chunk ids; always level 0.
    Leaf,
    /// Slots hold child page ids; level 1..=7.
    Interior,
}

/// Why bytes are not a valid page.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    /// Shorter than the fixed header and bitmap.
    #[error("page is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort(usize),
    /// Byte 0 names a coding this build does not know.
    #[error("page coding version {0} is not supported")]
    Version(u8),
    /// Byte 1 is neither leaf nor interior.
    #[error("page kind {0} is unknown")]
    Kind(u8),
    /// The level does not fit the kind (leaf: 0; interior: 1..=7).
    #[error("a {kind:?} page cannot have level {level}")]
    Level {
        /// Kind in byte 1.
        kind: PageKind,
        /// Level in byte 2.
        level: u8,
    },
    /// Byte 3 is not zero.
    #[error("reserved header byte is {0}, not 0")]
    Reserved(u8),
    /// The entries end before every present slot has one.
    #[error("entry of slot {0} is truncated")]
    Truncated(usize),
    /// A varint is longer than needed or exceeds 64 bits.
    #[error("entry of slot {0} is not a canonical 64-bit varint")]
    BadVarint(usize),
    /// Bytes remain after the last entry.
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
    /// An interior slot names page 0.
    #[error("interior slot {0} names page 0")]
    ZeroChild(usize),
}

/// A decoded page: kind, level and 512 optional slots. In this order
/// (`repr(C)`): kind, level and the bitmap share a lookup's first line.
#[derive(Clone, PartialEq, Eq)]
#[repr(C)]
pub struct Page {
    kind: PageKind,
    level: u8,
    present: [u64; BITMAP_WORDS],
    /// Inline, not boxed: the data path reads one slot per page on its
    /// path, and a box would cost another cache miss per page.
    slots: [u64; SLOTS],
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Page({:?}, level {}, {} slots",
            self.kind,
            self.level,
            self.len()
        )?;
        for (i, v) in self.iter().take(4) {
            write!(f, ", {i}: {v}")?;
        }
        write!(f, ")")
    }
}

impl Page {
    /// An empty leaf.
    pub fn leaf() -> Page {
        Page::empty(PageKind::Leaf, 0)
    }

    /// An empty interior page at `level` (1..=[`MAX_LEVEL`]; clamped into that range).
    pub fn interior(level: u8) -> Page {
        Page::empty(PageKind::Interior, level.clamp(1, MAX_LEVEL))
    }

    fn empty(kind: PageKind, level: u8) -> Page {
        Page {
            kind,
            level,
            present: [0; BITMAP_WORDS],
            slots: [0; SLOTS],
        }
    }

    /// Leaf or interior.
    pub fn kind(&self) -> PageKind {
        self.kind
    }

    /// Level: 0 for a leaf, the height above the leaves otherwise.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Whether this is a leaf.
    pub fn is_leaf(&self) -> bool {
        self.kind == PageKind::Leaf
    }

    /// The value of slot `i` (`None` if absent or `i` ≥ 512).
    pub fn get(&self, i: usize) -> Option<u64> {
        (i < SLOTS && self.present[i / 64] & (1 << (i % 64)) != 0).then(|| self.slots[i])
    }

    /// Sets (`Some`) or clears (`None`) slot `i`; returns the previous value.
    /// Indices ≥ 512 are ignored.
    pub fn set(&mut self, i: usize, v: Option<u64>) -> Option<u64> {
        let old = self.get(i);
        if i >= SLOTS {
            return None;
        }
        match v {
            Some(v) => {
                self.present[i / 64] |= 1 << (i % 64);
                self.slots[i] = v;
            }
            None => {
                self.present[i / 64] &= !(1 << (i % 64));
                self.slots[i] = 0;
            }
        }
        old
    }

    /// Number of present slots.
    pub fn len(&self) -> usize {
        self.present.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether no slot is present.
    pub fn is_empty(&self) -> bool {
        self.present.iter().all(|w| *w == 0)
    }

    /// Present slots in slot order, as (slot, value).
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..SLOTS).filter_map(move |i| self.get(i).map(|v| (i, v)))
    }

    /// The encoding described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.len() * 2);
        out.push(PAGE_VERSION);
        out.push(match self.kind {
            PageKind::Leaf => 0,
            PageKind::Interior => 1,
        });
        out.push(self.level);
        out.push(0);
        for w in self.present {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let mut prev = 0u64;
        for (_, v) in self.iter() {
            put_varint(&mut out, zigzag(v.wrapping_sub(prev)));
            prev = v;
        }
        out
    }

    /// Decodes and validates `bytes`; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Page, PageError> {
        let Some((head, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(PageError::TooShort(bytes.len()));
        };
        let [version, kind, level, reserved, bitmap @ ..] = *head;
        if version != PAGE_VERSION {
            return Err(PageError::Version(version));
        }
        let kind = match kind {
            0 => PageKind::Leaf,
            1 => PageKind::Interior,
            k => return Err(PageError::Kind(k)),
        };
        let level_ok = match kind {
            PageKind::Leaf => level == 0,
            PageKind::Interior => (1..=MAX_LEVEL).contains(&level),
        };
        if !level_ok {
            return Err(PageError::Level { kind, level });
        }
        if reserved != 0 {
            return Err(PageError::Reserved(reserved));
        }
        let mut page = Page::empty(kind, level);
        for (w, b) in page.present.iter_mut().zip(bitmap.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *w = u64::from_le_bytes(le);
        }
        let mut pos = 0usize;
        let mut prev = 0u64;
        for i in 0..SLOTS {
            if page.present[i / 64] & (1 << (i % 64)) == 0 {
                continue;
            }
            let (zz, used) = get_varint(&rest[pos..], i)?;
            pos += used;
            let v = prev.wrapping_add(unzigzag(zz));
            if kind == PageKind::Interior && v == 0 {
                return Err(PageError::ZeroChild(i));
            }
            page.slots[i] = v;
            prev = v;
        }
        if pos != rest.len() {
            return Err(PageError::Trailing(rest.len() - pos));
        }
        Ok(page)
    }
}

/// Bytes of the index in front of an [`indexed`] page: per 64-slot group
/// (one bitmap word) the value before its first entry (u64 LE) and that
/// entry's offset in the entries (u16 LE).
pub const INDEX_LEN: usize = BITMAP_WORDS * 10;

/// The stored bytes `stored` of `page` (its [`Page::encode`]) with an index
/// in front, so that [`indexed_slot`] decodes at most 64 entries, not up to
/// 512: the form the pool's encoded cache tier holds (~0.7 KiB for a leaf
/// of chunks allocated in order, against 4 KiB decoded).
pub fn indexed(page: &Page, stored: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; INDEX_LEN];
    let (mut prev, mut pos) = (0u64, 0usize);
    for w in 0..BITMAP_WORDS {
        out[8 * w..8 * w + 8].copy_from_slice(&prev.to_le_bytes());
        let p = u16::try_from(pos).unwrap_or(u16::MAX);
        out[8 * BITMAP_WORDS + 2 * w..8 * BITMAP_WORDS + 2 * w + 2]
            .copy_from_slice(&p.to_le_bytes());
        for i in 64 * w..64 * w + 64 {
            if let Some(v) = page.get(i) {
                pos += varint_len(zigzag(v.wrapping_sub(prev)));
                prev = v;
            }
        }
    }
    out.extend_from_slice(stored);
    out
}

/// The stored bytes of an [`indexed`] page (what [`Page::decode`] reads).
pub fn indexed_stored(buf: &[u8]) -> &[u8] {
    buf.get(INDEX_LEN..).unwrap_or_default()
}

/// Slot `i` of an [`indexed`] page, without decoding the page: the bitmap
/// word gives the entry's rank in its group, the index the group's start,
/// then at most 64 varints are summed. Never panics: bytes that did not
/// come from [`indexed`] give an error or a wrong value, not a crash.
pub fn indexed_slot(buf: &[u8], i: usize) -> Result<Option<u64>, PageError> {
    let Some((index, stored)) = buf.split_first_chunk::<INDEX_LEN>() else {
        return Err(PageError::TooShort(buf.len()));
    };
    let Some((head, rest)) = stored.split_first_chunk::<HEADER_LEN>() else {
        return Err(PageError::TooShort(stored.len()));
    };
    if head[0] != PAGE_VERSION {
        return Err(PageError::Version(head[0]));
    }
    if i >= SLOTS {
        return Ok(None);
    }
    let (w, bit) = (i / 64, i % 64);
    let mut le = [0u8; 8];
    le.copy_from_slice(&head[4 + 8 * w..12 + 8 * w]);
    let word = u64::from_le_bytes(le);
    if word & (1 << bit) == 0 {
        return Ok(None);
    }
    let k = (word & ((1u64 << bit) - 1)).count_ones() as usize;
    le.copy_from_slice(&index[8 * w..8 * w + 8]);
    let mut v = u64::from_le_bytes(le);
    let p = 8 * BITMAP_WORDS + 2 * w;
    let mut pos = usize::from(u16::from_le_bytes([index[p], index[p + 1]]));
    for _ in 0..=k {
        // one-byte varints (chunks allocated near each other) first
        let zz = match rest.get(pos) {
            Some(&b) if b < 0x80 => {
                pos += 1;
                u64::from(b)
            }
            _ => {
                let (zz, used) = get_varint(rest.get(pos..).unwrap_or_default(), i)?;
                pos += used;
                zz
            }
        };
        v = v.wrapping_add(unzigzag(zz));
    }
    Ok(Some(v))
}

fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Maps a wrapping difference to an unsigned number, small for small |d|.
fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// Reads one canonical LEB128 u64 (no redundant trailing zero groups, at most
/// 10 bytes, the tenth holding only bit 63); returns the value and bytes used.
fn get_varint(bytes: &[u8], slot: usize) -> Result<(u64, usize), PageError> {
    let mut v = 0u64;
    for (n, &b) in bytes.iter().enumerate().take(10) {
        let group = u64::from(b & 0x7f);
        if n == 9 && b > 1 {
            return Err(PageError::BadVarint(slot));
        }
        v |= group << (7 * n);
        if b & 0x80 == 0 {
            if n > 0 && b == 0 {
                return Err(PageError::BadVarint(slot));
            }
            return Ok((v, n + 1));
        }
    }
    if bytes.len() >= 10 {
        Err(PageError::BadVarint(slot))
    } else {
        Err(PageError::Truncated(slot))
    }
}

#[cfg(test)]
#[path = "page_tests.rs"]
mod tests;
