//! Crash isolation for backstore actors: actix's stock supervisor does not
//! restart an actor whose handler panicked. This future polls the actor's
//! `ContextFut` inside `catch_unwind`; on a panic the caller of the
//! message that panicked gets a mailbox error, and the actor is restarted
//! with its state (`ContextFut::restart`). Past a budget (5 panics within
//! 60 s) it is stopped instead: its devices keep serving through their
//! handles, and the directory opens a new actor for the next request.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::dev::ContextFut;
use actix::Context;

use super::actor::BackstoreActor;
use super::directory::Backstores;
use super::DevConfig;
use crate::device::panic_message;

/// Restarts allowed within [`WINDOW`].
const MAX_RESTARTS: usize = 5;
/// The sliding window of the restart budget.
const WINDOW: Duration = Duration::from_secs(60);

/// Runs a backstore actor, restarting it after a panic.
pub(crate) struct CatchPanics {
    fut: Option<ContextFut<BackstoreActor, Context<BackstoreActor>>>,
    key: DevConfig,
    directory: Backstores,
    recent: VecDeque<Instant>,
}

impl CatchPanics {
    pub fn new(
        fut: ContextFut<BackstoreActor, Context<BackstoreActor>>,
        key: DevConfig,
        directory: Backstores,
    ) -> CatchPanics {
        CatchPanics {
            fut: Some(fut),
            key,
            directory,
            recent: VecDeque::new(),
        }
    }

    /// Books a panic; false when the budget is spent.
    fn may_restart(&mut self) -> bool {
        let now = Instant::now();
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.len() <= MAX_RESTARTS
    }

    fn give_up(&mut self) {
        if let Some(fut) = self.fut.take() {
            self.directory.remove(&self.key, &fut.address());
        }
    }
}

impl Future for CatchPanics {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let Some(fut) = this.fut.as_mut() else {
                return Poll::Ready(());
            };
            let msg = match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => {
                    this.fut = None;
                    return Poll::Ready(());
                }
                Err(payload) => panic_message(payload.as_ref()),
            };
            if !this.may_restart() {
                tracing::error!(backstore = ?this.key, panic = msg,
                    "backstore actor panicked too often: stopped (its devices keep serving)");
                this.give_up();
                return Poll::Ready(());
            }
            tracing::error!(backstore = ?this.key, panic = msg, "backstore actor panicked; restarting");
            let restarted = this
                .fut
                .as_mut()
                .map(|f| catch_unwind(AssertUnwindSafe(|| f.restart())));
            if !matches!(restarted, Some(Ok(true))) {
                tracing::error!(backstore = ?this.key, "backstore actor could not be restarted");
                this.give_up();
                return Poll::Ready(());
            }
        }
    }
}
