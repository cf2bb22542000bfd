//! The zero-copy data path: `Ring::data` views of a command's buffers as
//! backend sinks/sources (across iov boundaries, with `pread`/`pwrite`
//! straight into and out of the data area), the file backend's
//! `read_into`/`write_from`, and `Lun::execute_io` against `Lun::execute`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::null::NullBackend;
use tcmud_core::backend::{
    BackendCaps, BackendError, BlockBackend, BlockSink, BlockSource, SinkPrefix, SourcePrefix,
};
use tcmud_core::ring::layout::CAP_OOOC;
use tcmud_core::ring::{CmdRequest, Completion, Entry, Ring};
use tcmud_core::scsi::{Lun, LunConfig};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

const BLOCK: usize = 4096;
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 253) as u8))
        .collect()
}

fn setup() -> (KernelSim, Ring) {
    let cfg = SimConfig {
        flags: CAP_OOOC,
        ..SimConfig::default()
    };
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    (sim, ring)
}

fn fetch(sim: &mut KernelSim, ring: &mut Ring) -> Vec<CmdRequest> {
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    ring.fetch()
        .map(|e| match e.unwrap() {
            Entry::Cmd(c) => c,
            Entry::Tmr(t) => panic!("unexpected tmr {t:?}"),
        })
        .collect()
}

