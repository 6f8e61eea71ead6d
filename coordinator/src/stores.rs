//! Opening the stores a configuration names: the records (the embedded `DATA_DIR/ferry.redb`,
//! or the shared PostgreSQL database of `[store] metadata`) and the chunks (`DATA_DIR/chunks`,
//! a shared directory, or an S3 bucket). The coordinator, `backup`, `restore` and
//! `--verify-audit` all open them here, so each sees what the others see.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ChunkPlace, Config, ConfigError};
use crate::store::chunks::local::LocalDir;
use crate::store::chunks::s3::S3;
use crate::store::chunks::{ChunkStore, ChunkStoreError};
use crate::store::{Store, StoreError};

/// The embedded database's file name in a data directory.
pub const EMBEDDED_DATABASE: &str = "ferry.redb";

/// A store that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration cannot say where a store is.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The records could not be opened.
    #[error("cannot open {what}: {source}")]
    Records {
        /// The database, for people.
        what: String,
        /// Why.
        source: StoreError,
    },
    /// The chunks could not be opened.
    #[error("cannot open the chunks: {0}")]
    Chunks(#[from] ChunkStoreError),
}

/// Whether the records are in the shared database rather than the embedded file.
pub fn records_are_shared(config: &Config) -> bool {
    config.store.metadata.is_some()
}

/// The embedded database's path in `config`'s data directory.
pub fn embedded_path(config: &Config) -> PathBuf {
    config.data_dir.join(EMBEDDED_DATABASE)
}

/// Opens the records `config` names.
pub fn open_records(config: &Config) -> Result<Store, OpenError> {
    match config.store.postgres()? {
        Some((url, access)) => {
            Store::open_postgres(&url, &access).map_err(|source| OpenError::Records {
                what: "the PostgreSQL database named by [store] metadata".into(),
                source,
            })
        }
        None => {
            let path = embedded_path(config);
            Store::open(&path).map_err(|source| OpenError::Records {
                what: format!(
                    "the database {} (is another coordinator running on it?)",
                    path.display()
                ),
                source,
            })
        }
    }
}

/// Opens the chunks `config` names (the upload spool always in the data directory).
pub fn open_chunks(config: &Config) -> Result<ChunkStore, OpenError> {
    let spool = config.data_dir.join("chunks");
    let level = config.compression_level;
    Ok(match config.store.chunk_place()? {
        ChunkPlace::Own => ChunkStore::new(spool, level)?,
        ChunkPlace::Directory(shared) => ChunkStore::on(
            spool,
            Arc::new(LocalDir::shared(shared, &config.node())?),
            level,
        )?,
        ChunkPlace::S3(location) => ChunkStore::on(spool, Arc::new(S3::new(location)?), level)?,
    })
}
