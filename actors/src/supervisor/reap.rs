//! Dead devices: reaped and retried. Checked every second (the supervisor's
//! housekeeping tick), at a cost that does not grow with idle devices: one
//! read of `class/uio` (a served device's name is read again only when its
//! entry is new since its last check) and in-memory state:
//!
//! - a device whose uio is gone from sysfs (its REMOVED was lost) is stopped
//!   and dropped: fd, mapping and volume released;
//! - a device whose actor failed (restart budget exhausted, ring unusable) or
//!   is gone without a stop (abandoned after repeated panics) is stopped and
//!   opened again, with a back-off (1 s, doubling up to 5 min) while it keeps
//!   failing.
//!
//! Each is logged, and a device waiting for its retry is listed by
//! [`super::ListFailed`] with the retry's number and delay.

use super::actor::{FailedDevice, Managed, Supervisor};
use super::sysfs;
use actix::prelude::*;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tcmud_core::netlink::UioName;

/// First retry delay; it doubles with each retry up to [`RETRY_MAX`].
pub(super) const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(300);
/// A device served this long since its last retry starts its back-off over.
const HEALTHY_AFTER: Duration = Duration::from_secs(600);

/// A device of ours being retried.
#[derive(Debug, Clone)]
pub(super) struct Retry {
    pub(super) uio: UioName,
    /// Retries done so far.
    pub(super) attempts: u32,
    /// When the next one is due (None: the device is served again).
    pub(super) due: Option<Instant>,
    /// When the last retry was made.
    pub(super) last: Instant,
}

/// The back-off before retry number `attempt` (0-based).
pub(super) fn backoff(first: Duration, max: Duration, attempt: u32) -> Duration {
    first
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

impl Supervisor {
    /// The housekeeping tick: drop devices whose uio is gone, retry the dead
    /// ones, start due retries.
    pub(super) fn reap(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let minors: Vec<u32> = self.devices.keys().copied().collect();
        // One directory read; names only of the entries that are new since
        // their last check (1,000 served devices: no file opened per tick).
        let listed = sysfs::list_uio(&self.cfg);
        self.uio_checked.retain(|m, _| self.devices.contains_key(m));
        for minor in minors {
            let Some(m) = self.devices.get(&minor) else {
                continue;
            };
            let ino = listed.as_ref().map(|l| l.get(&minor).copied());
            let (same, now) = match ino {
                // The entry is gone: so is the kernel device.
                Some(None) => (false, None),
                Some(Some(ino)) if self.uio_checked.get(&minor) == Some(&ino) => (true, None),
                _ => {
                    // The same kernel device (hba and name); its dev_config
                    // may differ for a moment (a change the kernel applied
                    // before its event came).
                    let now = sysfs::uio_name(&self.cfg, minor);
                    let same = now
                        .as_deref()
                        .and_then(|n| UioName::parse(n).ok())
                        .is_some_and(|u| u.hba == m.uio.hba && u.dev == m.uio.dev);
                    if let (true, Some(Some(ino))) = (same, ino) {
                        self.uio_checked.insert(minor, ino);
                    }
                    (same, now)
                }
            };
            if !same {
                tracing::warn!(minor, dev_config = %m.uio.dev_config,
                    sysfs = now.as_deref().unwrap_or("<no uio device>"),
                    "uio device gone without a REMOVED event; device dropped");
                self.uio_checked.remove(&minor);
                self.retries.remove(&minor);
                self.stop_reaped(minor, false, ctx);
                continue;
            }
            let why = if m.ctl.is_finished() {
                "device actor gone (abandoned)"
            } else if m.ctl.is_failed() {
                "device actor failed for good"
            } else {
                if self
                    .retries
                    .get(&minor)
                    .is_some_and(|r| r.last.elapsed() >= HEALTHY_AFTER)
                {
                    self.retries.remove(&minor);
                }
                continue;
            };
            let uio = m.uio.clone();
            let r = self.retries.entry(minor).or_insert(Retry {
                uio: uio.clone(),
                attempts: 0,
                due: None,
                last: Instant::now(),
            });
            let delay = backoff(self.retry_first, self.retry_max, r.attempts);
            r.uio = uio.clone();
            r.due = Some(Instant::now() + delay);
            tracing::error!(minor, dev_config = %uio.dev_config, retry = r.attempts + 1,
                ?delay, "{why}; device closed, re-opened after the delay");
            self.stop_reaped(minor, true, ctx);
        }
        self.start_due_retries();
    }

    /// Stops `minor` (removed from the served devices); while it waits for
    /// a retry it is listed as failed and left alone by rescans.
    fn stop_reaped(&mut self, minor: u32, retry: bool, ctx: &mut Context<Self>) {
        let Some(Managed { uio, ctl, .. }) = self.devices.remove(&minor) else {
            return;
        };
        if retry {
            self.refused.insert(
                minor,
                format!("tcm-user/{}/{}/{}", uio.hba, uio.dev, uio.dev_config),
            );
            self.failed.insert(
                minor,
                FailedDevice {
                    minor,
                    dev_config: uio.dev_config.clone(),
                    why: self.retry_note(minor),
                },
            );
        }
        self.draining.insert(minor, VecDeque::new());
        ctx.spawn(ctl.stop().into_actor(self).map(move |(), act, ctx| {
            tracing::info!(minor, retry, "dead device closed");
            act.drain_ended(minor, ctx);
        }));
    }

    fn retry_note(&self, minor: u32) -> String {
        match self.retries.get(&minor) {
            Some(Retry {
                attempts,
                due: Some(due),
                ..
            }) => format!(
                "device failed; retry {} in {:?}",
                attempts + 1,
                due.saturating_duration_since(Instant::now())
            ),
            _ => "device failed".into(),
        }
    }

    /// Re-opens the devices whose retry is due (and whose uio is still there).
    fn start_due_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .retries
            .iter()
            .filter(|(m, r)| {
                r.due.is_some_and(|d| d <= now)
                    && !self.devices.contains_key(m)
                    && !self.draining.contains_key(m)
            })
            .map(|(m, _)| *m)
            .collect();
        for minor in due {
            let Some(r) = self.retries.get_mut(&minor) else {
                continue;
            };
            let uio = r.uio.clone();
            let name = format!("tcm-user/{}/{}/{}", uio.hba, uio.dev, uio.dev_config);
            if sysfs::uio_name(&self.cfg, minor).as_deref() != Some(name.as_str()) {
                tracing::info!(minor, "device gone before its retry; forgotten");
                self.retries.remove(&minor);
                self.failed.remove(&minor);
                self.refused.remove(&minor);
                continue;
            }
            r.attempts += 1;
            r.last = now;
            r.due = None;
            let attempt = r.attempts;
            tracing::info!(minor, dev_config = %uio.dev_config, attempt, "retrying a dead device");
            self.refused.remove(&minor);
            self.failed.remove(&minor);
            if self.start_device(minor, uio, true) != 0 {
                // Setup failed: try again later, longer.
                let delay = backoff(self.retry_first, self.retry_max, attempt);
                if let Some(r) = self.retries.get_mut(&minor) {
                    r.due = Some(Instant::now() + delay);
                }
                let note = self.retry_note(minor);
                if let Some(f) = self.failed.get_mut(&minor) {
                    f.why = format!("{}; {note}", f.why);
                }
                tracing::warn!(minor, attempt, ?delay, "retry failed; trying again later");
            }
        }
    }
}
