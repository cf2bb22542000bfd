//! glibc's allocator, set for a daemon whose threads allocate little, in
//! bursts (device creation, adoption, the first writes of thin volumes).
//!
//! By default glibc gives each thread that allocates an arena of its own, up
//! to 8 per core, and an arena keeps its free memory: after 1,000 devices
//! were created the daemon held four arenas of 1.6–2.5 MiB and a dozen of
//! 0.3–0.6 MiB, mostly free. The daemon's threads are a fixed set (device
//! arbiters, I/O workers, the supervisor's), so [`limit_arenas`] caps the
//! arenas at the number of cores before any thread starts, and [`trim`]
//! hands the free pages of every arena back to the kernel (the memory is
//! freed, not only unmapped: the pages are private and anonymous).
//!
//! This is the crate's foreign-function module: two calls into the C
//! library, neither takes a pointer.

/// Caps malloc's arenas at `arenas` (at least 1); false when the C library
/// refused or is not glibc. Call before threads start: an arena made
/// before stays.
pub fn limit_arenas(arenas: usize) -> bool {
    imp::limit_arenas(arenas.max(1))
}

/// Returns the free memory of every malloc arena to the kernel (whole free
/// pages; the heap's top is shrunk). True when some memory was released.
/// It takes each arena's lock in turn: call it from a quiet moment, not per
/// command.
pub fn trim() -> bool {
    imp::trim()
}

/// Free bytes held by malloc's arenas (in free chunks, whether their pages
/// were already returned or not); `None` without glibc.
pub fn free_bytes() -> Option<usize> {
    imp::free_bytes()
}

/// Trims after bursts: [`Trimmer::tick`] calls [`trim`] when the arenas' free
/// bytes rose by [`Trimmer::SLACK`] over their lowest since the last trim,
/// i.e. when memory was freed since; otherwise it costs one walk of the
/// arenas' free lists and no system call.
#[derive(Debug, Default)]
pub struct Trimmer {
    low: Option<usize>,
}

impl Trimmer {
    /// A rise of free bytes smaller than this is left to malloc.
    pub const SLACK: usize = 256 << 10;

    /// Checks the arenas; true when it trimmed and some memory was released.
    pub fn tick(&mut self) -> bool {
        let Some(free) = free_bytes() else {
            return false;
        };
        self.decide(free, || (trim(), free_bytes()))
    }

    /// The decision of [`Trimmer::tick`] for `free` bytes free now; `trim`
    /// trims and returns (released, free bytes after).
    fn decide(&mut self, free: usize, trim: impl FnOnce() -> (bool, Option<usize>)) -> bool {
        let low = self.low.map_or(free, |l| l.min(free));
        if free < low.saturating_add(Self::SLACK) {
            self.low = Some(low);
            return false;
        }
        let (released, after) = trim();
        self.low = after;
        released
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use libc::c_int;

    pub(super) fn free_bytes() -> Option<usize> {
        // SAFETY: mallinfo2 takes no argument and returns a struct by value;
        // it locks each arena while it sums its free chunks.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks)
    }

    pub(super) fn limit_arenas(arenas: usize) -> bool {
        let n = c_int::try_from(arenas).unwrap_or(c_int::MAX);
        // SAFETY: mallopt sets one of glibc's allocator parameters; it takes
        // no pointer and locks the allocator itself, so any thread may call
        // it at any time (M_ARENA_MAX only bounds arenas created later).
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }

    pub(super) fn trim() -> bool {
        // SAFETY: malloc_trim takes no pointer (0: keep no padding at the
        // heap's top); it locks each arena while it releases the arena's
        // free pages, so it is safe beside other threads' malloc and free.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn free_bytes() -> Option<usize> {
        None
    }

    pub(super) fn limit_arenas(_arenas: usize) -> bool {
        false
    }

    pub(super) fn trim() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    /// Anonymous memory of this process in KiB, from the page tables
    /// (`smaps_rollup`; `VmRSS` lags behind for a process with threads).
    fn anonymous_kib() -> u64 {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
        text.lines()
            .find_map(|l| l.strip_prefix("Anonymous:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("Anonymous: line")
    }

    #[test]
    fn the_trimmer_trims_once_memory_was_freed_and_not_before() {
        const K: usize = 1024;
        let mut t = super::Trimmer::default();
        let mut trims = 0;
        let mut tick = |t: &mut super::Trimmer, free: usize, after: usize| {
            t.decide(free, || {
                trims += 1;
                (true, Some(after))
            })
        };
        assert!(!tick(&mut t, 1024 * K, 0), "first look: nothing to compare");
        assert!(!tick(&mut t, 1100 * K, 0), "a rise under the slack");
        assert!(!tick(&mut t, 512 * K, 0), "allocated: free fell");
        assert!(
            tick(&mut t, 900 * K, 900 * K),
            "freed 388 KiB since the low"
        );
        assert!(!tick(&mut t, 900 * K, 0), "nothing new since the trim");
        assert!(!tick(&mut t, 1100 * K, 0), "200 KiB more: under the slack");
        assert!(tick(&mut t, 1200 * K, 1200 * K), "300 KiB more");
        assert_eq!(trims, 2);
    }

    #[test]
    fn glibc_takes_the_arena_limit() {
        // Many: this is the test process's allocator too.
        assert!(super::limit_arenas(64));
    }

    #[test]
    fn trim_returns_freed_memory_to_the_kernel() {
        // 64 MiB in blocks under the mmap threshold, then one more that
        // stays: the freed 64 MiB sit below it, where free() never trims.
        let blocks: Vec<Vec<u8>> = (0..2048)
            .map(|i| vec![1 + (i % 250) as u8; 32 << 10])
            .collect();
        let guard = vec![7u8; 32 << 10];
        drop(blocks);
        let before = anonymous_kib();
        assert!(super::trim());
        let after = anonymous_kib();
        assert!(
            before.saturating_sub(after) >= 32 << 10,
            "trim released {} KiB of the 64 MiB freed (anonymous {before} -> {after} KiB)",
            before.saturating_sub(after)
        );
        assert_eq!(guard[0], 7);
    }
}
