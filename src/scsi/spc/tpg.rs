//! REPORT TARGET PORT GROUPS (SPC-4 6.36) and SET TARGET PORT GROUPS
//! (SPC-4 6.40) for ALUA ([`crate::scsi::alua`]).

use crate::scsi::alua::{self, SetRequest};
use crate::scsi::cdb::{MaintenanceIn, MaintenanceOut};
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;

/// REPORT TARGET PORT GROUPS: every group of the unit with its state;
/// INVALID FIELD IN CDB (service action) on a LUN without ALUA.
pub(crate) fn report_target_port_groups(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = MaintenanceIn::parse(ctx.cdb)?;
    let Some(cfg) = &ctx.state.config().alua else {
        return Err(ScsiError::cdb(1, 4));
    };
    let extended = match cdb.parameter_data_format() {
        0 => false,
        1 => true,
        _ => return Err(ScsiError::cdb(1, 7)),
    };
    Ok(Reply::Data(alua::report(
        cfg,
        ctx.state.ownership(),
        ctx.state.alua_status(),
        extended,
    )))
}

/// SET TARGET PORT GROUPS: this port's group active/optimized takes the
/// unit's ownership here (the backend moves it: the RBD exclusive lock)
/// and answers once it is; states already in force are GOOD; states only
/// another daemon could bring about are HARDWARE ERROR, SET TARGET PORT
/// GROUPS COMMAND FAILED, as is an ownership the backend could not take.
/// INVALID FIELD IN CDB (service action) on a LUN without ALUA.
pub(crate) fn set_target_port_groups(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = MaintenanceOut::parse(ctx.cdb)?;
    let Some(cfg) = &ctx.state.config().alua else {
        return Err(ScsiError::cdb(1, 4));
    };
    let len = usize::try_from(cdb.parameter_list_length()).unwrap_or(usize::MAX);
    let list = ctx
        .data_out
        .get(..len)
        .ok_or(ScsiError::ParameterListLength)?;
    match alua::set_request(cfg, ctx.state.ownership(), list)? {
        SetRequest::Unchanged => Ok(Reply::None),
        SetRequest::NotHere => Err(ScsiError::SetTargetPortGroupsFailed),
        SetRequest::TakeOwnership => match ctx.state.backend().take_ownership() {
            Ok(true) => {
                ctx.state.ownership_taken_on_request();
                Ok(Reply::None)
            }
            Ok(false) | Err(_) => Err(ScsiError::SetTargetPortGroupsFailed),
        },
    }
}
