//! The signed TUF snapshot of each model, kept where every coordinator sharing the database
//! reads it. Devices never accept a snapshot older than one they have seen, so coordinators
//! serving one fleet must serve the same one: a device moving from one node to another would
//! otherwise meet an older version signed earlier there, and refuse it as a rollback. The
//! version is taken from the shared counter in the transaction that stores what it signs, so
//! two nodes re-signing at once store one snapshot, the newer. (With the embedded engine, the
//! one coordinator keeps its snapshots in memory: see [`crate::registry::snapshots`].)

use serde::{Deserialize, Serialize};

use super::engine::Rows;
use super::tables::SIGNED_SNAPSHOTS;
use super::trust::next_snapshot_version_in;
use super::{Store, StoreError};

/// A model's signed snapshot and what it lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// The signed metadata, as sent to devices.
    pub bytes: Vec<u8>,
    /// The releases it lists, encoded (compared, never decoded here).
    pub listing: Vec<u8>,
    /// When it was signed (Unix seconds).
    pub signed_at: u64,
}

super::codec::first_format!(StoredSnapshot);

impl Store {
    /// The snapshot of `model` listing `listing` at `now`: the stored one while it lists the
    /// same and was signed less than `fresh_secs` ago; else the one `sign` makes for the next
    /// snapshot version, stored in the transaction that took that version.
    pub fn signed_snapshot(
        &self,
        model: &str,
        listing: &[u8],
        now: u64,
        fresh_secs: u64,
        sign: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<StoredSnapshot, StoreError> {
        let usable = |stored: &StoredSnapshot| {
            stored.listing == listing && now.saturating_sub(stored.signed_at) < fresh_secs
        };
        if let Some(stored) = self
            .read()?
            .get::<_, StoredSnapshot>(SIGNED_SNAPSHOTS, model)?
            && usable(&stored)
        {
            return Ok(stored);
        }
        let txn = self.write()?;
        // Another node may have signed it meanwhile.
        if let Some(stored) = txn.get::<_, StoredSnapshot>(SIGNED_SNAPSHOTS, model)?
            && usable(&stored)
        {
            return Ok(stored);
        }
        let version = next_snapshot_version_in(&txn)?;
        let signed = StoredSnapshot {
            bytes: sign(version),
            listing: listing.to_vec(),
            signed_at: now,
        };
        txn.insert(SIGNED_SNAPSHOTS, model, &signed)?;
        txn.commit()?;
        Ok(signed)
    }
}
