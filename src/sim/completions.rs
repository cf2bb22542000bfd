//! Completion processing, as `tcmu_handle_completions` /
//! `tcmu_handle_completion` do it.

use super::kernel::{KernelSim, SimCmd};
use super::{SimCompletion, SimDir, SimError};
use crate::ring::layout::*;
use crate::ring::STATUS_CHECK_CONDITION;

/// What one command slot turned into.
enum Outcome {
    Done(SimCompletion),
    Expired,
    Broken,
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
        if self.broken.is_some() {
            return Ok(out);
        }
        let size = self.cfg.cmdr_size;
        let tail = self.map.load_u32_acquire(MB_CMD_TAIL)?;
        if tail >= size || tail % 8 != 0 {
            self.mark_broken(format!("cmd_tail {tail} outside the ring"));
            return Ok(out);
        }
        let dist = |from: u32, to: u32| {
            ((u64::from(to) + u64::from(size) - u64::from(from)) % u64::from(size)) as u32
        };
        if dist(self.last_cleaned, tail) > dist(self.last_cleaned, self.head) {
            self.mark_broken(format!("cmd_tail {tail} beyond cmd_head {}", self.head));
            return Ok(out);
        }
        // Each step moves last_cleaned forward by >= 8 without passing the
        // tail (checked below), so this terminates.
        while self.last_cleaned != tail {
            let at = MAILBOX_SIZE + self.last_cleaned as usize;
            let (len, op) = split_len_op(self.map.read_u32(at + HDR_LEN_OP)?);
            if len == 0 || len > dist(self.last_cleaned, tail) {
                self.mark_broken(format!(
                    "entry at {} has length {len} (tail {tail})",
                    self.last_cleaned
                ));
                return Ok(out);
            }
            if op != OP_PAD && op != OP_TMR {
                match self.complete_one(at)? {
                    Outcome::Done(c) => out.push(c),
                    Outcome::Expired => {}
                    Outcome::Broken => return Ok(out),
                }
            }
            self.last_cleaned = (self.last_cleaned + len) % size;
        }
        Ok(out)
    }

    /// One command slot: look up its id, gather data, free the command.
    fn complete_one(&mut self, at: usize) -> Result<Outcome, SimError> {
        let id = self.map.read_u16(at + HDR_CMD_ID)?;
        let Some(cmd) = self.cmds.remove(&id) else {
            self.mark_broken(format!("cmd_id {id} not found, ring is broken"));
            return Ok(Outcome::Broken);
        };
        let slot = (at - MAILBOX_SIZE) as u32;
        if self.cfg.flags & CAP_OOOC == 0 && slot != cmd.slot {
            self.blocks.free(&cmd.blocks);
            self.mark_broken(format!(
                "cmd_id {id} answered in slot {slot}, queued in slot {}, without CAP_OOOC",
                cmd.slot
            ));
            return Ok(Outcome::Broken);
        }
        if cmd.expired {
            // Already failed to the initiator by the timer: only reclaim.
            self.blocks.free(&cmd.blocks);
            return Ok(Outcome::Expired);
        }
        let uflags = self.map.read_u8(at + HDR_UFLAGS)?;
        let status = self.map.read_u8(at + RSP_SCSI_STATUS)?;
        let read_len = self.map.read_u32(at + RSP_READ_LEN)?;
        let c = self.gather(at, id, &cmd, uflags, status, read_len)?;
        self.blocks.free(&cmd.blocks);
        Ok(Outcome::Done(c))
    }

    /// Times a command out like the kernel's command timer
    /// (`tcmu_check_expired_ring_cmd`): the initiator sees CHECK CONDITION
    /// now, the command stays in the ring, and userspace's later completion
    /// only reclaims it (no second [`SimCompletion`]). Returns what the
    /// initiator saw, or `None` if `cmd_id` is not outstanding or already
    /// expired.
    pub fn time_out(&mut self, cmd_id: u16) -> Option<SimCompletion> {
        let cmd = self.cmds.get_mut(&cmd_id).filter(|c| !c.expired)?;
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

    fn gather(
        &self,
        at: usize,
        cmd_id: u16,
        cmd: &SimCmd,
        uflags: u8,
        status: u8,
        read_len: u32,
    ) -> Result<SimCompletion, SimError> {
        let mut c = SimCompletion {
            cmd_id,
            status,
            sense: Vec::new(),
            data_in: Vec::new(),
            read_len: None,
            unknown_op: false,
        };
        if uflags & UFLAG_UNKNOWN_OP != 0 {
            c.status = STATUS_CHECK_CONDITION;
            c.unknown_op = true;
            return Ok(c);
        }
        let (blocks, full_len) = match &cmd.dir {
            SimDir::In(n) => (&cmd.blocks[..], *n),
            // The kernel gathers a bidi command's data-in with read_len =
            // se_cmd->data_length, the data-OUT length.
            SimDir::Bidi { out, in_len } => {
                (&cmd.blocks[cmd.main_blocks..], (*in_len).min(out.len()))
            }
            SimDir::None | SimDir::Out(_) => (&cmd.blocks[..0], 0),
        };
        let mut len = full_len;
        let honour_read_len = self.cfg.flags & CAP_READ_LEN != 0;
        if matches!(cmd.dir, SimDir::In(_))
            && honour_read_len
            && uflags & UFLAG_READ_LEN != 0
            && read_len != 0
        {
            len = len.min(read_len as usize);
            c.read_len = Some(len as u32);
        }
        if status == STATUS_CHECK_CONDITION {
            let mut sense = vec![0u8; SENSE_BUFFER_SIZE];
            self.map.read_into(at + RSP_SENSE, &mut sense)?;
            c.sense = sense;
            if c.read_len.is_none() {
                return Ok(c);
            }
        }
        let bs = self.blocks.size();
        let mut data = vec![0u8; len];
        for (b, chunk) in blocks.iter().zip(data.chunks_mut(bs)) {
            self.map.read_into(self.data_off + b * bs, chunk)?;
        }
        c.data_in = data;
        Ok(c)
    }
}
