//! Results the device produces itself (not the SCSI emulation): a failed
//! device, an aborted command, an unreadable data buffer; and turning a
//! result into a ring completion.

use tcmud_core::ring::{CmdRequest, Completion, DataIn};
use tcmud_core::scsi::{status, Asc, Sense, SenseKey};

use super::direction::{direction, Dir};
use super::inflight::Outcome;

/// SCSI status GOOD.
pub const GOOD: u8 = status::GOOD;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = status::CHECK_CONDITION;

/// CHECK CONDITION with `key` and `asc`.
fn check_condition(key: SenseKey, asc: Asc) -> Outcome {
    Outcome {
        status: CHECK_CONDITION,
        sense: Some(Sense::new(key, asc)),
        data_in_len: 0,
    }
}

/// CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00): what
/// the commands of a failed device get.
pub fn internal_target_failure() -> Outcome {
    check_condition(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE)
}

/// CHECK CONDITION, ILLEGAL REQUEST / INVALID FIELD IN CDB (24/00): a
/// command whose CDB could not be taken from the ring.
pub fn invalid_field_in_cdb() -> Outcome {
    check_condition(SenseKey::IllegalRequest, Asc::INVALID_FIELD_IN_CDB)
}

/// CHECK CONDITION, ABORTED COMMAND: a command cancelled by a task
/// management function before it started.
pub fn aborted() -> Outcome {
    check_condition(SenseKey::AbortedCommand, Asc::NO_ADDITIONAL)
}

/// CHECK CONDITION, ABORTED COMMAND / COMMAND TIMEOUT BEFORE PROCESSING
/// (2E/01): a command not executed because the kernel's `cmd_time_out` may
/// have failed it back already (the kernel ignores the status of an expired
/// command; one that had not expired yet reaches the initiator, which
/// retries).
pub fn timed_out() -> Outcome {
    check_condition(
        SenseKey::AbortedCommand,
        Asc::COMMAND_TIMEOUT_BEFORE_PROCESSING,
    )
}

/// The ring completion for `out` (status and sense; the ring derives
/// `read_len` from the [`DataIn`] passed beside it).
pub fn completion(cmd_id: u16, out: &Outcome) -> Completion {
    let sense = out.sense.map(|s| s.to_fixed());
    match (out.status, &sense) {
        (GOOD, _) => Completion::good(cmd_id),
        (CHECK_CONDITION, Some(sense)) => Completion::check_condition(cmd_id, sense),
        (s, sense) => Completion::status(cmd_id, s, sense.as_ref().map(|b| &b[..])),
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

    /// The fixed-format bytes the device wrote when it built its own
    /// sense (before it took the core's [`Sense`]): key/ASC/ASCQ at bytes
    /// 2, 12 and 13, additional length 10.
    fn fixed(key: u8, asc: u8, ascq: u8) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = key;
        s[7] = 10;
        s[12] = asc;
        s[13] = ascq;
        s
    }

    #[test]
    fn sense_is_the_fixed_format_it_always_was() {
        let cases = [
            (internal_target_failure(), fixed(0x04, 0x44, 0x00)),
            (invalid_field_in_cdb(), fixed(0x05, 0x24, 0x00)),
            (aborted(), fixed(0x0b, 0x00, 0x00)),
            (timed_out(), fixed(0x0b, 0x2e, 0x01)),
        ];
        for (o, bytes) in cases {
            assert_eq!(o.status, 2);
            assert_eq!(o.sense.map(|s| s.to_fixed()), Some(bytes));
        }
    }
}
