//! What the supervisor needs from device actors, as traits: the real implementation
//! wraps `device::spawn_device` + `backstore::open_backstore`; tests use fakes.

use crate::config::{DaemonConfig, RecoveryPolicy};
use futures::future::LocalBoxFuture;
use std::path::PathBuf;
use tcmud_core::netlink::UioName;

/// Everything known about a kernel device the supervisor wants served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// uio minor (`/dev/uio<minor>`).
    pub minor: u32,
    /// The full uio name.
    pub uio_name: String,
    /// The uio name's parts (hba, dev, dev_config).
    pub uio: UioName,
    /// `<dev_root>/uio<minor>`.
    pub dev_path: PathBuf,
    /// `<sys_root>/class/uio/uio<minor>`.
    pub sysfs_dir: PathBuf,
    /// `<configfs_root>/target/core/user_<hba>/<dev>` when it exists.
    pub configfs_dir: Option<PathBuf>,
    /// Device size in bytes (configfs; 0 when unknown).
    pub size_bytes: u64,
    /// Logical block size (configfs `attrib/hw_block_size`, default 512).
    pub block_size: u32,
    /// Ring recovery policy.
    pub recovery: RecoveryPolicy,
    /// True when the device existed before the daemon started (adoption).
    pub adopted: bool,
    /// Found by a rescan while the daemon runs, i.e. its ADDED event was lost
    /// (a burst of events overran the netlink socket): the device is new, so
    /// a thin volume missing from a pool that is already open is created as
    /// for its ADDED event. Never at start-up adoption, and never a pool: an
    /// unmounted pool must fail, not come back as an empty disk.
    pub lost_event: bool,
    /// How long stopping the device waits for running backstore I/O (None:
    /// for ever).
    pub drain_timeout: Option<std::time::Duration>,
    /// Implicit ALUA (RBD images only: their exclusive lock decides the
    /// states).
    pub alua: Option<std::sync::Arc<tcmud_core::scsi::AluaConfig>>,
}

/// A device could not be started; `errno` (positive) goes into the `*_DONE` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (errno {errno})")]
pub struct SpawnError {
    /// Positive errno, e.g. `libc::ENOENT`.
    pub errno: i32,
    /// Human-readable reason.
    pub message: String,
}

impl SpawnError {
    /// Builds an error from an errno and a message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        SpawnError {
            errno,
            message: message.into(),
        }
    }
}

/// Whether a dev_config belongs to tcmud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// A subtype tcmud serves (`thin/...`, `file/...`).
    Ours,
    /// Another daemon's subtype: leave it alone, never reply.
    Foreign,
    /// Our subtype, but the arguments are invalid (answered with `-EINVAL`).
    Invalid(String),
}

/// A RECONFIG a device could not apply; `errno` (positive) goes into the
/// `RECONFIG_DEVICE_DONE` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (errno {errno})")]
pub struct ReconfigError {
    /// Positive errno, e.g. `libc::EINVAL`.
    pub errno: i32,
    /// Human-readable reason.
    pub message: String,
}

/// A backstore opened ahead of its device: a dev_config change opens the new
/// backstore before the old device is closed ([`DeviceFactory::open`]).
pub struct Opened(pub Box<dyn std::any::Any>);

impl Opened {
    /// Nothing was opened ahead (factories that open in `spawn`).
    pub fn nothing() -> Opened {
        Opened(Box::new(()))
    }
}

/// How a device's stop ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Commands its drain deadline abandoned: still uncompleted in the
    /// ring, so a re-open of the same kernel device must not walk the ring
    /// from its tail as it is (it would execute them again).
    pub abandoned: usize,
}

/// A running device actor, as the supervisor controls it.
pub trait DeviceCtl {
    /// Drains in-flight commands, flushes, stops; resolves once the ring is
    /// closed (fd and mapping released).
    fn stop(self: Box<Self>) -> LocalBoxFuture<'static, ()>;
    /// [`DeviceCtl::stop`], saying how it ended (the default: nothing
    /// abandoned).
    fn stop_reporting(self: Box<Self>) -> LocalBoxFuture<'static, Stopped> {
        let stop = self.stop();
        Box::pin(async move {
            stop.await;
            Stopped::default()
        })
    }
    /// The kernel device grew (or shrank) to `new_size` bytes: resolves once
    /// the backstore has that size, or with why it does not.
    fn resize(&self, new_size: u64) -> LocalBoxFuture<'static, Result<(), ReconfigError>>;
    /// The kernel's write-cache setting changed (applied when this returns).
    fn set_write_cache(&self, on: bool);
    /// True once the device actor gave up (restart budget exhausted).
    fn is_failed(&self) -> bool;
    /// Counters since the device was spawned (none for devices without).
    fn stats(&self) -> Option<crate::device::DeviceStats> {
        None
    }
    /// Commands in flight now.
    fn in_flight(&self) -> usize {
        0
    }
    /// Fetch-to-completion latency by operation class (none by default).
    fn latency(
        &self,
    ) -> Vec<(
        tcmud_core::scsi::OpClass,
        tcmud_core::latency::HistogramSnapshot,
    )> {
        Vec::new()
    }
    /// True once the device actor is gone (ring closed) although nobody
    /// stopped it (abandoned after repeated panics).
    fn is_finished(&self) -> bool;
}

/// Creates device actors; one per daemon, owned by the supervisor.
pub trait DeviceFactory {
    /// Classifies a dev_config string.
    fn ownership(&self, dev_config: &str) -> Ownership;
    /// Starts serving a device (called inside the actix System).
    fn spawn(&mut self, req: DeviceRequest) -> Result<Box<dyn DeviceCtl>, SpawnError>;
    /// Opens the backstore of `req` without serving it yet (a dev_config
    /// change: the new backstore must open before the old device closes).
    /// The default opens nothing ahead; [`DeviceFactory::spawn_opened`]
    /// then calls [`DeviceFactory::spawn`].
    fn open(&mut self, req: &DeviceRequest) -> Result<Opened, SpawnError> {
        let _ = req;
        Ok(Opened::nothing())
    }
    /// Starts serving `req` over the backstore [`DeviceFactory::open`] opened.
    fn spawn_opened(
        &mut self,
        req: DeviceRequest,
        opened: Opened,
    ) -> Result<Box<dyn DeviceCtl>, SpawnError> {
        drop(opened);
        self.spawn(req)
    }
    /// Applies a reloaded config (new pools).
    fn reload(&mut self, cfg: &DaemonConfig);
    /// Flushes every open pool (shutdown).
    fn flush_all(&self) -> Result<(), String>;
    /// The pool registries, for the control socket (none by default).
    fn registries(&self) -> Vec<std::sync::Arc<crate::backstore::PoolRegistry>> {
        Vec::new()
    }
    /// The open backstores and their actors, for the control socket (none
    /// by default).
    fn backstores(&self) -> crate::backstore::Backstores {
        crate::backstore::Backstores::default()
    }
}
