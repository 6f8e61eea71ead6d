//! Garbage collection, the edges around the pure planner ([`crate::rules::gc`]): gather the facts
//! from the store and the fleet, report the plan (a dry run by default), and on `apply` carry
//! it out: the database first (releases marked purged, dead artifact records dropped, in
//! one audited transaction), then the chunk files. Orphan chunk files (left by a crash
//! between the two, or an upload that never finished) older than a grace period go too.
//!
//! Applying holds [`Coordinator::gc_lock`] exclusively, which uploads and publishes hold
//! shared, and recomputes the plan under it: no upload can reuse a chunk being deleted, and
//! no publish can bring back an artifact being dropped.

use std::collections::{BTreeMap, BTreeSet};

use ferry_shared::rollout::Phase;
use ferry_shared::{Digest, ModelName, Version};

use crate::api::GcReport;
use crate::app::Coordinator;
use crate::registry::error::RegistryError;
use crate::rules::gc::{
    Facts, GcPlan, ReleaseFacts, UNPUBLISHED_GRACE_SECS, UPLOAD_EXPIRY_SECS, plan,
};
use crate::rules::lifecycle::Stage;
use crate::store::StoreError;
use crate::store::chunks::UploadPart;

/// The plan, and every chunk some stored artifact uses (read once: it means decoding every
/// artifact's chunk index).
fn gather(app: &Coordinator, now: u64) -> Result<(GcPlan, BTreeSet<Digest>), StoreError> {
    let purged = app.store.purged()?;
    let mut stages = BTreeMap::new();
    let mut releases = Vec::new();
    for (release, _) in app.store.releases(None)? {
        if !stages.contains_key(&release.name) {
            stages.insert(release.name.clone(), app.store.stages(&release.name)?);
        }
        let record = stages
            .get(&release.name)
            .and_then(|s| s.get(&release.version));
        let key = (release.name.clone(), release.version.clone());
        releases.push(ReleaseFacts {
            stage: record.map_or(Stage::Development, |r| r.stage),
            since: record.map_or(0, |r| r.since),
            blobs: release.variants.iter().map(|v| v.hash).collect(),
            purged: purged.contains_key(&key),
            model: release.name,
            version: release.version,
        });
    }
    let blobs = app.store.blob_facts()?;
    let used = blobs
        .iter()
        .flat_map(|b| b.chunks.iter().copied())
        .collect();
    let facts = Facts {
        now,
        retention: &app.config.retention,
        releases,
        protected: protected(app)?,
        blobs,
    };
    Ok((plan(&facts), used))
}

/// Why releases must keep their bytes: aliases and unfinished rollouts pointing at them,
/// devices holding them.
fn protected(app: &Coordinator) -> Result<BTreeMap<(ModelName, Version), Vec<String>>, StoreError> {
    let mut why: BTreeMap<(ModelName, Version), Vec<String>> = BTreeMap::new();
    for (model, alias, record) in app.store.aliases(None)? {
        why.entry((model, record.version))
            .or_default()
            .push(format!("alias {alias} points at it"));
    }
    for rollout in app.store.rollouts()? {
        if !matches!(rollout.state.phase, Phase::Completed | Phase::Aborted) {
            why.entry((rollout.plan.model.clone(), rollout.plan.target.clone()))
                .or_default()
                .push(format!("rollout {} targets it", rollout.plan.id));
        }
    }
    let mut held: BTreeMap<(ModelName, Version), usize> = BTreeMap::new();
    for (_, record) in app.store.devices()? {
        for m in &record.models {
            let versions: BTreeSet<&Version> = [&m.active, &m.previous, &m.candidate]
                .into_iter()
                .flatten()
                .collect();
            for v in versions {
                *held.entry((m.model.clone(), v.clone())).or_default() += 1;
            }
        }
    }
    for (key, devices) in held {
        why.entry(key)
            .or_default()
            .push(format!("{devices} device(s) hold it"));
    }
    Ok(why)
}

/// Chunk files no stored artifact uses (`used`), older than the grace period.
fn orphans(
    app: &Coordinator,
    used: &BTreeSet<Digest>,
    now: u64,
) -> Result<Vec<Digest>, RegistryError> {
    let stored = app
        .transfer
        .chunks
        .list()
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    Ok(stored
        .into_iter()
        .filter(|c| {
            !used.contains(&c.hash) && now.saturating_sub(c.modified) >= UNPUBLISHED_GRACE_SECS
        })
        .map(|c| c.hash)
        .collect())
}

/// Parts of interrupted uploads that did not grow for [`UPLOAD_EXPIRY_SECS`].
fn stale_uploads(app: &Coordinator, now: u64) -> Result<Vec<UploadPart>, RegistryError> {
    let parts = app
        .transfer
        .chunks
        .upload_parts()
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    Ok(parts
        .into_iter()
        .filter(|p| now.saturating_sub(p.modified) >= UPLOAD_EXPIRY_SECS)
        .collect())
}

fn size_of(app: &Coordinator, chunks: impl IntoIterator<Item = Digest>) -> u64 {
    chunks
        .into_iter()
        .filter_map(|c| app.transfer.chunks.frame_len(&c).ok())
        .sum()
}

/// What a collection would free (a dry run).
pub(crate) fn preview(app: &Coordinator, now: u64) -> Result<GcReport, RegistryError> {
    let (plan, used) = gather(app, now)?;
    let orphans = orphans(app, &used, now)?;
    let stale = stale_uploads(app, now)?;
    let bytes = size_of(
        app,
        plan.chunks.iter().copied().chain(orphans.iter().copied()),
    ) + stale.iter().map(|p| p.size).sum::<u64>();
    Ok(GcReport {
        applied: false,
        orphans: orphans.len(),
        stale_uploads: stale.len(),
        plan,
        bytes,
    })
}

/// Carries a collection out, by `actor`, under the exclusive GC lock.
pub(crate) async fn apply(
    app: std::sync::Arc<Coordinator>,
    actor: String,
    now: u64,
) -> Result<GcReport, RegistryError> {
    let _exclusive = app.gc_lock.write().await;
    let _fleet_exclusive =
        crate::registry::gc_fence::hold(&app, true, "a garbage collection".into()).await?;
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let app = app2;
        // Orphans are what no artifact uses before this plan drops any.
        let (plan, used) = gather(&app, now)?;
        let orphans = orphans(&app, &used, now)?;
        let stale = stale_uploads(&app, now)?;
        let bytes = size_of(&app, plan.chunks.iter().copied().chain(orphans.iter().copied()))
            + stale.iter().map(|p| p.size).sum::<u64>();
        app.store.apply_purge(&plan, &actor, bytes, now)?;
        let removed = app
            .transfer
            .chunks
            .remove(plan.chunks.iter().chain(orphans.iter()))
            .map_err(|e| RegistryError::Invalid(format!("the database is done, but deleting chunk files failed ({e}); the next collection finds them as orphans")))?;
        for part in &stale {
            app.transfer
                .chunks
                .remove_upload_part(&part.hash)
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        }
        tracing::info!(
            purged = plan.purge.len(),
            artifacts = plan.blobs.len(),
            chunks = removed,
            bytes,
            by = %actor,
            "garbage collected"
        );
        Ok(GcReport {
            applied: true,
            orphans: orphans.len(),
            stale_uploads: stale.len(),
            plan,
            bytes,
        })
    })
    .await
    .map_err(|e| RegistryError::Invalid(e.to_string()))?
}
