//! Bad input gives a typed, clear error and leaves the pool directory
//! exactly as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::narrow::LowByte;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig, PoolErrorKind};

fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// Every file under `dir`: its bytes (small pools only).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn assert_same(before: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    let after = contents(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "file set changed"
    );
    for (k, v) in before {
        assert!(after[k] == *v, "{k} changed");
    }
}

/// A closed pool with one volume holding data over many commits.
fn make_pool(dir: &Path) {
    let pool = Pool::create(
        dir,
        &PoolConfig {
            chunk_size: 4096,
            capacity_bytes: 4096 * 4096,
            low_water_pct: 90,
        },
    )
    .unwrap();
    pool.create_volume("v", 1 << 24, 512).unwrap();
    let v = pool.open_volume("v").unwrap();
    for i in 0..600u64 {
        v.write(i * 16, &[i.low_byte(); 512], false).unwrap();
        if i % 20 == 0 {
            v.flush().unwrap();
        }
    }
    drop(v);
    pool.close().unwrap();
}

fn db_len(dir: &Path) -> usize {
    let b = std::fs::read(dir.join("meta/db")).unwrap();
    b.iter().rposition(|&x| x != 0).unwrap() + 1
}

#[test]
fn corrupt_sled_database_is_refused_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let db = dir.join("meta/db");
    let mut b = std::fs::read(&db).unwrap();
    let mid = db_len(&dir) / 2;
    for x in &mut b[mid..mid + 32] {
        *x ^= 0x5a;
    }
    std::fs::write(&db, &b).unwrap();
    let before = contents(&dir);
    let err = Pool::open(&dir).expect_err("corrupt pool opened");
    assert!(matches!(err.kind(), PoolErrorKind::Corrupt), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_same(&before, &dir);
}

#[test]
fn truncated_sled_database_is_refused_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let half = db_len(&dir) as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("meta/db"))
        .unwrap()
        .set_len(half)
        .unwrap();
    let before = contents(&dir);
    let err = Pool::open(&dir).expect_err("truncated pool opened");
    assert!(matches!(err.kind(), PoolErrorKind::Corrupt), "{err}");
    assert_same(&before, &dir);
    // An empty or missing db file is caught too.
    std::fs::write(dir.join("meta/db"), b"").unwrap();
    let before = contents(&dir);
    assert!(matches!(Pool::open(&dir), Err(e) if e.kind() == PoolErrorKind::Corrupt));
    assert_same(&before, &dir);
}

#[test]
fn short_data_file_is_refused_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let data = dir.join("data");
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let before = contents(&dir);
    match Pool::open(&dir) {
        Err(e) => assert_eq!(
            e.kind(),
            PoolErrorKind::DataFileShort {
                needed: len,
                actual: len - 4096
            },
            "{e}"
        ),
        Ok(_) => panic!("opened with a short data file"),
    }
    assert_same(&before, &dir);
}

#[test]
fn wrong_paths_are_refused_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let before = contents(t.path());
    assert!(matches!(
        Pool::open(&t.path().join("nope")),
        Err(e) if e.kind() == PoolErrorKind::NotAPool
    ));
    let f = t.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    let before_f = contents(t.path());
    assert!(matches!(Pool::open(&f), Err(e) if e.kind() == PoolErrorKind::NotAPool));
    assert_same(&before_f, t.path());
    std::fs::remove_file(&f).unwrap();
    assert_same(&before, t.path());
    let err = Pool::open(t.path()).err().unwrap();
    assert!(matches!(err.kind(), PoolErrorKind::NotAPool));
    assert!(err.to_string().contains("marker"), "{err}");
    assert_same(&before, t.path());
    // create refuses a non-empty directory
    let d = t.path().join("full");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("x"), b"y").unwrap();
    let before = contents(&d);
    assert!(matches!(
        Pool::create(&d, &PoolConfig::default()),
        Err(e) if e.kind() == PoolErrorKind::AlreadyExists
    ));
    assert_same(&before, &d);
    let bad = PoolConfig {
        chunk_size: 3000,
        ..PoolConfig::default()
    };
    assert!(matches!(
        Pool::create(&t.path().join("x"), &bad),
        Err(e) if e.kind() == PoolErrorKind::InvalidConfig
    ));
    assert!(!t.path().join("x").exists());
}

#[test]
fn pool_already_open_is_refused_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let pool = Pool::open(&dir).unwrap();
    let before = contents(&dir);
    let err = Pool::open(&dir).err().unwrap();
    assert!(
        err.kind()
            == PoolErrorKind::Locked {
                pid: std::process::id()
            },
        "{err}"
    );
    assert!(err.to_string().contains(&std::process::id().to_string()));
    assert_same(&before, &dir);
    drop(pool);
}

#[test]
fn lost_commits_after_a_crash_are_detected() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let pool = Pool::open(&dir).unwrap();
    let v = pool.open_volume("v").unwrap();
    v.write(0, &[9; 512], false).unwrap();
    v.flush().unwrap();
    // The directory as a crash now would leave it (seal says "open").
    let copy = t.path().join("crashed");
    std::fs::create_dir_all(copy.join("meta")).unwrap();
    for p in walk(&dir) {
        std::fs::copy(&p, copy.join(p.strip_prefix(&dir).unwrap())).unwrap();
    }
    drop(v);
    drop(pool);
    let half = db_len(&copy) as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(copy.join("meta/db"))
        .unwrap()
        .set_len(half)
        .unwrap();
    let err = Pool::open(&copy).expect_err("lost commits not noticed");
    assert!(matches!(err.kind(), PoolErrorKind::Corrupt), "{err}");
}

/// The seal names the commit before the last (written beside sled's
/// commit, not after it): it never names a commit sled may lack, and a cut
/// that lost the seal's last write still opens, with every commit intact.
#[test]
fn the_seal_trails_sled_by_one_commit() {
    use tcmud_core::pool::seal::Seal;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    make_pool(&dir);
    let pool = Pool::open(&dir).unwrap();
    // fresh chunks: each flush commits
    let v = pool.open_volume("v").unwrap();
    v.write(20_000, &[7; 512], false).unwrap();
    v.flush().unwrap();
    let first = Seal::read(&dir).unwrap().unwrap();
    v.write(20_016, &[8; 512], false).unwrap();
    v.flush().unwrap();
    let second = Seal::read(&dir).unwrap().unwrap();
    assert_eq!(second.seq, first.seq + 1);
    assert_eq!(second.closed_crc, None);
    // As a crash now would leave it, the seal's last write lost too.
    let copy = t.path().join("crashed");
    std::fs::create_dir_all(copy.join("meta")).unwrap();
    for p in walk(&dir) {
        std::fs::copy(&p, copy.join(p.strip_prefix(&dir).unwrap())).unwrap();
    }
    first.write(&copy, true).unwrap();
    drop(v);
    pool.close().unwrap();
    // the clean close names the last commit (no commit since `second`)
    let closed = Seal::read(&dir).unwrap().unwrap();
    assert_eq!(closed.seq, second.seq + 1, "the seal trailed by one commit");
    assert!(closed.closed_crc.is_some());
    let pool = Pool::open(&copy).unwrap();
    let v = pool.open_volume("v").unwrap();
    let mut b = [0u8; 512];
    v.read(20_016, &mut b).unwrap();
    assert_eq!(b, [8; 512], "the last commit is there");
    v.read(20_000, &mut b).unwrap();
    assert_eq!(b, [7; 512]);
}
