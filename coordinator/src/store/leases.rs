//! Leases: which coordinator does the work only one may do at a time (driving rollouts,
//! keeping fragmentation samples), when several share one database. A lease is held until an
//! expiry its holder pushes forward while it works; a holder that dies stops pushing, and
//! another takes the lease once it expired. Taking and renewing are write transactions, so
//! they are decided one at a time across every node. With the embedded engine there is one
//! coordinator, which always holds them.
//!
//! Expiries are in the holders' own clocks (milliseconds since the Unix epoch): nodes whose
//! clocks disagree by more than a lease's lifetime could overlap, so keep them synchronised
//! (NTP) and lifetimes well above the skew.

use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::Rows;
use super::tables::LEASES;
use super::{Store, StoreError};

/// Who holds a lease, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holding coordinator's node name.
    pub holder: String,
    /// When the lease lapses unless renewed (Unix milliseconds, the holder's clock).
    pub expires_at_ms: u64,
}

super::codec::first_format!(LeaseRecord);

impl Store {
    /// Takes lease `name` for `holder` (or renews it) until `now_ms + ttl_ms`, unless another
    /// holder's has not expired; whether `holder` holds it now. A change of holder is
    /// audited.
    pub fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let current: Option<LeaseRecord> = txn.get(LEASES, name)?;
        if let Some(lease) = &current
            && lease.holder != holder
            && lease.expires_at_ms > now_ms
        {
            return Ok(false);
        }
        let renewed = LeaseRecord {
            holder: holder.to_owned(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        txn.insert(LEASES, name, &renewed)?;
        if current.as_ref().is_none_or(|lease| lease.holder != holder) {
            let from = current.map_or_else(
                || "(nobody)".to_owned(),
                |lease| format!("{} (expired)", lease.holder),
            );
            append(
                &txn,
                Change {
                    at: now_ms / 1000,
                    actor: holder,
                    action: "lease.take",
                    subject: name.to_owned(),
                    detail: format!("from {from}"),
                },
            )?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Gives lease `name` up if `holder` holds it (a clean shutdown), so another node need
    /// not wait for it to expire.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        if let Some(lease) = txn.get::<_, LeaseRecord>(LEASES, name)?
            && lease.holder == holder
        {
            txn.remove(LEASES, name)?;
            txn.commit()?;
        }
        Ok(())
    }

    /// Every lease, by name.
    pub fn leases(&self) -> Result<Vec<(String, LeaseRecord)>, StoreError> {
        self.read()?.records(LEASES, None)
    }
}
