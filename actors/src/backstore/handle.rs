//! The backstore of one device: the block backend plus its lane of the I/O
//! threads that run its blocking calls.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolErrorKind};
use tcmud_core::scsi::{LunIdentity, OwnershipCell};

use super::file_open::open_image;
use super::identity::file_identity;
use super::io_pool::{IoLane, IoPool};
use super::{BackstoreError, DevConfig, DevOptions, NotCreated, PoolRegistry};

/// The kernel's default `hw_block_size`, used where configfs does not say.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;

/// I/O worker threads of a backstore made with [`BackstoreHandle::new`] (and
/// of a [`PoolRegistry`] not given shared ones).
pub const DEFAULT_IO_THREADS: usize = 4;

/// Where a backstore's blocks live.
#[derive(Clone)]
pub enum BackstoreKind {
    /// A thin volume (or snapshot) of an open pool.
    Thin {
        /// The pool (shared handle from the [`PoolRegistry`]).
        pool: Pool,
        /// Volume name.
        volume: String,
    },
    /// A raw image file.
    File {
        /// Image path.
        path: PathBuf,
    },
    /// A Ceph RBD image (or snapshot).
    Rbd {
        /// `pool/image[@snap]`.
        name: String,
        /// Its live operations (resize, snapshot, clone), blocking.
        ops: RbdOps,
        /// Whether this daemon holds the image's exclusive lock, kept
        /// current by a watcher thread (the ALUA states follow it).
        ownership: Arc<OwnershipCell>,
    },
    /// Anything else handed in directly (tests, the simulator example).
    Other {
        /// Human-readable description.
        name: String,
    },
}

impl fmt::Debug for BackstoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackstoreKind::Thin { volume, .. } => write!(f, "thin volume {volume}"),
            BackstoreKind::File { path } => write!(f, "file {}", path.display()),
            BackstoreKind::Rbd { name, .. } => write!(f, "rbd image {name}"),
            BackstoreKind::Other { name } => f.write_str(name),
        }
    }
}

/// Live operations on an open RBD image, as a thin volume has them (each
/// a blocking librbd call).
pub trait RbdLive: Send + Sync {
    /// Resizes the image to `bytes` (`rbd_resize`).
    fn resize(&self, bytes: u64) -> Result<(), BackstoreError>;
    /// Takes snapshot `name` of the image (`rbd_snap_create`).
    fn snapshot(&self, name: &str) -> Result<(), BackstoreError>;
    /// Clones the snapshot this backstore serves into a new image of its
    /// pool (`rbd_snap_protect` + `rbd_clone`).
    fn clone_to(&self, new_image: &str) -> Result<(), BackstoreError>;
}

/// An open RBD image's [`RbdLive`].
pub type RbdOps = Arc<dyn RbdLive>;

/// A device's backstore: cheap to clone, outlives restarted device actors.
#[derive(Clone)]
pub struct BackstoreHandle {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn BlockBackend>,
    kind: BackstoreKind,
    io: IoLane,
    identity: Option<LunIdentity>,
    /// The image file's backend (`file/` backstores on a regular file), for
    /// online resize.
    image: Option<Arc<FileBackend>>,
    options: DevOptions,
}

impl fmt::Debug for BackstoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackstoreHandle")
            .field("kind", &self.inner.kind)
            .field("io_threads", &self.inner.io.threads())
            .field("io_limit", &self.inner.io.limit())
            .finish()
    }
}

impl BackstoreHandle {
    /// Wraps `backend` with `io_threads` worker threads of its own.
    pub fn new(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io_threads: usize,
    ) -> Result<BackstoreHandle, BackstoreError> {
        Self::identified(backend, kind, io_threads, None)
    }

    /// [`BackstoreHandle::new`] for a backstore with a stored identity
    /// (the LUN's serial number and NAA designator).
    pub fn identified(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io_threads: usize,
        identity: Option<LunIdentity>,
    ) -> Result<BackstoreHandle, BackstoreError> {
        Self::with_options(backend, kind, io_threads, identity, DevOptions::default())
    }

