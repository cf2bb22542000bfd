//! Device actors: one per uio minor, serving the kernel's command ring.
//!
//! [`spawn_device`] opens the ring (applying the [`RecoveryPolicy`] for a
//! ring left by a dead daemon), builds the SCSI LUN over the backstore and
//! starts the [`DeviceActor`] under a restart-on-panic wrapper. The
//! in-flight table and everything else a restart must not lose live outside
//! the actor, in the state the [`DeviceHandle`] shares.

mod actor;
mod async_io;
mod cmd_timeout;
pub mod copy_targets;
mod direction;
mod exec;
pub mod fault;
mod handle;
mod idle_watch;
mod inflight;
mod lifecycle;
mod limits;
mod outcome;
mod recovery;
mod restart;
mod shared;
mod threads;
mod wake;
mod wce_save;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context};
use tcmud_core::ring::{Ring, RingError};
use tcmud_core::scsi::{Lun, LunConfig};

pub use crate::config::RecoveryPolicy;
pub use actor::DeviceActor;
pub(crate) use exec::panic_message;
pub use fault::{FaultPlan, FaultPoint};
pub use handle::DeviceHandle;
pub use recovery::RecoveryError;
pub use restart::RestartBudget;
pub use shared::DeviceStats;
pub use threads::DeviceThreads;

use crate::backstore::BackstoreHandle;

/// A device the supervisor wants served.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// uio minor (N of `/dev/uioN`).
    pub minor: u32,
    /// uio name: `tcm-user/<hba>/<dev>/<dev_config>`.
    pub uio_name: String,
    /// The device's `dev_config`.
    pub dev_config: String,
    /// `/dev/uioN`.
    pub dev_path: PathBuf,
    /// `/sys/class/uio/uioN`.
    pub sysfs_dir: PathBuf,
    /// The configfs device directory (`.../core/user_<hba>/<dev>`), for
    /// `action/block_dev` and `action/reset_ring`.
    pub configfs_dir: Option<PathBuf>,
    /// Device size in bytes (kernel `dev_size`).
    pub size_bytes: u64,
    /// Recovery of a ring left by a dead daemon.
    pub recovery: RecoveryPolicy,
    /// The device existed before this daemon served it (adoption at start,
    /// or found by a rescan): its ring may hold a previous daemon's state,
    /// so `recovery` applies. A device this daemon saw being added (or
    /// re-opened after draining it) has nothing stale: its ring is mapped
    /// as it is, without the configfs actions.
    pub adopted: bool,
    /// Panics survived before the device is failed.
    pub restart_budget: RestartBudget,
}

/// Where the ring comes from.
#[derive(Debug)]
pub enum RingSource {
    /// `/dev/uioN` as named in the [`DeviceSpec`] (the real kernel).
    Uio,
    /// An already-mapped-able file and event fd (the kernel simulator:
    /// `tcmud_core::sim::SimDevice`).
    Parts {
        /// The shared memory file.
        map: File,
        /// Its length in bytes.
        len: usize,
        /// The kick/wait fd.
        event_fd: OwnedFd,
    },
}

/// Knobs beyond the [`DeviceSpec`] (tests, the simulator, tuning).
#[derive(Debug)]
pub struct DeviceOptions {
    /// Ring source (default: the uio device).
    pub ring: RingSource,
    /// Period of the actor's housekeeping tick, which runs only while the
    /// device has commands in flight, drains or has faults armed (an idle
    /// device is looked at by the process-wide idle watch instead).
    pub tick: Duration,
    /// SCSI identity; `None`: defaults with the serial and NAA from the
    /// identity stored with the volume or image, or (backstores without
    /// one: tests, the simulator) derived from the `dev_config`.
    pub lun: Option<LunConfig>,
    /// Panics to inject (tests); `None`: from `TCMUD_FAULT` when the
    /// `fault-injection` feature is on, else none.
    pub fault: Option<FaultPlan>,
    /// Run the actor on an arbiter (thread) of its own, so that one busy
    /// device delays neither the supervisor nor other devices; otherwise on
    /// the caller's arbiter.
    pub own_thread: bool,
    /// Run the actor on the least loaded of these shared device threads
    /// (the daemon's choice: threads do not grow with devices); takes
    /// precedence over `own_thread`.
    pub threads: Option<DeviceThreads>,
    /// How long `stop()` waits for commands running on the backstore; then
    /// commands not started are failed, running ones abandoned (the kernel
    /// times them out), and the ring closed without the final flush.
    /// `None`: wait for ever.
    pub drain_timeout: Option<Duration>,
    /// Implicit ALUA, for backstores that signal which daemon owns the
    /// unit ([`BackstoreHandle::ownership`]: RBD images); ignored for the
    /// others.
    pub alua: Option<tcmud_core::scsi::AluaConfig>,
}

