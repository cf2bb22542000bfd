//! An open image: metadata calls (blocking) and asynchronous I/O.

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::{mpsc, Arc};

use libc::{c_char, c_int, c_void, size_t};

use crate::aio::{submit, submit_iov, AioDone, DoneFn};
use crate::cluster::IoCtx;
use crate::iobuf::IoBuffers;
use crate::{ffi, RbdError};

/// Sizes of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Size in bytes.
    pub size: u64,
    /// Size of its objects in bytes (4 MiB by default).
    pub obj_size: u64,
}

/// A run of an image reported by [`Image::diff_iterate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// It holds data (false: a hole, reported only against a snapshot).
    pub exists: bool,
}

/// An open image (closed on drop, which waits for its in-flight I/O: so a
/// completion closure must never drop the last handle to its image).
#[derive(Debug)]
pub struct Image {
    handle: ffi::rbd_image_t,
    read_only: bool,
    _io: Arc<IoCtx>,
}

// SAFETY: librbd image handles may be used from any thread (ImageCtx has
// its own locks); the pointer is only passed back to librbd.
unsafe impl Send for Image {}
// SAFETY: as above.
unsafe impl Sync for Image {}

fn cstr(op: &'static str, s: &str) -> Result<CString, RbdError> {
    CString::new(s).map_err(|_| RbdError {
        op,
        errno: libc::EINVAL,
    })
}

fn len_t(op: &'static str, n: u64) -> Result<size_t, RbdError> {
    size_t::try_from(n).map_err(|_| RbdError {
        op,
        errno: libc::EINVAL,
    })
}

