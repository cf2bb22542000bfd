//! Backstores: what a device's `dev_config` names, the pools they live in,
//! and the I/O threads that run blocking backend calls off the actors.
//!
//! - [`DevConfig`]: `thin/<pool>/<volume>` and `file/<path>` parsing, with
//!   [`DevOptions`] after `;` (`;ro`);
//! - [`PoolRegistry`]: each configured pool opened once per process;
//! - [`open_backstore`] → [`BackstoreHandle`]: the backend plus its lane of
//!   the process-wide I/O threads ([`SharedIo`], [`IoPool`]);
//! - [`BackstoreActor`]: one actor per open volume or image, which owns its
//!   life cycle (open for each device, resize, snapshot, clone, delete
//!   refused while served, usage, low-water events, close), found in the
//!   [`Backstores`] directory; devices hold an [`Attachment`].

pub mod actor;
mod dev_config;
mod directory;
mod file_open;
mod handle;
mod identity;
mod io_pool;
#[cfg(feature = "rbd")]
mod rbd;
mod rbd_config;
#[cfg(feature = "rbd")]
mod rbd_owner;
mod registry;
mod supervise;

pub use actor::{BackstoreActor, BackstoreEvent, BackstoreUsage};
pub use dev_config::{valid_name, DevConfig, DevOptions, MAX_DEV_CONFIG};
pub use directory::{Attachment, Backstores, OpenRequest};
pub use file_open::{probe_image, ImageProbe};
pub use handle::{
    open_backstore, open_backstore_with, BackstoreHandle, BackstoreKind, OpenPolicy,
    DEFAULT_BLOCK_SIZE, DEFAULT_IO_THREADS,
};
pub use identity::IDENTITY_XATTR;
pub use io_pool::{IoLane, IoPool};
pub use rbd_config::RbdSpec;
pub use registry::{PoolRegistry, PoolSpec, SharedIo};
/// librados/librbd's safe API, for tools and tests that talk to the
/// cluster beside a device (builds with the `rbd` feature).
#[cfg(feature = "rbd")]
pub use tcmud_rbd as rbd_api;

use std::path::PathBuf;
use std::time::Duration;

use tcmud_core::backend::BackendError;
use tcmud_core::pool::PoolError;

/// Waits up to `timeout` until every RBD image the process opened is
/// closed and its cluster connection shut down (they close on the backstore
/// thread once their last device detached). The daemon must not exit
/// before: librados' static destructors race its still-running threads
/// (an exit after SIGTERM ended in SIGSEGV). `Err(n)`: `n` connections
/// still open at the deadline. Without the `rbd` feature: nothing to wait for.
pub fn wait_images_closed(timeout: Duration) -> Result<(), usize> {
    #[cfg(feature = "rbd")]
    return tcmud_rbd::wait_all_shut_down(timeout);
    #[cfg(not(feature = "rbd"))]
    {
        let _ = timeout;
        Ok(())
    }
}

/// "served by /dev/uio1, /dev/uio2: remove that LUN first", or that it is
/// being opened for one.
fn served_by(users: &[u32]) -> String {
    if users.is_empty() {
        return "being opened for a LUN: remove that LUN first".to_owned();
    }
    let devs: Vec<String> = users.iter().map(|m| format!("/dev/uio{m}")).collect();
    format!("served by {}: remove that LUN first", devs.join(", "))
}

/// Why a missing pool, volume or image was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCreated {
    /// The pool's `auto_create` is off (the default).
    AutoCreateOff,
    /// The device was adopted at start-up, or found by a rescan outside an open
    /// pool: an unmounted or lost backing path must not silently become an
    /// empty disk.
    Adopted,
}

impl NotCreated {
    /// Why something missing is not created, or `None` when it may be: never
    /// for an adopted device (`may_create` false), else only with `auto_create`.
    pub fn why(may_create: bool, auto_create: bool) -> Option<NotCreated> {
        if !may_create {
            Some(NotCreated::Adopted)
        } else if !auto_create {
            Some(NotCreated::AutoCreateOff)
        } else {
            None
        }
    }
}

impl std::fmt::Display for NotCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotCreated::AutoCreateOff => "auto_create is off for this pool",
            NotCreated::Adopted => {
                "nothing is created for a device adopted at start-up, nor for one a rescan found outside an open pool"
            }
        })
    }
}

