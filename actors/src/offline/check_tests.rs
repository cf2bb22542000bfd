//! `pool check` (read-only), `pool repair`, `pool dump` and `pool restore`
//! against real pool directories: healthy, old-format, left open by a
//! crash, and damaged ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::dump::PoolDump;
use tcmud_core::pool::format;
use tcmud_core::pool::seal::Seal;
use tcmud_core::pool::store::{MetaStore, SledStore};
use tcmud_core::pool::{Pool, PoolConfig, PoolErrorKind, PoolOptions};

use super::*;

fn run_p(cmd: PoolCommand) -> (Result<Outcome, OfflineError>, String) {
    let mut out = Vec::new();
    let r = run_pool(&cmd, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn check(dir: &Path, json: bool) -> (Result<Outcome, OfflineError>, String) {
    run_p(PoolCommand::Check {
        dir: dir.to_path_buf(),
        json,
        repair: false,
    })
}

/// Every file and directory under `dir` with its bytes (directories as
/// `None`), by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// 512 bytes of `tag` at `lba`.
fn block(tag: u8, lba: u64) -> Vec<u8> {
    (0..512u64)
        .map(|i| {
            (lba.wrapping_mul(13) ^ i)
                .wrapping_add(u64::from(tag))
                .to_le_bytes()[0]
                | 1
        })
        .collect()
}

const VOL: u64 = 64 << 10;

/// A format-2 pool (4 KiB chunks; these tests tamper with format-2 keys)
/// with volumes, a snapshot, a clone, writes to all of them and a deleted
/// volume (free chunks); returned open.
fn populated(dir: &Path) -> Pool {
    populated_fmt(dir, format::LEGACY_FORMAT)
}

/// [`populated`] in metadata format `fmt`.
fn populated_fmt(dir: &Path, fmt: u32) -> Pool {
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 1 << 20,
        low_water_pct: 90,
    };
    let opts = PoolOptions {
        format: fmt,
        ..PoolOptions::default()
    };
    let pool = Pool::create_opts(dir, &cfg, &opts).unwrap();
    pool.create_volume("a", VOL, 512).unwrap();
    pool.create_volume("gone", VOL, 512).unwrap();
    {
        let a = pool.open_volume("a").unwrap();
        for lba in [0u64, 1, 8, 9, 17, 40, 64, 127] {
            a.write(lba, &block(1, lba), false).unwrap();
        }
        let g = pool.open_volume("gone").unwrap();
        for lba in [0u64, 30, 60] {
            g.write(lba, &block(9, lba), false).unwrap();
        }
    }
    pool.snapshot("a", "s").unwrap();
    {
        let a = pool.open_volume("a").unwrap();
        for lba in [1u64, 17, 100] {
            a.write(lba, &block(2, lba), false).unwrap();
        }
    }
    pool.clone_snapshot("s", "c").unwrap();
    {
        let c = pool.open_volume("c").unwrap();
        for lba in [9u64, 120] {
            c.write(lba, &block(3, lba), false).unwrap();
        }
    }
    pool.delete_volume("gone").unwrap();
    pool.create_volume("b", 2 * VOL, 4096).unwrap();
    {
        let b = pool.open_volume("b").unwrap();
        b.write(3, &[7u8; 4096], false).unwrap();
    }
    pool.flush().unwrap();
    pool
}

/// Every byte of every volume, by name.
fn contents(pool: &Pool) -> BTreeMap<String, Vec<u8>> {
    pool.list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| {
            let vol = pool.open_volume(&v.name).unwrap();
            let mut buf = vec![0u8; usize::try_from(v.size_bytes).expect("a test volume")];
            vol.read(0, &mut buf).unwrap();
            (v.name, buf)
        })
        .collect()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pool-format1")
}

/// Adds (`Some`) or removes records in a closed pool's sled database, and
/// marks the seal open as a crash would leave it, so that the damage is in
/// the records only.
fn tamper(dir: &Path, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let store = SledStore::open(&dir.join("meta")).unwrap();
    store.commit(changes).unwrap();
    store.close().unwrap();
    let seal = Seal::read(dir).unwrap().unwrap();
    Seal {
        closed_crc: None,
        ..seal
    }
    .write(dir, true)
    .unwrap();
}

#[test]
fn check_of_a_closed_pool_changes_no_byte() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    populated(&dir).close().unwrap();
    let before = files(&dir);
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.starts_with("clean: 4 volumes"), "{text}");
    assert!(
        files(&dir) == before,
        "pool check changed the pool directory"
    );
    let (r, text) = check(&dir, true);
    assert_eq!(r.unwrap(), Outcome::Ok);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!(v["volumes"], 4);
    assert!(files(&dir) == before);
}

