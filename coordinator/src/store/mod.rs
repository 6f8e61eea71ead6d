//! Coordinator persistence: every record in one engine's tables ([`engine`]: a redb file by
//! default), and a content-addressed directory of chunks shared by every artifact
//! ([`chunks`], filled by [`blobs`]).
//!
//! Every state change is one write transaction that also appends its audit entry, so a
//! change and its record of who made it commit together or not at all. The logic here is
//! written once against the engine boundary; engines only keep ordered rows.

mod aliases;
pub(crate) mod audit;
pub mod backup;
pub mod blobs;
pub mod chunks;
mod codec;
mod copy;
pub mod deltas;
pub mod device_transfers;
mod devices;
pub(crate) mod engine;
pub mod enrollment;
pub mod experiments;
pub mod fences;
mod fragmentation;
pub mod gate_samples;
mod keys;
pub mod leases;
pub mod live;
pub mod migrate;
pub mod pins;
pub mod records;
mod releases;
pub mod retention;
pub mod rollouts;
pub mod signed_snapshots;
pub mod stages;
mod tables;
pub mod tokens;
mod trust;

use std::path::Path;

pub use audit::ChainWalk;
pub use copy::Moved;
pub use engine::postgres::PostgresAccess;
pub use releases::{LATEST, PublishOutcome};

/// Failures of the coordinator's store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    /// A stored record does not decode.
    #[error("stored record {table}/{key} is corrupt: {reason}")]
    Corrupt {
        /// The redb table the record was read from.
        table: &'static str,
        /// The record's key, as text.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// `(name, version)` already exists with other content.
    #[error(
        "{name} {version} is already published with different content ({difference}); versions are immutable: publish a new version instead"
    )]
    Immutable {
        /// The model's name.
        name: String,
        /// The version.
        version: String,
        /// What differs.
        difference: String,
    },
    /// A release names an artifact that was never uploaded.
    #[error("artifact {hash} ({file}) has not been uploaded")]
    MissingBlob {
        /// Expected hash.
        hash: String,
        /// File name in the manifest.
        file: String,
    },
    /// An uploaded artifact's size differs from the manifest.
    #[error("artifact {hash} is {stored} bytes but the manifest says {declared}")]
    BlobSize {
        /// The artifact's BLAKE3 hash, hex.
        hash: String,
        /// Stored size.
        stored: u64,
        /// Declared size.
        declared: u64,
    },
    /// An uploaded artifact's chunk index differs from the one the manifest signs.
    #[error(
        "artifact {hash} was cut into chunk index {stored} but the manifest signs {declared}: publish with a ferryctl that uses the coordinator's chunk bounds"
    )]
    ChunkIndex {
        /// The artifact's BLAKE3 hash, hex.
        hash: String,
        /// Digest of the index the coordinator computed.
        stored: String,
        /// Digest the manifest names.
        declared: String,
    },
    /// No such release.
    #[error("{name} {version} is not published")]
    NoSuchRelease {
        /// The model's name.
        name: String,
        /// The version.
        version: String,
    },
    /// A rollout that would clash with an existing one.
    #[error("{0}")]
    RolloutConflict(String),
    /// A stage change the release's stage does not allow (any more).
    #[error("{0}")]
    StageConflict(String),
    /// No rollout of that id.
    #[error("no rollout named {0}")]
    NoSuchRollout(String),
    /// No experiment of that id.
    #[error("no experiment named {0}")]
    NoSuchExperiment(String),
    /// A transaction's durability could not be set.
    #[error("cannot set transaction durability: {0}")]
    Durability(String),
    /// The database was written by a newer build.
    #[error(
        "the database is in store format {found}, written by a newer Ferry; this build reads formats up to {supported}: run the newer build, or restore a backup this build wrote"
    )]
    TooNew {
        /// The format found.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// PostgreSQL refused or failed a statement (or could not be reached).
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    /// The engine could not serve the store (a connection gone, a schema that does not
    /// match this build).
    #[error("database engine: {0}")]
    Engine(String),
    /// The report writer failed or stopped.
    #[error("{0}")]
    Writer(String),
}

/// An error and what caused it, as one line: the client's own message often only names the
/// step that failed ("error performing TLS handshake"), its cause says why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The coordinator's record store.
pub struct Store {
    engine: Box<dyn engine::Engine>,
    /// Audit entries this process appended, for the follower of other nodes' changes.
    own: engine::OwnAppends,
}

impl Store {
    /// Opens (or creates) the database file and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let engine = engine::redb::Redb::open(path, &tables::all(), &tables::COUNTERS)?;
        Self::on(Box::new(engine))
    }

    /// Opens the store on a PostgreSQL database at `url` (shared by every coordinator of a
    /// fleet) as `access` says, bringing its schema to this build's version.
    pub fn open_postgres(url: &str, access: &PostgresAccess) -> Result<Self, StoreError> {
        let engine = engine::postgres::Postgres::open(url, access, &tables::all())?;
        Self::on(Box::new(engine))
    }

    /// The store on `engine`, migrated to this build's format.
    pub(crate) fn on(engine: Box<dyn engine::Engine>) -> Result<Self, StoreError> {
        let store = Self {
            engine,
            own: engine::OwnAppends::default(),
        };
        let txn = store.write()?;
        let found = migrate::migrate(&txn)?;
        txn.commit()?;
        if found != migrate::STORE_FORMAT {
            tracing::info!(
                "migrated {} from store format {found} to {}",
                store.engine.describe(),
                migrate::STORE_FORMAT
            );
        }
        Ok(store)
    }

    /// The engine and where its data lives, for logs.
    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// Why the database last failed to commit, while no commit has succeeded since.
    pub fn write_failure(&self) -> Option<String> {
        self.engine.write_failure()
    }

    /// Begins a read transaction.
    fn read(&self) -> Result<engine::ReadTxn<'_>, StoreError> {
        engine::ReadTxn::begin(&*self.engine)
    }

    /// Begins the write transaction.
    fn write(&self) -> Result<engine::WriteTxn<'_>, StoreError> {
        engine::WriteTxn::begin(&*self.engine, Some(&self.own))
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
