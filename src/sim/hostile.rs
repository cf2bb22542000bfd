//! Hostile modes: a kernel (or a memory corruption) that writes nonsense.
//!
//! Entry corruptions act on the last entry queued (command or TMR); the
//! command stays outstanding on the simulated kernel side, so a ring that
//! reports it as a completable bad entry can still complete it.

use super::kernel::KernelSim;
use super::SimError;
use crate::ring::layout::*;
use crate::ring::RingError;

/// A way to damage the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Last entry: length 0 (keeps the opcode).
    ZeroLength,
    /// Last entry: length running past the end of the ring.
    LengthPastEnd,
    /// Last entry: length `n` (low 3 bits are replaced by the opcode).
    Length(u32),
    /// Last entry: opcode `op` (0..=7).
    Opcode(u8),
    /// Last command: `cmd_id`.
    CmdId(u16),
    /// Last command: `cdb_off` (from the start of the mapping).
    CdbOffset(u64),
    /// Last command: first CDB byte (e.g. 0x7f with a huge byte 7).
    CdbBytes(u8, u8),
    /// Last command: iov `index` base.
    IovBase(u32, u64),
    /// Last command: iov `index` length.
    IovLen(u32, u64),
    /// Last command: `iov_cnt`.
    IovCount(u32),
    /// Last command: `iov_bidi_cnt`.
    BidiCount(u32),
    /// Last command: `iov_dif_cnt`.
    DifCount(u32),
    /// Last TMR: `cmd_cnt`.
    TmrCount(u32),
    /// Last entry: everything after the header replaced by pseudo-random
    /// bytes from `seed`.
    GarbageBody(u64),
    /// Last entry: every byte, header included, pseudo-random from `seed`.
    GarbageAll(u64),
    /// Mailbox: `cmd_head` (not validated by the kernel side).
    Head(u32),
    /// Mailbox: `version`.
    Version(u16),
    /// Mailbox: `cmdr_size`.
    CmdrSize(u32),
    /// Mailbox: `cmdr_off`.
    CmdrOff(u32),
}

/// A small deterministic generator (xorshift64*), enough for garbage.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl KernelSim {
    /// Applies `c` to the region. Entry corruptions need an entry queued
    /// before ([`SimError::NoEntry`] otherwise).
    pub fn corrupt(&mut self, c: Corruption) -> Result<(), SimError> {
        let m = &self.map;
        match c {
            Corruption::Head(v) => return Ok(m.store_u32_release(MB_CMD_HEAD, v)?),
            Corruption::Version(v) => return Ok(m.write_u16(MB_VERSION, v)?),
            Corruption::CmdrSize(v) => return Ok(m.write_u32(MB_CMDR_SIZE, v)?),
            Corruption::CmdrOff(v) => return Ok(m.write_u32(MB_CMDR_OFF, v)?),
            _ => {}
        }
        let (slot, len) = self.last_entry.ok_or(SimError::NoEntry)?;
        let at = MAILBOX_SIZE + slot as usize;
        let (_, op) = split_len_op(m.read_u32(at + HDR_LEN_OP)?);
        let iov = |i: u32, f: usize| at + REQ_IOV + i as usize * IOV_SIZE + f;
        match c {
            Corruption::ZeroLength => m.write_u32(at + HDR_LEN_OP, op)?,
            Corruption::LengthPastEnd => {
                let past = (self.cfg.cmdr_size - slot + 8) & !OP_MASK;
                m.write_u32(at + HDR_LEN_OP, past | op)?
            }
            Corruption::Length(n) => m.write_u32(at + HDR_LEN_OP, (n & !OP_MASK) | op)?,
            Corruption::Opcode(o) => {
                m.write_u32(at + HDR_LEN_OP, len | (u32::from(o) & OP_MASK))?
            }
            Corruption::CmdId(id) => m.write_u16(at + HDR_CMD_ID, id)?,
            Corruption::CdbOffset(v) => m.write_u64(at + REQ_CDB_OFF, v)?,
            Corruption::CdbBytes(b0, b7) => {
                let raw = m.read_u64(at + REQ_CDB_OFF)?;
                let off = usize::try_from(raw)
                    .map_err(|_| RingError::OutOfBounds { off: raw, len: 1 })?;
                m.write_u8(off, b0)?;
                if off + 7 < at + len as usize {
                    m.write_u8(off + 7, b7)?;
                }
            }
            Corruption::IovBase(i, v) => m.write_u64(iov(i, IOV_BASE), v)?,
            Corruption::IovLen(i, v) => m.write_u64(iov(i, IOV_LEN), v)?,
            Corruption::IovCount(n) => m.write_u32(at + REQ_IOV_CNT, n)?,
            Corruption::BidiCount(n) => m.write_u32(at + REQ_IOV_BIDI_CNT, n)?,
            Corruption::DifCount(n) => m.write_u32(at + REQ_IOV_DIF_CNT, n)?,
            Corruption::TmrCount(n) => m.write_u32(at + TMR_CMD_CNT, n)?,
            Corruption::GarbageBody(seed) => {
                let body = len as usize - HDR_SIZE.min(len as usize);
                m.write_from(at + HDR_SIZE, &garbage(seed, body))?
            }
            Corruption::GarbageAll(seed) => m.write_from(at, &garbage(seed, len as usize))?,
            Corruption::Head(_)
            | Corruption::Version(_)
            | Corruption::CmdrSize(_)
            | Corruption::CmdrOff(_) => {}
        }
        Ok(())
    }

    /// Writes raw bytes anywhere in the region (bounds-checked).
    pub fn write_raw(&self, off: usize, bytes: &[u8]) -> Result<(), SimError> {
        Ok(self.map.write_from(off, bytes)?)
    }

    /// Reads raw bytes from the region (bounds-checked).
    pub fn read_raw(&self, off: usize, buf: &mut [u8]) -> Result<(), SimError> {
        Ok(self.map.read_into(off, buf)?)
    }

    /// Publishes any `cmd_head` value (Release); the simulated kernel goes
    /// on from `head % cmdr_size`, as the kernel's own `cmd_head` reads do.
    pub fn set_head_raw(&mut self, head: u32) -> Result<(), SimError> {
        self.map.store_u32_release(MB_CMD_HEAD, head)?;
        self.head = head % self.cfg.cmdr_size;
        Ok(())
    }

    /// Ring offset and length of the last entry queued.
    pub fn last_entry(&self) -> Option<(u32, u32)> {
        self.last_entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_deterministic() {
        assert_eq!(garbage(7, 33), garbage(7, 33));
        assert_ne!(garbage(7, 33), garbage(8, 33));
        assert_eq!(garbage(1, 5).len(), 5);
    }
}
