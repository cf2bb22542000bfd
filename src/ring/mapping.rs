//! The shared-memory mapping: THE ONLY `unsafe` code of the project.
//!
//! The region is shared with a peer we do not trust (the kernel, or the
//! simulator in tests): it may change any byte at any time. So this module
//! never hands out `&`/`&mut` to the region's bytes. Every access goes
//! through a raw pointer with volatile (or atomic) loads and stores, after a
//! bounds check against the length fixed when the mapping was made.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw, UncheckedAdvice};

use super::error::RingError;

/// A read-write shared mapping of `len` bytes at offset 0 of a file.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: MmapRaw,
    len: usize,
    /// The system's page size (what `madvise` ranges are aligned to).
    page: usize,
}

/// The system's page size.
fn page_size() -> Result<usize, RingError> {
    // SAFETY: sysconf reads a constant of the C library; nothing is passed
    // by pointer.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v)
        .ok()
        .filter(|p| p.is_power_of_two())
        .ok_or(RingError::Internal("sysconf(_SC_PAGESIZE) failed"))
}

impl Mapping {
    /// Maps exactly `len` bytes of `file` (a uio device or a plain file)
    /// shared, read-write. `len` must be non-zero.
    pub(crate) fn new(file: &File, len: usize) -> Result<Mapping, RingError> {
        if len == 0 {
            return Err(RingError::OutOfBounds { off: 0, len: 0 });
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(file)
            .map_err(|e| RingError::io("mmap", e))?;
        if map.len() != len {
            return Err(RingError::Internal("mmap returned a different length"));
        }
        Ok(Mapping {
            map,
            len,
            page: page_size()?,
        })
    }

    /// Start address of the mapping (to find it in `/proc/self/smaps`).
    pub(crate) fn addr(&self) -> usize {
        self.map.as_ptr() as usize
    }

    /// Drops this process's page-table entries for the whole pages inside
    /// `[off, off + len)` (`madvise(MADV_DONTNEED)`): command-ring pages
    /// every entry of which is retired. The bytes stay where they are (the
    /// kernel's pages of the ring, or the simulator's memfd): this changes
    /// only what this process has mapped, and the next access maps them
    /// again, unchanged (a minor fault). Pages only partly inside the range
    /// are kept.
    pub(crate) fn release_pages(&self, off: usize, len: usize) -> Result<(), RingError> {
        let mask = self.page - 1;
        let start = off.checked_add(mask).map(|v| v & !mask);
        let end = off.checked_add(len).map(|v| v & !mask);
        let (Some(start), Some(end)) = (start, end) else {
            return Err(RingError::OutOfBounds {
                off: off as u64,
                len: len as u64,
            });
        };
        if end <= start {
            return Ok(());
        }
        self.at(start, end - start)?;
        // SAFETY: in bounds (checked just above) and page-aligned. The
        // mapping is MAP_SHARED of a file (a uio device or a memfd), so
        // MADV_DONTNEED only removes this process's page-table entries: the
        // contents live on in the file's pages and the next access faults
        // them back in as they are (unlike a private or anonymous mapping,
        // where they would read back as zeros). This module never hands out
        // references into the region, so none can observe the change.
        unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
        }
        .map_err(|e| RingError::io("madvise(MADV_DONTNEED)", e))
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Checks `[off, off + size)` against the mapping and returns a pointer
    /// to `off`. This is the single bounds check every accessor goes through.
    #[inline]
    fn at(&self, off: usize, size: usize) -> Result<*mut u8, RingError> {
        match off.checked_add(size) {
            Some(end) if end <= self.len => Ok(self.map.as_mut_ptr().wrapping_add(off)),
            _ => Err(RingError::OutOfBounds {
                off: off as u64,
                len: size as u64,
            }),
        }
    }

    /// The address of the data-area span `[off, off + len)`, bounds-checked,
    /// for a library that does a command's I/O into or out of its buffers
    /// on threads of its own (librbd's `rbd_aio_readv`/`rbd_aio_writev`,
    /// through [`super::SharedData::raw_spans`]). No access happens here;
    /// whoever dereferences it must keep the mapping alive meanwhile and
    /// follow the ownership rule of [`Mapping::copy_out`].
    pub(crate) fn span_addr(&self, off: usize, len: usize) -> Result<*mut u8, RingError> {
        self.at(off, len)
    }

    /// Reads `N` bytes at `off` (volatile; one load when aligned).
    #[inline]
    fn read_array<const N: usize>(&self, off: usize) -> Result<[u8; N], RingError> {
        let p = self.at(off, N)?;
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `at` checked that `[off, off + N)` lies inside the live
            // mapping of `self.len` bytes (kept alive by `self.map`), so
            // `p + i` for `i < N` is in bounds. Volatile u8 reads have no
            // alignment requirement and never create a reference.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(out)
    }

    /// Writes `bytes` at `off` (volatile, byte by byte).
    #[inline]
    fn write_array(&self, off: usize, bytes: &[u8]) -> Result<(), RingError> {
        let p = self.at(off, bytes.len())?;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: `at` checked `[off, off + bytes.len())` against the live
            // mapping; `p + i` is in bounds; a volatile u8 store needs no
            // alignment and forms no reference into the shared region.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Reads a byte.
    #[inline]
    pub(crate) fn read_u8(&self, off: usize) -> Result<u8, RingError> {
        Ok(self.read_array::<1>(off)?[0])
    }

    /// Reads a native-endian u16 (one volatile load when 2-aligned).
    #[inline]
    pub(crate) fn read_u16(&self, off: usize) -> Result<u16, RingError> {
        let p = self.at(off, 2)?;
        if (p as usize) % 2 == 0 {
            // SAFETY: in bounds (checked by `at`), 2-aligned (checked just
            // above), and a volatile load forms no reference.
            return Ok(unsafe { p.cast::<u16>().read_volatile() });
        }
        Ok(u16::from_ne_bytes(self.read_array(off)?))
    }

    /// Reads a native-endian u32 (one volatile load when 4-aligned).
    #[inline]
    pub(crate) fn read_u32(&self, off: usize) -> Result<u32, RingError> {
        let p = self.at(off, 4)?;
        if (p as usize) % 4 == 0 {
            // SAFETY: in bounds (checked by `at`), 4-aligned (checked just
            // above), and a volatile load forms no reference.
            return Ok(unsafe { p.cast::<u32>().read_volatile() });
        }
        Ok(u32::from_ne_bytes(self.read_array(off)?))
    }

    /// Reads a native-endian u64 (one volatile load when 8-aligned).
    #[inline]
    pub(crate) fn read_u64(&self, off: usize) -> Result<u64, RingError> {
        let p = self.at(off, 8)?;
        if (p as usize) % 8 == 0 {
            // SAFETY: in bounds (checked by `at`), 8-aligned (checked just
            // above), and a volatile load forms no reference.
            return Ok(unsafe { p.cast::<u64>().read_volatile() });
        }
        Ok(u64::from_ne_bytes(self.read_array(off)?))
    }

    /// Reads `N` native-endian u64 words at `off` with one bounds check
    /// (one volatile load each when 8-aligned): a snapshot of an entry's
    /// fixed fields, parsed from the copy.
    #[inline]
    pub(crate) fn read_words<const N: usize>(&self, off: usize) -> Result<[u64; N], RingError> {
        let p = self.at(off, 8 * N)?;
        let mut out = [0u64; N];
        if (p as usize) % 8 == 0 {
            for (i, w) in out.iter_mut().enumerate() {
                // SAFETY: `at` checked `[off, off + 8N)` against the live
                // mapping, so `p + 8i` for `i < N` is in bounds; it is
                // 8-aligned (checked just above); a volatile load forms no
                // reference.
                *w = unsafe { p.add(8 * i).cast::<u64>().read_volatile() };
            }
            return Ok(out);
        }
        for (i, w) in out.iter_mut().enumerate() {
            *w = u64::from_ne_bytes(self.read_array(off + 8 * i)?);
        }
        Ok(out)
    }

    /// Writes a byte.
    #[inline]
    pub(crate) fn write_u8(&self, off: usize, v: u8) -> Result<(), RingError> {
        self.write_array(off, &[v])
    }

    /// Writes a native-endian u16 (one volatile store when 2-aligned).
    #[inline]
    pub(crate) fn write_u16(&self, off: usize, v: u16) -> Result<(), RingError> {
        let p = self.at(off, 2)?;
        if (p as usize) % 2 == 0 {
            // SAFETY: in bounds (checked by `at`), 2-aligned (checked just
            // above); a volatile store forms no reference.
            unsafe { p.cast::<u16>().write_volatile(v) };
            return Ok(());
        }
        self.write_array(off, &v.to_ne_bytes())
    }

    /// Writes a native-endian u32 (one volatile store when 4-aligned).
    #[inline]
    pub(crate) fn write_u32(&self, off: usize, v: u32) -> Result<(), RingError> {
        let p = self.at(off, 4)?;
        if (p as usize) % 4 == 0 {
            // SAFETY: in bounds (checked by `at`), 4-aligned (checked just
            // above); a volatile store forms no reference.
            unsafe { p.cast::<u32>().write_volatile(v) };
            return Ok(());
        }
        self.write_array(off, &v.to_ne_bytes())
    }

    /// Writes a native-endian u64 (one volatile store when 8-aligned).
    #[inline]
    pub(crate) fn write_u64(&self, off: usize, v: u64) -> Result<(), RingError> {
        let p = self.at(off, 8)?;
        if (p as usize) % 8 == 0 {
            // SAFETY: in bounds (checked by `at`), 8-aligned (checked just
            // above); a volatile store forms no reference.
            unsafe { p.cast::<u64>().write_volatile(v) };
            return Ok(());
        }
        self.write_array(off, &v.to_ne_bytes())
    }

    /// Pointer to a 4-aligned in-bounds u32, for the atomic accessors.
    #[inline]
    fn atomic_at(&self, off: usize) -> Result<*mut u32, RingError> {
        let p = self.at(off, 4)?;
        if (p as usize) % 4 != 0 {
            return Err(RingError::Internal("unaligned atomic access"));
        }
        Ok(p.cast::<u32>())
    }

    /// Loads a u32 with Acquire ordering (the peer's index: everything the
    /// peer wrote before its Release store of this index is visible after).
    #[inline]
    pub(crate) fn load_u32_acquire(&self, off: usize) -> Result<u32, RingError> {
        let p = self.atomic_at(off)?;
        // SAFETY: `p` is in bounds and 4-aligned (checked by `atomic_at`) and
        // the mapping outlives this call. `AtomicU32` has the size and
        // alignment of `u32`, and an atomic view is the right one for memory
        // another party writes concurrently; the `&AtomicU32` lives only for
        // this one load.
        Ok(unsafe { AtomicU32::from_ptr(p) }.load(Ordering::Acquire))
    }

    /// Stores a u32 with Release ordering (our index: every response byte
    /// written before it is visible to a peer that loads it with Acquire).
    #[inline]
    pub(crate) fn store_u32_release(&self, off: usize, v: u32) -> Result<(), RingError> {
        let p = self.atomic_at(off)?;
        // SAFETY: as in `load_u32_acquire`: in bounds, aligned, atomic view
        // of shared memory, transient reference only.
        unsafe { AtomicU32::from_ptr(p) }.store(v, Ordering::Release);
        Ok(())
    }

    /// Copies `buf.len()` bytes from the region at `off` into `buf`
    /// (volatile, 8 bytes at a time where aligned).
    pub(crate) fn read_into(&self, off: usize, buf: &mut [u8]) -> Result<(), RingError> {
        let p = self.at(off, buf.len())?;
        let lead = p.align_offset(8).min(buf.len());
        let (head, rest) = buf.split_at_mut(lead);
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: `i < lead <= buf.len()` and `[off, off + buf.len())`
            // was checked by `at`; volatile u8 load, no reference formed.
            *b = unsafe { p.add(i).read_volatile() };
        }
        let body = p.wrapping_add(lead);
        let mut chunks = rest.chunks_exact_mut(8);
        let mut done = 0usize;
        for c in &mut chunks {
            // SAFETY: `body + done` is 8-aligned (`lead` aligned it, `done` is
            // a multiple of 8) and `[done, done + 8)` lies within `rest`,
            // whose bytes map to in-bounds region bytes checked by `at`.
            let v = unsafe { body.add(done).cast::<u64>().read_volatile() };
            c.copy_from_slice(&v.to_ne_bytes());
            done += 8;
        }
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            // SAFETY: `done + i < rest.len()`: in bounds as above; volatile
            // u8 load.
            *b = unsafe { body.add(done + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `buf` into the region at `off` (volatile, 8 bytes at a time
    /// where aligned).
    pub(crate) fn write_from(&self, off: usize, buf: &[u8]) -> Result<(), RingError> {
        let p = self.at(off, buf.len())?;
        let lead = p.align_offset(8).min(buf.len());
        let (head, rest) = buf.split_at(lead);
        for (i, b) in head.iter().enumerate() {
            // SAFETY: `i < lead <= buf.len()`, range checked by `at`;
            // volatile u8 store, no reference formed.
            unsafe { p.add(i).write_volatile(*b) };
        }
        let body = p.wrapping_add(lead);
        let mut chunks = rest.chunks_exact(8);
        let mut done = 0usize;
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            // SAFETY: `body + done` is 8-aligned and `[done, done + 8)` lies
            // within the range checked by `at`; volatile store.
            unsafe {
                body.add(done)
                    .cast::<u64>()
                    .write_volatile(u64::from_ne_bytes(w))
            };
            done += 8;
        }
        for (i, b) in chunks.remainder().iter().enumerate() {
            // SAFETY: `done + i < rest.len()`: in bounds; volatile u8 store.
            unsafe { body.add(done + i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Bulk copy of a data-area span into `buf` (plain `memcpy`, no volatile
    /// semantics). Only for data buffers of a command that the peer has
    /// handed to us and does not touch until we complete it (the kernel
    /// copies a command's data pages before queueing it and after its
    /// completion, never in between); mailbox and entry headers must use
    /// the volatile accessors.
    pub(crate) fn copy_out(&self, off: usize, buf: &mut [u8]) -> Result<(), RingError> {
        let p = self.at(off, buf.len())?;
        // SAFETY: `at` checked `[off, off + buf.len())` against the live
        // mapping (kept alive by `self.map` for this call). `buf` is our own
        // exclusive slice and cannot overlap the shared region: the region
        // is never exposed as a Rust reference, so no `&mut [u8]` into it
        // exists. Bytes have no alignment requirement and every bit pattern
        // is a valid `u8`. The peer does not write this span while we own
        // the command (see above); should a hostile peer do so anyway, we
        // only copy unspecified byte values, no reference into the region
        // is formed and nothing is derived from them here.
        unsafe { std::ptr::copy_nonoverlapping(p.cast_const(), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Bulk copy of `buf` into a data-area span (plain `memcpy`): the
    /// counterpart of [`Mapping::copy_out`], under the same ownership rule.
    pub(crate) fn copy_in(&self, off: usize, buf: &[u8]) -> Result<(), RingError> {
        let p = self.at(off, buf.len())?;
        // SAFETY: in bounds of the live mapping (checked by `at`); `buf` is
        // a Rust slice, which cannot overlap the region (no reference into
        // the region is ever formed); byte copies need no alignment. The
        // peer does not read or write this span until we complete the
        // command, so there is no concurrent access; the mapping is
        // read-write (`map_raw` of a file opened read-write).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        Ok(())
    }

    /// Plain `memcpy` of `buf` to `off` for bytes the peer must not look at
    /// yet: the simulator's new ring entry, before it publishes `cmd_head`
    /// with a Release store (the kernel builds its entries with plain
    /// stores too). Never for bytes the peer may already read.
    pub(crate) fn write_unpublished(&self, off: usize, buf: &[u8]) -> Result<(), RingError> {
        let p = self.at(off, buf.len())?;
        // SAFETY: as in `copy_in`: in bounds of the live, writable mapping
        // (checked by `at`); `buf` cannot overlap the region (no reference
        // into it is ever formed); byte copies need no alignment. The peer
        // reads these bytes only after the Release store that publishes
        // them, which this copy happens-before.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        Ok(())
    }

    /// Bulk fill of a data-area span with `byte` (plain `memset`), under the
    /// ownership rule of [`Mapping::copy_out`].
    pub(crate) fn fill_data(&self, off: usize, len: usize, byte: u8) -> Result<(), RingError> {
        let p = self.at(off, len)?;
        // SAFETY: `[off, off + len)` is inside the live, writable mapping
        // (checked by `at`); a byte fill needs no alignment and forms no
        // reference; the peer does not access the span meanwhile.
        unsafe { std::ptr::write_bytes(p, byte, len) };
        Ok(())
    }

    /// One `preadv2(2)` of up to `len` bytes of `fd` at `file_off` straight
    /// into the data-area span at `off`; returns the bytes read (0 at end of
    /// file). `flags` 0 reads as `pread(2)` does; `RWF_NOWAIT` reads only
    /// what the kernel can hand over without waiting for a device
    /// (page-cache hits): `EAGAIN` when nothing could be read so,
    /// `EOPNOTSUPP` where the file does not support it. Under the ownership
    /// rule of [`Mapping::copy_out`]: only for the data buffers of a command
    /// we own.
    pub(crate) fn pread_data(
        &self,
        off: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: libc::off_t,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let p = self.at(off, len).map_err(io::Error::other)?;
        let iov = libc::iovec {
            iov_base: p.cast::<libc::c_void>(),
            iov_len: len,
        };
        // SAFETY: `[off, off + len)` lies inside the live, writable mapping
        // (checked by `at`; `self.map` keeps it mapped for this call),
        // described by the one iovec that lives on this stack frame for the
        // call. The kernel writes at most `len` bytes at `p`, exactly as a
        // `memcpy` into the span would, and forms no Rust reference; the
        // peer does not access an in-flight command's data pages meanwhile.
        // `fd` is a borrowed, open descriptor for the duration of the call.
        let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, file_off, flags) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// One `pwrite(2)` of up to `len` bytes of the data-area span at `off`
    /// to `fd` at `file_off`; returns the bytes written. The counterpart of
    /// [`Mapping::pread_data`], under the same ownership rule.
    pub(crate) fn pwrite_data(
        &self,
        off: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: libc::off_t,
    ) -> io::Result<usize> {
        let p = self.at(off, len).map_err(io::Error::other)?;
        // SAFETY: `[off, off + len)` lies inside the live mapping (checked
        // by `at`, kept alive by `self.map`); the kernel only reads those
        // `len` bytes, and no Rust reference into the region is formed.
        // `fd` is borrowed and open for the duration of the call.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                p.cast_const().cast::<libc::c_void>(),
                len,
                file_off,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Fills `len` bytes at `off` with `byte` (volatile, 8 bytes at a time
    /// where aligned).
    pub(crate) fn fill(&self, off: usize, len: usize, byte: u8) -> Result<(), RingError> {
        let p = self.at(off, len)?;
        let lead = p.align_offset(8).min(len);
        for i in 0..lead {
            // SAFETY: `i < lead <= len`, range checked by `at`; volatile u8
            // store, no reference formed.
            unsafe { p.add(i).write_volatile(byte) };
        }
        let word = u64::from_ne_bytes([byte; 8]);
        let body = p.wrapping_add(lead);
        let words = (len - lead) / 8;
        for w in 0..words {
            // SAFETY: `body + 8w` is 8-aligned (`lead` aligned it) and
            // `[lead + 8w, lead + 8w + 8)` lies within `len`, checked by
            // `at`; volatile store.
            unsafe { body.add(8 * w).cast::<u64>().write_volatile(word) };
        }
        for i in lead + 8 * words..len {
            // SAFETY: `i < len`: in bounds as above; volatile u8 store.
            unsafe { p.add(i).write_volatile(byte) };
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
