//! Format 1 -> 2: catalog records gain `origin`, the id of the volume a
//! snapshot was taken from or of the snapshot a clone was made from. Records
//! written by format 1 get `None` (origin unknown).

use serde::Deserialize;

use crate::pool::format::{self, Key, VolumeKind, VolumeRecord};
use crate::pool::store::Change;
use crate::pool::PoolError;

/// The catalog record as format 1 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub(crate) struct RecordV1 {
    pub id: u64,
    pub size_bytes: u64,
    pub block_size: u32,
    pub kind: VolumeKind,
}

/// Rewrites every catalog record in the format-2 layout.
pub(crate) fn run(kvs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Change>, PoolError> {
    let mut out = Vec::new();
    for (k, v) in kvs {
        if let Some(Key::Volume(name)) = format::parse_key(k) {
            let old: RecordV1 = format::decode(v, &format!("format-1 volume {name:?}"))?;
            let new = VolumeRecord {
                id: old.id,
                size_bytes: old.size_bytes,
                block_size: old.block_size,
                kind: old.kind,
                origin: None,
            };
            out.push((k.clone(), Some(format::encode(&new))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_records_become_v2_with_unknown_origin() {
        let v1 = RecordV1 {
            id: 7,
            size_bytes: 1 << 20,
            block_size: 4096,
            kind: VolumeKind::Snapshot,
        };
        let kvs = vec![
            (format::volume_key("snap"), format::encode(&v1)),
            (format::map_key(7, 0), 3u64.to_be_bytes().to_vec()),
        ];
        let changes = run(&kvs).unwrap();
        assert_eq!(changes.len(), 1, "only catalog records change");
        let (k, v) = &changes[0];
        assert_eq!(k, &format::volume_key("snap"));
        let rec: VolumeRecord = format::decode(v.as_ref().unwrap(), "v2").unwrap();
        assert_eq!(
            rec,
            VolumeRecord {
                id: 7,
                size_bytes: 1 << 20,
                block_size: 4096,
                kind: VolumeKind::Snapshot,
                origin: None
            }
        );
    }

    #[test]
    fn garbage_record_is_a_corruption_error() {
        let kvs = vec![(format::volume_key("x"), vec![0xff])];
        assert!(matches!(run(&kvs), Err(e) if e.kind() == crate::pool::PoolErrorKind::Corrupt));
    }
}
