//! The supervisor actor: adopts existing devices, turns kernel events into device
//! actor operations, answers owned events with `*_DONE`, drains everything on shutdown.

use super::devices::{DeviceCtl, DeviceFactory, DeviceRequest, Opened, Ownership};
use super::reap::Retry;
use super::source::{EventSource, Replier, SourceEvent};
use super::sysfs;
use crate::config::DaemonConfig;
use actix::prelude::*;
use futures::future::LocalBoxFuture;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;
use tcmud_core::netlink::{emit_done, parse_event, DoneReply, NlEvent, UioName};
use tokio::sync::{mpsc, oneshot};

/// How often device actors are checked for having failed for good or lost
/// their uio device ([`super::reap`]).
const FAILED_CHECK: Duration = Duration::from_secs(1);
/// How often sysfs is rescanned for devices whose ADDED event was lost.
const RESCAN: Duration = Duration::from_secs(10);

pub(super) struct Managed {
    pub(super) uio: UioName,
    pub(super) ctl: Box<dyn DeviceCtl>,
}

/// The supervisor actor. Build with [`Supervisor::new`], start with `Actor::start`.
pub struct Supervisor {
    pub(super) cfg: DaemonConfig,
    pub(super) factory: Box<dyn DeviceFactory>,
    replier: Box<dyn Replier>,
    events: Option<mpsc::Receiver<SourceEvent>>,
    pub(super) devices: HashMap<u32, Managed>,
    ready: Option<oneshot::Sender<usize>>,
    ended: Option<oneshot::Sender<()>>,
    pub(super) shutting_down: bool,
    pub(super) refused: HashMap<u32, String>,
    pub(super) failed: BTreeMap<u32, FailedDevice>,
    /// Dead devices being retried, by minor.
    pub(super) retries: HashMap<u32, Retry>,
    /// Served minors whose uio name the reap found right, with the inode of
    /// their `class/uio` entry then: while it is unchanged the reap reads
    /// no name ([`super::reap`]).
    pub(super) uio_checked: HashMap<u32, u64>,
    pub(super) retry_first: Duration,
    pub(super) retry_max: Duration,
    reap_every: Duration,
    /// Returns malloc's free memory to the kernel after bursts.
    heap: crate::heap::Trimmer,
    /// How often WATCHDOG=1 goes to systemd (None: no watchdog).
    watchdog: Option<Duration>,
    /// Minors whose device is being stopped (drained), with the events that
    /// arrived for them meanwhile: handled, in order, once the stop ended.
    /// Events of other devices do not wait.
    pub(super) draining: HashMap<u32, VecDeque<Vec<u8>>>,
    /// Woken when no stop is in progress any more (shutdown waits for them).
    drains_ended: Vec<oneshot::Sender<()>>,
    rescan: Duration,
}

/// A device of ours the supervisor does not serve because its setup failed
/// (error or panic), or whose device actor gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDevice {
    /// uio minor.
    pub minor: u32,
    /// The device's dev_config.
    pub dev_config: String,
    /// Why it is not served.
    pub why: String,
}

/// Raw genl payload of one kernel event (also how tests inject events directly).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RawEvent(pub Vec<u8>);

/// Stop taking events, drain every device, flush pools; resolves when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Apply a reloaded config (new pools).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload(pub DaemonConfig);

/// The minors currently served, sorted.
#[derive(Message)]
#[rtype(result = "Vec<u32>")]
pub struct ListDevices;

/// The devices of ours that are not served (setup failed or panicked, or the
/// device actor failed for good), sorted by minor.
#[derive(Message)]
#[rtype(result = "Vec<FailedDevice>")]
pub struct ListFailed;

/// Signals from the supervisor to whoever runs it.
pub struct SupervisorSignals {
    /// Fires once existing devices are adopted (with how many were adopted).
    pub ready: oneshot::Receiver<usize>,
    /// Fires if the kernel event stream ends (netlink socket failure).
    pub source_ended: oneshot::Receiver<()>,
}

