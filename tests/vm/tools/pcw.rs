//! pcw -- the guest tool of the power-cut test (tests/vm/power-cut.sh).
//!
//! Built on the host with plain `rustc` (std only) and copied into the guest.
//! Everything it knows lives in one append-only *journal* on the host (the
//! virtio-9p share, written through to the host file before each call
//! returns, so it survives the SIGKILL of QEMU):
//!
//! ```text
//! BOOT <n>                      a boot started (writes not flushed before it are in limbo)
//! WORK-START <n>                the workload of boot n starts (the host counts from here)
//! POOL <name> BEGIN|DONE        pool creation started / `tcmud pool create` returned
//! POOL <name> UNDONE            creation was never acknowledged and the pool is gone
//! POOL <name> DISCARD           the pool was thrown away (after a failed verification)
//! OP <n> BEGIN <op> <args>      catalog operation (create v, snapshot v s, clone s c, delete x)
//! OP <n> DONE|FAILED            the offline CLI returned
//! OP <n> RESOLVED done|undone   a cut came during the op; the next boot saw which
//! W <vol> <block> <gen>         a record is about to be written (before the pwrite)
//! F <gen>                       every write with generation <= gen completed, then fsync
//!                               of the devices returned: these writes are acknowledged
//! RESULT ...                    one verification (the host's tally)
//! ```
//!
//! Each 4 KiB block written holds a self-describing record: magic, generation,
//! block number, the name of the volume it was written to, and filler derived
//! from all three, so any block read back can be attributed (or found torn or
//! foreign). Replaying the journal gives, for every volume and block, the
//! acknowledged record, the records written after the last flush (possible
//! after a cut, whole or torn per 512-byte sector) and every record the block
//! ever legitimately held (to tell a lost write from a leaked one).
//!
//! Subcommands (all take `--journal FILE`):
//!   model                                   print POOL/VOL lines of the expected state
//!   next-op --seed S                        choose the next catalog op, cache mode, batches
//!   write --seed S --batches N --lun NAME=DEV...   repair limbo blocks, then N flushed batches
//!   verify --catalog "NAMES" --lun NAME=DEV...      compare every block; RESULT line
//!   note TEXT...                            append a line to the journal

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;

const BLK: usize = 4096;
const SECT: usize = 512;
const MAGIC: &[u8; 8] = b"TCMUDPC1";
const O_DIRECT: i32 = 0o40000;
/// Blocks per volume (4 KiB each): 4 MiB volumes.
const VOL_BLOCKS: u64 = 1024;
const MAX_VOLS: usize = 6;
const MAX_WRITABLE: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    vol: String,
    block: u64,
    gen: u64,
}

impl Rec {
    fn show(&self) -> String {
        format!("{}:{}:g{}", self.vol, self.block, self.gen)
    }
}

fn show_opt(r: &Option<Rec>) -> String {
    r.as_ref().map_or_else(|| "zeros".to_string(), Rec::show)
}

/// The bytes of a record (a block never written is all zeros).
fn render(r: &Rec) -> Vec<u8> {
    let mut b = vec![0u8; BLK];
    b[0..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&r.gen.to_le_bytes());
    b[16..24].copy_from_slice(&r.block.to_le_bytes());
    let name = r.vol.as_bytes();
    let n = name.len().min(31);
    b[24] = n as u8;
    b[25..25 + n].copy_from_slice(&name[..n]);
    let mut x = r.gen.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r.block.rotate_left(17) ^ 0x5DEE_CE66;
    for &c in name {
        x = x.wrapping_mul(31).wrapping_add(u64::from(c));
    }
    for chunk in b[64..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    // every sector names the record too, so a torn block is attributable per sector
    for s in 1..BLK / SECT {
        let o = s * SECT;
        b[o..o + 8].copy_from_slice(MAGIC);
        b[o + 8..o + 16].copy_from_slice(&r.gen.to_le_bytes());
    }
    b
}

/// What a block read back holds.
enum Found {
    Zeros,
    Valid(Rec),
    Corrupt(String),
}

fn decode(b: &[u8]) -> Found {
    if b.iter().all(|&x| x == 0) {
        return Found::Zeros;
    }
    if &b[0..8] != MAGIC {
        return Found::Corrupt(format!("no record header (first bytes {:02x?})", &b[0..8]));
    }
    let gen = u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8]));
    let block = u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8]));
    let n = usize::from(b[24]).min(31);
    let vol = String::from_utf8_lossy(&b[25..25 + n]).into_owned();
    let r = Rec { vol, block, gen };
    if render(&r) == b {
        Found::Valid(r)
    } else {
        Found::Corrupt(format!(
            "header {} but the body does not match (torn or damaged)",
            r.show()
        ))
    }
}

