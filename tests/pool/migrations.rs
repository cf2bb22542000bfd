//! Format versions: forward migration 1 -> 2, refusal of newer formats.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::narrow::LowByte;
use tcmud_core::pool::format::{self, VolumeKind, CURRENT_FORMAT, KEY_FORMAT, NEWEST_FORMAT};
use tcmud_core::pool::seal::{meta_crc, Seal};
use tcmud_core::pool::store::{MetaStore, SledStore};
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolErrorKind, PoolOptions};

/// Every file under `dir` with its length and a hash of its bytes.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let bytes = std::fs::read(&e).unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        out.insert(
            e.strip_prefix(dir).unwrap().display().to_string(),
            (bytes.len(), h.finish()),
        );
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn format1_store_migrates_to_current() {
    let store = MemStore::new();
    let data = CrashIo::new();
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 1 << 20,
        low_water_pct: 90,
    };
    let pool = Pool::create_with(&cfg, Box::new(store.clone()), Box::new(data.clone())).unwrap();
    pool.create_volume("a", 8192, 512).unwrap();
    pool.close().unwrap();
    // Rewrite the catalog as format 1 wrote it (no origin) and mark format 1.
    let v1 = format::encode(&(1u64, 8192u64, 512u32, VolumeKind::Volume));
    store
        .commit(vec![
            (format::volume_key("a"), Some(v1)),
            (KEY_FORMAT.to_vec(), Some(1u32.to_be_bytes().to_vec())),
        ])
        .unwrap();
    let pool = Pool::open_with(Box::new(store.clone()), Box::new(data)).unwrap();
    let vols = pool.list_volumes().unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(
        (
            vols[0].size_bytes,
            vols[0].block_size,
            vols[0].origin.clone()
        ),
        (8192, 512, None)
    );
    let kv = store.load_all().unwrap();
    let f = kv.iter().find(|(k, _)| k.as_slice() == KEY_FORMAT).unwrap();
    assert_eq!(f.1, CURRENT_FORMAT.to_be_bytes().to_vec());
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn newer_format_is_refused_naming_both_versions_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    Pool::create(&dir, &PoolConfig::default())
        .unwrap()
        .close()
        .unwrap();
    {
        // What a newer tcmud would leave: its format in sled and in the seal.
        let store = SledStore::open(&dir.join("meta")).unwrap();
        store
            .commit(vec![(
                KEY_FORMAT.to_vec(),
                Some((CURRENT_FORMAT + 7).to_be_bytes().to_vec()),
            )])
            .unwrap();
        store.close().unwrap();
        let old = Seal::read(&dir).unwrap().unwrap();
        let crc = meta_crc(&dir.join("meta")).unwrap();
        Seal {
            format: CURRENT_FORMAT + 7,
            closed_crc: Some(crc),
            ..old
        }
        .write(&dir, true)
        .unwrap();
    }
    let before = snapshot_dir(&dir);
    let err = Pool::open(&dir).expect_err("newer format must not open");
    match err.kind() {
        PoolErrorKind::FormatTooNew { found, supported } => {
            assert_eq!((found, supported), (CURRENT_FORMAT + 7, NEWEST_FORMAT));
        }
        _ => panic!("wrong error {err}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&(CURRENT_FORMAT + 7).to_string()) && msg.contains(&NEWEST_FORMAT.to_string())
    );
    assert_eq!(before, snapshot_dir(&dir), "a refused open changes nothing");
}

#[test]
fn new_records_carry_their_origin() {
    let pool = Pool::create_with(
        &PoolConfig {
            chunk_size: 4096,
            capacity_bytes: 1 << 20,
            low_water_pct: 90,
        },
        Box::new(MemStore::new()),
        Box::new(CrashIo::new()),
    )
    .unwrap();
    pool.create_volume("a", 8192, 512).unwrap();
    pool.snapshot("a", "s").unwrap();
    pool.clone_snapshot("s", "c").unwrap();
    let o: Vec<_> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.origin))
        .collect();
    assert_eq!(
        o,
        vec![
            ("a".into(), None),
            ("c".into(), Some("s".into())),
            ("s".into(), Some("a".into()))
        ]
    );
}

#[test]
fn newer_format_in_sled_alone_is_refused_too() {
    // A pool whose seal is gone (or from format 1) still refuses a newer
    // format found in sled.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    Pool::create(&dir, &PoolConfig::default())
        .unwrap()
        .close()
        .unwrap();
    {
        let store = SledStore::open(&dir.join("meta")).unwrap();
        store
            .commit(vec![(
                KEY_FORMAT.to_vec(),
                Some((NEWEST_FORMAT + 1).to_be_bytes().to_vec()),
            )])
            .unwrap();
    }
    std::fs::remove_file(dir.join("meta.seal")).unwrap();
    assert!(matches!(
        Pool::open(&dir),
        Err(e) if e.kind() == PoolErrorKind::FormatTooNew { found: NEWEST_FORMAT + 1, supported: NEWEST_FORMAT }
    ));
}

/// Migration 0003 (format 2 -> 3) is one atomic commit: cut (the commit
/// fails), the store is still format 2 and whole; the next open runs it
/// again and every byte, snapshot and clone is there.
#[test]
fn a_cut_format3_migration_leaves_format2_and_reruns() {
    use tcmud_core::backend::BlockBackend;
    let store = MemStore::new();
    let data = CrashIo::new();
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 256 * 4096,
        low_water_pct: 90,
    };
    let f2 = PoolOptions {
        format: format::LEGACY_FORMAT,
        ..PoolOptions::default()
    };
    let pool =
        Pool::create_with_opts(&cfg, Box::new(store.clone()), Box::new(data.clone()), &f2).unwrap();
    pool.create_volume("v", 1 << 20, 512).unwrap();
    let v = pool.open_volume("v").unwrap();
    for b in 0..64u64 {
        v.write(b * 31, &[b.low_byte() + 1; 512], false).unwrap();
    }
    drop(v);
    pool.snapshot("v", "s").unwrap();
    pool.clone_snapshot("s", "c").unwrap();
    pool.close().unwrap();
    let before = store.load_all().unwrap();
    store.fail_commits(true);
    assert!(Pool::open_with(Box::new(store.clone()), Box::new(data.clone())).is_err());
    assert_eq!(
        store.load_all().unwrap(),
        before,
        "a cut migration changes nothing"
    );
    store.fail_commits(false);
    let pool = Pool::open_with(Box::new(store.clone()), Box::new(data)).unwrap();
    let f = store.get(KEY_FORMAT).unwrap().unwrap();
    assert_eq!(f, CURRENT_FORMAT.to_be_bytes().to_vec());
    assert_eq!(CURRENT_FORMAT, format::TREE_FORMAT);
    let mut buf = vec![0u8; 512];
    for name in ["v", "s", "c"] {
        let vol = pool.open_volume(name).unwrap();
        for b in 0..64u64 {
            vol.read(b * 31, &mut buf).unwrap();
            assert!(
                buf.iter().all(|&x| x == b.low_byte() + 1),
                "{name} block {}",
                b * 31
            );
        }
    }
    assert!(pool.check().unwrap().is_clean());
}
