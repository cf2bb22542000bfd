//! The data-area block bitmap and iov building, as the kernel does them.

/// Lowest-first block allocator (`find_first_zero_bit` over a bitmap).
#[derive(Debug)]
pub(crate) struct Blocks {
    used: Vec<bool>,
    size: usize,
}

impl Blocks {
    /// `count` free blocks of `size` bytes.
    pub fn new(count: usize, size: usize) -> Blocks {
        Blocks {
            used: vec![false; count],
            size,
        }
    }

    /// Block size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Total number of blocks.
    pub fn count(&self) -> usize {
        self.used.len()
    }

    /// Blocks needed for `len` bytes.
    pub fn needed(&self, len: usize) -> usize {
        len.div_ceil(self.size)
    }

    /// The `n` lowest free blocks, or `None` when fewer are free. Nothing
    /// is marked until [`Blocks::take`].
    pub fn find(&self, n: usize) -> Option<Vec<usize>> {
        let v: Vec<usize> = self
            .used
            .iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(i, _)| i)
            .take(n)
            .collect();
        (v.len() == n).then_some(v)
    }

    /// Marks blocks used.
    pub fn take(&mut self, blocks: &[usize]) {
        for &b in blocks {
            if let Some(u) = self.used.get_mut(b) {
                *u = true;
            }
        }
    }

    /// Frees blocks.
    pub fn free(&mut self, blocks: &[usize]) {
        for &b in blocks {
            if let Some(u) = self.used.get_mut(b) {
                *u = false;
            }
        }
    }

    /// Blocks in use.
    pub fn in_use(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }
}

/// The iovs (offset from mapping start, length) covering `len` bytes in
/// `blocks`, merging runs of consecutive blocks like `new_block_to_iov`.
pub(crate) fn iovs(data_off: usize, bs: usize, blocks: &[usize], len: usize) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut left = len;
    let mut prev: Option<usize> = None;
    for &b in blocks {
        if left == 0 {
            break;
        }
        let n = left.min(bs);
        match (prev, out.last_mut()) {
            (Some(p), Some(last)) if b == p + 1 => last.1 += n as u64,
            _ => out.push(((data_off + b * bs) as u64, n as u64)),
        }
        prev = Some(b);
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_and_merge() {
        let mut b = Blocks::new(8, 4096);
        let first = b.find(3).unwrap();
        assert_eq!(first, vec![0, 1, 2]);
        b.take(&first);
        b.free(&[1]);
        let next = b.find(3).unwrap();
        assert_eq!(next, vec![1, 3, 4]);
        assert_eq!(
            iovs(1000, 4096, &next, 9000),
            vec![(1000 + 4096, 4096), (1000 + 3 * 4096, 4096 + 808)]
        );
        assert!(b.find(7).is_none());
        assert_eq!(b.needed(4097), 2);
        assert_eq!(b.in_use(), 2);
    }
}
