//! Property tests: random I/O through `Lun` against a byte-array model, and
//! random CDBs that must never panic.

use std::sync::Arc;

use crate::util::narrow::{fit, ix, LowByte};
use crate::util::scsi::write16_cdb;
use proptest::prelude::*;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::{BackendCaps, BlockBackend};
use tcmud_core::scsi::{status, Lun, LunConfig};

const BS: usize = 512;
const BLOCKS: u64 = 96;

#[derive(Debug, Clone)]
enum Op {
    Write {
        lba: u64,
        blocks: u32,
        seed: u8,
        fua: bool,
    },
    Read {
        lba: u64,
        blocks: u32,
    },
    Unmap {
        ranges: Vec<(u64, u32)>,
    },
    WriteSame {
        lba: u64,
        blocks: u32,
        byte: u8,
        unmap: bool,
        ndob: bool,
    },
    CompareAndWrite {
        lba: u64,
        blocks: u8,
        correct: bool,
        seed: u8,
    },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let lba = 0..BLOCKS + 4; // sometimes out of range
    prop_oneof![
        (lba.clone(), 0u32..12, any::<u8>(), any::<bool>()).prop_map(|(lba, blocks, seed, fua)| {
            Op::Write {
                lba,
                blocks,
                seed,
                fua,
            }
        }),
        (lba.clone(), 0u32..12).prop_map(|(lba, blocks)| Op::Read { lba, blocks }),
        prop::collection::vec((0..BLOCKS + 2, 0u32..20), 0..4)
            .prop_map(|ranges| Op::Unmap { ranges }),
        (
            lba.clone(),
            0u32..24,
            prop_oneof![Just(0u8), any::<u8>()],
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(lba, blocks, byte, unmap, ndob)| Op::WriteSame {
                lba,
                blocks,
                byte,
                unmap,
                ndob
            }),
        (lba, 0u8..4, any::<bool>(), any::<u8>()).prop_map(|(lba, blocks, correct, seed)| {
            Op::CompareAndWrite {
                lba,
                blocks,
                correct,
                seed,
            }
        }),
        Just(Op::Flush),
    ]
}

