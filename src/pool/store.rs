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
    /// Opens (or creates) the sled database at `path`.
    pub fn open(path: &std::path::Path) -> Result<SledStore, PoolError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    PoolError::Store(format!("sled database {} is locked: {io}", path.display()))
                }
                sled::Error::Io(io) => PoolError::Corrupt(format!(
                    "cannot open sled database {}: {io}",
                    path.display()
                )),
                other => PoolError::Corrupt(format!(
                    "cannot open sled database {}: {other}",
                    path.display()
                )),
            })?;
        Ok(SledStore {
            db: std::sync::RwLock::new(Some(db)),
        })
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
