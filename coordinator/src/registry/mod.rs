//! The registry: publishing signed releases and moving aliases ([`publish`]), lifecycle
//! stages and approvals ([`stages`]), whether devices may be pointed at a release
//! ([`admission`], with the schema fit in [`compat`]), the operations' error ([`error`]), the signed snapshots devices check ([`snapshots`]), the plans of rollouts
//! ([`rollout_plans`], which a promotion starts) and garbage collection
//! carried out ([`collect`]).

pub mod admission;
pub mod collect;
pub mod compat;
pub mod error;
pub mod publish;
pub mod rollout_plans;
pub mod snapshots;
pub mod stages;
