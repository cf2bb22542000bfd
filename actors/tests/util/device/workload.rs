//! A random READ(10)/WRITE(10) workload played by the simulated kernel,
//! checking every completion against a model of the disk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tcmud_core::ring::TmrType;
use tcmud_core::sim::{KernelSim, SimCompletion, SimDir, SimError};

use super::BS;

/// Collects completions until `n` arrived (20 s at most).
pub fn collect(sim: &mut KernelSim, n: usize) -> Vec<SimCompletion> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} completions",
            got.len()
        );
        let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
        got.extend(sim.process_completions().unwrap());
    }
    got
}

/// Submits one command and waits for its completion (20 s at most).
pub fn one(sim: &mut KernelSim, cdb: &[u8], dir: SimDir) -> SimCompletion {
    sim.submit(cdb, dir).unwrap();
    sim.kick().unwrap();
    collect(sim, 1).remove(0)
}

/// Deterministic xorshift generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// [`Rng::below`] for an index or a length.
    pub fn below_usize(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).expect("usize fits u64");
        usize::try_from(self.below(n)).expect("below n < n, a usize")
    }
    /// The low byte of [`Rng::next`].
    pub fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// What completions may look like.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// Every command GOOD with correct data.
    AllGood,
    /// GOOD with correct data, or CHECK CONDITION HARDWARE ERROR 44/00 (a
    /// failed device); data written by a failed WRITE becomes unknown.
    GoodOrFailed,
}

/// The outcome of a workload.
#[derive(Debug, Default)]
pub struct Report {
    pub submitted: usize,
    pub completed: usize,
    pub good: usize,
    pub hw_errors: usize,
    pub tmrs: usize,
    pub aborted: usize,
    pub errors: Vec<String>,
    pub broken: Option<String>,
}

struct Pending {
    write: bool,
    lba: usize,
    blocks: usize,
    data: Vec<u8>,
}

/// READ(10) CDB.
pub fn read10(lba: usize, blocks: usize) -> Vec<u8> {
    rw10(0x28, lba, blocks)
}

/// WRITE(10) CDB.
pub fn write10(lba: usize, blocks: usize) -> Vec<u8> {
    rw10(0x2a, lba, blocks)
}

