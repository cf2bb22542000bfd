//! Pool basics on a real directory: create/open, volumes, thin reads,
//! partial first writes, discard, allocation status, out of space, events.

use crate::util::narrow::LowByte;
use tcmud_core::backend::{BackendError, BackendEvent, BlockBackend};
use tcmud_core::pool::{Pool, PoolConfig, PoolErrorKind, VolumeKind};

fn cfg(chunks: u64) -> PoolConfig {
    PoolConfig {
        chunk_size: 4096,
        capacity_bytes: chunks * 4096,
        low_water_pct: 75,
    }
}

#[test]
fn create_write_reopen_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pool");
    {
        let pool = Pool::create(&p, &PoolConfig::default()).unwrap();
        pool.create_volume("a", 1 << 20, 512).unwrap();
        let v = pool.open_volume("a").unwrap();
        let mut buf = vec![0xffu8; 4096];
        v.read(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "never-written reads as zeros");
        v.write(3, &[7u8; 512], false).unwrap();
        v.flush().unwrap();
        let u = pool.usage().unwrap();
        assert_eq!(u.allocated_chunks, 1);
        assert_eq!(u.volumes[0].allocated_bytes, 64 << 10);
        assert_eq!(u.volumes[0].size_bytes, 1 << 20);
    }
    let pool = Pool::open(&p).unwrap();
    let v = pool.open_volume("a").unwrap();
    let mut buf = vec![0xffu8; 4096];
    v.read(0, &mut buf).unwrap();
    assert!(buf[..1536].iter().all(|&b| b == 0));
    assert!(buf[1536..2048].iter().all(|&b| b == 7));
    assert!(buf[2048..].iter().all(|&b| b == 0));
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn second_open_names_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _pool = Pool::create(dir.path(), &cfg(16)).unwrap();
    match Pool::open(dir.path()) {
        Err(e) => assert_eq!(
            e.kind(),
            PoolErrorKind::Locked {
                pid: std::process::id()
            },
            "{e}"
        ),
        Ok(_) => panic!("opened twice"),
    }
}

#[test]
fn reused_chunk_never_shows_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(2)).unwrap();
    pool.create_volume("a", 8192, 512).unwrap();
    pool.create_volume("b", 8192, 512).unwrap();
    let a = pool.open_volume("a").unwrap();
    let b = pool.open_volume("b").unwrap();
    a.write(0, &[0xaa; 8192], false).unwrap();
    a.unmap(0, 16).unwrap();
    b.write(1, &[0xbb; 512], false).unwrap();
    let mut buf = vec![0u8; 8192];
    b.read(0, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|&x| x == 0));
    assert!(buf[512..1024].iter().all(|&x| x == 0xbb));
    assert!(buf[1024..].iter().all(|&x| x == 0));
    a.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    drop((a, b));
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn out_of_space_keeps_reads_overwrites_discards() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(4)).unwrap();
    pool.create_volume("a", 1 << 20, 4096).unwrap();
    let a = pool.open_volume("a").unwrap();
    for i in 0..4 {
        a.write(i, &[i.low_byte() + 1; 4096], false).unwrap();
    }
    assert_eq!(a.poll_event(), Some(BackendEvent::LowWaterMark));
    assert_eq!(a.poll_event(), None);
    assert!(matches!(
        a.write(10, &[9; 4096], false),
        Err(BackendError::OutOfSpace)
    ));
    a.write(1, &[0x55; 4096], true).unwrap();
    let mut buf = vec![0u8; 4096];
    a.read(1, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0x55));
    a.unmap(0, 1).unwrap();
    a.write(10, &[9; 4096], false).unwrap();
    a.read(10, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 9));
}

