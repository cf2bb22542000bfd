//! End to end through the core library: kernel simulator → ring → SCSI
//! emulation → in-memory thin backend, compared byte for byte with a
//! reference model.
//!
//! Random command sequences (READ, WRITE, UNMAP, WRITE SAME with UNMAP,
//! COMPARE AND WRITE, SYNCHRONIZE CACHE) are queued in random batches,
//! executed in fetch order, and completed in random order when the ring
//! offers out-of-order completion (in order otherwise), with some
//! completions held back across batches so that slots stay busy while the
//! ring wraps. The simulator must see every command completed exactly once,
//! never go BROKEN, and return exactly the bytes the model predicts. Each
//! case runs either the copying path (`Lun::execute` over buffers) or the
//! zero-copy one (`Lun::execute_io` over `Ring::data`, the backend filling
//! and draining the data area itself; the small data area fragments, so
//! commands span several iovs).

use std::collections::HashMap;
use std::sync::Arc;

use crate::util::narrow::{fit, ix, LowByte};
use proptest::prelude::*;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::ring::layout::{CAP_OOOC, CAP_READ_LEN};
use tcmud_core::ring::{Completion, DataIn, DataSpans, Entry, Ring};
use tcmud_core::scsi::{Lun, LunConfig};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir, SimError};

const BS: usize = 512;
const BLOCKS: u64 = 2048;
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const MISCOMPARE: u8 = 0x0e;

#[derive(Debug, Clone)]
enum Op {
    Read { lba: u64, n: u16 },
    Write { lba: u64, n: u16, seed: u8 },
    Unmap { lba: u64, n: u16 },
    WriteSameUnmap { lba: u64, n: u16 },
    CompareAndWrite { lba: u64, matching: bool, seed: u8 },
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..BLOCKS - 64, 1u16..=64);
    prop_oneof![
        4 => range.clone().prop_map(|(lba, n)| Op::Read { lba, n }),
        4 => (range.clone(), any::<u8>()).prop_map(|((lba, n), seed)| Op::Write { lba, n, seed }),
        1 => range.clone().prop_map(|(lba, n)| Op::Unmap { lba, n }),
        1 => range.prop_map(|(lba, n)| Op::WriteSameUnmap { lba, n }),
        1 => (0..BLOCKS, any::<bool>(), any::<u8>())
            .prop_map(|(lba, matching, seed)| Op::CompareAndWrite { lba, matching, seed }),
        1 => Just(Op::Sync),
    ]
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251).low_byte()))
        .collect()
}

fn be32(v: u64) -> [u8; 4] {
    u32::try_from(v).unwrap().to_be_bytes()
}

/// The CDB and data direction the initiator would send for `op`, given the
/// model's current contents (COMPARE AND WRITE needs the bytes to verify).
fn encode(op: &Op, model: &[u8]) -> (Vec<u8>, SimDir) {
    match *op {
        Op::Read { lba, n } => {
            let l = be32(lba);
            let [nh, nl] = n.to_be_bytes();
            // READ(10): opcode, flags, LBA[4], group, length[2], control
            let cdb = vec![0x28, 0, l[0], l[1], l[2], l[3], 0, nh, nl, 0];
            (cdb, SimDir::In(usize::from(n) * BS))
        }
        Op::Write { lba, n, seed } => {
            let l = be32(lba);
            let [nh, nl] = n.to_be_bytes();
            // WRITE(10): opcode, flags, LBA[4], group, length[2], control
            let cdb = vec![0x2a, 0, l[0], l[1], l[2], l[3], 0, nh, nl, 0];
            (cdb, SimDir::Out(pattern(seed, usize::from(n) * BS)))
        }
        Op::Unmap { lba, n } => {
            // UNMAP: opcode, ANCHOR=0, reserved[4], group, param length[2], control
            let cdb = vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
            let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&u32::from(n).to_be_bytes());
            p.extend_from_slice(&[0; 4]);
            (cdb, SimDir::Out(p))
        }
        Op::WriteSameUnmap { lba, n } => {
            let mut cdb = vec![0x93, 0x08]; // WRITE SAME(16), UNMAP=1
            cdb.extend_from_slice(&lba.to_be_bytes()); // LBA[8]
            cdb.extend_from_slice(&u32::from(n).to_be_bytes()); // blocks[4]
            cdb.extend_from_slice(&[0, 0]); // group, control
            (cdb, SimDir::Out(vec![0; BS]))
        }
        Op::CompareAndWrite {
            lba,
            matching,
            seed,
        } => {
            let mut cdb = vec![0x89, 0]; // COMPARE AND WRITE, flags
            cdb.extend_from_slice(&lba.to_be_bytes()); // LBA[8]
            cdb.extend_from_slice(&[0, 0, 0, 1, 0, 0]); // reserved[3], NUMBER OF LOGICAL BLOCKS=1, group, control
            let at = usize::try_from(lba).unwrap() * BS;
            let mut verify = model[at..at + BS].to_vec();
            if !matching {
                verify[usize::from(seed) % BS] ^= 0xff;
            }
            verify.extend_from_slice(&pattern(seed, BS));
            (cdb, SimDir::Out(verify))
        }
        // SYNCHRONIZE CACHE(10): everything zero means the whole medium
        Op::Sync => (vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], SimDir::None),
    }
}

