//! Explicit narrowing in test code (the crate denies lossy `as` casts):
//! [`fit`] for a value that must fit its field (a list length into a CDB's
//! 2-byte field, a constant block size into a `u32`), panicking otherwise;
//! [`LowByte`] for data patterns that keep the low byte on purpose (the
//! bytes `as u8` gave, written as what they are).

/// `v` converted to the narrower type the call needs; panics when it does
/// not fit (a test whose data outgrew its field is wrong, never truncated).
#[track_caller]
pub fn fit<T, U>(v: U) -> T
where
    U: Copy + std::fmt::Debug,
    T: TryFrom<U>,
{
    T::try_from(v).unwrap_or_else(|_| panic!("{v:?} does not fit the narrower type"))
}

/// The least significant byte of an integer, for test data patterns (the
/// same byte an `as u8` cast keeps).
pub trait LowByte {
    /// The least significant byte.
    fn low_byte(self) -> u8;
}

macro_rules! low_byte {
    ($($t:ty),*) => {$(
        impl LowByte for $t {
            fn low_byte(self) -> u8 {
                self.to_le_bytes()[0]
            }
        }
    )*};
}
low_byte!(u16, u32, u64, usize);

/// A `u64` (an LBA, a block count, a random pick) as an index or length.
#[track_caller]
pub fn ix(v: u64) -> usize {
    fit(v)
}
