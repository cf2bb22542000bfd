//! Transparent huge pages off for the daemon's own memory.
//!
//! With THP enabled system-wide (`always`, Debian's default), the first
//! touch of any byte of a 2 MiB-aligned stretch of an anonymous mapping can
//! make the whole 2 MiB resident. The daemon's anonymous memory is sparse:
//! sled allocates about 56 histograms of 516 KiB each (its `Metrics`, built
//! even with its `no_metrics` feature) that it barely writes, and a page
//! table node of 2 MiB; malloc's arenas reserve 64 MiB each. On the real
//! kernel (Debian 6.1 in the VM) those became ~27 MiB resident for a
//! few KiB written, the largest part of the daemon's RSS at 64 LUNs. The
//! data the daemon moves lives in the kernel's ring mappings, which THP never
//! backs, so nothing on the I/O path loses from 4 KiB pages.
//!
//! `prctl(PR_SET_THP_DISABLE)` applies to the whole process (and what it
//! forks), for memory faulted in after the call: [`disable`] runs first thing
//! in the daemon's start.

/// Turns transparent huge pages off for this process; an error when the
/// kernel refuses (the system-wide setting then applies).
pub fn disable() -> nix::Result<()> {
    nix::sys::prctl::set_thp_disable(true)
}

/// Whether THP may back this process's memory, as `/proc/self/status`
/// shows it (`THP_enabled`, Linux 5.0 and later); `None` when the kernel
/// does not say.
pub fn enabled() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim() != "0")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_stops_offering_huge_pages_to_the_process() {
        super::disable().expect("prctl(PR_SET_THP_DISABLE)");
        assert_eq!(super::enabled(), Some(false));
        assert!(nix::sys::prctl::get_thp_disable().expect("PR_GET_THP_DISABLE"));
    }
}
