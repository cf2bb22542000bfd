//! A small pool of threads that runs blocking backstore I/O off the actor
//! threads, many commands in flight at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use super::BackstoreError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads fed from one queue; they exit when the pool is dropped.
#[derive(Debug)]
pub struct IoPool {
    tx: Mutex<Sender<Job>>,
    threads: usize,
}

impl IoPool {
    /// Starts `threads` (at least 1) workers named `<name>-io<i>`.
    pub fn new(name: &str, threads: usize) -> Result<IoPool, BackstoreError> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("{name}-io{i}"))
                .spawn(move || worker(&rx))
                .map_err(|source| BackstoreError::Io {
                    what: "spawn I/O worker thread".into(),
                    source,
                })?;
        }
        Ok(IoPool {
            tx: Mutex::new(tx),
            threads,
        })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job`; `false` when the workers are gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        tx.send(Box::new(job)).is_ok()
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else { return };
        // A job handles its own panics; this only keeps the thread alive.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("backstore job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
}
