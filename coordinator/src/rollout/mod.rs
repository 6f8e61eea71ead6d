//! Staged rollouts, the edges around the pure engine in `ferry_shared::rollout`: each device's
//! facts from its record ([`facts`]), and the decisions applied and persisted with their audit
//! entries ([`run`]), the gates' values over time ([`gate_history`]), where each device of a cohort stands
//! ([`standings`]), and A/B experiments, whose split is a rollout ([`experiments`]). Plans
//! are checked in [`crate::registry::rollout_plans`], below, since a
//! promotion to production starts one.

pub(crate) mod experiments;
pub(crate) mod facts;
pub mod gate_history;
pub mod run;
pub(crate) mod standings;