#[test]
fn allocation_runs_and_partial_discard() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(64)).unwrap();
    pool.create_volume("a", 64 * 4096, 512).unwrap();
    let a = pool.open_volume("a").unwrap();
    a.write(8 * 2, &[1; 4096 * 2], false).unwrap(); // chunks 2,3
    let s = a.allocation(0, 1000).unwrap();
    assert!(!s.mapped);
    assert_eq!(s.blocks, 16);
    let s = a.allocation(17, 1000).unwrap();
    assert!(s.mapped);
    assert_eq!(s.blocks, 15);
    let s = a.allocation(32, 1000).unwrap();
    assert!(!s.mapped);
    assert_eq!(s.blocks, 64 * 8 - 32);
    a.unmap(17, 2).unwrap(); // partial: zeroed in place
    let mut buf = vec![0u8; 4096];
    a.read(16, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|&x| x == 1));
    assert!(buf[512..1536].iter().all(|&x| x == 0));
    assert!(buf[1536..].iter().all(|&x| x == 1));
    a.write_zeroes(24, 8, true).unwrap(); // whole chunk 3 deallocated
    assert!(!a.allocation(24, 8).unwrap().mapped);
    assert!(matches!(
        a.read(64 * 8, &mut buf),
        Err(BackendError::OutOfRange { .. })
    ));
}

#[test]
fn snapshots_and_clones_copy_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(64)).unwrap();
    pool.create_volume("a", 16 * 4096, 4096).unwrap();
    let a = pool.open_volume("a").unwrap();
    a.write(0, &[1; 4096], false).unwrap();
    pool.snapshot("a", "s").unwrap();
    a.write(0, &[2; 4096], false).unwrap();
    pool.clone_snapshot("s", "c").unwrap();
    let s = pool.open_volume("s").unwrap();
    let c = pool.open_volume("c").unwrap();
    assert!(s.caps().read_only);
    assert!(matches!(
        s.write(0, &[3; 4096], false),
        Err(BackendError::ReadOnly)
    ));
    c.write(1, &[4; 4096], false).unwrap();
    let mut buf = vec![0u8; 4096];
    s.read(0, &mut buf).unwrap();
    assert_eq!(buf[0], 1);
    c.read(0, &mut buf).unwrap();
    assert_eq!(buf[0], 1);
    a.read(0, &mut buf).unwrap();
    assert_eq!(buf[0], 2);
    assert!(matches!(
        pool.delete_volume("s"),
        Err(e) if e.kind() == PoolErrorKind::VolumeBusy
    ));
    drop(s);
    pool.delete_volume("s").unwrap();
    c.read(0, &mut buf).unwrap();
    assert_eq!(buf[0], 1);
    let kinds: Vec<_> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("a".into(), VolumeKind::Volume),
            ("c".into(), VolumeKind::Volume)
        ]
    );
    assert_eq!(pool.usage().unwrap().allocated_chunks, 3);
    drop((a, c));
    pool.delete_volume("a").unwrap();
    pool.delete_volume("c").unwrap();
    assert_eq!(pool.usage().unwrap().allocated_chunks, 0);
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn resize_grow_and_forced_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(64)).unwrap();
    pool.create_volume("a", 4 * 4096, 512).unwrap();
    let a = pool.open_volume("a").unwrap();
    a.write(0, &[5; 4 * 4096], false).unwrap();
    assert!(matches!(
        pool.resize_volume("a", 4096, false),
        Err(e) if e.kind() == PoolErrorKind::ShrinkNotForced
    ));
    pool.resize_volume("a", 4096 + 1024, true).unwrap();
    assert_eq!(a.poll_event(), Some(BackendEvent::CapacityChanged));
    assert_eq!(a.caps().num_blocks, 10);
    assert_eq!(pool.usage().unwrap().allocated_chunks, 2);
    pool.resize_volume("a", 8 * 4096, false).unwrap();
    let mut buf = vec![0u8; 2 * 4096];
    a.read(0, &mut buf).unwrap();
    assert!(buf[..5120].iter().all(|&x| x == 5));
    assert!(
        buf[5120..].iter().all(|&x| x == 0),
        "shrunk tail reads zeros after growing"
    );
    pool.rename_volume("a", "b").unwrap();
    assert!(matches!(
        pool.open_volume("a"),
        Err(e) if e.kind() == PoolErrorKind::NoSuchVolume
    ));
    drop(a);
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn close_then_reopen_in_a_loop() {
    // sled can hold its lock for a moment after the last handle is dropped;
    // reopening right away must still work.
    let dir = tempfile::tempdir().unwrap();
    Pool::create(dir.path(), &cfg(16)).unwrap().close().unwrap();
    for i in 0..20u8 {
        let pool = Pool::open(dir.path()).unwrap();
        let v = pool.open_volume("a").or_else(|_| {
            pool.create_volume("a", 4096, 512)?;
            pool.open_volume("a")
        });
        let v = v.unwrap();
        v.write(0, &[i; 512], false).unwrap();
        drop(v);
        pool.close().unwrap();
    }
    let pool = Pool::open(dir.path()).unwrap();
    let mut buf = vec![0u8; 512];
    pool.open_volume("a").unwrap().read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 19));
}

