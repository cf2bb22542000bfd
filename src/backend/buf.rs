//! Where a backend's data goes and comes from: [`BlockSink`] (read
//! destination) and [`BlockSource`] (write source).
//!
//! Plain memory implements both; so does a command's buffers in the ring's
//! data area ([`crate::ring::RingData`]), which lets a backend read straight
//! into, and write straight from, the pages the kernel hands to the
//! initiator: no intermediate buffer, no extra copy. Offsets are byte
//! offsets from the start of the sink or source; every method checks its
//! range against [`BlockSink::len`] / [`BlockSource::len`].

use std::io;
use std::os::fd::BorrowedFd;

/// Destination of a read.
pub trait BlockSink {
    /// Capacity in bytes.
    fn len(&self) -> usize;

    /// True when the capacity is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `src` to bytes `[at, at + src.len())`.
    fn write_at(&mut self, at: usize, src: &[u8]) -> io::Result<()>;

    /// Zeroes bytes `[at, at + len)`.
    fn zero_at(&mut self, at: usize, len: usize) -> io::Result<()>;

    /// Reads `len` bytes of `fd` at `file_off` into `[at, at + len)` with
    /// `pread` (retried on short reads and `EINTR`) until they are all read
    /// or the file ends; returns the bytes read, fewer than `len` only at
    /// end of file (the rest of the range is left as it was).
    fn pread_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize>;

    /// Reads `len` bytes of `fd` at `file_off` into `[at, at + len)` only
    /// as far as that needs no wait for a device (`preadv2` with
    /// `RWF_NOWAIT`: page-cache hits), so that a caller that must not block
    /// can try it and hand the work to a thread that may block when it
    /// falls short. Returns the bytes read (fewer than `len`: the rest would
    /// have waited, or end of file); `ErrorKind::WouldBlock` when not even
    /// that can be tried. The default (plain memory) never tries.
    fn pread_nowait_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize> {
        let _ = (at, len, fd, file_off);
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// The sink as one plain buffer, when it is one (backends then read
    /// into it directly).
    fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        None
    }
}

/// Source of a write.
pub trait BlockSource {
    /// Length in bytes.
    fn len(&self) -> usize;

    /// True when the length is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies bytes `[at, at + dst.len())` into `dst`.
    fn read_at(&self, at: usize, dst: &mut [u8]) -> io::Result<()>;

