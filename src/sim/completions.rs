//! Completion processing, as `tcmu_handle_completions` /
//! `tcmu_handle_completion` do it.

use super::blocks::runs;
use super::entry::ring_u32;
use super::kernel::{KernelSim, SimCmd, Xfer};
use super::{SimCompletion, SimCompletionRef, SimError};
use crate::ring::layout::*;
use crate::ring::STATUS_CHECK_CONDITION;

// The header and response words read below rely on these offsets.
const _: () = assert!(
    HDR_LEN_OP == 0
        && HDR_CMD_ID == 4
        && HDR_UFLAGS == 7
        && RSP_SCSI_STATUS == 8
        && RSP_READ_LEN == RSP_SCSI_STATUS + 4
);

/// What one command slot turned into.
enum Outcome {
    Done,
    Expired,
    Broken,
}

/// The response fields of one completion, before the callback sees them.
struct Rsp {
    cmd_id: u16,
    status: u8,
    /// The sense buffer was read (CHECK CONDITION).
    sense: bool,
    data_len: usize,
    read_len: Option<u32>,
    unknown_op: bool,
}

impl KernelSim {
    fn mark_broken(&mut self, why: String) {
        tracing::warn!(%why, "simulated ring BROKEN");
        self.broken = Some(why);
    }

    /// Walks from the last cleaned offset to `cmd_tail` (loaded with
    /// Acquire) and completes what userspace answered. Stops, leaving the
    /// ring BROKEN, on an unknown or repeated `cmd_id` (or on a tail or
    /// entry the kernel could not walk). Once BROKEN, returns nothing more.
    pub fn process_completions(&mut self) -> Result<Vec<SimCompletion>, SimError> {
        let mut out = Vec::new();
        self.process_completions_with(|c| out.push(c.to_completion()))?;
        Ok(out)
    }

