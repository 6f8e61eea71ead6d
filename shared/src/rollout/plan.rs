//! A rollout plan: what goes where, in which waves, behind which gates; and where a device
//! falls in it (`hash(rollout_id, device_id)` → a bucket in [0, 10000)).

use serde::{Deserialize, Serialize};

use super::selector::Selector;
use crate::digest::Digest;
use crate::name::ModelName;
use crate::version::Version;
use crate::wire::DeviceId;

/// Buckets per fleet: a wave of 5 % holds the devices whose bucket is under 500.
pub const BUCKETS: u32 = 10_000;

/// What a gate measures, for devices on the new version against the baseline on the old.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateKind {
    /// Share of the wave's devices whose install failed (threshold: largest share).
    InstallFailures,
    /// Share of the wave's devices whose health check failed (threshold: largest share).
    HealthFailures,
    /// Error rate of the new version minus the baseline's (threshold: largest increase, with
    /// 95 % confidence, so noise alone does not trip it).
    ErrorRateIncrease,
    /// p95 latency of the new version over the baseline's (threshold: largest ratio).
    P95LatencyRatio,
    /// Mean of a custom metric, new over baseline (threshold: largest ratio).
    Custom(String),
    /// How far the distribution of a reported value (a prediction score, a feature) on the
    /// new version has moved from the baseline's (threshold: largest PSI or KS distance;
    /// `min_samples` values on each side). See [`super::distribution`].
    Drift {
        /// The custom metric whose values are compared (`score` in `ok 12 score=0.93`).
        metric: String,
        /// How the distance is measured.
        statistic: DriftStatistic,
    },
}

/// The distance a drift gate measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftStatistic {
    /// Population stability index over the baseline's deciles.
    Psi,
    /// Kolmogorov–Smirnov distance (0 to 1).
    Ks,
}

/// A gate: a measure, its threshold, and the sample below which it waits instead of deciding
/// (devices for the install and health gates, requests on each side for the others).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// What it measures.
    pub kind: GateKind,
    /// The largest acceptable value.
    pub threshold: f64,
    /// The sample it needs to decide.
    pub min_samples: u64,
}

impl Gate {
    /// The gates a wave gets unless the plan says otherwise.
    pub fn defaults() -> Vec<Gate> {
        vec![
            Gate {
                kind: GateKind::InstallFailures,
                threshold: 0.05,
                min_samples: 10,
            },
            Gate {
                kind: GateKind::HealthFailures,
                threshold: 0.05,
                min_samples: 10,
            },
            Gate {
                kind: GateKind::ErrorRateIncrease,
                threshold: 0.01,
                min_samples: 1000,
            },
            Gate {
                kind: GateKind::P95LatencyRatio,
                threshold: 1.25,
                min_samples: 1000,
            },
        ]
    }
}

/// One wave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// Cumulative share of the cohort, in buckets of [`BUCKETS`] (500 = 5 %). A serving wave
    /// may repeat the share of the shadow wave before it: the same devices, now serving.
    pub share: u32,
    /// Seconds the wave must bake before its gates may advance it.
    pub min_bake_secs: u64,
    /// Its gates.
    pub gates: Vec<Gate>,
    /// Devices stage the candidate beside `current` and report shadow metrics; none serves it.
    /// Shadow waves come first: once devices serve the target, none goes back to shadow.
    pub shadow: bool,
    /// An operator must approve before this wave starts.
    pub needs_approval: bool,
}

/// What devices that cannot take part mean for a wave. A device pinned to another version by
/// a hand rollback, or one offline for `unreachable_after_secs`, is left out of its wave's
/// gates (it will not bring an outcome) and counted instead: the wave advances with at most
/// `max_left_out` of the devices in force left out, and otherwise waits, naming them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stragglers {
    /// Seconds offline after which a device is left out.
    pub unreachable_after_secs: u64,
    /// Largest share (0–1) of the devices in force that may be left out.
    pub max_left_out: f64,
}

impl Default for Stragglers {
    /// Half an hour offline; at most a fifth of the devices in force left out.
    fn default() -> Self {
        Self {
            unreachable_after_secs: 1800,
            max_left_out: 0.2,
        }
    }
}

/// A rollout plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The rollout's id (seeds the placement).
    pub id: String,
    /// The model.
    pub model: ModelName,
    /// The version rolled out.
    pub target: Version,
    /// Which devices it covers.
    pub cohort: Selector,
    /// The waves, shares rising, the last at 100 %.
    pub waves: Vec<Wave>,
    /// What pinned and unreachable devices mean for completion.
    pub stragglers: Stragglers,
    /// At most this many devices of the waves in force download the target at once; the
    /// others keep what they run until a slot frees, in bucket order (`None`: no limit).
    #[serde(default)]
    pub max_downloading: Option<u32>,
    /// Devices switch to the target at once, their update windows and their applications'
    /// locks notwithstanding (an operator's `--now`).
    #[serde(default)]
    pub switch_now: bool,
}

