use super::*;
use proptest::prelude::*;

fn leaf_of(entries: &[(usize, u64)]) -> Page {
    let mut p = Page::leaf();
    for &(i, v) in entries {
        p.set(i, Some(v));
    }
    p
}

/// Pages whose groups need every width: values near a random base, spread
/// over 8, 16, 32 or 64 bits.
fn arb_page() -> impl Strategy<Value = Page> {
    let slots = proptest::collection::btree_map(0usize..SLOTS, any::<u64>(), 0..SLOTS);
    (any::<bool>(), 1u8..=MAX_LEVEL, any::<u64>(), 0u32..4, slots).prop_map(
        |(leaf, level, base, wlog, slots)| {
            let mut p = if leaf {
                Page::leaf()
            } else {
                Page::interior(level)
            };
            let spread = u64::MAX >> (64 - (8u32 << wlog));
            for (i, v) in slots {
                let v = base.wrapping_add(v & spread);
                p.set(i, Some(if leaf { v } else { v.max(1) }));
            }
            p
        },
    )
}

#[test]
fn in_order_leaf_packs_into_byte_offsets() {
    // a leaf of chunks allocated in order: 8-bit offsets, 512 bytes of values
    let p = leaf_of(&(0..SLOTS).map(|i| (i, 1000 + i as u64)).collect::<Vec<_>>());
    let x = pack(&p);
    assert_eq!(x.len(), 8 + 512 / BLOCK_BYTES);
    assert_eq!(slot(&x, 0), (0, Some(1000)));
    assert_eq!(slot(&x, 511), (0, Some(1511)));
    assert_eq!(unpack(&x), p);
}

#[test]
fn extremes_and_absent_slots() {
    let p = leaf_of(&[(0, u64::MAX), (1, 0), (2, u64::MAX), (511, 1 << 63)]);
    let x = pack(&p);
    assert_eq!(slot(&x, 0), (0, Some(u64::MAX)));
    assert_eq!(slot(&x, 1), (0, Some(0)));
    assert_eq!(slot(&x, 2), (0, Some(u64::MAX)));
    assert_eq!(slot(&x, 3), (0, None));
    assert_eq!(slot(&x, 511), (0, Some(1 << 63)));
    assert_eq!(slot(&x, 512), (0, None));
    assert_eq!(slot(&x, usize::MAX), (0, None));
    assert_eq!(unpack(&x), p);
}

#[test]
fn interior_level_and_empty_page() {
    let mut p = Page::interior(3);
    p.set(7, Some(42));
    let x = pack(&p);
    assert_eq!(level(&x), 3);
    assert_eq!(slot(&x, 7), (3, Some(42)));
    assert_eq!(slot(&x, 8), (3, None));
    assert_eq!(unpack(&x), p);
    let e = pack(&Page::leaf());
    assert_eq!(e.len(), 8);
    assert_eq!(memory(&e), 9 * BLOCK_BYTES);
    assert_eq!(unpack(&e), Page::leaf());
}

#[test]
fn short_blocks_read_as_absent_never_panic() {
    let p = leaf_of(&[(0, 1), (100, 1 << 40), (300, 5)]);
    let x = pack(&p);
    for cut in 0..x.len() {
        for i in [0, 100, 300, 511, 600] {
            let _ = slot(&x[..cut], i);
        }
        let _ = unpack(&x[..cut]);
    }
    assert_eq!(slot(&[], 0), (u8::MAX, None));
}

proptest! {
    /// Every slot reads back as the decoded page has it; unpack restores the page.
    #[test]
    fn packed_slots_are_the_page_slots(p in arb_page(), extra in 0usize..8) {
        let x = pack(&p);
        for i in 0..SLOTS + extra {
            prop_assert_eq!(slot(&x, i), (p.level(), p.get(i)));
        }
        prop_assert_eq!(unpack(&x), p.clone());
        // never more than a decoded page's slots, records apart
        prop_assert!(x.len() <= 8 + SLOTS * 8 / BLOCK_BYTES);
    }
}
