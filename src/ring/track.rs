//! Bookkeeping of fetched slots between the completion cursor (our
//! `cmd_tail`) and the fetch cursor.
//!
//! Each fetched entry becomes a [`Slot`], in ring order. The tail can only
//! move over a slot once it is finished: PAD, TMR and unknown-op slots are
//! finished when fetched; a command slot is finished once a response was
//! written into it. This record is ours: completing never re-reads headers
//! from shared memory.

use std::collections::VecDeque;

use super::error::RingError;

/// Commands in flight: `cmd_id` -> sequence number of its slot, in a table
/// indexed by id (the kernel hands out the lowest free ids, so it stays
/// small; at most 65536 entries). O(1), no hashing, no allocation once
/// grown.
#[derive(Debug, Default, Clone)]
pub(crate) struct IdTable {
    /// `seq + 1` per id; 0 = not in flight.
    seq: Vec<u64>,
    count: usize,
}

impl IdTable {
    /// An empty table with room for ids below `n`.
    fn with_capacity(n: usize) -> IdTable {
        IdTable {
            seq: Vec::with_capacity(n),
            count: 0,
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn get(&self, id: u16) -> Option<u64> {
        match self.seq.get(usize::from(id)) {
            Some(&s) if s != 0 => Some(s - 1),
            _ => None,
        }
    }

    fn contains(&self, id: u16) -> bool {
        self.get(id).is_some()
    }

    /// Sets `id`'s sequence number; returns the previous one.
    fn insert(&mut self, id: u16, seq: u64) -> Option<u64> {
        let i = usize::from(id);
        if i >= self.seq.len() {
            self.seq.resize(i + 1, 0);
        }
        let s = self.seq.get_mut(i)?;
        let old = std::mem::replace(s, seq.saturating_add(1));
        if old == 0 {
            self.count += 1;
            None
        } else {
            Some(old - 1)
        }
    }

    fn remove(&mut self, id: u16) -> Option<u64> {
        let old = self.get(id)?;
        if let Some(s) = self.seq.get_mut(usize::from(id)) {
            *s = 0;
        }
        self.count -= 1;
        Some(old)
    }
}

/// State of one fetched slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Needs no response (PAD, TMR, unknown opcode, unusable entry).
    Skip,
    /// A command slot whose response is not written yet; the id is the one
    /// the kernel wrote in the header.
    Pending(u16),
    /// A command slot holding a response.
    Done,
}

/// One fetched entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Ring offset.
    pub off: u32,
    /// Entry length.
    pub len: u32,
    /// What it still needs.
    pub state: SlotState,
}

/// Fetched-but-not-retired slots and the commands in flight.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    front_seq: u64,
    /// Commands in flight: id -> sequence number of the slot it came in.
    in_flight: IdTable,
    /// Completion cursor (ring offset of `slots[0]`, or the fetch cursor).
    tail: u32,
}

impl Tracker {
    /// Empty, with the completion cursor at `tail`.
    pub fn new(tail: u32) -> Tracker {
        Tracker {
            tail,
            ..Tracker::default()
        }
    }

    /// The completion cursor.
    pub fn tail(&self) -> u32 {
        self.tail
    }

    /// Commands fetched and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// True when `id` is in flight.
    pub fn is_in_flight(&self, id: u16) -> bool {
        self.in_flight.contains(id)
    }

    /// Records a fetched slot. A `Pending(id)` slot puts `id` in flight.
    pub fn push(&mut self, slot: Slot) {
        let seq = self.front_seq + self.slots.len() as u64;
        if let SlotState::Pending(id) = slot.state {
            self.in_flight.insert(id, seq);
        }
        self.slots.push_back(slot);
    }

    /// Picks the slot that will carry the response of `id` and takes `id`
    /// out of flight. With out-of-order completion that is the oldest
    /// unanswered slot (the kernel reads the id from it); in order, it is
    /// the command's own slot. Returns the slot's ring offset and length.
    #[inline]
    pub fn take_slot(&mut self, id: u16, ooo: bool) -> Result<(u32, u32), RingError> {
        let Some(seq) = self.in_flight.get(id) else {
            return Err(RingError::NotInFlight(id));
        };
        let idx = if ooo {
            // Finished slots are retired from the front after every
            // operation, so the oldest unanswered one is usually the first.
            let first = self.slots.front().map(|s| s.state);
            let pending = |s: &Slot| matches!(s.state, SlotState::Pending(_));
            match first {
                Some(SlotState::Pending(_)) => 0,
                _ => match self.slots.iter().position(pending) {
                    Some(i) => i,
                    None => {
                        return Err(RingError::Internal("command in flight but no slot pending"))
                    }
                },
            }
        } else {
            usize::try_from(seq - self.front_seq)
                .map_err(|_| RingError::Internal("slot index overflow"))?
        };
        let slot = match self.slots.get_mut(idx) {
            Some(slot) if matches!(slot.state, SlotState::Pending(_)) => slot,
            Some(_) => return Err(RingError::Internal("completion slot not pending")),
            None => return Err(RingError::Internal("in-flight command without a slot")),
        };
        slot.state = SlotState::Done;
        self.in_flight.remove(id);
        Ok((slot.off, slot.len))
    }

