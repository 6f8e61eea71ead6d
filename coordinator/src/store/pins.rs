//! Devices an operator pinned to a version of a model: the device runs it whatever its alias
//! or a rollout says, until unpinned. Each pin and unpin lands with its audit entry in one
//! transaction.

use ferry_shared::wire::DeviceId;
use ferry_shared::{ModelName, Version};
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::Rows;
use super::tables::{DEVICE_PINS, DEVICES};
use super::{Store, StoreError};

/// Pinned devices: (device id, model) → the version each runs.
pub type Pins = std::collections::HashMap<(String, ModelName), Version>;

/// A pin's key: (device id, model), as stored.
pub type PinKey = (String, String);

/// A device held at a version of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    /// The version it runs while pinned.
    pub version: Version,
    /// Who pinned it.
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Why, as the operator gave it.
    pub reason: String,
}

impl Store {
    /// Pins `device` to `pin.version` of `model` (replacing an earlier pin of the model);
    /// false when no such device is enrolled.
    pub fn pin_device(
        &self,
        device: &DeviceId,
        model: &ModelName,
        pin: &PinRecord,
    ) -> Result<bool, StoreError> {
        let txn = self.write()?;
        if !txn.contains(DEVICES, device.as_str())? {
            return Ok(false);
        }
        txn.insert(DEVICE_PINS, (device.as_str(), model.as_str()), pin)?;
        append(
            &txn,
            Change {
                at: pin.at,
                actor: &pin.by,
                action: "device.pin",
                subject: device.to_string(),
                detail: format!("{model} {}: {}", pin.version, pin.reason),
            },
        )?;
        txn.commit()?;
        Ok(true)
    }

    /// Unpins `device` from `model`: it follows its alias again. The pin removed, if there
    /// was one.
    pub fn unpin_device(
        &self,
        device: &DeviceId,
        model: &ModelName,
        by: &str,
        reason: &str,
        at: u64,
    ) -> Result<Option<PinRecord>, StoreError> {
        let txn = self.write()?;
        let key = (device.as_str(), model.as_str());
        let Some(pin) = txn.get::<_, PinRecord>(DEVICE_PINS, key)? else {
            return Ok(None);
        };
        txn.remove(DEVICE_PINS, key)?;
        append(
            &txn,
            Change {
                at,
                actor: by,
                action: "device.unpin",
                subject: device.to_string(),
                detail: format!("{model} (was {}): {reason}", pin.version),
            },
        )?;
        txn.commit()?;
        Ok(Some(pin))
    }

    /// Every pin: (device id, model) → pin.
    pub fn pins(&self) -> Result<Vec<(PinKey, PinRecord)>, StoreError> {
        self.read()?.records(DEVICE_PINS, None)
    }

    /// Every pinned device's version: (device id, model) → version.
    pub fn pinned_versions(&self) -> Result<Pins, StoreError> {
        Ok(self
            .pins()?
            .into_iter()
            .filter_map(|((device, model), pin)| Some(((device, model.parse().ok()?), pin.version)))
            .collect())
    }
}

super::codec::first_format!(PinRecord);
