//! The process-wide pool of threads that runs blocking backstore I/O off the
//! device threads, shared fairly by every backstore.
//!
//! Each backstore queues its jobs on a [`IoLane`] of the pool. A lane may have
//! at most `limit` jobs running at once, and workers take jobs from the lanes
//! round-robin (one job per lane per turn), so a backstore whose calls block
//! holds at most `limit` threads and never delays the jobs of another lane
//! queued behind its own.
//!
//! One state under a mutex, and a condition variable that is signalled only
//! when a worker is asleep and a job it could start is waiting: a worker that
//! finishes a job takes the next one without a wake-up, and a job queued while
//! every worker is busy costs no system call.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::BackstoreError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads shared by the lanes opened on them. Cheap to clone; the
/// workers finish the queued jobs and exit when the last clone and the last
/// lane are dropped.
#[derive(Debug, Clone)]
pub struct IoPool {
    owner: Arc<Owner>,
}

/// Closes the pool when dropped (held by every [`IoPool`] clone and lane).
#[derive(Debug)]
struct Owner {
    shared: Arc<Shared>,
    threads: usize,
}

/// One backstore's queue on an [`IoPool`]. Dropping it lets its queued jobs
/// finish.
#[derive(Debug)]
pub struct IoLane {
    pool: IoPool,
    id: u64,
    limit: usize,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Shared")
            .field("lanes", &s.lanes.len())
            .field("startable", &s.startable)
            .field("idle", &s.idle)
            .field("closed", &s.closed)
            .finish()
    }
}

#[derive(Default)]
struct Lane {
    jobs: VecDeque<Job>,
    /// Jobs of this lane running now.
    running: usize,
    /// At most this many running at once.
    limit: usize,
    /// In `State::ready`.
    ready: bool,
    /// The [`IoLane`] was dropped: removed once its jobs are done.
    detached: bool,
}

impl Lane {
    /// Queued jobs that could start now.
    fn startable(&self) -> usize {
        self.jobs.len().min(self.limit.saturating_sub(self.running))
    }
}

#[derive(Default)]
struct State {
    lanes: HashMap<u64, Lane>,
    /// Lanes with a job that may start, each once, in turn order.
    ready: VecDeque<u64>,
    next_lane: u64,
    /// Sum of [`Lane::startable`] over the lanes.
    startable: usize,
    /// Workers waiting on the condition variable.
    idle: usize,
    /// Workers that will wake from a signal already sent.
    waking: usize,
    /// Live workers.
    alive: usize,
    /// Every handle is gone: workers exit once nothing can start.
    closed: bool,
}

impl State {
    /// Puts lane `id` at the back of the turn order if it has a job that may
    /// start and is not there yet.
    fn enqueue(&mut self, id: u64) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            if !lane.ready && lane.startable() > 0 {
                lane.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    /// The next job in turn, booked as running.
    fn take(&mut self) -> Option<(u64, Job)> {
        while let Some(id) = self.ready.pop_front() {
            let Some(lane) = self.lanes.get_mut(&id) else {
                continue;
            };
            lane.ready = false;
            if lane.startable() == 0 {
                continue;
            }
            let Some(job) = lane.jobs.pop_front() else {
                continue;
            };
            lane.running += 1;
            self.startable -= 1;
            self.enqueue(id);
            return Some((id, job));
        }
        None
    }

    /// A job of lane `id` ended.
    fn done(&mut self, id: u64) {
        let Some(lane) = self.lanes.get_mut(&id) else {
            return;
        };
        let before = lane.startable();
        lane.running = lane.running.saturating_sub(1);
        self.startable += lane.startable() - before;
        if lane.detached && lane.jobs.is_empty() && lane.running == 0 {
            self.lanes.remove(&id);
        } else {
            self.enqueue(id);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IoPool {
    /// Starts `threads` (at least 1) workers named `<name>-io<i>`.
    pub fn new(name: &str, threads: usize) -> Result<IoPool, BackstoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        });
        let threads = threads.max(1);
        let pool = IoPool {
            owner: Arc::new(Owner {
                shared: Arc::clone(&shared),
                threads,
            }),
        };
        for i in 0..threads {
            shared.lock().alive += 1;
            let for_worker = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("{name}-io{i}"))
                .spawn(move || worker(&for_worker));
            if let Err(source) = spawned {
                shared.lock().alive -= 1;
                // `pool` is dropped here: the workers already started exit.
                return Err(BackstoreError::Io {
                    what: "spawn I/O worker thread".into(),
                    source,
                });
            }
        }
        Ok(pool)
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.owner.threads
    }

    /// A new lane whose jobs run at most `limit` (at least 1) at once.
    pub fn lane(&self, limit: usize) -> IoLane {
        let limit = limit.max(1);
        let mut s = self.owner.shared.lock();
        let id = s.next_lane;
        s.next_lane += 1;
        s.lanes.insert(
            id,
            Lane {
                limit,
                ..Lane::default()
            },
        );
        drop(s);
        IoLane {
            pool: self.clone(),
            id,
            limit,
        }
    }
}

impl IoLane {
    /// Jobs of this lane that may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Worker threads of the pool (shared with other lanes).
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Runs `f` on a worker and awaits its result: [`BackstoreError::Panicked`]
    /// when it panicked, [`BackstoreError::WorkersGone`] when the workers are
    /// gone.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, BackstoreError>> + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f))
                .map_err(|p| BackstoreError::Panicked(crate::device::panic_message(p.as_ref())));
            let _ = tx.send(r);
        });
        async move {
            if !queued {
                return Err(BackstoreError::WorkersGone);
            }
            rx.await.map_err(|_| BackstoreError::WorkersGone)?
        }
    }

    /// Queues `job`; `false` when the workers are gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let shared = &self.pool.owner.shared;
        let mut s = shared.lock();
        if s.closed || s.alive == 0 {
            return false;
        }
        let Some(lane) = s.lanes.get_mut(&self.id) else {
            return false;
        };
        let before = lane.startable();
        lane.jobs.push_back(Box::new(job));
        let added = lane.startable() - before;
        s.startable += added;
        s.enqueue(self.id);
        // Wake a sleeper only if the jobs that may start outnumber the
        // workers already on their way; busy workers look for work before
        // sleeping.
        let wake = added > 0 && s.idle > s.waking && s.startable > s.waking;
        if wake {
            s.waking += 1;
        }
        drop(s);
        if wake {
            shared.work.notify_one();
        }
        true
    }
}

impl Drop for IoLane {
    fn drop(&mut self) {
        let mut s = self.pool.owner.shared.lock();
        if let Some(lane) = s.lanes.get_mut(&self.id) {
            lane.detached = true;
            if lane.jobs.is_empty() && lane.running == 0 {
                s.lanes.remove(&self.id);
            }
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

fn worker(shared: &Shared) {
    let mut s = shared.lock();
    loop {
        if let Some((lane, job)) = s.take() {
            drop(s);
            // A job handles its own panics (a device's command fails or is
            // retried, see `device::exec`); this only keeps the shared thread
            // alive for the other lanes.
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("backstore job panicked");
            }
            s = shared.lock();
            s.done(lane);
            continue;
        }
        // Jobs held back by their lane's limit are taken by the workers
        // running that lane's jobs, once those end.
        if s.closed {
            s.alive -= 1;
            return;
        }
        s.idle += 1;
        s = shared.work.wait(s).unwrap_or_else(PoisonError::into_inner);
        s.idle -= 1;
        s.waking = s.waking.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests;
