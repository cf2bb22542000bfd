//! Serves a simulated TCMU device through the real device actor and prints
//! what happened.
//!
//! ```text
//! cargo run -p tcmud --example serve_sim -- [COMMANDS] [--pool DIR] [--panics N]
//! ```
//!
//! The "kernel" is `tcmud_core::sim::KernelSim` on its own thread, playing an
//! initiator that writes random blocks and reads them back (checking the
//! data); the device actor serves it from memory, or from a thin volume in a
//! temporary pool (`--pool DIR`: a pool created there). `--panics N`
//! injects N panics (emulation and reply path) to show crash restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcmud::backstore::{
    open_backstore, BackstoreHandle, BackstoreKind, DevConfig, OpenPolicy, PoolRegistry, PoolSpec,
    DEFAULT_BLOCK_SIZE,
};
use tcmud::device::{
    spawn_device_with, DeviceOptions, DeviceSpec, FaultPlan, FaultPoint, RestartBudget, RingSource,
};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::pool::PoolConfig;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir, SimError};

const BS: usize = BS_U32 as usize;
const BS_U32: u32 = 512;
const DISK: usize = 8 << 20;

struct Args {
    commands: usize,
    pool: Option<std::path::PathBuf>,
    panics: u64,
}

fn args() -> Args {
    let mut a = Args {
        commands: 20_000,
        pool: None,
        panics: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--pool" => a.pool = it.next().map(Into::into),
            "--panics" => a.panics = it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            n => a.commands = n.parse().unwrap_or(a.commands),
        }
    }
    a
}

fn backstore(a: &Args) -> BackstoreHandle {
    match &a.pool {
        Some(dir) => {
            let reg = PoolRegistry::new(vec![PoolSpec {
                name: "example".into(),
                path: dir.clone(),
                config: PoolConfig::default(),
                auto_create: true,
                options: Default::default(),
            }]);
            let cfg = DevConfig::parse("thin/example/serve_sim").unwrap().unwrap();
            open_backstore(
                &cfg,
                DISK as u64,
                DEFAULT_BLOCK_SIZE,
                &reg,
                &OpenPolicy {
                    may_create: true,
                    file_roots: &[],
                },
            )
            .unwrap()
        }
        None => BackstoreHandle::new(
            Arc::new(MemBackend::new(BS_U32, (DISK / BS) as u64)),
            BackstoreKind::Other {
                name: "memory".into(),
            },
            4,
        )
        .unwrap(),
    }
}

fn cdb(op: u8, lba: usize, blocks: usize) -> Vec<u8> {
    let l = u32::try_from(lba)
        .expect("an LBA of the 8 MiB disk")
        .to_be_bytes();
    let n = u16::try_from(blocks).expect("8 blocks").to_be_bytes();
    vec![op, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

#[derive(Default, Debug)]
struct Initiator {
    completed: usize,
    good: usize,
    other_status: usize,
    wrong_data: usize,
    bytes_written: usize,
    bytes_read: usize,
}

/// Writes block-stamped data everywhere in order, then reads it back at
/// random, 32 commands in flight.
fn initiator(sim: &mut KernelSim, n: usize) -> Initiator {
    let mut r = Initiator::default();
    // TEST UNIT READY first: it takes the power-on unit attention, as a
    // real initiator's first command does.
    sim.submit(&[0u8; 6], SimDir::None).unwrap();
    sim.kick().unwrap();
    while sim.process_completions().unwrap().is_empty() {
        let _ = sim.wait_kick(Duration::from_millis(50)).unwrap();
    }
    let blocks = DISK / BS;
    let mut pending: HashMap<u16, (bool, usize)> = HashMap::new();
    let (mut submitted, mut seed) = (0usize, 0x2545_f491_4f6c_dd1du64);
    let stamp = |lba: usize| vec![u8::try_from(lba % 251).expect("below 251"); 8 * BS];
    while submitted < n || !pending.is_empty() {
        while submitted < n && pending.len() < 32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let write = submitted < blocks / 8;
            let lba = if write {
                submitted * 8
            } else {
                let extent = seed % (blocks / 8) as u64;
                usize::try_from(extent).expect("below blocks / 8") * 8
            };
            let res = if write {
                sim.submit(&cdb(0x2a, lba, 8), SimDir::Out(stamp(lba)))
            } else {
                sim.submit(&cdb(0x28, lba, 8), SimDir::In(8 * BS))
            };
            match res {
                Ok(id) => {
                    pending.insert(id, (write, lba));
                    submitted += 1;
                }
                Err(SimError::Full) => break,
                Err(e) => panic!("submit: {e}"),
            }
        }
        sim.kick().unwrap();
        let _ = sim.wait_kick(Duration::from_millis(50)).unwrap();
        for c in sim.process_completions().unwrap() {
            let Some((write, lba)) = pending.remove(&c.cmd_id) else {
                panic!("completion for unknown cmd_id {}", c.cmd_id);
            };
            r.completed += 1;
            if c.status != 0 {
                r.other_status += 1; // e.g. the power-on unit attention
                continue;
            }
            r.good += 1;
            if write {
                r.bytes_written += 8 * BS;
            } else {
                r.bytes_read += c.data_in.len();
                if c.data_in != stamp(lba) {
                    r.wrong_data += 1;
                }
            }
        }
    }
    if let Some(why) = sim.broken() {
        panic!("ring BROKEN: {why}");
    }
    r
}

fn main() {
    let a = args();
    let bs = backstore(&a);
    println!("backstore: {:?}", bs.kind());
    let fault = (a.panics > 0).then(|| FaultPlan {
        triggers: (0..a.panics)
            .map(|i| {
                let at = (i + 1) * a.commands as u64 / (a.panics + 1);
                let point = if i % 2 == 0 {
                    FaultPoint::Emulate
                } else {
                    FaultPoint::Reply
                };
                (point, at)
            })
            .collect(),
    });
    let n = a.commands;
    actix::System::new().block_on(async move {
        let (dev_tx, dev_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
            dev_tx.send(dev).unwrap();
            let _ = done_tx.send(initiator(&mut sim, n));
        });
        let dev = dev_rx.recv().unwrap();
        let spec = DeviceSpec {
            restart_budget: RestartBudget {
                max_restarts: 1000,
                window: Duration::from_secs(60),
            },
            ..DeviceSpec::simulated("thin/example/serve_sim", DISK as u64)
        };
        let opts = DeviceOptions {
            ring: RingSource::Parts {
                map: dev.map,
                len: dev.len,
                event_fd: dev.event_fd,
            },
            fault,
            ..DeviceOptions::default()
        };
        let t0 = Instant::now();
        let handle = spawn_device_with(spec, bs, opts).unwrap();
        let r = done_rx.await.unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let stats = handle.stats();
        let failure = handle.failure();
        handle.stop().await;
        println!("initiator: {r:?}");
        println!("device:    {stats:?}");
        println!(
            "{} commands in {secs:.2} s ({:.0} IOPS), {:.1} MiB written, {:.1} MiB read, {} restarts, failed: {}",
            r.completed,
            r.completed as f64 / secs,
            r.bytes_written as f64 / (1 << 20) as f64,
            r.bytes_read as f64 / (1 << 20) as f64,
            stats.restarts,
            failure.as_deref().unwrap_or("no"),
        );
    });
}
