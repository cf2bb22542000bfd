//! Walking the ring from the fetch cursor to `cmd_head`.
//!
//! What the kernel guarantees, and what we still check: the kernel writes
//! whole entries (8-aligned lengths, never wrapping: a PAD fills the end of
//! the ring), then publishes `cmd_head` with a Release store. We load
//! `cmd_head` with Acquire, so the entries before it are complete. We still
//! treat every byte as hostile: lengths are checked against the ring end and
//! the head, every offset (`cdb_off`, `iov_base`, which count from the START
//! OF THE MAPPING) against the entry or the data area, and the walk is
//! bounded by the distance to the head (each step consumes at least 8
//! bytes of it), so a corrupt ring cannot make it loop.

use super::data::DataSpans;
use super::device::Ring;
use super::entry::{Cdb, CmdRequest, Entry, TmrRequest, TmrType};
use super::error::{Fault, RingError};
use super::layout::*;
use super::mapping::Mapping;
use super::track::{Slot, SlotState};

/// Iterator over the entries between the fetch cursor and the `cmd_head`
/// loaded when it was created. Errors: `Corrupt` ends the walk (the cursor
/// stays on the bad entry); `BadEntry` skips one entry and the walk goes on.
pub struct Fetch<'a> {
    ring: &'a mut Ring,
    head: Result<u32, RingError>,
    done: bool,
}

