//! Format-3 keys seen as format 2, for the tools built on format 2's
//! decoded [`Metadata`](super::check::Metadata): `inspect`, `dump`,
//! `repair`. Each volume's tree is walked into `M` keys, the space map into
//! `R` (every used chunk) and `F` (every free chunk below the high-water
//! mark) keys. Page-level problems (counts, leaked pages) are found by
//! [`check_tree`](super::check3::check_tree), not here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::{self, TreeRecord, TAG_FREE, TAG_PAGE, TAG_PAGE_REFS, TAG_REF, TAG_TREE};
use super::page::{Page, PageId};
use super::spacemap::{OVERFLOW, SPACE_PAGE_CHUNKS, SPACE_PAGE_LEN};
use super::store::Entries;
use super::tree::{self, PageStore, Root, TreeError};
use super::PoolError;
use crate::narrow::index_mod;

/// Pages read straight from a key map (no cache, nothing written).
struct KvPages<'a>(&'a BTreeMap<Vec<u8>, Vec<u8>>);

impl PageStore for KvPages<'_> {
    fn get(&mut self, id: PageId) -> Result<Arc<Page>, TreeError> {
        let b = self
            .0
            .get(&format::id_key(TAG_PAGE, id))
            .ok_or(TreeError::MissingPage(id))?;
        Ok(Arc::new(Page::decode(b)?))
    }
    fn put(&mut self, _: PageId, _: Page) -> Result<(), TreeError> {
        Err(TreeError::Store("read-only".into()))
    }
    fn allocate(&mut self) -> Result<PageId, TreeError> {
        Err(TreeError::Store("read-only".into()))
    }
    fn free(&mut self, _: PageId) -> Result<(), TreeError> {
        Err(TreeError::Store("read-only".into()))
    }
    fn refs(&mut self, id: PageId) -> Result<u32, TreeError> {
        Ok(self
            .0
            .get(&format::id_key(TAG_PAGE_REFS, id))
            .and_then(|v| format::be_u32(v, "count").ok())
            .unwrap_or(1))
    }
    fn set_refs(&mut self, _: PageId, _: u32) -> Result<(), TreeError> {
        Err(TreeError::Store("read-only".into()))
    }
}

/// The format-2 keys equivalent to format-3 `kvs` (format key = 2). A tree
/// that cannot be walked is an error naming it.
pub(crate) fn as_format2(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<Entries, PoolError> {
    let map: BTreeMap<Vec<u8>, Vec<u8>> = kvs.iter().cloned().collect();
    let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut hwm = 0u64;
    let mut cap = 0u64;
    for (k, v) in &map {
        if k.as_slice() == format::KEY_SUPER {
            let sb: format::Superblock = format::decode(v, "superblock")?;
            hwm = sb.hwm;
            cap = sb.capacity_chunks;
        }
        if k.as_slice() == format::KEY_FORMAT {
            out.insert(k.clone(), 2u32.to_be_bytes().to_vec());
            continue;
        }
        match k.first() {
            Some(&TAG_TREE) if k.len() == 9 => {
                let vol = format::be_u64(&k[1..], "tree key")?;
                let r = TreeRecord::decode(v, "volume tree")?;
                let root = Root {
                    page: r.root,
                    depth: r.depth,
                };
                let maps = tree::mappings(&mut KvPages(&map), root)
                    .map_err(|e| PoolError::corrupt(format!("tree of volume id {vol}: {e}")))?;
                for (l, c) in maps {
                    out.insert(format::map_key(vol, l), c.to_be_bytes().to_vec());
                }
            }
            Some(&format::TAG_VOLUME | &format::TAG_IDENT) | None => {
                out.insert(k.clone(), v.clone());
            }
            _ if k.as_slice() == format::KEY_SUPER || k.as_slice() == format::KEY_SEQ => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    // counts: S bytes, R for >= 255
    for c in 0..hwm.min(cap) {
        let p = u32::try_from(c / SPACE_PAGE_CHUNKS)
            .map_err(|_| PoolError::corrupt(format!("chunk {c}: space page past 2^32")))?;
        let b = map
            .get(&format::space_key(p))
            .and_then(|s| s.get(index_mod(c, SPACE_PAGE_LEN)))
            .copied()
            .unwrap_or(0);
        let n = if b == OVERFLOW {
            map.get(&format::chunk_key(TAG_REF, c))
                .and_then(|v| format::be_u32(v, "side map").ok())
                .unwrap_or(u32::from(OVERFLOW))
        } else {
            u32::from(b)
        };
        if n == 0 {
            out.insert(format::chunk_key(TAG_FREE, c), Vec::new());
        } else {
            out.insert(format::chunk_key(TAG_REF, c), n.to_be_bytes().to_vec());
        }
    }
    Ok(out.into_iter().collect())
}