    /// [`BackstoreHandle::identified`] served with the `dev_config`'s
    /// options, on `io_threads` threads of its own.
    pub fn with_options(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io_threads: usize,
        identity: Option<LunIdentity>,
        options: DevOptions,
    ) -> Result<BackstoreHandle, BackstoreError> {
        let io = IoPool::new("tcmud", io_threads)?.lane(io_threads);
        Ok(Self::on_lane_with(backend, kind, io, identity, options))
    }

    /// Wraps `backend`, running its blocking calls on `io` (a lane of
    /// threads shared with other backstores).
    pub fn on_lane(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io: IoLane,
        identity: Option<LunIdentity>,
    ) -> BackstoreHandle {
        Self::on_lane_with(backend, kind, io, identity, DevOptions::default())
    }

    /// [`BackstoreHandle::on_lane`] served with the `dev_config`'s options.
    pub fn on_lane_with(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io: IoLane,
        identity: Option<LunIdentity>,
        options: DevOptions,
    ) -> BackstoreHandle {
        BackstoreHandle {
            inner: Arc::new(Inner {
                backend,
                kind,
                io,
                identity,
                image: None,
                options,
            }),
        }
    }

    /// A `file/` backstore over `image`, served with the `dev_config`'s
    /// options; a regular file (not a block device) can be grown online.
    fn image(
        image: Arc<FileBackend>,
        regular: bool,
        path: PathBuf,
        io: IoLane,
        identity: LunIdentity,
        options: DevOptions,
    ) -> BackstoreHandle {
        BackstoreHandle {
            inner: Arc::new(Inner {
                backend: Arc::clone(&image) as Arc<dyn BlockBackend>,
                kind: BackstoreKind::File { path },
                io,
                identity: Some(identity),
                image: regular.then_some(image),
                options,
            }),
        }
    }

    /// The `dev_config`'s options it is served with.
    pub fn options(&self) -> DevOptions {
        self.inner.options
    }

    /// Physical block size in bytes when the `dev_config` asks for more
    /// than one logical block per physical block (`lbppbe=N`).
    pub fn physical_block_size(&self) -> Option<u32> {
        match self.inner.options.lbppbe {
            0 => None,
            n => self
                .inner
                .backend
                .caps()
                .block_size
                .checked_shl(u32::from(n)),
        }
    }

    /// Which daemon owns the unit, for backstores shared between daemons
    /// (RBD images: the exclusive lock).
    pub fn ownership(&self) -> Option<Arc<OwnershipCell>> {
        match &self.inner.kind {
            BackstoreKind::Rbd { ownership, .. } => Some(Arc::clone(ownership)),
            _ => None,
        }
    }

    /// The identity stored with the volume or image, if it has one.
    pub fn identity(&self) -> Option<LunIdentity> {
        self.inner.identity
    }

    /// The block backend the SCSI layer runs on.
    pub fn backend(&self) -> Arc<dyn BlockBackend> {
        Arc::clone(&self.inner.backend)
    }

    /// Where the blocks live.
    pub fn kind(&self) -> &BackstoreKind {
        &self.inner.kind
    }

    /// Runs `job` on an I/O thread; `false` when the workers are gone.
    pub fn spawn_io(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.inner.io.spawn(job)
    }

