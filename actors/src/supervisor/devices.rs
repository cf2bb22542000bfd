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
    /// How long stopping the device waits for running backstore I/O (None:
    /// for ever).
    pub drain_timeout: Option<std::time::Duration>,
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

/// A running device actor, as the supervisor controls it.
pub trait DeviceCtl {
    /// Drains in-flight commands, flushes, stops.
    fn stop(self: Box<Self>) -> LocalBoxFuture<'static, ()>;
    /// The kernel device grew (or shrank) to `new_size` bytes.
    fn resize(&self, new_size: u64);
    /// The kernel's write-cache setting changed.
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
}

/// Creates device actors; one per daemon, owned by the supervisor.
pub trait DeviceFactory {
    /// Classifies a dev_config string.
    fn ownership(&self, dev_config: &str) -> Ownership;
    /// Starts serving a device (called inside the actix System).
    fn spawn(&mut self, req: DeviceRequest) -> Result<Box<dyn DeviceCtl>, SpawnError>;
    /// Applies a reloaded config (new pools).
    fn reload(&mut self, cfg: &DaemonConfig);
    /// Flushes every open pool (shutdown).
    fn flush_all(&self) -> Result<(), String>;
    /// The pool registries, for the control socket (none by default).
    fn registries(&self) -> Vec<std::sync::Arc<crate::backstore::PoolRegistry>> {
        Vec::new()
    }
}
