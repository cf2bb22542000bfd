//! The bounded, resumable delete walk of a tree (see [`delete_step`]).

use super::{get_at, slot_span, ChunkRefs, Page, PageId, PageStore, Root, TreeError, SLOTS};

/// A delete in progress: the tree still to be released, and where the walk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteJob {
    /// What is left of the deleted tree (pages already released are cleared from it).
    pub root: Root,
    /// Progress: the walk has released everything below this logical chunk
    /// (`u64::MAX` when done). Only reported: the walk itself resumes from
    /// what is left in the tree, since released pages are cleared from it.
    pub cursor: u64,
}

/// What one bounded delete step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Chunks whose count reached 0 in this step.
    pub freed: Vec<u64>,
    /// Units of work spent: leaves released plus shared subtrees dropped.
    pub work: usize,
    /// Whether the job is finished (its root is empty).
    pub done: bool,
}

/// Starts deleting a tree: the volume is gone, the job holds its root.
pub fn delete_job(root: Root) -> DeleteJob {
    DeleteJob { root, cursor: 0 }
}

/// One bounded step of a delete: at most `budget` units (a leaf released
/// or a shared subtree dropped, −1 on its page), depth first in logical
/// order. Released pages are cleared from their (exclusively owned)
/// parents, so the job's tree always holds exactly the references not yet
/// dropped and a step after a crash resumes from the committed tree. Pages
/// with count > 1 are never entered, so the cost is bounded by what the
/// deleted volume owned alone.
pub fn delete_step<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    job: &mut DeleteJob,
    budget: usize,
) -> Result<StepOutcome, TreeError> {
    let mut out = StepOutcome::default();
    let id = job.root.page;
    if id != 0 && budget > 0 {
        let top = job.root.top()?;
        let gone = if store.refs(id)? > 1 {
            drop_ref(store, id)?;
            out.work += 1;
            true
        } else {
            release(store, chunks, id, top, 0, job, budget, &mut out)?
        };
        if gone {
            job.root.page = 0;
        }
    }
    out.done = job.root.page == 0;
    if out.done {
        job.cursor = u64::MAX;
    }
    Ok(out)
}

fn drop_ref<S: PageStore>(store: &mut S, id: PageId) -> Result<(), TreeError> {
    let n = store.refs(id)?;
    if n < 2 {
        return Err(TreeError::PageRefs(id));
    }
    store.set_refs(id, n - 1)
}

/// Releases what it can of exclusively owned page `id` (at `level`, first
/// logical chunk `base`); returns whether the page itself was freed.
#[allow(clippy::too_many_arguments)]
fn release<S: PageStore, R: ChunkRefs>(
    store: &mut S,
    chunks: &mut R,
    id: PageId,
    level: u8,
    base: u64,
    job: &mut DeleteJob,
    budget: usize,
    out: &mut StepOutcome,
) -> Result<bool, TreeError> {
    let page = get_at(store, id, level)?;
    if level == 0 {
        for (_, c) in page.iter() {
            if chunks.dec(c)? == 0 {
                out.freed.push(c);
            }
        }
        store.free(id)?;
        out.work += 1;
        job.cursor = base.saturating_add(slot_span(1));
        return Ok(true);
    }
    let span = slot_span(level);
    let mut page = Page::clone(&page);
    let mut changed = false;
    // released children are cleared from the page, so the walk resumes at
    // the first present slot whatever the cursor says
    for slot in 0..SLOTS {
        let Some(child) = page.get(slot) else {
            continue;
        };
        if out.work >= budget {
            break;
        }
        let child_base = base.saturating_add(span.saturating_mul(slot as u64));
        let gone = if store.refs(child)? > 1 {
            drop_ref(store, child)?;
            out.work += 1;
            job.cursor = child_base.saturating_add(span);
            true
        } else {
            release(
                store,
                chunks,
                child,
                level - 1,
                child_base,
                job,
                budget,
                out,
            )?
        };
        if !gone {
            break;
        }
        page.set(slot, None);
        changed = true;
    }
    if page.is_empty() {
        store.free(id)?;
        Ok(true)
    } else {
        if changed {
            store.put(id, page)?;
        }
        Ok(false)
    }
}
