//! Stage policies and their checks: what a release must show to enter a stage.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ferry_shared::Release;
use ferry_shared::schema::SchemaRef;
use serde::{Deserialize, Serialize};

/// What a stage demands of a release entering it (`[stages.NAME]` in the configuration).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagePolicy {
    /// Metadata fields that must be present (`code_commit`, `dataset`, `dataset.hash`,
    /// `framework`, `owner`, `changelog`, `input_schema`, `output_schema`, `parents`,
    /// `hyperparameters`, `dependencies`, `metrics`).
    pub require: Vec<Field>,
    /// Metric rules, each `METRIC OP NUMBER` or `METRIC OP baseline [+|- NUMBER]`.
    pub metrics: Vec<MetricRule>,
    /// The input and output schemas must be declared as `NAME/vN`.
    pub schema: bool,
    /// Distinct approvers (tokens with the approver or admin role) needed.
    pub approvals: u32,
    /// What entering production does besides the stage change.
    pub on_promote: OnPromote,
    /// With `on_promote = "rollout"`: the plan file (JSON, as for `ferryctl rollout create
    /// --plan`) whose waves and gates the rollout takes; its model and version are the
    /// release's.
    pub rollout_plan: Option<PathBuf>,
    /// Releases that have stood this many days in a stage move here by themselves, past this
    /// stage's checks (`after_days = { deprecated = 30 }` under `[stages.archived]`); see
    /// [`super::automatic`].
    pub after_days: std::collections::BTreeMap<super::Stage, f64>,
}

/// What promotion to production does besides the stage change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPromote {
    /// Nothing: moving `prod` is a separate step.
    #[default]
    Nothing,
    /// Point `prod` at the release.
    Alias,
    /// Start a rollout of the release to `prod` with the configured plan.
    Rollout,
}

/// A metadata field a policy may require.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Field {
    /// Commit of the training code.
    CodeCommit,
    /// The training dataset.
    Dataset,
    /// The training dataset's content hash.
    DatasetHash,
    /// The inference framework.
    Framework,
    /// The responsible team or person.
    Owner,
    /// What changed.
    Changelog,
    /// The input schema.
    InputSchema,
    /// The output schema.
    OutputSchema,
    /// Parent versions.
    Parents,
    /// The training hyperparameters in the release's lineage.
    Hyperparameters,
    /// Pinned dependencies.
    Dependencies,
    /// Evaluation metrics.
    Metrics,
}

