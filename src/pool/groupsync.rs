//! Group commit of data syncs: concurrent FUA writes share one `fdatasync`
//! instead of queueing for one each.
//!
//! A caller needs a sync that *starts* after its call (its write completed
//! before it called). Syncs are numbered; a caller arriving while sync `n`
//! runs waits for sync `n + 1`, which one of the waiters starts as soon as
//! `n` ends and which covers all of them.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Serialises data syncs and lets callers that arrive together share one.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    gen: Mutex<Gen>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Gen {
    /// Number of the last sync started.
    started: u64,
    /// Number of the last sync finished (syncs finish in order).
    completed: u64,
    /// A sync is running.
    running: bool,
    /// Number of the last sync that failed (0: none).
    last_failed: u64,
}

impl GroupSync {
    fn lock(&self) -> MutexGuard<'_, Gen> {
        self.gen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a call of `sync` that started after this call began has
    /// finished: its result if this caller ran it, otherwise `Ok` or, if
    /// that sync or any later one failed, an error (conservative: after a
    /// failed `fdatasync` nothing written before it can be trusted).
    pub(crate) fn sync(&self, sync: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut g = self.lock();
        let want = g.started + 1;
        loop {
            if g.completed >= want {
                return if g.last_failed >= want {
                    Err(io::Error::other("a shared data sync failed"))
                } else {
                    Ok(())
                };
            }
            if !g.running {
                g.running = true;
                g.started += 1;
                let n = g.started;
                drop(g);
                let res = sync();
                let mut g = self.lock();
                g.running = false;
                g.completed = n;
                if res.is_err() {
                    g.last_failed = n;
                }
                drop(g);
                self.done.notify_all();
                return res;
            }
            g = self.done.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Writes land in `volatile`; a sync copies what was there when it
    /// started into `durable` (what a real fdatasync guarantees).
    #[derive(Default)]
    struct Disk {
        volatile: Mutex<HashSet<usize>>,
        durable: Mutex<HashSet<usize>>,
        syncs: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Disk {
        fn sync(&self) -> io::Result<()> {
            let snapshot = self.volatile.lock().unwrap().clone();
            self.syncs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            if self.fail.load(Ordering::SeqCst) {
                return Err(io::Error::other("EIO"));
            }
            self.durable.lock().unwrap().extend(snapshot);
            Ok(())
        }
    }

    #[test]
    fn every_caller_returns_after_a_sync_that_covers_its_write() {
        let (gs, disk) = (Arc::new(GroupSync::default()), Arc::new(Disk::default()));
        let callers = 16;
        let barrier = Arc::new(Barrier::new(callers));
        let threads: Vec<_> = (0..callers)
            .map(|i| {
                let (gs, disk, barrier) =
                    (Arc::clone(&gs), Arc::clone(&disk), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    for round in 0..5 {
                        let item = i * 100 + round;
                        barrier.wait();
                        disk.volatile.lock().unwrap().insert(item);
                        gs.sync(|| disk.sync()).unwrap();
                        assert!(disk.durable.lock().unwrap().contains(&item), "{item}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 80 FUA writes in bursts of 16; each sync takes 20 ms, so they share.
        assert!(disk.syncs.load(Ordering::SeqCst) < callers * 5);
    }

    #[test]
    fn a_failed_sync_fails_everyone_it_covered() {
        let (gs, disk) = (Arc::new(GroupSync::default()), Arc::new(Disk::default()));
        disk.fail.store(true, Ordering::SeqCst);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gs, disk) = (Arc::clone(&gs), Arc::clone(&disk));
                std::thread::spawn(move || gs.sync(|| disk.sync()))
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().is_err());
        }
        disk.fail.store(false, Ordering::SeqCst);
        assert!(gs.sync(|| disk.sync()).is_ok());
    }
}
