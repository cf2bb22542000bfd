use super::*;
use proptest::prelude::*;

fn alloc_ref(m: &mut SpaceMap) -> u64 {
    let c = m.allocate().expect("a free chunk");
    assert_eq!(m.inc(c), Ok(1));
    c
}

#[test]
fn allocation_rotates_and_skips_reserved_and_pending() {
    let mut m = SpaceMap::new(10);
    assert_eq!(m.free_chunks(), 10);
    let a = m.allocate().unwrap();
    let b = m.allocate().unwrap();
    assert_eq!((a, b), (0, 1));
    // a is reserved but has count 0: not handed out again
    assert_eq!(m.count(a), Ok(0));
    assert_eq!(m.free_chunks(), 8);
    assert_eq!(m.inc(a), Ok(1));
    assert_eq!(m.inc(b), Ok(1));
    assert_eq!(m.dec(a), Ok(0));
    assert!(m.is_pending_free(a));
    // pending-free: skipped even once the cursor wraps
    let rest: Vec<u64> = (0..8).map(|_| m.allocate().unwrap()).collect();
    assert_eq!(rest, (2..10).collect::<Vec<_>>());
    assert_eq!(m.allocate(), None);
    let freed = m.take_freed();
    assert_eq!(freed, vec![a]);
    m.release(&freed);
    assert_eq!(m.allocate(), Some(a));
    m.unreserve(a);
    assert_eq!(m.free_chunks(), 1);
    assert_eq!(m.used_chunks(), 1);
}

#[test]
fn first_reference_needs_a_reservation_and_counts_cannot_underflow() {
    let mut m = SpaceMap::new(5000);
    assert_eq!(m.inc(4999), Err(SpaceError::NotReserved(4999)));
    assert_eq!(m.dec(3), Err(SpaceError::Underflow(3)));
    assert_eq!(
        m.inc(5000),
        Err(SpaceError::OutOfRange {
            chunk: 5000,
            capacity: 5000
        })
    );
}

#[test]
fn counts_past_254_live_in_the_side_map() {
    let mut m = SpaceMap::new(8);
    let c = alloc_ref(&mut m);
    for n in 2..=300u32 {
        assert_eq!(m.inc(c), Ok(n));
    }
    let ix = usize::try_from(c).expect("a chunk of 8");
    assert_eq!(m.page_bytes(0)[ix], OVERFLOW);
    assert_eq!(m.overflow().get(&c), Some(&300));
    for n in (254..300u32).rev() {
        assert_eq!(m.dec(c), Ok(n));
    }
    assert_eq!(m.page_bytes(0)[ix], 254);
    assert!(m.overflow().is_empty());
}

#[test]
fn summary_follows_counts_across_space_pages() {
    let mut m = SpaceMap::new(2 * SPACE_PAGE_CHUNKS + 10);
    assert_eq!(m.summary(), &[4096, 4096, 10]);
    let cs: Vec<u64> = (0..4100).map(|_| alloc_ref(&mut m)).collect();
    assert_eq!(m.summary(), &[0, 4092, 10]);
    assert_eq!(m.dec(cs[7]), Ok(0));
    assert_eq!(m.summary(), &[1, 4092, 10]);
    // the freed chunk is not handed out before release: the next comes from page 1
    assert_eq!(m.allocate(), Some(4100));
}

#[test]
fn grow_adds_free_chunks_in_the_last_page_and_beyond() {
    let mut m = SpaceMap::new(10);
    m.grow(SPACE_PAGE_CHUNKS + 1);
    assert_eq!(m.summary(), &[4096, 1]);
    assert_eq!(m.free_chunks(), SPACE_PAGE_CHUNKS + 1);
}

