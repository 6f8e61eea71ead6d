//! The rollout engine: `evaluate(plan, state, facts, now)` turns what agents reported into
//! decisions; `RolloutState::apply` and `RolloutState::command` move the state; `desired`
//! says what one device should run. Pure: no I/O, no clock (the caller passes `now`, unix
//! seconds), so 10,000 devices and every operator action are tested in simulated time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::distribution::Distribution;
use super::metrics::VersionMetrics;
use super::plan::{DriftStatistic, Gate, GateKind, Plan};
use crate::version::Version;
use crate::wire::DeviceId;

/// What the coordinator knows of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// Which device.
    pub id: Option<DeviceId>,
    /// Its labels (the cohort selector reads them).
    pub labels: BTreeMap<String, String>,
    /// The version it runs.
    pub current: Option<Version>,
    /// The version it keeps for rollback.
    pub previous: Option<Version>,
    /// The version it has staged beside `current` for shadow traffic.
    pub candidate: Option<Version>,
    /// It is still installing the target (downloading, or switched and awaiting its health
    /// check): no outcome yet, even though `current` may already name the target.
    pub installing: bool,
    /// Its install of the rollout's target failed.
    pub install_failed: bool,
    /// The target failed its health check there (and the device rolled itself back).
    pub health_failed: bool,
    /// Pinned by a hand rollback to the version it runs, refusing the target until released.
    #[serde(default)]
    pub pinned: bool,
    /// Offline since then (unix seconds); `None` while connected.
    #[serde(default)]
    pub offline_since: Option<u64>,
    /// Why its last attempt at the target failed, while it retries (a download cut, a full
    /// disk): no outcome yet, but a reason to name.
    #[serde(default)]
    pub retrying: Option<String>,
    /// Model metrics per version (shadow metrics of a staged candidate under its version).
    pub metrics: BTreeMap<Version, VersionMetrics>,
    /// Distributions of custom metric values per version, by metric (what drift gates
    /// compare); empty from agents before protocol 6.
    #[serde(default)]
    pub distributions: BTreeMap<Version, BTreeMap<String, Distribution>>,
    /// When it switched to what it runs (unix seconds, the coordinator's clock), when known:
    /// a wave bakes from its last device's switch, not from when it came into force (a
    /// device may wait for its update window).
    #[serde(default)]
    pub switched_at: Option<u64>,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waves are in force and baking.
    Running,
    /// The next wave waits for an operator's approval.
    AwaitingApproval,
    /// Every wave passed.
    Completed,
    /// Stopped by an operator; devices stay where they are.
    Aborted,
    /// Devices return to the version they ran before.
    RolledBack,
}

impl Phase {
    /// True once nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted | Phase::RolledBack)
    }
}

/// A rollout's state, persisted by the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The phase.
    pub phase: Phase,
    /// How many waves are in force (their devices run the target); the current wave is the
    /// last of them.
    pub in_force: usize,
    /// When the current wave came into force (unix seconds).
    pub since: u64,
    /// An operator paused it: no wave advances (gates still roll back).
    pub paused: bool,
    /// Why it rolled back or was aborted.
    pub reason: Option<String>,
    /// With a download limit ([`Plan::max_downloading`]): the devices of the waves in force
    /// allowed to fetch the target now (sorted). The others keep what they run until a slot
    /// frees.
    #[serde(default)]
    pub downloading: Vec<DeviceId>,
}

/// A gate's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Within its threshold.
    Pass,
    /// Over it.
    Fail,
    /// Not enough samples yet.
    Waiting,
}

/// One gate of the current wave, as evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The gate.
    pub gate: Gate,
    /// Its measured value, when there was anything to measure.
    pub value: Option<f64>,
    /// Samples it had (devices or new-version requests).
    pub samples: u64,
    /// The verdict.
    pub verdict: Verdict,
}

