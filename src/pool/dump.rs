//! `tcmud pool dump` / `tcmud pool restore` (like thin_dump /
//! thin_restore): the whole metadata of a pool as one document and back.
//!
//! [`PoolDump`] is the document (JSON in the command line; every field is
//! described in `docs/pool-format.md`). A dump is taken read-only by
//! [`inspect`](super::inspect::inspect), so a damaged pool can be dumped
//! too: what decodes is in the document, what does not is listed in
//! `undecoded` and `orphan_mappings`. [`restore`] validates a document
//! fully before it writes anything, recomputes reference counts and free
//! entries from the mappings (saying where they differ from the
//! document's), and writes a new `meta/` next to an existing data file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalog::validate_name;
use super::check::{CheckReport, Metadata};
use super::format::{self, Superblock, VolumeKind, VolumeRecord, IDENT_LEN, LEGACY_FORMAT};
use super::inspect::Inspection;
use super::lock::PoolLock;
use super::open::{DATA_FILE, MARKER_FILE, META_DIR};
use super::seal::{Seal, SEAL_FILE};
use super::state::validate_super;
use super::store::{Change, MetaStore, SledStore};
use super::{Pool, PoolError};

/// Version of the dump document this build writes and reads.
pub const DUMP_VERSION: u32 = 1;

/// The whole metadata of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDump {
    /// Document version ([`DUMP_VERSION`]).
    pub tcmud_pool_dump: u32,
    /// Metadata format the pool had on disk (informational; a restore
    /// writes the current format).
    pub format: Option<u32>,
    /// Commit sequence number (0 if the pool had none).
    pub seq: u64,
    /// Length of the data file when dumped (informational).
    pub data_file_bytes: u64,
    /// Pool settings and counters (`None` when it did not decode).
    pub superblock: Option<DumpSuperblock>,
    /// Every volume and snapshot, by name.
    pub volumes: Vec<DumpVolume>,
    /// Stored reference counts: runs `[first chunk, chunks, count]`.
    pub refcounts: Vec<[u64; 3]>,
    /// Chunks marked free: runs `[first chunk, chunks]`.
    pub free: Vec<[u64; 2]>,
    /// Mappings of volume ids no catalog entry has (not restored).
    pub orphan_mappings: Vec<DumpOrphans>,
    /// Records that did not decode (not restored).
    pub undecoded: Vec<DumpUndecoded>,
}

/// The superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpSuperblock {
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Maximum number of chunks.
    pub capacity_chunks: u64,
    /// Low-water mark in percent.
    pub low_water_pct: u8,
    /// Chunks `0..hwm` have been handed out.
    pub hwm: u64,
    /// Next volume id to hand out.
    pub next_volume_id: u64,
}

/// Volume or snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpKind {
    /// Writable volume.
    Volume,
    /// Read-only snapshot.
    Snapshot,
}

/// One catalog entry with its mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpVolume {
    /// Name.
    pub name: String,
    /// Id (used by mappings and origins).
    pub id: u64,
    /// Volume or snapshot.
    pub kind: DumpKind,
    /// Logical size in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Id of the volume or snapshot it was made from.
    pub origin: Option<u64>,
    /// Name of that origin when it still exists (informational).
    #[serde(default)]
    pub origin_name: Option<String>,
    /// Runs `[first logical chunk, first chunk, chunks]`: logical chunk
    /// `l + i` maps to chunk `c + i` for `i < n`.
    pub mappings: Vec<[u64; 3]>,
    /// The volume's identity (32 hex digits; absent: none stored, one is
    /// made at its first open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Mappings of a volume id that has no catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpOrphans {
    /// The volume id in the keys.
    pub volume_id: u64,
    /// Runs as in [`DumpVolume::mappings`].
    pub mappings: Vec<[u64; 3]>,
}

/// A record that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpUndecoded {
    /// Key bytes in hex.
    pub key_hex: String,
    /// Value bytes in hex.
    pub value_hex: String,
    /// Why it did not decode.
    pub problem: String,
}

