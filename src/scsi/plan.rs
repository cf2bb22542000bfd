//! The data commands an asynchronous backend runs itself
//! ([`crate::backend::AsyncBackend`]): the LUN validates the CDB as its
//! handler would and hands back a plan; the daemon submits it and turns
//! the backend's outcome into the response ([`Lun::planned_response`]).
//! Anything unusual (another command, a pending unit attention, a SANITIZE,
//! a field to reject, buffers shorter than the transfer, a zero-length
//! transfer) is not planned: [`Lun::execute_io`] runs it, errors included.
//! The checks are the handlers' own ([`precheck`], [`BlockRequest`],
//! `limits`), so a planned command is one the handler would have run.

use super::cdb::{Block10, Block16, CompareAndWrite, Unmap};
use super::lun::{Lun, ScsiResponse};
use super::sbc::write_same::WriteSameBits;
use super::sbc::{accepted_transfer, limits, BlockRequest};
use super::table::{lookup, precheck};
use super::ScsiError;
use crate::backend::BackendCaps;
use crate::backend::BackendError;
use crate::scsi::extent::Extent;

/// A validated data command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPlan {
    /// READ (6/10/12/16): `bytes` at block `lba` into the data-in buffer.
    Read {
        /// First block.
        lba: u64,
        /// Bytes to read (the whole transfer; the buffer holds them).
        bytes: usize,
    },
    /// WRITE (6/10/12/16): `bytes` of the data-out at block `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Bytes to write.
        bytes: usize,
        /// Durable on completion (FUA, or the write cache off).
        fua: bool,
    },
    /// SYNCHRONIZE CACHE (10/16): every completed write made durable.
    Flush,
    /// COMPARE AND WRITE: the data-out holds `bytes` to compare at block
    /// `lba`, then `bytes` to write there when they match.
    CompareAndWrite {
        /// First block.
        lba: u64,
        /// Bytes compared (and written).
        bytes: usize,
        /// Durable on completion.
        fua: bool,
    },
    /// UNMAP with one block descriptor (more take the I/O threads):
    /// deallocate `blocks` at `lba` (they read as zeros afterwards).
    Unmap {
        /// First block.
        lba: u64,
        /// Blocks (0: nothing to do).
        blocks: u64,
    },
    /// WRITE SAME (10/16): the data-out's one block (zeros with `zero`)
    /// over `blocks` at `lba`.
    WriteSame {
        /// First block.
        lba: u64,
        /// Blocks written (at least one).
        blocks: u64,
        /// The pattern is all zeros (NDOB, or a zero block sent).
        zero: bool,
        /// With `zero`: the blocks may be deallocated (UNMAP bit, and
        /// deallocated blocks read zero).
        deallocate: bool,
        /// Durable on completion.
        fua: bool,
    },
}

impl Lun {
    /// The plan for `cdb` when an asynchronous backend may run it (see the
    /// module doc); `data_out_len`/`data_in_len` are the command's buffers.
    pub fn plan_async(
        &self,
        cdb: &[u8],
        data_out_len: usize,
        data_in_len: usize,
    ) -> Option<IoPlan> {
        let op = *cdb.first()?;
        let kind = match op {
            0x08 | 0x28 | 0xa8 | 0x88 => 0,
            0x0a | 0x2a | 0xaa | 0x8a => 1,
            0x35 | 0x91 => 2,
            0x89 => 3,
            _ => return None,
        };
        self.state().poll_events();
        if self.state().holds_commands() {
            return None;
        }
        let caps = self.state().caps();
        // What table::run checks before any handler.
        let cmd = lookup(cdb).ok()?;
        precheck(cmd, cdb, &caps, data_out_len).ok()?;
        if kind == 3 {
            return self.plan_compare_and_write(cdb, &caps, data_out_len);
        }
        let req = match op {
            0x08 | 0x0a => BlockRequest::six(cdb),
            0x28 | 0x2a | 0x35 => BlockRequest::ten(cdb),
            0xa8 | 0xaa => BlockRequest::twelve(cdb),
            _ => BlockRequest::sixteen(cdb),
        }
        .ok()?;
        if kind == 2 {
            // The range check of sync.rs: a bad range is execute_io's to report.
            let blocks = match req.blocks {
                0 => caps.num_blocks.checked_sub(req.lba)?,
                n => u64::from(n),
            };
            Extent::new(req.lba, blocks, caps.num_blocks, 1).ok()?;
            return Some(IoPlan::Flush);
        }
        req.check_protect().ok()?;
        if req.blocks > accepted_transfer(self.state(), &caps) {
            return None;
        }
        let ext = Extent::new(
            req.lba,
            u64::from(req.blocks),
            caps.num_blocks,
            caps.block_size,
        )
        .ok()?;
        if ext.blocks == 0 {
            return None;
        }
        if kind == 0 {
            return (data_in_len >= ext.bytes).then_some(IoPlan::Read {
                lba: ext.lba,
                bytes: ext.bytes,
            });
        }
        if caps.read_only || data_out_len < ext.bytes {
            return None;
        }
        Some(IoPlan::Write {
            lba: ext.lba,
            bytes: ext.bytes,
            fua: self.state().effective_fua(&caps, req.fua),
        })
    }

