//! A device's life as one state machine: serving, draining after a stop
//! request, the final flush, flushed, finished (the actor gone); beside the
//! phase, whether the device failed and a panic an I/O thread reported for
//! the actor to re-raise. Every change is one transition method, so the
//! order in which a drain proceeds is written down in one place.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How far a requested stop has come (a drain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drain {
    /// When the stop was requested.
    pub since: Instant,
    /// The drain deadline passed and was enforced (running commands
    /// abandoned, the final flush skipped or given up on).
    pub forced: bool,
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking commands from the ring and serving them.
    Serving,
    /// A stop was requested: no new commands; those in flight finish.
    Draining(Drain),
    /// Nothing in flight; the final flush of the backstore runs.
    Flushing(Drain),
    /// The final flush is done (or skipped): the actor may stop.
    Flushed(Drain),
    /// The actor is gone (its ring closed).
    Finished,
}

/// The lifecycle of one device (kept under a lock in the device's shared
/// state).
#[derive(Debug)]
pub(crate) struct Lifecycle {
    phase: Phase,
    /// Why the device failed (the first reason wins); its commands then
    /// complete with HARDWARE ERROR. Orthogonal to the phase: a failed
    /// device still drains and finishes.
    failure: Option<String>,
    /// A panic of an I/O thread, for the actor to re-raise.
    crash: Option<String>,
    /// Commands the enforced drain deadline abandoned.
    abandoned: usize,
    /// Stop requesters, told when the device has finished.
    waiters: Vec<oneshot::Sender<()>>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            phase: Phase::Serving,
            failure: None,
            crash: None,
            abandoned: 0,
            waiters: Vec::new(),
        }
    }
}

impl Lifecycle {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the device failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Marks the device failed; true the first time (later reasons are
    /// dropped).
    pub fn fail(&mut self, reason: String) -> bool {
        if self.failure.is_some() {
            return false;
        }
        self.failure = Some(reason);
        true
    }

    /// Records an I/O thread's panic (the first one until taken).
    pub fn report_crash(&mut self, msg: String) {
        self.crash.get_or_insert(msg);
    }

    /// Takes a recorded I/O thread panic.
    pub fn take_crash(&mut self) -> Option<String> {
        self.crash.take()
    }

    /// Serving → Draining: a stop was requested (later requests change
    /// nothing). The receiver fires once the device has finished (at once
    /// if it already has).
    pub fn request_stop(&mut self, now: Instant) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match self.phase {
            Phase::Serving => {
                self.phase = Phase::Draining(Drain {
                    since: now,
                    forced: false,
                });
                self.waiters.push(tx);
            }
            Phase::Finished => {
                let _ = tx.send(());
            }
            Phase::Draining(_) | Phase::Flushing(_) | Phase::Flushed(_) => self.waiters.push(tx),
        }
        rx
    }

    /// The drain in progress, if a stop was requested and the actor is not
    /// gone.
    pub fn drain(&self) -> Option<Drain> {
        match self.phase {
            Phase::Draining(d) | Phase::Flushing(d) | Phase::Flushed(d) => Some(d),
            Phase::Serving | Phase::Finished => None,
        }
    }

    /// Marks the drain forced, once, when it has waited `timeout` or longer
    /// at `now`: true for the caller that must then give up on the running
    /// commands.
    pub fn claim_drain_overdue(&mut self, timeout: Option<Duration>, now: Instant) -> bool {
        let Some(timeout) = timeout else {
            return false;
        };
        match &mut self.phase {
            Phase::Draining(d) | Phase::Flushing(d) | Phase::Flushed(d)
                if !d.forced && now.saturating_duration_since(d.since) >= timeout =>
            {
                d.forced = true;
                true
            }
            _ => false,
        }
    }

    /// Draining → Flushing: true once, for the caller that runs the final
    /// flush.
    pub fn claim_flush(&mut self) -> bool {
        match self.phase {
            Phase::Draining(d) => {
                self.phase = Phase::Flushing(d);
                true
            }
            _ => false,
        }
    }

