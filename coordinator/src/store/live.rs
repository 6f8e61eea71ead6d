//! What each device is doing now, shared by coordinators on one database: which node holds
//! its session, when it was last heard from, and the model metrics it last reported. With
//! one coordinator this stays in its memory ([`crate::fleet::summary::Presence`],
//! [`crate::fleet::summary::FleetMetrics`]); with several, each writes what it hears here
//! (with every batch of reports, and when a session opens or closes), and the rollout engine,
//! fleet views and `/metrics` of every node read the whole fleet from here. Soft state: its
//! commits need not wait for the disk, and a device's next heartbeat writes it again.

use std::collections::HashMap;

use ferry_shared::wire::{DeviceId, ReportedMetrics};
use serde::{Deserialize, Serialize};

use super::engine::Rows;
use super::tables::LIVE;
use super::{Store, StoreError};

/// A device's live state, as the node holding its session last wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// The coordinator holding (or that last held) its session.
    pub node: String,
    /// Whether that session is open.
    pub connected: bool,
    /// When the device was last heard from (Unix milliseconds, that node's clock).
    pub seen_ms: u64,
    /// The model metrics it last reported.
    pub metrics: Vec<ReportedMetrics>,
}

super::codec::first_format!(LiveRecord);

impl Store {
    /// Notes that `id`'s session on `node` opened (`connected`) or closed at `now_ms`. A
    /// close from another node than the one that last opened a session is ignored: the
    /// device has moved on. Keeps the metrics last written.
    pub fn record_session(
        &self,
        id: &DeviceId,
        node: &str,
        connected: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut txn = self.write()?;
        txn.relax_durability()?;
        let before: Option<LiveRecord> = txn.get(LIVE, id.as_str())?;
        if !connected && before.as_ref().is_some_and(|b| b.node != node) {
            return Ok(());
        }
        let record = LiveRecord {
            node: node.to_owned(),
            connected,
            seen_ms: now_ms,
            metrics: before.map(|b| b.metrics).unwrap_or_default(),
        };
        txn.insert(LIVE, id.as_str(), &record)?;
        txn.commit()
    }

    /// Every device's live state, by id.
    pub fn live_records(&self) -> Result<HashMap<DeviceId, LiveRecord>, StoreError> {
        let rows: Vec<(String, LiveRecord)> = self.read()?.records(LIVE, None)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, record)| Some((DeviceId::parse(&id)?, record)))
            .collect())
    }
}