    /// Runs `f` on an I/O thread and awaits its result
    /// ([`BackstoreError::Panicked`] when it panicked).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, BackstoreError>> + 'static {
        self.inner.io.run(f)
    }

    /// Makes every completed write durable (blocking).
    pub fn flush(&self) -> Result<(), BackstoreError> {
        self.inner
            .backend
            .flush()
            .map_err(BackstoreError::Backend)?;
        if let BackstoreKind::Thin { pool, volume } = &self.inner.kind {
            pool.flush().map_err(|source| BackstoreError::Pool {
                what: format!("flush pool of {volume}"),
                source,
            })?;
        }
        Ok(())
    }

    /// Grows (never shrinks) a thin volume or an image file to `new_size`
    /// bytes (blocking). A smaller size is refused
    /// ([`BackstoreError::Shrink`]): the blocks past it hold data. A block
    /// device is not resized (its size is its own).
    pub fn resize(&self, new_size: u64) -> Result<(), BackstoreError> {
        let have = size_of(self.inner.backend.as_ref());
        if new_size < have {
            return Err(BackstoreError::Shrink {
                what: format!("{:?}", self.inner.kind),
                have,
                want: new_size,
            });
        }
        if new_size == have {
            return Ok(());
        }
        match (&self.inner.kind, &self.inner.image) {
            (BackstoreKind::File { path }, Some(image)) => {
                image.resize(new_size).map_err(|source| BackstoreError::Io {
                    what: format!("grow {} to {new_size} bytes", path.display()),
                    source,
                })
            }
            (BackstoreKind::File { path }, None) => Err(BackstoreError::Unsupported(format!(
                "resize of block device {} (to {new_size} bytes; it has {have})",
                path.display()
            ))),
            (BackstoreKind::Thin { pool, volume }, _) => pool
                .resize_volume(volume, new_size, false)
                .map_err(|source| BackstoreError::Pool {
                    what: format!("resize volume {volume}"),
                    source,
                }),
            (BackstoreKind::Rbd { ops, .. }, _) => ops.resize(new_size),
            (BackstoreKind::Other { name }, _) => {
                Err(BackstoreError::Unsupported(format!("resize of {name}")))
            }
        }
    }

    /// The live operations of an RBD image's backstore.
    pub(crate) fn rbd_ops(&self) -> Option<RbdOps> {
        match &self.inner.kind {
            BackstoreKind::Rbd { ops, .. } => Some(Arc::clone(ops)),
            _ => None,
        }
    }

    /// True when a resize must be announced to the LUN by the caller (the
    /// image file backend raises no capacity event of its own; a thin
    /// volume does).
    pub fn resize_needs_announce(&self) -> bool {
        self.inner.image.is_some() || matches!(self.inner.kind, BackstoreKind::Rbd { .. })
    }
}

/// What opening a backstore may do besides opening.
#[derive(Debug, Clone, Copy)]
pub struct OpenPolicy<'a> {
    /// Create a missing pool, volume (when the pool's `auto_create` allows) or image
    /// file. False for devices adopted at start-up and for those a rescan
    /// found, except thin volumes in a pool already open (their ADDED event
    /// was lost).
    pub may_create: bool,
    /// Directories `file//<path>` images may live under (none: `file/` is off).
    pub file_roots: &'a [PathBuf],
}

/// Opens the backstore named by `cfg` for a device of `size_bytes` with
/// logical blocks of `block_size` bytes (configfs `attrib/hw_block_size`),
/// creating a missing thin volume or image file when `policy` allows. An
/// existing volume whose block size differs is refused: serving it with
/// another block size would move every LBA.
pub fn open_backstore(
    cfg: &DevConfig,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
    policy: &OpenPolicy<'_>,
) -> Result<BackstoreHandle, BackstoreError> {
    open_backstore_with(
        cfg,
        &DevOptions::default(),
        size_bytes,
        block_size,
        reg,
        policy,
    )
}

/// [`open_backstore`] with the `dev_config`'s options: `ro` opens the
/// volume or image read-only (a write-protected LUN).
pub fn open_backstore_with(
    cfg: &DevConfig,
    opts: &DevOptions,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
    policy: &OpenPolicy<'_>,
) -> Result<BackstoreHandle, BackstoreError> {
    if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
        return Err(BackstoreError::BlockSize {
            what: "the device's hw_block_size".to_owned(),
            have: block_size,
            want: None,
        });
    }
    match cfg {
        DevConfig::Thin { pool, volume } => open_thin(
            pool,
            volume,
            size_bytes,
            block_size,
            reg,
            policy.may_create,
            opts,
        ),
        DevConfig::File { path } => open_file(path, size_bytes, block_size, reg, policy, opts),
        DevConfig::Rbd(spec) => open_rbd(spec, opts, size_bytes, block_size, reg),
    }
}

