//! On-disk metadata format: keys, records, versions (see docs/pool-format.md).
//!
//! All metadata lives in one sled tree. Keys start with a one-byte tag;
//! integers in keys are big-endian so that sled's order is numeric order.

use serde::{Deserialize, Serialize};

use super::PoolError;

/// Format new pools get by default, and the one older pools migrate to.
pub const CURRENT_FORMAT: u32 = 3;
/// Format 2: one key per mapping and per referenced chunk. Still written on
/// request ([`crate::pool::PoolOptions::format`]) and by `restore`; open
/// migrates it to [`CURRENT_FORMAT`].
pub const LEGACY_FORMAT: u32 = 2;
/// Format 3: mappings in a copy-on-write page tree (issue 13). Written only
/// for pools created with [`crate::pool::PoolOptions::format`] = 3 for now.
pub const TREE_FORMAT: u32 = 3;
/// Newest metadata format this build reads and writes.
pub const NEWEST_FORMAT: u32 = TREE_FORMAT;

/// Key of the format version (value: u32 big-endian).
pub const KEY_FORMAT: &[u8] = b"format";
/// Key of the commit sequence number (value: u64 big-endian), bumped by
/// every commit; compared with the seal file at open.
pub const KEY_SEQ: &[u8] = b"seq";
/// Key of the superblock (value: postcard [`Superblock`]).
pub const KEY_SUPER: &[u8] = b"super";
/// Tag of catalog keys: `V` + volume name (UTF-8) -> postcard [`VolumeRecord`].
pub const TAG_VOLUME: u8 = b'V';
/// Tag of mapping keys: `M` + volume id (u64 BE) + logical chunk (u64 BE) -> chunk (u64 BE).
pub const TAG_MAP: u8 = b'M';
/// Tag of reference counts: `R` + chunk (u64 BE) -> count (u32 BE), present iff count > 0.
pub const TAG_REF: u8 = b'R';
/// Tag of free chunks below the high-water mark: `F` + chunk (u64 BE) -> empty.
pub const TAG_FREE: u8 = b'F';

/// Formats 2 and 3: `I` + volume id (u64 BE) -> the volume's 16-byte
/// identity (VPD 80h/83h). Keyed by id, so a rename keeps it; a volume
/// without one gets one at its first [`crate::pool::Pool::volume_identity`].
pub const TAG_IDENT: u8 = b'I';
/// Length of a volume identity.
pub const IDENT_LEN: usize = 16;

/// Format 3: `P` + page id (u64 BE) -> encoded [`super::page::Page`].
pub const TAG_PAGE: u8 = b'P';
/// Format 3: `Q` + page id (u64 BE) -> page reference count (u32 BE), present iff >= 2.
pub const TAG_PAGE_REFS: u8 = b'Q';
/// Format 3: `S` + space page (u32 BE) -> 4,096 one-byte chunk reference counts.
pub const TAG_SPACE: u8 = b'S';
/// Format 3: `T` + volume id (u64 BE) -> the volume's tree ([`TreeRecord::encode`]).
pub const TAG_TREE: u8 = b'T';
/// Format 3: `D` + job id (u64 BE) -> a delete job ([`TreeRecord::encode`]; `mapped` = cursor).
pub const TAG_DELETE: u8 = b'D';
/// Format 3: free count-0 chunks per space page (u16 BE each).
pub const KEY_SUMMARY: &[u8] = b"Z";
/// Format 3: next page id to hand out (u64 BE; ids are never reused).
pub const KEY_NEXT_PAGE: &[u8] = b"next_page";

/// Format 3: a tree as stored under `T` (volume) or `D` (delete job):
/// root page id (u64 BE, 0 = empty), depth (u8), and a u64 BE counter
/// (mapped chunks for a volume, the walk's cursor for a job): 17 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRecord {
    /// Root page id (0: empty).
    pub root: u64,
    /// Levels (1..=8).
    pub depth: u8,
    /// Mapped chunks (volume) or cursor (delete job).
    pub count: u64,
}

impl TreeRecord {
    /// The 17 stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&self.root.to_be_bytes());
        v.push(self.depth);
        v.extend_from_slice(&self.count.to_be_bytes());
        v
    }

    /// Decodes 17 stored bytes, naming `what` in the error.
    pub fn decode(b: &[u8], what: &str) -> Result<TreeRecord, PoolError> {
        if b.len() != 17 {
            return Err(PoolError::corrupt(format!(
                "{what}: expected 17 bytes, got {}",
                b.len()
            )));
        }
        Ok(TreeRecord {
            root: be_u64(&b[..8], what)?,
            depth: b[8],
            count: be_u64(&b[9..], what)?,
        })
    }
}

