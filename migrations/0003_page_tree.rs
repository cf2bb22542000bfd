//! Format 2 -> 3: the mappings (`M` keys, one per mapping) become one
//! copy-on-write page tree per volume (`P` pages, `T` roots), the reference
//! counts (`R` for every used chunk, `F` for free ones) become space pages
//! (`S`, one byte per chunk), the side map (`R`, counts >= 255 only) and the
//! free summary (`Z`); see `docs/pool-format.md`.
//!
//! Trees are built bottom-up from each volume's mappings in logical order:
//! leaves of 512 slots, then interior levels. Migrated volumes share no page
//! (a snapshot keeps its own tree, as much space as format 2 used), so a
//! chunk's count (leaves pointing at it) is format 2's count, and no `Q` key
//! is written. The whole step is one atomic commit (with the new format
//! number, `migrate::upgrade`): a crash leaves format 2 untouched and the
//! next open runs it again. Its memory is that of format 2's own open (every
//! key is read), once.

use std::collections::BTreeMap;

use crate::narrow::index_mod;
use crate::pool::format::{self, Key, Superblock, TreeRecord, VolumeRecord};
use crate::pool::page::{Page, SLOTS, SLOT_BITS};
use crate::pool::spacemap::{SpaceMap, OVERFLOW, SPACE_PAGE_CHUNKS, SPACE_PAGE_LEN};
use crate::pool::store::Change;
use crate::pool::PoolError;

/// The tree of one volume's mappings (sorted by logical chunk): pages
/// written to `out` with ids from `next_id`; returns (root, depth).
fn build_tree(maps: &[(u64, u64)], next_id: &mut u64, out: &mut Vec<Change>) -> (u64, u8) {
    let Some(&(max_l, _)) = maps.last() else {
        return (0, 1);
    };
    let mut depth = 1u8;
    while u32::from(depth) * SLOT_BITS < 64 && max_l >> (u32::from(depth) * SLOT_BITS) != 0 {
        depth += 1;
    }
    // (index of the node at this level, page id), in index order
    let mut level_nodes: Vec<(u64, u64)> = Vec::new();
    let mut put = |page: &Page, out: &mut Vec<Change>| -> u64 {
        let id = *next_id;
        *next_id += 1;
        out.push((format::id_key(format::TAG_PAGE, id), Some(page.encode())));
        id
    };
    let mut i = 0;
    while i < maps.len() {
        let leaf_ix = maps[i].0 >> SLOT_BITS;
        let mut page = Page::leaf();
        while i < maps.len() && maps[i].0 >> SLOT_BITS == leaf_ix {
            let (l, c) = maps[i];
            page.set(index_mod(l, SLOTS), Some(c));
            i += 1;
        }
        level_nodes.push((leaf_ix, put(&page, out)));
    }
    for level in 1..depth {
        let mut up: Vec<(u64, u64)> = Vec::new();
        let mut j = 0;
        while j < level_nodes.len() {
            let parent_ix = level_nodes[j].0 >> SLOT_BITS;
            let mut page = Page::interior(level);
            while j < level_nodes.len() && level_nodes[j].0 >> SLOT_BITS == parent_ix {
                let (ix, id) = level_nodes[j];
                page.set(index_mod(ix, SLOTS), Some(id));
                j += 1;
            }
            up.push((parent_ix, put(&page, out)));
        }
        level_nodes = up;
    }
    (level_nodes.first().map_or(0, |n| n.1), depth)
}

