//! A process that dies by SIGKILL loses nothing it acknowledged: a child
//! process writes to a thin volume from several threads with FUA (what the
//! daemon does for a write-through LUN) and reports each write once it
//! returns; the parent kills it mid-stream, reopens the pool and reads every
//! reported write back. The page cache survives the kill, so this checks the
//! pool's ordering of data writes, metadata commits and acknowledgements
//! under concurrency, as the real daemon sees it.

use crate::util::{rerun, test_name};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;

use crate::util::narrow::LowByte;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig};

const CHILD_ENV: &str = "TCMUD_KILL9_CHILD";
const BS: usize = 4096;
const VOL_BLOCKS: u64 = 4096; // 16 MiB of 4 KiB blocks
const THREADS: u64 = 4;

fn pattern(lba: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate() {
        *b = lba.low_byte().wrapping_mul(7).wrapping_add(i.low_byte()) | 1;
    }
    v
}

/// The child: every thread writes its own shuffled share of the volume,
/// each block once, and prints `ACK <lba>` when a write returned.
fn child(dir: &str) {
    let pool = Pool::open(std::path::Path::new(dir)).unwrap();
    let vol = pool.open_volume("v").unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let vol = vol.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut lbas: Vec<u64> = (0..VOL_BLOCKS).filter(|l| l % THREADS == t).collect();
                // A fixed shuffle (multiplicative step), so chunks fill partly.
                let n = lbas.len();
                let order: Vec<u64> = (0..n).map(|i| lbas[(i * 389) % n]).collect();
                lbas = order;
                for lba in lbas {
                    // The volume's block size is 512: LBA in 512-byte units.
                    vol.write(lba * 8, &pattern(lba, BS), true).unwrap();
                    use std::io::Write;
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {lba}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn acknowledged_fua_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    for (round, stop_after) in [(0, 40usize), (1, 300), (2, 900)] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("pool");
        let cfg = PoolConfig {
            chunk_size: 64 << 10,
            capacity_bytes: 64 << 20,
            low_water_pct: 90,
        };
        let pool = Pool::create(&dir, &cfg).unwrap();
        pool.create_volume("v", VOL_BLOCKS * BS as u64, 512)
            .unwrap();
        pool.close().unwrap();

        let mut child = rerun(&test_name!(acknowledged_fua_writes_survive_sigkill))
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // The first follows libtest's `test NAME ... ` on its line.
            if let Some((_, lba)) = line.split_once("ACK ") {
                acked.push(lba.parse::<u64>().unwrap());
                if acked.len() >= stop_after {
                    break;
                }
            }
        }
        // A child that ran no test (a wrong --exact name) acknowledges
        // nothing, and nothing would be checked.
        assert_eq!(
            acked.len(),
            stop_after,
            "round {round}: the child stopped early"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Wait for the lock of the dead process to go (it is released by
        // the kernel when the process ends).
        let pool = Pool::open(&dir).unwrap();
        let vol = pool.open_volume("v").unwrap();
        let mut buf = vec![0u8; BS];
        for &lba in &acked {
            vol.read(lba * 8, &mut buf).unwrap();
            assert!(
                buf == pattern(lba, BS),
                "round {round}: acknowledged block {lba} lost after SIGKILL ({} acked)",
                acked.len()
            );
        }
        let report = pool.check().unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
}