    /// Writes bytes `[at, at + len)` to `fd` at `file_off` with `pwrite`
    /// (retried on short writes and `EINTR`).
    fn pwrite_at(&self, at: usize, len: usize, fd: BorrowedFd<'_>, file_off: u64)
        -> io::Result<()>;

    /// The source as one plain buffer, when it is one.
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// The error for a range outside a sink or source.
pub(crate) fn out_of_range(at: usize, len: usize, cap: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("byte range {at}+{len} outside a buffer of {cap} bytes"),
    )
}

/// `[at, at + len)` as a range inside `cap` bytes.
pub(crate) fn checked_range(
    at: usize,
    len: usize,
    cap: usize,
) -> io::Result<std::ops::Range<usize>> {
    match at.checked_add(len) {
        Some(end) if end <= cap => Ok(at..end),
        _ => Err(out_of_range(at, len, cap)),
    }
}

/// Offset `file_off + done` as an `off_t`.
pub(crate) fn file_offset(file_off: u64, done: usize) -> io::Result<libc::off_t> {
    u64::try_from(done)
        .ok()
        .and_then(|d| file_off.checked_add(d))
        .and_then(|o| libc::off_t::try_from(o).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows"))
}

fn slice_write_at(buf: &mut [u8], at: usize, src: &[u8]) -> io::Result<()> {
    let r = checked_range(at, src.len(), buf.len())?;
    buf.get_mut(r)
        .ok_or_else(|| out_of_range(at, src.len(), 0))?
        .copy_from_slice(src);
    Ok(())
}

fn slice_zero_at(buf: &mut [u8], at: usize, len: usize) -> io::Result<()> {
    let r = checked_range(at, len, buf.len())?;
    buf.get_mut(r)
        .ok_or_else(|| out_of_range(at, len, 0))?
        .fill(0);
    Ok(())
}

fn slice_pread_at(
    buf: &mut [u8],
    at: usize,
    len: usize,
    fd: BorrowedFd<'_>,
    file_off: u64,
) -> io::Result<usize> {
    let r = checked_range(at, len, buf.len())?;
    let buf = buf.get_mut(r).ok_or_else(|| out_of_range(at, len, 0))?;
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        match nix::sys::uio::pread(fd, rest, file_offset(file_off, done)?) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

fn slice_read_at(buf: &[u8], at: usize, dst: &mut [u8]) -> io::Result<()> {
    let r = checked_range(at, dst.len(), buf.len())?;
    dst.copy_from_slice(buf.get(r).ok_or_else(|| out_of_range(at, dst.len(), 0))?);
    Ok(())
}

fn slice_pwrite_at(
    buf: &[u8],
    at: usize,
    len: usize,
    fd: BorrowedFd<'_>,
    file_off: u64,
) -> io::Result<()> {
    let r = checked_range(at, len, buf.len())?;
    let buf = buf.get(r).ok_or_else(|| out_of_range(at, len, 0))?;
    let mut done = 0usize;
    while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
        match nix::sys::uio::pwrite(fd, rest, file_offset(file_off, done)?) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Plain memory as a sink and a source, for each type that derefs to a
/// byte slice.
macro_rules! plain_memory {
    ($sink:ty, $source:ty) => {
        impl BlockSink for $sink {
            fn len(&self) -> usize {
                <[u8]>::len(self)
            }
            fn write_at(&mut self, at: usize, src: &[u8]) -> io::Result<()> {
                slice_write_at(self, at, src)
            }
            fn zero_at(&mut self, at: usize, len: usize) -> io::Result<()> {
                slice_zero_at(self, at, len)
            }
            fn pread_at(
                &mut self,
                at: usize,
                len: usize,
                fd: BorrowedFd<'_>,
                file_off: u64,
            ) -> io::Result<usize> {
                slice_pread_at(self, at, len, fd, file_off)
            }
            fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
                Some(&mut self[..])
            }
        }

        impl BlockSource for $source {
            fn len(&self) -> usize {
                <[u8]>::len(self)
            }
            fn read_at(&self, at: usize, dst: &mut [u8]) -> io::Result<()> {
                slice_read_at(self, at, dst)
            }
            fn pwrite_at(
                &self,
                at: usize,
                len: usize,
                fd: BorrowedFd<'_>,
                file_off: u64,
            ) -> io::Result<()> {
                slice_pwrite_at(self, at, len, fd, file_off)
            }
            fn as_slice(&self) -> Option<&[u8]> {
                Some(&self[..])
            }
        }
    };
}

// `&mut buf` with `buf: &mut [u8]` is a `&mut dyn BlockSink`, `&data` with
// `data: &[u8]` a `&dyn BlockSource`; a `Vec<u8>` is both.
plain_memory!(&mut [u8], &[u8]);
plain_memory!(Vec<u8>, Vec<u8>);

/// The first `len` bytes of a sink (e.g. the part of the initiator's
/// buffer one READ fills).
pub struct SinkPrefix<'a> {
    inner: &'a mut dyn BlockSink,
    len: usize,
}

impl<'a> SinkPrefix<'a> {
    /// The first `len` bytes of `inner`; `None` when `inner` is shorter.
    pub fn new(inner: &'a mut dyn BlockSink, len: usize) -> Option<SinkPrefix<'a>> {
        (len <= inner.len()).then_some(SinkPrefix { inner, len })
    }
}

impl BlockSink for SinkPrefix<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn write_at(&mut self, at: usize, src: &[u8]) -> io::Result<()> {
        checked_range(at, src.len(), self.len)?;
        self.inner.write_at(at, src)
    }
    fn zero_at(&mut self, at: usize, len: usize) -> io::Result<()> {
        checked_range(at, len, self.len)?;
        self.inner.zero_at(at, len)
    }
    fn pread_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize> {
        checked_range(at, len, self.len)?;
        self.inner.pread_at(at, len, fd, file_off)
    }
    fn pread_nowait_at(
        &mut self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<usize> {
        checked_range(at, len, self.len)?;
        self.inner.pread_nowait_at(at, len, fd, file_off)
    }
    fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        let len = self.len;
        self.inner.as_mut_slice().and_then(|s| s.get_mut(..len))
    }
}

/// The first `len` bytes of a source (the part of the data-out one WRITE
/// uses).
pub struct SourcePrefix<'a> {
    inner: &'a dyn BlockSource,
    len: usize,
}

impl<'a> SourcePrefix<'a> {
    /// The first `len` bytes of `inner`; `None` when `inner` is shorter.
    pub fn new(inner: &'a dyn BlockSource, len: usize) -> Option<SourcePrefix<'a>> {
        (len <= inner.len()).then_some(SourcePrefix { inner, len })
    }
}

impl BlockSource for SourcePrefix<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn read_at(&self, at: usize, dst: &mut [u8]) -> io::Result<()> {
        checked_range(at, dst.len(), self.len)?;
        self.inner.read_at(at, dst)
    }
    fn pwrite_at(
        &self,
        at: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
    ) -> io::Result<()> {
        checked_range(at, len, self.len)?;
        self.inner.pwrite_at(at, len, fd, file_off)
    }
    fn as_slice(&self) -> Option<&[u8]> {
        self.inner.as_slice().and_then(|s| s.get(..self.len))
    }
}
