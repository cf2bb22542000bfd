//! Probes for stale data-area bytes reaching the initiator: a pattern to
//! fill the data area with, commands whose valid reply is empty or shorter
//! than the initiator's data-in buffer, and a search for the pattern in
//! what came back. The kernel copies the initiator's whole data-in buffer
//! unless `READ_LEN` says less (and ignores a `read_len` of 0), so every
//! byte the daemon did not write would be an earlier command's.

/// The fill pattern, repeated: `LEAKLEAK...`.
pub const LEAK_WORD: &[u8; 8] = b"LEAKLEAK";

/// `len` bytes of the fill pattern.
pub fn leak_pattern(len: usize) -> Vec<u8> {
    LEAK_WORD.iter().copied().cycle().take(len).collect()
}

/// Offset of the first 4-byte piece of the pattern (any phase) in `data`.
pub fn find_leak(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| (0..4).any(|phase| LEAK_WORD.get(phase..phase + 4) == Some(w)))
}

/// One probe: a CDB sent with a data-in buffer of `data_in` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakProbe {
    /// What it is, for messages.
    pub name: String,
    /// The CDB.
    pub cdb: Vec<u8>,
    /// The initiator's data-in buffer size.
    pub data_in: usize,
}

/// Commands with oversized or unexpected data-in buffers. `lba` must be a
/// block never written (reads of it return zeros), within a disk of at
/// least `lba + 8` blocks.
pub fn leak_probes(lba: u32) -> Vec<LeakProbe> {
    let l = lba.to_be_bytes();
    let l16 = u64::from(lba).to_be_bytes();
    let p = |name: &str, cdb: &[u8], data_in| LeakProbe {
        name: name.to_owned(),
        cdb: cdb.to_vec(),
        data_in,
    };
    let k64 = 64 << 10;
    let mut v = vec![
        p(
            "READ(10) 0 blocks",
            &[0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 0, 0],
            k64,
        ),
        p(
            "READ(10) 1 block, 64 KiB buffer",
            &[0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0],
            k64,
        ),
        p("READ(16) 0 blocks", &read16(l16, 0), k64),
        p("READ(16) 8 blocks, 64 KiB buffer", &read16(l16, 8), k64),
        p("TEST UNIT READY", &[0x00, 0, 0, 0, 0, 0], k64),
        p(
            "SYNCHRONIZE CACHE(10)",
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            k64,
        ),
        p(
            "VERIFY(10)",
            &[0x2f, 0, l[0], l[1], l[2], l[3], 0, 0, 8, 0],
            k64,
        ),
        p("START STOP UNIT", &[0x1b, 0, 0, 0, 1, 0], k64),
        p("INQUIRY alloc 4096", &[0x12, 0, 0, 0x10, 0, 0], 4096),
        p(
            "INQUIRY alloc 255, 4096 buffer",
            &[0x12, 0, 0, 0, 255, 0],
            4096,
        ),
        p("MODE SENSE(6) all pages", &[0x1a, 0, 0x3f, 0, 255, 0], 255),
        p(
            "MODE SENSE(6) caching, 4096 buffer",
            &[0x1a, 0, 0x08, 0, 255, 0],
            4096,
        ),
        p(
            "MODE SENSE(10) all pages",
            &[0x5a, 0, 0x3f, 0, 0, 0, 0, 0x10, 0, 0],
            4096,
        ),
        p(
            "READ CAPACITY(10)",
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            4096,
        ),
        p("READ CAPACITY(16)", &service_action_in(0x10, [0; 8]), 4096),
        p("GET LBA STATUS", &service_action_in(0x12, l16), 4096),
        p(
            "REPORT SUPPORTED OPERATION CODES",
            &[0xa3, 0x0c, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            k64,
        ),
        p(
            "REQUEST SENSE alloc 252, 4096 buffer",
            &[0x03, 0, 0, 0, 252, 0],
            4096,
        ),
        p("unknown opcode", &[0xc5, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4096),
        p(
            "INQUIRY EVPD=0 page 80 (invalid field)",
            &[0x12, 0, 0x80, 0x10, 0, 0],
            4096,
        ),
        p(
            "MODE SENSE(6) page 2e (invalid field)",
            &[0x1a, 0, 0x2e, 0, 255, 0],
            4096,
        ),
        p(
            "READ(10) NACA (invalid field)",
            &[0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 4],
            k64,
        ),
        p(
            "READ(10) LBA out of range",
            &[0x28, 0, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0],
            k64,
        ),
    ];
    for page in [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2] {
        v.push(p(
            "INQUIRY VPD alloc 4096",
            &[0x12, 1, page, 0x10, 0, 0],
            4096,
        ));
    }
    v
}

fn read16(lba: [u8; 8], blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba);
    c[13] = blocks;
    c
}

/// SERVICE ACTION IN(16) with `sa`, LBA `lba`, allocation length 4096.
fn service_action_in(sa: u8, lba: [u8; 8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = sa;
    c[2..10].copy_from_slice(&lba);
    c[12] = 0x10;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_found_in_any_phase() {
        let p = leak_pattern(20);
        assert_eq!(&p[..10], b"LEAKLEAKLE");
        for at in 0..8 {
            let mut buf = vec![0u8; 64];
            buf[30..34].copy_from_slice(&p[at..at + 4]);
            assert_eq!(find_leak(&buf), Some(30), "phase {at}");
        }
        assert_eq!(find_leak(b"LEA\0EAK\0AKL\0KLE"), None);
        assert_eq!(find_leak(&[0u8; 4096]), None);
    }
}
