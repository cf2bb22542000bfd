//! Durability under failures: a failed data or metadata sync puts the pool
//! in a failed state (no retry, writes refused, reads served); an unclean
//! shutdown makes the next open verify the metadata and refuse read-write
//! on an inconsistency; a full host file system gives the thin-provisioning
//! error while overwrites of allocated chunks go on; a write that finds no
//! free chunk while a commit frees some waits for that commit.

use crate::util::{rerun, test_name};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::util::narrow::{fit, LowByte};
use tcmud_core::backend::{BackendError, BlockBackend};
use tcmud_core::pool::format::space_key;
use tcmud_core::pool::page::Page;
use tcmud_core::pool::seal::Seal;
use tcmud_core::pool::store::{Change, Entries, MetaStore, SledStore};
use tcmud_core::pool::testing::{CrashIo, MemStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolError, PoolErrorKind};
use tcmud_core::scsi::{Asc, ScsiError, SenseKey};

const BS: usize = 512;

fn cfg(chunk: u32, capacity: u64) -> PoolConfig {
    PoolConfig {
        chunk_size: chunk,
        capacity_bytes: capacity,
        low_water_pct: 100,
    }
}

fn block(tag: u8, len: usize) -> Vec<u8> {
    vec![tag; len]
}

/// The sense key and ASC/ASCQ an initiator gets for `e`.
fn sense(e: BackendError) -> (SenseKey, Asc) {
    let s = ScsiError::Backend(e).to_sense();
    (s.key, s.asc_pair())
}

const REFUSED: (SenseKey, Asc) = (SenseKey::DataProtect, Asc::WRITE_PROTECTED);

fn read(vol: &dyn BlockBackend, lba: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    vol.read(lba, &mut buf).unwrap();
    buf
}

fn seq_of(store: &MemStore) -> Vec<u8> {
    store
        .load_all()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.as_slice() == b"seq")
        .map(|(_, v)| v)
        .unwrap()
}

/// Checks a pool that failed: the next flush is refused although the
/// disk works again (no retry), writes and catalog changes are refused
/// with DATA PROTECT / WRITE PROTECTED, reads still return what was
/// written, and closing it commits nothing.
fn assert_failed(pool: Pool, store: &MemStore, vol: Arc<tcmud_core::pool::Volume>) {
    assert!(pool.has_failed());
    let committed = seq_of(store);
    let e = vol.flush().unwrap_err();
    assert_eq!(sense(e), REFUSED, "a flush after the failure is refused");
    let e = vol.write(0, &block(9, BS), false).unwrap_err();
    assert_eq!(sense(e), REFUSED);
    let e = vol.write(0, &block(9, BS), true).unwrap_err();
    assert_eq!(sense(e), REFUSED);
    let e = vol.unmap(0, 8).unwrap_err();
    assert_eq!(sense(e), REFUSED);
    let e = pool.create_volume("other", 1 << 20, 512).unwrap_err();
    assert!(matches!(e.kind(), PoolErrorKind::Failed { .. }), "{e}");
    assert!(e.to_string().contains("reopened"), "{e}");
    // Reads are served from what the pool has.
    assert_eq!(read(vol.as_ref(), 0, BS), block(1, BS));
    assert_eq!(read(vol.as_ref(), 64, BS), block(2, BS));
    drop(vol);
    drop(pool);
    assert_eq!(
        seq_of(store),
        committed,
        "nothing committed after the failure"
    );
}

