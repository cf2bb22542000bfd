//! The format-3 mapping tree (issue 13, `docs/pool-scale-design.md`): a
//! copy-on-write radix tree of 512-slot [`Page`]s with page reference counts,
//! dm-thin style.
//!
//! A volume is a [`Root`]: a root page id (0 = empty) and a depth (levels;
//! the root page is at level `depth - 1`, leaves at 0). A page's reference
//! count is the number of parents pointing at it (interior pages, volume
//! roots, delete jobs); a chunk's is the number of leaves pointing at it
//! ([`ChunkRefs`]). A snapshot shares the root (+1). A change under a page
//! whose count is above 1 first *shadows* it: copies it to a new id, +1 on
//! each child, −1 on the original, repoints the parent. A shared page is
//! therefore never modified, and an exclusively owned page is rewritten in
//! place.

use std::sync::Arc;

use thiserror::Error;

use super::page::{Page, PageError, PageId, MAX_LEVEL, SLOTS, SLOT_BITS};
use super::spacemap::{ChunkRefs, SpaceError};
use crate::narrow::index_mod;

/// Why a tree operation failed (the metadata is inconsistent or a store failed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    /// A page named by the tree does not exist.
    #[error("page {0} is missing")]
    MissingPage(PageId),
    /// A page sits at a level (or has a kind) its parent does not expect.
    #[error("page {id} is at level {found}, expected {expected}")]
    WrongLevel {
        /// The page.
        id: PageId,
        /// Level the path requires.
        expected: u8,
        /// Level the page has.
        found: u8,
    },
    /// A page's reference count would fall below zero or overflow.
    #[error("page {0} has a bad reference count")]
    PageRefs(PageId),
    /// A root's depth is outside 1..=8.
    #[error("a tree cannot have depth {0}")]
    BadDepth(u8),
    /// A page failed to decode.
    #[error(transparent)]
    Page(#[from] PageError),
    /// A chunk reference count operation failed.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The page store failed.
    #[error("page store: {0}")]
    Store(String),
}

/// Where pages live: sled with a page cache in the pool, a map in tests.
pub trait PageStore {
    /// The page `id`.
    fn get(&mut self, id: PageId) -> Result<Arc<Page>, TreeError>;
    /// Stores (dirty) page `id`, new or exclusively owned.
    fn put(&mut self, id: PageId, page: Page) -> Result<(), TreeError>;
    /// A fresh page id (never reused); its reference count is 1.
    fn allocate(&mut self) -> Result<PageId, TreeError>;
    /// Deletes page `id` and its reference count.
    fn free(&mut self, id: PageId) -> Result<(), TreeError>;
    /// The reference count of live page `id` (stored only when ≥ 2).
    fn refs(&mut self, id: PageId) -> Result<u32, TreeError>;
    /// Sets the reference count of live page `id` (≥ 1).
    fn set_refs(&mut self, id: PageId, n: u32) -> Result<(), TreeError>;
}

/// A volume's tree: root page (0 = empty) and depth in levels (≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    /// Root page id, 0 when nothing is mapped.
    pub page: PageId,
    /// Levels: the tree covers logical chunks `0 .. 512^depth`.
    pub depth: u8,
}

/// Most levels a tree has: 8 cover every u64 logical chunk.
pub const MAX_DEPTH: u8 = MAX_LEVEL + 1;

impl Root {
    /// An empty tree of one level.
    pub const EMPTY: Root = Root { page: 0, depth: 1 };

    /// The root page's level (`depth - 1`), checking the depth (1..=8).
    pub fn top(&self) -> Result<u8, TreeError> {
        match self.depth {
            1..=MAX_DEPTH => Ok(self.depth - 1),
            d => Err(TreeError::BadDepth(d)),
        }
    }

    /// Whether logical chunk `l` lies inside the tree's span.
    pub fn covers(&self, l: u64) -> bool {
        let bits = SLOT_BITS * u32::from(self.depth);
        bits >= 64 || l >> bits == 0
    }
}

/// What a map or unmap did to the slot's previous chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replaced {
    /// The chunk mapped before, if any (its reference was dropped).
    pub old: Option<u64>,
    /// Whether that chunk's count reached 0 (it is now pending-free).
    pub freed: bool,
}

fn index(l: u64, level: u8) -> usize {
    index_mod(l >> (SLOT_BITS * u32::from(level)), SLOTS)
}

