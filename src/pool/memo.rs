//! The mapping memo of a format-3 pool: a two-way set-associative table of
//! recent lookups, `(volume, logical chunk) → chunk or unmapped`, in front
//! of the mapping tree (issue 13, warm random reads), read without the
//! pool's state mutex.
//!
//! A tree lookup reads one slot per level, each behind a hash probe of the
//! page cache: with a tree larger than the CPU caches that is several
//! dependent memory misses per read. A memo hit is one 64-byte set of two
//! entries, in one cache line. Two ways, not one: a direct-mapped table
//! loses about one lookup in nine of a random working set an eighth of its
//! size to collisions (each a tree walk); with two ways a key is lost only
//! when three of the set collide. The memo is part of `metadata_cache` (its
//! share in `pagestore::CacheSplit`); its table is allocated a 4 KiB segment
//! at a time, when a lookup first puts an entry there, so it costs memory
//! only where lookups have been; sets of consecutive chunks of a volume are
//! neighbours.
//!
//! It is exact, never a guess: `TreeMeta` forgets an entry when it maps or
//! unmaps that chunk (every change of a mapping goes through those two),
//! and forgets all of them ([`MemoWriter::clear`], O(1): a new generation)
//! when a volume's tree is deleted. An entry is trusted only if volume,
//! chunk and generation all match. A snapshot or clone changes no mapping
//! of its origin and gets a new volume id, so the origin's entries stay.
//!
//! Readers and the writer. The one [`MemoWriter`] belongs to `TreeMeta`,
//! under the pool's state mutex: every put, forget and clear is made by one
//! thread at a time. Readers hold an `Arc<MapMemo>` and read without that
//! mutex (the data path: a 4 KiB read of a memoised chunk takes no lock of
//! the pool's but its volume's gate). Each set is a sequence lock: the
//! writer makes its count odd, changes the entries, makes it even again; a
//! reader that saw it odd, or changed across its read, takes the answer for
//! a miss (and asks the tree under the mutex). A reader thus sees an entry
//! as it was at one instant: the mapping of that instant. The volume's gate
//! keeps that answer good for the read that follows (a write that remaps or
//! frees one of the volume's chunks holds the gate exclusively).

use std::cell::Cell;
use std::ops::Deref;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Words per set: the sequence count, two entries of three words (volume,
/// logical chunk, tag), one unused.
const SET_WORDS: usize = 8;

/// Words per entry.
const ENTRY_WORDS: usize = 3;

/// Entries per set (the ways); a set is one 64-byte cache line.
const WAYS: usize = 2;

/// Sets per segment (4 KiB: a page).
const SEG_SETS: usize = 64;

/// Multiplier spreading volumes over the table (odd: a bijection mod 2^k).
const VOL_SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bytes one set takes (and the alignment of every set).
pub const SET_BYTES: usize = SET_WORDS * 8;

/// A tag: generation (15 bits) | mapped (1 bit) | chunk (48 bits).
const CHUNK_BITS: u32 = 48;
const CHUNK_MASK: u64 = (1 << CHUNK_BITS) - 1;
const MAPPED: u64 = 1 << CHUNK_BITS;
const GEN_SHIFT: u32 = CHUNK_BITS + 1;
/// The last generation before the table is wiped and they start again at 1.
const GEN_MAX: u64 = (1 << (64 - GEN_SHIFT)) - 1;

/// Shards of the hit and miss counters (each on a line of its own).
const SHARDS: usize = 8;

/// Lookups the memo answered and lookups that went to the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoCounts {
    /// Answered by the memo.
    pub hits: u64,
    /// Went to the tree.
    pub misses: u64,
}

