//! Write-through traffic: several threads write fresh chunks of two volumes
//! with FUA, so metadata commits (which grow the data file) run while other
//! writes extend the file. Every written block must read back.

use std::sync::Arc;

use crate::util::narrow::LowByte;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig};

const BS: usize = 4096;
const BLOCKS: u64 = 1024; // 4 MiB per volume

fn pattern(vol: u64, lba: u64) -> Vec<u8> {
    (0..BS)
        .map(|i| (vol.low_byte() ^ lba.low_byte()).wrapping_add(i.low_byte()) | 1)
        .collect()
}

#[test]
fn fua_commits_during_writes_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 64 << 20,
        low_water_pct: 90,
    };
    let pool = Pool::create(&t.path().join("pool"), &cfg).unwrap();
    for v in ["a", "b"] {
        pool.create_volume(v, BLOCKS * BS as u64, 512).unwrap();
    }
    let vols: Vec<_> = ["a", "b"]
        .iter()
        .map(|v| pool.open_volume(v).unwrap())
        .collect();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let vol: Arc<_> = vols[(t % 2) as usize].clone();
            std::thread::spawn(move || {
                for lba in (0..BLOCKS).filter(|l| l % 2 == t / 2) {
                    vol.write(lba * 8, &pattern(t % 2, lba), true).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let mut buf = vec![0u8; BS];
    for (v, vol) in vols.iter().enumerate() {
        for lba in 0..BLOCKS {
            vol.read(lba * 8, &mut buf).unwrap();
            assert!(buf == pattern(v as u64, lba), "volume {v} block {lba} lost");
        }
    }
}
