//! [`MemStore`]: a metadata store in memory, for checking a pool's records
//! without a database (`inspect` of a tree-format pool) and for the tests
//! (`testing`, which adds fault injection).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::store::{Change, Entries, MetaStore};
use super::{guard as lock, PoolError};

/// A [`MetaStore`] in memory; clones share the contents. Every commit is
/// durable by definition (the tests' crash image is a plain copy).
#[derive(Clone, Default)]
pub struct MemStore {
    pub(super) kv: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    /// Set by the tests' fault injection (`pool::testing`):
    /// every commit fails.
    pub(super) fail: Arc<AtomicBool>,
    /// `get` calls so far, all clones together (the tests' view of store
    /// reads: `pool::testing`).
    pub(super) gets: Arc<AtomicU64>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

impl MetaStore for MemStore {
    fn load_all(&self) -> Result<Entries, PoolError> {
        Ok(lock(&self.kv)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, PoolError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(lock(&self.kv).get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, PoolError> {
        Ok(lock(&self.kv)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(PoolError::io(
                "syncing the metadata (injected)",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let mut kv = lock(&self.kv);
        for (k, v) in changes {
            match v {
                Some(v) => kv.insert(k, v),
                None => kv.remove(&k),
            };
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        lock(&self.kv)
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
