//! One actix actor per open backstore (a thin volume or snapshot, an image
//! file; an rbd image is one more [`DevConfig`] kind): it owns the
//! backstore's life cycle. It opens the backstore for each device that
//! serves it and knows those devices, so it refuses to delete what is
//! served; it resizes, snapshots and clones; it reports its usage and the
//! pool's low-water crossings; and it closes (leaves the directory) when the
//! last device detaches.
//!
//! The data path does not go through it: a device gets its
//! [`BackstoreHandle`] from [`Open`] and runs every command on the handle's
//! lane of the I/O threads. The actor's own blocking work runs off its
//! thread, one operation at a time per backstore ([`AtomicResponse`]): an
//! open on a thread started for it, a snapshot's commit or a resize on the
//! backstore's lane of the I/O threads.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message,
    WrapFuture,
};
use tcmud_core::pool::Pool;

use super::directory::Backstores;
use super::{
    open_backstore_with, BackstoreError, BackstoreHandle, BackstoreKind, DevConfig, DevOptions,
    OpenPolicy, PoolRegistry,
};
use crate::device::panic_message;

/// How often the directory looks at each pool's low-water crossings (an
/// atomic read per pool, not per volume) and, when they moved, tells the
/// actors of the pool's volumes to look; their own operations look right
/// after they ran.
pub const LOW_WATER_POLL: Duration = Duration::from_secs(1);

/// Look at the pool's low-water crossings now (the directory saw them move).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct LookAtLowWater;

/// Opens the backstore for one more device (the first [`Open`] is the
/// backstore's open; later ones share the actor).
#[derive(Debug, Message)]
#[rtype(result = "Result<BackstoreHandle, BackstoreError>")]
pub struct Open {
    /// Attachment id (from the directory), for [`Detach`] and [`Resize`].
    pub id: u64,
    /// uio minor of the device, when a device serves it.
    pub minor: Option<u32>,
    /// The `dev_config`'s options (`;ro`, `;lbppbe=N`).
    pub options: DevOptions,
    /// Device size in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Where the backstore's pool is configured (and its I/O threads).
    pub registry: Arc<PoolRegistry>,
    /// Create a missing pool, volume or image (devices added while running).
    pub may_create: bool,
    /// Directories `file/` images may live under.
    pub file_roots: Vec<PathBuf>,
}

/// A device no longer uses the backstore (sent when its attachment drops).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Detach {
    /// Attachment id.
    pub id: u64,
}

/// Grows the backstore through one device's handle (the kernel's RECONFIG).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackstoreError>")]
pub struct Resize {
    /// Attachment id of the device.
    pub id: u64,
    /// New size in bytes (a shrink is refused).
    pub size_bytes: u64,
}

/// Takes a snapshot of the (thin) volume while it is served.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackstoreError>")]
pub struct Snapshot {
    /// Name of the new snapshot.
    pub name: String,
}

/// Clones the (thin) snapshot into a new writable volume.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackstoreError>")]
pub struct CloneTo {
    /// Name of the new volume.
    pub new_volume: String,
}

/// Deletes the volume: refused while a device serves it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackstoreError>")]
pub struct Delete;

/// The backstore's size, allocation and users.
#[derive(Debug, Message)]
#[rtype(result = "Result<BackstoreUsage, BackstoreError>")]
pub struct Usage;

/// What [`Usage`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackstoreUsage {
    /// uio minors of the devices serving it.
    pub users: Vec<u32>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Bytes allocated to it (thin volumes), when the backend knows.
    pub allocated_bytes: Option<u64>,
}

/// Something a backstore reports to the directory's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum BackstoreEvent {
    /// The pool's allocation rose to its low-water mark (once per crossing,
    /// from each open backstore of the pool; its LUNs also get THIN
    /// PROVISIONING SOFT THRESHOLD REACHED).
    LowWater {
        /// The backstore that saw it.
        backstore: DevConfig,
        /// Pool bytes allocated.
        allocated_bytes: u64,
        /// Pool capacity in bytes.
        capacity_bytes: u64,
        /// The mark, percent.
        low_water_pct: u8,
    },
    /// The last device detached: the backstore is closed.
    Closed {
        /// The backstore.
        backstore: DevConfig,
    },
}

/// Panics in its handler (tests of crash isolation).
#[cfg(test)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

struct User {
    minor: Option<u32>,
    handle: BackstoreHandle,
}

/// The actor of one open backstore.
pub struct BackstoreActor {
    key: DevConfig,
    directory: Backstores,
    users: BTreeMap<u64, User>,
    /// The pool of a thin backstore (from its first open).
    pool: Option<Pool>,
    /// The pool's low-water crossings already reported.
    crossings: Option<u64>,
    closed: bool,
}

