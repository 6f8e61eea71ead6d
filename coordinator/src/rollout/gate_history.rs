//! The gates' measured values over time, per rollout, as the engine measured them at each
//! step: what the console draws. Kept in memory by the coordinator that drives rollouts,
//! bounded per rollout (older samples thinned to half resolution rather than dropped, so the
//! chart keeps the whole span) and in the number of rollouts kept; a restarted coordinator
//! begins afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ferry_shared::rollout::GateReport;

use crate::api::GateSample;

/// Samples kept per rollout before the older ones are thinned.
pub const MAX_SAMPLES: usize = 720;
/// Rollouts kept; the one sampled longest ago goes first.
pub const MAX_ROLLOUTS: usize = 64;

/// Every rollout's gate samples.
#[derive(Default)]
pub struct GateHistory {
    rollouts: Mutex<HashMap<String, VecDeque<GateSample>>>,
}

impl GateHistory {
    /// Records the gates of `rollout`'s wave `wave` (0-based) as measured at `at`.
    pub fn record(&self, rollout: &str, wave: usize, at: u64, gates: &[GateReport]) {
        let sample = GateSample {
            at,
            wave: wave + 1,
            values: gates.iter().map(|g| g.value).collect(),
        };
        let mut rollouts = self.rollouts.lock().unwrap_or_else(|p| p.into_inner());
        if !rollouts.contains_key(rollout) && rollouts.len() >= MAX_ROLLOUTS {
            let oldest = rollouts
                .iter()
                .min_by_key(|(_, s)| s.back().map_or(0, |s| s.at))
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                rollouts.remove(&oldest);
            }
        }
        let samples = rollouts.entry(rollout.to_owned()).or_default();
        if samples.len() >= MAX_SAMPLES {
            thin(samples);
        }
        samples.push_back(sample);
    }

    /// `rollout`'s samples, oldest first.
    pub fn of(&self, rollout: &str) -> Vec<GateSample> {
        let rollouts = self.rollouts.lock().unwrap_or_else(|p| p.into_inner());
        rollouts
            .get(rollout)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Halves the resolution of the older half of `samples`: every second one of it goes.
fn thin(samples: &mut VecDeque<GateSample>) {
    let older = samples.len() / 2;
    let mut index = 0;
    samples.retain(|_| {
        let keep = index >= older || index % 2 == 0;
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::rollout::{Gate, GateKind, Verdict};

    fn report(value: f64) -> GateReport {
        GateReport {
            gate: Gate {
                kind: GateKind::HealthFailures,
                threshold: 0.1,
                min_samples: 1,
            },
            value: Some(value),
            samples: 1,
            verdict: Verdict::Pass,
        }
    }

    #[test]
    fn a_long_rollout_keeps_its_whole_span_within_the_bound() {
        let history = GateHistory::default();
        for at in 0..10 * MAX_SAMPLES as u64 {
            history.record("r", 0, at, &[report(at as f64)]);
        }
        let samples = history.of("r");
        assert!(samples.len() <= MAX_SAMPLES, "{}", samples.len());
        assert_eq!(samples[0].at, 0, "the start stays");
        assert_eq!(
            samples.last().map(|s| s.at),
            Some(10 * MAX_SAMPLES as u64 - 1)
        );
        assert!(samples.windows(2).all(|w| w[0].at < w[1].at));
        assert_eq!(samples[0].wave, 1);
    }

    #[test]
    fn the_rollout_sampled_longest_ago_goes_first() {
        let history = GateHistory::default();
        for i in 0..MAX_ROLLOUTS as u64 {
            history.record(&format!("r{i}"), 0, 100 + i, &[report(0.0)]);
        }
        history.record("r0", 0, 1000, &[report(0.0)]);
        history.record("new", 0, 1001, &[report(0.0)]);
        assert!(history.of("r1").is_empty(), "r1 was sampled longest ago");
        assert_eq!(history.of("r0").len(), 2);
        assert_eq!(history.of("new").len(), 1);
    }
}
