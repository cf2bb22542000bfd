//! The zero-copy data path through the ring: `Ring::data` views of a
//! command's buffers as backend sinks/sources (across iov boundaries, with
//! `pread`/`pwrite` straight into and out of the data area), and the file
//! backend and pool volumes reading into and writing from them.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::{BackendError, BlockBackend, BlockSink, BlockSource};
use tcmud_core::sim::SimDir;

use crate::util::zero_copy::*;

#[test]
fn ring_sink_fills_across_iov_boundaries() {
    let (mut sim, mut ring) = setup();
    let len = 3 * BLOCK;
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(len));
    let file_bytes = pattern(7, 2 * BLOCK);
    let file = temp_file(&file_bytes);
    let mut expect = vec![0xa5u8; len]; // the simulator's data-in poison
    {
        let mut sink = ring.data(&cmd.data).unwrap();
        assert_eq!(BlockSink::len(&sink), len);
        // A copy straddling the first iov boundary.
        let piece = pattern(1, 300);
        sink.write_at(BLOCK - 100, &piece).unwrap();
        expect[BLOCK - 100..BLOCK + 200].copy_from_slice(&piece);
        // Zeros straddling the second.
        sink.zero_at(2 * BLOCK - 10, 30).unwrap();
        expect[2 * BLOCK - 10..2 * BLOCK + 20].fill(0);
        // pread from the file across the boundary, from an odd offset.
        let n = sink
            .pread_at(BLOCK + 500, BLOCK, file.as_fd(), 123)
            .unwrap();
        assert_eq!(n, BLOCK);
        expect[BLOCK + 500..2 * BLOCK + 500].copy_from_slice(&file_bytes[123..123 + BLOCK]);
        // Zero-length operations at the end are fine, past it they are not.
        sink.write_at(len, &[]).unwrap();
        sink.zero_at(len, 0).unwrap();
        assert_eq!(sink.pread_at(len, 0, file.as_fd(), 0).unwrap(), 0);
        assert!(sink.write_at(len - 1, &[1, 2]).is_err());
        assert!(sink.zero_at(usize::MAX, 2).is_err());
        assert!(sink.pread_at(len, 1, file.as_fd(), 0).is_err());
        // The file ends inside the range (and inside an iov): the bytes up
        // to its end are read and counted, the rest is left alone.
        let tail = 300;
        let from = (file_bytes.len() - tail) as u64;
        let n = sink
            .pread_at(BLOCK - 200, 1000, file.as_fd(), from)
            .unwrap();
        assert_eq!(n, tail);
        expect[BLOCK - 200..BLOCK + 100].copy_from_slice(&file_bytes[file_bytes.len() - tail..]);
        let past = file_bytes.len() as u64 + 10;
        assert_eq!(sink.pread_at(0, 100, file.as_fd(), past).unwrap(), 0);
    }
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert_eq!(done.len(), 1);
    assert!(done[0].data_in == expect, "data-in differs");
    finish(&mut sim, &mut ring, &others);
}

#[test]
fn ring_source_drains_across_iov_boundaries() {
    let (mut sim, mut ring) = setup();
    let out = pattern(9, 3 * BLOCK);
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::Out(out.clone()));
    let mut file = temp_file(&[]);
    {
        let src = ring.data(&cmd.data).unwrap();
        let mut back = vec![0u8; 2 * BLOCK];
        src.read_at(BLOCK / 2, &mut back).unwrap();
        assert!(back == out[BLOCK / 2..BLOCK / 2 + 2 * BLOCK]);
        src.read_at(out.len(), &mut []).unwrap();
        assert!(src.read_at(out.len() - 1, &mut [0; 2]).is_err());
        // pwrite everything, in two pieces split inside an iov.
        src.pwrite_at(0, 5000, file.as_fd(), 10).unwrap();
        src.pwrite_at(5000, out.len() - 5000, file.as_fd(), 5010)
            .unwrap();
        src.pwrite_at(out.len(), 0, file.as_fd(), 0).unwrap();
        assert!(src.pwrite_at(1, out.len(), file.as_fd(), 0).is_err());
    }
    let mut on_disk = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk.len(), 10 + out.len());
    assert!(on_disk[10..] == out[..]);
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    finish(&mut sim, &mut ring, &others);
}