/// A tag byte followed by a big-endian u64 (format-3 `P`, `Q`, `T`, `D` keys).
pub fn id_key(tag: u8, id: u64) -> Vec<u8> {
    chunk_key(tag, id)
}

/// `S` key of a space page.
pub fn space_key(page: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(TAG_SPACE);
    k.extend_from_slice(&page.to_be_bytes());
    k
}

/// Pool-wide settings and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superblock {
    /// Chunk size in bytes (power of two, 4 KiB..=1 MiB).
    pub chunk_size: u32,
    /// Maximum number of chunks (data file's maximum size / chunk size).
    pub capacity_chunks: u64,
    /// Low-water mark: percentage of capacity allocated that raises an event.
    pub low_water_pct: u8,
    /// Chunks `0..hwm` have been handed out at least once; each is either
    /// referenced (`R` key) or free (`F` key).
    pub hwm: u64,
    /// Next volume id to hand out (ids are never reused).
    pub next_volume_id: u64,
}

/// What a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeKind {
    /// A writable volume (created or cloned).
    Volume,
    /// A read-only point-in-time snapshot.
    Snapshot,
}

/// One catalog entry (format 2; format 1 lacked `origin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Stable id used in mapping keys.
    pub id: u64,
    /// Logical size in bytes (multiple of `block_size`).
    pub size_bytes: u64,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Volume or snapshot.
    pub kind: VolumeKind,
    /// Id of the volume this snapshot was taken from, or of the snapshot
    /// this clone was made from (`None`: created empty, or unknown).
    pub origin: Option<u64>,
}

/// Encodes a value with postcard.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain structs into a Vec cannot fail.
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Decodes a value, naming `what` in the error.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, PoolError> {
    postcard::from_bytes(bytes).map_err(|e| PoolError::corrupt(format!("{what}: {e}")))
}

/// `M` key of a mapping.
pub fn map_key(vol: u64, lchunk: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(TAG_MAP);
    k.extend_from_slice(&vol.to_be_bytes());
    k.extend_from_slice(&lchunk.to_be_bytes());
    k
}

/// `R` or `F` key of a chunk.
pub fn chunk_key(tag: u8, chunk: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(tag);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Catalog key of a name.
pub fn volume_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(TAG_VOLUME);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads a big-endian u64 from exactly 8 bytes.
pub fn be_u64(b: &[u8], what: &str) -> Result<u64, PoolError> {
    let a: [u8; 8] = b
        .try_into()
        .map_err(|_| PoolError::corrupt(format!("{what}: expected 8 bytes, got {}", b.len())))?;
    Ok(u64::from_be_bytes(a))
}

/// Reads a big-endian u32 from exactly 4 bytes.
pub fn be_u32(b: &[u8], what: &str) -> Result<u32, PoolError> {
    let a: [u8; 4] = b
        .try_into()
        .map_err(|_| PoolError::corrupt(format!("{what}: expected 4 bytes, got {}", b.len())))?;
    Ok(u32::from_be_bytes(a))
}

/// A decoded metadata key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The format version.
    Format,
    /// The superblock.
    Super,
    /// The commit sequence number.
    Seq,
    /// A catalog entry.
    Volume(String),
    /// A mapping (volume id, logical chunk).
    Map(u64, u64),
    /// A reference count.
    Ref(u64),
    /// A free chunk.
    Free(u64),
    /// A volume's identity (volume id).
    Ident(u64),
}

/// Parses a key; `None` for keys this format does not know.
pub fn parse_key(k: &[u8]) -> Option<Key> {
    if k == KEY_FORMAT {
        return Some(Key::Format);
    }
    if k == KEY_SUPER {
        return Some(Key::Super);
    }
    if k == KEY_SEQ {
        return Some(Key::Seq);
    }
    let (&tag, rest) = k.split_first()?;
    let u = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
    match tag {
        TAG_VOLUME => String::from_utf8(rest.to_vec()).ok().map(Key::Volume),
        TAG_MAP if rest.len() == 16 => Some(Key::Map(u(&rest[..8])?, u(&rest[8..])?)),
        TAG_REF if rest.len() == 8 => u(rest).map(Key::Ref),
        TAG_FREE if rest.len() == 8 => u(rest).map(Key::Free),
        TAG_IDENT if rest.len() == 8 => u(rest).map(Key::Ident),
        _ => None,
    }
}
