//! Publisher keys the coordinator trusts to sign releases.

use ferry_shared::sign::{Keyring, PublicKey};

use super::audit::{Change, append};
use super::engine::Rows;
use super::records::PublisherKey;
use super::tables::PUBLISHER_KEYS;
use super::{Store, StoreError};

impl Store {
    /// Trusts `key` for publishing; idempotent.
    pub fn trust_publisher(
        &self,
        key: PublicKey,
        name: &str,
        actor: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let id = key.key_id().0.to_hex();
        let txn = self.write()?;
        if txn.contains(PUBLISHER_KEYS, id.as_str())? {
            return Ok(false);
        }
        let record = PublisherKey {
            key,
            name: name.to_owned(),
            added_at: now,
            added_by: actor.to_owned(),
        };
        txn.insert(PUBLISHER_KEYS, id.as_str(), &record)?;
        append(
            &txn,
            Change {
                at: now,
                actor,
                action: "key.trust",
                subject: key.key_id().to_string(),
                detail: format!("publisher key `{name}`: {key}"),
            },
        )?;
        txn.commit()?;
        Ok(true)
    }

    /// Every trusted publisher key.
    pub fn publisher_keys(&self) -> Result<Vec<PublisherKey>, StoreError> {
        let keys = self.read()?.records(PUBLISHER_KEYS, None)?;
        Ok(keys
            .into_iter()
            .map(|(_, key): (_, PublisherKey)| key)
            .collect())
    }

    /// The trusted publisher keys as a keyring.
    pub fn publisher_keyring(&self) -> Result<Keyring, StoreError> {
        Ok(Keyring::new(
            self.publisher_keys()?.into_iter().map(|k| k.key),
        ))
    }
}
