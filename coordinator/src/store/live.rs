//! What each device is doing now, shared by coordinators on one database: which node holds
//! its session, when it was last heard from, and the model metrics it last reported. With
//! one coordinator this stays in its memory ([`crate::fleet::summary::Presence`],
//! [`crate::fleet::summary::FleetMetrics`]); with several, each writes what it hears here
//! (with every batch of reports, and when a session opens or closes), and the rollout engine,
//! fleet views and `/metrics` of every node read the whole fleet from here. Soft state: its
//! commits need not wait for the disk, and a device's next heartbeat writes it again.

use std::collections::HashMap;

use ferry_shared::wire::{DeviceId, ReportedDistribution, ReportedMetrics};
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
    /// The distributions of custom metric values it last sent (format 2).
    pub distributions: Vec<ReportedDistribution>,
}

/// [`LiveRecord`] as format 1 wrote it, before distributions.
#[derive(Deserialize)]
struct LiveRecordV1 {
    node: String,
    connected: bool,
    seen_ms: u64,
    metrics: Vec<ReportedMetrics>,
}

impl super::codec::Record for LiveRecord {
    /// 2: the distributions of custom metric values, for drift gates.
    const FORMAT: u8 = 2;

    fn from_older(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (format == 1).then(|| {
            postcard::from_bytes::<LiveRecordV1>(body).map(|v1| LiveRecord {
                node: v1.node,
                connected: v1.connected,
                seen_ms: v1.seen_ms,
                metrics: v1.metrics,
                distributions: Vec::new(),
            })
        })
    }
}

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
        let (metrics, distributions) = before
            .map(|b| (b.metrics, b.distributions))
            .unwrap_or_default();
        let record = LiveRecord {
            node: node.to_owned(),
            connected,
            seen_ms: now_ms,
            metrics,
            distributions,
        };
        txn.insert(LIVE, id.as_str(), &record)?;
        txn.commit()
    }

    /// One device's live state.
    pub fn live_record(&self, id: &DeviceId) -> Result<Option<LiveRecord>, StoreError> {
        self.read()?.get(LIVE, id.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{decode, encode};

    /// A live row written before distributions (format 1) reads with none.
    #[test]
    fn a_format_1_live_record_reads_without_distributions() {
        #[derive(Serialize)]
        struct V1 {
            node: String,
            connected: bool,
            seen_ms: u64,
            metrics: Vec<ReportedMetrics>,
        }
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_allocvec(&V1 {
                node: "a".into(),
                connected: true,
                seen_ms: 7,
                metrics: Vec::new(),
            })
            .unwrap(),
        );
        let read: LiveRecord = decode("live", &"d", &bytes).unwrap();
        assert_eq!((read.node.as_str(), read.seen_ms), ("a", 7));
        assert!(read.distributions.is_empty());
        let again: LiveRecord = decode("live", &"d", &encode(&read)).unwrap();
        assert_eq!(again, read);
    }
}
