//! `check` of a format-3 pool: a walk of every tree (volumes and delete
//! jobs) that recounts each page's parents and each chunk's leaf slots and
//! compares them with `Q`, `S` and `R`, the free summary `Z`, the volumes'
//! mapped counts and ends, and finds pages nothing reaches.
//!
//! Pages are read from the store one at a time, each once (a shared
//! subtree is entered on its first reference only); memory is a set of page
//! ids seen and 4 bytes per chunk below the high-water mark.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::check::{CheckReport, Problem};
use super::format::{
    self, Superblock, TreeRecord, VolumeRecord, TAG_DELETE, TAG_PAGE, TAG_PAGE_REFS, TAG_REF,
    TAG_SPACE, TAG_TREE, TAG_VOLUME,
};
use super::page::{Page, PageId, SLOT_BITS};
use super::spacemap::{OVERFLOW, SPACE_PAGE_CHUNKS, SPACE_PAGE_LEN};
use super::store::MetaStore;
use super::tree::Root;
use super::PoolError;
use crate::narrow::index_mod;

struct Walk<'a> {
    store: &'a dyn MetaStore,
    seen: HashSet<PageId>,
    parents: HashMap<PageId, u32>,
    chunks: Vec<u32>,
    capacity: u64,
    report: CheckReport,
}

fn key_u64(k: &[u8]) -> Option<u64> {
    k.get(1..)?.try_into().ok().map(u64::from_be_bytes)
}

impl Walk<'_> {
    fn bad(&mut self, s: String) {
        self.report.problems.push(Problem::BadRecord(s));
    }

    /// Walks the subtree at `id` (level `level`, first logical chunk
    /// `base`); returns the mappings found (counted on first entry only).
    fn walk(&mut self, id: PageId, level: u8, base: u64, vol: u64, end: u64) -> u64 {
        *self.parents.entry(id).or_insert(0) += 1;
        if !self.seen.insert(id) {
            return self.mapped_below(id, level);
        }
        let page = match self.store.get(&format::id_key(TAG_PAGE, id)) {
            Ok(Some(b)) => match Page::decode(&b) {
                Ok(p) => p,
                Err(e) => {
                    self.bad(format!("page {id}: {e}"));
                    return 0;
                }
            },
            Ok(None) => {
                self.bad(format!("page {id} is missing"));
                return 0;
            }
            Err(e) => {
                self.bad(format!("page {id}: {e}"));
                return 0;
            }
        };
        if page.level() != level || page.is_leaf() != (level == 0) {
            self.bad(format!(
                "page {id} is at level {}, expected {level}",
                page.level()
            ));
            return 0;
        }
        let span = 1u64
            .checked_shl(SLOT_BITS * u32::from(level))
            .unwrap_or(u64::MAX);
        let mut n = 0;
        for (slot, v) in page.iter() {
            let at = base.saturating_add(span.saturating_mul(slot as u64));
            if level > 0 {
                n += self.walk(v, level - 1, at, vol, end);
                continue;
            }
            n += 1;
            self.report.mappings += 1;
            if at >= end {
                self.report.problems.push(Problem::MappingBeyondEnd {
                    volume: format!("id {vol}"),
                    lchunk: at,
                });
            }
            match usize::try_from(v).ok().and_then(|i| self.chunks.get_mut(i)) {
                Some(c) => *c = c.saturating_add(1),
                None => self.report.problems.push(Problem::MappingToUnallocated {
                    volume: vol,
                    lchunk: at,
                    chunk: v,
                }),
            }
        }
        n
    }

    /// Mappings under a page already walked (a shared subtree): counted
    /// again without recounting references.
    fn mapped_below(&mut self, id: PageId, level: u8) -> u64 {
        let Ok(Some(b)) = self.store.get(&format::id_key(TAG_PAGE, id)) else {
            return 0;
        };
        let Ok(page) = Page::decode(&b) else { return 0 };
        if level == 0 || page.is_leaf() {
            return page.len() as u64;
        }
        page.iter()
            .map(|(_, c)| self.mapped_below(c, level - 1))
            .sum()
    }
}

