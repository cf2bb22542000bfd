//! Which way a command's data flows, so that only data-out buffers are
//! copied out of the ring and only data-in buffers are written back.

/// Data direction of a CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The initiator sends data (WRITE, UNMAP, MODE SELECT, ...).
    Out,
    /// The target returns data (READ, INQUIRY, ...) or nothing.
    In,
    /// Both, or not known: copy out and write back.
    Both,
}

/// Data direction of `cdb` (an empty CDB counts as data-in: the emulation
/// answers it with a CHECK CONDITION and no data).
pub fn direction(cdb: &[u8]) -> Dir {
    let Some(&op) = cdb.first() else {
        return Dir::In;
    };
    match op {
        // WRITE 6/10/12/16, WRITE AND VERIFY 10/12/16, WRITE SAME 10/16,
        // UNMAP, COMPARE AND WRITE, MODE SELECT 6/10, SEND DIAGNOSTIC,
        // WRITE BUFFER, PERSISTENT RESERVE OUT, EXTENDED COPY.
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e | 0x41 | 0x93 | 0x42 | 0x89 | 0x15
        | 0x55 | 0x1d | 0x3b | 0x5f | 0x83 => Dir::Out,
        // XDWRITEREAD 10, variable-length CDBs: unknown mix.
        0x53 | 0x7f => Dir::Both,
        _ => Dir::In,
    }
}

/// COMPARE AND WRITE: must never run twice, so it is not retried after a
/// panic in its execution.
pub fn is_compare_and_write(cdb: &[u8]) -> bool {
    cdb.first() == Some(&0x89)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_opcodes() {
        assert_eq!(direction(&[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Dir::In); // READ 10
        assert_eq!(direction(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]), Dir::Out); // WRITE 10
        assert_eq!(direction(&[0x00; 6]), Dir::In); // TEST UNIT READY
        assert_eq!(direction(&[]), Dir::In);
        assert_eq!(direction(&[0x53]), Dir::Both);
        assert!(is_compare_and_write(&[0x89, 0]));
    }
}
