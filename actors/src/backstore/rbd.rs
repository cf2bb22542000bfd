//! The RBD backstore: a Ceph RBD image (or snapshot) through librbd
//! ([`tcmud_rbd`]) as a [`BlockBackend`].
//!
//! Every call is a librbd `aio_*` operation; the blocking [`BlockBackend`]
//! methods (run on the I/O threads) wait for its completion. Errors:
//! - a timeout (`osd_op_timeout=` passed) is retried once, then the command
//!   fails NOT READY / LOGICAL UNIT COMMUNICATION FAILURE (08/00): the
//!   initiator retries; without `osd_op_timeout` librbd waits for the
//!   cluster (the kernel's cmd_time_out then applies);
//! - a blocklisted client (another client broke the image's exclusive lock)
//!   gets a new connection and image handle, retried with back-off on a
//!   thread of its own, commands failing NOT READY (08/00) meanwhile;
//! - an image deleted under us (an operation or the reopen finds it
//!   missing): logged once, and every command of its LUN fails HARDWARE
//!   ERROR / INTERNAL TARGET FAILURE (44/00), no reopen tried; the other
//!   LUNs are not concerned.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tcmud_core::backend::{
    Allocation, AsyncBackend, AsyncDone, BackendCaps, BackendError, BackendEvent, BlockBackend,
    BlockSink, BlockSource, CompareWrite,
};
use tcmud_core::ring::SharedData;
use tcmud_core::scsi::{LunIdentity, OwnershipCell};
use tcmud_rbd::{AioDone, Cluster, ConnectOptions, DoneFn, Image, RbdError};

use super::handle::{RbdLive, RbdOps};
use super::{BackstoreError, DevOptions, RbdSpec};

/// Most bytes one allocation query walks (GET LBA STATUS may ask for less).
const ALLOCATION_SPAN: u64 = 1 << 30;

/// Most buffers one vectored librbd call takes (librbd refuses more than
/// `IOV_MAX`); a command in more of them (a transfer of several MiB over a
/// fragmented data area) goes through a buffer of ours.
const MAX_IOVECS: usize = 1024;

/// Back-off between reopen attempts: doubling from the first to the last.
const REOPEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// What the backend shares with its reopen thread.
struct Shared {
    spec: RbdSpec,
    read_only: bool,
    image: RwLock<Arc<Image>>,
    reopening: AtomicBool,
    /// The image no longer exists (deleted while served): every command
    /// fails, no reopen is tried.
    gone: AtomicBool,
    /// The ALUA ownership signal: who holds the exclusive lock (kept by
    /// [`super::rbd_owner`]) and whether the cluster is reachable (a
    /// timeout or a blocklisting says no; a reopen, or the watcher's next
    /// answer from the cluster, yes).
    ownership: Arc<OwnershipCell>,
}

impl Shared {
    /// Records whether the cluster answers (logged on a change). Not for a
    /// read-only image: it has no lock watcher, whose answers would mark
    /// it reachable again once its port refuses every command.
    fn set_reachable(&self, reachable: bool, why: &str) {
        if self.read_only {
            return;
        }
        if self.ownership.set_reachable(reachable) {
            tracing::info!(image = %self.spec.image_ref(), reachable, why,
                "rbd cluster reachability changed (ALUA: this port unavailable while unreachable)");
        }
    }
}

/// An open RBD image.
pub struct RbdBackend {
    shared: Arc<Shared>,
    block_size: u32,
    obj_size: u64,
    /// Blocks per RADOS object: the UNMAP granularity.
    per_obj: u32,
    size: AtomicU64,
    events: Mutex<VecDeque<BackendEvent>>,
}

