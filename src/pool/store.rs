//! The metadata store behind a small trait: sled in production, an in-memory
//! store with crash images in tests.

use super::durable::DirSync;
use super::{guard, PoolError};

/// A sled error; I/O errors keep their OS error (ENOSPC is told apart).
fn sled_err(e: sled::Error) -> PoolError {
    match e {
        sled::Error::Io(io) => PoolError::io("writing the metadata (sled)", io),
        other => other.into(),
    }
}

/// Every key and value of a store, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One change of a commit: `None` removes the key.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A durable ordered key-value store.
///
/// [`MetaStore::commit`] applies a batch atomically and durably: after a
/// crash either all of it or none of it is visible.
pub trait MetaStore: Send + Sync {
    /// Every key and value, in key order.
    fn load_all(&self) -> Result<Entries, PoolError>;
    /// The value of `key` (format 3 reads pages on demand). Default: from
    /// [`MetaStore::load_all`] (test wrappers; slow).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, PoolError> {
        Ok(self
            .load_all()?
            .into_iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v))
    }
    /// Every key starting with `prefix` and its value, in key order.
    /// Default: from [`MetaStore::load_all`].
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, PoolError> {
        Ok(self
            .load_all()?
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect())
    }
    /// Applies `changes` atomically and makes them durable before returning.
    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError>;
    /// Bytes the store occupies (on disk, or in memory for test stores).
    fn size_bytes(&self) -> u64;
    /// Releases the underlying database (files closed) before the pool is
    /// sealed, with everything it wrote durable; later calls fail.
    /// Default: nothing to do.
    fn close(&self) -> Result<(), PoolError> {
        Ok(())
    }
    /// How long the last commit's own syncs took (for sled: `fdatasync`
    /// of its log and the syncs of new names), part of [`MetaStore::commit`]'s
    /// time. Default: zero (nothing synced apart).
    fn last_sync(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// [`MetaStore`] on a sled database: one tree; per commit one `apply_batch`,
/// sled's `flush`, then the fsyncs sled does not do itself.
///
/// sled 0.34's `flush` ends in `sync_file_range` on its log (`db`), which
/// persists neither the file's size and extents when the log grew nor the
/// drive's write cache; it writes its config file (`conf`) and blobs
/// without any sync and renames snapshots (`snap.*`, written at open)
/// without syncing the directory. So after `flush` a commit runs
/// `fdatasync` on `db` (a descriptor of our own: sled exposes none), and,
/// when the names in `meta/` or `meta/blobs/` changed since the last
/// commit, `fsync` on each new file and on the directory. The same syncs
/// run right after sled opens (its `conf`, `db` and snapshot durable before
/// anything is committed) and after it is closed (the files a sealed CRC
/// covers durable before the seal).
pub struct SledStore {
    db: std::sync::RwLock<Option<sled::Db>>,
    /// `meta/db`, opened by us for `fdatasync` and the reserve.
    log: std::fs::File,
    /// New entries of `meta/` and `meta/blobs/`.
    dirs: std::sync::Mutex<[DirSync; 2]>,
    /// Nanoseconds the last commit's [`SledStore::sync_files`] took.
    last_sync_ns: std::sync::atomic::AtomicU64,
    /// End of the host space preallocated past the log's end.
    reserved_to: std::sync::atomic::AtomicU64,
}

/// Host space kept preallocated past the end of sled's log
/// (`fallocate(FALLOC_FL_KEEP_SIZE)`, renewed after each commit): when the
/// host file system fills up, commits go on (they free chunks, record the
/// mappings of overwrites already done) until that is used up.
const LOG_RESERVE: u64 = 2 << 20;

impl SledStore {
    /// Opens (or creates) the sled database at `path`. A database just
    /// closed by this process can stay locked for a moment while sled's
    /// background threads let go of it: a lock error is retried for up to
    /// two seconds.
    pub fn open(path: &std::path::Path) -> Result<SledStore, PoolError> {
        let cache = super::pagestore::CacheSplit::of(super::pagestore::DEFAULT_METADATA_CACHE);
        SledStore::open_cached(path, cache.sled)
    }

    /// [`SledStore::open`] with sled's own cache at `cache_capacity` bytes
    /// (a pool gives it its share of `metadata_cache`,
    /// [`CacheSplit`](super::pagestore::CacheSplit); sled's default is 1 GiB).
    pub fn open_cached(
        path: &std::path::Path,
        cache_capacity: u64,
    ) -> Result<SledStore, PoolError> {
        remove_unfinished_snapshots(path)?;
        let mut tries = 0;
        loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_capacity)
                .flush_every_ms(None)
                .open()
            {
                Ok(db) => {
                    // Writable: fallocate needs it (the reserve below).
                    let log = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path.join("db"))
                        .map_err(|e| PoolError::io(format!("opening {}/db", path.display()), e))?;
                    let store = SledStore {
                        db: std::sync::RwLock::new(Some(db)),
                        log,
                        dirs: std::sync::Mutex::new([
                            DirSync::new(path.to_path_buf()),
                            DirSync::new(path.join("blobs")),
                        ]),
                        reserved_to: std::sync::atomic::AtomicU64::new(0),
                        last_sync_ns: std::sync::atomic::AtomicU64::new(0),
                    };
                    store.sync_files()?;
                    return Ok(store);
                }
                // sled reports a held lock as an `Other` error with this text.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    tries += 1;
                    if tries > 200 {
                        return Err(PoolError::store(format!(
                            "sled database {} is locked: {io}",
                            path.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                // sled writes a snapshot when it opens: a full host is no
                // sign of damage.
                Err(sled::Error::Io(io)) if super::error::is_out_of_space(&io) => {
                    return Err(PoolError::io(
                        format!("opening sled database {}", path.display()),
                        io,
                    ))
                }
                Err(e) => {
                    return Err(PoolError::corrupt(format!(
                        "cannot open sled database {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    }
}

/// Removes the `snap.*.generating` files of `meta` before sled opens.
///
/// sled writes a snapshot at every open to `snap.<lsn>.generating`, syncs
/// it and renames it; one left behind (power cut or full disk while it was
/// written) is a partial file, yet sled 0.34 counts it as a snapshot and,
/// its name sorting last, reads it and fails the open as corrupt, for good.
/// It never holds anything the log and the last finished snapshot lack.
fn remove_unfinished_snapshots(meta: &std::path::Path) -> Result<(), PoolError> {
    let entries = match std::fs::read_dir(meta) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PoolError::io(format!("reading {}", meta.display()), e)),
    };
    let mut removed = false;
    for e in entries {
        let e = e.map_err(|e| PoolError::io(format!("reading {}", meta.display()), e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %e.path().display(), "removing an unfinished sled snapshot");
            std::fs::remove_file(e.path())
                .map_err(|err| PoolError::io(format!("removing {}", e.path().display()), err))?;
            removed = true;
        }
    }
    if removed {
        super::durable::sync_path(meta)
            .map_err(|e| PoolError::io(format!("syncing {}", meta.display()), e))?;
    }
    Ok(())
}

impl SledStore {
    /// `fdatasync` of the log, then the new entries of `meta/` and
    /// `meta/blobs/` (see the type's docs).
    fn sync_files(&self) -> Result<(), PoolError> {
        self.log
            .sync_data()
            .map_err(|e| PoolError::io("syncing the metadata log meta/db", e))?;
        let mut dirs = guard(&self.dirs);
        for d in dirs.iter_mut() {
            d.sync_changes()
                .map_err(|e| PoolError::io("syncing the metadata directory", e))?;
        }
        drop(dirs);
        self.renew_reserve();
        Ok(())
    }

    /// Preallocates [`LOG_RESERVE`] past the log's end when less than half
    /// of it is left. Best effort: a full host leaves it as it is.
    fn renew_reserve(&self) {
        use nix::fcntl::{fallocate, FallocateFlags};
        use std::sync::atomic::Ordering;
        let Ok(len) = self.log.metadata().map(|m| m.len()) else {
            return;
        };
        if len + LOG_RESERVE / 2 <= self.reserved_to.load(Ordering::Acquire) {
            return;
        }
        let (Ok(off), Ok(n)) = (i64::try_from(len), i64::try_from(LOG_RESERVE)) else {
            return;
        };
        match fallocate(&self.log, FallocateFlags::FALLOC_FL_KEEP_SIZE, off, n) {
            Ok(()) => self.reserved_to.store(len + LOG_RESERVE, Ordering::Release),
            Err(e) => tracing::debug!(error = %e, "reserving space for the metadata log"),
        }
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&sled::Db) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        let g = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match g.as_ref() {
            Some(db) => f(db),
            None => Err(PoolError::store("the metadata store is closed")),
        }
    }
}

impl MetaStore for SledStore {
    fn load_all(&self) -> Result<Entries, PoolError> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for kv in db.iter() {
                let (k, v) = kv?;
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, PoolError> {
        self.with_db(|db| Ok(db.get(key)?.map(|v| v.to_vec())))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, PoolError> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for kv in db.scan_prefix(prefix) {
                let (k, v) = kv?;
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
    }

    fn close(&self) -> Result<(), PoolError> {
        let db = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if db.is_none() {
            return Ok(());
        }
        drop(db);
        // sled may write on close; make that durable before the seal's CRC
        // is taken over these files.
        self.sync_files()
    }

    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.with_db(|db| {
            db.apply_batch(batch).map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
            Ok(())
        })?;
        let t = std::time::Instant::now();
        let res = self.sync_files();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_sync_ns
            .store(ns, std::sync::atomic::Ordering::Relaxed);
        res
    }

    fn last_sync(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.last_sync_ns.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn size_bytes(&self) -> u64 {
        self.with_db(|db| Ok(db.size_on_disk().unwrap_or(0)))
            .unwrap_or(0)
    }
}
