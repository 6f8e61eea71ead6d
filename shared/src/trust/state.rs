//! What a device trusts, and every check before it believes a document. Pure: the caller
//! passes bytes and the time its update cycle started.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::metadata::{MAX_METADATA_BYTES, Role, RoleKeys, Root, Snapshot};
use crate::digest::Digest;
use crate::name::ModelName;
use crate::sign::{Envelope, KeyId, Keyring, SignedRelease};
use crate::version::Version;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The bytes do not decode, or are too many.
    #[error("{role} is malformed: {reason}")]
    Malformed {
        /// Which role's document.
        role: Role,
        /// What was wrong, in words.
        reason: String,
    },
    /// Fewer distinct valid signatures by the role's keys than its threshold.
    #[error(
        "{role} has {valid} valid signature(s) by the keys the root names for it; {threshold} needed"
    )]
    BelowThreshold {
        /// Which role.
        role: Role,
        /// Valid signatures by the role's keys.
        valid: u32,
        /// How many valid signatures the role's threshold asks for.
        threshold: u32,
    },
    /// A version lower than (or, for root, not exactly one above) the one trusted.
    #[error(
        "{role} {} {got} refused: {} {trusted} is trusted (rollback)",
        role.counter(),
        role.counter()
    )]
    Rollback {
        /// Which role.
        role: Role,
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Expired when the update cycle started.
    #[error("{role} expired at {expires}, before this update cycle ({now}): freeze")]
    Expired {
        /// Which role.
        role: Role,
        /// When it expired.
        expires: u64,
        /// When the cycle started.
        now: u64,
    },
    /// The release is not in the snapshot, or its hash or length differ.
    #[error("{name} {version} does not match the snapshot ({reason}): mix-and-match")]
    MixAndMatch {
        /// The release's model.
        name: ModelName,
        /// The release's version.
        version: Version,
        /// What differs.
        reason: String,
    },
    /// More bytes than the snapshot declares.
    #[error("{name} {version}: {got} bytes where the snapshot declares {declared}: endless data")]
    EndlessData {
        /// The release's model.
        name: ModelName,
        /// The release's version.
        version: Version,
        /// Declared length.
        declared: u64,
        /// Bytes offered.
        got: u64,
    },
    /// The release manifest is not signed by the root's targets role.
    #[error("release manifest refused: {0}")]
    Release(String),
}

/// What a device trusts: the newest root it walked to, the newest snapshot version it
/// accepted for each model, and the newest revision it accepted of each release the
/// snapshots list. Persisted by the device; the only way forward is through
/// [`TrustState`]'s checks.
///
/// Snapshots are per model (a device is sent the one for the model it follows, so what
/// travels grows with that model's releases, not the registry's), and so is the rollback
/// check: a snapshot must not be older than the last one accepted for any model it lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    root: Root,
    #[serde(default)]
    snapshot_versions: BTreeMap<ModelName, u64>,
    /// A floor under every model's snapshot version: the one snapshot version a state saved
    /// before snapshots were per model remembered (the counter is shared by all models, so
    /// every newer snapshot is above it).
    #[serde(default, alias = "snapshot_version")]
    snapshot_floor: u64,
    /// Highest manifest revision accepted per release, for releases the newest snapshot
    /// lists (the rest are forgotten, so this never outgrows the snapshot).
    #[serde(default)]
    revisions: BTreeMap<ModelName, BTreeMap<Version, u32>>,
}

impl TrustState {
    /// Starts from a root shipped with the device (trusted on first use as the anchor, but
    /// still required to carry its own threshold of signatures).
    pub fn from_initial_root(bytes: &[u8]) -> Result<Self, TrustError> {
        let (root, envelope) = decode::<Root>(Role::Root, bytes)?;
        check_threshold(Role::Root, &envelope, &root, &root.root)?;
        Ok(Self {
            root,
            snapshot_versions: BTreeMap::new(),
            snapshot_floor: 0,
            revisions: BTreeMap::new(),
        })
    }

    /// The root trusted now.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The newest snapshot version accepted for `model` (0 when none was).
    pub fn snapshot_version(&self, model: &ModelName) -> u64 {
        self.snapshot_versions
            .get(model)
            .copied()
            .unwrap_or(0)
            .max(self.snapshot_floor)
    }

