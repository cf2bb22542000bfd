//! The data-area block bitmap, the command-id bitmap and iov building, as
//! the kernel does them (`find_first_zero_bit`, `new_block_to_iov`).

/// A fixed-size bitmap with lowest-first search, one bit per item.
#[derive(Debug, Clone)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    bits: usize,
    ones: usize,
}

impl Bitmap {
    /// `bits` clear bits.
    pub fn new(bits: usize) -> Bitmap {
        Bitmap {
            words: vec![0; bits.div_ceil(64)],
            bits,
            ones: 0,
        }
    }

    /// Number of bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Number of set bits.
    pub fn ones(&self) -> usize {
        self.ones
    }

    /// Whether bit `i` is set (false out of range).
    #[cfg(test)]
    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Sets bit `i` (ignored out of range).
    pub fn set(&mut self, i: usize) {
        if i < self.bits {
            if let Some(w) = self.words.get_mut(i / 64) {
                let m = 1u64 << (i % 64);
                if *w & m == 0 {
                    *w |= m;
                    self.ones += 1;
                }
            }
        }
    }

    /// Clears bit `i` (ignored out of range).
    pub fn clear(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            let m = 1u64 << (i % 64);
            if *w & m != 0 {
                *w &= !m;
                self.ones -= 1;
            }
        }
    }

    /// The lowest clear bit at or after `from`, if any.
    pub fn first_zero_from(&self, from: usize) -> Option<usize> {
        let mut wi = from / 64;
        // Bits below `from` in the first word count as set.
        let mut mask = (1u64 << (from % 64)) - 1;
        while let Some(&w) = self.words.get(wi) {
            let w = w | mask;
            if w != u64::MAX {
                let i = wi * 64 + w.trailing_ones() as usize;
                return (i < self.bits).then_some(i);
            }
            mask = 0;
            wi += 1;
        }
        None
    }

    /// Set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

/// Lowest-first block allocator (`find_first_zero_bit` over a bitmap).
#[derive(Debug)]
pub(crate) struct Blocks {
    used: Bitmap,
    size: usize,
}

impl Blocks {
    /// `count` free blocks of `size` bytes.
    pub fn new(count: usize, size: usize) -> Blocks {
        Blocks {
            used: Bitmap::new(count),
            size,
        }
    }

    /// Block size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Total number of blocks.
    pub fn count(&self) -> usize {
        self.used.bits()
    }

    /// Blocks needed for `len` bytes.
    pub fn needed(&self, len: usize) -> usize {
        len.div_ceil(self.size)
    }

    /// The `n` lowest free blocks, or `None` when fewer are free. Nothing
    /// is marked until [`Blocks::take`].
    #[cfg(test)]
    pub fn find(&self, n: usize) -> Option<Vec<usize>> {
        let mut v = Vec::new();
        self.find_into(n, &mut v).then_some(v)
    }

    /// Appends the `n` lowest free blocks to `out`; false (and `out` as it
    /// was) when fewer are free. Nothing is marked until [`Blocks::take`].
    pub fn find_into(&self, n: usize, out: &mut Vec<usize>) -> bool {
        if self.count() - self.in_use() < n {
            return false;
        }
        let start = out.len();
        let mut from = 0;
        while out.len() - start < n {
            match self.used.first_zero_from(from) {
                Some(b) => {
                    out.push(b);
                    from = b + 1;
                }
                None => {
                    out.truncate(start);
                    return false;
                }
            }
        }
        true
    }

    /// Marks blocks used.
    pub fn take(&mut self, blocks: &[usize]) {
        for &b in blocks {
            self.used.set(b);
        }
    }

    /// Frees blocks.
    pub fn free(&mut self, blocks: &[usize]) {
        for &b in blocks {
            self.used.clear(b);
        }
    }

    /// Blocks in use.
    pub fn in_use(&self) -> usize {
        self.used.ones()
    }
}

/// The runs (offset from mapping start, length) covering `len` bytes in
/// `blocks`, merging consecutive blocks like `new_block_to_iov`.
pub(crate) fn runs(
    data_off: usize,
    bs: usize,
    blocks: &[usize],
    len: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut left = len;
    let mut i = 0;
    std::iter::from_fn(move || {
        let &first = blocks.get(i)?;
        if left == 0 {
            return None;
        }
        let mut n = left.min(bs);
        let mut prev = first;
        left -= n;
        i += 1;
        while let Some(&b) = blocks.get(i) {
            if left == 0 || b != prev + 1 {
                break;
            }
            let m = left.min(bs);
            n += m;
            left -= m;
            prev = b;
            i += 1;
        }
        Some((data_off + first * bs, n))
    })
}

/// Appends the iovs of [`runs`] to `out`; returns how many.
pub(crate) fn iovs_into(
    data_off: usize,
    bs: usize,
    blocks: &[usize],
    len: usize,
    out: &mut Vec<(u64, u64)>,
) -> usize {
    let before = out.len();
    for (o, l) in runs(data_off, bs, blocks, len) {
        out.push((o as u64, l as u64));
    }
    out.len() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iovs(data_off: usize, bs: usize, blocks: &[usize], len: usize) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        iovs_into(data_off, bs, blocks, len, &mut v);
        v
    }

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
        assert_eq!(iovs(0, 10, &[0, 1, 2], 15), vec![(0, 15)]);
        assert_eq!(iovs(0, 10, &[5], 0), vec![]);
    }

    #[test]
    fn bitmap_across_words() {
        let mut m = Bitmap::new(130);
        for i in 0..129 {
            m.set(i);
        }
        assert_eq!(m.first_zero_from(0), Some(129));
        m.set(129);
        assert_eq!(m.first_zero_from(0), None);
        m.clear(64);
        m.clear(3);
        assert_eq!(m.first_zero_from(0), Some(3));
        assert_eq!(m.first_zero_from(4), Some(64));
        assert_eq!(m.ones(), 128);
        m.set(500); // out of range: ignored
        assert_eq!(m.ones(), 128);
        assert!(m.get(65) && !m.get(64) && !m.get(500));
        let ones: Vec<usize> = Bitmap::new(70).iter_ones().collect();
        assert!(ones.is_empty());
        let mut s = Bitmap::new(200);
        for i in [0, 63, 64, 199] {
            s.set(i);
        }
        assert_eq!(s.iter_ones().collect::<Vec<_>>(), vec![0, 63, 64, 199]);
        let mut b = Blocks::new(200, 512);
        let mut out = vec![99];
        assert!(b.find_into(2, &mut out));
        assert_eq!(out, vec![99, 0, 1]);
        b.take(&out[1..]);
        assert!(!b.find_into(199, &mut out));
        assert_eq!(out.len(), 3);
    }
}
