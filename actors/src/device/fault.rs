//! Test-only fault injection: panics at chosen points of a device's work, to
//! exercise the crash-restart path. Off unless a plan is given (in
//! [`super::DeviceOptions::fault`], or, with the `fault-injection` cargo
//! feature, in the `TCMUD_FAULT` environment variable).
//!
//! Plan syntax: comma-separated `point@n`, `point` one of `emulate` (an I/O
//! thread, after the SCSI emulation ran a command, so the result is lost),
//! `reply` (the device actor, before writing a finished result to the ring),
//! `timer` (the device actor's periodic tick). Each trigger fires once, at
//! the first time its point is reached after `n` commands were executed.
//!
//! At run time (with the feature): when `TCMUD_FAULT_FILE` names a file, each
//! device tick looks for it; if present, its content (same syntax, counts
//! relative to the commands executed so far, so `emulate@0` means "the next
//! command") is armed and the file deleted. A VM scenario can so crash a
//! device actor in the middle of a running fio.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Environment variable read (with the `fault-injection` feature) when no
/// plan was given explicitly.
pub const FAULT_ENV: &str = "TCMUD_FAULT";

/// Environment variable naming a trigger file polled by each device's tick
/// (with the `fault-injection` feature).
pub const FAULT_FILE_ENV: &str = "TCMUD_FAULT_FILE";

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// In an I/O thread, right after the SCSI emulation executed a command.
    Emulate,
    /// In the device actor, before a finished result is written to the ring.
    Reply,
    /// In the device actor's periodic timer.
    Timer,
}

/// A list of panics to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// `(point, after_n_commands)` triggers, each firing once.
    pub triggers: Vec<(FaultPoint, u64)>,
}

impl FaultPlan {
    /// Parses `emulate@100,reply@250,timer@3`.
    pub fn parse(s: &str) -> Result<FaultPlan, String> {
        let mut triggers = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (p, n) = item
                .split_once('@')
                .ok_or_else(|| format!("fault trigger {item:?}: expected point@n"))?;
            let point = match p {
                "emulate" => FaultPoint::Emulate,
                "reply" => FaultPoint::Reply,
                "timer" => FaultPoint::Timer,
                _ => return Err(format!("unknown fault point {p:?}")),
            };
            let n = n
                .parse()
                .map_err(|_| format!("fault trigger {item:?}: bad count"))?;
            triggers.push((point, n));
        }
        Ok(FaultPlan { triggers })
    }

    /// The plan from `TCMUD_FAULT` (only with the `fault-injection` feature).
    pub fn from_env() -> Option<FaultPlan> {
        if !cfg!(feature = "fault-injection") {
            return None;
        }
        let s = std::env::var(FAULT_ENV).ok()?;
        match FaultPlan::parse(&s) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "ignoring {FAULT_ENV}");
                None
            }
        }
    }
}

/// A device's armed plan and its command counter.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Mutex<Vec<(FaultPoint, u64)>>,
    /// Triggers in `armed` (read without the lock on every command).
    armed_count: AtomicUsize,
    /// A plan was given or a trigger file may arm one: count commands.
    live: bool,
    executed: AtomicU64,
    disabled: AtomicBool,
    trigger_file: Option<std::path::PathBuf>,
}

impl Faults {
    /// Arms `plan` (none: never fires).
    pub fn new(plan: Option<FaultPlan>) -> Faults {
        let trigger_file = if cfg!(feature = "fault-injection") {
            std::env::var_os(FAULT_FILE_ENV).map(Into::into)
        } else {
            None
        };
        let armed = plan.map(|p| p.triggers).unwrap_or_default();
        Faults {
            armed_count: AtomicUsize::new(armed.len()),
            live: !armed.is_empty() || trigger_file.is_some(),
            armed: Mutex::new(armed),
            executed: AtomicU64::new(0),
            disabled: AtomicBool::new(false),
            trigger_file,
        }
    }

    /// Arms the plan in the trigger file, if there is one (see the module
    /// docs); its counts are relative to now.
    pub fn poll_trigger_file(&self) {
        let Some(path) = &self.trigger_file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let _ = std::fs::remove_file(path);
        match FaultPlan::parse(&text) {
            Ok(plan) => {
                let now = self.executed.load(Ordering::Relaxed);
                tracing::warn!(?plan, now, "arming faults from {}", path.display());
                let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
                armed.extend(
                    plan.triggers
                        .iter()
                        .map(|&(p, n)| (p, now.saturating_add(n))),
                );
                self.armed_count.store(armed.len(), Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "bad fault trigger file"),
        }
    }

    /// A plan was given or a trigger file may arm one (the device then
    /// keeps its periodic tick, where the trigger file is looked for and
    /// `timer` triggers fire).
    pub fn live(&self) -> bool {
        self.live
    }

    /// Counts one executed command.
    pub fn count_executed(&self) {
        if !self.live {
            return;
        }
        self.executed.fetch_add(1, Ordering::Relaxed);
    }

    /// Disarms everything (a failed device injects nothing more).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
    }

    /// Panics if a trigger for `point` is due.
    pub fn hit(&self, point: FaultPoint) {
        if self.armed_count.load(Ordering::Relaxed) == 0 || self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let n = self.executed.load(Ordering::Relaxed);
        let fire = {
            let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
            match armed.iter().position(|&(p, at)| p == point && n >= at) {
                Some(i) => {
                    armed.swap_remove(i);
                    self.armed_count.store(armed.len(), Ordering::Relaxed);
                    true
                }
                None => false,
            }
        };
        if fire {
            panic!("injected fault at {point:?} after {n} commands");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_fire_once() {
        let p = FaultPlan::parse("emulate@2, timer@0").unwrap();
        assert_eq!(
            p.triggers,
            vec![(FaultPoint::Emulate, 2), (FaultPoint::Timer, 0)]
        );
        assert!(FaultPlan::parse("bogus@1").is_err());
        assert!(FaultPlan::parse("emulate").is_err());
        let f = Faults::new(Some(p));
        f.hit(FaultPoint::Emulate); // 0 executed: not yet
        f.count_executed();
        f.count_executed();
        let r = std::panic::catch_unwind(|| f.hit(FaultPoint::Emulate));
        assert!(r.is_err());
        f.hit(FaultPoint::Emulate); // fired once only
        f.hit(FaultPoint::Reply);
    }
}
