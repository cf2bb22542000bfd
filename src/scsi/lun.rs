//! [`Lun`]: per-device SCSI state and the command entry point.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::alua::{AluaConfig, Ownership, OwnershipCell};
use super::copy::{results::CopyState, LunRegistry};
use super::ctx::{Ctx, Direct};
use super::device_limits::DeviceLimits;
use super::error::ScsiError;
use super::identity::{LunIdentity, LIO_COMPANY_ID};
use super::sense::{status, Asc, Sense, SenseKey};
use super::table;
use crate::backend::{BackendCaps, BackendEvent, BlockBackend, BlockSink, BlockSource};

/// Identity and limits of a logical unit that do not come from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConfig {
    /// T10 VENDOR IDENTIFICATION (up to 8 ASCII characters).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (up to 16 ASCII characters).
    pub product: String,
    /// PRODUCT REVISION LEVEL (up to 4 ASCII characters).
    pub revision: String,
    /// Unit serial number (VPD page 80h and the T10 vendor ID designator).
    pub serial: String,
    /// The NAA designator of VPD page 83h (16 bytes: NAA 6, IEEE
    /// Registered Extended; [`LunIdentity::naa6`]).
    pub naa: [u8; 16],
    /// MAXIMUM TRANSFER LENGTH wanted, in blocks (capped at 32 MiB worth
    /// of blocks and by the kernel device: [`Lun::set_device_limits`]);
    /// READ/WRITE/VERIFY longer than this or than the ring carries fail
    /// with INVALID FIELD IN CDB.
    pub max_transfer_blocks: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH wanted, in blocks (capped at 255 and
    /// at half of `max_transfer_blocks`).
    pub max_compare_write_blocks: u8,
    /// MAXIMUM WRITE SAME LENGTH in blocks (capped by the backend's
    /// MAXIMUM UNMAP LBA COUNT on thin backends).
    pub max_write_same_blocks: u64,
    /// Physical block size in bytes (READ CAPACITY(16) LOGICAL BLOCKS PER
    /// PHYSICAL BLOCK EXPONENT, OPTIMAL TRANSFER LENGTH GRANULARITY); 0 or
    /// anything not above the logical block size means one logical block
    /// per physical block.
    pub physical_block_size: u32,
    /// Initial WCE; `None` means "on when the backend has a volatile cache".
    pub write_cache: Option<bool>,
    /// Implicit ALUA among the daemons exporting this unit (TPGS in
    /// INQUIRY, the port designators of VPD 83h, REPORT TARGET PORT
    /// GROUPS); `None`: no ALUA.
    pub alua: Option<AluaConfig>,
}

impl LunConfig {
    /// The default configuration with the identity `id`: VPD 80h unit
    /// serial = the id in hex, VPD 83h NAA 6 designator from it.
    pub fn identified(id: LunIdentity) -> LunConfig {
        LunConfig {
            serial: id.serial(),
            naa: id.naa6(LIO_COMPANY_ID),
            ..LunConfig::default()
        }
    }
}

impl Default for LunConfig {
    fn default() -> Self {
        LunConfig {
            vendor: "TCMUD".into(),
            product: "VIRTUAL-DISK".into(),
            revision: "0001".into(),
            serial: "0".into(),
            naa: LunIdentity([0; 16]).naa6(LIO_COMPANY_ID),
            max_transfer_blocks: 65536,
            max_compare_write_blocks: 64,
            // The kernel's iblock backstore's max_write_same_len: bounds
            // the work of one command, and keeps a WRITE SAME within what
            // one READ of the same range can bring back through SG_IO
            // (65535 sectors on tcm_loop).
            max_write_same_blocks: 0xFFFF,
            physical_block_size: 0,
            write_cache: None,
            alua: None,
        }
    }
}

/// Outcome of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    /// SCSI status ([`status`]).
    pub status: u8,
    /// Sense data when `status` is CHECK CONDITION.
    pub sense: Option<Sense>,
    /// How many bytes at the start of `data_in` are valid.
    pub data_in_len: usize,
}

