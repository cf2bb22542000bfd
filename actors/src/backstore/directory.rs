//! The directory of open backstores: one [`BackstoreActor`] per volume or
//! image (keyed by its [`DevConfig`], options aside), started on first
//! open on the backstore thread (an arbiter of its own, where the actors
//! only route: their blocking work runs on the I/O threads), and removed
//! when the last device detaches. The supervisor's factory opens through
//! it; the control socket finds the actor of a served volume in it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use actix::dev::channel;
use actix::{Actor, Addr, ArbiterHandle, Context, Recipient};

use tcmud_core::pool::Pool;

use super::actor::{
    BackstoreActor, BackstoreEvent, Detach, LookAtLowWater, Open, Resize, LOW_WATER_POLL,
};
use super::supervise::CatchPanics;
use super::{BackstoreError, BackstoreHandle, DevConfig, DevOptions, PoolRegistry};

/// Open backstores and their actors. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Backstores {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    actors: Mutex<HashMap<DevConfig, Addr<BackstoreActor>>>,
    arbiter: Mutex<Option<ArbiterHandle>>,
    subscribers: Mutex<Vec<Recipient<BackstoreEvent>>>,
    next_id: AtomicU64,
    /// The pools of open thin backstores, by name, with the low-water
    /// crossings last seen: one look per pool and period for all of its
    /// volumes ([`low_water_watch`]).
    pools: Mutex<HashMap<String, (Pool, u64)>>,
}

impl std::fmt::Debug for Backstores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backstores")
            .field("open", &self.open_keys())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a device asks to open.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The backstore (its actor's key).
    pub config: DevConfig,
    /// The `dev_config`'s options.
    pub options: DevOptions,
    /// Device size in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Where its pool is configured.
    pub registry: Arc<PoolRegistry>,
    /// Create a missing pool, volume or image.
    pub may_create: bool,
    /// Directories `file/` images may live under.
    pub file_roots: Vec<PathBuf>,
    /// uio minor of the device.
    pub minor: Option<u32>,
}

/// One device's use of a backstore: the handle its commands run on, and
/// the actor it talks to for the rest. Dropping it detaches the device
/// (the last detach closes the backstore).
pub struct Attachment {
    handle: BackstoreHandle,
    addr: Addr<BackstoreActor>,
    id: u64,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("handle", &self.handle)
            .finish()
    }
}

impl Attachment {
    /// The handle the device's commands run on.
    pub fn handle(&self) -> &BackstoreHandle {
        &self.handle
    }

    /// The backstore's actor.
    pub fn actor(&self) -> &Addr<BackstoreActor> {
        &self.addr
    }

    /// Grows the backstore through this device's handle (RECONFIG).
    pub fn resize(
        &self,
        size_bytes: u64,
    ) -> impl std::future::Future<Output = Result<(), BackstoreError>> + 'static {
        let send = self.addr.send(Resize {
            id: self.id,
            size_bytes,
        });
        let what = format!("{:?}", self.handle.kind());
        async move { send.await.map_err(|_| BackstoreError::ActorGone(what))? }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.addr.do_send(Detach { id: self.id });
    }
}

impl Backstores {
    /// An empty directory; the backstore thread starts with the first open.
    pub fn new() -> Backstores {
        Backstores::default()
    }

    /// Sends every [`BackstoreEvent`] to `r` from now on.
    pub fn subscribe(&self, r: Recipient<BackstoreEvent>) {
        lock(&self.inner.subscribers).push(r);
    }

    pub(crate) fn publish(&self, ev: BackstoreEvent) {
        let mut subs = lock(&self.inner.subscribers);
        subs.retain(|s| s.connected());
        for s in subs.iter() {
            s.do_send(ev.clone());
        }
    }

    /// Watches `pool`'s low-water crossings for the actors of its volumes
    /// (each is told to look when the count moves).
    pub(crate) fn watch_pool(&self, name: &str, pool: &Pool) {
        lock(&self.inner.pools)
            .entry(name.to_owned())
            .or_insert_with(|| (pool.clone(), pool.low_water_crossings()));
    }

    /// The actor of `key` when that backstore is open.
    pub fn get(&self, key: &DevConfig) -> Option<Addr<BackstoreActor>> {
        lock(&self.inner.actors)
            .get(key)
            .filter(|a| a.connected())
            .cloned()
    }

    /// The backstores open now.
    pub fn open_keys(&self) -> Vec<DevConfig> {
        lock(&self.inner.actors).keys().cloned().collect()
    }

    /// Forgets `key`'s actor if it is still `addr` (it closed).
    pub(crate) fn remove(&self, key: &DevConfig, addr: &Addr<BackstoreActor>) {
        let mut actors = lock(&self.inner.actors);
        if actors.get(key).is_some_and(|a| a == addr) {
            actors.remove(key);
        }
    }

