//! `check` (like thin_check): decodes every metadata record and verifies the
//! invariants of `docs/pool-format.md`; `repair` rebuilds reference counts
//! and free entries from the mappings. The read-only check of a pool
//! directory that does not open the pool is in [`super::inspect`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::catalog::validate_name;
use super::format::{self, Key, Superblock, VolumeRecord};
use super::state::State;
use super::store::Change;
use super::{guard, Pool, PoolError, PoolErrorKind};

/// One inconsistency found by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The superblock is missing or unreadable.
    BadSuperblock(String),
    /// The format version is missing or unreadable.
    BadFormat(String),
    /// A key of a known kind has a value (or key) that does not decode.
    BadRecord(String),
    /// A key of no kind this format knows.
    UnknownRecord(String),
    /// Two catalog entries share an id.
    DuplicateVolumeId(u64),
    /// A catalog entry's values cannot be right.
    BadVolume {
        /// Volume name.
        volume: String,
        /// What is wrong.
        why: String,
    },
    /// A mapping belongs to no catalog entry.
    OrphanMapping {
        /// Volume id in the key.
        volume: u64,
        /// Logical chunk.
        lchunk: u64,
    },
    /// A mapping lies past its volume's end.
    MappingBeyondEnd {
        /// Volume name.
        volume: String,
        /// Logical chunk.
        lchunk: u64,
    },
    /// A mapping points at a chunk that is not allocated.
    MappingToUnallocated {
        /// Volume id.
        volume: u64,
        /// Logical chunk.
        lchunk: u64,
        /// Physical chunk.
        chunk: u64,
    },
    /// A stored reference count differs from the number of mappings.
    RefcountMismatch {
        /// Chunk.
        chunk: u64,
        /// Stored count.
        stored: u32,
        /// Mappings counted.
        actual: u32,
    },
    /// A chunk is marked free and used.
    FreeAndUsed(u64),
    /// A chunk below the high-water mark is neither free nor used.
    Leaked(u64),
    /// A reference or free entry lies at or past the high-water mark.
    BeyondHighWater(u64),
    /// The data file is shorter than the allocated chunks need.
    DataFileShort {
        /// Bytes needed.
        needed: u64,
        /// Actual length.
        actual: u64,
    },
    /// Mappings point at chunks that lie (partly) past the data file's end:
    /// their data is gone.
    MappingsPastDataFile {
        /// How many mappings.
        count: u64,
        /// The lowest such chunk.
        first_chunk: u64,
    },
    /// The seal (`meta.seal`) disagrees with the metadata or is unreadable.
    Seal(String),
    /// A file of the pool directory is missing or unreadable.
    MissingFile(String),
}

