//! Test helpers for code that needs a real store holding releases: a store in a temporary
//! directory, releases of `detector` built from bytes, and their publishing.

use ferry_shared::manifest::{Lineage, MANIFEST_SCHEMA};
use ferry_shared::{Accelerator, Digest, Release, SecretKey, SignedRelease, Target, Variant};

use super::Store;
use super::records::BlobRecord;

/// A release of `detector` at `version` whose one variant is `bytes`, expiring 1,000,000 s
/// after `created_at`.
pub(crate) fn release(version: &str, bytes: &[u8], created_at: u64) -> Release {
    Release {
        schema: MANIFEST_SCHEMA,
        name: "detector".parse().unwrap(),
        version: version.parse().unwrap(),
        revision: 1,
        expires: created_at + 1_000_000,
        created_at,
        created_by: "test".into(),
        variants: vec![Variant {
            target: Target::Any,
            accelerator: Accelerator::Any,
            file_name: "model.bin".parse().unwrap(),
            size: bytes.len() as u64,
            hash: Digest::of(bytes),
            chunks: cut(bytes).index.digest(),
        }],
        cpu_fallback: false,
        metadata: Lineage::default(),
    }
}

/// Uploads `bytes` and publishes them as `detector v`.
pub(crate) fn publish_bytes(store: &Store, key: &SecretKey, v: &str, bytes: &[u8]) {
    with_blob(store, bytes);
    let signed = SignedRelease::sign(&release(v, bytes, 1), key).unwrap();
    store.publish(&signed, "ci", 1).unwrap();
}

/// A store in a new temporary directory (kept alive by the returned guard) and a publisher key.
pub(crate) fn setup() -> (tempfile::TempDir, Store, SecretKey) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.redb")).unwrap();
    (dir, store, SecretKey::from_seed(&[7; 32]))
}

/// `bytes` cut into chunks with the default parameters.
pub(crate) fn cut(bytes: &[u8]) -> ferry_shared::chunk::Chunked {
    ferry_shared::chunk::ChunkIndex::build(bytes, ferry_shared::chunk::ChunkParams::DEFAULT)
        .unwrap()
}

/// Records `bytes` as an uploaded artifact, as an upload would.
pub(crate) fn with_blob(store: &Store, bytes: &[u8]) {
    let cut = cut(bytes);
    let record = BlobRecord {
        size: bytes.len() as u64,
        chunks: cut.index.digest(),
        chunk_count: 1,
        new_chunks: 1,
        new_bytes: 1,
        added_at: 0,
    };
    store
        .record_blob(&super::blobs::Ingested {
            hash: cut.hash,
            record,
            index: cut.index,
            layout: None,
        })
        .unwrap();
}