#[test]
fn check_of_the_format1_fixture_does_not_migrate_it() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    copy_dir(&fixture(), &dir);
    let before = files(&dir);
    let (r, text) = check(&dir, false);
    assert!(
        files(&dir) == before,
        "pool check migrated or otherwise changed the format-1 pool"
    );
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.starts_with("clean: 3 volumes"), "{text}");
    assert!(
        text.contains("note: format 1: needs migration to format 3 on open"),
        "{text}"
    );
    // Still format 1: opening it now migrates it.
    let pool = Pool::open(&dir).unwrap();
    assert_eq!(pool.list_volumes().unwrap().len(), 3);
}

#[test]
fn check_of_a_pool_left_open_by_a_crash_changes_no_byte() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let image = t.path().join("image");
    let pool = populated(&dir);
    {
        let a = pool.open_volume("a").unwrap();
        a.write(50, &block(5, 50), true).unwrap();
    }
    // What a crash leaves: the files as they are while the pool is open
    // (seal "open", sled not closed).
    copy_dir(&dir, &image);
    drop(pool);
    assert_eq!(Seal::read(&image).unwrap().unwrap().closed_crc, None);
    let before = files(&image);
    let (r, text) = check(&image, false);
    assert!(
        files(&image) == before,
        "pool check changed the crash image"
    );
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.contains("not closed cleanly"), "{text}");
}

#[test]
fn check_refuses_a_held_pool() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let _held = populated(&dir);
    let (r, _) = check(&dir, false);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
}

#[test]
fn undecodable_records_are_reported_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    populated(&dir).close().unwrap();
    tamper(
        &dir,
        vec![
            (format::volume_key("zz"), Some(vec![0xff, 0xff])),
            (format::map_key(1, 5), Some(vec![1, 2, 3])),
            (b"Xjunk".to_vec(), Some(b"1".to_vec())),
        ],
    );
    let before = files(&dir);
    let (r, text) = check(&dir, true);
    assert_eq!(r.unwrap(), Outcome::Problems, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|&&k| k == "bad_record").count(),
        2,
        "{text}"
    );
    assert!(kinds.contains(&"unknown_record"), "{text}");
    assert!(text.contains("volume \\\"zz\\\""), "{text}");
    assert!(files(&dir) == before);
    // The dump keeps everything else and lists the three records.
    let out = t.path().join("dump.json");
    let (r, _) = run_p(PoolCommand::Dump {
        dir: dir.clone(),
        output: Some(out.clone()),
    });
    assert_eq!(r.unwrap(), Outcome::Problems);
    let doc: PoolDump = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc.undecoded.len(), 3);
    assert_eq!(doc.volumes.len(), 4);
    assert!(files(&dir) == before, "pool dump changed the pool");
    // Rescue: restore what decoded next to a copy of the data file.
    let new = t.path().join("rescued");
    let (r, text) = run_p(PoolCommand::Restore {
        dir: new.clone(),
        file: out,
        data: Some(dir.join("data")),
        force: false,
    });
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(
        text.contains("3 undecoded record(s) not restored"),
        "{text}"
    );
    assert!(text.contains("1 reference count(s)"), "{text}");
    assert_eq!(check(&new, false).0.unwrap(), Outcome::Ok);
}

#[test]
fn an_undecodable_format1_record_is_reported_and_the_rest_checked() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    copy_dir(&fixture(), &dir);
    let store = SledStore::open(&dir.join("meta")).unwrap();
    store
        .commit(vec![(format::volume_key("bad"), Some(vec![0xff]))])
        .unwrap();
    store.close().unwrap();
    let before = files(&dir);
    let (r, text) = check(&dir, false);
    assert!(files(&dir) == before);
    assert_eq!(r.unwrap(), Outcome::Problems, "{text}");
    assert!(text.contains("1 problem(s) found"), "{text}");
    assert!(
        text.contains("bad record: format-1 record: format-1 volume \"bad\""),
        "{text}"
    );
    assert!(text.contains("format 1: needs migration"), "{text}");
    let doc = dump_doc_any(&dir, t.path());
    assert_eq!(doc.volumes.len(), 3, "the good records are all there");
}

#[test]
fn a_short_data_file_is_reported_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    populated(&dir).close().unwrap();
    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("data"))
        .unwrap();
    data.set_len(4096).unwrap();
    drop(data);
    let before = files(&dir);
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Problems, "{text}");
    assert!(text.contains("data file has 4096 bytes"), "{text}");
    assert!(
        text.contains("point at chunks past the end of the data file"),
        "{text}"
    );
    assert!(
        text.contains("seal: the data file has 4096 bytes"),
        "{text}"
    );
    assert!(files(&dir) == before);
}

