//! Who may do what on the admin API: roles, the actions they allow, and optional model
//! scope. Pure; the HTTP layer authenticates a bearer token into a [`Caller`] and asks it.
//!
//! | action                                   | viewer | publisher | approver | operator | admin |
//! |------------------------------------------|:------:|:---------:|:--------:|:--------:|:-----:|
//! | read anything                            |   ✓    |     ✓     |    ✓     |    ✓     |   ✓   |
//! | upload artifacts, publish releases        |        |     ✓     |          |          |   ✓   |
//! | move an alias other than `prod`          |        |     ✓     |          |    ✓     |   ✓   |
//! | move `prod` (promote or roll back)       |        |           |          |    ✓     |   ✓   |
//! | move a release into production           |        |           |          |    ✓     |   ✓   |
//! | move a release between other stages      |        |     ✓     |          |    ✓     |   ✓   |
//! | approve a release's promotion            |        |           |    ✓     |          |   ✓   |
//! | create, pause, resume, abort rollouts    |        |           |          |    ✓     |   ✓   |
//! | approve a rollout's next wave            |        |           |    ✓     |          |   ✓   |
//! | roll a rollout back                      |        |           |          |    ✓     |   ✓   |
//! | make enrollment tokens, revoke devices   |        |           |          |    ✓     |   ✓   |
//! | trust publisher keys, manage API tokens  |        |           |          |          |   ✓   |
//!
//! Approving is kept from operators on purpose: the one who starts a rollout is not the one
//! who lets it go wider. A token scoped to models may act only on those models.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ferry_shared::ModelName;
use serde::{Deserialize, Serialize};

/// The alias whose moves are promotions to (or rollbacks of) production.
pub const PRODUCTION_ALIAS: &str = "prod";

/// A token's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Reads everything; changes nothing.
    Viewer,
    /// Reads, uploads and publishes releases, moves aliases other than `prod`.
    Publisher,
    /// Reads and approves rollout waves.
    Approver,
    /// Reads, moves aliases (`prod` too), runs rollouts.
    Operator,
    /// May do everything, trusting publisher keys and managing tokens included.
    Admin,
}

impl TokenRole {
    /// Every role, least to most.
    pub const ALL: [TokenRole; 5] = [
        TokenRole::Viewer,
        TokenRole::Publisher,
        TokenRole::Approver,
        TokenRole::Operator,
        TokenRole::Admin,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Viewer => "viewer",
            TokenRole::Publisher => "publisher",
            TokenRole::Approver => "approver",
            TokenRole::Operator => "operator",
            TokenRole::Admin => "admin",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (viewer, publisher, approver, operator, admin)")
            })
    }
}

/// Something a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Any read.
    Read,
    /// Upload an artifact's bytes (names no model; publishing it is [`Action::Publish`]).
    Upload,
    /// Publish a release.
    Publish,
    /// Move an alias other than `prod`.
    SetAlias,
    /// Move `prod`, or a release into production.
    Promote,
    /// Move a release between stages other than into production.
    Stage,
    /// Create, pause, resume or abort a rollout.
    RunRollout,
    /// Approve a rollout's waiting wave, or a release's promotion to production.
    Approve,
    /// Roll a rollout back.
    RollBack,
    /// Make enrollment tokens, revoke devices.
    Devices,
    /// Trust publisher keys, manage API tokens.
    Administer,
}

impl Action {
    /// Every action, in the order of the table above.
    pub const ALL: [Action; 11] = [
        Action::Read,
        Action::Upload,
        Action::Publish,
        Action::SetAlias,
        Action::Promote,
        Action::Stage,
        Action::RunRollout,
        Action::Approve,
        Action::RollBack,
        Action::Devices,
        Action::Administer,
    ];

    /// Its name as the API shows it (`GET /api/v1/whoami`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Upload => "upload",
            Action::Publish => "publish",
            Action::SetAlias => "set-alias",
            Action::Promote => "promote",
            Action::Stage => "stage",
            Action::RunRollout => "run-rollout",
            Action::Approve => "approve",
            Action::RollBack => "roll-back",
            Action::Devices => "devices",
            Action::Administer => "administer",
        }
    }

    /// Moving `alias`.
    pub fn set_alias(alias: &str) -> Self {
        if alias == PRODUCTION_ALIAS {
            Action::Promote
        } else {
            Action::SetAlias
        }
    }
}

