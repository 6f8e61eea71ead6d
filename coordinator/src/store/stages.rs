//! Release stages: where each release stands in its lifecycle, how it got there, and the
//! approvals given toward its promotion. A release never moved is in development since it
//! was published (no record). A move lands in one transaction with everything it carries
//! out (deprecating what production had, pointing `prod`, starting a rollout) and their
//! audit entries.

use std::collections::BTreeMap;

use ferry_shared::{AliasName, ModelName, Version};
use serde::{Deserialize, Serialize};

use super::aliases::set_alias_in;
use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::records::{AliasRecord, StoredRelease};
use super::rollouts::{RolloutRecord, create_rollout_in};
use super::tables::{RELEASES, STAGES};
use super::{Store, StoreError};
use crate::rules::lifecycle::{Approval, Stage, StageMove};

/// A release's stage and its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Where it stands.
    pub stage: Stage,
    /// Since when (Unix seconds).
    pub since: u64,
    /// Approvals given toward its promotion to production, cleared by every move.
    pub approvals: Vec<Approval>,
    /// Every move, oldest first.
    pub history: Vec<StageMove>,
}

impl StageRecord {
    /// The record of a release never moved: in development since it was published.
    pub fn new(published_at: u64) -> Self {
        Self {
            stage: Stage::Development,
            since: published_at,
            approvals: Vec::new(),
            history: Vec::new(),
        }
    }
}

/// What a move carries out in its own transaction, besides the move.
#[derive(Debug, Default)]
pub struct MoveEffects {
    /// Releases of the model to move from production to deprecated (replaced).
    pub deprecate: Vec<Version>,
    /// Point `prod` here.
    pub set_prod: Option<(AliasName, AliasRecord)>,
    /// Start this rollout (with this reason).
    pub rollout: Option<(RolloutRecord, String)>,
}

fn key(model: &ModelName, version: &Version) -> (String, String) {
    (model.to_string(), version.to_string())
}

/// The stage record of a release within `txn`, `None` when it is not published.
fn read_in(
    txn: &impl Rows,
    model: &ModelName,
    version: &Version,
) -> Result<Option<StageRecord>, StoreError> {
    let (m, v) = key(model, version);
    if let Some(record) = txn.get(STAGES, (m.as_str(), v.as_str()))? {
        return Ok(Some(record));
    }
    let stored: Option<StoredRelease> = txn.get(RELEASES, (m.as_str(), v.as_str()))?;
    Ok(stored.map(|stored| StageRecord::new(stored.published_at)))
}

fn write_in(
    txn: &WriteTxn<'_>,
    model: &ModelName,
    version: &Version,
    record: &StageRecord,
) -> Result<(), StoreError> {
    let (m, v) = key(model, version);
    txn.insert(STAGES, (m.as_str(), v.as_str()), record)
}

/// Applies `step` to the record and audits it, within `txn`.
fn move_in(
    txn: &WriteTxn<'_>,
    model: &ModelName,
    version: &Version,
    mut record: StageRecord,
    step: StageMove,
) -> Result<StageRecord, StoreError> {
    let mut detail = format!("{} -> {}", step.from, step.to);
    if let Some(reason) = &step.reason {
        detail.push_str(&format!(": {reason}"));
    }
    if !step.checks.is_empty() {
        detail.push_str(&format!("; {} check(s) passed", step.checks.len()));
    }
    if !step.approvers.is_empty() {
        detail.push_str(&format!("; approved by {}", step.approvers.join(", ")));
    }
    append(
        txn,
        Change {
            at: step.at,
            actor: &step.by,
            action: "stage.move",
            subject: format!("{model} {version}"),
            detail,
        },
    )?;
    record.stage = step.to;
    record.since = step.at;
    record.approvals.clear();
    record.history.push(step);
    write_in(txn, model, version, &record)?;
    Ok(record)
}

impl Store {
    /// The stage record of `model` `version`; `None` when it is not published.
    pub fn stage(
        &self,
        model: &ModelName,
        version: &Version,
    ) -> Result<Option<StageRecord>, StoreError> {
        read_in(&self.read()?, model, version)
    }

