//! [`LunState`]: what the commands of one logical unit read and change
//! (mode state, unit attentions, the COMPARE AND WRITE gate, SANITIZE and
//! EXTENDED COPY state), over its backend. Handlers see it through
//! [`Ctx`](super::ctx::Ctx); [`Lun`](super::Lun) owns it and runs the
//! commands. Below `ctx` and the handlers in the module graph: it knows
//! neither.
//!
//! Layout: `config` ([`LunConfig`]), `sanitize` (SANITIZE state),
//! `registry` (the units EXTENDED COPY can reach).

mod config;
mod registry;
mod sanitize;

pub use config::LunConfig;
pub use registry::LunRegistry;
pub(crate) use sanitize::SanitizeState;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::alua::{Ownership, OwnershipCell, StatusCode};
use super::copy::held::CopyResults;
use super::device_limits::DeviceLimits;
use super::error::ScsiError;
use super::sense::{Asc, Sense, SenseKey};
use super::table::Facts;
use super::write_gate::{AdmitFn, ExclusiveGuard, SharedGuard, WriteGate};
use crate::backend::{BackendCaps, BackendEvent, BlockBackend};

/// The state of one logical unit that commands read and change: mode
/// state (WCE, SWP), pending unit attentions, the COMPARE AND WRITE gate,
/// SANITIZE and EXTENDED COPY state, over a shared backend. `Send + Sync`.
pub(crate) struct LunState {
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
    caw_gate: WriteGate,
    /// MAXIMUM TRANSFER LENGTH allowed by the kernel device (blocks;
    /// `u32::MAX` until [`LunState::set_device_limits`]).
    device_max_transfer: AtomicU32,
    /// OPTIMAL TRANSFER LENGTH the kernel device asks for (0: none).
    device_optimal_transfer: AtomicU32,
    /// The longest transfer the kernel device's ring carries (blocks;
    /// `u32::MAX` until [`LunState::set_device_limits`]).
    device_ring_transfer: AtomicU32,
    /// MAXIMUM WRITE SAME LENGTH allowed by the kernel device (blocks;
    /// `u32::MAX`: no limit from it).
    device_max_write_same: AtomicU32,
    /// SANITIZE state ([`SanitizeState`] as u8).
    sanitize: AtomicU8,
    /// EXTENDED COPY commands running and results held.
    copies: CopyResults,
    /// The other LUNs EXTENDED COPY can reach ([`LunRegistry::register`]).
    copy_registry: OnceLock<Arc<LunRegistry>>,
    /// Who owns the unit among the daemons exporting it ([`LunState::set_ownership`]).
    ownership: OnceLock<Arc<OwnershipCell>>,
    /// The ownership the last command saw ([`Ownership::encode`]; `u32::MAX`:
    /// none yet): a change queues ASYMMETRIC ACCESS STATE CHANGED.
    ownership_seen: AtomicU32,
    /// Why the access states last changed (RTPG STATUS CODE,
    /// [`StatusCode`] as u8).
    alua_status: AtomicU8,
}

// `LunState` is shared between I/O threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LunState>();
};

impl LunState {
    /// A unit whose first command (other than INQUIRY, REPORT LUNS, REQUEST
    /// SENSE) reports POWER ON, RESET (29/00).
    pub(crate) fn new(cfg: LunConfig, backend: Arc<dyn BlockBackend>) -> LunState {
        let caps = backend.caps();
        let wce = caps.volatile_cache && cfg.write_cache.unwrap_or(true);
        let power_on = Sense::new(SenseKey::UnitAttention, Asc::POWER_ON_RESET);
        LunState {
            cfg,
            backend,
            wce: AtomicBool::new(wce),
            swp: AtomicBool::new(false),
            wce_selected: AtomicU8::new(0),
            ua_pending: AtomicBool::new(true),
            ua: Mutex::new(VecDeque::from([power_on])),
            caw_gate: WriteGate::default(),
            device_max_transfer: AtomicU32::new(u32::MAX),
            device_optimal_transfer: AtomicU32::new(0),
            device_ring_transfer: AtomicU32::new(u32::MAX),
            device_max_write_same: AtomicU32::new(u32::MAX),
            sanitize: AtomicU8::new(SanitizeState::Idle as u8),
            copies: CopyResults::default(),
            copy_registry: OnceLock::new(),
            ownership: OnceLock::new(),
            ownership_seen: AtomicU32::new(u32::MAX),
            alua_status: AtomicU8::new(StatusCode::None as u8),
        }
    }

    /// Sets the ownership signal the ALUA states follow (once; a later call
    /// is ignored). Without one the unit counts as [`Ownership::Unknown`].
    /// With ALUA the cell learns this port's group (for the watcher to
    /// publish while it holds the ownership).
    pub(crate) fn set_ownership(&self, cell: Arc<OwnershipCell>) {
        if let Some(alua) = &self.cfg.alua {
            cell.set_group(alua.group);
        }
        let _ = self.ownership.set(cell);
    }

    /// Who owns the unit, as the signal last said.
    pub(crate) fn ownership(&self) -> Ownership {
        self.ownership.get().map_or(Ownership::Unknown, |c| c.get())
    }

