//! Completing commands: writing responses and moving `cmd_tail`.

use super::device::Ring;
use super::error::RingError;
use super::layout::*;

/// SCSI status GOOD.
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const STATUS_CHECK_CONDITION: u8 = 0x02;

/// The response to one command. Consumed exactly once by
/// [`Ring::complete`]; dropping one unsent leaves the initiator waiting.
#[must_use = "pass every Completion to Ring::complete, or the initiator hangs"]
#[derive(Debug)]
pub struct Completion {
    cmd_id: u16,
    status: u8,
    /// At most 96 bytes; boxed so that the usual GOOD completion stays
    /// small (it is moved through queues on every command).
    sense: Option<Box<[u8]>>,
    read_len: Option<u32>,
    unknown_op: bool,
}

impl Completion {
    /// Status GOOD.
    #[inline]
    pub fn good(cmd_id: u16) -> Completion {
        Completion::status(cmd_id, STATUS_GOOD, None)
    }

    /// CHECK CONDITION with `sense` (truncated to 96 bytes).
    #[inline]
    pub fn check_condition(cmd_id: u16, sense: &[u8]) -> Completion {
        Completion::status(cmd_id, STATUS_CHECK_CONDITION, Some(sense))
    }

    /// Any SCSI status, with optional sense data (truncated to 96 bytes).
    #[inline]
    pub fn status(cmd_id: u16, scsi_status: u8, sense: Option<&[u8]>) -> Completion {
        Completion {
            cmd_id,
            status: scsi_status,
            sense: sense.map(|s| s.get(..SENSE_BUFFER_SIZE).unwrap_or(s).into()),
            read_len: None,
            unknown_op: false,
        }
    }

    /// The command is not supported: sets `UNKNOWN_OP`, and the kernel
    /// answers CHECK CONDITION itself.
    #[inline]
    pub fn unknown_op(cmd_id: u16) -> Completion {
        let mut c = Completion::status(cmd_id, STATUS_CHECK_CONDITION, None);
        c.unknown_op = true;
        c
    }

    /// Reports a short data-in transfer of `read_len` bytes (sent as
    /// `READ_LEN` only when the kernel offers `CAP_READ_LEN`; the kernel
    /// ignores 0).
    #[inline]
    pub fn with_read_len(mut self, read_len: u32) -> Completion {
        self.read_len = Some(read_len);
        self
    }

    /// The command this completes.
    #[inline]
    pub fn cmd_id(&self) -> u16 {
        self.cmd_id
    }

    /// The SCSI status.
    #[inline]
    pub fn scsi_status(&self) -> u8 {
        self.status
    }

    /// The sense bytes given (at most 96).
    #[inline]
    pub fn sense(&self) -> &[u8] {
        self.sense.as_deref().unwrap_or(&[])
    }
}

impl Ring {
    /// Writes the response of an in-flight command into the right slot and
    /// moves `cmd_tail` (Release) over every finished slot at the front.
    ///
    /// With `CAP_OOOC` the response goes into the oldest unanswered command
    /// slot, whose `cmd_id` is overwritten with the finished command's id;
    /// the tail then moves past it at once. Without it the response goes
    /// into the command's own slot and the tail waits for older commands
    /// (completions in any order are queued that way).
    ///
    /// A `cmd_id` not in flight is refused with `NotInFlight` and nothing is
    /// written (the kernel would mark the ring BROKEN). Call [`Ring::kick`]
    /// once after a batch.
    pub fn complete(&mut self, c: Completion) -> Result<(), RingError> {
        let ooo = self.caps().ooo;
        let (off, len) = self.track.take_slot(c.cmd_id, ooo)?;
        if (len as usize) < CMD_ENTRY_MIN {
            return Err(RingError::Internal("response slot too short"));
        }
        let base = self.geometry().abs(off);
        let m = self.map();
        let mut uflags = 0u8;
        if c.unknown_op {
            uflags |= UFLAG_UNKNOWN_OP;
        }
        let read_len = match c.read_len {
            Some(n) if self.caps().read_len => {
                uflags |= UFLAG_READ_LEN;
                n
            }
            _ => 0,
        };
        m.write_u16(base + HDR_CMD_ID, c.cmd_id)?;
        m.write_u8(base + HDR_UFLAGS, uflags)?;
        m.write_u8(base + RSP_SCSI_STATUS, c.status)?;
        m.write_u32(base + RSP_READ_LEN, read_len)?;
        // The kernel reads the sense buffer only for CHECK CONDITION
        // (`tcmu_handle_completion`): skip the 96 bytes otherwise.
        if c.status == STATUS_CHECK_CONDITION {
            // The whole buffer: the given bytes, zeros after them.
            let mut sense = [0u8; SENSE_BUFFER_SIZE];
            let given = c.sense();
            if let Some(dst) = sense.get_mut(..given.len()) {
                dst.copy_from_slice(given);
            }
            m.write_from(base + RSP_SENSE, &sense)?;
        }
        self.retire();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sense_is_kept_up_to_96_bytes() {
        let long: Vec<u8> = (0..200u8).collect();
        let c = Completion::check_condition(3, &long);
        assert_eq!((c.cmd_id(), c.scsi_status()), (3, STATUS_CHECK_CONDITION));
        assert_eq!(c.sense(), &long[..SENSE_BUFFER_SIZE]);
        assert_eq!(
            Completion::check_condition(3, &long[..5]).sense(),
            &long[..5]
        );
        assert!(Completion::good(3).sense().is_empty());
        assert!(Completion::unknown_op(3).sense().is_empty());
    }
}