impl Image {
    /// Opens image `name` of pool `io`, at `snap` if given (always
    /// read-only then), read-only when asked.
    pub fn open(
        io: Arc<IoCtx>,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image, RbdError> {
        let n = cstr("rbd_open", name)?;
        let s = snap.map(|s| cstr("rbd_open", s)).transpose()?;
        let sp = s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let read_only = read_only || snap.is_some();
        let mut handle: ffi::rbd_image_t = ptr::null_mut();
        let r = if read_only {
            // SAFETY: live ioctx, NUL-terminated strings (snap may be null),
            // valid out-pointer.
            unsafe { ffi::rbd_open_read_only(io.handle, n.as_ptr(), &mut handle, sp) }
        } else {
            // SAFETY: as above.
            unsafe { ffi::rbd_open(io.handle, n.as_ptr(), &mut handle, sp) }
        };
        RbdError::check(
            if read_only {
                "rbd_open_read_only"
            } else {
                "rbd_open"
            },
            r.into(),
        )?;
        Ok(Image {
            handle,
            read_only,
            _io: io,
        })
    }

    /// The pool it is in.
    pub fn ioctx(&self) -> &Arc<IoCtx> {
        &self._io
    }

    /// Opened read-only (or at a snapshot).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Size in bytes.
    pub fn size(&self) -> Result<u64, RbdError> {
        let mut size = 0u64;
        // SAFETY: open image, valid out-pointer.
        let r = unsafe { ffi::rbd_get_size(self.handle, &mut size) };
        RbdError::check("rbd_get_size", r.into()).map(|_| size)
    }

    /// Feature bits (`RBD_FEATURE_*`).
    pub fn features(&self) -> Result<u64, RbdError> {
        let mut f = 0u64;
        // SAFETY: open image, valid out-pointer.
        let r = unsafe { ffi::rbd_get_features(self.handle, &mut f) };
        RbdError::check("rbd_get_features", r.into()).map(|_| f)
    }

    /// Size and object size.
    pub fn info(&self) -> Result<ImageInfo, RbdError> {
        let mut info = ffi::rbd_image_info_t {
            size: 0,
            obj_size: 0,
            num_objs: 0,
            order: 0,
            block_name_prefix: [0; 24],
            parent_pool: 0,
            parent_name: [0; 96],
        };
        // SAFETY: open image; `info` is a writable rbd_image_info_t of the
        // size passed.
        let r = unsafe {
            ffi::rbd_stat(
                self.handle,
                &mut info,
                std::mem::size_of::<ffi::rbd_image_info_t>(),
            )
        };
        RbdError::check("rbd_stat", r.into())?;
        Ok(ImageInfo {
            size: info.size,
            obj_size: info.obj_size,
        })
    }

    /// The image's id (stable across renames; unique in its pool).
    pub fn id(&self) -> Result<String, RbdError> {
        let mut buf = [0 as c_char; 128];
        // SAFETY: open image; `buf` is writable for its length.
        let r = unsafe { ffi::rbd_get_id(self.handle, buf.as_mut_ptr(), buf.len()) };
        RbdError::check("rbd_get_id", r.into())?;
        // The last byte stays 0: librbd writes at most len - 1 bytes + NUL.
        buf[buf.len() - 1] = 0;
        // SAFETY: `buf` is NUL-terminated (forced just above).
        let id = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Ok(id.to_string_lossy().into_owned())
    }

    /// Whether this handle holds the image's exclusive lock (blocking; a
    /// cheap local check in librbd).
    pub fn is_lock_owner(&self) -> Result<bool, RbdError> {
        let mut owner: c_int = 0;
        // SAFETY: open image, valid out-pointer.
        let r = unsafe { ffi::rbd_is_exclusive_lock_owner(self.handle, &mut owner) };
        RbdError::check("rbd_is_exclusive_lock_owner", r.into()).map(|_| owner != 0)
    }

    /// The clients holding the image's exclusive lock (`client.4123`-like
    /// names; empty when nobody does). Asks the cluster (blocking).
    pub fn lock_owners(&self) -> Result<Vec<String>, RbdError> {
        const MAX: usize = 8;
        let mut owners: [*mut c_char; MAX] = [ptr::null_mut(); MAX];
        let mut count: size_t = MAX;
        let mut mode: c_int = 0;
        // SAFETY: open image; `owners` has room for `count` pointers, which
        // librbd fills with strings it allocates (freed below).
        let r = unsafe {
            ffi::rbd_lock_get_owners(self.handle, &mut mode, owners.as_mut_ptr(), &mut count)
        };
        if r == -libc::ENOENT {
            return Ok(Vec::new());
        }
        RbdError::check("rbd_lock_get_owners", r.into())?;
        let n = count.min(MAX);
        let names = owners[..n]
            .iter()
            .filter(|p| !p.is_null())
            // SAFETY: librbd set these to NUL-terminated strings.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect();
        // SAFETY: the `n` pointers librbd filled in, released once.
        unsafe { ffi::rbd_lock_get_owners_cleanup(owners.as_mut_ptr(), n) };
        Ok(names)
    }

    /// The image's metadata value under `key` (`None` when it has none).
    /// Asks the cluster (blocking).
    pub fn metadata_get(&self, key: &str) -> Result<Option<String>, RbdError> {
        /// A value longer than this is refused (E2BIG): no caller stores one.
        const MAX: usize = 64 << 10;
        let k = cstr("rbd_metadata_get", key)?;
        let mut len: size_t = 256;
        loop {
            let mut buf = vec![0 as c_char; len];
            let mut have = len;
            // SAFETY: open image, NUL-terminated key; `buf` is writable for
            // `have` bytes, which librbd updates (to the length it needs
            // when it returns -ERANGE).
            let r = unsafe {
                ffi::rbd_metadata_get(self.handle, k.as_ptr(), buf.as_mut_ptr(), &mut have)
            };
            match r {
                r if r == -libc::ENOENT => return Ok(None),
                r if r == -libc::ERANGE && have > len && have <= MAX => len = have,
                r if r == -libc::ERANGE => {
                    return Err(RbdError {
                        op: "rbd_metadata_get",
                        errno: libc::E2BIG,
                    })
                }
                r => {
                    RbdError::check("rbd_metadata_get", r.into())?;
                    // The last byte stays 0 whatever librbd wrote.
                    if let Some(last) = buf.last_mut() {
                        *last = 0;
                    }
                    // SAFETY: `buf` is NUL-terminated (forced just above).
                    let v = unsafe { CStr::from_ptr(buf.as_ptr()) };
                    return Ok(Some(v.to_string_lossy().into_owned()));
                }
            }
        }
    }

    /// Sets the image's metadata `key` to `value` (blocking; librbd runs it
    /// through the exclusive lock's owner).
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<(), RbdError> {
        let k = cstr("rbd_metadata_set", key)?;
        let v = cstr("rbd_metadata_set", value)?;
        // SAFETY: open image, NUL-terminated key and value.
        let r = unsafe { ffi::rbd_metadata_set(self.handle, k.as_ptr(), v.as_ptr()) };
        RbdError::check("rbd_metadata_set", r.into()).map(drop)
    }

    /// Resizes to `size` bytes (blocking).
    pub fn resize(&self, size: u64) -> Result<(), RbdError> {
        // SAFETY: open image.
        let r = unsafe { ffi::rbd_resize(self.handle, size) };
        RbdError::check("rbd_resize", r.into()).map(drop)
    }

    /// Creates snapshot `name` (blocking).
    pub fn snap_create(&self, name: &str) -> Result<(), RbdError> {
        let n = cstr("rbd_snap_create", name)?;
        // SAFETY: open image, NUL-terminated name.
        let r = unsafe { ffi::rbd_snap_create(self.handle, n.as_ptr()) };
        RbdError::check("rbd_snap_create", r.into()).map(drop)
    }

    /// Protects snapshot `name` (so it can be cloned).
    pub fn snap_protect(&self, name: &str) -> Result<(), RbdError> {
        let n = cstr("rbd_snap_protect", name)?;
        // SAFETY: open image, NUL-terminated name.
        let r = unsafe { ffi::rbd_snap_protect(self.handle, n.as_ptr()) };
        RbdError::check("rbd_snap_protect", r.into()).map(drop)
    }

    /// Calls `f` for each allocated extent in `[offset, offset + len)`
    /// (the parent's included for a clone), in order, until it returns
    /// false (blocking).
    pub fn diff_iterate(
        &self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(Extent) -> bool,
    ) -> Result<(), RbdError> {
        extern "C" fn cb(off: u64, len: size_t, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the `&mut &mut dyn FnMut` passed below, alive
            // for the whole synchronous rbd_diff_iterate2 call.
            let f = unsafe { &mut *arg.cast::<&mut dyn FnMut(Extent) -> bool>() };
            // A size_t is at most 64 bits wherever librbd runs; were it
            // not, the iteration fails (EOVERFLOW) rather than clamping.
            let Ok(len) = u64::try_from(len) else {
                return -libc::EOVERFLOW;
            };
            let e = Extent {
                offset: off,
                len,
                exists: exists != 0,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(e))) {
                Ok(true) => 0,
                // A negative return stops the iteration (passed back to us).
                _ => -libc::ECANCELED,
            }
        }
        let mut f = f;
        let arg: *mut &mut dyn FnMut(Extent) -> bool = &mut f;
        // SAFETY: open image; null `from_snap` (since creation); `cb`
        // matches the C signature and `arg` outlives this synchronous call.
        let r = unsafe {
            ffi::rbd_diff_iterate2(self.handle, ptr::null(), offset, len, 1, 0, cb, arg.cast())
        };
        match r {
            r if r == -libc::ECANCELED => Ok(()),
            r => RbdError::check("rbd_diff_iterate2", r.into()).map(drop),
        }
    }

