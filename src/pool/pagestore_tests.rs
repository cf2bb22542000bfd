use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::pool::spacemap::SpaceMap;
use crate::pool::testing::MemStore;
use crate::pool::tree::{self, Root};

/// Commits the pages' changes to `store` as the pool does.
fn commit(pages: &mut SledPages, store: &MemStore) {
    let mut changes = Vec::new();
    pages.take_changes(&mut changes);
    store.commit(changes).unwrap();
    pages.end_commit();
}

#[test]
fn pages_survive_eviction_commits_and_a_fresh_cache() {
    let store = MemStore::new();
    let src: Arc<dyn MetaStore> = Arc::new(store.clone());
    // room for 16 pages: the trees below need far more
    let mut pages = SledPages::new(Arc::clone(&src), 16 * PAGE_MEMORY as u64, 1);
    let mut space = SpaceMap::new(1 << 16);
    let mut a = Root::EMPTY;
    let mut model_a = BTreeMap::new();
    let mut x = 7u64;
    for i in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let l = x % 60_000;
        let c = space.allocate().unwrap();
        tree::map(&mut pages, &mut space, &mut a, l, c).unwrap();
        if let Some(old) = model_a.insert(l, c) {
            space.release(&[old]);
        }
        if i % 3000 == 0 {
            commit(&mut pages, &store);
        }
    }
    // a shared copy, then changes to the original shadow pages
    let b = tree::share(&mut pages, a).unwrap();
    let model_b = model_a.clone();
    commit(&mut pages, &store);
    for l in (0..60_000).step_by(97) {
        tree::unmap(&mut pages, &mut space, &mut a, l).unwrap();
        model_a.remove(&l);
    }
    commit(&mut pages, &store);
    assert!(pages.stats().evictions > 0, "the cache evicted pages");
    let want_a: Vec<(u64, u64)> = model_a.into_iter().collect();
    let want_b: Vec<(u64, u64)> = model_b.into_iter().collect();
    assert_eq!(tree::mappings(&mut pages, a).unwrap(), want_a);
    assert_eq!(tree::mappings(&mut pages, b).unwrap(), want_b);
    // a fresh cache reads everything back from the store
    let mut fresh = SledPages::new(src, 16 * PAGE_MEMORY as u64, pages.next_id());
    assert_eq!(tree::mappings(&mut fresh, a).unwrap(), want_a);
    assert_eq!(tree::mappings(&mut fresh, b).unwrap(), want_b);
    assert_eq!(fresh.refs(a.page).unwrap(), 1);
}

#[test]
fn a_failed_commit_keeps_its_pages_pinned() {
    let store = MemStore::new();
    let src: Arc<dyn MetaStore> = Arc::new(store.clone());
    let mut pages = SledPages::new(src, 16 * PAGE_MEMORY as u64, 1);
    let mut space = SpaceMap::new(1 << 16);
    let mut a = Root::EMPTY;
    for l in 0..512 * 40 {
        let c = space.allocate().unwrap();
        tree::map(&mut pages, &mut space, &mut a, l, c).unwrap();
    }
    let mut changes = Vec::new();
    pages.take_changes(&mut changes);
    pages.abort_commit();
    // nothing reached the store, yet every page is still readable
    assert_eq!(tree::mappings(&mut pages, a).unwrap().len(), 512 * 40);
    commit(&mut pages, &store);
    let mut changes2 = Vec::new();
    pages.take_changes(&mut changes2);
    pages.end_commit();
    assert!(changes2.is_empty(), "{} changes left", changes2.len());
}

/// Logical chunk `l` through [`SledPages::slot`], as the data path reads it.
fn slot_lookup(pages: &mut SledPages, root: Root, l: u64) -> Option<u64> {
    let mut id = root.page;
    for level in (0..root.depth).rev() {
        let i = ((l >> (9 * u32::from(level))) & 511) as usize;
        match pages.slot(id, level, i).unwrap() {
            None => return None,
            Some(v) if level == 0 => return Some(v),
            Some(child) => id = child,
        }
    }
    None
}

