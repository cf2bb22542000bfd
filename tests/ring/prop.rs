//! Random command sequences through sim -> Ring -> "echo" handler -> sim.
//!
//! Data-out carries a pattern derived from a seed in the CDB and is
//! verified by the handler; data-in is filled with a pattern derived from
//! the cmd_id and verified on the simulated kernel side. Completions happen
//! in random order (in-order rings queue them), across ring wrap with PADs,
//! with short reads and CHECK CONDITIONs. Every command must complete
//! exactly once with the right bytes and the simulator must never go BROKEN.

use std::collections::HashMap;
use std::time::Duration;

use crate::util::narrow::{fit, LowByte};
use proptest::prelude::*;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN, CAP_TMR};
use tcmud_core::ring::{CmdRequest, Completion, DataIn, DataSpans, Entry, Ring, TmrType};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir, SimError};

#[derive(Debug, Clone)]
enum Op {
    Submit { kind: u8, len: usize, seed: u32 },
    Fetch,
    Complete { n: usize, pick: u64 },
    Process,
    Tmr,
}

#[derive(Debug, Clone, Copy)]
struct Expect {
    kind: u8,
    len: usize,
    seed: u32,
}

const OPCODES: [u8; 4] = [0x35, 0x2a, 0x28, 0x53];

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 4);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn data_in_seed(cmd_id: u16, seed: u32) -> u32 {
    u32::from(cmd_id).wrapping_mul(7919) ^ seed
}

fn sense_for(seed: u32) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = 0x03;
    s[7] = 10;
    s[12] = (seed >> 8).low_byte();
    s[13] = seed.low_byte();
    s
}

fn cdb(kind: u8, seed: u32) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = OPCODES[kind as usize];
    c[2..6].copy_from_slice(&seed.to_be_bytes());
    c
}

fn is_cc(seed: u32) -> bool {
    seed % 5 == 0
}

fn is_short(seed: u32) -> bool {
    seed % 5 == 1
}

/// A response and its data-in (buffers, bytes written), to complete later.
type Pending = (Completion, Option<DataSpans>, usize);

/// The echo handler: verifies data-out, writes data-in, answers.
fn handle(ring: &Ring, cmd: &CmdRequest) -> Pending {
    let b = cmd.cdb.as_bytes();
    let kind: u8 = fit(OPCODES.iter().position(|&o| o == b[0]).unwrap());
    let seed = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    if kind == 1 || kind == 3 {
        let mut out = vec![0u8; cmd.data.len()];
        assert_eq!(ring.read_data_out(&cmd.data, &mut out).unwrap(), out.len());
        assert_eq!(out, pattern(seed, out.len()), "data-out of {}", cmd.cmd_id);
    }
    let din = if kind == 2 { &cmd.data } else { &cmd.bidi };
    if kind == 2 || kind == 3 {
        let p = pattern(data_in_seed(cmd.cmd_id, seed), din.len());
        assert_eq!(ring.write_data_in(din, &p).unwrap(), din.len());
    }
    let din = (kind == 2 || kind == 3).then(|| din.clone());
    if is_cc(seed) {
        return (
            Completion::check_condition(cmd.cmd_id, &sense_for(seed)),
            din,
            0,
        );
    }
    let len = din.as_ref().map_or(0, DataSpans::len);
    if kind == 2 && is_short(seed) {
        return (Completion::good(cmd.cmd_id), din, (len / 2).max(1));
    }
    (Completion::good(cmd.cmd_id), din, len)
}

struct World {
    sim: KernelSim,
    ring: Ring,
    expected: HashMap<u16, Expect>,
    pending: Vec<Pending>,
    read_len_cap: bool,
    completed: usize,
    wraps: usize,
}

impl World {
    fn fetch(&mut self) {
        let before = self.ring.fetch_cursor();
        let mut got = Vec::new();
        for e in self.ring.fetch() {
            match e.unwrap() {
                Entry::Cmd(cmd) => got.push(cmd),
                Entry::Tmr(t) => assert_eq!(t.tmr_type, TmrType::AbortTask),
            }
        }
        if self.ring.fetch_cursor() < before {
            self.wraps += 1;
        }
        for cmd in got {
            let exp = self.expected[&cmd.cmd_id];
            let want_len = if exp.kind == 0 { 0 } else { exp.len };
            assert_eq!(cmd.data.len(), want_len);
            assert_eq!(cmd.bidi.len(), if exp.kind == 3 { exp.len } else { 0 });
            self.pending.push(handle(&self.ring, &cmd));
        }
        assert_eq!(self.ring.in_flight(), self.pending.len());
    }

    fn complete(&mut self, n: usize, mut pick: u64) {
        for _ in 0..n.min(self.pending.len()) {
            pick = pick
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = (pick >> 33) as usize % self.pending.len();
            let (c, din, written) = self.pending.swap_remove(i);
            let data_in = din
                .as_ref()
                .map_or(DataIn::NONE, |d| DataIn::new(d, written));
            self.ring.complete(c, data_in).unwrap();
        }
    }

    fn process(&mut self) {
        self.ring.kick().unwrap();
        self.sim.wait_kick(Duration::from_millis(100)).unwrap();
        let done = self.sim.process_completions().unwrap();
        assert_eq!(self.sim.broken(), None);
        for d in done {
            self.verify(d);
        }
    }