impl Ring {
    /// Starts a walk from the fetch cursor to the current `cmd_head`
    /// (loaded once, with Acquire).
    pub fn fetch(&mut self) -> Fetch<'_> {
        let head = match self.poisoned {
            Some(fault) => Err(RingError::Corrupt {
                off: self.fetch_off,
                fault,
            }),
            None => self.load_head(),
        };
        Fetch {
            ring: self,
            head,
            done: false,
        }
    }

    fn load_head(&self) -> Result<u32, RingError> {
        let head = self.cmd_head()?;
        if self.geometry().valid_cursor(head) {
            Ok(head)
        } else {
            Err(RingError::Corrupt {
                off: head,
                fault: Fault::BadHead,
            })
        }
    }

    /// Reads one entry at the fetch cursor. `None`: a slot consumed with
    /// nothing to hand out (PAD, unknown opcode). On `Corrupt` (or a
    /// failed access) nothing is consumed.
    fn step(&mut self, head: u32) -> Option<Result<Entry, RingError>> {
        let g = *self.geometry();
        let off = self.fetch_off;
        let base = g.abs(off);
        let corrupt = |fault| Some(Err(RingError::Corrupt { off, fault }));
        // The header in one load: len_op, cmd_id, kflags, uflags.
        let hdr = match self.map().read_words::<1>(base) {
            Ok([hdr]) => hdr,
            Err(e) => return Some(Err(e)),
        };
        let (len_op, cmd_id) = split_hdr(hdr);
        let (len, op) = split_len_op(len_op);
        if len == 0 {
            return corrupt(Fault::ZeroLength);
        }
        if len > g.cmdr_size - off {
            return corrupt(Fault::PastRingEnd);
        }
        if len > g.distance(off, head) {
            return corrupt(Fault::PastHead);
        }
        let mut slot = Slot {
            off,
            len,
            state: SlotState::Skip,
        };
        let result = match op {
            OP_PAD => None,
            OP_CMD => Some(self.parse_cmd(&mut slot, cmd_id)),
            OP_TMR => Some(self.parse_tmr(off, len).map(Entry::Tmr)),
            _ => {
                if let Err(e) = self.flag_unknown_op(off, op) {
                    return Some(Err(e));
                }
                None
            }
        };
        let pending = matches!(slot.state, SlotState::Pending(_));
        self.track.push(slot);
        self.fetch_off = g.after(off, len);
        // The tail can only move over a finished slot at the front: every
        // operation retires what it finished, so a pending slot pushed at
        // the back cannot let it move.
        if !pending {
            self.retire();
        }
        result
    }

    /// Sets `UNKNOWN_OP` in the entry's `uflags`.
    fn flag_unknown_op(&self, off: u32, op: u32) -> Result<(), RingError> {
        tracing::warn!(off, op, "unknown ring opcode; flagged UNKNOWN_OP");
        let at = self.geometry().abs(off) + HDR_UFLAGS;
        let uf = self.map().read_u8(at)?;
        self.map().write_u8(at, uf | UFLAG_UNKNOWN_OP)
    }

    /// Parses a command entry. Sets `slot.state` to `Pending` whenever the
    /// command can be completed, even if its contents are bad.
    fn parse_cmd(&mut self, slot: &mut Slot, cmd_id: u16) -> Result<Entry, RingError> {
        let (off, len) = (slot.off, slot.len);
        let bad = |cmd_id, fault| RingError::BadEntry { off, cmd_id, fault };
        if (len as usize) < CMD_ENTRY_MIN {
            return Err(bad(None, Fault::ShortCommand));
        }
        if cmd_id == 0 {
            return Err(bad(None, Fault::ZeroCmdId));
        }
        if self.track.is_in_flight(cmd_id) {
            return Err(bad(None, Fault::DuplicateCmdId));
        }
        // From here on the slot can carry a response: complete it even if
        // the rest is malformed.
        slot.state = SlotState::Pending(cmd_id);
        match self.parse_cmd_body(off, len, cmd_id) {
            Ok(r) => Ok(Entry::Cmd(r)),
            Err(fault) => Err(bad(Some(cmd_id), fault)),
        }
    }

    fn parse_cmd_body(&self, off: u32, len: u32, cmd_id: u16) -> Result<CmdRequest, Fault> {
        let g = *self.geometry();
        let m = self.map();
        let base = g.abs(off);
        let end = base + len as usize;
        // iov_cnt, iov_bidi_cnt / iov_dif_cnt, pad / cdb_off, read once (the
        // entry is at least 112 bytes: inside it).
        let [counts, dif, cdb_off] = m
            .read_words::<3>(base + REQ_IOV_CNT)
            .map_err(|_| Fault::IovCount)?;
        let (iov_cnt, bidi_cnt) = split_u64(counts);
        let (iov_cnt, bidi_cnt) = (iov_cnt as usize, bidi_cnt as usize);
        let dif_cnt = split_u64(dif).0 as usize;
        // Each count is < 2^32, so the sum fits in usize on 64-bit targets;
        // checked anyway for 32-bit ones.
        let iovs_end = iov_cnt
            .checked_add(bidi_cnt)
            .and_then(|n| n.checked_add(dif_cnt))
            .and_then(|n| n.checked_mul(IOV_SIZE))
            .and_then(|n| n.checked_add(REQ_IOV))
            .filter(|&n| n <= len as usize);
        let Some(iovs_end) = iovs_end else {
            return Err(Fault::IovCount);
        };
        let mut data = DataSpans::for_cmd(cmd_id);
        self.read_iovs(base + REQ_IOV, iov_cnt, &mut data)?;
        let mut bidi = DataSpans::for_cmd(cmd_id);
        if bidi_cnt > 0 {
            self.read_iovs(base + REQ_IOV + iov_cnt * IOV_SIZE, bidi_cnt, &mut bidi)?;
        }
        let cdb_off = usize::try_from(cdb_off).map_err(|_| Fault::CdbOutOfBounds)?;
        if cdb_off < base + iovs_end || cdb_off >= end {
            return Err(Fault::CdbOutOfBounds);
        }
        let cdb = read_cdb(m, cdb_off, end)?;
        Ok(CmdRequest {
            cmd_id,
            cdb,
            data,
            bidi,
        })
    }

    /// Reads `n` iovecs at absolute offset `at` (inside the entry: checked
    /// by the caller), checks each against the data area and appends it to
    /// `spans`.
    fn read_iovs(&self, at: usize, n: usize, spans: &mut DataSpans) -> Result<(), Fault> {
        let g = *self.geometry();
        let m = self.map();
        for i in 0..n {
            let [b, l] = m
                .read_words::<2>(at + i * IOV_SIZE + IOV_BASE)
                .map_err(|_| Fault::IovCount)?;
            let (Ok(b), Ok(l)) = (usize::try_from(b), usize::try_from(l)) else {
                return Err(Fault::IovOutOfBounds);
            };
            match b.checked_add(l) {
                Some(e) if b >= g.data_off && e <= g.data_end => {
                    if spans.push_checked(b, l).is_none() {
                        return Err(Fault::IovTotal);
                    }
                }
                _ => return Err(Fault::IovOutOfBounds),
            }
        }
        Ok(())
    }

    fn parse_tmr(&self, off: u32, len: u32) -> Result<TmrRequest, RingError> {
        let bad = |fault| RingError::BadEntry {
            off,
            cmd_id: None,
            fault,
        };
        if (len as usize) < TMR_ENTRY_MIN {
            return Err(bad(Fault::ShortTmr));
        }
        let base = self.geometry().abs(off);
        let m = self.map();
        let tmr_type = TmrType::from_u8(m.read_u8(base + TMR_TYPE)?);
        let cnt = m.read_u32(base + TMR_CMD_CNT)? as usize;
        let room = (len as usize - TMR_CMD_IDS) / 2;
        if cnt > room {
            return Err(bad(Fault::TmrCount));
        }
        let mut cmd_ids = Vec::with_capacity(cnt);
        for i in 0..cnt {
            cmd_ids.push(m.read_u16(base + TMR_CMD_IDS + 2 * i)?);
        }
        Ok(TmrRequest { tmr_type, cmd_ids })
    }
}

