//! The one error type: which call failed and its (positive) errno.

/// A librados/librbd call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{op}: {} (errno {errno})", std::io::Error::from_raw_os_error(*errno))]
pub struct RbdError {
    /// The operation (`rados_connect`, `rbd_aio_write`...).
    pub op: &'static str,
    /// The errno it returned, positive.
    pub errno: i32,
}

impl RbdError {
    /// From a negative return value (`-errno`); anything else is EIO.
    pub fn from_ret(op: &'static str, ret: i64) -> RbdError {
        let errno = i32::try_from(ret.checked_neg().unwrap_or(i64::from(libc::EIO)))
            .ok()
            .filter(|&e| e > 0)
            .unwrap_or(libc::EIO);
        RbdError { op, errno }
    }

    /// `Ok(ret)` for `ret >= 0`, else the error.
    pub(crate) fn check(op: &'static str, ret: i64) -> Result<i64, RbdError> {
        if ret >= 0 {
            Ok(ret)
        } else {
            Err(RbdError::from_ret(op, ret))
        }
    }

    /// The image, pool or snapshot does not exist (ENOENT).
    pub fn is_not_found(&self) -> bool {
        self.errno == libc::ENOENT
    }

    /// An OSD or monitor did not answer in time (ETIMEDOUT): the cluster is
    /// unreachable or an OSD is down.
    pub fn is_timeout(&self) -> bool {
        self.errno == libc::ETIMEDOUT
    }

    /// This client was blocklisted (ESHUTDOWN, Ceph's EBLOCKLISTED: another
    /// client broke its exclusive lock): the image must be reopened with a
    /// new connection.
    pub fn needs_reopen(&self) -> bool {
        self.errno == libc::ESHUTDOWN
    }

    /// COMPARE AND WRITE found a difference (EILSEQ).
    pub fn is_miscompare(&self) -> bool {
        self.errno == libc::EILSEQ
    }
}
