use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn v(x: u32) -> Arc<u32> {
    Arc::new(x)
}

#[test]
fn hits_misses_and_clock_eviction() {
    let mut c = PageCache::new(3, 1 << 20);
    for id in 1..=3u32 {
        c.insert_clean(u64::from(id), v(id), 4096);
    }
    assert_eq!(c.get(1).as_deref(), Some(&1));
    assert_eq!(c.get(3).as_deref(), Some(&3));
    assert_eq!(c.get(9), None);
    // 2 was not used since it came in: it is the one to go
    c.insert_clean(4, v(4), 4096);
    assert!(!c.contains(2));
    assert!(c.contains(1) && c.contains(3) && c.contains(4));
    let s = c.stats();
    assert_eq!(
        (s.hits, s.misses, s.evictions, s.pages, s.bytes),
        (2, 1, 1, 3, 3 * 4096)
    );
}

#[test]
fn byte_capacity_evicts_several_for_a_large_entry() {
    let mut c = PageCache::new(100, 10_000);
    for id in 0..5 {
        c.insert_clean(id, v(0), 2000);
    }
    c.insert_clean(9, v(9), 7000);
    let s = c.stats();
    assert!(s.bytes <= 10_000, "{s:?}");
    assert!(s.evictions >= 4);
}

#[test]
fn pinned_pages_survive_until_their_commit_ends() {
    let mut c = PageCache::new(2, 1 << 20);
    c.insert_dirty(1, v(1), 100);
    c.insert_dirty(2, v(2), 100);
    // full of pinned pages: a clean page cannot stay, the dirty ones must
    c.insert_clean(3, v(3), 100);
    assert!(c.contains(1) && c.contains(2) && !c.contains(3));
    assert_eq!(c.dirty_bytes(), 200);
    let (epoch, dirty) = c.take_dirty();
    assert_eq!(
        dirty.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // during the commit: 2 changes again
    c.insert_dirty(2, v(22), 100);
    c.insert_clean(4, v(4), 100);
    assert!(c.contains(1) && c.contains(2));
    c.end_commit(epoch);
    // 1 is clean now and may go; 2 is dirty for the next commit
    assert_eq!(c.dirty_bytes(), 100);
    c.insert_clean(5, v(5), 100);
    assert!(c.contains(2));
    assert!(!(c.contains(1) && c.contains(5)), "{:?}", c.stats());
    assert_eq!(c.stats().pages, 2);
    let (e2, dirty) = c.take_dirty();
    assert_eq!(dirty.len(), 1);
    assert_eq!(*dirty[0].1, 22);
    c.abort_commit(e2);
    let (_, again) = c.take_dirty();
    assert_eq!(again.len(), 1, "a failed commit leaves its pages dirty");
}

#[derive(Debug, Clone)]
enum Op {
    Clean(u64, usize),
    Dirty(u64, usize),
    Get(u64),
    Remove(u64),
    Take,
    End,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..24;
    let size = 1usize..3000;
    prop_oneof![
        4 => (id.clone(), size.clone()).prop_map(|(i, s)| Op::Clean(i, s)),
        2 => (id.clone(), size).prop_map(|(i, s)| Op::Dirty(i, s)),
        4 => id.clone().prop_map(Op::Get),
        1 => id.prop_map(Op::Remove),
        1 => Just(Op::Take),
        1 => Just(Op::End),
        1 => Just(Op::Abort),
    ]
}

proptest! {
    /// Over capacity only when everything held is pinned; a pinned page is
    /// never evicted; what is held is the latest value put.
    #[test]
    fn capacity_and_pinning_hold(ops in proptest::collection::vec(op(), 1..300),
                                 max_pages in 1usize..10, max_bytes in 1000usize..12_000) {
        let mut c: PageCache<u64> = PageCache::new(max_pages, max_bytes);
        let mut latest: BTreeMap<u64, u64> = BTreeMap::new();
        let mut dirty: BTreeSet<u64> = BTreeSet::new();
        let mut commits: Vec<(u64, BTreeSet<u64>)> = Vec::new();
        let mut stamp = 0u64;
        for op in ops {
            stamp += 1;
            match op {
                Op::Clean(id, size) => {
                    if !c.contains(id) {
                        latest.insert(id, stamp);
                    }
                    c.insert_clean(id, Arc::new(stamp), size);
                }
                Op::Dirty(id, size) => {
                    latest.insert(id, stamp);
                    dirty.insert(id);
                    c.insert_dirty(id, Arc::new(stamp), size);
                }
                Op::Get(id) => {
                    if let Some(got) = c.get(id) {
                        prop_assert_eq!(Some(*got), latest.get(&id).copied());
                    }
                }
                Op::Remove(id) => {
                    c.remove(id);
                    dirty.remove(&id);
                    for (_, s) in &mut commits {
                        s.remove(&id);
                    }
                }
                // commits are serialised (the pool's commit mutex): one at a time
                Op::Take if commits.is_empty() => {
                    let (epoch, pages) = c.take_dirty();
                    let ids: BTreeSet<u64> = pages.iter().map(|(id, _)| *id).collect();
                    prop_assert_eq!(&ids, &dirty);
                    for (id, val) in &pages {
                        prop_assert_eq!(Some(**val), latest.get(id).copied());
                    }
                    commits.push((epoch, std::mem::take(&mut dirty)));
                }
                Op::End => if let Some((epoch, _)) = commits.first().cloned() {
                    c.end_commit(epoch);
                    commits.remove(0);
                },
                Op::Abort => if let Some((epoch, ids)) = commits.first().cloned() {
                    c.abort_commit(epoch);
                    dirty.extend(ids);
                    commits.remove(0);
                },
                Op::Take => {}
            }
            let s = c.stats();
            let pinned: BTreeSet<u64> =
                dirty.iter().chain(commits.iter().flat_map(|(_, s)| s)).copied().collect();
            for id in &pinned {
                prop_assert!(c.contains(*id), "pinned page {} evicted", id);
            }
            prop_assert_eq!(s.pinned_pages, pinned.len());
            if s.pages > max_pages || s.bytes > max_bytes {
                prop_assert_eq!(s.pinned_pages, s.pages, "over capacity with unpinned pages: {:?}", s);
            }
        }
    }
}
