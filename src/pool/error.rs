//! Typed errors of the pool layer: [`PoolError`] is a small matchable
//! [`PoolErrorKind`] (with the values a caller may act on, e.g. the pid
//! holding the lock) plus the context the message is made of (the pool
//! directory, the volume, what was being done or found, the OS error).
//! Callers match on [`PoolError::kind`], never on the message.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::backend::BackendError;

/// What went wrong in a pool: what callers match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolErrorKind {
    /// The path does not exist or is not a tcmud pool directory.
    NotAPool,
    /// `create` found an existing pool (or a non-empty directory).
    AlreadyExists,
    /// Another process (or another handle in this process) holds the pool.
    Locked {
        /// Pid written in the lock file by the holder (0 if unreadable).
        pid: u32,
    },
    /// The pool was written by a newer tcmud.
    FormatTooNew {
        /// Format stored in the pool.
        found: u32,
        /// Newest format this build understands.
        supported: u32,
    },
    /// The metadata database is damaged or unreadable.
    Corrupt,
    /// The data file is shorter than the metadata requires.
    DataFileShort {
        /// Bytes needed by the allocated chunks.
        needed: u64,
        /// Actual length.
        actual: u64,
    },
    /// A configuration value is out of range.
    InvalidConfig,
    /// An argument (name, size, block size) is invalid.
    InvalidArgument,
    /// No volume or snapshot of that name.
    NoSuchVolume,
    /// The name is taken.
    VolumeExists,
    /// The volume is open (served) and cannot be deleted now.
    VolumeBusy,
    /// A shrink was requested without force.
    ShrinkNotForced,
    /// The operation needs a writable volume, not a snapshot (or vice versa).
    WrongKind,
    /// No free chunk left.
    OutOfSpace,
    /// The metadata store failed.
    Store,
    /// A sync of the pool's data or metadata failed earlier: the pool
    /// commits nothing more and refuses writes until it is reopened.
    Failed {
        /// That failure was the host file system being full.
        out_of_space: bool,
    },
    /// The pool was not closed cleanly and its metadata does not add up
    /// (reference counts or free list against the mappings): opening it
    /// read-write could hand out a chunk still in use.
    NeedsRepair {
        /// Number of problems found.
        problems: usize,
    },
    /// I/O on the pool directory or data file failed.
    Io,
}

/// Everything that can go wrong in a pool: a [`PoolErrorKind`] and its
/// context.
#[derive(Debug)]
pub struct PoolError {
    kind: PoolErrorKind,
    /// Boxed: errors are the rare path, and a small error keeps every
    /// `Result` of the pool (and the errors that wrap it) small.
    ctx: Box<Context>,
}

/// The context of a [`PoolError`]: what its message is made of.
#[derive(Debug, Default)]
struct Context {
    /// The pool directory, for the kinds about a pool as a whole.
    path: Option<PathBuf>,
    /// The volume, for the kinds about one volume.
    volume: Option<String>,
    /// What was being done or what was found, in words.
    detail: String,
    /// The OS error of [`PoolErrorKind::Io`].
    source: Option<io::Error>,
}

impl PoolError {
    fn new(kind: PoolErrorKind) -> PoolError {
        PoolError {
            kind,
            ctx: Box::default(),
        }
    }

    fn with_path(mut self, path: impl Into<PathBuf>) -> PoolError {
        self.ctx.path = Some(path.into());
        self
    }

    fn with_volume(mut self, volume: impl Into<String>) -> PoolError {
        self.ctx.volume = Some(volume.into());
        self
    }

    fn with_detail(mut self, detail: impl Into<String>) -> PoolError {
        self.ctx.detail = detail.into();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> PoolErrorKind {
        self.kind
    }

    /// The pool directory the error is about, if it is about a pool as a
    /// whole.
    pub fn path(&self) -> Option<&Path> {
        self.ctx.path.as_deref()
    }

    /// The volume the error is about, if any.
    pub fn volume(&self) -> Option<&str> {
        self.ctx.volume.as_deref()
    }

    /// What was being done or found, in words (the message without its
    /// kind's wording, e.g. what is corrupt); empty for the kinds whose
    /// message needs none.
    pub fn detail(&self) -> &str {
        &self.ctx.detail
    }

    /// The OS error, for [`PoolErrorKind::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        self.ctx.source.as_ref()
    }

