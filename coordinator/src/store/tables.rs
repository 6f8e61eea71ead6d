//! The store's tables and their key shapes, the same in every engine.

use super::engine::{Counters, Number, Table, TableId, Text, TextNumber, TextPair};

/// (model, version) → encoded [`super::records::StoredRelease`].
pub(crate) const RELEASES: Table<TextPair> = Table::new("releases");
/// (model, alias) → encoded [`super::records::AliasRecord`].
pub(crate) const ALIASES: Table<TextPair> = Table::new("aliases");
/// device id → encoded [`super::records::DeviceRecord`].
pub(crate) const DEVICES: Table<Text> = Table::new("devices");
/// sequence → encoded [`super::records::AuditEntry`].
pub(crate) const AUDIT: Table<Number> = Table::new("audit");
/// key id (hex) → encoded [`super::records::PublisherKey`].
pub(crate) const PUBLISHER_KEYS: Table<Text> = Table::new("publisher_keys");
/// blob hash (hex) → encoded [`super::records::BlobRecord`].
pub(crate) const BLOBS: Table<Text> = Table::new("blobs");
/// blob hash (hex) → the artifact's canonical [`ferry_shared::chunk::ChunkIndex`] bytes.
pub(crate) const CHUNK_INDEXES: Table<Text> = Table::new("chunk_indexes");

/// blob hash (hex) → encoded [`ferry_shared::tensors::Layout`], for model files.
pub(crate) const TENSOR_LAYOUTS: Table<Text> = Table::new("tensor_layouts");

/// rollout id → encoded [`super::rollouts::RolloutRecord`].
pub(crate) const ROLLOUTS: Table<Text> = Table::new("rollouts");

/// experiment id → encoded [`super::experiments::ExperimentRecord`].
pub(crate) const EXPERIMENTS: Table<Text> = Table::new("experiments");

/// (model, unix seconds) → encoded [`crate::api::FragmentationPoint`].
pub(crate) const FRAGMENTATION: Table<TextNumber> = Table::new("fragmentation");

/// token id → encoded [`super::tokens::TokenRecord`] (hash of the secret, never the token).
pub(crate) const API_TOKENS: Table<Text> = Table::new("api_tokens");

/// token id → encoded [`super::enrollment::EnrollToken`] (hash of the secret).
pub(crate) const ENROLL_TOKENS: Table<Text> = Table::new("enroll_tokens");
/// device id → encoded [`super::enrollment::RevokedDevice`].
pub(crate) const REVOKED_DEVICES: Table<Text> = Table::new("revoked_devices");

/// root version → the signed root metadata, as pushed.
pub(crate) const TRUST_ROOTS: Table<Number> = Table::new("trust_roots");

/// (model, version) → encoded [`super::stages::StageRecord`] (absent: in development since
/// published).
pub(crate) const STAGES: Table<TextPair> = Table::new("stages");

/// (model, version) → encoded [`super::retention::PurgeRecord`]: releases whose bytes
/// retention freed.
pub(crate) const PURGED: Table<TextPair> = Table::new("purged");

/// lease name → encoded [`super::leases::LeaseRecord`]: which coordinator does work only one
/// may do at a time.
pub(crate) const LEASES: Table<Text> = Table::new("leases");

/// device id → encoded [`super::live::LiveRecord`]: who holds its session, when it was last
/// heard from, its metrics (written only when coordinators share the database).
pub(crate) const LIVE: Table<Text> = Table::new("live");

/// model → encoded [`super::signed_snapshots::StoredSnapshot`]: the TUF snapshot every
/// coordinator sharing the database serves (written only then).
pub(crate) const SIGNED_SNAPSHOTS: Table<Text> = Table::new("signed_snapshots");

/// (fence, holder) → encoded [`super::fences::Hold`]: who holds a fence across coordinators
/// sharing the database (written only then).
pub(crate) const FENCES: Table<TextPair> = Table::new("fences");

/// (device id, model) → encoded [`super::pins::PinRecord`]: devices an operator pinned.
pub(crate) const DEVICE_PINS: Table<TextPair> = Table::new("device_pins");

/// rollout id → encoded [`super::gate_samples::GateSamples`]: its gates' values over time.
pub(crate) const GATE_SAMPLES: Table<Text> = Table::new("gate_samples");

/// (device id, node) → encoded [`super::device_transfers`] row: what that coordinator sent
/// the device, per artifact.
pub(crate) const DEVICE_TRANSFERS: Table<TextPair> = Table::new("device_transfers");

/// name → counter (`snapshot_version`).
pub(crate) const TRUST_META: Counters = Counters { name: "trust_meta" };

/// name → value: the store's own facts (`store_format`, see [`super::migrate`]).
pub(crate) const META: Counters = Counters { name: "meta" };

/// Every table of byte values, for engines that create tables and for copies.
pub(crate) fn all() -> [TableId; 24] {
    [
        RELEASES.id(),
        ALIASES.id(),
        DEVICES.id(),
        AUDIT.id(),
        PUBLISHER_KEYS.id(),
        BLOBS.id(),
        CHUNK_INDEXES.id(),
        TENSOR_LAYOUTS.id(),
        ROLLOUTS.id(),
        FRAGMENTATION.id(),
        API_TOKENS.id(),
        ENROLL_TOKENS.id(),
        REVOKED_DEVICES.id(),
        TRUST_ROOTS.id(),
        STAGES.id(),
        PURGED.id(),
        LEASES.id(),
        LIVE.id(),
        SIGNED_SNAPSHOTS.id(),
        FENCES.id(),
        EXPERIMENTS.id(),
        DEVICE_PINS.id(),
        GATE_SAMPLES.id(),
        DEVICE_TRANSFERS.id(),
    ]
}

/// Every counter table.
pub(crate) const COUNTERS: [Counters; 2] = [TRUST_META, META];
