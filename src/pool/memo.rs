//! The mapping memo of a format-3 pool: a two-way set-associative table of
//! recent lookups, `(volume, logical chunk) → chunk or unmapped`, in front
//! of the mapping tree (issue 13, warm random reads).
//!
//! A tree lookup reads one slot per level, each behind a hash probe of the
//! page cache: with a tree larger than the CPU caches that is several
//! dependent memory misses per read. A memo hit is one 64-byte set of two
//! 32-byte entries, in one cache line. Two ways, not one: a direct-mapped
//! table loses about one lookup in nine of a random working set an eighth
//! of its size to collisions (each a tree walk); with two ways a key is
//! lost only when three of the set collide. The memo is part of
//! `metadata_cache` (its share in `pagestore::CacheSplit`); its table is
//! allocated zeroed, so its pages cost memory only once lookups have
//! touched them, and sets of consecutive chunks of a volume are neighbours.
//!
//! It is exact, never a guess: `TreeMeta` forgets an entry when it maps or
//! unmaps that chunk (every change of a mapping goes through those two),
//! and forgets all of them ([`MapMemo::clear`], O(1): a new generation)
//! when a volume's tree is deleted. An entry is trusted only if volume,
//! chunk and generation all match. A snapshot or clone changes no mapping
//! of its origin and gets a new volume id, so the origin's entries stay.

/// Words per entry: volume, logical chunk, generation << 1 | mapped, chunk.
const WORDS: usize = 4;

/// Entries per set (the ways); a set is one 64-byte cache line.
const WAYS: usize = 2;

/// Words per set.
const SET_WORDS: usize = WORDS * WAYS;

/// Multiplier spreading volumes over the table (odd: a bijection mod 2^k).
const VOL_SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bytes one set takes (and the alignment of every set).
pub const SET_BYTES: usize = SET_WORDS * 8;

/// Lookups the memo answered and lookups that went to the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoCounts {
    /// Answered by the memo.
    pub hits: u64,
    /// Went to the tree.
    pub misses: u64,
}

/// The memo (see the module docs).
#[derive(Debug)]
pub struct MapMemo {
    /// Sets of `SET_WORDS` words from word `first` on (64-byte aligned, so
    /// a set never straddles a cache line).
    words: Vec<u64>,
    first: usize,
    /// Sets − 1 (a power of two less one), or `None`: no table.
    mask: Option<u64>,
    /// Current generation (≥ 1; zeroed entries never match).
    gen: u64,
    counts: MemoCounts,
}

impl MapMemo {
    /// A memo of at most `bytes` (rounded down to a power of two of sets;
    /// below 64 entries, none: every lookup goes to the tree).
    pub fn new(bytes: usize) -> MapMemo {
        let sets = (bytes / SET_BYTES)
            .checked_next_power_of_two()
            .map_or(0, |p| if p * SET_BYTES > bytes { p / 2 } else { p });
        if sets * WAYS < 64 {
            return MapMemo {
                words: Vec::new(),
                first: 0,
                mask: None,
                gen: 1,
                counts: MemoCounts::default(),
            };
        }
        // zeroed: the allocator maps fresh zero pages, resident once touched
        let words = vec![0u64; sets * SET_WORDS + SET_WORDS];
        let misalign = (words.as_ptr() as usize / 8) % SET_WORDS;
        MapMemo {
            words,
            first: (SET_WORDS - misalign) % SET_WORDS,
            mask: Some(sets as u64 - 1),
            gen: 1,
            counts: MemoCounts::default(),
        }
    }

    /// The first word of the set `l` of `vol` belongs to.
    fn set_at(&self, vol: u64, l: u64) -> Option<usize> {
        let i = l.wrapping_add(vol.wrapping_mul(VOL_SPREAD)) & self.mask?;
        Some(self.first + usize::try_from(i).ok()? * SET_WORDS)
    }

    /// The set `l` of `vol` belongs to, as its `WAYS` entries.
    fn set_mut(&mut self, vol: u64, l: u64) -> Option<&mut [u64]> {
        let at = self.set_at(vol, l)?;
        self.words.get_mut(at..at + SET_WORDS)
    }

    /// The memoised mapping of `l` in `vol`: `Some(None)` = unmapped,
    /// `None` = not in the memo.
    pub fn get(&mut self, vol: u64, l: u64) -> Option<Option<u64>> {
        let gen = self.gen;
        let found = self
            .set_at(vol, l)
            .and_then(|at| self.words.get(at..at + SET_WORDS))
            .and_then(|set| {
                set.chunks_exact(WORDS).find_map(|e| match *e {
                    [v, k, tag, c] if v == vol && k == l && tag >> 1 == gen => {
                        Some((tag & 1 == 1).then_some(c))
                    }
                    _ => None,
                })
            });
        match found {
            Some(_) => self.counts.hits += 1,
            None => self.counts.misses += 1,
        }
        found
    }

    /// Remembers that `l` of `vol` maps to `c` (`None`: unmapped), as the
    /// tree says now. It takes the way that holds `l` already, else the
    /// first way, whose entry (if current) moves to the second: the first
    /// way holds the newest entry, and a full set drops the older one.
    pub fn put(&mut self, vol: u64, l: u64, c: Option<u64>) {
        let gen = self.gen;
        let tag = gen << 1 | u64::from(c.is_some());
        let entry = [vol, l, tag, c.unwrap_or(0)];
        let Some(set) = self.set_mut(vol, l) else {
            return;
        };
        let (first, second) = set.split_at_mut(WORDS);
        let holds = |e: &[u64]| e[0] == vol && e[1] == l;
        let current = |e: &[u64]| e[2] >> 1 == gen;
        if holds(second) {
            second.copy_from_slice(&entry);
        } else if holds(first) || !current(first) {
            first.copy_from_slice(&entry);
        } else {
            second.copy_from_slice(first);
            first.copy_from_slice(&entry);
        }
    }

