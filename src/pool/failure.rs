//! The failed state: after a data or metadata sync error nothing is known
//! about what reached the disk (Linux reports a write-back error once and
//! marks the pages clean, so a retried `fdatasync` "succeeds" without the
//! data), so the pool commits nothing more and refuses writes until it is
//! reopened; reads go on from what is in memory and in the page cache.
//! The pool is not sealed on close either: the next open verifies it.

use std::io;

use super::error::is_out_of_space;
use super::{Inner, Pool, PoolError, PoolErrorKind};

/// Why a pool failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What failed, with the OS error.
    why: String,
    /// The failure was the host file system being full.
    out_of_space: bool,
}

impl Inner {
    fn pool_name(&self) -> String {
        self.dir
            .as_ref()
            .map_or_else(|| "(in memory)".to_string(), |d| d.display().to_string())
    }

    /// Puts the pool in the failed state (the first failure is kept and
    /// logged) and returns `e` for the caller.
    pub(crate) fn fail(&self, e: PoolError) -> PoolError {
        let out_of_space = match e.kind() {
            PoolErrorKind::Io => e.io_error().is_some_and(is_out_of_space),
            PoolErrorKind::Failed { out_of_space } => out_of_space,
            _ => false,
        };
        let failure = Failure {
            why: e.to_string(),
            out_of_space,
        };
        if self.failed.set(failure).is_ok() {
            tracing::error!(
                pool = %self.pool_name(),
                error = %e,
                "pool failed (a sync of its data or metadata, or a metadata step that \
                 must not be committed half done); it commits nothing more and refuses \
                 writes until it is reopened (reopening verifies it)"
            );
        }
        e
    }

    /// [`Inner::fail`] for an I/O error while doing `what`.
    pub(crate) fn fail_io(&self, what: &str, e: io::Error) -> PoolError {
        self.fail(PoolError::io(what, e))
    }

    /// `Err` once the pool has failed.
    pub(crate) fn writable(&self) -> Result<(), PoolError> {
        match self.failed.get() {
            None => Ok(()),
            Some(f) => Err(PoolError::failed(
                self.pool_name(),
                f.why.clone(),
                f.out_of_space,
            )),
        }
    }
}

impl Pool {
    /// `Err` ([`PoolErrorKind::Failed`]) once a sync error has put the pool in
    /// the failed state.
    pub fn writable(&self) -> Result<(), PoolError> {
        self.inner.writable()
    }

    /// Whether the pool has failed (see [`Pool::writable`]).
    pub fn has_failed(&self) -> bool {
        self.inner.failed.get().is_some()
    }
}