/// What the initiator must see for `op`, and the model after it.
struct Expect {
    status: u8,
    sense_key: Option<u8>,
    data_in: Vec<u8>,
}

fn apply(op: &Op, model: &mut [u8]) -> Expect {
    let good = |data_in| Expect {
        status: GOOD,
        sense_key: None,
        data_in,
    };
    let span = |lba: u64, n: u16| {
        let at = usize::try_from(lba).unwrap() * BS;
        at..at + usize::from(n) * BS
    };
    match *op {
        Op::Read { lba, n } => good(model[span(lba, n)].to_vec()),
        Op::Write { lba, n, seed } => {
            model[span(lba, n)].copy_from_slice(&pattern(seed, usize::from(n) * BS));
            good(vec![])
        }
        Op::Unmap { lba, n } | Op::WriteSameUnmap { lba, n } => {
            model[span(lba, n)].fill(0);
            good(vec![])
        }
        Op::CompareAndWrite {
            lba,
            matching,
            seed,
        } => {
            if matching {
                model[span(lba, 1)].copy_from_slice(&pattern(seed, BS));
                good(vec![])
            } else {
                Expect {
                    status: CHECK_CONDITION,
                    sense_key: Some(MISCOMPARE),
                    data_in: vec![],
                }
            }
        }
        Op::Sync => good(vec![]),
    }
}

struct Harness {
    sim: KernelSim,
    ring: Ring,
    lun: Lun,
    model: Vec<u8>,
    /// Ops queued in the simulator, by cmd_id.
    queued: HashMap<u16, Op>,
    /// What each queued command must deliver, by cmd_id.
    expected: HashMap<u16, Expect>,
    /// Executed, response not yet written to the ring: with the data-in
    /// buffers of a READ and the bytes it wrote.
    pending: Vec<(Completion, Option<DataSpans>, usize)>,
    /// Run commands with `Lun::execute_io` over the data area.
    zero_copy: bool,
}

impl Harness {
    fn new(flags: u16, zero_copy: bool) -> Harness {
        let cfg = SimConfig {
            cmdr_size: 4096 - 128, // small, so the ring wraps often
            data_size: 256 * 4096,
            data_block: 4096,
            flags,
        };
        let (sim, dev) = KernelSim::new(cfg).unwrap();
        let ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
        let lun = Lun::new(
            LunConfig::default(),
            Arc::new(MemBackend::new(fit(BS), BLOCKS)),
        );
        // Consume the power-on unit attention outside the ring.
        let tur = [0u8; 6];
        let _ = lun.execute(&tur, &[], &mut []);
        Harness {
            sim,
            ring,
            lun,
            model: vec![0; ix(BLOCKS) * BS],
            queued: HashMap::new(),
            expected: HashMap::new(),
            pending: Vec::new(),
            zero_copy,
        }
    }

    /// Queues as many of `ops` as fit; returns how many did.
    fn submit(&mut self, ops: &[Op]) -> usize {
        for (i, op) in ops.iter().enumerate() {
            let (cdb, dir) = encode(op, &self.model);
            match self.sim.submit(&cdb, dir) {
                Ok(id) => {
                    // Commands execute in submission (fetch) order, so the
                    // outcome is known now; later CDBs see its effect.
                    let expect = apply(op, &mut self.model);
                    assert!(self.queued.insert(id, op.clone()).is_none());
                    assert!(self.expected.insert(id, expect).is_none());
                }
                Err(SimError::Full) => return i,
                Err(e) => panic!("submit: {e}"),
            }
        }
        ops.len()
    }