fn finish(sim: &mut KernelSim, ring: &mut Ring, ids: &[u16]) -> Vec<SimCompletion> {
    for &id in ids {
        ring.complete(Completion::good(id)).unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    let done = sim.process_completions().unwrap();
    assert_eq!(sim.broken(), None);
    done
}

/// Queues one command of `dir` whose `blocks` data blocks are not
/// contiguous (the data area is fragmented first: three one-block
/// commands, the middle one completed): returns it, fetched, with the two
/// one-block commands still in flight.
fn fragmented(sim: &mut KernelSim, ring: &mut Ring, dir: SimDir) -> (CmdRequest, [u16; 2]) {
    let ids: Vec<u16> = (0..3)
        .map(|i| sim.submit(&WRITE10, SimDir::Out(vec![i; BLOCK])).unwrap())
        .collect();
    let first = fetch(sim, ring);
    assert_eq!(first.len(), 3);
    finish(sim, ring, &ids[1..2]);
    let id = sim.submit(&READ10, dir).unwrap();
    let mut cmds = fetch(sim, ring);
    assert_eq!(cmds.len(), 1);
    let cmd = cmds.remove(0);
    assert_eq!(cmd.cmd_id, id);
    assert!(
        cmd.data.span_count() >= 2,
        "spans: {}",
        cmd.data.span_count()
    );
    (cmd, [ids[0], ids[2]])
}

fn temp_file(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

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
    finish(&mut sim, &mut ring, &[cmd.cmd_id]);
    assert!(ring.data(&cmd.data).is_err());
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

/// A sink/source that hides its memory, so callers take the generic path.
struct Opaque(Vec<u8>);

impl BlockSink for Opaque {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn write_at(&mut self, at: usize, src: &[u8]) -> std::io::Result<()> {
        self.0.write_at(at, src)
    }
    fn zero_at(&mut self, at: usize, len: usize) -> std::io::Result<()> {
        self.0.zero_at(at, len)
    }
    fn pread_at(
        &mut self,
        at: usize,
        len: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        off: u64,
    ) -> std::io::Result<usize> {
        self.0.pread_at(at, len, fd, off)
    }
}

impl BlockSource for Opaque {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read_at(&self, at: usize, dst: &mut [u8]) -> std::io::Result<()> {
        self.0.read_at(at, dst)
    }
    fn pwrite_at(
        &self,
        at: usize,
        len: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        off: u64,
    ) -> std::io::Result<()> {
        self.0.pwrite_at(at, len, fd, off)
    }
}

/// A backend with only the required methods: the default `read_into` /
/// `write_from` run.
struct Basic(MemBackend);

impl BlockBackend for Basic {
    fn caps(&self) -> BackendCaps {
        self.0.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.0.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.0.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.0.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.0.unmap(lba, blocks)
    }
}

#[test]
fn default_read_into_and_write_from_go_through_read_and_write() {
    let b = Basic(MemBackend::new(512, 64));
    let data = pattern(5, 1536);
    b.write_from(3, &Opaque(data.clone()), false).unwrap();
    let mut sink = Opaque(vec![0xff; 2048]);
    b.read_into(2, &mut sink).unwrap();
    assert!(sink.0[..512].iter().all(|&x| x == 0));
    assert!(sink.0[512..] == data[..]);
    let mut plain = vec![0u8; 1024];
    b.read_into(4, &mut plain).unwrap();
    assert!(plain == data[512..]);
    assert!(matches!(
        b.read_into(63, &mut Opaque(vec![0; 1024])),
        Err(BackendError::OutOfRange { .. })
    ));
}

#[test]
fn null_and_mem_backends_fill_sinks_in_place() {
    let null = NullBackend::new(512, 16);
    let mut sink = Opaque(vec![0xee; 1024]);
    null.read_into(14, &mut sink).unwrap();
    assert!(sink.0.iter().all(|&b| b == 0));
    assert!(null.read_into(15, &mut sink).is_err());
    null.write_from(14, &Opaque(vec![1; 1024]), false).unwrap();
    assert!(null.write_from(15, &Opaque(vec![1; 1024]), false).is_err());

    // 8-block chunks: the read covers a written chunk, then a hole.
    let mem = MemBackend::new(512, 64);
    let data = pattern(2, 2048);
    mem.write_from(4, &Opaque(data.clone()), true).unwrap();
    assert_eq!(mem.stats().fua_writes, 1);
    let mut sink = Opaque(vec![0xee; 8 * 512]);
    mem.read_into(2, &mut sink).unwrap();
    assert!(sink.0[..1024].iter().all(|&b| b == 0));
    assert!(sink.0[1024..3072] == data[..]);
    assert!(sink.0[3072..].iter().all(|&b| b == 0));
    mem.fail_next_reads(1);
    assert!(matches!(
        mem.read_into(0, &mut sink),
        Err(BackendError::Read(_))
    ));
}

#[test]
fn prefixes_limit_their_range() {
    let mut v = pattern(4, 100);
    let mut p = SinkPrefix::new(&mut v, 50).unwrap();
    assert_eq!(p.len(), 50);
    assert!(p.write_at(40, &[0; 11]).is_err());
    p.zero_at(40, 10).unwrap();
    assert_eq!(p.as_mut_slice().map(|s| s.len()), Some(50));
    assert!(v[40..50].iter().all(|&b| b == 0) && v[50] != 0);
    assert!(SinkPrefix::new(&mut v, 101).is_none());
    let data = pattern(6, 10);
    let s = SourcePrefix::new(&data, 4).unwrap();
    assert_eq!(s.as_slice(), Some(&data[..4]));
    assert!(s.read_at(2, &mut [0; 3]).is_err());
    assert!(SourcePrefix::new(&data, 11).is_none());
}

/// `execute_io` over opaque buffers answers exactly like `execute` over
/// plain ones: data commands, replies, short buffers, errors.
#[test]
fn execute_io_matches_execute() {
    let a = Lun::new(LunConfig::default(), Arc::new(MemBackend::new(512, 256)));
    let b = Lun::new(LunConfig::default(), Arc::new(MemBackend::new(512, 256)));
    let w = pattern(8, 4 * 512);
    let mut caw = pattern(0, 512); // compare with what WRITE(10) put at LBA 2
    caw.extend(pattern(9, 512));
    let cases: Vec<(Vec<u8>, Vec<u8>, usize)> = vec![
        (vec![0; 6], vec![], 0),                                  // TUR: power-on UA
        (vec![0x2a, 0, 0, 0, 0, 1, 0, 0, 4, 0], w.clone(), 0),    // WRITE(10) at 1
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], vec![], 6 * 512), // READ(10)
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], vec![], 1000),    // short buffer
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], 0),       // zero length
        (vec![0x28, 0, 0, 0, 1, 0, 0, 0, 1, 0], vec![], 512),     // out of range
        (vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], vec![1; 512], 0), // data-out too short
        (vec![0x12, 0, 0, 0, 96, 0], vec![], 96),                 // INQUIRY
        (vec![0x12, 0, 0, 0, 96, 0], vec![], 20),                 // INQUIRY, short
        (vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], 8),       // READ CAPACITY(10)
        (
            [&[0x89u8, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0][..]].concat(),
            caw,
            0,
        ),
        (vec![0x41, 0, 0, 0, 0, 8, 0, 0, 2, 0], pattern(3, 512), 0), // WRITE SAME(10)
        (vec![0x2e, 0, 0, 0, 0, 16, 0, 0, 1, 0], w[..512].to_vec(), 0), // WRITE AND VERIFY
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 20, 0], vec![], 20 * 512),
    ];
    for (cdb, out, in_len) in cases {
        let mut plain_in = vec![0x11u8; in_len];
        let ra = a.execute(&cdb, &out, &mut plain_in);
        let mut sink = Opaque(vec![0x11u8; in_len]);
        let rb = b.execute_io(&cdb, &Opaque(out.clone()), &mut sink);
        assert_eq!(ra, rb, "cdb {cdb:02x?}");
        assert!(plain_in == sink.0, "data-in of cdb {cdb:02x?}");
    }
}

/// A pool volume reads mapped chunks (`pread` into the data area) and
/// unmapped ones (zeros) straight into a fragmented ring buffer.
#[test]
fn pool_volume_reads_into_the_ring() {
    use tcmud_core::pool::{Pool, PoolConfig};
    let dir = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 64 * 4096,
        low_water_pct: 75,
    };
    let pool = Pool::create(dir.path(), &cfg).unwrap();
    pool.create_volume("v", 64 * 4096, 512).unwrap();
    let v = pool.open_volume("v").unwrap();
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
    use tcmud_core::pool::{Pool, PoolConfig};
    let dir = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 64 * 4096,
        low_water_pct: 75,
    };
    let pool = Pool::create(dir.path(), &cfg).unwrap();
    pool.create_volume("v", 16 * 4096, 512).unwrap();
    let v = pool.open_volume("v").unwrap();
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
