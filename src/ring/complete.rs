//! Completing commands: writing responses and moving `cmd_tail`.

use super::data::DataSpans;
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

/// What a command left in the buffers the kernel may copy to the
/// initiator, for [`Ring::complete`] (which zeroes what the command did not
/// write before the kernel can copy it; see there).
#[derive(Clone, Copy, Debug)]
pub struct DataIn<'a> {
    spans: Option<&'a DataSpans>,
    written: usize,
    data_out: bool,
}

impl<'a> DataIn<'a> {
    /// No buffer at all.
    pub const NONE: DataIn<'static> = DataIn {
        spans: None,
        written: 0,
        data_out: false,
    };

    /// Data-in buffers `spans` (a command's iovs, or its bidi iovs), of
    /// which the command wrote the first `written` bytes (0 when it wrote
    /// nothing: no data, an error).
    #[inline]
    pub fn new(spans: &'a DataSpans, written: usize) -> DataIn<'a> {
        DataIn {
            spans: Some(spans),
            written,
            data_out: false,
        }
    }

    /// The buffers of a command whose CDB sends data-out (WRITE, VERIFY,
    /// UNMAP, MODE SELECT, ...). Nothing in the ring says which way the
    /// initiator's buffer goes: sent with a data-in buffer, the same CDB
    /// finds those pages as earlier commands left them (and a WRITE stores
    /// them: the kernel passes such a command on, and the ring cannot tell
    /// it from a true one).
    #[inline]
    pub fn data_out(spans: &'a DataSpans) -> DataIn<'a> {
        DataIn {
            spans: Some(spans),
            written: 0,
            data_out: true,
        }
    }

    /// Size of the buffers.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.spans.map_or(0, DataSpans::len)
    }

    /// Data-in bytes written, at most the capacity.
    #[inline]
    pub fn written(&self) -> usize {
        self.written.min(self.capacity())
    }

    /// What to zero (`[from, to)`) and the length to show the kernel, with
    /// or without `CAP_READ_LEN`.
    fn plan(&self, read_len_cap: bool) -> (usize, usize, usize) {
        let cap = self.capacity();
        match (self.data_out, read_len_cap) {
            (false, _) => (self.written(), cap, self.written()),
            // A true data-out command: the kernel ignores READ_LEN (it reads
            // it for DMA_FROM_DEVICE only) and copies nothing. The same CDB
            // sent with a data-in buffer: the kernel copies READ_LEN = 1
            // byte, a zero. One byte, not a memset of every WRITE's payload.
            (true, true) => (0, cap.min(1), cap.min(1)),
            // Older kernels: no way to say less than the whole buffer.
            (true, false) => (0, cap, 0),
        }
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
    /// No byte of another command reaches the initiator. Unless `READ_LEN`
    /// says less, the kernel copies the initiator's whole data-in buffer
    /// out of the data area (it ignores a `read_len` of 0, and older
    /// kernels without `CAP_READ_LEN` ignore it altogether), and those
    /// pages hold whatever earlier commands left there. So every completion
    /// first zeroes `data_in` from `written` to its end (nothing for a READ
    /// that filled its buffer), then reports `READ_LEN` = `written` when
    /// that is shorter and not 0 (with `CAP_READ_LEN`, not for CHECK
    /// CONDITION or UNKNOWN_OP). For [`DataIn::data_out`] buffers it zeroes
    /// one byte and reports `READ_LEN` = 1 (the whole buffer without
    /// `CAP_READ_LEN`). The zeroing is done whatever the status, CHECK
    /// CONDITION and UNKNOWN_OP included, although the kernel copies no
    /// data for those today: one rule with no exception to get wrong, on
    /// error paths where a `memset` costs nothing that matters.
    ///
    /// A `cmd_id` not in flight, or `data_in` of another command or outside
    /// the data area, is refused and no response is written (the kernel
    /// would mark the ring BROKEN). So is every completion once the kernel
    /// has reset the ring ([`Ring::reset_by_kernel`], checked here for each
    /// command: a reset from outside lands at any moment, and completing an
    /// id it freed breaks the ring). Call [`Ring::kick`] once after a batch.
    pub fn complete(&mut self, c: Completion, data_in: DataIn<'_>) -> Result<(), RingError> {
        if self.reset_by_kernel() {
            return Err(RingError::ResetByKernel(c.cmd_id));
        }
        let (from, to, shown) = data_in.plan(self.caps().read_len);
        if let Some(spans) = data_in.spans {
            self.zero_data(c.cmd_id, spans, from, to)?;
        }
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
        let short = shown < data_in.capacity() && shown > 0;
        let read_len =
            if short && self.caps().read_len && !c.unknown_op && c.status != STATUS_CHECK_CONDITION
            {
                uflags |= UFLAG_READ_LEN;
                u32::try_from(shown).unwrap_or(u32::MAX)
            } else {
                0
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