    fn verify(&mut self, d: SimCompletion) {
        let exp = self
            .expected
            .remove(&d.cmd_id)
            .unwrap_or_else(|| panic!("completion of {} not expected", d.cmd_id));
        self.completed += 1;
        assert!(!d.unknown_op);
        if is_cc(exp.seed) {
            assert_eq!(d.status, 2);
            assert_eq!(&d.sense[..18], &sense_for(exp.seed));
            assert!(d.data_in.is_empty());
            return;
        }
        assert_eq!(d.status, 0);
        let full = pattern(data_in_seed(d.cmd_id, exp.seed), exp.len);
        match exp.kind {
            2 if is_short(exp.seed) => {
                let n = (exp.len / 2).max(1);
                if self.read_len_cap && n < exp.len {
                    assert_eq!(d.read_len, Some(fit(n)));
                    assert_eq!(d.data_in, full[..n]);
                } else {
                    // The whole buffer goes out: the unwritten rest as zeros.
                    assert_eq!(d.read_len, None);
                    assert_eq!(d.data_in[..n], full[..n]);
                    assert!(d.data_in[n..].iter().all(|&b| b == 0));
                    assert_eq!(d.data_in.len(), exp.len);
                }
            }
            2 | 3 => assert_eq!(d.data_in, full),
            _ => assert!(d.data_in.is_empty()),
        }
    }

    fn submit(&mut self, kind: u8, len: usize, seed: u32) {
        let dir = match kind {
            0 => SimDir::None,
            1 => SimDir::Out(pattern(seed, len)),
            2 => SimDir::In(len),
            _ => SimDir::Bidi {
                out: pattern(seed, len),
                in_len: len,
            },
        };
        match self.sim.submit(&cdb(kind, seed), dir) {
            Ok(id) => {
                let old = self.expected.insert(id, Expect { kind, len, seed });
                assert!(old.is_none(), "sim reused live id {id}");
            }
            Err(SimError::Full) => {}
            Err(e) => panic!("submit: {e}"),
        }
    }

    fn drain(&mut self) {
        for _ in 0..1000 {
            if self.expected.is_empty() {
                break;
            }
            self.fetch();
            let n = self.pending.len();
            self.complete(n, 7);
            self.process();
        }
        assert!(self.expected.is_empty(), "left: {:?}", self.expected);
        assert_eq!(self.sim.outstanding(), 0);
        assert_eq!(self.sim.blocks_in_use(), 0);
        assert_eq!(self.ring.in_flight(), 0);
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, prop_oneof![1usize..600, 1usize..13_000], any::<u32>())
            .prop_map(|(kind, len, seed)| Op::Submit { kind, len, seed }),
        3 => Just(Op::Fetch),
        3 => (1usize..8, any::<u64>()).prop_map(|(n, pick)| Op::Complete { n, pick }),
        2 => Just(Op::Process),
        1 => Just(Op::Tmr),
    ]
}

fn run(cmdr_size: u32, ooo: bool, read_len: bool, ops: Vec<Op>) -> (usize, usize) {
    let flags = CAP_TMR | if ooo { CAP_OOOC } else { 0 } | if read_len { CAP_READ_LEN } else { 0 };
    let cfg = SimConfig {
        cmdr_size,
        data_size: 16 * 4096,
        data_block: 4096,
        flags,
    };
    let (sim, dev) = KernelSim::new(cfg).unwrap();
    let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let mut w = World {
        sim,
        ring,
        expected: HashMap::new(),
        pending: Vec::new(),
        read_len_cap: read_len,
        completed: 0,
        wraps: 0,
    };
    for op in ops {
        match op {
            Op::Submit { kind, len, seed } => w.submit(kind, len, seed),
            Op::Fetch => w.fetch(),
            Op::Complete { n, pick } => w.complete(n, pick),
            Op::Process => w.process(),
            Op::Tmr => {
                let ids: Vec<u16> = w.sim.outstanding_ids().into_iter().take(3).collect();
                match w.sim.submit_tmr(TmrType::AbortTask, &ids) {
                    Ok(()) | Err(SimError::Full) => {}
                    Err(e) => panic!("tmr: {e}"),
                }
            }
        }
    }
    w.drain();
    (w.completed, w.wraps)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn echo_sequences_complete_exactly_once(
        cmdr_size in prop_oneof![Just(1024u32), Just(1536), Just(4096 - 128)],
        ooo in any::<bool>(),
        read_len in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(cmdr_size, ooo, read_len, ops);
    }
}

#[test]
fn a_long_run_wraps_many_times() {
    // Deterministic long sequence: thousands of commands through a small ring.
    let mut ops = Vec::new();
    for i in 0..3000u32 {
        ops.push(Op::Submit {
            kind: (i % 4) as u8,
            len: 1 + (i as usize * 977) % if i % 8 == 0 { 15_000 } else { 700 },
            seed: i.wrapping_mul(2_246_822_519),
        });
        if i % 3 == 0 {
            ops.push(Op::Fetch);
            ops.push(Op::Complete {
                n: 3,
                pick: u64::from(i),
            });
        }
        if i % 7 == 0 {
            ops.push(Op::Process);
        }
    }
    for ooo in [true, false] {
        let (n, wraps) = run(1024, ooo, true, ops.clone());
        assert!(n > 2000, "only {n} completed");
        assert!(wraps > 100, "only {wraps} wraps");
    }
}
