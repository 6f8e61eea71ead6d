//! The embedded engine: one redb file, reopened after an I/O failure. redb refuses every
//! write after one failed I/O (a full disk, say) until the database is closed and opened
//! again, which repairs it. So each transaction starts here: one refused as
//! [`redb::StorageError::PreviousIo`] closes and reopens the file, then goes ahead. The last
//! commit's failure is kept for `/healthz` until a commit succeeds.
//!
//! Each of the store's tables is a redb table of byte values under its key shape's native
//! redb key type (`&str`, `(&str, &str)`, `u64`, `(&str, u64)`), so files written before the
//! engine boundary existed open unchanged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    CommitError, Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase,
    ReadableTable, StorageError, TableDefinition, TransactionError, WriteTransaction,
};

use super::{
    Counters, Engine, OwnedParts, Parts, ReadOps, Scan, ShapeKind, TableId, Visit, WriteOps,
};
use crate::store::StoreError;

/// The database file, open.
pub(crate) struct Redb {
    path: PathBuf,
    /// `None` between a close and the reopen that failed to follow it.
    current: RwLock<Option<Arc<Database>>>,
    /// Why the last commit failed, until one succeeds.
    write_failure: Mutex<Option<String>>,
}

impl Redb {
    /// Opens (or creates) the file and makes sure every table in `tables` and `counters`
    /// exists, so read transactions never meet a missing one.
    pub(crate) fn open(
        path: &Path,
        tables: &[TableId],
        counters: &[Counters],
    ) -> Result<Self, StoreError> {
        let engine = Self {
            path: path.to_owned(),
            current: RwLock::new(Some(Arc::new(Database::create(path)?))),
            write_failure: Mutex::new(None),
        };
        let txn = engine.begin_write_txn()?;
        for table in tables {
            match table.kind {
                ShapeKind::Text => drop(txn.open_table(bytes::<&str>(table.name))?),
                ShapeKind::TextPair => drop(txn.open_table(bytes::<(&str, &str)>(table.name))?),
                ShapeKind::Number => drop(txn.open_table(bytes::<u64>(table.name))?),
                ShapeKind::TextNumber => drop(txn.open_table(bytes::<(&str, u64)>(table.name))?),
            }
        }
        for table in counters {
            drop(txn.open_table(numbers(table.name))?);
        }
        engine.commit(txn)?;
        Ok(engine)
    }

    /// Starts a write transaction, reopening the database first when a failed I/O left it
    /// refusing writes.
    fn begin_write_txn(&self) -> Result<WriteTransaction, TransactionError> {
        self.with_db(|db| db.begin_write())
    }

    /// Commits `txn`, keeping its failure (or clearing an earlier one) for
    /// [`Engine::write_failure`].
    fn commit(&self, txn: WriteTransaction) -> Result<(), CommitError> {
        let result = txn.commit();
        let mut failure = self.write_failure.lock().unwrap_or_else(|p| p.into_inner());
        *failure = result.as_ref().err().map(ToString::to_string);
        result
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

impl Engine for Redb {
    fn begin_read(&self) -> Result<Box<dyn ReadOps + '_>, StoreError> {
        Ok(Box::new(ReadTx(self.with_db(|db| db.begin_read())?)))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteOps + '_>, StoreError> {
        Ok(Box::new(WriteTx {
            engine: self,
            txn: self.begin_write_txn()?,
        }))
    }

    fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn describe(&self) -> String {
        format!("redb file {}", self.path.display())
    }

    fn shared(&self) -> bool {
        // redb locks its file: one process at a time.
        false
    }
}

/// A table of byte values with redb key type `K`.
fn bytes<K: redb::Key + 'static>(name: &str) -> TableDefinition<'_, K, &'static [u8]> {
    TableDefinition::new(name)
}

/// A table of counters.
fn numbers(name: &str) -> TableDefinition<'_, &'static str, u64> {
    TableDefinition::new(name)
}