/// What the engine decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// Wave `wave` (index) comes into force.
    Advance {
        /// The wave.
        wave: usize,
    },
    /// Wave `wave` waits for approval.
    AwaitApproval {
        /// The wave.
        wave: usize,
    },
    /// Every wave passed.
    Complete,
    /// A gate failed: every device returns to the version it ran before.
    RollBack {
        /// Which gate, with its value and threshold.
        reason: String,
    },
    /// The devices allowed to download now changed ([`Plan::max_downloading`]).
    Downloading {
        /// All of them, sorted.
        devices: Vec<DeviceId>,
    },
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Decisions to apply, in order.
    pub decisions: Vec<Decision>,
    /// The current wave's gates.
    pub gates: Vec<GateReport>,
    /// Devices in force that have brought no outcome yet, and why.
    pub stragglers: Vec<Straggler>,
    /// More devices are left out than the plan allows: the wave waits for them.
    pub too_many_left_out: bool,
}

/// Why a device of a wave in force has brought no outcome yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Holdup {
    /// Pinned to the version it runs by a hand rollback: it will not take the target.
    Pinned,
    /// Offline since then (unix seconds).
    Offline {
        /// When it was last heard.
        since: u64,
    },
    /// Installing the target: downloading, or in its health check.
    Installing,
    /// Retrying the target after a failure that says nothing of the release (the link, the
    /// disk); why.
    Failing(String),
    /// Not begun on the target yet.
    NotStarted,
}

/// A device of a wave in force without an outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Straggler {
    /// Which device.
    pub device: DeviceId,
    /// Its wave (index).
    pub wave: usize,
    /// Why it has no outcome.
    pub holdup: Holdup,
    /// Left out of the gates and counted against the plan's `max_left_out` instead: pinned,
    /// or offline for the plan's `unreachable_after_secs`.
    pub left_out: bool,
}

/// An operator's action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Stop advancing.
    Pause,
    /// Advance again.
    Resume,
    /// Let the waiting wave start.
    Approve,
    /// Stop the rollout where it is.
    Abort(String),
    /// Return every device to the version it ran before.
    RollBack(String),
}

/// An action the state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} a rollout that is {phase:?}{paused}", paused = if *.paused { " (paused)" } else { "" })]
pub struct CommandError {
    /// The action.
    pub command: &'static str,
    /// The phase it met.
    pub phase: Phase,
    /// Whether it was paused.
    pub paused: bool,
}

/// What one device should run, as far as this rollout is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Desired {
    /// The rollout does not steer it (the alias does).
    Untouched,
    /// Run this version.
    Run(Version),
    /// Stage this version beside `current` without switching (shadow wave).
    Shadow(Version),
}

impl RolloutState {
    /// A rollout starting at `now`: the first wave comes into force, or waits for approval.
    pub fn start(plan: &Plan, now: u64) -> Self {
        let needs = plan.waves.first().is_some_and(|w| w.needs_approval);
        Self {
            phase: if needs {
                Phase::AwaitingApproval
            } else {
                Phase::Running
            },
            in_force: usize::from(!needs),
            since: now,
            paused: false,
            reason: None,
            downloading: Vec::new(),
        }
    }

    /// Applies a decision of [`evaluate`].
    pub fn apply(&mut self, decision: &Decision, now: u64) {
        if self.phase.is_terminal() {
            return;
        }
        match decision {
            Decision::Advance { wave } => {
                self.in_force = wave + 1;
                self.since = now;
                self.phase = Phase::Running;
            }
            Decision::AwaitApproval { .. } => self.phase = Phase::AwaitingApproval,
            Decision::Complete => self.phase = Phase::Completed,
            Decision::RollBack { reason } => {
                self.phase = Phase::RolledBack;
                self.reason = Some(reason.clone());
            }
            Decision::Downloading { devices } => self.downloading = devices.clone(),
        }
    }

