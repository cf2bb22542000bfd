//! `BlockBackend::read_nowait`: reads served from the page cache on the
//! caller's thread, straight into the ring's data area, with the same
//! bytes as `read_into`; everything else says "would wait" (false) and
//! leaves the read to `read_into`.

use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendError, BlockBackend};
use tcmud_core::sim::SimDir;

use crate::util::narrow::fit;
use crate::util::zero_copy::*;

#[test]
fn file_backend_reads_cached_bytes_into_the_ring_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::create(&dir.path().join("img"), 512, 1 << 20).unwrap();
    let data = pattern(21, 3 * BLOCK);
    backend.write(8, &data, false).unwrap(); // in the page cache now
    let (mut sim, mut ring) = setup();
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    let served = backend
        .read_nowait(7, &mut ring.data(&cmd.data).unwrap())
        .unwrap();
    assert!(served, "a cached read must not need an I/O thread");
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    let mut expect = vec![0u8; 512];
    expect.extend_from_slice(&data[..3 * BLOCK - 512]);
    assert!(done[0].data_in == expect, "data-in differs from the image");
    finish(&mut sim, &mut ring, &others);

    // Plain memory never tries; ranges are still checked.
    assert!(!backend.read_nowait(8, &mut vec![0u8; 512]).unwrap());
    let blocks = backend.caps().num_blocks;
    assert!(matches!(
        backend.read_nowait(blocks - 1, &mut vec![0u8; 1024]),
        Err(BackendError::OutOfRange { .. })
    ));
}

#[test]
fn pool_volume_reads_mapped_chunks_and_holes_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (_pool, v) = small_pool(dir.path(), 64);
    // Chunks 0 and 2 written, chunk 1 a hole. (A chunk written in part
    // may be a sparse hole in the data file around the written bytes: the
    // kernel then has no cached page to hand out without waiting.)
    let a = pattern(31, 4096);
    let c = pattern(32, 4096);
    v.write(0, &a, false).unwrap();
    v.write(16, &c, false).unwrap();
    let mut expect = a.clone();
    expect.extend(vec![0u8; 4096]);
    expect.extend(&c);

    let (mut sim, mut ring) = setup();
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    assert!(v
        .read_nowait(0, &mut ring.data(&cmd.data).unwrap())
        .unwrap());
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(done[0].data_in == expect, "ring data-in differs");
    finish(&mut sim, &mut ring, &others);
    assert!(matches!(
        v.read_nowait(511, &mut vec![0u8; 1024]),
        Err(BackendError::OutOfRange { .. })
    ));
}

#[test]
fn backends_without_a_nowait_path_always_defer() {
    let mem = MemBackend::new(512, 64);
    mem.write(0, &pattern(1, 512), false).unwrap();
    let (mut sim, mut ring) = setup();
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(2 * BLOCK));
    assert!(!mem
        .read_nowait(0, &mut ring.data(&cmd.data).unwrap())
        .unwrap());
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    finish(&mut sim, &mut ring, &others);
}

/// READ(10) of `blocks` 512-byte blocks at `lba` (each CDB byte commented).
fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [
        0x28, // READ(10)
        0,    // RDPROTECT 0, DPO 0, FUA 0
        l[0], l[1], l[2], l[3], // LOGICAL BLOCK ADDRESS
        0,    // GROUP NUMBER
        n[0], n[1], // TRANSFER LENGTH
        0,    // CONTROL
    ]
}

#[test]
fn lun_serves_cached_reads_on_the_callers_thread_and_defers_the_rest() {
    use std::sync::Arc;
    use tcmud_core::scsi::{Asc, Lun, LunConfig, SenseKey};

    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FileBackend::create(&dir.path().join("img"), 512, 1 << 20).unwrap());
    let data = pattern(41, 3 * BLOCK);
    backend.write(16, &data, false).unwrap();
    let lun = Lun::new(LunConfig::default(), backend.clone());
    let (mut sim, mut ring) = setup();
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    let blocks = fit::<u16, _>(3 * BLOCK / 512);
    let mut sink = ring.data(&cmd.data).unwrap();

    // The power-on unit attention is left for execute_io to report.
    assert!(lun
        .try_execute_nowait(&read10(16, blocks), &mut sink)
        .is_none());
    let tur = lun.execute(&[0u8; 6], &[], &mut []);
    let ua = tur.sense.expect("unit attention");
    assert_eq!(ua.key, SenseKey::UnitAttention);

    // A cached READ is answered here, bytes in the ring.
    let r = lun
        .try_execute_nowait(&read10(16, blocks), &mut sink)
        .expect("served without waiting");
    assert_eq!((r.status, r.data_in_len), (0, 3 * BLOCK));
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(done[0].data_in == data, "data-in differs");
    finish(&mut sim, &mut ring, &others);

    // Past the end: the same CHECK CONDITION execute_io gives.
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    let mut sink = ring.data(&cmd.data).unwrap();
    let last = u32::try_from(backend.caps().num_blocks).unwrap() - 1;
    let r = lun
        .try_execute_nowait(&read10(last, blocks), &mut sink)
        .expect("an error needs no wait");
    let sense = r.sense.expect("check condition");
    assert_eq!((r.status, sense.key), (2, SenseKey::IllegalRequest));
    assert_eq!(sense.asc_pair(), Asc::LBA_OUT_OF_RANGE);
    // Anything but READ is never tried.
    let write10 = [0x2a, 0, 0, 0, 0, 16, 0, 0, 1, 0];
    assert!(lun.try_execute_nowait(&write10, &mut sink).is_none());
    assert!(lun.try_execute_nowait(&[0u8; 6], &mut sink).is_none());
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    finish(&mut sim, &mut ring, &others);
}

/// Sets `path`'s access time an hour before its modification time: with
/// `relatime` the next read would update it.
fn age_atime(path: &std::path::Path) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let meta = std::fs::metadata(path).unwrap();
    let mtime = TimeSpec::new(std::os::unix::fs::MetadataExt::mtime(&meta), 0);
    let old = TimeSpec::new(std::os::unix::fs::MetadataExt::mtime(&meta) - 3600, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &old,
        &mtime,
        UtimensatFlags::FollowSymlink,
    )
    .unwrap();
}

fn atime(path: &std::path::Path) -> i64 {
    std::os::unix::fs::MetadataExt::atime(&std::fs::metadata(path).unwrap())
}

/// Reads do not update the image's or the data file's access time (opened
/// `O_NOATIME`): an atime update is a journalled metadata change that can
/// wait, and reads may run on the device's own thread.
#[test]
fn reads_leave_the_access_time_alone() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let backend = FileBackend::create(&img, 512, 1 << 20).unwrap();
    backend.write(0, &pattern(51, 4096), false).unwrap();
    age_atime(&img);
    let before = atime(&img);
    let mut buf = vec![0u8; 4096];
    backend.read(0, &mut buf).unwrap();
    assert_eq!(atime(&img), before, "the image's atime moved");

    let pool_dir = dir.path().join("pool");
    let (_pool, v) = small_pool(&pool_dir, 64);
    v.write(0, &pattern(52, 4096), false).unwrap();
    let data = pool_dir.join("data");
    assert!(data.is_file(), "pool data file at {}", data.display());
    age_atime(&data);
    let before = atime(&data);
    v.read(0, &mut buf).unwrap();
    assert_eq!(atime(&data), before, "the data file's atime moved");
}