impl Supervisor {
    /// A supervisor over `source`, creating devices through `factory`.
    pub fn new(
        cfg: DaemonConfig,
        factory: Box<dyn DeviceFactory>,
        source: EventSource,
    ) -> (Supervisor, SupervisorSignals) {
        let (ready_tx, ready) = oneshot::channel();
        let (ended_tx, source_ended) = oneshot::channel();
        let sup = Supervisor {
            cfg,
            factory,
            replier: source.replier,
            events: Some(source.events),
            devices: HashMap::new(),
            ready: Some(ready_tx),
            ended: Some(ended_tx),
            shutting_down: false,
            refused: HashMap::new(),
            failed: BTreeMap::new(),
            draining: HashMap::new(),
            drains_ended: Vec::new(),
            rescan: RESCAN,
            retries: HashMap::new(),
            uio_checked: HashMap::new(),
            retry_first: super::reap::RETRY_FIRST,
            retry_max: super::reap::RETRY_MAX,
            reap_every: FAILED_CHECK,
            heap: crate::heap::Trimmer::default(),
            watchdog: None,
        };
        (
            sup,
            SupervisorSignals {
                ready,
                source_ended,
            },
        )
    }

    pub(super) fn request(&self, minor: u32, uio: &UioName, adopted: bool) -> DeviceRequest {
        let dir = sysfs::configfs_dir(&self.cfg, uio);
        let dir = dir.is_dir().then_some(dir);
        let size_bytes = dir.as_deref().and_then(sysfs::read_size).unwrap_or(0);
        let block_size = dir.as_deref().map_or(512, sysfs::read_block_size);
        DeviceRequest {
            minor,
            uio_name: format!("tcm-user/{}/{}/{}", uio.hba, uio.dev, uio.dev_config),
            uio: uio.clone(),
            dev_path: self.cfg.dev_root.join(format!("uio{minor}")),
            sysfs_dir: self.cfg.sys_root.join(format!("class/uio/uio{minor}")),
            configfs_dir: dir,
            size_bytes,
            block_size,
            recovery: self.cfg.recovery,
            adopted,
            lost_event: false,
            drain_timeout: self.cfg.drain_timeout,
            alua: self.cfg.alua.clone().map(std::sync::Arc::new),
        }
    }

    /// Starts a device; returns the `*_DONE` status (0 or -errno). Setup (pool
    /// open, volume create, ring mapping) runs on this thread: a panic in it
    /// fails this device alone, never the supervisor.
    pub(super) fn start_device(&mut self, minor: u32, uio: UioName, adopted: bool) -> i32 {
        let req = self.request(minor, &uio, adopted);
        self.serve(minor, uio, req, None)
    }

    /// Serves `req` (over `opened`, the backstore opened ahead, if any);
    /// returns the `*_DONE` status.
    pub(super) fn serve(
        &mut self,
        minor: u32,
        uio: UioName,
        req: DeviceRequest,
        opened: Option<Opened>,
    ) -> i32 {
        if self.shutting_down {
            // A re-open planned before the shutdown: nothing would stop it again.
            tracing::warn!(minor, dev_config = %uio.dev_config, "shutting down: device not re-opened");
            return -libc::ESHUTDOWN;
        }
        let (size, adopted) = (req.size_bytes, req.adopted);
        let (cfg, name) = (uio.dev_config.clone(), req.uio_name.clone());
        let factory = &mut self.factory;
        let spawned = catch_unwind(AssertUnwindSafe(|| match opened {
            Some(o) => factory.spawn_opened(req, o),
            None => factory.spawn(req),
        }));
        let (why, status) = match spawned {
            Ok(Ok(ctl)) => {
                tracing::info!(minor, dev_config = %cfg, size, adopted, "device served");
                self.failed.remove(&minor);
                self.devices.insert(minor, Managed { uio, ctl });
                return 0;
            }
            Ok(Err(e)) => {
                tracing::error!(minor, dev_config = %cfg, error = %e, "cannot serve device");
                (e.to_string(), -e.errno.abs().max(1))
            }
            Err(payload) => {
                let msg = crate::device::panic_message(payload.as_ref());
                tracing::error!(minor, dev_config = %cfg, panic = %msg,
                    "device setup panicked; this device is failed, the others are served");
                (format!("setup panicked: {msg}"), -libc::EIO)
            }
        };
        // The periodic rescan leaves it alone; a new ADDED event retries.
        self.refused.insert(minor, name);
        self.failed.insert(
            minor,
            FailedDevice {
                minor,
                dev_config: cfg,
                why,
            },
        );
        status
    }

