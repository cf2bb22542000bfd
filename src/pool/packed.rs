//! Packed pages: the compact in-memory form of a clean mapping-tree page
//! that the data path's lookups read (the second tier of `pagestore`).
//!
//! A lookup reads one slot of one page per tree level, so what costs is the
//! number of *dependent* cache lines it touches. A packed page is a run of
//! 32-byte, 32-aligned [`Block`]s (a block never straddles a cache line):
//!
//! ```text
//! blocks 0..8   one record per group of 64 slots g:
//!               word 0  presence bitmap of slots 64g .. 64g+63
//!               word 1  base: the smallest value present in the group
//!               word 2  bits 0..16: the group's first word in the values,
//!                       bits 16..18: log2(width / 8), bits 24..32: the page's level
//!               word 3  0
//! blocks 8..    the values, as u64 words: per group, (value - base) of each
//!               present slot in slot order, `width` bits each (8, 16, 32 or
//!               64: the least that holds the group's range), low bits first
//! ```
//!
//! Slot `i` is then the record of group `i / 64` (one line: bitmap, base,
//! where and how wide), a popcount for its rank, and one value word (a
//! second line): no varint scan and no index in front. A leaf of chunks
//! allocated in order packs into ~0.8 KiB (8-bit offsets), one of chunks
//! scattered over 2^32 into ~2.3 KiB. Pages are packed from a decoded
//! [`Page`] (validated when read from the store); the stored format is
//! unchanged (`page`).

use super::page::{Page, MAX_LEVEL, SLOTS};

/// Groups of 64 slots per page (one record each).
const GROUPS: usize = SLOTS / 64;

/// 32 bytes, aligned to 32: a record, or four words of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Block([u64; 4]);

/// Bytes one block takes.
pub const BLOCK_BYTES: usize = std::mem::size_of::<Block>();

/// Bytes of a packed page's records (the least a packed page takes).
pub const RECORDS_BYTES: usize = GROUPS * BLOCK_BYTES;

const START_MASK: u64 = 0xffff;
const WIDTH_SHIFT: u32 = 16;
const LEVEL_SHIFT: u32 = 24;

/// log2 of (width / 8) for offsets up to `range`.
fn width_log(range: u64) -> u32 {
    match range {
        0..=0xff => 0,
        0x100..=0xffff => 1,
        0x1_0000..=0xffff_ffff => 2,
        _ => 3,
    }
}

/// The packed form of `page` (see the module docs).
pub fn pack(page: &Page) -> Vec<Block> {
    let mut records = [Block::default(); GROUPS];
    let mut values: Vec<u64> = Vec::new();
    for (g, rec) in records.iter_mut().enumerate() {
        let present: Vec<(usize, u64)> = (64 * g..64 * g + 64)
            .filter_map(|i| page.get(i).map(|v| (i, v)))
            .collect();
        let base = present.iter().map(|&(_, v)| v).min().unwrap_or(0);
        let range = present.iter().map(|&(_, v)| v - base).max().unwrap_or(0);
        let wlog = width_log(range);
        let width = 8u32 << wlog;
        let start = values.len() as u64;
        let mut bitmap = 0u64;
        for (k, &(i, v)) in present.iter().enumerate() {
            bitmap |= 1 << (i % 64);
            let bit = k as u64 * u64::from(width);
            let word = usize::try_from(start + bit / 64).unwrap_or(usize::MAX);
            if values.len() <= word {
                values.resize(word + 1, 0);
            }
            values[word] |= (v - base) << (bit % 64);
        }
        rec.0 = [
            bitmap,
            base,
            (start & START_MASK)
                | u64::from(wlog) << WIDTH_SHIFT
                | u64::from(page.level()) << LEVEL_SHIFT,
            0,
        ];
    }
    let mut out = records.to_vec();
    out.extend(values.chunks(4).map(|w| {
        let mut b = Block::default();
        b.0[..w.len()].copy_from_slice(w);
        b
    }));
    out
}

/// The page's level (that of the record of group 0).
pub fn level(p: &[Block]) -> u8 {
    p.first().map_or(u8::MAX, |r| record_level(r.0[2]))
}

fn record_level(meta: u64) -> u8 {
    ((meta >> LEVEL_SHIFT) & 0xff) as u8
}

/// The page's level and slot `i` (`None`: absent, or `i` ≥ 512). Never
/// panics: a packed page is built by [`pack`], but a short one reads as absent.
pub fn slot(p: &[Block], i: usize) -> (u8, Option<u64>) {
    let Some(Block([bitmap, base, meta, _])) = p.get((i / 64).min(GROUPS - 1)).copied() else {
        return (u8::MAX, None);
    };
    let level = record_level(meta);
    if i >= SLOTS || bitmap & (1 << (i % 64)) == 0 {
        return (level, None);
    }
    let rank = u64::from((bitmap & ((1u64 << (i % 64)) - 1)).count_ones());
    let wlog = (meta >> WIDTH_SHIFT) & 3;
    let bit = rank << (3 + wlog);
    let word = (meta & START_MASK) + bit / 64;
    let Some(w) = usize::try_from(word)
        .ok()
        .and_then(|w| p.get(GROUPS + w / 4).map(|b| b.0[w % 4]))
    else {
        return (level, None);
    };
    let mask = u64::MAX >> (64 - (8u32 << wlog));
    (level, Some(base.wrapping_add((w >> (bit % 64)) & mask)))
}

/// The decoded page again (for the tree's work on a page found packed).
pub fn unpack(p: &[Block]) -> Page {
    let level = level(p);
    let mut page = if level == 0 || level > MAX_LEVEL {
        Page::leaf()
    } else {
        Page::interior(level)
    };
    for i in 0..SLOTS {
        if let (_, Some(v)) = slot(p, i) {
            page.set(i, Some(v));
        }
    }
    page
}

/// Bytes the packed page takes in memory (blocks and the `Arc` header,
/// padded to the block's alignment).
pub fn memory(p: &[Block]) -> usize {
    (p.len() + 1) * BLOCK_BYTES
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