#[test]
fn repair_is_explicit_and_says_what_it_changed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    populated(&dir).close().unwrap();
    // Chunk 0 is mapped by s and c (a copied it away when block 1 was
    // rewritten after the snapshot). Claim 7 references.
    tamper(
        &dir,
        vec![(
            format::chunk_key(format::TAG_REF, 0),
            Some(7u32.to_be_bytes().to_vec()),
        )],
    );
    let before = files(&dir);
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Problems, "{text}");
    assert!(text.contains("chunk 0: refcount 7"), "{text}");
    assert!(files(&dir) == before, "check must not repair");
    let (r, text) = run_p(PoolCommand::Repair { dir: dir.clone() });
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.contains("chunk 0: reference count 7 -> 2"), "{text}");
    assert!(text.contains("1 change(s)"), "{text}");
    assert!(text.contains("repaired; the pool is now clean"), "{text}");
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    // `check --repair` still works (an alias).
    let (r, text) = run_p(PoolCommand::Check {
        dir: dir.clone(),
        json: false,
        repair: true,
    });
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
}

/// The dump of a pool with problems.
fn dump_doc_any(dir: &Path, t: &Path) -> PoolDump {
    let out = t.join("dump-any.json");
    let (r, _) = run_p(PoolCommand::Dump {
        dir: dir.to_path_buf(),
        output: Some(out.clone()),
    });
    assert_eq!(r.unwrap(), Outcome::Problems);
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

fn dump_doc(dir: &Path, t: &Path) -> PoolDump {
    let out = t.join("dump.json");
    let (r, _) = run_p(PoolCommand::Dump {
        dir: dir.to_path_buf(),
        output: Some(out.clone()),
    });
    assert_eq!(r.unwrap(), Outcome::Ok);
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

#[test]
fn dump_and_restore_round_trip_every_byte() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = populated(&dir);
    let want = contents(&pool);
    pool.close().unwrap();
    let before = files(&dir);
    let (r, text) = run_p(PoolCommand::Dump {
        dir: dir.clone(),
        output: None,
    });
    assert_eq!(r.unwrap(), Outcome::Ok);
    assert!(files(&dir) == before, "pool dump changed the pool");
    let doc: PoolDump = serde_json::from_str(&text).unwrap();
    assert_eq!(doc.tcmud_pool_dump, 1);
    assert_eq!(doc.format, Some(2));
    let names: Vec<_> = doc.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "s"]);
    assert_eq!(doc.volumes[2].origin_name.as_deref(), Some("s"));
    assert!(!doc.free.is_empty(), "the deleted volume's chunks are free");
    assert!(
        doc.volumes.iter().all(|v| v.identity.is_some()),
        "identities are dumped"
    );
    let file = t.path().join("doc.json");
    std::fs::write(&file, &text).unwrap();

    let new = t.path().join("restored");
    let (r, out) = run_p(PoolCommand::Restore {
        dir: new.clone(),
        file: file.clone(),
        data: Some(dir.join("data")),
        force: false,
    });
    assert_eq!(r.unwrap(), Outcome::Ok, "{out}");
    assert!(out.contains("the document's agree"), "{out}");
    assert!(out.contains("check of the restored pool: clean"), "{out}");
    let (r, text) = check(&new, false);
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    let pool = Pool::open(&new).unwrap();
    assert!(contents(&pool) == want, "restored volumes differ");
    for v in &doc.volumes {
        let id = pool.volume_identity(&v.name).unwrap();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Some(hex), v.identity, "{}: identity restored", v.name);
    }
    let infos = pool.list_volumes().unwrap();
    assert_eq!(
        infos
            .iter()
            .find(|v| v.name == "c")
            .unwrap()
            .origin
            .as_deref(),
        Some("s")
    );
    drop(pool);
    let again = dump_doc(&new, t.path());
    // restore writes format 2 keys; the open that checked it migrated them
    assert_eq!(again.format, Some(format::CURRENT_FORMAT));
    assert_eq!(
        PoolDump {
            format: doc.format,
            ..again
        },
        doc,
        "dump of the restored pool differs"
    );

    // A second restore into it needs --force.
    let (r, _) = run_p(PoolCommand::Restore {
        dir: new.clone(),
        file: file.clone(),
        data: None,
        force: false,
    });
    assert!(matches!(
        r,
        Err(OfflineError::Pool(e)) if e.kind() == PoolErrorKind::AlreadyExists
    ));
    let (r, out) = run_p(PoolCommand::Restore {
        dir: new.clone(),
        file,
        data: None,
        force: true,
    });
    assert_eq!(r.unwrap(), Outcome::Ok, "{out}");
    assert!(contents(&Pool::open(&new).unwrap()) == want);
}