/// What an operation was, for its error.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
    Flush,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect_open(spec: &RbdSpec, read_only: bool) -> Result<Image, RbdError> {
    let mut options = vec![
        // Writes are acknowledged when the OSDs have them (no client cache
        // whose loss would lose acknowledged writes), as tcmu-runner does.
        ("rbd_cache".to_owned(), "false".to_owned()),
        // UNMAP (rbd_aio_discard) zeroes what it cannot deallocate, so
        // unmapped blocks read as zeros (LBPRZ).
        ("rbd_skip_partial_discard".to_owned(), "false".to_owned()),
        // librbd copies a write's bytes out of the data area
        // (`rbd_disable_zero_copy_writes` left on): without the copy it
        // completes a write only once the messenger released the caller's
        // buffer, which a write queued to a dead OSD holds, so an
        // `osd_op_timeout` no longer fails the command in time (seen in
        // device_rbd_outage).
    ];
    if let Some(t) = spec.osd_op_timeout {
        options.push(("rados_osd_op_timeout".to_owned(), t.to_string()));
        // Connecting waits no longer than an operation would.
        options.push(("client_mount_timeout".to_owned(), t.to_string()));
    }
    let cluster = Cluster::connect(&ConnectOptions {
        conf: spec.conf.clone(),
        id: spec.id.clone(),
        options,
    })?;
    let io = cluster.ioctx(&spec.pool)?;
    Image::open(io, &spec.image, spec.snap.as_deref(), read_only)
}

fn rbd_err(spec: &RbdSpec, what: &str) -> impl Fn(RbdError) -> BackstoreError {
    let what = format!("{what} rbd image {}", spec.image_ref());
    move |e| BackstoreError::Rbd {
        what: format!("{what} ({})", e.op),
        errno: e.errno,
    }
}

/// Opens the image of `spec` for a device of `size_bytes` in blocks of
/// `block_size` bytes: the backend, the LUN's identity (from the cluster's
/// fsid, the pool and the image's id: stable across renames and daemons)
/// its live operations (resize, snapshot, clone) and the ownership of its
/// exclusive lock (kept current by a watcher thread while the backend
/// lives: [`super::rbd_owner`]).
pub(super) fn open(
    spec: &RbdSpec,
    opts: &DevOptions,
    size_bytes: u64,
    block_size: u32,
) -> Result<Opened, BackstoreError> {
    let read_only = opts.read_only || spec.snap.is_some();
    let image = connect_open(spec, read_only).map_err(rbd_err(spec, "open"))?;
    let info = image.info().map_err(rbd_err(spec, "stat"))?;
    let id = image.id().map_err(rbd_err(spec, "id of"))?;
    let fsid = image
        .ioctx()
        .cluster()
        .fsid()
        .map_err(rbd_err(spec, "cluster fsid for"))?;
    if info.size % u64::from(block_size) != 0 {
        tracing::warn!(image = %spec.image_ref(), size = info.size, block_size,
            "image size is not a whole number of blocks; the tail is not served");
    }
    if info.size != size_bytes {
        tracing::warn!(image = %spec.image_ref(), have = info.size, want = size_bytes,
            "image size differs from the device size; served at the image's size");
    }
    let obj_size = info.obj_size.max(u64::from(block_size));
    let per_obj = blocks_per_object(obj_size, block_size).ok_or_else(|| {
        BackstoreError::Unsupported(format!(
            "rbd image {}: objects of {obj_size} bytes are more than 2^32 blocks of {block_size}",
            spec.image_ref()
        ))
    })?;
    let snap = spec.snap.as_deref().unwrap_or("");
    let identity = identity_of(&format!("{fsid}/{}/{id}@{snap}", spec.pool));
    let ownership = Arc::new(OwnershipCell::new());
    let backend = Arc::new(RbdBackend {
        shared: Arc::new(Shared {
            spec: spec.clone(),
            read_only,
            image: RwLock::new(Arc::new(image)),
            reopening: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            ownership: Arc::clone(&ownership),
        }),
        block_size,
        obj_size,
        per_obj,
        size: AtomicU64::new(info.size),
        events: Mutex::new(VecDeque::new()),
    });
    tracing::info!(image = %spec.image_ref(), size = info.size, id, read_only, "rbd image open");
    let ops: RbdOps = Arc::new(Live(Arc::downgrade(&backend)));
    if !read_only {
        let (weak, weak2) = (
            Arc::downgrade(&backend.shared),
            Arc::downgrade(&backend.shared),
        );
        let hooks = super::rbd_owner::WatchHooks {
            current: Box::new(move || {
                let shared = weak.upgrade()?;
                if shared.reopening.load(Ordering::Acquire) || shared.gone.load(Ordering::Acquire) {
                    return Some(None); // nothing to ask until reopened
                }
                let image = shared.image.read().unwrap_or_else(|p| p.into_inner());
                Some(Some(Arc::clone(&image)))
            }),
            blocklisted: Box::new(move || {
                if let Some(shared) = weak2.upgrade() {
                    start_reopen(&shared);
                }
            }),
        };
        super::rbd_owner::watch(spec.image_ref(), Arc::clone(&ownership), hooks);
    }
    Ok(Opened {
        backend,
        identity,
        ops,
        ownership,
    })
}