    /// Why this port refuses a command of `facts` (`None`: an unknown
    /// opcode), when its ALUA state is standby or unavailable and the
    /// command is not one that state serves
    /// ([`Facts::standby_ok`](crate::scsi::table::Facts::standby_ok),
    /// [`Facts::unavailable_ok`](crate::scsi::table::Facts::unavailable_ok)).
    pub(crate) fn port_refusal(&self, facts: Option<&Facts>) -> Option<ScsiError> {
        let cfg = self.cfg.alua.as_ref()?;
        let (standby_ok, unavailable_ok) =
            facts.map_or((false, false), |f| (f.standby_ok, f.unavailable_ok));
        cfg.refusal(self.ownership(), standby_ok, unavailable_ok)
    }

    /// Whether this port is in the ALUA standby or unavailable state (it
    /// serves only a few commands).
    pub(crate) fn port_inaccessible(&self) -> bool {
        self.port_refusal(None).is_some()
    }

    /// Commands other than the few exempt ones must not run yet: a unit
    /// attention waits, a SANITIZE runs or failed, or the port is standby
    /// or unavailable. The fast paths (inline reads, asynchronous plans)
    /// then leave the command to the full path, which reports it.
    pub(crate) fn holds_commands(&self) -> bool {
        self.unit_attention_pending()
            || self.sanitize_state() != SanitizeState::Idle
            || self.port_inaccessible()
    }

    /// Why the access states last changed.
    pub(crate) fn alua_status(&self) -> StatusCode {
        StatusCode::from_u8(self.alua_status.load(Ordering::Acquire))
    }

    /// This daemon took the ownership for a SET TARGET PORT GROUPS (the
    /// backend confirmed it): the states change now, without the unit
    /// attention an implicit change queues (the initiator asked for it).
    pub(crate) fn ownership_taken_on_request(&self) {
        if let Some(cell) = self.ownership.get() {
            // The backend just wrote through the cluster: it is reachable.
            cell.set_reachable(true);
            cell.set(Ownership::Local);
            self.ownership_seen
                .store(Ownership::Local.encode(), Ordering::Release);
        }
        self.alua_status.store(
            StatusCode::AlteredBySetTargetPortGroups as u8,
            Ordering::Release,
        );
    }

    /// A unit attention waits to be reported.
    pub(crate) fn unit_attention_pending(&self) -> bool {
        self.ua_pending.load(Ordering::Acquire)
    }

    /// Turns the backend's pending events into unit attentions.
    pub(crate) fn poll_events(&self) {
        self.poll_backend_events();
    }

    /// The copy manager's state: running EXTENDED COPY commands and held
    /// results.
    pub(crate) fn copies(&self) -> &CopyResults {
        &self.copies
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

    /// Applies the kernel device's transfer limits (configfs
    /// `hw_max_sectors`, `hw_block_size`, `optimal_sectors` and the ring's
    /// size): MAXIMUM and OPTIMAL TRANSFER LENGTH (VPD B0h) and the length
    /// check of every READ/WRITE/VERIFY follow them from the next command
    /// on. Called at device open and again on RECONFIG.
    pub(crate) fn set_device_limits(&self, limits: &DeviceLimits) {
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

    /// Queues CAPACITY DATA HAS CHANGED (2A/09), e.g. after a resize.
    pub(crate) fn capacity_changed(&self) {
        self.queue_ua(Asc::CAPACITY_DATA_HAS_CHANGED);
    }

    /// Sets WCE from outside (e.g. a netlink WRITECACHE reconfig) and queues
    /// MODE PARAMETERS CHANGED (2A/01). Ignored when the backend has no
    /// volatile cache.
    /// Turning the cache off flushes what it holds.
    pub(crate) fn set_write_cache(&self, on: bool) {
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
    pub(crate) fn write_cache_enabled(&self) -> bool {
        self.wce.load(Ordering::Acquire)
    }

    /// The configuration this LUN was built with.
    pub(crate) fn config(&self) -> &LunConfig {
        &self.cfg
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &Arc<dyn BlockBackend> {
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
    pub(crate) fn take_selected_write_cache(&self) -> Option<bool> {
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
    pub(crate) fn write_gate(&self) -> SharedGuard<'_> {
        self.caw_gate.shared()
    }

    /// Runs `f`, which submits a write to an asynchronous backend, with the
    /// shared side of the gate held by its token (dropped on completion):
    /// now, or when the COMPARE AND WRITE that holds the gate releases it.
    /// Never waits.
    pub(crate) fn admit_async_write(&self, f: AdmitFn) {
        self.caw_gate.admit(f);
    }

    /// Exclusive side of the gate, held across COMPARE AND WRITE.
    pub(crate) fn caw_gate(&self) -> ExclusiveGuard<'_> {
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
            if before != now.encode()
                && self
                    .ownership_seen
                    .compare_exchange(before, now.encode(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                && before != u32::MAX
                && cfg.states_differ(Ownership::decode(before), now)
            {
                self.alua_status
                    .store(StatusCode::AlteredImplicitly as u8, Ordering::Release);
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

impl std::fmt::Debug for LunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LunState")
            .field("cfg", &self.cfg)
            .field("caps", &self.backend.caps())
            .field("wce", &self.write_cache_enabled())
            .finish_non_exhaustive()
    }
}
