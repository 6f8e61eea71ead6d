//! Staged rollouts, the edges around the pure engine in `ferry_shared::rollout`: plans from
//! what operators write ([`plan`]), each device's facts from its record ([`facts`]), and the
//! decisions applied and persisted with their audit entries ([`run`]).

pub mod facts;
pub mod plan;
pub mod run;