fn rw10(op: u8, lba: usize, blocks: usize) -> Vec<u8> {
    let l = u32::try_from(lba)
        .expect("a 10-byte CDB's LBA fits 32 bits")
        .to_be_bytes();
    let n = u16::try_from(blocks)
        .expect("a 10-byte CDB's length fits 16 bits")
        .to_be_bytes();
    vec![op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

/// True for CHECK CONDITION, HARDWARE ERROR, 44/00.
pub fn is_hw_error(c: &SimCompletion) -> bool {
    c.status == 2 && c.sense.get(2).map(|k| k & 0xf) == Some(4) && c.sense.get(12) == Some(&0x44)
}

/// Sends TEST UNIT READY until it is GOOD, consuming the power-on unit
/// attention the way an initiator does. Returns the commands it took.
pub fn clear_unit_attention(sim: &mut KernelSim) -> usize {
    for tries in 1..=5 {
        if one(sim, &[0u8; 6], SimDir::None).status == 0 {
            return tries;
        }
    }
    panic!("TEST UNIT READY never GOOD");
}

/// Runs `n` random commands over a disk of `disk_blocks` (initially zero)
/// with at most `depth` outstanding.
pub fn random_io(
    sim: &mut KernelSim,
    n: usize,
    depth: usize,
    disk_blocks: usize,
    seed: u64,
    expect: Expect,
) -> Report {
    random_io_tmr(sim, n, depth, disk_blocks, seed, expect, None)
}

/// [`random_io`], also aborting (ABORT TASK) one outstanding command every
/// `tmr_every` submissions: an aborted command completes with ABORTED
/// COMMAND (then it never ran) or normally (it had started).
pub fn random_io_tmr(
    sim: &mut KernelSim,
    n: usize,
    depth: usize,
    disk_blocks: usize,
    seed: u64,
    expect: Expect,
    tmr_every: Option<usize>,
) -> Report {
    clear_unit_attention(sim);
    let mut aborting: std::collections::HashSet<u16> = std::collections::HashSet::new();
    let mut rng = Rng(seed | 1);
    let mut model = vec![0u8; disk_blocks * BS];
    let mut unknown = vec![false; disk_blocks];
    let mut writers = vec![0u32; disk_blocks];
    let mut readers = vec![0u32; disk_blocks];
    let mut pending: HashMap<u16, Pending> = HashMap::new();
    let mut r = Report::default();
    let mut idle_since = Instant::now();
    while r.submitted < n || !pending.is_empty() {
        // Submit while there is room.
        let mut kicked = false;
        while r.submitted < n && pending.len() < depth {
            let blocks = 1 + rng.below_usize(16);
            let lba = rng.below_usize(disk_blocks - blocks);
            let write = rng.below(2) == 0;
            let range = lba..lba + blocks;
            let conflict = if write {
                range.clone().any(|b| writers[b] > 0 || readers[b] > 0)
            } else {
                range.clone().any(|b| writers[b] > 0)
            };
            if conflict {
                break;
            }
            let (cdb, dir, data) = if write {
                let data: Vec<u8> = (0..blocks * BS).map(|_| rng.byte()).collect();
                (write10(lba, blocks), SimDir::Out(data.clone()), data)
            } else {
                (read10(lba, blocks), SimDir::In(blocks * BS), Vec::new())
            };
            match sim.submit(&cdb, dir) {
                Ok(id) => {
                    for b in range {
                        if write {
                            writers[b] += 1;
                        } else {
                            readers[b] += 1;
                        }
                    }
                    pending.insert(
                        id,
                        Pending {
                            write,
                            lba,
                            blocks,
                            data,
                        },
                    );
                    r.submitted += 1;
                    kicked = true;
                }
                Err(SimError::Full) => break,
                Err(e) => {
                    r.errors.push(format!("submit: {e}"));
                    return finish(sim, r);
                }
            }
        }
        if let Some(every) = tmr_every {
            if kicked && r.submitted % every == 0 {
                if let Some(&id) = pending.keys().find(|id| !aborting.contains(id)) {
                    sim.submit_tmr(TmrType::AbortTask, &[id]).unwrap();
                    aborting.insert(id);
                    r.tmrs += 1;
                }
            }
        }
        if kicked {
            sim.kick().unwrap();
        }
        let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
        let done = match sim.process_completions() {
            Ok(d) => d,
            Err(e) => {
                r.errors.push(format!("process_completions: {e}"));
                return finish(sim, r);
            }
        };
        if !done.is_empty() {
            idle_since = Instant::now();
        } else if idle_since.elapsed() > Duration::from_secs(20) {
            r.errors.push(format!(
                "stalled with {} commands outstanding",
                pending.len()
            ));
            return finish(sim, r);
        }
        for c in done {
            let Some(p) = pending.remove(&c.cmd_id) else {
                r.errors
                    .push(format!("completion for unknown cmd_id {}", c.cmd_id));
                continue;
            };
            r.completed += 1;
            let was_aborted = aborting.remove(&c.cmd_id);
            let range = p.lba..p.lba + p.blocks;
            for b in range.clone() {
                if p.write {
                    writers[b] -= 1;
                } else {
                    readers[b] -= 1;
                }
            }
            let bytes = p.lba * BS..(p.lba + p.blocks) * BS;
            if c.status == 0 {
                r.good += 1;
                if p.write {
                    model[bytes].copy_from_slice(&p.data);
                    range.for_each(|b| unknown[b] = false);
                } else if !range.clone().any(|b| unknown[b]) && c.data_in != model[bytes.clone()] {
                    r.errors
                        .push(format!("cmd {} read lba {} wrong data", c.cmd_id, p.lba));
                }
            } else if was_aborted && c.status == 2 && c.sense.get(2).map(|k| k & 0xf) == Some(0x0b)
            {
                // Cancelled before it started: a write did not happen.
                r.aborted += 1;
            } else if expect == Expect::GoodOrFailed && is_hw_error(&c) {
                r.hw_errors += 1;
                if p.write {
                    range.for_each(|b| unknown[b] = true);
                }
            } else {
                r.errors.push(format!(
                    "cmd {} status {:#x} sense {:02x?}",
                    c.cmd_id,
                    c.status,
                    c.sense.get(..14)
                ));
            }
        }
    }
    finish(sim, r)
}

fn finish(sim: &KernelSim, mut r: Report) -> Report {
    r.broken = sim.broken().map(str::to_owned);
    r
}
