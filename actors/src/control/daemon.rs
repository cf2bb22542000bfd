//! The requests, run in the daemon: against the supervisor's view of its
//! devices and the pools it holds.
//!
//! A snapshot, clone or delete of a volume that is open (served) goes to
//! its backstore's actor, which refuses the delete; the other pool and
//! volume commands run the offline command's own code
//! (`offline::run_pool_on` / `run_volume_on`) on the daemon's handle of the
//! pool, so their output and errors are the offline ones. The pool is
//! internally synchronised: a snapshot or clone waits for the writes in
//! flight on its source volume (the volume's gate), shares the tree and
//! commits, while the LUNs of every other volume keep serving; writes to
//! the source volume acknowledged before the request are in the snapshot,
//! writes issued after it returned are not.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, MailboxError};
use tcmud_core::pool::{Pool, PoolUsage};

use super::protocol::{DeviceStatus, ErrorKind, Op, PoolStatus, Reply, Request, Response, Status};
use super::server::Handler;
use crate::backstore::actor::{BackstoreActor, CloneTo, Delete, Snapshot, Usage};
use crate::backstore::{BackstoreError, Backstores, DevConfig, PoolRegistry};
use crate::config::Subtypes;
use crate::logging::LogHandle;
use crate::offline::{self, OfflineError, Outcome, PoolCommand, PoolDir, VolumeCommand};
use crate::supervisor::{ControlView, GetControlView, Supervisor};

/// Where the handler gets the daemon's state from.
pub trait View: Send + Sync + 'static {
    /// The supervisor's devices and registries (`Err`: it did not answer).
    fn view(&self) -> Result<ControlView, String>;
}

/// The real view: asks the supervisor actor.
#[derive(Debug, Clone)]
pub struct SupervisorView(pub Addr<Supervisor>);

impl View for SupervisorView {
    fn view(&self) -> Result<ControlView, String> {
        futures::executor::block_on(self.0.send(GetControlView))
            .map_err(|e| format!("the supervisor did not answer: {e}"))
    }
}

/// Runs control requests in the daemon.
pub struct DaemonControl {
    view: Box<dyn View>,
    log: Option<LogHandle>,
    configfs_root: PathBuf,
    subtypes: Subtypes,
    started: Instant,
}

impl std::fmt::Debug for DaemonControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonControl")
            .field("configfs_root", &self.configfs_root)
            .finish_non_exhaustive()
    }
}

/// How long a served volume's resize waits for the kernel's RECONFIG to
/// reach the device and grow the volume.
const RESIZE_WAIT: Duration = Duration::from_secs(30);

impl DaemonControl {
    /// A handler over `view`; `log` changes the log filter (none: refused);
    /// `configfs_root` is where served LUNs are resized.
    pub fn new(view: Box<dyn View>, log: Option<LogHandle>, configfs_root: PathBuf) -> Self {
        DaemonControl {
            view,
            log,
            configfs_root,
            subtypes: Subtypes::default(),
            started: Instant::now(),
        }
    }

    /// The dev_config subtypes the daemon serves (`[daemon.subtypes]`), to
    /// tell which devices serve a volume.
    pub fn with_subtypes(mut self, subtypes: Subtypes) -> Self {
        self.subtypes = subtypes;
        self
    }

    /// The supervisor's view, or the error response when it did not answer.
    fn current_view(&self, id: Option<u64>) -> Result<ControlView, Response> {
        self.view
            .view()
            .map_err(|e| Response::error(id, ErrorKind::Unavailable, e))
    }

    fn status(&self, id: Option<u64>) -> Response {
        let v = match self.current_view(id) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let pools = pool_statuses(&v.registries);
        Response::ok(
            id,
            Reply::Status(Status {
                pid: std::process::id(),
                uptime_s: self.started.elapsed().as_secs_f64(),
                devices: v.devices,
                failed: v.failed,
                pools,
            }),
        )
    }

    fn log_level(&self, id: Option<u64>, filter: &str) -> Response {
        let Some(log) = &self.log else {
            return Response::error(
                id,
                ErrorKind::Unavailable,
                "this daemon's logging cannot be changed at run time",
            );
        };
        match log.set_level(filter) {
            Ok(()) => {
                tracing::info!(filter, "log filter changed through the control socket");
                Response::ok(
                    id,
                    Reply::Done {
                        done: format!("log filter is now {filter:?}"),
                    },
                )
            }
            Err(e) => Response::error(id, ErrorKind::InvalidArgument, e.to_string()),
        }
    }

