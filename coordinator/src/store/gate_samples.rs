//! The gates' values over time, per rollout: what the engine measured at each step, kept
//! with the rollout so that a restarted coordinator, or another one sharing the database,
//! draws the same chart. One record per rollout, rewritten at each step without waiting for
//! the disk: losing the last sample in a crash costs nothing. How the samples are bounded is
//! [`crate::rollout::gate_history`]'s business.

use serde::{Deserialize, Serialize};

use super::engine::Rows;
use super::tables::GATE_SAMPLES;
use super::{Store, StoreError};

/// The gates of one wave as the engine measured them once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSampleRecord {
    /// When (Unix seconds).
    pub at: u64,
    /// The wave in force (1-based).
    pub wave: u32,
    /// Each gate's value, in the order of the wave's gates (`None`: nothing to measure).
    pub values: Vec<Option<f64>>,
}

/// A rollout's samples, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GateSamples {
    /// The samples.
    pub samples: Vec<GateSampleRecord>,
}

super::codec::first_format!(GateSamples);

impl Store {
    /// `rollout`'s gate samples, oldest first (none before its first engine step).
    pub fn gate_samples(&self, rollout: &str) -> Result<GateSamples, StoreError> {
        Ok(self.read()?.get(GATE_SAMPLES, rollout)?.unwrap_or_default())
    }

    /// Changes `rollout`'s gate samples with `change`, in one transaction.
    pub fn update_gate_samples(
        &self,
        rollout: &str,
        change: impl FnOnce(&mut GateSamples),
    ) -> Result<(), StoreError> {
        let mut txn = self.write()?;
        txn.relax_durability()?;
        let mut samples: GateSamples = txn.get(GATE_SAMPLES, rollout)?.unwrap_or_default();
        change(&mut samples);
        txn.insert(GATE_SAMPLES, rollout, &samples)?;
        txn.commit()
    }
}