    /// Applies an operator's action. Abort always succeeds (a finished rollout stays as it
    /// ended); the others need a state they make sense in.
    pub fn command(&mut self, command: &Command, now: u64) -> Result<(), CommandError> {
        let refuse = |name| CommandError {
            command: name,
            phase: self.phase,
            paused: self.paused,
        };
        match command {
            Command::Abort(why) => {
                if !self.phase.is_terminal() {
                    self.phase = Phase::Aborted;
                    self.reason = Some(why.clone());
                }
            }
            _ if self.phase.is_terminal() => {
                return Err(refuse(match command {
                    Command::Pause => "pause",
                    Command::Resume => "resume",
                    Command::Approve => "approve",
                    _ => "roll back",
                }));
            }
            Command::Pause if self.paused => return Err(refuse("pause")),
            Command::Pause => self.paused = true,
            Command::Resume if !self.paused => return Err(refuse("resume")),
            Command::Resume => self.paused = false,
            Command::Approve if self.phase != Phase::AwaitingApproval || self.paused => {
                return Err(refuse("approve"));
            }
            Command::Approve => {
                self.in_force += 1;
                self.since = now;
                self.phase = Phase::Running;
            }
            Command::RollBack(why) => {
                self.phase = Phase::RolledBack;
                self.reason = Some(why.clone());
            }
        }
        Ok(())
    }
}

/// The rollout's view of one device: in the cohort, and in which wave.
fn wave_of_device(plan: &Plan, device: &DeviceFacts) -> Option<usize> {
    let id = device.id.as_ref()?;
    plan.cohort
        .matches(&device.labels)
        .then(|| plan.wave_of(plan.bucket(id)))
}

/// What `device` should run under this rollout.
pub fn desired(plan: &Plan, state: &RolloutState, device: &DeviceFacts) -> Desired {
    let Some(wave) = wave_of_device(plan, device) else {
        return Desired::Untouched;
    };
    match state.phase {
        Phase::RolledBack => match (&device.current, &device.previous) {
            (Some(current), Some(previous)) if *current == plan.target => {
                Desired::Run(previous.clone())
            }
            (Some(current), _) => Desired::Run(current.clone()),
            _ => Desired::Untouched,
        },
        Phase::Aborted => Desired::Untouched,
        Phase::Completed => Desired::Run(plan.target.clone()),
        Phase::Running | Phase::AwaitingApproval => {
            let current = state
                .in_force
                .checked_sub(1)
                .and_then(|i| plan.waves.get(i));
            match current {
                Some(_) if wave < state.in_force && !may_download(plan, state, device) => {
                    Desired::Untouched
                }
                Some(w) if wave < state.in_force && w.shadow => {
                    Desired::Shadow(plan.target.clone())
                }
                Some(_) if wave < state.in_force => Desired::Run(plan.target.clone()),
                _ => Desired::Untouched,
            }
        }
    }
}

/// Whether `device` may fetch the target now: always without a download limit, and with one
/// when it holds a slot or already has the target (it must never be sent back).
fn may_download(plan: &Plan, state: &RolloutState, device: &DeviceFacts) -> bool {
    if plan.max_downloading.is_none() {
        return true;
    }
    let holds = |v: &Option<Version>| v.as_ref() == Some(&plan.target);
    holds(&device.current)
        || holds(&device.candidate)
        || device
            .id
            .as_ref()
            .is_some_and(|id| state.downloading.binary_search(id).is_ok())
}

