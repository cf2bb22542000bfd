//! Asynchronous completions: an operation's buffers and closure are boxed,
//! handed to librbd as the completion's argument, and taken back exactly
//! once by [`on_complete`] on a librbd thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use libc::c_void;

use crate::ffi;
use crate::RbdError;

/// What an asynchronous operation hands its closure.
#[derive(Debug)]
pub struct AioDone {
    /// The outcome: librbd's non-negative return value (bytes for a read),
    /// or the error.
    pub result: Result<usize, RbdError>,
    /// The operation's data buffer back (for a read: the bytes read).
    pub buf: Vec<u8>,
    /// A COMPARE AND WRITE that miscompared: the offset of the first
    /// differing byte from the start of the compared range.
    pub mismatch_offset: Option<u64>,
}

/// The closure run on completion (on a librbd thread).
pub type DoneFn = Box<dyn FnOnce(AioDone) + Send + 'static>;

/// One operation in flight: owned by librbd from submission to completion.
struct Pending {
    op: &'static str,
    buf: Vec<u8>,
    cmp: Vec<u8>,
    /// The caller's buffers of a vectored operation (their memory is owned
    /// by `done`, which holds it until the completion).
    iov: Vec<libc::iovec>,
    mismatch: u64,
    done: DoneFn,
}

/// Raw addresses of an operation's buffers, valid until it completes.
pub(crate) struct Bufs {
    pub buf: *mut u8,
    pub cmp: *const u8,
    pub iov: *const libc::iovec,
    pub iovcnt: libc::c_int,
    pub mismatch: *mut u64,
}

extern "C" fn on_complete(c: ffi::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the `Box<Pending>` leaked by `submit` for this
    // completion, and librbd calls this callback once per completion, so the
    // box is reclaimed exactly once.
    let p = unsafe { Box::from_raw(arg.cast::<Pending>()) };
    // SAFETY: `c` is the completion that just completed, still unreleased.
    let ret = unsafe { ffi::rbd_aio_get_return_value(c) };
    // SAFETY: as above; released exactly once, here, and not used after.
    unsafe { ffi::rbd_aio_release(c) };
    let Pending {
        op,
        buf,
        mismatch,
        done,
        ..
    } = *p;
    let ret = i64::try_from(ret).unwrap_or(i64::from(-libc::EIO));
    // A byte count (non-negative) of one buffer of ours: it fits a usize.
    let result = RbdError::check(op, ret).and_then(|n| {
        usize::try_from(n).map_err(|_| RbdError {
            op,
            errno: libc::EOVERFLOW,
        })
    });
    let mismatch_offset = (ret == i64::from(-libc::EILSEQ)).then_some(mismatch);
    // A panic must not unwind into C (that would abort the process); the
    // closure's owner finds the operation unfinished instead.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        done(AioDone {
            result,
            buf,
            mismatch_offset,
        })
    }));
}

/// Submits one operation: `start` gets the completion and the buffers'
/// addresses and calls the `rbd_aio_*` function. On success librbd owns
/// `buf`, `cmp` and `done` until [`on_complete`] runs `done`; on a
/// submission failure `done` runs at once with the error, which is also
/// returned. Either way `done` runs exactly once.
pub(crate) fn submit(
    op: &'static str,
    buf: Vec<u8>,
    cmp: Vec<u8>,
    done: DoneFn,
    start: impl FnOnce(ffi::rbd_completion_t, &Bufs) -> i64,
) -> Result<(), RbdError> {
    submit_iov(op, buf, cmp, Vec::new(), done, start)
}

/// [`submit`] with an iovec array too (kept, at a stable address, until the
/// completion: librbd's vectored read keeps a pointer to it).
pub(crate) fn submit_iov(
    op: &'static str,
    buf: Vec<u8>,
    cmp: Vec<u8>,
    iov: Vec<libc::iovec>,
    done: DoneFn,
    start: impl FnOnce(ffi::rbd_completion_t, &Bufs) -> i64,
) -> Result<(), RbdError> {
    let Ok(iovcnt) = libc::c_int::try_from(iov.len()) else {
        let e = RbdError {
            op,
            errno: libc::EINVAL,
        };
        let p = Pending {
            op,
            buf,
            cmp,
            iov,
            mismatch: 0,
            done,
        };
        return Err(fail(p, e));
    };
    let pending = Box::into_raw(Box::new(Pending {
        op,
        buf,
        cmp,
        iov,
        mismatch: 0,
        done,
    }));
    // SAFETY: `pending` is a live, uniquely owned allocation until the
    // completion callback (or the failure path below) takes it back; the
    // buffers' heap addresses do not move when the box is read later, as
    // the vectors are never resized.
    let bufs = unsafe {
        Bufs {
            buf: (*pending).buf.as_mut_ptr(),
            cmp: (*pending).cmp.as_ptr(),
            iov: (*pending).iov.as_ptr(),
            iovcnt,
            mismatch: ptr::addr_of_mut!((*pending).mismatch),
        }
    };
    let mut c: ffi::rbd_completion_t = ptr::null_mut();
    // SAFETY: valid out-pointer; `on_complete` matches `rbd_callback_t` and
    // is given `pending` as its argument.
    let r = unsafe { ffi::rbd_aio_create_completion(pending.cast(), on_complete, &mut c) };
    if r < 0 {
        // SAFETY: no completion exists, so nobody else has `pending`.
        let p = unsafe { Box::from_raw(pending) };
        return Err(fail(
            *p,
            RbdError::from_ret("rbd_aio_create_completion", r.into()),
        ));
    }
    // `pending` must not be touched from here on: the callback may already
    // have run (and freed it) when `start` returns success.
    let r = start(c, &bufs);
    if r < 0 {
        // A refused submission never completes: release the completion
        // and take the operation back.
        // SAFETY: `c` was created above and never submitted.
        unsafe { ffi::rbd_aio_release(c) };
        // SAFETY: the callback will not run, so `pending` is ours again.
        let p = unsafe { Box::from_raw(pending) };
        return Err(fail(*p, RbdError::from_ret(op, r)));
    }
    Ok(())
}

/// Runs a refused operation's closure with `e`; returns `e`.
fn fail(p: Pending, e: RbdError) -> RbdError {
    let done = p.done;
    let d = AioDone {
        result: Err(e.clone()),
        buf: p.buf,
        mismatch_offset: None,
    };
    let _ = catch_unwind(AssertUnwindSafe(move || done(d)));
    e
}