/// The value under `key`, copied out.
fn get_in<K: redb::Key + 'static>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: K::SelfType<'_>,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

/// Walks `table` as `scan` says (its key already in `K`), each key turned into parts by
/// `key_of`.
fn scan_in<'k, K: redb::Key + 'static>(
    table: &impl ReadableTable<K, &'static [u8]>,
    from: Option<K::SelfType<'k>>,
    backward: bool,
    key_of: impl Fn(K::SelfType<'_>) -> OwnedParts,
    visit: &mut Visit<'_>,
) -> Result<(), StoreError> {
    let range = match (from, backward) {
        (Some(k), false) => table.range(k..)?,
        (Some(k), true) => table.range(..=k)?,
        (None, _) => table.iter()?,
    };
    let mut step = |item: Result<_, StorageError>| -> Result<bool, StoreError> {
        let (k, v): (redb::AccessGuard<'_, K>, redb::AccessGuard<'_, &[u8]>) = item?;
        visit(key_of(k.value()), v.value())
    };
    if backward {
        for item in range.rev() {
            if !step(item)? {
                break;
            }
        }
    } else {
        for item in range {
            if !step(item)? {
                break;
            }
        }
    }
    Ok(())
}

/// The reading operations, for a transaction type that has `open_table`: both redb's read and
/// write transactions, whose table types differ but read alike.
macro_rules! reads {
    ($ty:ty, |$this:ident| $txn:expr) => {
        impl ReadOps for $ty {
            fn get(&self, table: TableId, key: Parts<'_>) -> Result<Option<Vec<u8>>, StoreError> {
                let $this = self;
                let txn = $txn;
                match key {
                    Parts::Text(k) => get_in(&txn.open_table(bytes::<&str>(table.name))?, k),
                    Parts::TextPair(a, b) => {
                        get_in(&txn.open_table(bytes::<(&str, &str)>(table.name))?, (a, b))
                    }
                    Parts::Number(n) => get_in(&txn.open_table(bytes::<u64>(table.name))?, n),
                    Parts::TextNumber(a, n) => {
                        get_in(&txn.open_table(bytes::<(&str, u64)>(table.name))?, (a, n))
                    }
                }
            }

            fn scan(
                &self,
                table: TableId,
                scan: Scan<'_>,
                visit: &mut Visit<'_>,
            ) -> Result<(), StoreError> {
                let $this = self;
                let txn = $txn;
                let back = scan.backward;
                let name = table.name;
                match (table.kind, scan.from) {
                    (ShapeKind::Text, from) => {
                        let from = match from {
                            Some(Parts::Text(k)) => Some(k),
                            None => None,
                            Some(other) => return Err(mismatch(table, other)),
                        };
                        let key_of = |k: &str| OwnedParts::Text(k.to_owned());
                        scan_in(
                            &txn.open_table(bytes::<&str>(name))?,
                            from,
                            back,
                            key_of,
                            visit,
                        )
                    }
                    (ShapeKind::TextPair, from) => {
                        let from = match from {
                            Some(Parts::TextPair(a, b)) => Some((a, b)),
                            None => None,
                            Some(other) => return Err(mismatch(table, other)),
                        };
                        let key_of =
                            |(a, b): (&str, &str)| OwnedParts::TextPair(a.to_owned(), b.to_owned());
                        let rows = txn.open_table(bytes::<(&str, &str)>(name))?;
                        scan_in(&rows, from, back, key_of, visit)
                    }
                    (ShapeKind::Number, from) => {
                        let from = match from {
                            Some(Parts::Number(n)) => Some(n),
                            None => None,
                            Some(other) => return Err(mismatch(table, other)),
                        };
                        let rows = txn.open_table(bytes::<u64>(name))?;
                        scan_in(&rows, from, back, OwnedParts::Number, visit)
                    }
                    (ShapeKind::TextNumber, from) => {
                        let from = match from {
                            Some(Parts::TextNumber(a, n)) => Some((a, n)),
                            None => None,
                            Some(other) => return Err(mismatch(table, other)),
                        };
                        let key_of = |(a, n): (&str, u64)| OwnedParts::TextNumber(a.to_owned(), n);
                        let rows = txn.open_table(bytes::<(&str, u64)>(name))?;
                        scan_in(&rows, from, back, key_of, visit)
                    }
                }
            }

            fn counter(&self, table: Counters, name: &str) -> Result<Option<u64>, StoreError> {
                let $this = self;
                let txn = $txn;
                Ok(txn
                    .open_table(numbers(table.name))?
                    .get(name)?
                    .map(|v| v.value()))
            }

            fn counters(&self, table: Counters) -> Result<Vec<(String, u64)>, StoreError> {
                let $this = self;
                let txn = $txn;
                let mut out = Vec::new();
                for item in txn.open_table(numbers(table.name))?.iter()? {
                    let (k, v) = item?;
                    out.push((k.value().to_owned(), v.value()));
                }
                Ok(out)
            }
        }
    };
}

/// A redb read transaction.
struct ReadTx(ReadTransaction);

/// A redb write transaction, committed through its engine (which keeps a failure).
struct WriteTx<'e> {
    engine: &'e Redb,
    txn: WriteTransaction,
}

