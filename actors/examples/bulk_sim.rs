//! Large transfers through the real device actor against the kernel
//! simulator, for profiling the 1 MiB rows of the kernel-path benchmark on
//! the host (perf, valgrind):
//!
//! ```text
//! cargo run --release -p tcmud --example bulk_sim -- read|write KIB DEPTH COMMANDS IMAGE|POOLDIR/
//! ```
//!
//! Serves a raw image file (`file/` backstore, created at 64 MiB if missing;
//! put it on tmpfs like the VM benchmark), or with a path ending in `/` a
//! 64 MiB thin volume in a pool created there (written whole first, so the
//! run measures overwrites), with 4 I/O threads and keeps DEPTH
//! sequential commands of KIB KiB outstanding (READ(10)/WRITE(10), 512 B
//! blocks), then prints MB/s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcmud::backstore::{BackstoreHandle, BackstoreKind};
use tcmud::device::{spawn_device_with, DeviceOptions, DeviceSpec};
use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig};
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

const BS: usize = BS_U32 as usize;
const BS_U32: u32 = 512;
const IMAGE: u64 = 64 << 20;

fn cdb(write: bool, lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    let op = if write { 0x2a } else { 0x28 };
    vec![op, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 5 {
        eprintln!("usage: bulk_sim read|write KIB DEPTH COMMANDS IMAGE");
        std::process::exit(2);
    }
    let write = a[0] == "write";
    let kib: usize = a[1].parse().unwrap();
    let depth: usize = a[2].parse().unwrap();
    let n: usize = a[3].parse().unwrap();
    let image = PathBuf::from(&a[4]);
    let len = kib * 1024;
    // A READ(10)/WRITE(10) moves at most 65535 blocks (32767 KiB).
    let Some(blocks) = u16::try_from(len / BS).ok().filter(|&b| b > 0) else {
        eprintln!("bulk_sim: KIB must be 1..=32767 (a 10-byte CDB's transfer length), not {kib}");
        std::process::exit(2);
    };
    // At least 2 commands fit in the image: KIB is at most 32767.
    let per_image = usize::try_from(IMAGE).expect("64 MiB") / len;
    let backend: Arc<dyn BlockBackend> = if a[4].ends_with('/') {
        let cfg = PoolConfig {
            capacity_bytes: 2 * IMAGE,
            ..PoolConfig::default()
        };
        let pool = Pool::create(&image, &cfg).unwrap();
        pool.create_volume("v", IMAGE, BS_U32).unwrap();
        let vol = pool.open_volume("v").unwrap();
        let fill = vec![0x11u8; 1 << 20];
        for i in 0..IMAGE / (1 << 20) {
            vol.write(i * (1 << 20) / BS as u64, &fill, false).unwrap();
        }
        vol
    } else {
        Arc::new(FileBackend::create(&image, BS_U32, IMAGE).unwrap())
    };
    let t = actix::System::new().block_on(async move {
        let (dev_tx, dev_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let cfg = SimConfig {
                cmdr_size: 1024 * 1024 - 128,
                data_size: (depth * len).max(1 << 20),
                ..SimConfig::default()
            };
            let (mut sim, dev) = KernelSim::new(cfg).unwrap();
            dev_tx.send(dev).unwrap();
            let payload = vec![0x5au8; len];
            let t0 = Instant::now();
            let (mut submitted, mut completed, mut outstanding) = (0usize, 0usize, 0usize);
            while completed < n {
                let before = submitted;
                while submitted < n && outstanding < depth {
                    let lba = u32::try_from(submitted % per_image).expect("below per_image")
                        * u32::from(blocks);
                    let dir = if write {
                        SimDir::Out(payload.clone())
                    } else {
                        SimDir::In(len)
                    };
                    sim.submit(&cdb(write, lba, blocks), dir).unwrap();
                    submitted += 1;
                    outstanding += 1;
                }
                if submitted > before {
                    sim.kick().unwrap();
                }
                let _ = sim.wait_kick(Duration::from_millis(10)).unwrap();
                let done = sim.process_completions().unwrap();
                // The first command gets the power-on unit attention.
                if let Some(c) = done
                    .iter()
                    .find(|c| c.status != 0 && c.sense.get(2) != Some(&6))
                {
                    panic!("command failed: status {} sense {:02x?}", c.status, c.sense);
                }
                completed += done.len();
                outstanding -= done.len();
            }
            assert!(sim.broken().is_none());
            let _ = done_tx.send(t0.elapsed());
        });
        let dev = dev_rx.recv().unwrap();
        let bs = BackstoreHandle::new(backend, BackstoreKind::File { path: image }, 4).unwrap();
        let spec = DeviceSpec::simulated("file/x", IMAGE);
        let opts = DeviceOptions::simulated(dev);
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let t = done_rx.await.unwrap();
        handle.stop().await;
        t
    });
    let mb = (n * len) as f64 / (1 << 20) as f64;
    println!(
        "{} {n} x {kib} KiB, depth {depth}: {:.3} s, {:.1} MB/s",
        if write { "write" } else { "read" },
        t.as_secs_f64(),
        mb / t.as_secs_f64()
    );
}
