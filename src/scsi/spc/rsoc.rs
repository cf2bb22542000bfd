//! REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT
//! FUNCTIONS (MAINTENANCE IN), both generated from the command table.

use crate::scsi::cdb::MaintenanceIn;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::table::{has_service_actions, Command, COMMANDS};

/// Command timeouts descriptor (RCTD): length 0Ah, no timeouts specified.
const TIMEOUTS: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), reporting options 0-3.
pub(crate) fn report_opcodes(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = MaintenanceIn::parse(ctx.cdb)?;
    let rctd = cdb.rctd();
    let op = cdb.requested_opcode();
    let sa = cdb.requested_service_action();
    let alua = ctx.state.config().alua.is_some();
    let supported = |c: &&Command| (c.available)(&ctx.caps) && (alua || !c.facts.needs_alua);
    match cdb.reporting_options() {
        0 => {
            let mut d = vec![0u8; 4];
            for c in COMMANDS.iter().filter(supported) {
                d.push(c.opcode);
                d.push(0);
                d.extend_from_slice(&u16::from(c.service_action.unwrap_or(0)).to_be_bytes());
                d.push(0);
                d.push(u8::from(rctd) << 1 | u8::from(c.service_action.is_some())); // CTDP, SERVACTV
                d.extend_from_slice(&u16::try_from(c.cdb_len()).unwrap_or(0).to_be_bytes());
                if rctd {
                    d.extend_from_slice(&TIMEOUTS);
                }
            }
            let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
            d[..4].copy_from_slice(&len.to_be_bytes()); // COMMAND DATA LENGTH
            Ok(Reply::Data(d))
        }
        1 if has_service_actions(op) => Err(ScsiError::cdb(3, 7)),
        1 => Ok(Reply::Data(one_command(
            COMMANDS.iter().filter(supported).find(|c| c.opcode == op),
            rctd,
        ))),
        2 if !has_service_actions(op) => Err(ScsiError::cdb(3, 7)),
        2 => {
            let found = COMMANDS
                .iter()
                .filter(supported)
                .find(|c| c.opcode == op && c.service_action.map(u16::from) == Some(sa));
            Ok(Reply::Data(one_command(found, rctd)))
        }
        // The command named by opcode and service action; the service
        // action is ignored for an opcode that has none.
        3 => {
            let has_sa = has_service_actions(op);
            let found = COMMANDS.iter().filter(supported).find(|c| {
                c.opcode == op && (!has_sa || c.service_action.map(u16::from) == Some(sa))
            });
            Ok(Reply::Data(one_command(found, rctd)))
        }
        _ => Err(ScsiError::cdb(2, 2)),
    }
}

/// The one-command format: SUPPORT 3 with the CDB usage data, or SUPPORT 1.
fn one_command(cmd: Option<&Command>, rctd: bool) -> Vec<u8> {
    let Some(c) = cmd else {
        return vec![0, 0x01, 0, 0]; // SUPPORT 001b: not supported
    };
    let mut d = vec![0, u8::from(rctd) << 7 | 0x03]; // CTDP, SUPPORT 011b
    d.extend_from_slice(&u16::try_from(c.cdb_len()).unwrap_or(0).to_be_bytes());
    d.extend_from_slice(c.usage);
    if rctd {
        d.extend_from_slice(&TIMEOUTS);
    }
    d
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: the functions LIO performs
/// for us (ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET).
pub(crate) fn report_tmfs(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let cdb = MaintenanceIn::parse(ctx.cdb)?;
    let functions = 0x80 | 0x40 | 0x10 | 0x08; // ATS, ATSS, CTSS, LURS
    let mut d = vec![functions, 0, 0, 0];
    if cdb.repd() {
        // Extended format, ADDITIONAL DATA LENGTH 0Ch.
        d[3] = 0x0C;
        d.resize(16, 0);
    }
    Ok(Reply::Data(d))
}
