//! Shared by the daemon-path benches: the simulated initiator
//! ([`lane::Lane`]), a daemon thread serving devices ([`daemon::Daemon`]),
//! and `/proc` readings (CPU time of the whole process, memory).
#![allow(dead_code)] // each bench uses part of it

pub mod daemon;
pub mod lane;
pub mod procfs;

use std::time::Duration;

/// Environment knob `name` parsed as `T`, or `default`.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<T>().ok())
        .unwrap_or(default)
}

/// Seconds per measured run (`TCMUD_BENCH_SECS`, default 1).
pub fn secs() -> Duration {
    Duration::from_secs_f64(knob("TCMUD_BENCH_SECS", 1.0f64).max(0.01))
}

/// Median of `v` (0 for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}
