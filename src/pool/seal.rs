//! The seal: a small text file next to sled (`meta.seal`) that lets `open`
//! validate the metadata *before* sled touches it.
//!
//! sled recovers a damaged log by cutting it at the first bad message and
//! zeroing what follows, silently dropping later commits. So the seal
//! records, at every commit, the sequence number of the commit before it
//! (durable in sled already: a commit writes the seal beside its own sled
//! work, so that the two syncs overlap) and the data file length the
//! metadata needs; on a clean close the last commit's number and a CRC-32 of
//! every file in `meta/`. `open` checks the data file length and, after a
//! clean close, the checksum before opening sled (a damaged pool is refused
//! with nothing changed on disk); after a crash (no checksum) it compares
//! sled's sequence number with the seal's once sled is open.
//!
//! Rewritten in place and synced (`fdatasync`) at every commit, beside its
//! sled flush and fsyncs (so it trails sled by one commit: sled losing only
//! its last commit goes unnoticed); the first write of a seal also syncs the pool
//! directory, so that the file's name is durable too. A lost update would
//! only make the seal older, which is never mistaken for damage, but an
//! unsynced *new* seal can come back empty after a power cut, and open
//! refuses an unreadable seal.

use std::fs;
use std::io;
use std::path::Path;

use super::PoolError;

/// File name of the seal inside the pool directory.
pub const SEAL_FILE: &str = "meta.seal";

/// Contents of the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Metadata format of the pool.
    pub format: u32,
    /// Sequence number of the last commit.
    pub seq: u64,
    /// Bytes of data file the committed metadata needs.
    pub data_len: u64,
    /// CRC-32 of `meta/` after a clean close; `None` while open or after a crash.
    pub closed_crc: Option<u32>,
}

impl Seal {
    /// Text form.
    pub fn render(&self) -> String {
        let state = match self.closed_crc {
            Some(crc) => format!("closed {crc:08x}"),
            None => "open".to_string(),
        };
        format!(
            "tcmud-seal 1\nformat {}\nseq {}\ndata_len {}\nstate {state}\n",
            self.format, self.seq, self.data_len
        )
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Option<Seal> {
        let mut lines = text.lines();
        if lines.next()? != "tcmud-seal 1" {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let l = lines.next()?;
            l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string)
        };
        let format = field("format")?.parse().ok()?;
        let seq = field("seq")?.parse().ok()?;
        let data_len = field("data_len")?.parse().ok()?;
        let state = field("state")?;
        let closed_crc = match state.as_str() {
            "open" => None,
            s => Some(u32::from_str_radix(s.strip_prefix("closed ")?, 16).ok()?),
        };
        Some(Seal {
            format,
            seq,
            data_len,
            closed_crc,
        })
    }

    /// Reads the seal of a pool; `Ok(None)` when there is none (pools made
    /// by format 1).
    pub fn read(dir: &Path) -> Result<Option<Seal>, PoolError> {
        let p = dir.join(SEAL_FILE);
        match fs::read_to_string(&p) {
            Ok(s) => Seal::parse(&s)
                .map(Some)
                .ok_or_else(|| PoolError::corrupt(format!("{} is unreadable", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PoolError::io(format!("reading {}", p.display()), e)),
        }
    }

    /// Writes the seal; with `sync` it is durable on return (its contents,
    /// and its name in `dir` when this write created it).
    pub fn write(&self, dir: &Path, sync: bool) -> io::Result<()> {
        let p = dir.join(SEAL_FILE);
        let created = !p.exists();
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)?;
        let text = self.render();
        use std::os::unix::fs::FileExt;
        // Pad to a fixed size so that an update never leaves a longer tail.
        let mut buf = text.into_bytes();
        buf.resize(128, b'\n');
        f.write_all_at(&buf, 0)?;
        if sync {
            f.sync_data()?;
            if created {
                super::durable::sync_path(dir)?;
            }
        }
        Ok(())
    }
}

/// CRC-32 over every file in `meta` (names sorted; name, length, bytes).
pub fn meta_crc(meta: &Path) -> io::Result<u32> {
    let mut names: Vec<_> = fs::read_dir(meta)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut h = crc32fast::Hasher::new();
    for n in names {
        let p = meta.join(&n);
        if !p.is_file() {
            continue;
        }
        let bytes = fs::read(&p)?;
        h.update(n.as_encoded_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for s in [
            Seal {
                format: 2,
                seq: 9,
                data_len: 65536,
                closed_crc: None,
            },
            Seal {
                format: 2,
                seq: 0,
                data_len: 0,
                closed_crc: Some(0xdead_beef),
            },
        ] {
            let mut text = s.render();
            text.push_str("\n\n\n");
            assert_eq!(Seal::parse(&text), Some(s));
        }
        assert_eq!(Seal::parse("tcmud-seal 1\nformat x\n"), None);
        assert_eq!(Seal::parse(""), None);
    }
}
