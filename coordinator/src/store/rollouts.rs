//! Rollouts: each plan with its state, persisted so a restarted coordinator resumes exactly
//! where it was. Every change lands with its audit entry in one transaction. At most one
//! rollout per (model, cohort) is active; a conflicting one is refused.

use ferry_shared::rollout::{Plan, RolloutState};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::codec::{decode, encode, records};
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
        let txn = self.db.begin_write()?;
        create_rollout_in(&txn, record, why)?;
        self.db.commit(txn)?;
        Ok(())
    }
}

/// Stores a new rollout within `txn` (see [`Store::create_rollout`]).
pub(crate) fn create_rollout_in(
    txn: &redb::WriteTransaction,
    record: &RolloutRecord,
    why: &str,
) -> Result<(), StoreError> {
    let plan = &record.plan;
    {
        let releases = txn.open_table(RELEASES)?;
        let version = plan.target.to_string();
        if releases
            .get((plan.model.as_str(), version.as_str()))?
            .is_none()
        {
            return Err(StoreError::NoSuchRelease {
                name: plan.model.to_string(),
                version,
            });
        }
        let mut table = txn.open_table(ROLLOUTS)?;
        if table.get(plan.id.as_str())?.is_some() {
            return Err(StoreError::RolloutConflict(format!(
                "a rollout named {} exists already",
                plan.id
            )));
        }
        for (_, other) in records::<RolloutRecord>(&table, "rollouts")? {
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
        table.insert(plan.id.as_str(), encode(record).as_slice())?;
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
        let txn = self.db.begin_write()?;
        let record = {
            let mut table = txn.open_table(ROLLOUTS)?;
            let mut record: RolloutRecord = match table.get(id)? {
                Some(v) => decode("rollouts", &id, v.value())?,
                None => return Err(StoreError::NoSuchRollout(id.to_owned())),
            };
            record.state = state.clone();
            if let Some(gates) = final_gates {
                record.final_gates = gates.to_vec();
            }
            record.updated_at = change.at;
            table.insert(id, encode(&record).as_slice())?;
            record
        };
        append(&txn, change)?;
        self.db.commit(txn)?;
        Ok(record)
    }

    /// One rollout.
    pub fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROLLOUTS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(decode("rollouts", &id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let rows = records::<RolloutRecord>(&txn.open_table(ROLLOUTS)?, "rollouts")?;
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