    /// The plan for an UNMAP or a WRITE SAME (10/16) an asynchronous
    /// backend may run, given the command's whole data-out (the parameter
    /// list or the pattern block): the checks of unmap.rs and
    /// write_same.rs, anything unusual left to [`Lun::execute_io`].
    pub fn plan_async_param(&self, cdb: &[u8], data_out: &[u8]) -> Option<IoPlan> {
        let op = *cdb.first()?;
        if !matches!(op, 0x42 | 0x41 | 0x93) {
            return None;
        }
        self.state().poll_events();
        if self.state().holds_commands() {
            return None;
        }
        let caps = self.state().caps();
        let cmd = lookup(cdb).ok()?;
        precheck(cmd, cdb, &caps, data_out.len()).ok()?;
        if caps.read_only {
            return None;
        }
        if op == 0x42 {
            return self.plan_unmap(cdb, &caps, data_out);
        }
        let (lba, blocks, bits) = if op == 0x41 {
            let c = Block10::parse(cdb).ok()?;
            (c.lba(), c.transfer_length(), WriteSameBits::ten(&c))
        } else {
            let c = Block16::parse(cdb).ok()?;
            (c.lba(), c.transfer_length(), WriteSameBits::sixteen(&c))
        };
        if bits.wrprotect != 0 || bits.anchor {
            return None;
        }
        let WriteSameBits { unmap, ndob, .. } = bits;
        if (unmap && !caps.thin)
            || blocks == 0
            || u64::from(blocks) > limits(self.state(), &caps).max_write_same
        {
            return None;
        }
        let ext = Extent::new(lba, u64::from(blocks), caps.num_blocks, 1).ok()?;
        let bs = usize::try_from(caps.block_size).ok()?;
        let zero = if ndob {
            true
        } else if data_out.len() == bs {
            data_out.iter().all(|&b| b == 0)
        } else {
            return None;
        };
        Some(IoPlan::WriteSame {
            lba: ext.lba,
            blocks: ext.blocks,
            zero,
            deallocate: zero && unmap && caps.zeroes_after_unmap,
            fua: self.state().effective_fua(&caps, false),
        })
    }

    /// unmap.rs's checks, for an UNMAP of at most one descriptor.
    fn plan_unmap(&self, cdb: &[u8], caps: &BackendCaps, data_out: &[u8]) -> Option<IoPlan> {
        const HEADER: usize = 8;
        const DESCRIPTOR: usize = 16;
        let c = Unmap::parse(cdb).ok()?;
        let list_len = usize::from(c.parameter_list_length());
        if c.anchor() || list_len < HEADER {
            return None;
        }
        let list = data_out.get(..list_len)?;
        let bd_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
        let usable = bd_len.min(list_len - HEADER) / DESCRIPTOR;
        if usable == 0 {
            return Some(IoPlan::Unmap { lba: 0, blocks: 0 });
        }
        if usable > 1 || caps.max_unmap_descriptors == 0 {
            return None;
        }
        let d = list.get(HEADER..HEADER + DESCRIPTOR)?;
        let lba = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let blocks = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        if blocks > limits(self.state(), caps).max_unmap {
            return None;
        }
        let ext = Extent::new(lba, u64::from(blocks), caps.num_blocks, 1).ok()?;
        Some(IoPlan::Unmap {
            lba: ext.lba,
            blocks: ext.blocks,
        })
    }

    /// caw.rs's checks, for a COMPARE AND WRITE the backend may run.
    fn plan_compare_and_write(
        &self,
        cdb: &[u8],
        caps: &BackendCaps,
        data_out_len: usize,
    ) -> Option<IoPlan> {
        let c = CompareAndWrite::parse(cdb).ok()?;
        let blocks = c.number_of_logical_blocks();
        if c.wrprotect() != 0 || blocks == 0 || caps.read_only {
            return None;
        }
        if blocks > limits(self.state(), caps).max_compare_write {
            return None;
        }
        let ext = Extent::new(c.lba(), u64::from(blocks), caps.num_blocks, caps.block_size).ok()?;
        if ext.bytes.checked_mul(2) != Some(data_out_len) {
            return None;
        }
        Some(IoPlan::CompareAndWrite {
            lba: ext.lba,
            bytes: ext.bytes,
            fua: self.state().effective_fua(caps, c.fua()),
        })
    }

    /// The response of a COMPARE AND WRITE whose blocks differ, first at
    /// byte `offset`: MISCOMPARE with it in INFORMATION.
    pub fn planned_miscompare(&self, offset: u64) -> ScsiResponse {
        ScsiResponse::check_condition(ScsiError::Miscompare { offset }.to_sense())
    }

    /// The response of a planned command: GOOD (with `plan`'s data-in
    /// length for a READ) or the sense of the backend's error.
    pub fn planned_response(
        &self,
        cdb: &[u8],
        plan: &IoPlan,
        r: Result<(), BackendError>,
    ) -> ScsiResponse {
        match r {
            Ok(()) => ScsiResponse::good(match plan {
                IoPlan::Read { bytes, .. } => *bytes,
                _ => 0,
            }),
            Err(e) => {
                let e = ScsiError::Backend(e);
                tracing::debug!(opcode = ?cdb.first(), error = %e, "check condition");
                ScsiResponse::check_condition(e.to_sense())
            }
        }
    }
}
