//! API tokens: named, with a role, an optional model scope and an optional expiry. Only a
//! keyed BLAKE3 hash of each token's secret is stored; the token itself is shown once, when
//! created. Creating and revoking are audited.

use std::collections::BTreeSet;

use ferry_shared::{Digest, ModelName};
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::Rows;
use super::tables::API_TOKENS;
use super::{Store, StoreError};
use crate::rules::access::{Caller, TokenRole};

/// What is stored of a token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Name for people and audit trails.
    pub name: String,
    /// What the token may do.
    pub role: TokenRole,
    /// Models it may act on (`None`: all).
    pub models: Option<BTreeSet<ModelName>>,
    /// Keyed hash of the secret.
    pub hash: Digest,
    /// When created (Unix seconds).
    pub created_at: u64,
    /// By whom.
    pub created_by: String,
    /// When it stops working, if ever.
    pub expires_at: Option<u64>,
    /// When revoked, if it was.
    pub revoked_at: Option<u64>,
    /// The person it belongs to: approvals count people, so two tokens of one owner approve
    /// once. Tokens written before owners were kept (format 1) are each their own owner, named
    /// as the token is.
    pub owner: String,
}

/// A token as format 1 stored it, before owners.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct TokenRecordV1 {
    name: String,
    role: TokenRole,
    models: Option<BTreeSet<ModelName>>,
    hash: Digest,
    created_at: u64,
    created_by: String,
    expires_at: Option<u64>,
    revoked_at: Option<u64>,
}

impl super::codec::Record for TokenRecord {
    const FORMAT: u8 = 2;

    fn from_older(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (format == 1).then(|| {
            postcard::from_bytes::<TokenRecordV1>(body).map(|v1| TokenRecord {
                owner: v1.name.clone(),
                name: v1.name,
                role: v1.role,
                models: v1.models,
                hash: v1.hash,
                created_at: v1.created_at,
                created_by: v1.created_by,
                expires_at: v1.expires_at,
                revoked_at: v1.revoked_at,
            })
        })
    }
}

/// The prefix of every API token: `fy_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "fy_";

/// The stored hash of a token secret.
pub fn secret_hash(secret: &str) -> Digest {
    Digest::keyed_context("ferry/api-token/v1", secret.as_bytes())
}

/// Splits `fy_<id>_<secret>`.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

impl Store {
    /// Stores a new token (`id`, hash of its secret in `record`), audited.
    pub fn create_token(&self, id: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.insert(API_TOKENS, id, record)?;
        append(
            &txn,
            Change {
                at: record.created_at,
                actor: &record.created_by,
                action: "token.create",
                subject: id.to_owned(),
                detail: format!(
                    "{} ({}{}){}",
                    record.name,
                    record.role,
                    record.models.as_ref().map_or_else(String::new, |m| format!(
                        ", models {}",
                        m.iter()
                            .map(ModelName::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    )),
                    record
                        .expires_at
                        .map_or_else(String::new, |t| format!(", expires at {t}"))
                ),
            },
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Every token, by id.
    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        self.read()?.records(API_TOKENS, None)
    }

    /// Marks a token revoked; `false` when there is no such token.
    pub fn revoke_token(&self, id: &str, actor: &str, now: u64) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let found = match txn.get::<_, TokenRecord>(API_TOKENS, id)? {
            Some(mut record) => {
                record.revoked_at.get_or_insert(now);
                txn.insert(API_TOKENS, id, &record)?;
                true
            }
            None => false,
        };
        if found {
            append(
                &txn,
                Change {
                    at: now,
                    actor,
                    action: "token.revoke",
                    subject: id.to_owned(),
                    detail: String::new(),
                },
            )?;
            txn.commit()?;
        }
        Ok(found)
    }

    /// The caller a presented `fy_…` token authenticates as at `now`, if any.
    pub fn authenticate(&self, token: &str, now: u64) -> Result<Option<Caller>, StoreError> {
        let Some((id, secret)) = split_token(token) else {
            return Ok(None);
        };
        let Some(record) = self.read()?.get::<_, TokenRecord>(API_TOKENS, id)? else {
            return Ok(None);
        };
        // Hashes are compared, never secrets: timing says nothing usable about the secret.
        let valid = record.hash == secret_hash(secret)
            && record.revoked_at.is_none()
            && record.expires_at.is_none_or(|t| now < t);
        Ok(valid.then_some(Caller {
            name: record.name,
            owner: record.owner,
            role: record.role,
            models: record.models,
        }))
    }
}

impl Store {
    /// Audits a refused action: who tried what, where.
    pub fn record_denial(
        &self,
        caller: &str,
        path: &str,
        why: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.record(Change {
            at: now,
            actor: caller,
            action: "access.denied",
            subject: path.to_owned(),
            detail: why.to_owned(),
        })
    }

    /// Audits something that changed nothing stored (a refusal, an alert).
    pub(crate) fn record(&self, change: Change<'_>) -> Result<(), StoreError> {
        let txn = self.write()?;
        append(&txn, change)?;
        txn.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{decode, encode};

    #[test]
    fn a_token_stored_before_owners_reads_as_its_own_owner() {
        let old = TokenRecordV1 {
            name: "alice".into(),
            role: TokenRole::Approver,
            models: None,
            hash: secret_hash("s"),
            created_at: 5,
            created_by: "admin".into(),
            expires_at: Some(9),
            revoked_at: None,
        };
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&old).unwrap());
        let read: TokenRecord = decode("api_tokens", &"t", &bytes).unwrap();
        assert_eq!(
            (read.name.as_str(), read.owner.as_str()),
            ("alice", "alice")
        );
        assert_eq!((read.created_at, read.expires_at), (5, Some(9)));
        // Written again, it is format 2 and keeps its owner.
        let again: TokenRecord = decode("api_tokens", &"t", &encode(&read)).unwrap();
        assert_eq!(again, read);
        assert_eq!(encode(&read)[0], 2);
    }
}
