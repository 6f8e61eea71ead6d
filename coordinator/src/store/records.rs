//! The records the coordinator keeps, as stored.

use std::collections::BTreeMap;

use ferry_shared::sign::{KeyId, PublicKey};
use ferry_shared::wire::{Conditions, DeviceEvent, Follow, ModelReport};
use ferry_shared::{Digest, ModelName, Version};
use serde::{Deserialize, Serialize};

/// A published release: the publisher's envelope, verbatim, and how it arrived.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredRelease {
    /// The signed envelope exactly as published.
    pub envelope: Vec<u8>,
    /// When the coordinator accepted it (Unix seconds).
    pub published_at: u64,
    /// Who uploaded it.
    pub published_by: String,
    /// Which publisher key signed it.
    pub signer: KeyId,
}

/// Where an alias points, and the change that put it there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Target version.
    pub version: Version,
    /// When it was set.
    pub set_at: u64,
    /// Who set it.
    pub set_by: String,
    /// Why, if given.
    pub reason: Option<String>,
}

/// Everything known about one device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Identity public key, as its 32 bytes (the same encoding as a `PublicKey`, but kept
    /// compressed: reading a record must not cost a curve-point decompression, and the
    /// rollout driver reads every record each tick). The id derives from it.
    pub public_key: [u8; 32],
    /// When it enrolled.
    pub enrolled_at: u64,
    /// Last report or session start (Unix seconds, coordinator clock).
    pub last_seen: u64,
    /// Agent software version.
    pub agent_version: String,
    /// Labels it announced.
    pub labels: BTreeMap<String, String>,
    /// Models and aliases it follows.
    pub follows: Vec<Follow>,
    /// Its latest per-model state.
    pub models: Vec<ModelReport>,
    /// Highest event sequence number stored.
    pub events_through: u64,
    /// The most recent events, newest last (bounded).
    pub recent_events: Vec<DeviceEvent>,
    /// When the coordinator first stored each model's current `last_error`, in Unix
    /// milliseconds of its own clock (not the device's): a rollout is judged only by failures
    /// seen after it started.
    pub error_seen_at: BTreeMap<ModelName, u64>,
    /// Its latest conditions (disk space, deferred switches) and when they arrived (Unix
    /// seconds, coordinator clock); `None` from agents before protocol 7 (format 3).
    pub conditions: Option<(Conditions, u64)>,
    /// When the coordinator saw each model's running version change to what it is, in Unix
    /// milliseconds of its own clock (format 3): a rollout wave bakes from its last switch.
    pub switched_at: BTreeMap<ModelName, u64>,
}

impl DeviceRecord {
    /// A record for a device enrolling now with identity `key`.
    pub fn new(key: &PublicKey, now: u64) -> Self {
        Self {
            public_key: key.to_bytes(),
            enrolled_at: now,
            last_seen: now,
            agent_version: String::new(),
            labels: BTreeMap::new(),
            follows: Vec::new(),
            models: Vec::new(),
            events_through: 0,
            recent_events: Vec::new(),
            error_seen_at: BTreeMap::new(),
            conditions: None,
            switched_at: BTreeMap::new(),
        }
    }

    /// When the coordinator first saw `model`'s current failure, in Unix milliseconds (0 when
    /// none is stored).
    pub fn error_seen_at(&self, model: &ModelName) -> u64 {
        self.error_seen_at.get(model).copied().unwrap_or(0)
    }
}

/// One link of the append-only audit chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When (Unix seconds).
    pub at: u64,
    /// Who acted: the person named and the token used, or the coordinator itself.
    pub actor: String,
    /// What kind of change (`publish`, `alias.set`, `device.enroll`, …).
    pub action: String,
    /// What it concerned (`fraud-detector 1.2.0`, a device id, …).
    pub subject: String,
    /// Details, including the reason when one was given.
    pub detail: String,
    /// Hash of the previous entry's stored bytes (zeros for the first).
    pub prev_hash: Digest,
}

/// A key trusted to sign releases.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublisherKey {
    /// The key.
    pub key: PublicKey,
    /// A name for people.
    pub name: String,
    /// When it was added.
    pub added_at: u64,
    /// Who added it.
    pub added_by: String,
}

/// An artifact's bytes in the blob store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Size of the artifact.
    pub size: u64,
    /// Digest of its chunk index (what a manifest's variant must name).
    pub chunks: Digest,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Chunks its upload added to the chunk store.
    pub new_chunks: u32,
    /// Their compressed size: what the upload cost in disk.
    pub new_bytes: u64,
    /// When it was uploaded.
    pub added_at: u64,
}

#[cfg(test)]
impl DeviceRecord {
    /// A device (identity `key`, `labels`) that follows `report.model@alias` and reports
    /// `report`: the record tests start from.
    pub(crate) fn following(
        key: PublicKey,
        alias: &str,
        labels: BTreeMap<String, String>,
        report: ModelReport,
    ) -> Self {
        Self {
            public_key: key.to_bytes(),
            enrolled_at: 0,
            last_seen: 0,
            agent_version: "0".into(),
            labels,
            follows: vec![Follow {
                model: report.model.clone(),
                alias: alias
                    .parse()
                    .unwrap_or_else(|e| panic!("alias {alias}: {e}")),
            }],
            models: vec![report],
            events_through: 0,
            recent_events: vec![],
            error_seen_at: BTreeMap::new(),
            conditions: None,
            switched_at: BTreeMap::new(),
        }
    }
}

super::codec::first_format!(
    StoredRelease,
    AliasRecord,
    AuditEntry,
    PublisherKey,
    BlobRecord
);