#[test]
fn low_water_crossing_reported_once_per_crossing_to_each_open_volume() {
    let dir = tempfile::tempdir().unwrap();
    // 8 chunks, low water at 75 %: the 6th allocated chunk crosses it.
    let pool = Pool::create(dir.path(), &cfg(8)).unwrap();
    pool.create_volume("a", 1 << 20, 4096).unwrap();
    pool.create_volume("b", 1 << 20, 4096).unwrap();
    let a = pool.open_volume("a").unwrap();
    let b = pool.open_volume("b").unwrap();
    for i in 0..5 {
        a.write(i, &[1; 4096], false).unwrap();
    }
    assert_eq!(a.poll_event(), None);
    assert_eq!(b.poll_event(), None);
    b.write(0, &[2; 4096], false).unwrap();
    // Both volumes report the crossing, once.
    assert_eq!(a.poll_event(), Some(BackendEvent::LowWaterMark));
    assert_eq!(b.poll_event(), Some(BackendEvent::LowWaterMark));
    assert_eq!(a.poll_event(), None);
    assert_eq!(b.poll_event(), None);
    // A volume opened after the crossing has nothing to report.
    drop(b);
    let b = pool.open_volume("b").unwrap();
    assert_eq!(b.poll_event(), None);
    // Below the mark and above it again: a new crossing, reported again.
    a.unmap(0, 5).unwrap();
    pool.flush().unwrap();
    assert_eq!(a.poll_event(), None);
    for i in 0..5 {
        a.write(i, &[3; 4096], false).unwrap();
    }
    assert_eq!(a.poll_event(), Some(BackendEvent::LowWaterMark));
    assert_eq!(b.poll_event(), Some(BackendEvent::LowWaterMark));
    assert_eq!(a.poll_event(), None);
}

/// LOG SENSE page 0Ch's counts: the pool's free chunks (shared by its
/// volumes) and the chunks this volume maps; a snapshot maps the shared
/// chunks too. A sparse image file reports its allocated bytes.
#[test]
fn resources_count_free_pool_chunks_and_the_volume_s_mapped_ones() {
    use tcmud_core::backend::Resources;
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path(), &cfg(16)).unwrap();
    pool.create_volume("a", 64 << 10, 512).unwrap();
    pool.create_volume("b", 64 << 10, 512).unwrap();
    let a = pool.open_volume("a").unwrap();
    let b = pool.open_volume("b").unwrap();
    let r = |v: &dyn BlockBackend| v.resources().unwrap();
    assert_eq!(
        r(a.as_ref()),
        Resources {
            available_bytes: 16 * 4096,
            used_bytes: 0
        }
    );
    a.write(0, &[1u8; 4096 * 3], false).unwrap(); // 3 chunks
    b.write(16, &[2u8; 512], false).unwrap(); // 1 chunk
    assert_eq!(
        r(a.as_ref()),
        Resources {
            available_bytes: 12 * 4096,
            used_bytes: 3 * 4096
        }
    );
    assert_eq!(
        r(b.as_ref()),
        Resources {
            available_bytes: 12 * 4096,
            used_bytes: 4096
        }
    );
    a.unmap(0, 8).unwrap(); // chunk 0 back
    a.flush().unwrap();
    assert_eq!(r(a.as_ref()).used_bytes, 2 * 4096);

    let img = dir.path().join("img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let f = tcmud_core::backend::file::FileBackend::open(&img, 512, false).unwrap();
    let before = r(&f).used_bytes;
    f.write(64, &[3u8; 64 << 10], true).unwrap();
    let after = r(&f);
    assert!(
        after.used_bytes >= before + (64 << 10),
        "{before} -> {after:?}"
    );
    assert!(after.available_bytes > 0);
}
