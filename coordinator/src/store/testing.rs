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
            kind: Default::default(),
            requires: Vec::new(),
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

/// An engine a store test runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Under {
    /// A redb file in a temporary directory.
    Redb,
    /// A fresh database on the test process's PostgreSQL server.
    Postgres,
}

std::thread_local! {
    /// The engine [`setup`] opens on this thread (redb unless [`on`] says otherwise).
    static ENGINE: std::cell::Cell<Under> = const { std::cell::Cell::new(Under::Redb) };
}

/// Runs `test` with [`setup`] opening stores on `engine`.
pub(crate) fn on(engine: Under, test: fn()) {
    ENGINE.with(|e| e.set(engine));
    test();
}

/// Where a test's store lives, kept while the test runs.
pub(crate) struct Opened {
    dir: tempfile::TempDir,
    postgres: Option<String>,
}

impl Opened {
    /// The store opened again, as a restarted coordinator opens it.
    pub(crate) fn reopen(&self) -> Store {
        match &self.postgres {
            Some(url) => Store::open_postgres(url, &Default::default()).unwrap(),
            None => Store::open(&self.dir.path().join("t.redb")).unwrap(),
        }
    }
}

/// A new, empty store on this thread's engine (kept alive by the returned guard) and a
/// publisher key.
pub(crate) fn setup() -> (Opened, Store, SecretKey) {
    let dir = tempfile::tempdir().unwrap();
    let postgres = match ENGINE.with(std::cell::Cell::get) {
        Under::Redb => None,
        Under::Postgres => Some(crate::testkit::PostgresServer::shared().fresh_database()),
    };
    let opened = Opened { dir, postgres };
    let store = opened.reopen();
    (opened, store, SecretKey::from_seed(&[7; 32]))
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
