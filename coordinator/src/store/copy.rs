//! A consistent copy of every row into another engine: every table read in one read
//! transaction (a snapshot; writers go on meanwhile) and written in one write transaction of
//! the copy. Online backups are built on it, and so is moving a store from one engine to
//! another.

use std::path::Path;

use super::engine::redb::Redb;
use super::engine::{Engine, Rows, Scan, WriteTxn};
use super::tables::{COUNTERS, all};
use super::{Store, StoreError};
use crate::api::Anchor;

/// What moving a store's records into another engine did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Records copied (counters included).
    pub records: u64,
    /// The audit trail's head, the same in both: the copy is checked against it.
    pub head: Option<Anchor>,
}

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

    /// Moves every record into `target`, a store on another engine that holds nothing yet
    /// (`ferry-coordinator migrate`): the audit chain is walked here first (a broken one is
    /// not moved), everything is copied in one transaction, and the copy's chain is walked
    /// against this one's head. This store is left as it was.
    pub fn move_into(&self, target: &Store) -> Result<Moved, StoreError> {
        if let Some(table) = target.first_filled()? {
            return Err(StoreError::Engine(format!(
                "{} already holds records ({table}): a move goes into an empty database only",
                target.describe()
            )));
        }
        let source = self.verify_audit(None)?;
        if let Some(broken) = source.broken {
            return Err(StoreError::Engine(format!(
                "the audit trail here is broken at entry {} ({}): not moved",
                broken.seq, broken.reason
            )));
        }
        let records = self.copy_into(&*target.engine)?;
        let copied = target.verify_audit(source.head)?;
        if copied.broken.is_some() || copied.head != source.head {
            return Err(StoreError::Engine(format!(
                "the moved audit trail does not match: {copied} where {source} was expected"
            )));
        }
        Ok(Moved {
            records,
            head: source.head,
        })
    }

    /// The first table that holds a row (counters aside); `None` when the store is empty.
    pub(crate) fn first_filled(&self) -> Result<Option<&'static str>, StoreError> {
        let txn = self.read()?;
        for table in all() {
            let first = Scan {
                from: None,
                backward: false,
            };
            let mut filled = false;
            txn.ops().scan(table, first, &mut |_, _| {
                filled = true;
                Ok(false)
            })?;
            if filled {
                return Ok(Some(table.name));
            }
        }
        Ok(None)
    }

    /// Copies every record into `target` in one transaction; how many were copied.
    pub(crate) fn copy_into(&self, target: &dyn Engine) -> Result<u64, StoreError> {
        let snapshot = self.read()?;
        let txn = WriteTxn::begin(target, None)?;
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