    /// Opens `req` for a device through its backstore's actor (started on
    /// first use). Call inside an actix System.
    pub async fn open(&self, req: OpenRequest) -> Result<Attachment, BackstoreError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // An actor found closing (its last device detached meanwhile) is
        // replaced once.
        for _ in 0..2 {
            let addr = self.actor_for(&req.config)?;
            let sent = addr
                .send(Open {
                    id,
                    minor: req.minor,
                    options: req.options,
                    size_bytes: req.size_bytes,
                    block_size: req.block_size,
                    registry: Arc::clone(&req.registry),
                    may_create: req.may_create,
                    file_roots: req.file_roots.clone(),
                })
                .await;
            match sent {
                Ok(r) => {
                    return r.map(|handle| Attachment { handle, addr, id });
                }
                Err(_) => self.remove(&req.config, &addr),
            }
        }
        Err(BackstoreError::ActorGone(format!("{:?}", req.config)))
    }

    /// [`Backstores::open`], waiting on the caller's thread (the supervisor's
    /// factory, which opened synchronously before there were actors). Never
    /// call it on the backstore thread.
    ///
    /// The wait is exempt from tokio's cooperative budget: the supervisor
    /// calls this inside its actor, i.e. inside a task of the runtime on its
    /// thread. Each answer it receives spends a unit of that task's budget
    /// (128 per poll), and a future polled past the budget gets `Pending`
    /// with its wake-up deferred until the runtime's thread parks -- which a
    /// thread blocked here never does. Without the exemption the supervisor
    /// hung for good once ~128 devices were served in one poll (a burst of
    /// ADDED events: the 1,000-LUN run stalled at 132, 363 and 369 served).
    pub fn open_blocking(&self, req: OpenRequest) -> Result<Attachment, BackstoreError> {
        futures::executor::block_on(tokio::task::unconstrained(self.open(req)))
    }

    /// The running actor of `key`, or a new one.
    fn actor_for(&self, key: &DevConfig) -> Result<Addr<BackstoreActor>, BackstoreError> {
        let mut actors = lock(&self.inner.actors);
        if let Some(a) = actors.get(key).filter(|a| a.connected()) {
            return Ok(a.clone());
        }
        let arbiter = self.arbiter()?;
        let (tx, rx) = channel::channel(16);
        let actor = BackstoreActor::new(key.clone(), self.clone());
        let (for_wrapper, dir) = (key.clone(), self.clone());
        let started = arbiter.spawn_fn(move || {
            let fut = Context::with_receiver(rx).into_future(actor);
            actix::spawn(CatchPanics::new(fut, for_wrapper, dir));
        });
        if !started {
            return Err(BackstoreError::ActorGone(format!(
                "{key:?} (the backstore thread stopped)"
            )));
        }
        let addr = Addr::new(tx);
        actors.insert(key.clone(), addr.clone());
        Ok(addr)
    }

    /// The backstore thread, started on first use.
    fn arbiter(&self) -> Result<ArbiterHandle, BackstoreError> {
        let mut a = lock(&self.inner.arbiter);
        if let Some(h) = a.as_ref() {
            return Ok(h.clone());
        }
        if actix::System::try_current().is_none() {
            return Err(BackstoreError::Unsupported(
                "backstores open inside the daemon's actix System only".into(),
            ));
        }
        let arbiter = actix::Arbiter::try_new().map_err(|source| BackstoreError::Io {
            what: "start the backstore thread".into(),
            source,
        })?;
        let h = arbiter.handle();
        h.spawn(low_water_watch(Arc::downgrade(&self.inner)));
        *a = Some(h.clone());
        Ok(h)
    }
}

/// Looks at the low-water crossings of every watched pool each
/// [`LOW_WATER_POLL`] (an atomic read per pool, whatever the number of its
/// volumes), and tells the actors of a pool whose count moved to look (they
/// report it once each). A pool none of whose volumes is open any more is
/// forgotten. Ends with the directory.
async fn low_water_watch(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(LOW_WATER_POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let actors = lock(&inner.actors);
        let pool_of = |k: &DevConfig| match k {
            DevConfig::Thin { pool, .. } => Some(pool.clone()),
            _ => None,
        };
        let mut pools = lock(&inner.pools);
        pools.retain(|name, _| actors.keys().any(|k| pool_of(k).as_ref() == Some(name)));
        for (name, (pool, seen)) in pools.iter_mut() {
            let now = pool.low_water_crossings();
            if now == *seen {
                continue;
            }
            *seen = now;
            for (k, addr) in actors.iter() {
                if pool_of(k).as_ref() == Some(name) {
                    addr.do_send(LookAtLowWater);
                }
            }
        }
    }
}

// The actor must be an actix Actor with a plain Context for `into_future`.
const _: fn() = || {
    fn is_actor<A: Actor<Context = Context<A>>>() {}
    is_actor::<BackstoreActor>();
};
