use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::pool::spacemap::SpaceMap;

/// Pages and chunks with the checks every test wants.
struct World {
    store: MemPages,
    space: SpaceMap,
}

impl World {
    fn new() -> World {
        World {
            store: MemPages::default(),
            space: SpaceMap::new(20_000),
        }
    }

    fn write(&mut self, root: &mut Root, l: u64) -> (u64, Replaced) {
        let c = self.space.allocate().expect("space");
        let r = map(&mut self.store, &mut self.space, root, l, c).expect("map");
        (c, r)
    }

    fn lookup(&mut self, root: Root, l: u64) -> Option<u64> {
        lookup(&mut self.store, root, l).expect("lookup")
    }

    /// Page counts = parents, chunk counts = leaves, no page unreachable.
    fn check_refs(&mut self, roots: &[Root]) -> BTreeMap<u64, u32> {
        let mut parents: HashMap<PageId, u32> = HashMap::new();
        let mut chunk_refs: BTreeMap<u64, u32> = BTreeMap::new();
        let mut stack = Vec::new();
        for r in roots.iter().filter(|r| r.page != 0) {
            *parents.entry(r.page).or_default() += 1;
            stack.push((r.page, r.depth - 1));
        }
        let mut seen = BTreeSet::new();
        while let Some((id, level)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let page = self.store.get(id).expect("reachable page exists");
            assert_eq!(page.level(), level, "page {id}");
            for (_, v) in page.iter() {
                if level == 0 {
                    *chunk_refs.entry(v).or_default() += 1;
                } else {
                    *parents.entry(v).or_default() += 1;
                    stack.push((v, level - 1));
                }
            }
        }
        let live = self.store.ids();
        assert_eq!(
            live,
            seen.iter().copied().collect::<Vec<_>>(),
            "leaked pages"
        );
        for id in live {
            assert_eq!(
                self.store.refs(id),
                Ok(parents[&id]),
                "refcount of page {id}"
            );
        }
        for (&c, &n) in &chunk_refs {
            assert_eq!(self.space.count(c), Ok(n), "refcount of chunk {c}");
        }
        assert_eq!(self.space.used_chunks(), chunk_refs.len() as u64);
        chunk_refs
    }
}

#[test]
fn map_lookup_and_growth() {
    let mut w = World::new();
    let mut r = Root::EMPTY;
    assert_eq!(w.lookup(r, 0), None);
    let (a, rep) = w.write(&mut r, 5);
    assert_eq!(rep, Replaced::default());
    assert_eq!((r.depth, w.store.ids().len()), (1, 1));
    let (b, _) = w.write(&mut r, 512 * 512 + 3);
    assert_eq!(r.depth, 3);
    // old leaf under a new level-1 and level-2 page, plus a new path of 2
    assert_eq!(w.store.ids().len(), 5);
    assert_eq!(w.lookup(r, 5), Some(a));
    assert_eq!(w.lookup(r, 512 * 512 + 3), Some(b));
    assert_eq!(w.lookup(r, 6), None);
    assert_eq!(w.lookup(r, u64::MAX), None);
    let (c, _) = w.write(&mut r, u64::MAX);
    assert_eq!(r.depth, 8);
    assert_eq!(w.lookup(r, u64::MAX), Some(c));
    assert_eq!(
        mappings(&mut w.store, r).unwrap(),
        vec![(5, a), (512 * 512 + 3, b), (u64::MAX, c)]
    );
    w.check_refs(&[r]);
}

