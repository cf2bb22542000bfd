use std::sync::mpsc;
use std::time::Duration;

use super::super::{PoolConfig, PoolOptions};
use super::*;
use crate::backend::BlockBackend;

const CHUNK: u32 = 4096;

/// A 4 KiB read of a chunk the mapping memo holds takes no lock of the
/// pool's (the state mutex serialises every volume's lookups otherwise):
/// it completes while another thread holds the state mutex. So does the
/// read that must not wait (`read_nowait`, the device thread's), which
/// gave up at once before.
#[test]
fn reads_of_memoised_chunks_do_not_wait_for_the_state_mutex() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create_opts(
        &dir.path().join("p"),
        &PoolConfig {
            chunk_size: CHUNK,
            capacity_bytes: 64 * u64::from(CHUNK),
            low_water_pct: 100,
        },
        &PoolOptions {
            format: 3,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    pool.create_volume("v", 16 * u64::from(CHUNK), 512).unwrap();
    let v = pool.open_volume("v").unwrap();
    let lba = |chunk: u64| chunk * u64::from(CHUNK) / 512;
    v.write(lba(3), &[7u8; 4096], false).unwrap();
    let mut b = vec![0u8; 4096];
    v.read(lba(3), &mut b).unwrap(); // the memo now holds chunk 3 and 5 (unmapped)
    v.read(lba(5), &mut b).unwrap();

    let held = pool.state();
    let (tx, rx) = mpsc::channel();
    let reader = {
        let v = std::sync::Arc::clone(&v);
        std::thread::spawn(move || {
            let mut mapped = vec![0u8; 4096];
            v.read(lba(3), &mut mapped).unwrap();
            let mut unmapped = vec![1u8; 4096];
            v.read(lba(5), &mut unmapped).unwrap();
            // a plain buffer cannot take a read that must not wait
            // (`BlockSink::pread_nowait_at`), but zeros it can
            let mut nowait = vec![1u8; 4096];
            let done = v.read_nowait(lba(5), &mut nowait).unwrap();
            tx.send((mapped, unmapped, done, nowait)).unwrap();
        })
    };
    let got = rx.recv_timeout(Duration::from_secs(10));
    drop(held);
    let (mapped, unmapped, done, nowait) = got.expect("the reads waited for the state mutex");
    reader.join().unwrap();
    assert!(mapped.iter().all(|&x| x == 7));
    assert!(unmapped.iter().all(|&x| x == 0));
    assert!(done, "read_nowait gave up");
    assert!(nowait.iter().all(|&x| x == 0));
}