    /// Serves every owned TCMU device in sysfs that is not served yet. At start-up
    /// this adopts the devices of a previous daemon; later (periodic rescan) it
    /// catches devices whose ADDED event was lost. A device that cannot be served
    /// is not retried until its uio name changes.
    fn scan(&mut self, startup: bool) -> usize {
        // Served devices need no name read: whatever it is now, the loop
        // below leaves them alone (the reap checks that they still exist).
        let served: std::collections::HashSet<u32> = self.devices.keys().copied().collect();
        let found = sysfs::scan_uio_except(&self.cfg, |m| served.contains(&m));
        self.refused.retain(|m, n| {
            served.contains(m) || found.iter().any(|f| f.minor == *m && f.name == *n)
        });
        self.failed
            .retain(|m, _| served.contains(m) || found.iter().any(|f| f.minor == *m));
        let mut adopted = 0;
        for f in found {
            if self.devices.contains_key(&f.minor)
                || self.draining.contains_key(&f.minor)
                || self.refused.get(&f.minor) == Some(&f.name)
            {
                continue;
            }
            match self.factory.ownership(&f.uio.dev_config) {
                Ownership::Foreign => {
                    tracing::debug!(minor = f.minor, name = %f.name, "foreign device left alone");
                }
                Ownership::Invalid(why) => {
                    tracing::error!(minor = f.minor, name = %f.name, %why, "cannot serve device");
                }
                Ownership::Ours => {
                    if !startup {
                        tracing::warn!(minor = f.minor, name = %f.name, "device found without an ADDED event; serving it");
                    }
                    let mut req = self.request(f.minor, &f.uio, true);
                    req.lost_event = !startup;
                    if self.serve(f.minor, f.uio, req, None) == 0 {
                        adopted += 1;
                    }
                    continue;
                }
            }
            self.refused.insert(f.minor, f.name);
        }
        adopted
    }

    /// Sets how often sysfs is rescanned for devices whose ADDED event was lost
    /// (default 10 s). Call before starting the actor.
    pub fn set_rescan_interval(&mut self, every: Duration) {
        self.rescan = every;
    }

    /// Sends systemd's `WATCHDOG=1` every `every` from the supervisor's own
    /// loop (a supervisor that hangs stops sending it and systemd restarts
    /// the daemon). Call before starting the actor.
    pub fn set_watchdog(&mut self, every: Option<Duration>) {
        self.watchdog = every;
    }

    /// Sets how often dead devices are looked for (default 1 s) and the
    /// retry back-off (default 1 s doubling up to 5 min). Call before
    /// starting the actor.
    pub fn set_reaping(&mut self, every: Duration, first_retry: Duration, max_retry: Duration) {
        self.reap_every = every;
        self.retry_first = first_retry;
        self.retry_max = max_retry;
    }

    fn reply(&self, ev: &NlEvent, status: i32) -> LocalBoxFuture<'static, ()> {
        let Some(device_id) = ev.device_id.filter(|_| self.cfg.netlink_replies) else {
            if self.cfg.netlink_replies {
                tracing::warn!(minor = ev.minor, "event without DEVICE_ID; cannot reply");
            }
            return Box::pin(async {});
        };
        let payload = emit_done(&DoneReply {
            cmd: ev.cmd,
            status,
            device_id,
        });
        let fut = self.replier.send(payload);
        let (minor, cmd) = (ev.minor, ev.cmd);
        Box::pin(async move {
            match fut.await {
                Ok(()) => tracing::debug!(minor, ?cmd, status, "reply sent"),
                Err(err) => tracing::error!(minor, ?cmd, status, %err, "reply failed"),
            }
        })
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let n = self.scan(true);
        tracing::info!(adopted = n, "existing devices adopted");
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(n);
        }
        if let Some(mut rx) = self.events.take() {
            ctx.add_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        }
        ctx.run_interval(self.reap_every, |act, ctx| act.reap(ctx));
        ctx.run_interval(FAILED_CHECK, |act, _| {
            if act.heap.tick() {
                tracing::trace!("malloc's free memory returned to the kernel");
            }
        });
        if let Some(every) = self.watchdog {
            tracing::info!(
                ?every,
                "systemd watchdog: WATCHDOG=1 from the supervisor loop"
            );
            ctx.run_interval(every, |_, _| {
                if let Err(err) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                    tracing::warn!(%err, "sd_notify WATCHDOG=1 failed");
                }
            });
        }
        ctx.run_interval(self.rescan, |act, _| {
            if !act.shutting_down {
                act.scan(false);
            }
        });
    }
}

