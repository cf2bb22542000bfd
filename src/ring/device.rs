//! The [`Ring`]: construction, event fd, kicks and cursors.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::error::{Fault, RingError};
use super::layout::*;
use super::mailbox::{self, Caps, Geometry};
use super::mapping::Mapping;
use super::track::{Slot, SlotState, Tracker};

/// Most event reads `drain_events` does in one call (a flooding peer cannot
/// keep it looping).
const MAX_DRAIN: u32 = 4096;

/// One TCMU device's shared ring, seen from userspace.
///
/// Owns the mapping and the event fd (the uio fd itself, or the simulator's
/// socket). `Send`, not `Sync`: one actor drives it.
#[derive(Debug)]
pub struct Ring {
    map: Arc<Mapping>,
    geo: Geometry,
    caps: Caps,
    event: OwnedFd,
    /// Ring offset of the next entry to fetch.
    pub(crate) fetch_off: u32,
    pub(crate) track: Tracker,
    /// Set when our own cursor state cannot be trusted (bad tail on resync).
    pub(crate) poisoned: Option<Fault>,
    kick_pending: Cell<bool>,
    /// Ring offset from which retired entries still have their pages
    /// mapped in this process (see [`Ring::release_retired`]).
    released_from: u32,
    /// False once releasing failed (the pages then stay mapped).
    release_ok: bool,
}

/// Command-ring pages are released a whole aligned window of this many bytes
/// at a time (one `madvise` per ~600 4 KiB READ/WRITE entries). It is the
/// kernel's fault-around window: a fault on a file mapping that has
/// `map_pages` (the simulator's memfd; not a uio device) maps the cached
/// pages of its window too, which would map released pages of the window
/// the fetch cursor is in right back.
const RELEASE_WINDOW: usize = 64 * 1024;

