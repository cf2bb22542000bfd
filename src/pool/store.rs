//! The metadata store behind a small trait: sled in production, an in-memory
//! store with crash images in tests.

use super::PoolError;

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
    /// Applies `changes` atomically and makes them durable before returning.
    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError>;
    /// Bytes the store occupies (on disk, or in memory for test stores).
    fn size_bytes(&self) -> u64;
    /// Releases the underlying database (files closed) before the pool is
    /// sealed; later calls fail. Default: nothing to do.
    fn close(&self) {}
}

/// [`MetaStore`] on a sled database: one tree, one `apply_batch` + `flush`
/// per commit.
pub struct SledStore {
    db: std::sync::RwLock<Option<sled::Db>>,
}

impl SledStore {
    /// Opens (or creates) the sled database at `path`. A database just
    /// closed by this process can stay locked for a moment while sled's
    /// background threads let go of it: a lock error is retried for up to
    /// two seconds.
    pub fn open(path: &std::path::Path) -> Result<SledStore, PoolError> {
        let mut tries = 0;
        loop {
            match sled::Config::new().path(path).flush_every_ms(None).open() {
                Ok(db) => {
                    return Ok(SledStore {
                        db: std::sync::RwLock::new(Some(db)),
                    })
                }
                // sled reports a held lock as an `Other` error with this text.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    tries += 1;
                    if tries > 200 {
                        return Err(PoolError::Store(format!(
                            "sled database {} is locked: {io}",
                            path.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(PoolError::Corrupt(format!(
                        "cannot open sled database {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    }
}

impl SledStore {
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
            None => Err(PoolError::Store("the metadata store is closed".into())),
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

    fn close(&self) {
        let db = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(db);
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
            db.apply_batch(batch)?;
            db.flush()?;
            Ok(())
        })
    }

    fn size_bytes(&self) -> u64 {
        self.with_db(|db| Ok(db.size_on_disk().unwrap_or(0)))
            .unwrap_or(0)
    }
}