    /// Reads `len` bytes at `offset`; `done` gets them in [`AioDone::buf`].
    pub fn aio_read(
        &self,
        offset: u64,
        len: usize,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        let h = self.handle;
        submit(
            "rbd_aio_read",
            vec![0u8; len],
            Vec::new(),
            Box::new(done),
            |c, b| {
                // SAFETY: open image; `b.buf` is writable for `len` bytes until
                // the completion (owned by the pending operation).
                i64::from(unsafe { ffi::rbd_aio_read2(h, offset, len, b.buf.cast(), c, 0) })
            },
        )
    }

    /// Writes `data` at `offset`; with `fua` it is durable on completion.
    pub fn aio_write(
        &self,
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        let (h, len) = (self.handle, data.len());
        let flags = if fua {
            ffi::LIBRADOS_OP_FLAG_FADVISE_FUA
        } else {
            0
        };
        submit("rbd_aio_write", data, Vec::new(), Box::new(done), |c, b| {
            // SAFETY: open image; `b.buf` holds `len` bytes until completion.
            i64::from(unsafe { ffi::rbd_aio_write2(h, offset, len, b.buf.cast(), c, flags) })
        })
    }

    /// Reads `[offset, offset + the buffers' total length)` straight into
    /// the buffers of `into` (one `rbd_aio_readv`: librbd copies from its
    /// messages into them, no buffer of ours in between); `done` gets the
    /// outcome and `into` back, the buffers then holding the bytes read
    /// (unspecified after an error). `done` runs exactly once, also when
    /// the submission is refused (the `Err`).
    pub fn aio_readv<B: IoBuffers>(
        &self,
        offset: u64,
        mut into: B,
        done: impl FnOnce(AioDone, B) + Send + 'static,
    ) -> Result<(), RbdError> {
        let iov = match into.io_spans() {
            Ok(spans) => iovecs(&spans),
            Err(e) => return Err(refused(e, into, done)),
        };
        let h = self.handle;
        submit_iov(
            "rbd_aio_readv",
            Vec::new(),
            Vec::new(),
            iov,
            Box::new(move |d| done(d, into)),
            |c, b| {
                // SAFETY: open image; `b.iov` points at `b.iovcnt` iovecs the
                // pending operation keeps until its completion, each naming
                // memory writable until then: `into` (the `IoBuffers`
                // contract) lives in the completion's closure, dropped only
                // after librbd completed.
                i64::from(unsafe { ffi::rbd_aio_readv(h, b.iov, b.iovcnt, offset, c) })
            },
        )
    }