    fn pool(&self, id: Option<u64>, cmd: &PoolCommand) -> Response {
        let v = match self.current_view(id) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let Some((reg, name)) = find_pool(&v.registries, cmd.dir()) else {
            return not_held(id, cmd.dir());
        };
        if !cmd.runs_online() {
            return match reg.held(&name) {
                // At rest: the CLI runs it offline (the pool lock keeps the
                // daemon out meanwhile).
                None => not_held(id, cmd.dir()),
                Some(_) => Response::error(
                    id,
                    ErrorKind::NotOnline,
                    format!(
                        "pool {name} ({}) is open in the running tcmud (pid {}): this command \
                         needs the pool at rest; remove the LUNs using it (or stop tcmud) first",
                        cmd.dir().display(),
                        std::process::id()
                    ),
                ),
            };
        }
        match reg.pool(&name, false) {
            Ok(pool) => run(id, |out| offline::run_pool_on(cmd, Some(&pool), out)),
            Err(e) => Response::error(id, ErrorKind::Pool, e.to_string()),
        }
    }

    fn volume(&self, id: Option<u64>, cmd: &VolumeCommand) -> Response {
        let v = match self.current_view(id) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if let Some(pool) = super::rbd_volume::rbd_pool(cmd.dir()) {
            if let VolumeCommand::Resize {
                name: image, size, ..
            } = cmd
            {
                return self.resize_rbd(id, &v, &pool, image, *size);
            }
            return super::rbd_volume::run(id, &v.backstores, &pool, cmd);
        }
        let Some((reg, name)) = find_pool(&v.registries, cmd.dir()) else {
            return not_held(id, cmd.dir());
        };
        let pool = match reg.pool(&name, false) {
            Ok(p) => p,
            Err(e) => return Response::error(id, ErrorKind::Pool, e.to_string()),
        };
        if let Some(r) = through_actor(id, &v.backstores, &name, cmd) {
            return r;
        }
        match cmd {
            VolumeCommand::Delete { name: vol, .. } => {
                if let Some(d) = serving(&v.devices, &self.subtypes, &name, vol).next() {
                    return Response::error(
                        id,
                        ErrorKind::Served,
                        format!(
                            "{vol} is served by /dev/uio{} ({}): remove that LUN first",
                            d.minor, d.name
                        ),
                    );
                }
            }
            VolumeCommand::Resize {
                name: vol, size, ..
            } => {
                let served: Vec<&DeviceStatus> =
                    serving(&v.devices, &self.subtypes, &name, vol).collect();
                if !served.is_empty() {
                    return self.resize_served(id, &pool, vol, *size, &served);
                }
            }
            _ => {}
        }
        run(id, |out| offline::run_volume_on(cmd, Some(&pool), out))
    }

    /// A served volume grows through its LUN: the new size is written to
    /// each serving device's configfs `attrib/dev_size`; the kernel sends
    /// RECONFIG, the device grows the volume and raises CAPACITY DATA HAS
    /// CHANGED. Answers once the volume has the new size.
    fn resize_served(
        &self,
        id: Option<u64>,
        pool: &Pool,
        vol: &str,
        size: u64,
        served: &[&DeviceStatus],
    ) -> Response {
        let current = match volume_size(pool, vol) {
            Ok(Some(current)) => current,
            Ok(None) => {
                return Response::error(id, ErrorKind::Pool, format!("no volume named {vol:?}"))
            }
            Err(e) => return Response::error(id, ErrorKind::Pool, e.to_string()),
        };
        let shrink = "remove the LUN, then resize with --force";
        self.grow_through_luns(id, (vol, shrink), current, size, served, || {
            volume_size(pool, vol).ok().flatten()
        })
    }