/// A tree four times the decoded tier reads without a store `get` once
/// every page was read once: the encoded tier holds it, slots are read
/// from the encoded bytes (issue 13: metadata larger than the cache).
#[test]
fn a_tree_larger_than_the_decoded_tier_reads_from_the_encoded_tier() {
    let store = MemStore::new();
    let src: Arc<dyn MetaStore> = Arc::new(store.clone());
    let cache = 1u64 << 20;
    let decoded_pages = CacheSplit::of(cache).decoded / PAGE_MEMORY;
    let leaves = 4 * decoded_pages as u64;
    let mut pages = SledPages::new(Arc::clone(&src), cache, 1);
    let mut space = SpaceMap::new(leaves * 512);
    let mut root = Root::EMPTY;
    for l in 0..leaves * 512 {
        let c = space.allocate().unwrap();
        tree::map(&mut pages, &mut space, &mut root, l, c).unwrap();
        if l % 20_000 == 0 {
            commit(&mut pages, &store);
        }
    }
    commit(&mut pages, &store);
    let mut fresh = SledPages::new(src, cache, pages.next_id());
    let mut x = 11u64;
    let mut order: Vec<u64> = (0..leaves * 512).step_by(97).collect();
    for &l in &order {
        assert_eq!(slot_lookup(&mut fresh, root, l), Some(l));
    }
    let first = store.gets();
    assert!(first >= leaves, "every leaf was read once: {first} gets");
    // again, in another order
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, usize::try_from(x % (i as u64 + 1)).expect("at most i"));
    }
    for &l in &order {
        assert_eq!(slot_lookup(&mut fresh, root, l), Some(l));
    }
    assert_eq!(store.gets(), first, "no store read the second time");
    let (dec, enc) = (fresh.stats(), fresh.encoded_stats());
    assert!(dec.pages <= decoded_pages, "decoded tier within bounds");
    assert!(enc.pages as u64 > leaves, "encoded tier holds the tree");
    assert!(
        (dec.bytes + enc.bytes) as u64 <= cache,
        "both tiers within the cache"
    );
}

/// Remembered page counts stay within their share of the cache however
/// many pages are walked, and a count changed but not committed is never
/// forgotten (the store does not hold it yet).
#[test]
fn remembered_page_counts_are_bounded_and_keep_changes() {
    let store = MemStore::new();
    let src: Arc<dyn MetaStore> = Arc::new(store.clone());
    let cache = 256u64 << 10;
    let bound = CacheSplit::of(cache).refs / 32;
    let mut pages = SledPages::new(src, cache, 1);
    let ids: Vec<PageId> = (0..3 * bound).map(|_| pages.allocate().unwrap()).collect();
    commit(&mut pages, &store);
    pages.set_refs(ids[0], 3).unwrap();
    let mut changes = Vec::new();
    pages.take_changes(&mut changes);
    pages.set_refs(ids[1], 2).unwrap();
    for &id in &ids {
        assert!(pages.refs(id).unwrap() >= 1);
        assert!(
            pages.remembered_refs() <= bound + 2,
            "{} remembered",
            pages.remembered_refs()
        );
    }
    assert_eq!(
        pages.refs(ids[0]).unwrap(),
        3,
        "count in a running commit kept"
    );
    assert_eq!(pages.refs(ids[1]).unwrap(), 2, "uncommitted count kept");
    store.commit(changes).unwrap();
    pages.end_commit();
    commit(&mut pages, &store);
    let mut fresh = SledPages::new(Arc::new(store.clone()), cache, pages.next_id());
    assert_eq!(fresh.refs(ids[0]).unwrap(), 3);
    assert_eq!(fresh.refs(ids[1]).unwrap(), 2);
}
