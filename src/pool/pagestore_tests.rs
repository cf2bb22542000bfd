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
