//! Lengths bounded by a constant (a fixed-size buffer, a table, a const
//! limit) written into narrower CDB, sense or parameter-data fields. Values
//! from outside the process never go through here: those use `try_from`
//! and a typed error.

/// `n` as a one-byte length field. Only for lengths bounded by a constant
/// below 256, so it cannot truncate; the assert (a compile error in a
/// const context) says so instead of clamping.
#[allow(clippy::cast_possible_truncation)] // checked by the assert
pub(crate) const fn u8_len(n: usize) -> u8 {
    assert!(
        n <= u8::MAX as usize,
        "length does not fit its 1-byte field"
    );
    n as u8
}

/// `n` as a four-byte length field, as [`u8_len`].
#[allow(clippy::cast_possible_truncation)] // checked by the assert
pub(crate) const fn u32_len(n: usize) -> u32 {
    assert!(
        n <= u32::MAX as usize,
        "length does not fit its 4-byte field"
    );
    n as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_that_fit_are_kept() {
        assert_eq!(u8_len(255), 255);
        assert_eq!(u32_len(1 << 20), 1 << 20);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_length_that_does_not_fit_panics_rather_than_truncating() {
        u8_len(256);
    }
}
