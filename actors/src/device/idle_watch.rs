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
//! - a device idle since [`RELEASE_IDLE_AFTER`] (nothing in flight, nothing
//!   unfetched, the same `cmd_head` at every look) has its ring's pages
//!   unmapped from the daemon ([`HeadProbe::release_idle`], once per idle
//!   period): they stay the kernel's, but the daemon's RSS no longer holds
//!   the data-area pages of every LUN that ever ran I/O.
//!
//! The period is a quarter of the shortest command timeout of the watched
//! devices, at most [`MAX_PERIOD`]: a command is never taken for timed out
//! because of the watch's own delay, as long as the process runs.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tcmud_core::ring::HeadProbe;

use super::shared::{lock, DeviceShared};

/// How long a device stays idle before its ring's pages are released
/// (see the module docs): long enough that a device between bursts of
/// I/O keeps them, short enough that an idle host's daemon holds none.
pub(crate) const RELEASE_IDLE_AFTER: Duration = Duration::from_secs(2);

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
    /// Since when the device has been idle, and whether its pages were
    /// released in this idle period.
    quiet: Quiet,
}

/// A device's idle period, as the looks see it.
#[derive(Debug, Default)]
struct Quiet {
    /// The `cmd_head` of the first look of this idle period, and when.
    since: Option<(u32, Instant)>,
    /// The `cmd_head` at which the pages were last released.
    released: Option<u32>,
}

impl Quiet {
    /// A look at `now` found the ring's `cmd_head` at `head`, and the
    /// device `idle` (nothing in flight or unfetched) or not: true when
    /// its pages are to be released now (idle since [`RELEASE_IDLE_AFTER`]
    /// at the same head, not released yet at it).
    fn look(&mut self, head: u32, idle: bool, now: Instant) -> bool {
        if !idle {
            self.since = None;
            return false;
        }
        match self.since {
            Some((h, t)) if h == head => {
                let due = now.saturating_duration_since(t) >= RELEASE_IDLE_AFTER;
                if due && self.released != Some(head) {
                    self.released = Some(head);
                    return true;
                }
                false
            }
            // a new head: commands came and went since the last look
            _ => {
                self.since = Some((head, now));
                false
            }
        }
    }
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
            quiet: Quiet::default(),
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
        look(&shared, &mut d.pending, &mut d.quiet);
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
fn look(shared: &DeviceShared, pending: &mut Option<(u32, u32)>, quiet: &mut Quiet) {
    let probe = lock(&shared.probe);
    let Some(probe) = probe.as_ref() else {
        *pending = None; // the actor is between rings (starting, restarting)
        *quiet = Quiet::default();
        return;
    };
    let mut table = lock(&shared.table);
    let at = Instant::now();
    let (Some(head), Some(cursor)) = (probe.cmd_head(), table.fetch_cursor()) else {
        *pending = None;
        return;
    };
    let idle = table.is_empty() && table.orphans() == 0;
    if head == cursor {
        table.saw_empty_at(at);
        drop(table);
        *pending = None;
        if quiet.look(head, idle, at) {
            release(shared, probe);
        }
        return;
    }
    drop(table);
    quiet.look(head, false, at);
    let stuck = *pending == Some((head, cursor));
    *pending = Some((head, cursor));
    if stuck && idle && !shared.draining() && !shared.is_failed() {
        tracing::warn!(parent: &shared.span, head, cursor,
            "commands in the ring not fetched since the last look: waking the device");
        shared.wake.notify_one();
    }
}

/// Unmaps an idle device's ring pages from the daemon (see the module
/// docs); a failure is logged and changes nothing else.
fn release(shared: &DeviceShared, probe: &HeadProbe) {
    match probe.release_idle() {
        Ok(()) => {
            tracing::trace!(parent: &shared.span, "idle: ring pages unmapped from the daemon")
        }
        Err(e) => tracing::warn!(parent: &shared.span, error = %e,
            "idle: unmapping the ring's pages failed; they stay mapped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_device_is_released_once_per_idle_period() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let after = u64::try_from(RELEASE_IDLE_AFTER.as_millis()).unwrap();
        let mut q = Quiet::default();
        assert!(!q.look(64, true, at(0)), "the first idle look");
        assert!(!q.look(64, true, at(after / 2)));
        assert!(q.look(64, true, at(after)), "idle long enough");
        assert!(!q.look(64, true, at(2 * after)), "released already");
        // commands in flight, then idle at a new head: a new period
        assert!(!q.look(64, false, at(2 * after + 1)));
        assert!(!q.look(128, true, at(2 * after + 2)));
        assert!(!q.look(128, true, at(3 * after)));
        assert!(q.look(128, true, at(3 * after + 2)));
        // commands came and went between two looks: the head moved
        assert!(!q.look(192, true, at(4 * after)));
        assert!(!q.look(192, true, at(5 * after - 1)));
        assert!(q.look(192, true, at(5 * after)));
    }

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
