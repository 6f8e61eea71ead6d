//! A release's lifecycle: its stage, the moves between stages, and the policies that gate
//! them. Pure: no store, no clock; the caller gathers the evidence (the release, the
//! baseline it is compared with, the approvals given) and carries out what is decided.
//!
//! ```text
//!   development ──▶ staging ──▶ production ──▶ deprecated ──▶ archived
//!        ▲  │          │  │          │   ▲          │  ▲            │
//!        │  └──────────┼──┼──────────┼───┼──────────┘  └────────────┘ (restore)
//!        └─ rejected ◀─┘  └──▶ development (sent back)    └── production (again)
//! ```
//!
//! Policies are written in the coordinator's configuration, one per stage a release enters
//! (`[stages.production]`): metadata that must be present, metric rules (`accuracy >= 0.85`,
//! `accuracy >= baseline - 0.01`), a declared schema, approvals, and how long a release in
//! another stage waits before it moves here by itself ([`automatic`]).

pub mod automatic;
mod policy;
mod stage;
#[cfg(test)]
mod tests;

pub use policy::{
    Approval, Check, Evidence, MetricRule, OnPromote, PolicyError, StagePolicy, evaluate,
};
pub use stage::{Stage, StageMove};