impl ScsiResponse {
    /// GOOD with `data_in_len` valid bytes.
    pub fn good(data_in_len: usize) -> ScsiResponse {
        ScsiResponse {
            status: status::GOOD,
            sense: None,
            data_in_len,
        }
    }
    /// CHECK CONDITION with `sense`.
    pub fn check_condition(sense: Sense) -> ScsiResponse {
        ScsiResponse {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            data_in_len: 0,
        }
    }
    /// Fixed-format sense bytes, if any.
    pub fn sense_bytes(&self) -> Option<[u8; super::FIXED_SENSE_LEN]> {
        self.sense.map(|s| s.to_fixed())
    }
}

/// One logical unit: mode state (WCE), pending unit attentions and the
/// COMPARE AND WRITE gate, over a shared backend. `Send + Sync`.
pub struct Lun {
    cfg: LunConfig,
    backend: Arc<dyn BlockBackend>,
    wce: AtomicBool,
    /// SWP (software write protect) of the control mode page, set by MODE
    /// SELECT: the LUN is write-protected while it is on (not saved: a
    /// restarted daemon starts with it off).
    swp: AtomicBool,
    /// A WCE change made by MODE SELECT, not yet taken by the daemon to
    /// persist it: 0 none, 1 off, 2 on.
    wce_selected: AtomicU8,
    ua_pending: AtomicBool,
    ua: Mutex<VecDeque<Sense>>,
    /// Writers hold it shared; COMPARE AND WRITE holds it exclusively across
    /// read-compare-write so no write lands in between.
    caw_gate: super::write_gate::WriteGate,
    /// MAXIMUM TRANSFER LENGTH allowed by the kernel device (blocks;
    /// `u32::MAX` until [`Lun::set_device_limits`]).
    device_max_transfer: AtomicU32,
    /// OPTIMAL TRANSFER LENGTH the kernel device asks for (0: none).
    device_optimal_transfer: AtomicU32,
    /// The longest transfer the kernel device's ring carries (blocks;
    /// `u32::MAX` until [`Lun::set_device_limits`]).
    device_ring_transfer: AtomicU32,
    /// MAXIMUM WRITE SAME LENGTH allowed by the kernel device (blocks;
    /// `u32::MAX`: no limit from it).
    device_max_write_same: AtomicU32,
    /// SANITIZE state ([`SanitizeState`] as u8).
    sanitize: AtomicU8,
    /// EXTENDED COPY commands running and results held.
    copies: Mutex<CopyState>,
    /// The other LUNs EXTENDED COPY can reach ([`LunRegistry::register`]).
    copy_registry: OnceLock<Arc<LunRegistry>>,
    /// Who owns the unit among the daemons exporting it ([`Lun::set_ownership`]).
    ownership: OnceLock<Arc<OwnershipCell>>,
    /// The ownership the last command saw ([`Ownership`] as u8; `u8::MAX`:
    /// none yet): a change queues ASYMMETRIC ACCESS STATE CHANGED.
    ownership_seen: AtomicU8,
    /// The access states changed since the LUN was created (RTPG STATUS
    /// CODE).
    alua_changed: AtomicBool,
}

/// Where the LUN stands with SANITIZE (SBC-4 4.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SanitizeState {
    /// No sanitize running or failed.
    Idle = 0,
    /// One is running: other commands get NOT READY, SANITIZE IN PROGRESS.
    Running = 1,
    /// The last one failed with AUSE=0: only a new SANITIZE leaves.
    Failed = 2,
    /// The last one failed with AUSE=1: EXIT FAILURE MODE leaves too.
    FailedAuse = 3,
}

impl SanitizeState {
    fn from_u8(v: u8) -> SanitizeState {
        match v {
            1 => SanitizeState::Running,
            2 => SanitizeState::Failed,
            3 => SanitizeState::FailedAuse,
            _ => SanitizeState::Idle,
        }
    }
}

