//! The one error type of the SCSI layer, and its single mapping to sense.

use super::sense::{Asc, FieldPointer, Sense, SenseKey};
use crate::backend::BackendError;

/// Why a command ended in CHECK CONDITION. [`ScsiError::to_sense`] is the
/// only place that turns an error into sense bytes.
#[derive(Debug, thiserror::Error)]
pub enum ScsiError {
    /// The operation code is not supported (20/00).
    #[error("invalid command operation code")]
    InvalidOpcode,
    /// A CDB field is invalid (24/00), with a field pointer.
    #[error("invalid field in CDB byte {byte}")]
    InvalidFieldInCdb {
        /// Byte of the CDB.
        byte: u16,
        /// Most significant bit of the field, if meaningful.
        bit: Option<u8>,
    },
    /// A parameter list field is invalid (26/00), with a field pointer.
    #[error("invalid field in parameter list byte {byte}")]
    InvalidFieldInParameterList {
        /// Byte of the parameter list.
        byte: u16,
        /// Most significant bit of the field, if meaningful.
        bit: Option<u8>,
    },
    /// The parameter list (data-out) is shorter than required (1A/00).
    #[error("parameter list length error")]
    ParameterListLength,
    /// The data-out length is not the one the CDB names (0E/03, INVALID
    /// FIELD IN COMMAND INFORMATION UNIT, as the kernel's
    /// `target_cmd_size_check` answers for data CDBs).
    #[error("data-out of {sent} bytes where the CDB names {expected}")]
    DataOutLength {
        /// Bytes the CDB names.
        expected: u64,
        /// Bytes the initiator sent.
        sent: u64,
    },
    /// The LBA range lies beyond the end of the medium (21/00).
    #[error("logical block address out of range")]
    LbaOutOfRange,
    /// Compared data differed at `offset` bytes into the compared data (1D/00).
    #[error("miscompare at byte {offset}")]
    Miscompare {
        /// Offset of the first differing byte.
        offset: u64,
    },
    /// Saved mode pages were requested (39/00).
    #[error("saving parameters not supported")]
    SavingParametersNotSupported,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The caller's data buffers could not be read or written
    /// ([`crate::scsi::Lun::execute_io`]).
    #[error("data transfer failed: {0}")]
    DataTransfer(#[source] std::io::Error),
    /// This port is in the ALUA standby state and the command is not one a
    /// standby port serves (NOT READY, 04/0B).
    #[error("target port in standby state")]
    TargetPortStandby,
    /// This port is in the ALUA unavailable state (its daemon cannot reach
    /// the unit's backend) and the command is not one an unavailable port
    /// serves (NOT READY, 04/0C).
    #[error("target port in unavailable state")]
    TargetPortUnavailable,
    /// A SANITIZE is running (NOT READY, 04/1B).
    #[error("sanitize in progress")]
    SanitizeInProgress,
    /// The last SANITIZE failed and the unit has not left the failure mode
    /// (MEDIUM ERROR, 31/03).
    #[error("sanitize command failed")]
    SanitizeFailed,
    /// An EXTENDED COPY parameter list has more CSCD descriptors (26/06) or
    /// segment descriptors (26/08) than the copy manager supports.
    #[error("too many {} descriptors", if *.segments { "segment" } else { "CSCD" })]
    TooManyDescriptors {
        /// Segment descriptors (else CSCD descriptors).
        segments: bool,
    },
    /// An EXTENDED COPY descriptor of an unsupported type: CSCD (26/07)
    /// or segment (26/09), with a field pointer to its type code.
    #[error("unsupported {} descriptor type at parameter list byte {byte}", if *.segment { "segment" } else { "CSCD" })]
    UnsupportedDescriptorType {
        /// A segment descriptor (else a CSCD descriptor).
        segment: bool,
        /// Byte of the parameter list holding the type code.
        byte: u16,
    },
    /// EXTENDED COPY stopped: COPY ABORTED with this ASC/ASCQ (what went
    /// wrong at the copy target, or why it cannot be reached).
    #[error("copy aborted ({:02x}/{:02x})", .0.asc, .0.ascq)]
    CopyAborted(Asc),
    /// An EXTENDED COPY with this list identifier is running (00/16), or
    /// too many run at once (55/03, `resources`).
    #[error("copy operation in progress")]
    CopyInProgress {
        /// Too many copies run at once (INSUFFICIENT RESOURCES), rather
        /// than one with the same list identifier.
        resources: bool,
    },
    /// SET TARGET PORT GROUPS asked for states this daemon could not bring
    /// about (HARDWARE ERROR, 67/0A, as SPC-4 5.15.2.4 says).
    #[error("set target port groups failed")]
    SetTargetPortGroupsFailed,
    /// The command would have waited ([`crate::scsi::Lun::try_execute_nowait`]
    /// then hands it back to be run with [`crate::scsi::Lun::execute_io`];
    /// never reported to an initiator).
    #[error("the command would wait")]
    WouldBlock,
}

impl ScsiError {
    /// INVALID FIELD IN CDB at `byte`, bit `bit`.
    pub fn cdb(byte: u16, bit: u8) -> ScsiError {
        ScsiError::InvalidFieldInCdb {
            byte,
            bit: Some(bit),
        }
    }

    /// INVALID FIELD IN PARAMETER LIST at `byte` (no bit pointer).
    pub fn param(byte: usize) -> ScsiError {
        ScsiError::InvalidFieldInParameterList {
            byte: u16::try_from(byte).unwrap_or(u16::MAX),
            bit: None,
        }
    }