    /// Pops finished slots from the front; returns the new tail if it moved.
    #[inline]
    pub fn retire(&mut self, cmdr_size: u32) -> Option<u32> {
        let mut moved = false;
        while let Some(front) = self.slots.front() {
            if matches!(front.state, SlotState::Pending(_)) {
                break;
            }
            // off < cmdr_size and len <= cmdr_size - off were checked at
            // fetch, so the sum cannot overflow.
            self.tail = super::mailbox::after(cmdr_size, front.off, front.len);
            self.slots.pop_front();
            self.front_seq += 1;
            moved = true;
        }
        moved.then_some(self.tail)
    }

    /// Replaces which commands are in flight after a restart (see
    /// `Ring::set_in_flight`).
    pub fn set_in_flight(&mut self, ids: &[u16], ooo: bool) -> Result<(), RingError> {
        let pending: Vec<(u64, u16)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                SlotState::Pending(id) => Some((self.front_seq + i as u64, id)),
                _ => None,
            })
            .collect();
        let mut map = IdTable::with_capacity(ids.len());
        if ooo {
            if ids.len() != pending.len() {
                return Err(RingError::Internal(
                    "in-flight ids do not match pending slots",
                ));
            }
            for (&id, &(seq, _)) in ids.iter().zip(&pending) {
                if id == 0 || map.insert(id, seq).is_some() {
                    return Err(RingError::NotInFlight(id));
                }
            }
        } else {
            for &id in ids {
                let &(seq, _) = pending
                    .iter()
                    .find(|(_, sid)| *sid == id)
                    .ok_or(RingError::NotInFlight(id))?;
                map.insert(id, seq);
            }
            // Slots whose command is not listed were answered before.
            for (i, s) in self.slots.iter_mut().enumerate() {
                if let SlotState::Pending(id) = s.state {
                    if map.get(id) != Some(self.front_seq + i as u64) {
                        s.state = SlotState::Done;
                    }
                }
            }
        }
        self.in_flight = map;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(off: u32, id: u16) -> Slot {
        Slot {
            off,
            len: 112,
            state: SlotState::Pending(id),
        }
    }

    #[test]
    fn in_order_holds_tail_until_prefix_done() {
        let mut t = Tracker::new(0);
        t.push(cmd(0, 1));
        t.push(cmd(112, 2));
        assert_eq!(t.take_slot(2, false).unwrap(), (112, 112));
        assert_eq!(t.retire(1024), None);
        assert_eq!(t.take_slot(1, false).unwrap(), (0, 112));
        assert_eq!(t.retire(1024), Some(224));
        assert_eq!(t.in_flight(), 0);
        assert!(matches!(
            t.take_slot(1, false),
            Err(RingError::NotInFlight(1))
        ));
    }

    #[test]
    fn ooo_reuses_the_oldest_slot_and_skips() {
        let mut t = Tracker::new(0);
        t.push(Slot {
            off: 0,
            len: 16,
            state: SlotState::Skip,
        });
        t.push(cmd(16, 1));
        t.push(cmd(128, 2));
        assert_eq!(t.retire(1024), Some(16));
        assert_eq!(t.take_slot(2, true).unwrap(), (16, 112));
        assert_eq!(t.retire(1024), Some(128));
        assert!(t.is_in_flight(1));
        assert_eq!(t.take_slot(1, true).unwrap(), (128, 112));
        assert_eq!(t.retire(1024), Some(240));
    }

    #[test]
    fn set_in_flight_in_order_marks_the_rest_done() {
        let mut t = Tracker::new(0);
        t.push(cmd(0, 1));
        t.push(cmd(112, 2));
        t.set_in_flight(&[2], false).unwrap();
        assert_eq!(t.retire(1024), Some(112));
        assert!(t.set_in_flight(&[9], false).is_err());
        let mut o = Tracker::new(0);
        o.push(cmd(0, 1));
        o.push(cmd(112, 2));
        o.set_in_flight(&[7, 8], true).unwrap();
        assert!(o.is_in_flight(7) && !o.is_in_flight(1));
        assert!(o.set_in_flight(&[7], true).is_err());
    }
}
