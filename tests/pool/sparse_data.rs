//! `PoolOptions::sparse_data`: a partial write into a fresh chunk past the
//! data file's end takes host space for the bytes written, not the whole
//! chunk (the default preallocates the chunk); the data reads back, the
//! rest of the chunk reads as zeros, and later overwrites of the rest land.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::util::narrow::{fit, LowByte};
use tcmud_core::backend::BlockBackend;
use tcmud_core::pool::{Pool, PoolConfig, PoolOptions};

const CHUNK: u64 = 64 << 10;
const BLOCK: u32 = 4096;
const CHUNKS: u64 = 64;

fn pattern(tag: u8) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| i.low_byte().wrapping_mul(31) ^ tag)
        .collect()
}

/// Bytes of host space the pool's data file takes (st_blocks).
fn data_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("data")).unwrap().blocks() * 512
}

/// A pool of 64 KiB chunks with one 4 KiB write at the start of each of
/// 64 chunks, flushed; returns the host space its data file takes.
fn write_one_block_per_chunk(dir: &Path, sparse_data: bool) -> u64 {
    let cfg = PoolConfig {
        chunk_size: fit(CHUNK),
        capacity_bytes: 1024 * CHUNK,
        low_water_pct: 100,
    };
    let opts = PoolOptions {
        sparse_data,
        ..PoolOptions::default()
    };
    let pool = Pool::create_opts(dir, &cfg, &opts).unwrap();
    pool.create_volume("v", CHUNKS * CHUNK, BLOCK).unwrap();
    let v = pool.open_volume("v").unwrap();
    let per_chunk = CHUNK / u64::from(BLOCK);
    for l in 0..CHUNKS {
        v.write(l * per_chunk, &pattern(l.low_byte()), false)
            .unwrap();
    }
    v.flush().unwrap();
    let used = data_bytes(dir);
    // What was written reads back; the rest of each chunk reads as zeros,
    // and an overwrite there (in place now) lands.
    let mut b = vec![0u8; BLOCK as usize];
    for l in 0..CHUNKS {
        v.read(l * per_chunk, &mut b).unwrap();
        assert_eq!(b, pattern(l.low_byte()), "chunk {l}");
        v.read(l * per_chunk + 5, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0), "chunk {l}: rest not zeros");
    }
    v.write(3 * per_chunk + 7, &pattern(0xee), false).unwrap();
    v.flush().unwrap();
    v.read(3 * per_chunk + 7, &mut b).unwrap();
    assert_eq!(b, pattern(0xee));
    drop(v);
    pool.close().unwrap();
    used
}

#[test]
fn sparse_data_takes_host_space_for_the_bytes_written_only() {
    let t = tempfile::tempdir().unwrap();
    let sparse = write_one_block_per_chunk(&t.path().join("sparse"), true);
    let full = write_one_block_per_chunk(&t.path().join("full"), false);
    let written = CHUNKS * u64::from(BLOCK);
    // Whole chunks by default (fallocate), a block per chunk when sparse
    // (file systems may add a little: allow one chunk's worth).
    assert!(full >= CHUNKS * CHUNK, "default pool took {full} bytes");
    assert!(
        sparse <= written + CHUNK,
        "sparse pool took {sparse} bytes for {written} written"
    );
}

#[test]
fn sparse_data_pool_reopens_with_its_data() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    write_one_block_per_chunk(&dir, true);
    let pool = Pool::open_opts(
        &dir,
        &PoolOptions {
            sparse_data: true,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let v = pool.open_volume("v").unwrap();
    let per_chunk = CHUNK / u64::from(BLOCK);
    let mut b = vec![0u8; BLOCK as usize];
    for l in [0, 3, CHUNKS - 1] {
        v.read(l * per_chunk, &mut b).unwrap();
        assert_eq!(b, pattern(l.low_byte()), "chunk {l}");
    }
    v.read(3 * per_chunk + 7, &mut b).unwrap();
    assert_eq!(b, pattern(0xee));
}
