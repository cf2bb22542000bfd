//! Sharing a range of chunks between volumes (EXTENDED COPY between
//! volumes of one pool): the destination's chunks are mapped to the
//! source's, with a reference each, and copied on the next write to either
//! side, as snapshots share a whole volume. No data is read or written;
//! the new mappings are made durable by one commit before it returns.

use std::sync::{Arc, PoisonError, RwLock};

use super::volume::Volume;
use super::{Pool, PoolError};
use crate::backend::BackendError;

impl Pool {
    /// Maps `chunks` logical chunks of volume `dst` from `dst_l` on to the
    /// chunks volume `src` maps from `src_l` (an unmapped source chunk
    /// unmaps the destination's), then commits. The chunks the destination
    /// mapped before lose a reference. The caller holds both volumes'
    /// gates exclusively.
    pub(crate) fn share_chunks(
        &self,
        src: u64,
        src_l: u64,
        dst: u64,
        dst_l: u64,
        chunks: u64,
    ) -> Result<(), PoolError> {
        self.writable()?;
        {
            let mut st = self.state();
            for i in 0..chunks {
                match st.lookup(src, src_l + i)? {
                    Some(c) => st.share_chunk(dst, dst_l + i, c)?,
                    None => {
                        st.map_remove(dst, dst_l + i)?;
                    }
                }
            }
        }
        self.flush()
    }
}

impl Volume {
    fn same_pool(&self, other: &Volume) -> bool {
        Arc::ptr_eq(&self.pool().inner, &other.pool().inner)
    }

    fn gate(&self) -> &Arc<RwLock<()>> {
        &self.gate
    }

    /// [`BlockBackend::share_blocks`](crate::backend::BlockBackend::share_blocks)
    /// for two volumes of one pool with the same block size, on whole
    /// chunks at the same offset within a chunk on both sides.
    pub(crate) fn share_from(
        &self,
        src: &Volume,
        src_lba: u64,
        lba: u64,
        blocks: u64,
    ) -> Result<bool, BackendError> {
        if !self.same_pool(src) || src.block_size() != self.block_size() || self.read_only() {
            return Ok(false);
        }
        let bs = u64::from(self.block_size());
        let (cs, shift) = (self.pool().inner.chunk_size, self.pool().inner.chunk_shift);
        let bytes = |b: u64| {
            b.checked_mul(bs)
                .ok_or(BackendError::OutOfRange { lba, blocks })
        };
        let (so, dof, len) = (bytes(src_lba)?, bytes(lba)?, bytes(blocks)?);
        if so % cs != 0 || dof % cs != 0 || len % cs != 0 || len == 0 {
            return Ok(false);
        }
        let fits = |off: u64, size: u64| off.checked_add(len).is_some_and(|end| end <= size);
        if !fits(so, src.size_bytes()) || !fits(dof, self.size_bytes()) {
            return Err(BackendError::OutOfRange { lba, blocks });
        }
        if self.id() == src.id() && so < dof + len && dof < so + len {
            return Ok(false); // overlapping ranges of one volume: copied in order instead
        }
        // Both gates exclusively (no in-place write may land in a chunk
        // while it becomes shared), the lower volume id first.
        let (first, second) = match self.id() <= src.id() {
            true => (self.gate(), src.gate()),
            false => (src.gate(), self.gate()),
        };
        let _g1 = first.write().unwrap_or_else(PoisonError::into_inner);
        let _g2 =
            (self.id() != src.id()).then(|| second.write().unwrap_or_else(PoisonError::into_inner));
        self.pool()
            .share_chunks(src.id(), so >> shift, self.id(), dof >> shift, len >> shift)
            .map_err(PoolError::into_flush_error)?;
        Ok(true)
    }
}