/// A running SANITIZE ([`Lun::sanitize_begin`]): [`SanitizeRun::finish`]
/// leaves the running state; dropped unfinished (an error or a panic), the
/// unit enters the failure mode.
#[must_use]
pub(crate) struct SanitizeRun<'a> {
    lun: &'a Lun,
    ause: bool,
    done: bool,
}

impl SanitizeRun<'_> {
    /// The sanitize completed: back to idle.
    pub fn finish(mut self) {
        self.done = true;
        self.lun
            .sanitize
            .store(SanitizeState::Idle as u8, Ordering::Release);
    }
}

impl Drop for SanitizeRun<'_> {
    fn drop(&mut self) {
        if !self.done {
            let failed = match self.ause {
                true => SanitizeState::FailedAuse,
                false => SanitizeState::Failed,
            };
            self.lun.sanitize.store(failed as u8, Ordering::Release);
        }
    }
}

// `Lun` is shared between I/O threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Lun>();
};

impl Lun {
    /// A LUN whose first command (other than INQUIRY, REPORT LUNS, REQUEST
    /// SENSE) reports POWER ON, RESET (29/00).
    pub fn new(cfg: LunConfig, backend: Arc<dyn BlockBackend>) -> Lun {
        let caps = backend.caps();
        let wce = caps.volatile_cache && cfg.write_cache.unwrap_or(true);
        let power_on = Sense::new(SenseKey::UnitAttention, Asc::POWER_ON_RESET);
        Lun {
            cfg,
            backend,
            wce: AtomicBool::new(wce),
            swp: AtomicBool::new(false),
            wce_selected: AtomicU8::new(0),
            ua_pending: AtomicBool::new(true),
            ua: Mutex::new(VecDeque::from([power_on])),
            caw_gate: super::write_gate::WriteGate::default(),
            device_max_transfer: AtomicU32::new(u32::MAX),
            device_optimal_transfer: AtomicU32::new(0),
            device_ring_transfer: AtomicU32::new(u32::MAX),
            device_max_write_same: AtomicU32::new(u32::MAX),
            sanitize: AtomicU8::new(SanitizeState::Idle as u8),
            copies: Mutex::new(CopyState::default()),
            copy_registry: OnceLock::new(),
            ownership: OnceLock::new(),
            ownership_seen: AtomicU8::new(u8::MAX),
            alua_changed: AtomicBool::new(false),
        }
    }

    /// Sets the ownership signal the ALUA states follow (once; a later call
    /// is ignored). Without one the unit counts as [`Ownership::Unknown`].
    pub fn set_ownership(&self, cell: Arc<OwnershipCell>) {
        let _ = self.ownership.set(cell);
    }

    /// Who owns the unit, as the signal last said.
    pub(crate) fn ownership(&self) -> Ownership {
        self.ownership.get().map_or(Ownership::Unknown, |c| c.get())
    }

    /// Whether the access states changed since the LUN was created.
    pub(crate) fn alua_changed(&self) -> bool {
        self.alua_changed.load(Ordering::Acquire)
    }

    /// A unit attention waits to be reported.
    pub(crate) fn unit_attention_pending(&self) -> bool {
        self.ua_pending.load(Ordering::Acquire)
    }

    /// Turns the backend's pending events into unit attentions.
    pub(crate) fn poll_events(&self) {
        self.poll_backend_events();
    }