/// With a download limit: the devices of the waves in force that may download now. Those
/// holding a slot keep it until they have an outcome or are left out; free slots go to the
/// devices without an outcome, lowest bucket first. `None` when that changes nothing.
fn next_downloading(
    plan: &Plan,
    state: &RolloutState,
    devices: &[DeviceFacts],
    stragglers: &[Straggler],
) -> Option<Vec<DeviceId>> {
    let limit = usize::try_from(plan.max_downloading?).unwrap_or(usize::MAX);
    let left_out: std::collections::BTreeSet<&DeviceId> = stragglers
        .iter()
        .filter(|s| s.left_out)
        .map(|s| &s.device)
        .collect();
    let mut waiting: Vec<(u32, &DeviceId)> = devices
        .iter()
        .filter(|d| wave_of_device(plan, d).is_some_and(|w| w < state.in_force))
        .filter(|d| !has_outcome(plan, d))
        .filter_map(|d| d.id.as_ref().map(|id| (plan.bucket(id), id)))
        .filter(|(_, id)| !left_out.contains(id))
        .collect();
    waiting.sort_unstable();
    let mut next: Vec<DeviceId> = waiting
        .iter()
        .filter(|(_, id)| state.downloading.binary_search(id).is_ok())
        .map(|(_, id)| (*id).clone())
        .collect();
    for (_, id) in &waiting {
        if next.len() >= limit {
            break;
        }
        if state.downloading.binary_search(id).is_err() {
            next.push((*id).clone());
        }
    }
    next.sort_unstable();
    (next != state.downloading).then_some(next)
}

/// Whether `device` has an outcome for the target: it runs it (or, in a shadow wave, staged
/// it as its candidate) past its install, or failed to.
fn has_outcome(plan: &Plan, device: &DeviceFacts) -> bool {
    let done = !device.installing
        && (device.current.as_ref() == Some(&plan.target)
            || device.candidate.as_ref() == Some(&plan.target));
    done || device.install_failed || device.health_failed
}

/// Why `device` has no outcome at `now`, and whether it is left out; `None` with an outcome.
fn holdup(plan: &Plan, device: &DeviceFacts, now: u64) -> Option<(Holdup, bool)> {
    if has_outcome(plan, device) {
        return None;
    }
    let limit = plan.stragglers.unreachable_after_secs;
    Some(match device.offline_since {
        _ if device.pinned => (Holdup::Pinned, true),
        Some(since) => (
            Holdup::Offline { since },
            now.saturating_sub(since) >= limit,
        ),
        None if device.retrying.is_some() => (
            Holdup::Failing(device.retrying.clone().unwrap_or_default()),
            false,
        ),
        None if device.installing => (Holdup::Installing, false),
        None => (Holdup::NotStarted, false),
    })
}

/// The devices of the waves in force that have brought no outcome yet, and why; none once the
/// rollout has ended.
pub fn stragglers(
    plan: &Plan,
    state: &RolloutState,
    devices: &[DeviceFacts],
    now: u64,
) -> Vec<Straggler> {
    if state.phase.is_terminal() {
        return Vec::new();
    }
    devices
        .iter()
        .filter_map(|device| {
            let wave = wave_of_device(plan, device).filter(|w| *w < state.in_force)?;
            let (holdup, left_out) = holdup(plan, device, now)?;
            Some(Straggler {
                device: device.id.clone()?,
                wave,
                holdup,
                left_out,
            })
        })
        .collect()
}

/// How many of `in_force` devices the plan lets a wave leave out.
pub fn may_leave_out(plan: &Plan, in_force: usize) -> usize {
    (plan.stragglers.max_left_out * in_force as f64 + 1e-9).floor() as usize
}

