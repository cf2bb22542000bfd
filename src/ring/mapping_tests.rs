//! Tests of the shared-memory mapping (`mapping.rs`).

use super::*;
use std::io::Write;

fn file(len: usize) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&vec![0u8; len]).unwrap();
    f
}

#[test]
fn scalar_round_trip_and_bounds() {
    let m = Mapping::new(&file(64), 64).unwrap();
    m.write_u32(4, 0xdead_beef).unwrap();
    assert_eq!(m.read_u32(4).unwrap(), 0xdead_beef);
    m.write_u64(9, 0x0102_0304_0506_0708).unwrap(); // unaligned
    assert_eq!(m.read_u64(9).unwrap(), 0x0102_0304_0506_0708);
    m.write_u16(62, 7).unwrap();
    assert_eq!(m.read_u16(62).unwrap(), 7);
    assert!(m.read_u16(63).is_err());
    assert!(m.read_u64(usize::MAX - 3).is_err());
    assert!(m.write_u8(64, 1).is_err());
    m.store_u32_release(60, 5).unwrap();
    assert_eq!(m.load_u32_acquire(60).unwrap(), 5);
    assert!(m.load_u32_acquire(61).is_err());
}

#[test]
fn word_snapshots_at_any_alignment() {
    let m = Mapping::new(&file(64), 64).unwrap();
    for off in [0usize, 3, 8, 13] {
        let words = [0x0102_0304_0506_0708u64, off as u64, u64::MAX];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        m.write_unpublished(off, &bytes).unwrap();
        assert_eq!(m.read_words::<3>(off).unwrap(), words);
        assert_eq!(m.read_u64(off + 8).unwrap(), off as u64);
    }
    assert!(m.read_words::<2>(49).is_err());
    assert!(m.write_unpublished(48, &[0; 17]).is_err());
    assert!(m.read_words::<1>(usize::MAX - 3).is_err());
}

#[test]
fn large_fills_are_exact_at_any_alignment() {
    // Sizes at and above the non-temporal threshold, unaligned starts
    // and odd tails: every byte of the span filled, nothing outside.
    let len = 3 << 20;
    let m = Mapping::new(&file(len), len).unwrap();
    for (i, (off, n)) in [
        (0usize, 1usize << 20),
        (7, (1 << 20) + 13),
        (4099, 256 << 10),
        (33, (2 << 20) + 63),
    ]
    .into_iter()
    .enumerate()
    {
        let fill = 0xa0 + i.to_le_bytes()[0];
        m.fill_data(0, len, 0x11).unwrap();
        m.fill_data(off, n, fill).unwrap();
        let mut back = vec![0u8; len];
        m.read_into(0, &mut back).unwrap();
        assert!(back[..off].iter().all(|&b| b == 0x11), "before {off}");
        assert!(
            back[off..off + n].iter().all(|&b| b == fill),
            "span {off}+{n}"
        );
        assert!(
            back[off + n..].iter().all(|&b| b == 0x11),
            "after {off}+{n}"
        );
    }
    assert!(m.fill_data(len - 10, 11, 0).is_err());
}

#[test]
fn bulk_copies_at_every_alignment() {
    let m = Mapping::new(&file(256), 256).unwrap();
    for off in 0..9 {
        for len in [0usize, 1, 7, 8, 9, 31, 100] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + off).to_le_bytes()[0]).collect();
            m.write_from(off, &data).unwrap();
            let mut back = vec![0u8; len];
            m.read_into(off, &mut back).unwrap();
            assert_eq!(back, data);
        }
    }
    let mut big = vec![0u8; 257];
    assert!(m.read_into(0, &mut big).is_err());
    assert!(m.copy_out(0, &mut big).is_err());
    assert!(m.copy_in(1, &big[..256]).is_err());
    assert!(m.fill_data(usize::MAX, 2, 0).is_err());
    for off in 0..9 {
        let data: Vec<u8> = (0..100usize)
            .map(|i| (i * 3 + off).to_le_bytes()[0])
            .collect();
        m.copy_in(off, &data).unwrap();
        let mut back = vec![0u8; 100];
        m.copy_out(off, &mut back).unwrap();
        assert_eq!(back, data);
        m.read_into(off, &mut back).unwrap();
        assert_eq!(back, data);
    }
    m.fill_data(10, 20, 0x3c).unwrap();
    let mut back = [0u8; 22];
    m.copy_out(9, &mut back).unwrap();
    assert!(back[1..21].iter().all(|&b| b == 0x3c));
    assert_ne!(back[0], 0x3c);
    m.fill(3, 50, 0xaa).unwrap();
    let mut back = [0u8; 50];
    m.read_into(3, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0xaa));
}

#[test]
fn pread_and_pwrite_go_straight_through_the_mapping() {
    use std::os::fd::AsFd;
    let m = Mapping::new(&file(256), 256).unwrap();
    let data: Vec<u8> = (0..100u8).collect();
    m.copy_in(50, &data).unwrap();
    let disk = tempfile::tempfile().unwrap();
    assert_eq!(m.pwrite_data(60, 80, disk.as_fd(), 7).unwrap(), 80);
    m.fill_data(0, 256, 0).unwrap();
    assert_eq!(m.pread_data(3, 200, disk.as_fd(), 0, 0).unwrap(), 87);
    let mut back = [0u8; 90];
    m.copy_out(3, &mut back).unwrap();
    assert!(back[..7].iter().all(|&b| b == 0));
    assert_eq!(&back[7..87], &data[10..90]);
    assert!(back[87..].iter().all(|&b| b == 0));
    assert_eq!(m.pread_data(0, 10, disk.as_fd(), 1000, 0).unwrap(), 0);
    assert!(m.pread_data(200, 57, disk.as_fd(), 0, 0).is_err());
    assert!(m.pwrite_data(usize::MAX, 2, disk.as_fd(), 0).is_err());
}

#[test]
fn zero_length_mapping_is_refused() {
    assert!(Mapping::new(&file(0), 0).is_err());
}

#[test]
fn pread_nowait_reads_cached_bytes_into_the_mapping() {
    use std::io::Write;
    use std::os::fd::AsFd;
    let m = Mapping::new(&file(256), 256).unwrap();
    let mut disk = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..64u8).collect();
    disk.write_all(&data).unwrap(); // just written: in the page cache
    match m.pread_data(10, 64, disk.as_fd(), 0, libc::RWF_NOWAIT) {
        Ok(n) => {
            assert_eq!(n, 64);
            let mut back = [0u8; 64];
            m.copy_out(10, &mut back).unwrap();
            assert_eq!(&back[..], &data[..]);
        }
        // A file system without RWF_NOWAIT reads: the caller falls back.
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}"),
    }
    assert!(
        m.pread_data(250, 64, disk.as_fd(), 0, libc::RWF_NOWAIT)
            .is_err(),
        "outside the mapping"
    );
}
