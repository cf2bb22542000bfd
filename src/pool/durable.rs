//! fsync helpers: one file or directory by path, and the entries of a
//! directory that appeared since it was last synced (sled creates its
//! config file, snapshots and blobs without syncing their directory).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// fsyncs a file or directory (opened read-only: Linux syncs the inode and
/// reports write-back errors on any descriptor).
pub(crate) fn sync_path(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// fsyncs the directory holding `p` (the entry of `p` in it is durable).
pub(crate) fn sync_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => sync_path(d),
        _ => sync_path(Path::new(".")),
    }
}

/// The entries of one directory already made durable.
#[derive(Debug)]
pub(crate) struct DirSync {
    dir: PathBuf,
    synced: BTreeSet<OsString>,
}

impl DirSync {
    /// Nothing of `dir` is known to be durable yet.
    pub(crate) fn new(dir: PathBuf) -> DirSync {
        DirSync {
            dir,
            synced: BTreeSet::new(),
        }
    }

    /// When the directory's entries differ from those synced last time:
    /// fsyncs every new file, then the directory itself (new names and
    /// removals durable). Entries that vanish meanwhile (a snapshot sled
    /// renamed or removed) are skipped: the directory sync covers that.
    /// A missing directory has nothing to sync.
    pub(crate) fn sync_changes(&mut self) -> io::Result<()> {
        let names: BTreeSet<OsString> = match std::fs::read_dir(&self.dir) {
            Ok(it) => it
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if names == self.synced {
            return Ok(());
        }
        for n in names.difference(&self.synced) {
            let p = self.dir.join(n);
            if p.is_dir() {
                continue;
            }
            match sync_path(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sync_path(&self.dir)?;
        self.synced = names;
        Ok(())
    }
}
