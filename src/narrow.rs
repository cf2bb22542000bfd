//! Narrowing conversions that cannot lose bits, for the modules outside the
//! SCSI layer (which has `scsi::fixed_len`): a value reduced modulo a
//! page's slot count becomes an index; the smaller of a `u64` and a length
//! is a length. Values from outside (stored metadata, ring fields) that
//! index memory go through `usize::try_from` at the call site instead, so
//! that one too large is a miss or an error, never another slot.

/// `v % m` as an index. The remainder is below `m`, itself a `usize`, so the
/// conversion cannot truncate.
#[allow(clippy::cast_possible_truncation)] // below m: a usize
pub(crate) const fn index_mod(v: u64, m: usize) -> usize {
    (v % m as u64) as usize
}

/// The smaller of `a` and `b`, as a length: exact, since it is at most `b`
/// (an `a` past `usize` is larger than any `b`).
pub(crate) fn min_len(a: u64, b: usize) -> usize {
    usize::try_from(a).map_or(b, |a| a.min(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remainder_is_kept_whole() {
        assert_eq!(index_mod(u64::MAX, 512), 511);
        assert_eq!(index_mod((1 << 40) + 7, 4096), 7);
        assert_eq!(index_mod(5, 1), 0);
    }

    #[test]
    fn the_smaller_of_a_u64_and_a_length() {
        assert_eq!(min_len(u64::MAX, 7), 7);
        assert_eq!(min_len(3, 7), 3);
        assert_eq!(min_len(1 << 40, usize::MAX), 1 << 40);
    }
}
