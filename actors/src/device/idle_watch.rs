//! The idle watch: one thread for the whole process that looks at every
//! device's ring a few times per second, so that an idle device needs no
//! timer of its own (1,000 idle devices cost one wake-up per period, not
//! 1,000 per second).
//!
//! A look is a lock of the device's in-flight table and one Acquire load of
//! the ring's `cmd_head` (no syscall, no wake-up of the device):
//!
//! - nothing past the fetch cursor: commands the device fetches later were
//!   queued after this look, which bounds their queueing time for the
//!   command timeout ([`super::cmd_timeout`]) as the device's own look
//!   does ([`super::inflight::InFlight::saw_empty_at`]);
//! - commands past the fetch cursor that were already there at the previous
//!   look, while the device has nothing in flight: its wake-up was lost (or
//!   the kernel reset the ring), so it is woken. A device with commands in
//!   flight, draining or with faults armed runs its own tick.
//!
//! The period is a quarter of the shortest command timeout of the watched
//! devices, at most [`MAX_PERIOD`]: a command is never taken for timed out
//! because of the watch's own delay, as long as the process runs.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::shared::{lock, DeviceShared};

/// The longest period of the watch (the default `cmd_time_out` of 30 s
/// gives this).
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(1);

/// The shortest period (a command timeout of a few tens of milliseconds in
/// tests).
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// A device being watched.
struct Watched {
    shared: Weak<DeviceShared>,
    /// `(cmd_head, fetch cursor)` when the last look found unfetched
    /// commands.
    pending: Option<(u32, u32)>,
}

struct Watch {
    devices: Mutex<Vec<Watched>>,
    thread: Thread,
}

/// The watch (`None`: its thread could not be started).
static WATCH: OnceLock<Option<Watch>> = OnceLock::new();

/// Puts a device under the watch (until its actor is gone). Starts the
/// watch thread on first use; `false` if it could not be started (the
/// device then keeps its own tick).
pub(crate) fn watch(shared: &Arc<DeviceShared>) -> bool {
    let Some(w) = WATCH.get_or_init(start) else {
        return false;
    };
    w.devices
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Watched {
            shared: Arc::downgrade(shared),
            pending: None,
        });
    w.thread.unpark();
    true
}

fn start() -> Option<Watch> {
    let spawned = thread::Builder::new().name("tcmud-watch".into()).spawn(run);
    match spawned {
        // `run` parks until the cell holds the watch (the caller unparks it).
        Ok(handle) => Some(Watch {
            devices: Mutex::new(Vec::new()),
            thread: handle.thread().clone(),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the idle watch thread; devices tick on their own");
            None
        }
    }
}

/// The watch thread: parks while nothing is watched.
fn run() {
    let w = loop {
        match WATCH.get() {
            Some(Some(w)) => break w,
            Some(None) => return,
            None => thread::park(),
        }
    };
    loop {
        match sweep(w) {
            None => thread::park(),
            Some(period) => thread::sleep(period),
        }
    }
}

/// One look at every watched device; returns the next period (`None`:
/// nothing watched).
fn sweep(w: &Watch) -> Option<Duration> {
    let mut devices = w.devices.lock().unwrap_or_else(PoisonError::into_inner);
    let mut shortest: Option<Duration> = None;
    devices.retain_mut(|d| {
        let Some(shared) = d.shared.upgrade() else {
            return false;
        };
        if shared.finished() {
            return false;
        }
        look(&shared, &mut d.pending);
        if let Some(t) = shared.cmd_timeout.get() {
            shortest = Some(shortest.map_or(t, |s| s.min(t)));
        }
        true
    });
    if devices.is_empty() {
        return None;
    }
    Some(period_for(shortest))
}

/// The watch period for the shortest command timeout (`None`: no device
/// times commands out).
pub(crate) fn period_for(shortest_timeout: Option<Duration>) -> Duration {
    shortest_timeout
        .map_or(MAX_PERIOD, |t| t / 4)
        .clamp(MIN_PERIOD, MAX_PERIOD)
}

/// Looks at one device's ring (see the module docs).
fn look(shared: &DeviceShared, pending: &mut Option<(u32, u32)>) {
    let probe = lock(&shared.probe);
    let Some(probe) = probe.as_ref() else {
        *pending = None; // the actor is between rings (starting, restarting)
        return;
    };
    let mut table = lock(&shared.table);
    let at = Instant::now();
    let (Some(head), Some(cursor)) = (probe.cmd_head(), table.fetch_cursor()) else {
        *pending = None;
        return;
    };
    if head == cursor {
        table.saw_empty_at(at);
        *pending = None;
        return;
    }
    let idle = table.is_empty() && table.orphans() == 0;
    drop(table);
    let stuck = *pending == Some((head, cursor));
    *pending = Some((head, cursor));
    if stuck && idle && !shared.draining() && !shared.is_failed() {
        tracing::warn!(parent: &shared.span, head, cursor,
            "commands in the ring not fetched since the last look: waking the device");
        shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_quarter_of_the_shortest_timeout_within_bounds() {
        assert_eq!(period_for(None), MAX_PERIOD);
        assert_eq!(period_for(Some(Duration::from_secs(30))), MAX_PERIOD);
        assert_eq!(
            period_for(Some(Duration::from_secs(1))),
            Duration::from_millis(250)
        );
        assert_eq!(period_for(Some(Duration::from_millis(1))), MIN_PERIOD);
    }
}