#[test]
fn snapshot_shares_then_writes_shadow_the_path() {
    let mut w = World::new();
    let mut origin = Root::EMPTY;
    let chunks: Vec<u64> = (0..1000).map(|l| w.write(&mut origin, l).0).collect();
    assert!(exclusive(&mut w.store, &w.space, origin, 7).unwrap());
    let pages = w.store.ids().len();
    let mut snap = share(&mut w.store, origin).unwrap();
    assert_eq!(w.store.ids().len(), pages, "a snapshot copies no page");
    assert!(!exclusive(&mut w.store, &w.space, origin, 7).unwrap());
    assert!(!exclusive(&mut w.store, &w.space, snap, 7).unwrap());
    let (new, rep) = w.write(&mut snap, 7);
    assert_eq!(
        rep,
        Replaced {
            old: Some(chunks[7]),
            freed: false
        }
    );
    // root and one leaf shadowed: leaf's 512 chunks +1, then chunk 7 -1 again
    assert_eq!(w.store.ids().len(), pages + 2);
    assert_eq!(w.space.count(chunks[8]), Ok(2));
    assert_eq!(w.space.count(chunks[7]), Ok(1));
    assert_eq!(w.space.count(chunks[600]), Ok(1));
    assert!(exclusive(&mut w.store, &w.space, snap, 7).unwrap());
    assert!(!exclusive(&mut w.store, &w.space, snap, 8).unwrap());
    // the origin owns its root and leaf 0 alone again, not leaf 1
    assert!(exclusive(&mut w.store, &w.space, origin, 7).unwrap());
    assert!(!exclusive(&mut w.store, &w.space, origin, 600).unwrap());
    assert_eq!(w.lookup(origin, 7), Some(chunks[7]));
    assert_eq!(w.lookup(snap, 7), Some(new));
    w.check_refs(&[origin, snap]);
}

#[test]
fn unmap_releases_empty_pages() {
    let mut w = World::new();
    let mut r = Root::EMPTY;
    let (a, _) = w.write(&mut r, 3);
    w.write(&mut r, 700);
    assert_eq!(w.store.ids().len(), 3);
    assert_eq!(
        unmap(&mut w.store, &mut w.space, &mut r, 3).unwrap(),
        Replaced {
            old: Some(a),
            freed: true
        }
    );
    assert_eq!(w.store.ids().len(), 2);
    assert_eq!(
        unmap(&mut w.store, &mut w.space, &mut r, 3).unwrap(),
        Replaced::default()
    );
    unmap(&mut w.store, &mut w.space, &mut r, 700).unwrap();
    assert_eq!(r.page, 0);
    assert!(w.store.ids().is_empty());
    assert_eq!(w.space.take_freed().len(), 2);
}

#[test]
fn incremental_delete_frees_only_what_the_volume_owned() {
    let mut w = World::new();
    let mut origin = Root::EMPTY;
    let chunks: Vec<u64> = (0..3000).map(|l| w.write(&mut origin, l).0).collect();
    let mut snap = share(&mut w.store, origin).unwrap();
    let rewritten: Vec<u64> = (0..600).map(|l| w.write(&mut snap, l).0).collect();
    let mut job = delete_job(snap);
    let mut freed = Vec::new();
    let mut steps = 0;
    loop {
        let out = delete_step(&mut w.store, &mut w.space, &mut job, 1).unwrap();
        assert!(out.work <= 1);
        steps += 1;
        freed.extend(out.freed);
        w.check_refs(&[origin, job.root]);
        if out.done {
            break;
        }
    }
    // two exclusively owned leaves (slots 0..1024 shadowed), the shared
    // leaves dropped one by one, and the root
    assert!(steps >= 3, "{steps} steps");
    freed.sort_unstable();
    let mut want = rewritten.clone();
    want.sort_unstable();
    assert_eq!(freed, want);
    for (l, c) in chunks.iter().enumerate() {
        assert_eq!(w.lookup(origin, l as u64), Some(*c));
    }
    let mut job = delete_job(origin);
    let out = delete_step(&mut w.store, &mut w.space, &mut job, 100).unwrap();
    assert!(out.done);
    assert_eq!(out.freed.len(), 3000);
    assert!(w.store.ids().is_empty());
}

