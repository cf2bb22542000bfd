//! Catalog operations: create, open, delete, resize, rename, snapshot, clone,
//! list. Each one commits before returning.

use std::sync::{Arc, PoisonError};

use super::format::{self, VolumeKind, VolumeRecord};
use super::identity::random_identity;
use super::{guard, Pool, PoolError, Volume, VolumeInfo};

/// The longest a delete job runs its steps between two commits (unless
/// much is pending): see `Pool::delete_step_paced`.
const DELETE_COMMIT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Checks a volume name: 1..=128 bytes of `[A-Za-z0-9._:+@-]`, not starting
/// with `.` or `-`.
pub(crate) fn validate_name(name: &str) -> Result<(), PoolError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._:+@-".contains(c);
    if name.is_empty()
        || name.len() > 128
        || name.starts_with(['.', '-'])
        || !name.chars().all(ok_char)
    {
        return Err(PoolError::invalid_argument(format!(
            "bad volume name {name:?}: use 1-128 of A-Z a-z 0-9 . _ : + @ -, not starting with . or -"
        )));
    }
    Ok(())
}

fn validate_size(size: u64, block_size: u32) -> Result<(), PoolError> {
    if block_size != 512 && block_size != 4096 {
        return Err(PoolError::invalid_argument(format!(
            "block size must be 512 or 4096, not {block_size}"
        )));
    }
    if size == 0 || size % u64::from(block_size) != 0 || size > (1 << 60) {
        return Err(PoolError::invalid_argument(format!(
            "size {size} must be a non-zero multiple of the block size {block_size} (at most 1 EiB)"
        )));
    }
    Ok(())
}

/// Progress callback: (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

impl Pool {
    pub(super) fn record(&self, name: &str) -> Result<VolumeRecord, PoolError> {
        self.state()
            .catalog
            .get(name)
            .cloned()
            .ok_or_else(|| PoolError::no_such_volume(name.to_string()))
    }

    fn is_open(&self, id: u64) -> bool {
        guard(&self.inner.open)
            .get(&id)
            .is_some_and(|v| v.iter().any(|w| w.strong_count() > 0))
    }

    fn add_record(&self, name: &str, rec: &VolumeRecord) -> Result<(), PoolError> {
        let mut st = self.state();
        if st.catalog.contains_key(name) {
            return Err(PoolError::volume_exists(name.to_string()));
        }
        st.put(format::volume_key(name), format::encode(rec));
        st.catalog.insert(name.to_string(), rec.clone());
        match st.t3.as_mut() {
            Some(t) => t.add_volume(rec.id),
            None => {
                st.maps.entry(rec.id).or_default();
            }
        }
        Ok(())
    }

