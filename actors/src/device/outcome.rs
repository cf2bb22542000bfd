//! Results the device produces itself (not the SCSI emulation): a failed
//! device, an aborted command, an unreadable data buffer; and turning a
//! result into a ring completion.

use tcmud_core::ring::{CmdRequest, Completion, DataIn};

use super::direction::{direction, Dir};
use super::inflight::Outcome;

/// SCSI status GOOD.
pub const GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;

/// Sense key HARDWARE ERROR.
const HARDWARE_ERROR: u8 = 0x04;
/// Sense key ABORTED COMMAND.
const ABORTED_COMMAND: u8 = 0x0b;

/// Fixed-format sense data (18 bytes) for `key`/`asc`/`ascq`.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70; // current error, fixed format
    s[2] = key & 0x0f;
    s[7] = 10; // additional sense length
    s[12] = asc;
    s[13] = ascq;
    s
}

/// CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00): what
/// the commands of a failed device get.
pub fn internal_target_failure() -> Outcome {
    Outcome {
        status: CHECK_CONDITION,
        sense: fixed_sense(HARDWARE_ERROR, 0x44, 0x00),
        data_in_len: 0,
    }
}

/// CHECK CONDITION, ILLEGAL REQUEST / INVALID FIELD IN CDB (24/00): a
/// command whose CDB could not be taken from the ring.
pub fn invalid_field_in_cdb() -> Outcome {
    Outcome {
        status: CHECK_CONDITION,
        sense: fixed_sense(0x05, 0x24, 0x00),
        data_in_len: 0,
    }
}

/// CHECK CONDITION, ABORTED COMMAND: a command cancelled by a task
/// management function before it started.
pub fn aborted() -> Outcome {
    Outcome {
        status: CHECK_CONDITION,
        sense: fixed_sense(ABORTED_COMMAND, 0x00, 0x00),
        data_in_len: 0,
    }
}

/// CHECK CONDITION, ABORTED COMMAND / COMMAND TIMEOUT BEFORE PROCESSING
/// (2E/01): a command not executed because the kernel's `cmd_time_out` may
/// have failed it back already (the kernel ignores the status of an expired
/// command; one that had not expired yet reaches the initiator, which
/// retries).
pub fn timed_out() -> Outcome {
    Outcome {
        status: CHECK_CONDITION,
        sense: fixed_sense(ABORTED_COMMAND, 0x2e, 0x01),
        data_in_len: 0,
    }
}

/// The ring completion for `out` (status and sense; the ring derives
/// `read_len` from the [`DataIn`] passed beside it).
pub fn completion(cmd_id: u16, out: &Outcome) -> Completion {
    match out.status {
        GOOD => Completion::good(cmd_id),
        CHECK_CONDITION if !out.sense.is_empty() => Completion::check_condition(cmd_id, &out.sense),
        s => Completion::status(cmd_id, s, (!out.sense.is_empty()).then_some(&out.sense[..])),
    }
}

/// The data-in side of a command's completion: which of its buffers the
/// kernel may copy to the initiator, and how much of them `out` wrote (the
/// ring zeroes the rest). A bidirectional command's data-in is its bidi
/// buffers. Any other command's buffers may be data-in whatever its CDB
/// says: a command with no data (TEST UNIT READY, READ of 0 blocks) or one
/// the emulation rejects can arrive with a data-in buffer, and so can a
/// data-out CDB (VERIFY, WRITE): nothing in the ring tells.
pub fn data_in<'a>(req: &'a CmdRequest, out: &Outcome) -> DataIn<'a> {
    if !req.bidi.is_empty() {
        DataIn::new(&req.bidi, out.data_in_len)
    } else if direction(req.cdb.as_bytes()) == Dir::Out {
        DataIn::data_out(&req.data)
    } else {
        DataIn::new(&req.data, out.data_in_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sense_layout_is_fixed_format() {
        let o = internal_target_failure();
        assert_eq!(o.status, 2);
        assert_eq!(&o.sense[..3], &[0x70, 0, 4]);
        assert_eq!((o.sense[7], o.sense[12], o.sense[13]), (10, 0x44, 0));
        assert_eq!(aborted().sense[2], 0x0b);
    }
}