/// The changes turning format-2 keys into format 3.
pub(crate) fn run(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Change>, PoolError> {
    let mut sb = None;
    let mut vols: BTreeMap<u64, VolumeRecord> = BTreeMap::new();
    let mut maps: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut out: Vec<Change> = Vec::new();
    for (k, v) in kvs {
        match format::parse_key(k) {
            Some(Key::Super) => sb = Some(format::decode::<Superblock>(v, "superblock")?),
            Some(Key::Volume(name)) => {
                let r: VolumeRecord = format::decode(v, &format!("volume {name:?}"))?;
                vols.insert(r.id, r);
            }
            Some(Key::Map(vol, l)) => {
                maps.entry(vol)
                    .or_default()
                    .push((l, format::be_u64(v, "mapping")?));
                out.push((k.clone(), None));
            }
            Some(Key::Ref(c)) => {
                counts.insert(c, format::be_u32(v, "refcount")?);
                out.push((k.clone(), None));
            }
            Some(Key::Free(_)) => out.push((k.clone(), None)),
            _ => {}
        }
    }
    let sb = sb.ok_or_else(|| PoolError::corrupt("superblock missing"))?;
    let mut next_id = 1u64;
    for &id in vols.keys() {
        let m = maps.remove(&id).unwrap_or_default();
        // `M` keys come in key order: logical order within a volume
        let (root, depth) = build_tree(&m, &mut next_id, &mut out);
        let rec = TreeRecord {
            root,
            depth,
            count: m.len() as u64,
        };
        out.push((format::id_key(format::TAG_TREE, id), Some(rec.encode())));
    }
    if let Some((&vol, _)) = maps.iter().next() {
        return Err(PoolError::corrupt(format!(
            "mappings of volume id {vol}, which is not in the catalog (run `tcmud pool repair` with the format-2 build first)"
        )));
    }
    // space pages, side map and summary from the counts
    let capacity = sb.capacity_chunks;
    let mut pages: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut overflow = BTreeMap::new();
    for (&c, &n) in &counts {
        if c >= capacity || n == 0 {
            return Err(PoolError::corrupt(format!(
                "reference count {n} of chunk {c} (capacity {capacity})"
            )));
        }
        let page = pages
            .entry(c / SPACE_PAGE_CHUNKS)
            .or_insert_with(|| vec![0; SPACE_PAGE_LEN]);
        let byte = match u8::try_from(n) {
            Ok(b) if b < OVERFLOW => b,
            _ => {
                overflow.insert(c, n);
                OVERFLOW
            }
        };
        page[index_mod(c, SPACE_PAGE_LEN)] = byte;
    }
    let space = SpaceMap::load(capacity, pages.clone(), overflow.clone())
        .map_err(|e| PoolError::corrupt(e.to_string()))?;
    for (p, bytes) in pages {
        let p = u32::try_from(p).map_err(|_| PoolError::corrupt("pool too large"))?;
        out.push((format::space_key(p), Some(bytes)));
    }
    // after the removal of every format-2 `R` key above: the last change of a key wins
    for (c, n) in overflow {
        out.push((
            format::chunk_key(format::TAG_REF, c),
            Some(n.to_be_bytes().to_vec()),
        ));
    }
    let z: Vec<u8> = space
        .summary()
        .iter()
        .flat_map(|z| z.to_be_bytes())
        .collect();
    out.push((format::KEY_SUMMARY.to_vec(), Some(z)));
    out.push((
        format::KEY_NEXT_PAGE.to_vec(),
        Some(next_id.to_be_bytes().to_vec()),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tree::{self, MemPages, PageStore, Root};

    #[test]
    fn trees_hold_every_mapping_at_the_right_depth() {
        for maps in [
            vec![],
            vec![(0, 5)],
            vec![(0, 5), (511, 6), (512, 7)],
            (0..3000).map(|l| (l * 7, l + 100)).collect::<Vec<_>>(),
            vec![(3, 1), (1 << 30, 2), (u64::MAX, 3)],
        ] {
            let mut out = Vec::new();
            let mut next = 1;
            let (root, depth) = build_tree(&maps, &mut next, &mut out);
            let mut pages = MemPages::default();
            for (k, v) in &out {
                let id = format::be_u64(&k[1..], "id").unwrap();
                while pages.allocate().unwrap() < id {}
                pages
                    .put(id, Page::decode(v.as_ref().unwrap()).unwrap())
                    .unwrap();
            }
            let r = Root { page: root, depth };
            assert_eq!(tree::mappings(&mut pages, r).unwrap(), maps);
            assert!(r.top().is_ok());
        }
    }
}