    /// Writes the buffers of `from` at `offset` (one `rbd_aio_writev`, or
    /// `rbd_aio_write2` for one buffer: librbd takes the bytes from them);
    /// `done` gets the outcome and `from` back, exactly once. With `fua` a
    /// single buffer is written with `LIBRADOS_OP_FLAG_FADVISE_FUA`;
    /// librbd's vectored write takes no flags, which only matters with a
    /// client cache (without one, a completed write is on the OSDs).
    pub fn aio_writev<B: IoBuffers>(
        &self,
        offset: u64,
        mut from: B,
        fua: bool,
        done: impl FnOnce(AioDone, B) + Send + 'static,
    ) -> Result<(), RbdError> {
        let iov = match from.io_spans() {
            Ok(spans) => iovecs(&spans),
            Err(e) => return Err(refused(e, from, done)),
        };
        let h = self.handle;
        let flags = if fua {
            ffi::LIBRADOS_OP_FLAG_FADVISE_FUA
        } else {
            0
        };
        let op = if iov.len() == 1 {
            "rbd_aio_write"
        } else {
            "rbd_aio_writev"
        };
        submit_iov(
            op,
            Vec::new(),
            Vec::new(),
            iov,
            Box::new(move |d| done(d, from)),
            |c, b| {
                if b.iovcnt == 1 {
                    // SAFETY: open image; `b.iov` points at one iovec (kept
                    // until the completion) naming memory readable until
                    // then: `from` lives in the completion's closure.
                    let one = unsafe { &*b.iov };
                    // SAFETY: as above, `one` names `iov_len` readable bytes
                    // until the completion.
                    return i64::from(unsafe {
                        ffi::rbd_aio_write2(h, offset, one.iov_len, one.iov_base.cast(), c, flags)
                    });
                }
                // SAFETY: open image; `b.iov` points at `b.iovcnt` iovecs kept
                // until the completion, each naming memory readable until
                // then (`from` lives in the completion's closure).
                i64::from(unsafe { ffi::rbd_aio_writev(h, b.iov, b.iovcnt, offset, c) })
            },
        )
    }

    /// Makes every completed write durable.
    pub fn aio_flush(&self, done: impl FnOnce(AioDone) + Send + 'static) -> Result<(), RbdError> {
        let h = self.handle;
        submit(
            "rbd_aio_flush",
            Vec::new(),
            Vec::new(),
            Box::new(done),
            |c, _| {
                // SAFETY: open image, fresh completion.
                i64::from(unsafe { ffi::rbd_aio_flush(h, c) })
            },
        )
    }

    /// Deallocates `[offset, offset + len)` (reads back as zeros).
    pub fn aio_discard(
        &self,
        offset: u64,
        len: u64,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        let h = self.handle;
        submit(
            "rbd_aio_discard",
            Vec::new(),
            Vec::new(),
            Box::new(done),
            |c, _| {
                // SAFETY: open image, fresh completion.
                i64::from(unsafe { ffi::rbd_aio_discard(h, offset, len, c) })
            },
        )
    }

