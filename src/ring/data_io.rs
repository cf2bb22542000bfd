//! [`RingData`]: a command's buffers in the data area as a backend
//! [`BlockSink`] / [`BlockSource`], so that a backend reads straight into
//! (and writes straight from) the pages the kernel shares with the
//! initiator: one `memset`, `memcpy`, `pread` or `pwrite` per span, no
//! intermediate buffer.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use super::data::DataSpans;
use super::device::Ring;
use super::error::RingError;
use super::mapping::Mapping;
use crate::backend::buf::{checked_range, file_offset, out_of_range};
use crate::backend::{BlockSink, BlockSource};

/// A validated view of one in-flight command's data buffers.
///
/// It borrows the [`Ring`], so the command cannot be completed (and its
/// pages released by the kernel) while the view lives. Every span was
/// checked against the data area when the view was made.
#[derive(Debug, Clone, Copy)]
pub struct RingData<'a> {
    map: &'a Mapping,
    spans: &'a DataSpans,
}

impl Ring {
    /// A view of `spans` for a backend to read into or write from. Fails
    /// like [`Ring::read_data_out`] when the command is no longer in flight
    /// or a span lies outside this ring's data area.
    pub fn data<'a>(&'a self, spans: &'a DataSpans) -> Result<RingData<'a>, RingError> {
        self.spans_live(spans)?;
        for s in spans.as_spans() {
            self.span_ok(s)?;
        }
        Ok(RingData {
            map: self.map(),
            spans,
        })
    }

    /// Like [`Ring::data`], but owned: an I/O thread can hold it while the
    /// ring stays with its actor. Nothing stops the command being completed
    /// while it is in use — the caller must not complete the command before
    /// it is done with the view (the daemon's in-flight table keeps a
    /// command running until its job returns). Misuse cannot touch memory
    /// outside the mapping (it stays mapped while the view lives, and every
    /// access is bounds-checked), but the bytes would then belong to
    /// another command.
    pub fn share_data(&self, spans: &DataSpans) -> Result<SharedData, RingError> {
        self.data(spans)?;
        Ok(SharedData {
            map: self.shared_map(),
            spans: spans.clone(),
        })
    }
}

/// An owned [`RingData`]: one in-flight command's buffers for an I/O
/// thread (see [`Ring::share_data`]).
#[derive(Debug, Clone)]
pub struct SharedData {
    map: Arc<Mapping>,
    spans: DataSpans,
}

impl SharedData {
    /// The buffers as a [`BlockSink`] / [`BlockSource`] view.
    pub fn view(&self) -> RingData<'_> {
        RingData {
            map: &self.map,
            spans: &self.spans,
        }
    }

    /// How many buffers (iovs) the command's data is in.
    pub fn span_count(&self) -> usize {
        self.spans.span_count()
    }

    /// The first `len` bytes of the buffers (a command whose transfer is
    /// shorter than its buffers); `None` when they hold fewer.
    pub fn prefix(&self, len: usize) -> Option<SharedData> {
        if len > self.spans.len() {
            return None;
        }
        let mut spans = DataSpans::for_cmd(self.spans.cmd_id());
        let mut left = len;
        for s in self.spans.as_spans() {
            if left == 0 {
                break;
            }
            let n = s.len.min(left);
            spans.push_checked(s.off, n)?;
            left -= n;
        }
        Some(SharedData {
            map: Arc::clone(&self.map),
            spans,
        })
    }

    /// The buffers' addresses and lengths, in order, for an FFI layer that
    /// hands them to a library doing the I/O on threads of its own (librbd's
    /// `rbd_aio_readv`/`rbd_aio_writev`: straight between the cluster and
    /// the initiator's pages, no bounce buffer).
    ///
    /// Each span was checked against the data area when this value was
    /// made, and again here against the mapping. The addresses stay valid
    /// while this value (or a clone) lives: it holds the mapping. The rule
    /// of every access to a command's buffers applies to whoever
    /// dereferences them: only while the command is in flight and not yet
    /// completed (the kernel touches its pages only before queueing it and
    /// after its completion), and never as a Rust reference.
    pub fn raw_spans(&self) -> Result<Vec<(*mut u8, usize)>, RingError> {
        self.spans
            .as_spans()
            .iter()
            .map(|s| self.map.span_addr(s.off, s.len).map(|p| (p, s.len)))
            .collect()
    }
}