impl Problem {
    /// A short, stable name of the kind of problem (JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::BadSuperblock(_) => "bad_superblock",
            Problem::BadFormat(_) => "bad_format",
            Problem::BadRecord(_) => "bad_record",
            Problem::UnknownRecord(_) => "unknown_record",
            Problem::DuplicateVolumeId(_) => "duplicate_volume_id",
            Problem::BadVolume { .. } => "bad_volume",
            Problem::OrphanMapping { .. } => "orphan_mapping",
            Problem::MappingBeyondEnd { .. } => "mapping_beyond_end",
            Problem::MappingToUnallocated { .. } => "mapping_to_unallocated",
            Problem::RefcountMismatch { .. } => "refcount_mismatch",
            Problem::FreeAndUsed(_) => "free_and_used",
            Problem::Leaked(_) => "leaked",
            Problem::BeyondHighWater(_) => "beyond_high_water",
            Problem::DataFileShort { .. } => "data_file_short",
            Problem::MappingsPastDataFile { .. } => "mappings_past_data_file",
            Problem::Seal(_) => "seal",
            Problem::MissingFile(_) => "missing_file",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadSuperblock(s) => write!(f, "superblock: {s}"),
            Problem::BadFormat(s) => write!(f, "format version: {s}"),
            Problem::BadRecord(s) => write!(f, "bad record: {s}"),
            Problem::UnknownRecord(s) => write!(f, "record of unknown kind: {s}"),
            Problem::DuplicateVolumeId(id) => write!(f, "volume id {id} used twice"),
            Problem::BadVolume { volume, why } => write!(f, "volume {volume:?}: {why}"),
            Problem::OrphanMapping { volume, lchunk } => {
                write!(
                    f,
                    "mapping of unknown volume id {volume} (logical chunk {lchunk})"
                )
            }
            Problem::MappingBeyondEnd { volume, lchunk } => {
                write!(
                    f,
                    "volume {volume:?} maps logical chunk {lchunk} past its end"
                )
            }
            Problem::MappingToUnallocated {
                volume,
                lchunk,
                chunk,
            } => write!(
                f,
                "volume id {volume} logical chunk {lchunk} points at unallocated chunk {chunk}"
            ),
            Problem::RefcountMismatch {
                chunk,
                stored,
                actual,
            } => {
                write!(
                    f,
                    "chunk {chunk}: refcount {stored} but {actual} references"
                )
            }
            Problem::FreeAndUsed(c) => write!(f, "chunk {c} is both free and used"),
            Problem::Leaked(c) => write!(f, "chunk {c} is neither free nor used (leaked)"),
            Problem::BeyondHighWater(c) => write!(f, "chunk {c} is past the high-water mark"),
            Problem::DataFileShort { needed, actual } => {
                write!(
                    f,
                    "data file has {actual} bytes, allocated chunks need {needed}"
                )
            }
            Problem::MappingsPastDataFile { count, first_chunk } => write!(
                f,
                "{count} mapping(s) point at chunks past the end of the data file \
                 (from chunk {first_chunk}): their data is lost"
            ),
            Problem::Seal(s) => write!(f, "seal: {s}"),
            Problem::MissingFile(s) => write!(f, "{s}"),
        }
    }
}

/// Result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Everything found; empty when clean.
    pub problems: Vec<Problem>,
    /// Facts worth knowing that are not problems (format needing migration,
    /// pool not closed cleanly, clone whose origin was deleted, ...).
    pub notes: Vec<String>,
    /// Catalog entries seen.
    pub volumes: u64,
    /// Mappings seen.
    pub mappings: u64,
    /// Chunks below the high-water mark examined.
    pub chunks: u64,
}

impl CheckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A metadata record that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecoded {
    /// Its key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// What is wrong with it.
    pub problem: Problem,
}

/// Every metadata record, decoded (what decodes) — the input of the checks
/// and of `pool dump`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The format version stored (`None`: missing or unreadable).
    pub format: Option<u32>,
    /// The commit sequence number stored (`None`: missing, as in format 1).
    pub seq: Option<u64>,
    /// The superblock.
    pub superblock: Option<Superblock>,
    /// Catalog entries by name.
    pub volumes: BTreeMap<String, VolumeRecord>,
    /// Mappings (volume id, logical chunk, chunk), in key order.
    pub mappings: Vec<(u64, u64, u64)>,
    /// Stored reference counts by chunk.
    pub refcounts: BTreeMap<u64, u32>,
    /// Chunks marked free.
    pub free: BTreeSet<u64>,
    /// Volume identities by volume id.
    pub identities: BTreeMap<u64, [u8; format::IDENT_LEN]>,
    /// Records that did not decode.
    pub undecoded: Vec<Undecoded>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key in hex and, where printable, as text.
fn shown_key(k: &[u8]) -> String {
    match std::str::from_utf8(k) {
        Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => format!("{} ({s:?})", hex(k)),
        _ => hex(k),
    }
}

/// The message of a decoding error without the "metadata is corrupt" prefix.
fn why(e: PoolError) -> String {
    match e.kind() {
        PoolErrorKind::Corrupt => e.detail().to_string(),
        _ => e.to_string(),
    }
}

