//! Helpers shared by the zero_copy_* integration tests: a simulated ring
//! with fragmented command buffers, and an opaque sink/source.

use std::time::Duration;

use super::narrow::LowByte;
use tcmud_core::backend::{BlockSink, BlockSource};
use tcmud_core::ring::layout::CAP_OOOC;
use tcmud_core::ring::{CmdRequest, Completion, DataIn, Entry, Ring};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

pub const BLOCK: usize = 4096;
pub const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
pub const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 253).low_byte()))
        .collect()
}

pub fn setup() -> (KernelSim, Ring) {
    let cfg = SimConfig {
        flags: CAP_OOOC,
        ..SimConfig::default()
    };
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    (sim, ring)
}

pub fn fetch(sim: &mut KernelSim, ring: &mut Ring) -> Vec<CmdRequest> {
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    ring.fetch()
        .map(|e| match e.unwrap() {
            Entry::Cmd(c) => c,
            Entry::Tmr(t) => panic!("unexpected tmr {t:?}"),
        })
        .collect()
}

pub fn finish(sim: &mut KernelSim, ring: &mut Ring, ids: &[u16]) -> Vec<SimCompletion> {
    for &id in ids {
        ring.complete(Completion::good(id), DataIn::NONE).unwrap();
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
pub fn fragmented(sim: &mut KernelSim, ring: &mut Ring, dir: SimDir) -> (CmdRequest, [u16; 2]) {
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

pub fn temp_file(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

/// A sink/source that hides its memory, so callers take the generic path.
pub struct Opaque(pub Vec<u8>);

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

/// A pool in `dir` of 64 chunks of 4 KiB with one volume "v" of `chunks`
/// chunks (512-byte blocks), opened.
pub fn small_pool(
    dir: &std::path::Path,
    chunks: u64,
) -> (
    tcmud_core::pool::Pool,
    std::sync::Arc<tcmud_core::pool::Volume>,
) {
    let cfg = tcmud_core::pool::PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 64 * 4096,
        low_water_pct: 75,
    };
    let pool = tcmud_core::pool::Pool::create(dir, &cfg).unwrap();
    pool.create_volume("v", chunks * 4096, 512).unwrap();
    let v = pool.open_volume("v").unwrap();
    (pool, v)
}
