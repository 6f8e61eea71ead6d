//! The signed snapshots the coordinator serves once it has a root, one per model: every
//! published release of the model with its manifest envelope's hash and length, a version
//! that only grows (one counter for all models), and a short expiry. A model's snapshot is
//! re-signed when its releases change or half its lifetime has passed.
//!
//! Per model, because each desired state carries the snapshot of its model: what travels to
//! a device grows with the releases of the model it follows, not with the whole registry.
//!
//! One coordinator keeps them in memory; coordinators sharing a database keep them there, so
//! that every node serves the same one ([`crate::store::signed_snapshots`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ferry_shared::trust::{ReleaseMeta, Role, Snapshot, sign_metadata};
use ferry_shared::{Digest, ModelName, SecretKey, Version};

use crate::store::{Store, StoreError};

/// How long a snapshot is valid.
pub(crate) const SNAPSHOT_TTL_SECS: u64 = 24 * 3600;

type Listing = BTreeMap<Version, ReleaseMeta>;

/// The last snapshot signed for each model.
#[derive(Default)]
pub struct SnapshotCache {
    inner: Mutex<HashMap<ModelName, Signed>>,
}

struct Signed {
    bytes: Arc<Vec<u8>>,
    releases: Listing,
    signed_at: u64,
}

/// The current signed snapshot of `model`, signed with `key` (the online snapshot key) when
/// the cached one is stale; `None` before any root was pushed.
pub(crate) fn current(
    store: &Store,
    snapshots: &SnapshotCache,
    key: &SecretKey,
    model: &ModelName,
    now: u64,
) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
    if store.roots()?.is_empty() {
        return Ok(None);
    }
    let releases = listing(store, model)?;
    if store.is_shared() {
        let encoded = postcard::to_allocvec(&releases).unwrap_or_default();
        let sign = |version| {
            let snapshot = Snapshot {
                version,
                expires: now + SNAPSHOT_TTL_SECS,
                releases: BTreeMap::from([(model.clone(), releases.clone())]),
            };
            sign_metadata(Role::Snapshot, &snapshot, &[key])
        };
        let stored =
            store.signed_snapshot(model.as_str(), &encoded, now, SNAPSHOT_TTL_SECS / 2, sign)?;
        return Ok(Some(Arc::new(stored.bytes)));
    }
    let mut cache = snapshots.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(signed) = cache.get(model)
        && signed.releases == releases
        && now.saturating_sub(signed.signed_at) < SNAPSHOT_TTL_SECS / 2
    {
        return Ok(Some(signed.bytes.clone()));
    }
    let snapshot = Snapshot {
        version: store.next_snapshot_version()?,
        expires: now + SNAPSHOT_TTL_SECS,
        releases: BTreeMap::from([(model.clone(), releases.clone())]),
    };
    let bytes = Arc::new(sign_metadata(Role::Snapshot, &snapshot, &[key]));
    cache.insert(
        model.clone(),
        Signed {
            bytes: bytes.clone(),
            releases,
            signed_at: now,
        },
    );
    Ok(Some(bytes))
}

/// Every published release of `model`, with its envelope's hash and length.
fn listing(store: &Store, model: &ModelName) -> Result<Listing, StoreError> {
    Ok(store
        .releases(Some(model))?
        .into_iter()
        .map(|(release, stored)| {
            (
                release.version,
                ReleaseMeta {
                    hash: Digest::of(&stored.envelope),
                    length: stored.envelope.len() as u64,
                },
            )
        })
        .collect())
}

/// The snapshot `current` (as [`current`] signed it) again, valid for `valid_secs` from `now`
/// instead of a day: what an offline bundle carries, judged by a device by its own clock,
/// maybe weeks later. Same version and listing, so a device that saw it still takes the
/// coordinator's next snapshot; only the freeze window grows, by the operator's choice.
/// `None` when `current` is not a snapshot this coordinator signed.
pub(crate) fn for_bundle(
    current: &[u8],
    key: &SecretKey,
    now: u64,
    valid_secs: u64,
) -> Option<Vec<u8>> {
    let envelope = ferry_shared::sign::Envelope::from_bytes(current).ok()?;
    let mut snapshot: Snapshot = postcard::from_bytes(&envelope.payload).ok()?;
    snapshot.expires = now.saturating_add(valid_secs);
    Some(sign_metadata(Role::Snapshot, &snapshot, &[key]))
}
