//! `/metrics` in the Prometheus text exposition format (version 0.0.4): the fleet by model,
//! version and update state, fragmentation, devices behind and why, install failures, active
//! rollouts' waves and gates, bytes served and open QUIC sessions. Labels name models,
//! versions, states, reasons, rollouts and gates, never devices, so cardinality stays bounded
//! whatever the fleet's size. [`render`] is pure; the handler gathers its inputs.

use std::collections::BTreeMap;
use std::fmt::Write;

use ferry_shared::rollout::{GateReport, Phase as RolloutPhase};
use ferry_shared::wire::UpdatePhase;

use crate::api::{FleetStatus, FragmentationReport};
use crate::fleet::event_counts::Counted;
use crate::fleet::http_requests::{BUCKETS, Tally};
use crate::fleet::process_figures::ProcessFigures;

/// An active rollout as the metrics show it.
pub(crate) struct RolloutFigures {
    /// The rollout's id (a label of its series).
    pub id: String,
    /// The model rolled out (a label of its series).
    pub model: String,
    /// The rollout's phase.
    pub phase: RolloutPhase,
    /// Waves in force.
    pub waves_in_force: usize,
    /// Waves in the plan.
    pub waves: usize,
    /// The current wave's gates.
    pub gates: Vec<GateReport>,
}

/// Everything `/metrics` shows.
pub(crate) struct Inputs<'a> {
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
    /// Seconds until the release each (model, alias) points at expires (negative: expired).
    pub alias_expiry: &'a [(String, String, i64)],
    /// The free disk space each device last told (agents of protocol 7 and later).
    pub disk_free: &'a [u64],
    /// Devices holding a switch back, per (model, reason: `window`, `locked`, `update-set`).
    pub deferring: &'a BTreeMap<(String, &'static str), u64>,
    /// Requests and errors the devices' applications report, per (model, version).
    pub served: &'a BTreeMap<(String, String), (u64, u64)>,
    /// This process's own figures.
    pub process: &'a ProcessFigures,
    /// Requests the admin HTTP port answered, by (route, method, status).
    pub requests: &'a BTreeMap<(String, String, u16), Tally>,
    /// What happened since start: device updates, publishes, alias moves, refusals.
    pub happened: &'a Counted,
}

/// Every rollout phase, with its label value (the state-set pattern: one series per phase,
/// 1 for the rollout's own).
const PHASES: [(RolloutPhase, &str); 5] = [
    (RolloutPhase::Running, "running"),
    (RolloutPhase::AwaitingApproval, "awaiting-approval"),
    (RolloutPhase::Completed, "completed"),
    (RolloutPhase::Aborted, "aborted"),
    (RolloutPhase::RolledBack, "rolled-back"),
];

/// Upper bounds of the free-disk histogram's buckets, in bytes: 256 MiB to 256 GiB.
const DISK_BUCKETS: [u64; 6] = [256 << 20, 1 << 30, 4 << 30, 16 << 30, 64 << 30, 256 << 30];

/// The state label of an update phase.
pub(crate) fn state_of(phase: &UpdatePhase) -> &'static str {
    match phase {
        UpdatePhase::Idle => "idle",
        UpdatePhase::Fetching(_) => "fetching",
        UpdatePhase::Probation(_) => "probation",
        UpdatePhase::Held { .. } => "held",
        UpdatePhase::Retrying { .. } => "retrying",
    }
}

/// The labels of a rollout's samples.
fn rollout(r: &RolloutFigures, value: f64) -> (Vec<(&str, &str)>, f64) {
    (
        vec![("rollout", r.id.as_str()), ("model", r.model.as_str())],
        value,
    )
}

