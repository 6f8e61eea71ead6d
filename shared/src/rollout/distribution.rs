//! The distribution of one value a model produces (a prediction score, a feature), per
//! version: what a drift gate compares between the version a rollout brings and the one it
//! replaces. Agents count each reported value into a bounded histogram; coordinators add up the
//! devices' histograms; the gate measures how far apart the two sides are.
//!
//! Buckets are fixed for everyone, so histograms from any device merge: bucket 0 holds values
//! within ±[`ZERO`]; bucket `±k` holds values of that sign whose magnitude lies in
//! `ZERO·γ^(k-1) .. ZERO·γ^k` with γ = [`GAMMA`] (4 % wide: relative accuracy ±2 %),
//! magnitudes past 10¹² in the last bucket. A histogram keeps at most [`MAX_BUCKETS`]
//! buckets: past that, the buckets nearest zero fold into bucket 0 (as DDSketch collapses its
//! lowest), so a value stream of any spread costs bounded memory and report size.
//!
//! Two statistics compare a new histogram with a baseline:
//! - **PSI** (population stability index), over ten bins holding a tenth of the baseline each:
//!   `Σ (pₙ − p_b)·ln(pₙ / p_b)`, shares floored at 10⁻⁴. Rules of thumb: < 0.1 stable,
//!   0.1–0.25 moderate shift, > 0.25 (the seeds say 0.3) a different population.
//! - **KS** (Kolmogorov–Smirnov distance): the largest gap between the two cumulative
//!   distributions, 0 to 1, read at bucket bounds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Width factor of a bucket.
pub const GAMMA: f64 = 1.04;
/// Magnitudes up to this count as zero.
pub const ZERO: f64 = 1e-9;
/// Most buckets one histogram keeps.
pub const MAX_BUCKETS: usize = 256;
/// Bins PSI compares.
pub const PSI_BINS: usize = 10;
/// Share a PSI bin is floored at, so an empty bin does not make the index infinite.
const PSI_FLOOR: f64 = 1e-4;

/// Largest bucket index: magnitudes up to 10¹² (⌈ln(10²¹)/ln(1.04)⌉ = 1233; a test checks it against
/// [`GAMMA`] and [`ZERO`]). A constant, since every reported value is bucketed.
const MAX_INDEX: i32 = 1233;

/// The bucket of `x`; `None` for NaN.
pub fn bucket(x: f64) -> Option<i16> {
    if x.is_nan() {
        return None;
    }
    let magnitude = x.abs();
    if magnitude <= ZERO {
        return Some(0);
    }
    let k = ((magnitude / ZERO).ln() / GAMMA.ln()).ceil() as i32;
    let k = k.clamp(1, MAX_INDEX) as i16;
    Some(if x < 0.0 { -k } else { k })
}

/// Counts per bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// Bucket index → values counted there.
    pub counts: BTreeMap<i16, u64>,
}

impl Distribution {
    /// Counts one value (NaN is ignored).
    pub fn record(&mut self, x: f64) {
        if let Some(b) = bucket(x) {
            let c = self.counts.entry(b).or_default();
            *c = c.saturating_add(1);
            self.bound();
        }
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Distribution) {
        for (b, c) in &other.counts {
            if i32::from(b.unsigned_abs()) > MAX_INDEX {
                continue; // not a bucket this build makes: from a confused peer
            }
            let mine = self.counts.entry(*b).or_default();
            *mine = mine.saturating_add(*c);
        }
        self.bound();
    }