#[test]
fn views_of_completed_commands_are_refused() {
    let (mut sim, mut ring) = setup();
    sim.submit(&READ10, SimDir::In(BLOCK)).unwrap();
    let cmd = fetch(&mut sim, &mut ring).remove(0);
    assert!(ring.data(&cmd.data).is_ok());
    assert!(ring.share_data(&cmd.data).is_ok());
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(ring.data(&cmd.data).is_err());
    assert!(ring.share_data(&cmd.data).is_err());
}

/// The owned view an I/O thread gets: bytes written through it on another
/// thread are the command's data-in.
#[test]
fn shared_views_fill_the_command_from_another_thread() {
    let (mut sim, mut ring) = setup();
    let len = 3 * BLOCK;
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(len));
    let shared = ring.share_data(&cmd.data).unwrap();
    let data = pattern(4, len);
    let written = data.clone();
    std::thread::spawn(move || {
        let mut view = shared.view();
        assert_eq!(BlockSink::len(&view), len);
        view.write_at(0, &written).unwrap();
    })
    .join()
    .unwrap();
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(done[0].data_in == data, "data-in differs");
    finish(&mut sim, &mut ring, &others);
}

/// What an asynchronous backend is handed (librbd's vectored I/O): the
/// first bytes of a fragmented command's buffers, as a view and as raw
/// spans that cover exactly them, in order.
#[test]
fn shared_prefix_and_raw_spans_of_a_fragmented_command() {
    let (mut sim, mut ring) = setup();
    let len = 3 * BLOCK;
    let data = pattern(7, len);
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(len));
    let shared = ring.share_data(&cmd.data).unwrap();
    let whole = shared.raw_spans().unwrap();
    assert_eq!(whole.len(), cmd.data.span_count());
    assert_eq!(whole.iter().map(|s| s.1).sum::<usize>(), len);
    // A prefix that ends inside the second span.
    let cut = BLOCK + BLOCK / 2;
    let head = shared.prefix(cut).expect("a shorter prefix");
    let spans = head.raw_spans().unwrap();
    assert_eq!(spans.iter().map(|s| s.1).sum::<usize>(), cut);
    assert_eq!(spans[0], whole[0], "starts where the buffers start");
    assert!(spans.len() >= 2 && spans.len() <= whole.len());
    assert_eq!(BlockSink::len(&head.view()), cut);
    assert!(shared.prefix(len + 1).is_none(), "longer than the buffers");
    assert_eq!(shared.prefix(len).unwrap().raw_spans().unwrap(), whole);
    // Bytes written through the prefix are the command's first bytes.
    head.view().write_at(0, &data[..cut]).unwrap();
    shared.view().write_at(cut, &data[cut..]).unwrap();
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(done[0].data_in == data, "data-in differs");
    finish(&mut sim, &mut ring, &others);
}

#[test]
fn file_backend_reads_into_and_writes_from_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let backend = FileBackend::create(&path, 512, 1 << 20).unwrap();
    let (mut sim, mut ring) = setup();
    // WRITE: 3 blocks' worth of data-out through a fragmented buffer.
    let out = pattern(3, 3 * BLOCK);
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::Out(out.clone()));
    backend
        .write_from(8, &ring.data(&cmd.data).unwrap(), true)
        .unwrap();
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    finish(&mut sim, &mut ring, &others);
    let disk = std::fs::read(&path).unwrap();
    assert!(disk[8 * 512..8 * 512 + out.len()] == out[..]);
    assert!(disk[..8 * 512].iter().all(|&b| b == 0));
    // READ it back into another fragmented buffer, one block further.
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    backend
        .read_into(7, &mut ring.data(&cmd.data).unwrap())
        .unwrap();
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    let mut expect = vec![0u8; 512];
    expect.extend_from_slice(&out[..3 * BLOCK - 512]);
    assert!(done[0].data_in == expect);
    finish(&mut sim, &mut ring, &others);
    // Plain buffers take the same path.
    let mut buf = vec![0u8; 1024];
    backend.read_into(8, &mut buf).unwrap();
    assert!(buf == out[..1024]);
    backend.write_from(0, &&out[..512], false).unwrap();
    let mut back = [0u8; 512];
    backend.read(0, &mut back).unwrap();
    assert!(back[..] == out[..512]);
    // Ranges past the end, and zero-length transfers.
    let blocks = backend.caps().num_blocks;
    assert!(matches!(
        backend.read_into(blocks, &mut vec![0u8; 512]),
        Err(BackendError::OutOfRange { .. })
    ));
    assert!(matches!(
        backend.write_from(blocks - 1, &vec![0u8; 1024], false),
        Err(BackendError::OutOfRange { .. })
    ));
    backend.read_into(blocks, &mut Vec::new()).unwrap();
    backend.write_from(blocks, &Vec::new(), false).unwrap();
}