impl DeviceOptions {
    /// Options for a device served from a simulated ring
    /// ([`tcmud_core::sim::SimDevice`]), everything else default.
    pub fn simulated(dev: tcmud_core::sim::SimDevice) -> DeviceOptions {
        DeviceOptions {
            ring: RingSource::Parts {
                map: dev.map,
                len: dev.len,
                event_fd: dev.event_fd,
            },
            ..DeviceOptions::default()
        }
    }
}

impl DeviceSpec {
    /// A device of `size_bytes` served from a simulated ring (tests,
    /// benches, examples): minor 0, no uio node, sysfs or configfs
    /// directory, `replay` recovery, the default restart budget.
    pub fn simulated(dev_config: &str, size_bytes: u64) -> DeviceSpec {
        DeviceSpec {
            minor: 0,
            uio_name: format!("tcm-user/0/sim/{dev_config}"),
            dev_config: dev_config.to_owned(),
            dev_path: "/nonexistent/uio".into(),
            sysfs_dir: "/nonexistent/sysfs".into(),
            configfs_dir: None,
            size_bytes,
            recovery: RecoveryPolicy::Replay,
            restart_budget: RestartBudget::default(),
            adopted: false,
        }
    }
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            ring: RingSource::Uio,
            tick: Duration::from_secs(1),
            lun: None,
            fault: None,
            own_thread: true,
            threads: None,
            drain_timeout: None,
            alua: None,
        }
    }
}

/// Errors starting a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The ring could not be opened or validated.
    #[error("{what}: {source}")]
    Ring {
        /// What was being done.
        what: String,
        /// The ring's error.
        #[source]
        source: RingError,
    },
    /// The adopted ring cannot be recovered with the configured policy.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// An fd operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Starts serving `spec` from its uio device. Call inside an actix System;
/// the actor runs on an arbiter (thread) of its own.
pub fn spawn_device(
    spec: DeviceSpec,
    backstore: BackstoreHandle,
) -> Result<DeviceHandle, DeviceError> {
    spawn_device_with(spec, backstore, DeviceOptions::default())
}

