use super::*;
use proptest::prelude::*;

fn leaf_of(entries: &[(usize, u64)]) -> Page {
    let mut p = Page::leaf();
    for &(i, v) in entries {
        p.set(i, Some(v));
    }
    p
}

#[test]
fn empty_leaf_is_header_only() {
    let b = Page::leaf().encode();
    assert_eq!(b.len(), HEADER_LEN);
    assert_eq!(&b[..4], &[1, 0, 0, 0]);
    assert_eq!(Page::decode(&b), Ok(Page::leaf()));
}

#[test]
fn known_bytes_of_a_small_leaf() {
    // slots 0 -> 5, 1 -> 6, 9 -> 4: deltas +5, +1, -2 -> zig-zag 10, 2, 3
    let p = leaf_of(&[(0, 5), (1, 6), (9, 4)]);
    let b = p.encode();
    let mut want = vec![1, 0, 0, 0];
    let mut bitmap = [0u8; 64];
    bitmap[0] = 0b0000_0011;
    bitmap[1] = 0b0000_0010;
    want.extend_from_slice(&bitmap);
    want.extend_from_slice(&[10, 2, 3]);
    assert_eq!(b, want);
    assert_eq!(Page::decode(&b), Ok(p));
}

#[test]
fn extreme_values_round_trip() {
    let p = leaf_of(&[(0, u64::MAX), (1, 0), (2, u64::MAX), (511, 1 << 63)]);
    let b = p.encode();
    assert_eq!(Page::decode(&b), Ok(p));
}

#[test]
fn hostile_headers_are_typed_errors() {
    let good = leaf_of(&[(3, 7)]).encode();
    assert_eq!(Page::decode(&good[..10]), Err(PageError::TooShort(10)));
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(Page::decode(&b), Err(PageError::Version(2)));
    let mut b = good.clone();
    b[1] = 9;
    assert_eq!(Page::decode(&b), Err(PageError::Kind(9)));
    let mut b = good.clone();
    b[2] = 1;
    assert!(matches!(
        Page::decode(&b),
        Err(PageError::Level { level: 1, .. })
    ));
    let mut b = good.clone();
    b[1] = 1;
    assert!(matches!(
        Page::decode(&b),
        Err(PageError::Level { level: 0, .. })
    ));
    b[2] = 8;
    assert!(matches!(
        Page::decode(&b),
        Err(PageError::Level { level: 8, .. })
    ));
    let mut b = good.clone();
    b[3] = 1;
    assert_eq!(Page::decode(&b), Err(PageError::Reserved(1)));
    assert_eq!(
        Page::decode(&good[..HEADER_LEN]),
        Err(PageError::Truncated(3))
    );
    let mut b = good.clone();
    b.push(0);
    assert_eq!(Page::decode(&b), Err(PageError::Trailing(1)));
}

#[test]
fn non_canonical_varints_are_rejected() {
    let mut b = leaf_of(&[(0, 1)]).encode();
    b.pop();
    // 2 written as two bytes (overlong)
    b.extend_from_slice(&[0x82, 0x00]);
    assert_eq!(Page::decode(&b), Err(PageError::BadVarint(0)));
    b.truncate(HEADER_LEN);
    // eleven bytes / more than 64 bits
    b.extend_from_slice(&[0xff; 9]);
    b.push(0x02);
    assert_eq!(Page::decode(&b), Err(PageError::BadVarint(0)));
    b.truncate(HEADER_LEN);
    b.extend_from_slice(&[0xff; 10]);
    assert_eq!(Page::decode(&b), Err(PageError::BadVarint(0)));
}

#[test]
fn interior_page_zero_is_rejected() {
    let mut p = Page::interior(2);
    p.set(4, Some(0));
    assert_eq!(Page::decode(&p.encode()), Err(PageError::ZeroChild(4)));
    p.set(4, Some(77));
    assert_eq!(Page::decode(&p.encode()), Ok(p));
}

fn bytes_per_mapping(values: impl Iterator<Item = u64>) -> f64 {
    let mut p = Page::leaf();
    for (i, v) in values.take(SLOTS).enumerate() {
        p.set(i, Some(v));
    }
    p.encode().len() as f64 / SLOTS as f64
}

/// Size figures quoted in docs/pool-format.md.
#[test]
fn size_figures() {
    let in_order = bytes_per_mapping(1_000_000..);
    // a pseudo-random permutation-ish spread over 16 Mi chunks and 4 Gi chunks
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |bits: u32| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x >> (64 - bits)
    };
    let r24: Vec<u64> = (0..SLOTS).map(|_| rnd(24)).collect();
    let r32: Vec<u64> = (0..SLOTS).map(|_| rnd(32)).collect();
    let random_16mi = bytes_per_mapping(r24.into_iter());
    let random_4gi = bytes_per_mapping(r32.into_iter());
    eprintln!(
        "full leaf bytes/mapping: in order {in_order:.3}, random in 16 Mi chunks {random_16mi:.3}, random in 4 Gi chunks {random_4gi:.3}"
    );
    assert!(in_order < 1.14, "{in_order}");
    assert!(random_16mi < 4.2, "{random_16mi}");
    assert!(random_4gi < 5.2, "{random_4gi}");
    // every 8th slot mapped, in order: the header dominates
    let mut p = Page::leaf();
    for i in (0..SLOTS).step_by(8) {
        p.set(i, Some(500 + i as u64));
    }
    // first delta (500) takes 2 bytes, the other 63 deltas of 8 one byte each
    assert_eq!(p.encode().len(), HEADER_LEN + 65);
}