#[test]
fn restore_validates_before_writing_and_recomputes_refcounts() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    populated(&dir).close().unwrap();
    let doc = dump_doc(&dir, t.path());
    let file = t.path().join("edited.json");
    let try_restore = |doc: &PoolDump, name: &str| {
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        let new = t.path().join(name);
        let r = run_p(PoolCommand::Restore {
            dir: new.clone(),
            file: file.clone(),
            data: Some(dir.join("data")),
            force: false,
        });
        (r, new)
    };
    // A mapping past the high-water mark: refused, nothing written.
    let mut bad = doc.clone();
    let hwm = bad.superblock.unwrap().hwm;
    bad.volumes[0].mappings.push([10, hwm, 1]);
    let ((r, _), new) = try_restore(&bad, "bad");
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("past the high-water mark"), "{msg}");
    assert!(!new.exists(), "a refused restore wrote {}", new.display());
    // Logical chunk mapped twice.
    let mut bad = doc.clone();
    let first = bad.volumes[0].mappings[0];
    bad.volumes[0].mappings.push(first);
    let ((r, _), new) = try_restore(&bad, "twice");
    assert!(r.unwrap_err().to_string().contains("mapped twice"));
    assert!(!new.exists());
    // Reference counts and free list dropped by hand: recomputed, said so.
    let mut edited = doc.clone();
    edited.refcounts.clear();
    edited.free.clear();
    let ((r, out), new) = try_restore(&edited, "recomputed");
    assert_eq!(r.unwrap(), Outcome::Ok, "{out}");
    assert!(out.contains("reference count(s)"), "{out}");
    assert!(out.contains("differed and were not used"), "{out}");
    assert_eq!(dump_doc(&new, t.path()).refcounts, doc.refcounts);
}

#[test]
fn the_format1_fixture_dumps_with_its_volumes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    copy_dir(&fixture(), &dir);
    let before = files(&dir);
    let doc = dump_doc(&dir, t.path());
    assert!(files(&dir) == before);
    assert_eq!(doc.format, Some(1));
    let names: Vec<_> = doc.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["c0", "s0", "v0"]);
    assert!(doc.volumes.iter().all(|v| v.origin.is_none()));
}

/// Format 3 (page trees): check walks the trees, dump shows the same
/// mappings and counts as format 2 would, restore gives back every byte,
/// and a damaged chunk count is found and repaired.
#[test]
fn format3_check_dump_restore_and_repair() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = populated_fmt(&dir, format::TREE_FORMAT);
    let want = contents(&pool);
    pool.close().unwrap();
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.starts_with("clean: 4 volumes"), "{text}");
    let (r, text) = run_p(PoolCommand::Dump {
        dir: dir.clone(),
        output: None,
    });
    assert_eq!(r.unwrap(), Outcome::Ok);
    let doc: PoolDump = serde_json::from_str(&text).unwrap();
    assert_eq!(doc.format, Some(3));
    assert!(!doc.free.is_empty(), "the deleted volume's chunks are free");
    let file = t.path().join("dump.json");
    std::fs::write(&file, &text).unwrap();
    let new = t.path().join("restored");
    let (r, out) = run_p(PoolCommand::Restore {
        dir: new.clone(),
        file,
        data: Some(dir.join("data")),
        force: false,
    });
    assert_eq!(r.unwrap(), Outcome::Ok, "{out}");
    assert!(out.contains("check of the restored pool: clean"), "{out}");
    let pool = Pool::open(&new).unwrap();
    assert!(contents(&pool) == want, "restored volumes differ");
    for v in &doc.volumes {
        let id = pool.volume_identity(&v.name).unwrap();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Some(hex), v.identity, "{}: identity restored", v.name);
    }
    drop(pool);
    // chunk 0 is referenced by two leaves (s and c): claim 7
    let mut space = {
        let store = SledStore::open(&dir.join("meta")).unwrap();
        let v = store.get(&format::space_key(0)).unwrap().unwrap();
        store.close().unwrap();
        v
    };
    assert!(space[0] >= 1, "chunk 0 is used");
    space[0] = 7;
    tamper(&dir, vec![(format::space_key(0), Some(space))]);
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Problems, "{text}");
    assert!(text.contains("chunk 0: refcount 7"), "{text}");
    let (r, text) = run_p(PoolCommand::Repair { dir: dir.clone() });
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    assert!(text.contains("chunk 0: reference count 7 ->"), "{text}");
    let (r, text) = check(&dir, false);
    assert_eq!(r.unwrap(), Outcome::Ok, "{text}");
    let pool = Pool::open(&dir).unwrap();
    assert!(contents(&pool) == want, "repaired volumes differ");
}