/// Blocks of `block_size` in an object of `obj_size` bytes (librbd's
/// `rbd_stat`), at least one; None when more than a u32 holds (the UNMAP
/// granularity's type).
fn blocks_per_object(obj_size: u64, block_size: u32) -> Option<u32> {
    u32::try_from(obj_size / u64::from(block_size))
        .ok()
        .map(|n| n.max(1))
}

/// What [`open`] returns.
pub(super) struct Opened {
    pub backend: Arc<dyn BlockBackend>,
    pub identity: LunIdentity,
    pub ops: RbdOps,
    pub ownership: Arc<OwnershipCell>,
}

/// The live operations of an open image (the backstore's [`RbdOps`]).
struct Live(Weak<RbdBackend>);

impl Live {
    fn get(&self, op: &str) -> Result<Arc<RbdBackend>, BackstoreError> {
        self.0
            .upgrade()
            .ok_or_else(|| BackstoreError::Unsupported(format!("{op} of a closed rbd image")))
    }
}

impl RbdLive for Live {
    fn resize(&self, bytes: u64) -> Result<(), BackstoreError> {
        self.get("resize")?.resize(bytes)
    }

    fn snapshot(&self, name: &str) -> Result<(), BackstoreError> {
        let b = self.get("a snapshot")?;
        let spec = &b.shared.spec;
        if spec.snap.is_some() {
            return Err(BackstoreError::Unsupported(format!(
                "a snapshot of rbd image {}: it is a snapshot itself",
                spec.image_ref()
            )));
        }
        b.image()
            .snap_create(name)
            .map_err(rbd_err(spec, &format!("snapshot {name} of")))?;
        tracing::info!(image = %spec.image_ref(), snapshot = name, "rbd snapshot taken");
        Ok(())
    }

    fn clone_to(&self, new_image: &str) -> Result<(), BackstoreError> {
        let b = self.get("a clone")?;
        let spec = &b.shared.spec;
        let Some(snap) = &spec.snap else {
            return Err(BackstoreError::Unsupported(format!(
                "a clone of rbd image {}: not a snapshot (serve or name image@snapshot)",
                spec.image_ref()
            )));
        };
        let io = Arc::clone(b.image().ioctx());
        // A snapshot is cloned only once protected (already is: fine),
        // which takes the image's head (this one is open at the snapshot).
        let head = Image::open(Arc::clone(&io), &spec.image, None, false)
            .map_err(rbd_err(spec, "open the head of"))?;
        match head.snap_protect(snap) {
            Ok(()) => {}
            Err(e) if e.errno == libc::EBUSY => {}
            Err(e) => return Err(rbd_err(spec, "protect the snapshot of")(e)),
        }
        drop(head);
        io.clone_image(&spec.image, snap, new_image)
            .map_err(rbd_err(spec, &format!("clone as {new_image}")))?;
        tracing::info!(image = %spec.image_ref(), clone = new_image, "rbd snapshot cloned");
        Ok(())
    }
}

