//! The LUN's COMPARE AND WRITE gate: every writer holds it shared, a
//! COMPARE AND WRITE the SCSI layer emulates (read, compare, write) holds
//! it exclusively, so no write lands between its read and its write.
//!
//! Writers are of two kinds: a handler on an I/O thread holds a guard for
//! the duration of its call ([`WriteGate::shared`]); a write submitted to an
//! asynchronous backend holds a [`WriteToken`] from submission until its
//! completion, on another thread ([`WriteGate::admit`]). An asynchronous
//! writer never waits: while a COMPARE AND WRITE holds (or waits for) the
//! gate its submission is deferred, and run by the COMPARE AND WRITE's
//! release. A waiting COMPARE AND WRITE goes before writers that come after
//! it, so a stream of writes cannot starve it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A deferred asynchronous write: run with its token once admitted.
pub type AdmitFn = Box<dyn FnOnce(WriteToken) + Send + 'static>;

#[derive(Default)]
struct State {
    /// Writers holding the gate shared (guards and tokens).
    writers: usize,
    /// A COMPARE AND WRITE holds it.
    exclusive: bool,
    /// COMPARE AND WRITEs waiting for it.
    waiting: usize,
    /// Asynchronous writes waiting for the exclusive holder's release.
    deferred: Vec<AdmitFn>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    fn release_shared(&self) {
        let mut s = self.lock();
        s.writers = s.writers.saturating_sub(1);
        if s.writers == 0 {
            self.changed.notify_all();
        }
    }
}

/// The gate (see the module doc).
#[derive(Default)]
pub struct WriteGate {
    inner: Arc<Inner>,
}

/// The shared side, held by a writer on its thread.
pub struct SharedGuard<'a>(&'a Inner);

/// The exclusive side, held across an emulated COMPARE AND WRITE.
pub struct ExclusiveGuard<'a>(&'a Arc<Inner>);

/// The shared side held by an asynchronous write until it is dropped
/// (on completion).
pub struct WriteToken(Arc<Inner>);

impl WriteGate {
    /// Waits for no COMPARE AND WRITE to hold or wait for the gate, and
    /// holds it shared.
    pub fn shared(&self) -> SharedGuard<'_> {
        let mut s = self.inner.lock();
        while s.exclusive || s.waiting > 0 {
            s = self.inner.wait(s);
        }
        s.writers += 1;
        SharedGuard(&self.inner)
    }

    /// Waits for every writer to finish and holds the gate exclusively.
    pub fn exclusive(&self) -> ExclusiveGuard<'_> {
        let mut s = self.inner.lock();
        s.waiting += 1;
        while s.exclusive || s.writers > 0 {
            s = self.inner.wait(s);
        }
        s.waiting -= 1;
        s.exclusive = true;
        ExclusiveGuard(&self.inner)
    }

    /// Runs `f` with a token now when no COMPARE AND WRITE holds or waits
    /// for the gate, else when the one that holds it releases it (on the
    /// releasing thread). Never waits.
    pub fn admit(&self, f: AdmitFn) {
        let mut s = self.inner.lock();
        if s.exclusive || s.waiting > 0 {
            s.deferred.push(f);
            return;
        }
        s.writers += 1;
        drop(s);
        f(WriteToken(Arc::clone(&self.inner)));
    }
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        self.0.release_shared();
    }
}

impl Drop for WriteToken {
    fn drop(&mut self) {
        self.0.release_shared();
    }
}

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        let deferred = {
            let mut s = self.0.lock();
            s.exclusive = false;
            let d = std::mem::take(&mut s.deferred);
            // Admitted before any COMPARE AND WRITE waiting now: they were
            // submitted before it.
            s.writers += d.len();
            self.0.changed.notify_all();
            d
        };
        for f in deferred {
            f(WriteToken(Arc::clone(self.0)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn async_writes_wait_for_the_exclusive_holder_and_it_for_them() {
        let gate = WriteGate::default();
        let (tx, rx) = mpsc::channel();
        let ex = gate.exclusive();
        let t = tx.clone();
        gate.admit(Box::new(move |tok| t.send(tok).unwrap()));
        assert!(
            rx.try_recv().is_err(),
            "admitted under the exclusive holder"
        );
        drop(ex);
        let tok = rx.try_recv().expect("admitted on release");
        // A COMPARE AND WRITE now waits for the token's release.
        std::thread::scope(|s| {
            let (done_tx, done_rx) = mpsc::channel();
            let g = &gate;
            s.spawn(move || {
                let _ex = g.exclusive();
                done_tx.send(()).unwrap();
            });
            // It waits (and new writes defer behind it) until the token goes.
            while gate.inner.lock().waiting == 0 {
                std::thread::yield_now();
            }
            let t = tx.clone();
            gate.admit(Box::new(move |tok| t.send(tok).unwrap()));
            assert!(rx.try_recv().is_err(), "a write overtook a waiting CAW");
            assert!(done_rx.try_recv().is_err());
            drop(tok);
            done_rx.recv().unwrap();
        });
        let tok = rx.recv().expect("deferred write admitted after the CAW");
        assert_eq!(gate.inner.lock().writers, 1);
        drop(tok);
        assert_eq!(gate.inner.lock().writers, 0);
        let _s = gate.shared();
    }
}
