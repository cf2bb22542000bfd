//! Memory of idle devices: spawns device actors over simulator rings of the
//! kernel's default geometry (8 MiB command ring, 1 GiB data area) in one
//! process, 1, then 16, then 64 of them (`TCMUD_BENCH_DEVICES=1,16,64`), and
//! reports what `/proc/self/status` says the daemon side added per device.
//!
//! `cargo bench -p tcmud --bench device_rss`. For each step the simulators
//! (the "kernel" side, which maps the same memfd) are created first and
//! memory read; then the devices are spawned (null backstore, the usual
//! I/O threads), each answers one TEST UNIT READY, and after
//! `TCMUD_BENCH_SETTLE_MS` (default 2500: two housekeeping ticks) memory is
//! read again. The difference is the daemon's. RssAnon is heap and thread
//! stacks (the "beyond the kernel's mapping" figure); RssShmem is the ring
//! pages the daemon's mapping has touched; VmSize shows address space
//! (the ring mapping itself plus stacks and malloc arenas, mostly not
//! resident).

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::daemon::{Daemon, DeviceSetup};
use support::lane::{Lane, Load, Pattern, BS, BS_U32};
use support::procfs::{memory, Memory};
use support::{knob, median};
use tcmud::backstore::{BackstoreHandle, BackstoreKind, DEFAULT_IO_THREADS};
use tcmud_core::backend::null::NullBackend;
use tcmud_core::sim::{SimConfig, SimDevice};

/// Device size.
const DISK: u64 = 1 << 30;

/// The kernel's default ring: `cmd_ring_size_mb` = 8 (minus the mailbox's
/// 128 bytes as the kernel sizes it), `max_data_area_mb` = 1024.
fn kernel_default() -> SimConfig {
    SimConfig {
        cmdr_size: (8 << 20) - 128,
        data_size: 1 << 30,
        ..SimConfig::default()
    }
}

/// Creates `n` simulators; returns them and the daemon's sides.
fn simulators(n: usize) -> (Vec<Lane>, Vec<SimDevice>) {
    (0..n).map(|_| Lane::new(kernel_default(), DISK)).unzip()
}

/// The daemon's setup of each device: a null backstore with its I/O threads.
fn setups(devs: Vec<SimDevice>, first: usize) -> Vec<DeviceSetup> {
    devs.into_iter()
        .enumerate()
        .map(|(i, dev)| DeviceSetup {
            dev_config: format!("null{}", first + i),
            dev,
            backstore: BackstoreHandle::new(
                Arc::new(NullBackend::new(BS_U32, DISK / BS)),
                BackstoreKind::Other {
                    name: "null".into(),
                },
                DEFAULT_IO_THREADS,
            )
            .expect("backstore"),
            size_bytes: DISK,
            write_cache: true,
        })
        .collect()
}

/// One burst of I/O on `lane`.
fn burst(lane: &mut Lane) {
    let mib = vec![0x5au8; 1 << 20];
    for (write, bytes, qd) in [
        (true, 1 << 20, 8),
        (false, 1 << 20, 8),
        (true, 4096, 32),
        (false, 4096, 32),
    ] {
        let load = Load {
            write,
            bytes,
            qd,
            pattern: Pattern::Random,
        };
        let done = lane.run(load, &mib[..bytes], Duration::from_secs(30), Some(64));
        assert_eq!(done.commands, 64);
    }
}

/// Daemon-side memory added per step, and the running totals.
#[derive(Default)]
struct Tally {
    devices: usize,
    total: Memory,
    rows: Vec<String>,
    marginal: Vec<f64>,
}

impl Tally {
    /// Records that `add` devices (`n` in all) changed memory from
    /// `before` to `after`, minus `other_kib` per device that is not the
    /// daemon's.
    fn add(&mut self, n: usize, add: usize, before: &Memory, after: &Memory, other_kib: u64) {
        let d = |f: fn(&Memory) -> u64| f(after).saturating_sub(f(before));
        let other = other_kib * add as u64;
        self.devices = n;
        self.total.rss += d(|m| m.rss).saturating_sub(other);
        self.total.anon += d(|m| m.anon).saturating_sub(other);
        self.total.shmem += d(|m| m.shmem);
        self.total.vm_size += d(|m| m.vm_size);
        self.total.threads += d(|m| m.threads);
        let step_anon = kib(d(|m| m.anon).saturating_sub(other)) / add as f64;
        self.marginal.push(step_anon);
        let per = |v: u64| kib(v) / n as f64;
        self.rows.push(format!(
            "| {n} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {} |",
            after.threads,
            kib(after.rss) / 1024.0,
            per(self.total.rss),
            per(self.total.shmem),
            per(self.total.anon),
            step_anon,
            per(self.total.vm_size) / 1024.0,
            self.total.threads as f64 / n as f64,
        ));
    }

    fn print(&self) {
        println!(
            "| devices | threads | VmRSS MiB | RSS/dev | RssShmem/dev | RssAnon/dev | \
             RssAnon/dev (this step) | VmSize MiB/dev | threads/dev |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            println!("{r}");
        }
        println!(
            "\nmedian RssAnon of an added device: {:.0} KiB",
            median(&self.marginal)
        );
    }
}

/// KiB as a float.
fn kib(v: u64) -> f64 {
    v as f64
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let steps: Vec<usize> = if bench_mode {
        std::env::var("TCMUD_BENCH_DEVICES")
            .unwrap_or_else(|_| "1,16,64".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    } else {
        vec![1, 2]
    };
    let settle = Duration::from_millis(if bench_mode {
        knob("TCMUD_BENCH_SETTLE_MS", 2500u64)
    } else {
        50
    });
    let mut map_len = 0;
    let mut daemon = Daemon::start();
    std::thread::sleep(Duration::from_millis(100));
    let mut lanes: Vec<Lane> = Vec::new();
    // Daemon-side totals over all devices so far (KiB), from the deltas.
    let mut fresh = Tally::default();
    let mut used = Tally::default();
    for &n in &steps {
        let add = n.saturating_sub(lanes.len());
        if add == 0 {
            continue;
        }
        let (mut new_lanes, devs) = simulators(add);
        map_len = devs.first().map_or(map_len, |d| d.len);
        let before = memory();
        daemon.spawn(setups(devs, lanes.len()));
        for lane in &mut new_lanes {
            assert!(lane.ready(Duration::from_secs(30)), "device not ready");
        }
        std::thread::sleep(settle);
        let after = memory();
        fresh.add(n, add, &before, &after, 0);
        // The same devices after a burst of I/O, idle again.
        let before = memory();
        for lane in &mut new_lanes {
            burst(lane);
        }
        std::thread::sleep(settle);
        let after = memory();
        // Each simulator keeps a 1 MiB gather buffer after 1 MiB reads.
        used.add(n, add, &before, &after, 1024);
        lanes.append(&mut new_lanes);
    }
    daemon.stop();
    if !bench_mode {
        assert_eq!(lanes.len(), 2);
        return;
    }
    println!(
        "idle devices (null backstore, {DEFAULT_IO_THREADS} I/O threads each), ring mapping {} MiB each",
        map_len >> 20
    );
    println!("KiB per device unless noted; daemon side only (simulators excluded)\n");
    println!("Fresh (spawned, one TEST UNIT READY answered):\n");
    fresh.print();
    println!(
        "\nAfter a burst of I/O (1 MiB writes and reads at QD 8, 4 KiB reads and \
         writes at QD 32; 64 commands each), idle again: memory added on top of the fresh figures (the simulators' 1 MiB gather buffers subtracted):\n"
    );
    used.print();
}