/// Whether `role` may do `action` (model scope aside).
pub fn allows(role: TokenRole, action: Action) -> bool {
    use Action::*;
    match role {
        TokenRole::Admin => true,
        TokenRole::Viewer => action == Read,
        TokenRole::Publisher => matches!(action, Read | Upload | Publish | SetAlias | Stage),
        TokenRole::Approver => matches!(action, Read | Approve),
        TokenRole::Operator => matches!(
            action,
            Read | SetAlias | Promote | Stage | RunRollout | RollBack | Devices
        ),
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (audit trails say who).
    pub name: String,
    /// The person the token belongs to (approvals count owners, not tokens).
    pub owner: String,
    /// Its role.
    pub role: TokenRole,
    /// The models it may act on (`None`: all).
    pub models: Option<BTreeSet<ModelName>>,
}

/// A refused action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{caller} ({role}{scope}) may not {action:?}{on}")]
pub struct Denied {
    /// Token name.
    pub caller: String,
    /// Its role.
    pub role: TokenRole,
    /// What was refused.
    pub action: Action,
    /// ", scoped to …" when scoped.
    scope: String,
    /// " on MODEL" when a model was named.
    on: String,
}

impl Caller {
    /// Does the role allow `action` at all (the model, not known yet, is checked later)?
    pub fn require_role(&self, action: Action) -> Result<(), Denied> {
        if allows(self.role, action) {
            return Ok(());
        }
        Err(Denied {
            caller: self.name.clone(),
            role: self.role,
            action,
            scope: String::new(),
            on: String::new(),
        })
    }

    /// Allowed to do `action` (on `model`, when the request names one)?
    pub fn require(&self, action: Action, model: Option<&ModelName>) -> Result<(), Denied> {
        let in_scope = match (&self.models, model) {
            (Some(models), Some(model)) => models.contains(model),
            // A scoped token may read everything, and upload bytes (inert until a release of
            // one of its models names them), but not change what names no model.
            (Some(_), None) => matches!(action, Action::Read | Action::Upload),
            (None, _) => true,
        };
        if allows(self.role, action) && in_scope {
            return Ok(());
        }
        Err(Denied {
            caller: self.name.clone(),
            role: self.role,
            action,
            scope: self.models.as_ref().map_or_else(String::new, |m| {
                format!(
                    ", scoped to {}",
                    m.iter()
                        .map(ModelName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            on: model.map_or_else(String::new, |m| format!(" on {m}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix() {
        use Action::*;
        let actions = [
            Read, Upload, Publish, SetAlias, Promote, RunRollout, Approve, RollBack, Devices,
            Administer,
        ];
        let expected: [(TokenRole, &[Action]); 5] = [
            (TokenRole::Viewer, &[Read]),
            (TokenRole::Publisher, &[Read, Upload, Publish, SetAlias]),
            (TokenRole::Approver, &[Read, Approve]),
            (
                TokenRole::Operator,
                &[Read, SetAlias, Promote, RunRollout, RollBack, Devices],
            ),
            (TokenRole::Admin, &actions),
        ];
        for (role, allowed) in expected {
            for action in actions {
                assert_eq!(
                    allows(role, action),
                    allowed.contains(&action),
                    "{role} {action:?}"
                );
            }
        }
        assert_eq!(Action::set_alias("prod"), Promote);
        assert_eq!(Action::set_alias("staging"), SetAlias);
    }

    #[test]
    fn a_scoped_token_acts_only_on_its_models() {
        let m: ModelName = "detector".parse().unwrap();
        let other: ModelName = "ranker".parse().unwrap();
        let caller = Caller {
            name: "ci".into(),
            owner: "ci".into(),
            role: TokenRole::Publisher,
            models: Some(BTreeSet::from([m.clone()])),
        };
        assert!(caller.require(Action::Publish, Some(&m)).is_ok());
        let denied = caller.require(Action::Publish, Some(&other)).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "ci (publisher, scoped to detector) may not Publish on ranker"
        );
        assert!(caller.require(Action::Read, None).is_ok());
        assert!(
            caller.require(Action::Publish, None).is_err(),
            "unnamed model"
        );
        assert!("root".parse::<TokenRole>().is_err());
    }
}
