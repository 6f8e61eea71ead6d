//! `/metrics` in the Prometheus text exposition format (version 0.0.4): the fleet by model,
//! version and update state, fragmentation, devices behind and why, install failures, active
//! rollouts' waves and gates, bytes served and open QUIC sessions. Labels name models,
//! versions, states, reasons, rollouts and gates, never devices, so cardinality stays bounded
//! whatever the fleet's size. [`render`] is pure; the handler gathers its inputs.

use std::collections::BTreeMap;
use std::fmt::Write;

use ferry_shared::rollout::{GateReport, Phase as RolloutPhase};
use ferry_shared::wire::Phase;

use crate::api::{FleetStatus, FragmentationReport};

/// An active rollout as the metrics show it.
pub struct RolloutFigures {
    /// Id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Phase.
    pub phase: RolloutPhase,
    /// Waves in force.
    pub waves_in_force: usize,
    /// Waves in the plan.
    pub waves: usize,
    /// The current wave's gates.
    pub gates: Vec<GateReport>,
}

/// Everything `/metrics` shows.
pub struct Inputs<'a> {
    /// The fleet status (counters included).
    pub status: &'a FleetStatus,
    /// Fragmentation of every model (no cohorts).
    pub fragmentation: &'a FragmentationReport,
    /// Devices per (model, version, state), from the records.
    pub devices: &'a BTreeMap<(String, String, &'static str), u64>,
    /// Devices whose last install failed, per (model, kind).
    pub failures: &'a BTreeMap<(String, String), u64>,
    /// Rollouts not yet finished.
    pub rollouts: &'a [RolloutFigures],
    /// QUIC control sessions open.
    pub sessions: u64,
}

/// The state label of an update phase.
pub fn state_of(phase: &Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Fetching(_) => "fetching",
        Phase::Probation(_) => "probation",
        Phase::Held { .. } => "held",
        Phase::Retrying { .. } => "retrying",
    }
}

/// Renders the exposition text.
pub fn render(inputs: &Inputs<'_>) -> String {
    let mut out = Exposition::default();
    out.family(
        "ferry_devices",
        "gauge",
        "Devices per model, running version (\"none\" before the first install) and update state.",
    );
    for ((model, version, state), n) in inputs.devices {
        out.sample(
            "ferry_devices",
            &[("model", model), ("version", version), ("state", state)],
            *n as f64,
        );
    }
    out.family("ferry_devices_known", "gauge", "Devices enrolled.");
    out.sample(
        "ferry_devices_known",
        &[],
        inputs.status.devices_total as f64,
    );
    out.family(
        "ferry_devices_connected",
        "gauge",
        "Devices with an open session.",
    );
    out.sample(
        "ferry_devices_connected",
        &[],
        inputs.status.devices_connected as f64,
    );
    out.family(
        "ferry_quic_sessions_open",
        "gauge",
        "Agents' QUIC control sessions open.",
    );
    out.sample("ferry_quic_sessions_open", &[], inputs.sessions as f64);

    out.family(
        "ferry_fragmentation_index",
        "gauge",
        "Gini-Simpson index of the versions a model's devices run (0: one version).",
    );
    for m in &inputs.fragmentation.models {
        out.sample(
            "ferry_fragmentation_index",
            &[("model", &m.model)],
            m.overall.index,
        );
    }
    out.family(
        "ferry_versions_running",
        "gauge",
        "Distinct versions of a model running in the fleet.",
    );
    for m in &inputs.fragmentation.models {
        out.sample(
            "ferry_versions_running",
            &[("model", &m.model)],
            m.overall.distinct_versions as f64,
        );
    }
    out.family(
        "ferry_alias_on_target",
        "gauge",
        "Devices following an alias that run its target.",
    );
    for m in &inputs.fragmentation.models {
        for a in &m.overall.aliases {
            out.sample(
                "ferry_alias_on_target",
                &[("model", &m.model), ("alias", &a.alias)],
                a.on_target as f64,
            );
        }
    }
    out.family(
        "ferry_devices_behind",
        "gauge",
        "Devices not running their alias's target, by reason.",
    );
    for m in &inputs.fragmentation.models {
        for (reason, n) in &m.overall.behind_by_reason {
            out.sample(
                "ferry_devices_behind",
                &[("model", &m.model), ("reason", reason)],
                *n as f64,
            );
        }
    }
    out.family(
        "ferry_install_failures",
        "gauge",
        "Devices whose last install failed, by model and kind of failure.",
    );
    for ((model, kind), n) in inputs.failures {
        out.sample(
            "ferry_install_failures",
            &[("model", model), ("kind", kind)],
            *n as f64,
        );
    }

    out.family(
        "ferry_rollout_waves_in_force",
        "gauge",
        "Waves of an unfinished rollout in force.",
    );
    for r in inputs.rollouts {
        out.sample(
            "ferry_rollout_waves_in_force",
            &[("rollout", &r.id), ("model", &r.model)],
            r.waves_in_force as f64,
        );
    }
    out.family(
        "ferry_rollout_waves",
        "gauge",
        "Waves in an unfinished rollout's plan.",
    );
    for r in inputs.rollouts {
        out.sample(
            "ferry_rollout_waves",
            &[("rollout", &r.id), ("model", &r.model)],
            r.waves as f64,
        );
    }
    out.family(
        "ferry_rollout_awaiting_approval",
        "gauge",
        "1 while an unfinished rollout waits for an operator's approval.",
    );
    for r in inputs.rollouts {
        let waiting = r.phase == RolloutPhase::AwaitingApproval;
        out.sample(
            "ferry_rollout_awaiting_approval",
            &[("rollout", &r.id), ("model", &r.model)],
            f64::from(u8::from(waiting)),
        );
    }
    for (family, help) in [
        (
            "ferry_rollout_gate_value",
            "The current wave's gate value (absent while it waits for samples).",
        ),
        (
            "ferry_rollout_gate_threshold",
            "The current wave's gate threshold.",
        ),
        ("ferry_rollout_gate_samples", "Samples the gate has."),
    ] {
        out.family(family, "gauge", help);
        for r in inputs.rollouts {
            for g in &r.gates {
                let gate = format!("{:?}", g.gate.kind);
                let value = match family {
                    "ferry_rollout_gate_value" => g.value,
                    "ferry_rollout_gate_threshold" => Some(g.gate.threshold),
                    _ => Some(g.samples as f64),
                };
                if let Some(value) = value {
                    out.sample(family, &[("rollout", &r.id), ("gate", &gate)], value);
                }
            }
        }
    }

    let s = inputs.status;
    for (name, help, value) in [
        (
            "ferry_update_bytes_served_total",
            "Chunk bytes sent to agents since start, as on the wire.",
            s.bytes_served,
        ),
        (
            "ferry_chunks_served_total",
            "Chunks sent to agents since start.",
            s.chunks_served,
        ),
        (
            "ferry_deltas_served_total",
            "Chunks sent as deltas against a version the device holds, since start.",
            s.deltas_served,
        ),
        (
            "ferry_deltas_encoded_total",
            "Deltas encoded (cache misses) since start.",
            s.deltas_encoded,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_numbers_are_prometheus_numbers() {
        let mut out = Exposition::default();
        out.family("x", "gauge", "a\nb");
        out.sample("x", &[("m", "a\"b\\c\nd")], 0.5);
        out.sample("x", &[], f64::INFINITY);
        assert_eq!(
            out.text,
            "# HELP x a\\nb\n# TYPE x gauge\nx{m=\"a\\\"b\\\\c\\nd\"} 0.5\nx +Inf\n"
        );
    }
}