/// 32 hex digits as an identity.
fn parse_identity(h: &str) -> Option<[u8; IDENT_LEN]> {
    if h.len() != 2 * IDENT_LEN || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; IDENT_LEN];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs of (logical, chunk) pairs sorted by logical chunk.
fn map_runs(pairs: impl Iterator<Item = (u64, u64)>) -> Vec<[u64; 3]> {
    let mut out: Vec<[u64; 3]> = Vec::new();
    for (l, c) in pairs {
        if let Some(last) = out.last_mut() {
            if last[0].checked_add(last[2]) == Some(l) && last[1].checked_add(last[2]) == Some(c) {
                last[2] += 1;
                continue;
            }
        }
        out.push([l, c, 1]);
    }
    out
}

impl PoolDump {
    /// The document of what an inspection decoded.
    pub fn from_inspection(insp: &Inspection) -> PoolDump {
        let m: &Metadata = &insp.metadata;
        let names: BTreeMap<u64, &str> =
            m.volumes.iter().map(|(n, r)| (r.id, n.as_str())).collect();
        let mut by_vol: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for &(v, l, c) in &m.mappings {
            by_vol.entry(v).or_default().push((l, c));
        }
        let volumes = m
            .volumes
            .iter()
            .map(|(name, r)| DumpVolume {
                name: name.clone(),
                id: r.id,
                kind: match r.kind {
                    VolumeKind::Volume => DumpKind::Volume,
                    VolumeKind::Snapshot => DumpKind::Snapshot,
                },
                size_bytes: r.size_bytes,
                block_size: r.block_size,
                origin: r.origin,
                origin_name: r.origin.and_then(|o| names.get(&o)).map(|n| n.to_string()),
                mappings: map_runs(by_vol.get(&r.id).into_iter().flatten().copied()),
                identity: m.identities.get(&r.id).map(|i| hex(i)),
            })
            .collect();
        let orphan_mappings = by_vol
            .iter()
            .filter(|(id, _)| !names.contains_key(id))
            .map(|(&volume_id, pairs)| DumpOrphans {
                volume_id,
                mappings: map_runs(pairs.iter().copied()),
            })
            .collect();
        let mut refcounts: Vec<[u64; 3]> = Vec::new();
        for (&c, &n) in &m.refcounts {
            match refcounts.last_mut() {
                Some(last) if last[0] + last[1] == c && last[2] == u64::from(n) => last[1] += 1,
                _ => refcounts.push([c, 1, u64::from(n)]),
            }
        }
        let mut free: Vec<[u64; 2]> = Vec::new();
        for &c in &m.free {
            match free.last_mut() {
                Some(last) if last[0] + last[1] == c => last[1] += 1,
                _ => free.push([c, 1]),
            }
        }
        PoolDump {
            tcmud_pool_dump: DUMP_VERSION,
            format: insp.format_on_disk,
            seq: m.seq.unwrap_or(0),
            data_file_bytes: insp.data_len,
            superblock: m.superblock.map(|sb| DumpSuperblock {
                chunk_size: sb.chunk_size,
                capacity_chunks: sb.capacity_chunks,
                low_water_pct: sb.low_water_pct,
                hwm: sb.hwm,
                next_volume_id: sb.next_volume_id,
            }),
            volumes,
            refcounts,
            free,
            orphan_mappings,
            undecoded: m
                .undecoded
                .iter()
                .map(|u| DumpUndecoded {
                    key_hex: hex(&u.key),
                    value_hex: hex(&u.value),
                    problem: u.problem.to_string(),
                })
                .collect(),
        }
    }
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace an existing, non-empty `meta/` (and its seal).
    pub force: bool,
    /// A data file to copy into the pool directory (which must not have
    /// one); `None`: use the pool directory's `data`.
    pub data: Option<PathBuf>,
}

/// What a restore wrote and found.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Catalog entries written.
    pub volumes: u64,
    /// Mappings written.
    pub mappings: u64,
    /// Chunks below the high-water mark.
    pub chunks: u64,
    /// Where the written metadata differs from the document, and what was
    /// left out.
    pub notes: Vec<String>,
    /// A check of the restored pool (opened normally).
    pub check: CheckReport,
}

