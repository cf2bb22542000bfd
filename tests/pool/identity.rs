//! Volume identities (VPD 80h/83h of the LUN serving a volume): created
//! with the volume, stored in the pool, unique, kept across reopen and
//! rename; an older volume without one gets one at its first use.

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::format::{self, Key as MetaKey};
use tcmud_core::pool::store::{MetaStore, SledStore};
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

fn cfg() -> PoolConfig {
    PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 256 * 4096,
        low_water_pct: 90,
    }
}

fn pool_of_format(f: u32) -> (Pool, MemStore, CrashIo) {
    let store = MemStore::new();
    let data = CrashIo::new();
    let opts = PoolOptions {
        format: f,
        ..PoolOptions::default()
    };
    let pool = Pool::create_with_opts(
        &cfg(),
        Box::new(store.clone()),
        Box::new(data.clone()),
        &opts,
    )
    .unwrap();
    (pool, store, data)
}

fn ident_keys(store: &MemStore) -> usize {
    store
        .load_all()
        .unwrap()
        .iter()
        .filter(|(k, _)| matches!(format::parse_key(k), Some(MetaKey::Ident(_))))
        .count()
}

#[test]
fn identities_are_unique_stable_and_survive_rename() {
    for f in [format::LEGACY_FORMAT, format::TREE_FORMAT] {
        let (pool, store, data) = pool_of_format(f);
        pool.create_volume("a", 1 << 20, 512).unwrap();
        pool.create_volume("b", 1 << 20, 512).unwrap();
        let a = pool.volume_identity("a").unwrap();
        let b = pool.volume_identity("b").unwrap();
        assert_ne!(a, b, "format {f}: two volumes differ");
        assert_ne!(a, [0; 16]);
        pool.snapshot("a", "snap").unwrap();
        pool.clone_snapshot("snap", "clone").unwrap();
        let s = pool.volume_identity("snap").unwrap();
        let c = pool.volume_identity("clone").unwrap();
        assert!(
            s != a && c != a && c != s,
            "format {f}: snapshot, clone own ids"
        );
        let listed: Vec<_> = pool
            .list_volumes()
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.identity))
            .collect();
        assert_eq!(
            listed,
            [
                ("a".to_string(), Some(a)),
                ("b".to_string(), Some(b)),
                ("clone".to_string(), Some(c)),
                ("snap".to_string(), Some(s)),
            ],
            "format {f}: listed"
        );
        pool.rename_volume("a", "renamed").unwrap();
        assert_eq!(
            pool.volume_identity("renamed").unwrap(),
            a,
            "rename keeps it"
        );
        assert!(pool.check().unwrap().is_clean(), "format {f}");
        pool.close().unwrap();

        let pool = Pool::open_with(Box::new(store.clone()), Box::new(data)).unwrap();
        assert_eq!(pool.volume_identity("renamed").unwrap(), a, "after reopen");
        assert_eq!(pool.volume_identity("b").unwrap(), b);
        assert_eq!(pool.volume_identity("snap").unwrap(), s);
        assert_eq!(ident_keys(&store), 4);
        pool.delete_volume("b").unwrap();
        assert_eq!(ident_keys(&store), 3, "deleted with its volume");
        assert!(pool.check().unwrap().is_clean(), "format {f} after delete");
    }
}

#[test]
fn a_volume_from_an_older_pool_gets_an_identity_at_first_use_and_keeps_it() {
    let (pool, store, data) = pool_of_format(format::TREE_FORMAT);
    pool.create_volume("old", 1 << 20, 512).unwrap();
    pool.close().unwrap();
    // As pools written before identities were: no `I` key.
    let keys: Vec<_> = store
        .load_all()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.first() == Some(&format::TAG_IDENT))
        .map(|(k, _)| (k, None))
        .collect();
    assert_eq!(keys.len(), 1);
    store.commit(keys).unwrap();
    assert_eq!(ident_keys(&store), 0);

    let pool = Pool::open_with(Box::new(store.clone()), Box::new(data.clone())).unwrap();
    assert_eq!(
        pool.list_volumes().unwrap()[0].identity,
        None,
        "listing creates none"
    );
    assert_eq!(ident_keys(&store), 0);
    let id = pool.volume_identity("old").unwrap();
    assert_eq!(pool.volume_identity("old").unwrap(), id);
    assert_eq!(ident_keys(&store), 1, "stored at once");
    pool.close().unwrap();
    let pool = Pool::open_with(Box::new(store.clone()), Box::new(data)).unwrap();
    assert_eq!(
        pool.volume_identity("old").unwrap(),
        id,
        "the same after reopen"
    );
}

#[test]
fn a_stored_identity_of_the_wrong_length_is_corruption_not_replaced() {
    let (pool, store, data) = pool_of_format(format::TREE_FORMAT);
    pool.create_volume("v", 1 << 20, 512).unwrap();
    pool.close().unwrap();
    let key = store
        .load_all()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.first() == Some(&format::TAG_IDENT))
        .unwrap()
        .0;
    store
        .commit(vec![(key.clone(), Some(vec![1, 2, 3]))])
        .unwrap();
    let pool = Pool::open_with(Box::new(store.clone()), Box::new(data)).unwrap();
    let e = pool.volume_identity("v").unwrap_err().to_string();
    assert!(e.contains("expected 16 bytes, got 3"), "{e}");
    let kv = store.load_all().unwrap();
    assert_eq!(
        kv.iter().find(|(k, _)| *k == key).unwrap().1,
        vec![1, 2, 3],
        "left as it was"
    );
}

#[test]
fn repair_keeps_identities() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = Pool::create(&dir, &cfg()).unwrap();
    pool.create_volume("v", 1 << 20, 512).unwrap();
    let id = pool.volume_identity("v").unwrap();
    let v = pool.open_volume("v").unwrap();
    v.write(0, &[7u8; 512], false).unwrap();
    drop(v);
    pool.close().unwrap();
    // Zeroed chunk counts: repair rebuilds every key from the mappings.
    let store = SledStore::open(&dir.join("meta")).unwrap();
    let damage: Vec<_> = store
        .load_all()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k[0] == format::TAG_SPACE)
        .map(|(k, v)| (k, Some(vec![0u8; v.len()])))
        .collect();
    assert!(!damage.is_empty());
    store.commit(damage).unwrap();
    store.close().unwrap();
    // As after a crash: no seal, so the open verifies (and reports).
    std::fs::remove_file(dir.join("meta.seal")).unwrap();
    let pool = Pool::open_for_repair(&dir).unwrap();
    let r = pool.repair().unwrap();
    assert!(!r.before.is_clean(), "the damage was seen");
    assert!(pool.check().unwrap().is_clean());
    assert_eq!(pool.volume_identity("v").unwrap(), id);
    pool.close().unwrap();
    let store = SledStore::open(&dir.join("meta")).unwrap();
    let idents = store
        .load_all()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k[0] == format::TAG_IDENT)
        .count();
    assert_eq!(idents, 1, "the identity key survived the rewrite");
}