    /// The sense data reported for this error.
    pub fn to_sense(&self) -> Sense {
        use SenseKey::*;
        let fp = |in_cdb, byte, bit| FieldPointer { in_cdb, bit, byte };
        match self {
            ScsiError::InvalidOpcode => {
                Sense::new(IllegalRequest, Asc::INVALID_COMMAND_OPERATION_CODE)
            }
            ScsiError::InvalidFieldInCdb { byte, bit } => Sense {
                field_pointer: Some(fp(true, *byte, *bit)),
                ..Sense::new(IllegalRequest, Asc::INVALID_FIELD_IN_CDB)
            },
            ScsiError::InvalidFieldInParameterList { byte, bit } => Sense {
                field_pointer: Some(fp(false, *byte, *bit)),
                ..Sense::new(IllegalRequest, Asc::INVALID_FIELD_IN_PARAMETER_LIST)
            },
            ScsiError::ParameterListLength => {
                Sense::new(IllegalRequest, Asc::PARAMETER_LIST_LENGTH_ERROR)
            }
            ScsiError::DataOutLength { .. } => Sense::new(
                IllegalRequest,
                Asc::INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT,
            ),
            ScsiError::LbaOutOfRange => Sense::new(IllegalRequest, Asc::LBA_OUT_OF_RANGE),
            ScsiError::Miscompare { offset } => Sense {
                information: Some(*offset),
                ..Sense::new(Miscompare, Asc::MISCOMPARE_DURING_VERIFY)
            },
            ScsiError::SavingParametersNotSupported => {
                Sense::new(IllegalRequest, Asc::SAVING_PARAMETERS_NOT_SUPPORTED)
            }
            ScsiError::SanitizeInProgress => Sense::new(NotReady, Asc::SANITIZE_IN_PROGRESS),
            ScsiError::TargetPortStandby => Sense::new(NotReady, Asc::TARGET_PORT_IN_STANDBY_STATE),
            ScsiError::TargetPortUnavailable => {
                Sense::new(NotReady, Asc::TARGET_PORT_IN_UNAVAILABLE_STATE)
            }
            ScsiError::SetTargetPortGroupsFailed => {
                Sense::new(HardwareError, Asc::SET_TARGET_PORT_GROUPS_COMMAND_FAILED)
            }
            ScsiError::SanitizeFailed => Sense::new(MediumError, Asc::SANITIZE_COMMAND_FAILED),
            ScsiError::TooManyDescriptors { segments } => Sense::new(
                IllegalRequest,
                match segments {
                    true => Asc::TOO_MANY_SEGMENT_DESCRIPTORS,
                    false => Asc::TOO_MANY_TARGET_DESCRIPTORS,
                },
            ),
            ScsiError::UnsupportedDescriptorType { segment, byte } => Sense {
                field_pointer: Some(fp(false, *byte, Some(7))),
                ..Sense::new(
                    IllegalRequest,
                    match segment {
                        true => Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
                        false => Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
                    },
                )
            },
            ScsiError::CopyAborted(asc) => Sense::new(CopyAborted, *asc),
            ScsiError::CopyInProgress { resources } => Sense::new(
                IllegalRequest,
                match resources {
                    true => Asc::INSUFFICIENT_RESOURCES,
                    false => Asc::OPERATION_IN_PROGRESS,
                },
            ),
            ScsiError::Backend(e) => backend_sense(e),
            ScsiError::DataTransfer(_) | ScsiError::WouldBlock => {
                Sense::new(HardwareError, Asc::INTERNAL_TARGET_FAILURE)
            }
        }
    }
}

fn backend_sense(e: &BackendError) -> Sense {
    use SenseKey::*;
    match e {
        BackendError::OutOfRange { .. } => Sense::new(IllegalRequest, Asc::LBA_OUT_OF_RANGE),
        BackendError::OutOfSpace => {
            Sense::new(DataProtect, Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
        }
        BackendError::ReadOnly => Sense::new(DataProtect, Asc::WRITE_PROTECTED),
        BackendError::Read(_) => Sense::new(MediumError, Asc::UNRECOVERED_READ_ERROR),
        // The file backstore's filesystem (or quota) is full: the thin
        // provisioning answer, not a medium error.
        BackendError::Write(io) | BackendError::Flush(io) if is_out_of_space(io) => {
            Sense::new(DataProtect, Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
        }
        // A failed flush means written data did not reach the medium.
        BackendError::Write(_) | BackendError::Flush(_) => {
            Sense::new(MediumError, Asc::WRITE_ERROR)
        }
        // Writes refused, reads still served: what a write-protected
        // medium reports.
        BackendError::Failed(_) => Sense::new(DataProtect, Asc::WRITE_PROTECTED),
        BackendError::Metadata(_) => Sense::new(HardwareError, Asc::INTERNAL_TARGET_FAILURE),
        // The storage is out of reach for now (a cluster that does not
        // answer): the initiator retries later.
        BackendError::Unavailable(_) => {
            Sense::new(NotReady, Asc::LOGICAL_UNIT_COMMUNICATION_FAILURE)
        }
    }
}

/// ENOSPC or EDQUOT.
fn is_out_of_space(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error()
        .is_some_and(|n| n == Errno::ENOSPC as i32 || n == Errno::EDQUOT as i32)
}