/// A plan that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No waves.
    #[error("a rollout needs at least one wave")]
    NoWaves,
    /// Shares must rise and end at 100 %.
    #[error(
        "wave shares must rise (a serving wave may repeat the shadow wave's share before it) \
         and the last must be 100 % (got {0:?} basis points)"
    )]
    Shares(Vec<u32>),
    /// A shadow wave after a serving one, or a plan whose last wave does not serve.
    #[error("shadow waves must come before every serving wave, and the last wave must serve")]
    ShadowOrder,
    /// A gate threshold that is not a finite, non-negative number.
    #[error("gate {0:?} has a threshold that is not a finite number ≥ 0")]
    Threshold(GateKind),
    /// A drift gate whose metric name is empty or too long.
    #[error("a drift gate names the custom metric it compares, 1 to 64 characters (got {0:?})")]
    DriftMetric(String),
    /// A share of devices that may be left out outside [0, 1].
    #[error("the share of devices that may be left out must be within 0–100 % (got {0})")]
    LeftOut(String),
    /// A download limit of zero devices.
    #[error("at least one device must be allowed to download at once")]
    NoDownloads,
}

impl Plan {
    /// A plan with the default waves (5 → 25 → 50 → 100 %, an hour's bake each, default
    /// gates).
    pub fn with_default_waves(
        id: &str,
        model: ModelName,
        target: Version,
        cohort: Selector,
    ) -> Self {
        let waves = [500, 2500, 5000, BUCKETS]
            .into_iter()
            .map(|share| Wave {
                share,
                min_bake_secs: 3600,
                gates: Gate::defaults(),
                shadow: false,
                needs_approval: false,
            })
            .collect();
        Self {
            id: id.to_owned(),
            model,
            target,
            cohort,
            waves,
            stragglers: Stragglers::default(),
            max_downloading: None,
            switch_now: false,
        }
    }

    /// Checks the waves and gates.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.waves.is_empty() {
            return Err(PlanError::NoWaves);
        }
        let shares: Vec<u32> = self.waves.iter().map(|w| w.share).collect();
        let rising = self.waves.windows(2).all(|p| {
            p[0].share < p[1].share || (p[0].share == p[1].share && p[0].shadow && !p[1].shadow)
        });
        if !rising || shares.last() != Some(&BUCKETS) || shares[0] == 0 {
            return Err(PlanError::Shares(shares));
        }
        let serving_then_shadow = self.waves.windows(2).any(|p| !p[0].shadow && p[1].shadow);
        if serving_then_shadow || self.waves.last().is_some_and(|w| w.shadow) {
            return Err(PlanError::ShadowOrder);
        }
        if self.max_downloading == Some(0) {
            return Err(PlanError::NoDownloads);
        }
        let left_out = self.stragglers.max_left_out;
        if !(0.0..=1.0).contains(&left_out) {
            return Err(PlanError::LeftOut(format!("{left_out}")));
        }
        for gate in self.waves.iter().flat_map(|w| &w.gates) {
            if !gate.threshold.is_finite() || gate.threshold < 0.0 {
                return Err(PlanError::Threshold(gate.kind.clone()));
            }
            if let GateKind::Drift { metric, .. } = &gate.kind
                && (metric.is_empty() || metric.len() > 64)
            {
                return Err(PlanError::DriftMetric(metric.clone()));
            }
        }
        Ok(())
    }

    /// The bucket of `device` in this rollout, in [0, [`BUCKETS`]).
    pub fn bucket(&self, device: &DeviceId) -> u32 {
        let mut input = Vec::with_capacity(self.id.len() + 1 + device.as_str().len());
        input.extend_from_slice(self.id.as_bytes());
        input.push(0);
        input.extend_from_slice(device.as_str().as_bytes());
        let d = Digest::keyed_context("ferry/rollout-bucket/v1", &input);
        let n = u64::from_le_bytes([
            d.0[0], d.0[1], d.0[2], d.0[3], d.0[4], d.0[5], d.0[6], d.0[7],
        ]);
        (n % u64::from(BUCKETS)) as u32
    }

    /// The first wave whose share covers `bucket`.
    pub fn wave_of(&self, bucket: u32) -> usize {
        self.waves
            .iter()
            .position(|w| bucket < w.share)
            .unwrap_or(self.waves.len().saturating_sub(1))
    }
}
