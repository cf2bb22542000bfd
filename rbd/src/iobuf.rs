//! Memory that librbd reads into or writes from in place
//! ([`crate::Image::aio_readv`], [`crate::Image::aio_writev`]): no bounce
//! buffer between the cluster and the caller's pages.

use tcmud_core::ring::SharedData;

use crate::RbdError;

/// Buffers handed to librbd for the whole of an asynchronous operation.
///
/// # Safety
///
/// Every `(address, length)` that [`IoBuffers::io_spans`] returns must be
/// valid for reads and writes of `length` bytes from the call until the
/// value is dropped, also after the value is moved (the operation keeps it
/// until its completion), and no one else may access those bytes meanwhile
/// except through raw pointers that never form a Rust reference into them.
pub unsafe trait IoBuffers: Send + 'static {
    /// The buffers' addresses and lengths, in order.
    fn io_spans(&mut self) -> Result<Vec<(*mut u8, usize)>, RbdError>;
}

// SAFETY: the inner vectors' heap buffers do not move when the outer vector
// (or the value) moves, nor while it lives: nothing resizes them, and they
// are owned by the value alone (so nobody else accesses them).
unsafe impl IoBuffers for Vec<Vec<u8>> {
    fn io_spans(&mut self) -> Result<Vec<(*mut u8, usize)>, RbdError> {
        Ok(self.iter_mut().map(|v| (v.as_mut_ptr(), v.len())).collect())
    }
}

// SAFETY: `SharedData::raw_spans` returns spans checked against the ring's
// mapping, which the value holds (an `Arc`), so they stay mapped while it
// lives and wherever it moves. Only the executor of the command in flight
// holds its `SharedData` (the daemon hands it to one backend call and
// completes the command only from that call's completion), and the kernel
// does not touch a command's data pages between queueing it and its
// completion: nobody else accesses them during the operation. The mapping
// never forms references into the region, only raw-pointer accesses.
unsafe impl IoBuffers for SharedData {
    fn io_spans(&mut self) -> Result<Vec<(*mut u8, usize)>, RbdError> {
        self.raw_spans().map_err(|_| RbdError {
            op: "data area buffers",
            errno: libc::EFAULT,
        })
    }
}