    /// The stage `model` `version` stands in (development when it never moved).
    pub fn stage_of(&self, model: &ModelName, version: &Version) -> Result<Stage, StoreError> {
        Ok(self
            .stage(model, version)?
            .map_or(Stage::Development, |r| r.stage))
    }

    /// The stage of every release of `model`, by version.
    pub fn stages(&self, model: &ModelName) -> Result<BTreeMap<Version, StageRecord>, StoreError> {
        let txn = self.read()?;
        let m = model.as_str();
        let releases: Vec<_> = txn.records_within::<_, StoredRelease>(RELEASES, m, (m, ""))?;
        let mut out = BTreeMap::new();
        for ((_, version), stored) in releases {
            let parsed: Version = version.parse().map_err(|e| StoreError::Corrupt {
                table: "releases",
                key: format!("{m} {version}"),
                reason: format!("{e}"),
            })?;
            let record = match txn.get(STAGES, (m, version.as_str()))? {
                Some(record) => record,
                None => StageRecord::new(stored.published_at),
            };
            out.insert(parsed, record);
        }
        Ok(out)
    }

    /// Records `approval` of `model` `version` (an approver's second approval replaces the
    /// first), audited. Refused unless the release is in `approvable` stages.
    pub fn approve(
        &self,
        model: &ModelName,
        version: &Version,
        approval: Approval,
        approvable: &[Stage],
    ) -> Result<StageRecord, StoreError> {
        let txn = self.write()?;
        let mut record =
            read_in(&txn, model, version)?.ok_or_else(|| no_release(model, version))?;
        if !approvable.contains(&record.stage) {
            return Err(StoreError::StageConflict(format!(
                "{model} {version} is in {}: approvals are for a promotion to production, from {}",
                record.stage,
                approvable
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        // A person approving again (perhaps through another of their tokens) replaces their
        // approval where it stands: approvers stay in the order they first approved.
        let earlier = record.approvals.iter().position(|a| a.by == approval.by);
        append(
            &txn,
            Change {
                at: approval.at,
                actor: &approval.by,
                action: "stage.approve",
                subject: format!("{model} {version}"),
                detail: format!(
                    "toward production{}",
                    approval
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            },
        )?;
        match earlier {
            Some(at) => record.approvals[at] = approval,
            None => record.approvals.push(approval),
        }
        write_in(&txn, model, version, &record)?;
        txn.commit()?;
        Ok(record)
    }

    /// Moves `model` `version` by `step` (refused when it is no longer in `step.from`), with
    /// `effects`, all in one transaction.
    pub fn move_stage(
        &self,
        model: &ModelName,
        version: &Version,
        step: StageMove,
        effects: MoveEffects,
    ) -> Result<StageRecord, StoreError> {
        let txn = self.write()?;
        let record = read_in(&txn, model, version)?.ok_or_else(|| no_release(model, version))?;
        if record.stage != step.from {
            return Err(StoreError::StageConflict(format!(
                "{model} {version} moved to {} meanwhile",
                record.stage
            )));
        }
        let (by, at, to) = (step.by.clone(), step.at, step.to);
        let record = move_in(&txn, model, version, record, step)?;
        for old in &effects.deprecate {
            let Some(other) = read_in(&txn, model, old)? else {
                continue;
            };
            if other.stage == Stage::Production {
                let step = StageMove {
                    from: Stage::Production,
                    to: Stage::Deprecated,
                    at,
                    by: by.clone(),
                    reason: Some(format!("replaced in {to} by {version}")),
                    approvers: Vec::new(),
                    checks: Vec::new(),
                };
                move_in(&txn, model, old, other, step)?;
            }
        }
        if let Some((alias, target)) = effects.set_prod {
            set_alias_in(&txn, model, &alias, target)?;
        }
        if let Some((rollout, why)) = &effects.rollout {
            create_rollout_in(&txn, rollout, why)?;
        }
        txn.commit()?;
        Ok(record)
    }
}

fn no_release(model: &ModelName, version: &Version) -> StoreError {
    StoreError::NoSuchRelease {
        name: model.to_string(),
        version: version.to_string(),
    }
}

super::codec::first_format!(StageRecord);
