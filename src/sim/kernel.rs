//! [`KernelSim`]: region set-up and command queueing (`queue_cmd_ring`).

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::blocks::{iovs_into, Bitmap, Blocks};
use super::entry::{data_usize, ring_u32, CmdEntry};
use super::{SimConfig, SimDevice, SimDirRef, SimError};
use crate::narrow::min_len;
use crate::ring::layout::*;
use crate::ring::mapping::Mapping;
use crate::ring::TmrType;

/// Largest ring the simulator accepts (the kernel's is at most 8 MiB).
pub(crate) const MAX_CMDR_SIZE: u32 = 64 << 20;

/// Poison written into fresh data-in buffers, so unwritten data shows.
pub(crate) const DATA_IN_POISON: u8 = 0xa5;

/// Data direction of a queued command, without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Xfer {
    /// No data.
    None,
    /// Data-out only.
    Out,
    /// Data-in of this many bytes.
    In(usize),
    /// Bidirectional: data-out length, data-in length.
    Bidi { out_len: usize, in_len: usize },
}

/// Kernel-side state of one queued command (the kernel never re-reads this
/// from the ring: userspace may have reused the slot).
#[derive(Debug, Clone)]
pub(crate) struct SimCmd {
    pub xfer: Xfer,
    /// Data blocks: the first `main_blocks` hold data-out/in, the rest bidi.
    pub blocks: Vec<usize>,
    pub main_blocks: usize,
    /// Ring offset of the slot the command was queued in.
    pub slot: u32,
    /// Timed out: already failed to the initiator.
    pub expired: bool,
}

/// The simulated kernel side of one TCMU device. See the [module
/// docs](super).
#[derive(Debug)]
pub struct KernelSim {
    pub(crate) map: Mapping,
    pub(crate) cfg: SimConfig,
    pub(crate) data_off: usize,
    pub(crate) event: OwnedFd,
    pub(crate) kicks: u32,
    pub(crate) head: u32,
    pub(crate) last_cleaned: u32,
    /// Outstanding commands, indexed by `cmd_id`.
    pub(crate) cmds: Vec<Option<SimCmd>>,
    /// Ids in use (bit 0 always set: id 0 is never handed out).
    ids: Bitmap,
    pub(crate) blocks: Blocks,
    /// Block lists of completed commands, reused by later ones.
    pub(crate) spare_blocks: Vec<Vec<usize>>,
    /// Scratch iov list of the entry being built.
    iov_buf: Vec<(u64, u64)>,
    /// Scratch words of an entry too big for the stack buffer.
    entry_buf: Vec<u8>,
    /// Gathered data-in of the completion being reported (the initiator's
    /// scatter list), reused.
    pub(crate) data_buf: Vec<u8>,
    /// Fill fresh data-in buffers with [`DATA_IN_POISON`].
    poison: bool,
    pub(crate) broken: Option<String>,
    /// Ring offset and length of the last entry written.
    pub(crate) last_entry: Option<(u32, u32)>,
}

impl KernelSim {
    /// Creates the region and the event channel. Returns the simulator and
    /// the parts a [`crate::ring::Ring`] is built from.
    pub fn new(cfg: SimConfig) -> Result<(KernelSim, SimDevice), SimError> {
        if cfg.cmdr_size % 8 != 0
            || (cfg.cmdr_size as usize) < 2 * CMD_ENTRY_MIN
            || cfg.cmdr_size > MAX_CMDR_SIZE
        {
            return Err(SimError::BadConfig(format!("cmdr_size {}", cfg.cmdr_size)));
        }
        if cfg.data_block == 0 || cfg.data_size % cfg.data_block != 0 {
            return Err(SimError::BadConfig(format!(
                "data_size {} not a multiple of data_block {}",
                cfg.data_size, cfg.data_block
            )));
        }
        let data_off = MAILBOX_SIZE + cfg.cmdr_size as usize;
        let len = data_off + cfg.data_size;
        let fd = memfd_create("tcmu-sim", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SimError::io("memfd_create", e))?;
        let file = File::from(fd);
        file.set_len(len as u64)
            .map_err(|e| SimError::io("set_len", e))?;
        let map = Mapping::new(&file, len)?;
        map.write_u16(MB_VERSION, MAILBOX_VERSION)?;
        map.write_u16(MB_FLAGS, cfg.flags)?;
        map.write_u32(MB_CMDR_OFF, ring_u32(MAILBOX_SIZE))?;
        map.write_u32(MB_CMDR_SIZE, cfg.cmdr_size)?;
        map.store_u32_release(MB_CMD_HEAD, 0)?;
        map.store_u32_release(MB_CMD_TAIL, 0)?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(|e| SimError::io("socketpair", e))?;
        let sim = KernelSim {
            map,
            cfg,
            data_off,
            event: ours,
            kicks: 0,
            head: 0,
            last_cleaned: 0,
            cmds: Vec::new(),
            ids: {
                let mut ids = Bitmap::new(1 << 16);
                ids.set(0);
                ids
            },
            blocks: Blocks::new(cfg.data_size / cfg.data_block, cfg.data_block),
            spare_blocks: Vec::new(),
            iov_buf: Vec::new(),
            entry_buf: Vec::new(),
            data_buf: Vec::new(),
            poison: true,
            broken: None,
            last_entry: None,
        };
        Ok((
            sim,
            SimDevice {
                map: file,
                len,
                event_fd: theirs,
            },
        ))
    }

