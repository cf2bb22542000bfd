//! SANITIZE state of a logical unit (SBC-4 4.11): [`SanitizeState`] and
//! the [`SanitizeRun`] guard of a running one.

use std::sync::atomic::Ordering;

use super::LunState;
use crate::scsi::error::ScsiError;

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

/// A running SANITIZE ([`LunState::sanitize_begin`]): [`SanitizeRun::finish`]
/// leaves the running state; dropped unfinished (an error or a panic), the
/// unit enters the failure mode.
#[must_use]
pub(crate) struct SanitizeRun<'a> {
    lun: &'a LunState,
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

impl LunState {
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
}
