//! Shared harness of the device tests: a simulated kernel on one thread
//! (the "initiator"), the real device actor in an actix System on another.

pub mod backends;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use tcmud::backstore::{BackstoreHandle, BackstoreKind, SharedIo};
use tcmud::device::{
    spawn_device_with, DeviceHandle, DeviceOptions, DeviceSpec, DeviceStats, DeviceThreads,
    FaultPlan, RestartBudget,
};
use tcmud_core::backend::BlockBackend;
use tcmud_core::latency::HistogramSnapshot;
use tcmud_core::scsi::OpClass;
use tcmud_core::sim::{KernelSim, SimConfig, SimDevice};

/// Block size of the test disks.
pub const BS: usize = BS_U32 as usize;
/// [`BS`] as the backends take it.
pub const BS_U32: u32 = 512;

/// A device spec for the simulator (paths unused).
pub fn sim_spec(name: &str, budget: RestartBudget) -> DeviceSpec {
    DeviceSpec {
        restart_budget: budget,
        ..DeviceSpec::simulated(&format!("thin/test/{name}"), 0)
    }
}

/// Starts the device actor on `dev` over `backend`, on a thread of its own.
pub fn start(
    name: &str,
    dev: SimDevice,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
) -> DeviceHandle {
    start_on(name, dev, backend, io_threads, budget, fault, true)
}

/// [`start`], choosing between an own thread and the caller's arbiter.
pub fn start_on(
    name: &str,
    dev: SimDevice,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
    own_thread: bool,
) -> DeviceHandle {
    start_ticking(
        name,
        dev,
        backend,
        io_threads,
        budget,
        fault,
        own_thread,
        Duration::from_millis(10),
    )
}

/// [`start_on`] with the actor's housekeeping tick period: the tests above
/// use 10 ms, which would hide a lost wake-up (the tick pumps the ring too).
#[allow(clippy::too_many_arguments)]
pub fn start_ticking(
    name: &str,
    dev: SimDevice,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
    own_thread: bool,
    tick: Duration,
) -> DeviceHandle {
    let bs = BackstoreHandle::new(
        backend,
        BackstoreKind::Other {
            name: "memory".into(),
        },
        io_threads,
    )
    .unwrap();
    let opts = DeviceOptions {
        tick,
        lun: None,
        fault,
        own_thread,
        ..sim_options(dev)
    };
    spawn_device_with(sim_spec(name, budget), bs, opts).unwrap()
}

/// Starts a device as the daemon runs them: its actor on the shared device
/// `threads`, its backstore's blocking I/O on a lane of the shared pool `io`.
pub fn start_shared(
    spec: DeviceSpec,
    dev: SimDevice,
    backend: Arc<dyn BlockBackend>,
    io: &SharedIo,
    threads: &DeviceThreads,
    tick: Duration,
    fault: Option<FaultPlan>,
) -> DeviceHandle {
    let bs = BackstoreHandle::on_lane(
        backend,
        BackstoreKind::Other {
            name: spec.dev_config.clone(),
        },
        io.lane(),
        None,
    );
    let opts = DeviceOptions {
        tick,
        fault,
        threads: Some(threads.clone()),
        ..sim_options(dev)
    };
    spawn_device_with(spec, bs, opts).unwrap()
}

/// Default device options over a simulated ring.
pub fn sim_options(dev: SimDevice) -> DeviceOptions {
    DeviceOptions::simulated(dev)
}

/// What a run returned.
pub struct Run<R> {
    /// The workload's result.
    pub result: R,
    /// Device counters before stop.
    pub stats: DeviceStats,
    /// Latency histograms by operation class before stop.
    pub latency: Vec<(OpClass, HistogramSnapshot)>,
    /// Why the device failed, if it did.
    pub failure: Option<String>,
}

/// Runs `workload` on the device actor serving `bs` through the simulator
/// harness ([`run`]) with `io_threads` I/O threads, the default restart
/// budget and no fault plan (the RBD tests' harness).
#[cfg(feature = "rbd")]
pub fn run_image<R: Send + 'static>(
    name: &str,
    bs: &BackstoreHandle,
    io_threads: usize,
    workload: impl FnOnce(&mut KernelSim) -> R + Send + 'static,
) -> Run<R> {
    run(
        name,
        SimConfig::default(),
        bs.backend(),
        io_threads,
        RestartBudget::default(),
        None,
        workload,
    )
}

/// Runs `workload` against a device over `backend` until it returns, then
/// stops the device (drain + flush).
pub fn run<R: Send + 'static>(
    name: &str,
    cfg: SimConfig,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
    workload: impl FnOnce(&mut KernelSim) -> R + Send + 'static,
) -> Run<R> {
    run_on(
        name, cfg, backend, io_threads, budget, fault, true, workload,
    )
}

/// [`run`], choosing between an own device thread and the System's arbiter.
#[allow(clippy::too_many_arguments)]
pub fn run_on<R: Send + 'static>(
    name: &str,
    cfg: SimConfig,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
    own_thread: bool,
    workload: impl FnOnce(&mut KernelSim) -> R + Send + 'static,
) -> Run<R> {
    run_ticking(
        name,
        cfg,
        backend,
        io_threads,
        own_thread,
        Duration::from_millis(10),
        budget,
        fault,
        workload,
    )
}

/// [`run_on`] with the actor's tick period (see [`start_ticking`]).
#[allow(clippy::too_many_arguments)]
pub fn run_ticking<R: Send + 'static>(
    name: &str,
    cfg: SimConfig,
    backend: Arc<dyn BlockBackend>,
    io_threads: usize,
    own_thread: bool,
    tick: Duration,
    budget: RestartBudget,
    fault: Option<FaultPlan>,
    workload: impl FnOnce(&mut KernelSim) -> R + Send + 'static,
) -> Run<R> {
    let name = name.to_owned();
    actix::System::new().block_on(async move {
        let (dev_tx, dev_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let (mut sim, dev) = KernelSim::new(cfg).unwrap();
            dev_tx.send(dev).unwrap();
            let r = workload(&mut sim);
            let _ = done_tx.send(r);
        });
        let dev = dev_rx.recv().unwrap();
        let handle = start_ticking(
            &name, dev, backend, io_threads, budget, fault, own_thread, tick,
        );
        let result = done_rx.await.expect("workload thread panicked");
        let stats = handle.stats();
        let latency = handle.latency();
        let failure = handle.failure();
        handle.stop().await;
        Run {
            result,
            stats,
            latency,
            failure,
        }
    })
}
