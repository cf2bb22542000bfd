//! SCSI emulation (SPC-4 / SBC-3) over a [`BlockBackend`].
//!
//! The layer has no I/O and no transport knowledge: [`Lun::execute`] takes a
//! CDB, the initiator's data-out bytes and a data-in buffer, and returns a
//! [`ScsiResponse`]. One command table ([`table`]) drives parsing, dispatch
//! and REPORT SUPPORTED OPERATION CODES; every error goes through
//! [`ScsiError::to_sense`].
//!
//! [`BlockBackend`]: crate::backend::BlockBackend

mod cdb;
mod error;
mod extent;
mod lun;
mod sbc;
mod sense;
mod spc;
mod table;

pub use error::ScsiError;
pub use lun::{Lun, LunConfig, ScsiResponse};
pub use sense::{status, Asc, FieldPointer, Sense, SenseKey, FIXED_SENSE_LEN};
pub use table::{data_direction, DataDirection};
