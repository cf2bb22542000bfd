//! Owned copies of ring entries, handed to the layers above.

use super::data::DataSpans;
use super::layout::MAX_CDB_LEN;

const INLINE_CDB: usize = 32;

/// An owned copy of a CDB (at most 260 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Cdb(CdbBuf);

#[derive(Clone, PartialEq, Eq)]
enum CdbBuf {
    Inline { len: u8, buf: [u8; INLINE_CDB] },
    Heap(Box<[u8]>),
}

impl Cdb {
    /// Copies `bytes`; `None` when longer than 260 bytes.
    pub fn new(bytes: &[u8]) -> Option<Cdb> {
        if bytes.len() > MAX_CDB_LEN {
            return None;
        }
        if bytes.len() <= INLINE_CDB {
            let mut buf = [0u8; INLINE_CDB];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Some(Cdb(CdbBuf::Inline {
                len: u8::try_from(bytes.len()).ok()?,
                buf,
            }));
        }
        Some(Cdb(CdbBuf::Heap(bytes.into())))
    }

    /// The CDB made of the first `len` bytes of two words as they lie in
    /// memory (`to_ne_bytes`); `None` when `len` is over 16. Masks instead
    /// of a byte loop: the fetch fast path.
    pub(crate) fn from_words(len: usize, words: [u64; 2]) -> Option<Cdb> {
        /// The first `k` (at most 8) bytes of a word in memory order.
        fn keep(w: u64, k: usize) -> u64 {
            let low = match k {
                0 => 0,
                8.. => u64::MAX,
                k => (1u64 << (8 * k)) - 1,
            };
            // Memory order: the low bytes on little-endian targets.
            w & u64::from_le(low)
        }
        if len > 16 {
            return None;
        }
        let mut buf = [0u8; INLINE_CDB];
        let (a, rest) = buf.split_at_mut(8);
        a.copy_from_slice(&keep(words[0], len).to_ne_bytes());
        let b = rest.get_mut(..8)?;
        b.copy_from_slice(&keep(words[1], len.saturating_sub(8)).to_ne_bytes());
        Some(Cdb(CdbBuf::Inline {
            len: u8::try_from(len).ok()?,
            buf,
        }))
    }

    /// A CDB of `len` bytes filled in place by `read` (no intermediate
    /// buffer); `None` when longer than 260 bytes.
    pub(crate) fn read_with<E>(
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<Cdb, E>> {
        if len > MAX_CDB_LEN {
            return None;
        }
        if len <= INLINE_CDB {
            let mut buf = [0u8; INLINE_CDB];
            let len8 = u8::try_from(len).ok()?;
            return Some(
                read(buf.get_mut(..len)?).map(|()| Cdb(CdbBuf::Inline { len: len8, buf })),
            );
        }
        let mut v = vec![0u8; len].into_boxed_slice();
        Some(read(&mut v).map(|()| Cdb(CdbBuf::Heap(v))))
    }

    /// The CDB bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            CdbBuf::Inline { len, buf } => &buf[..usize::from(*len)],
            CdbBuf::Heap(b) => b,
        }
    }

    /// The operation code (first byte).
    #[inline]
    pub fn opcode(&self) -> u8 {
        self.as_bytes().first().copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cdb(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A SCSI command fetched from the ring, fully copied out of shared memory
/// except for its data, which stays in the data area behind [`DataSpans`].
#[derive(Clone, Debug)]
pub struct CmdRequest {
    /// The kernel's id for this command (complete it with this id).
    pub cmd_id: u16,
    /// The CDB.
    pub cdb: Cdb,
    /// Data-out or data-in buffer (the CDB says which).
    pub data: DataSpans,
    /// Data-in buffer of a bidirectional command (empty otherwise).
    pub bidi: DataSpans,
}

/// Task-management function types (`TCMU_TMR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmrType {
    /// `TCMU_TMR_UNKNOWN` (0).
    Unknown,
    /// ABORT TASK (1).
    AbortTask,
    /// ABORT TASK SET (2).
    AbortTaskSet,
    /// CLEAR ACA (3).
    ClearAca,
    /// CLEAR TASK SET (4).
    ClearTaskSet,
    /// LOGICAL UNIT RESET (5).
    LunReset,
    /// TARGET WARM RESET (6).
    TargetWarmReset,
    /// TARGET COLD RESET (7).
    TargetColdReset,
    /// Pseudo LUN reset after a PR OUT (128).
    LunResetPro,
    /// Any other value.
    Other(u8),
}

impl TmrType {
    /// Decodes the `tmr_type` byte.
    pub fn from_u8(v: u8) -> TmrType {
        match v {
            0 => TmrType::Unknown,
            1 => TmrType::AbortTask,
            2 => TmrType::AbortTaskSet,
            3 => TmrType::ClearAca,
            4 => TmrType::ClearTaskSet,
            5 => TmrType::LunReset,
            6 => TmrType::TargetWarmReset,
            7 => TmrType::TargetColdReset,
            128 => TmrType::LunResetPro,
            n => TmrType::Other(n),
        }
    }

    /// Encodes the `tmr_type` byte.
    pub fn to_u8(self) -> u8 {
        match self {
            TmrType::Unknown => 0,
            TmrType::AbortTask => 1,
            TmrType::AbortTaskSet => 2,
            TmrType::ClearAca => 3,
            TmrType::ClearTaskSet => 4,
            TmrType::LunReset => 5,
            TmrType::TargetWarmReset => 6,
            TmrType::TargetColdReset => 7,
            TmrType::LunResetPro => 128,
            TmrType::Other(n) => n,
        }
    }
}

/// A task-management notification. The listed commands are still in flight
/// and must still be completed; the TMR entry itself needs no completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmrRequest {
    /// Which task-management function.
    pub tmr_type: TmrType,
    /// Ids of the affected in-flight commands.
    pub cmd_ids: Vec<u16>,
}

