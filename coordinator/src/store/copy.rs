//! A consistent copy of every row into another engine: every table read in one read
//! transaction (a snapshot; writers go on meanwhile) and written in one write transaction of
//! the copy. Online backups are built on it, and so is moving a store from one engine to
//! another.

use std::path::Path;

use super::engine::redb::Redb;
use super::engine::{Engine, Rows, Scan, WriteTxn};
use super::tables::{COUNTERS, all};
use super::{Store, StoreError};

impl Store {
    /// Copies every record into a new redb file at `to`, then opens the copy again to check
    /// it. Returns how many records were copied.
    pub fn copy_to(&self, to: &Path) -> Result<u64, StoreError> {
        let copy = Redb::open(to, &all(), &COUNTERS)?;
        let copied = self.copy_into(&copy)?;
        // The copy is closed before it is read again.
        drop(copy);
        let check = Redb::open(to, &all(), &COUNTERS)?;
        check.begin_read()?;
        Ok(copied)
    }

    /// Copies every record into `target` in one transaction; how many were copied.
    pub(crate) fn copy_into(&self, target: &dyn Engine) -> Result<u64, StoreError> {
        let snapshot = self.read()?;
        let txn = WriteTxn::begin(target)?;
        let mut copied = 0;
        for table in all() {
            let everything = Scan {
                from: None,
                backward: false,
            };
            snapshot.ops().scan(table, everything, &mut |key, value| {
                txn.raw().insert(table, key.borrowed(), value)?;
                copied += 1;
                Ok(true)
            })?;
        }
        for table in COUNTERS {
            for (name, value) in snapshot.ops().counters(table)? {
                txn.set_counter(table, &name, value)?;
                copied += 1;
            }
        }
        txn.commit()?;
        Ok(copied)
    }
}
