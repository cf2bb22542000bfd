//! [`KernelSim`]: region set-up and command queueing (`queue_cmd_ring`).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::blocks::{iovs, Blocks};
use super::{SimConfig, SimDevice, SimDir, SimError};
use crate::ring::layout::*;
use crate::ring::mapping::Mapping;
use crate::ring::TmrType;

/// Largest ring the simulator accepts (the kernel's is at most 8 MiB).
pub(crate) const MAX_CMDR_SIZE: u32 = 64 << 20;

/// Poison written into fresh data-in buffers, so unwritten data shows.
pub(crate) const DATA_IN_POISON: u8 = 0xa5;

/// Kernel-side state of one queued command (the kernel never re-reads this
/// from the ring: userspace may have reused the slot).
#[derive(Debug, Clone)]
pub(crate) struct SimCmd {
    pub dir: SimDir,
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
    kicks: u32,
    pub(crate) head: u32,
    pub(crate) last_cleaned: u32,
    pub(crate) cmds: BTreeMap<u16, SimCmd>,
    pub(crate) blocks: Blocks,
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
        map.write_u32(MB_CMDR_OFF, MAILBOX_SIZE as u32)?;
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
            cmds: BTreeMap::new(),
            blocks: Blocks::new(cfg.data_size / cfg.data_block, cfg.data_block),
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
        self.cmds.len()
    }

    /// Ids of the outstanding commands, ascending.
    pub fn outstanding_ids(&self) -> Vec<u16> {
        self.cmds.keys().copied().collect()
    }

    /// Data blocks in use.
    pub fn blocks_in_use(&self) -> usize {
        self.blocks.in_use()
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
        let mut want: u16 = 1;
        for &id in self.cmds.keys() {
            if id != want {
                break;
            }
            want = want.checked_add(1)?;
        }
        Some(want)
    }

    /// Queues a SCSI command like `queue_cmd_ring`; returns its `cmd_id`.
    /// Does not kick: call [`KernelSim::kick`].
    pub fn submit(&mut self, cdb: &[u8], dir: SimDir) -> Result<u16, SimError> {
        self.check_broken()?;
        let op = *cdb.first().ok_or(SimError::BadCdb)?;
        let cdb_len = cdb_len(op, cdb.get(7).copied().unwrap_or(0));
        if cdb.len() < cdb_len || cdb_len > MAX_CDB_LEN {
            return Err(SimError::BadCdb);
        }
        let (main_len, bidi_len) = match &dir {
            SimDir::None => (0, 0),
            SimDir::Out(v) => (v.len(), 0),
            SimDir::In(n) => (*n, 0),
            SimDir::Bidi { out, in_len } => (out.len(), *in_len),
        };
        let main_blocks = self.blocks.needed(main_len);
        let nblocks = main_blocks + self.blocks.needed(bidi_len);
        if nblocks > self.blocks.count() {
            return Err(SimError::TooBig);
        }
        let blocks = self.blocks.find(nblocks).ok_or(SimError::Full)?;
        let bs = self.blocks.size();
        let main_iovs = iovs(self.data_off, bs, &blocks[..main_blocks], main_len);
        let bidi_iovs = iovs(self.data_off, bs, &blocks[main_blocks..], bidi_len);
        let base = base_cmd_size(main_iovs.len() + bidi_iovs.len());
        let cmd_size = base + align8(cdb_len);
        if cmd_size > self.cfg.cmdr_size as usize / 2 {
            return Err(SimError::TooBig);
        }
        if !self.ring_space_for(cmd_size) {
            return Err(SimError::Full);
        }
        let cmd_id = self.alloc_id().ok_or(SimError::Full)?;
        self.blocks.take(&blocks);
        self.fill_data(&dir, &blocks[..main_blocks], &blocks[main_blocks..])?;

        let slot = self.insert_padding(cmd_size)?;
        let at = MAILBOX_SIZE + slot as usize;
        let m = &self.map;
        m.fill(at, cmd_size, 0)?;
        m.write_u32(at + HDR_LEN_OP, cmd_size as u32 | OP_CMD)?;
        m.write_u16(at + HDR_CMD_ID, cmd_id)?;
        m.write_u32(at + REQ_IOV_CNT, main_iovs.len() as u32)?;
        m.write_u32(at + REQ_IOV_BIDI_CNT, bidi_iovs.len() as u32)?;
        for (i, (b, l)) in main_iovs.iter().chain(bidi_iovs.iter()).enumerate() {
            m.write_u64(at + REQ_IOV + i * IOV_SIZE + IOV_BASE, *b)?;
            m.write_u64(at + REQ_IOV + i * IOV_SIZE + IOV_LEN, *l)?;
        }
        let cdb_off = at + base;
        m.write_u64(at + REQ_CDB_OFF, cdb_off as u64)?;
        m.write_from(cdb_off, &cdb[..cdb_len])?;
        self.publish_head(slot + cmd_size as u32)?;
        self.cmds.insert(
            cmd_id,
            SimCmd {
                dir,
                blocks,
                main_blocks,
                slot,
                expired: false,
            },
        );
        self.last_entry = Some((slot, cmd_size as u32));
        Ok(cmd_id)
    }

    /// Places data-out bytes in their blocks; poisons data-in blocks.
    fn fill_data(&self, dir: &SimDir, main: &[usize], bidi: &[usize]) -> Result<(), SimError> {
        let bs = self.blocks.size();
        let put = |blocks: &[usize], data: &[u8]| -> Result<(), SimError> {
            for (b, chunk) in blocks.iter().zip(data.chunks(bs)) {
                self.map.write_from(self.data_off + b * bs, chunk)?;
            }
            Ok(())
        };
        let poison = |blocks: &[usize]| -> Result<(), SimError> {
            for b in blocks {
                self.map.fill(self.data_off + b * bs, bs, DATA_IN_POISON)?;
            }
            Ok(())
        };
        match dir {
            SimDir::None => Ok(()),
            SimDir::Out(v) => put(main, v),
            SimDir::In(_) => poison(main),
            SimDir::Bidi { out, .. } => {
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
        m.write_u32(at + HDR_LEN_OP, cmd_size as u32 | OP_TMR)?;
        m.write_u8(at + TMR_TYPE, tmr.to_u8())?;
        m.write_u32(at + TMR_CMD_CNT, cmd_ids.len() as u32)?;
        for (i, id) in cmd_ids.iter().enumerate() {
            m.write_u16(at + TMR_CMD_IDS + 2 * i, *id)?;
        }
        self.publish_head(slot + cmd_size as u32)?;
        self.last_entry = Some((slot, cmd_size as u32));
        Ok(())
    }

    /// Notifies userspace (`uio_event_notify`): one 4-byte message carrying
    /// the event count. A full socket means a kick is pending already.
    pub fn kick(&mut self) -> Result<(), SimError> {
        self.kicks = self.kicks.wrapping_add(1);
        match nix::unistd::write(&self.event, &self.kicks.to_ne_bytes()) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(SimError::io("kick", e)),
        }
    }

    /// Waits up to `timeout` for userspace's kick (its 4-byte write) and
    /// drains all pending ones. `Ok(false)` on timeout.
    pub fn wait_kick(&mut self, timeout: Duration) -> Result<bool, SimError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.event.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(SimError::io("poll", e)),
        }
        let mut got = false;
        let mut buf = [0u8; 4];
        loop {
            match nix::unistd::read(&self.event, &mut buf) {
                Ok(0) => break,
                Ok(_) => got = true,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SimError::io("read kick", e)),
            }
        }
        Ok(got)
    }
}