/// The current wave's gates over `devices` at `now`, whatever the phase; empty before any wave
/// came into force. Devices left out (pinned, or unreachable past the plan's limit) do not
/// count: they will bring no outcome.
pub fn gates(
    plan: &Plan,
    state: &RolloutState,
    devices: &[DeviceFacts],
    now: u64,
) -> Vec<GateReport> {
    let Some(current) = state.in_force.checked_sub(1) else {
        return Vec::new();
    };
    let Some(wave) = plan.waves.get(current) else {
        return Vec::new();
    };
    // Devices the current wave covers, and everything the cohort reports of other versions.
    let mut treated = Vec::new();
    let mut new = VersionMetrics::default();
    let mut baseline = VersionMetrics::default();
    // Only the metrics some drift gate compares are merged.
    let drifting: Vec<&str> = wave
        .gates
        .iter()
        .filter_map(|g| match &g.kind {
            GateKind::Drift { metric, .. } => Some(metric.as_str()),
            _ => None,
        })
        .collect();
    let mut new_values: BTreeMap<&str, Distribution> = BTreeMap::new();
    let mut baseline_values: BTreeMap<&str, Distribution> = BTreeMap::new();
    for device in devices {
        let Some(w) = wave_of_device(plan, device) else {
            continue;
        };
        // The target's figures count from devices serving it now (or running it in shadow):
        // a device whose figures are from an earlier attempt it has not yet restarted does
        // not speak for it.
        let serves_target = device.current.as_ref() == Some(&plan.target)
            || device.candidate.as_ref() == Some(&plan.target);
        for (version, m) in &device.metrics {
            if *version == plan.target {
                if w <= current && serves_target {
                    new.merge(m);
                }
            } else {
                baseline.merge(m);
            }
        }
        for (version, by_metric) in &device.distributions {
            let side = if *version == plan.target {
                if !(w <= current && serves_target) {
                    continue;
                }
                &mut new_values
            } else {
                &mut baseline_values
            };
            for metric in &drifting {
                if let Some(d) = by_metric.get(*metric) {
                    side.entry(metric).or_default().merge(d);
                }
            }
        }
        if w <= current && !holdup(plan, device, now).is_some_and(|(_, left_out)| left_out) {
            treated.push(device);
        }
    }
    let empty = Distribution::default();
    wave.gates
        .iter()
        .map(|gate| match &gate.kind {
            GateKind::Drift { metric, statistic } => judge_drift(
                gate,
                *statistic,
                new_values.get(metric.as_str()).unwrap_or(&empty),
                baseline_values.get(metric.as_str()).unwrap_or(&empty),
            ),
            _ => judge(gate, plan, &treated, &new, &baseline),
        })
        .collect()
}

/// A drift gate: waits until both sides have `min_samples` values, then fails when the
/// distance between the distributions is over the threshold.
fn judge_drift(
    gate: &Gate,
    statistic: DriftStatistic,
    new: &Distribution,
    baseline: &Distribution,
) -> GateReport {
    let samples = new.total();
    let enough = samples >= gate.min_samples.max(1) && baseline.total() >= gate.min_samples.max(1);
    let value = if enough {
        match statistic {
            DriftStatistic::Psi => new.psi(baseline),
            DriftStatistic::Ks => new.ks(baseline),
        }
    } else {
        None
    };
    let verdict = match value {
        None => Verdict::Waiting,
        Some(v) if v > gate.threshold => Verdict::Fail,
        Some(_) => Verdict::Pass,
    };
    GateReport {
        gate: gate.clone(),
        value,
        samples,
        verdict,
    }
}

/// Evaluates the current wave's gates over `devices` at `now` and decides what comes next.
pub fn evaluate(
    plan: &Plan,
    state: &RolloutState,
    devices: &[DeviceFacts],
    now: u64,
) -> Evaluation {
    let mut out = Evaluation::default();
    if state.phase.is_terminal() || state.in_force == 0 {
        return out;
    }
    let current = state.in_force - 1;
    let Some(wave) = plan.waves.get(current) else {
        return out;
    };
    out.gates = gates(plan, state, devices, now);
    out.stragglers = stragglers(plan, state, devices, now);
    let slots = next_downloading(plan, state, devices, &out.stragglers)
        .map(|devices| Decision::Downloading { devices });
    let in_force = devices
        .iter()
        .filter(|d| wave_of_device(plan, d).is_some_and(|w| w < state.in_force))
        .count();
    let left_out = out.stragglers.iter().filter(|s| s.left_out).count();
    out.too_many_left_out = left_out > may_leave_out(plan, in_force);
    if let Some(failed) = out.gates.iter().find(|g| g.verdict == Verdict::Fail) {
        out.decisions.push(Decision::RollBack {
            reason: format!(
                "wave {} ({:.1} %): {:?} is {:.4}, over the threshold {}",
                current + 1,
                f64::from(wave.share) / 100.0,
                failed.gate.kind,
                failed.value.unwrap_or(f64::NAN),
                failed.gate.threshold
            ),
        });
        return out;
    }
    out.decisions.extend(slots);
    let passed = out.gates.iter().all(|g| g.verdict == Verdict::Pass);
    // The bake counts from the last switch to the target in the waves in force.
    let last_switch = devices
        .iter()
        .filter(|d| wave_of_device(plan, d).is_some_and(|w| w < state.in_force))
        .filter(|d| d.current.as_ref() == Some(&plan.target))
        .filter_map(|d| d.switched_at)
        .max()
        .unwrap_or(0);
    let baked = now.saturating_sub(state.since.max(last_switch)) >= wave.min_bake_secs;
    if state.phase != Phase::Running || state.paused || !passed || !baked || out.too_many_left_out {
        return out;
    }
    out.decisions.push(match plan.waves.get(current + 1) {
        None => Decision::Complete,
        Some(next) if next.needs_approval => Decision::AwaitApproval { wave: current + 1 },
        Some(_) => Decision::Advance { wave: current + 1 },
    });
    out
}