    /// `tcmud volume resize rbd:<pool> <image> --size N`: a served image
    /// grows through its LUNs as a thin volume does (RECONFIG →
    /// `rbd_resize`); one this daemon does not serve is the rbd CLI's.
    fn resize_rbd(
        &self,
        id: Option<u64>,
        v: &ControlView,
        pool: &str,
        image: &str,
        size: u64,
    ) -> Response {
        if image.contains('@') {
            return Response::error(
                id,
                ErrorKind::InvalidArgument,
                format!("{image:?} is a snapshot: snapshots are read-only and keep their size"),
            );
        }
        let Some(addr) = super::rbd_volume::served_image(&v.backstores, pool, image, None) else {
            return Response::error(
                id,
                ErrorKind::Pool,
                format!(
                    "rbd image {pool}/{image} is not served by this daemon: use the rbd CLI \
                     (rbd resize)"
                ),
            );
        };
        let usage = |addr: &Addr<BackstoreActor>| {
            futures::executor::block_on(addr.send(Usage))
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let current = match usage(&addr) {
            Ok(u) => u,
            Err(e) => {
                return Response::error(
                    id,
                    ErrorKind::Unavailable,
                    format!("the image's backstore actor did not answer: {e}"),
                )
            }
        };
        let served: Vec<&DeviceStatus> = v
            .devices
            .iter()
            .filter(|d| current.users.contains(&d.minor))
            .collect();
        if served.is_empty() {
            return Response::error(
                id,
                ErrorKind::Unavailable,
                format!("rbd image {pool}/{image} is being opened or closed: try again"),
            );
        }
        let label = format!("{pool}/{image}");
        let shrink = "remove the LUN, then shrink the image with the rbd CLI";
        self.grow_through_luns(
            id,
            (&label, shrink),
            current.size_bytes,
            size,
            &served,
            || usage(&addr).ok().map(|u| u.size_bytes),
        )
    }

    /// Grows `what` (now `current` bytes, served by `served`) to `size`
    /// through its LUNs' configfs `dev_size`, then waits until `now`
    /// reports the new size. A served volume never shrinks (the refusal
    /// says how: `shrink`).
    fn grow_through_luns(
        &self,
        id: Option<u64>,
        (what, shrink): (&str, &str),
        current: u64,
        size: u64,
        served: &[&DeviceStatus],
        now: impl Fn() -> Option<u64>,
    ) -> Response {
        if size < current {
            return Response::error(
                id,
                ErrorKind::Served,
                format!(
                    "{what} is served by /dev/uio{}: it cannot shrink while an initiator uses it \
                     ({shrink})",
                    served[0].minor
                ),
            );
        }
        for d in served {
            let attr = self
                .configfs_root
                .join("target/core")
                .join(&d.name)
                .join("attrib/dev_size");
            if let Err(e) = std::fs::write(&attr, format!("{size}\n")) {
                return Response::error(
                    id,
                    ErrorKind::Unavailable,
                    format!("cannot resize the LUN: writing {}: {e}", attr.display()),
                );
            }
        }
        let deadline = Instant::now() + RESIZE_WAIT;
        loop {
            let now = now();
            if now == Some(size) {
                return Response::ok(
                    id,
                    Reply::Command {
                        output: format!(
                            "resized {what} to {} (LUN {} updated)\n",
                            offline::size::human(size),
                            served
                                .iter()
                                .map(|d| format!("/dev/uio{}", d.minor))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        problems: false,
                    },
                );
            }
            if Instant::now() >= deadline {
                return Response::error(
                    id,
                    ErrorKind::Unavailable,
                    format!(
                        "the LUN took the new size but {what} is still {} after {} s; see the \
                         daemon's log",
                        now.map_or_else(|| "missing".into(), offline::size::human),
                        RESIZE_WAIT.as_secs()
                    ),
                );
            }
            // Polls the volume's size: the RECONFIG that changes it comes
            // from the kernel, which tells this request nothing.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Handler for DaemonControl {
    fn handle(&self, req: Request) -> Response {
        let id = req.id;
        tracing::debug!(?req, "control request");
        match &req.op {
            Op::Status => self.status(id),
            Op::LogLevel { filter } => self.log_level(id, filter),
            Op::Pool(cmd) => self.pool(id, cmd),
            Op::Volume(cmd) => {
                let r = self.volume(id, cmd);
                if matches!(r.outcome, super::protocol::Outcome::Ok(_)) {
                    tracing::info!(?cmd, "volume command done through the control socket");
                }
                r
            }
        }
    }
}

/// The configured pools (each name once, the newest registry's first), with
/// capacity, allocation and low-water state for those open in the daemon:
/// what `status` and the metrics report.
pub fn pool_statuses(registries: &[Arc<PoolRegistry>]) -> Vec<PoolStatus> {
    let mut pools: Vec<PoolStatus> = Vec::new();
    for reg in registries {
        for spec in reg.specs() {
            if pools.iter().any(|p| p.name == spec.name) {
                continue;
            }
            let held = reg.held(&spec.name);
            let usage = held.as_ref().and_then(|p| p.usage().ok());
            // the pool as the daemon holds it, when it answers for its usage
            let held_open = held.filter(|_| usage.is_some());
            let bytes = |chunks: u64, cs: u32| chunks * u64::from(cs);
            pools.push(PoolStatus {
                name: spec.name.clone(),
                path: spec.path.display().to_string(),
                open: usage.is_some(),
                capacity_bytes: usage
                    .as_ref()
                    .map(|u| bytes(u.capacity_chunks, u.chunk_size)),
                allocated_bytes: usage
                    .as_ref()
                    .map(|u| bytes(u.allocated_chunks, u.chunk_size)),
                low_water: usage.as_ref().map(PoolUsage::above_low_water),
                free_bytes: usage.as_ref().map(|u| bytes(u.free_chunks, u.chunk_size)),
                mapping_lookups: held_open.as_ref().and_then(|p| p.memo_counts()),
                commit_latency: held_open.map(|p| p.commit_latency()),
            });
        }
    }
    pools
}

/// Runs a snapshot, clone or delete of an open volume through its
/// backstore's actor (`None`: the command is not one of those, or the
/// volume is not open).
fn through_actor(
    id: Option<u64>,
    backstores: &Backstores,
    pool: &str,
    cmd: &VolumeCommand,
) -> Option<Response> {
    let key = |volume: &str| DevConfig::Thin {
        pool: pool.to_owned(),
        volume: volume.to_owned(),
    };
    let (r, output) = match cmd {
        VolumeCommand::Snapshot {
            volume, snapshot, ..
        } => snapshot_via(&backstores.get(&key(volume))?, volume, snapshot),
        VolumeCommand::Clone {
            snapshot,
            new_volume,
            ..
        } => clone_via(&backstores.get(&key(snapshot))?, snapshot, new_volume),
        VolumeCommand::Delete { name, .. } => {
            let addr = backstores.get(&key(name))?;
            (
                futures::executor::block_on(addr.send(Delete)),
                format!("deleted {name}\n"),
            )
        }
        _ => return None,
    };
    Some(match r {
        Ok(Ok(())) => Response::ok(
            id,
            Reply::Command {
                output,
                problems: false,
            },
        ),
        Ok(Err(e)) => {
            let kind = match e {
                BackstoreError::Served { .. } => ErrorKind::Served,
                BackstoreError::Pool { .. } | BackstoreError::Unsupported(_) => ErrorKind::Pool,
                _ => ErrorKind::Unavailable,
            };
            Response::error(id, kind, e.to_string())
        }
        Err(e) => Response::error(
            id,
            ErrorKind::Unavailable,
            format!("the volume's backstore actor did not answer: {e}"),
        ),
    })
}

/// What a backstore actor answered, and the line printed on success.
pub(super) type ActorAnswer = (Result<Result<(), BackstoreError>, MailboxError>, String);

/// Has the backstore actor `addr` take snapshot `snapshot` of `volume`
/// (an open thin volume or a served RBD image).
pub(super) fn snapshot_via(
    addr: &Addr<BackstoreActor>,
    volume: &str,
    snapshot: &str,
) -> ActorAnswer {
    let r = futures::executor::block_on(addr.send(Snapshot {
        name: snapshot.to_owned(),
    }));
    (r, format!("snapshot {snapshot} of {volume} taken\n"))
}

/// Has the backstore actor `addr` (of snapshot `snapshot`) clone it as
/// `new_volume`.
pub(super) fn clone_via(
    addr: &Addr<BackstoreActor>,
    snapshot: &str,
    new_volume: &str,
) -> ActorAnswer {
    let r = futures::executor::block_on(addr.send(CloneTo {
        new_volume: new_volume.to_owned(),
    }));
    (r, format!("cloned {snapshot} as {new_volume}\n"))
}

/// The size of volume `vol` (`None`: no such volume).
fn volume_size(pool: &Pool, vol: &str) -> Result<Option<u64>, tcmud_core::pool::PoolError> {
    Ok(pool
        .list_volumes()?
        .into_iter()
        .find(|i| i.name == vol)
        .map(|i| i.size_bytes))
}

fn not_held(id: Option<u64>, dir: &Path) -> Response {
    Response::error(
        id,
        ErrorKind::NotHeld,
        format!("{} is not one of this daemon's pools", dir.display()),
    )
}

/// The registry and configured name of the pool in `dir`.
fn find_pool(regs: &[Arc<PoolRegistry>], dir: &Path) -> Option<(Arc<PoolRegistry>, String)> {
    let want = canonical(dir);
    regs.iter().rev().find_map(|r| {
        r.specs()
            .iter()
            .find(|s| canonical(&s.path) == want)
            .map(|s| (Arc::clone(r), s.name.clone()))
    })
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The served devices whose dev_config is `<thin>/<pool>/<volume>` (with
/// the configured subtype, options after `;` allowed).
fn serving<'a>(
    devices: &'a [DeviceStatus],
    subtypes: &'a Subtypes,
    pool: &'a str,
    volume: &'a str,
) -> impl Iterator<Item = &'a DeviceStatus> + 'a {
    devices.iter().filter(move |d| {
        matches!(DevConfig::parse_as(&d.dev_config, subtypes),
            Ok(Some(DevConfig::Thin { pool: p, volume: v })) if p == pool && v == volume)
    })
}

/// Runs an offline command's code, capturing its output.
fn run(
    id: Option<u64>,
    f: impl FnOnce(&mut dyn std::io::Write) -> Result<Outcome, OfflineError>,
) -> Response {
    let mut out = Vec::new();
    match f(&mut out) {
        Ok(o) => Response::ok(
            id,
            Reply::Command {
                output: String::from_utf8_lossy(&out).into_owned(),
                problems: o == Outcome::Problems,
            },
        ),
        Err(OfflineError::Usage(m)) => Response::error(id, ErrorKind::InvalidArgument, m),
        Err(e) => Response::error(id, ErrorKind::Pool, e.to_string()),
    }
}
