//! Crash restart: actix's stock `Supervisor` does not restart an actor whose
//! handler panicked. This wrapper polls the actor's `ContextFut` inside
//! `catch_unwind`, and on a panic calls `ContextFut::restart()` (the same
//! actor value, rebuilt by `Supervised::restarting`) within a restart budget.
//! When the budget is exhausted the device is failed (its commands complete
//! with CHECK CONDITION) rather than restarted forever.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::dev::ContextFut;
use actix::{Addr, Context};

use super::actor::DeviceActor;
use super::exec::panic_message;
use super::shared::DeviceShared;
use super::threads::Placement;

/// Where the actor runs, and what ends with it.
#[derive(Debug)]
pub(crate) enum Thread {
    /// On the arbiter of whoever spawned it.
    Caller,
    /// On an arbiter of its own, stopped when the actor is done.
    Own,
    /// On a shared device thread, where it is counted until done.
    Shared(Placement),
}

/// How many panics a device may survive within a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed within `window`; one more fails the device.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartBudget {
    /// 5 restarts per 60 seconds.
    fn default() -> Self {
        RestartBudget {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Panics tolerated after the device already failed before giving up on it.
const MAX_PANICS_WHEN_FAILED: u32 = 16;

/// The future that runs a device actor and restarts it on panic.
pub(crate) struct RestartOnPanic {
    fut: Option<ContextFut<DeviceActor, Context<DeviceActor>>>,
    // Keeps the mailbox connected so that `restart()` always succeeds.
    _addr: Addr<DeviceActor>,
    shared: Arc<DeviceShared>,
    budget: RestartBudget,
    recent: VecDeque<Instant>,
    panics_when_failed: u32,
    thread: Option<Thread>,
}

impl RestartOnPanic {
    pub fn new(
        fut: ContextFut<DeviceActor, Context<DeviceActor>>,
        shared: Arc<DeviceShared>,
        budget: RestartBudget,
        thread: Thread,
    ) -> RestartOnPanic {
        let addr = fut.address();
        RestartOnPanic {
            fut: Some(fut),
            _addr: addr,
            shared,
            budget,
            recent: VecDeque::new(),
            panics_when_failed: 0,
            thread: Some(thread),
        }
    }

    /// Books one panic; false when the device must not be restarted again.
    fn on_panic(&mut self, msg: &str) -> bool {
        let now = Instant::now();
        if self.shared.is_failed() {
            self.panics_when_failed += 1;
            tracing::error!(panic = msg, "failed device panicked again");
            return self.panics_when_failed <= MAX_PANICS_WHEN_FAILED;
        }
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.budget.window)
        {
            self.recent.pop_front();
        }
        let n = self.recent.len();
        tracing::error!(
            panic = msg,
            recent = n,
            budget = self.budget.max_restarts,
            "device actor panicked; restarting"
        );
        if n > self.budget.max_restarts as usize {
            self.shared.fail(format!(
                "restart budget exhausted: {n} panics within {:?}; last: {msg}",
                self.budget.window
            ));
        }
        true
    }

    fn finish(&mut self) {
        self.fut = None; // drops the actor, and with it the ring
        let own = match self.thread.take() {
            Some(Thread::Own) => true,
            // Frees the device's place on the shared thread (before anyone
            // waiting for the device to finish is told).
            Some(Thread::Shared(placement)) => {
                drop(placement);
                false
            }
            Some(Thread::Caller) | None => false,
        };
        self.shared.set_finished();
        if own {
            actix::Arbiter::current().stop();
        }
    }
}

impl Future for RestartOnPanic {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let span = this.shared.span.clone();
        let _entered = span.enter();
        loop {
            let Some(fut) = this.fut.as_mut() else {
                return Poll::Ready(());
            };
            let res = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx)));
            let msg = match res {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => {
                    this.finish();
                    return Poll::Ready(());
                }
                Err(payload) => panic_message(payload.as_ref()),
            };
            if !this.on_panic(&msg) {
                tracing::error!("device abandoned after repeated panics");
                this.finish();
                return Poll::Ready(());
            }
            let restarted = this
                .fut
                .as_mut()
                .map(|f| catch_unwind(AssertUnwindSafe(|| f.restart())));
            if !matches!(restarted, Some(Ok(true))) {
                tracing::error!("device actor could not be restarted");
                this.finish();
                return Poll::Ready(());
            }
        }
    }
}
