//! The data path: a lookup under the state mutex returns a plan, the data
//! I/O runs outside it, and the result is registered under it again.
//! Physically contiguous pieces of one request go out as one pread/pwrite.

use std::sync::TryLockError;

use crate::backend::{BackendError, BlockSink, BlockSource};

use super::state::State;
use super::treemeta::Sharing;
use super::{guard, Pool, PoolError, PoolErrorKind, DIRTY_LIMIT};
use crate::narrow::{index_mod, min_len};

/// Times a write that finds no free chunk waits for a commit that frees
/// some before it reports the pool full (other writers may take them).
const FREEING_RETRIES: usize = 3;

/// Host space preallocated past a fresh chunk that needs it (bytes).
const PREALLOCATE_AHEAD: u64 = 1 << 20;

/// What a write to one chunk needs, decided under the state mutex.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The chunk is mapped and not shared: overwrite it.
    InPlace(u64),
    /// The chunk is shared: copy `old` into the new chunk `new`, then write.
    Cow { old: u64, new: u64 },
    /// Unmapped: `new` was reserved; `zero` unless it reads as zeros already.
    Fresh { new: u64, zero: bool },
}

impl Plan {
    fn new_chunk(self) -> Option<u64> {
        match self {
            Plan::InPlace(_) => None,
            Plan::Cow { new, .. } | Plan::Fresh { new, .. } => Some(new),
        }
    }
}

/// One span of a request inside one chunk.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Logical chunk.
    l: u64,
    /// Offset inside the chunk.
    in_off: u64,
    /// Position in the caller's buffer.
    at: usize,
    /// Length.
    n: usize,
}

fn rd(e: std::io::Error) -> BackendError {
    BackendError::Read(e)
}

/// A failed data write; a full host file system is the pool's
/// out-of-space error.
fn wr(e: std::io::Error) -> BackendError {
    if super::error::is_out_of_space(&e) {
        BackendError::OutOfSpace
    } else {
        BackendError::Write(e)
    }
}

