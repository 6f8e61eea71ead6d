//! The append-only, hash-chained audit trail.
//!
//! Each entry records the hash of the previous entry's stored bytes, so editing or deleting any
//! entry breaks every link after it. Entries are appended inside the same write transaction as
//! the change they describe.

use ferry_shared::Digest;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::codec::{decode, encode};
use super::records::AuditEntry;
use super::tables::AUDIT;
use super::{Store, StoreError};

/// What an audit entry says, before it is placed in the chain.
pub(crate) struct Change<'a> {
    pub(crate) at: u64,
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) subject: String,
    pub(crate) detail: String,
}

/// Appends an entry within `txn`.
pub(crate) fn append(txn: &WriteTransaction, change: Change<'_>) -> Result<(), StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let (seq, prev_hash) = match table.last()? {
        Some((k, v)) => (k.value() + 1, Digest::of(v.value())),
        None => (1, Digest([0; 32])),
    };
    let entry = AuditEntry {
        seq,
        at: change.at,
        actor: change.actor.to_owned(),
        action: change.action.to_owned(),
        subject: change.subject,
        detail: change.detail,
        prev_hash,
    };
    table.insert(seq, encode(&entry).as_slice())?;
    Ok(())
}

impl Store {
    /// Audit entries after `after_seq`, oldest first, at most `limit`.
    pub fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for item in table.range(after_seq.saturating_add(1)..)?.take(limit) {
            let (k, v) = item?;
            out.push(decode("audit", &k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Walks the whole chain; `Ok(None)` when intact, else the first broken sequence number.
    pub fn verify_audit(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut links = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let entry: AuditEntry = decode("audit", &k.value(), v.value())?;
            links.push((entry, Digest::of(v.value())));
        }
        Ok(verify_chain(&links))
    }
}

/// Checks `(entry, hash of its stored bytes)` pairs in order; returns the first bad sequence.
pub fn verify_chain(links: &[(AuditEntry, Digest)]) -> Option<u64> {
    let mut expected_prev = Digest([0; 32]);
    for (expected_seq, (entry, hash)) in (1..).zip(links) {
        if entry.seq != expected_seq || entry.prev_hash != expected_prev {
            return Some(entry.seq);
        }
        expected_prev = *hash;
    }
    None
}