fn failing_pool() -> (Pool, MemStore, CrashIo, Arc<tcmud_core::pool::Volume>) {
    let (store, io) = (MemStore::new(), CrashIo::new());
    let pool = Pool::create_with(
        &cfg(4096, 1 << 20),
        Box::new(store.clone()),
        Box::new(io.clone()),
    )
    .unwrap();
    pool.create_volume("v", 256 << 10, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    vol.write(0, &block(1, BS), false).unwrap();
    vol.flush().unwrap();
    // A new chunk: metadata pending.
    vol.write(64, &block(2, BS), false).unwrap();
    (pool, store, io, vol)
}

#[test]
fn a_failed_data_sync_fails_the_pool_and_is_not_retried() {
    let (pool, store, io, vol) = failing_pool();
    io.fail_syncs(true);
    let e = vol.flush().unwrap_err();
    assert!(matches!(e, BackendError::Flush(_)), "{e:?}");
    // The disk "works" again: Linux would report the lost write-back once.
    io.fail_syncs(false);
    assert_failed(pool, &store, vol);
}

#[test]
fn a_failed_metadata_commit_fails_the_pool() {
    let (pool, store, _io, vol) = failing_pool();
    store.fail_commits(true);
    assert!(vol.flush().is_err());
    store.fail_commits(false);
    assert_failed(pool, &store, vol);
}

#[test]
fn a_failed_sync_of_a_fua_write_fails_the_pool() {
    let (pool, store, io, vol) = failing_pool();
    vol.flush().unwrap();
    // An in-place overwrite with FUA and no metadata pending: only a data
    // sync, which fails.
    io.fail_syncs(true);
    let e = vol.write(1, &block(1, BS), true).unwrap_err();
    assert!(matches!(e, BackendError::Flush(_)), "{e:?}");
    io.fail_syncs(false);
    assert_failed(pool, &store, vol);
}

// ---- unclean shutdown -------------------------------------------------

const CHILD_ENV: &str = "TCMUD_DURABILITY_CHILD";

/// The child: opens the pool, writes and commits, says READY and waits to
/// be killed.
fn child(dir: &Path) {
    let pool = Pool::open(dir).unwrap();
    let vol = pool.open_volume("v").unwrap();
    for l in 0..4u64 {
        vol.write(l * 128, &block(l.low_byte() + 1, 4096), false)
            .unwrap();
    }
    vol.flush().unwrap();
    {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        writeln!(o, "READY").unwrap();
        o.flush().unwrap();
    }
    let mut line = String::new();
    // Parked until killed (stdin stays open).
    let _ = std::io::stdin().read_line(&mut line);
    std::process::abort();
}

/// Runs the child on `dir` and kills it (SIGKILL) once it committed.
fn kill_while_open(dir: &Path) {
    let mut c = rerun(&test_name!(
        unclean_shutdown_is_detected_and_verified_at_open
    ))
    .env(CHILD_ENV, dir)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let out = c.stdout.take().unwrap();
    // libtest prints "test NAME ... " before the child's line.
    let ready = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("READY"));
    assert!(ready, "the child did not get ready");
    c.kill().unwrap();
    c.wait().unwrap();
}

/// The first chunk a leaf page maps (format 3), and the change setting
/// its stored reference count (its byte in the space map) to `n`.
fn set_first_count(kvs: &[(Vec<u8>, Vec<u8>)], n: u8) -> (u64, Change) {
    let c = kvs
        .iter()
        .filter(|(k, _)| k[0] == b'P' && k.len() == 9)
        .filter_map(|(_, v)| Page::decode(v).ok())
        .find(|p| p.is_leaf() && !p.is_empty())
        .and_then(|p| p.iter().next())
        .expect("a mapping")
        .1;
    let key = space_key(fit(c / 4096));
    let (_, bytes) = kvs.iter().find(|(k, _)| *k == key).expect("its space page");
    let mut bytes = bytes.clone();
    bytes[(c % 4096) as usize] = n;
    (c, (key, Some(bytes)))
}

/// Sets the stored reference count of the chunk mapped at volume `v`'s
/// first chunk to 2 (one mapping): what a lost or torn commit could leave.
fn corrupt_refcount(dir: &Path) {
    let store = SledStore::open(&dir.join("meta")).unwrap();
    let kvs = store.load_all().unwrap();
    let (_, change) = set_first_count(&kvs, 2);
    store.commit(vec![change]).unwrap();
    store.close().unwrap();
}

