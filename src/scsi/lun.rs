//! [`Lun`]: the command entry points of one logical unit, over its
//! [`LunState`] (which the handlers see).

use std::sync::Arc;

use super::alua::OwnershipCell;
use super::ctx::{Ctx, Direct};
use super::device_limits::DeviceLimits;
use super::error::ScsiError;
use super::sense::{status, Sense};
use super::state::{LunConfig, LunRegistry, LunState, SanitizeState};
use super::table;
use super::write_gate::AdmitFn;
use crate::backend::{BlockBackend, BlockSink, BlockSource};

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

/// One logical unit: runs its commands over its state (mode state,
/// pending unit attentions, the COMPARE AND WRITE gate, over a shared
/// backend). `Send + Sync`.
pub struct Lun {
    /// Shared with the [`LunRegistry`] (weakly), which lets EXTENDED COPY
    /// reach this unit's state from another unit's command.
    state: Arc<LunState>,
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
        Lun {
            state: Arc::new(LunState::new(cfg, backend)),
        }
    }

    /// What the handlers see: the unit's state.
    pub(crate) fn state(&self) -> &LunState {
        &self.state
    }

    /// Runs one command. `data_out` holds the initiator's data (empty if
    /// none); `data_in` is sized to the command's data-in capacity.
    pub fn execute(&self, cdb: &[u8], data_out: &[u8], data_in: &mut [u8]) -> ScsiResponse {
        if let Some(ua) = self.pending_attention(cdb) {
            return ua;
        }
        let mut ctx = Ctx {
            state: &self.state,
            caps: self.state.caps(),
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
            let used = match cmd.data_out_len(cdb, &self.state.backend().caps(), data_out.len()) {
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
        self.state.poll_events();
        if self.state.holds_commands() {
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
            state: &self.state,
            caps: self.state.caps(),
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
    /// REQUEST SENSE (and SANITIZE after a failure) gets; then, on a
    /// standby port, the answer every command a standby port does not
    /// serve gets.
    fn pending_attention(&self, cdb: &[u8]) -> Option<ScsiResponse> {
        self.state.poll_events();
        let facts = table::facts(cdb);
        // An unknown opcode reports the unit attention like any command.
        if facts.is_some_and(|f| f.ua_exempt) {
            return None;
        }
        if let Some(ua) = self.state.take_unit_attention() {
            return Some(ScsiResponse::check_condition(ua));
        }
        if let Some(refused) = self.state.port_refusal(facts.as_ref()) {
            return Some(check_condition(cdb, refused));
        }
        let err = match self.state.sanitize_state() {
            SanitizeState::Idle => return None,
            SanitizeState::Running => ScsiError::SanitizeInProgress,
            _ if cdb.first() == Some(&super::sbc::sanitize::OPCODE) => return None,
            SanitizeState::Failed | SanitizeState::FailedAuse => ScsiError::SanitizeFailed,
        };
        Some(check_condition(cdb, err))
    }

    /// Sets the ownership signal the ALUA states follow (once; a later call
    /// is ignored). Without one the unit counts as
    /// [`Ownership::Unknown`](super::Ownership::Unknown).
    pub fn set_ownership(&self, cell: Arc<OwnershipCell>) {
        self.state.set_ownership(cell);
    }

    /// Applies the kernel device's transfer limits (configfs
    /// `hw_max_sectors`, `hw_block_size`, `optimal_sectors` and the ring's
    /// size): MAXIMUM and OPTIMAL TRANSFER LENGTH (VPD B0h) and the length
    /// check of every READ/WRITE/VERIFY follow them from the next command
    /// on. Called at device open and again on RECONFIG.
    pub fn set_device_limits(&self, limits: &DeviceLimits) {
        self.state.set_device_limits(limits);
    }

    /// Queues CAPACITY DATA HAS CHANGED (2A/09), e.g. after a resize.
    pub fn capacity_changed(&self) {
        self.state.capacity_changed();
    }

    /// Sets WCE from outside (e.g. a netlink WRITECACHE reconfig) and queues
    /// MODE PARAMETERS CHANGED (2A/01). Ignored when the backend has no
    /// volatile cache.
    /// Turning the cache off flushes what it holds.
    pub fn set_write_cache(&self, on: bool) {
        self.state.set_write_cache(on);
    }

    /// Whether the write cache is enabled (WCE in the caching mode page).
    pub fn write_cache_enabled(&self) -> bool {
        self.state.write_cache_enabled()
    }

    /// The configuration this LUN was built with.
    pub fn config(&self) -> &LunConfig {
        self.state.config()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn BlockBackend> {
        self.state.backend()
    }

    /// The WCE value an initiator last set with MODE SELECT, once per
    /// change, for the daemon to persist (so a restarted daemon does not
    /// come back with the cache setting the initiator changed).
    pub fn take_selected_write_cache(&self) -> Option<bool> {
        self.state.take_selected_write_cache()
    }

    /// Runs `f`, which submits a write to an asynchronous backend, with the
    /// shared side of the gate held by its token (dropped on completion):
    /// now, or when the COMPARE AND WRITE that holds the gate releases it.
    /// Never waits.
    pub fn admit_async_write(&self, f: AdmitFn) {
        self.state.admit_async_write(f);
    }
}

impl LunRegistry {
    /// Makes `lun` reachable under its NAA designator, and lets its
    /// EXTENDED COPY commands reach the other LUNs registered here. A LUN
    /// registered earlier under the same designator (the same volume served
    /// again) is replaced.
    pub fn register(self: &Arc<Self>, lun: &Arc<Lun>) {
        self.insert(&lun.state);
    }

    /// Removes `lun` (if it is the one registered under its designator).
    pub fn unregister(&self, lun: &Arc<Lun>) {
        self.remove(&lun.state);
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
        self.state.fmt(f)
    }
}