    /// Draining or Flushing → Flushed: the final flush is done (or skipped,
    /// by a forced drain or for want of an I/O thread).
    pub fn set_flushed(&mut self) {
        if let Phase::Draining(d) | Phase::Flushing(d) = self.phase {
            self.phase = Phase::Flushed(d);
        }
    }

    /// Any phase → Finished: the actor is gone; every stop requester is
    /// told.
    pub fn set_finished(&mut self) {
        self.phase = Phase::Finished;
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// Records commands abandoned by the drain deadline.
    pub fn add_abandoned(&mut self, n: usize) {
        self.abandoned = self.abandoned.saturating_add(n);
    }

    /// Commands abandoned by the drain deadline.
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_goes_serving_draining_flushing_flushed_finished() {
        let mut l = Lifecycle::default();
        let t0 = Instant::now();
        assert_eq!(l.phase(), Phase::Serving);
        assert!(!l.claim_flush(), "no flush while serving");
        let mut first = l.request_stop(t0);
        let d = Drain {
            since: t0,
            forced: false,
        };
        assert_eq!(l.phase(), Phase::Draining(d));
        let mut second = l.request_stop(t0 + Duration::from_secs(1));
        assert_eq!(l.drain().map(|d| d.since), Some(t0), "first request");
        assert!(l.claim_flush());
        assert!(!l.claim_flush(), "once");
        assert_eq!(l.phase(), Phase::Flushing(d));
        l.set_flushed();
        assert_eq!(l.phase(), Phase::Flushed(d));
        assert!(first.try_recv().is_err(), "not finished yet");
        l.set_finished();
        assert_eq!((first.try_recv(), second.try_recv()), (Ok(()), Ok(())));
        assert_eq!(l.phase(), Phase::Finished);
        assert_eq!(l.drain(), None);
        let mut late = l.request_stop(t0);
        assert_eq!(late.try_recv(), Ok(()), "already gone: nothing to wait for");
        l.set_flushed();
        assert_eq!(l.phase(), Phase::Finished, "no way back");
    }

    #[test]
    fn the_drain_deadline_is_claimed_once_and_only_when_due() {
        let mut l = Lifecycle::default();
        let t0 = Instant::now();
        let limit = Some(Duration::from_secs(5));
        assert!(!l.claim_drain_overdue(limit, t0 + Duration::from_secs(9)));
        let _rx = l.request_stop(t0);
        assert!(!l.claim_drain_overdue(None, t0 + Duration::from_secs(9)));
        assert!(!l.claim_drain_overdue(limit, t0 + Duration::from_secs(4)));
        assert!(l.claim_drain_overdue(limit, t0 + Duration::from_secs(5)));
        assert!(!l.claim_drain_overdue(limit, t0 + Duration::from_secs(9)));
        assert_eq!(l.drain().map(|d| d.forced), Some(true));
        // A forced drain skips the flush.
        l.set_flushed();
        assert!(matches!(
            l.phase(),
            Phase::Flushed(Drain { forced: true, .. })
        ));
    }

    #[test]
    fn a_hung_final_flush_can_still_be_given_up_on() {
        let mut l = Lifecycle::default();
        let t0 = Instant::now();
        let _rx = l.request_stop(t0);
        assert!(l.claim_flush());
        assert!(l.claim_drain_overdue(Some(Duration::ZERO), t0));
        assert_eq!(l.drain().map(|d| d.forced), Some(true));
    }

    #[test]
    fn failure_and_crash_keep_the_first_reason() {
        let mut l = Lifecycle::default();
        assert!(l.fail("ring unusable".into()));
        assert!(!l.fail("later".into()));
        assert_eq!(l.failure(), Some("ring unusable"));
        l.report_crash("a".into());
        l.report_crash("b".into());
        assert_eq!(l.take_crash().as_deref(), Some("a"));
        assert_eq!(l.take_crash(), None);
        l.add_abandoned(2);
        l.add_abandoned(usize::MAX);
        assert_eq!(l.abandoned(), usize::MAX);
    }
}