/// Errors resolving, opening or operating a backstore.
#[derive(Debug, thiserror::Error)]
pub enum BackstoreError {
    /// A `dev_config` of our subtype that does not parse.
    #[error("malformed dev_config {dev_config:?}: {why}")]
    BadDevConfig {
        /// The string the kernel gave.
        dev_config: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `thin/<pool>/..` names a pool the configuration does not have.
    #[error("no pool named {0:?} in the configuration")]
    UnknownPool(String),
    /// The pool directory is missing (or empty) and may not be created here.
    #[error("pool {name:?} does not exist at {path} ({why}); create it with `tcmud pool create {}`", path.display())]
    PoolMissing {
        /// Pool name.
        name: String,
        /// Configured directory.
        path: PathBuf,
        /// Why it was not created.
        why: NotCreated,
    },
    /// The volume is missing and may not be created here.
    #[error("volume {volume:?} does not exist in pool {pool:?} ({why}); create it with `tcmud volume create {} {volume} --size <size>` (an offline command: stop tcmud first)", path.display())]
    VolumeMissing {
        /// Pool name.
        pool: String,
        /// Pool directory.
        path: PathBuf,
        /// Volume name.
        volume: String,
        /// Why it was not created.
        why: NotCreated,
    },
    /// `file/` backstores are off: no `file_roots` configured.
    #[error("file/ backstores are off, so {} is not served: set `file_roots = [\"<dir>\", ...]` in the [daemon] section to serve images under those directories", path.display())]
    FileOff {
        /// The image named by dev_config.
        path: PathBuf,
    },
    /// The image is not under any configured root (or resolution left the root).
    #[error("{} is not under any of file_roots {roots:?}", path.display())]
    FileOutsideRoots {
        /// The image named by dev_config.
        path: PathBuf,
        /// The configured roots.
        roots: Vec<PathBuf>,
    },
    /// The image is neither a regular file nor a block device.
    #[error("{} is not a regular file or a block device", path.display())]
    FileType {
        /// The image named by dev_config.
        path: PathBuf,
    },
    /// The image of an adopted device is missing (nothing is created on adoption).
    #[error("image {} does not exist ({})", path.display(), NotCreated::Adopted)]
    ImageMissing {
        /// The image named by dev_config.
        path: PathBuf,
    },
    /// A block size that cannot be served: not a power of two in
    /// 512..=65536, or not the block size an existing volume was made with.
    #[error("{what} has block size {have}{}", want.map(|w| format!(", the device wants {w} (recreate the volume or set hw_block_size to {have})")).unwrap_or_else(|| " (must be a power of two from 512 to 65536)".to_owned()))]
    BlockSize {
        /// What has the block size.
        what: String,
        /// Its block size.
        have: u32,
        /// The device's block size when they differ.
        want: Option<u32>,
    },
    /// A pool operation failed.
    #[error("{what}: {source}")]
    Pool {
        /// What was being done.
        what: String,
        /// The pool's error.
        #[source]
        source: PoolError,
    },
    /// A backend call failed.
    #[error("backend: {0}")]
    Backend(#[source] BackendError),
    /// A filesystem operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A resize to fewer bytes than the backstore has (the blocks past the
    /// new end hold data; shrink offline if that is really meant).
    #[error("{what} has {have} bytes: shrinking it to {want} is refused (the blocks past the new end may hold data)")]
    Shrink {
        /// The backstore.
        what: String,
        /// Its size.
        have: u64,
        /// The size asked for.
        want: u64,
    },
    /// A librados/librbd call failed (`rbd/` backstores).
    #[error("{what}: {}{}", std::io::Error::from_raw_os_error(*errno), match errno { 2 => " (no such pool, image or snapshot)", 110 => " (the cluster did not answer in time)", _ => "" })]
    Rbd {
        /// What was being done, with the image.
        what: String,
        /// The errno librados/librbd returned (positive).
        errno: i32,
    },
    /// The operation is not supported by this kind of backstore.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The I/O worker threads have exited.
    #[error("backstore I/O workers are gone")]
    WorkersGone,
    /// A backstore operation panicked (its thread and the daemon carry on).
    #[error("the backstore operation panicked: {0}")]
    Panicked(String),
    /// The volume or image is served by a LUN: it cannot be deleted.
    #[error("{what} is {}", served_by(users))]
    Served {
        /// The backstore.
        what: String,
        /// uio minors of the devices serving it.
        users: Vec<u32>,
    },
    /// The backstore's actor stopped (or restarted) before it answered.
    #[error("the backstore actor of {0} did not answer")]
    ActorGone(String),
}