fn invalid(s: String) -> PoolError {
    PoolError::invalid_argument(format!("dump document: {s}"))
}

/// The keys of a validated document, and the notes on it.
fn document_keys(doc: &PoolDump, data_len: u64) -> Result<(Vec<Change>, RestoreReport), PoolError> {
    if doc.tcmud_pool_dump != DUMP_VERSION {
        return Err(invalid(format!(
            "version {} (this tcmud reads version {DUMP_VERSION})",
            doc.tcmud_pool_dump
        )));
    }
    let d = doc.superblock.ok_or_else(|| {
        invalid("no superblock (write one by hand: see docs/pool-format.md)".into())
    })?;
    let sb = Superblock {
        chunk_size: d.chunk_size,
        capacity_chunks: d.capacity_chunks,
        low_water_pct: d.low_water_pct,
        hwm: d.hwm,
        next_volume_id: d.next_volume_id,
    };
    validate_super(&sb).map_err(|e| invalid(e.to_string()))?;
    let cs = u64::from(sb.chunk_size);
    if data_len < sb.hwm * cs {
        return Err(invalid(format!(
            "hwm {} needs a data file of {} bytes, the data file has {data_len}",
            sb.hwm,
            sb.hwm * cs
        )));
    }
    let mut report = RestoreReport {
        chunks: sb.hwm,
        ..Default::default()
    };
    let mut keys: Vec<Change> = vec![
        (
            format::KEY_FORMAT.to_vec(),
            Some(LEGACY_FORMAT.to_be_bytes().to_vec()),
        ),
        (
            format::KEY_SEQ.to_vec(),
            Some(doc.seq.to_be_bytes().to_vec()),
        ),
        (format::KEY_SUPER.to_vec(), Some(format::encode(&sb))),
    ];
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut identities = BTreeSet::new();
    let mut counted: Vec<u32> =
        vec![0; usize::try_from(sb.hwm).map_err(|_| invalid("hwm too large".into()))?];
    for v in &doc.volumes {
        let at = |s: String| invalid(format!("volume {:?}: {s}", v.name));
        validate_name(&v.name).map_err(|e| at(e.to_string()))?;
        if !names.insert(v.name.as_str()) {
            return Err(at("name used twice".into()));
        }
        if !ids.insert(v.id) {
            return Err(at(format!("id {} used twice", v.id)));
        }
        if v.id >= sb.next_volume_id {
            return Err(at(format!(
                "id {} is not below next_volume_id {}",
                v.id, sb.next_volume_id
            )));
        }
        if v.block_size != 512 && v.block_size != 4096 {
            return Err(at(format!("block size {} (512 or 4096)", v.block_size)));
        }
        if v.size_bytes == 0
            || v.size_bytes % u64::from(v.block_size) != 0
            || v.size_bytes > 1 << 60
        {
            return Err(at(format!(
                "size {} is not a non-zero multiple of the block size",
                v.size_bytes
            )));
        }
        if let Some(o) = v.origin {
            if o >= sb.next_volume_id || o == v.id {
                return Err(at(format!("origin id {o} was never another volume's")));
            }
        }
        let rec = VolumeRecord {
            id: v.id,
            size_bytes: v.size_bytes,
            block_size: v.block_size,
            kind: match v.kind {
                DumpKind::Volume => VolumeKind::Volume,
                DumpKind::Snapshot => VolumeKind::Snapshot,
            },
            origin: v.origin,
        };
        keys.push((format::volume_key(&v.name), Some(format::encode(&rec))));
        if let Some(h) = &v.identity {
            let id = parse_identity(h).ok_or_else(|| {
                at(format!(
                    "identity {h:?} is not {} hex digits",
                    2 * IDENT_LEN
                ))
            })?;
            if !identities.insert(id) {
                return Err(at(format!("identity {h} used twice")));
            }
            keys.push((format::id_key(format::TAG_IDENT, v.id), Some(id.to_vec())));
        }
        let lchunks = v.size_bytes.div_ceil(cs);
        let mut seen = BTreeSet::new();
        for &[l, c, n] in &v.mappings {
            let end_l = l.checked_add(n).filter(|&e| n > 0 && e <= lchunks);
            let end_c = c.checked_add(n).filter(|&e| e <= sb.hwm);
            if end_l.is_none() {
                return Err(at(format!(
                    "mapping run [{l}, {c}, {n}] lies outside the volume's {lchunks} chunks"
                )));
            }
            if end_c.is_none() {
                return Err(at(format!(
                    "mapping run [{l}, {c}, {n}] points past the high-water mark {}",
                    sb.hwm
                )));
            }
            for i in 0..n {
                if !seen.insert(l + i) {
                    return Err(at(format!("logical chunk {} mapped twice", l + i)));
                }
                // c + i < hwm (checked above), the length of `counted`
                match usize::try_from(c + i).ok().and_then(|k| counted.get_mut(k)) {
                    Some(n) => *n += 1,
                    None => return Err(at(format!("chunk {} past the high-water mark", c + i))),
                }
                keys.push((
                    format::map_key(v.id, l + i),
                    Some((c + i).to_be_bytes().to_vec()),
                ));
                report.mappings += 1;
            }
        }
        report.volumes += 1;
    }
    let mut doc_refs: BTreeMap<u64, u64> = BTreeMap::new();
    for &[c, n, count] in &doc.refcounts {
        for i in 0..n.min(sb.hwm.saturating_add(1)) {
            doc_refs.insert(c.saturating_add(i), count);
        }
    }
    let mut doc_free: BTreeSet<u64> = BTreeSet::new();
    for &[c, n] in &doc.free {
        for i in 0..n.min(sb.hwm.saturating_add(1)) {
            doc_free.insert(c.saturating_add(i));
        }
    }
    let (mut ref_diff, mut free_diff) = (0u64, 0u64);
    for (c, &n) in counted.iter().enumerate() {
        let c = c as u64;
        if doc_refs.get(&c).copied().unwrap_or(0) != u64::from(n) {
            ref_diff += 1;
        }
        if doc_free.contains(&c) != (n == 0) {
            free_diff += 1;
        }
        if n > 0 {
            keys.push((
                format::chunk_key(format::TAG_REF, c),
                Some(n.to_be_bytes().to_vec()),
            ));
        } else {
            keys.push((format::chunk_key(format::TAG_FREE, c), Some(Vec::new())));
        }
    }
    ref_diff += doc_refs.keys().filter(|&&c| c >= sb.hwm).count() as u64;
    free_diff += doc_free.iter().filter(|&&c| c >= sb.hwm).count() as u64;
    report.notes.push(if ref_diff == 0 && free_diff == 0 {
        "reference counts and free chunks recomputed from the mappings: the document's agree".into()
    } else {
        format!(
            "reference counts and free chunks recomputed from the mappings: {ref_diff} reference \
             count(s) and {free_diff} free entr(y/ies) of the document differed and were not used"
        )
    });
    if !doc.orphan_mappings.is_empty() {
        let n: u64 = doc
            .orphan_mappings
            .iter()
            .flat_map(|o| o.mappings.iter().map(|r| r[2]))
            .sum();
        report.notes.push(format!(
            "{n} mapping(s) of volume ids without a catalog entry (orphan_mappings) not restored"
        ));
    }
    if !doc.undecoded.is_empty() {
        report.notes.push(format!(
            "{} undecoded record(s) not restored",
            doc.undecoded.len()
        ));
    }
    Ok((keys, report))
}