    /// The configuration.
    pub fn config(&self) -> SimConfig {
        self.cfg
    }

    /// Length of the region.
    pub fn region_len(&self) -> usize {
        self.map.len()
    }

    /// Offset of the command ring in the region (128).
    pub fn cmdr_off(&self) -> usize {
        MAILBOX_SIZE
    }

    /// Offset of the data area in the region.
    pub fn data_off(&self) -> usize {
        self.data_off
    }

    /// Our `cmd_head`.
    pub fn head(&self) -> u32 {
        self.head
    }

    /// The `cmd_tail` userspace published (Acquire).
    pub fn tail(&self) -> Result<u32, SimError> {
        Ok(self.map.load_u32_acquire(MB_CMD_TAIL)?)
    }

    /// Commands queued and not completed.
    pub fn outstanding(&self) -> usize {
        self.ids.ones() - 1
    }

    /// Ids of the outstanding commands, ascending.
    pub fn outstanding_ids(&self) -> Vec<u16> {
        self.ids
            .iter_ones()
            .filter_map(|i| u16::try_from(i).ok())
            .filter(|&i| i != 0)
            .collect()
    }

    /// Whether fresh data-in buffers are filled with 0xa5 (the default) so
    /// that data userspace did not write shows. The kernel does not do
    /// this; benchmarks turn it off.
    pub fn set_poison_data_in(&mut self, on: bool) {
        self.poison = on;
    }

    /// The outstanding command `id`, taken out of the table.
    pub(crate) fn take_cmd(&mut self, id: u16) -> Option<SimCmd> {
        let cmd = self.cmds.get_mut(usize::from(id)).and_then(Option::take)?;
        self.ids.clear(usize::from(id));
        Some(cmd)
    }

    /// The outstanding command `id`.
    pub(crate) fn cmd_mut(&mut self, id: u16) -> Option<&mut SimCmd> {
        self.cmds.get_mut(usize::from(id)).and_then(Option::as_mut)
    }

    /// Frees a finished command's blocks and keeps its block list for reuse.
    pub(crate) fn release(&mut self, mut blocks: Vec<usize>) {
        self.blocks.free(&blocks);
        blocks.clear();
        if self.spare_blocks.len() < 1024 {
            self.spare_blocks.push(blocks);
        }
    }

    /// Data blocks in use.
    pub fn blocks_in_use(&self) -> usize {
        self.blocks.in_use()
    }

    /// `action/reset_ring` (`tcmu_reset_ring`): every outstanding command is
    /// failed back to the initiator and forgotten, `cmd_head`, `cmd_tail` and
    /// the cleaned cursor go to 0, and a BROKEN ring works again. Userspace is
    /// not told. Returns the ids that were outstanding.
    pub fn reset_ring(&mut self) -> Result<Vec<u16>, SimError> {
        let ids = self.outstanding_ids();
        for &id in &ids {
            if let Some(cmd) = self.take_cmd(id) {
                self.release(cmd.blocks);
            }
        }
        self.head = 0;
        self.last_cleaned = 0;
        self.last_entry = None;
        self.map.store_u32_release(MB_CMD_TAIL, 0)?;
        self.map.store_u32_release(MB_CMD_HEAD, 0)?;
        self.broken = None;
        Ok(ids)
    }

    /// Why the ring is BROKEN, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// `spc_free`: free ring bytes, keeping one byte unused.
    fn ring_free(&self) -> usize {
        let size = self.cfg.cmdr_size as usize;
        let used = (self.head as usize + size - self.last_cleaned as usize) % size;
        size - used - 1
    }

    /// `is_ring_space_avail`: room for `cmd_size`, plus a PAD when the entry
    /// does not fit before the end of the ring.
    fn ring_space_for(&self, cmd_size: usize) -> bool {
        let to_end = (self.cfg.cmdr_size - self.head) as usize;
        let needed = if to_end >= cmd_size {
            cmd_size
        } else {
            cmd_size + to_end
        };
        self.ring_free() >= needed
    }

