//! Model-based test: random sequences of operations on several volumes,
//! compared byte for byte with an in-memory model, ending with a clean check.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tcmud_core::backend::{BackendError, BlockBackend};
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolErrorKind, PoolOptions, VolumeKind};

use crate::util::narrow::{fit, ix, LowByte};

const CHUNK: u32 = 4096;

#[derive(Debug, Clone)]
enum Op {
    Create {
        bs4k: bool,
        kib: u64,
    },
    Write {
        vol: usize,
        lba: u64,
        blocks: u64,
        seed: u8,
        fua: bool,
    },
    Read {
        vol: usize,
        lba: u64,
        blocks: u64,
    },
    Discard {
        vol: usize,
        lba: u64,
        blocks: u64,
    },
    Snapshot {
        vol: usize,
    },
    Clone {
        vol: usize,
    },
    Delete {
        vol: usize,
    },
    Resize {
        vol: usize,
        kib: u64,
        force: bool,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (any::<bool>(), 1u64..=48).prop_map(|(bs4k, kib)| Op::Create { bs4k, kib }),
        6 => (any::<usize>(), 0u64..96, 1u64..24, any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(vol, lba, blocks, seed, fua)| Op::Write { vol, lba, blocks, seed, fua }),
        3 => (any::<usize>(), 0u64..96, 1u64..32).prop_map(|(vol, lba, blocks)| Op::Read { vol, lba, blocks }),
        2 => (any::<usize>(), 0u64..96, 1u64..32).prop_map(|(vol, lba, blocks)| Op::Discard { vol, lba, blocks }),
        1 => any::<usize>().prop_map(|vol| Op::Snapshot { vol }),
        1 => any::<usize>().prop_map(|vol| Op::Clone { vol }),
        1 => any::<usize>().prop_map(|vol| Op::Delete { vol }),
        1 => (any::<usize>(), 1u64..=48, any::<bool>()).prop_map(|(vol, kib, force)| Op::Resize { vol, kib, force }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

struct ModelVol {
    bytes: Vec<u8>,
    bs: u64,
    snapshot: bool,
}

struct World {
    store: MemStore,
    data: CrashIo,
    pool: Pool,
    model: BTreeMap<String, ModelVol>,
    next: u32,
}

impl World {
    fn pick(&self, i: usize, want: Option<bool>) -> Option<String> {
        let names: Vec<&String> = self
            .model
            .iter()
            .filter(|(_, v)| want.is_none_or(|s| v.snapshot == s))
            .map(|(n, _)| n)
            .collect();
        if names.is_empty() {
            None
        } else {
            Some(names[i % names.len()].clone())
        }
    }

    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn clamp(&self, name: &str, lba: u64, blocks: u64) -> (u64, u64) {
        let v = &self.model[name];
        let nb = v.bytes.len() as u64 / v.bs;
        let lba = lba % nb;
        (lba, blocks.min(nb - lba))
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create { bs4k, kib } => {
                let bs = if bs4k { 4096 } else { 512 };
                let size = (kib * 1024).div_ceil(bs) * bs;
                let n = self.name("v");
                self.pool.create_volume(&n, size, fit(bs)).unwrap();
                self.model.insert(
                    n,
                    ModelVol {
                        bytes: vec![0; ix(size)],
                        bs,
                        snapshot: false,
                    },
                );
            }
            Op::Write {
                vol,
                lba,
                blocks,
                seed,
                fua,
            } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                let (lba, blocks) = self.clamp(&n, lba, blocks);
                let m = self.model.get_mut(&n).unwrap();
                let len = ix(blocks * m.bs);
                let buf: Vec<u8> = (0..len)
                    .map(|i| seed.wrapping_add((i / 7).low_byte()) | 1)
                    .collect();
                let v = self.pool.open_volume(&n).unwrap();
                let r = v.write(lba, &buf, fua);
                if m.snapshot {
                    assert!(matches!(r, Err(BackendError::ReadOnly)));
                } else {
                    r.unwrap();
                    let off = ix(lba * m.bs);
                    m.bytes[off..off + len].copy_from_slice(&buf);
                }
            }
            Op::Read { vol, lba, blocks } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                let (lba, blocks) = self.clamp(&n, lba, blocks);
                let m = &self.model[&n];
                let mut buf = vec![0xccu8; ix(blocks * m.bs)];
                self.pool
                    .open_volume(&n)
                    .unwrap()
                    .read(lba, &mut buf)
                    .unwrap();
                let off = ix(lba * m.bs);
                assert!(
                    buf == m.bytes[off..off + buf.len()],
                    "read {n} lba {lba} +{blocks} differs"
                );
            }
            Op::Discard { vol, lba, blocks } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                let (lba, blocks) = self.clamp(&n, lba, blocks);
                let m = self.model.get_mut(&n).unwrap();
                let r = self.pool.open_volume(&n).unwrap().unmap(lba, blocks);
                if m.snapshot {
                    assert!(matches!(r, Err(BackendError::ReadOnly)));
                } else {
                    r.unwrap();
                    let off = ix(lba * m.bs);
                    m.bytes[off..off + ix(blocks * m.bs)].fill(0);
                }
            }
            Op::Snapshot { vol } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                let s = self.name("s");
                self.pool.snapshot(&n, &s).unwrap();
                let m = &self.model[&n];
                let copy = ModelVol {
                    bytes: m.bytes.clone(),
                    bs: m.bs,
                    snapshot: true,
                };
                self.model.insert(s, copy);
            }
            Op::Clone { vol } => {
                let Some(n) = self.pick(vol, Some(true)) else {
                    return;
                };
                let c = self.name("c");
                self.pool.clone_snapshot(&n, &c).unwrap();
                let m = &self.model[&n];
                let copy = ModelVol {
                    bytes: m.bytes.clone(),
                    bs: m.bs,
                    snapshot: false,
                };
                self.model.insert(c, copy);
            }
            Op::Delete { vol } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                self.pool.delete_volume(&n).unwrap();
                self.model.remove(&n);
            }
            Op::Resize { vol, kib, force } => {
                let Some(n) = self.pick(vol, None) else {
                    return;
                };
                let m = self.model.get_mut(&n).unwrap();
                let size = (kib * 1024).div_ceil(m.bs) * m.bs;
                let r = self.pool.resize_volume(&n, size, force);
                if m.snapshot {
                    assert!(matches!(r, Err(e) if e.kind() == PoolErrorKind::WrongKind));
                } else if size < m.bytes.len() as u64 && !force {
                    assert!(matches!(r, Err(e) if e.kind() == PoolErrorKind::ShrinkNotForced));
                } else {
                    r.unwrap();
                    m.bytes.resize(ix(size), 0);
                }
            }
            Op::Flush => self.pool.flush().unwrap(),
            Op::Reopen => {
                let cfg = PoolConfig {
                    chunk_size: CHUNK,
                    capacity_bytes: 1 << 20,
                    low_water_pct: 90,
                };
                let dummy =
                    Pool::create_with(&cfg, Box::new(MemStore::new()), Box::new(CrashIo::new()))
                        .unwrap();
                let pool = std::mem::replace(&mut self.pool, dummy);
                pool.close().unwrap();
                self.pool =
                    Pool::open_with(Box::new(self.store.clone()), Box::new(self.data.clone()))
                        .unwrap();
            }
        }
    }

    fn verify_all(&self) {
        let listed: Vec<(String, VolumeKind, u64)> = self
            .pool
            .list_volumes()
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.kind, v.size_bytes))
            .collect();
        let want: Vec<(String, VolumeKind, u64)> = self
            .model
            .iter()
            .map(|(n, m)| {
                let k = if m.snapshot {
                    VolumeKind::Snapshot
                } else {
                    VolumeKind::Volume
                };
                (n.clone(), k, m.bytes.len() as u64)
            })
            .collect();
        assert_eq!(listed, want);
        let mut used = std::collections::HashSet::new();
        for (n, m) in &self.model {
            let v = self.pool.open_volume(n).unwrap();
            let mut buf = vec![0xccu8; m.bytes.len()];
            v.read(0, &mut buf).unwrap();
            assert!(buf == m.bytes, "volume {n} differs");
            // Deallocated runs read as zeros.
            let nb = m.bytes.len() as u64 / m.bs;
            let mut lba = 0;
            while lba < nb {
                let a = v.allocation(lba, nb).unwrap();
                if !a.mapped {
                    let s = ix(lba * m.bs);
                    assert!(m.bytes[s..s + ix(a.blocks * m.bs)].iter().all(|&b| b == 0));
                }
                lba += a.blocks;
            }
            used.insert(n.clone());
        }
        let report = self.pool.check().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn pool_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let store = MemStore::new();
        let data = CrashIo::new();
        let cfg = PoolConfig { chunk_size: CHUNK, capacity_bytes: 4096 * CHUNK as u64, low_water_pct: 90 };
        let pool = Pool::create_with(&cfg, Box::new(store.clone()), Box::new(data.clone())).unwrap();
        run_model(store, data, pool, &ops);
    }

    /// The same on format 3 (page tree) with a metadata cache of a few
    /// pages, so that pages are evicted and read back.
    #[test]
    fn format3_pool_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let store = MemStore::new();
        let data = CrashIo::new();
        let cfg = PoolConfig { chunk_size: CHUNK, capacity_bytes: 4096 * CHUNK as u64, low_water_pct: 90 };
        let opts = PoolOptions { format: 3, metadata_cache: 16 << 10, delete_step: 1, ..PoolOptions::default() };
        let pool = Pool::create_with_opts(&cfg, Box::new(store.clone()), Box::new(data.clone()), &opts).unwrap();
        run_model(store, data, pool, &ops);
    }
}

fn run_model(store: MemStore, data: CrashIo, pool: Pool, ops: &[Op]) {
    {
        let mut w = World {
            store,
            data,
            pool,
            model: BTreeMap::new(),
            next: 0,
        };
        w.apply(&Op::Create {
            bs4k: false,
            kib: 32,
        });
        w.apply(&Op::Create {
            bs4k: true,
            kib: 40,
        });
        for op in ops {
            w.apply(op);
        }
        w.verify_all();
        w.apply(&Op::Reopen);
        w.verify_all();
    }
}
