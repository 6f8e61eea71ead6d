//! Releases: publish once, read many. `(name, version)` is immutable.

use ferry_shared::sign::{Envelope, SignedRelease};
use ferry_shared::{AliasName, ModelName, Release, Version};

use super::aliases::set_alias_in;
use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::records::{AliasRecord, BlobRecord, StoredRelease};
use super::tables::{ALIASES, BLOBS, RELEASES};
use super::{Store, StoreError};

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored as new; `latest_moved` when the `latest` alias now points at it.
    Published {
        /// Whether `latest` moved.
        latest_moved: bool,
    },
    /// The same content was already published under this or a newer revision; nothing
    /// changed.
    AlreadyPublished,
    /// The same content signed again under a newer revision (a new expiry, or a new
    /// publisher key): the stored envelope is now this one.
    Resigned {
        /// The revision it replaced.
        from: u32,
    },
}

/// The alias the registry keeps on the newest stable release.
pub const LATEST: &str = "latest";

/// Decodes the manifest inside a stored envelope (verified when it was published).
pub(crate) fn release_of(stored: &StoredRelease) -> Result<Release, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "releases",
        key: "envelope".into(),
        reason,
    };
    let envelope = Envelope::from_bytes(&stored.envelope).map_err(|e| corrupt(e.to_string()))?;
    Release::from_canonical_bytes(&envelope.payload).map_err(|e| corrupt(e.to_string()))
}

impl Store {
    /// Stores a verified release. The identical content again is a no-op success, unless it
    /// carries a newer manifest revision: then it replaces the stored envelope (a re-signing,
    /// audited). Other content under an existing `(name, version)` is refused. Every
    /// variant's bytes must already be in the blob store. Moves `latest` when this is the
    /// newest stable version.
    pub fn publish(
        &self,
        signed: &SignedRelease,
        actor: &str,
        now: u64,
    ) -> Result<PublishOutcome, StoreError> {
        self.publish_because(signed, actor, None, now)
    }

    /// [`Store::publish`], with the publisher's reason in the audit trail.
    pub fn publish_because(
        &self,
        signed: &SignedRelease,
        actor: &str,
        why: Option<&str>,
        now: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let because = why.map(|w| format!(": {w}")).unwrap_or_default();
        let release = &signed.release;
        let name = release.name.as_str();
        let version = release.version.to_string();
        let txn = self.write()?;
        {
            let existing = txn.get::<_, StoredRelease>(RELEASES, (name, version.as_str()))?;
            if let Some(stored) = existing {
                let existing = release_of(&stored)?;
                if let Some(difference) = existing.content_difference(release) {
                    return Err(StoreError::Immutable {
                        name: name.into(),
                        version,
                        difference,
                    });
                }
                if release.revision <= existing.revision {
                    return Ok(PublishOutcome::AlreadyPublished);
                }
                let resigned = StoredRelease {
                    envelope: signed.envelope_bytes.clone(),
                    signer: signed.signer,
                    ..stored
                };
                txn.insert(RELEASES, (name, version.as_str()), &resigned)?;
                append(
                    &txn,
                    Change {
                        at: now,
                        actor,
                        action: "resign",
                        subject: format!("{name} {version}"),
                        detail: format!(
                            "revision {} -> {}, signed by {}, expires {}{because}",
                            existing.revision, release.revision, signed.signer, release.expires
                        ),
                    },
                )?;
                txn.commit()?;
                return Ok(PublishOutcome::Resigned {
                    from: existing.revision,
                });
            }
            for variant in &release.variants {
                let hash = variant.hash.to_hex();
                let record: BlobRecord = match txn.get(BLOBS, hash.as_str())? {
                    Some(record) => record,
                    None => {
                        return Err(StoreError::MissingBlob {
                            hash,
                            file: variant.file_name.to_string(),
                        });
                    }
                };
                if record.size != variant.size {
                    return Err(StoreError::BlobSize {
                        hash,
                        stored: record.size,
                        declared: variant.size,
                    });
                }
                if record.chunks != variant.chunks {
                    return Err(StoreError::ChunkIndex {
                        hash,
                        stored: record.chunks.to_hex(),
                        declared: variant.chunks.to_hex(),
                    });
                }
            }
            let stored = StoredRelease {
                envelope: signed.envelope_bytes.clone(),
                published_at: now,
                published_by: actor.to_owned(),
                signer: signed.signer,
            };
            txn.insert(RELEASES, (name, version.as_str()), &stored)?;
        }
        append(
            &txn,
            Change {
                at: now,
                actor,
                action: "publish",
                subject: format!("{name} {version}"),
                detail: format!(
                    "signed by {}; {} variant(s){because}",
                    signed.signer,
                    release.variants.len()
                ),
            },
        )?;
        let latest_moved = self.move_latest_if_newer(&txn, release, now)?;
        txn.commit()?;
        Ok(PublishOutcome::Published { latest_moved })
    }

    fn move_latest_if_newer(
        &self,
        txn: &WriteTxn<'_>,
        release: &Release,
        now: u64,
    ) -> Result<bool, StoreError> {
        if release.version.is_prerelease() {
            return Ok(false);
        }
        let current = txn
            .get::<_, AliasRecord>(ALIASES, (release.name.as_str(), LATEST))?
            .map(|alias| alias.version);
        if current.as_ref().is_some_and(|v| *v >= release.version) {
            return Ok(false);
        }
        let latest: AliasName =
            LATEST
                .parse()
                .map_err(|e: ferry_shared::name::NameError| StoreError::Corrupt {
                    table: "aliases",
                    key: LATEST.into(),
                    reason: e.to_string(),
                })?;
        set_alias_in(
            txn,
            &release.name,
            &latest,
            AliasRecord {
                version: release.version.clone(),
                set_at: now,
                set_by: "registry".into(),
                reason: Some("newest stable release".into()),
            },
        )?;
        Ok(true)
    }

    /// One release with its publication record.
    pub fn release(
        &self,
        name: &ModelName,
        version: &Version,
    ) -> Result<Option<(Release, StoredRelease)>, StoreError> {
        let version = version.to_string();
        let key = (name.as_str(), version.as_str());
        let Some(stored) = self.read()?.get::<_, StoredRelease>(RELEASES, key)? else {
            return Ok(None);
        };
        Ok(Some((release_of(&stored)?, stored)))
    }

    /// All releases (of one model, when given), by name then version.
    pub fn releases(
        &self,
        name: Option<&ModelName>,
    ) -> Result<Vec<(Release, StoredRelease)>, StoreError> {
        let txn = self.read()?;
        let rows: Vec<(_, StoredRelease)> = match name {
            Some(n) => txn.records_within(RELEASES, n.as_str(), (n.as_str(), ""))?,
            None => txn.records(RELEASES, None)?,
        };
        let mut out = rows
            .into_iter()
            .map(|(_, stored)| Ok((release_of(&stored)?, stored)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|(a, _), (b, _)| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(out)
    }
}
