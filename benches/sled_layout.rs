//! What sled 0.34 costs per mapping for the metadata layouts weighed in
//! `docs/pool-scale-design.md` (issue 13): bytes on disk, process memory with
//! `cache_capacity` set, write rate, open time after a clean close, and
//! random lookups with a cold cache.
//!
//! Layouts (N mappings each, inserted in batches of 65,536 mappings with
//! `apply_batch` + `flush`, as the pool commits):
//! - `key17+8`: one key per mapping, format 2's `M` key (17 B) -> chunk (8 B);
//! - `key13+12`: one key per mapping, (tree u32, logical u64) -> chunk u64 +
//!   birth epoch u32 (the dm-thin-like per-mapping layout);
//! - `page512`: one key per 512 logical chunks, (tree u32, page u64) -> 512
//!   slots of 8 bytes (the B-tree-page layout, pages full);
//! - `page512d`: the same pages coded as the design says (presence bitmap +
//!   varint deltas), chunks allocated in order (1 byte per slot);
//! - `page512r`: coded pages, chunks allocated in random order from a pool
//!   of 16 Mi chunks (3-4 bytes per slot).
//!
//! Then 1,000 commits of one rewritten entry, and 64 commits of 1,024
//! random rewritten entries (a page is rewritten whole): VmRSS and disk
//! after them. Each layout runs in a fresh child process (write, rewrite,
//! close), then another (open, 100,000 random lookups) so VmRSS is per
//! layout.
//!
//! `cargo bench --bench sled_layout` (env `TCMUD_SLED_N` = mappings,
//! default 4,194,304; `TCMUD_SLED_CACHE_MIB` = cache_capacity, default 64;
//! `TCMUD_SLED_LAYOUTS=page512,...` = only these layouts).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod support;
use support::{rss, tree_bytes};