fn arb_page() -> impl Strategy<Value = Page> {
    let slots = proptest::collection::btree_map(0usize..SLOTS, any::<u64>(), 0..SLOTS);
    (any::<bool>(), 1u8..=MAX_LEVEL, slots).prop_map(|(leaf, level, slots)| {
        let mut p = if leaf {
            Page::leaf()
        } else {
            Page::interior(level)
        };
        for (i, v) in slots {
            p.set(i, Some(if leaf { v } else { v.max(1) }));
        }
        p
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(p in arb_page()) {
        let b = p.encode();
        prop_assert!(b.len() <= MAX_ENCODED_LEN);
        prop_assert_eq!(Page::decode(&b), Ok(p));
    }

    /// Random bytes never panic; whatever decodes re-encodes to the same bytes.
    #[test]
    fn random_bytes_decode_or_fail_typed(body in proptest::collection::vec(any::<u8>(), 0..700),
                                         kind in 0u8..3, level in 0u8..9, bitmap_bits in 0usize..40) {
        // half the cases get a plausible header so decoding reaches the entries
        let mut b = body;
        if b.len() >= HEADER_LEN && kind < 2 {
            b[0] = PAGE_VERSION;
            b[1] = kind;
            b[2] = if kind == 0 { 0 } else { level.clamp(1, MAX_LEVEL) };
            b[3] = 0;
            for x in &mut b[4..HEADER_LEN] {
                *x &= 0x11;
            }
            if bitmap_bits == 0 {
                b[4..HEADER_LEN].fill(0);
            }
        }
        if let Ok(p) = Page::decode(&b) {
            prop_assert_eq!(p.encode(), b);
        }
    }

    /// A valid header and bitmap over random entry bytes: decodes exactly
    /// when the entries are canonical varints filling the rest, never panics.
    #[test]
    fn random_entries_decode_or_fail_typed(present in proptest::collection::btree_set(0usize..SLOTS, 0..6),
                                           interior in any::<bool>(),
                                           entries in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut p = if interior { Page::interior(3) } else { Page::leaf() };
        for i in &present {
            p.set(*i, Some(1));
        }
        let mut b = p.encode();
        b.truncate(HEADER_LEN);
        // bias towards short varints so some decode
        b.extend(entries.iter().map(|x| if x % 4 == 0 { *x } else { x & 0x7f }));
        match Page::decode(&b) {
            Ok(q) => {
                prop_assert_eq!(q.len(), present.len());
                prop_assert_eq!(q.encode(), b);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Truncated or extended valid pages never decode to something else.
    #[test]
    fn cut_or_padded_pages_fail_typed(p in arb_page(), cut in any::<prop::sample::Index>(),
                                      pad in proptest::collection::vec(any::<u8>(), 1..12)) {
        let b = p.encode();
        let i = cut.index(b.len());
        prop_assert!(Page::decode(&b[..i]).is_err());
        let mut longer = b.clone();
        longer.extend(pad);
        prop_assert!(Page::decode(&longer).is_err());
    }

    /// Flipping one byte of a valid page never panics and never yields a
    /// page that re-encodes differently from the flipped bytes.
    #[test]
    fn corrupted_pages_fail_typed(p in arb_page(), at in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut b = p.encode();
        let i = at.index(b.len());
        b[i] ^= x;
        if let Ok(q) = Page::decode(&b) {
            prop_assert_eq!(q.encode(), b);
        }
    }

    /// A slot read from the indexed bytes equals the decoded page's slot,
    /// for every slot (present or not, in range or not), and the stored
    /// bytes come back as they went in.
    #[test]
    fn indexed_slot_reads_what_decode_reads(p in arb_page(), extra in 0usize..8) {
        let b = p.encode();
        let x = indexed(&p, &b);
        prop_assert_eq!(indexed_stored(&x), &b[..]);
        for i in 0..SLOTS + extra {
            prop_assert_eq!(indexed_slot(&x, i).unwrap(), p.get(i));
        }
    }

    /// Bad bytes give an indexed-slot read an error or a value, never a panic.
    #[test]
    fn indexed_slot_survives_garbage(p in arb_page(), at in any::<prop::sample::Index>(),
                                     x in 1u8..=255, cut in any::<prop::sample::Index>(), i in 0usize..600) {
        let mut b = indexed(&p, &p.encode());
        let j = at.index(b.len());
        b[j] ^= x;
        let _ = indexed_slot(&b, i);
        let _ = indexed_slot(&b[..cut.index(b.len())], i);
    }
}