/// A count updated by many threads: one shard per thread (threads take
/// shards in turn), so counting a lookup writes no line another thread
/// counts on.
#[derive(Debug, Default)]
struct Counter([Padded; SHARDS]);

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Counter {
    fn add(&self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        let i = SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            s.get()
        });
        if let Some(p) = self.0.get(i) {
            p.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// One 4 KiB segment of the table: `SEG_SETS` sets.
#[repr(C, align(64))]
struct Segment([AtomicU64; SEG_SETS * SET_WORDS]);

impl Segment {
    fn new() -> Box<Segment> {
        Box::new(Segment(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// The memo as its readers see it (see the module docs).
pub struct MapMemo {
    /// The table, allocated a segment at a time by the writer.
    segs: Box<[OnceLock<Box<Segment>>]>,
    /// Sets − 1 (a power of two less one), or `None`: no table.
    mask: Option<u64>,
    /// Current generation (1 to `GEN_MAX`; zeroed entries never match).
    gen: AtomicU64,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for MapMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapMemo")
            .field("sets", &self.mask.map_or(0, |m| m + 1))
            .field("gen", &self.gen)
            .field("counts", &self.counts())
            .finish()
    }
}

/// The words of one set.
type Set = [AtomicU64];

impl MapMemo {
    /// Where `l` of `vol` goes: its segment and the first word of its set.
    fn place(&self, vol: u64, l: u64) -> Option<(usize, usize)> {
        let i = l.wrapping_add(vol.wrapping_mul(VOL_SPREAD)) & self.mask?;
        let i = usize::try_from(i).ok()?;
        Some((i / SEG_SETS, (i % SEG_SETS) * SET_WORDS))
    }

    /// The set of `l` of `vol`, if its segment exists.
    fn set(&self, vol: u64, l: u64) -> Option<&Set> {
        let (seg, at) = self.place(vol, l)?;
        self.segs.get(seg)?.get()?.0.get(at..at + SET_WORDS)
    }

    /// The memoised mapping of `l` in `vol`: `Some(None)` = unmapped,
    /// `None` = not in the memo (or being changed just now). Counts a hit
    /// when it answers; the caller that then walks the tree counts the miss
    /// ([`MapMemo::missed`]).
    pub fn get(&self, vol: u64, l: u64) -> Option<Option<u64>> {
        let found = self.peek(vol, l);
        if found.is_some() {
            self.hits.add();
        }
        found
    }

    /// [`MapMemo::get`] without counting.
    fn peek(&self, vol: u64, l: u64) -> Option<Option<u64>> {
        // Acquire: a generation restarted after a wipe is seen after the wipe
        let gen = self.gen.load(Ordering::Acquire);
        let set = self.set(vol, l)?;
        let seq = set.first()?;
        let before = seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None; // the writer is changing it
        }
        let e = read_entries(set);
        // the entries' loads before the second look at the count
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) != before {
            return None;
        }
        e.chunks_exact(ENTRY_WORDS).find_map(|e| match *e {
            [v, k, tag] if v == vol && k == l && tag >> GEN_SHIFT == gen => {
                Some((tag & MAPPED != 0).then_some(tag & CHUNK_MASK))
            }
            _ => None,
        })
    }

    /// Counts a lookup the memo did not answer.
    pub fn missed(&self) {
        self.misses.add();
    }

    /// Lookups answered by the memo and lookups that went to the tree,
    /// since the memo was made.
    pub fn counts(&self) -> MemoCounts {
        MemoCounts {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
        }
    }

    /// Bytes of the table (the most it can take; segments no lookup has
    /// put an entry in are not allocated).
    pub fn capacity_bytes(&self) -> usize {
        self.mask
            .and_then(|m| usize::try_from(m + 1).ok())
            .map_or(0, |sets| sets * SET_BYTES)
    }
}

/// The one writer of a [`MapMemo`] (`TreeMeta`'s, under the state mutex):
/// `&mut self` on every change keeps them to one thread at a time.
#[derive(Debug)]
pub struct MemoWriter {
    memo: Arc<MapMemo>,
}

impl Deref for MemoWriter {
    type Target = MapMemo;

    fn deref(&self) -> &MapMemo {
        &self.memo
    }
}

impl MemoWriter {
    /// A memo of at most `bytes` (rounded down to a power of two of sets;
    /// below 64 entries, none: every lookup goes to the tree).
    pub fn new(bytes: usize) -> MemoWriter {
        let sets = (bytes / SET_BYTES)
            .checked_next_power_of_two()
            .map_or(0, |p| if p * SET_BYTES > bytes { p / 2 } else { p });
        let (mask, segs) = if sets * WAYS < 64 {
            (None, 0)
        } else {
            (Some(sets as u64 - 1), sets.div_ceil(SEG_SETS))
        };
        MemoWriter {
            memo: Arc::new(MapMemo {
                segs: (0..segs).map(|_| OnceLock::new()).collect(),
                mask,
                gen: AtomicU64::new(1),
                hits: Counter::default(),
                misses: Counter::default(),
            }),
        }
    }

    /// The memo, for readers without the state mutex.
    pub fn reader(&self) -> Arc<MapMemo> {
        Arc::clone(&self.memo)
    }

    /// The set of `l` of `vol`, its segment allocated if need be.
    fn set_for_put(&self, vol: u64, l: u64) -> Option<&Set> {
        let (seg, at) = self.memo.place(vol, l)?;
        let seg = self.memo.segs.get(seg)?.get_or_init(Segment::new);
        seg.0.get(at..at + SET_WORDS)
    }

    /// Remembers that `l` of `vol` maps to `c` (`None`: unmapped), as the
    /// tree says now. It takes the way that holds `l` already, else the
    /// first way, whose entry (if current) moves to the second: the first
    /// way holds the newest entry, and a full set drops the older one.
    pub fn put(&mut self, vol: u64, l: u64, c: Option<u64>) {
        let chunk = match c {
            Some(c) if c > CHUNK_MASK => return self.forget(vol, l), // not held
            Some(c) => c | MAPPED,
            None => 0,
        };
        let gen = self.memo.gen.load(Ordering::Relaxed);
        let entry = [vol, l, gen << GEN_SHIFT | chunk];
        let Some(set) = self.set_for_put(vol, l) else {
            return;
        };
        let mut e = read_entries(set);
        let (first, second) = e.split_at_mut(ENTRY_WORDS);
        let holds = |e: &[u64]| e[0] == vol && e[1] == l;
        let current = |e: &[u64]| e[2] >> GEN_SHIFT == gen;
        if holds(second) {
            second.copy_from_slice(&entry);
        } else if holds(first) || !current(first) {
            first.copy_from_slice(&entry);
        } else {
            second.copy_from_slice(first);
            first.copy_from_slice(&entry);
        }
        write_entries(set, &e);
    }

    /// Forgets `l` of `vol` (its mapping is about to change).
    pub fn forget(&mut self, vol: u64, l: u64) {
        let Some(set) = self.memo.set(vol, l) else {
            return;
        };
        let mut e = read_entries(set);
        let mut changed = false;
        for e in e.chunks_exact_mut(ENTRY_WORDS) {
            if e[0] == vol && e[1] == l && e[2] != 0 {
                e[2] = 0;
                changed = true;
            }
        }
        if changed {
            write_entries(set, &e);
        }
    }

    /// Forgets every entry (a new generation; after `GEN_MAX` of them the
    /// table is wiped and they start again).
    pub fn clear(&mut self) {
        let next = self.memo.gen.load(Ordering::Relaxed) + 1;
        if next <= GEN_MAX {
            self.memo.gen.store(next, Ordering::Release);
            return;
        }
        for seg in self.memo.segs.iter().filter_map(OnceLock::get) {
            for set in seg.0.chunks_exact(SET_WORDS) {
                write_entries(set, &[0; ENTRY_WORDS * WAYS]);
            }
        }
        self.memo.gen.store(1, Ordering::Release);
    }
}

/// A set's entries, each word loaded on its own (Relaxed). The writer, the
/// only one to change them, reads them so as they are; a reader checks the
/// set's count before and after (`MapMemo::peek`).
fn read_entries(set: &Set) -> [u64; ENTRY_WORDS * WAYS] {
    let mut e = [0u64; ENTRY_WORDS * WAYS];
    for (w, a) in e.iter_mut().zip(set.iter().skip(1)) {
        *w = a.load(Ordering::Relaxed);
    }
    e
}

/// Writes a set's entries under its sequence count (odd while it changes).
fn write_entries(set: &Set, e: &[u64; ENTRY_WORDS * WAYS]) {
    let Some((seq, rest)) = set.split_first() else {
        return;
    };
    let s = seq.load(Ordering::Relaxed);
    seq.store(s.wrapping_add(1), Ordering::Relaxed);
    // the odd count before any entry's store
    fence(Ordering::Release);
    for (a, &w) in rest.iter().zip(e) {
        a.store(w, Ordering::Relaxed);
    }
    seq.store(s.wrapping_add(2), Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes one entry takes, as the table's size counts it.
    const ENTRY_BYTES: usize = SET_BYTES / WAYS;

    fn counts(hits: u64, misses: u64) -> MemoCounts {
        MemoCounts { hits, misses }
    }

    #[test]
    fn remembers_forgets_and_clears() {
        let mut m = MemoWriter::new(64 << 10);
        assert_eq!(m.capacity_bytes(), 1024 * SET_BYTES);
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
        m.missed();
        // get counts the hits; the caller that goes to the tree the misses
        assert_eq!(m.counts(), counts(4, 1));
    }

    #[test]
    fn chunks_past_48_bits_are_not_held_and_forget_what_was() {
        let mut m = MemoWriter::new(64 << 10);
        m.put(1, 5, Some(CHUNK_MASK));
        assert_eq!(m.get(1, 5), Some(Some(CHUNK_MASK)));
        m.put(1, 5, Some(CHUNK_MASK + 1));
        assert_eq!(m.get(1, 5), None);
    }

    #[test]
    fn generations_wrap_by_wiping_the_table() {
        let mut m = MemoWriter::new(64 << 10);
        m.memo.gen.store(GEN_MAX - 1, Ordering::Relaxed);
        m.put(1, 5, Some(7));
        m.clear();
        assert_eq!(m.get(1, 5), None);
        m.put(1, 6, Some(8));
        assert_eq!(m.get(1, 6), Some(Some(8)), "the last generation");
        m.clear(); // wraps to 1
        assert_eq!(m.memo.gen.load(Ordering::Relaxed), 1);
        assert_eq!(m.get(1, 6), None, "wiped");
        for s in m.memo.segs.iter().filter_map(OnceLock::get) {
            for set in s.0.chunks_exact(SET_WORDS) {
                assert!(read_entries(set).iter().all(|&w| w == 0));
            }
        }
    }

    #[test]
    fn two_colliding_keys_are_both_held() {
        // 32 sets: l, l + 32 and l + 64 share a set
        let mut m = MemoWriter::new(32 * SET_BYTES);
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
        let mut m = MemoWriter::new(32 * SET_BYTES);
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
    fn readers_beside_the_writer_see_only_entries_it_put() {
        // 32 sets, 96 keys (three per set): the writer keeps moving entries
        // between the two ways, dropping and forgetting them; chunk
        // `l << 20 | n` is the n-th mapping it gave l. A reader that mixed
        // two entries' words (another key's chunk), or one put's key with
        // another's tag, would answer a chunk of another l.
        let mut w = MemoWriter::new(32 * SET_BYTES);
        let memo = w.reader();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let (memo, stop) = (Arc::clone(&memo), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let (mut seen, mut l) = (0u64, r);
                    let mut check = |l: u64| {
                        if let Some(Some(c)) = memo.get(5, l) {
                            assert_eq!(c >> 20, l, "l {l} answered chunk {c:#x}");
                            seen += 1;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        l = (l + 7) % 96;
                        check(l);
                    }
                    // a reader the scheduler kept waiting still reads the
                    // entries the writer left
                    (0..96).for_each(&mut check);
                    seen
                })
            })
            .collect();
        for n in 1..400_000u64 {
            let l = (n * 13) % 96;
            match n % 5 {
                0 => w.forget(5, l),
                _ => w.put(5, l, Some(l << 20 | (n & 0xfffff))),
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let seen = r.join().unwrap();
            assert!(seen > 0, "a reader never found an entry");
        }
    }

    #[test]
    fn a_random_working_set_an_eighth_of_the_table_stays_in_it() {
        // pool_scale's warm set: 16,384 random chunks of 4 Mi, in the
        // default 4 MiB memo (131,072 entries). Direct-mapped, about one
        // key in nine shares its entry with another and they push each
        // other out (hits ~0.89); with two ways, ~0.99.
        let mut m = MemoWriter::new(4 << 20);
        let mut x = 0x5eed_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let set: Vec<u64> = (0..16_384).map(|_| next() % (4 << 20)).collect();
        let lookup = |m: &mut MemoWriter, l: u64| {
            if m.get(1, l).is_none() {
                m.missed();
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
        let mut m = MemoWriter::new(1 << 20);
        for i in [0u64, 1, 2, 12345] {
            m.put(9, i, Some(i));
            let set = m.set(9, i).unwrap();
            assert_eq!(set.as_ptr() as usize % SET_BYTES, 0);
        }
        let mut t = MemoWriter::new(63 * ENTRY_BYTES);
        t.put(1, 1, Some(1));
        assert_eq!(t.get(1, 1), None);
        assert_eq!(t.capacity_bytes(), 0);
        assert_eq!(
            MemoWriter::new(100 * ENTRY_BYTES).capacity_bytes(),
            32 * SET_BYTES
        );
    }

    #[test]
    fn segments_are_allocated_where_entries_are_put() {
        let mut m = MemoWriter::new(4 << 20);
        let allocated = |m: &MemoWriter| m.segs.iter().filter(|s| s.get().is_some()).count();
        assert_eq!(allocated(&m), 0);
        assert_eq!(m.get(1, 5), None);
        m.forget(1, 5);
        assert_eq!(allocated(&m), 0, "reads and forgets allocate nothing");
        m.put(1, 5, Some(1));
        m.put(1, 6, Some(1));
        assert_eq!(allocated(&m), 1);
    }
}