#[test]
fn unclean_shutdown_is_detected_and_verified_at_open() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = Pool::create(&dir, &cfg(64 << 10, 16 << 20)).unwrap();
    pool.create_volume("v", 4 << 20, 512).unwrap();
    pool.close().unwrap();
    assert!(Seal::read(&dir).unwrap().unwrap().closed_crc.is_some());

    // A kill leaves the needs-check flag (the seal says open); the next
    // open verifies, finds the metadata consistent and serves it.
    kill_while_open(&dir);
    assert_eq!(Seal::read(&dir).unwrap().unwrap().closed_crc, None);
    let pool = Pool::open(&dir).unwrap();
    let vol = pool.open_volume("v").unwrap();
    assert_eq!(read(vol.as_ref(), 3 * 128, 4096), block(4, 4096));
    drop(vol);
    pool.close().unwrap();
    assert!(Seal::read(&dir).unwrap().unwrap().closed_crc.is_some());

    // Killed again, and a reference count no longer matches the mappings:
    // read-write open is refused and names check/repair.
    kill_while_open(&dir);
    corrupt_refcount(&dir);
    let e = Pool::open(&dir).unwrap_err();
    assert!(matches!(e.kind(), PoolErrorKind::NeedsRepair { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("refcount 2 but 1 references") && msg.contains("tcmud pool check"),
        "{msg}"
    );
    // Refused again (the seal still says open), until repaired.
    assert!(matches!(
        Pool::open(&dir).unwrap_err().kind(),
        PoolErrorKind::NeedsRepair { .. }
    ));
    let pool = Pool::open_for_repair(&dir).unwrap();
    assert!(!pool.repair().unwrap().before.is_clean());
    pool.close().unwrap();
    let pool = Pool::open(&dir).unwrap();
    assert!(pool.check().unwrap().is_clean());
}

#[test]
fn open_with_verifies_the_metadata() {
    let (store, io) = (MemStore::new(), CrashIo::new());
    let pool = Pool::create_with(
        &cfg(4096, 1 << 20),
        Box::new(store.clone()),
        Box::new(io.clone()),
    )
    .unwrap();
    pool.create_volume("v", 64 << 10, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    vol.write(0, &block(1, 4096), false).unwrap();
    vol.flush().unwrap();
    drop(vol);
    drop(pool);
    // A chunk counted free while it is mapped.
    let kvs = store.load_all().unwrap();
    let (_, change) = set_first_count(&kvs, 0);
    let image = store.crash_image();
    image.commit(vec![change]).unwrap();
    let e = Pool::open_with(Box::new(image), Box::new(io.crash_image(&mut || true))).unwrap_err();
    assert!(matches!(e.kind(), PoolErrorKind::NeedsRepair { .. }), "{e}");
    assert!(Pool::open_with(Box::new(store), Box::new(io)).is_ok());
}

#[test]
fn an_unfinished_sled_snapshot_does_not_make_the_pool_unopenable() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = Pool::create(&dir, &cfg(64 << 10, 16 << 20)).unwrap();
    pool.create_volume("v", 1 << 20, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    vol.write(0, &block(5, 4096), false).unwrap();
    drop(vol);
    pool.close().unwrap();
    // What a power cut (or a full disk) while sled wrote its snapshot at
    // open leaves: a partial snapshot under its temporary name, and the
    // seal still open.
    let seal = Seal::read(&dir).unwrap().unwrap();
    Seal {
        closed_crc: None,
        ..seal
    }
    .write(&dir, true)
    .unwrap();
    std::fs::write(
        dir.join("meta/snap.FFFFFFFFFFFFFFFF.generating"),
        b"partial",
    )
    .unwrap();
    let pool = Pool::open(&dir).unwrap();
    let vol = pool.open_volume("v").unwrap();
    assert_eq!(read(vol.as_ref(), 0, 4096), block(5, 4096));
    assert!(!dir.join("meta/snap.FFFFFFFFFFFFFFFF.generating").exists());
}

// ---- host file system full ----------------------------------------------

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (the test is skipped, with a note) where mounting is not
    /// allowed (not root).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

const NO_SPACE: (SenseKey, Asc) = (
    SenseKey::DataProtect,
    Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
);

#[test]
fn a_full_host_file_system_is_out_of_space_and_overwrites_go_on() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    const CHUNK: usize = 64 << 10;
    let dir = fs.dir.path().join("pool");
    // The pool's capacity is far more than the file system holds.
    let pool = Pool::create(&dir, &cfg(fit(CHUNK), 1 << 30)).unwrap();
    pool.create_volume("v", 512 << 20, 512).unwrap();
    let vol = pool.open_volume("v").unwrap();
    let lba = |l: u64, off: usize| (l * CHUNK as u64 + off as u64) / BS as u64;
    // 4 KiB into each chunk, in the middle: a partial first write past the
    // data file's end, which leaves the rest of the chunk a hole unless it
    // is preallocated.
    let mut written = Vec::new();
    let mut full = None;
    for l in 0..(512 << 20) / CHUNK as u64 {
        match vol.write(lba(l, 8192), &block(l.low_byte() | 1, 4096), false) {
            Ok(()) => written.push(l),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("the 8 MiB file system never filled up");
    assert_eq!(sense(e), NO_SPACE, "after {} chunks", written.len());
    assert!(written.len() > 16, "only {} chunks fit", written.len());
    // Overwrites of allocated chunks, whole, need no host space.
    for &l in &written {
        vol.write(lba(l, 0), &block(l.low_byte() | 2, CHUNK), false)
            .unwrap_or_else(|e| panic!("overwrite of chunk {l} failed: {e}"));
    }
    // Whatever host space is left goes to another file: commits still
    // succeed, on the space reserved for the metadata log.
    fill(&fs.dir.path().join("filler"));
    vol.flush().expect("a commit on a full host file system");
    let e = vol.write(lba(written.len() as u64 + 1, 0), &block(3, CHUNK), false);
    assert_eq!(sense(e.unwrap_err()), NO_SPACE);
    for &l in &written {
        assert_eq!(
            read(vol.as_ref(), lba(l, 0), CHUNK),
            block(l.low_byte() | 2, CHUNK)
        );
    }
    drop(vol);
    pool.close().unwrap();
    // sled writes a snapshot when it opens: on a full host that may fail,
    // but as an I/O error, never as damage; the seal is left as it was.
    if let Err(e) = Pool::open(&dir) {
        assert!(matches!(e.kind(), PoolErrorKind::Io), "{e}");
    }
    std::fs::remove_file(fs.dir.path().join("filler")).unwrap();
    let pool = Pool::open(&dir).unwrap();
    let vol = pool.open_volume("v").unwrap();
    for &l in &written {
        assert_eq!(
            read(vol.as_ref(), lba(l, 0), CHUNK),
            block(l.low_byte() | 2, CHUNK)
        );
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let buf = vec![0xeeu8; 4096];
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the file system: {e}"),
        }
    }
}

// ---- a write waits for a commit that frees chunks -----------------------

#[derive(Default)]
struct Gate {
    armed: bool,
    entered: bool,
}

/// A [`MemStore`] whose commits wait while the gate is armed.
#[derive(Clone, Default)]
struct GateStore {
    inner: MemStore,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl GateStore {
    fn set(&self, armed: bool) {
        let (m, cv) = &*self.gate;
        m.lock().unwrap().armed = armed;
        cv.notify_all();
    }

    /// Waits (bounded) until a commit waits at the gate.
    fn wait_entered(&self) {
        let (m, cv) = &*self.gate;
        let (g, timeout) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(30), |g| !g.entered)
            .unwrap();
        assert!(
            !timeout.timed_out() && g.entered,
            "no commit reached the gate"
        );
    }
}

impl MetaStore for GateStore {
    fn load_all(&self) -> Result<Entries, PoolError> {
        self.inner.load_all()
    }

    fn commit(&self, changes: Vec<Change>) -> Result<(), PoolError> {
        let (m, cv) = &*self.gate;
        let mut g = m.lock().unwrap();
        if g.armed {
            g.entered = true;
            cv.notify_all();
            while g.armed {
                g = cv.wait(g).unwrap();
            }
        }
        drop(g);
        self.inner.commit(changes)
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
}

#[test]
fn a_write_finding_no_free_chunk_waits_for_the_commit_freeing_some() {
    const CHUNK: usize = 4096;
    let store = GateStore::default();
    // Four chunks in all.
    let pool = Pool::create_with(
        &cfg(fit(CHUNK), 4 * CHUNK as u64),
        Box::new(store.clone()),
        Box::new(CrashIo::new()),
    )
    .unwrap();
    pool.create_volume("a", 4 * CHUNK as u64, 512).unwrap();
    pool.create_volume("b", 4 * CHUNK as u64, 512).unwrap();
    let (a, b) = (
        pool.open_volume("a").unwrap(),
        pool.open_volume("b").unwrap(),
    );
    for l in 0..4u64 {
        a.write(l * 8, &block(1, CHUNK), false).unwrap();
    }
    a.flush().unwrap();
    let e = b.write(0, &block(2, CHUNK), false).unwrap_err();
    assert_eq!(sense(e), NO_SPACE, "the pool is full");
    // Unmapping frees the four chunks once committed; that commit is held
    // at the gate, after it took the batch.
    a.unmap(0, 32).unwrap();
    store.set(true);
    let committer = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.flush())
    };
    store.wait_entered();
    let (tx, rx) = mpsc::channel();
    let writer = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || tx.send(b.write(0, &block(2, CHUNK), false)).unwrap())
    };
    // The write cannot succeed before the commit ends; give a failing one
    // the time to report (a slow machine only makes this check weaker).
    let early = rx.recv_timeout(Duration::from_millis(500)).ok();
    store.set(false);
    committer.join().unwrap().unwrap();
    let res = early.unwrap_or_else(|| rx.recv().unwrap());
    writer.join().unwrap();
    res.expect("the write waited for the freeing commit and took a freed chunk");
    assert_eq!(read(b.as_ref(), 0, CHUNK), block(2, CHUNK));
}

