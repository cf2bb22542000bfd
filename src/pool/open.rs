//! Creating and opening pools: on a directory (sled + data file) or on any
//! [`MetaStore`] + [`DataIo`] pair (fault-injection tests).

use std::fs::{self, OpenOptions};
use std::path::Path;

use crate::backend::file::open_noatime;

use super::check::check_kvs;
use super::durable;
use super::format::{self, Superblock};
use super::io::{DataIo, FileIo};
use super::lock::PoolLock;
use super::pagestore::CacheSplit;
use super::seal::{self, Seal};
use super::state::{validate_super, State};
use super::store::{MetaStore, SledStore};
use super::treemeta::TreeMeta;
use super::{migrate, Pool, PoolConfig, PoolError, PoolOptions};
use std::sync::Arc;

/// Marker file naming a directory as a pool.
pub const MARKER_FILE: &str = "tcmud-pool";
/// Sled database directory inside the pool.
pub const META_DIR: &str = "meta";
/// Data file inside the pool.
pub const DATA_FILE: &str = "data";
pub(crate) const MARKER_TEXT: &str = "tcmud thin pool; metadata in meta/ (sled), chunks in data\n";

fn superblock(cfg: &PoolConfig) -> Result<Superblock, PoolError> {
    let sb = Superblock {
        chunk_size: cfg.chunk_size,
        capacity_chunks: cfg.capacity_bytes / u64::from(cfg.chunk_size.max(1)),
        low_water_pct: cfg.low_water_pct,
        hwm: 0,
        next_volume_id: 1,
    };
    validate_super(&sb).map_err(|_| {
        PoolError::invalid_config(format!(
            "chunk size must be a power of two from 4 KiB to 1 MiB (got {}), low water <= 100 (got {})",
            cfg.chunk_size, cfg.low_water_pct
        ))
    })?;
    if sb.capacity_chunks == 0 {
        return Err(PoolError::invalid_config(format!(
            "capacity {} is less than one chunk",
            cfg.capacity_bytes
        )));
    }
    Ok(sb)
}

impl Pool {
    /// Creates a pool in `dir` (created if missing; must be empty if present)
    /// and opens it.
    pub fn create(dir: &Path, cfg: &PoolConfig) -> Result<Pool, PoolError> {
        Pool::create_opts(dir, cfg, &PoolOptions::default())
    }

