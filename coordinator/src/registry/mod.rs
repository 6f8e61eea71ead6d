//! The registry: publishing signed releases and moving aliases ([`publish`]), lifecycle
//! stages and approvals ([`stages`]), whether devices may be pointed at a release
//! ([`admission`], with the schema fit in [`schema_fit`]), whether devices can take a release
//! ([`device_fit`]) and whom a rollout would reach ([`rollout_check`]), the operations' error
//! ([`error`]), the lifecycle's own moves by policy ([`automatic_moves`]), the signed snapshots devices check ([`snapshots`]), the plans of rollouts
//! ([`rollout_plans`], which a promotion starts) and garbage collection carried out
//! ([`gc_apply`]).

pub(crate) mod admission;
pub mod automatic_moves;
pub(crate) mod bundle;
pub(crate) mod device_fit;
pub(crate) mod error;
pub(crate) mod gc_apply;
pub(crate) mod gc_fence;
pub(crate) mod publish;
pub(crate) mod rollout_check;
pub(crate) mod rollout_plans;
pub(crate) mod schema_fit;
pub(crate) mod snapshots;
pub(crate) mod stages;