fn open_thin(
    pool_name: &str,
    volume: &str,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
    may_create: bool,
    opts: &DevOptions,
) -> Result<BackstoreHandle, BackstoreError> {
    let pool = reg.pool(pool_name, may_create)?;
    let spec = reg.spec(pool_name)?;
    let pool_err = |what: String| move |source| BackstoreError::Pool { what, source };
    let open = || match opts.read_only {
        true => pool.open_volume_read_only(volume),
        false => pool.open_volume(volume),
    };
    // Opened by name (a catalog lookup): listing every volume to see
    // whether this one exists cost O(volumes) store reads per LUN.
    let vol = match open() {
        Ok(vol) => vol,
        Err(e) if matches!(e.kind(), PoolErrorKind::NoSuchVolume) => {
            if let Some(why) = NotCreated::why(may_create, spec.auto_create) {
                return Err(BackstoreError::VolumeMissing {
                    pool: pool_name.to_owned(),
                    path: spec.path.clone(),
                    volume: volume.to_owned(),
                    why,
                });
            }
            tracing::info!(
                pool = pool_name,
                volume,
                size_bytes,
                block_size,
                "creating volume"
            );
            pool.create_volume(volume, size_bytes, block_size)
                .map_err(pool_err(format!("create volume {volume}")))?;
            open().map_err(pool_err(format!("open volume {volume}")))?
        }
        Err(e) => return Err(pool_err(format!("open volume {volume}"))(e)),
    };
    let identity = pool
        .volume_identity(volume)
        .map_err(pool_err(format!("identity of volume {volume}")))?;
    let have_bs = vol.caps().block_size;
    if have_bs != block_size {
        return Err(BackstoreError::BlockSize {
            what: format!("volume {pool_name}/{volume}"),
            have: have_bs,
            want: Some(block_size),
        });
    }
    let have = size_of(vol.as_ref());
    if have != size_bytes {
        tracing::warn!(
            volume,
            have,
            want = size_bytes,
            "volume size differs from device size"
        );
    }
    Ok(BackstoreHandle::on_lane_with(
        vol,
        BackstoreKind::Thin {
            pool,
            volume: volume.to_owned(),
        },
        reg.io_lane()?,
        Some(LunIdentity(identity)),
        *opts,
    ))
}

fn open_file(
    path: &Path,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
    policy: &OpenPolicy<'_>,
    opts: &DevOptions,
) -> Result<BackstoreHandle, BackstoreError> {
    let io_lane = reg.io_lane()?;
    let image = open_image(path, policy.file_roots, policy.may_create)?;
    let io = |what: String| move |source| BackstoreError::Io { what, source };
    if image.created {
        tracing::info!(path = %path.display(), size_bytes, "image file created");
    }
    if !image.block_device {
        // A short image is extended to the device size (never shrunk).
        let len = image
            .file
            .metadata()
            .map_err(io(format!("stat {}", path.display())))?
            .len();
        if len < size_bytes {
            image
                .file
                .set_len(size_bytes)
                .map_err(io(format!("extend {}", path.display())))?;
        }
    }
    let identity = file_identity(&image.file, path, image.block_device)?;
    let backend = FileBackend::from_file(image.file, block_size, opts.read_only)
        .map_err(io(format!("open {}", path.display())))?;
    let have = size_of(&backend);
    if image.block_device && have != size_bytes {
        tracing::warn!(
            path = %path.display(),
            device_size = have,
            configured = size_bytes,
            "block device served at its own size, not the configured dev_size"
        );
    }
    Ok(BackstoreHandle::image(
        Arc::new(backend),
        !image.block_device,
        path.to_owned(),
        io_lane,
        identity,
        *opts,
    ))
}

#[cfg(feature = "rbd")]
fn open_rbd(
    spec: &super::RbdSpec,
    opts: &DevOptions,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
) -> Result<BackstoreHandle, BackstoreError> {
    let io = reg.io_lane()?;
    let super::rbd::Opened {
        backend,
        identity,
        ops,
        ownership,
    } = super::rbd::open(spec, opts, size_bytes, block_size)?;
    Ok(BackstoreHandle::on_lane_with(
        backend,
        BackstoreKind::Rbd {
            name: spec.image_ref(),
            ops,
            ownership,
        },
        io,
        Some(identity),
        *opts,
    ))
}

#[cfg(not(feature = "rbd"))]
fn open_rbd(
    spec: &super::RbdSpec,
    _opts: &DevOptions,
    _size_bytes: u64,
    _block_size: u32,
    _reg: &PoolRegistry,
) -> Result<BackstoreHandle, BackstoreError> {
    Err(BackstoreError::Unsupported(format!(
        "rbd image {}: this tcmud was built without the rbd feature (cargo build --features rbd)",
        spec.image_ref()
    )))
}

pub(super) fn size_of(b: &dyn BlockBackend) -> u64 {
    let c = b.caps();
    c.num_blocks.saturating_mul(u64::from(c.block_size))
}