#[test]
fn hundreds_of_sharers_count_through_the_side_map() {
    let mut w = World::new();
    let mut origin = Root::EMPTY;
    let (a, _) = w.write(&mut origin, 0);
    w.write(&mut origin, 1);
    let mut snaps = Vec::new();
    for _ in 0..300 {
        let mut s = share(&mut w.store, origin).unwrap();
        // a write to slot 1 copies the leaf: chunk `a` gains a leaf each time
        w.write(&mut s, 1);
        snaps.push(s);
    }
    assert_eq!(w.space.count(a), Ok(301));
    assert_eq!(w.space.overflow().get(&a), Some(&301));
    let mut roots = snaps.clone();
    roots.push(origin);
    w.check_refs(&roots);
    for s in snaps {
        let mut job = delete_job(s);
        while !delete_step(&mut w.store, &mut w.space, &mut job, 1)
            .unwrap()
            .done
        {}
    }
    assert_eq!(w.space.count(a), Ok(1));
    assert!(w.space.overflow().is_empty());
    w.check_refs(&[origin]);
}

#[test]
fn damaged_trees_give_errors_not_panics() {
    let mut w = World::new();
    let mut r = Root::EMPTY;
    w.write(&mut r, 600);
    // the root names a page that is gone
    let leaf = w.store.get(r.page).unwrap().get(1).unwrap();
    w.store.free(leaf).unwrap();
    assert_eq!(
        lookup(&mut w.store, r, 600),
        Err(TreeError::MissingPage(leaf))
    );
    assert!(unmap(&mut w.store, &mut w.space, &mut r, 600).is_err());
    // a leaf where an interior page belongs
    w.store.put(r.page, Page::leaf()).unwrap();
    let deep = Root {
        page: r.page,
        depth: 3,
    };
    assert!(matches!(
        lookup(&mut w.store, deep, 0),
        Err(TreeError::WrongLevel { .. })
    ));
    for depth in [0, 9, 255] {
        let mut bad = Root {
            page: r.page,
            depth,
        };
        assert_eq!(
            lookup(&mut w.store, bad, 0),
            Err(TreeError::BadDepth(depth))
        );
        let mapped = map(&mut w.store, &mut w.space, &mut bad, 0, 0);
        assert_eq!(mapped, Err(TreeError::BadDepth(depth)));
        let mut job = delete_job(bad);
        assert!(delete_step(&mut w.store, &mut w.space, &mut job, 4).is_err());
        assert!(mappings(&mut w.store, bad).is_err());
    }
    let mut job = delete_job(Root {
        page: 12345,
        depth: 2,
    });
    assert!(delete_step(&mut w.store, &mut w.space, &mut job, 4).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Create,
    Write(usize, u64),
    Unmap(usize, u64),
    Snapshot(usize),
    Delete(usize),
    Step(usize, usize),
    Commit,
}

fn logical() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..1100,
        3 => (0u64..3, 0u64..600).prop_map(|(a, b)| a * 512 * 512 + b),
        1 => (0u64..4).prop_map(|b| u64::MAX - b),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Create),
        10 => (any::<usize>(), logical()).prop_map(|(v, l)| Op::Write(v, l)),
        2 => (any::<usize>(), logical()).prop_map(|(v, l)| Op::Unmap(v, l)),
        2 => any::<usize>().prop_map(Op::Snapshot),
        1 => any::<usize>().prop_map(Op::Delete),
        3 => (any::<usize>(), 1usize..4).prop_map(|(j, n)| Op::Step(j, n)),
        1 => Just(Op::Commit),
    ]
}

