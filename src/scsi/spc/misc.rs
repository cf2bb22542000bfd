//! TEST UNIT READY, REQUEST SENSE, START STOP UNIT, REPORT LUNS.

use crate::scsi::cdb::{ReportLuns, RequestSense, SendDiagnostic, StartStopUnit};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::sense::{Asc, Sense, SenseKey};
use crate::scsi::state::SanitizeState;

/// TEST UNIT READY: the unit is always ready.
pub(crate) fn test_unit_ready(_: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    Ok(Reply::None)
}

/// REQUEST SENSE: reports (and clears) the oldest pending unit attention,
/// or NO SENSE; while a SANITIZE runs or the port is standby or
/// unavailable, why the unit is not ready. DESC selects descriptor-format
/// sense.
pub(crate) fn request_sense(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = RequestSense::parse(ctx.cdb)?;
    let sense = match ctx.state.sanitize_state() {
        SanitizeState::Running => Sense::new(SenseKey::NotReady, Asc::SANITIZE_IN_PROGRESS),
        _ => match ctx.state.port_refusal(None) {
            Some(refused) => refused.to_sense(),
            None => ctx
                .state
                .take_unit_attention()
                .unwrap_or(Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL)),
        },
    };
    let data = if cdb.desc() {
        sense.to_descriptor()
    } else {
        sense.to_fixed().to_vec()
    };
    Ok(Reply::Data(data))
}

/// START STOP UNIT, as the kernel's own backstores answer it
/// (`sbc_emulate_startstop`): a virtual disk is always started, so only
/// IMMED=1, no POWER CONDITION MODIFIER, POWER CONDITION 0, START=1 and
/// neither LOEJ nor NO_FLUSH succeed; anything else is INVALID FIELD IN
/// CDB at the offending field.
pub(crate) fn start_stop_unit(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = StartStopUnit::parse(ctx.cdb)?;
    if !cdb.immed() {
        return Err(ScsiError::cdb(1, 0));
    }
    if cdb.reserved2() != 0 {
        return Err(ScsiError::cdb(2, 7));
    }
    if cdb.power_condition_modifier() != 0 {
        return Err(ScsiError::cdb(3, 3));
    }
    if cdb.power_condition() != 0 {
        return Err(ScsiError::cdb(4, 7));
    }
    if cdb.no_flush() {
        return Err(ScsiError::cdb(4, 2));
    }
    if cdb.loej() {
        return Err(ScsiError::cdb(4, 1)); // nothing to load or eject
    }
    if !cdb.start() {
        return Err(ScsiError::cdb(4, 0)); // START=0: the unit cannot stop
    }
    Ok(Reply::None)
}

/// PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE(6/10): LIO answers them for a
/// TCMU device before they reach userspace; they are in the table so that
/// REPORT SUPPORTED OPERATION CODES lists what the initiator can use. One
/// that reaches us anyway (a kernel configured to pass them through) is
/// refused as not supported here.
pub(crate) fn answered_by_kernel(_: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    Err(ScsiError::InvalidOpcode)
}

/// REPORT LUNS (normally answered by the kernel): one LUN, 0.
pub(crate) fn report_luns(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = ReportLuns::parse(ctx.cdb)?;
    if cdb.select_report() > 2 {
        return Err(ScsiError::cdb(2, 7));
    }
    if cdb.allocation_length() < 16 {
        return Err(ScsiError::cdb(6, 7));
    }
    let mut v = vec![0u8; 16];
    v[3] = 8; // LUN LIST LENGTH: one 8-byte entry (LUN 0)
    Ok(Reply::Data(v))
}

/// SEND DIAGNOSTIC: the default self-test and the short/extended self-tests
/// pass at once; diagnostic parameter pages are not supported.
pub(crate) fn send_diagnostic(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = SendDiagnostic::parse(ctx.cdb)?;
    let self_test_code = cdb.self_test_code();
    let selftest = cdb.selftest();
    if (selftest && self_test_code != 0) || matches!(self_test_code, 3 | 7) {
        return Err(ScsiError::cdb(1, 7));
    }
    if cdb.parameter_list_length() != 0 {
        return Err(ScsiError::cdb(3, 7)); // PARAMETER LIST LENGTH
    }
    Ok(Reply::None)
}
