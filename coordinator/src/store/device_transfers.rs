//! What each coordinator sent each device, per artifact: bytes on the wire and chunks by
//! encoding (see [`crate::fleet::device_transfers`], which counts them). One row per
//! (device, node), written every few seconds by the node that served the chunks (only while
//! it serves, so the commit waits for the disk: a commit that does not is kept only once a
//! later one does, and the last before a shutdown would be lost): the device page outlives a
//! restart, and on a shared database shows what every node sent.

use std::collections::BTreeMap;

use ferry_shared::Digest;
use ferry_shared::wire::DeviceId;
use serde::{Deserialize, Serialize};

use super::engine::Rows;
use super::tables::DEVICE_TRANSFERS;
use super::{Store, StoreError};

/// One artifact's transfer to one device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTransfer {
    /// Bytes sent, as on the wire (compressed or delta-encoded).
    pub wire_bytes: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Chunks sent per encoding (`zstd`, `zstd-ref`, `tensors`, …).
    pub encodings: BTreeMap<String, u64>,
    /// When its first and last chunk went (Unix seconds).
    pub first_at: u64,
    /// See `first_at`.
    pub last_at: u64,
}

/// What one node sent one device: each artifact with its transfer.
pub type SentFiles = Vec<(Digest, FileTransfer)>;

/// A (device, node) row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TransfersRecord {
    files: SentFiles,
}

super::codec::first_format!(TransfersRecord);

impl Store {
    /// Stores what `node` sent each of `devices`, replacing its earlier rows for them.
    pub fn put_device_transfers(
        &self,
        node: &str,
        devices: &[(DeviceId, SentFiles)],
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        for (device, files) in devices {
            let record = TransfersRecord {
                files: files.clone(),
            };
            txn.insert(DEVICE_TRANSFERS, (device.as_str(), node), &record)?;
        }
        txn.commit()
    }

    /// What every node sent `device`, by node.
    pub fn device_transfers(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<(String, SentFiles)>, StoreError> {
        let id = device.as_str();
        let rows: Vec<((String, String), TransfersRecord)> =
            self.read()?
                .records_within(DEVICE_TRANSFERS, id, (id, ""))?;
        Ok(rows
            .into_iter()
            .map(|((_, node), record)| (node, record.files))
            .collect())
    }

    /// What `node` sent each device (read once at start, to go on counting).
    pub fn transfers_by(&self, node: &str) -> Result<Vec<(DeviceId, SentFiles)>, StoreError> {
        let rows: Vec<((String, String), TransfersRecord)> =
            self.read()?.records(DEVICE_TRANSFERS, None)?;
        Ok(rows
            .into_iter()
            .filter(|((_, by), _)| by == node)
            .filter_map(|((device, _), record)| Some((DeviceId::parse(&device)?, record.files)))
            .collect())
    }
}
