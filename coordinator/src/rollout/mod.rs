//! Staged rollouts, the edges around the pure engine in `ferry_shared::rollout`: each device's
//! facts from its record ([`facts`]), and the decisions applied and persisted with their audit
//! entries ([`run`]). Plans are checked in [`crate::registry::rollout_plans`], below, since a
//! promotion to production starts one.

pub(crate) mod facts;
pub mod run;