/// [`spawn_device`] with options (simulator ring, tick, LUN identity, faults).
pub fn spawn_device_with(
    spec: DeviceSpec,
    backstore: BackstoreHandle,
    opts: DeviceOptions,
) -> Result<DeviceHandle, DeviceError> {
    let ring = match opts.ring {
        RingSource::Uio => recovery::open_uio_ring(&spec)?,
        RingSource::Parts { map, len, event_fd } => {
            let mut ring =
                Ring::from_parts(&map, len, event_fd).map_err(|source| DeviceError::Ring {
                    what: "map simulated ring".into(),
                    source,
                })?;
            if spec.adopted {
                recovery::check_policy(spec.recovery, ring.caps())?;
            }
            ring.resync_from_tail();
            ring
        }
    };
    let mut lun_cfg = opts.lun.unwrap_or_else(|| match backstore.identity() {
        Some(id) => LunConfig::identified(id),
        None => default_lun_config(&spec.dev_config),
    });
    if let Some(pbs) = backstore.physical_block_size() {
        lun_cfg.physical_block_size = pbs; // dev_config `;lbppbe=N`
    }
    if lun_cfg.write_cache.is_none() {
        if let Some(dir) = &spec.configfs_dir {
            lun_cfg.write_cache = Some(configfs_write_cache(dir));
        }
    }
    let ownership = backstore.ownership();
    if ownership.is_some() && lun_cfg.alua.is_none() {
        lun_cfg.alua = opts.alua;
    }
    let lun = Arc::new(Lun::new(lun_cfg, backstore.backend()));
    if let Some(cell) = ownership {
        lun.set_ownership(cell);
    }
    copy_targets::join(&lun);
    let ring_capacity = limits::RingCapacity {
        data_area_bytes: ring.data_area_size(),
        cmdr_size: ring.cmdr_size(),
    };
    let device_limits = limits::read_device_limits(spec.configfs_dir.as_deref(), ring_capacity);
    lun.set_device_limits(&device_limits);
    let faults = fault::Faults::new(opts.fault.or_else(FaultPlan::from_env));
    let shared = Arc::new(
        shared::DeviceShared::new(
            spec.minor,
            spec.uio_name.clone(),
            lun,
            backstore,
            faults,
            spec.configfs_dir.clone(),
            ring_capacity,
        )
        .with_drain_timeout(opts.drain_timeout),
    );
    {
        let _span = shared.span.enter();
        tracing::info!(dev_config = %spec.dev_config, size = spec.size_bytes,
            caps = ?ring.caps(), limits = ?device_limits, "device starting");
    }
    let watched = idle_watch::watch(&shared);
    let actor = DeviceActor::new(Arc::clone(&shared), ring, opts.tick, watched);
    let run_shared = Arc::clone(&shared);
    let budget = spec.restart_budget;
    let (arbiter, thread) = match (opts.threads, opts.own_thread) {
        (Some(threads), _) => {
            let (arbiter, placement) = threads.place();
            (Some(arbiter), restart::Thread::Shared(placement))
        }
        (None, true) => {
            let arbiter = actix::Arbiter::try_new().map_err(|source| DeviceError::Io {
                what: "start the device thread".into(),
                source,
            })?;
            (Some(arbiter.handle()), restart::Thread::Own)
        }
        (None, false) => (None, restart::Thread::Caller),
    };
    let start = move || {
        let fut = Context::new().into_future(actor);
        actix::spawn(restart::RestartOnPanic::new(
            fut, run_shared, budget, thread,
        ));
    };
    match arbiter {
        Some(arbiter) => {
            if !arbiter.spawn_fn(start) {
                return Err(DeviceError::Io {
                    what: "start the device thread".into(),
                    source: std::io::Error::other("arbiter stopped"),
                });
            }
        }
        None => start(),
    }
    Ok(DeviceHandle { shared })
}

/// The write-cache setting the administrator gave the device
/// (`attrib/emulate_write_cache`, 0 by default in the kernel). It survives
/// daemon restarts, so a restarted device reports what the initiator was
/// told before. When it cannot be read, the device runs write-through:
/// every write is durable before it is acknowledged.
pub fn configfs_write_cache(configfs_dir: &std::path::Path) -> bool {
    let path = configfs_dir.join("attrib").join("emulate_write_cache");
    match std::fs::read_to_string(&path) {
        Ok(v) => v.trim() == "1",
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot read the write-cache setting; running write-through");
            false
        }
    }
}

/// Writes the write-cache setting an initiator chose with MODE SELECT to
/// configfs (`attrib/emulate_write_cache`), where [`configfs_write_cache`]
/// finds it after a daemon restart. The kernel answers the write with a
/// RECONFIG event carrying the same value, which changes nothing; with
/// netlink replies on, the write returns only once the supervisor answered
/// it, so devices call this from a saver thread, never inside a command.
pub fn store_configfs_write_cache(configfs_dir: &std::path::Path, on: bool) -> std::io::Result<()> {
    let path = configfs_dir.join("attrib").join("emulate_write_cache");
    std::fs::write(&path, if on { "1" } else { "0" })
}

/// SCSI identity derived from the `dev_config`, for backstores that store
/// none of their own (tests, the simulator): volumes and images have one
/// ([`BackstoreHandle::identity`]).
pub fn default_lun_config(dev_config: &str) -> LunConfig {
    let h = fnv1a(dev_config.as_bytes());
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&h.to_be_bytes());
    LunConfig::identified(tcmud_core::scsi::LunIdentity(id))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// The actor must be an actix Actor with a plain Context for `into_future`.
const _: fn() = || {
    fn is_actor<A: Actor<Context = Context<A>>>() {}
    is_actor::<DeviceActor>();
};
