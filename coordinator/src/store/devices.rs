//! Device records: identity, labels, what each device runs and what happened to it.

use std::collections::HashMap;

use ferry_shared::wire::{DeviceEvent, DeviceId, DeviceReport, EventKind, ReportedDistribution};

use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::live::LiveRecord;
use super::records::DeviceRecord;
use super::tables::{DEVICES, LIVE};
use super::{Store, StoreError};

impl Store {
    /// One device.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read()?.get(DEVICES, id.as_str())
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<(DeviceId, DeviceRecord)>, StoreError> {
        let rows: Vec<(String, DeviceRecord)> = self.read()?.records(DEVICES, None)?;
        rows.into_iter()
            .map(|(key, record)| match DeviceId::parse(&key) {
                Some(id) => Ok((id, record)),
                None => Err(StoreError::Corrupt {
                    table: "devices",
                    key,
                    reason: "not a device id".into(),
                }),
            })
            .collect()
    }

    /// Stores a device's updated record, auditing the rollbacks among `new_events`.
    pub fn update_device(
        &self,
        id: &DeviceId,
        record: &DeviceRecord,
        new_events: &[DeviceEvent],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut txn = self.write()?;
        if new_events.is_empty() {
            // A state snapshot the agent sends again with every heartbeat: losing the last one
            // in a crash costs nothing, so it need not wait for the disk (the next durable
            // commit persists it). New events are acknowledged to the agent, which then drops
            // them: those commits stay durable.
            txn.relax_durability()?;
        }
        txn.insert(DEVICES, id.as_str(), record)?;
        audit_events(&txn, id, new_events, now)?;
        txn.commit()
    }

    /// Merges many devices' reports with `merge` in one transaction, durable only when one of
    /// them brings new events. For each: the new events and the sequence acknowledged
    /// through, or `None` for a device with no record. With `live` (this node's name, when
    /// coordinators share the database), each device's live state is written too, with the
    /// metric distributions `distributions` gives for it.
    pub fn merge_reports(
        &self,
        reports: &[(DeviceId, DeviceReport, u64)],
        merge: impl Fn(&DeviceId, &mut DeviceRecord, &DeviceReport) -> (Vec<DeviceEvent>, bool),
        live: Option<&str>,
        distributions: impl Fn(&DeviceId) -> Vec<ReportedDistribution>,
    ) -> Result<Vec<Option<Merged>>, StoreError> {
        let mut txn = self.write()?;
        // Read in one go, merged here, written in one go: the transaction holds the writer
        // lock, which every coordinator sharing the database waits for, for three statements
        // rather than two per report (a thousand heartbeats per batch at 100,000 devices).
        let mut ids: Vec<&str> = reports.iter().map(|(id, _, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored: Vec<Option<DeviceRecord>> = txn.get_many(DEVICES, &ids)?;
        let mut records: HashMap<&str, DeviceRecord> = ids
            .iter()
            .zip(stored)
            .filter_map(|(id, record)| Some((*id, record?)))
            .collect();
        let mut changed_ids: Vec<&str> = Vec::new();
        let mut live_rows: Vec<(&str, LiveRecord)> = Vec::new();
        let mut out = Vec::with_capacity(reports.len());
        let mut durable = false;
        for (id, report, now) in reports {
            let Some(record) = records.get_mut(id.as_str()) else {
                out.push(None);
                continue;
            };
            let (new_events, changed) = merge(id, record, report);
            if changed {
                record.last_seen = *now;
                changed_ids.push(id.as_str());
            }
            if let Some(node) = live {
                let heard = LiveRecord {
                    node: node.to_owned(),
                    connected: true,
                    seen_ms: now.saturating_mul(1000),
                    metrics: report.metrics.clone(),
                    distributions: distributions(id),
                };
                live_rows.push((id.as_str(), heard));
            }
            durable |= !new_events.is_empty();
            out.push(Some((new_events, record.events_through)));
        }
        changed_ids.sort_unstable();
        changed_ids.dedup();
        let changed: Vec<(&str, &DeviceRecord)> = changed_ids
            .iter()
            .filter_map(|id| Some((*id, records.get(id)?)))
            .collect();
        txn.insert_many(DEVICES, &changed)?;
        let live_rows: Vec<(&str, &LiveRecord)> =
            live_rows.iter().map(|(id, heard)| (*id, heard)).collect();
        txn.insert_many(LIVE, &live_rows)?;
        for ((id, _, now), result) in reports.iter().zip(&out) {
            if let Some((events, _)) = result {
                audit_events(&txn, id, events, *now)?;
            }
        }
        if !durable {
            txn.relax_durability()?;
        }
        txn.commit()?;
        Ok(out)
    }
}

/// A report merged: the new events it brought and the sequence acknowledged through.
pub(crate) type Merged = (Vec<DeviceEvent>, u64);

/// Audits the rollbacks among a device's new events.
fn audit_events(
    txn: &WriteTxn<'_>,
    id: &DeviceId,
    new_events: &[DeviceEvent],
    now: u64,
) -> Result<(), StoreError> {
    for event in new_events {
        let (action, detail) = match &event.kind {
            EventKind::HealthRollback { from, to, error } => (
                "device.health-rollback",
                format!(
                    "{from} -> {}: {}",
                    to.as_ref().map_or("(none)".into(), ToString::to_string),
                    error.message
                ),
            ),
            EventKind::LocalRollback { from, to } => {
                ("device.local-rollback", format!("{from} -> {to}"))
            }
            EventKind::Installed { .. } | EventKind::InstallFailed(_) => continue,
        };
        append(
            txn,
            Change {
                at: now,
                actor: &format!("device:{id}"),
                action,
                subject: format!("{id} {}", event.model),
                detail,
            },
        )?;
    }
    Ok(())
}