impl Field {
    const ALL: [(Field, &'static str); 12] = [
        (Field::CodeCommit, "code_commit"),
        (Field::Dataset, "dataset"),
        (Field::DatasetHash, "dataset.hash"),
        (Field::Framework, "framework"),
        (Field::Owner, "owner"),
        (Field::Changelog, "changelog"),
        (Field::InputSchema, "input_schema"),
        (Field::OutputSchema, "output_schema"),
        (Field::Parents, "parents"),
        (Field::Hyperparameters, "hyperparameters"),
        (Field::Dependencies, "dependencies"),
        (Field::Metrics, "metrics"),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }

    /// The field's value in `release`, as shown, when present.
    fn value(self, release: &Release) -> Option<String> {
        let m = &release.metadata;
        let non_empty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
        match self {
            Field::CodeCommit => non_empty(&m.code_commit),
            // A release imported from a registry lists its datasets with their roles: the
            // training one stands for `dataset`.
            Field::Dataset => m
                .dataset
                .as_ref()
                .map(|d| format!("{} {}", d.id, d.version))
                .or_else(|| {
                    training(m).map(|d| match &d.digest {
                        Some(digest) => format!("{} {digest}", d.name),
                        None => d.name.clone(),
                    })
                }),
            Field::DatasetHash => m
                .dataset
                .as_ref()
                .and_then(|d| non_empty(&d.hash))
                .or_else(|| training(m).and_then(|d| non_empty(&d.digest))),
            Field::Framework => m
                .framework
                .as_ref()
                .map(|f| format!("{} {}", f.name, f.version)),
            Field::Owner => non_empty(&m.owner),
            Field::Changelog => non_empty(&m.changelog).map(|_| "given".into()),
            Field::InputSchema => non_empty(&m.input_schema),
            Field::OutputSchema => non_empty(&m.output_schema),
            Field::Parents => (!m.parents.is_empty()).then(|| {
                m.parents
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            Field::Hyperparameters => {
                (!m.hyperparameters.is_empty()).then(|| format!("{}", m.hyperparameters.len()))
            }
            Field::Dependencies => {
                (!m.dependencies.is_empty()).then(|| format!("{}", m.dependencies.len()))
            }
            Field::Metrics => (!m.metrics.is_empty()).then(|| format!("{}", m.metrics.len())),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Field> for String {
    fn from(field: Field) -> String {
        field.name().to_owned()
    }
}

impl FromStr for Field {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                PolicyError(format!(
                    "unknown metadata field {s:?} (one of: {})",
                    Self::ALL.map(|(_, n)| n).join(", ")
                ))
            })
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The dataset a release was trained on, from its list of datasets: the one whose role is
/// `training`, else the first without a role.
fn training(m: &ferry_shared::Lineage) -> Option<&ferry_shared::manifest::DatasetUse> {
    m.datasets
        .iter()
        .find(|d| d.role.as_deref() == Some("training"))
        .or_else(|| m.datasets.iter().find(|d| d.role.is_none()))
}

/// A policy that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    /// Longest first, so `>=` is not read as `>`.
    const ALL: [(Op, &'static str); 6] = [
        (Op::Ge, ">="),
        (Op::Le, "<="),
        (Op::Eq, "=="),
        (Op::Ne, "!="),
        (Op::Gt, ">"),
        (Op::Lt, "<"),
    ];

    fn text(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("?", |(_, t)| t)
    }

    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Ge => left >= right,
            Op::Gt => left > right,
            Op::Le => left <= right,
            Op::Lt => left < right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

/// What a metric is compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rhs {
    /// A fixed number.
    Value(f64),
    /// The baseline release's value of the same metric, plus this.
    Baseline(f64),
}

/// A metric rule: `accuracy >= 0.85`, `accuracy >= baseline - 0.01`, `p95_latency_ms <= 50`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(into = "String")]
pub struct MetricRule {
    metric: String,
    op: Op,
    rhs: Rhs,
}

impl fmt::Display for MetricRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.metric, self.op.text())?;
        match self.rhs {
            Rhs::Value(v) => write!(f, "{v}"),
            Rhs::Baseline(0.0) => f.write_str("baseline"),
            Rhs::Baseline(off) if off < 0.0 => write!(f, "baseline - {}", -off),
            Rhs::Baseline(off) => write!(f, "baseline + {off}"),
        }
    }
}

impl From<MetricRule> for String {
    fn from(rule: MetricRule) -> String {
        rule.to_string()
    }
}

impl FromStr for MetricRule {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let bad = |why: &str| {
            PolicyError(format!(
                "metric rule {text:?}: {why} (expected METRIC OP NUMBER or METRIC OP baseline [+|- NUMBER], OP one of >= > <= < == !=)"
            ))
        };
        let (at, op, op_text) = Op::ALL
            .iter()
            .filter_map(|(op, t)| text.find(t).map(|at| (at, *op, *t)))
            .min_by_key(|(at, _, t)| (*at, usize::MAX - t.len()))
            .ok_or_else(|| bad("no comparison"))?;
        let metric = text[..at].trim();
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(bad("the metric name is empty or has other characters"));
        }
        let right = text[at + op_text.len()..].trim();
        let number = |s: &str| -> Result<f64, PolicyError> {
            let v: f64 = s.trim().parse().map_err(|_| bad("not a number"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(bad("not a finite number"))
            }
        };
        let rhs = match right.strip_prefix("baseline") {
            Some(rest) => {
                let rest = rest.trim();
                if rest.is_empty() {
                    Rhs::Baseline(0.0)
                } else if let Some(n) = rest.strip_prefix('+') {
                    Rhs::Baseline(number(n)?)
                } else if let Some(n) = rest.strip_prefix('-') {
                    Rhs::Baseline(-number(n)?)
                } else {
                    return Err(bad("after `baseline` comes + or -"));
                }
            }
            None => Rhs::Value(number(right)?),
        };
        Ok(Self {
            metric: metric.to_owned(),
            op,
            rhs,
        })
    }
}

impl<'de> Deserialize<'de> for MetricRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One approval of a release's promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving token's name (distinct names count once each).
    pub by: String,
    /// Unix seconds.
    pub at: u64,
    /// Why, when given.
    pub reason: Option<String>,
}

