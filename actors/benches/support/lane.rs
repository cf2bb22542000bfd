//! The initiator and simulated kernel of one device: keeps `qd` READ(10) or
//! WRITE(10) commands outstanding on a [`KernelSim`] ring for a while.

use std::time::{Duration, Instant};

use tcmud_core::sim::{KernelSim, SimConfig, SimDevice, SimDirRef};

/// Logical block size of every bench device.
pub const BS: u64 = BS_U32 as u64;
/// [`BS`] as the backends take it.
pub const BS_U32: u32 = 512;

/// Simulator geometry for up to `qd` commands of `max_bytes` in flight:
/// a 1 MiB command ring and a data area holding all of them plus slack.
pub fn sim_config(qd: usize, max_bytes: usize) -> SimConfig {
    let data = (qd * max_bytes).max(4 << 20) + (1 << 20);
    SimConfig {
        cmdr_size: (1 << 20) - 128,
        data_size: data.next_multiple_of(4096),
        ..SimConfig::default()
    }
}

/// Where the commands of a run go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Uniformly random, aligned to the transfer size.
    Random,
    /// Sequential, wrapping at the end of the working set.
    Sequential,
}

/// The commands of a run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// WRITE(10) rather than READ(10).
    pub write: bool,
    /// Bytes per command.
    pub bytes: usize,
    /// Commands kept outstanding.
    pub qd: usize,
    /// Where they go.
    pub pattern: Pattern,
}

/// The initiator's side of one simulated device.
pub struct Lane {
    sim: KernelSim,
    /// Working set in bytes (commands stay below it).
    set: u64,
    rng: u64,
    seq: u64,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Commands completed with GOOD status.
    pub commands: u64,
    /// Wall time from the first submission to the last completion.
    pub wall: Duration,
}

impl Lane {
    /// A simulated device of geometry `cfg` whose commands stay within the
    /// first `set` bytes; returns the lane and the daemon's side.
    pub fn new(cfg: SimConfig, set: u64) -> (Lane, SimDevice) {
        let (mut sim, dev) = KernelSim::new(cfg).expect("simulator");
        sim.set_poison_data_in(false); // the kernel does not poison
        let lane = Lane {
            sim,
            set,
            rng: 0x9e37_79b9_7f4a_7c15,
            seq: 0,
        };
        (lane, dev)
    }

    fn next_offset(&mut self, bytes: u64, pattern: Pattern) -> u64 {
        let slots = (self.set / bytes).max(1);
        let slot = match pattern {
            Pattern::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                self.rng % slots
            }
            Pattern::Sequential => {
                self.seq = (self.seq + 1) % slots;
                self.seq
            }
        };
        slot * bytes
    }

    /// Sends TEST UNIT READY until one succeeds (consumes the power-on
    /// unit attention); true if the device answered GOOD within `timeout`.
    pub fn ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            self.sim
                .submit_ref(&[0u8; 6], SimDirRef::None)
                .expect("submit TUR");
            self.sim.kick().expect("kick");
            let mut good = None;
            while good.is_none() && start.elapsed() < timeout {
                let _ = self.sim.wait_kick(Duration::from_millis(100));
                self.sim
                    .process_completions_with(|c| good = Some(c.status == 0))
                    .expect("completions");
            }
            if good == Some(true) {
                return true;
            }
        }
        false
    }

    /// Keeps `qd` commands of `bytes` outstanding until `limit` has passed
    /// (or `count` commands were submitted, if given), then waits for the
    /// rest. Panics on any non-GOOD status or a broken ring.
    pub fn run(&mut self, load: Load, payload: &[u8], limit: Duration, count: Option<u64>) -> Done {
        let Load {
            write,
            bytes,
            qd,
            pattern,
        } = load;
        let blocks = u16::try_from(bytes as u64 / BS).expect("transfer fits READ(10)");
        let [bh, bl] = blocks.to_be_bytes();
        let op = if write { 0x2a } else { 0x28 };
        let start = Instant::now();
        let (mut outstanding, mut submitted, mut commands, mut bad) = (0usize, 0u64, 0u64, 0u64);
        loop {
            let more = match count {
                Some(n) => submitted < n,
                None => start.elapsed() < limit,
            };
            if more {
                let mut any = false;
                while outstanding < qd && count.is_none_or(|n| submitted < n) {
                    let lba = self.next_offset(bytes as u64, pattern) / BS;
                    let l = u32::try_from(lba).expect("lba fits READ(10)").to_be_bytes();
                    let cdb = [op, 0, l[0], l[1], l[2], l[3], 0, bh, bl, 0];
                    let dir = if write {
                        SimDirRef::Out(payload)
                    } else {
                        SimDirRef::In(bytes)
                    };
                    self.sim.submit_ref(&cdb, dir).expect("submit");
                    outstanding += 1;
                    submitted += 1;
                    any = true;
                }
                if any {
                    self.sim.kick().expect("kick");
                }
            }
            if outstanding == 0 {
                break;
            }
            let _ = self.sim.wait_kick(Duration::from_millis(200));
            let n = self
                .sim
                .process_completions_with(|c| {
                    if c.status != 0 {
                        bad += 1;
                    }
                })
                .expect("completions");
            outstanding -= n;
            commands += n as u64;
            assert!(self.sim.broken().is_none(), "{:?}", self.sim.broken());
            assert!(
                start.elapsed() < limit + Duration::from_secs(60),
                "device stalled"
            );
        }
        assert_eq!(bad, 0, "commands failed");
        Done {
            commands,
            wall: start.elapsed(),
        }
    }
}
