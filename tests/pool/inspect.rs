//! The read-only inspection behind `tcmud pool check` / `pool dump` on
//! pools the normal open would change: one left open by a process killed
//! with SIGKILL, and one whose sled log was truncated after a clean close.
//! Every byte of the pool directory must be the same afterwards.

use crate::util::{rerun, test_name};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::narrow::LowByte;
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::inspect::inspect;
use tcmud_core::pool::{Pool, PoolConfig, Problem};

const CHILD_ENV: &str = "TCMUD_INSPECT_CHILD";

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

fn block(lba: u64) -> Vec<u8> {
    (0..512u64).map(|i| (lba * 5 + i).low_byte() | 1).collect()
}

fn new_pool(dir: &Path) -> Pool {
    let cfg = PoolConfig {
        chunk_size: 4096,
        capacity_bytes: 1 << 20,
        low_water_pct: 90,
    };
    let pool = Pool::create(dir, &cfg).unwrap();
    pool.create_volume("v", 256 << 10, 512).unwrap();
    pool
}

/// The child: writes with FUA (each one durable when it returns), says
/// READY and waits on stdin for the SIGKILL.
fn child(dir: &str) {
    let pool = Pool::open(Path::new(dir)).unwrap();
    let v = pool.open_volume("v").unwrap();
    for lba in (0..200u64).step_by(7) {
        v.write(lba, &block(lba), true).unwrap();
    }
    println!("READY");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn inspecting_a_pool_left_open_by_sigkill_changes_no_byte() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    new_pool(&dir).close().unwrap();
    let mut c = rerun(&test_name!(
        inspecting_a_pool_left_open_by_sigkill_changes_no_byte
    ))
    .env(CHILD_ENV, &dir)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let out = c.stdout.take().unwrap();
    let ready = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("READY"));
    assert!(ready, "the child did not get to write");
    c.kill().unwrap();
    c.wait().unwrap();

    let before = files(&dir);
    let insp = inspect(&dir, &mut |_, _| {}).unwrap();
    assert!(files(&dir) == before, "inspection changed the killed pool");
    assert!(insp.report.is_clean(), "{:?}", insp.report);
    assert!(
        insp.report
            .notes
            .iter()
            .any(|n| n.contains("not closed cleanly")),
        "{:?}",
        insp.report.notes
    );
    let chunks: std::collections::BTreeSet<u64> = (0..200u64).step_by(7).map(|l| l / 8).collect();
    assert_eq!(insp.report.mappings, chunks.len() as u64);
    // And the normal open still finds every acknowledged write.
    let pool = Pool::open(&dir).unwrap();
    let v = pool.open_volume("v").unwrap();
    let mut buf = vec![0u8; 512];
    for lba in (0..200u64).step_by(7) {
        v.read(lba, &mut buf).unwrap();
        assert!(buf == block(lba), "block {lba}");
    }
}

#[test]
fn a_truncated_sled_log_is_reported_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("pool");
    let pool = new_pool(&dir);
    {
        let v = pool.open_volume("v").unwrap();
        for lba in 0..64u64 {
            v.write(lba * 8, &block(lba), false).unwrap();
        }
    }
    pool.close().unwrap();
    let db = dir.join("meta/db");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let before = files(&dir);
    // sled would "recover" the cut log and carry on with fewer commits;
    // the seal's checksum of meta/ after the clean close shows the damage.
    let insp = inspect(&dir, &mut |_, _| {}).unwrap();
    assert!(
        insp.report.problems.iter().any(
            |p| matches!(p, Problem::Seal(s) if s.contains("changed since the pool was closed"))
        ),
        "{:?}",
        insp.report
    );
    assert!(files(&dir) == before, "inspection changed the damaged pool");
}
