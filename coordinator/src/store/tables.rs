//! The redb tables and their key/value shapes.

use redb::{TableDefinition, WriteTransaction};

/// (model, version) → encoded [`super::records::StoredRelease`].
pub(crate) const RELEASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("releases");
/// (model, alias) → encoded [`super::records::AliasRecord`].
pub(crate) const ALIASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("aliases");
/// device id → encoded [`super::records::DeviceRecord`].
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// sequence → encoded [`super::records::AuditEntry`].
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// key id (hex) → encoded [`super::records::PublisherKey`].
pub(crate) const PUBLISHER_KEYS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("publisher_keys");
/// blob hash (hex) → encoded [`super::records::BlobRecord`].
pub(crate) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// blob hash (hex) → the artifact's canonical [`ferry_shared::chunk::ChunkIndex`] bytes.
pub(crate) const CHUNK_INDEXES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("chunk_indexes");

/// blob hash (hex) → encoded [`ferry_shared::tensors::Layout`], for model files.
pub(crate) const TENSOR_LAYOUTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("tensor_layouts");

/// rollout id → encoded [`super::rollouts::RolloutRecord`].
pub(crate) const ROLLOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rollouts");

/// (model, unix seconds) → encoded [`crate::api::FragmentationPoint`].
pub(crate) const FRAGMENTATION: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("fragmentation");

/// token id → encoded [`super::tokens::TokenRecord`] (hash of the secret, never the token).
pub(crate) const API_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");

/// token id → encoded [`super::enrollment::EnrollToken`] (hash of the secret).
pub(crate) const ENROLL_TOKENS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("enroll_tokens");
/// device id → encoded [`super::enrollment::RevokedDevice`].
pub(crate) const REVOKED_DEVICES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("revoked_devices");

/// root version → the signed root metadata, as pushed.
pub(crate) const TRUST_ROOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("trust_roots");

/// (model, version) → encoded [`super::stages::StageRecord`] (absent: in development since
/// published).
pub(crate) const STAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("stages");

/// (model, version) → encoded [`super::retention::PurgeRecord`]: releases whose bytes
/// retention freed.
pub(crate) const PURGED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("purged");

/// name → counter (`snapshot_version`).
pub(crate) const TRUST_META: TableDefinition<&str, u64> = TableDefinition::new("trust_meta");

/// name → value: the store's own facts (`store_format`, see [`super::migrate`]).
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Creates every table, so read transactions never meet a missing one.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(RELEASES)?;
    txn.open_table(ALIASES)?;
    txn.open_table(DEVICES)?;
    txn.open_table(AUDIT)?;
    txn.open_table(PUBLISHER_KEYS)?;
    txn.open_table(BLOBS)?;
    txn.open_table(CHUNK_INDEXES)?;
    txn.open_table(TENSOR_LAYOUTS)?;
    txn.open_table(ROLLOUTS)?;
    txn.open_table(FRAGMENTATION)?;
    txn.open_table(API_TOKENS)?;
    txn.open_table(ENROLL_TOKENS)?;
    txn.open_table(REVOKED_DEVICES)?;
    txn.open_table(TRUST_ROOTS)?;
    txn.open_table(TRUST_META)?;
    txn.open_table(STAGES)?;
    txn.open_table(PURGED)?;
    txn.open_table(META)?;
    Ok(())
}
