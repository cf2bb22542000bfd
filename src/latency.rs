//! Latency histograms cheap enough for the data path: fixed bucket bounds,
//! one relaxed atomic add per bucket hit plus two for sum and count, no
//! lock. A snapshot gives Prometheus-style cumulative buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in nanoseconds (25 µs to 10 s); one more
/// bucket holds everything slower.
pub const BOUNDS_NS: [u64; 18] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), ascending;
    /// the last bound is `f64::INFINITY` and its count is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one observation.
    #[inline]
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative buckets, sum and count. Taken without a lock while
    /// observations go on, the count is the sum of the buckets read (so
    /// the +Inf bucket and the count always agree).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut total = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            let le = BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            buckets.push((le, total));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(25)); // le 25 µs (inclusive)
        h.record(Duration::from_micros(26)); // le 50 µs
        h.record(Duration::from_millis(3)); // le 5 ms
        h.record(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), BOUNDS_NS.len() + 1);
        let at = |le: f64| s.buckets.iter().find(|b| b.0 == le).map(|b| b.1);
        assert_eq!(at(0.000_025), Some(1));
        assert_eq!(at(0.000_05), Some(2));
        assert_eq!(at(0.0025), Some(2));
        assert_eq!(at(0.005), Some(3));
        assert_eq!(at(10.0), Some(3));
        assert_eq!(at(f64::INFINITY), Some(4));
        assert!(
            (s.sum_seconds - 60.003_051).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }
}
