//! Read-only inspection of a pool directory: what `tcmud pool check` and
//! `tcmud pool dump` run instead of [`Pool::open`](super::Pool::open).
//!
//! Nothing in the pool directory is written: no migration, no seal update,
//! no pid in the lock file, and sled — which has no read-only mode and
//! recovers (rewrites) its log when it opens — opens a *copy* of `meta/` in
//! a temporary directory (`$TMPDIR`). The data file is opened read-only for
//! its length. The pool's lock is taken shared for the time of the copy, so
//! a pool held by a daemon is refused (its pid named) and two checks can run
//! side by side. Every record is decoded here, an old format migrated in
//! memory only, and every problem found is reported rather than the first
//! one ending the run: records that do not decode, a short data file, a seal
//! that disagrees with sled.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::check::{CheckReport, Metadata, Problem, Undecoded};
use super::format::{self, CURRENT_FORMAT, LEGACY_FORMAT, NEWEST_FORMAT, TREE_FORMAT};
use super::lock::LOCK_FILE;
use super::open::{DATA_FILE, MARKER_FILE, META_DIR};
use super::seal::{self, Seal};
use super::store::{Entries, MetaStore, SledStore};
use super::{migrate, PoolError, PoolErrorKind};

/// What a read-only look at a pool directory found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Every record, decoded (an older format migrated in memory).
    pub metadata: Metadata,
    /// Problems and notes.
    pub report: CheckReport,
    /// The format stored on disk (before any in-memory migration).
    pub format_on_disk: Option<u32>,
    /// The seal, if there is a readable one.
    pub seal: Option<Seal>,
    /// Length of the data file (0 if missing).
    pub data_len: u64,
}

/// The pool's lock taken shared, read-only (the lock file is not written).
struct SharedLock {
    _flock: Option<Flock<File>>,
}

fn lock_shared(dir: &Path) -> Result<SharedLock, PoolError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SharedLock { _flock: None })
        }
        Err(e) => return Err(PoolError::io(format!("opening {}", path.display()), e)),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(f) => Ok(SharedLock { _flock: Some(f) }),
        Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            Err(PoolError::locked(
                dir.to_path_buf(),
                s.trim().parse().unwrap_or(0),
            ))
        }
        Err((_, errno)) => Err(PoolError::io(
            format!("locking {}", path.display()),
            errno.into(),
        )),
    }
}

