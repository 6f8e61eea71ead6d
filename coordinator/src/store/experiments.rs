//! A/B experiments: a champion against a challenger on a share of a cohort, for a set time or
//! sample, then a decision. The split itself is a rollout the experiment owns (its first wave
//! serves the challenger; its second waits for an approval only the decision gives); this
//! keeps what the experiment adds: its terms, and the decisions taken with who and why.

use ferry_shared::rollout::Selector;
use ferry_shared::{AliasName, ModelName, Version};
use serde::{Deserialize, Serialize};

pub use crate::rules::experiment::{ExperimentDecision, Verdict};

use super::audit::{Change, append};
use super::engine::Rows;
use super::tables::EXPERIMENTS;
use super::{Store, StoreError};

/// A stored experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// Its id (also the id of the rollout that splits the cohort).
    pub id: String,
    /// The model.
    pub model: ModelName,
    /// The alias the cohort follows; where it pointed when the experiment started.
    pub alias: AliasName,
    /// The release serving the rest of the cohort.
    pub champion: Version,
    /// The release serving the experiment's share.
    pub challenger: Version,
    /// The devices taking part.
    pub cohort: Selector,
    /// The challenger's share of the cohort, in buckets of [`ferry_shared::rollout::BUCKETS`].
    pub share: u32,
    /// When it may be decided by time (Unix seconds); extended by `extend` decisions.
    pub ends_at: u64,
    /// Requests each arm needs before it may be decided early (0: time only).
    pub min_samples: u64,
    /// Who started it, when, why.
    pub created_by: String,
    /// When it started (Unix seconds).
    pub created_at: u64,
    /// Why.
    pub reason: String,
    /// The decisions taken, oldest first; a promote or reject ends it.
    pub decisions: Vec<ExperimentDecision>,
}

impl ExperimentRecord {
    /// The decision that ended it, if one did.
    pub fn outcome(&self) -> Option<&ExperimentDecision> {
        self.decisions.iter().find(|d| d.verdict != Verdict::Extend)
    }
}

super::codec::first_format!(ExperimentRecord);

impl Store {
    /// Stores a new experiment, audited. Refused when the id exists.
    pub fn create_experiment(&self, record: &ExperimentRecord) -> Result<(), StoreError> {
        let txn = self.write()?;
        if txn.contains(EXPERIMENTS, record.id.as_str())? {
            return Err(StoreError::RolloutConflict(format!(
                "an experiment named {} exists already",
                record.id
            )));
        }
        txn.insert(EXPERIMENTS, record.id.as_str(), record)?;
        append(
            &txn,
            Change {
                at: record.created_at,
                actor: &record.created_by,
                action: "experiment.create",
                subject: record.id.clone(),
                detail: format!(
                    "{} {} (challenger) against {} (champion) on {:.1} % of cohort \"{}\"{}",
                    record.model,
                    record.challenger,
                    record.champion,
                    f64::from(record.share) / 100.0,
                    record.cohort,
                    super::rollouts::reason(&record.reason)
                ),
            },
        )?;
        txn.commit()
    }

    /// Records `decision` (and, for an extension, the new end), audited.
    pub fn decide_experiment(
        &self,
        id: &str,
        decision: &ExperimentDecision,
        ends_at: u64,
    ) -> Result<ExperimentRecord, StoreError> {
        let txn = self.write()?;
        let Some(mut record) = txn.get::<_, ExperimentRecord>(EXPERIMENTS, id)? else {
            return Err(StoreError::NoSuchExperiment(id.to_owned()));
        };
        if let Some(done) = record.outcome() {
            return Err(StoreError::RolloutConflict(format!(
                "experiment {id} was decided already ({} by {})",
                done.verdict, done.by
            )));
        }
        record.decisions.push(decision.clone());
        record.ends_at = ends_at;
        txn.insert(EXPERIMENTS, id, &record)?;
        append(
            &txn,
            Change {
                at: decision.at,
                actor: &decision.by,
                action: "experiment.decide",
                subject: id.to_owned(),
                detail: format!(
                    "{}: {} {}{}",
                    decision.verdict,
                    record.model,
                    record.challenger,
                    super::rollouts::reason(&decision.reason)
                ),
            },
        )?;
        txn.commit()?;
        Ok(record)
    }

    /// One experiment.
    pub fn experiment(&self, id: &str) -> Result<Option<ExperimentRecord>, StoreError> {
        self.read()?.get(EXPERIMENTS, id)
    }

    /// Every experiment, by id.
    pub fn experiments(&self) -> Result<Vec<ExperimentRecord>, StoreError> {
        let rows: Vec<(String, ExperimentRecord)> = self.read()?.records(EXPERIMENTS, None)?;
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }
}
