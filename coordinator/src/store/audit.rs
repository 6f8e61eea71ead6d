//! The append-only, hash-chained audit trail.
//!
//! Each entry records the hash of the previous entry's stored bytes, so editing or deleting any
//! entry breaks every link after it. Entries are appended inside the same write transaction as
//! the change they describe.

use ferry_shared::Digest;

use super::codec::decode;
use super::engine::{Rows, WriteTxn};
use super::records::AuditEntry;
use super::tables::AUDIT;
use super::{Store, StoreError};
use crate::api::{Anchor, AuditVerification, BrokenLink};

/// What an audit entry says, before it is placed in the chain.
pub(crate) struct Change<'a> {
    pub(crate) at: u64,
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) subject: String,
    pub(crate) detail: String,
}

/// The most an entry's detail keeps (a reason can be anything a caller sent); the rest is
/// cut, saying how much.
pub(crate) const MAX_DETAIL_BYTES: usize = 4096;

/// `detail` cut to [`MAX_DETAIL_BYTES`] on a character boundary.
fn capped(mut detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let total = detail.len();
    let mut end = MAX_DETAIL_BYTES - 64;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail.truncate(end);
    detail.push_str(&format!("… ({} of {total} bytes cut)", total - end));
    detail
}

/// Appends an entry within `txn`.
pub(crate) fn append(txn: &WriteTxn<'_>, change: Change<'_>) -> Result<(), StoreError> {
    let (seq, prev_hash) = match txn.last_raw(AUDIT)? {
        Some((k, v)) => (k + 1, Digest::of(&v)),
        None => (1, Digest([0; 32])),
    };
    let entry = AuditEntry {
        seq,
        at: change.at,
        actor: change.actor.to_owned(),
        action: change.action.to_owned(),
        subject: change.subject,
        detail: capped(change.detail),
        prev_hash,
    };
    txn.insert(AUDIT, seq, &entry)?;
    txn.appended(seq);
    Ok(())
}

impl Store {
    /// Audit entries after `after_seq`, oldest first, at most `limit`.
    pub fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.read()?
            .scan_raw(AUDIT, Some(after_seq.saturating_add(1)), |key, value| {
                out.push(decode("audit", &key, value)?);
                Ok(out.len() < limit)
            })?;
        Ok(out)
    }

    /// The newest audit entry's sequence number (0 for an empty trail).
    pub fn audit_head(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.last_raw(AUDIT)?.map_or(0, |(seq, _)| seq))
    }

    /// Whether this process appended audit entry `seq` (forgetting it and every earlier
    /// one): what the follower of other coordinators' changes skips.
    pub fn take_own_append(&self, seq: u64) -> bool {
        self.own.take(seq)
    }

    /// Calls `wake` whenever another coordinator's change to the audit trail commits (see
    /// [`super::engine::Engine::on_change`]).
    pub fn on_change(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        self.engine.on_change(wake)
    }

    /// Whether other coordinators may write to this store too (a shared engine).
    pub fn is_shared(&self) -> bool {
        self.engine.shared()
    }

    /// Walks the whole chain, entry by entry, and against `anchor` (a head kept from an
    /// earlier walk) when given.
    pub fn verify_audit(&self, anchor: Option<Anchor>) -> Result<AuditVerification, StoreError> {
        let mut walk = ChainWalk::new(anchor);
        self.read()?
            .scan_raw(AUDIT, None, |key, value| Ok(walk.step(key, value)))?;
        Ok(walk.finish())
    }
}

/// A walk over `(key, stored bytes)` in key order. Pure.
pub struct ChainWalk {
    anchor: Option<Anchor>,
    anchor_seen: bool,
    expected_seq: u64,
    expected_prev: Digest,
    head: Option<Anchor>,
    broken: Option<BrokenLink>,
}

impl ChainWalk {
    /// A walk from the first entry.
    pub fn new(anchor: Option<Anchor>) -> Self {
        Self {
            anchor,
            anchor_seen: false,
            expected_seq: 1,
            expected_prev: Digest([0; 32]),
            head: None,
            broken: None,
        }
    }

    /// Takes the next stored entry; false once the chain is broken (stop walking).
    pub fn step(&mut self, key: u64, bytes: &[u8]) -> bool {
        let hash = Digest::of(bytes);
        let reason = match decode::<AuditEntry>("audit", &key, bytes) {
            Err(e) => Some(format!("the entry does not decode: {e}")),
            Ok(_) if key != self.expected_seq => Some(format!(
                "entry {} is missing (the next stored is {key}): entries were removed",
                self.expected_seq
            )),
            Ok(entry) if entry.seq != key => Some(format!(
                "the entry stored as {key} says it is {}: it was moved",
                entry.seq
            )),
            Ok(entry) if entry.prev_hash != self.expected_prev => Some(match key {
                1 => "the first entry does not start the chain: it was replaced".to_owned(),
                _ => format!(
                    "it does not follow entry {}: that entry was changed or replaced",
                    key - 1
                ),
            }),
            Ok(_) => match self.anchor {
                Some(anchor) if anchor.seq == key && anchor.hash != hash => Some(format!(
                    "it differs from the anchor {anchor} kept earlier: the trail was rewritten"
                )),
                _ => None,
            },
        };
        if let Some(reason) = reason {
            self.broken = Some(BrokenLink { seq: key, reason });
            return false;
        }
        self.anchor_seen |= self.anchor.is_some_and(|a| a.seq == key);
        self.head = Some(Anchor { seq: key, hash });
        self.expected_seq = key + 1;
        self.expected_prev = hash;
        true
    }

    /// What the walk found.
    pub fn finish(mut self) -> AuditVerification {
        if let Some(anchor) = self.anchor
            && self.broken.is_none()
            && !self.anchor_seen
        {
            self.broken = Some(BrokenLink {
                seq: self.expected_seq,
                reason: format!(
                    "the trail ends before entry {}, the anchor {anchor} kept earlier: entries were removed",
                    anchor.seq
                ),
            });
        }
        AuditVerification {
            entries: self.expected_seq - 1,
            head: self.head,
            broken: self.broken,
        }
    }
}
