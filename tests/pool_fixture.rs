//! The checked-in pool written with metadata format 1 must keep opening and
//! reading back the bytes it was made with.

use std::path::{Path, PathBuf};

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, VolumeKind};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pool-format1")
}

/// Byte `i` of block `b` of the fixture's volume `v0`.
fn pattern(b: u64, i: usize) -> u8 {
    (b as usize * 31 + i * 7) as u8 | 1
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