    /// Creates a thin volume of `size_bytes` (a multiple of `block_size`,
    /// which is 512 or 4096). Nothing is allocated until written.
    pub fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        block_size: u32,
    ) -> Result<(), PoolError> {
        self.writable()?;
        validate_name(name)?;
        validate_size(size_bytes, block_size)?;
        {
            let mut st = self.state();
            if st.catalog.contains_key(name) {
                return Err(PoolError::volume_exists(name.to_string()));
            }
            let id = st.sb.next_volume_id;
            st.sb.next_volume_id += 1;
            st.dirty_super();
            drop(st);
            let rec = VolumeRecord {
                id,
                size_bytes,
                block_size,
                kind: VolumeKind::Volume,
                origin: None,
            };
            let ident = random_identity()?;
            self.add_record(name, &rec)?;
            self.state()
                .put(format::id_key(format::TAG_IDENT, id), ident.to_vec());
        }
        self.flush()
    }

    /// Opens a volume (writable) or snapshot (read-only) for I/O.
    pub fn open_volume(&self, name: &str) -> Result<Arc<Volume>, PoolError> {
        self.open_volume_as(name, false)
    }

    /// Opens a volume or snapshot read-only: every write, unmap and write
    /// of zeroes fails with [`BackendError::ReadOnly`](crate::backend::BackendError::ReadOnly)
    /// (a write-protected LUN).
    pub fn open_volume_read_only(&self, name: &str) -> Result<Arc<Volume>, PoolError> {
        self.open_volume_as(name, true)
    }

    fn open_volume_as(&self, name: &str, read_only: bool) -> Result<Arc<Volume>, PoolError> {
        let rec = self.record(name)?;
        let vol = Arc::new(Volume::new(self.clone(), rec.id, name, &rec, read_only));
        guard(&self.inner.open)
            .entry(rec.id)
            .or_default()
            .push(Arc::downgrade(&vol));
        Ok(vol)
    }

    /// Deletes a volume or snapshot, freeing the chunks nothing else
    /// references. Fails with [`PoolErrorKind::VolumeBusy`](super::PoolErrorKind::VolumeBusy) while it is open.
    pub fn delete_volume(&self, name: &str) -> Result<(), PoolError> {
        self.delete_volume_with_progress(name, &mut |_, _| {})
    }

    /// [`Pool::delete_volume`] reporting progress over its mappings.
    pub fn delete_volume_with_progress(
        &self,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<(), PoolError> {
        let rec = self.deletable(name)?;
        if self.state().t3.is_some() {
            // The volume is gone from the catalog with this commit, which
            // also carries its delete job's first bounded step; the rest
            // of the tree is released in further steps.
            self.detach_for_delete(rec.id, name)?;
            progress(1, 0);
            return self.run_delete_jobs(1, progress);
        }
        let gate = self.gate(rec.id);
        let _g = gate.write().unwrap_or_else(PoisonError::into_inner);
        let map = {
            let mut st = self.state();
            st.catalog.remove(name);
            st.del(format::volume_key(name));
            st.del(format::id_key(format::TAG_IDENT, rec.id));
            st.maps.remove(&rec.id).unwrap_or_default()
        };
        // Not under the state lock: `volume_identity` takes this one first.
        guard(&self.inner.idents).remove(&rec.id);
        let total = map.len() as u64;
        let entries: Vec<(u64, u64)> = map.iter().collect();
        for (i, part) in entries.chunks(1 << 14).enumerate() {
            let mut st = self.state();
            for &(l, c) in part {
                st.del(format::map_key(rec.id, l));
                st.decref(c);
            }
            drop(st);
            progress(((i << 14) + part.len()) as u64, total);
        }
        guard(&self.inner.gates).remove(&rec.id);
        self.flush()
    }

    /// Changes a volume's size. Growing is always allowed; shrinking needs
    /// `force_shrink` and frees the chunks past the new end (the tail of a
    /// partial last chunk is zeroed).
    pub fn resize_volume(
        &self,
        name: &str,
        size_bytes: u64,
        force_shrink: bool,
    ) -> Result<(), PoolError> {
        self.writable()?;
        let mut rec = self.record(name)?;
        if rec.kind == VolumeKind::Snapshot {
            return Err(PoolError::wrong_kind(format!(
                "{name:?} is a snapshot; snapshots cannot be resized"
            )));
        }
        validate_size(size_bytes, rec.block_size)?;
        let gate = self.gate(rec.id);
        let _g = gate.write().unwrap_or_else(PoisonError::into_inner);
        if size_bytes < rec.size_bytes {
            if !force_shrink {
                return Err(PoolError::shrink_not_forced(name.to_string()));
            }
            let cs = self.inner.chunk_size;
            let tail = size_bytes & (cs - 1);
            if tail != 0 {
                let end = (size_bytes - tail + cs).min(rec.size_bytes);
                self.discard_bytes(rec.id, size_bytes, end - size_bytes)
                    .map_err(|e| PoolError::store(e.to_string()))?;
            }
            let first = size_bytes.div_ceil(cs);
            let mut st = self.state();
            let drop_ls: Vec<u64> = match st.t3.as_mut() {
                Some(t) => t.mappings_from(rec.id, first)?,
                None => st
                    .maps
                    .get(&rec.id)
                    .map(|m| m.iter_from(first).map(|(l, _)| l).collect())
                    .unwrap_or_default(),
            };
            for l in drop_ls {
                st.map_remove(rec.id, l)?;
            }
        }
        rec.size_bytes = size_bytes;
        {
            let mut st = self.state();
            st.put(format::volume_key(name), format::encode(&rec));
            st.catalog.insert(name.to_string(), rec.clone());
        }
        if let Some(vols) = guard(&self.inner.open).get(&rec.id) {
            for v in vols.iter().filter_map(std::sync::Weak::upgrade) {
                v.resized(size_bytes);
            }
        }
        self.flush()
    }

    /// Renames a volume or snapshot.
    pub fn rename_volume(&self, from: &str, to: &str) -> Result<(), PoolError> {
        self.writable()?;
        validate_name(to)?;
        {
            let mut st = self.state();
            if st.catalog.contains_key(to) {
                return Err(PoolError::volume_exists(to.to_string()));
            }
            let rec = st
                .catalog
                .remove(from)
                .ok_or_else(|| PoolError::no_such_volume(from.to_string()))?;
            st.del(format::volume_key(from));
            st.put(format::volume_key(to), format::encode(&rec));
            st.catalog.insert(to.to_string(), rec);
        }
        self.flush()
    }

    /// Copies `src`'s mappings into a new catalog entry of `kind`, sharing
    /// every chunk (reference counts go up; no data is copied).
    fn share(&self, src: &str, new: &str, kind: VolumeKind) -> Result<(), PoolError> {
        self.writable()?;
        validate_name(new)?;
        let asked = std::time::Instant::now();
        let rec = self.record(src)?;
        let gate = self.gate(rec.id);
        let t = std::time::Instant::now();
        let _g = gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut ph = super::phases::SharePhases {
            gate_wait: t.elapsed(),
            ..Default::default()
        };
        {
            let t = std::time::Instant::now();
            let mut st = self.state();
            ph.lock_wait = t.elapsed();
            let t = std::time::Instant::now();
            if st.catalog.contains_key(new) {
                return Err(PoolError::volume_exists(new.to_string()));
            }
            let id = st.sb.next_volume_id;
            st.sb.next_volume_id += 1;
            st.dirty_super();
            if let Some(t) = st.t3.as_mut() {
                t.share(rec.id, id)?;
            }
            let entries: Vec<(u64, u64)> = st
                .maps
                .get(&rec.id)
                .map(|m| m.iter().collect())
                .unwrap_or_default();
            for (l, c) in entries {
                st.incref(c);
                st.map_set(id, l, c);
            }
            let nrec = VolumeRecord {
                id,
                size_bytes: rec.size_bytes,
                block_size: rec.block_size,
                kind,
                origin: Some(rec.id),
            };
            // A snapshot or clone is another logical unit: its own identity.
            st.put(
                format::id_key(format::TAG_IDENT, id),
                random_identity()?.to_vec(),
            );
            st.put(format::volume_key(new), format::encode(&nrec));
            st.catalog.insert(new.to_string(), nrec);
            if st.t3.is_none() {
                st.maps.entry(id).or_default();
            }
            ph.work = t.elapsed();
        }
        let res = self.flush();
        ph.commit = self.last_commit_phases();
        ph.total = asked.elapsed();
        self.inner.phases.set_share(ph);
        res
    }

    /// Takes a read-only point-in-time snapshot of `volume`.
    pub fn snapshot(&self, volume: &str, snapshot: &str) -> Result<(), PoolError> {
        self.share(volume, snapshot, VolumeKind::Snapshot)
    }

    /// Creates a writable volume from a snapshot.
    pub fn clone_snapshot(&self, snapshot: &str, new_volume: &str) -> Result<(), PoolError> {
        if self.record(snapshot)?.kind != VolumeKind::Snapshot {
            return Err(PoolError::wrong_kind(format!(
                "{snapshot:?} is not a snapshot; take a snapshot first and clone that"
            )));
        }
        self.share(snapshot, new_volume, VolumeKind::Volume)
    }

    /// Runs the pending delete jobs (format 3) to the end: bounded steps,
    /// each under the state lock alone (other volumes' I/O goes on between
    /// them), committed as [`Pool::delete_step_paced`] says, so that a crash
    /// resumes from the last commit and freed chunks become reusable.
    /// `done`: the steps already taken, where `progress` counts from.
    pub(crate) fn run_delete_jobs(
        &self,
        done: u64,
        progress: Progress<'_>,
    ) -> Result<(), PoolError> {
        let mut steps = done;
        let mut last_commit = std::time::Instant::now();
        while self.delete_step_paced(&mut last_commit)? {
            steps += 1;
            progress(steps, 0);
        }
        let used = {
            let mut st = self.state();
            st.used = st.used_chunks();
            st.update_low_water();
            st.used
        };
        tracing::debug!(steps, used, "delete jobs done");
        self.commit_metadata()
    }

    /// One bounded step of the delete jobs, then a commit if one is due:
    /// no job left, more pending than a write would let wait
    /// (`State::too_dirty`), or [`DELETE_COMMIT_EVERY`] since the last.
    /// Returns whether jobs remain.
    ///
    /// Commits by time, not by steps: each commit's `fdatasync`s stall the
    /// writes of the other volumes for tens of µs (the file system's doing:
    /// bare `fdatasync`s of a file beside the pool stall them as much), so a
    /// fast delete committing every few steps put such a stall beside
    /// several % of those writes; paced, a delete adds at most ten commits
    /// a second whatever its speed. A crash redoes at most the steps since
    /// the last commit.
    fn delete_step_paced(&self, last_commit: &mut std::time::Instant) -> Result<bool, PoolError> {
        let (more, pending) = self.delete_step(None)?;
        if !more || pending || last_commit.elapsed() >= DELETE_COMMIT_EVERY {
            self.writable()?;
            self.commit_metadata()?;
            *last_commit = std::time::Instant::now();
        }
        Ok(more)
    }

    /// One bounded step of the delete jobs (of volume `of`'s if it has
    /// one), under the state lock, for the next commit: whether jobs
    /// remain, and whether more changes wait than a write would let wait
    /// (`State::too_dirty`). A step that fails (a page the store cannot
    /// give) may have released part of a leaf: the pool fails, so that no
    /// later commit makes that half step durable; the next open resumes
    /// the job from its last commit.
    fn delete_step(&self, of: Option<u64>) -> Result<(bool, bool), PoolError> {
        let mut st = self.state();
        let st = &mut *st;
        let more = match st.t3.as_mut() {
            Some(t) => t
                .delete_step(&mut st.unshared, of)
                .map_err(|e| self.inner.fail(e))?,
            None => false,
        };
        Ok((more, st.too_dirty(super::DIRTY_LIMIT)))
    }

    /// Deletes a volume or snapshot as [`Pool::delete_volume`] does, but
    /// returns once the volume is gone from the catalog (durably): its
    /// pages and chunks are freed in bounded steps, the first in that same
    /// commit, the rest by a thread of the pool's (committed as
    /// [`Pool::delete_step_paced`] says), while I/O on the other volumes
    /// goes on. Usage shows them freed step by step; closing the pool stops the
    /// thread and the next open resumes it. Returns the chunks the volume
    /// mapped (those freed unless shared). A format-2 pool frees them
    /// before returning.
    pub fn delete_volume_in_background(&self, name: &str) -> Result<u64, PoolError> {
        let rec = self.deletable(name)?;
        if self.state().t3.is_none() {
            let mapped = self.state().maps.get(&rec.id).map_or(0, |m| m.len() as u64);
            self.delete_volume(name)?;
            return Ok(mapped);
        }
        let mapped = self.detach_for_delete(rec.id, name)?;
        self.spawn_delete_worker();
        Ok(mapped)
    }

    /// The record of volume `name` if it may be deleted now: the pool takes
    /// writes, the volume exists and is not open
    /// ([`PoolErrorKind::VolumeBusy`](super::PoolErrorKind::VolumeBusy)).
    fn deletable(&self, name: &str) -> Result<VolumeRecord, PoolError> {
        self.writable()?;
        let rec = self.record(name)?;
        if self.is_open(rec.id) {
            return Err(PoolError::volume_busy(name.to_string()));
        }
        Ok(rec)
    }

    /// Format 3: removes volume `id` (`name`) from the catalog, hands its
    /// tree to a delete job and takes the jobs' first bounded step, durably
    /// (one commit); returns the chunks it mapped. The step goes with the
    /// detach's commit so that a delete of one step (a snapshot sharing
    /// its whole tree: one count dropped) is one commit, not two: each
    /// commit's syncs stall the other volumes' writes beside it.
    fn detach_for_delete(&self, id: u64, name: &str) -> Result<u64, PoolError> {
        let mapped = self.detach(id, name);
        self.delete_step(Some(id))?;
        self.commit_metadata()?;
        Ok(mapped)
    }

    /// Format 3: removes volume `id` (`name`) from the catalog and hands
    /// its tree to a delete job, for the next commit; returns the chunks it
    /// mapped. The volume gate is held meanwhile.
    fn detach(&self, id: u64, name: &str) -> u64 {
        let gate = self.gate(id);
        let mapped = {
            let _g = gate.write().unwrap_or_else(PoisonError::into_inner);
            let mut st = self.state();
            let mapped = st.t3.as_ref().map_or(0, |t| t.mapped(id));
            if let Some(t) = st.t3.as_mut() {
                t.start_delete(id);
            }
            st.catalog.remove(name);
            st.del(format::volume_key(name));
            st.del(format::id_key(format::TAG_IDENT, id));
            mapped
        };
        guard(&self.inner.idents).remove(&id);
        guard(&self.inner.gates).remove(&id);
        mapped
    }

    /// Starts the thread that runs the delete jobs (format 3), unless one
    /// runs or there are none: after a delete in the background, and at
    /// open for the jobs an earlier run left (so that open stays
    /// O(volumes)). It takes one bounded step at a time under the state
    /// lock, commits as [`Pool::delete_step_paced`] says, and holds the
    /// pool only for a step, so closing the pool stops it (the next open
    /// resumes from the last commit). Before it ends it looks for jobs
    /// added meanwhile.
    pub(crate) fn spawn_delete_worker(&self) {
        use std::sync::atomic::Ordering;
        // Jobs wait and no thread runs them: this caller is now that thread.
        let claim = |p: &Pool| {
            p.state().t3.as_ref().is_some_and(|t| !t.jobs.is_empty())
                && p.inner
                    .delete_worker
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
        };
        if !claim(self) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("tcmud-pool-delete".into())
            .spawn(move || {
                let mut steps = 0u64;
                let mut last_commit = std::time::Instant::now();
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let pool = Pool { inner };
                    let res = pool.delete_step_paced(&mut last_commit);
                    steps += 1;
                    match res {
                        Ok(true) => {}
                        Ok(false) => {
                            pool.inner.delete_worker.store(false, Ordering::Release);
                            // a job added after the last step, whose
                            // spawner saw this thread running
                            if !claim(&pool) {
                                tracing::info!(steps, "delete jobs done");
                                return;
                            }
                        }
                        Err(e) => {
                            pool.inner.delete_worker.store(false, Ordering::Release);
                            tracing::error!(error = %e, "delete job failed");
                            return;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            self.inner.delete_worker.store(false, Ordering::Release);
            tracing::error!(error = %e, "cannot start the delete worker");
        }
    }

    /// Every volume and snapshot, by name, with the identity stored for it
    /// (listing creates none).
    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, PoolError> {
        let listed: Vec<(u64, VolumeInfo)> = {
            let st = self.state();
            let cs = self.inner.chunk_size;
            let names: std::collections::HashMap<u64, &String> =
                st.catalog.iter().map(|(n, r)| (r.id, n)).collect();
            st.catalog
                .iter()
                .map(|(name, r)| {
                    let info = VolumeInfo {
                        origin: r
                            .origin
                            .and_then(|id| names.get(&id))
                            .map(|n| n.to_string()),
                        name: name.clone(),
                        kind: r.kind,
                        size_bytes: r.size_bytes,
                        block_size: r.block_size,
                        allocated_bytes: match &st.t3 {
                            Some(t) => t.mapped(r.id),
                            None => st.maps.get(&r.id).map_or(0, |m| m.len() as u64),
                        } * cs,
                        identity: None,
                    };
                    (r.id, info)
                })
                .collect()
        };
        listed
            .into_iter()
            .map(|(id, mut info)| {
                info.identity = self.stored_identity(id, &info.name)?;
                Ok(info)
            })
            .collect()
    }
}
