//! The mapping memo of a format-3 pool: a direct-mapped table of recent
//! lookups, `(volume, logical chunk) → chunk or unmapped`, in front of the
//! mapping tree (issue 13, warm random reads).
//!
//! A tree lookup reads one slot per level, each behind a hash probe of the
//! page cache: with a tree larger than the CPU caches that is several
//! dependent memory misses per read. A memo hit is one 32-byte entry, in
//! one cache line. The memo is part of `metadata_cache` (its share in
//! `pagestore::CacheSplit`); its table is allocated zeroed, so its pages
//! cost memory only once lookups have touched them, and entries of
//! consecutive chunks of a volume are neighbours.
//!
//! It is exact, never a guess: `TreeMeta` forgets an entry when it maps or
//! unmaps that chunk (every change of a mapping goes through those two),
//! and forgets all of them ([`MapMemo::clear`], O(1): a new generation)
//! when a volume's tree is deleted. An entry is trusted only if volume,
//! chunk and generation all match. A snapshot or clone changes no mapping
//! of its origin and gets a new volume id, so the origin's entries stay.

/// Words per entry: volume, logical chunk, generation << 1 | mapped, chunk.
const WORDS: usize = 4;

/// Multiplier spreading volumes over the table (odd: a bijection mod 2^k).
const VOL_SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bytes one entry takes.
pub const ENTRY_BYTES: usize = WORDS * 8;

/// The memo (see the module docs).
#[derive(Debug)]
pub struct MapMemo {
    /// Entries of `WORDS` words from word `first` on (32-byte aligned, so
    /// an entry never straddles a cache line).
    words: Vec<u64>,
    first: usize,
    /// Entries − 1 (a power of two less one), or `None`: no table.
    mask: Option<u64>,
    /// Current generation (≥ 1; zeroed entries never match).
    gen: u64,
    hits: u64,
    misses: u64,
}

impl MapMemo {
    /// A memo of at most `bytes` (rounded down to a power of two of
    /// entries; below 64 entries, none: every lookup goes to the tree).
    pub fn new(bytes: usize) -> MapMemo {
        let entries = (bytes / ENTRY_BYTES)
            .checked_next_power_of_two()
            .map_or(0, |p| if p * ENTRY_BYTES > bytes { p / 2 } else { p });
        if entries < 64 {
            return MapMemo {
                words: Vec::new(),
                first: 0,
                mask: None,
                gen: 1,
                hits: 0,
                misses: 0,
            };
        }
        // zeroed: the allocator maps fresh zero pages, resident once touched
        let words = vec![0u64; entries * WORDS + WORDS];
        let misalign = (words.as_ptr() as usize / 8) % WORDS;
        MapMemo {
            words,
            first: (WORDS - misalign) % WORDS,
            mask: Some(entries as u64 - 1),
            gen: 1,
            hits: 0,
            misses: 0,
        }
    }

    fn at(&self, vol: u64, l: u64) -> Option<usize> {
        let i = l.wrapping_add(vol.wrapping_mul(VOL_SPREAD)) & self.mask?;
        Some(self.first + usize::try_from(i).ok()? * WORDS)
    }

    /// The memoised mapping of `l` in `vol`: `Some(None)` = unmapped,
    /// `None` = not in the memo.
    pub fn get(&mut self, vol: u64, l: u64) -> Option<Option<u64>> {
        let found = self
            .at(vol, l)
            .and_then(|at| match self.words.get(at..at + WORDS)? {
                &[v, k, tag, c] if v == vol && k == l && tag >> 1 == self.gen => {
                    Some((tag & 1 == 1).then_some(c))
                }
                _ => None,
            });
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Remembers that `l` of `vol` maps to `c` (`None`: unmapped), as the
    /// tree says now.
    pub fn put(&mut self, vol: u64, l: u64, c: Option<u64>) {
        let tag = self.gen << 1 | u64::from(c.is_some());
        if let Some(e) = self
            .at(vol, l)
            .and_then(|at| self.words.get_mut(at..at + WORDS))
        {
            e.copy_from_slice(&[vol, l, tag, c.unwrap_or(0)]);
        }
    }

    /// Forgets `l` of `vol` (its mapping is about to change).
    pub fn forget(&mut self, vol: u64, l: u64) {
        if let Some(e) = self
            .at(vol, l)
            .and_then(|at| self.words.get_mut(at..at + WORDS))
        {
            if e[0] == vol && e[1] == l {
                e[2] = 0;
            }
        }
    }

    /// Forgets every entry (a new generation).
    pub fn clear(&mut self) {
        self.gen += 1;
    }

    /// Lookups answered by the memo and lookups that went to the tree.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Bytes of the table (the most it can take; pages not touched yet are
    /// not resident).
    pub fn capacity_bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_clears() {
        let mut m = MapMemo::new(64 << 10);
        assert_eq!(m.capacity_bytes(), (2048 + 1) * ENTRY_BYTES);
        assert_eq!(m.get(1, 5), None);
        m.put(1, 5, Some(42));
        m.put(1, 6, None);
        assert_eq!(m.get(1, 5), Some(Some(42)));
        assert_eq!(m.get(1, 6), Some(None));
        assert_eq!(m.get(2, 5), None, "another volume");
        m.forget(1, 5);
        assert_eq!(m.get(1, 5), None);
        assert_eq!(m.get(1, 6), Some(None));
        m.clear();
        assert_eq!(m.get(1, 6), None);
        assert_eq!(m.counts(), (3, 4));
    }

    #[test]
    fn a_colliding_entry_replaces_never_answers_for_another() {
        let mut m = MapMemo::new(64 * ENTRY_BYTES);
        // l and l + 64 share an entry in a table of 64
        m.put(3, 1, Some(7));
        m.put(3, 65, Some(8));
        assert_eq!(m.get(3, 1), None);
        assert_eq!(m.get(3, 65), Some(Some(8)));
        m.forget(3, 1); // not the entry's key: the entry stays
        assert_eq!(m.get(3, 65), Some(Some(8)));
    }

    #[test]
    fn entries_sit_in_one_cache_line_and_a_tiny_memo_is_none() {
        let m = MapMemo::new(1 << 20);
        for i in [0u64, 1, 2, 12345] {
            let at = m.at(9, i).unwrap();
            let addr = m.words[at..].as_ptr() as usize;
            assert_eq!(addr % ENTRY_BYTES, 0);
        }
        let mut t = MapMemo::new(63 * ENTRY_BYTES);
        t.put(1, 1, Some(1));
        assert_eq!(t.get(1, 1), None);
        assert_eq!(t.capacity_bytes(), 0);
        assert_eq!(
            MapMemo::new(100 * ENTRY_BYTES).capacity_bytes(),
            65 * ENTRY_BYTES
        );
    }
}
