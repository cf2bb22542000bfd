//! `check` (like thin_check): verifies the committed metadata and reports;
//! `repair` rebuilds reference counts and free entries from the mappings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::format::{self, Key, Superblock, VolumeRecord};
use super::state::State;
use super::store::Change;
use super::{guard, Pool, PoolError};

/// One inconsistency found by [`Pool::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The superblock or format key is missing or unreadable.
    BadSuperblock(String),
    /// A key or value could not be decoded.
    BadRecord(String),
    /// Two catalog entries share an id.
    DuplicateVolumeId(u64),
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
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadSuperblock(s) => write!(f, "superblock: {s}"),
            Problem::BadRecord(s) => write!(f, "bad record: {s}"),
            Problem::DuplicateVolumeId(id) => write!(f, "volume id {id} used twice"),
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
        }
    }
}

/// Result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Everything found; empty when clean.
    pub problems: Vec<Problem>,
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

/// Checks every key of a store; `data_len` is the data file's length.
pub(crate) fn check_kvs(
    kvs: &[(Vec<u8>, Vec<u8>)],
    data_len: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> CheckReport {
    let mut r = CheckReport::default();
    let total = kvs.len() as u64;
    let mut sb: Option<Superblock> = None;
    let mut vols: BTreeMap<String, VolumeRecord> = BTreeMap::new();
    let mut maps = Vec::new();
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut free: HashSet<u64> = HashSet::new();
    for (i, (k, v)) in kvs.iter().enumerate() {
        if i % 65536 == 0 {
            progress(i as u64, total);
        }
        match format::parse_key(k) {
            Some(Key::Format | Key::Seq) => {}
            Some(Key::Super) => match format::decode::<Superblock>(v, "superblock") {
                Ok(s) => sb = Some(s),
                Err(e) => r.problems.push(Problem::BadSuperblock(e.to_string())),
            },
            Some(Key::Volume(n)) => match format::decode::<VolumeRecord>(v, &n) {
                Ok(rec) => {
                    vols.insert(n, rec);
                }
                Err(e) => r.problems.push(Problem::BadRecord(e.to_string())),
            },
            Some(Key::Map(vol, l)) => match format::be_u64(v, "mapping") {
                Ok(c) => maps.push((vol, l, c)),
                Err(e) => r.problems.push(Problem::BadRecord(e.to_string())),
            },
            Some(Key::Ref(c)) => match format::be_u32(v, "refcount") {
                Ok(n) => {
                    refs.insert(c, n);
                }
                Err(e) => r.problems.push(Problem::BadRecord(e.to_string())),
            },
            Some(Key::Free(c)) => {
                free.insert(c);
            }
            None => r
                .problems
                .push(Problem::BadRecord(format!("unknown key {k:02x?}"))),
        }
    }
    let Some(sb) = sb else {
        r.problems.push(Problem::BadSuperblock("missing".into()));
        return r;
    };
    r.volumes = vols.len() as u64;
    r.mappings = maps.len() as u64;
    r.chunks = sb.hwm;
    let mut by_id: HashMap<u64, (&str, u64)> = HashMap::new();
    for (n, rec) in &vols {
        if by_id.insert(rec.id, (n, rec.size_bytes)).is_some() {
            r.problems.push(Problem::DuplicateVolumeId(rec.id));
        }
    }
    let cs = u64::from(sb.chunk_size);
    let mut counted: HashMap<u64, u32> = HashMap::new();
    for &(vol, l, c) in &maps {
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
        if c >= sb.hwm || !refs.contains_key(&c) {
            r.problems.push(Problem::MappingToUnallocated {
                volume: vol,
                lchunk: l,
                chunk: c,
            });
        }
        *counted.entry(c).or_default() += 1;
    }
    for &c in refs.keys().chain(free.iter()) {
        if c >= sb.hwm {
            r.problems.push(Problem::BeyondHighWater(c));
        }
    }
    for c in 0..sb.hwm {
        let stored = refs.get(&c).copied().unwrap_or(0);
        let actual = counted.get(&c).copied().unwrap_or(0);
        if stored != actual && c < sb.hwm {
            r.problems.push(Problem::RefcountMismatch {
                chunk: c,
                stored,
                actual,
            });
        }
        let is_free = free.contains(&c);
        if is_free && (stored > 0 || actual > 0) {
            r.problems.push(Problem::FreeAndUsed(c));
        } else if !is_free && stored == 0 && actual == 0 {
            r.problems.push(Problem::Leaked(c));
        }
    }
    let needed = sb.hwm * cs;
    if data_len < needed {
        r.problems.push(Problem::DataFileShort {
            needed,
            actual: data_len,
        });
    }
    progress(total, total);
    r
}

/// Changes that make `kvs` consistent: mappings of unknown volumes, past
/// the end or past the high-water mark go; reference counts and free entries
/// are rebuilt from the remaining mappings.
fn repair_changes(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Change>, PoolError> {
    let st = State::load(kvs)?;
    let cs = u64::from(st.sb.chunk_size);
    let sizes: HashMap<u64, u64> = st.catalog.values().map(|r| (r.id, r.size_bytes)).collect();
    let mut out: Vec<Change> = Vec::new();
    let mut counted: HashMap<u64, u32> = HashMap::new();
    for (k, v) in kvs {
        match format::parse_key(k) {
            Some(Key::Map(vol, l)) => {
                let c = format::be_u64(v, "mapping").unwrap_or(u64::MAX);
                let keep =
                    sizes.get(&vol).is_some_and(|&s| l.saturating_mul(cs) < s) && c < st.sb.hwm;
                if keep {
                    *counted.entry(c).or_default() += 1;
                } else {
                    out.push((k.clone(), None));
                }
            }
            Some(Key::Ref(c) | Key::Free(c)) if c >= st.sb.hwm => out.push((k.clone(), None)),
            _ => {}
        }
    }
    for c in 0..st.sb.hwm {
        match counted.get(&c) {
            Some(&n) => {
                out.push((
                    format::chunk_key(format::TAG_REF, c),
                    Some(n.to_be_bytes().to_vec()),
                ));
                out.push((format::chunk_key(format::TAG_FREE, c), None));
            }
            None => {
                out.push((format::chunk_key(format::TAG_REF, c), None));
                out.push((format::chunk_key(format::TAG_FREE, c), Some(Vec::new())));
            }
        }
    }
    Ok(out)
}

impl Pool {
    /// Commits, then verifies the committed metadata. Changes nothing.
    pub fn check(&self) -> Result<CheckReport, PoolError> {
        self.check_with_progress(&mut |_, _| {})
    }

    /// [`Pool::check`] reporting progress over the metadata keys.
    pub fn check_with_progress(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CheckReport, PoolError> {
        self.flush()?;
        let kvs = self.inner.store.load_all()?;
        Ok(check_kvs(&kvs, self.inner.data.file_len(), progress))
    }

    /// Checks, and if problems were found rebuilds reference counts and free
    /// entries from the mappings (dropping mappings that cannot be right).
    /// Refuses while volumes are open. Returns the report from before.
    pub fn repair(&self) -> Result<CheckReport, PoolError> {
        if guard(&self.inner.open)
            .values()
            .flatten()
            .any(|w| w.strong_count() > 0)
        {
            return Err(PoolError::VolumeBusy(
                "(repair needs every volume closed)".into(),
            ));
        }
        let report = self.check()?;
        if report.is_clean() {
            return Ok(report);
        }
        let _c = guard(&self.inner.commit);
        let kvs = self.inner.store.load_all()?;
        let changes = repair_changes(&kvs)?;
        self.inner.store.commit(changes)?;
        let fresh = State::load(&self.inner.store.load_all()?)?;
        *self.state() = fresh;
        tracing::warn!(problems = report.problems.len(), "pool repaired");
        Ok(report)
    }
}
