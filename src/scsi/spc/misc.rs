//! TEST UNIT READY, REQUEST SENSE, START STOP UNIT, REPORT LUNS.

use crate::scsi::cdb::Spc6;
use crate::scsi::error::ScsiError;
use crate::scsi::sense::{Asc, Sense, SenseKey};
use crate::scsi::table::{Ctx, Reply};

/// TEST UNIT READY: the unit is always ready.
pub(crate) fn test_unit_ready(_: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    Ok(Reply::None)
}

/// REQUEST SENSE: reports (and clears) the oldest pending unit attention,
/// or NO SENSE. DESC selects descriptor-format sense.
pub(crate) fn request_sense(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Spc6::parse(ctx.cdb)?;
    let sense = ctx
        .lun
        .take_unit_attention()
        .unwrap_or(Sense::new(SenseKey::NoSense, Asc::NO_ADDITIONAL));
    let data = if cdb.byte1() & 0x01 != 0 {
        sense.to_descriptor()
    } else {
        sense.to_fixed().to_vec()
    };
    Ok(Reply::Data(data))
}

/// START STOP UNIT: a virtual disk has no motor; power conditions and
/// START succeed. The medium is not removable, so LOEJ (with POWER
/// CONDITION 0, where it is processed) is an invalid field.
pub(crate) fn start_stop_unit(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Spc6::parse(ctx.cdb)?;
    let power_condition = cdb.byte4() >> 4;
    if power_condition == 0 && cdb.byte4() & 0x02 != 0 {
        return Err(ScsiError::cdb(4, 1));
    }
    Ok(Reply::None)
}

/// REPORT LUNS (normally answered by the kernel): one LUN, 0.
pub(crate) fn report_luns(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let select_report = ctx.cdb.get(2).copied().unwrap_or(0);
    if select_report > 2 {
        return Err(ScsiError::cdb(2, 7));
    }
    let alloc = ctx
        .cdb
        .get(6..10)
        .map_or(0, |b| b.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)));
    if alloc < 16 {
        return Err(ScsiError::cdb(6, 7));
    }
    let mut v = vec![0u8; 16];
    v[3] = 8; // LUN LIST LENGTH: one 8-byte entry (LUN 0)
    Ok(Reply::Data(v))
}

/// SEND DIAGNOSTIC: the default self-test and the short/extended self-tests
/// pass at once; diagnostic parameter pages are not supported.
pub(crate) fn send_diagnostic(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = Spc6::parse(ctx.cdb)?;
    let self_test_code = cdb.byte1() >> 5;
    let selftest = cdb.byte1() & 0x04 != 0;
    if (selftest && self_test_code != 0) || matches!(self_test_code, 3 | 7) {
        return Err(ScsiError::cdb(1, 7));
    }
    if cdb.byte3() != 0 || cdb.byte4() != 0 {
        return Err(ScsiError::cdb(3, 7)); // PARAMETER LIST LENGTH
    }
    Ok(Reply::None)
}
