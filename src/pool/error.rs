//! Typed errors of the pool layer.

use std::io;
use std::path::PathBuf;

use crate::backend::BackendError;

/// Everything that can go wrong in a pool; each variant names what and where.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The path does not exist or is not a tcmud pool directory.
    #[error("{path} is not a tcmud pool: {why}")]
    NotAPool {
        /// The directory given.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// `create` found an existing pool (or a non-empty directory).
    #[error("{0} already holds a pool or other files")]
    AlreadyExists(PathBuf),
    /// Another process (or another handle in this process) holds the pool.
    #[error("pool {path} is held by process {pid}")]
    Locked {
        /// The pool directory.
        path: PathBuf,
        /// Pid written in the lock file by the holder (0 if unreadable).
        pid: u32,
    },
    /// The pool was written by a newer tcmud.
    #[error(
        "pool format {found} is newer than this tcmud supports (format {supported}); upgrade tcmud"
    )]
    FormatTooNew {
        /// Format stored in the pool.
        found: u32,
        /// Newest format this build understands.
        supported: u32,
    },
    /// The metadata database is damaged or unreadable.
    #[error("pool metadata is corrupt: {0}")]
    Corrupt(String),
    /// The data file is shorter than the metadata requires.
    #[error("data file is {actual} bytes but the metadata needs at least {needed}")]
    DataFileShort {
        /// Bytes needed by the allocated chunks.
        needed: u64,
        /// Actual length.
        actual: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// An argument (name, size, block size) is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No volume or snapshot of that name.
    #[error("no volume named {0:?}")]
    NoSuchVolume(String),
    /// The name is taken.
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    /// The volume is open (served) and cannot be deleted now.
    #[error("volume {0:?} is in use")]
    VolumeBusy(String),
    /// A shrink was requested without force.
    #[error("shrinking volume {0:?} loses data; pass force to do it")]
    ShrinkNotForced(String),
    /// The operation needs a writable volume, not a snapshot (or vice versa).
    #[error("{0}")]
    WrongKind(String),
    /// No free chunk left.
    #[error("no free space left in the pool")]
    OutOfSpace,
    /// The metadata store failed.
    #[error("metadata store error: {0}")]
    Store(String),
    /// A sync of the pool's data or metadata failed earlier: the pool
    /// commits nothing more and refuses writes until it is reopened.
    #[error(
        "pool {pool} has failed ({why}); it refuses writes until it is reopened, \
         which verifies it"
    )]
    Failed {
        /// The pool directory.
        pool: String,
        /// The failure that put it in this state.
        why: String,
        /// That failure was the host file system being full.
        out_of_space: bool,
    },
    /// The pool was not closed cleanly and its metadata does not add up
    /// (reference counts or free list against the mappings): opening it
    /// read-write could hand out a chunk still in use.
    #[error(
        "pool {path} was not shut down cleanly and its metadata is inconsistent \
         ({problems} problems; first: {first}); it cannot be opened read-write: \
         run `tcmud pool check {path}` and repair it"
    )]
    NeedsRepair {
        /// The pool directory.
        path: PathBuf,
        /// Number of problems found.
        problems: usize,
        /// The first one.
        first: String,
    },
    /// I/O on the pool directory or data file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl PoolError {
    /// Wraps an I/O error with a description of the operation.
    pub fn io(what: impl Into<String>, source: io::Error) -> PoolError {
        PoolError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<sled::Error> for PoolError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => PoolError::Corrupt(e.to_string()),
            other => PoolError::Store(other.to_string()),
        }
    }
}

/// The host file system is full (or the user's quota is spent); also when
/// the OS error was wrapped (sled wraps its I/O errors).
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

impl PoolError {
    /// The error of a write: out of space (pool or host) -> the
    /// thin-provisioning error, failed pool -> refused, I/O -> `io`.
    fn into_backend(self, io: fn(io::Error) -> BackendError) -> BackendError {
        match self {
            PoolError::OutOfSpace
            | PoolError::Failed {
                out_of_space: true, ..
            } => BackendError::OutOfSpace,
            PoolError::Io { source, .. } if is_out_of_space(&source) => BackendError::OutOfSpace,
            PoolError::Io { source, .. } => io(source),
            e @ PoolError::Failed { .. } => BackendError::Failed(e.to_string()),
            other => BackendError::Metadata(other.to_string()),
        }
    }

    /// The error of a flush (SYNCHRONIZE CACHE, FUA): as a write's, with an
    /// I/O error reported as a failed flush.
    pub(crate) fn into_flush_error(self) -> BackendError {
        self.into_backend(BackendError::Flush)
    }
}

impl From<PoolError> for BackendError {
    fn from(e: PoolError) -> Self {
        e.into_backend(BackendError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_in_any_form_is_the_thin_provisioning_error() {
        let enospc = || io::Error::from_raw_os_error(libc::ENOSPC);
        // As sled reports it: the OS error wrapped, its kind kept.
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "Os { code: 28 }");
        let failed = |out_of_space| PoolError::Failed {
            pool: "p".into(),
            why: "w".into(),
            out_of_space,
        };
        for e in [
            PoolError::OutOfSpace,
            PoolError::io("writing", enospc()),
            PoolError::io("committing", wrapped),
            PoolError::io("quota", io::Error::from_raw_os_error(libc::EDQUOT)),
            failed(true),
        ] {
            let text = e.to_string();
            assert!(
                matches!(e.into_flush_error(), BackendError::OutOfSpace),
                "{text}"
            );
        }
        assert!(matches!(
            BackendError::from(PoolError::io("writing", enospc())),
            BackendError::OutOfSpace
        ));
        assert!(matches!(
            failed(false).into_flush_error(),
            BackendError::Failed(_)
        ));
        let eio = PoolError::io("syncing", io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(eio.into_flush_error(), BackendError::Flush(_)));
    }
}