reads!(ReadTx, |this| &this.0);
reads!(WriteTx<'_>, |this| &this.txn);

impl WriteOps for WriteTx<'_> {
    fn insert(&self, table: TableId, key: Parts<'_>, value: &[u8]) -> Result<(), StoreError> {
        let txn = &self.txn;
        match key {
            Parts::Text(k) => drop(
                txn.open_table(bytes::<&str>(table.name))?
                    .insert(k, value)?,
            ),
            Parts::TextPair(a, b) => drop(
                txn.open_table(bytes::<(&str, &str)>(table.name))?
                    .insert((a, b), value)?,
            ),
            Parts::Number(n) => drop(txn.open_table(bytes::<u64>(table.name))?.insert(n, value)?),
            Parts::TextNumber(a, n) => drop(
                txn.open_table(bytes::<(&str, u64)>(table.name))?
                    .insert((a, n), value)?,
            ),
        }
        Ok(())
    }

    fn remove(&self, table: TableId, key: Parts<'_>) -> Result<bool, StoreError> {
        let txn = &self.txn;
        Ok(match key {
            Parts::Text(k) => txn
                .open_table(bytes::<&str>(table.name))?
                .remove(k)?
                .is_some(),
            Parts::TextPair(a, b) => txn
                .open_table(bytes::<(&str, &str)>(table.name))?
                .remove((a, b))?
                .is_some(),
            Parts::Number(n) => txn
                .open_table(bytes::<u64>(table.name))?
                .remove(n)?
                .is_some(),
            Parts::TextNumber(a, n) => txn
                .open_table(bytes::<(&str, u64)>(table.name))?
                .remove((a, n))?
                .is_some(),
        })
    }

    fn set_counter(&self, table: Counters, name: &str, value: u64) -> Result<(), StoreError> {
        self.txn
            .open_table(numbers(table.name))?
            .insert(name, value)?;
        Ok(())
    }

    fn relax_durability(&mut self) -> Result<(), StoreError> {
        self.txn
            .set_durability(Durability::None)
            .map_err(|e| StoreError::Durability(e.to_string()))
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let this = *self;
        Ok(this.engine.commit(this.txn)?)
    }

    fn reads(&self) -> &dyn ReadOps {
        self
    }
}

/// A scan started from a key of another shape than its table's: the store's own mistake.
fn mismatch(table: TableId, from: Parts<'_>) -> StoreError {
    StoreError::Corrupt {
        table: table.name,
        key: format!("{from:?}"),
        reason: format!(
            "a {:?} key was used to scan a table of {:?} keys",
            from.kind(),
            table.kind
        ),
    }
}
