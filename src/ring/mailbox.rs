//! Mailbox validation: the geometry of the region, read once and fixed.

use super::error::RingError;
use super::layout::*;
use super::mapping::Mapping;

/// Capabilities the kernel offers in the mailbox flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// Out-of-order completion (`CAP_OOOC`).
    pub ooo: bool,
    /// `rsp.read_len` honoured for short reads (`CAP_READ_LEN`).
    pub read_len: bool,
    /// TMR notification entries (`CAP_TMR`).
    pub tmr: bool,
    /// Data buffers may be kept after completion (`CAP_KEEP_BUF`).
    pub keep_buf: bool,
}

impl Caps {
    /// Decodes the mailbox `flags` field (unknown bits are ignored).
    pub fn from_flags(flags: u16) -> Caps {
        Caps {
            ooo: flags & CAP_OOOC != 0,
            read_len: flags & CAP_READ_LEN != 0,
            tmr: flags & CAP_TMR != 0,
            keep_buf: flags & CAP_KEEP_BUF != 0,
        }
    }

    /// Encodes back into mailbox flags.
    pub fn to_flags(self) -> u16 {
        (if self.ooo { CAP_OOOC } else { 0 })
            | (if self.read_len { CAP_READ_LEN } else { 0 })
            | (if self.tmr { CAP_TMR } else { 0 })
            | (if self.keep_buf { CAP_KEEP_BUF } else { 0 })
    }
}

/// Where things are in the mapping. Read from the mailbox once, validated,
/// and never re-read: later changes to those mailbox fields are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Offset of the command ring from the start of the mapping.
    pub cmdr_off: usize,
    /// Size of the command ring (multiple of 8).
    pub cmdr_size: u32,
    /// Start of the data area (`cmdr_off + cmdr_size`).
    pub data_off: usize,
    /// End of the data area (the mapping length).
    pub data_end: usize,
}

impl Geometry {
    /// Absolute offset of ring offset `ring_off`.
    pub fn abs(&self, ring_off: u32) -> usize {
        self.cmdr_off + ring_off as usize
    }

    /// True for a valid ring cursor: inside the ring and 8-aligned.
    pub fn valid_cursor(&self, off: u32) -> bool {
        off < self.cmdr_size && off % OP_ALIGN == 0
    }

    /// The ring offset just past an entry at `off` of `len` bytes, which
    /// must end inside the ring (`len <= cmdr_size - off`, checked when it
    /// was fetched): 0 at the end. A compare, not a division.
    pub fn after(&self, off: u32, len: u32) -> u32 {
        after(self.cmdr_size, off, len)
    }

    /// Bytes from `from` forward to `to` on the ring.
    pub fn distance(&self, from: u32, to: u32) -> u32 {
        if to >= from {
            to - from
        } else {
            self.cmdr_size - from + to
        }
    }
}

/// [`Geometry::after`] for a ring of `cmdr_size` bytes.
pub(crate) fn after(cmdr_size: u32, off: u32, len: u32) -> u32 {
    let end = off + len;
    if end >= cmdr_size {
        end - cmdr_size
    } else {
        end
    }
}

fn bad(msg: String) -> RingError {
    RingError::BadMailbox(msg)
}

/// Validates the mailbox of `map`; returns the geometry, the capabilities
/// and the current `cmd_tail` (the starting cursor).
pub(crate) fn validate(map: &Mapping) -> Result<(Geometry, Caps, u32), RingError> {
    let len = map.len();
    if len < MAILBOX_SIZE {
        return Err(bad(format!(
            "mapping of {len} bytes has no room for the mailbox"
        )));
    }
    let version = map.read_u16(MB_VERSION)?;
    if version != MAILBOX_VERSION {
        return Err(bad(format!("version {version}, want {MAILBOX_VERSION}")));
    }
    let flags = map.read_u16(MB_FLAGS)?;
    let cmdr_off = map.read_u32(MB_CMDR_OFF)? as usize;
    let cmdr_size = map.read_u32(MB_CMDR_SIZE)?;
    if cmdr_off < MAILBOX_SIZE || cmdr_off % 8 != 0 {
        return Err(bad(format!(
            "cmdr_off {cmdr_off} overlaps the mailbox or is unaligned"
        )));
    }
    if (cmdr_size as usize) < CMD_ENTRY_MIN || cmdr_size % OP_ALIGN != 0 {
        return Err(bad(format!(
            "cmdr_size {cmdr_size} too small or not a multiple of 8"
        )));
    }
    let data_off = cmdr_off
        .checked_add(cmdr_size as usize)
        .filter(|&end| end <= len)
        .ok_or_else(|| {
            bad(format!(
                "ring {cmdr_off}+{cmdr_size} past mapping end {len}"
            ))
        })?;
    let geo = Geometry {
        cmdr_off,
        cmdr_size,
        data_off,
        data_end: len,
    };
    let tail = map.load_u32_acquire(MB_CMD_TAIL)?;
    if !geo.valid_cursor(tail) {
        return Err(bad(format!(
            "cmd_tail {tail} invalid for ring of {cmdr_size}"
        )));
    }
    Ok((geo, Caps::from_flags(flags), tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn region(version: u16, cmdr_off: u32, cmdr_size: u32, tail: u32, len: usize) -> Mapping {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0u8; len]).unwrap();
        let m = Mapping::new(&f, len).unwrap();
        m.write_u16(MB_VERSION, version).unwrap();
        m.write_u16(MB_FLAGS, CAP_OOOC | CAP_TMR).unwrap();
        m.write_u32(MB_CMDR_OFF, cmdr_off).unwrap();
        m.write_u32(MB_CMDR_SIZE, cmdr_size).unwrap();
        m.write_u32(MB_CMD_TAIL, tail).unwrap();
        m
    }

    #[test]
    fn accepts_a_kernel_like_mailbox() {
        let m = region(2, 128, 4096 - 128, 0, 8192);
        let (g, caps, tail) = validate(&m).unwrap();
        assert_eq!(g.cmdr_off, 128);
        assert_eq!(g.data_off, 4096);
        assert_eq!(g.data_end, 8192);
        assert_eq!(tail, 0);
        assert!(caps.ooo && caps.tmr && !caps.read_len && !caps.keep_buf);
        assert_eq!(Caps::from_flags(caps.to_flags()), caps);
        assert_eq!(g.distance(3960, 8), 16);
        assert_eq!(g.distance(8, 3960), 3952);
        assert_eq!(g.after(3960, 8), 0);
        assert_eq!(g.after(8, 3952), 3960);
    }

    #[test]
    fn rejects_bad_mailboxes() {
        assert!(validate(&region(1, 128, 3968, 0, 8192)).is_err());
        assert!(validate(&region(2, 64, 3968, 0, 8192)).is_err());
        assert!(validate(&region(2, 132, 3968, 0, 8192)).is_err());
        assert!(validate(&region(2, 128, 3969, 0, 8192)).is_err());
        assert!(validate(&region(2, 128, 64, 0, 8192)).is_err());
        assert!(validate(&region(2, 128, 8192, 0, 8192)).is_err());
        assert!(validate(&region(2, u32::MAX - 7, 3968, 0, 8192)).is_err());
        assert!(validate(&region(2, 128, 3968, 3968, 8192)).is_err());
        assert!(validate(&region(2, 128, 3968, 4, 8192)).is_err());
        assert!(validate(&region(2, 128, 3968, 0, 100)).is_err());
    }
}