/// Volumes a, b and c of one 4 KiB-chunk pool, each with its first chunk
/// written (1, 2, 3) and flushed, then c deleted: its chunk is the pool's
/// only free one, below the high-water mark. The pool, its store, its data
/// file, volume a.
fn two_volumes() -> (Pool, MemStore, CrashIo, Arc<tcmud_core::pool::Volume>) {
    let (store, io) = (MemStore::new(), CrashIo::new());
    // room for three chunks: a write after c's delete takes c's chunk
    let pool = Pool::create_with(
        &cfg(4096, 3 * 4096),
        Box::new(store.clone()),
        Box::new(io.clone()),
    )
    .unwrap();
    for (name, tag) in [("a", 1), ("b", 2), ("c", 3)] {
        pool.create_volume(name, 64 << 10, 512).unwrap();
        let v = pool.open_volume(name).unwrap();
        v.write(0, &block(tag, 4096), false).unwrap();
        v.flush().unwrap();
    }
    pool.delete_volume("c").unwrap();
    let a = pool.open_volume("a").unwrap();
    assert_eq!(io.unsynced_writes(), 0);
    (pool, store, io, a)
}

/// The pool as a crash now would leave it: what is committed, and the
/// data file without its unsynced writes.
fn after_crash(store: &MemStore, io: &CrashIo) -> Pool {
    Pool::open_with(
        Box::new(store.crash_image()),
        Box::new(io.crash_image(&mut || false)),
    )
    .unwrap()
}