/// Logical chunks covered by one slot of a page at `level` (saturating).
fn slot_span(level: u8) -> u64 {
    1u64.checked_shl(SLOT_BITS * u32::from(level))
        .unwrap_or(u64::MAX)
}

pub(crate) fn expect_level(id: PageId, page: &Page, level: u8) -> Result<(), TreeError> {
    if page.level() == level && page.is_leaf() == (level == 0) {
        Ok(())
    } else {
        Err(TreeError::WrongLevel {
            id,
            expected: level,
            found: page.level(),
        })
    }
}

fn get_at<S: PageStore>(store: &mut S, id: PageId, level: u8) -> Result<Arc<Page>, TreeError> {
    let page = store.get(id)?;
    expect_level(id, &page, level)?;
    Ok(page)
}

/// The chunk logical chunk `l` maps to.
pub fn lookup<S: PageStore>(store: &mut S, root: Root, l: u64) -> Result<Option<u64>, TreeError> {
    root.top()?;
    if root.page == 0 || !root.covers(l) {
        return Ok(None);
    }
    let mut id = root.page;
    for level in (0..root.depth).rev() {
        let page = get_at(store, id, level)?;
        match page.get(index(l, level)) {
            None => return Ok(None),
            Some(v) if level == 0 => return Ok(Some(v)),
            Some(child) => id = child,
        }
    }
    Ok(None)
}

/// Whether `l` is mapped and every page on its path and its chunk have
/// reference count 1: the chunk may be overwritten in place as far as these
/// counts go (the pool also requires it of the durable counts).
pub fn exclusive<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &R,
    root: Root,
    l: u64,
) -> Result<bool, TreeError> {
    root.top()?;
    if root.page == 0 || !root.covers(l) {
        return Ok(false);
    }
    let mut id = root.page;
    for level in (0..root.depth).rev() {
        if store.refs(id)? != 1 {
            return Ok(false);
        }
        let page = get_at(store, id, level)?;
        match page.get(index(l, level)) {
            None => return Ok(false),
            Some(c) if level == 0 => return Ok(chunks.count(c)? == 1),
            Some(child) => id = child,
        }
    }
    Ok(false)
}

/// Shares `root` with a new volume (snapshot or clone): +1 on the root page.
pub fn share<S: PageStore>(store: &mut S, root: Root) -> Result<Root, TreeError> {
    if root.page != 0 {
        let n = store.refs(root.page)?;
        let n = n.checked_add(1).ok_or(TreeError::PageRefs(root.page))?;
        store.set_refs(root.page, n)?;
    }
    Ok(root)
}

/// Makes page `id` (at `level`) exclusively owned by the caller's parent:
/// returns `id` itself when its count is 1, else a copy under a new id
/// (+1 on each child, −1 on the original). The caller repoints the parent.
fn unshare<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    id: PageId,
    level: u8,
) -> Result<(PageId, Page), TreeError> {
    let page = get_at(store, id, level)?;
    let n = store.refs(id)?;
    if n == 1 {
        return Ok((id, Page::clone(&page)));
    }
    if n == 0 {
        return Err(TreeError::PageRefs(id));
    }
    for (_, child) in page.iter() {
        if level == 0 {
            chunks.inc(child)?;
        } else {
            let c = store.refs(child)?;
            store.set_refs(child, c.checked_add(1).ok_or(TreeError::PageRefs(child))?)?;
        }
    }
    store.set_refs(id, n - 1)?;
    let copy = Page::clone(&page);
    let new = store.allocate()?;
    store.put(new, copy.clone())?;
    Ok((new, copy))
}

/// Adds root levels (interior pages with the old root in slot 0) until the
/// tree covers `l`; an empty tree only gets deeper.
pub fn grow<S: PageStore>(store: &mut S, root: &mut Root, l: u64) -> Result<(), TreeError> {
    root.top()?;
    // a tree of MAX_DEPTH covers every l, so the loop ends there
    while !root.covers(l) {
        if root.page != 0 {
            let mut top = Page::interior(root.depth);
            top.set(0, Some(root.page));
            let id = store.allocate()?;
            store.put(id, top)?;
            root.page = id;
        }
        root.depth += 1;
    }
    Ok(())
}