impl RingData<'_> {
    /// Total bytes of the command's buffers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the command has no data.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Calls `f(mapping offset, offset from at, length)` for each piece of
    /// `[at, at + len)`, span by span.
    fn each(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        checked_range(at, len, self.spans.len())?;
        let mut skip = at;
        let mut done = 0usize;
        for s in self.spans.as_spans() {
            if done == len {
                break;
            }
            if skip >= s.len {
                skip -= s.len;
                continue;
            }
            let n = (s.len - skip).min(len - done);
            f(s.off + skip, done, n)?;
            done += n;
            skip = 0;
        }
        Ok(())
    }
}

fn ring_io(e: RingError) -> io::Error {
    match e {
        RingError::Io { source, .. } => source,
        other => io::Error::other(other),
    }
}

/// Runs `op(done)` (one `pwrite` of bytes `done..n` of a piece) until the
/// piece is written; `EINTR` is retried.
fn whole(n: usize, mut op: impl FnMut(usize) -> io::Result<usize>) -> io::Result<()> {
    let mut done = 0usize;
    while done < n {
        match op(done) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl BlockSink for RingData<'_> {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn write_at(&mut self, at: usize, src: &[u8]) -> io::Result<()> {
        let map = self.map;
        self.each(at, src.len(), |off, done, n| {
            let piece = src
                .get(done..done + n)
                .ok_or_else(|| out_of_range(done, n, src.len()))?;
            map.copy_in(off, piece).map_err(ring_io)
        })
    }

    fn zero_at(&mut self, at: usize, len: usize) -> io::Result<()> {
        let map = self.map;
        self.each(at, len, |off, _, n| {
            map.fill_data(off, n, 0).map_err(ring_io)
        })
    }

    fn pread_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize> {
        let map = self.map;
        let mut total = 0usize;
        let mut eof = false;
        self.each(at, len, |off, done, n| {
            let mut got = 0usize;
            while got < n && !eof {
                let fo = file_offset(file_off, done + got)?;
                match map.pread_data(off + got, n - got, fd, fo, 0) {
                    Ok(0) => eof = true,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            total += got;
            Ok(())
        })?;
        Ok(total)
    }

    fn pread_nowait_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize> {
        let map = self.map;
        let mut total = 0usize;
        let mut short = false;
        self.each(at, len, |off, done, n| {
            if short {
                return Ok(());
            }
            let fo = file_offset(file_off, done)?;
            let got = match map.pread_data(off, n, fd, fo, libc::RWF_NOWAIT) {
                Ok(k) => k,
                // Nothing more without waiting (EAGAIN) or not at all.
                Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            total += got;
            short = got < n;
            Ok(())
        })?;
        Ok(total)
    }
}

impl BlockSource for RingData<'_> {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn read_at(&self, at: usize, dst: &mut [u8]) -> io::Result<()> {
        let map = self.map;
        self.each(at, dst.len(), |off, done, n| {
            let cap = dst.len();
            let piece = dst
                .get_mut(done..done + n)
                .ok_or_else(|| out_of_range(done, n, cap))?;
            map.copy_out(off, piece).map_err(ring_io)
        })
    }

    fn pwrite_at(
        &self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<()> {
        let map = self.map;
        self.each(at, len, |off, done, n| {
            whole(n, |put| {
                let fo = file_offset(file_off, done + put)?;
                map.pwrite_data(off + put, n - put, fd, fo)
            })
        })
    }
}