    /// [`Pool::create`] with a metadata format and cache size.
    pub fn create_opts(
        dir: &Path,
        cfg: &PoolConfig,
        opts: &PoolOptions,
    ) -> Result<Pool, PoolError> {
        let sb = superblock(cfg)?;
        check_format_option(opts)?;
        match fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(PoolError::already_exists(dir.to_path_buf()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(dir)
                .map_err(|e| PoolError::io(format!("creating {}", dir.display()), e))?,
            Err(e) => return Err(PoolError::io(format!("reading {}", dir.display()), e)),
        }
        let mut pool_lock = PoolLock::acquire(dir)?;
        let data = open_noatime(
            OpenOptions::new().read(true).write(true).create_new(true),
            &dir.join(DATA_FILE),
        )
        .and_then(FileIo::new)
        .map_err(|e| PoolError::io("creating the data file", e))?;
        let store: Arc<dyn MetaStore> = Arc::new(SledStore::open_cached(
            &dir.join(META_DIR),
            CacheSplit::of(opts.metadata_cache).sled,
        )?);
        pool_lock.write_pid()?;
        let st = new_state(sb, &store, opts);
        let pool = Pool::from_parts(
            Some(dir.to_path_buf()),
            store,
            Box::new(data),
            st,
            0,
            Some(pool_lock),
            opts,
        );
        pool.flush()?;
        write_marker(dir)?;
        // Every name in the pool directory (lock, data, meta/, meta.seal,
        // the marker), then the pool directory's own name, durable; sled's
        // files were synced when it opened and by the commit above.
        durable::sync_path(dir)
            .and_then(|()| durable::sync_parent(dir))
            .map_err(|e| PoolError::io(format!("syncing {}", dir.display()), e))?;
        Ok(pool)
    }

    /// Opens the pool in `dir`. Fails with [`PoolErrorKind::Locked`](super::PoolErrorKind::Locked) (naming the
    /// holder's pid) when another process or handle holds it.
    ///
    /// After an unclean shutdown (the seal still says open, or there is no
    /// seal) the metadata is verified before the pool is returned:
    /// reference counts and the free list against the mappings, everything
    /// `check` verifies. On any inconsistency the open fails with
    /// [`PoolErrorKind::NeedsRepair`](super::PoolErrorKind::NeedsRepair): a read-write pool would trust those
    /// counts and could hand out a chunk still mapped elsewhere or
    /// overwrite a shared chunk in place.
    pub fn open(dir: &Path) -> Result<Pool, PoolError> {
        Pool::open_dir(dir, Verify::Refuse, &PoolOptions::default())
    }

    /// [`Pool::open`] with a metadata cache size (format 3; the format
    /// option is ignored: the pool's own is used).
    pub fn open_opts(dir: &Path, opts: &PoolOptions) -> Result<Pool, PoolError> {
        Pool::open_dir(dir, Verify::Refuse, opts)
    }

    /// [`Pool::open`] for `check` and `repair`: an inconsistency after an
    /// unclean shutdown is logged, not refused.
    pub fn open_for_repair(dir: &Path) -> Result<Pool, PoolError> {
        Pool::open_dir(dir, Verify::Report, &PoolOptions::default())
    }

    fn open_dir(dir: &Path, verify: Verify, opts: &PoolOptions) -> Result<Pool, PoolError> {
        let not_pool = |why: &str| PoolError::not_a_pool(dir.to_path_buf(), why.to_string());
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_pool("not a directory")),
            Err(e) => return Err(not_pool(&e.to_string())),
        }
        for (f, why) in [
            (MARKER_FILE, "marker file tcmud-pool missing"),
            (META_DIR, "metadata directory meta/ missing"),
            (DATA_FILE, "data file missing"),
            (super::lock::LOCK_FILE, "lock file missing"),
        ] {
            if !dir.join(f).exists() {
                return Err(not_pool(why));
            }
        }
        let pool_lock = PoolLock::acquire(dir)?;
        Pool::open_locked(dir, pool_lock, verify, opts)
    }

    fn open_locked(
        dir: &Path,
        mut pool_lock: PoolLock,
        verify: Verify,
        opts: &PoolOptions,
    ) -> Result<Pool, PoolError> {
        let data = open_noatime(
            OpenOptions::new().read(true).write(true),
            &dir.join(DATA_FILE),
        )
        .and_then(FileIo::new)
        .map_err(|e| PoolError::io("opening the data file", e))?;
        let meta = dir.join(META_DIR);
        preflight_sled(&meta)?;
        // Validate against the seal before sled gets to rewrite anything.
        let seal = Seal::read(dir)?;
        if let Some(seal) = &seal {
            if seal.format > format::NEWEST_FORMAT {
                return Err(PoolError::format_too_new(
                    seal.format,
                    format::NEWEST_FORMAT,
                ));
            }
            if data.file_len() < seal.data_len {
                return Err(PoolError::data_file_short(seal.data_len, data.file_len()));
            }
            if let Some(crc) = seal.closed_crc {
                let now = seal::meta_crc(&meta).map_err(|e| PoolError::io("reading meta/", e))?;
                if now != crc {
                    return Err(PoolError::corrupt(format!(
                        "the files in {} changed since the pool was closed (checksum {now:08x}, \
                         sealed {crc:08x}): truncated or corrupted sled database",
                        meta.display()
                    )));
                }
            }
            // Mark it open (a crash from here on must not be taken for damage);
            // put the old seal back if the open fails.
            Seal {
                closed_crc: None,
                ..*seal
            }
            .write(dir, true)
            .map_err(|e| PoolError::io("updating the seal", e))?;
        }
        let sled_cache = CacheSplit::of(opts.metadata_cache).sled;
        let opened = SledStore::open_cached(&meta, sled_cache).and_then(|store| {
            let store: Arc<dyn MetaStore> = Arc::new(store);
            let (st, seq) = load_state(&store, &data, opts)?;
            if let Some(seal) = &seal {
                if seq < seal.seq {
                    return Err(PoolError::corrupt(format!(
                        "sled holds commit {seq} but commit {} was made: the database lost commits",
                        seal.seq
                    )));
                }
            }
            // An open seal is the needs-check flag: the last run ended
            // without closing the pool.
            if seal.is_none_or(|s| s.closed_crc.is_none()) {
                verify_after_crash(dir, store.as_ref(), data.file_len(), verify)?;
            }
            Ok((store, st, seq))
        });
        let (store, st, seq) = match opened {
            Ok(x) => x,
            Err(e) => {
                // Put a closed seal back only if sled changed nothing in
                // meta/ (it may have written before failing, e.g. on a full
                // disk): a stale checksum would refuse every later open.
                if let Some(seal) = &seal {
                    let unchanged = seal
                        .closed_crc
                        .is_none_or(|crc| seal::meta_crc(&meta).is_ok_and(|now| now == crc));
                    if unchanged {
                        let _ = seal.write(dir, true);
                    }
                }
                return Err(e);
            }
        };
        pool_lock.write_pid()?;
        let pool = Pool::from_parts(
            Some(dir.to_path_buf()),
            store,
            Box::new(data),
            st,
            seq,
            Some(pool_lock),
            opts,
        );
        pool.spawn_delete_worker();
        Ok(pool)
    }

    /// Creates a pool on a caller-supplied store and data file (tests).
    pub fn create_with(
        cfg: &PoolConfig,
        store: Box<dyn MetaStore>,
        data: Box<dyn DataIo>,
    ) -> Result<Pool, PoolError> {
        Pool::create_with_opts(cfg, store, data, &PoolOptions::default())
    }

    /// [`Pool::create_with`] with a metadata format and cache size.
    pub fn create_with_opts(
        cfg: &PoolConfig,
        store: Box<dyn MetaStore>,
        data: Box<dyn DataIo>,
        opts: &PoolOptions,
    ) -> Result<Pool, PoolError> {
        check_format_option(opts)?;
        let store: Arc<dyn MetaStore> = Arc::from(store);
        let st = new_state(superblock(cfg)?, &store, opts);
        let pool = Pool::from_parts(None, store, data, st, 0, None, opts);
        pool.flush()?;
        Ok(pool)
    }

    /// Opens a pool from a caller-supplied store and data file (tests: crash
    /// images).
    /// There is no seal: the metadata is verified as after an unclean
    /// shutdown.
    pub fn open_with(store: Box<dyn MetaStore>, data: Box<dyn DataIo>) -> Result<Pool, PoolError> {
        Pool::open_with_opts(store, data, &PoolOptions::default())
    }

    /// [`Pool::open_with`] with a metadata cache size and delete step.
    pub fn open_with_opts(
        store: Box<dyn MetaStore>,
        data: Box<dyn DataIo>,
        opts: &PoolOptions,
    ) -> Result<Pool, PoolError> {
        let store: Arc<dyn MetaStore> = Arc::from(store);
        let (st, seq) = load_state(&store, data.as_ref(), opts)?;
        verify_after_crash(
            Path::new("(in memory)"),
            store.as_ref(),
            data.file_len(),
            Verify::Refuse,
        )?;
        let pool = Pool::from_parts(None, store, data, st, seq, None, opts);
        pool.spawn_delete_worker();
        Ok(pool)
    }
}

