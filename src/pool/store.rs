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
}

/// [`MetaStore`] on a sled database: one tree, one `apply_batch` + `flush`
/// per commit.
pub struct SledStore {
    db: sled::Db,
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
        Ok(SledStore { db })
    }
}

impl MetaStore for SledStore {
    fn load_all(&self) -> Result<Entries, PoolError> {
        let mut out = Vec::new();
        for kv in self.db.iter() {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
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
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