/// The path to `l` made exclusive (shadowing shared pages), creating missing
/// pages when `create`. Returns the pages from the root down as (id, page);
/// shorter than `depth` when `l` is unmapped and `create` is false.
fn cow_path<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    root: &mut Root,
    l: u64,
    create: bool,
) -> Result<Vec<(PageId, Page)>, TreeError> {
    let mut path: Vec<(PageId, Page)> = Vec::with_capacity(usize::from(root.depth));
    let top = root.top()?;
    if root.page == 0 {
        if !create {
            return Ok(path);
        }
        let id = store.allocate()?;
        let page = if top == 0 {
            Page::leaf()
        } else {
            Page::interior(top)
        };
        store.put(id, page.clone())?;
        root.page = id;
        path.push((id, page));
    } else {
        let (id, page) = unshare(store, chunks, root.page, top)?;
        root.page = id;
        path.push((id, page));
    }
    for level in (0..top).rev() {
        let Some((pid, parent)) = path.last_mut() else {
            break;
        };
        let slot = index(l, level + 1);
        let (id, page) = match parent.get(slot) {
            Some(child) => {
                let (id, page) = unshare(store, chunks, child, level)?;
                if id != child {
                    parent.set(slot, Some(id));
                    store.put(*pid, parent.clone())?;
                }
                (id, page)
            }
            None if create => {
                let id = store.allocate()?;
                let page = if level == 0 {
                    Page::leaf()
                } else {
                    Page::interior(level)
                };
                store.put(id, page.clone())?;
                parent.set(slot, Some(id));
                store.put(*pid, parent.clone())?;
                (id, page)
            }
            None => break,
        };
        path.push((id, page));
    }
    Ok(path)
}

/// Maps logical chunk `l` to `chunk` (+1 on `chunk`, −1 on the chunk it
/// replaces), shadowing shared pages on the path and growing the tree.
pub fn map<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    root: &mut Root,
    l: u64,
    chunk: u64,
) -> Result<Replaced, TreeError> {
    grow(store, root, l)?;
    let path = cow_path(store, chunks, root, l, true)?;
    let Some((id, mut leaf)) = path.into_iter().last() else {
        return Err(TreeError::MissingPage(root.page));
    };
    expect_level(id, &leaf, 0)?;
    chunks.inc(chunk)?;
    let old = leaf.set(index(l, 0), Some(chunk));
    store.put(id, leaf)?;
    let freed = match old {
        Some(c) => chunks.dec(c)? == 0,
        None => false,
    };
    Ok(Replaced { old, freed })
}

/// Unmaps logical chunk `l` (−1 on its chunk), shadowing shared pages on the
/// path and releasing pages left empty.
pub fn unmap<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    root: &mut Root,
    l: u64,
) -> Result<Replaced, TreeError> {
    if lookup(store, *root, l)?.is_none() {
        return Ok(Replaced::default());
    }
    let mut path = cow_path(store, chunks, root, l, false)?;
    let Some((id, mut leaf)) = path.pop() else {
        return Err(TreeError::MissingPage(root.page));
    };
    let old = leaf.set(index(l, 0), None);
    let freed = match old {
        Some(c) => chunks.dec(c)? == 0,
        None => false,
    };
    // release empty pages bottom-up (all exclusively owned now)
    let (mut id, mut empty) = (id, leaf.is_empty());
    if !empty {
        store.put(id, leaf)?;
    }
    let mut level = 0u8;
    while empty {
        store.free(id)?;
        level += 1;
        match path.pop() {
            None => {
                root.page = 0;
                break;
            }
            Some((pid, mut parent)) => {
                parent.set(index(l, level), None);
                empty = parent.is_empty();
                if !empty {
                    store.put(pid, parent)?;
                }
                id = pid;
            }
        }
    }
    Ok(Replaced { old, freed })
}

/// Every mapping of a tree in logical order (for `check`, dumps and tests).
pub fn mappings<S: PageStore>(store: &mut S, root: Root) -> Result<Vec<(u64, u64)>, TreeError> {
    let mut out = Vec::new();
    if root.page != 0 {
        collect(store, root.page, root.top()?, 0, &mut out)?;
    }
    Ok(out)
}

fn collect<S: PageStore>(
    store: &mut S,
    id: PageId,
    level: u8,
    base: u64,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), TreeError> {
    let page = get_at(store, id, level)?;
    let span = slot_span(level);
    for (slot, v) in page.iter() {
        let at = base.saturating_add(span.saturating_mul(slot as u64));
        if level == 0 {
            out.push((at, v));
        } else {
            collect(store, v, level - 1, at, out)?;
        }
    }
    Ok(())
}

pub use delete::{delete_job, delete_step, DeleteJob, StepOutcome};
pub use mem::MemPages;

mod delete;
mod mem;

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
