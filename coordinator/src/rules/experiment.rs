//! A/B experiments' readout: what the devices serving the challenger measured against those
//! serving the champion, metric by metric, as a difference with a 95 % confidence interval;
//! and the decisions an experiment ends with. Pure: the two arms' figures in, rows out.
//!
//! - **Error rate**: difference of proportions, normal interval (Wald).
//! - **p50 / p95 latency**: each arm's quantile from its bucketed histogram, with the
//!   order-statistic interval (the ranks `n·q ± 1.96·√(n·q·(1−q))` read at bucket bounds); the
//!   difference's interval is the widest the two allow, so it is conservative.
//! - **Custom metrics**: difference of means; an interval when the arms carry the metric's
//!   distribution (its variance is read from the histogram's bucket centres), else none.
//! - **Drift**: PSI and KS distance of each distributed metric, challenger against champion.
//!
//! A row is *significant* when its interval leaves out zero.

use std::collections::BTreeMap;

use ferry_shared::rollout::distribution::{GAMMA, ZERO};
use ferry_shared::rollout::{Distribution, VersionMetrics};
use serde::{Deserialize, Serialize};

/// Two-sided z for 95 %.
const Z: f64 = 1.96;

/// What one arm measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arm {
    /// Devices serving it.
    pub devices: u64,
    /// Their requests, errors, latencies and custom metrics, added up.
    pub metrics: VersionMetrics,
    /// Their custom metric distributions, added up.
    pub distributions: BTreeMap<String, Distribution>,
}

/// One line of the readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadoutRow {
    /// What is compared (`error_rate`, `p95_latency_ms`, `mean score`, `drift score (psi)`).
    pub metric: String,
    /// The champion's value.
    pub champion: Option<f64>,
    /// The challenger's value.
    pub challenger: Option<f64>,
    /// Challenger minus champion (for drift rows: the distance itself).
    pub difference: Option<f64>,
    /// The difference's 95 % interval, when one can be given.
    pub interval: Option<(f64, f64)>,
    /// The interval leaves out zero.
    pub significant: bool,
    /// Samples behind it: (champion, challenger).
    pub samples: (u64, u64),
}

impl ReadoutRow {
    fn new(metric: String, a: Option<f64>, b: Option<f64>, samples: (u64, u64)) -> Self {
        let difference = match (a, b) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Self {
            metric,
            champion: a,
            challenger: b,
            difference,
            interval: None,
            significant: false,
            samples,
        }
    }

    fn with_interval(mut self, interval: Option<(f64, f64)>) -> Self {
        self.interval = interval.filter(|(lo, hi)| lo.is_finite() && hi.is_finite());
        self.significant = self.interval.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0);
        self
    }
}

/// The readout of `challenger` against `champion`.
pub fn readout(champion: &Arm, challenger: &Arm) -> Vec<ReadoutRow> {
    let (a, b) = (&champion.metrics, &challenger.metrics);
    let requests = (a.requests, b.requests);
    let mut rows = vec![error_rate(a, b)];
    for (q, name) in [(0.5, "p50_latency_ms"), (0.95, "p95_latency_ms")] {
        let (qa, qb) = (quantile(a, q), quantile(b, q));
        let row = ReadoutRow::new(name.into(), qa.map(|x| x.0), qb.map(|x| x.0), requests);
        rows.push(row.with_interval(match (qa, qb) {
            (Some((_, lo_a, hi_a)), Some((_, lo_b, hi_b))) => Some((lo_b - hi_a, hi_b - lo_a)),
            _ => None,
        }));
    }
    let names: std::collections::BTreeSet<&String> =
        a.custom.keys().chain(b.custom.keys()).collect();
    for name in names {
        let (ta, tb) = (a.custom.get(name), b.custom.get(name));
        let samples = (ta.map_or(0, |t| t.count), tb.map_or(0, |t| t.count));
        let row = ReadoutRow::new(
            format!("mean {name}"),
            ta.and_then(|t| t.mean()),
            tb.and_then(|t| t.mean()),
            samples,
        );
        let spread = |arm: &Arm| arm.distributions.get(name).and_then(moments);
        let interval = match (spread(champion), spread(challenger), row.difference) {
            (Some((_, va, na)), Some((_, vb, nb)), Some(d)) => {
                let se = (va / na + vb / nb).sqrt();
                Some((d - Z * se, d + Z * se))
            }
            _ => None,
        };
        rows.push(row.with_interval(interval));
    }
    let distributed: std::collections::BTreeSet<&String> = champion
        .distributions
        .keys()
        .filter(|k| challenger.distributions.contains_key(*k))
        .collect();
    for name in distributed {
        let (da, db) = (
            &champion.distributions[name],
            &challenger.distributions[name],
        );
        let samples = (da.total(), db.total());
        for (statistic, value) in [("psi", db.psi(da)), ("ks", db.ks(da))] {
            let mut row =
                ReadoutRow::new(format!("drift {name} ({statistic})"), None, None, samples);
            row.difference = value;
            rows.push(row);
        }
    }
    rows
}

fn error_rate(a: &VersionMetrics, b: &VersionMetrics) -> ReadoutRow {
    let (pa, pb) = (a.error_rate(), b.error_rate());
    let row = ReadoutRow::new("error_rate".into(), pa, pb, (a.requests, b.requests));
    let interval = match (pa, pb) {
        (Some(pa), Some(pb)) => {
            let se =
                (pa * (1.0 - pa) / a.requests as f64 + pb * (1.0 - pb) / b.requests as f64).sqrt();
            Some((pb - pa - Z * se, pb - pa + Z * se))
        }
        _ => None,
    };
    row.with_interval(interval)
}

/// The quantile `q` of an arm's latencies and its 95 % interval, at bucket bounds.
fn quantile(m: &VersionMetrics, q: f64) -> Option<(f64, f64, f64)> {
    let n = m.latency.total();
    if n == 0 {
        return None;
    }
    let n_f = n as f64;
    let half = Z * (n_f * q * (1.0 - q)).sqrt();
    let at = |rank: f64| m.latency.quantile_ms((rank / n_f).clamp(0.0, 1.0));
    Some((
        m.latency.quantile_ms(q)?,
        at((n_f * q - half).floor())?,
        at((n_f * q + half).ceil())?,
    ))
}

/// Mean, variance and count of a histogram, each bucket taken at its centre (on the log scale,
/// within ±2 % of any value in it).
fn moments(d: &Distribution) -> Option<(f64, f64, f64)> {
    let n = d.total() as f64;
    if n < 2.0 {
        return None;
    }
    let centre = |k: i16| {
        if k == 0 {
            return 0.0;
        }
        let magnitude = ZERO * GAMMA.powf(f64::from(k.unsigned_abs()) - 0.5);
        if k < 0 { -magnitude } else { magnitude }
    };
    let mean = d
        .counts
        .iter()
        .map(|(k, c)| centre(*k) * *c as f64)
        .sum::<f64>()
        / n;
    let variance = d
        .counts
        .iter()
        .map(|(k, c)| (centre(*k) - mean).powi(2) * *c as f64)
        .sum::<f64>()
        / (n - 1.0);
    Some((mean, variance, n))
}

/// A decision on an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentDecision {
    /// What was decided.
    pub verdict: Verdict,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// What an experiment ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The challenger replaces the champion (through the production stage's gates when
    /// configured).
    Promote,
    /// The challenger's devices return to the champion.
    Reject,
    /// It runs longer.
    Extend,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Promote => "promote",
            Verdict::Reject => "reject",
            Verdict::Extend => "extend",
        })
    }
}

#[cfg(test)]
mod tests;