#[test]
fn a_delete_commits_without_waiting_for_other_volumes_overwrites() {
    let (pool, store, io, a) = two_volumes();
    // an overwrite in place: no metadata, durable at the next flush
    a.write(0, &block(7, 4096), false).unwrap();
    assert_eq!(io.unsynced_writes(), 1);
    pool.delete_volume("b").unwrap();
    assert_eq!(
        io.unsynced_writes(),
        1,
        "the delete's commits synced the data file for a's overwrite"
    );
    // the delete is durable all the same; the overwrite, never flushed, is not
    let crashed = after_crash(&store, &io);
    let names: Vec<String> = crashed
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["a"]);
    let a2 = crashed.open_volume("a").unwrap();
    assert!(read(a2.as_ref(), 0, 4096) == block(1, 4096));
    drop((a2, crashed));
    a.flush().unwrap();
    assert_eq!(io.unsynced_writes(), 0, "a flush syncs the overwrite");
}

#[test]
fn a_delete_committing_another_volumes_new_mapping_syncs_its_data_first() {
    let (pool, store, io, a) = two_volumes();
    // a's second chunk: a new mapping, pending, to the chunk c held (no
    // high-water mark raised), its data not synced
    a.write(8, &block(4, 4096), false).unwrap();
    pool.delete_volume("b").unwrap();
    // the delete's commit made the mapping durable: its data must be too
    let crashed = after_crash(&store, &io);
    let a2 = crashed.open_volume("a").unwrap();
    let got = read(a2.as_ref(), 8, 4096);
    assert!(
        got == block(4, 4096),
        "a durable mapping to data that was not synced: a reads bytes {} (3: c's)",
        got[0]
    );
    assert!(read(a2.as_ref(), 0, 4096) == block(1, 4096));
}
