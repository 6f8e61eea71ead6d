//! Staged rollouts, the edges around the pure engine in `ferry_shared::rollout`: facts from
//! the device records, decisions applied and persisted with their audit entries ([`run`]).

pub mod run;
