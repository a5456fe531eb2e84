//! How long captures take, from signal sent to stack in hand: a fixed-size
//! log-linear histogram kept by the watchdog, so recording costs an index
//! computation and an add, and memory never grows with the run.

use std::time::Duration;

/// Sub-buckets per power of two (2^SUB_BITS): quantiles are exact to 1/16.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for nanosecond values up to 2^36 ns (about 69 s); larger
/// ones land in the last bucket.
const BUCKETS: usize = SUB * (36 - SUB_BITS as usize + 1);

/// Capture latencies in nanoseconds, HDR-style: values below 16 ns have their
/// own bucket, larger ones share a bucket with values within 1/16 of them.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max_ns: 0,
        }
    }
}

fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    let mantissa = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    let i = (exp - SUB_BITS + 1) as usize * SUB + mantissa;
    i.min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let mantissa = (i % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    (1u64 << exp) + (mantissa + 1) * width - 1
}

impl Histogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `q` of the records lie, rounded up to
    /// its bucket's upper bound (so at most 1/16 high), never above the maximum.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // The rank of the q-quantile, 1-based: the median of 3 is the 2nd.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(upper_bound(i).min(self.max_ns)));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    /// The largest value recorded.
    pub(crate) fn max(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_nanos(self.max_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut prev = 0;
        for ns in (0..5_000u64).chain([1 << 20, (1 << 20) + 1, 10_000_000, 1 << 35]) {
            let i = index(ns);
            assert!(i >= prev, "index not monotonic at {ns}");
            prev = i;
            let hi = upper_bound(i);
            assert!(hi >= ns, "{ns} above its bucket's bound {hi}");
            // Within 1/16 of the value.
            assert!(hi - ns <= ns / 16, "{ns} in a bucket up to {hi}");
            if i > 0 {
                assert!(upper_bound(i - 1) < ns, "{ns} fits an earlier bucket");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_micros(50) && p50 <= Duration::from_nanos(50_000 * 17 / 16));
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_micros(99) && p99 <= Duration::from_micros(100));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(100)));
        assert_eq!(h.max(), Some(Duration::from_micros(100)));
    }

    #[test]
    fn one_outlier_moves_only_the_tail() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(Duration::from_micros(10));
        }
        h.record(Duration::from_millis(10));
        assert!(h.quantile(0.99).unwrap() <= Duration::from_nanos(10_000 * 17 / 16));
        assert_eq!(h.max(), Some(Duration::from_millis(10)));
    }
}
