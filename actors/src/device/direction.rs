//! Which way a command's data flows, so that the device shares only a
//! data-out command's buffers with the backend as its source and only a
//! data-in command's buffers as its sink (the backend reads and writes the
//! ring's data area in place: nothing is copied or allocated per command),
//! and counts data-out bytes. The SCSI command table is the single source of
//! the direction.

use tcmud_core::scsi::{data_direction, facts, DataDirection};

/// Data direction of a CDB as the device actor needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The initiator sends data (WRITE, UNMAP, MODE SELECT, ...).
    Out,
    /// The target returns data (READ, INQUIRY, ...).
    In,
    /// No data, or a command the emulation rejects (it returns no data).
    None,
}

/// Data direction of `cdb`.
pub fn direction(cdb: &[u8]) -> Dir {
    match data_direction(cdb) {
        Some(DataDirection::Out) => Dir::Out,
        Some(DataDirection::In) => Dir::In,
        Some(DataDirection::None) | None => Dir::None,
    }
}

/// Whether `cdb` may run again after a panic part-way through (the command
/// table's fact: not COMPARE AND WRITE, which must never run twice). An
/// unsupported command does nothing, so it is safe.
pub fn safe_to_retry(cdb: &[u8]) -> bool {
    facts(cdb).is_none_or(|f| f.safe_to_retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_opcodes() {
        assert_eq!(direction(&[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Dir::In); // READ 10
        assert_eq!(direction(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Dir::Out); // WRITE 10
        assert_eq!(direction(&[0x00; 6]), Dir::None); // TEST UNIT READY
        assert_eq!(direction(&[]), Dir::None);
        let mut caw = [0u8; 16];
        caw[0] = 0x89; // COMPARE AND WRITE
        assert!(!safe_to_retry(&caw));
        assert!(safe_to_retry(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]));
        assert!(safe_to_retry(&[0xff]));
    }
}