impl std::fmt::Debug for BackstoreActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackstoreActor")
            .field("key", &self.key)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl BackstoreActor {
    pub(crate) fn new(key: DevConfig, directory: Backstores) -> BackstoreActor {
        BackstoreActor {
            key,
            directory,
            users: BTreeMap::new(),
            pool: None,
            crossings: None,
            closed: false,
        }
    }

    fn what(&self) -> String {
        match &self.key {
            DevConfig::Thin { pool, volume } => format!("volume {pool}/{volume}"),
            DevConfig::File { path } => format!("image {}", path.display()),
            DevConfig::Rbd(spec) => format!("rbd image {}", spec.image_ref()),
        }
    }

    fn minors(&self) -> Vec<u32> {
        self.users.values().filter_map(|u| u.minor).collect()
    }

    /// Any user's handle (they share the backstore).
    fn any_handle(&self) -> Option<&BackstoreHandle> {
        self.users.values().next().map(|u| &u.handle)
    }

    /// An RBD image's live operations (`None`: not an RBD backstore).
    fn rbd_ops(&self) -> Option<super::handle::RbdOps> {
        self.any_handle().and_then(BackstoreHandle::rbd_ops)
    }

    /// The thin pool and volume name, or why the operation does not apply.
    fn thin(&self, op: &str) -> Result<(Pool, String), BackstoreError> {
        match (&self.key, &self.pool) {
            (DevConfig::Thin { volume, .. }, Some(pool)) => Ok((pool.clone(), volume.clone())),
            _ => Err(BackstoreError::Unsupported(format!(
                "{op} of {}: only thin volumes have it",
                self.what()
            ))),
        }
    }

    /// Reports a low-water crossing of the pool seen since the last look.
    fn check_low_water(&mut self) {
        let Some(pool) = &self.pool else { return };
        let now = pool.low_water_crossings();
        let seen = self.crossings.replace(now);
        if seen.is_none_or(|s| s == now) {
            return;
        }
        let Ok(u) = pool.usage() else { return };
        let cs = u64::from(u.chunk_size);
        tracing::warn!(backstore = %self.what(), allocated_chunks = u.allocated_chunks,
            capacity_chunks = u.capacity_chunks, low_water_pct = u.low_water_pct,
            "pool reached its low-water mark");
        self.directory.publish(BackstoreEvent::LowWater {
            backstore: self.key.clone(),
            allocated_bytes: u.allocated_chunks * cs,
            capacity_bytes: u.capacity_chunks * cs,
            low_water_pct: u.low_water_pct,
        });
    }

    /// Leaves the directory and stops once nobody uses the backstore.
    fn close_if_unused(&mut self, ctx: &mut Context<Self>) {
        if !self.users.is_empty() || self.closed {
            return;
        }
        self.closed = true;
        self.directory.remove(&self.key, &ctx.address());
        tracing::info!(backstore = %self.what(), "backstore closed");
        self.directory.publish(BackstoreEvent::Closed {
            backstore: self.key.clone(),
        });
        ctx.stop();
    }

    /// Runs `f` on the I/O threads (a user's lane), one operation at a
    /// time, then looks at the low-water crossings.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, BackstoreError> + Send + 'static,
    ) -> AtomicResponse<Self, Result<T, BackstoreError>> {
        let run = self.any_handle().map(|h| h.run(f));
        let what = self.what();
        AtomicResponse::new(Box::pin(
            async move {
                match run {
                    Some(r) => r.await.and_then(|r| r),
                    None => Err(BackstoreError::ActorGone(what)),
                }
            }
            .into_actor(self)
            .map(|r, act, _| {
                act.check_low_water();
                r
            }),
        ))
    }
}

impl Actor for BackstoreActor {
    // No timer per backstore: the directory watches each pool once and
    // sends LookAtLowWater when its crossings moved.
    type Context = Context<Self>;
}

impl actix::Supervised for BackstoreActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The users, the pool and the crossings seen are still right: a
        // handler panicked between two of them, never inside an update.
        tracing::warn!(backstore = %self.what(), users = self.users.len(), "backstore actor restarted");
    }
}

impl Handler<Open> for BackstoreActor {
    type Result = AtomicResponse<Self, Result<BackstoreHandle, BackstoreError>>;

    fn handle(&mut self, msg: Open, _: &mut Context<Self>) -> Self::Result {
        let cfg = self.key.clone();
        let (id, minor) = (msg.id, msg.minor);
        let open = move || {
            let policy = OpenPolicy {
                may_create: msg.may_create,
                file_roots: &msg.file_roots,
            };
            open_backstore_with(
                &cfg,
                &msg.options,
                msg.size_bytes,
                msg.block_size,
                &msg.registry,
                &policy,
            )
        };
        AtomicResponse::new(Box::pin(
            async move { on_a_thread_of_its_own(open).await.and_then(|r| r) }
                .into_actor(self)
                .map(move |r, act, ctx| {
                    match &r {
                        Ok(handle) => {
                            if let BackstoreKind::Thin { pool, .. } = handle.kind() {
                                if act.pool.is_none() {
                                    act.crossings = Some(pool.low_water_crossings());
                                    act.pool = Some(pool.clone());
                                    if let DevConfig::Thin { pool: name, .. } = &act.key {
                                        act.directory.watch_pool(name, pool);
                                    }
                                }
                            }
                            act.users.insert(
                                id,
                                User {
                                    minor,
                                    handle: handle.clone(),
                                },
                            );
                            tracing::debug!(backstore = %act.what(), ?minor, users = act.users.len(), "backstore opened");
                        }
                        Err(_) => act.close_if_unused(ctx),
                    }
                    r
                }),
        ))
    }
}