impl Pool {
    /// Splits `[off, off+len)` into per-chunk spans.
    fn spans(&self, off: u64, len: usize) -> impl Iterator<Item = Span> {
        let cs = self.inner.chunk_size;
        let shift = self.inner.chunk_shift;
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let pos = off + done as u64;
            let in_off = pos & (cs - 1);
            let n = min_len(cs - in_off, len - done);
            let s = Span {
                l: pos >> shift,
                in_off,
                at: done,
                n,
            };
            done += n;
            Some(s)
        })
    }

    /// Reads `sink.len()` bytes at byte `off` of volume `vol` into `sink`:
    /// zeros for unmapped chunks, one read per physically contiguous run.
    pub(crate) fn read_into(
        &self,
        vol: u64,
        off: u64,
        sink: &mut dyn BlockSink,
    ) -> Result<(), BackendError> {
        let cs = self.inner.chunk_size;
        let in_off = off & (cs - 1);
        let len = sink.len();
        if in_off + len as u64 <= cs {
            // Within one chunk (every 4 KiB read): one lookup, no plan to
            // build, and from the memo without the state mutex when it can.
            let l = off >> self.inner.chunk_shift;
            let found = match self.inner.memo.as_ref().and_then(|m| m.get(vol, l)) {
                Some(found) => found,
                None => self.state().lookup(vol, l)?,
            };
            return match found {
                None => sink.zero_at(0, len).map_err(rd),
                Some(c) => self
                    .inner
                    .data
                    .read_into(sink, 0, len, c * cs + in_off)
                    .map_err(rd),
            };
        }
        let plan = self.plan_read(&mut self.state(), vol, off, sink.len())?;
        for run in runs(&plan) {
            match run {
                Run::Zeros { at, len } => sink.zero_at(at, len).map_err(rd)?,
                Run::Data { at, len, phys } => {
                    self.inner.data.read_into(sink, at, len, phys).map_err(rd)?
                }
            }
        }
        Ok(())
    }

    /// As [`Pool::read_into`], but only as far as nothing waits: not for
    /// the metadata lock, not for the data file's device (see
    /// `BlockBackend::read_nowait`). `Ok(false)`: read again with
    /// `read_into`.
    pub(crate) fn read_nowait(
        &self,
        vol: u64,
        off: u64,
        sink: &mut dyn BlockSink,
    ) -> Result<bool, BackendError> {
        let cs = self.inner.chunk_size;
        let in_off = off & (cs - 1);
        let len = sink.len();
        if in_off + len as u64 <= cs {
            // within one chunk: from the memo, no lock, when it holds it
            let l = off >> self.inner.chunk_shift;
            if let Some(found) = self.inner.memo.as_ref().and_then(|m| m.get(vol, l)) {
                return match found {
                    None => sink.zero_at(0, len).map(|()| true).map_err(rd),
                    Some(c) => Ok(self.inner.data.read_nowait(sink, 0, len, c * cs + in_off)),
                };
            }
        }
        let plan = match self.inner.state.try_lock() {
            Ok(mut st) => self.plan_read_nowait(&mut st, vol, off, sink.len()),
            Err(TryLockError::Poisoned(p)) => {
                self.plan_read_nowait(&mut p.into_inner(), vol, off, sink.len())
            }
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        let Some(plan) = plan else {
            // a metadata page is not cached: reading it would wait
            return Ok(false);
        };
        for run in runs(&plan) {
            match run {
                Run::Zeros { at, len } => sink.zero_at(at, len).map_err(rd)?,
                Run::Data { at, len, phys } => {
                    if !self.inner.data.read_nowait(sink, at, len, phys) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// [`Self::plan_read`] from cached metadata only (`None`: not all cached).
    fn plan_read_nowait(
        &self,
        st: &mut State,
        vol: u64,
        off: u64,
        len: usize,
    ) -> Option<Vec<(Span, Option<u64>)>> {
        let cs = self.inner.chunk_size;
        self.spans(off, len)
            .map(|s| Some((s, st.lookup_nowait(vol, s.l)?.map(|c| c * cs + s.in_off))))
            .collect()
    }

    /// Each span of a read and where its bytes are in the data file.
    fn plan_read(
        &self,
        st: &mut State,
        vol: u64,
        off: u64,
        len: usize,
    ) -> Result<Vec<(Span, Option<u64>)>, PoolError> {
        let cs = self.inner.chunk_size;
        self.spans(off, len)
            .map(|s| Ok((s, st.lookup(vol, s.l)?.map(|c| c * cs + s.in_off))))
            .collect()
    }

    /// The chunk mapped at `l` and whether it is shared. A chunk whose
    /// unsharing is not durable yet counts as shared until a commit makes it
    /// durable: this runs that commit (the module docs say why).
    fn lookup_exclusive(&self, vol: u64, l: u64) -> Result<Option<(u64, bool)>, PoolError> {
        loop {
            match self.state().sharing(vol, l)? {
                Sharing::Unmapped => return Ok(None),
                Sharing::Shared(c) => return Ok(Some((c, true))),
                Sharing::Exclusive(c) => return Ok(Some((c, false))),
                Sharing::Pending(_) => {}
            }
            self.flush()?;
        }
    }

    /// How the write of chunk `l` goes: in place when `vol` owns it alone
    /// (unless `relocate`: then to a new chunk, as a copy-on-write of its
    /// own chunk), to a copy when shared, to a fresh chunk when unmapped.
    fn plan_write(&self, vol: u64, l: u64, relocate: bool) -> Result<Plan, PoolError> {
        let cs = self.inner.chunk_size;
        for attempt in 0..FREEING_RETRIES {
            let looked = self.lookup_exclusive(vol, l)?;
            let res = {
                let mut st = self.state();
                match looked {
                    Some((c, false)) if !relocate => return Ok(Plan::InPlace(c)),
                    Some((old, _)) => st.alloc().map(|(new, _)| Plan::Cow { old, new }),
                    None => st.alloc().map(|(new, fresh)| Plan::Fresh {
                        new,
                        zero: !(fresh && new * cs >= self.inner.data.file_len()),
                    }),
                }
            };
            match res {
                Err(e)
                    if e.kind() == PoolErrorKind::OutOfSpace
                        && attempt + 1 < FREEING_RETRIES
                        && self.state().frees_coming() =>
                {
                    // Chunks freed since the last commit, or by the commit
                    // running now, become reusable once their unmapping is
                    // durable: wait for that commit (the commit lock), then
                    // commit what is still pending.
                    let _c = guard(&self.inner.commit);
                    if self.state().frees_uncommitted() {
                        self.flush_locked()?;
                    }
                }
                other => return other,
            }
        }
        Err(PoolError::out_of_space())
    }

    /// Plans every span; on failure returns the chunks already reserved.
    fn plan_all(&self, vol: u64, spans: &[Span], relocate: bool) -> Result<Vec<Plan>, PoolError> {
        let mut plans = Vec::with_capacity(spans.len());
        for s in spans {
            match self.plan_write(vol, s.l, relocate) {
                Ok(p) => plans.push(p),
                Err(e) => {
                    let mut st = self.state();
                    plans
                        .iter()
                        .filter_map(|p| p.new_chunk())
                        .for_each(|c| st.unalloc(c));
                    return Err(e);
                }
            }
        }
        Ok(plans)
    }

    /// Where one span's bytes go, and whether they are the caller's as is
    /// (`None`) or a whole chunk built around them (`Some`).
    fn segment(
        &self,
        p: Plan,
        s: Span,
        src: &dyn BlockSource,
    ) -> std::io::Result<(u64, Option<Vec<u8>>)> {
        let cs = self.inner.chunk_size;
        let whole = s.n as u64 == cs;
        let fill = |base: Option<u64>| -> std::io::Result<Option<Vec<u8>>> {
            let mut buf = vec![0u8; self.inner.chunk_bytes as usize];
            if let Some(old) = base {
                self.inner.data.read_at(&mut buf, old * cs)?;
            }
            // in_off < chunk size, a u32: an index into buf
            let at = index_mod(s.in_off, buf.len());
            src.read_at(s.at, &mut buf[at..at + s.n])?;
            Ok(Some(buf))
        };
        Ok(match p {
            Plan::InPlace(c) => (c * cs + s.in_off, None),
            Plan::Fresh { new, zero } if zero && !whole => (new * cs, fill(None)?),
            Plan::Fresh { new, .. } if whole => (new * cs, None),
            Plan::Fresh { new, .. } => {
                // Past the data file's end, written partially: the rest
                // of the chunk would stay a hole, and a later overwrite
                // there would need host space. Allocate it all now,
                // unless the pool was opened to stay sparse.
                if !self.inner.sparse_data {
                    self.preallocate(new)?;
                }
                (new * cs + s.in_off, None)
            }
            Plan::Cow { new, .. } if whole => (new * cs, None),
            Plan::Cow { old, new } => (new * cs, fill(Some(old))?),
        })
    }

    /// Makes sure fresh chunk `c` has its host space. Fresh chunks are
    /// handed out in order past the high-water mark the pool opened with,
    /// so one range from where the last preallocation ended covers every
    /// chunk before `c` too (including those reserved by writes still in
    /// flight); it reaches [`PREALLOCATE_AHEAD`] past `c` (one `fallocate`
    /// per megabyte, not per chunk), or only to `c` when the host has not
    /// that much left.
    fn preallocate(&self, c: u64) -> std::io::Result<()> {
        let cs = self.inner.chunk_size;
        let mut to = guard(&self.inner.preallocated_to);
        if c < *to {
            return Ok(());
        }
        let cap = self.state().sb.capacity_chunks;
        let ahead = (c + (PREALLOCATE_AHEAD / cs).max(1)).min(cap).max(c + 1);
        let data = &self.inner.data;
        let end = match data.preallocate(*to * cs, (ahead - *to) * cs) {
            Ok(()) => ahead,
            Err(_) if ahead > c + 1 => {
                data.preallocate(*to * cs, (c + 1 - *to) * cs)?;
                c + 1
            }
            Err(e) => return Err(e),
        };
        *to = end;
        Ok(())
    }

    /// Issues the writes of a planned request, merging pieces of the
    /// caller's source that are contiguous both there and on disk.
    fn write_planned(
        &self,
        spans: &[Span],
        plans: &[Plan],
        src: &dyn BlockSource,
    ) -> std::io::Result<()> {
        let io = &self.inner.data;
        let mut run: Option<(u64, usize, usize)> = None; // (phys, start in src, len)
        for (s, &p) in spans.iter().zip(plans) {
            let (phys, built) = self.segment(p, *s, src)?;
            match built {
                None => {
                    if let Some((rp, ra, rl)) = run {
                        if rp + rl as u64 == phys && ra + rl == s.at {
                            run = Some((rp, ra, rl + s.n));
                            continue;
                        }
                        io.write_from(src, ra, rl, rp)?;
                    }
                    run = Some((phys, s.at, s.n));
                }
                Some(buf) => {
                    if let Some((rp, ra, rl)) = run.take() {
                        io.write_from(src, ra, rl, rp)?;
                    }
                    io.write_at(&buf, phys)?;
                }
            }
        }
        if let Some((rp, ra, rl)) = run {
            io.write_from(src, ra, rl, rp)?;
        }
        Ok(())
    }

    /// Writes `src` at byte `off` of volume `vol` if every chunk it touches
    /// is mapped and owned by `vol` alone (durably, see [`Self::lookup_exclusive`]):
    /// nothing to allocate, copy or register, so the caller needs the
    /// volume's gate only shared and such writes run in parallel. Returns
    /// `false`, having written nothing, when some chunk needs a plan
    /// ([`Self::write_from`] under the exclusive gate).
    pub(crate) fn write_in_place(
        &self,
        vol: u64,
        off: u64,
        src: &dyn BlockSource,
    ) -> Result<bool, BackendError> {
        let cs = self.inner.chunk_size;
        let shift = self.inner.chunk_shift;
        let in_off = off & (cs - 1);
        let len = src.len();
        if in_off + len as u64 <= cs {
            return match self.lookup_exclusive(vol, off >> shift)? {
                Some((c, false)) => {
                    self.inner
                        .data
                        .write_from(src, 0, len, c * cs + in_off)
                        .map_err(wr)?;
                    Ok(true)
                }
                _ => Ok(false),
            };
        }
        let mut runs: Vec<(u64, usize, usize)> = Vec::new(); // (phys, start in src, len)
        for s in self.spans(off, len) {
            let Some((c, false)) = self.lookup_exclusive(vol, s.l)? else {
                return Ok(false);
            };
            let phys = c * cs + s.in_off;
            match runs.last_mut() {
                Some((rp, _, rl)) if *rp + *rl as u64 == phys => *rl += s.n,
                _ => runs.push((phys, s.at, s.n)),
            }
        }
        for (phys, at, n) in runs {
            self.inner.data.write_from(src, at, n, phys).map_err(wr)?;
        }
        Ok(true)
    }

    /// Writes `src` at byte `off` of volume `vol`: plan every chunk, write
    /// (straight from the source where the caller's bytes go to disk as
    /// they are), then record the new mappings.
    pub(crate) fn write_from(
        &self,
        vol: u64,
        off: u64,
        src: &dyn BlockSource,
    ) -> Result<(), BackendError> {
        self.write_planned_from(vol, off, src, false)
    }

    /// Writes `src` at byte `off` of volume `vol` all-or-nothing across a
    /// crash (WRITE ATOMIC): every chunk it touches goes to a new chunk
    /// (partial ones copied from the old), the chunks the volume owned alone
    /// included, and the new mappings are registered together under one
    /// hold of the state lock, so they reach the metadata store in one
    /// commit. Until that commit the old chunks stay mapped (and their
    /// space is not reused: freed chunks wait for the commit), so a crash
    /// before it shows all of the old blocks, after it all of the new.
    /// The caller holds the volume's gate exclusively: no read sees the
    /// mappings half-switched.
    pub(crate) fn write_relocating(
        &self,
        vol: u64,
        off: u64,
        src: &dyn BlockSource,
    ) -> Result<(), BackendError> {
        self.write_planned_from(vol, off, src, true)
    }

    fn write_planned_from(
        &self,
        vol: u64,
        off: u64,
        src: &dyn BlockSource,
        relocate: bool,
    ) -> Result<(), BackendError> {
        let cs = self.inner.chunk_size;
        let in_off = off & (cs - 1);
        let len = src.len();
        if !relocate && in_off + len as u64 <= cs {
            // Within one chunk and mapped exclusively: overwrite, no plan to build.
            if let Some((c, false)) = self.lookup_exclusive(vol, off >> self.inner.chunk_shift)? {
                return self
                    .inner
                    .data
                    .write_from(src, 0, len, c * cs + in_off)
                    .map_err(wr);
            }
        }
        let spans: Vec<Span> = self.spans(off, len).collect();
        let plans = self.plan_all(vol, &spans, relocate)?;
        let res = self.write_planned(&spans, &plans, src);
        let mut st = self.state();
        if let Err(e) = res {
            plans
                .iter()
                .filter_map(|p| p.new_chunk())
                .for_each(|c| st.unalloc(c));
            return Err(wr(e));
        }
        for (i, (s, p)) in spans.iter().zip(&plans).enumerate() {
            let res = match *p {
                Plan::InPlace(_) => Ok(()),
                Plan::Cow { old, new } => st.register(vol, s.l, new, Some(old)),
                Plan::Fresh { new, .. } => st.register(vol, s.l, new, None),
            };
            if let Err(e) = res {
                // Nothing maps the chunks not registered yet: give them back.
                plans[i..]
                    .iter()
                    .filter_map(|p| p.new_chunk())
                    .for_each(|c| st.unalloc(c));
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Deallocates whole chunks of `[off, off+len)` and zeroes partial ones.
    pub(crate) fn discard_bytes(&self, vol: u64, off: u64, len: u64) -> Result<(), BackendError> {
        let cs = self.inner.chunk_size;
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let l = pos >> self.inner.chunk_shift;
            let in_off = pos & (cs - 1);
            let n = (cs - in_off).min(end - pos);
            if n == cs {
                self.state().map_remove(vol, l)?;
            } else {
                // a part of one chunk: n < chunk size, a u32
                let zeros = vec![0u8; min_len(n, self.inner.chunk_bytes as usize)];
                match self.lookup_exclusive(vol, l)? {
                    None => {}
                    Some((c, false)) => self
                        .inner
                        .data
                        .write_at(&zeros, c * cs + in_off)
                        .map_err(wr)?,
                    Some((_, true)) => self.write_from(vol, pos, &zeros)?,
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Commits when too much metadata is pending.
    pub(crate) fn maybe_commit(&self) -> Result<(), PoolError> {
        let big = self.state().too_dirty(DIRTY_LIMIT);
        if big {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes a FUA write durable: a data sync suffices when no metadata is
    /// pending, otherwise a full commit.
    ///
    /// The commit lock is held across the check: a commit in progress has
    /// already taken the pending changes (so they no longer look dirty) but
    /// has not made them durable; acknowledging after only a data sync would
    /// lose this write's mapping if the process died before that commit
    /// ended. Once the check finds nothing pending, the mapping is durable
    /// and only the data needs syncing: that sync runs outside the commit
    /// lock, shared with the FUA writes arriving at the same time
    /// ([`GroupSync`](super::groupsync::GroupSync)), instead of one
    /// `fdatasync` after another under the lock.
    pub(crate) fn fua(&self) -> Result<(), BackendError> {
        {
            let _c = guard(&self.inner.commit);
            if self.state().has_changes() {
                return self.flush_locked().map_err(PoolError::into_flush_error);
            }
        }
        self.inner.writable().map_err(PoolError::into_flush_error)?;
        self.inner
            .group_sync
            .sync(|| self.inner.data.sync_data())
            .map_err(|e| {
                self.inner
                    .fail_io("syncing the data file", e)
                    .into_flush_error()
            })
    }
}

/// One piece of a planned read.
enum Run {
    /// Unmapped: reads as zeros.
    Zeros { at: usize, len: usize },
    /// Mapped and physically contiguous in the data file from `phys`.
    Data { at: usize, len: usize, phys: u64 },
}

/// The plan of a read as runs: holes, and mapped spans merged while they
/// are physically contiguous.
fn runs(plan: &[(Span, Option<u64>)]) -> impl Iterator<Item = Run> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let &(s, phys) = plan.get(i)?;
        i += 1;
        let Some(phys) = phys else {
            return Some(Run::Zeros { at: s.at, len: s.n });
        };
        let mut len = s.n;
        while let Some(&(t, Some(p))) = plan.get(i) {
            if p != phys + len as u64 {
                break;
            }
            len += t.n;
            i += 1;
        }
        Some(Run::Data {
            at: s.at,
            len,
            phys,
        })
    })
}

#[cfg(test)]
#[path = "datapath_tests.rs"]
mod tests;