/// Writes the marker file, durably.
fn write_marker(dir: &Path) -> Result<(), PoolError> {
    use std::io::Write;
    let mut f = fs::File::create(dir.join(MARKER_FILE))
        .map_err(|e| PoolError::io("creating the pool marker", e))?;
    f.write_all(MARKER_TEXT.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| PoolError::io("writing the pool marker", e))
}

/// What an inconsistency found after an unclean shutdown does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Refuse the open ([`PoolErrorKind::NeedsRepair`]).
    Refuse,
    /// Log it and open (for `check` and `repair`).
    Report,
}

/// Verifies the metadata of a pool that was not closed cleanly.
fn verify_after_crash(
    dir: &Path,
    store: &dyn MetaStore,
    data_len: u64,
    verify: Verify,
) -> Result<(), PoolError> {
    let report = if super::check3::store_format(store)? == format::TREE_FORMAT {
        super::check3::check_tree(store, data_len, &mut |_, _| {})?
    } else {
        check_kvs(&store.load_all()?, data_len, &mut |_, _| {})
    };
    if report.is_clean() {
        tracing::info!(
            pool = %dir.display(),
            volumes = report.volumes,
            mappings = report.mappings,
            chunks = report.chunks,
            "pool was not shut down cleanly; its metadata was verified and is consistent"
        );
        return Ok(());
    }
    let err = PoolError::needs_repair(
        dir.to_path_buf(),
        report.problems.len(),
        report.problems[0].to_string(),
    );
    match verify {
        Verify::Refuse => Err(err),
        Verify::Report => {
            tracing::warn!(error = %err, "opening it for check/repair only");
            Ok(())
        }
    }
}

