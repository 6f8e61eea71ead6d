//! What a device reports about the model it serves: request outcomes, a latency histogram and
//! custom metrics, per version. Agents aggregate them; gates compare them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds (ms) of the latency buckets; a last bucket holds everything slower.
pub const LATENCY_BOUNDS_MS: [u32; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
];

/// Request latencies, counted per bucket of [`LATENCY_BOUNDS_MS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Count per bucket; one more than the bounds (the overflow bucket).
    pub counts: Vec<u64>,
}

impl LatencyHistogram {
    /// Counts one request of `ms` milliseconds.
    pub fn record(&mut self, ms: u32) {
        self.counts.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        let bucket = LATENCY_BOUNDS_MS.partition_point(|b| *b < ms);
        self.counts[bucket] += 1;
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let n = (LATENCY_BOUNDS_MS.len() + 1).min(other.counts.len().max(self.counts.len()));
        self.counts.resize(n.max(self.counts.len()), 0);
        for (i, c) in other
            .counts
            .iter()
            .take(LATENCY_BOUNDS_MS.len() + 1)
            .enumerate()
        {
            self.counts[i] = self.counts[i].saturating_add(*c);
        }
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0..=1); `None` when empty.
    /// The overflow bucket reports twice the largest bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                let last = LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1];
                return Some(f64::from(
                    LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(last * 2),
                ));
            }
        }
        None
    }
}

/// One custom metric: a sum and a count, so means combine across devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum of the values.
    pub sum: f64,
    /// How many values.
    pub count: u64,
}

impl Tally {
    /// The mean; `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// A device's model metrics for one version (cumulative since that version started serving).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionMetrics {
    /// Requests served.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Their latencies.
    pub latency: LatencyHistogram,
    /// Custom metrics by name.
    pub custom: BTreeMap<String, Tally>,
}

impl VersionMetrics {
    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &VersionMetrics) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors.min(other.requests));
        self.latency.merge(&other.latency);
        for (name, t) in &other.custom {
            let mine = self.custom.entry(name.clone()).or_default();
            mine.sum += t.sum;
            mine.count = mine.count.saturating_add(t.count);
        }
    }

    /// Errors per request; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors.min(self.requests) as f64 / self.requests as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_ms(0.95), None);
        for _ in 0..94 {
            h.record(3);
        }
        for _ in 0..6 {
            h.record(150);
        }
        assert_eq!(h.quantile_ms(0.5), Some(5.0));
        assert_eq!(h.quantile_ms(0.95), Some(200.0));
        h.record(1_000_000);
        assert_eq!(h.quantile_ms(1.0), Some(60_000.0));
        let mut sum = VersionMetrics::default();
        sum.merge(&VersionMetrics {
            requests: 10,
            errors: 20, // more errors than requests is clamped
            latency: h.clone(),
            custom: BTreeMap::new(),
        });
        assert_eq!(sum.error_rate(), Some(1.0));
        assert_eq!(sum.latency.total(), 101);
    }
}
