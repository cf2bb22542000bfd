//! The backstore of one device: the block backend plus the I/O threads that
//! run its blocking calls.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tcmud_core::backend::file::FileBackend;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::Pool;

use super::io_pool::IoPool;
use super::{BackstoreError, DevConfig, PoolRegistry};

/// The kernel's default `hw_block_size`, used where configfs does not say.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;

/// I/O worker threads per device.
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
            BackstoreKind::Other { name } => f.write_str(name),
        }
    }
}

/// A device's backstore: cheap to clone, outlives restarted device actors.
#[derive(Clone)]
pub struct BackstoreHandle {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn BlockBackend>,
    kind: BackstoreKind,
    io: IoPool,
}

impl fmt::Debug for BackstoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackstoreHandle")
            .field("kind", &self.inner.kind)
            .field("io_threads", &self.inner.io.threads())
            .finish()
    }
}

impl BackstoreHandle {
    /// Wraps `backend` with `io_threads` worker threads.
    pub fn new(
        backend: Arc<dyn BlockBackend>,
        kind: BackstoreKind,
        io_threads: usize,
    ) -> Result<BackstoreHandle, BackstoreError> {
        let io = IoPool::new("tcmud", io_threads)?;
        Ok(BackstoreHandle {
            inner: Arc::new(Inner { backend, kind, io }),
        })
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

    /// Runs `f` on an I/O thread and awaits its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BackstoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.spawn_io(move || {
            let _ = tx.send(f());
        }) {
            return Err(BackstoreError::WorkersGone);
        }
        rx.await.map_err(|_| BackstoreError::WorkersGone)
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

    /// Grows (never shrinks) a thin volume to `new_size` bytes (blocking).
    /// Image files are not resized online: the file backend fixes its size
    /// when opened.
    pub fn resize(&self, new_size: u64) -> Result<(), BackstoreError> {
        match &self.inner.kind {
            BackstoreKind::Thin { pool, volume } => pool
                .resize_volume(volume, new_size, false)
                .map_err(|source| BackstoreError::Pool {
                    what: format!("resize volume {volume}"),
                    source,
                }),
            BackstoreKind::File { path } => Err(BackstoreError::Unsupported(format!(
                "online resize of image file {} (to {new_size} bytes)",
                path.display()
            ))),
            BackstoreKind::Other { name } => {
                Err(BackstoreError::Unsupported(format!("resize of {name}")))
            }
        }
    }
}

/// Opens the backstore named by `cfg` for a device of `size_bytes` with
/// logical blocks of `block_size` bytes (configfs `attrib/hw_block_size`),
/// creating a missing thin volume (when its pool allows) or image file. An
/// existing volume whose block size differs is refused: serving it with
/// another block size would move every LBA.
pub fn open_backstore(
    cfg: &DevConfig,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
) -> Result<BackstoreHandle, BackstoreError> {
    if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
        return Err(BackstoreError::BlockSize {
            what: "the device's hw_block_size".to_owned(),
            have: block_size,
            want: None,
        });
    }
    match cfg {
        DevConfig::Thin { pool, volume } => open_thin(pool, volume, size_bytes, block_size, reg),
        DevConfig::File { path } => open_file(path, size_bytes, block_size),
    }
}

fn open_thin(
    pool_name: &str,
    volume: &str,
    size_bytes: u64,
    block_size: u32,
    reg: &PoolRegistry,
) -> Result<BackstoreHandle, BackstoreError> {
    let pool = reg.pool(pool_name)?;
    let auto_create = reg.spec(pool_name)?.auto_create;
    let pool_err = |what: String| move |source| BackstoreError::Pool { what, source };
    let exists = pool
        .list_volumes()
        .map_err(pool_err(format!("list volumes of {pool_name}")))?
        .iter()
        .any(|v| v.name == volume);
    if !exists {
        if !auto_create {
            return Err(BackstoreError::VolumeMissing {
                pool: pool_name.to_owned(),
                volume: volume.to_owned(),
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
    }
    let vol = pool
        .open_volume(volume)
        .map_err(pool_err(format!("open volume {volume}")))?;
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
    BackstoreHandle::new(
        vol,
        BackstoreKind::Thin {
            pool,
            volume: volume.to_owned(),
        },
        DEFAULT_IO_THREADS,
    )
}

fn open_file(
    path: &Path,
    size_bytes: u64,
    block_size: u32,
) -> Result<BackstoreHandle, BackstoreError> {
    if !path.exists() {
        tracing::info!(path = %path.display(), size_bytes, "creating image file");
    }
    // Creates a missing image and extends a short one to the device size.
    let backend =
        FileBackend::create(path, block_size, size_bytes).map_err(|source| BackstoreError::Io {
            what: format!("open {}", path.display()),
            source,
        })?;
    BackstoreHandle::new(
        Arc::new(backend),
        BackstoreKind::File {
            path: path.to_owned(),
        },
        DEFAULT_IO_THREADS,
    )
}

fn size_of(b: &dyn BlockBackend) -> u64 {
    let c = b.caps();
    c.num_blocks.saturating_mul(u64::from(c.block_size))
}
