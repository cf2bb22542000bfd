//! REPORT TARGET PORT GROUPS (SPC-4 6.36) for implicit ALUA
//! ([`crate::scsi::alua`]).

use crate::scsi::alua;
use crate::scsi::cdb::MaintenanceIn;
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
        ctx.state.alua_changed(),
        extended,
    )))
}