/// 16 bytes from `key`: two FNV-1a 64-bit hashes with different offsets.
fn identity_of(key: &str) -> LunIdentity {
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    id[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4).to_be_bytes());
    LunIdentity(id)
}

impl RbdBackend {
    fn image(&self) -> Arc<Image> {
        Arc::clone(&self.shared.image.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn name(&self) -> String {
        self.shared.spec.image_ref()
    }

    /// Runs one operation and waits for it; a timeout is retried once.
    fn run(
        &self,
        op: Op,
        start: impl Fn(&Image, DoneFn) -> Result<(), RbdError>,
    ) -> Result<AioDone, BackendError> {
        if let Some(e) = self.reconnecting() {
            return Err(e);
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let image = self.image();
            let r = Image::wait(|done| start(&image, done)).and_then(|d| match &d.result {
                Ok(_) => Ok(d),
                Err(e) if e.is_miscompare() => Ok(d),
                Err(e) => Err(e.clone()),
            });
            match r {
                Ok(d) => return Ok(d),
                Err(e) if e.is_timeout() && tries < 2 => {
                    tracing::warn!(image = %self.name(), error = %e, "rbd operation timed out; retrying");
                }
                Err(e) => return Err(self.error(op, e)),
            }
        }
    }

    fn error(&self, op: Op, e: RbdError) -> BackendError {
        backend_error(&self.shared, op, e)
    }
}

/// The [`BackendError`] for `e` (a timeout or a blocklisted client is
/// [`BackendError::Unavailable`], the latter starting a reopen).
fn backend_error(shared: &Arc<Shared>, op: Op, e: RbdError) -> BackendError {
    let name = shared.spec.image_ref();
    if e.is_timeout() {
        tracing::warn!(image = %name, error = %e, "rbd cluster does not answer");
        shared.set_reachable(false, "an operation timed out");
        return BackendError::Unavailable(format!("rbd image {name}: {e}"));
    }
    if e.needs_reopen() {
        tracing::warn!(image = %name, error = %e, "rbd client blocklisted; reconnecting");
        shared.set_reachable(false, "blocklisted");
        start_reopen(shared);
        return BackendError::Unavailable(format!("rbd image {name}: {e}"));
    }
    if e.is_not_found() {
        return image_gone(shared, &e);
    }
    let io = io::Error::from_raw_os_error(e.errno);
    match op {
        Op::Read => BackendError::Read(io),
        Op::Write => BackendError::Write(io),
        Op::Flush => BackendError::Flush(io),
    }
}

impl RbdBackend {
    fn check_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BackendError> {
        let bs = u64::from(self.block_size);
        let n = self.caps().num_blocks;
        match lba.checked_add(blocks) {
            Some(end) if end <= n => Ok((lba * bs, blocks * bs)),
            _ => Err(BackendError::OutOfRange { lba, blocks }),
        }
    }

    fn check_writable(&self) -> Result<(), BackendError> {
        if self.shared.read_only {
            return Err(BackendError::ReadOnly);
        }
        Ok(())
    }

    fn blocks_of(&self, len: usize) -> u64 {
        (len / self.block_size as usize) as u64
    }

    fn resize(&self, bytes: u64) -> Result<(), BackstoreError> {
        let spec = &self.shared.spec;
        if self.shared.read_only {
            return Err(BackstoreError::Unsupported(format!(
                "resize of read-only rbd image {}",
                spec.image_ref()
            )));
        }
        let image = self.image();
        image.resize(bytes).map_err(rbd_err(spec, "resize"))?;
        self.size.store(bytes, Ordering::Release);
        tracing::info!(image = %spec.image_ref(), bytes, "rbd image resized");
        Ok(())
    }
}

/// Marks the image deleted (logged once): its commands fail HARDWARE ERROR
/// / INTERNAL TARGET FAILURE from now on; the other LUNs are not concerned.
fn image_gone(shared: &Shared, e: &RbdError) -> BackendError {
    let name = shared.spec.image_ref();
    if !shared.gone.swap(true, Ordering::AcqRel) {
        tracing::error!(image = %name, error = %e,
            "rbd image no longer exists (deleted while served): its LUN fails every command");
    }
    gone_error(&name)
}

fn gone_error(name: &str) -> BackendError {
    BackendError::Metadata(format!("rbd image {name} no longer exists"))
}

/// Reconnects on a thread of its own, with back-off, until it succeeds or
/// the backend is dropped.
fn start_reopen(shared: &Arc<Shared>) {
    if shared.reopening.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("tcmud-rbd-reopen".into())
        .spawn(move || {
            let mut wait = REOPEN_BACKOFF.0;
            loop {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                match connect_open(&shared.spec, shared.read_only) {
                    Ok(image) => {
                        *shared.image.write().unwrap_or_else(|p| p.into_inner()) =
                            Arc::new(image);
                        shared.reopening.store(false, Ordering::Release);
                        tracing::info!(image = %shared.spec.image_ref(), "rbd image reopened");
                        shared.set_reachable(true, "reopened");
                        return;
                    }
                    Err(e) if e.is_not_found() => {
                        image_gone(&shared, &e);
                        shared.reopening.store(false, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(image = %shared.spec.image_ref(), error = %e, retry_in = ?wait, "rbd reopen failed");
                    }
                }
                drop(shared);
                // Back-off between attempts (not a wait for an event).
                std::thread::sleep(wait);
                wait = (wait * 2).min(REOPEN_BACKOFF.1);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the rbd reopen thread");
        shared.reopening.store(false, Ordering::Release);
    }
}

impl BlockBackend for RbdBackend {
    fn caps(&self) -> BackendCaps {
        let bs = self.block_size;
        let size = match self.image().size() {
            Ok(now) => {
                let before = self.size.swap(now, Ordering::AcqRel);
                if before != now {
                    lock(&self.events).push_back(BackendEvent::CapacityChanged);
                }
                now
            }
            Err(_) => self.size.load(Ordering::Acquire),
        };
        let per_obj = self.per_obj;
        BackendCaps {
            block_size: bs,
            num_blocks: size / u64::from(bs),
            thin: true,
            // UNMAP is rbd_aio_discard with partial discards not skipped
            // (connect_open): whole objects are removed, partial ones
            // zeroed, so unmapped blocks read as zeros.
            zeroes_after_unmap: true,
            unmap_granularity: per_obj,
            max_unmap_blocks: per_obj.saturating_mul(4),
            max_unmap_descriptors: 256,
            volatile_cache: false,
            read_only: self.shared.read_only,
            // a write is atomic within one RADOS object only
            atomic_write: false,
        }
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let mut sink: &mut [u8] = buf;
        self.read_into(lba, &mut sink)
    }

    fn read_into(&self, lba: u64, sink: &mut dyn BlockSink) -> Result<(), BackendError> {
        let len = sink.len();
        let (off, _) = self.check_range(lba, self.blocks_of(len))?;
        let d = self.run(Op::Read, |img, done| img.aio_read(off, len, done))?;
        sink.write_at(0, &d.buf).map_err(BackendError::Read)
    }

    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.write_from(lba, &data, fua)
    }

    fn write_from(&self, lba: u64, src: &dyn BlockSource, fua: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        let (off, _) = self.check_range(lba, self.blocks_of(src.len()))?;
        let mut data = vec![0u8; src.len()];
        src.read_at(0, &mut data).map_err(BackendError::Write)?;
        self.run(Op::Write, |img, done| {
            img.aio_write(off, data.clone(), fua, done)
        })
        .map(drop)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.run(Op::Flush, |img, done| img.aio_flush(done))
            .map(drop)
    }

    fn compare_and_write(
        &self,
        lba: u64,
        verify: &[u8],
        write: &[u8],
        fua: bool,
    ) -> Option<Result<CompareWrite, BackendError>> {
        if let Err(e) = self.check_writable() {
            return Some(Err(e));
        }
        let (off, len) = match self.check_range(lba, self.blocks_of(write.len())) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // librbd compares within one object only: a range across an object
        // boundary takes the SCSI layer's read-compare-write.
        if !self.in_one_object(off, len) {
            return None;
        }
        let r = self.run(Op::Write, |img, done| {
            img.aio_compare_and_write(off, verify.to_vec(), write.to_vec(), done)
        });
        Some(r.and_then(|d| match d.mismatch_offset {
            Some(at) => Ok(CompareWrite::Miscompare(at)),
            None if fua => self.flush().map(|()| CompareWrite::Written),
            None => Ok(CompareWrite::Written),
        }))
    }

    /// SET TARGET PORT GROUPS naming this daemon's group active/optimized:
    /// the image's exclusive lock, taken the way a write takes it (librbd
    /// asks the owner to release it; a dead owner's lock is broken, the
    /// owner blocklisted, once its watch expired). The write is one that
    /// changes nothing: COMPARE AND WRITE of block 0 with the bytes it
    /// holds, so a write through another port in between is kept (the
    /// compare then fails; the lock moved all the same). `rbd_lock_acquire`
    /// is not used: it would switch librbd to manual mode, in which the
    /// peers' writes no longer move the lock (docs/alua.md).
    fn take_ownership(&self) -> Result<bool, BackendError> {
        if self.shared.read_only {
            return Ok(false);
        }
        let owner = |b: &Self| b.image().is_lock_owner().map_err(|e| b.error(Op::Write, e));
        if owner(self)? {
            return Ok(true);
        }
        let mut block = vec![0u8; self.block_size as usize];
        self.read(0, &mut block)?;
        // A miscompare is an answer too: the lock moved for it all the same.
        // Block 0 lies in one object, so librbd always takes it (`Some`).
        if let Some(r) = self.compare_and_write(0, &block, &block, false) {
            r?;
        }
        let now = owner(self)?;
        tracing::info!(image = %self.name(), owner = now, "exclusive lock requested for SET TARGET PORT GROUPS");
        Ok(now)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.check_writable()?;
        let (off, len) = self.check_range(lba, blocks)?;
        if len == 0 {
            return Ok(());
        }
        self.run(Op::Write, |img, done| img.aio_discard(off, len, done))
            .map(drop)
    }

    fn write_zeroes(&self, lba: u64, blocks: u64, _deallocate: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        let (off, len) = self.check_range(lba, blocks)?;
        if len == 0 {
            return Ok(());
        }
        self.run(Op::Write, |img, done| img.aio_write_zeroes(off, len, done))
            .map(drop)
    }

    fn allocation(&self, lba: u64, max_blocks: u64) -> Result<Allocation, BackendError> {
        let bs = u64::from(self.block_size);
        let num = self.caps().num_blocks;
        if lba >= num {
            return Err(BackendError::OutOfRange { lba, blocks: 1 });
        }
        let span_blocks = max_blocks.min(num - lba).min(ALLOCATION_SPAN / bs).max(1);
        let (start, end) = (lba * bs, (lba + span_blocks) * bs);
        // The run that starts at `start`: mapped up to the end of the
        // extents that touch it, or unmapped up to the first extent.
        let mut run: Option<(bool, u64)> = None;
        let image = self.image();
        image
            .diff_iterate(start, end - start, &mut |e| {
                if !e.exists {
                    return true;
                }
                let (e_start, e_end) = (e.offset.max(start), (e.offset + e.len).min(end));
                match run {
                    None if e_start > start => {
                        run = Some((false, e_start));
                        false
                    }
                    None => {
                        run = Some((true, e_end));
                        true
                    }
                    Some((true, upto)) if e_start <= upto => {
                        run = Some((true, upto.max(e_end)));
                        true
                    }
                    Some(_) => false,
                }
            })
            .map_err(|e| self.error(Op::Read, e))?;
        let (mapped, upto) = run.unwrap_or((false, end));
        Ok(Allocation {
            mapped,
            blocks: ((upto - start) / bs).max(1),
        })
    }

    fn poll_event(&self) -> Option<BackendEvent> {
        lock(&self.events).pop_front()
    }

    fn as_async(&self) -> Option<&dyn AsyncBackend> {
        Some(self)
    }
}

impl RbdBackend {
    /// `[off, off + len)` is non-empty and inside one object.
    fn in_one_object(&self, off: u64, len: u64) -> bool {
        len > 0 && off / self.obj_size == (off + len - 1) / self.obj_size
    }

    /// A submission refused before librbd saw it (reconnecting, or the
    /// image deleted).
    fn reconnecting(&self) -> Option<BackendError> {
        if self.shared.gone.load(Ordering::Acquire) {
            return Some(gone_error(&self.name()));
        }
        self.shared
            .reopening
            .load(Ordering::Acquire)
            .then(|| BackendError::Unavailable(format!("rbd image {}: reconnecting", self.name())))
    }
}

/// The asynchronous data path: each call is one `rbd_aio_*` whose
/// completion (on a librbd thread) runs `done`; no thread waits. (A
/// timeout is not retried here: the command fails NOT READY and the
/// initiator retries it.)
impl AsyncBackend for RbdBackend {
    fn submit_read(&self, lba: u64, into: SharedData, done: AsyncDone<()>) {
        if let Some(e) = self.reconnecting() {
            return done(Err(e));
        }
        let shared = Arc::downgrade(&self.shared);
        let off = lba.saturating_mul(u64::from(self.block_size));
        if into.span_count() > MAX_IOVECS {
            let len = into.view().len();
            let _ = self.image().aio_read(off, len, move |d| {
                let r = d.result.and_then(|_| {
                    let mut view = into.view();
                    // Not librbd's failure: EIO for a failing copy.
                    view.write_at(0, &d.buf).map_err(|_| RbdError {
                        op: "copy into the data area",
                        errno: libc::EIO,
                    })
                });
                done(r.map_err(|e| async_error(&shared, Op::Read, e)))
            });
            return;
        }
        // Straight into the data area; a refused submission runs the
        // closure too, with its error. The buffers are released (`_into`)
        // only once librbd is done with them.
        let finish = completion(shared, Op::Read, done);
        let _ = self.image().aio_readv(off, into, move |d, _into| finish(d));
    }

    fn submit_write(&self, lba: u64, from: SharedData, fua: bool, done: AsyncDone<()>) {
        if let Some(e) = self.reconnecting() {
            return done(Err(e));
        }
        if self.shared.read_only {
            return done(Err(BackendError::ReadOnly));
        }
        let shared = Arc::downgrade(&self.shared);
        let off = lba.saturating_mul(u64::from(self.block_size));
        if from.span_count() > MAX_IOVECS {
            let mut data = vec![0u8; from.view().len()];
            if let Err(e) = from.view().read_at(0, &mut data) {
                return done(Err(BackendError::Write(e)));
            }
            let _ = self
                .image()
                .aio_write(off, data, fua, completion(shared, Op::Write, done));
            return;
        }
        // Straight from the data area: librbd's own copy is the only one
        // (see `connect_open`).
        let finish = completion(shared, Op::Write, done);
        let _ = self
            .image()
            .aio_writev(off, from, fua, move |d, _from| finish(d));
    }

    fn can_compare_and_write(&self, lba: u64, bytes: usize) -> bool {
        let bs = u64::from(self.block_size);
        lba.checked_mul(bs)
            .is_some_and(|off| self.in_one_object(off, bytes as u64))
    }

    fn submit_compare_and_write(
        &self,
        lba: u64,
        verify: Vec<u8>,
        write: Vec<u8>,
        fua: bool,
        done: AsyncDone<CompareWrite>,
    ) {
        if let Some(e) = self.reconnecting() {
            return done(Err(e));
        }
        if self.shared.read_only {
            return done(Err(BackendError::ReadOnly));
        }
        let shared = Arc::downgrade(&self.shared);
        let off = lba.saturating_mul(u64::from(self.block_size));
        // With rbd_cache off a completed write is on the OSDs: FUA needs
        // no flush after it.
        let _ = fua;
        let _ = self
            .image()
            .aio_compare_and_write(off, verify, write, move |d| {
                done(match (d.mismatch_offset, d.result) {
                    (Some(at), _) => Ok(CompareWrite::Miscompare(at)),
                    (None, Ok(_)) => Ok(CompareWrite::Written),
                    (None, Err(e)) => Err(async_error(&shared, Op::Write, e)),
                })
            });
    }

    fn submit_unmap(&self, lba: u64, blocks: u64, done: AsyncDone<()>) {
        let bs = u64::from(self.block_size);
        self.submit_simple(done, |img, d| {
            img.aio_discard(lba.saturating_mul(bs), blocks.saturating_mul(bs), d)
        });
    }

    fn submit_write_zeroes(&self, lba: u64, blocks: u64, deallocate: bool, done: AsyncDone<()>) {
        // rbd_aio_write_zeroes deallocates whole objects either way; the
        // blocks read as zeros, which is all WRITE SAME promises.
        let _ = deallocate;
        let bs = u64::from(self.block_size);
        self.submit_simple(done, |img, d| {
            img.aio_write_zeroes(lba.saturating_mul(bs), blocks.saturating_mul(bs), d)
        });
    }

    fn submit_write_same(
        &self,
        lba: u64,
        blocks: u64,
        pattern: Vec<u8>,
        fua: bool,
        done: AsyncDone<()>,
    ) {
        let bs = u64::from(self.block_size);
        self.submit_simple(done, |img, d| {
            img.aio_writesame(
                lba.saturating_mul(bs),
                blocks.saturating_mul(bs),
                pattern,
                fua,
                d,
            )
        });
    }

    fn submit_flush(&self, done: AsyncDone<()>) {
        if let Some(e) = self.reconnecting() {
            return done(Err(e));
        }
        let shared = Arc::downgrade(&self.shared);
        let _ = self.image().aio_flush(completion(shared, Op::Flush, done));
    }
}

impl RbdBackend {
    /// Submits a write-side operation whose completion carries no data:
    /// refused while reconnecting or read-only; `done` runs exactly once.
    fn submit_simple(
        &self,
        done: AsyncDone<()>,
        start: impl FnOnce(&Image, DoneFn) -> Result<(), RbdError>,
    ) {
        if let Some(e) = self.reconnecting() {
            return done(Err(e));
        }
        if self.shared.read_only {
            return done(Err(BackendError::ReadOnly));
        }
        let shared = Arc::downgrade(&self.shared);
        // A refused submission runs the closure too, with its error.
        let _ = start(&self.image(), Box::new(completion(shared, Op::Write, done)));
    }
}

/// The completion of an operation whose outcome carries no data: `done`
/// with its result, a failure mapped by [`async_error`].
fn completion(
    shared: Weak<Shared>,
    op: Op,
    done: AsyncDone<()>,
) -> impl FnOnce(AioDone) + Send + 'static {
    move |d: AioDone| done(d.result.map(drop).map_err(|e| async_error(&shared, op, e)))
}

/// [`backend_error`] from a completion, which holds only a weak handle (so
/// that the image is never closed from librbd's own thread).
fn async_error(shared: &Weak<Shared>, op: Op, e: RbdError) -> BackendError {
    match shared.upgrade() {
        Some(s) => backend_error(&s, op, e),
        None => BackendError::Unavailable(format!("rbd image closed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::blocks_per_object;

    #[test]
    fn an_object_size_beyond_u32_blocks_is_refused_not_clamped() {
        assert_eq!(blocks_per_object(4 << 20, 512), Some(8192));
        assert_eq!(blocks_per_object(512, 4096), Some(1));
        assert_eq!(
            blocks_per_object(u64::from(u32::MAX) * 512, 512),
            Some(u32::MAX)
        );
        assert_eq!(
            blocks_per_object((u64::from(u32::MAX) + 1) * 512, 512),
            None
        );
        assert_eq!(blocks_per_object(u64::MAX, 512), None);
    }
}