/// Renders the exposition text.
pub(crate) fn render(inputs: &Inputs<'_>) -> String {
    let mut out = Exposition::default();
    let protocol = ferry_shared::wire::PROTOCOL_VERSION.to_string();
    out.gauge(
        "ferry_build_info",
        "1, labelled with this coordinator's version and the newest agent protocol it speaks.",
        [(
            vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("protocol", protocol.as_str()),
            ],
            1.0,
        )],
    );
    process(&mut out, inputs.process);
    requests(&mut out, inputs.requests);
    happened(&mut out, inputs.happened);
    let models = &inputs.fragmentation.models;
    let s = inputs.status;
    out.gauge(
        "ferry_devices",
        "Devices per model, running version (\"none\" before the first install) and update state.",
        inputs.devices.iter().map(|((model, version, state), n)| {
            (
                vec![
                    ("model", model.as_str()),
                    ("version", version),
                    ("state", *state),
                ],
                *n as f64,
            )
        }),
    );
    out.gauge(
        "ferry_devices_known",
        "Devices enrolled.",
        [(vec![], s.devices_total as f64)],
    );
    out.gauge(
        "ferry_devices_connected",
        "Devices with an open session.",
        [(vec![], s.devices_connected as f64)],
    );
    out.gauge(
        "ferry_quic_sessions_open",
        "Agents' QUIC control sessions open.",
        [(vec![], inputs.sessions as f64)],
    );
    out.gauge(
        "ferry_fragmentation_index",
        "Gini-Simpson index of the versions a model's devices run (0: one version).",
        models
            .iter()
            .map(|m| (vec![("model", m.model.as_str())], m.overall.index)),
    );
    out.gauge(
        "ferry_versions_running",
        "Distinct versions of a model running in the fleet.",
        models.iter().map(|m| {
            (
                vec![("model", m.model.as_str())],
                m.overall.distinct_versions as f64,
            )
        }),
    );
    out.gauge(
        "ferry_alias_on_target",
        "Devices following an alias that run its target.",
        models.iter().flat_map(|m| {
            m.overall.aliases.iter().map(|a| {
                (
                    vec![("model", m.model.as_str()), ("alias", a.alias.as_str())],
                    a.on_target as f64,
                )
            })
        }),
    );
    out.gauge(
        "ferry_alias_release_expires_in_seconds",
        "Seconds until the release an alias points at expires (negative: expired); devices refuse to install an expired release.",
        inputs.alias_expiry.iter().map(|(model, alias, left)| {
            (
                vec![("model", model.as_str()), ("alias", alias.as_str())],
                *left as f64,
            )
        }),
    );
    out.gauge(
        "ferry_devices_behind",
        "Devices not running their alias's target, by reason.",
        models.iter().flat_map(|m| {
            m.overall.behind_by_reason.iter().map(|(reason, n)| {
                (
                    vec![("model", m.model.as_str()), ("reason", reason.as_str())],
                    *n as f64,
                )
            })
        }),
    );
    out.histogram(
        "ferry_device_disk_free_bytes",
        "Free disk space where devices keep their versions, as they last told it (agents of protocol 7 and later).",
        &DISK_BUCKETS,
        inputs.disk_free,
    );
    out.gauge(
        "ferry_devices_deferring",
        "Devices holding a switch back, by model and reason (window: outside their update windows; locked: their application holds an update lock; update-set: waiting for another model of their update set).",
        inputs.deferring.iter().map(|((model, reason), n)| {
            (
                vec![("model", model.as_str()), ("reason", *reason)],
                *n as f64,
            )
        }),
    );
    out.gauge(
        "ferry_model_requests",
        "Requests the devices' applications report serving, by model and version: each device's count since that version started serving on it, summed over the devices heard from (a device that restarts starts again from zero, so this may go down).",
        inputs.served.iter().map(|((model, version), (requests, _))| {
            (
                vec![("model", model.as_str()), ("version", version.as_str())],
                *requests as f64,
            )
        }),
    );
    out.gauge(
        "ferry_model_request_errors",
        "Of those requests, the ones that failed, by model and version.",
        inputs.served.iter().map(|((model, version), (_, errors))| {
            (
                vec![("model", model.as_str()), ("version", version.as_str())],
                *errors as f64,
            )
        }),
    );
    out.gauge(
        "ferry_install_failures",
        "Devices whose last install failed, by model and kind of failure.",
        inputs.failures.iter().map(|((model, kind), n)| {
            (
                vec![("model", model.as_str()), ("kind", kind.as_str())],
                *n as f64,
            )
        }),
    );
    out.gauge(
        "ferry_rollout_waves_in_force",
        "Waves of an unfinished rollout in force.",
        inputs
            .rollouts
            .iter()
            .map(|r| rollout(r, r.waves_in_force as f64)),
    );
    out.gauge(
        "ferry_rollout_waves",
        "Waves in an unfinished rollout's plan.",
        inputs.rollouts.iter().map(|r| rollout(r, r.waves as f64)),
    );
    out.gauge(
        "ferry_rollout_awaiting_approval",
        "1 while an unfinished rollout waits for an operator's approval.",
        inputs.rollouts.iter().map(|r| {
            let waiting = r.phase == RolloutPhase::AwaitingApproval;
            rollout(r, f64::from(u8::from(waiting)))
        }),
    );
    out.gauge(
        "ferry_rollout_phase",
        "An unfinished rollout's phase: 1 for the phase it is in, 0 for the others.",
        inputs.rollouts.iter().flat_map(|r| {
            PHASES.iter().map(move |(phase, name)| {
                (
                    vec![
                        ("rollout", r.id.as_str()),
                        ("model", r.model.as_str()),
                        ("phase", *name),
                    ],
                    f64::from(u8::from(r.phase == *phase)),
                )
            })
        }),
    );
    let gates: Vec<(&RolloutFigures, String, &GateReport)> = inputs
        .rollouts
        .iter()
        .flat_map(|r| {
            r.gates
                .iter()
                .map(move |g| (r, format!("{:?}", g.gate.kind), g))
        })
        .collect();
    let gate_samples = |value: fn(&GateReport) -> Option<f64>| {
        gates.iter().filter_map(move |(r, gate, g)| {
            Some((
                vec![
                    ("rollout", r.id.as_str()),
                    ("model", r.model.as_str()),
                    ("gate", gate.as_str()),
                ],
                value(g)?,
            ))
        })
    };
    out.gauge(
        "ferry_rollout_gate_value",
        "The current wave's gate value (absent while it waits for samples).",
        gate_samples(|g| g.value),
    );
    out.gauge(
        "ferry_rollout_gate_threshold",
        "The current wave's gate threshold.",
        gate_samples(|g| Some(g.gate.threshold)),
    );
    out.gauge(
        "ferry_device_clone_alert",
        "1 for each device a second live agent tried to speak for since start (a cloned identity).",
        s.clone_alerts
            .iter()
            .map(|a| (vec![("device", a.device.as_str())], 1.0)),
    );
    out.gauge(
        "ferry_rollout_gate_samples",
        "Samples the gate has.",
        gate_samples(|g| Some(g.samples as f64)),
    );
    for (name, help, value) in [
        (
            "ferry_update_served_bytes_total",
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
        (
            "ferry_deltas_unrelated_total",
            "Of the deltas encoded, chunks that shared nothing with their window (sent stored), since start.",
            s.deltas_unrelated,
        ),
        (
            "ferry_first_install_chunks_encoded_total",
            "First-install chunks precomputed since start.",
            s.first_install_chunks_encoded,
        ),
        (
            "ferry_fetches_refused_total",
            "Fetches refused since start: an artifact outside the asking device's releases.",
            s.fetches_refused,
        ),
        (
            "ferry_encodes_refused_total",
            "Deltas not encoded since start because the asking device's encode budget was spent.",
            s.encodes_refused,
        ),
        (
            "ferry_chunks_presigned_total",
            "Pre-signed chunk addresses handed to agents since start.",
            s.chunks_presigned,
        ),
        (
            "ferry_clone_refusals_total",
            "Sessions refused since start because their device already had a live one (a cloned identity).",
            s.clone_alerts.iter().map(|a| a.refusals).sum(),
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    out.text
}

/// What happened since start, as counters.
fn happened(out: &mut Exposition, c: &Counted) {
    out.counter(
        "ferry_device_updates_total",
        "Device events since start, by model and outcome (installed, failed: an install that did not reach the switch, rolled-back: a failed health check, local-rollback: an operator on the device), counted as each is first stored.",
        c.updates.iter().map(|((model, outcome), n)| {
            (
                vec![("model", model.as_str()), ("outcome", *outcome)],
                *n as f64,
            )
        }),
    );
    out.counter(
        "ferry_agent_sessions_refused_total",
        "Agent sessions refused since start, by reason (enrollment, identity, revoked, protocol-version, bad-request, internal).",
        c.refusals
            .iter()
            .map(|(why, n)| (vec![("reason", *why)], *n as f64)),
    );
    out.counter(
        "ferry_publishes_total",
        "Releases published through this coordinator since start.",
        [(Vec::new(), c.publishes as f64)],
    );
    out.counter(
        "ferry_alias_moves_total",
        "Alias moves this coordinator told the fleet of since start.",
        [(Vec::new(), c.alias_moves as f64)],
    );
}

/// The admin port's requests: a counter by route, method and status, and a duration
/// histogram by route.
fn requests(out: &mut Exposition, requests: &BTreeMap<(String, String, u16), Tally>) {
    let statuses: Vec<(String, &(String, String, u16), u64)> = requests
        .iter()
        .map(|(key, t)| (key.2.to_string(), key, t.count))
        .collect();
    out.counter(
        "ferry_http_requests_total",
        "Requests the admin HTTP port answered since start, by route pattern, method and status.",
        statuses.iter().map(|(status, (route, method, _), count)| {
            (
                vec![
                    ("route", route.as_str()),
                    ("method", method.as_str()),
                    ("status", status.as_str()),
                ],
                *count as f64,
            )
        }),
    );
    let mut by_route: BTreeMap<&str, Tally> = BTreeMap::new();
    for ((route, _, _), t) in requests {
        let sum = by_route.entry(route.as_str()).or_default();
        sum.count += t.count;
        sum.seconds += t.seconds;
        for (s, b) in sum.buckets.iter_mut().zip(t.buckets) {
            *s += b;
        }
    }
    let name = "ferry_http_request_duration_seconds";
    out.family(
        name,
        "histogram",
        "How long the admin HTTP port took to answer, by route pattern.",
    );
    let bucket = format!("{name}_bucket");
    for (route, t) in &by_route {
        let mut within = 0;
        for (bound, n) in BUCKETS.iter().zip(t.buckets) {
            within += n;
            let le = bound.to_string();
            out.sample(&bucket, &[("route", route), ("le", &le)], within as f64);
        }
        out.sample(&bucket, &[("route", route), ("le", "+Inf")], t.count as f64);
        out.sample(&format!("{name}_sum"), &[("route", route)], t.seconds);
        out.sample(
            &format!("{name}_count"),
            &[("route", route)],
            t.count as f64,
        );
    }
}

/// The standard `process_*` series of this process (those it could read).
fn process(out: &mut Exposition, p: &ProcessFigures) {
    let one = |v: Option<f64>| v.map(|v| (Vec::new(), v));
    out.counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        one(p.cpu_seconds),
    );
    for (name, help, value) in [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
    ] {
        out.gauge(name, help, one(value.map(|v| v as f64)));
    }
    out.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        one(p.start_time_seconds),
    );
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// A gauge family and its samples.
    fn gauge<'l>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'l str, &'l str)>, f64)>,
    ) {
        self.family(name, "gauge", help);
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    /// A counter family and its samples.
    fn counter<'l>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'l str, &'l str)>, f64)>,
    ) {
        self.family(name, "counter", help);
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    /// A histogram family of `values` over buckets bounded by `bounds` (ascending).
    fn histogram(&mut self, name: &str, help: &str, bounds: &[u64], values: &[u64]) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for bound in bounds {
            let le = bound.to_string();
            let n = values.iter().filter(|v| *v <= bound).count();
            self.sample(&bucket, &[("le", &le)], n as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], values.len() as f64);
        let sum: f64 = values.iter().map(|v| *v as f64).sum();
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], values.len() as f64);
    }

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

    #[test]
    fn a_histogram_counts_each_value_in_every_bucket_it_fits() {
        let mut out = Exposition::default();
        out.histogram("d", "free", &[10, 100], &[5, 10, 50, 500]);
        assert_eq!(
            out.text,
            "# HELP d free\n# TYPE d histogram\nd_bucket{le=\"10\"} 2\nd_bucket{le=\"100\"} 3\nd_bucket{le=\"+Inf\"} 4\nd_sum 565\nd_count 4\n"
        );
    }
}
