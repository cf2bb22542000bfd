//! The checked-in pool written with metadata format 1 must keep opening and
//! reading back the bytes it was made with.

use std::path::{Path, PathBuf};

use crate::util::narrow::{ix, LowByte};
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, VolumeKind};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pool-format1")
}

/// Byte `i` of block `b` of the fixture's volume `v0`.
fn pattern(b: u64, i: usize) -> u8 {
    (ix(b) * 31 + i * 7).low_byte() | 1
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

// The fixture was written by the format-1 code (commit "pool: check in a
// format-1 pool fixture"): chunk size 4 KiB, capacity 64 chunks; volume v0
// (64 KiB, 512-byte blocks) with `pattern` written to blocks 0, 9, 40, 41 and
// 100, then snapshot s0, then 0xee over block 0 of v0, then clone c0 of s0.
// Opening it runs the 1 -> 2 migration on the copy.

#[test]
fn format1_fixture_opens_and_reads_known_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pool");
    copy_dir(&fixture(), &dir);
    std::fs::remove_file(dir.join("lock")).ok();
    std::fs::write(dir.join("lock"), b"").unwrap();
    let pool = Pool::open(&dir).unwrap();
    assert!(pool.check().unwrap().is_clean());
    let names: Vec<_> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| {
            assert_eq!(v.origin, None, "format-1 records have no origin");
            (v.name, v.kind)
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("c0".to_string(), VolumeKind::Volume),
            ("s0".to_string(), VolumeKind::Snapshot),
            ("v0".to_string(), VolumeKind::Volume)
        ]
    );
    let mut buf = vec![0u8; 512];
    for name in ["v0", "s0", "c0"] {
        let v = pool.open_volume(name).unwrap();
        for b in [9u64, 40, 41, 100] {
            v.read(b, &mut buf).unwrap();
            assert!(
                buf.iter().enumerate().all(|(i, &x)| x == pattern(b, i)),
                "{name} block {b}"
            );
        }
        v.read(0, &mut buf).unwrap();
        let want = if name == "v0" { 0xee } else { pattern(0, 0) };
        assert_eq!(buf[0], want, "{name} block 0");
        v.read(1, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0));
    }
    // chunks 0 (and its copy made by the write after the snapshot), 1, 5, 12
    assert_eq!(pool.usage().unwrap().allocated_chunks, 5);
}

fn fixture2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pool-format2")
}

/// Byte `i` of block `b` of the format-2 fixture's volume `v0`.
fn pattern2(b: u64, i: usize) -> u8 {
    (ix(b) * 13 + i * 5).low_byte() | 2
}

/// Writes the format-2 fixture (run once with the format-2 code:
/// `TCMUD_FIXTURE_OUT=tests/fixtures/pool-format2 cargo test --test
/// integration pool::fixture::make_format2_fixture -- --ignored`): chunk size 4 KiB,
/// capacity 256 chunks; volume v0 (1 MiB, 512-byte blocks) with `pattern2`
/// in blocks 0, 9, 40, 41, 100 and 2047; snapshot s0; 0xee over block 0 of
/// v0; clone c0 of s0 with 0xcc over block 100; volume gone (64 KiB, fully
/// written) deleted, leaving free chunks.
#[test]
#[ignore]
fn make_format2_fixture() {
    use tcmud_core::pool::{PoolConfig, PoolOptions};
    let out = PathBuf::from(std::env::var("TCMUD_FIXTURE_OUT").expect("TCMUD_FIXTURE_OUT"));
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 256 * 4096,
        low_water_pct: 90,
    };
    let opts = PoolOptions {
        format: 2,
        ..PoolOptions::default()
    };
    let pool = Pool::create_opts(&out, &cfg, &opts).unwrap();
    pool.create_volume("gone", 64 << 10, 512).unwrap();
    let g = pool.open_volume("gone").unwrap();
    g.write(0, &vec![0x77u8; 64 << 10], false).unwrap();
    drop(g);
    pool.create_volume("v0", 1 << 20, 512).unwrap();
    let v = pool.open_volume("v0").unwrap();
    for b in [0u64, 9, 40, 41, 100, 2047] {
        let buf: Vec<u8> = (0..512).map(|i| pattern2(b, i)).collect();
        v.write(b, &buf, false).unwrap();
    }
    pool.snapshot("v0", "s0").unwrap();
    v.write(0, &[0xee; 512], false).unwrap();
    pool.clone_snapshot("s0", "c0").unwrap();
    let c = pool.open_volume("c0").unwrap();
    c.write(100, &[0xcc; 512], false).unwrap();
    drop((v, c));
    pool.delete_volume("gone").unwrap();
    pool.close().unwrap();
}

#[test]
fn format2_fixture_migrates_to_format3_with_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pool");
    copy_dir(&fixture2(), &dir);
    std::fs::write(dir.join("lock"), b"").unwrap();
    let pool = Pool::open(&dir).unwrap();
    let r = pool.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    let vols: Vec<_> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.kind, v.origin, v.allocated_bytes / 4096))
        .collect();
    assert_eq!(
        vols,
        vec![
            ("c0".into(), VolumeKind::Volume, Some("s0".into()), 5),
            ("s0".into(), VolumeKind::Snapshot, Some("v0".into()), 5),
            ("v0".into(), VolumeKind::Volume, None, 5),
        ]
    );
    let mut buf = vec![0u8; 512];
    for name in ["v0", "s0", "c0"] {
        let v = pool.open_volume(name).unwrap();
        for b in [0u64, 9, 40, 41, 100, 2047] {
            v.read(b, &mut buf).unwrap();
            let want: Vec<u8> = match (name, b) {
                ("v0", 0) => vec![0xee; 512],
                ("c0", 100) => vec![0xcc; 512],
                _ => (0..512).map(|i| pattern2(b, i)).collect(),
            };
            assert!(buf == want, "{name} block {b}");
        }
        v.read(1, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0));
    }
    // logical chunks 0, 1, 5, 12, 255 of s0; v0's copy of 0; c0's copy of 12
    assert_eq!(pool.usage().unwrap().allocated_chunks, 7);
    // the migrated pool keeps working: snapshots share, writes copy
    pool.snapshot("c0", "s1").unwrap();
    let c = pool.open_volume("c0").unwrap();
    c.write(9, &[0x11; 512], false).unwrap();
    drop(c);
    pool.delete_volume("s0").unwrap();
    assert!(pool.check().unwrap().is_clean());
    pool.close().unwrap();
    let seal = std::fs::read_to_string(dir.join("meta.seal")).unwrap();
    assert!(seal.contains("format 3\n"), "{seal}");
}
