//! The signed documents: root and snapshot, their canonical bytes and signing contexts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::name::ModelName;
use crate::sign::{Envelope, KeyId, PublicKey, SecretKey, SignatureEntry};
use crate::version::Version;

/// Largest metadata document accepted, in bytes (root or snapshot envelope).
pub const MAX_METADATA_BYTES: usize = 4 * 1024 * 1024;

/// A role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Names every role's keys; offline keys.
    Root,
    /// Signs release manifests (the publishers).
    Targets,
    /// Signs the fleet's list of releases; an online key on the coordinator.
    Snapshot,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Root => "root metadata",
            Role::Targets => "release manifest",
            Role::Snapshot => "snapshot",
        })
    }
}

impl Role {
    /// What this role's documents call their own version number.
    pub fn counter(self) -> &'static str {
        match self {
            Role::Targets => "revision",
            Role::Root | Role::Snapshot => "version",
        }
    }

    /// The signing context of this role's documents.
    pub fn context(self) -> &'static str {
        match self {
            Role::Root => "ferry/tuf/root/v1",
            Role::Targets => crate::sign::RELEASE_CONTEXT,
            Role::Snapshot => "ferry/tuf/snapshot/v1",
        }
    }
}

/// The keys of one role and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Allowed signers.
    pub keys: BTreeSet<KeyId>,
    /// Distinct valid signatures needed (at least 1).
    pub threshold: u32,
}

/// The root document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Increases by exactly one with each rotation.
    pub version: u64,
    /// Unix seconds after which it is not trusted.
    pub expires: u64,
    /// Every key any role uses.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Who signs the next root.
    pub root: RoleKeys,
    /// Who signs release manifests.
    pub targets: RoleKeys,
    /// Who signs snapshots.
    pub snapshot: RoleKeys,
}

impl Root {
    /// The keys and threshold of `role`.
    pub fn role(&self, role: Role) -> &RoleKeys {
        match role {
            Role::Root => &self.root,
            Role::Targets => &self.targets,
            Role::Snapshot => &self.snapshot,
        }
    }
}

/// What the snapshot says of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMeta {
    /// BLAKE3 of the release's signed envelope.
    pub hash: Digest,
    /// Its length in bytes.
    pub length: u64,
}

/// The snapshot document: every release the fleet may be told to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Increases with every snapshot.
    pub version: u64,
    /// Unix seconds after which it is not trusted (short: hours).
    pub expires: u64,
    /// Per model and version.
    pub releases: BTreeMap<ModelName, BTreeMap<Version, ReleaseMeta>>,
}

/// Signs `document` for `role` with every key in `keys`; the envelope's bytes.
pub fn sign_metadata<T: Serialize>(role: Role, document: &T, keys: &[&SecretKey]) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    let payload = postcard::to_allocvec(document).unwrap_or_default();
    let payload_digest = Digest::of(&payload);
    let signatures = keys
        .iter()
        .map(|k| SignatureEntry {
            key_id: k.public().key_id(),
            signature: k.sign(role.context(), &payload_digest.0).to_vec(),
        })
        .collect();
    Envelope {
        payload,
        payload_digest,
        signatures,
    }
    .to_bytes()
}

/// An unsigned draft of `document` for `role`: the envelope the key holders sign in turn.
pub fn draft<T: Serialize>(role: Role, document: &T) -> Vec<u8> {
    sign_metadata(role, document, &[])
}

/// Adds `key`'s signature for `role` to the envelope `bytes` (one key holder at a time, each
/// offline); a second signature by the same key replaces the first.
pub fn add_signature(role: Role, bytes: &[u8], key: &SecretKey) -> Result<Vec<u8>, String> {
    let mut envelope = Envelope::from_bytes(bytes).map_err(|e| e.to_string())?;
    if Digest::of(&envelope.payload) != envelope.payload_digest {
        return Err("the payload was altered after it was drafted".into());
    }
    let id = key.public().key_id();
    envelope.signatures.retain(|s| s.key_id != id);
    envelope.signatures.push(SignatureEntry {
        key_id: id,
        signature: key
            .sign(role.context(), &envelope.payload_digest.0)
            .to_vec(),
    });
    Ok(envelope.to_bytes())
}

/// A root envelope's document and the ids of the keys whose signatures on it verify.
pub fn inspect_root(bytes: &[u8]) -> Result<(Root, BTreeSet<KeyId>), String> {
    let envelope = Envelope::from_bytes(bytes).map_err(|e| e.to_string())?;
    if Digest::of(&envelope.payload) != envelope.payload_digest {
        return Err("the payload was altered after it was signed".into());
    }
    let root: Root = postcard::from_bytes(&envelope.payload).map_err(|e| e.to_string())?;
    let valid = envelope
        .signatures
        .iter()
        .filter(|s| {
            root.keys.get(&s.key_id).is_some_and(|k| {
                k.verify(
                    Role::Root.context(),
                    &envelope.payload_digest.0,
                    &s.signature,
                )
            })
        })
        .map(|s| s.key_id)
        .collect();
    Ok((root, valid))
}
