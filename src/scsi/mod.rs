//! SCSI emulation (SPC-4 / SBC-3) over a [`BlockBackend`].
//!
//! The layer has no I/O and no transport knowledge: [`Lun::execute`] takes a
//! CDB, the initiator's data-out bytes and a data-in buffer, and returns a
//! [`ScsiResponse`]. One command table (`table`) drives parsing, dispatch
//! and REPORT SUPPORTED OPERATION CODES; every error goes through
//! [`ScsiError::to_sense`].
//!
//! Layout: `table` (rows + dispatch: allocation length and data-in
//! capacity applied once), `cdb` (checked per-format CDB views), `sense`
//! (keys, ASC/ASCQ constants, fixed/descriptor formats), `error` (the
//! error enum and its single sense mapping, backend errors included),
//! `extent` (checked LBA ranges), `copy` (EXTENDED COPY, RECEIVE COPY
//! RESULTS and the registry of LUNs a copy can reach), `device_limits` (what the kernel
//! device lets one command carry), `lun` ([`Lun`] state: WCE, unit
//! attentions, the COMPARE AND WRITE gate), `spc/` and `sbc/` (one handler
//! per command, grouped by family).
//!
//! Unit attentions: POWER ON, RESET (29/00) after creation, CAPACITY DATA
//! HAS CHANGED (2A/09), MODE PARAMETERS CHANGED (2A/01, on
//! [`Lun::set_write_cache`]) and THIN PROVISIONING SOFT THRESHOLD REACHED
//! (38/07, from [`BlockBackend::poll_event`]) are reported once each, to
//! the next command other than INQUIRY, REPORT LUNS and REQUEST SENSE
//! (which returns and clears them). TCMU does not tell which initiator sent
//! a command, so they are per LUN, not per I_T nexus.
//!
//! [`BlockBackend`]: crate::backend::BlockBackend
//! [`BlockBackend::poll_event`]: crate::backend::BlockBackend::poll_event

mod alua;
mod cdb;
mod copy;
mod ctx;
mod data_out;
mod device_limits;
mod error;
mod extent;
mod fixed_len;
mod identity;
mod lun;
mod plan;
mod sbc;
mod sense;
mod spc;
mod state;
mod table;
mod write_gate;

pub use alua::{AccessState, AluaConfig, AluaPeer, NonOwner, Ownership, OwnershipCell};
pub use copy::PIECE_BYTES;
pub use device_limits::{DeviceLimits, DEFAULT_HW_MAX_SECTORS};
pub use error::ScsiError;
pub use identity::{LunIdentity, LIO_COMPANY_ID};
pub use lun::{Lun, ScsiResponse};
pub use plan::IoPlan;
pub use sense::{
    sense_key_name, sense_key_of, status, Asc, FieldPointer, Sense, SenseKey, FIXED_SENSE_LEN,
};
pub use state::{LunConfig, LunRegistry};
pub use table::{data_direction, facts, DataDirection, Facts, OpClass};
pub use write_gate::{AdmitFn, WriteToken};

/// Whether `cdb`'s command may run inline (READ 6/10/12/16): the commands
/// [`Lun::try_execute_nowait`] may serve.
pub fn is_read(cdb: &[u8]) -> bool {
    facts(cdb).is_some_and(|f| f.may_run_inline)
}