    /// The copy manager's state.
    pub(crate) fn copy_state(&self) -> MutexGuard<'_, CopyState> {
        self.copies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the registry of the LUNs EXTENDED COPY can reach (once; a later
    /// call is ignored).
    pub(crate) fn set_copy_registry(&self, r: Arc<LunRegistry>) {
        let _ = self.copy_registry.set(r);
    }

    /// The registry of the LUNs EXTENDED COPY can reach, if any.
    pub(crate) fn copy_registry(&self) -> Option<&Arc<LunRegistry>> {
        self.copy_registry.get()
    }

    /// The SANITIZE state.
    pub(crate) fn sanitize_state(&self) -> SanitizeState {
        SanitizeState::from_u8(self.sanitize.load(Ordering::Acquire))
    }

    /// Enters the running state (from idle or a failure mode), or fails
    /// with SANITIZE IN PROGRESS when another one runs.
    pub(crate) fn sanitize_begin(&self, ause: bool) -> Result<SanitizeRun<'_>, ScsiError> {
        let running = SanitizeState::Running as u8;
        let mut cur = self.sanitize.load(Ordering::Acquire);
        loop {
            if cur == running {
                return Err(ScsiError::SanitizeInProgress);
            }
            match self
                .sanitize
                .compare_exchange(cur, running, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(SanitizeRun {
                        lun: self,
                        ause,
                        done: false,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }

    /// EXIT FAILURE MODE: leaves a failure mode entered with AUSE=1 (GOOD
    /// when there is none); one entered with AUSE=0 stays (INVALID FIELD
    /// IN CDB at AUSE).
    pub(crate) fn sanitize_exit_failure_mode(&self) -> Result<(), ScsiError> {
        let ause = SanitizeState::FailedAuse as u8;
        match self.sanitize_state() {
            SanitizeState::Idle => Ok(()),
            SanitizeState::Running => Err(ScsiError::SanitizeInProgress),
            SanitizeState::Failed => Err(ScsiError::cdb(1, 5)),
            SanitizeState::FailedAuse => {
                // Lost to a concurrent SANITIZE: that one decides.
                let _ = self.sanitize.compare_exchange(
                    ause,
                    SanitizeState::Idle as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                Ok(())
            }
        }
    }

    /// Applies the kernel device's transfer limits (configfs
    /// `hw_max_sectors`, `hw_block_size`, `optimal_sectors` and the ring's
    /// size): MAXIMUM and OPTIMAL TRANSFER LENGTH (VPD B0h) and the length
    /// check of every READ/WRITE/VERIFY follow them from the next command
    /// on. Called at device open and again on RECONFIG.
    pub fn set_device_limits(&self, limits: &DeviceLimits) {
        let bs = self.backend.caps().block_size;
        self.device_max_transfer
            .store(limits.max_transfer_blocks(bs), Ordering::Release);
        self.device_ring_transfer
            .store(limits.ring_transfer_blocks(bs), Ordering::Release);
        self.device_max_write_same.store(
            limits
                .max_write_same_len
                .filter(|&n| n > 0)
                .unwrap_or(u32::MAX),
            Ordering::Release,
        );
        self.device_optimal_transfer.store(
            limits.optimal_transfer_blocks().unwrap_or(0),
            Ordering::Release,
        );
    }

    /// MAXIMUM TRANSFER LENGTH to advertise: wanted by the configuration
    /// and allowed by the kernel device, before the byte cap of the SCSI
    /// layer.
    pub(crate) fn transfer_blocks_advertised(&self) -> u32 {
        self.cfg
            .max_transfer_blocks
            .min(self.device_max_transfer.load(Ordering::Acquire))
    }

    /// The longest transfer served: the configuration's, capped by what
    /// the kernel device's ring carries (not by `hw_max_sectors`: see
    /// [`DeviceLimits::ring_transfer_blocks`]).
    pub(crate) fn transfer_blocks_accepted(&self) -> u32 {
        self.cfg
            .max_transfer_blocks
            .min(self.device_ring_transfer.load(Ordering::Acquire))
    }

    /// MAXIMUM WRITE SAME LENGTH allowed by the kernel device.
    pub(crate) fn device_max_write_same(&self) -> u32 {
        self.device_max_write_same.load(Ordering::Acquire)
    }

    /// OPTIMAL TRANSFER LENGTH asked for by the kernel device, if any.
    pub(crate) fn device_optimal_transfer(&self) -> Option<u32> {
        match self.device_optimal_transfer.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Runs one command. `data_out` holds the initiator's data (empty if
    /// none); `data_in` is sized to the command's data-in capacity.
    pub fn execute(&self, cdb: &[u8], data_out: &[u8], data_in: &mut [u8]) -> ScsiResponse {
        if let Some(ua) = self.pending_attention(cdb) {
            return ua;
        }
        let mut ctx = Ctx {
            lun: self,
            caps: self.caps(),
            cdb,
            data_out,
            data_in,
            direct: None,
            nowait: false,
        };
        respond(cdb, table::dispatch(&mut ctx))
    }

    /// Runs one command over the caller's own buffers, e.g. a command's
    /// buffers in the ring's data area ([`crate::ring::RingData`]):
    /// READ and WRITE move data straight between them and the backend
    /// ([`BlockBackend::read_into`] / [`BlockBackend::write_from`]), other
    /// replies are written into `data_in`, and other commands with data-out
    /// get a private copy of it. Same semantics as [`Lun::execute`] with
    /// `data_out`'s bytes and a buffer of `data_in.len()` bytes; a failure
    /// of the buffers themselves is HARDWARE ERROR, INTERNAL TARGET
    /// FAILURE.
    pub fn execute_io(
        &self,
        cdb: &[u8],
        data_out: &dyn BlockSource,
        data_in: &mut dyn BlockSink,
    ) -> ScsiResponse {
        if let Some(ua) = self.pending_attention(cdb) {
            return ua;
        }
        let cmd = match table::lookup(cdb) {
            Ok(cmd) => cmd,
            Err(e) => return respond(cdb, Err(e)),
        };
        let mut plain = Vec::new();
        if cmd.needs_plain_data_out() {
            // Sized by the CDB, never by the iovecs' total.
            let used = match cmd.data_out_len(cdb, &self.backend.caps(), data_out.len()) {
                Ok(n) => n,
                Err(e) => return respond(cdb, Err(e)),
            };
            plain.resize(used, 0);
            if let Err(e) = data_out.read_at(0, &mut plain) {
                return respond(cdb, Err(ScsiError::DataTransfer(e)));
            }
        }
        respond(
            cdb,
            self.run_direct(cdb, cmd, &plain, data_out, data_in, false),
        )
    }

    /// Runs a READ (6/10/12/16) on the caller's thread if it can finish
    /// without waiting (the backend's [`BlockBackend::read_nowait`]: e.g.
    /// a page-cache hit), as [`Lun::execute_io`] with no data-out would.
    /// `None`: nothing was done and nothing consumed (no unit attention
    /// taken); run the command with [`Lun::execute_io`] where it may block.
    /// Any other command is `None` at once.
    pub fn try_execute_nowait(
        &self,
        cdb: &[u8],
        data_in: &mut dyn BlockSink,
    ) -> Option<ScsiResponse> {
        let cmd = table::lookup(cdb).ok().filter(|c| c.facts.may_run_inline)?;
        self.poll_backend_events();
        if self.ua_pending.load(Ordering::Acquire)
            || self.sanitize.load(Ordering::Acquire) != SanitizeState::Idle as u8
        {
            return None;
        }
        let no_out: &[u8] = &[];
        match self.run_direct(cdb, cmd, &[], &no_out, data_in, true) {
            Err(ScsiError::WouldBlock) => None,
            r => Some(respond(cdb, r)),
        }
    }

    /// Runs `cmd` over the caller's own buffers (see [`Lun::execute_io`]);
    /// `plain` is the data-out copy for commands that need one. With
    /// `nowait`, a READ that would wait fails with
    /// [`ScsiError::WouldBlock`] instead.
    fn run_direct(
        &self,
        cdb: &[u8],
        cmd: &'static table::Command,
        plain: &[u8],
        out: &dyn BlockSource,
        inb: &mut dyn BlockSink,
        nowait: bool,
    ) -> Result<usize, ScsiError> {
        let mut ctx = Ctx {
            lun: self,
            caps: self.caps(),
            cdb,
            data_out: plain,
            data_in: &mut [],
            direct: Some(Direct { out, inb }),
            nowait,
        };
        table::run(&mut ctx, cmd)
    }

    /// Polls backend events, then takes the unit attention this command
    /// must report instead of running, if any; then, while a SANITIZE runs
    /// or has failed, the answer every command but INQUIRY, REPORT LUNS,
    /// REQUEST SENSE (and SANITIZE after a failure) gets.
    fn pending_attention(&self, cdb: &[u8]) -> Option<ScsiResponse> {
        self.poll_backend_events();
        // An unknown opcode reports the unit attention like any command.
        if table::facts(cdb).is_some_and(|f| f.ua_exempt) {
            return None;
        }
        if let Some(ua) = self.take_unit_attention() {
            return Some(ScsiResponse::check_condition(ua));
        }
        let err = match self.sanitize_state() {
            SanitizeState::Idle => return None,
            SanitizeState::Running => ScsiError::SanitizeInProgress,
            _ if cdb.first() == Some(&super::sbc::sanitize::OPCODE) => return None,
            SanitizeState::Failed | SanitizeState::FailedAuse => ScsiError::SanitizeFailed,
        };
        Some(check_condition(cdb, err))
    }

    /// Queues CAPACITY DATA HAS CHANGED (2A/09), e.g. after a resize.
    pub fn capacity_changed(&self) {
        self.queue_ua(Asc::CAPACITY_DATA_HAS_CHANGED);
    }

    /// Sets WCE from outside (e.g. a netlink WRITECACHE reconfig) and queues
    /// MODE PARAMETERS CHANGED (2A/01). Ignored when the backend has no
    /// volatile cache.
    /// Turning the cache off flushes what it holds.
    pub fn set_write_cache(&self, on: bool) {
        if self.backend.caps().volatile_cache && self.wce.swap(on, Ordering::AcqRel) != on {
            if !on {
                if let Err(e) = self.backend.flush() {
                    tracing::warn!(error = %e, "flush after disabling the write cache failed");
                }
            }
            self.queue_ua(Asc::MODE_PARAMETERS_CHANGED);
        }
    }

    /// Whether the write cache is enabled (WCE in the caching mode page).
    pub fn write_cache_enabled(&self) -> bool {
        self.wce.load(Ordering::Acquire)
    }

    /// The configuration this LUN was built with.
    pub fn config(&self) -> &LunConfig {
        &self.cfg
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn BlockBackend> {
        &self.backend
    }

    /// WCE from MODE SELECT; disabling the cache first flushes it.
    /// The backend's capabilities as commands see them: read-only also
    /// while SWP is on.
    pub(crate) fn caps(&self) -> BackendCaps {
        let mut caps = self.backend.caps();
        if self.swp.load(Ordering::Acquire) {
            caps.read_only = true;
        }
        caps
    }

    /// SWP from MODE SELECT.
    pub(crate) fn set_swp(&self, on: bool) {
        self.swp.store(on, Ordering::Release);
    }

    /// Whether SWP is on.
    pub(crate) fn software_write_protect(&self) -> bool {
        self.swp.load(Ordering::Acquire)
    }

    pub(crate) fn set_wce(&self, on: bool) -> Result<(), crate::backend::BackendError> {
        if !on && self.write_cache_enabled() {
            self.backend.flush()?;
        }
        if self.wce.swap(on, Ordering::AcqRel) != on {
            self.wce_selected.store(1 + u8::from(on), Ordering::Release);
        }
        Ok(())
    }

    /// The WCE value an initiator last set with MODE SELECT, once per
    /// change, for the daemon to persist (so a restarted daemon does not
    /// come back with the cache setting the initiator changed).
    pub fn take_selected_write_cache(&self) -> Option<bool> {
        // Called after every command: read before the (rare) swap, so the
        // common case does not write the shared cache line.
        if self.wce_selected.load(Ordering::Acquire) == 0 {
            return None;
        }
        match self.wce_selected.swap(0, Ordering::AcqRel) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// FUA to pass to the backend: the command's own FUA, or always when the
    /// write cache is disabled.
    pub(crate) fn effective_fua(&self, caps: &BackendCaps, fua: bool) -> bool {
        fua || (caps.volatile_cache && !self.write_cache_enabled())
    }

    /// Shared side of the COMPARE AND WRITE gate, held by every writer.
    pub(crate) fn write_gate(&self) -> super::write_gate::SharedGuard<'_> {
        self.caw_gate.shared()
    }

    /// Runs `f`, which submits a write to an asynchronous backend, with the
    /// shared side of the gate held by its token (dropped on completion):
    /// now, or when the COMPARE AND WRITE that holds the gate releases it.
    /// Never waits.
    pub fn admit_async_write(&self, f: super::write_gate::AdmitFn) {
        self.caw_gate.admit(f);
    }

    /// Exclusive side of the gate, held across COMPARE AND WRITE.
    pub(crate) fn caw_gate(&self) -> super::write_gate::ExclusiveGuard<'_> {
        self.caw_gate.exclusive()
    }

    /// Takes the oldest pending unit attention.
    pub(crate) fn take_unit_attention(&self) -> Option<Sense> {
        if !self.ua_pending.load(Ordering::Acquire) {
            return None;
        }
        let mut q = self.uas();
        let ua = q.pop_front();
        self.ua_pending.store(!q.is_empty(), Ordering::Release);
        ua
    }

    fn queue_ua(&self, asc: Asc) {
        let sense = Sense::new(SenseKey::UnitAttention, asc);
        let mut q = self.uas();
        if !q.contains(&sense) {
            q.push_back(sense);
        }
        self.ua_pending.store(true, Ordering::Release);
    }

    fn uas(&self) -> MutexGuard<'_, VecDeque<Sense>> {
        self.ua.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poll_backend_events(&self) {
        if let (Some(cfg), Some(cell)) = (&self.cfg.alua, self.ownership.get()) {
            let now = cell.get();
            // A plain load first: the common case writes no shared line.
            let before = self.ownership_seen.load(Ordering::Acquire);
            if before != now as u8
                && self
                    .ownership_seen
                    .compare_exchange(before, now as u8, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                && before != u8::MAX
                && cfg.states(Ownership::from_u8(before)) != cfg.states(now)
            {
                self.alua_changed.store(true, Ordering::Release);
                self.queue_ua(Asc::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        while let Some(ev) = self.backend.poll_event() {
            match ev {
                BackendEvent::LowWaterMark => {
                    self.queue_ua(Asc::THIN_PROVISIONING_SOFT_THRESHOLD_REACHED)
                }
                BackendEvent::CapacityChanged => self.capacity_changed(),
            }
        }
    }
}

/// The response for a dispatched command.
#[inline]
fn respond(cdb: &[u8], r: Result<usize, ScsiError>) -> ScsiResponse {
    match r {
        Ok(n) => ScsiResponse::good(n),
        Err(e) => check_condition(cdb, e),
    }
}

/// The CHECK CONDITION response for `e` (out of line: the rare path).
#[cold]
fn check_condition(cdb: &[u8], e: ScsiError) -> ScsiResponse {
    tracing::debug!(opcode = ?cdb.first(), error = %e, "check condition");
    ScsiResponse::check_condition(e.to_sense())
}

impl std::fmt::Debug for Lun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lun")
            .field("cfg", &self.cfg)
            .field("caps", &self.backend.caps())
            .field("wce", &self.write_cache_enabled())
            .finish_non_exhaustive()
    }
}
