//! Device records: identity, labels, what each device runs and what happened to it.

use ferry_shared::wire::{DeviceEvent, DeviceId, EventKind};
use redb::{ReadableDatabase, ReadableTable};

use super::audit::{Change, append};
use super::codec::{decode, encode};
use super::records::DeviceRecord;
use super::tables::DEVICES;
use super::{Store, StoreError};

impl Store {
    /// One device.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEVICES)?;
        match table.get(id.as_str())? {
            Some(v) => Ok(Some(decode("devices", id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<(DeviceId, DeviceRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEVICES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let Some(id) = DeviceId::parse(k.value()) else {
                return Err(StoreError::Corrupt {
                    table: "devices",
                    key: k.value().to_owned(),
                    reason: "not a device id".into(),
                });
            };
            let record = decode("devices", &id, v.value())?;
            out.push((id, record));
        }
        Ok(out)
    }

    /// Stores a newly enrolled device.
    pub fn enroll(&self, id: &DeviceId, record: &DeviceRecord, now: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DEVICES)?
            .insert(id.as_str(), encode(record).as_slice())?;
        append(
            &txn,
            Change {
                at: now,
                actor: &format!("device:{id}"),
                action: "device.enroll",
                subject: id.to_string(),
                detail: format!("labels: {:?}", record.labels),
            },
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Stores a device's updated record, auditing the rollbacks among `new_events`.
    pub fn update_device(
        &self,
        id: &DeviceId,
        record: &DeviceRecord,
        new_events: &[DeviceEvent],
        now: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DEVICES)?
            .insert(id.as_str(), encode(record).as_slice())?;
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
                &txn,
                Change {
                    at: now,
                    actor: &format!("device:{id}"),
                    action,
                    subject: format!("{id} {}", event.model),
                    detail,
                },
            )?;
        }
        txn.commit()?;
        Ok(())
    }
}
