//! Fragmentation history: one point per model per snapshot, kept for the retention period,
//! so reports show how spread the fleet's versions were over days.

use ferry_shared::ModelName;
use redb::ReadableTable;

use super::codec::{decode, encode};
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
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(FRAGMENTATION)?;
            for (model, point) in points {
                table.insert((model.as_str(), point.at), encode(point).as_slice())?;
            }
            let old: Vec<(String, u64)> = table
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| {
                    let (model, at) = k.value();
                    (model.to_owned(), at)
                })
                .filter(|(_, at)| *at < keep_since)
                .collect();
            for (model, at) in old {
                table.remove((model.as_str(), at))?;
            }
        }
        self.db.commit(txn)?;
        Ok(())
    }

    /// The points of `model` since `since`, oldest first.
    pub fn fragmentation_history(
        &self,
        model: &ModelName,
        since: u64,
    ) -> Result<Vec<FragmentationPoint>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FRAGMENTATION)?;
        let mut out = Vec::new();
        for item in table.range((model.as_str(), since)..=(model.as_str(), u64::MAX))? {
            let (k, v) = item?;
            let (_, at) = k.value();
            out.push(decode("fragmentation", &at, v.value())?);
        }
        Ok(out)
    }

    /// When the newest snapshot was taken.
    pub fn last_fragmentation_at(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FRAGMENTATION)?;
        let mut newest = None;
        for item in table.iter()? {
            let (k, _) = item?;
            let (_, at) = k.value();
            newest = newest.max(Some(at));
        }
        Ok(newest)
    }
}

super::codec::first_format!(FragmentationPoint);
