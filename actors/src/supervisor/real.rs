//! The production [`DeviceFactory`]: backstores opened through their actors
//! (`backstore::Backstores`), device actors from `device::spawn_device`.

use super::devices::{
    DeviceCtl, DeviceFactory, DeviceRequest, Opened, Ownership, ReconfigError, SpawnError, Stopped,
};
use crate::backstore::{
    Attachment, BackstoreError, Backstores, DevConfig, OpenRequest, PoolRegistry, PoolSpec,
    SharedIo,
};
use crate::config::{self, DaemonConfig, ThreadCounts};
use crate::device::{self, DeviceError, DeviceHandle, DeviceSpec, DeviceThreads, RestartBudget};
use futures::future::LocalBoxFuture;
use std::path::PathBuf;
use std::sync::Arc;

/// Creates real device actors; pools are opened lazily, once per process.
///
/// sled opens a path once per process, so a reload never re-creates a registry
/// for pools already known: pools *added* by a reload get a registry of their own.
///
/// Every device shares the same threads, started with the first device: the
/// device threads its actors are spread over and the I/O threads of every
/// backstore (counts from the configuration at start-up).
pub struct RealFactory {
    registries: Vec<Arc<PoolRegistry>>,
    known: Vec<config::PoolConfig>,
    file_roots: Vec<PathBuf>,
    subtypes: config::Subtypes,
    counts: ThreadCounts,
    threads: Option<(SharedIo, DeviceThreads)>,
    backstores: Backstores,
}