/// One-sided z for 95 % confidence.
const Z95: f64 = 1.645;

fn judge(
    gate: &Gate,
    plan: &Plan,
    treated: &[&DeviceFacts],
    new: &VersionMetrics,
    baseline: &VersionMetrics,
) -> GateReport {
    let report = |value: Option<f64>, samples: u64, verdict| GateReport {
        gate: gate.clone(),
        value,
        samples,
        verdict,
    };
    let over = |v: f64| v > gate.threshold;
    // New over baseline; waits until both sides have a value.
    let ratio_report = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => {
            let ratio = a / b;
            let verdict = if over(ratio) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            report(Some(ratio), new.requests, verdict)
        }
        _ => report(None, new.requests, Verdict::Waiting),
    };
    match &gate.kind {
        GateKind::InstallFailures | GateKind::HealthFailures => {
            let failed = |d: &&&DeviceFacts| match gate.kind {
                GateKind::InstallFailures => d.install_failed,
                _ => d.health_failed,
            };
            let outcomes = treated.iter().filter(|d| has_outcome(plan, d)).count() as u64;
            let failures = treated.iter().filter(failed).count() as u64;
            let needed = gate.min_samples.min(treated.len() as u64);
            if outcomes < needed {
                return report(None, outcomes, Verdict::Waiting);
            }
            let share = if outcomes == 0 {
                0.0
            } else {
                failures as f64 / outcomes as f64
            };
            report(
                Some(share),
                outcomes,
                if over(share) {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                },
            )
        }
        _ if treated.is_empty() => report(None, 0, Verdict::Pass),
        _ if new.requests < gate.min_samples || baseline.requests < gate.min_samples => {
            report(None, new.requests, Verdict::Waiting)
        }
        GateKind::ErrorRateIncrease => {
            let (p1, p0) = (
                new.error_rate().unwrap_or(0.0),
                baseline.error_rate().unwrap_or(0.0),
            );
            let se = (p1 * (1.0 - p1) / new.requests as f64
                + p0 * (1.0 - p0) / baseline.requests as f64)
                .sqrt();
            let diff = p1 - p0;
            // Fail only when the increase is over the threshold beyond reasonable noise.
            let verdict = if over(diff - Z95 * se) {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            report(Some(diff), new.requests, verdict)
        }
        GateKind::P95LatencyRatio => ratio_report(
            new.latency.quantile_ms(0.95),
            baseline.latency.quantile_ms(0.95),
        ),
        GateKind::Custom(name) => ratio_report(
            new.custom.get(name).and_then(|t| t.mean()),
            baseline.custom.get(name).and_then(|t| t.mean()),
        ),
        // Judged by `judge_drift` (it needs the distributions, not the totals).
        GateKind::Drift { .. } => report(None, new.requests, Verdict::Waiting),
    }
}