/// Splits an entry header word into `len_op` and `cmd_id`.
fn split_hdr(w: u64) -> (u32, u16) {
    let b = w.to_ne_bytes();
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_ne_bytes([b[4], b[5]]),
    )
}

/// Splits a word into the u32 at its first four bytes and the one at its
/// last four.
fn split_u64(w: u64) -> (u32, u32) {
    let b = w.to_ne_bytes();
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// Reads the CDB at `cdb_off` (checked to lie in the entry, which ends at
/// `end`): its length comes from its first byte (and byte 7 for 0x7f) as
/// the kernel computes it, and it must fit before `end`.
fn read_cdb(m: &Mapping, cdb_off: usize, end: usize) -> Result<Cdb, Fault> {
    // The usual case: an 8-aligned CDB of at most 16 bytes, with the
    // entry's 8-byte padding after it, read in whole words.
    if cdb_off % 8 == 0 && cdb_off + 16 <= end {
        let words = m
            .read_words::<2>(cdb_off)
            .map_err(|_| Fault::CdbOutOfBounds)?;
        let first = words[0].to_ne_bytes();
        if let Some(cdb) = Cdb::from_words(cdb_len(first[0], first[7]), words) {
            return Ok(cdb);
        }
    }
    let opcode = m.read_u8(cdb_off).map_err(|_| Fault::CdbOutOfBounds)?;
    let byte7 = if opcode == 0x7f {
        if cdb_off + 8 > end {
            return Err(Fault::CdbOutOfBounds);
        }
        m.read_u8(cdb_off + 7).map_err(|_| Fault::CdbOutOfBounds)?
    } else {
        0
    };
    let cdb_len = cdb_len(opcode, byte7);
    if cdb_len > MAX_CDB_LEN {
        return Err(Fault::CdbTooLong);
    }
    if cdb_off + cdb_len > end {
        return Err(Fault::CdbOutOfBounds);
    }
    match Cdb::read_with(cdb_len, |buf| m.read_into(cdb_off, buf)) {
        Some(Ok(cdb)) => Ok(cdb),
        Some(Err(_)) => Err(Fault::CdbOutOfBounds),
        None => Err(Fault::CdbTooLong),
    }
}

impl Fetch<'_> {
    /// The fetch cursor: just past the last entry handed out (or skipped).
    pub fn cursor(&self) -> u32 {
        self.ring.fetch_off
    }
}

impl Iterator for Fetch<'_> {
    type Item = Result<Entry, RingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let head = match &self.head {
            Ok(h) => *h,
            Err(_) => {
                self.done = true;
                let err = std::mem::replace(&mut self.head, Err(RingError::Internal("used")));
                return err.err().map(Err);
            }
        };
        // Bounded: each step moves the cursor 8..=distance bytes closer to
        // `head` (checked in `step`), or fails and ends the walk.
        while self.ring.fetch_off != head {
            if let Some(r) = self.ring.step(head) {
                // Anything but a skipped entry ends the walk.
                if matches!(&r, Err(e) if !matches!(e, RingError::BadEntry { .. })) {
                    self.done = true;
                }
                return Some(r);
            }
        }
        self.done = true;
        None
    }
}