    /// Wraps an I/O error with a description of the operation.
    pub fn io(what: impl Into<String>, source: io::Error) -> PoolError {
        let mut e = PoolError::new(PoolErrorKind::Io).with_detail(what);
        e.ctx.source = Some(source);
        e
    }

    /// `path` is not a pool directory: `why` says what is missing.
    pub fn not_a_pool(path: impl Into<PathBuf>, why: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::NotAPool)
            .with_path(path)
            .with_detail(why)
    }

    /// `create` found files in `path`.
    pub fn already_exists(path: impl Into<PathBuf>) -> PoolError {
        PoolError::new(PoolErrorKind::AlreadyExists).with_path(path)
    }

    /// Process `pid` holds the pool at `path`.
    pub fn locked(path: impl Into<PathBuf>, pid: u32) -> PoolError {
        PoolError::new(PoolErrorKind::Locked { pid }).with_path(path)
    }

    /// The pool's format `found` is newer than `supported`.
    pub fn format_too_new(found: u32, supported: u32) -> PoolError {
        PoolError::new(PoolErrorKind::FormatTooNew { found, supported })
    }

    /// The metadata is damaged: `what` was found.
    pub fn corrupt(what: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::Corrupt).with_detail(what)
    }

    /// The data file has `actual` bytes, the metadata needs `needed`.
    pub fn data_file_short(needed: u64, actual: u64) -> PoolError {
        PoolError::new(PoolErrorKind::DataFileShort { needed, actual })
    }

    /// A configuration value is out of range: `what`.
    pub fn invalid_config(what: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::InvalidConfig).with_detail(what)
    }

    /// An argument is invalid: `what`.
    pub fn invalid_argument(what: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::InvalidArgument).with_detail(what)
    }

    /// No volume named `name`.
    pub fn no_such_volume(name: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::NoSuchVolume).with_volume(name)
    }

    /// A volume named `name` exists already.
    pub fn volume_exists(name: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::VolumeExists).with_volume(name)
    }

    /// Volume `name` is in use.
    pub fn volume_busy(name: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::VolumeBusy).with_volume(name)
    }

    /// Shrinking volume `name` needs force.
    pub fn shrink_not_forced(name: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::ShrinkNotForced).with_volume(name)
    }

    /// The operation does not apply to this kind of volume: `what` (the
    /// whole message).
    pub fn wrong_kind(what: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::WrongKind).with_detail(what)
    }

    /// No free chunk left.
    pub fn out_of_space() -> PoolError {
        PoolError::new(PoolErrorKind::OutOfSpace)
    }

    /// The metadata store failed: `what`.
    pub fn store(what: impl Into<String>) -> PoolError {
        PoolError::new(PoolErrorKind::Store).with_detail(what)
    }

    /// The pool at `path` failed earlier with `why`.
    pub fn failed(
        path: impl Into<PathBuf>,
        why: impl Into<String>,
        out_of_space: bool,
    ) -> PoolError {
        PoolError::new(PoolErrorKind::Failed { out_of_space })
            .with_path(path)
            .with_detail(why)
    }

    /// The pool at `path` needs repair: `problems` problems, `first` the
    /// first one.
    pub fn needs_repair(
        path: impl Into<PathBuf>,
        problems: usize,
        first: impl Into<String>,
    ) -> PoolError {
        PoolError::new(PoolErrorKind::NeedsRepair { problems })
            .with_path(path)
            .with_detail(first)
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().unwrap_or(Path::new("")).display();
        let volume = self.volume().unwrap_or("");
        let detail = &self.ctx.detail;
        match self.kind {
            PoolErrorKind::NotAPool => write!(f, "{path} is not a tcmud pool: {detail}"),
            PoolErrorKind::AlreadyExists => {
                write!(f, "{path} already holds a pool or other files")
            }
            PoolErrorKind::Locked { pid } => write!(f, "pool {path} is held by process {pid}"),
            PoolErrorKind::FormatTooNew { found, supported } => write!(
                f,
                "pool format {found} is newer than this tcmud supports (format {supported}); \
                 upgrade tcmud"
            ),
            PoolErrorKind::Corrupt => write!(f, "pool metadata is corrupt: {detail}"),
            PoolErrorKind::DataFileShort { needed, actual } => write!(
                f,
                "data file is {actual} bytes but the metadata needs at least {needed}"
            ),
            PoolErrorKind::InvalidConfig => write!(f, "invalid pool configuration: {detail}"),
            PoolErrorKind::InvalidArgument => write!(f, "invalid argument: {detail}"),
            PoolErrorKind::NoSuchVolume => write!(f, "no volume named {volume:?}"),
            PoolErrorKind::VolumeExists => write!(f, "a volume named {volume:?} already exists"),
            PoolErrorKind::VolumeBusy => write!(f, "volume {volume:?} is in use"),
            PoolErrorKind::ShrinkNotForced => write!(
                f,
                "shrinking volume {volume:?} loses data; pass force to do it"
            ),
            PoolErrorKind::WrongKind => f.write_str(detail),
            PoolErrorKind::OutOfSpace => f.write_str("no free space left in the pool"),
            PoolErrorKind::Store => write!(f, "metadata store error: {detail}"),
            PoolErrorKind::Failed { .. } => write!(
                f,
                "pool {path} has failed ({detail}); it refuses writes until it is reopened, \
                 which verifies it"
            ),
            PoolErrorKind::NeedsRepair { problems } => write!(
                f,
                "pool {path} was not shut down cleanly and its metadata is inconsistent \
                 ({problems} problems; first: {detail}); it cannot be opened read-write: \
                 run `tcmud pool check {path}` and repair it"
            ),
            PoolErrorKind::Io => match &self.ctx.source {
                Some(source) => write!(f, "{detail}: {source}"),
                None => f.write_str(detail),
            },
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.ctx
            .source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<sled::Error> for PoolError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => PoolError::corrupt(e.to_string()),
            other => PoolError::store(other.to_string()),
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
    fn into_backend(mut self, io: fn(io::Error) -> BackendError) -> BackendError {
        match self.kind {
            PoolErrorKind::OutOfSpace
            | PoolErrorKind::Failed {
                out_of_space: true, ..
            } => BackendError::OutOfSpace,
            PoolErrorKind::Io => match self.ctx.source.take() {
                Some(source) if is_out_of_space(&source) => BackendError::OutOfSpace,
                Some(source) => io(source),
                None => BackendError::Metadata(self.to_string()),
            },
            PoolErrorKind::Failed { .. } => BackendError::Failed(self.to_string()),
            _ => BackendError::Metadata(self.to_string()),
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
        let failed = |out_of_space| PoolError::failed("p", "w", out_of_space);
        for e in [
            PoolError::out_of_space(),
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

    #[test]
    fn messages_name_the_context() {
        assert_eq!(
            PoolError::locked("/p", 7).to_string(),
            "pool /p is held by process 7"
        );
        assert_eq!(
            PoolError::no_such_volume("v").to_string(),
            "no volume named \"v\""
        );
        assert_eq!(
            PoolError::needs_repair("/p", 2, "x").to_string(),
            "pool /p was not shut down cleanly and its metadata is inconsistent (2 problems; \
             first: x); it cannot be opened read-write: run `tcmud pool check /p` and repair it"
        );
        let e = PoolError::io("reading /p/data", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.kind(), PoolErrorKind::Io);
        assert!(e.to_string().starts_with("reading /p/data: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(PoolError::volume_busy("v").volume(), Some("v"));
    }
}
