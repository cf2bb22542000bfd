//! A [`PageStore`] in memory, for tests and tools.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Page, PageId, PageStore, TreeError};

/// A [`PageStore`] in memory (tests, tools).
#[derive(Debug, Default)]
pub struct MemPages {
    pages: HashMap<PageId, Arc<Page>>,
    refs: HashMap<PageId, u32>,
    next: PageId,
}

impl MemPages {
    /// Live page ids, sorted.
    pub fn ids(&self) -> Vec<PageId> {
        let mut v: Vec<PageId> = self.pages.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl PageStore for MemPages {
    fn get(&mut self, id: PageId) -> Result<Arc<Page>, TreeError> {
        self.pages
            .get(&id)
            .cloned()
            .ok_or(TreeError::MissingPage(id))
    }

    fn put(&mut self, id: PageId, page: Page) -> Result<(), TreeError> {
        self.pages.insert(id, Arc::new(page));
        Ok(())
    }

    fn allocate(&mut self) -> Result<PageId, TreeError> {
        self.next += 1;
        Ok(self.next)
    }

    fn free(&mut self, id: PageId) -> Result<(), TreeError> {
        self.refs.remove(&id);
        self.pages
            .remove(&id)
            .map(drop)
            .ok_or(TreeError::MissingPage(id))
    }

    fn refs(&mut self, id: PageId) -> Result<u32, TreeError> {
        if !self.pages.contains_key(&id) {
            return Err(TreeError::MissingPage(id));
        }
        Ok(self.refs.get(&id).copied().unwrap_or(1))
    }

    fn set_refs(&mut self, id: PageId, n: u32) -> Result<(), TreeError> {
        if !self.pages.contains_key(&id) || n == 0 {
            return Err(TreeError::PageRefs(id));
        }
        if n == 1 {
            self.refs.remove(&id);
        } else {
            self.refs.insert(id, n);
        }
        Ok(())
    }
}
