//! The process-wide registry of open thin pools.
//!
//! sled cannot open one path twice in a process, and a pool must outlive the
//! device actors that use it (they restart), so every pool is opened once,
//! lazily, here; devices clone the cheap [`Pool`] handle.
//!
//! The registry also hands out the process-wide I/O threads ([`SharedIo`]):
//! every backstore opened through it gets a lane of the same pool.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

use super::io_pool::{IoLane, IoPool};
use super::{BackstoreError, NotCreated, DEFAULT_IO_THREADS};

/// The process-wide I/O threads, and how many jobs of one backstore may run
/// on them at once (so that a backstore whose calls block cannot take every
/// thread).
#[derive(Debug, Clone)]
pub struct SharedIo {
    pool: IoPool,
    per_backstore: usize,
}

impl SharedIo {
    /// Starts `threads` workers (at least 1); each backstore may run up to
    /// `per_backstore` jobs at once (at least 1).
    pub fn new(threads: usize, per_backstore: usize) -> Result<SharedIo, BackstoreError> {
        Ok(SharedIo {
            pool: IoPool::new("tcmud", threads)?,
            per_backstore: per_backstore.max(1),
        })
    }

    /// A lane for one more backstore.
    pub fn lane(&self) -> IoLane {
        self.pool.lane(self.per_backstore)
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Jobs of one backstore that may run at once.
    pub fn per_backstore(&self) -> usize {
        self.per_backstore
    }
}

/// One configured pool (the daemon configuration's `[[pool]]` entry).
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// Name used in `thin/<pool>/<volume>`.
    pub name: String,
    /// Directory holding the pool.
    pub path: PathBuf,
    /// Geometry used when the pool is created.
    pub config: PoolConfig,
    /// Create the pool directory and missing volumes on first use.
    pub auto_create: bool,
    /// How the pool is created and opened (its metadata cache).
    pub options: PoolOptions,
}

impl From<&crate::config::PoolConfig> for PoolSpec {
    fn from(c: &crate::config::PoolConfig) -> PoolSpec {
        PoolSpec {
            name: c.name.clone(),
            path: c.path.clone(),
            config: PoolConfig {
                chunk_size: c.chunk_size,
                capacity_bytes: c.capacity_bytes,
                low_water_pct: c.low_water_pct,
            },
            auto_create: c.auto_create,
            options: PoolOptions {
                metadata_cache: c.metadata_cache,
                sparse_data: c.sparse_data,
                ..PoolOptions::default()
            },
        }
    }
}

/// Opens each configured pool at most once per process and hands out handles.
#[derive(Default)]
pub struct PoolRegistry {
    specs: Vec<PoolSpec>,
    open: Mutex<HashMap<PathBuf, Pool>>,
    io: OnceLock<SharedIo>,
}

impl std::fmt::Debug for PoolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRegistry")
            .field("specs", &self.specs)
            .field("open", &self.open_pools())
            .finish()
    }
}

impl PoolRegistry {
    /// A registry over the configured pools; nothing is opened yet.
    /// Its backstores share I/O threads started on first use
    /// ([`DEFAULT_IO_THREADS`], each backstore may use them all).
    pub fn new(specs: Vec<PoolSpec>) -> PoolRegistry {
        PoolRegistry {
            specs,
            open: Mutex::new(HashMap::new()),
            io: OnceLock::new(),
        }
    }

    /// A registry whose backstores run their I/O on `io`.
    pub fn with_io(specs: Vec<PoolSpec>, io: SharedIo) -> PoolRegistry {
        let reg = PoolRegistry::new(specs);
        let _ = reg.io.set(io);
        reg
    }

    /// Runs the I/O of backstores opened from now on on `io`, unless the
    /// registry already has I/O threads; returns whether `io` was taken.
    pub fn use_io(&self, io: &SharedIo) -> bool {
        self.io.set(io.clone()).is_ok()
    }

    /// A lane of the shared I/O threads for one more backstore.
    pub fn io_lane(&self) -> Result<IoLane, BackstoreError> {
        if let Some(io) = self.io.get() {
            return Ok(io.lane());
        }
        let io = SharedIo::new(DEFAULT_IO_THREADS, DEFAULT_IO_THREADS)?;
        // Another thread may have won the race: use whichever is stored.
        Ok(self.io.get_or_init(|| io).lane())
    }

    /// A registry over the daemon configuration's `[[pool]]` entries.
    pub fn from_config(pools: &[crate::config::PoolConfig]) -> PoolRegistry {
        PoolRegistry::new(pools.iter().map(PoolSpec::from).collect())
    }

    /// The configuration of pool `name`.
    pub fn spec(&self, name: &str) -> Result<&PoolSpec, BackstoreError> {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BackstoreError::UnknownPool(name.to_owned()))
    }

    /// The open pool `name`, opening (or, with `auto_create` and `may_create`,
    /// creating) it on first use. Two names for one directory share one handle.
    pub fn pool(&self, name: &str, may_create: bool) -> Result<Pool, BackstoreError> {
        let spec = self.spec(name)?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = open.get(&spec.path) {
            return Ok(p.clone());
        }
        let pool = open_or_create(spec, may_create)?;
        open.insert(spec.path.clone(), pool.clone());
        tracing::info!(pool = %spec.name, path = %spec.path.display(), "pool opened");
        Ok(pool)
    }

    /// The configured pools.
    pub fn specs(&self) -> &[PoolSpec] {
        &self.specs
    }

    /// The pool `name` if it is open (never opens it).
    pub fn held(&self, name: &str) -> Option<Pool> {
        let spec = self.spec(name).ok()?;
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&spec.path).cloned()
    }

    /// Names of the pools opened so far.
    pub fn open_pools(&self) -> Vec<PathBuf> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.keys().cloned().collect()
    }

    /// Flushes every open pool; returns the first error after trying all.
    pub fn flush_all(&self) -> Result<(), BackstoreError> {
        let pools: Vec<(PathBuf, Pool)> = {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut first = None;
        for (path, pool) in pools {
            if let Err(e) = pool.flush() {
                tracing::error!(path = %path.display(), error = %e, "pool flush failed");
                first.get_or_insert(BackstoreError::Pool {
                    what: format!("flush {}", path.display()),
                    source: e,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn open_or_create(spec: &PoolSpec, may_create: bool) -> Result<Pool, BackstoreError> {
    let pool_err = |what: &str| {
        let what = format!("{what} pool {} at {}", spec.name, spec.path.display());
        move |source| BackstoreError::Pool { what, source }
    };
    if is_empty_dir(&spec.path)? {
        if let Some(why) = NotCreated::why(may_create, spec.auto_create) {
            return Err(BackstoreError::PoolMissing {
                name: spec.name.clone(),
                path: spec.path.clone(),
                why,
            });
        }
        // Owner-only, also when the directory existed (empty) with a looser mode.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spec.path)
            .and_then(|()| fs::set_permissions(&spec.path, fs::Permissions::from_mode(0o700)))
            .map_err(|source| BackstoreError::Io {
                what: format!("create pool directory {}", spec.path.display()),
                source,
            })?;
        tracing::info!(pool = %spec.name, path = %spec.path.display(), "creating pool");
        return Pool::create_opts(&spec.path, &spec.config, &spec.options)
            .map_err(pool_err("create"));
    }
    Pool::open_opts(&spec.path, &spec.options).map_err(pool_err("open"))
}

/// True when `dir` does not exist or holds nothing (a pool to be created).
fn is_empty_dir(dir: &Path) -> Result<bool, BackstoreError> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(BackstoreError::Io {
            what: format!("read pool directory {}", dir.display()),
            source,
        }),
    }
}
