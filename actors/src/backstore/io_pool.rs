//! A small pool of threads that runs blocking backstore I/O off the actor
//! threads, many commands in flight at once.
//!
//! One queue under a mutex, and a condition variable that is signalled only
//! when a worker is asleep: a worker that finishes a job takes the next one
//! without a wake-up, and a job queued while every worker is busy costs no
//! system call. (The previous design, workers taking turns holding the
//! receiver of a channel, cost two wake-ups per job: the channel's and the
//! mutex hand-off to the next waiting worker.)

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::BackstoreError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads fed from one queue; they finish the queued jobs and exit
/// when the pool is dropped.
#[derive(Debug)]
pub struct IoPool {
    shared: Arc<Shared>,
    threads: usize,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Shared")
            .field("queued", &s.queue.len())
            .field("idle", &s.idle)
            .field("closed", &s.closed)
            .finish()
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Workers waiting on the condition variable.
    idle: usize,
    /// Workers that will wake from a signal already sent.
    waking: usize,
    /// Live workers.
    alive: usize,
    /// The pool was dropped: workers exit once the queue is empty.
    closed: bool,
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
            shared: Arc::clone(&shared),
            threads,
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
        self.threads
    }

    /// Queues `job`; `false` when the workers are gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let mut s = self.shared.lock();
        if s.closed || s.alive == 0 {
            return false;
        }
        s.queue.push_back(Box::new(job));
        // Wake a sleeper only if the jobs queued outnumber the workers
        // already on their way; busy workers look at the queue before
        // sleeping.
        let wake = s.idle > s.waking && s.queue.len() > s.waking;
        if wake {
            s.waking += 1;
        }
        drop(s);
        if wake {
            self.shared.work.notify_one();
        }
        true
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

fn worker(shared: &Shared) {
    let mut s = shared.lock();
    loop {
        if let Some(job) = s.queue.pop_front() {
            drop(s);
            // A job handles its own panics; this only keeps the thread alive.
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("backstore job panicked");
            }
            s = shared.lock();
            continue;
        }
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
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_jobs_concurrently_and_survives_panics() {
        let pool = IoPool::new("t", 3).unwrap();
        assert!(pool.spawn(|| panic!("boom")));
        let (tx, rx) = mpsc::channel();
        // Three jobs that each wait for the others: only completes when they
        // run at the same time on different threads.
        let barrier = Arc::new(std::sync::Barrier::new(3));
        for i in 0..3 {
            let (tx, b) = (tx.clone(), Arc::clone(&barrier));
            assert!(pool.spawn(move || {
                b.wait();
                tx.send(i).unwrap();
            }));
        }
        let mut got: Vec<i32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn every_job_runs_once_under_bursts() {
        // Bursts from several threads with sleeps in between, so workers
        // go idle and are woken again many times.
        let pool = Arc::new(IoPool::new("t", 4).unwrap());
        let (tx, rx) = mpsc::channel();
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let (pool, tx) = (Arc::clone(&pool), tx.clone());
                thread::spawn(move || {
                    for burst in 0..50u32 {
                        for j in 0..(burst % 7) {
                            let tx = tx.clone();
                            assert!(pool.spawn(move || tx.send((p, burst, j)).unwrap()));
                        }
                        if burst % 5 == 0 {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        drop(tx);
        let mut got: Vec<(u32, u32, u32)> = Vec::new();
        while let Ok(v) = rx.recv_timeout(Duration::from_secs(10)) {
            got.push(v);
            if got.len() == 3 * (0..50u32).map(|b| b % 7).sum::<u32>() as usize {
                break;
            }
        }
        got.sort_unstable();
        let mut want: Vec<(u32, u32, u32)> = (0..3)
            .flat_map(|p| (0..50).flat_map(move |b| (0..b % 7).map(move |j| (p, b, j))))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn queued_jobs_finish_after_drop_and_spawn_fails_after() {
        let pool = IoPool::new("t", 1).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        // The single worker blocks in the first job while two more queue.
        assert!(pool.spawn(move || gate_rx.recv().unwrap()));
        for i in 0..2 {
            let tx = tx.clone();
            assert!(pool.spawn(move || tx.send(i).unwrap()));
        }
        let shared = Arc::clone(&pool.shared);
        drop(pool);
        gate_tx.send(()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        // The worker exits once the queue is empty.
        for _ in 0..1000 {
            if shared.lock().alive == 0 {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(shared.lock().alive, 0);
        let closed = IoPool { shared, threads: 1 };
        assert!(!closed.spawn(|| ()));
    }
}