    /// This histogram as this build would keep it: buckets it does not make dropped, at most
    /// [`MAX_BUCKETS`] (for what a peer sent).
    pub fn sanitized(&self) -> Distribution {
        let mut out = Distribution::default();
        out.merge(self);
        out
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.counts.values().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// Folds the buckets nearest zero into bucket 0 until at most [`MAX_BUCKETS`] remain.
    fn bound(&mut self) {
        while self.counts.len() > MAX_BUCKETS {
            let nearest = self
                .counts
                .keys()
                .filter(|b| **b != 0)
                .min_by_key(|b| (b.unsigned_abs(), **b))
                .copied();
            let Some(b) = nearest else { return };
            let c = self.counts.remove(&b).unwrap_or(0);
            let zero = self.counts.entry(0).or_default();
            *zero = zero.saturating_add(c);
        }
    }

    /// Cumulative shares at each bucket either side has, in order: `(bucket, F_self, F_other)`.
    fn cumulative(&self, other: &Distribution) -> Vec<(i16, f64, f64)> {
        let (n, m) = (self.total() as f64, other.total() as f64);
        let buckets: std::collections::BTreeSet<i16> = self
            .counts
            .keys()
            .chain(other.counts.keys())
            .copied()
            .collect();
        let (mut a, mut b) = (0u64, 0u64);
        buckets
            .into_iter()
            .map(|k| {
                a = a.saturating_add(self.counts.get(&k).copied().unwrap_or(0));
                b = b.saturating_add(other.counts.get(&k).copied().unwrap_or(0));
                (k, a as f64 / n, b as f64 / m)
            })
            .collect()
    }

    /// The Kolmogorov–Smirnov distance to `baseline`; `None` when either is empty.
    pub fn ks(&self, baseline: &Distribution) -> Option<f64> {
        if self.total() == 0 || baseline.total() == 0 {
            return None;
        }
        self.cumulative(baseline)
            .into_iter()
            .map(|(_, a, b)| (a - b).abs())
            .reduce(f64::max)
    }

    /// The population stability index against `baseline`, over [`PSI_BINS`] bins cut at the
    /// baseline's deciles (as far as its buckets allow); `None` when either is empty.
    pub fn psi(&self, baseline: &Distribution) -> Option<f64> {
        if self.total() == 0 || baseline.total() == 0 {
            return None;
        }
        // Bin edges: the first bucket at which the baseline's cumulative share reaches each
        // tenth. A heavy bucket may cover several tenths: its bins merge.
        let mut edges: Vec<i16> = Vec::with_capacity(PSI_BINS);
        for (k, _, base) in baseline.cumulative(baseline) {
            let reached = (base * PSI_BINS as f64 + 1e-9).floor() as usize;
            while edges.len() < reached.min(PSI_BINS) {
                if edges.last() != Some(&k) {
                    edges.push(k);
                } else {
                    break;
                }
            }
        }
        // Everything past the last edge (values the baseline never saw) lands in the last bin.
        let bin_of = |k: i16| {
            edges
                .partition_point(|e| *e < k)
                .min(edges.len().saturating_sub(1))
        };
        let bins = edges.len().max(1);
        let shares = |d: &Distribution| {
            let mut counts = vec![0u64; bins];
            for (k, c) in &d.counts {
                counts[bin_of(*k)] = counts[bin_of(*k)].saturating_add(*c);
            }
            let total = d.total() as f64;
            counts
                .into_iter()
                .map(|c| (c as f64 / total).max(PSI_FLOOR))
                .collect::<Vec<_>>()
        };
        let (new, base) = (shares(self), shares(baseline));
        Some(
            new.iter()
                .zip(&base)
                .map(|(p, q)| (p - q) * (p / q).ln())
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` values spread like a normal distribution around `mean` (deterministic).
    fn normal(mean: f64, sd: f64, n: usize, seed: u64) -> Distribution {
        let mut d = Distribution::default();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut unit = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        for _ in 0..n {
            // Box–Muller.
            let (u, v) = (unit(), unit());
            d.record(mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos());
        }
        d
    }

    #[test]
    fn buckets_are_four_percent_wide_signed_and_bounded() {
        assert_eq!(
            MAX_INDEX,
            ((1e12f64 / ZERO).ln() / GAMMA.ln()).ceil() as i32
        );
        assert_eq!(bucket(0.0), Some(0));
        assert_eq!(bucket(f64::NAN), None);
        let (a, b) = (bucket(1.01).unwrap(), bucket(1.01 * GAMMA).unwrap());
        assert_eq!(b - a, 1, "a factor of γ is one bucket");
        assert_eq!(bucket(1.0105), Some(a), "within 4 %: the same bucket");
        assert_eq!(bucket(-1.01), Some(-a));
        assert_eq!(bucket(1e300), bucket(1e12));
        assert_eq!(bucket(f64::INFINITY), bucket(1e12));
    }

    #[test]
    fn the_same_population_is_stable_and_a_shifted_one_is_not() {
        let base = normal(0.6, 0.1, 20_000, 1);
        let same = normal(0.6, 0.1, 5_000, 2);
        let shifted = normal(0.75, 0.1, 5_000, 3);
        let psi_same = same.psi(&base).unwrap();
        let psi_shifted = shifted.psi(&base).unwrap();
        assert!(psi_same < 0.02, "{psi_same}");
        assert!(psi_shifted > 0.3, "{psi_shifted}");
        let (ks_same, ks_shifted) = (same.ks(&base).unwrap(), shifted.ks(&base).unwrap());
        assert!(ks_same < 0.05, "{ks_same}");
        assert!(ks_shifted > 0.4, "{ks_shifted}");
        assert_eq!(Distribution::default().psi(&base), None);
        assert_eq!(base.ks(&Distribution::default()), None);
    }

    #[test]
    fn merging_adds_up_and_any_spread_stays_within_the_bucket_bound() {
        let mut a = normal(0.5, 0.1, 1000, 4);
        let b = normal(0.5, 0.1, 1000, 5);
        a.merge(&b);
        assert_eq!(a.total(), 2000);
        let mut wide = Distribution::default();
        for i in 0..100_000u64 {
            wide.record((i as f64 - 50_000.0) * 1e3);
            wide.record(1e-7 * i as f64);
        }
        assert!(wide.counts.len() <= MAX_BUCKETS, "{}", wide.counts.len());
        assert_eq!(wide.total(), 200_000);
        // A bucket no build makes is ignored, not kept.
        let mut odd = Distribution::default();
        odd.counts.insert(i16::MAX, 7);
        assert_eq!(odd.sanitized().total(), 0);
        let mut flood = Distribution::default();
        for b in 1..2000i16 {
            flood.counts.insert(b % 1200, 1);
        }
        assert!(flood.sanitized().counts.len() <= MAX_BUCKETS);
        let mut sum = Distribution::default();
        sum.merge(&odd);
        assert_eq!(sum.total(), 0);
    }
}
