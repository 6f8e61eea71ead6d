//! Rollouts: each plan with its state, persisted so a restarted coordinator resumes exactly
//! where it was. Every change lands with its audit entry in one transaction. At most one
//! rollout per (model, cohort) is active; a conflicting one is refused.

use ferry_shared::rollout::{Plan, RolloutState};
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::tables::{RELEASES, ROLLOUTS};
use super::{Store, StoreError};

/// A stored rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// What it rolls out, to whom, in which waves.
    pub plan: Plan,
    /// Where it stands.
    pub state: RolloutState,
    /// The alias the cohort follows; moved to the target when the rollout completes.
    pub alias: ferry_shared::AliasName,
    /// Who created it.
    pub created_by: String,
    /// When (Unix seconds).
    pub created_at: u64,
    /// When, in Unix milliseconds: the failures that judge it are those seen after this.
    pub created_at_ms: u64,
    /// Last change (Unix seconds).
    pub updated_at: u64,
    /// The current wave's gates as they stood when the rollout ended (shown afterwards:
    /// figures computed later change as devices move on).
    pub final_gates: Vec<ferry_shared::rollout::GateReport>,
}

impl RolloutRecord {
    /// True while it steers devices forward (not finished, aborted or rolled back).
    pub fn is_active(&self) -> bool {
        !self.state.phase.is_terminal()
    }
}

impl Store {
    /// Stores a new rollout. Refused when the id exists, the target is not published, or an
    /// active rollout already covers the same model and cohort.
    pub fn create_rollout(&self, record: &RolloutRecord, why: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        create_rollout_in(&txn, record, why)?;
        txn.commit()?;
        Ok(())
    }
}

/// Stores a new rollout within `txn` (see [`Store::create_rollout`]).
pub(crate) fn create_rollout_in(
    txn: &WriteTxn<'_>,
    record: &RolloutRecord,
    why: &str,
) -> Result<(), StoreError> {
    let plan = &record.plan;
    {
        let version = plan.target.to_string();
        if !txn.contains(RELEASES, (plan.model.as_str(), version.as_str()))? {
            return Err(StoreError::NoSuchRelease {
                name: plan.model.to_string(),
                version,
            });
        }
        if txn.contains(ROLLOUTS, plan.id.as_str())? {
            return Err(StoreError::RolloutConflict(format!(
                "a rollout named {} exists already",
                plan.id
            )));
        }
        for (_, other) in txn.records::<_, RolloutRecord>(ROLLOUTS, None)? {
            if other.is_active()
                && other.plan.model == plan.model
                && other.plan.cohort == plan.cohort
            {
                return Err(StoreError::RolloutConflict(format!(
                    "rollout {} is still active for {} (cohort \"{}\"); finish, abort or roll it back first",
                    other.plan.id, plan.model, plan.cohort
                )));
            }
        }
        txn.insert(ROLLOUTS, plan.id.as_str(), record)?;
    }
    append(
        txn,
        Change {
            at: record.created_at,
            actor: &record.created_by,
            action: "rollout.create",
            subject: plan.id.clone(),
            detail: format!(
                "{} {} to cohort \"{}\" in {} waves{}",
                plan.model,
                plan.target,
                plan.cohort,
                plan.waves.len(),
                reason(why)
            ),
        },
    )?;
    Ok(())
}

impl Store {
    /// Replaces a rollout's state (and, when it ended, its final gates), auditing `change`.
    pub(crate) fn update_rollout(
        &self,
        id: &str,
        state: &RolloutState,
        final_gates: Option<&[ferry_shared::rollout::GateReport]>,
        change: Change<'_>,
    ) -> Result<RolloutRecord, StoreError> {
        let txn = self.write()?;
        let record = {
            let Some(mut record) = txn.get::<_, RolloutRecord>(ROLLOUTS, id)? else {
                return Err(StoreError::NoSuchRollout(id.to_owned()));
            };
            record.state = state.clone();
            if let Some(gates) = final_gates {
                record.final_gates = gates.to_vec();
            }
            record.updated_at = change.at;
            txn.insert(ROLLOUTS, id, &record)?;
            record
        };
        append(&txn, change)?;
        txn.commit()?;
        Ok(record)
    }

    /// One rollout.
    pub fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let txn = self.read()?;
        txn.get(ROLLOUTS, id)
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let txn = self.read()?;
        let rows = txn.records::<_, RolloutRecord>(ROLLOUTS, None)?;
        let mut out: Vec<RolloutRecord> = rows.into_iter().map(|(_, r)| r).collect();
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }
}

/// `"; reason: …"` when one was given.
pub(crate) fn reason(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!("; reason: {why}")
    }
}
