//! The process-wide registry of open thin pools.
//!
//! sled cannot open one path twice in a process, and a pool must outlive the
//! device actors that use it (they restart), so every pool is opened once,
//! lazily, here; devices clone the cheap [`Pool`] handle.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

use super::{BackstoreError, NotCreated};

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
    pub fn new(specs: Vec<PoolSpec>) -> PoolRegistry {
        PoolRegistry {
            specs,
            open: Mutex::new(HashMap::new()),
        }
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
