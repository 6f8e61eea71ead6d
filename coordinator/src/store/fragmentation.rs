//! Fragmentation history: one point per model per snapshot, kept for the retention period,
//! so reports show how spread the fleet's versions were over days.

use ferry_shared::ModelName;

use super::engine::Rows;
use super::tables::FRAGMENTATION;
use super::{Store, StoreError};
use crate::api::FragmentationPoint;

impl Store {
    /// Stores one snapshot (a point per model) and forgets points older than `keep_since`.
    pub fn record_fragmentation(
        &self,
        points: &[(ModelName, FragmentationPoint)],
        keep_since: u64,
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        for (model, point) in points {
            txn.insert(FRAGMENTATION, (model.as_str(), point.at), point)?;
        }
        let mut old = Vec::new();
        txn.scan_raw(FRAGMENTATION, None, |(model, at), _| {
            if at < keep_since {
                old.push((model, at));
            }
            Ok(true)
        })?;
        for (model, at) in old {
            txn.remove(FRAGMENTATION, (model.as_str(), at))?;
        }
        txn.commit()
    }

    /// The points of `model` since `since`, oldest first.
    pub fn fragmentation_history(
        &self,
        model: &ModelName,
        since: u64,
    ) -> Result<Vec<FragmentationPoint>, StoreError> {
        let rows =
            self.read()?
                .records_within(FRAGMENTATION, model.as_str(), (model.as_str(), since))?;
        Ok(rows.into_iter().map(|(_, point)| point).collect())
    }

    /// When the newest snapshot was taken.
    pub fn last_fragmentation_at(&self) -> Result<Option<u64>, StoreError> {
        let mut newest = None;
        self.read()?.scan_raw(FRAGMENTATION, None, |(_, at), _| {
            newest = newest.max(Some(at));
            Ok(true)
        })?;
        Ok(newest)
    }
}

super::codec::first_format!(FragmentationPoint);