/// Refuses a format [`Pool::create_opts`] cannot write.
fn check_format_option(opts: &PoolOptions) -> Result<(), PoolError> {
    if opts.format == format::LEGACY_FORMAT || opts.format == format::TREE_FORMAT {
        Ok(())
    } else {
        Err(PoolError::invalid_config(format!(
            "metadata format {} cannot be created (use {} or {})",
            opts.format,
            format::LEGACY_FORMAT,
            format::TREE_FORMAT
        )))
    }
}

/// The state of a new pool of the format `opts` names.
fn new_state(sb: Superblock, store: &Arc<dyn MetaStore>, opts: &PoolOptions) -> State {
    if opts.format == format::TREE_FORMAT {
        let mut t3 = TreeMeta::new(Arc::clone(store), sb.capacity_chunks, opts.metadata_cache);
        t3.step_leaves = opts.delete_step;
        State::new_tree(sb, t3)
    } else {
        State::new(sb)
    }
}

/// Reads the format, upgrades it, loads and validates the state; returns it
/// with the commit sequence number. Format 3 reads only the superblock,
/// catalog, trees, jobs and space map: O(volumes + capacity / 4,096).
fn load_state(
    store: &Arc<dyn MetaStore>,
    data: &dyn DataIo,
    opts: &PoolOptions,
) -> Result<(State, u64), PoolError> {
    let found = match store.get(format::KEY_FORMAT)? {
        Some(v) => format::be_u32(&v, "format version")?,
        None => {
            return Err(PoolError::corrupt(
                "format version missing (empty or damaged database)",
            ))
        }
    };
    if found > format::NEWEST_FORMAT {
        return Err(PoolError::format_too_new(found, format::NEWEST_FORMAT));
    }
    let found = if found < format::CURRENT_FORMAT {
        migrate::upgrade(store.as_ref(), found)?;
        format::CURRENT_FORMAT
    } else {
        found
    };
    let seq = match store.get(format::KEY_SEQ)? {
        Some(v) => format::be_u64(&v, "commit sequence number")?,
        None => 0,
    };
    let st = if found == format::TREE_FORMAT {
        load_tree_state(store, opts)?
    } else {
        State::load(&store.load_all()?)?
    };
    let needed = st.sb.hwm * u64::from(st.sb.chunk_size);
    if data.file_len() < needed {
        return Err(PoolError::data_file_short(needed, data.file_len()));
    }
    Ok((st, seq))
}

/// Loads a format-3 pool's state (see [`load_state`]).
pub(crate) fn load_tree_state(
    store: &Arc<dyn MetaStore>,
    opts: &PoolOptions,
) -> Result<State, PoolError> {
    let sb = store
        .get(format::KEY_SUPER)?
        .ok_or_else(|| PoolError::corrupt("superblock missing"))?;
    let sb: Superblock = format::decode(&sb, "superblock")?;
    validate_super(&sb)?;
    let mut catalog = std::collections::BTreeMap::new();
    for (k, v) in store.scan_prefix(&[format::TAG_VOLUME])? {
        let name = String::from_utf8(k[1..].to_vec())
            .map_err(|_| PoolError::corrupt(format!("volume key {k:?} is not UTF-8")))?;
        let rec: format::VolumeRecord = format::decode(&v, &format!("volume {name:?}"))?;
        catalog.insert(name, rec);
    }
    let ids = catalog.values().map(|r| r.id).collect();
    let mut t3 = TreeMeta::load(
        Arc::clone(store),
        sb.capacity_chunks,
        opts.metadata_cache,
        &ids,
    )?;
    t3.step_leaves = opts.delete_step;
    State::load_tree(sb, catalog, t3)
}

/// Rejects sled directories that sled would "repair" by rewriting: a missing
/// or truncated `conf`/`db` file.
fn preflight_sled(meta: &Path) -> Result<(), PoolError> {
    for f in ["conf", "db"] {
        let p = meta.join(f);
        match fs::metadata(&p) {
            Ok(m) if m.len() > 0 => {}
            Ok(_) => return Err(PoolError::corrupt(format!("{} is empty", p.display()))),
            Err(e) => return Err(PoolError::corrupt(format!("{}: {e}", p.display()))),
        }
    }
    Ok(())
}
