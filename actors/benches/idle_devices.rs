//! What idle devices cost: N device actors spread over 2 shared device
//! threads with one process-wide I/O pool, as the daemon runs them (default
//! 1 s housekeeping tick), over small simulator rings; each serves a TEST
//! UNIT READY, then nothing comes for `TCMUD_BENCH_IDLE_S` seconds (5).
//! Reports, per N (`TCMUD_BENCH_DEVICES`, default 1,100,1000): CPU time
//! and context switches of the process per second of idleness, and the
//! device actors' wake-ups (rounds run) per second.
//!
//! `cargo bench -p tcmud --bench idle_devices` (issue 19: an idle daemon
//! with 1,000 LUNs took most of a CPU in the VM).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::procfs::{process_cpu, process_switches};
use tcmud::backstore::{BackstoreHandle, BackstoreKind, SharedIo};
use tcmud::device::{spawn_device_with, DeviceOptions, DeviceSpec, DeviceThreads};
use tcmud_core::backend::null::NullBackend;
use tcmud_core::sim::{KernelSim, SimConfig, SimDir};

fn knob_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Serves one TEST UNIT READY on `sim` (the power-on unit attention is an
/// answer too), 10 s at most.
fn one_command(sim: &mut KernelSim) {
    sim.submit(&[0u8; 6], SimDir::None).expect("submit");
    sim.kick().expect("kick");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = sim.wait_kick(Duration::from_millis(20));
        if !sim.process_completions().expect("completions").is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "no completion");
    }
}

/// One row: N devices idle for `idle`.
fn row(n: usize, idle: Duration) -> String {
    let io = SharedIo::new(2, 4).expect("I/O threads");
    actix::System::new().block_on(async move {
        let threads = DeviceThreads::new(2).expect("device threads");
        let mut sims = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (sim, dev) = KernelSim::new(SimConfig::default()).expect("simulator");
            let bs = BackstoreHandle::on_lane(
                Arc::new(NullBackend::new(512, 2048)),
                BackstoreKind::Other {
                    name: "null".into(),
                },
                io.lane(),
                None,
            );
            let opts = DeviceOptions {
                threads: Some(threads.clone()),
                ..DeviceOptions::simulated(dev)
            };
            let spec = DeviceSpec::simulated(&format!("null{i}"), 2048 * 512);
            handles.push(spawn_device_with(spec, bs, opts).expect("device"));
            sims.push(sim);
        }
        let sims = tokio::task::spawn_blocking(move || {
            for sim in &mut sims {
                one_command(sim);
            }
            sims
        })
        .await
        .expect("initiator");
        // Whatever the last command left to do.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wake = |h: &[tcmud::device::DeviceHandle]| -> u64 {
            h.iter().map(|d| d.stats().wakeups).sum()
        };
        let (cpu0, sw0, w0, t0) = (
            process_cpu(),
            process_switches(),
            wake(&handles),
            Instant::now(),
        );
        tokio::time::sleep(idle).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu0).as_secs_f64() / secs;
        let sw = (process_switches() - sw0) as f64 / secs;
        let w = (wake(&handles) - w0) as f64 / secs;
        for h in handles {
            h.stop().await;
        }
        drop(sims);
        format!("| {n} | {:.1} | {:.0} | {:.1} |", cpu * 1000.0, sw, w)
    })
}

fn main() {
    if let Err(e) = tcmud::fd_limit::raise_open_file_limit() {
        eprintln!("cannot raise the open file limit: {e}");
    }
    let idle = Duration::from_secs(
        std::env::var("TCMUD_BENCH_IDLE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    println!(
        "| idle devices | process CPU ms per s | context switches per s | device wake-ups per s |"
    );
    println!("|---:|---:|---:|---:|");
    for n in knob_list("TCMUD_BENCH_DEVICES", "1,100,1000") {
        println!("{}", row(n, idle));
    }
}