    /// Forgets `l` of `vol` (its mapping is about to change).
    pub fn forget(&mut self, vol: u64, l: u64) {
        if let Some(set) = self.set_mut(vol, l) {
            for e in set.chunks_exact_mut(WORDS) {
                if e[0] == vol && e[1] == l {
                    e[2] = 0;
                }
            }
        }
    }

    /// Forgets every entry (a new generation).
    pub fn clear(&mut self) {
        self.gen += 1;
    }

    /// Lookups answered by the memo and lookups that went to the tree,
    /// since the memo was made.
    pub fn counts(&self) -> MemoCounts {
        self.counts
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

    /// Bytes one entry takes.
    const ENTRY_BYTES: usize = WORDS * 8;

    fn counts(hits: u64, misses: u64) -> MemoCounts {
        MemoCounts { hits, misses }
    }

    #[test]
    fn remembers_forgets_and_clears() {
        let mut m = MapMemo::new(64 << 10);
        assert_eq!(m.capacity_bytes(), (1024 + 1) * SET_BYTES);
        assert_eq!(m.get(1, 5), None);
        m.put(1, 5, Some(42));
        m.put(1, 6, None);
        assert_eq!(m.get(1, 5), Some(Some(42)));
        assert_eq!(m.get(1, 6), Some(None));
        assert_eq!(m.get(2, 5), None, "another volume");
        m.forget(1, 5);
        assert_eq!(m.get(1, 5), None);
        assert_eq!(m.get(1, 6), Some(None));
        m.put(1, 6, Some(9));
        assert_eq!(m.get(1, 6), Some(Some(9)), "a put replaces its own entry");
        m.clear();
        assert_eq!(m.get(1, 6), None);
        assert_eq!(m.counts(), counts(4, 4));
    }

    #[test]
    fn two_colliding_keys_are_both_held() {
        // 32 sets: l, l + 32 and l + 64 share a set
        let mut m = MapMemo::new(32 * SET_BYTES);
        m.put(3, 1, Some(7));
        m.put(3, 33, Some(8));
        assert_eq!(m.get(3, 1), Some(Some(7)));
        assert_eq!(m.get(3, 33), Some(Some(8)));
        // putting one again does not push the other out
        m.put(3, 33, Some(9));
        m.put(3, 33, Some(10));
        assert_eq!(m.get(3, 1), Some(Some(7)));
        assert_eq!(m.get(3, 33), Some(Some(10)));
    }

    #[test]
    fn a_third_colliding_key_drops_the_older_never_answers_for_another() {
        let mut m = MapMemo::new(32 * SET_BYTES);
        m.put(3, 1, Some(7));
        m.put(3, 33, Some(8));
        m.put(3, 65, Some(9));
        assert_eq!(m.get(3, 1), None, "the older of the full set");
        assert_eq!(m.get(3, 33), Some(Some(8)));
        assert_eq!(m.get(3, 65), Some(Some(9)));
        m.forget(3, 1); // in no way of the set: both stay
        assert_eq!(m.get(3, 33), Some(Some(8)));
        assert_eq!(m.get(3, 65), Some(Some(9)));
        // a forgotten entry is taken before a current one is moved out
        m.forget(3, 65);
        m.put(3, 97, None);
        assert_eq!(m.get(3, 33), Some(Some(8)));
        assert_eq!(m.get(3, 97), Some(None));
        assert_eq!(m.get(3, 65), None);
    }

    #[test]
    fn a_random_working_set_an_eighth_of_the_table_stays_in_it() {
        // pool_scale's warm set: 16,384 random chunks of 4 Mi, in the
        // default 4 MiB memo (131,072 entries). Direct-mapped, about one
        // key in nine shares its entry with another and they push each
        // other out (hits ~0.89); with two ways, ~0.99.
        let mut m = MapMemo::new(4 << 20);
        let mut x = 0x5eed_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let set: Vec<u64> = (0..16_384).map(|_| next() % (4 << 20)).collect();
        let lookup = |m: &mut MapMemo, l: u64| {
            if m.get(1, l).is_none() {
                m.put(1, l, Some(l));
            }
        };
        for &l in &set {
            lookup(&mut m, l);
        }
        let before = m.counts();
        for _ in 0..200_000 {
            let i = usize::try_from(next() % set.len() as u64).unwrap();
            lookup(&mut m, set[i]);
        }
        let (hits, misses) = (
            m.counts().hits - before.hits,
            m.counts().misses - before.misses,
        );
        let ratio = hits as f64 / (hits + misses) as f64;
        assert!(ratio >= 0.97, "hit ratio {ratio:.3}");
    }

    #[test]
    fn sets_sit_in_one_cache_line_and_a_tiny_memo_is_none() {
        let m = MapMemo::new(1 << 20);
        for i in [0u64, 1, 2, 12345] {
            let at = m.set_at(9, i).unwrap();
            let addr = m.words[at..].as_ptr() as usize;
            assert_eq!(addr % SET_BYTES, 0);
        }
        let mut t = MapMemo::new(63 * ENTRY_BYTES);
        t.put(1, 1, Some(1));
        assert_eq!(t.get(1, 1), None);
        assert_eq!(t.capacity_bytes(), 0);
        assert_eq!(
            MapMemo::new(100 * ENTRY_BYTES).capacity_bytes(),
            33 * SET_BYTES
        );
    }
}