#[test]
fn file_backend_reports_a_file_shrunk_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let backend = FileBackend::create(&path, 512, 8192).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096 + 100)
        .unwrap();
    let mut buf = vec![0u8; 1024];
    match backend.read_into(7, &mut buf) {
        Err(BackendError::Read(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("expected a short-read error, got {other:?}"),
    }
}

/// A pool volume reads mapped chunks (`pread` into the data area) and
/// unmapped ones (zeros) straight into a fragmented ring buffer.
#[test]
fn pool_volume_reads_into_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (_pool, v) = small_pool(dir.path(), 64);
    // Chunks 0 and 2 written (chunk 2 partly), chunk 1 never.
    let a = pattern(11, 4096);
    let c = pattern(12, 1024);
    v.write(0, &a, false).unwrap();
    v.write(17, &c, false).unwrap();
    let mut expect = a.clone();
    expect.extend(vec![0u8; 4096 + 512]);
    expect.extend(&c);
    expect.resize(3 * 4096, 0);

    let (mut sim, mut ring) = setup();
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::In(3 * BLOCK));
    v.read_into(0, &mut ring.data(&cmd.data).unwrap()).unwrap();
    let done = finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(done[0].data_in == expect, "ring data-in differs");
    finish(&mut sim, &mut ring, &others);

    let mut sink = Opaque(vec![0xee; 3 * 4096 - 512]);
    v.read_into(1, &mut sink).unwrap();
    assert!(sink.0 == expect[512..]);
    let mut plain = vec![0xee; 4096];
    v.read(16, &mut plain).unwrap();
    assert!(plain == expect[2 * 4096..]);
    assert!(matches!(
        v.read_into(511, &mut Opaque(vec![0; 1024])),
        Err(BackendError::OutOfRange { .. })
    ));
}

/// A pool volume writes straight from a fragmented ring buffer: over a
/// fresh chunk (partial: zero-filled around the data), a chunk it owns (in
/// place) and a chunk shared with a snapshot (copy-on-write); the volume
/// and the snapshot read back what they must.
#[test]
fn pool_volume_writes_from_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, v) = small_pool(dir.path(), 16);
    let old = pattern(21, 2 * 4096);
    v.write(8, &old, false).unwrap(); // chunks 1 and 2 (shared below)
    pool.snapshot("v", "s").unwrap();
    let snap = pool.open_volume("s").unwrap();

    // 12 KiB from LBA 12: second half of chunk 1 (copy-on-write), all of
    // chunk 2 (copy-on-write, whole), first half of chunk 3 (fresh).
    let (mut sim, mut ring) = setup();
    let out = pattern(22, 3 * BLOCK);
    let (cmd, others) = fragmented(&mut sim, &mut ring, SimDir::Out(out.clone()));
    v.write_from(12, &ring.data(&cmd.data).unwrap(), true)
        .unwrap();
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    finish(&mut sim, &mut ring, &others);
    // And again in place, through an opaque source.
    let again = pattern(23, 1024);
    v.write_from(28, &Opaque(again.clone()), false).unwrap();

    let mut expect = vec![0u8; 16 * 4096];
    expect[8 * 512..8 * 512 + old.len()].copy_from_slice(&old);
    let mut snap_expect = expect.clone();
    expect[12 * 512..12 * 512 + out.len()].copy_from_slice(&out);
    expect[28 * 512..28 * 512 + 1024].copy_from_slice(&again);
    let mut back = vec![0xeeu8; expect.len()];
    v.read(0, &mut back).unwrap();
    assert!(back == expect, "volume contents differ");
    let mut back = vec![0xeeu8; expect.len()];
    snap.read(0, &mut back).unwrap();
    snap_expect.truncate(back.len());
    assert!(back == snap_expect, "snapshot contents changed");
    assert!(pool.check().unwrap().is_clean());
}