impl Metadata {
    /// Decodes every key and value of the current format; `progress` gets
    /// (done, total) now and then.
    pub fn decode(kvs: &[(Vec<u8>, Vec<u8>)], progress: &mut dyn FnMut(u64, u64)) -> Metadata {
        let mut m = Metadata::default();
        let total = kvs.len() as u64;
        for (i, (k, v)) in kvs.iter().enumerate() {
            if i % 65536 == 0 {
                progress(i as u64, total);
            }
            if let Err(problem) = m.decode_one(k, v) {
                m.undecoded.push(Undecoded {
                    key: k.clone(),
                    value: v.clone(),
                    problem,
                });
            }
        }
        progress(total, total);
        m
    }

    fn decode_one(&mut self, k: &[u8], v: &[u8]) -> Result<(), Problem> {
        let bad = |e: PoolError| Problem::BadRecord(why(e));
        match format::parse_key(k) {
            Some(Key::Format) => {
                let f =
                    format::be_u32(v, "format version").map_err(|e| Problem::BadFormat(why(e)))?;
                self.format = Some(f);
            }
            Some(Key::Seq) => self.seq = Some(format::be_u64(v, "commit sequence").map_err(bad)?),
            Some(Key::Super) => {
                let sb = format::decode::<Superblock>(v, "superblock")
                    .map_err(|e| Problem::BadSuperblock(why(e)))?;
                self.superblock = Some(sb);
            }
            Some(Key::Volume(n)) => {
                let rec = format::decode::<VolumeRecord>(v, &format!("volume {n:?}"))
                    .map_err(|e| Problem::BadRecord(why(e)))?;
                self.volumes.insert(n, rec);
            }
            Some(Key::Map(vol, l)) => {
                let c = format::be_u64(v, &format!("mapping of volume id {vol} chunk {l}"))
                    .map_err(|e| Problem::BadRecord(why(e)))?;
                self.mappings.push((vol, l, c));
            }
            Some(Key::Ref(c)) => {
                let n = format::be_u32(v, &format!("refcount of chunk {c}"))
                    .map_err(|e| Problem::BadRecord(why(e)))?;
                self.refcounts.insert(c, n);
            }
            Some(Key::Ident(vol)) => {
                let id = <[u8; format::IDENT_LEN]>::try_from(v).map_err(|_| {
                    Problem::BadRecord(format!(
                        "identity of volume id {vol} has {} bytes, expected {}",
                        v.len(),
                        format::IDENT_LEN
                    ))
                })?;
                self.identities.insert(vol, id);
            }
            Some(Key::Free(c)) => {
                if !v.is_empty() {
                    return Err(Problem::BadRecord(format!(
                        "free entry of chunk {c} has a {}-byte value, expected none",
                        v.len()
                    )));
                }
                self.free.insert(c);
            }
            None => {
                let what = match k.first() {
                    Some(&t)
                        if [format::TAG_MAP, format::TAG_REF, format::TAG_FREE].contains(&t) =>
                    {
                        return Err(Problem::BadRecord(format!(
                            "key {} of kind {:?} has the wrong length {}",
                            hex(k),
                            t as char,
                            k.len()
                        )))
                    }
                    Some(&format::TAG_VOLUME) => {
                        return Err(Problem::BadRecord(format!(
                            "catalog key {} is not UTF-8",
                            hex(k)
                        )))
                    }
                    _ => shown_key(k),
                };
                return Err(Problem::UnknownRecord(format!(
                    "key {what} ({} value bytes)",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Verifies the invariants; `data_len` is the data file's length.
    pub fn verify(&self, data_len: u64) -> CheckReport {
        let mut r = CheckReport::default();
        r.problems
            .extend(self.undecoded.iter().map(|u| u.problem.clone()));
        if self.format.is_none() && !self.undecoded.iter().any(|u| u.key == format::KEY_FORMAT) {
            r.problems.push(Problem::BadFormat("missing".into()));
        }
        r.volumes = self.volumes.len() as u64;
        r.mappings = self.mappings.len() as u64;
        let Some(sb) = self.superblock else {
            if !self.undecoded.iter().any(|u| u.key == format::KEY_SUPER) {
                r.problems.push(Problem::BadSuperblock("missing".into()));
            }
            return r;
        };
        if let Err(e) = super::state::validate_super(&sb) {
            r.problems.push(Problem::BadSuperblock(e.to_string()));
        }
        r.chunks = sb.hwm;
        let cs = u64::from(sb.chunk_size.max(1));
        self.verify_catalog(&sb, &mut r);
        let mut by_id: HashMap<u64, (&str, u64)> = HashMap::new();
        for (n, rec) in &self.volumes {
            if by_id.insert(rec.id, (n, rec.size_bytes)).is_some() {
                r.problems.push(Problem::DuplicateVolumeId(rec.id));
            }
        }
        let mut counted: HashMap<u64, u32> = HashMap::new();
        let (mut past_data, mut first_past) = (0u64, u64::MAX);
        for &(vol, l, c) in &self.mappings {
            match by_id.get(&vol) {
                None => r.problems.push(Problem::OrphanMapping {
                    volume: vol,
                    lchunk: l,
                }),
                Some(&(name, size)) if l.saturating_mul(cs) >= size => {
                    r.problems.push(Problem::MappingBeyondEnd {
                        volume: name.to_string(),
                        lchunk: l,
                    })
                }
                Some(_) => {}
            }
            if c >= sb.hwm || !self.refcounts.contains_key(&c) {
                r.problems.push(Problem::MappingToUnallocated {
                    volume: vol,
                    lchunk: l,
                    chunk: c,
                });
            }
            if c.saturating_add(1).saturating_mul(cs) > data_len {
                past_data += 1;
                first_past = first_past.min(c);
            }
            let n = counted.entry(c).or_default();
            *n = n.saturating_add(1);
        }
        for &c in self.refcounts.keys().chain(self.free.iter()) {
            if c >= sb.hwm {
                r.problems.push(Problem::BeyondHighWater(c));
            }
        }
        for c in 0..sb.hwm {
            let stored = self.refcounts.get(&c).copied().unwrap_or(0);
            let actual = counted.get(&c).copied().unwrap_or(0);
            if stored != actual {
                r.problems.push(Problem::RefcountMismatch {
                    chunk: c,
                    stored,
                    actual,
                });
            }
            let is_free = self.free.contains(&c);
            if is_free && (stored > 0 || actual > 0) {
                r.problems.push(Problem::FreeAndUsed(c));
            } else if !is_free && stored == 0 && actual == 0 {
                r.problems.push(Problem::Leaked(c));
            }
        }
        let needed = sb.hwm.saturating_mul(cs);
        if data_len < needed {
            r.problems.push(Problem::DataFileShort {
                needed,
                actual: data_len,
            });
        }
        if past_data > 0 {
            r.problems.push(Problem::MappingsPastDataFile {
                count: past_data,
                first_chunk: first_past,
            });
        }
        r
    }

    /// Catalog entries: names, sizes, block sizes, ids and origins.
    fn verify_catalog(&self, sb: &Superblock, r: &mut CheckReport) {
        let ids: BTreeSet<u64> = self.volumes.values().map(|v| v.id).collect();
        for (name, rec) in &self.volumes {
            let mut bad = |why: String| {
                r.problems.push(Problem::BadVolume {
                    volume: name.clone(),
                    why,
                })
            };
            if validate_name(name).is_err() {
                bad("the name is not one tcmud accepts".into());
            }
            if rec.block_size != 512 && rec.block_size != 4096 {
                bad(format!("block size {} (not 512 or 4096)", rec.block_size));
            } else if rec.size_bytes == 0 || rec.size_bytes % u64::from(rec.block_size) != 0 {
                bad(format!(
                    "size {} is not a non-zero multiple of the block size {}",
                    rec.size_bytes, rec.block_size
                ));
            }
            if rec.id >= sb.next_volume_id {
                bad(format!(
                    "id {} is not below the next id to hand out ({}): it would be handed out again",
                    rec.id, sb.next_volume_id
                ));
            }
            match rec.origin {
                Some(o) if o >= sb.next_volume_id || o == rec.id => bad(format!(
                    "origin id {o} was never handed out to another volume"
                )),
                Some(o) if !ids.contains(&o) => r.notes.push(format!(
                    "{name:?} was made from volume id {o}, which has been deleted"
                )),
                _ => {}
            }
        }
    }
}

/// Checks every key of a store; `data_len` is the data file's length.
pub(crate) fn check_kvs(
    kvs: &[(Vec<u8>, Vec<u8>)],
    data_len: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> CheckReport {
    Metadata::decode(kvs, progress).verify(data_len)
}

/// What `repair` found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The check before the repair.
    pub before: CheckReport,
    /// Every change made, in words (empty when the pool was clean).
    pub changes: Vec<String>,
}

/// Changes that make `kvs` consistent, each with a description: mappings of
/// unknown volumes, past the end or past the high-water mark go; reference
/// counts and free entries are rebuilt from the remaining mappings. Keys
/// that already hold the right value are left alone.
fn repair_changes(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<(Change, String)>, PoolError> {
    let st = State::load(kvs)?;
    let cs = u64::from(st.sb.chunk_size);
    let sizes: HashMap<u64, u64> = st.catalog.values().map(|r| (r.id, r.size_bytes)).collect();
    let mut out: Vec<(Change, String)> = Vec::new();
    let mut counted: HashMap<u64, u32> = HashMap::new();
    let mut refs: HashMap<u64, &[u8]> = HashMap::new();
    let mut free: BTreeSet<u64> = BTreeSet::new();
    for (k, v) in kvs {
        match format::parse_key(k) {
            Some(Key::Map(vol, l)) => {
                let c = format::be_u64(v, "mapping").unwrap_or(u64::MAX);
                let keep =
                    sizes.get(&vol).is_some_and(|&s| l.saturating_mul(cs) < s) && c < st.sb.hwm;
                if keep {
                    *counted.entry(c).or_default() += 1;
                } else {
                    out.push((
                        (k.clone(), None),
                        format!(
                            "removed the mapping of volume id {vol} logical chunk {l} \
                             (to chunk {c}): unknown volume, past its end or past the high-water mark"
                        ),
                    ));
                }
            }
            Some(Key::Ref(c) | Key::Free(c)) if c >= st.sb.hwm => out.push((
                (k.clone(), None),
                format!("removed the entry of chunk {c} past the high-water mark"),
            )),
            Some(Key::Ref(c)) => {
                refs.insert(c, v);
            }
            Some(Key::Free(c)) => {
                free.insert(c);
            }
            _ => {}
        }
    }
    for c in 0..st.sb.hwm {
        let stored = refs
            .get(&c)
            .and_then(|v| format::be_u32(v, "refcount").ok());
        match counted.get(&c) {
            Some(&n) => {
                if stored != Some(n) {
                    out.push((
                        (
                            format::chunk_key(format::TAG_REF, c),
                            Some(n.to_be_bytes().to_vec()),
                        ),
                        format!(
                            "chunk {c}: reference count {} -> {n}",
                            stored.map_or("none".to_string(), |s| s.to_string())
                        ),
                    ));
                }
                if free.contains(&c) {
                    out.push((
                        (format::chunk_key(format::TAG_FREE, c), None),
                        format!("chunk {c}: no longer marked free (it is mapped)"),
                    ));
                }
            }
            None => {
                if refs.contains_key(&c) {
                    out.push((
                        (format::chunk_key(format::TAG_REF, c), None),
                        format!("chunk {c}: reference count removed (nothing maps it)"),
                    ));
                }
                if !free.contains(&c) {
                    out.push((
                        (format::chunk_key(format::TAG_FREE, c), Some(Vec::new())),
                        format!("chunk {c}: marked free"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

impl Pool {
    /// Repair of a format-3 pool: format 2's repair on the format-2 view of
    /// its mappings and counts, then every tree rebuilt from the result
    /// (migration 0003), replacing every key in one commit. Rebuilt trees
    /// share no pages (as after a migration).
    fn repair_tree(&self, before: CheckReport) -> Result<RepairReport, PoolError> {
        let _c = guard(&self.inner.commit);
        let store = self.inner.store.as_ref();
        let old = store.load_all()?;
        let view = super::view2::as_format2(&old)?;
        let (changes, words): (Vec<Change>, Vec<String>) =
            repair_changes(&view)?.into_iter().unzip();
        let mut keys: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = view.into_iter().collect();
        let apply = |keys: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>, ch: Vec<Change>| {
            for (k, v) in ch {
                match v {
                    Some(v) => keys.insert(k, v),
                    None => keys.remove(&k),
                };
            }
        };
        apply(&mut keys, changes);
        let flat: Vec<(Vec<u8>, Vec<u8>)> =
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        apply(&mut keys, super::migrate::m0003::run(&flat)?);
        keys.insert(
            format::KEY_FORMAT.to_vec(),
            format::TREE_FORMAT.to_be_bytes().to_vec(),
        );
        let mut commit: Vec<Change> = old
            .iter()
            .filter(|(k, _)| !keys.contains_key(k))
            .map(|(k, _)| (k.clone(), None))
            .collect();
        commit.extend(keys.into_iter().map(|(k, v)| (k, Some(v))));
        store.commit(commit)?;
        tracing::info!("every page tree rebuilt from the repaired mappings");
        let cache = self
            .state()
            .t3
            .as_ref()
            .map_or(super::pagestore::DEFAULT_METADATA_CACHE, |t| {
                t.pages.capacity_bytes() as u64
            });
        let opts = super::PoolOptions {
            metadata_cache: cache,
            ..super::PoolOptions::default()
        };
        let fresh = super::open::load_tree_state(&self.inner.store, &opts)?;
        *self.state() = fresh;
        tracing::warn!(
            problems = before.problems.len(),
            changes = words.len(),
            "pool repaired"
        );
        Ok(RepairReport {
            before,
            changes: words,
        })
    }

    /// Commits, then verifies the committed metadata. Changes nothing else.
    pub fn check(&self) -> Result<CheckReport, PoolError> {
        self.check_with_progress(&mut |_, _| {})
    }

    /// [`Pool::check`] reporting progress over the metadata keys.
    pub fn check_with_progress(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CheckReport, PoolError> {
        if self.state().t3.is_some() {
            // The commit lock held through the walk: a delete job's worker
            // commits nothing meanwhile, so every key read is of one commit.
            let _c = guard(&self.inner.commit);
            self.flush_locked()?;
            return super::check3::check_tree(
                self.inner.store.as_ref(),
                self.inner.data.file_len(),
                progress,
            );
        }
        self.flush()?;
        let kvs = self.inner.store.load_all()?;
        Ok(check_kvs(&kvs, self.inner.data.file_len(), progress))
    }

    /// Checks, and if problems were found rebuilds reference counts and free
    /// entries from the mappings (dropping mappings that cannot be right).
    /// Refuses while volumes are open. Returns the check from before and
    /// the changes made.
    pub fn repair(&self) -> Result<RepairReport, PoolError> {
        if guard(&self.inner.open)
            .values()
            .flatten()
            .any(|w| w.strong_count() > 0)
        {
            return Err(PoolError::volume_busy("(repair needs every volume closed)"));
        }
        let before = self.check()?;
        if before.is_clean() {
            return Ok(RepairReport {
                before,
                changes: Vec::new(),
            });
        }
        if self.state().t3.is_some() {
            return self.repair_tree(before);
        }
        let _c = guard(&self.inner.commit);
        let kvs = self.inner.store.load_all()?;
        let (changes, words): (Vec<Change>, Vec<String>) =
            repair_changes(&kvs)?.into_iter().unzip();
        self.inner.store.commit(changes)?;
        let fresh = State::load(&self.inner.store.load_all()?)?;
        *self.state() = fresh;
        tracing::warn!(
            problems = before.problems.len(),
            changes = words.len(),
            "pool repaired"
        );
        Ok(RepairReport {
            before,
            changes: words,
        })
    }
}