/// What a policy is judged on.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// The release that would move.
    pub release: &'a Release,
    /// What it is compared with: the release `prod` points at, or else the newest other
    /// release in production; `None` when there is none.
    pub baseline: Option<&'a Release>,
    /// Approvals given for it.
    pub approvals: &'a [Approval],
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`owner present`, `accuracy >= 0.85`, `approvals`).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// Every check `policy` makes of `evidence`, in the policy's order.
pub fn evaluate(policy: &StagePolicy, evidence: Evidence<'_>) -> Vec<Check> {
    let release = evidence.release;
    let mut checks = Vec::new();
    for field in &policy.require {
        let value = field.value(release);
        checks.push(Check {
            name: format!("{field} present"),
            passed: value.is_some(),
            detail: value.unwrap_or_else(|| "missing".into()),
        });
    }
    for rule in &policy.metrics {
        checks.push(metric_check(rule, evidence));
    }
    if policy.schema {
        let m = &release.metadata;
        let problems: Vec<String> = [("input", &m.input_schema), ("output", &m.output_schema)]
            .into_iter()
            .filter_map(|(side, schema)| match schema {
                None => Some(format!("no {side} schema")),
                Some(text) => text.parse::<SchemaRef>().err().map(|e| e.to_string()),
            })
            .collect();
        checks.push(Check {
            name: "schema declared and valid".into(),
            passed: problems.is_empty(),
            detail: if problems.is_empty() {
                format!(
                    "in {} / out {}",
                    m.input_schema.as_deref().unwrap_or(""),
                    m.output_schema.as_deref().unwrap_or("")
                )
            } else {
                problems.join("; ")
            },
        });
    }
    if policy.approvals > 0 {
        let mut approvers: Vec<&str> = evidence.approvals.iter().map(|a| a.by.as_str()).collect();
        approvers.sort_unstable();
        approvers.dedup();
        checks.push(Check {
            name: format!("{} approval(s)", policy.approvals),
            passed: approvers.len() >= policy.approvals as usize,
            detail: if approvers.is_empty() {
                "none yet".into()
            } else {
                format!("{} by {}", approvers.len(), approvers.join(", "))
            },
        });
    }
    checks
}

fn metric_check(rule: &MetricRule, evidence: Evidence<'_>) -> Check {
    let name = rule.to_string();
    let check = |passed: bool, detail: String| Check {
        name: name.clone(),
        passed,
        detail,
    };
    let Some(&value) = evidence.release.metadata.metrics.get(&rule.metric) else {
        return check(false, format!("the release reports no {}", rule.metric));
    };
    match rule.rhs {
        Rhs::Value(threshold) => check(
            rule.op.holds(value, threshold),
            format!("{value} {} {threshold}", rule.op.text()),
        ),
        Rhs::Baseline(offset) => {
            let Some(baseline) = evidence.baseline else {
                return check(true, "no release in production to compare with".into());
            };
            let Some(&base) = baseline.metadata.metrics.get(&rule.metric) else {
                return check(
                    true,
                    format!(
                        "baseline {} reports no {}: not compared",
                        baseline.version, rule.metric
                    ),
                );
            };
            let threshold = base + offset;
            check(
                rule.op.holds(value, threshold),
                format!(
                    "{value} {} {threshold} (baseline {}: {base})",
                    rule.op.text(),
                    baseline.version
                ),
            )
        }
    }
}

impl StagePolicy {
    /// Checks what the types cannot: what only production may do, and that a rollout has
    /// its plan.
    pub fn validate(&self, stage: super::Stage) -> Result<(), PolicyError> {
        if self.on_promote != OnPromote::Nothing && stage != super::Stage::Production {
            return Err(PolicyError(format!(
                "stages.{stage}: on_promote is for [stages.production] only"
            )));
        }
        if (self.on_promote == OnPromote::Rollout) != self.rollout_plan.is_some() {
            return Err(PolicyError(format!(
                "stages.{stage}: on_promote = \"rollout\" and rollout_plan go together"
            )));
        }
        for (from, days) in &self.after_days {
            if !from.can_move_to(stage) {
                return Err(PolicyError(format!(
                    "stages.{stage}.after_days: a release in {from} cannot move to {stage}"
                )));
            }
            if !days.is_finite() || *days <= 0.0 || *days > 36_500.0 {
                return Err(PolicyError(format!(
                    "stages.{stage}.after_days.{from}: {days} is not a number of days above 0"
                )));
            }
        }
        Ok(())
    }
}