    /// [`KernelSim::process_completions`] without allocating: each
    /// completion goes to `f`, its data-in gathered (one copy, as the
    /// kernel copies into the initiator's scatter list) into a buffer the
    /// simulator reuses. Returns how many completions were reported.
    pub fn process_completions_with<F>(&mut self, mut f: F) -> Result<usize, SimError>
    where
        F: FnMut(&SimCompletionRef<'_>),
    {
        let mut n = 0usize;
        if self.broken.is_some() {
            return Ok(n);
        }
        let size = self.cfg.cmdr_size;
        let tail = self.map.load_u32_acquire(MB_CMD_TAIL)?;
        if tail >= size || tail % 8 != 0 {
            self.mark_broken(format!("cmd_tail {tail} outside the ring"));
            return Ok(n);
        }
        // Ring offsets below `size` (at most MAX_CMDR_SIZE, 64 MiB): the sum
        // stays below 2 * size, well inside a u32.
        let dist = |from: u32, to: u32| (to + (size - from)) % size;
        if dist(self.last_cleaned, tail) > dist(self.last_cleaned, self.head) {
            self.mark_broken(format!("cmd_tail {tail} beyond cmd_head {}", self.head));
            return Ok(n);
        }
        // Each step moves last_cleaned forward by >= 8 without passing the
        // tail (checked below: `left` is the distance to it), so this
        // terminates.
        let mut left = dist(self.last_cleaned, tail);
        while left > 0 {
            let at = MAILBOX_SIZE + self.last_cleaned as usize;
            // The header in one load: len_op, cmd_id, kflags, uflags.
            let [hdr] = self.map.read_words::<1>(at + HDR_LEN_OP)?;
            let h = hdr.to_ne_bytes();
            let (len, op) = split_len_op(u32::from_ne_bytes([h[0], h[1], h[2], h[3]]));
            if len == 0 || len > left {
                self.mark_broken(format!(
                    "entry at {} has length {len} (tail {tail})",
                    self.last_cleaned
                ));
                return Ok(n);
            }
            if op != OP_PAD && op != OP_TMR {
                let id = u16::from_ne_bytes([h[4], h[5]]);
                match self.complete_one(at, id, h[7], &mut f)? {
                    Outcome::Done => n += 1,
                    Outcome::Expired => {}
                    Outcome::Broken => return Ok(n),
                }
            }
            self.last_cleaned = (self.last_cleaned + len) % size;
            left -= len;
        }
        Ok(n)
    }

    /// One command slot: look up its id, gather data, report, free the
    /// command.
    fn complete_one<F>(
        &mut self,
        at: usize,
        id: u16,
        uflags: u8,
        f: &mut F,
    ) -> Result<Outcome, SimError>
    where
        F: FnMut(&SimCompletionRef<'_>),
    {
        let Some(cmd) = self.take_cmd(id) else {
            self.mark_broken(format!("cmd_id {id} not found, ring is broken"));
            return Ok(Outcome::Broken);
        };
        let slot = ring_u32(at - MAILBOX_SIZE);
        if self.cfg.flags & CAP_OOOC == 0 && slot != cmd.slot {
            let queued = cmd.slot;
            self.release(cmd.blocks);
            self.mark_broken(format!(
                "cmd_id {id} answered in slot {slot}, queued in slot {queued}, without CAP_OOOC"
            ));
            return Ok(Outcome::Broken);
        }
        if cmd.expired {
            // Already failed to the initiator by the timer: only reclaim.
            self.release(cmd.blocks);
            return Ok(Outcome::Expired);
        }
        // scsi_status, padding, read_len in one load.
        let [rsp] = self.map.read_words::<1>(at + RSP_SCSI_STATUS)?;
        let r = rsp.to_ne_bytes();
        let (status, read_len) = (r[0], u32::from_ne_bytes([r[4], r[5], r[6], r[7]]));
        let mut data = std::mem::take(&mut self.data_buf);
        let mut sense = [0u8; SENSE_BUFFER_SIZE];
        let r = self.gather(
            at,
            id,
            &cmd,
            (uflags, status, read_len),
            &mut sense,
            &mut data,
        );
        self.release(cmd.blocks);
        let r = r.map(|rsp| {
            f(&SimCompletionRef {
                cmd_id: rsp.cmd_id,
                status: rsp.status,
                sense: if rsp.sense { &sense[..] } else { &[] },
                data_in: data.get(..rsp.data_len).unwrap_or(&[]),
                read_len: rsp.read_len,
                unknown_op: rsp.unknown_op,
            })
        });
        self.data_buf = data;
        r?;
        Ok(Outcome::Done)
    }

    /// Times a command out like the kernel's command timer
    /// (`tcmu_check_expired_ring_cmd`): the initiator sees CHECK CONDITION
    /// now, the command stays in the ring, and userspace's later completion
    /// only reclaims it (no second [`SimCompletion`]). Returns what the
    /// initiator saw, or `None` if `cmd_id` is not outstanding or already
    /// expired.
    pub fn time_out(&mut self, cmd_id: u16) -> Option<SimCompletion> {
        let cmd = self.cmd_mut(cmd_id).filter(|c| !c.expired)?;
        cmd.expired = true;
        Some(SimCompletion {
            cmd_id,
            status: STATUS_CHECK_CONDITION,
            sense: Vec::new(),
            data_in: Vec::new(),
            read_len: None,
            unknown_op: false,
        })
    }

    /// Reads the response (`uflags`, `scsi_status`, `read_len` read
    /// already), the sense buffer into `sense` for CHECK CONDITION, and
    /// copies the data-in into `data` (grown as needed, never shrunk).
    fn gather(
        &self,
        at: usize,
        cmd_id: u16,
        cmd: &SimCmd,
        (uflags, status, read_len): (u8, u8, u32),
        sense: &mut [u8; SENSE_BUFFER_SIZE],
        data: &mut Vec<u8>,
    ) -> Result<Rsp, SimError> {
        let mut c = Rsp {
            cmd_id,
            status,
            sense: false,
            data_len: 0,
            read_len: None,
            unknown_op: false,
        };
        if uflags & UFLAG_UNKNOWN_OP != 0 {
            c.status = STATUS_CHECK_CONDITION;
            c.unknown_op = true;
            return Ok(c);
        }
        let blocks = cmd.blocks.as_slice();
        let (blocks, full_len) = match cmd.xfer {
            Xfer::In(n) => (blocks, n),
            // The kernel gathers a bidi command's data-in with read_len =
            // se_cmd->data_length, the data-OUT length.
            Xfer::Bidi { out_len, in_len } => (
                blocks.get(cmd.main_blocks..).unwrap_or(&[]),
                in_len.min(out_len),
            ),
            Xfer::None | Xfer::Out => (&blocks[..0], 0),
        };
        let mut len = full_len;
        let honour_read_len = self.cfg.flags & CAP_READ_LEN != 0;
        if matches!(cmd.xfer, Xfer::In(_))
            && honour_read_len
            && uflags & UFLAG_READ_LEN != 0
            && read_len != 0
        {
            // the smaller of the two, exactly (a len past u32 is larger)
            let shown = u32::try_from(len).map_or(read_len, |l| l.min(read_len));
            len = shown as usize;
            c.read_len = Some(shown);
        }
        if status == STATUS_CHECK_CONDITION {
            self.map.read_into(at + RSP_SENSE, sense)?;
            c.sense = true;
            if c.read_len.is_none() {
                return Ok(c);
            }
        }
        if data.len() < len {
            data.resize(len, 0);
        }
        let mut dst = data.get_mut(..len).unwrap_or(&mut []);
        let bs = self.blocks.size();
        for (off, n) in runs(self.data_off, bs, blocks, len) {
            let (now, rest) = dst.split_at_mut(n.min(dst.len()));
            self.map.copy_out(off, now)?;
            dst = rest;
        }
        c.data_len = len;
        Ok(c)
    }
}