const BATCH: u64 = 65_536;
const LOOKUPS: u64 = 100_000;
const PAGE: u64 = 512;
const LAYOUTS: [&str; 5] = ["key17+8", "key13+12", "page512", "page512d", "page512r"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn db(path: &Path, cache_mib: u64) -> sled::Db {
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .cache_capacity(cache_mib << 20)
        .open()
        .unwrap()
}

/// Key and value of the entry holding mapping `l` (for pages: the page).
fn entry(layout: &str, l: u64) -> (Vec<u8>, Vec<u8>) {
    match layout {
        "key17+8" => {
            let mut k = vec![b'M'];
            k.extend_from_slice(&7u64.to_be_bytes());
            k.extend_from_slice(&l.to_be_bytes());
            (k, (l + 3).to_be_bytes().to_vec())
        }
        "key13+12" => {
            let mut k = vec![b'M'];
            k.extend_from_slice(&7u32.to_be_bytes());
            k.extend_from_slice(&l.to_be_bytes());
            let mut v = (l + 3).to_be_bytes().to_vec();
            v.extend_from_slice(&5u32.to_be_bytes());
            (k, v)
        }
        _ => {
            let p = l / PAGE;
            let mut k = vec![b'P'];
            k.extend_from_slice(&7u32.to_be_bytes());
            k.extend_from_slice(&p.to_be_bytes());
            let chunks = (p * PAGE..(p + 1) * PAGE).map(|x| match layout {
                // Chunks allocated in random order from a 16 Mi-chunk pool.
                "page512r" => Rng(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).next() % (1 << 24),
                _ => x + 3,
            });
            let v = if layout == "page512" {
                chunks.flat_map(u64::to_be_bytes).collect()
            } else {
                delta_coded(chunks)
            };
            (k, v)
        }
    }
}

/// A leaf as the design codes it: a 64-byte presence bitmap (all present
/// here), then each chunk as a zig-zag LEB128 varint of its difference
/// from the previous one.
fn delta_coded(chunks: impl Iterator<Item = u64>) -> Vec<u8> {
    let mut v = vec![0xffu8; 64];
    let mut prev = 0i64;
    for c in chunks {
        let d = c as i64 - prev;
        prev = c as i64;
        let mut z = ((d << 1) ^ (d >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
    }
    v
}

fn write(layout: &str, n: u64, path: &Path, cache_mib: u64) {
    let db = db(path, cache_mib);
    let step = if layout.starts_with("page") { PAGE } else { 1 };
    let t = Instant::now();
    let mut l = 0;
    while l < n {
        let mut b = sled::Batch::default();
        let end = (l + BATCH).min(n);
        while l < end {
            let (k, v) = entry(layout, l);
            b.insert(k, v);
            l += step;
        }
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("RESULT rate={}", n as f64 / secs);
    println!("RESULT rss_write={}", rss().0);
    println!("RESULT disk={}", tree_bytes(path));
    println!("RESULT size_on_disk={}", db.size_on_disk().unwrap_or(0));
    // One update of a single mapping (what a copy-on-write commits).
    let t = Instant::now();
    for i in 0..1000u64 {
        let (k, mut v) = entry(layout, (i * 7919) % n);
        v[0] ^= 1;
        db.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    println!("RESULT update_ms={}", t.elapsed().as_secs_f64());
    // Churn: 64 commits of 1,024 random entries rewritten each (pages are
    // rewritten whole), to see whether sled's memory and disk stay bounded.
    let mut r = Rng(7);
    let entries = if layout.starts_with("page") {
        n / PAGE
    } else {
        n
    };
    for _ in 0..64 {
        let mut b = sled::Batch::default();
        for _ in 0..1024 {
            let (k, mut v) = entry(layout, (r.next() % entries) * step);
            v[1] ^= 1;
            b.insert(k, v);
        }
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
    }
    println!("RESULT rss_churn={}", rss().0);
    println!("RESULT disk_after_updates={}", tree_bytes(path));
    drop(db);
}

fn read(layout: &str, n: u64, path: &Path, cache_mib: u64) {
    let t = Instant::now();
    let db = db(path, cache_mib);
    println!("RESULT open_s={}", t.elapsed().as_secs_f64());
    println!("RESULT rss_open={}", rss().0);
    let mut r = Rng(99);
    let t = Instant::now();
    for _ in 0..LOOKUPS {
        let (k, _) = entry(layout, r.next() % n);
        assert!(db.get(k).unwrap().is_some());
    }
    println!(
        "RESULT lookup_us={}",
        t.elapsed().as_secs_f64() * 1e6 / LOOKUPS as f64
    );
    println!("RESULT rss_lookups={}", rss().0);
}

fn child(mode: &str, layout: &str, n: u64, path: &Path) -> Vec<(String, f64)> {
    let mut ch = Command::new(std::env::current_exe().unwrap())
        .env("TCMUD_SLED_CHILD", mode)
        .env("TCMUD_SLED_LAYOUT", layout)
        .env("TCMUD_SLED_N", n.to_string())
        .env("TCMUD_SLED_PATH", path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ch.stdout.take().unwrap();
    let res = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let (k, v) = l.strip_prefix("RESULT ")?.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    let status = ch.wait().unwrap();
    assert!(status.success(), "{mode} {layout}: {status}");
    res
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let n: u64 = env("TCMUD_SLED_N")
        .and_then(|s| s.parse().ok())
        .unwrap_or(4 << 20);
    let cache_mib: u64 = env("TCMUD_SLED_CACHE_MIB")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    if let Some(mode) = env("TCMUD_SLED_CHILD") {
        let layout = env("TCMUD_SLED_LAYOUT").unwrap_or_default();
        let path = PathBuf::from(env("TCMUD_SLED_PATH").unwrap_or_default());
        if mode == "write" {
            write(&layout, n, &path, cache_mib);
        } else {
            read(&layout, n, &path, cache_mib);
        }
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base = PathBuf::from(env("TCMUD_BENCH_DIR").unwrap_or_else(|| "/tmp".into()));
    println!("sled 0.34 per-mapping cost: {n} mappings, cache_capacity {cache_mib} MiB");
    println!();
    println!("| layout | write (mappings/s) | disk B/mapping | VmRSS after write (MiB) | open (s) | VmRSS after open (MiB) | random lookup (us) | VmRSS after 100k lookups (MiB) | 1000 single-mapping commits (s) | VmRSS after 64 x 1024 rewrites (MiB) | disk after them (B/mapping) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |v: f64| format!("{:.0}", v / (1u64 << 20) as f64);
    let only = env("TCMUD_SLED_LAYOUTS").unwrap_or_default();
    for layout in LAYOUTS
        .iter()
        .filter(|l| only.is_empty() || only.split(',').any(|o| o == **l))
    {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let path = tmp.path().join("db");
        let mut r = child("write", layout, n, &path);
        r.extend(child("read", layout, n, &path));
        let g = |k: &str| r.iter().find(|(x, _)| x == k).map_or(f64::NAN, |(_, v)| *v);
        println!(
            "| {layout} | {:.0} | {:.1} | {} | {:.2} | {} | {:.1} | {} | {:.2} | {} | {:.1} |",
            g("rate"),
            g("disk") / n as f64,
            mib(g("rss_write")),
            g("open_s"),
            mib(g("rss_open")),
            g("lookup_us"),
            mib(g("rss_lookups")),
            g("update_ms"),
            mib(g("rss_churn")),
            g("disk_after_updates") / n as f64,
        );
    }
}
