//! A connection to a cluster and a pool on it.

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ffi;
use crate::image::Image;
use crate::RbdError;

/// How to reach the cluster (tcmu-runner's `conf=`, `id=`, `osd_op_timeout=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Configuration file; `None`: librados' default search (`$CEPH_CONF`,
    /// `/etc/ceph/ceph.conf`...), a missing one then ignored.
    pub conf: Option<PathBuf>,
    /// Client id without `client.` (`admin` when `None`).
    pub id: Option<String>,
    /// Further options set after the file is read (`rados_osd_op_timeout`...).
    pub options: Vec<(String, String)>,
}

/// A connected `rados_t`, shut down when the last handle to it (its pools and
/// images hold one) is dropped.
#[derive(Debug)]
pub struct Cluster {
    handle: ffi::rados_t,
}

// SAFETY: librados handles are thread-safe (every call may be made from any
// thread); the pointer is only passed back to librados.
unsafe impl Send for Cluster {}
// SAFETY: as above: librados synchronises internally.
unsafe impl Sync for Cluster {}

fn cstr(what: &'static str, s: &str) -> Result<CString, RbdError> {
    CString::new(s).map_err(|_| RbdError {
        op: what,
        errno: libc::EINVAL,
    })
}

impl Cluster {
    /// Creates a handle, reads the configuration, sets `opts.options` and
    /// connects (blocking up to the client mount timeout).
    pub fn connect(opts: &ConnectOptions) -> Result<Arc<Cluster>, RbdError> {
        let id = opts
            .id
            .as_deref()
            .map(|i| cstr("rados_create", i))
            .transpose()?;
        let mut handle: ffi::rados_t = ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer; `id` is NUL-terminated or null.
        let r = unsafe {
            ffi::rados_create(&mut handle, id.as_ref().map_or(ptr::null(), |c| c.as_ptr()))
        };
        RbdError::check("rados_create", r.into())?;
        // From here on Drop shuts the handle down (and counts it gone).
        LIVE.opened();
        let cluster = Cluster { handle };
        let conf = opts
            .conf
            .as_ref()
            .map(|p| cstr("rados_conf_read_file", &p.to_string_lossy()))
            .transpose()?;
        // SAFETY: a live handle from rados_create; the path NUL-terminated or null.
        let r = unsafe {
            ffi::rados_conf_read_file(
                cluster.handle,
                conf.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            )
        };
        if conf.is_some() {
            // An explicit file must be read; the default search may find none.
            RbdError::check("rados_conf_read_file", r.into())?;
        }
        for (k, v) in &opts.options {
            let (k, v) = (cstr("rados_conf_set", k)?, cstr("rados_conf_set", v)?);
            // SAFETY: live handle, both strings NUL-terminated.
            let r = unsafe { ffi::rados_conf_set(cluster.handle, k.as_ptr(), v.as_ptr()) };
            RbdError::check("rados_conf_set", r.into())?;
        }
        // SAFETY: live, configured handle.
        let r = unsafe { ffi::rados_connect(cluster.handle) };
        RbdError::check("rados_connect", r.into())?;
        Ok(Arc::new(cluster))
    }

    /// The cluster's fsid (its unique id), as text.
    pub fn fsid(&self) -> Result<String, RbdError> {
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: connected handle; `buf` is writable for its length.
        let r = unsafe { ffi::rados_cluster_fsid(self.handle, buf.as_mut_ptr(), buf.len() - 1) };
        RbdError::check("rados_cluster_fsid", r.into())?;
        // SAFETY: at most len - 1 bytes were written and the last byte is
        // still the 0 it was made with, so `buf` is NUL-terminated.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Ok(s.to_string_lossy().into_owned())
    }