/// Runs an open on a thread started for it: the supervisor waits for the
/// answer, so it must not queue behind other backstores' I/O (a hung
/// one could hold every I/O thread), nor hold the backstore thread.
fn on_a_thread_of_its_own<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, BackstoreError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("tcmud-bs-open".into())
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f))
                .map_err(|p| BackstoreError::Panicked(panic_message(p.as_ref())));
            let _ = tx.send(r);
        });
    async move {
        started.map_err(|source| BackstoreError::Io {
            what: "start a thread to open the backstore".into(),
            source,
        })?;
        rx.await.map_err(|_| BackstoreError::WorkersGone)?
    }
}

impl Handler<LookAtLowWater> for BackstoreActor {
    type Result = ();

    fn handle(&mut self, _: LookAtLowWater, _: &mut Context<Self>) {
        self.check_low_water();
    }
}

impl Handler<Detach> for BackstoreActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if self.users.remove(&msg.id).is_some() {
            tracing::debug!(backstore = %self.what(), users = self.users.len(), "device detached");
        }
        self.close_if_unused(ctx);
    }
}

impl Handler<Resize> for BackstoreActor {
    type Result = AtomicResponse<Self, Result<(), BackstoreError>>;

    fn handle(&mut self, msg: Resize, _: &mut Context<Self>) -> Self::Result {
        let Some(user) = self.users.get(&msg.id) else {
            let what = self.what();
            return AtomicResponse::new(Box::pin(
                async move { Err(BackstoreError::ActorGone(what)) }.into_actor(self),
            ));
        };
        let handle = user.handle.clone();
        let size = msg.size_bytes;
        self.blocking(move || handle.resize(size))
    }
}

impl Handler<Snapshot> for BackstoreActor {
    type Result = AtomicResponse<Self, Result<(), BackstoreError>>;

    fn handle(&mut self, msg: Snapshot, _: &mut Context<Self>) -> Self::Result {
        if let Some(ops) = self.rbd_ops() {
            return self.blocking(move || ops.snapshot(&msg.name));
        }
        let thin = self.thin("a snapshot");
        self.blocking(move || {
            let (pool, volume) = thin?;
            pool.snapshot(&volume, &msg.name)
                .map_err(|source| BackstoreError::Pool {
                    what: format!("snapshot {volume} as {}", msg.name),
                    source,
                })
        })
    }
}

impl Handler<CloneTo> for BackstoreActor {
    type Result = AtomicResponse<Self, Result<(), BackstoreError>>;

    fn handle(&mut self, msg: CloneTo, _: &mut Context<Self>) -> Self::Result {
        if let Some(ops) = self.rbd_ops() {
            return self.blocking(move || ops.clone_to(&msg.new_volume));
        }
        let thin = self.thin("a clone");
        self.blocking(move || {
            let (pool, snapshot) = thin?;
            pool.clone_snapshot(&snapshot, &msg.new_volume)
                .map_err(|source| BackstoreError::Pool {
                    what: format!("clone {snapshot} as {}", msg.new_volume),
                    source,
                })
        })
    }
}

impl Handler<Delete> for BackstoreActor {
    type Result = Result<(), BackstoreError>;

    fn handle(&mut self, _: Delete, _: &mut Context<Self>) -> Self::Result {
        // An actor exists only while the backstore is open: for a device
        // (served), or being opened for one.
        Err(BackstoreError::Served {
            what: self.what(),
            users: self.minors(),
        })
    }
}

impl Handler<Usage> for BackstoreActor {
    type Result = Result<BackstoreUsage, BackstoreError>;

    fn handle(&mut self, _: Usage, _: &mut Context<Self>) -> Self::Result {
        let backend = self
            .any_handle()
            .map(BackstoreHandle::backend)
            .ok_or_else(|| BackstoreError::ActorGone(self.what()))?;
        let caps = backend.caps();
        Ok(BackstoreUsage {
            users: self.minors(),
            size_bytes: caps.num_blocks.saturating_mul(u64::from(caps.block_size)),
            allocated_bytes: backend.resources().map(|r| r.used_bytes),
        })
    }
}

#[cfg(test)]
impl Handler<Crash> for BackstoreActor {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("injected backstore actor panic");
    }
}

#[cfg(test)]
mod tests;