#[test]
fn load_round_trips_and_rejects_corrupt_pages() {
    let mut m = SpaceMap::new(5000);
    let a = alloc_ref(&mut m);
    for _ in 0..299 {
        m.inc(a).unwrap();
    }
    let b = alloc_ref(&mut m);
    let pages = m.take_dirty();
    let back = SpaceMap::load(5000, pages.clone(), m.overflow().clone()).unwrap();
    assert_eq!(back.count(a), Ok(300));
    assert_eq!(back.count(b), Ok(1));
    assert_eq!(back.summary(), m.summary());
    assert!(SpaceMap::load(5000, pages.clone(), BTreeMap::new()).is_err());
    let mut short = pages.clone();
    short[0].1.pop();
    assert!(SpaceMap::load(5000, short, m.overflow().clone()).is_err());
    let mut twice = pages.clone();
    twice.push(pages[0].clone());
    assert!(SpaceMap::load(5000, twice, m.overflow().clone()).is_err());
    let mut past = pages.clone();
    past[1].1[4095] = 1;
    assert!(SpaceMap::load(5000, past, m.overflow().clone()).is_err());
    assert!(SpaceMap::load(100, pages, m.overflow().clone()).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Alloc,
    Inc(usize),
    Dec(usize),
    Commit,
}

proptest! {
    /// Against a plain model: counts, free totals, summary; nothing held is handed out.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec(prop_oneof![
        3 => Just(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Inc),
        4 => any::<usize>().prop_map(Op::Dec),
        1 => Just(Op::Commit),
    ], 1..300)) {
        let cap = 2 * SPACE_PAGE_CHUNKS + 5;
        let mut m = SpaceMap::new(cap);
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        let mut pending: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Alloc => {
                    let c = m.allocate().unwrap();
                    prop_assert!(!counts.contains_key(&c) && !pending.contains(&c));
                    m.inc(c).unwrap();
                    counts.insert(c, 1);
                }
                Op::Inc(i) if !counts.is_empty() => {
                    let c = *counts.keys().nth(i % counts.len()).unwrap();
                    // now and then 300 extra references, through the side map
                    let extra = if i % 300 == 299 { 300 } else { 0 };
                    for _ in 0..extra {
                        m.inc(c).unwrap();
                    }
                    let n = counts.get_mut(&c).unwrap();
                    *n += 1 + extra;
                    prop_assert_eq!(m.inc(c), Ok(*n));
                }
                Op::Dec(i) if !counts.is_empty() => {
                    let c = *counts.keys().nth(i % counts.len()).unwrap();
                    let n = counts.get_mut(&c).unwrap();
                    *n -= 1;
                    prop_assert_eq!(m.dec(c), Ok(*n));
                    if *n == 0 {
                        counts.remove(&c);
                        pending.insert(c);
                    }
                }
                Op::Commit => {
                    let freed = m.take_freed();
                    prop_assert_eq!(&freed, &pending.iter().copied().collect::<Vec<_>>());
                    m.release(&freed);
                    pending.clear();
                }
                _ => {}
            }
            prop_assert_eq!(m.used_chunks(), counts.len() as u64);
            prop_assert_eq!(m.free_chunks(), cap - counts.len() as u64 - pending.len() as u64);
            for (ix, p) in (0..3u64).enumerate() {
                let used = counts.keys().filter(|c| **c / SPACE_PAGE_CHUNKS == p).count() as u64;
                let live = (cap - p * SPACE_PAGE_CHUNKS).min(SPACE_PAGE_CHUNKS);
                prop_assert_eq!(u64::from(m.summary()[ix]), live - used);
            }
        }
        for (c, n) in &counts {
            prop_assert_eq!(m.count(*c), Ok(*n));
        }
        let back = SpaceMap::load(cap, m.take_dirty(), m.overflow().clone()).unwrap();
        for (c, n) in &counts {
            prop_assert_eq!(back.count(*c), Ok(*n));
        }
        prop_assert_eq!(back.summary(), m.summary());
    }
}

/// The count of chunks counted twice or more follows every change, across
/// the side map, and is rebuilt by `load`.
#[test]
fn shared_chunks_follow_the_counts() {
    let mut m = SpaceMap::new(5000);
    let a = alloc_ref(&mut m);
    let b = alloc_ref(&mut m);
    assert_eq!(m.shared_chunks(), 0);
    m.inc(a).unwrap();
    assert_eq!(m.shared_chunks(), 1);
    for _ in 0..298 {
        m.inc(a).unwrap();
    }
    m.inc(b).unwrap();
    assert_eq!(m.shared_chunks(), 2);
    let back = SpaceMap::load(5000, m.take_dirty(), m.overflow().clone()).unwrap();
    assert_eq!(back.shared_chunks(), 2);
    for _ in 0..299 {
        m.dec(a).unwrap();
    }
    assert_eq!((m.count(a), m.shared_chunks()), (Ok(1), 1));
    m.dec(b).unwrap();
    m.dec(b).unwrap();
    assert_eq!((m.count(b), m.shared_chunks()), (Ok(0), 0));
}