/// Checks a format-3 store (see the module docs).
pub(crate) fn check_tree(
    store: &dyn MetaStore,
    data_len: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, PoolError> {
    let mut report = CheckReport::default();
    let sb = match store.get(format::KEY_SUPER)? {
        Some(v) => format::decode::<Superblock>(&v, "superblock")?,
        None => {
            report
                .problems
                .push(Problem::BadSuperblock("missing".into()));
            return Ok(report);
        }
    };
    let cs = u64::from(sb.chunk_size);
    let hwm = sb.hwm.min(sb.capacity_chunks);
    if data_len < hwm * cs {
        report.problems.push(Problem::DataFileShort {
            needed: hwm * cs,
            actual: data_len,
        });
    }
    let mut vols: BTreeMap<u64, (String, VolumeRecord)> = BTreeMap::new();
    for (k, v) in store.scan_prefix(&[TAG_VOLUME])? {
        let name = String::from_utf8_lossy(&k[1..]).into_owned();
        match format::decode::<VolumeRecord>(&v, &format!("volume {name:?}")) {
            Ok(r) => {
                if vols.insert(r.id, (name, r.clone())).is_some() {
                    report.problems.push(Problem::DuplicateVolumeId(r.id));
                }
            }
            Err(e) => report.problems.push(Problem::BadRecord(e.to_string())),
        }
    }
    report.volumes = vols.len() as u64;
    let mut w = Walk {
        store,
        seen: HashSet::new(),
        parents: HashMap::new(),
        chunks: vec![0; usize::try_from(hwm).unwrap_or(0)],
        capacity: sb.capacity_chunks,
        report,
    };
    let trees = store.scan_prefix(&[TAG_TREE])?;
    let jobs = store.scan_prefix(&[TAG_DELETE])?;
    let total = (trees.len() + jobs.len()) as u64;
    for (i, (k, v)) in trees.iter().chain(jobs.iter()).enumerate() {
        progress(i as u64, total);
        let is_job = k[0] == TAG_DELETE;
        let (Some(id), Ok(r)) = (key_u64(k), TreeRecord::decode(v, "tree")) else {
            w.bad(format!("tree key {k:?}"));
            continue;
        };
        let root = Root {
            page: r.root,
            depth: r.depth,
        };
        let Ok(top) = root.top() else {
            w.bad(format!("tree {id}: depth {}", r.depth));
            continue;
        };
        let (end, name) = match (is_job, vols.get(&id)) {
            (true, _) => (u64::MAX, None),
            (false, Some((n, rec))) => (rec.size_bytes.div_ceil(cs), Some(n.clone())),
            (false, None) => {
                w.report.problems.push(Problem::OrphanMapping {
                    volume: id,
                    lchunk: 0,
                });
                (u64::MAX, None)
            }
        };
        if root.page == 0 {
            if !is_job && r.count != 0 {
                w.bad(format!(
                    "volume id {id}: empty tree counts {} mappings",
                    r.count
                ));
            }
            continue;
        }
        let n = w.walk(root.page, top, 0, id, end);
        if let (Some(name), false) = (name, is_job) {
            if n != r.count {
                w.report.problems.push(Problem::BadVolume {
                    volume: name,
                    why: format!("records {} mapped chunks, its tree holds {n}", r.count),
                });
            }
        }
    }
    for id in vols.keys() {
        if !trees.iter().any(|(k, _)| key_u64(k) == Some(*id)) {
            w.bad(format!("volume id {id} has no tree record"));
        }
    }
    // every stored page reached, every page count right
    let mut stored_refs: HashMap<PageId, u32> = HashMap::new();
    for (k, v) in store.scan_prefix(&[TAG_PAGE_REFS])? {
        match (key_u64(&k), format::be_u32(&v, "page count")) {
            (Some(id), Ok(n)) => {
                stored_refs.insert(id, n);
            }
            _ => w.bad(format!("page count key {k:?}")),
        }
    }
    for (k, _) in store.scan_prefix(&[TAG_PAGE])? {
        let Some(id) = key_u64(&k) else {
            w.bad(format!("page key {k:?}"));
            continue;
        };
        let actual = w.parents.get(&id).copied().unwrap_or(0);
        let stored = stored_refs.remove(&id).unwrap_or(1);
        if actual == 0 {
            w.bad(format!("page {id} is not reachable from any tree (leaked)"));
        } else if actual != stored {
            w.bad(format!(
                "page {id}: reference count {stored} but {actual} parents"
            ));
        }
    }
    for id in stored_refs.keys() {
        w.bad(format!("page count of page {id}, which does not exist"));
    }
    // chunk counts against S and R, the summary Z
    let mut overflow: HashMap<u64, u32> = HashMap::new();
    for (k, v) in store.scan_prefix(&[TAG_REF])? {
        if let (Some(c), Ok(n)) = (key_u64(&k), format::be_u32(&v, "side map")) {
            overflow.insert(c, n);
        }
    }
    let spages = sb.capacity_chunks.div_ceil(SPACE_PAGE_CHUNKS);
    let mut zeros = vec![0u16; usize::try_from(spages).unwrap_or(0)];
    let mut stored_pages: HashMap<u64, Vec<u8>> = HashMap::new();
    for (k, v) in store.scan_prefix(&[TAG_SPACE])? {
        match k.get(1..).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(p) => {
                stored_pages.insert(u64::from(u32::from_be_bytes(p)), v);
            }
            None => w.bad(format!("space key {k:?}")),
        }
    }
    for p in 0..spages {
        let bytes = stored_pages.remove(&p);
        let base = p * SPACE_PAGE_CHUNKS;
        let live = (w.capacity - base).min(SPACE_PAGE_CHUNKS);
        let mut z = 0u16;
        for i in 0..live {
            let c = base + i;
            let b = bytes
                .as_ref()
                .and_then(|b| b.get(index_mod(i, SPACE_PAGE_LEN)))
                .copied()
                .unwrap_or(0);
            let stored = if b == OVERFLOW {
                overflow.remove(&c).unwrap_or(u32::from(OVERFLOW))
            } else {
                u32::from(b)
            };
            let actual = usize::try_from(c)
                .ok()
                .and_then(|i| w.chunks.get(i))
                .copied()
                .unwrap_or(0);
            if stored == 0 {
                z += 1;
            }
            if stored != actual {
                if c >= hwm && stored > 0 {
                    w.report.problems.push(Problem::BeyondHighWater(c));
                } else {
                    w.report.problems.push(Problem::RefcountMismatch {
                        chunk: c,
                        stored,
                        actual,
                    });
                }
            }
        }
        if let Some(slot) = usize::try_from(p).ok().and_then(|p| zeros.get_mut(p)) {
            *slot = z;
        }
    }
    w.report.chunks = hwm;
    for c in overflow.keys() {
        w.bad(format!("side-map entry of chunk {c} without a 255 byte"));
    }
    if let Some(p) = stored_pages.keys().next() {
        w.bad(format!("space page {p} past the pool's capacity"));
    }
    let want: Vec<u8> = zeros.iter().flat_map(|z| z.to_be_bytes()).collect();
    match store.get(format::KEY_SUMMARY)? {
        Some(z) if z == want => {}
        _ => w.bad("the free summary Z disagrees with the space pages".into()),
    }
    progress(total, total);
    Ok(w.report)
}

/// The format of a store (from its `format` key).
pub(crate) fn store_format(store: &dyn MetaStore) -> Result<u32, PoolError> {
    match store.get(format::KEY_FORMAT)? {
        Some(v) => format::be_u32(&v, "format version"),
        None => Err(PoolError::corrupt("format version missing")),
    }
}
