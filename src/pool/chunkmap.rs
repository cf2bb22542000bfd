//! A volume's mapping (logical chunk -> physical chunk) in memory: a
//! two-level table with pages of 512 slots allocated on first use, so a
//! lookup is two indexings and memory follows what was written (8 bytes per
//! mapped chunk, plus 8 bytes per 512 logical chunks for the page table).

use crate::narrow::index_mod;

const PAGE_SHIFT: u32 = 9;
const PAGE: usize = 1 << PAGE_SHIFT;
const EMPTY: u64 = u64::MAX;

struct Page {
    used: u32,
    slots: [u64; PAGE],
}

/// Logical chunk -> physical chunk, ordered by logical chunk.
#[derive(Default)]
pub(crate) struct ChunkMap {
    pages: Vec<Option<Box<Page>>>,
    len: usize,
}

impl std::fmt::Debug for ChunkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkMap({} mapped)", self.len)
    }
}

fn split(l: u64) -> Option<(usize, usize)> {
    let p = usize::try_from(l >> PAGE_SHIFT).ok()?;
    Some((p, index_mod(l, PAGE)))
}

impl ChunkMap {
    /// Number of mapped chunks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The physical chunk of logical chunk `l`.
    pub fn get(&self, l: u64) -> Option<u64> {
        let (p, i) = split(l)?;
        let c = self.pages.get(p)?.as_ref()?.slots[i];
        (c != EMPTY).then_some(c)
    }

    /// Whether `l` is mapped.
    pub fn contains(&self, l: u64) -> bool {
        self.get(l).is_some()
    }

    /// Maps `l` to `c`; returns the previous chunk.
    pub fn insert(&mut self, l: u64, c: u64) -> Option<u64> {
        let (p, i) = split(l)?;
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| {
            Box::new(Page {
                used: 0,
                slots: [EMPTY; PAGE],
            })
        });
        let old = std::mem::replace(&mut page.slots[i], c);
        if old == EMPTY {
            page.used += 1;
            self.len += 1;
            None
        } else {
            Some(old)
        }
    }

    /// Unmaps `l`; returns the chunk it had.
    pub fn remove(&mut self, l: u64) -> Option<u64> {
        let (p, i) = split(l)?;
        let slot = self.pages.get_mut(p)?;
        let page = slot.as_mut()?;
        let old = std::mem::replace(&mut page.slots[i], EMPTY);
        if old == EMPTY {
            return None;
        }
        page.used -= 1;
        self.len -= 1;
        if page.used == 0 {
            *slot = None;
        }
        Some(old)
    }

    /// Mapped (logical, physical) pairs with logical >= `from`, in order.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (p0, _) = split(from).unwrap_or((usize::MAX, 0));
        self.pages
            .iter()
            .enumerate()
            .skip(p0)
            .filter_map(|(p, page)| page.as_ref().map(|pg| (p, pg)))
            .flat_map(|(p, pg)| {
                pg.slots
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c != EMPTY)
                    .map(move |(i, &c)| (((p << PAGE_SHIFT) + i) as u64, c))
            })
            .filter(move |&(l, _)| l >= from)
    }

    /// Every mapped (logical, physical) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.iter_from(0)
    }

    /// Bytes of memory this map uses.
    pub fn memory_bytes(&self) -> u64 {
        let pages = self.pages.iter().filter(|p| p.is_some()).count();
        (self.pages.capacity() * std::mem::size_of::<Option<Box<Page>>>()
            + pages * std::mem::size_of::<Page>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_iterate() {
        let mut m = ChunkMap::default();
        assert_eq!(m.insert(5, 50), None);
        assert_eq!(m.insert(1000, 7), None);
        assert_eq!(m.insert(5, 51), Some(50));
        assert_eq!(
            (m.get(5), m.get(6), m.get(1000), m.len()),
            (Some(51), None, Some(7), 2)
        );
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(5, 51), (1000, 7)]);
        assert_eq!(m.iter_from(6).collect::<Vec<_>>(), vec![(1000, 7)]);
        assert_eq!(m.remove(5), Some(51));
        assert_eq!(m.remove(5), None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(u64::MAX), None);
        assert_eq!(m.iter_from(u64::MAX).count(), 0);
    }
}