fn fill(blocks: u32, seed: u8) -> Vec<u8> {
    (0..blocks as usize * BS)
        .map(|i| i.low_byte().wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn in_range(lba: u64, blocks: u64) -> bool {
    lba.checked_add(blocks).is_some_and(|e| e <= BLOCKS)
}

fn range(lba: u64, blocks: u64) -> std::ops::Range<usize> {
    ix(lba) * BS..ix(lba + blocks) * BS
}

/// Runs one op on the LUN and the model; returns whether the LUN said GOOD.
fn apply(lun: &Lun, model: &mut [u8], op: &Op) -> bool {
    let mut din = vec![0u8; 32 * BS];
    let (cdb, out, expect_good): (Vec<u8>, Vec<u8>, bool) = match op {
        Op::Write {
            lba,
            blocks,
            seed,
            fua,
        } => {
            let data = fill(*blocks, *seed);
            let ok = in_range(*lba, u64::from(*blocks));
            if ok {
                model[range(*lba, u64::from(*blocks))].copy_from_slice(&data);
            }
            (write16_cdb(*lba, *blocks, *fua).to_vec(), data, ok)
        }
        Op::Read { lba, blocks } => {
            let mut c = vec![0x88u8, 0]; // READ(16)
            c.extend_from_slice(&lba.to_be_bytes());
            c.extend_from_slice(&blocks.to_be_bytes());
            c.extend_from_slice(&[0, 0]);
            let ok = in_range(*lba, u64::from(*blocks));
            let r = lun.execute(&c, &[], &mut din);
            assert_eq!(r.status == status::GOOD, ok, "{op:?}: {:?}", r.sense);
            if ok {
                assert_eq!(r.data_in_len, *blocks as usize * BS);
                assert!(
                    din[..r.data_in_len] == model[range(*lba, u64::from(*blocks))],
                    "{op:?} data"
                );
            }
            return ok;
        }
        Op::Unmap { ranges } => {
            let mut list = vec![0u8; 8];
            list[2..4].copy_from_slice(&fit::<u16, _>(ranges.len() * 16).to_be_bytes());
            for (lba, n) in ranges {
                list.extend_from_slice(&lba.to_be_bytes());
                list.extend_from_slice(&n.to_be_bytes());
                list.extend_from_slice(&[0; 4]);
            }
            let ok = ranges.iter().all(|&(l, n)| in_range(l, u64::from(n)));
            if ok {
                for &(l, n) in ranges {
                    model[range(l, u64::from(n))].fill(0);
                }
            }
            let len = fit::<u16, _>(list.len()).to_be_bytes();
            (vec![0x42, 0, 0, 0, 0, 0, 0, len[0], len[1], 0], list, ok)
        }
        Op::WriteSame {
            lba,
            blocks,
            byte,
            unmap,
            ndob,
        } => {
            let mut c = vec![0x93u8, u8::from(*unmap) << 3 | u8::from(*ndob)]; // WRITE SAME(16)
            c.extend_from_slice(&lba.to_be_bytes());
            c.extend_from_slice(&blocks.to_be_bytes());
            c.extend_from_slice(&[0, 0]);
            let ok = *blocks > 0 && in_range(*lba, u64::from(*blocks));
            let b = if *ndob { 0 } else { *byte };
            if ok {
                model[range(*lba, u64::from(*blocks))].fill(b);
            }
            (c, if *ndob { vec![] } else { vec![*byte; BS] }, ok)
        }
        Op::CompareAndWrite {
            lba,
            blocks,
            correct,
            seed,
        } => {
            let n = u64::from(*blocks);
            let ok = in_range(*lba, n);
            let mut out = if ok {
                model[range(*lba, n)].to_vec()
            } else {
                vec![0; *blocks as usize * BS]
            };
            if !*correct && *blocks > 0 {
                out[BS / 2] ^= 0x80;
            }
            let new = fill(u32::from(*blocks), *seed);
            out.extend_from_slice(&new);
            let good = ok && (*correct || *blocks == 0);
            if good {
                model[range(*lba, n)].copy_from_slice(&new);
            }
            let mut c = vec![0x89u8, 0]; // COMPARE AND WRITE
            c.extend_from_slice(&lba.to_be_bytes());
            c.extend_from_slice(&[0, 0, 0, *blocks, 0, 0]);
            (c, out, good)
        }
        Op::Flush => (vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], true),
    };
    let r = lun.execute(&cdb, &out, &mut din);
    assert_eq!(
        r.status == status::GOOD,
        expect_good,
        "{op:?}: {:?}",
        r.sense
    );
    expect_good
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_io_matches_the_model(ops in prop::collection::vec(op(), 1..40), wce in any::<bool>()) {
        let mem = Arc::new(MemBackend::new(fit(BS), BLOCKS));
        let lun = Lun::new(LunConfig::default(), mem.clone());
        lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // power-on UA
        lun.set_write_cache(wce);
        lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // possible 2A/01
        let mut model = vec![0u8; ix(BLOCKS) * BS];
        for op in &ops {
            apply(&lun, &mut model, op);
        }
        let mut all = vec![0u8; model.len()];
        mem.read(0, &mut all).unwrap();
        prop_assert!(all == model);
    }

    #[test]
    fn random_cdbs_never_panic(
        opcode in prop_oneof![
            any::<u8>(),
            prop::sample::select(vec![0x00u8, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x1A, 0x1B, 0x1D, 0x25, 0x28, 0x2A, 0x2E,
                0x2F, 0x34, 0x35, 0x41, 0x42, 0x55, 0x5A, 0x88, 0x89, 0x8A, 0x8E, 0x8F, 0x90, 0x91, 0x93, 0x9E,
                0xA0, 0xA3, 0xA8, 0xAA, 0xAE, 0xAF, 0x37, 0x4D, 0xB7]),
        ],
        rest in prop::collection::vec(any::<u8>(), 0..20),
        small in any::<bool>(),
        data_out in prop::collection::vec(any::<u8>(), 0..2048),
        din_len in 0usize..70000,
    ) {
        let mut cdb = vec![opcode];
        cdb.extend(rest.iter().map(|&b| if small { b & 0x0F } else { b }));
        let caps = BackendCaps { num_blocks: 64, ..MemBackend::new(512, 64).caps() };
        let lun = Lun::new(LunConfig::default(), Arc::new(MemBackend::with_caps(caps)));
        lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []);
        let mut din = vec![0u8; din_len];
        let r = lun.execute(&cdb, &data_out, &mut din);
        prop_assert!(r.data_in_len <= din_len);
        match r.status {
            status::GOOD => prop_assert!(r.sense.is_none()),
            status::CHECK_CONDITION => {
                let f = r.sense.unwrap().to_fixed();
                prop_assert_eq!(f[0] & 0x7F, 0x70);
                prop_assert!([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xE].contains(&(f[2] & 0x0F)));
                prop_assert!(f[12] != 0);
                prop_assert_eq!(r.data_in_len, 0);
            }
            s => prop_assert!(false, "unexpected status {s}"),
        }
    }
}