    /// Fetches everything queued and executes it in fetch order.
    fn fetch_and_execute(&mut self) {
        self.sim.kick().unwrap();
        self.ring.drain_events().unwrap();
        let entries: Vec<_> = self.ring.fetch().collect();
        for entry in entries {
            let Entry::Cmd(cmd) = entry.unwrap() else {
                panic!("unexpected TMR")
            };
            let op = self
                .queued
                .remove(&cmd.cmd_id)
                .expect("fetched an id never queued");
            if self.zero_copy {
                let data = self.ring.data(&cmd.data).unwrap();
                let mut sink = data;
                let rsp = self.lun.execute_io(cmd.cdb.as_bytes(), &data, &mut sink);
                let completion = match rsp.sense_bytes() {
                    Some(sense) => Completion::check_condition(cmd.cmd_id, &sense),
                    None => Completion::status(cmd.cmd_id, rsp.status, None),
                };
                let din = matches!(op, Op::Read { .. }).then(|| cmd.data.clone());
                self.pending.push((completion, din, rsp.data_in_len));
                continue;
            }
            let mut out = vec![0; cmd.data.len()];
            let mut data_in = vec![0; cmd.data.len()];
            if !matches!(op, Op::Read { .. }) {
                self.ring.read_data_out(&cmd.data, &mut out).unwrap();
            }
            let rsp = self.lun.execute(cmd.cdb.as_bytes(), &out, &mut data_in);
            let completion = match rsp.sense_bytes() {
                Some(sense) => Completion::check_condition(cmd.cmd_id, &sense),
                None => {
                    if matches!(op, Op::Read { .. }) {
                        let n = rsp.data_in_len;
                        self.ring.write_data_in(&cmd.data, &data_in[..n]).unwrap();
                    }
                    Completion::status(cmd.cmd_id, rsp.status, None)
                }
            };
            let din = matches!(op, Op::Read { .. }).then(|| cmd.data.clone());
            self.pending.push((completion, din, rsp.data_in_len));
        }
    }

    /// Writes `count` pending responses (in the order given by `order`
    /// when out-of-order completion is on), kicks once, and checks what the
    /// simulated kernel saw.
    fn complete(&mut self, count: usize, order: &[usize], ooo: bool) {
        for k in 0..count.min(self.pending.len()) {
            let i = if ooo {
                order.get(k).copied().unwrap_or(0) % self.pending.len()
            } else {
                0
            };
            let (c, din, written) = self.pending.remove(i);
            let data_in = din
                .as_ref()
                .map_or(DataIn::NONE, |d| DataIn::new(d, written));
            self.ring.complete(c, data_in).unwrap();
        }
        self.ring.kick().unwrap();
        self.check_kernel_side();
    }

    fn check_kernel_side(&mut self) {
        for done in self.sim.process_completions().unwrap() {
            let expect = self
                .expected
                .remove(&done.cmd_id)
                .expect("completion for an id not executed, or completed twice");
            assert_eq!(
                done.status, expect.status,
                "status of {} (sense {:02x?})",
                done.cmd_id, done.sense
            );
            assert_eq!(done.sense.get(2).map(|k| k & 0x0f), expect.sense_key);
            if expect.status == GOOD && !expect.data_in.is_empty() {
                assert!(done.data_in == expect.data_in, "data of {}", done.cmd_id);
            }
        }
        assert_eq!(self.sim.broken(), None);
    }
}

fn run(ops: &[Op], batches: &[(usize, usize)], order: &[usize], flags: u16, zero_copy: bool) {
    let mut h = Harness::new(flags, zero_copy);
    let ooo = flags & CAP_OOOC != 0;
    let mut next = 0;
    let mut b = 0;
    while next < ops.len() {
        let (want, done_now) = batches[b % batches.len()];
        b += 1;
        let end = (next + want).min(ops.len());
        let queued = h.submit(&ops[next..end]);
        next += queued;
        h.fetch_and_execute();
        // Complete some now; when nothing fit, complete everything.
        let count = if queued == 0 {
            h.pending.len()
        } else {
            done_now
        };
        h.complete(count, order, ooo);
    }
    let all = h.pending.len();
    h.complete(all, order, ooo);
    assert!(h.expected.is_empty(), "commands never completed");
    assert_eq!(h.sim.outstanding(), 0);
    assert_eq!(h.ring.in_flight(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn out_of_order_completion_matches_model(
        ops in prop::collection::vec(op(), 50..250),
        batches in prop::collection::vec((1usize..24, 0usize..24), 1..8),
        order in prop::collection::vec(any::<usize>(), 24),
        zero_copy in any::<bool>(),
    ) {
        run(&ops, &batches, &order, CAP_OOOC | CAP_READ_LEN, zero_copy);
    }

    #[test]
    fn in_order_completion_matches_model(
        ops in prop::collection::vec(op(), 50..250),
        batches in prop::collection::vec((1usize..24, 0usize..24), 1..8),
        zero_copy in any::<bool>(),
    ) {
        run(&ops, &batches, &[], CAP_READ_LEN, zero_copy);
    }
}
