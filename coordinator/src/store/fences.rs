//! Fences: a readers–writer lock across coordinators sharing one database, with holds that
//! expire. Uploads, publishes and backups hold the garbage-collection fence shared; a
//! collection holds it alone. A collection deletes chunks no artifact uses; an upload that
//! reuses such a chunk, or a publish of an artifact the collection's plan drops, must not run
//! meanwhile on any node. Each hold lives until an expiry its holder pushes forward while it
//! works, so a node that dies holding one blocks the others for one lifetime at most. Entering
//! is a write transaction: two nodes entering at once are decided one after the other.

use serde::{Deserialize, Serialize};

use super::engine::Rows;
use super::tables::FENCES;
use super::{Store, StoreError};

/// One holder's hold on a fence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Whether it excludes every other hold.
    pub exclusive: bool,
    /// What holds it, for whoever is kept out.
    pub what: String,
    /// When it lapses unless renewed (Unix milliseconds, the holder's clock).
    pub expires_at_ms: u64,
}

super::codec::first_format!(Hold);

impl Store {
    /// Enters fence `name` as `holder` (or renews its hold), alone when `exclusive`, until
    /// `now_ms + ttl_ms`. `Ok(Err(why))` names the live holds that keep it out.
    pub fn enter_fence(
        &self,
        name: &str,
        holder: &str,
        hold: &Hold,
        now_ms: u64,
    ) -> Result<Result<(), String>, StoreError> {
        let txn = self.write()?;
        let holds: Vec<((String, String), Hold)> = txn.records_within(FENCES, name, (name, ""))?;
        let blocking: Vec<String> = holds
            .iter()
            .filter(|((_, other), h)| {
                other != holder && h.expires_at_ms > now_ms && (hold.exclusive || h.exclusive)
            })
            .map(|(_, h)| h.what.clone())
            .collect();
        if !blocking.is_empty() {
            return Ok(Err(blocking.join(", ")));
        }
        // Lapsed holds go as they are met.
        for ((_, other), h) in &holds {
            if h.expires_at_ms <= now_ms {
                txn.remove(FENCES, (name, other.as_str()))?;
            }
        }
        txn.insert(FENCES, (name, holder), hold)?;
        txn.commit()?;
        Ok(Ok(()))
    }

    /// Leaves fence `name` (no error when `holder` holds nothing there).
    pub fn leave_fence(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        if txn.remove(FENCES, (name, holder))? {
            txn.commit()?;
        }
        Ok(())
    }
}