// ------------------------------------------------------------------ the model

#[derive(Clone, Debug)]
struct Block {
    /// The acknowledged content (None: never written, reads zeros).
    acked: Option<Rec>,
    /// Written after the last flush of this boot.
    pending: Vec<Rec>,
    /// Written but never flushed before a cut: may or may not be there.
    limbo: Vec<Rec>,
    /// Everything the block ever legitimately held (acked), oldest first.
    history: Vec<Option<Rec>>,
}

impl Default for Block {
    fn default() -> Self {
        Block {
            acked: None,
            pending: Vec::new(),
            limbo: Vec::new(),
            history: vec![None],
        }
    }
}

#[derive(Clone, Debug)]
struct Vol {
    snapshot: bool,
    blocks: HashMap<u64, Block>,
}

#[derive(Clone, Debug)]
enum Op {
    Create(String),
    Snapshot(String, String),
    Clone(String, String),
    Delete(String),
}

impl Op {
    fn parse(w: &[&str]) -> Option<Op> {
        match w {
            ["create", v] => Some(Op::Create(v.to_string())),
            ["snapshot", a, b] => Some(Op::Snapshot(a.to_string(), b.to_string())),
            ["clone", a, b] => Some(Op::Clone(a.to_string(), b.to_string())),
            ["delete", v] => Some(Op::Delete(v.to_string())),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            Op::Create(v) => format!("create {v}"),
            Op::Snapshot(a, b) => format!("snapshot {a} {b}"),
            Op::Clone(a, b) => format!("clone {a} {b}"),
            Op::Delete(v) => format!("delete {v}"),
        }
    }
    /// Whether the catalog `names` shows the op as done.
    fn done_in(&self, names: &[String]) -> bool {
        let has = |n: &String| names.contains(n);
        match self {
            Op::Create(v) | Op::Snapshot(_, v) | Op::Clone(_, v) => has(v),
            Op::Delete(v) => !has(v),
        }
    }
}