    /// Opens pool `pool`.
    pub fn ioctx(self: &Arc<Self>, pool: &str) -> Result<Arc<IoCtx>, RbdError> {
        let name = cstr("rados_ioctx_create", pool)?;
        let mut io: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle, NUL-terminated name, valid out-pointer.
        let r = unsafe { ffi::rados_ioctx_create(self.handle, name.as_ptr(), &mut io) };
        RbdError::check("rados_ioctx_create", r.into())?;
        Ok(Arc::new(IoCtx {
            handle: io,
            _cluster: Arc::clone(self),
        }))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create and every ioctx and image
        // made from it holds an Arc to this value, so none is left.
        unsafe { ffi::rados_shutdown(self.handle) }
        LIVE.closed();
    }
}

/// The `rados_t` handles created and not yet shut down, process-wide.
///
/// A process must not exit while one is live: `exit` runs librados' and
/// librbd's static destructors while their threads (messenger, finisher,
/// the image's watchers) still run, which crashes the process now and then
/// (a daemon's SIGTERM ended in SIGSEGV). [`wait_all_shut_down`] is how the
/// daemon waits for the last image it closed to be gone.
struct Live {
    count: Mutex<usize>,
    changed: Condvar,
}

static LIVE: Live = Live {
    count: Mutex::new(0),
    changed: Condvar::new(),
};

impl Live {
    fn opened(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn closed(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        self.changed.notify_all();
    }
}

/// How many cluster handles are live now (every open image holds one).
pub fn live_clusters() -> usize {
    *LIVE.count.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits up to `timeout` until every cluster handle of the process is shut
/// down (every image closed). `Err(n)`: `n` still live at the deadline.
pub fn wait_all_shut_down(timeout: Duration) -> Result<(), usize> {
    let deadline = Instant::now() + timeout;
    let mut n = LIVE.count.lock().unwrap_or_else(PoisonError::into_inner);
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(*n);
        }
        n = LIVE
            .changed
            .wait_timeout(n, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    Ok(())
}

/// A pool of a connected cluster.
#[derive(Debug)]
pub struct IoCtx {
    pub(crate) handle: ffi::rados_ioctx_t,
    _cluster: Arc<Cluster>,
}

// SAFETY: an ioctx may be used from any thread (librados synchronises); the
// pointer is only passed back to librados.
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl IoCtx {
    /// The cluster this pool is on.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self._cluster
    }

    /// Creates image `name` of `size` bytes (default features and order).
    pub fn create_image(&self, name: &str, size: u64) -> Result<(), RbdError> {
        let n = cstr("rbd_create", name)?;
        let mut order: libc::c_int = 0;
        // SAFETY: live ioctx, NUL-terminated name, valid out-pointer.
        let r = unsafe { ffi::rbd_create(self.handle, n.as_ptr(), size, &mut order) };
        RbdError::check("rbd_create", r.into()).map(drop)
    }

    /// Removes image `name` (it must have no snapshots and not be open).
    pub fn remove_image(&self, name: &str) -> Result<(), RbdError> {
        let n = cstr("rbd_remove", name)?;
        // SAFETY: live ioctx, NUL-terminated name.
        let r = unsafe { ffi::rbd_remove(self.handle, n.as_ptr()) };
        RbdError::check("rbd_remove", r.into()).map(drop)
    }

    /// Clones `parent@snap` (a protected snapshot) into image `child` of
    /// this pool, with the parent's features.
    pub fn clone_image(
        self: &Arc<Self>,
        parent: &str,
        snap: &str,
        child: &str,
    ) -> Result<(), RbdError> {
        let (p, s, c) = (
            cstr("rbd_clone", parent)?,
            cstr("rbd_clone", snap)?,
            cstr("rbd_clone", child)?,
        );
        // Layering (1) is what a clone needs; exclusive lock etc. follow
        // the pool's defaults when the image is opened.
        let features = {
            let img = Image::open(Arc::clone(self), parent, Some(snap), true)?;
            img.features()?
        };
        let mut order: libc::c_int = 0;
        // SAFETY: live ioctx used for both sides, NUL-terminated strings,
        // valid out-pointer.
        let r = unsafe {
            ffi::rbd_clone(
                self.handle,
                p.as_ptr(),
                s.as_ptr(),
                self.handle,
                c.as_ptr(),
                features,
                &mut order,
            )
        };
        RbdError::check("rbd_clone", r.into()).map(drop)
    }
}
