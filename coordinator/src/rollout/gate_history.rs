//! The gates' measured values over time, per rollout, as the engine measured them at each
//! step: what the console draws. Stored with the rollout ([`crate::store::gate_samples`]), so
//! a restarted coordinator, or another sharing the database, shows the same chart. Bounded
//! per rollout: once [`MAX_SAMPLES`] are kept, the older half is thinned to half resolution
//! rather than dropped, so the chart keeps the whole span.

use ferry_shared::rollout::GateReport;

use crate::api::GateSample;
use crate::store::gate_samples::{GateSampleRecord, GateSamples};
use crate::store::{Store, StoreError};

/// Samples kept per rollout before the older ones are thinned.
pub const MAX_SAMPLES: usize = 720;

/// Records the gates of `rollout`'s wave `wave` (0-based) as measured at `at`.
pub fn record(
    store: &Store,
    rollout: &str,
    wave: usize,
    at: u64,
    gates: &[GateReport],
) -> Result<(), StoreError> {
    let sample = GateSampleRecord {
        at,
        wave: u32::try_from(wave + 1).unwrap_or(u32::MAX),
        values: gates.iter().map(|g| g.value).collect(),
    };
    store.update_gate_samples(rollout, |kept| append(kept, sample))
}

/// `rollout`'s samples of its wave `wave` (1-based), oldest first: a sample's values follow
/// the order of its own wave's gates, and another wave may gate on other kinds or limits.
pub fn of(store: &Store, rollout: &str, wave: usize) -> Result<Vec<GateSample>, StoreError> {
    Ok(store
        .gate_samples(rollout)?
        .samples
        .into_iter()
        .filter(|s| s.wave as usize == wave)
        .map(|s| GateSample {
            at: s.at,
            wave: s.wave as usize,
            values: s.values,
        })
        .collect())
}

/// Adds `sample` to `kept`, thinning the older half first when the bound is reached. Pure.
fn append(kept: &mut GateSamples, sample: GateSampleRecord) {
    let samples = &mut kept.samples;
    // A sample older than the last (a clock stepped back, a lagging second driver) adds
    // nothing.
    if samples.last().is_some_and(|last| last.at > sample.at) {
        return;
    }
    if samples.len() >= MAX_SAMPLES {
        thin(samples);
    }
    samples.push(sample);
}

/// Halves the resolution of the older half of `samples`: every second one of it goes.
fn thin(samples: &mut Vec<GateSampleRecord>) {
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

    fn sample(at: u64) -> GateSampleRecord {
        GateSampleRecord {
            at,
            wave: 1,
            values: vec![Some(at as f64)],
        }
    }

    #[test]
    fn a_long_rollout_keeps_its_whole_span_within_the_bound() {
        let mut kept = GateSamples::default();
        for at in 0..10 * MAX_SAMPLES as u64 {
            append(&mut kept, sample(at));
        }
        let samples = &kept.samples;
        assert!(samples.len() <= MAX_SAMPLES, "{}", samples.len());
        assert_eq!(samples[0].at, 0, "the start stays");
        assert_eq!(
            samples.last().map(|s| s.at),
            Some(10 * MAX_SAMPLES as u64 - 1)
        );
        assert!(samples.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn a_sample_older_than_the_last_is_not_kept() {
        let mut kept = GateSamples::default();
        append(&mut kept, sample(10));
        append(&mut kept, sample(5));
        append(&mut kept, sample(10));
        assert_eq!(
            kept.samples.iter().map(|s| s.at).collect::<Vec<_>>(),
            [10, 10]
        );
    }

    #[test]
    fn samples_are_kept_in_the_store_across_a_reopen() {
        use ferry_shared::rollout::{Gate, GateKind, Verdict};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let report = GateReport {
            gate: Gate {
                kind: GateKind::HealthFailures,
                threshold: 0.1,
                min_samples: 1,
            },
            value: Some(0.05),
            samples: 1,
            verdict: Verdict::Pass,
        };
        {
            let store = Store::open(&path).unwrap();
            record(&store, "r", 0, 100, std::slice::from_ref(&report)).unwrap();
            record(&store, "r", 1, 101, &[report]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let second = of(&store, "r", 2).unwrap();
        assert_eq!(second.len(), 1, "only the second wave's: {second:?}");
        assert_eq!((second[0].at, second[0].wave), (101, 2));
        assert_eq!(second[0].values, [Some(0.05)]);
        assert_eq!(of(&store, "r", 1).unwrap()[0].at, 100);
        assert!(of(&store, "other", 1).unwrap().is_empty());
    }
}