    /// Walks to root N+1: signed by the thresholds of both root N's and its own root keys,
    /// version exactly one above. Expiry is checked by [`TrustState::check_root_fresh`] once
    /// the chain is walked (an intermediate root may have expired).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        let (next, envelope) = decode::<Root>(Role::Root, bytes)?;
        if next.version != self.root.version + 1 {
            return Err(TrustError::Rollback {
                role: Role::Root,
                trusted: self.root.version,
                got: next.version,
            });
        }
        check_threshold(Role::Root, &envelope, &self.root, &self.root.root)?;
        check_threshold(Role::Root, &envelope, &next, &next.root)?;
        self.root = next;
        Ok(())
    }

    /// Refuses an expired root (freeze), judged at `now`, the start of the update cycle.
    pub fn check_root_fresh(&self, now: u64) -> Result<(), TrustError> {
        fresh(Role::Root, self.root.expires, now)
    }

    /// Accepts a snapshot: signed by the snapshot role's threshold, for every model it lists
    /// not older than the one accepted before for that model (whatever roots came between),
    /// not expired at `now`.
    pub fn update_snapshot(&mut self, bytes: &[u8], now: u64) -> Result<Snapshot, TrustError> {
        self.check_root_fresh(now)?;
        let (snapshot, envelope) = decode::<Snapshot>(Role::Snapshot, bytes)?;
        check_threshold(Role::Snapshot, &envelope, &self.root, &self.root.snapshot)?;
        for model in snapshot.releases.keys() {
            let trusted = self.snapshot_version(model);
            if snapshot.version < trusted {
                return Err(TrustError::Rollback {
                    role: Role::Snapshot,
                    trusted,
                    got: snapshot.version,
                });
            }
        }
        fresh(Role::Snapshot, snapshot.expires, now)?;
        for (model, listed) in &snapshot.releases {
            self.snapshot_versions
                .insert(model.clone(), snapshot.version);
            // Revisions are remembered for what the newest snapshot lists, and no more.
            if let Some(versions) = self.revisions.get_mut(model) {
                versions.retain(|version, _| listed.contains_key(version));
                if versions.is_empty() {
                    self.revisions.remove(model);
                }
            }
        }
        Ok(snapshot)
    }

    /// Checks a release's signed envelope against the snapshot (hash and length), the root's
    /// targets role (threshold of publisher keys), its own expiry at `now` (the start of the
    /// update cycle) and the newest revision of it accepted before; remembers its revision
    /// and returns the verified release.
    pub fn check_release(
        &mut self,
        snapshot: &Snapshot,
        name: &ModelName,
        version: &Version,
        envelope: &[u8],
        now: u64,
    ) -> Result<SignedRelease, TrustError> {
        let mix = |reason: String| TrustError::MixAndMatch {
            name: name.clone(),
            version: version.clone(),
            reason,
        };
        let meta = snapshot
            .releases
            .get(name)
            .and_then(|v| v.get(version))
            .ok_or_else(|| mix("not listed".into()))?;
        if envelope.len() as u64 > meta.length {
            return Err(TrustError::EndlessData {
                name: name.clone(),
                version: version.clone(),
                declared: meta.length,
                got: envelope.len() as u64,
            });
        }
        if envelope.len() as u64 != meta.length || Digest::of(envelope) != meta.hash {
            return Err(mix("hash or length differs".into()));
        }
        let release = verify_release(&self.root, envelope)?;
        if &release.release.name != name || &release.release.version != version {
            return Err(mix(format!(
                "the manifest is {} {}",
                release.release.name, release.release.version
            )));
        }
        let seen = self
            .revisions
            .get(name)
            .and_then(|versions| versions.get(version))
            .copied()
            .unwrap_or(0);
        let revision = release.release.revision;
        if revision < seen {
            return Err(TrustError::Rollback {
                role: Role::Targets,
                trusted: u64::from(seen),
                got: u64::from(revision),
            });
        }
        // Remembered even when it has expired: a withdrawal (a newer revision that expires at
        // once) must keep the older, longer-lived signing from coming back.
        self.revisions
            .entry(name.clone())
            .or_default()
            .insert(version.clone(), revision);
        check_release_fresh(&release.release, now)?;
        Ok(release)
    }

    /// The newest revision of `name` `version` accepted, if any.
    pub fn release_revision(&self, name: &ModelName, version: &Version) -> Option<u32> {
        self.revisions.get(name)?.get(version).copied()
    }
}

/// Verifies a release envelope against `root`'s targets role: at least its threshold of
/// distinct publisher keys it names signed it. What a device checks, and what a registry
/// under that root must check before it accepts a release.
pub fn verify_release(root: &Root, envelope: &[u8]) -> Result<SignedRelease, TrustError> {
    let keys = &root.targets;
    let decoded = Envelope::from_bytes(envelope).map_err(|e| TrustError::Release(e.to_string()))?;
    check_threshold(Role::Targets, &decoded, root, keys)?;
    let ring = Keyring::new(keys.keys.iter().filter_map(|id| root.keys.get(id).copied()));
    SignedRelease::verify(envelope, &ring).map_err(|e| TrustError::Release(e.to_string()))
}

/// Refuses a release whose own expiry has passed at `now` (freeze), whatever else vouches for
/// it; for devices without root metadata too.
pub fn check_release_fresh(release: &crate::Release, now: u64) -> Result<(), TrustError> {
    fresh(Role::Targets, release.expires, now)
}

fn fresh(role: Role, expires: u64, now: u64) -> Result<(), TrustError> {
    if now >= expires {
        return Err(TrustError::Expired { role, expires, now });
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(
    role: Role,
    bytes: &[u8],
) -> Result<(T, Envelope), TrustError> {
    let malformed = |reason: String| TrustError::Malformed { role, reason };
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(malformed(format!("{} bytes", bytes.len())));
    }
    let envelope = Envelope::from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
    if Digest::of(&envelope.payload) != envelope.payload_digest {
        return Err(malformed("payload altered after signing".into()));
    }
    let document = postcard::from_bytes(&envelope.payload).map_err(|e| malformed(e.to_string()))?;
    Ok((document, envelope))
}

/// Counts distinct keys of `role_keys` (looked up in `root`) whose signatures verify.
fn check_threshold(
    role: Role,
    envelope: &Envelope,
    root: &Root,
    role_keys: &RoleKeys,
) -> Result<(), TrustError> {
    let mut valid: BTreeSet<KeyId> = BTreeSet::new();
    for entry in &envelope.signatures {
        if !role_keys.keys.contains(&entry.key_id) {
            continue;
        }
        let Some(key) = root.keys.get(&entry.key_id) else {
            continue;
        };
        if key.key_id() == entry.key_id
            && key.verify(role.context(), &envelope.payload_digest.0, &entry.signature)
        {
            valid.insert(entry.key_id);
        }
    }
    let valid = valid.len() as u32;
    let threshold = role_keys.threshold.max(1);
    if valid < threshold {
        return Err(TrustError::BelowThreshold {
            role,
            valid,
            threshold,
        });
    }
    Ok(())
}