#[derive(Default, Debug)]
struct Model {
    /// The current pool and whether its creation was acknowledged.
    pool: Option<(String, bool)>,
    pools_made: u64,
    vols: BTreeMap<String, Vol>,
    inflight: Option<(u64, Op)>,
    ops: u64,
    max_gen: u64,
    max_flushed: u64,
    next_id: u64,
    lines: u64,
    warnings: Vec<String>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create(v) => {
                self.vols.insert(
                    v.clone(),
                    Vol {
                        snapshot: false,
                        blocks: HashMap::new(),
                    },
                );
            }
            Op::Snapshot(a, b) | Op::Clone(a, b) => {
                let Some(src) = self.vols.get(a).cloned() else {
                    self.warnings
                        .push(format!("{} of a volume the model does not have", op.show()));
                    return;
                };
                let mut v = src;
                v.snapshot = matches!(op, Op::Snapshot(..));
                for bl in v.blocks.values_mut() {
                    // the copy starts from the source's current content
                    bl.history = vec![bl.acked.clone()];
                    bl.pending.clear();
                }
                self.vols.insert(b.clone(), v);
            }
            Op::Delete(v) => {
                self.vols.remove(v);
            }
        }
    }

    fn note_name(&mut self, name: &str) {
        if let Ok(n) = name
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u64>()
        {
            self.next_id = self.next_id.max(n + 1);
        }
    }

    fn line(&mut self, l: &str) {
        self.lines += 1;
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["BOOT", ..] => {
                for v in self.vols.values_mut() {
                    for bl in v.blocks.values_mut() {
                        let p = std::mem::take(&mut bl.pending);
                        bl.limbo.extend(p);
                    }
                }
            }
            ["POOL", name, "BEGIN"] => {
                self.pool = Some((name.to_string(), false));
                self.vols.clear();
                self.inflight = None;
                self.pools_made += 1;
            }
            ["POOL", name, "DONE"] => self.pool = Some((name.to_string(), true)),
            ["POOL", _, "UNDONE" | "DISCARD"] => {
                self.pool = None;
                self.vols.clear();
                self.inflight = None;
            }
            ["OP", n, "BEGIN", rest @ ..] => {
                self.ops += 1;
                if let (Ok(n), Some(op)) = (n.parse(), Op::parse(rest)) {
                    for x in rest.iter().skip(1) {
                        self.note_name(x);
                    }
                    self.inflight = Some((n, op));
                }
            }
            ["OP", n, "DONE"] | ["OP", n, "RESOLVED", "done"] => {
                if let Some((m, op)) = self.inflight.take() {
                    if n.parse::<u64>().ok() == Some(m) {
                        self.apply(&op);
                    }
                }
            }
            ["OP", _, "FAILED"] | ["OP", _, "RESOLVED", "undone"] => self.inflight = None,
            ["W", vol, block, gen] => {
                if let (Ok(block), Ok(gen)) = (block.parse(), gen.parse()) {
                    self.max_gen = self.max_gen.max(gen);
                    let r = Rec {
                        vol: vol.to_string(),
                        block,
                        gen,
                    };
                    match self.vols.get_mut(*vol) {
                        Some(v) => v.blocks.entry(block).or_default().pending.push(r),
                        None => self.warnings.push(format!("write to unknown volume {vol}")),
                    }
                }
            }
            ["F", gen] => {
                if let Ok(g) = gen.parse::<u64>() {
                    self.max_flushed = self.max_flushed.max(g);
                    for v in self.vols.values_mut() {
                        for bl in v.blocks.values_mut() {
                            if let Some(last) = bl
                                .pending
                                .iter()
                                .filter(|r| r.gen <= g)
                                .max_by_key(|r| r.gen)
                            {
                                let last = last.clone();
                                bl.pending.retain(|r| r.gen > g);
                                bl.limbo.clear();
                                bl.acked = Some(last.clone());
                                bl.history.push(Some(last));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn load(path: &str) -> io::Result<Model> {
        let mut m = Model {
            next_id: 1,
            ..Model::default()
        };
        match File::open(path) {
            Ok(f) => {
                for l in BufReader::new(f).lines() {
                    m.line(&l?);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(m)
    }

    fn writable(&self) -> Vec<String> {
        self.vols
            .iter()
            .filter(|(_, v)| !v.snapshot)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

// ------------------------------------------------------------------ helpers

struct Journal(File);

impl Journal {
    fn open(path: &str) -> io::Result<Journal> {
        Ok(Journal(
            OpenOptions::new().create(true).append(true).open(path)?,
        ))
    }
    /// One line, one write(2): on the 9p share it is on the host when this returns.
    fn put(&mut self, line: &str) -> io::Result<()> {
        self.0.write_all(format!("{line}\n").as_bytes())
    }
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A 4096-aligned buffer inside a Vec (O_DIRECT), without unsafe code.
struct Aligned {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let v = vec![0u8; len + BLK];
        let off = (BLK - (v.as_ptr() as usize % BLK)) % BLK;
        Aligned { v, off, len }
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

/// Opens a LUN with O_DIRECT (an image file on tmpfs, in the tests, without).
fn open_dev(path: &str, write: bool) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(O_DIRECT)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(22) => {
            OpenOptions::new().read(true).write(write).open(path)
        }
        r => r,
    }
}

struct Args {
    journal: String,
    seed: u64,
    batches: u64,
    luns: Vec<(String, String)>,
    catalog: Option<Vec<String>>,
    rest: Vec<String>,
}

fn parse_args(a: &[String]) -> Result<Args, String> {
    let mut r = Args {
        journal: String::new(),
        seed: 1,
        batches: 10,
        luns: vec![],
        catalog: None,
        rest: vec![],
    };
    let mut i = 0;
    while i < a.len() {
        let val = || {
            a.get(i + 1)
                .cloned()
                .ok_or(format!("{} needs a value", a[i]))
        };
        match a[i].as_str() {
            "--journal" => r.journal = val()?,
            "--seed" => r.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--batches" => r.batches = val()?.parse().map_err(|e| format!("--batches: {e}"))?,
            "--lun" => {
                let v = val()?;
                let (n, d) = v
                    .split_once('=')
                    .ok_or(format!("--lun {v}: want NAME=DEV"))?;
                r.luns.push((n.to_string(), d.to_string()));
            }
            "--catalog" => {
                r.catalog = Some(val()?.split_whitespace().map(str::to_string).collect())
            }
            _ => {
                r.rest.push(a[i].clone());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if r.journal.is_empty() {
        return Err("--journal FILE is required".into());
    }
    Ok(r)
}

// ------------------------------------------------------------------ subcommands

fn cmd_model(a: &Args) -> io::Result<u8> {
    let m = Model::load(&a.journal)?;
    match &m.pool {
        Some((p, acked)) => println!("POOL {p} {}", if *acked { "acked" } else { "unacked" }),
        None => println!("POOL none"),
    }
    println!("POOLS_MADE {}", m.pools_made);
    for (n, v) in &m.vols {
        println!("VOL {n} {}", if v.snapshot { "snapshot" } else { "volume" });
    }
    if let Some((n, op)) = &m.inflight {
        println!("INFLIGHT {n} {}", op.show());
    }
    for w in &m.warnings {
        println!("WARNING {w}");
    }
    Ok(0)
}

/// Chooses the next catalog op (prints `op ...`, `cache wt|wb`, `batches N`, `opno N`).
fn cmd_next_op(a: &Args) -> io::Result<u8> {
    let m = Model::load(&a.journal)?;
    let mut rng = Rng::new(a.seed ^ m.lines.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let w = m.writable();
    let snaps: Vec<&String> = m
        .vols
        .iter()
        .filter(|(_, v)| v.snapshot)
        .map(|(k, _)| k)
        .collect();
    let total = m.vols.len();
    let id = m.next_id.max(m.ops + 1);
    let mut choices: Vec<String> = vec![];
    if w.is_empty() {
        choices.push(format!("create v{id}"));
    } else {
        if w.len() < MAX_WRITABLE && total < MAX_VOLS {
            choices.push(format!("create v{id}"));
            if total < 3 {
                choices.push(format!("create v{id}"));
            }
        }
        if total < MAX_VOLS {
            let src = &w[rng.below(w.len() as u64) as usize];
            choices.push(format!("snapshot {src} s{id}"));
            choices.push(format!("snapshot {src} s{id}"));
        }
        if !snaps.is_empty() && w.len() < MAX_WRITABLE && total < MAX_VOLS {
            let src = snaps[rng.below(snaps.len() as u64) as usize];
            choices.push(format!("clone {src} c{id}"));
            choices.push(format!("clone {src} c{id}"));
        }
        // a pool of 3-6 volumes, most of the time
        if total >= 3 {
            let all: Vec<&String> = m.vols.keys().collect();
            let v = all[rng.below(all.len() as u64) as usize];
            choices.push(format!("delete {v}"));
            if total >= 5 {
                choices.push(format!("delete {v}"));
                choices.push(format!("delete {v}"));
            }
        }
    }
    let op = choices[rng.below(choices.len() as u64) as usize].clone();
    println!("op {op}");
    println!("opno {}", m.ops + 1);
    println!("cache {}", if rng.below(2) == 0 { "wt" } else { "wb" });
    println!("batches {}", 5 + rng.below(20));
    Ok(0)
}

fn cmd_write(a: &Args) -> io::Result<u8> {
    let m = Model::load(&a.journal)?;
    let mut j = Journal::open(&a.journal)?;
    let mut rng = Rng::new(a.seed ^ m.lines.wrapping_mul(0x9E37_79B9));
    let mut gen = m.max_gen + 1;
    let mut devs: Vec<(String, File)> = vec![];
    for (n, d) in &a.luns {
        match m.vols.get(n) {
            Some(v) if !v.snapshot => devs.push((n.clone(), open_dev(d, true)?)),
            _ => {
                eprintln!("pcw write: {n} is not a writable volume of the model");
                return Ok(2);
            }
        }
    }
    if devs.is_empty() {
        return Ok(0);
    }
    let mut buf = Aligned::new(BLK);
    let mut write_one = |j: &mut Journal, vi: usize, block: u64, gen: u64| -> io::Result<()> {
        let (name, f) = &devs[vi];
        let r = Rec {
            vol: name.clone(),
            block,
            gen,
        };
        j.put(&format!("W {name} {block} {gen}"))?;
        buf.buf().copy_from_slice(&render(&r));
        f.write_all_at(buf.buf(), block * BLK as u64)
    };
    // 1. blocks left in limbo by a cut get a new acknowledged record first
    let mut repaired = 0;
    let names: Vec<String> = devs.iter().map(|d| d.0.clone()).collect();
    for (vi, name) in names.iter().enumerate() {
        let mut limbo: Vec<u64> = m.vols[name]
            .blocks
            .iter()
            .filter(|(_, b)| !b.limbo.is_empty())
            .map(|(k, _)| *k)
            .collect();
        limbo.sort_unstable();
        for b in limbo {
            write_one(&mut j, vi, b, gen)?;
            gen += 1;
            repaired += 1;
        }
    }
    let flush = |j: &mut Journal, devs: &[(String, File)], upto: u64| -> io::Result<()> {
        for (_, f) in devs {
            f.sync_all()?;
        }
        j.put(&format!("F {upto}"))
    };
    if repaired > 0 {
        flush(&mut j, &devs, gen - 1)?;
        println!("pcw: rewrote {repaired} block(s) left unflushed by the cut");
    }
    // 2. batches of 1-8 writes, each batch then flushed
    let mut n = 0;
    for _ in 0..a.batches {
        for _ in 0..1 + rng.below(8) {
            let vi = rng.below(devs.len() as u64) as usize;
            // half the writes go to the first 64 blocks (4 chunks of 64 KiB): overwrites
            let block = if rng.below(2) == 0 {
                rng.below(64)
            } else {
                rng.below(VOL_BLOCKS)
            };
            write_one(&mut j, vi, block, gen)?;
            gen += 1;
            n += 1;
        }
        flush(&mut j, &devs, gen - 1)?;
    }
    println!(
        "pcw: {n} writes in {} flushed batches to {}",
        a.batches,
        devs.iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(0)
}

#[derive(Default)]
struct Tally {
    blocks: u64,
    acked: u64,
    lost: u64,
    leaked: u64,
    corrupt: u64,
    torn: u64,
    unflushed_seen: u64,
    lost_vols: u64,
    extra_vols: u64,
    bad_lines: u64,
}

impl Tally {
    fn failures(&self) -> u64 {
        self.lost + self.leaked + self.corrupt + self.lost_vols + self.extra_vols
    }
    fn bad(&mut self, line: String) {
        self.bad_lines += 1;
        if self.bad_lines <= 40 {
            println!("PC-BAD {line}");
        } else if self.bad_lines == 41 {
            println!("PC-BAD ... (more)");
        }
    }
}

fn check_block(t: &mut Tally, name: &str, blockno: u64, bl: &Block, got: &[u8]) {
    t.blocks += 1;
    if bl.acked.is_some() {
        t.acked += 1;
    }
    let expected = bl.acked.as_ref().map_or_else(|| vec![0u8; BLK], render);
    if got == expected.as_slice() {
        return;
    }
    let others: Vec<Vec<u8>> = bl
        .limbo
        .iter()
        .chain(bl.pending.iter())
        .map(render)
        .collect();
    if others.iter().any(|o| o.as_slice() == got) {
        t.unflushed_seen += 1;
        return;
    }
    if !others.is_empty() {
        // a write never flushed may be torn: each sector from the old or a new version
        let ok = (0..BLK / SECT).all(|s| {
            let r = s * SECT..(s + 1) * SECT;
            got[r.clone()] == expected[r.clone()]
                || others.iter().any(|o| got[r.clone()] == o[r.clone()])
        });
        if ok {
            t.torn += 1;
            return;
        }
    }
    let found = decode(got);
    let exp = show_opt(&bl.acked);
    let unfl = if others.is_empty() {
        String::new()
    } else {
        format!(
            " (or unflushed {})",
            bl.limbo
                .iter()
                .chain(bl.pending.iter())
                .map(Rec::show)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    match found {
        Found::Zeros => {
            t.lost += 1;
            t.bad(format!(
                "LOST vol={name} block={blockno}: expected {exp}{unfl}, found zeros"
            ));
        }
        Found::Valid(r) if bl.history.iter().any(|h| h.as_ref() == Some(&r)) => {
            t.lost += 1;
            t.bad(format!(
                "LOST vol={name} block={blockno}: expected {exp}{unfl}, found older {}",
                r.show()
            ));
        }
        Found::Valid(r) => {
            t.leaked += 1;
            let why = if r.block != blockno {
                "another block's record"
            } else if r.vol != name && !bl.history.iter().flatten().any(|h| h.vol == r.vol) {
                "another volume's record"
            } else {
                "a record this block never held"
            };
            t.bad(format!(
                "LEAKED vol={name} block={blockno}: expected {exp}{unfl}, found {} ({why})",
                r.show()
            ));
        }
        Found::Corrupt(why) => {
            t.corrupt += 1;
            t.bad(format!(
                "CORRUPT vol={name} block={blockno}: expected {exp}{unfl}, found {why}"
            ));
        }
    }
}

fn verify_vol(t: &mut Tally, name: &str, v: &Vol, dev: &str) -> io::Result<()> {
    let mut f = open_dev(dev, false)?;
    let size = f.seek(SeekFrom::End(0))?;
    if size != VOL_BLOCKS * BLK as u64 {
        t.bad(format!(
            "SIZE vol={name}: {dev} has {size} bytes, expected {}",
            VOL_BLOCKS * BLK as u64
        ));
    }
    let per = 256usize; // 1 MiB reads
    let mut buf = Aligned::new(per * BLK);
    let empty = Block::default();
    let mut b0 = 0u64;
    while b0 < VOL_BLOCKS {
        let n = per.min((VOL_BLOCKS - b0) as usize);
        let data = &mut buf.buf()[..n * BLK];
        f.read_exact_at(data, b0 * BLK as u64)?;
        for i in 0..n {
            let bn = b0 + i as u64;
            check_block(
                t,
                name,
                bn,
                v.blocks.get(&bn).unwrap_or(&empty),
                &data[i * BLK..(i + 1) * BLK],
            );
        }
        b0 += n as u64;
    }
    Ok(())
}

/// Compares the pool (its catalog `catalog`, volumes readable at `luns`) with the model;
/// journals the resolution of an interrupted catalog op.
fn run_verify(
    m: &mut Model,
    catalog: &[String],
    luns: &[(String, String)],
    j: &mut Journal,
) -> io::Result<Tally> {
    // an op the cut interrupted: whichever state the catalog shows is right
    if let Some((n, op)) = m.inflight.take() {
        let done = op.done_in(catalog);
        println!(
            "pcw: the cut came during '{}': the catalog shows it {}",
            op.show(),
            if done { "done" } else { "not done" }
        );
        j.put(&format!(
            "OP {n} RESOLVED {}",
            if done { "done" } else { "undone" }
        ))?;
        if done {
            m.apply(&op);
        }
    }
    let mut t = Tally::default();
    for n in m.vols.keys() {
        if !catalog.contains(n) {
            t.lost_vols += 1;
            t.bad(format!(
                "LOST-VOLUME {n}: acknowledged in the journal, missing from the pool's catalog"
            ));
        }
    }
    for n in catalog {
        if !m.vols.contains_key(n) {
            t.extra_vols += 1;
            t.bad(format!("EXTRA-VOLUME {n}: in the pool's catalog, not in the journal (deleted or never created)"));
        }
    }
    for (n, v) in &m.vols {
        if !catalog.contains(n) {
            continue;
        }
        match luns.iter().find(|(l, _)| l == n) {
            Some((_, dev)) => verify_vol(&mut t, n, v, dev)?,
            None => {
                t.lost_vols += 1;
                t.bad(format!(
                    "NO-LUN {n}: in the catalog but could not be served"
                ));
            }
        }
    }
    for w in &m.warnings {
        println!("pcw: model warning: {w}");
    }
    Ok(t)
}

fn cmd_verify(a: &Args) -> io::Result<u8> {
    let mut m = Model::load(&a.journal)?;
    let mut j = Journal::open(&a.journal)?;
    let Some(catalog) = a.catalog.clone() else {
        eprintln!("pcw verify: --catalog is required");
        return Ok(2);
    };
    let t = run_verify(&mut m, &catalog, &a.luns, &mut j)?;
    let res = format!(
        "vols={} blocks={} acked_blocks={} lost={} leaked={} corrupt={} torn={} unflushed_seen={} lost_vols={} extra_vols={} flushed_gen={} max_gen={}",
        m.vols.len(), t.blocks, t.acked, t.lost, t.leaked, t.corrupt, t.torn, t.unflushed_seen, t.lost_vols, t.extra_vols, m.max_flushed, m.max_gen
    );
    println!("PC-VERIFY {res}");
    j.put(&format!("VERIFY {res}"))?;
    Ok(if t.failures() == 0 { 0 } else { 1 })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: pcw model|next-op|write|verify|note --journal FILE ...");
        return ExitCode::from(2);
    };
    let a = match parse_args(&argv[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pcw: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match cmd.as_str() {
        "model" => cmd_model(&a),
        "next-op" => cmd_next_op(&a),
        "write" => cmd_write(&a),
        "verify" => cmd_verify(&a),
        "note" => Journal::open(&a.journal)
            .and_then(|mut j| j.put(&a.rest.join(" ")))
            .map(|()| 0),
        _ => {
            eprintln!("pcw: unknown command {cmd}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("pcw {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The verifier on image files instead of LUNs: each kind of damage is told apart.
    use super::*;
    use std::path::PathBuf;

    struct Lab {
        dir: PathBuf,
        journal: String,
    }

    impl Lab {
        fn new(name: &str) -> Lab {
            let dir = std::env::temp_dir().join(format!("pcw-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let journal = dir.join("journal").display().to_string();
            Lab { dir, journal }
        }
        fn img(&self, vol: &str) -> String {
            self.dir.join(format!("{vol}.img")).display().to_string()
        }
        fn note(&self, l: &str) {
            Journal::open(&self.journal)
                .and_then(|mut j| j.put(l))
                .expect("journal");
        }
        /// `create` in the model and an all-zero image.
        fn create(&self, n: u64, vol: &str) {
            self.note(&format!("OP {n} BEGIN create {vol}"));
            std::fs::write(self.img(vol), vec![0u8; (VOL_BLOCKS as usize) * BLK]).expect("image");
            self.note(&format!("OP {n} DONE"));
        }
        /// Journals and writes `rec` (optionally not to the image: a lost write).
        fn write(&self, r: &Rec, to_image: bool) {
            self.note(&format!("W {} {} {}", r.vol, r.block, r.gen));
            if to_image {
                self.put(&r.vol, r.block, &render(r));
            }
        }
        fn put(&self, vol: &str, block: u64, data: &[u8]) {
            let f = OpenOptions::new()
                .write(true)
                .open(self.img(vol))
                .expect("open image");
            f.write_all_at(data, block * BLK as u64)
                .expect("write image");
        }
        fn verify(&self, catalog: &[&str]) -> Tally {
            let mut m = Model::load(&self.journal).expect("model");
            let mut j = Journal::open(&self.journal).expect("journal");
            let cat: Vec<String> = catalog.iter().map(|s| s.to_string()).collect();
            let luns: Vec<(String, String)> =
                cat.iter().map(|v| (v.clone(), self.img(v))).collect();
            run_verify(&mut m, &cat, &luns, &mut j).expect("verify")
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn rec(vol: &str, block: u64, gen: u64) -> Rec {
        Rec {
            vol: vol.to_string(),
            block,
            gen,
        }
    }

    fn setup(name: &str) -> Lab {
        let lab = Lab::new(name);
        lab.note("POOL p1 BEGIN");
        lab.note("POOL p1 DONE");
        lab.create(1, "v1");
        lab.create(2, "v2");
        lab.write(&rec("v1", 3, 1), true);
        lab.write(&rec("v2", 3, 2), true);
        lab.note("F 2");
        lab
    }

    #[test]
    fn clean_pool_verifies() {
        let lab = setup("clean");
        let t = lab.verify(&["v1", "v2"]);
        assert_eq!((t.failures(), t.blocks, t.acked), (0, 2 * VOL_BLOCKS, 2));
    }

    #[test]
    fn acknowledged_write_missing_is_lost() {
        let lab = setup("lost");
        lab.write(&rec("v1", 3, 3), false);
        lab.write(&rec("v1", 9, 4), false);
        lab.note("F 4");
        let t = lab.verify(&["v1", "v2"]);
        assert_eq!(
            (t.lost, t.leaked, t.corrupt),
            (2, 0, 0),
            "older generation and zeros"
        );
    }

    #[test]
    fn unflushed_writes_may_be_there_whole_torn_or_not_at_all() {
        let lab = setup("unflushed");
        lab.write(&rec("v1", 3, 3), true);
        lab.write(&rec("v1", 4, 4), false);
        lab.write(&rec("v1", 5, 5), false);
        // block 5: first two sectors new, the rest still zeros
        lab.put("v1", 5, &render(&rec("v1", 5, 5))[..2 * SECT]);
        lab.note("BOOT 2");
        let t = lab.verify(&["v1", "v2"]);
        assert_eq!((t.failures(), t.unflushed_seen, t.torn), (0, 1, 1));
    }

    #[test]
    fn torn_acknowledged_write_is_corrupt() {
        let lab = setup("torn");
        lab.put("v1", 3, &[0xee; SECT]);
        let t = lab.verify(&["v1", "v2"]);
        assert_eq!((t.corrupt, t.lost, t.leaked), (1, 0, 0));
    }

    #[test]
    fn another_volume_or_a_deleted_one_is_leaked() {
        let lab = setup("leak");
        lab.note("OP 3 BEGIN delete v2");
        lab.note("OP 3 DONE");
        // v1's never-written block 7 shows the deleted v2's record; block 3 shows v2's
        lab.put("v1", 7, &render(&rec("v2", 7, 2)));
        lab.put("v1", 3, &render(&rec("v2", 3, 2)));
        let t = lab.verify(&["v1"]);
        assert_eq!((t.leaked, t.lost, t.extra_vols), (2, 0, 0));
        let t = lab.verify(&["v1", "v2"]);
        assert_eq!(t.extra_vols, 1, "a deleted volume back in the catalog");
    }

    #[test]
    fn snapshots_keep_the_old_data_and_clones_inherit_it() {
        let lab = setup("snap");
        lab.note("OP 3 BEGIN snapshot v1 s3");
        std::fs::copy(lab.img("v1"), lab.img("s3")).expect("copy");
        lab.note("OP 3 DONE");
        lab.write(&rec("v1", 3, 3), true);
        lab.note("F 3");
        lab.note("OP 4 BEGIN clone s3 c4");
        std::fs::copy(lab.img("s3"), lab.img("c4")).expect("copy");
        lab.note("OP 4 DONE");
        let t = lab.verify(&["v1", "v2", "s3", "c4"]);
        assert_eq!(t.failures(), 0);
        // the snapshot showing the origin's later write is a leak
        lab.put("s3", 3, &render(&rec("v1", 3, 3)));
        let t = lab.verify(&["v1", "v2", "s3", "c4"]);
        assert_eq!((t.leaked, t.lost), (1, 0));
    }

    #[test]
    fn interrupted_op_is_resolved_by_the_catalog() {
        let lab = setup("inflight");
        lab.note("OP 3 BEGIN snapshot v1 s3");
        lab.note("BOOT 2");
        std::fs::copy(lab.img("v1"), lab.img("s3")).expect("copy");
        let t = lab.verify(&["v1", "v2", "s3"]);
        assert_eq!(t.failures(), 0);
        let m = Model::load(&lab.journal).expect("model");
        assert!(
            m.vols.contains_key("s3") && m.inflight.is_none(),
            "resolved as done in the journal"
        );
    }

    #[test]
    fn missing_volume_is_lost() {
        let lab = setup("lostvol");
        let t = lab.verify(&["v1"]);
        assert_eq!(t.lost_vols, 1);
    }
}