/// Copies the files of `from` (recursively) into `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Every key and value of the sled database in `meta`, read from a copy.
fn read_meta_copy(meta: &Path) -> Result<Entries, PoolError> {
    for f in ["conf", "db"] {
        let p = meta.join(f);
        match fs::metadata(&p) {
            Ok(m) if m.len() > 0 => {}
            Ok(_) => return Err(PoolError::corrupt(format!("{} is empty", p.display()))),
            Err(e) => return Err(PoolError::corrupt(format!("{}: {e}", p.display()))),
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("tcmud-inspect-")
        .tempdir()
        .map_err(|e| PoolError::io("creating a temporary directory", e))?;
    let copy = tmp.path().join(META_DIR);
    copy_tree(meta, &copy).map_err(|e| {
        PoolError::io(
            format!(
                "copying {} to {} (set TMPDIR for another place)",
                meta.display(),
                tmp.path().display()
            ),
            e,
        )
    })?;
    let store = SledStore::open(&copy)?;
    let kvs = store.load_all();
    // The copy is thrown away: a failure to close it only matters if
    // reading failed too (that error is the one reported).
    let closed = store.close();
    let kvs = kvs?;
    closed?;
    Ok(kvs)
}

/// Runs every migration step from `found` on `kvs` in memory. Records a
/// step cannot read are set aside as undecoded (a step is run on each
/// record alone to find them) rather than ending the run.
fn migrate_in_memory(
    kvs: Entries,
    found: u32,
    undecoded: &mut Vec<Undecoded>,
) -> Result<Entries, PoolError> {
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = kvs.into_iter().collect();
    for at in found..LEGACY_FORMAT {
        let step = migrate::migrations()
            .iter()
            .find(|m| m.from == at)
            .ok_or_else(|| PoolError::corrupt(format!("no migration from format {at}")))?;
        let all: Entries = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let changes = match (step.run)(&all) {
            Ok(c) => c,
            Err(_) => {
                for kv in &all {
                    if let Err(e) = (step.run)(std::slice::from_ref(kv)) {
                        let e = match e.kind() {
                            PoolErrorKind::Corrupt => e.detail().to_string(),
                            _ => e.to_string(),
                        };
                        map.remove(&kv.0);
                        undecoded.push(Undecoded {
                            key: kv.0.clone(),
                            value: kv.1.clone(),
                            problem: Problem::BadRecord(format!("format-{at} record: {e}")),
                        });
                    }
                }
                let rest: Entries = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                (step.run)(&rest)?
            }
        };
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        map.insert(format::KEY_FORMAT.to_vec(), (at + 1).to_be_bytes().to_vec());
    }
    Ok(map.into_iter().collect())
}

/// Looks at the pool in `dir` without changing a byte of it and reports
/// every problem found. Fails (nothing to report) only when the directory
/// is no pool, is held by a process, or its metadata cannot be read at all.
pub fn inspect(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Inspection, PoolError> {
    let not_pool = |why: String| PoolError::not_a_pool(dir.to_path_buf(), why);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(not_pool("not a directory".into())),
        Err(e) => return Err(not_pool(e.to_string())),
    }
    let meta = dir.join(META_DIR);
    if !meta.is_dir() {
        return Err(not_pool("metadata directory meta/ missing".into()));
    }
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if !dir.join(MARKER_FILE).is_file() {
        problems.push(Problem::MissingFile(
            "marker file tcmud-pool missing (open refuses the pool)".into(),
        ));
    }
    if !dir.join(LOCK_FILE).is_file() {
        problems.push(Problem::MissingFile(
            "lock file missing (open refuses the pool)".into(),
        ));
    }
    let _lock = lock_shared(dir)?;
    let seal = match Seal::read(dir) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem::Seal(e.to_string()));
            None
        }
    };
    let data_len = match fs::metadata(dir.join(DATA_FILE)) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            problems.push(Problem::MissingFile("data is not a regular file".into()));
            0
        }
        Err(e) => {
            problems.push(Problem::MissingFile(format!("data file: {e}")));
            0
        }
    };
    if let Some(crc) = seal.and_then(|s| s.closed_crc) {
        let now = seal::meta_crc(&meta).map_err(|e| PoolError::io("reading meta/", e))?;
        if now != crc {
            problems.push(Problem::Seal(format!(
                "the files in meta/ changed since the pool was closed (checksum {now:08x}, \
                 sealed {crc:08x}): truncated or corrupted sled database (open refuses it)"
            )));
        }
    }
    let kvs = read_meta_copy(&meta)?;
    let format_on_disk = kvs
        .iter()
        .find(|(k, _)| k.as_slice() == format::KEY_FORMAT)
        .and_then(|(_, v)| format::be_u32(v, "format").ok());
    let mut undecoded = Vec::new();
    let kvs = match format_on_disk {
        Some(f) if f > NEWEST_FORMAT => return Err(PoolError::format_too_new(f, NEWEST_FORMAT)),
        Some(f) if f < LEGACY_FORMAT => {
            notes.push(format!(
                "format {f}: needs migration to format {CURRENT_FORMAT} on open (checked as \
                 migrated to format {LEGACY_FORMAT}, in memory; nothing written)"
            ));
            migrate_in_memory(kvs, f, &mut undecoded)?
        }
        Some(TREE_FORMAT) => {
            // page-level findings from the tree walk, the rest on the
            // format-2 view of the same mappings and counts
            let mem = super::memstore::MemStore::new();
            mem.commit(
                kvs.iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect(),
            )?;
            let r3 = super::check3::check_tree(&mem, data_len, &mut |_, _| {})?;
            problems.extend(r3.problems);
            match super::view2::as_format2(&kvs) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Problem::BadRecord(e.to_string()));
                    kvs.into_iter()
                        .filter(|(k, _)| !k.starts_with(b"T"))
                        .collect()
                }
            }
        }
        _ => kvs,
    };
    let mut metadata = Metadata::decode(&kvs, progress);
    metadata.undecoded.splice(0..0, undecoded);
    let mut report = metadata.verify(data_len);
    let mut found = std::mem::take(&mut report.problems);
    if format_on_disk == Some(TREE_FORMAT) {
        // Format 3 counts the leaf pages holding a chunk, not the volumes
        // mapping it (a leaf shared by a snapshot and its clones counts
        // once): the format-2 view's counts are checked by the tree walk
        // above, with that meaning; format 2's rule would flag every shared
        // leaf.
        found.retain(|p| !matches!(p, Problem::RefcountMismatch { .. }));
    }
    problems.extend(found);
    seal_findings(
        seal,
        &metadata,
        format_on_disk,
        data_len,
        &mut problems,
        &mut notes,
    );
    notes.append(&mut report.notes);
    report.problems = problems;
    report.notes = notes;
    Ok(Inspection {
        metadata,
        report,
        format_on_disk,
        seal,
        data_len,
    })
}

/// Compares the seal with what sled holds, as `open` would.
fn seal_findings(
    seal: Option<Seal>,
    m: &Metadata,
    format_on_disk: Option<u32>,
    data_len: u64,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    let Some(seal) = seal else {
        notes.push(match format_on_disk {
            Some(1) => "no meta.seal (format 1 pools have none)".to_string(),
            _ => "no meta.seal: open cannot verify meta/ before sled opens it".to_string(),
        });
        return;
    };
    if seal.format > NEWEST_FORMAT {
        problems.push(Problem::Seal(format!(
            "the seal names format {}, newer than this tcmud's {NEWEST_FORMAT} (open refuses the pool)",
            seal.format
        )));
    }
    if let Some(f) = format_on_disk {
        if seal.format > f {
            problems.push(Problem::Seal(format!(
                "the seal names format {} but sled holds format {f}",
                seal.format
            )));
        } else if seal.format < f {
            notes.push(format!(
                "the seal names format {} and sled format {f} (seal not updated after a migration)",
                seal.format
            ));
        }
    }
    let seq = m.seq.unwrap_or(0);
    if seq < seal.seq {
        problems.push(Problem::Seal(format!(
            "sled holds commit {seq} but commit {} was made: the database lost commits \
             (open refuses it)",
            seal.seq
        )));
    } else if seq > seal.seq {
        notes.push(format!(
            "sled holds commit {seq}, the seal names commit {} (a seal update was lost)",
            seal.seq
        ));
    }
    if data_len < seal.data_len {
        problems.push(Problem::Seal(format!(
            "the data file has {data_len} bytes, the seal says commit {} needed {} \
             (open refuses the pool)",
            seal.seq, seal.data_len
        )));
    }
    if seal.closed_crc.is_none() {
        notes.push(
            "not closed cleanly (the process holding it ended without closing it); \
             open compares sled's commit number with the seal's"
                .to_string(),
        );
    }
}