fn pick<T: Copy>(keys: &BTreeMap<u32, T>, i: usize) -> Option<(u32, T)> {
    let n = keys.len();
    (n > 0)
        .then(|| keys.iter().nth(i % n).map(|(k, v)| (*k, *v)))
        .flatten()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The tree against a `BTreeMap<(volume, logical), chunk>` with snapshots,
    /// writes to shared chunks, unmaps and interleaved incremental deletes.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        let mut vols: BTreeMap<u32, Root> = BTreeMap::new();
        let mut model: BTreeMap<(u32, u64), u64> = BTreeMap::new();
        let mut jobs: Vec<DeleteJob> = Vec::new();
        let mut next = 0u32;
        vols.insert(next, Root::EMPTY);
        for op in ops {
            let mut freed: Vec<u64> = Vec::new();
            match op {
                Op::Create => {
                    next += 1;
                    vols.insert(next, Root::EMPTY);
                }
                Op::Write(v, l) => if let Some((v, mut root)) = pick(&vols, v) {
                    let owned = exclusive(&mut w.store, &w.space, root, l).unwrap();
                    let mapped = model.get(&(v, l)).copied();
                    if owned {
                        let c = mapped.expect("exclusive implies mapped");
                        let sharers = model.values().filter(|x| **x == c).count();
                        prop_assert_eq!(sharers, 1, "exclusive chunk mapped elsewhere");
                    } else {
                        // without deletes in flight, only other volumes can share
                        if let (true, Some(c)) = (jobs.is_empty(), mapped) {
                            prop_assert!(model.values().filter(|x| **x == c).count() > 1);
                        }
                        let (c, rep) = w.write(&mut root, l);
                        prop_assert_eq!(rep.old, mapped);
                        if rep.freed { freed.extend(rep.old); }
                        model.insert((v, l), c);
                        vols.insert(v, root);
                    }
                },
                Op::Unmap(v, l) => if let Some((v, mut root)) = pick(&vols, v) {
                    let rep = unmap(&mut w.store, &mut w.space, &mut root, l).unwrap();
                    prop_assert_eq!(rep.old, model.remove(&(v, l)));
                    if rep.freed { freed.extend(rep.old); }
                    vols.insert(v, root);
                },
                Op::Snapshot(v) => if let Some((v, root)) = pick(&vols, v) {
                    next += 1;
                    vols.insert(next, share(&mut w.store, root).unwrap());
                    let copy: Vec<(u64, u64)> =
                        model.range((v, 0)..=(v, u64::MAX)).map(|((_, l), c)| (*l, *c)).collect();
                    for (l, c) in copy {
                        model.insert((next, l), c);
                    }
                },
                Op::Delete(v) => if let Some((v, root)) = pick(&vols, v) {
                    vols.remove(&v);
                    model.retain(|(x, _), _| *x != v);
                    jobs.push(delete_job(root));
                },
                Op::Step(j, n) => if !jobs.is_empty() {
                    let j = j % jobs.len();
                    let out = delete_step(&mut w.store, &mut w.space, &mut jobs[j], n).unwrap();
                    prop_assert!(out.work <= n);
                    freed.extend(out.freed);
                    if out.done {
                        jobs.remove(j);
                    }
                },
                Op::Commit => {
                    let f = w.space.take_freed();
                    w.space.release(&f);
                }
            }
            for (v, root) in &vols {
                let got = mappings(&mut w.store, *root).unwrap();
                let want: Vec<(u64, u64)> =
                    model.range((*v, 0)..=(*v, u64::MAX)).map(|((_, l), c)| (*l, *c)).collect();
                prop_assert_eq!(got, want, "volume {}", v);
            }
            let roots: Vec<Root> = vols.values().copied().chain(jobs.iter().map(|j| j.root)).collect();
            let refs = w.check_refs(&roots);
            for c in freed {
                prop_assert!(!refs.contains_key(&c), "freed chunk {} still referenced", c);
                prop_assert_eq!(w.space.count(c), Ok(0));
            }
        }
        // delete everything: no page and no chunk reference may remain
        for root in std::mem::take(&mut vols).into_values() {
            jobs.push(delete_job(root));
        }
        for mut job in jobs {
            while !delete_step(&mut w.store, &mut w.space, &mut job, 2).unwrap().done {}
        }
        prop_assert!(w.store.ids().is_empty(), "leaked pages {:?}", w.store.ids());
        prop_assert_eq!(w.space.used_chunks(), 0);
    }
}
