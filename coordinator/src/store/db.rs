//! The redb database behind the store, reopened after an I/O failure. redb refuses every
//! write after one failed I/O (a full disk, say) until the database is closed and opened
//! again, which repairs it. So each transaction starts here: one refused as
//! [`redb::StorageError::PreviousIo`] closes and reopens the file, then goes ahead. The last
//! commit's failure is kept for `/healthz` until a commit succeeds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    CommitError, Database, DatabaseError, ReadTransaction, ReadableDatabase, StorageError,
    TransactionError, WriteTransaction,
};

/// The database file, open.
pub(crate) struct Db {
    path: PathBuf,
    /// `None` between a close and the reopen that failed to follow it.
    current: RwLock<Option<Arc<Database>>>,
    /// Why the last commit failed, until one succeeds.
    write_failure: Mutex<Option<String>>,
}

impl Db {
    /// Opens (or creates) the file.
    pub(crate) fn open(path: &Path) -> Result<Self, DatabaseError> {
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Some(Arc::new(Database::create(path)?))),
            write_failure: Mutex::new(None),
        })
    }

    /// Starts a write transaction, reopening the database first when a failed I/O left it
    /// refusing writes.
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, TransactionError> {
        self.with_db(|db| db.begin_write())
    }

    /// Starts a read transaction.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        self.with_db(|db| db.begin_read())
    }

    /// Commits `txn`, keeping its failure (or clearing an earlier one) for [`Db::write_failure`].
    pub(crate) fn commit(&self, txn: WriteTransaction) -> Result<(), CommitError> {
        let result = txn.commit();
        let mut failure = self.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        *failure = result.as_ref().err().map(ToString::to_string);
        result
    }

    /// Why the last commit failed, while no commit has succeeded since.
    pub(crate) fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn with_db<T>(
        &self,
        begin: impl Fn(&Database) -> Result<T, TransactionError>,
    ) -> Result<T, TransactionError> {
        let db = self.handle()?;
        match begin(&db) {
            Err(TransactionError::Storage(StorageError::PreviousIo)) => {
                tracing::warn!(
                    "{}: an earlier I/O failure stopped the database; reopening it",
                    self.path.display()
                );
                self.reopen(db)?;
                begin(&*self.handle()?)
            }
            other => other,
        }
    }

    /// The open database, reopened first if a reopen failed before.
    fn handle(&self) -> Result<Arc<Database>, TransactionError> {
        if let Some(db) = self.read_current().as_ref() {
            return Ok(db.clone());
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            *current = Some(Arc::new(Database::create(&self.path).map_err(storage)?));
            tracing::info!("{}: database reopened", self.path.display());
        }
        current
            .clone()
            .ok_or_else(|| TransactionError::Storage(StorageError::PreviousIo))
    }

    /// Closes `failed` (when it is still the current one) and opens the file again.
    fn reopen(&self, failed: Arc<Database>) -> Result<(), TransactionError> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !current.as_ref().is_some_and(|db| Arc::ptr_eq(db, &failed)) {
            return Ok(()); // another thread has reopened it already
        }
        *current = None;
        // Handles are only held while a transaction starts, and this thread holds the lock
        // that hands them out: `failed` is the last but for one being let go right now.
        drop(failed);
        let db = Database::create(&self.path).map_err(storage)?;
        *current = Some(Arc::new(db));
        tracing::info!("{}: database reopened", self.path.display());
        Ok(())
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<Database>>> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A failure to open, as a transaction's failure to start.
fn storage(e: DatabaseError) -> TransactionError {
    match e {
        DatabaseError::Storage(s) => TransactionError::Storage(s),
        other => {
            TransactionError::Storage(StorageError::Io(std::io::Error::other(other.to_string())))
        }
    }
}
