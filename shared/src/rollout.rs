//! The pure rollout engine: a plan (target, cohort, waves with bake times and gates), a
//! deterministic placement of devices into waves, and `evaluate(plan, state, facts, now)`
//! turning what agents report into decisions: advance, wait for approval, complete, or roll
//! back. Operator actions (pause, resume, approve, abort, roll back) are commands on the state.
//! No I/O and no clock: the coordinator persists the state and passes the time.

pub mod distribution;
pub mod engine;
pub mod metrics;
pub mod plan;
mod report;
pub mod selector;

pub use distribution::Distribution;
pub use engine::{
    Command, CommandError, Decision, Desired, DeviceFacts, Evaluation, GateReport, Holdup, Phase,
    RolloutState, Straggler, Verdict, desired, evaluate, gates, may_leave_out, stragglers,
};
pub use metrics::{LatencyHistogram, Tally, VersionMetrics};
pub use plan::{BUCKETS, DriftStatistic, Gate, GateKind, Plan, PlanError, Stragglers, Wave};
pub use selector::{Selector, SelectorError, Term};

#[cfg(test)]
mod tests;