impl RealFactory {
    /// A factory serving the pools of `cfg`.
    pub fn new(cfg: &DaemonConfig) -> Self {
        RealFactory {
            registries: vec![Arc::new(PoolRegistry::new(
                cfg.pools.iter().map(PoolSpec::from).collect(),
            ))],
            known: cfg.pools.clone(),
            file_roots: cfg.file_roots.clone(),
            subtypes: cfg.subtypes.clone(),
            counts: cfg.thread_counts(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
            threads: None,
            backstores: Backstores::new(),
        }
    }

    /// The thread counts this factory uses.
    pub fn thread_counts(&self) -> ThreadCounts {
        self.counts
    }

    /// The shared I/O and device threads, started on first use; every
    /// registry runs its backstores' I/O on them.
    fn threads(&mut self) -> Result<DeviceThreads, SpawnError> {
        let (io, devices) = match &self.threads {
            Some(t) => t.clone(),
            None => {
                let c = self.counts;
                let io = SharedIo::new(c.io, c.io_per_backstore)
                    .map_err(|e| SpawnError::new(libc::EAGAIN, e.to_string()))?;
                let devices = DeviceThreads::new(c.device).map_err(|e| {
                    SpawnError::new(
                        e.raw_os_error().unwrap_or(libc::EAGAIN),
                        format!("start the device threads: {e}"),
                    )
                })?;
                tracing::info!(
                    device_threads = c.device,
                    io_threads = c.io,
                    io_jobs_per_backstore = c.io_per_backstore,
                    "device and I/O threads started"
                );
                self.threads = Some((io.clone(), devices.clone()));
                (io, devices)
            }
        };
        for r in &self.registries {
            r.use_io(&io);
        }
        Ok(devices)
    }

    fn registry_for(&self, pool: &str) -> Option<Arc<PoolRegistry>> {
        self.registries
            .iter()
            .rev()
            .find(|r| r.spec(pool).is_ok())
            .cloned()
    }
}

/// Classifies a dev_config through the backstore parser (default subtypes).
pub fn classify(dev_config: &str) -> Ownership {
    classify_as(dev_config, &config::Subtypes::default())
}

/// Classifies a dev_config with the configured subtypes.
pub fn classify_as(dev_config: &str, subtypes: &config::Subtypes) -> Ownership {
    match DevConfig::parse_as(dev_config, subtypes) {
        Ok(Some(_)) => Ownership::Ours,
        Ok(None) => Ownership::Foreign,
        Err(e) => Ownership::Invalid(e.to_string()),
    }
}

fn backstore_errno(e: &BackstoreError) -> i32 {
    match e {
        BackstoreError::BadDevConfig { .. } | BackstoreError::BlockSize { .. } => libc::EINVAL,
        BackstoreError::UnknownPool(_)
        | BackstoreError::PoolMissing { .. }
        | BackstoreError::VolumeMissing { .. }
        | BackstoreError::ImageMissing { .. } => libc::ENOENT,
        BackstoreError::FileOff { .. } | BackstoreError::FileOutsideRoots { .. } => libc::EACCES,
        BackstoreError::FileType { .. } => libc::EINVAL,
        BackstoreError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        BackstoreError::Unsupported(_) => libc::EOPNOTSUPP,
        BackstoreError::Rbd { errno, .. } => *errno,
        BackstoreError::Shrink { .. } => libc::EINVAL,
        BackstoreError::Pool { source, .. }
            if source.kind() == tcmud_core::pool::PoolErrorKind::ShrinkNotForced =>
        {
            libc::EINVAL
        }
        _ => libc::EIO,
    }
}

fn device_errno(e: &DeviceError) -> i32 {
    match e {
        DeviceError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        DeviceError::Recovery(_) => libc::EINVAL,
        _ => libc::EIO,
    }
}

/// A served device and its use of the backstore (detached when the device
/// is dropped, after its stop).
struct RealDevice(DeviceHandle, Attachment);

impl DeviceCtl for RealDevice {
    fn stop(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        let RealDevice(device, attachment) = *self;
        Box::pin(async move {
            device.stop().await;
            drop(attachment);
        })
    }
    fn stop_reporting(self: Box<Self>) -> LocalBoxFuture<'static, Stopped> {
        let RealDevice(device, attachment) = *self;
        Box::pin(async move {
            let abandoned = device.stop_reporting().await;
            drop(attachment);
            Stopped { abandoned }
        })
    }
    fn resize(&self, new_size: u64) -> LocalBoxFuture<'static, Result<(), ReconfigError>> {
        // The backstore's actor grows it; the device announces the change.
        let done = self.0.resize_through(new_size, self.1.resize(new_size));
        Box::pin(async move {
            done.await.map_err(|e| ReconfigError {
                errno: backstore_errno(&e),
                message: e.to_string(),
            })
        })
    }
    fn set_write_cache(&self, on: bool) {
        self.0.set_write_cache(on);
    }
    fn is_failed(&self) -> bool {
        self.0.is_failed()
    }
    fn stats(&self) -> Option<crate::device::DeviceStats> {
        Some(self.0.stats())
    }
    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
    fn latency(
        &self,
    ) -> Vec<(
        tcmud_core::scsi::OpClass,
        tcmud_core::latency::HistogramSnapshot,
    )> {
        self.0.latency()
    }
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl DeviceFactory for RealFactory {
    fn ownership(&self, dev_config: &str) -> Ownership {
        classify_as(dev_config, &self.subtypes)
    }

    fn spawn(&mut self, req: DeviceRequest) -> Result<Box<dyn DeviceCtl>, SpawnError> {
        let opened = self.open(&req)?;
        self.spawn_opened(req, opened)
    }

    fn open(&mut self, req: &DeviceRequest) -> Result<Opened, SpawnError> {
        let (cfg, dev_opts) =
            match DevConfig::parse_with_options_as(&req.uio.dev_config, &self.subtypes) {
                Ok(Some(c)) => c,
                Ok(None) => return Err(SpawnError::new(libc::EINVAL, "not a tcmud dev_config")),
                Err(e) => return Err(SpawnError::new(backstore_errno(&e), e.to_string())),
            };
        // The shared I/O threads exist before the backstore takes a lane of them.
        self.threads()?;
        let registry = match &cfg {
            DevConfig::Thin { pool, .. } => match self.registry_for(pool) {
                Some(r) => r,
                None => {
                    let e = BackstoreError::UnknownPool(pool.clone());
                    return Err(SpawnError::new(libc::ENOENT, e.to_string()));
                }
            },
            DevConfig::File { .. } | DevConfig::Rbd(_) => match self.registries.first() {
                Some(r) => Arc::clone(r),
                None => {
                    let fallback = PoolRegistry::new(Vec::new());
                    if let Some((io, _)) = &self.threads {
                        fallback.use_io(io);
                    }
                    Arc::new(fallback)
                }
            },
        };
        // Nothing is created for a device that was already there at start-up: an
        // unmounted pool or image path must fail, not come back as an empty disk. A
        // device a rescan found (its ADDED event lost) is new: its thin volume is
        // created as for the event, in a pool that is open already (so mounted).
        let may_create = !req.adopted
            || (req.lost_event
                && matches!(&cfg, DevConfig::Thin { pool, .. } if registry.held(pool).is_some()));
        let attachment = self
            .backstores
            .open_blocking(OpenRequest {
                config: cfg,
                options: dev_opts,
                size_bytes: req.size_bytes,
                block_size: req.block_size,
                registry,
                may_create,
                file_roots: self.file_roots.clone(),
                minor: Some(req.minor),
            })
            .map_err(|e| SpawnError::new(backstore_errno(&e), e.to_string()))?;
        Ok(Opened(Box::new(attachment)))
    }

    fn spawn_opened(
        &mut self,
        req: DeviceRequest,
        opened: Opened,
    ) -> Result<Box<dyn DeviceCtl>, SpawnError> {
        let attachment = match opened.0.downcast::<Attachment>() {
            Ok(b) => *b,
            Err(_) => return Err(SpawnError::new(libc::EINVAL, "no backstore opened")),
        };
        let spec = DeviceSpec {
            minor: req.minor,
            uio_name: req.uio_name,
            dev_config: req.uio.dev_config,
            dev_path: req.dev_path,
            sysfs_dir: req.sysfs_dir,
            configfs_dir: req.configfs_dir,
            size_bytes: req.size_bytes,
            recovery: match req.recovery {
                config::RecoveryPolicy::Reset => device::RecoveryPolicy::Reset,
                config::RecoveryPolicy::Replay => device::RecoveryPolicy::Replay,
            },
            restart_budget: RestartBudget::default(),
            adopted: req.adopted,
        };
        let threads = self.threads()?;
        let opts = device::DeviceOptions {
            drain_timeout: req.drain_timeout,
            alua: req.alua.as_deref().cloned(),
            threads: Some(threads),
            ..device::DeviceOptions::default()
        };
        let handle = device::spawn_device_with(spec, attachment.handle().clone(), opts)
            .map_err(|e| SpawnError::new(device_errno(&e), e.to_string()))?;
        Ok(Box::new(RealDevice(handle, attachment)))
    }

    fn reload(&mut self, cfg: &DaemonConfig) {
        if self.subtypes != cfg.subtypes {
            tracing::warn!(subtypes = ?cfg.subtypes, "changed subtypes take effect after a restart");
        }
        if self.file_roots != cfg.file_roots {
            tracing::info!(file_roots = ?cfg.file_roots, "file_roots changed (applies to devices opened from now on)");
            self.file_roots = cfg.file_roots.clone();
        }
        let mut added = Vec::new();
        for p in &cfg.pools {
            match self
                .known
                .iter()
                .find(|k| k.name == p.name || k.path == p.path)
            {
                Some(k) if k == p => {}
                Some(k) => tracing::warn!(
                    pool = %p.name,
                    "changed settings of pool {:?} take effect after a restart",
                    k.name
                ),
                None => added.push(p.clone()),
            }
        }
        if !added.is_empty() {
            tracing::info!(pools = ?added.iter().map(|p| &p.name).collect::<Vec<_>>(), "new pools configured");
            self.registries.push(Arc::new(PoolRegistry::new(
                added.iter().map(PoolSpec::from).collect(),
            )));
            self.known.extend(added);
        }
    }

    fn flush_all(&self) -> Result<(), String> {
        let mut first = None;
        for r in &self.registries {
            if let Err(e) = r.flush_all() {
                first.get_or_insert(e.to_string());
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn registries(&self) -> Vec<Arc<PoolRegistry>> {
        self.registries.clone()
    }

    fn backstores(&self) -> Backstores {
        self.backstores.clone()
    }
}
