//! Enrollment tokens (single-use or counted, with an expiry; only a hash of each is stored)
//! and revoked devices. A device enrolls in one transaction that checks and spends its
//! token, stores the device and audits both.

use ferry_shared::Digest;
use ferry_shared::wire::DeviceId;
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::Rows;
use super::records::DeviceRecord;
use super::tables::{DEVICES, ENROLL_TOKENS, REVOKED_DEVICES};
use super::{Store, StoreError};

/// What is stored of an enrollment token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollToken {
    /// Name for people.
    pub name: String,
    /// Keyed hash of the secret.
    pub hash: Digest,
    /// Enrollments it still allows (`None`: any number until it expires).
    pub uses_left: Option<u32>,
    /// Devices enrolled with it so far.
    pub used: u32,
    /// When it stops working.
    pub expires_at: Option<u64>,
    /// When created (Unix seconds).
    pub created_at: u64,
    /// By whom.
    pub created_by: String,
    /// When revoked, if it was.
    pub revoked_at: Option<u64>,
}

/// A revoked device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedDevice {
    /// When it was revoked (Unix seconds).
    pub at: u64,
    /// By whom.
    pub by: String,
    /// Why, as the operator gave it.
    pub reason: String,
}

/// The prefix of enrollment tokens: `fe_<id>_<secret>`.
pub const ENROLL_PREFIX: &str = "fe_";

/// The stored hash of an enrollment token's secret.
pub fn enroll_hash(secret: &str) -> Digest {
    Digest::keyed_context("ferry/enroll-token/v1", secret.as_bytes())
}

/// How a new device is let in.
pub enum Admission<'a> {
    /// With the bootstrap token from the data directory.
    Bootstrap,
    /// With an enrollment token `fe_<id>_<secret>`.
    Token(&'a str),
}

impl Store {
    /// Stores a new enrollment token, audited.
    pub fn create_enroll_token(&self, id: &str, token: &EnrollToken) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.insert(ENROLL_TOKENS, id, token)?;
        append(
            &txn,
            Change {
                at: token.created_at,
                actor: &token.created_by,
                action: "enroll-token.create",
                subject: id.to_owned(),
                detail: format!(
                    "{}: {} use(s){}",
                    token.name,
                    token
                        .uses_left
                        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
                    token
                        .expires_at
                        .map_or_else(String::new, |t| format!(", expires at {t}"))
                ),
            },
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Every enrollment token, by id.
    pub fn enroll_tokens(&self) -> Result<Vec<(String, EnrollToken)>, StoreError> {
        let txn = self.read()?;
        txn.records(ENROLL_TOKENS, None)
    }

    /// Enrolls a device in one transaction: checks and spends the token, stores the device,
    /// audits. `Ok(Err(why))` when the token does not admit it.
    pub fn enroll(
        &self,
        id: &DeviceId,
        record: &DeviceRecord,
        admission: Admission<'_>,
        now: u64,
    ) -> Result<Result<(), String>, StoreError> {
        let txn = self.write()?;
        let how = match admission {
            Admission::Bootstrap => "the bootstrap enrollment token".to_owned(),
            Admission::Token(token) => {
                let Some((token_id, secret)) = token
                    .strip_prefix(ENROLL_PREFIX)
                    .and_then(|rest| rest.split_once('_'))
                else {
                    return Ok(Err("the enrollment token is not valid".into()));
                };
                let stored: Option<EnrollToken> = txn.get(ENROLL_TOKENS, token_id)?;
                let Some(mut stored) = stored.filter(|t| t.hash == enroll_hash(secret)) else {
                    return Ok(Err("the enrollment token is not valid".into()));
                };
                if stored.revoked_at.is_some() {
                    return Ok(Err(format!("enrollment token {token_id} was revoked")));
                }
                if stored.expires_at.is_some_and(|t| now >= t) {
                    return Ok(Err(format!("enrollment token {token_id} has expired")));
                }
                match &mut stored.uses_left {
                    Some(0) => {
                        return Ok(Err(format!("enrollment token {token_id} is used up")));
                    }
                    Some(n) => *n -= 1,
                    None => {}
                }
                stored.used += 1;
                txn.insert(ENROLL_TOKENS, token_id, &stored)?;
                format!("enrollment token {token_id} ({})", stored.name)
            }
        };
        txn.insert(DEVICES, id.as_str(), record)?;
        append(
            &txn,
            Change {
                at: now,
                actor: &format!("device:{id}"),
                action: "device.enroll",
                subject: id.to_string(),
                detail: format!("with {how}; labels: {:?}", record.labels),
            },
        )?;
        txn.commit()?;
        Ok(Ok(()))
    }

    /// Revokes a device (audited); `false` when no such device is enrolled.
    pub fn revoke_device(
        &self,
        id: &DeviceId,
        revoked: &RevokedDevice,
    ) -> Result<bool, StoreError> {
        let txn = self.write()?;
        if !txn.contains(DEVICES, id.as_str())? {
            return Ok(false);
        }
        txn.insert(REVOKED_DEVICES, id.as_str(), revoked)?;
        append(
            &txn,
            Change {
                at: revoked.at,
                actor: &revoked.by,
                action: "device.revoke",
                subject: id.to_string(),
                detail: revoked.reason.clone(),
            },
        )?;
        txn.commit()?;
        Ok(true)
    }

    /// Every revoked device, by id.
    pub fn revoked_devices(
        &self,
    ) -> Result<std::collections::BTreeMap<String, RevokedDevice>, StoreError> {
        let txn = self.read()?;
        let revoked = txn.records(REVOKED_DEVICES, None)?;
        Ok(revoked.into_iter().collect())
    }

    /// The revocation of `id`, if it was revoked.
    pub fn device_revocation(&self, id: &DeviceId) -> Result<Option<RevokedDevice>, StoreError> {
        self.read()?.get(REVOKED_DEVICES, id.as_str())
    }
}

super::codec::first_format!(EnrollToken, RevokedDevice);
