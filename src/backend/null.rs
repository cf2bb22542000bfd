//! [`NullBackend`]: reads zeros, discards writes. For benchmarks of the
//! layers above the backend.

use super::{BackendCaps, BackendError, BlockBackend, BlockSink, BlockSource};

/// A sink: every read returns zeros, every write is dropped.
#[derive(Debug, Clone, Copy)]
pub struct NullBackend {
    caps: BackendCaps,
}

impl NullBackend {
    /// A non-thin, cacheless device of `num_blocks` blocks.
    pub fn new(block_size: u32, num_blocks: u64) -> NullBackend {
        NullBackend {
            caps: BackendCaps {
                block_size,
                num_blocks,
                thin: false,
                zeroes_after_unmap: false,
                unmap_granularity: 1,
                max_unmap_blocks: 0,
                max_unmap_descriptors: 0,
                volatile_cache: false,
                read_only: false,
                atomic_write: false,
            },
        }
    }

    fn check(&self, lba: u64, len: usize) -> Result<(), BackendError> {
        let bs = u64::from(self.caps.block_size.max(1));
        let blocks = u64::try_from(len).unwrap_or(u64::MAX) / bs;
        match lba.checked_add(blocks) {
            Some(end) if end <= self.caps.num_blocks => Ok(()),
            _ => Err(BackendError::OutOfRange { lba, blocks }),
        }
    }
}

impl BlockBackend for NullBackend {
    /// Memory only: never waits.
    fn may_block(&self) -> bool {
        false
    }

    fn caps(&self) -> BackendCaps {
        self.caps
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.check(lba, buf.len())?;
        buf.fill(0);
        Ok(())
    }
    fn write(&self, lba: u64, data: &[u8], _fua: bool) -> Result<(), BackendError> {
        self.check(lba, data.len())
    }
    /// Zero-fills the sink in place (one `memset` per ring span).
    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        self.check(lba, sink.len())?;
        sink.zero_at(0, sink.len()).map_err(BackendError::Read)
    }
    /// Discards the source without touching its bytes.
    fn write_from(&self, lba: u64, src: &dyn BlockSource, _fua: bool) -> Result<(), BackendError> {
        self.check(lba, src.len())
    }
    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.caps.num_blocks => Ok(()),
            _ => Err(BackendError::OutOfRange { lba, blocks }),
        }
    }
}
