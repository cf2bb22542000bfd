//! TODO: scsi