impl Ring {
    /// Opens `/dev/uioN` O_RDWR|O_NONBLOCK, takes the length from
    /// `<sysfs_uio_dir>/maps/map0/size` (hex), maps it and validates the
    /// mailbox.
    pub fn open_uio(dev: &Path, sysfs_uio_dir: &Path) -> Result<Ring, RingError> {
        let size_path = sysfs_uio_dir.join("maps/map0/size");
        let text =
            std::fs::read_to_string(&size_path).map_err(|e| RingError::io("read map0/size", e))?;
        let len = parse_hex_size(&text)
            .ok_or_else(|| RingError::BadMailbox(format!("bad map0/size {:?}", text.trim())))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dev)
            .map_err(|e| RingError::io("open uio device", e))?;
        let map = Mapping::new(&file, len)?;
        Ring::build(map, OwnedFd::from(file))
    }

    /// Maps `len` bytes of `map` (a plain file for the simulator) and kicks
    /// or waits through `event_fd`, which is switched to non-blocking.
    pub fn from_parts(map: &File, len: usize, event_fd: OwnedFd) -> Result<Ring, RingError> {
        let map = Mapping::new(map, len)?;
        Ring::build(map, event_fd)
    }

    fn build(map: Mapping, event: OwnedFd) -> Result<Ring, RingError> {
        let flags = fcntl(&event, FcntlArg::F_GETFL).map_err(|e| RingError::io("F_GETFL", e))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&event, FcntlArg::F_SETFL(flags)).map_err(|e| RingError::io("F_SETFL", e))?;
        let (geo, caps, tail) = mailbox::validate(&map)?;
        tracing::debug!(?geo, ?caps, tail, "ring mapped");
        Ok(Ring {
            map: Arc::new(map),
            geo,
            caps,
            event,
            fetch_off: tail,
            track: Tracker::new(tail),
            poisoned: None,
            kick_pending: Cell::new(false),
            released_from: tail,
            release_ok: true,
        })
    }

    pub(crate) fn map(&self) -> &Mapping {
        &self.map
    }

    /// The mapping, shared (it stays mapped while any holder lives).
    pub(crate) fn shared_map(&self) -> Arc<Mapping> {
        Arc::clone(&self.map)
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Capabilities offered by the kernel.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Size of the command ring in bytes.
    pub fn cmdr_size(&self) -> u32 {
        self.geo.cmdr_size
    }

    /// Size of the data area in bytes.
    pub fn data_area_size(&self) -> usize {
        self.geo.data_end - self.geo.data_off
    }

    /// The fd to poll (or wrap in an async fd) for kernel kicks.
    pub fn event_fd(&self) -> BorrowedFd<'_> {
        self.event.as_fd()
    }

    /// Reads pending 4-byte event counters until EAGAIN; returns how many
    /// were read (at most 4096 per call).
    pub fn drain_events(&self) -> Result<u32, RingError> {
        let mut n = 0;
        let mut buf = [0u8; 4];
        while n < MAX_DRAIN {
            match nix::unistd::read(&self.event, &mut buf) {
                Ok(0) => return Err(RingError::EventClosed),
                Ok(_) => n += 1,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(RingError::io("read event fd", e)),
            }
        }
        Ok(n)
    }

    /// Tells the kernel to process completions: one 4-byte write. Call once
    /// per batch. A full event queue (EAGAIN) means a kick is already
    /// pending and counts as success.
    pub fn kick(&self) -> Result<(), RingError> {
        loop {
            match nix::unistd::write(&self.event, &1u32.to_ne_bytes()) {
                Ok(_) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Err(RingError::EventClosed),
                Err(e) => return Err(RingError::io("write event fd", e)),
            }
        }
        self.kick_pending.set(false);
        Ok(())
    }

    /// True when `cmd_tail` moved since the last [`Ring::kick`] (also when
    /// only PAD/TMR entries were passed): the batch should end with a kick.
    pub fn kick_pending(&self) -> bool {
        self.kick_pending.get()
    }

    /// Commands fetched and not completed.
    pub fn in_flight(&self) -> usize {
        self.track.in_flight()
    }

    /// True when `cmd_id` is in flight (fetched, not completed).
    pub fn is_in_flight(&self, cmd_id: u16) -> bool {
        self.track.is_in_flight(cmd_id)
    }

    /// Ring offset of the next entry `fetch` will read.
    pub fn fetch_cursor(&self) -> u32 {
        self.fetch_off
    }

    /// Ring offset of the completion cursor (the `cmd_tail` we last stored).
    pub fn completion_cursor(&self) -> u32 {
        self.track.tail()
    }

    /// Current `cmd_head` as published by the kernel (Acquire).
    pub fn cmd_head(&self) -> Result<u32, RingError> {
        self.map.load_u32_acquire(MB_CMD_HEAD)
    }

    /// True when the kernel reset the ring behind this process's back
    /// (`action/reset_ring`: it failed every command in flight and set
    /// `cmd_head` and `cmd_tail` to 0): the mailbox `cmd_tail` is no longer the
    /// one we stored, or `cmd_head` lies behind the fetch cursor (seen from
    /// our tail). Then nothing in flight may be completed (the kernel freed
    /// those ids) and the walk must restart from the mailbox: call
    /// [`Ring::resync_from_tail`].
    pub fn reset_by_kernel(&self) -> bool {
        let tail = self.track.tail();
        let Ok(stored) = self.map.load_u32_acquire(MB_CMD_TAIL) else {
            return false;
        };
        if stored != tail {
            return true;
        }
        match self.cmd_head() {
            Ok(head) if self.geo.valid_cursor(head) => {
                self.geo.distance(tail, head) < self.geo.distance(tail, self.fetch_off)
            }
            // A corrupt head is the fetch walk's to report.
            _ => false,
        }
    }

    /// Forgets everything fetched: fetch cursor := completion cursor :=
    /// mailbox `cmd_tail`. Used after a process restart, before
    /// `action/reset_ring`, or to re-walk entries not yet completed. If the
    /// stored tail is invalid the ring is poisoned: `fetch` then yields one
    /// `Corrupt { fault: BadTail }` per call until a valid resync.
    pub fn resync_from_tail(&mut self) {
        let tail = self.map.load_u32_acquire(MB_CMD_TAIL).unwrap_or(u32::MAX);
        if self.geo.valid_cursor(tail) {
            self.fetch_off = tail;
            self.track = Tracker::new(tail);
            self.released_from = tail;
            self.poisoned = None;
        } else {
            tracing::error!(tail, "cmd_tail invalid on resync; ring poisoned");
            self.poisoned = Some(Fault::BadTail);
        }
        self.kick_pending.set(false);
    }

    /// Moves the fetch cursor to `off` (an in-process restart that kept its
    /// in-flight table). Entries between the completion cursor and `off` are
    /// taken as fetched: their command slots' ids (from the headers) become
    /// in flight. With out-of-order completion those ids may differ from the
    /// commands really in flight (slots are reused), so call
    /// [`Ring::set_in_flight`] with the saved table afterwards.
    /// On error nothing changes.
    pub fn set_fetch_cursor(&mut self, off: u32) -> Result<(), RingError> {
        if !self.geo.valid_cursor(off) {
            return Err(RingError::BadCursor(off));
        }
        let tail = self.track.tail();
        let mut track = Tracker::new(tail);
        let mut cur = tail;
        let mut left = self.geo.distance(tail, off);
        while left > 0 {
            let len_op = self.map.read_u32(self.geo.abs(cur))?;
            let (len, op) = split_len_op(len_op);
            if len == 0 || len > left || len > self.geo.cmdr_size - cur {
                return Err(RingError::BadCursor(off));
            }
            let id = self.map.read_u16(self.geo.abs(cur) + HDR_CMD_ID)?;
            // No duplicate check: with out-of-order completion a header id
            // may legitimately repeat here (a reused slot still holds the id
            // of a command completed through another slot).
            let usable = len as usize >= CMD_ENTRY_MIN && id != 0;
            let state = if op == OP_CMD && usable {
                SlotState::Pending(id)
            } else {
                SlotState::Skip
            };
            track.push(Slot {
                off: cur,
                len,
                state,
            });
            cur = self.geo.after(cur, len);
            left -= len;
        }
        self.track = track;
        self.fetch_off = off;
        self.released_from = tail;
        self.retire();
        Ok(())
    }

    /// Declares which commands are in flight after [`Ring::set_fetch_cursor`]
    /// (from the table kept outside the crashed actor). With out-of-order
    /// completion the count must equal the unanswered command slots; in
    /// order, each id must be a slot's own id, and unlisted slots are taken
    /// as already answered.
    pub fn set_in_flight(&mut self, cmd_ids: &[u16]) -> Result<(), RingError> {
        self.track.set_in_flight(cmd_ids, self.caps.ooo)?;
        self.retire();
        Ok(())
    }

    /// Moves the tail over finished slots at the front and publishes it.
    pub(crate) fn retire(&mut self) {
        if let Some(tail) = self.track.retire(self.geo.cmdr_size) {
            // Release: the response bytes written into the retired slots
            // happen-before the kernel's Acquire/READ_ONCE of cmd_tail.
            if self.map.store_u32_release(MB_CMD_TAIL, tail).is_ok() {
                self.kick_pending.set(true);
            }
            self.release_retired(tail);
        }
    }

    /// Unmaps, from this process only, the command-ring pages whose every
    /// entry lies behind `tail`, a whole [`RELEASE_WINDOW`] at a time.
    /// Without it every page of the command ring the daemon ever read
    /// stays mapped: once the ring has wrapped, the daemon's RSS holds each
    /// device's whole command ring (8 MiB by default: 8 GiB at 1,000 LUNs,
    /// counted in the OOM killer's score, with the page tables for it),
    /// although that memory is the kernel's and is the same whether mapped
    /// or not. The kernel writes new entries through its own mapping;
    /// reading one maps its page again (a minor fault; by estimate one per
    /// ~40 commands, 4 KiB of ~100-byte entries). Never the mailbox's page,
    /// nor the window holding `tail` (in-flight entries and the next ones
    /// are read there). Releasing can only cost a fault, never a byte: the
    /// mapping is shared, so a page released too early reads back the same.
    fn release_retired(&mut self, tail: u32) {
        // windows aligned in the address space, as the kernel's are
        let (w, base) = (RELEASE_WINDOW, self.map.addr());
        let win_start = |abs: usize| ((base + abs) / w * w).saturating_sub(base);
        let from = self.released_from;
        let (from_abs, tail_abs) = (self.geo.abs(from), self.geo.abs(tail));
        let mut ranges = [(0usize, 0usize); 2];
        if tail >= from {
            if win_start(tail_abs) <= win_start(from_abs) {
                return;
            }
            ranges[0] = (win_start(from_abs), win_start(tail_abs));
        } else {
            // wrapped: to the ring's end, then from its start
            ranges[0] = (win_start(from_abs), self.geo.data_off);
            ranges[1] = (self.geo.cmdr_off, win_start(tail_abs));
        }
        self.released_from = win_start(tail_abs)
            .saturating_sub(self.geo.cmdr_off)
            .try_into()
            .unwrap_or(tail);
        if !self.release_ok {
            return;
        }
        for (start, end) in ranges {
            // the mailbox's page stays (`release_pages` keeps partial pages)
            let start = start.max(self.geo.cmdr_off);
            if end <= start {
                continue;
            }
            if let Err(e) = self.map.release_pages(start, end - start) {
                tracing::warn!(error = %e, "releasing retired command-ring pages failed; they stay mapped");
                self.release_ok = false;
                return;
            }
        }
    }

    /// Start address of this ring's mapping in the process (to find its
    /// line in `/proc/self/smaps`: how much of it is resident).
    pub fn mapping_addr(&self) -> usize {
        self.map.addr()
    }
}

