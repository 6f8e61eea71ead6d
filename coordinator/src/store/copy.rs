//! A consistent copy of the whole database into a new file: every table read in one read
//! transaction (a snapshot; writers go on meanwhile) and written in one write transaction of
//! the copy. Online backups are built on it.

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, Value, WriteTransaction,
};

use super::tables::*;
use super::{Store, StoreError};

impl Store {
    /// Copies the database as it stands now into a new file at `to` (the caller makes sure
    /// none is there);
    /// returns the records copied.
    pub fn copy_to(&self, to: &Path) -> Result<u64, StoreError> {
        let snapshot = self.db.begin_read()?;
        let copy = Database::create(to)?;
        let txn = copy.begin_write()?;
        let copied = copy_all(&snapshot, &txn)?;
        txn.commit()?;
        // The copy is closed before it is read again.
        drop(copy);
        let check = Database::open(to)?;
        check.begin_read()?;
        Ok(copied)
    }
}

fn copy_all(from: &ReadTransaction, to: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(copy(from, to, RELEASES)?
        + copy(from, to, ALIASES)?
        + copy(from, to, DEVICES)?
        + copy(from, to, AUDIT)?
        + copy(from, to, PUBLISHER_KEYS)?
        + copy(from, to, BLOBS)?
        + copy(from, to, CHUNK_INDEXES)?
        + copy(from, to, TENSOR_LAYOUTS)?
        + copy(from, to, ROLLOUTS)?
        + copy(from, to, FRAGMENTATION)?
        + copy(from, to, API_TOKENS)?
        + copy(from, to, ENROLL_TOKENS)?
        + copy(from, to, REVOKED_DEVICES)?
        + copy(from, to, TRUST_ROOTS)?
        + copy(from, to, TRUST_META)?
        + copy(from, to, STAGES)?
        + copy(from, to, PURGED)?
        + copy(from, to, META)?)
}

fn copy<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let source = from.open_table(table)?;
    let mut target = to.open_table(table)?;
    let mut n = 0;
    for entry in redb::ReadableTable::iter(&source)? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
        n += 1;
    }
    Ok(n)
}