impl StreamHandler<SourceEvent> for Supervisor {
    fn handle(&mut self, ev: SourceEvent, ctx: &mut Context<Self>) {
        match ev {
            SourceEvent::Event(payload) => self.on_payload(payload, ctx),
            // Events were lost: look at sysfs now rather than at the next periodic scan.
            SourceEvent::Overrun if !self.shutting_down => {
                let n = self.scan(false);
                tracing::info!(served = n, "rescan after a netlink overrun");
            }
            SourceEvent::Overrun => {}
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        if !self.shutting_down {
            tracing::error!("kernel event stream ended");
        }
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(());
        }
    }
}

impl Supervisor {
    fn on_payload(&mut self, payload: Vec<u8>, ctx: &mut Context<Self>) {
        if self.shutting_down {
            tracing::warn!("shutting down: kernel event not handled");
            return;
        }
        // A device being stopped gets its later events once the stop ended.
        if let Some(queue) = parse_event(&payload)
            .ok()
            .and_then(|ev| self.draining.get_mut(&ev.minor))
        {
            queue.push_back(payload);
            return;
        }
        let Some((ev, plan)) = self.handle_payload(&payload) else {
            return;
        };
        let Some(wait) = plan.wait else {
            let status = (plan.then)(self, 0);
            ctx.spawn(self.reply(&ev, status).into_actor(self));
            return;
        };
        // A stop (drain) or a resize runs beside the other devices' events: one
        // device's hung drain never holds up another's events, listing, reload or
        // shutdown. The device's own later events wait for it.
        let minor = ev.minor;
        self.draining.insert(minor, VecDeque::new());
        ctx.spawn(
            wait.into_actor(self)
                .map(move |waited, act, _| (plan.then)(act, waited))
                .then(move |status, act, _| act.reply(&ev, status).into_actor(act))
                .map(move |(), act, ctx| act.drain_ended(minor, ctx)),
        );
    }

    /// The stop of `minor` ended: handle the events that waited for it.
    pub(super) fn drain_ended(&mut self, minor: u32, ctx: &mut Context<Self>) {
        let mut queued = self.draining.remove(&minor).unwrap_or_default();
        while let Some(payload) = queued.pop_front() {
            self.on_payload(payload, ctx);
            if let Some(q) = self.draining.get_mut(&minor) {
                // That event stopped the device again: the rest wait once more.
                q.extend(queued.drain(..));
                break;
            }
        }
        if self.draining.is_empty() {
            for w in self.drains_ended.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Handler<RawEvent> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: RawEvent, ctx: &mut Context<Self>) {
        self.on_payload(msg.0, ctx);
    }
}

impl Handler<ListDevices> for Supervisor {
    type Result = Vec<u32>;
    fn handle(&mut self, _: ListDevices, _: &mut Context<Self>) -> Vec<u32> {
        let mut v: Vec<u32> = self.devices.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl Handler<ListFailed> for Supervisor {
    type Result = Vec<FailedDevice>;
    fn handle(&mut self, _: ListFailed, _: &mut Context<Self>) -> Vec<FailedDevice> {
        let mut v: Vec<FailedDevice> = self.failed.values().cloned().collect();
        v.extend(
            self.devices
                .iter()
                .filter(|(_, m)| m.ctl.is_failed())
                .map(|(minor, m)| FailedDevice {
                    minor: *minor,
                    dev_config: m.uio.dev_config.clone(),
                    why: "device actor failed for good".into(),
                }),
        );
        v.sort_by_key(|f| f.minor);
        v
    }
}

impl Handler<Reload> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) {
        self.factory.reload(&msg.0);
        // Roots and replies stay as started; pools, recovery, drain timeout and log
        // settings follow the file (for devices started from now on).
        self.cfg.pools = msg.0.pools;
        self.cfg.recovery = msg.0.recovery;
        self.cfg.drain_timeout = msg.0.drain_timeout;
        tracing::info!(pools = self.cfg.pools.len(), "config reloaded");
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let mut stops: Vec<_> = self.devices.drain().map(|(_, m)| m.ctl.stop()).collect();
        tracing::info!(
            devices = stops.len(),
            in_progress = self.draining.len(),
            "shutting down: draining devices"
        );
        if !self.draining.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.drains_ended.push(tx);
            stops.push(Box::pin(async move {
                let _ = rx.await;
            }));
        }
        Box::pin(
            futures::future::join_all(stops)
                .into_actor(self)
                .map(|_, act, ctx| {
                    if let Err(err) = act.factory.flush_all() {
                        tracing::error!(%err, "flushing pools failed");
                    }
                    tracing::info!("devices drained, pools flushed");
                    ctx.stop();
                }),
        )
    }
}
