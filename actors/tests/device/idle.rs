//! An idle device costs nothing: no timer of its own, no wake-up of its
//! thread, however many devices the process serves (issue 19: 1,000 idle
//! LUNs took most of a CPU in the VM, each device ticking every second).
//! What the tick did for an idle device is done by the process-wide idle
//! watch: the command timeout's bound on when a command was queued stays
//! tight across an idle period, and commands left in the ring without a
//! kick are still served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::device::workload::{clear_unit_attention, collect, one, read10, write10};
use crate::util::device::{sim_spec, start_shared, BS, BS_U32};
use tcmud::backstore::SharedIo;
use tcmud::device::{DeviceHandle, DeviceThreads, RestartBudget};
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::sim::{KernelSim, SimConfig, SimDevice, SimDir};

/// The devices' tick in these tests: short, so that a tick still armed
/// while idle shows as many wake-ups within the idle window.
const TICK: Duration = Duration::from_millis(10);

fn start(
    name: &str,
    dev: SimDevice,
    mem: Arc<MemBackend>,
    io: &SharedIo,
    threads: &DeviceThreads,
    configfs_dir: Option<std::path::PathBuf>,
) -> DeviceHandle {
    let spec = tcmud::device::DeviceSpec {
        configfs_dir,
        ..sim_spec(name, RestartBudget::default())
    };
    start_shared(spec, dev, mem, io, threads, TICK, None)
}

/// Waits until `d` has passed since `t`: the passing of time is what these
/// tests are about (an idle window), not a guess at how long work takes.
fn wait_past(t: Instant, d: Duration) {
    while t.elapsed() < d {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wake-ups of each device during `window` of idleness, after one command
/// each (the devices have served I/O, then nothing comes).
fn idle_wakeups(devices: usize, window: Duration) -> Vec<u64> {
    let io = SharedIo::new(2, 2).unwrap();
    actix::System::new().block_on(async move {
        let threads = DeviceThreads::new(2).unwrap();
        let mut handles = Vec::new();
        let mut sims = Vec::new();
        for i in 0..devices {
            let (sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
            let mem = Arc::new(MemBackend::new(BS_U32, 64));
            handles.push(start(&format!("idle{i}"), dev, mem, &io, &threads, None));
            sims.push(sim);
        }
        // One WRITE and its READ back on every device, from another thread.
        let sims = tokio::task::spawn_blocking(move || {
            for (i, sim) in sims.iter_mut().enumerate() {
                clear_unit_attention(sim);
                let byte = u8::try_from(i % 251).expect("below 251");
                assert_eq!(
                    one(sim, &write10(3, 1), SimDir::Out(vec![byte; BS])).status,
                    0
                );
                let r = one(sim, &read10(3, 1), SimDir::In(BS));
                assert_eq!((r.status, r.data_in), (0, vec![byte; BS]));
            }
            sims
        })
        .await
        .unwrap();
        // The rounds that end the last command (its completion, a kick) are
        // normally over within a few ticks; a loaded machine may leave one
        // or two for the window (a pending notification, a last readiness
        // of the event fd), which the assertion allows.
        let settled = Instant::now();
        wait_past(settled, TICK * 5);
        let before: Vec<u64> = handles.iter().map(|h| h.stats().wakeups).collect();
        wait_past(Instant::now(), window);
        let during: Vec<u64> = handles
            .iter()
            .zip(&before)
            .map(|(h, b)| h.stats().wakeups - b)
            .collect();
        for h in handles {
            assert_eq!(h.failure(), None);
            h.stop().await;
        }
        drop(sims);
        during
    })
}

#[test]
fn idle_devices_take_no_wake_ups_however_many() {
    // 50 ticks long: a device still ticking while idle shows ~50 (40 seen).
    let window = TICK * 50;
    for devices in [1, 64] {
        let during = idle_wakeups(devices, window);
        let total: u64 = during.iter().sum();
        assert!(
            during.iter().all(|&w| w <= 2),
            "{devices} idle devices woke up {total} times in {window:?}: {during:?}"
        );
    }
}

#[test]
fn a_command_after_an_idle_period_longer_than_cmd_time_out_runs() {
    // cmd_time_out 1 s: the idle watch looks every 250 ms. Without it the
    // last look at the ring would be the one before the idle period, and
    // the WRITE would be taken for one the kernel already timed out.
    let cfgfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cfgfs.path().join("attrib")).unwrap();
    std::fs::write(cfgfs.path().join("attrib/cmd_time_out"), "1\n").unwrap();
    let mem = Arc::new(MemBackend::new(BS_U32, 64));
    let io = SharedIo::new(1, 1).unwrap();
    let dir = cfgfs.path().to_path_buf();
    let m = Arc::clone(&mem);
    let (done, stats) = actix::System::new().block_on(async move {
        let threads = DeviceThreads::new(1).unwrap();
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let h = start("idle-timeout", dev, m, &io, &threads, Some(dir));
        assert_eq!(h.cmd_time_out(), Some(Duration::from_secs(1)));
        let done = tokio::task::spawn_blocking(move || {
            clear_unit_attention(&mut sim);
            wait_past(Instant::now(), Duration::from_millis(1600));
            one(&mut sim, &write10(7, 1), SimDir::Out(vec![0x3c; BS]))
        })
        .await
        .unwrap();
        let stats = h.stats();
        h.stop().await;
        (done, stats)
    });
    assert_eq!(done.status, 0, "sense {:02x?}", done.sense);
    assert_eq!(stats.timed_out, 0);
    let mut block = vec![0u8; BS];
    mem.read(7, &mut block).unwrap();
    assert_eq!(block, vec![0x3c; BS]);
}

#[test]
fn commands_left_in_the_ring_without_a_kick_are_served() {
    // A lost wake-up: the command is queued, the kick never comes. The
    // idle watch sees it stay past the fetch cursor and wakes the device.
    let mem = Arc::new(MemBackend::new(BS_U32, 64));
    let io = SharedIo::new(1, 1).unwrap();
    let m = Arc::clone(&mem);
    let done = actix::System::new().block_on(async move {
        let threads = DeviceThreads::new(1).unwrap();
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let h = start("no-kick", dev, m, &io, &threads, None);
        let done = tokio::task::spawn_blocking(move || {
            clear_unit_attention(&mut sim);
            sim.submit(&write10(9, 1), SimDir::Out(vec![0x77; BS]))
                .unwrap();
            collect(&mut sim, 1)
        })
        .await
        .unwrap();
        h.stop().await;
        done
    });
    assert_eq!(done[0].status, 0);
    let mut block = vec![0u8; BS];
    mem.read(9, &mut block).unwrap();
    assert_eq!(block, vec![0x77; BS]);
}
