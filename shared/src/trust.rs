//! TUF-grade trust metadata, the pure part: roles, thresholds, versions and expiry, and the
//! state a device keeps of what it trusts ([`TrustState`]), which refuses every attack class
//! The Update Framework names:
//!
//! * a document signed by unknown or revoked keys, or by fewer than its role's threshold;
//! * a **rollback**: a version lower than one seen, for every role: root, snapshot, and each
//!   release manifest's own `revision` (a publisher re-signs a release to extend or cut short
//!   its life; an older signing must not come back);
//! * a **freeze**: expired metadata (root, snapshot, or the release manifest itself), judged
//!   by the time the update cycle started;
//! * **mix-and-match**: a release manifest whose hash or length is not the snapshot's;
//! * **endless data**: more bytes than the snapshot declares.
//!
//! Roles, as in TUF: a **root** (a threshold of offline keys) names the keys and thresholds
//! of every role; **targets** keys (the publishers) sign release manifests; an online
//! **snapshot** key on the coordinator signs the short-lived, versioned list of releases and
//! their manifest hashes (TUF's timestamp and snapshot roles in one document, since Ferry
//! serves both from the same online coordinator). Root N+1 is accepted only when signed by
//! the thresholds of both root N and root N+1, and a device walks the chain one version at a
//! time.

mod metadata;
mod state;
#[cfg(test)]
mod tests;

pub use metadata::{
    MAX_METADATA_BYTES, ReleaseMeta, Role, RoleKeys, Root, Snapshot, add_signature, draft,
    inspect_root, sign_metadata,
};
pub use state::{TrustError, TrustState, check_release_fresh, verify_release};