/// Writes the metadata of `doc` as a new pool in `dir` next to its data
/// file (or a copy of `opts.data`), then opens the pool normally, checks
/// and closes it. Nothing is written when the document does not validate.
pub fn restore(
    dir: &Path,
    doc: &PoolDump,
    opts: &RestoreOptions,
) -> Result<RestoreReport, PoolError> {
    let meta = dir.join(META_DIR);
    let data = dir.join(DATA_FILE);
    let meta_used = fs::read_dir(&meta)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if meta_used && !opts.force {
        return Err(PoolError::already_exists(meta));
    }
    let data_len = match &opts.data {
        Some(src) => {
            if data.exists() {
                return Err(PoolError::invalid_argument(format!(
                    "{} already has a data file; restore uses it without --data",
                    dir.display()
                )));
            }
            fs::metadata(src)
                .map_err(|e| PoolError::io(format!("reading {}", src.display()), e))?
                .len()
        }
        None => fs::metadata(&data)
            .map_err(|e| PoolError::io(format!("reading {}", data.display()), e))?
            .len(),
    };
    let (keys, mut report) = document_keys(doc, data_len)?;
    fs::create_dir_all(dir).map_err(|e| PoolError::io(format!("creating {}", dir.display()), e))?;
    {
        let _lock = PoolLock::acquire(dir)?;
        if let Some(src) = &opts.data {
            fs::copy(src, &data).map_err(|e| {
                PoolError::io(
                    format!("copying {} to {}", src.display(), data.display()),
                    e,
                )
            })?;
        }
        if meta_used {
            fs::remove_dir_all(&meta)
                .map_err(|e| PoolError::io(format!("removing {}", meta.display()), e))?;
        }
        match fs::remove_file(dir.join(SEAL_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PoolError::io("removing the old seal", e)),
        }
        let store = SledStore::open(&meta)?;
        let res = store.commit(keys);
        let closed = store.close();
        res?;
        closed?;
        if !dir.join(MARKER_FILE).exists() {
            fs::write(dir.join(MARKER_FILE), super::open::MARKER_TEXT)
                .map_err(|e| PoolError::io("writing the pool marker", e))?;
        }
        let cs = u64::from(doc.superblock.map_or(0, |s| s.chunk_size));
        Seal {
            // format 2 keys: the open below migrates them to the current format
            format: LEGACY_FORMAT,
            seq: doc.seq,
            data_len: doc.superblock.map_or(0, |s| s.hwm) * cs,
            closed_crc: None,
        }
        .write(dir, true)
        .map_err(|e| PoolError::io("writing the seal", e))?;
    }
    let pool = Pool::open(dir)?;
    report.check = pool.check()?;
    pool.close()?;
    Ok(report)
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn doc(identities: [Option<&str>; 2]) -> PoolDump {
        let vol = |name: &str, id: u64, identity: Option<&str>| DumpVolume {
            name: name.into(),
            id,
            kind: DumpKind::Volume,
            size_bytes: 4096,
            block_size: 512,
            origin: None,
            origin_name: None,
            mappings: Vec::new(),
            identity: identity.map(str::to_owned),
        };
        PoolDump {
            tcmud_pool_dump: DUMP_VERSION,
            format: Some(3),
            seq: 1,
            data_file_bytes: 0,
            superblock: Some(DumpSuperblock {
                chunk_size: 4096,
                capacity_chunks: 16,
                low_water_pct: 90,
                hwm: 0,
                next_volume_id: 2,
            }),
            volumes: vec![vol("a", 0, identities[0]), vol("b", 1, identities[1])],
            refcounts: Vec::new(),
            free: Vec::new(),
            orphan_mappings: Vec::new(),
            undecoded: Vec::new(),
        }
    }

    #[test]
    fn identities_are_restored_and_bad_ones_refused() {
        let a = "00112233445566778899aabbccddeeff";
        let (keys, _) = document_keys(&doc([Some(a), None]), 0).unwrap();
        let idents: Vec<_> = keys
            .iter()
            .filter(|(k, _)| k[0] == format::TAG_IDENT)
            .collect();
        assert_eq!(idents.len(), 1);
        assert_eq!(
            *idents[0],
            (
                format::id_key(format::TAG_IDENT, 0),
                Some(vec![
                    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                    0xdd, 0xee, 0xff
                ],)
            )
        );
        for bad in [
            "0011",
            "+0112233445566778899aabbccddeeff",
            "zz112233445566778899aabbccddeeff",
        ] {
            let e = document_keys(&doc([Some(bad), None]), 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not 32 hex digits"), "{bad}: {e}");
        }
        let e = document_keys(&doc([Some(a), Some(a)]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }
}
