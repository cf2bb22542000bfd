//! Volume identities: 16 random bytes per volume, stored under
//! [`format::TAG_IDENT`] + the volume's id, the source of the SCSI unit
//! serial number and NAA designator of the LUN serving it.

use super::format::{self, IDENT_LEN};
use super::{guard, Pool, PoolError};

/// A new random identity.
pub(crate) fn random_identity() -> Result<[u8; IDENT_LEN], PoolError> {
    let mut id = [0u8; IDENT_LEN];
    random_bytes(&mut id)
        .map_err(|source| PoolError::io("draw a random volume identity", source))?;
    Ok(id)
}

impl Pool {
    /// The identity of volume (or snapshot) `name`: created with it, kept
    /// by a rename, never shared with another volume. A volume from a pool
    /// older than identities gets one now, stored before this returns.
    pub fn volume_identity(&self, name: &str) -> Result<[u8; IDENT_LEN], PoolError> {
        let vid = self.record(name)?.id;
        // Held throughout: two first calls for one volume must not each
        // store an identity of their own.
        let mut cache = guard(&self.inner.idents);
        if let Some(id) = cache.get(&vid) {
            return Ok(*id);
        }
        let id = match self.read_identity(vid, name)? {
            Some(id) => id,
            None => {
                self.writable()?;
                let id = random_identity()?;
                self.state()
                    .put(format::id_key(format::TAG_IDENT, vid), id.to_vec());
                self.flush()?;
                tracing::info!(volume = name, "volume had no identity; stored a new one");
                id
            }
        };
        cache.insert(vid, id);
        Ok(id)
    }

    /// The identity stored for volume id `vid` (named `name`), if any;
    /// creates none.
    pub(crate) fn stored_identity(
        &self,
        vid: u64,
        name: &str,
    ) -> Result<Option<[u8; IDENT_LEN]>, PoolError> {
        if let Some(id) = guard(&self.inner.idents).get(&vid) {
            return Ok(Some(*id));
        }
        self.read_identity(vid, name)
    }

    /// The identity of `vid` as committed or about to be.
    fn read_identity(&self, vid: u64, name: &str) -> Result<Option<[u8; IDENT_LEN]>, PoolError> {
        let key = format::id_key(format::TAG_IDENT, vid);
        let stored = match self.state().dirty.get(&key) {
            Some(v) => v.clone(),
            None => self.inner.store.get(&key)?,
        };
        stored
            .map(|v| {
                <[u8; IDENT_LEN]>::try_from(v.as_slice()).map_err(|_| {
                    PoolError::corrupt(format!(
                        "identity of volume {name:?}: expected {IDENT_LEN} bytes, got {}",
                        v.len()
                    ))
                })
            })
            .transpose()
    }
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(e.to_string()))
}