/// An entry fetched from the ring (PADs and unknown opcodes are consumed
/// inside `fetch`).
#[derive(Clone, Debug)]
pub enum Entry {
    /// A SCSI command: complete it exactly once.
    Cmd(CmdRequest),
    /// A TMR notification: nothing to complete.
    Tmr(TmrRequest),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdb_inline_and_heap() {
        let c = Cdb::new(&[0x28, 0, 0, 0, 0, 1, 0, 0, 8, 0]).unwrap();
        assert_eq!(c.as_bytes().len(), 10);
        assert_eq!(c.opcode(), 0x28);
        let long = vec![0x7fu8; 200];
        assert_eq!(Cdb::new(&long).unwrap().as_bytes(), &long[..]);
        assert!(Cdb::new(&[0u8; 261]).is_none());
        assert_eq!(format!("{:?}", Cdb::new(&[0, 0x12]).unwrap()), "Cdb(0012)");
        for len in [0usize, 6, 32, 33, 260] {
            let c = Cdb::read_with(len, |b| {
                b.iter_mut()
                    .enumerate()
                    .for_each(|(i, x)| *x = i.to_le_bytes()[0]);
                Ok::<(), ()>(())
            });
            let want: Vec<u8> = (0..len).map(|i| i.to_le_bytes()[0]).collect();
            assert_eq!(c.unwrap().unwrap().as_bytes(), &want[..]);
        }
        assert!(Cdb::read_with(261, |_| Ok::<(), ()>(())).is_none());
        assert!(Cdb::read_with(6, |_| Err(())).unwrap().is_err());
        let bytes: [u8; 16] = std::array::from_fn(|i| i.to_le_bytes()[0] + 1);
        let words = [0, 8].map(|i| u64::from_ne_bytes(bytes[i..i + 8].try_into().unwrap()));
        for len in 0..=16 {
            let c = Cdb::from_words(len, words).unwrap();
            assert_eq!(c, Cdb::new(&bytes[..len]).unwrap());
        }
        assert!(Cdb::from_words(17, words).is_none());
    }

    #[test]
    fn tmr_type_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(TmrType::from_u8(v).to_u8(), v);
        }
        assert_eq!(TmrType::from_u8(5), TmrType::LunReset);
    }
}