    /// `ring_insert_padding`: a PAD up to the end when the entry does not
    /// fit before it. Returns the entry's ring offset.
    fn insert_padding(&mut self, cmd_size: usize) -> Result<u32, SimError> {
        let to_end = self.cfg.cmdr_size - self.head;
        if (to_end as usize) < cmd_size {
            let at = MAILBOX_SIZE + self.head as usize;
            self.map.write_u32(at + HDR_LEN_OP, to_end | OP_PAD)?;
            self.map.write_u16(at + HDR_CMD_ID, 0)?;
            self.map.write_u8(at + HDR_KFLAGS, 0)?;
            self.map.write_u8(at + HDR_UFLAGS, 0)?;
            self.publish_head(0)?;
        }
        Ok(self.head)
    }

    /// `UPDATE_HEAD`: Release store of `cmd_head`.
    fn publish_head(&mut self, head: u32) -> Result<(), SimError> {
        self.head = head % self.cfg.cmdr_size;
        self.map.store_u32_release(MB_CMD_HEAD, self.head)?;
        Ok(())
    }

    fn check_broken(&self) -> Result<(), SimError> {
        match &self.broken {
            Some(why) => Err(SimError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    /// Lowest free id in 1..=65535 (the kernel's `xa_alloc`).
    fn alloc_id(&self) -> Option<u16> {
        self.ids
            .first_zero_from(1)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// Queues a SCSI command like `queue_cmd_ring`; returns its `cmd_id`.
    /// Does not kick: call [`KernelSim::kick`].
    pub fn submit(&mut self, cdb: &[u8], dir: super::SimDir) -> Result<u16, SimError> {
        self.submit_ref(cdb, dir.as_dir_ref())
    }

    /// [`KernelSim::submit`] with borrowed data-out bytes: copies them into
    /// the data area (the kernel's one copy) and allocates nothing once
    /// warmed up.
    pub fn submit_ref(&mut self, cdb: &[u8], dir: SimDirRef<'_>) -> Result<u16, SimError> {
        self.check_broken()?;
        let Some(&op) = cdb.first() else {
            return Err(SimError::BadCdb);
        };
        let cdb_len = cdb_len(op, cdb.get(7).copied().unwrap_or(0));
        if cdb.len() < cdb_len || cdb_len > MAX_CDB_LEN {
            return Err(SimError::BadCdb);
        }
        let (main_len, bidi_len, xfer) = match dir {
            SimDirRef::None => (0, 0, Xfer::None),
            SimDirRef::Out(v) => (v.len(), 0, Xfer::Out),
            SimDirRef::In(n) => (n, 0, Xfer::In(n)),
            SimDirRef::Bidi { out, in_len } => (
                out.len(),
                in_len,
                Xfer::Bidi {
                    out_len: out.len(),
                    in_len,
                },
            ),
        };
        let main_blocks = self.blocks.needed(main_len);
        let nblocks = main_blocks + self.blocks.needed(bidi_len);
        if nblocks > self.blocks.count() {
            return Err(SimError::TooBig);
        }
        let mut blocks = self.spare_blocks.pop().unwrap_or_default();
        if !self.blocks.find_into(nblocks, &mut blocks) {
            self.spare_blocks.push(blocks);
            return Err(SimError::Full);
        }
        let bs = self.blocks.size();
        let mut iov = std::mem::take(&mut self.iov_buf);
        iov.clear();
        let (main_bl, bidi_bl) = blocks.split_at(main_blocks);
        let n_main = iovs_into(self.data_off, bs, main_bl, main_len, &mut iov);
        if bidi_len > 0 {
            iovs_into(self.data_off, bs, bidi_bl, bidi_len, &mut iov);
        }
        let r = self.place(cdb, cdb_len, dir, xfer, blocks, main_blocks, &iov, n_main);
        self.iov_buf = iov;
        r
    }

    /// Second half of [`KernelSim::submit_ref`]: checks ring space, copies
    /// data, writes the entry and publishes the head. On error `blocks`
    /// goes back to the spare lists and nothing is marked.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        cdb: &[u8],
        cdb_len: usize,
        dir: SimDirRef<'_>,
        xfer: Xfer,
        blocks: Vec<usize>,
        main_blocks: usize,
        iov: &[(u64, u64)],
        n_main: usize,
    ) -> Result<u16, SimError> {
        let base = base_cmd_size(iov.len());
        let cmd_size = base + align8(cdb_len);
        let cmd_id = if cmd_size > self.cfg.cmdr_size as usize / 2 {
            Err(SimError::TooBig)
        } else if !self.ring_space_for(cmd_size) {
            Err(SimError::Full)
        } else {
            match self.alloc_id() {
                Some(id) => Ok(id),
                None => Err(SimError::Full),
            }
        };
        let cmd_id = match cmd_id {
            Ok(id) => id,
            Err(e) => {
                let mut blocks = blocks;
                blocks.clear();
                self.spare_blocks.push(blocks);
                return Err(e);
            }
        };
        self.blocks.take(&blocks);
        let (main_iovs, bidi_iovs) = iov.split_at(n_main.min(iov.len()));
        self.fill_data(dir, main_iovs, bidi_iovs)?;

        let slot = self.insert_padding(cmd_size)?;
        let at = MAILBOX_SIZE + slot as usize;
        let entry = CmdEntry {
            size: cmd_size,
            cmd_id,
            iovs: iov,
            main_iovs: main_iovs.len(),
            cdb_at: base,
            cdb_off: (at + base) as u64,
            cdb: cdb.get(..cdb_len).unwrap_or(cdb),
        };
        // Built aside (on the stack when it fits), then copied at once;
        // published below by the Release store of cmd_head.
        let mut small = [0u8; 256];
        let written = match small.get_mut(..cmd_size) {
            Some(bytes) => {
                entry.build(bytes);
                self.map.write_unpublished(at, bytes)
            }
            None => {
                let mut bytes = std::mem::take(&mut self.entry_buf);
                bytes.clear();
                bytes.resize(cmd_size, 0);
                entry.build(&mut bytes);
                let r = self.map.write_unpublished(at, &bytes);
                self.entry_buf = bytes;
                r
            }
        };
        written?;
        self.publish_head(slot + ring_u32(cmd_size))?;
        let idx = usize::from(cmd_id);
        if self.cmds.len() <= idx {
            self.cmds.resize(idx + 1, None);
        }
        if let Some(e) = self.cmds.get_mut(idx) {
            *e = Some(SimCmd {
                xfer,
                blocks,
                main_blocks,
                slot,
                expired: false,
            });
        }
        self.ids.set(idx);
        self.last_entry = Some((slot, ring_u32(cmd_size)));
        Ok(cmd_id)
    }

    /// Copies data-out bytes into their iovs (one `memcpy` per iov, like
    /// the kernel's sg copy); poisons data-in iovs unless turned off.
    fn fill_data(
        &self,
        dir: SimDirRef<'_>,
        main: &[(u64, u64)],
        bidi: &[(u64, u64)],
    ) -> Result<(), SimError> {
        let put = |iovs: &[(u64, u64)], mut data: &[u8]| -> Result<(), SimError> {
            for &(off, len) in iovs {
                let (now, rest) = data.split_at(min_len(len, data.len()));
                self.map.copy_in(data_usize(off), now)?;
                data = rest;
            }
            Ok(())
        };
        let poison = |iovs: &[(u64, u64)]| -> Result<(), SimError> {
            if self.poison {
                for &(off, len) in iovs {
                    self.map
                        .fill_data(data_usize(off), data_usize(len), DATA_IN_POISON)?;
                }
            }
            Ok(())
        };
        match dir {
            SimDirRef::None => Ok(()),
            SimDirRef::Out(v) => put(main, v),
            SimDirRef::In(_) => poison(main),
            SimDirRef::Bidi { out, .. } => {
                put(main, out)?;
                poison(bidi)
            }
        }
    }

    /// Queues a TMR notification like `queue_tmr_ring`.
    pub fn submit_tmr(&mut self, tmr: TmrType, cmd_ids: &[u16]) -> Result<(), SimError> {
        self.check_broken()?;
        let cmd_size = align8(TMR_ENTRY_MIN + 2 * cmd_ids.len());
        if cmd_size > self.cfg.cmdr_size as usize / 2 {
            return Err(SimError::TooBig);
        }
        if !self.ring_space_for(cmd_size) {
            return Err(SimError::Full);
        }
        let slot = self.insert_padding(cmd_size)?;
        let at = MAILBOX_SIZE + slot as usize;
        let m = &self.map;
        m.fill(at, cmd_size, 0)?;
        m.write_u32(at + HDR_LEN_OP, ring_u32(cmd_size) | OP_TMR)?;
        m.write_u8(at + TMR_TYPE, tmr.to_u8())?;
        m.write_u32(at + TMR_CMD_CNT, ring_u32(cmd_ids.len()))?;
        for (i, id) in cmd_ids.iter().enumerate() {
            m.write_u16(at + TMR_CMD_IDS + 2 * i, *id)?;
        }
        self.publish_head(slot + ring_u32(cmd_size))?;
        self.last_entry = Some((slot, ring_u32(cmd_size)));
        Ok(())
    }
}
