//! A command entry built aside, then copied into the ring at once: the
//! bytes `queue_cmd_ring` leaves there (zeros, then the header, the iov
//! counts, `cdb_off`, the iovs and the CDB).

use crate::ring::layout::*;

/// What goes into one command entry.
pub(crate) struct CmdEntry<'a> {
    /// Entry size in bytes (a multiple of 8).
    pub size: usize,
    pub cmd_id: u16,
    /// All iovs: the first `main_iovs` data-out/in, the rest bidi.
    pub iovs: &'a [(u64, u64)],
    pub main_iovs: usize,
    /// Offset of the CDB inside the entry (a multiple of 8).
    pub cdb_at: usize,
    /// Offset of the CDB from the start of the mapping.
    pub cdb_off: u64,
    pub cdb: &'a [u8],
}

/// A size, count or offset inside the command ring as the `u32` of an entry
/// or mailbox field. The ring's size is a `u32` ([`SimConfig::cmdr_size`],
/// at most `MAX_CMDR_SIZE`) and an entry fits half of it, so nothing the
/// simulator places in it (an entry's size, its iov count, a slot) is larger.
///
/// [`SimConfig::cmdr_size`]: super::SimConfig::cmdr_size
#[allow(clippy::cast_possible_truncation)] // inside a ring of u32 size
pub(crate) fn ring_u32(n: usize) -> u32 {
    debug_assert!(u32::try_from(n).is_ok(), "{n} does not fit the ring");
    n as u32
}

/// An offset or length of the simulator's own data-area iovs as an index of
/// the mapping: the simulator placed them inside the data area, whose length
/// is a `usize` ([`SimConfig::data_size`]).
///
/// [`SimConfig::data_size`]: super::SimConfig::data_size
#[allow(clippy::cast_possible_truncation)] // inside a mapping of usize length
pub(crate) fn data_usize(v: u64) -> usize {
    debug_assert!(usize::try_from(v).is_ok(), "{v} past the mapping");
    v as usize
}

/// Copies `b` to `at` in `out` (nothing when it does not fit).
fn put(out: &mut [u8], at: usize, b: &[u8]) {
    if let Some(d) = out.get_mut(at..at + b.len()) {
        d.copy_from_slice(b);
    }
}

impl CmdEntry<'_> {
    /// Writes the entry's fields into `out`: its `size` bytes, zeroed by
    /// the caller.
    pub(crate) fn build(&self, out: &mut [u8]) {
        put(
            out,
            HDR_LEN_OP,
            &(ring_u32(self.size) | OP_CMD).to_ne_bytes(),
        );
        put(out, HDR_CMD_ID, &self.cmd_id.to_ne_bytes());
        let bidi = self.iovs.len().saturating_sub(self.main_iovs);
        put(out, REQ_IOV_CNT, &ring_u32(self.main_iovs).to_ne_bytes());
        put(out, REQ_IOV_BIDI_CNT, &ring_u32(bidi).to_ne_bytes());
        put(out, REQ_CDB_OFF, &self.cdb_off.to_ne_bytes());
        for (i, (b, l)) in self.iovs.iter().enumerate() {
            put(out, REQ_IOV + i * IOV_SIZE + IOV_BASE, &b.to_ne_bytes());
            put(out, REQ_IOV + i * IOV_SIZE + IOV_LEN, &l.to_ne_bytes());
        }
        put(out, self.cdb_at, self.cdb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_hold_the_fields_at_their_offsets() {
        let iovs = [(4096u64, 512u64), (8192, 100)];
        let cdb = [0x28u8, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let e = CmdEntry {
            size: 136,
            cmd_id: 0x1234,
            iovs: &iovs,
            main_iovs: 1,
            cdb_at: 112,
            cdb_off: 1000,
            cdb: &cdb,
        };
        let mut bytes = vec![0u8; 136];
        e.build(&mut bytes);
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
        assert_eq!(u32_at(HDR_LEN_OP), 136 | OP_CMD);
        assert_eq!(&bytes[HDR_CMD_ID..HDR_CMD_ID + 2], &0x1234u16.to_ne_bytes());
        assert_eq!(&bytes[HDR_KFLAGS..HDR_SIZE], &[0, 0]);
        assert_eq!(u32_at(REQ_IOV_CNT), 1);
        assert_eq!(u32_at(REQ_IOV_BIDI_CNT), 1);
        assert_eq!(u32_at(REQ_IOV_DIF_CNT), 0);
        assert_eq!(u64_at(REQ_CDB_OFF), 1000);
        assert_eq!(u64_at(REQ_IOV + IOV_SIZE + IOV_BASE), 8192);
        assert_eq!(u64_at(REQ_IOV + IOV_SIZE + IOV_LEN), 100);
        assert_eq!(&bytes[112..122], &cdb);
        assert!(bytes[122..].iter().all(|&b| b == 0));
        assert!(bytes[REQ_IOV + 2 * IOV_SIZE..112].iter().all(|&b| b == 0));
    }
}
