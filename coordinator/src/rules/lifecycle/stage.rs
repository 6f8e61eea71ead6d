//! The stages and the moves allowed between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::policy::Check;

/// Where a release stands in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Published, not yet validated (every release starts here).
    Development,
    /// Under pre-production validation.
    Staging,
    /// Approved to serve.
    Production,
    /// Replaced in production; kept as a rollback target.
    Deprecated,
    /// Retired: not served, kept for its record (retention may free its bytes).
    Archived,
    /// Refused by validation.
    Rejected,
}

impl Stage {
    /// Every stage, in lifecycle order.
    pub const ALL: [Stage; 6] = [
        Stage::Development,
        Stage::Staging,
        Stage::Production,
        Stage::Deprecated,
        Stage::Archived,
        Stage::Rejected,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Development => "development",
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Deprecated => "deprecated",
            Stage::Archived => "archived",
            Stage::Rejected => "rejected",
        }
    }

    /// The stages a release in this one may move to.
    pub fn next(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Development => &[Staging, Rejected, Archived],
            Staging => &[Production, Development, Rejected, Archived],
            Production => &[Deprecated, Archived],
            Deprecated => &[Production, Archived],
            Archived => &[Deprecated],
            Rejected => &[Development, Archived],
        }
    }

    /// Whether a release in this stage may move to `to`.
    pub fn can_move_to(self, to: Stage) -> bool {
        self.next().contains(&to)
    }

    /// Whether `prod` may point at a release in this stage once production is gated: a
    /// production release, or a deprecated one (a rollback to what served before).
    pub fn may_serve(self) -> bool {
        matches!(self, Stage::Production | Stage::Deprecated)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown stage {s:?} ({})",
                    Stage::ALL.map(Stage::as_str).join(", ")
                )
            })
    }
}

/// One move between stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageMove {
    /// The stage the release left.
    pub from: Stage,
    /// The stage it entered.
    pub to: Stage,
    /// When (Unix seconds).
    pub at: u64,
    /// Who moved it: the actor as the audit trail records it.
    pub by: String,
    /// Why, when given.
    pub reason: Option<String>,
    /// Who had approved it.
    pub approvers: Vec<String>,
    /// The policy's checks, as they stood.
    pub checks: Vec<Check>,
}
