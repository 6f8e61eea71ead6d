//! The signed snapshot the coordinator serves once it has a root: every published release
//! with its manifest envelope's hash and length, a version that only grows, and a short
//! expiry. It is re-signed when the releases change or half its lifetime has passed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferry_shared::trust::{ReleaseMeta, Role, Snapshot, sign_metadata};
use ferry_shared::{Digest, ModelName, Version};

use crate::app::Coordinator;
use crate::store::StoreError;

/// How long a snapshot is valid.
pub const SNAPSHOT_TTL_SECS: u64 = 24 * 3600;

type Listing = BTreeMap<ModelName, BTreeMap<Version, ReleaseMeta>>;

/// The last snapshot signed.
#[derive(Default)]
pub struct SnapshotCache {
    inner: Mutex<Option<Signed>>,
}

struct Signed {
    bytes: Arc<Vec<u8>>,
    releases: Listing,
    signed_at: u64,
}

/// The current signed snapshot, or `None` before any root was pushed.
pub fn current(app: &Coordinator, now: u64) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
    if app.store.roots()?.is_empty() {
        return Ok(None);
    }
    let mut releases: Listing = BTreeMap::new();
    for (release, stored) in app.store.releases(None)? {
        releases.entry(release.name).or_default().insert(
            release.version,
            ReleaseMeta {
                hash: Digest::of(&stored.envelope),
                length: stored.envelope.len() as u64,
            },
        );
    }
    let mut cache = app
        .snapshots
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(signed) = cache.as_ref()
        && signed.releases == releases
        && now.saturating_sub(signed.signed_at) < SNAPSHOT_TTL_SECS / 2
    {
        return Ok(Some(signed.bytes.clone()));
    }
    let snapshot = Snapshot {
        version: app.store.next_snapshot_version()?,
        expires: now + SNAPSHOT_TTL_SECS,
        releases: releases.clone(),
    };
    let bytes = Arc::new(sign_metadata(
        Role::Snapshot,
        &snapshot,
        &[&app.snapshot_key],
    ));
    *cache = Some(Signed {
        bytes: bytes.clone(),
        releases,
        signed_at: now,
    });
    Ok(Some(bytes))
}