    /// Writes zeros over `[offset, offset + len)` (deallocating where whole
    /// objects are covered).
    pub fn aio_write_zeroes(
        &self,
        offset: u64,
        len: u64,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        let h = self.handle;
        let len = len_t("rbd_aio_write_zeroes", len)?;
        submit(
            "rbd_aio_write_zeroes",
            Vec::new(),
            Vec::new(),
            Box::new(done),
            |c, _| {
                // SAFETY: open image, fresh completion.
                i64::from(unsafe { ffi::rbd_aio_write_zeroes(h, offset, len, c, 0, 0) })
            },
        )
    }

    /// Writes `pattern` repeated over `[offset, offset + len)` (`len` a
    /// multiple of the pattern's length); with `fua` durable on completion.
    pub fn aio_writesame(
        &self,
        offset: u64,
        len: u64,
        pattern: Vec<u8>,
        fua: bool,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        let h = self.handle;
        let len = len_t("rbd_aio_writesame", len)?;
        let plen = pattern.len();
        let flags = if fua {
            ffi::LIBRADOS_OP_FLAG_FADVISE_FUA
        } else {
            0
        };
        submit(
            "rbd_aio_writesame",
            pattern,
            Vec::new(),
            Box::new(done),
            |c, b| {
                // SAFETY: open image; `b.buf` holds `plen` bytes until completion.
                i64::from(unsafe {
                    ffi::rbd_aio_writesame(h, offset, len, b.buf.cast(), plen, c, flags)
                })
            },
        )
    }

    /// Atomically: if `[offset, offset + cmp.len())` equals `cmp`, writes
    /// `data` (same length) there; else fails with EILSEQ and
    /// [`AioDone::mismatch_offset`].
    pub fn aio_compare_and_write(
        &self,
        offset: u64,
        cmp: Vec<u8>,
        data: Vec<u8>,
        done: impl FnOnce(AioDone) + Send + 'static,
    ) -> Result<(), RbdError> {
        if cmp.len() != data.len() {
            return Err(RbdError {
                op: "rbd_aio_compare_and_write",
                errno: libc::EINVAL,
            });
        }
        let (h, len) = (self.handle, data.len());
        submit(
            "rbd_aio_compare_and_write",
            data,
            cmp,
            Box::new(done),
            |c, b| {
                // SAFETY: open image; both buffers hold `len` bytes and
                // `b.mismatch` is writable until the completion.
                let r = unsafe {
                    ffi::rbd_aio_compare_and_write(
                        h,
                        offset,
                        len,
                        b.cmp.cast(),
                        b.buf.cast(),
                        c,
                        b.mismatch,
                        0,
                    )
                };
                i64::try_from(r).unwrap_or(i64::from(-libc::EIO))
            },
        )
    }

    /// Runs one `aio_*` call and waits for its completion (for callers that
    /// may block, and tests). A refused submission is the `Err`.
    pub fn wait(start: impl FnOnce(DoneFn) -> Result<(), RbdError>) -> Result<AioDone, RbdError> {
        let (tx, rx) = mpsc::sync_channel(1);
        start(Box::new(move |d| {
            let _ = tx.send(d);
        }))?;
        rx.recv().map_err(|_| RbdError {
            op: "aio completion",
            errno: libc::EIO,
        })
    }
}

/// The iovecs of `spans`.
fn iovecs(spans: &[(*mut u8, usize)]) -> Vec<libc::iovec> {
    spans
        .iter()
        .map(|&(p, len)| libc::iovec {
            iov_base: p.cast::<c_void>(),
            iov_len: len,
        })
        .collect()
}

/// Runs `done` for an operation refused before librbd saw it; returns `e`.
fn refused<B>(e: RbdError, bufs: B, done: impl FnOnce(AioDone, B)) -> RbdError {
    done(
        AioDone {
            result: Err(e.clone()),
            buf: Vec::new(),
            mismatch_offset: None,
        },
        bufs,
    );
    e
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the handle came from rbd_open and is closed once; close
        // waits for the image's in-flight operations.
        let r = unsafe { ffi::rbd_close(self.handle) };
        if r < 0 {
            // Nothing to do about it but not to use the handle again.
            let _ = RbdError::from_ret("rbd_close", r.into());
        }
    }
}