/// A read-only look at one ring's `cmd_head` from another thread (a
/// watcher that tells whether the ring holds commands not fetched yet,
/// without waking the device). It keeps the mapping alive: drop it together
/// with the [`Ring`] (a mapping outliving the device holds the uio device
/// open in the kernel).
#[derive(Debug, Clone)]
pub struct HeadProbe {
    map: Arc<Mapping>,
    geo: Geometry,
}

impl HeadProbe {
    /// The `cmd_head` the kernel published (Acquire); `None` when it is not
    /// a valid cursor (a corrupt mailbox: the fetch walk reports it).
    pub fn cmd_head(&self) -> Option<u32> {
        self.map
            .load_u32_acquire(MB_CMD_HEAD)
            .ok()
            .filter(|&h| self.geo.valid_cursor(h))
    }

    /// Unmaps, from this process only, every page of the command ring and
    /// the data area (not the mailbox's): for a device with nothing in
    /// flight that has been idle a while (the idle watch's call). Its
    /// pages stay the kernel's, mapped or not, and counted in this
    /// process's RSS only while mapped: at 1,000 LUNs that was ~38 MiB of
    /// the daemon's RSS after a burst of I/O, each device keeping the pages
    /// its last commands touched. The next command maps those it uses again
    /// (minor faults). Like [`Ring::release_retired`] it can only cost a
    /// fault, never a byte: the mapping is shared, so a page released while
    /// the device thread uses it reads back the same.
    pub fn release_idle(&self) -> Result<(), RingError> {
        let start = self.geo.cmdr_off;
        self.map
            .release_pages(start, self.geo.data_end.saturating_sub(start))
    }

    /// Start address of the mapping (tests count its resident pages).
    pub fn mapping_addr(&self) -> usize {
        self.map.addr()
    }
}

impl Ring {
    /// A [`HeadProbe`] on this ring's mailbox.
    pub fn head_probe(&self) -> HeadProbe {
        HeadProbe {
            map: Arc::clone(&self.map),
            geo: self.geo,
        }
    }
}

/// Parses sysfs' `0x...` hex size.
fn parse_hex_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    usize::from_str_radix(t, 16).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_sizes() {
        assert_eq!(parse_hex_size("0x40800000\n"), Some(0x4080_0000));
        assert_eq!(parse_hex_size("1000"), Some(0x1000));
        assert_eq!(parse_hex_size("0x0"), None);
        assert_eq!(parse_hex_size("zz"), None);
    }
}
