//! The edges of the fleet views: gathering device records, presence, aliases and published
//! versions for the pure [`crate::fleet::summary::summarize`] and
//! [`crate::fleet::fragmentation::report`],
//! and the task that keeps periodic samples of the fragmentation for its history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_shared::wire::DeviceId;
use ferry_shared::{AliasName, ModelName, Version};
use tracing::warn;

use crate::api::{FleetStatus, FragmentationReport};
use crate::app::{Coordinator, Counters};
use crate::fleet::fragmentation::{Inputs, point, report};
use crate::fleet::summary::{FleetDevice, summarize};
use crate::store::StoreError;
use crate::store::records::{AliasRecord, DeviceRecord};

/// A device record with whether it is connected and when it was last seen.
pub type GatheredDevice = (DeviceId, DeviceRecord, bool, u64);

/// Everything the fleet views read, gathered once.
pub struct Gathered {
    /// Device records with (connected, last seen).
    pub devices: Vec<GatheredDevice>,
    /// Every alias.
    pub aliases: Vec<(ModelName, AliasName, AliasRecord)>,
}

impl Gathered {
    /// Reads the store and the presence table.
    pub fn read(app: &Coordinator) -> Result<Self, StoreError> {
        let view = app.live_view()?;
        let live = view.live();
        let devices = app
            .store
            .devices()?
            .into_iter()
            .map(|(id, record)| {
                let (connected, live_seen) = live.presence.get(&id).unwrap_or((false, 0));
                let last_seen = record.last_seen.max(live_seen);
                (id, record, connected, last_seen)
            })
            .collect();
        Ok(Self {
            devices,
            aliases: app.store.aliases(None)?,
        })
    }

    /// One device as [`Gathered::read`] gathers it, without reading the others' records;
    /// with `view`, its live state (see [`Coordinator::live_view_of`]).
    pub fn device(
        app: &Coordinator,
        id: &DeviceId,
        view: &crate::app::LiveView<'_>,
    ) -> Result<Option<GatheredDevice>, StoreError> {
        let Some(record) = app.store.device(id)? else {
            return Ok(None);
        };
        let (connected, live_seen) = view.live().presence.get(id).unwrap_or((false, 0));
        let last_seen = record.last_seen.max(live_seen);
        Ok(Some((id.clone(), record, connected, last_seen)))
    }

    /// The devices as the pure views take them.
    pub fn facts(&self) -> Vec<FleetDevice<'_>> {
        self.devices
            .iter()
            .map(|(id, record, connected, last_seen)| FleetDevice {
                id,
                record,
                connected: *connected,
                last_seen: *last_seen,
            })
            .collect()
    }
}

/// `ferryctl fleet status`'s view, with the coordinator's transfer counters.
pub fn fleet_status(
    app: &Coordinator,
    gathered: &Gathered,
    now: u64,
    stale_after: u64,
) -> FleetStatus {
    let facts = gathered.facts();
    let mut status = summarize(&facts, &gathered.aliases, now, stale_after);
    status.bytes_served = Counters::get(&app.counters.bytes_served);
    status.chunks_served = Counters::get(&app.counters.chunks_served);
    status.deltas_served = Counters::get(&app.counters.deltas_served);
    status.deltas_encoded = Counters::get(&app.transfer.encoded);
    status.deltas_unrelated = Counters::get(&app.transfer.unrelated);
    status.first_install_chunks_encoded = Counters::get(&app.transfer.first_install_encoded);
    status.fetches_refused = Counters::get(&app.counters.fetches_refused);
    status.encodes_refused = Counters::get(&app.counters.encodes_refused);
    status.chunks_presigned = Counters::get(&app.counters.chunks_presigned);
    status.clone_alerts = app.sessions.alerts();
    status
}

/// The fragmentation report, with each model's history since `history_since`.
pub fn fragmentation(
    app: &Coordinator,
    gathered: &Gathered,
    model: Option<&ModelName>,
    by: Option<&str>,
    now: u64,
    history_since: Option<u64>,
) -> Result<FragmentationReport, StoreError> {
    let mut published: BTreeMap<ModelName, Vec<Version>> = BTreeMap::new();
    for (release, _) in app.store.releases(model)? {
        published
            .entry(release.name)
            .or_default()
            .push(release.version);
    }
    for versions in published.values_mut() {
        versions.sort();
    }
    let facts = gathered.facts();
    let pins = app.store.pinned_versions()?;
    let inputs = Inputs {
        devices: &facts,
        aliases: &gathered.aliases,
        published: &published,
        now,
        stale_after_secs: app.config.stale_after_secs,
        pins: &pins,
    };
    let mut out = report(&inputs, model, by);
    if let Some(since) = history_since {
        for m in &mut out.models {
            if let Ok(name) = m.model.parse::<ModelName>() {
                m.history = app.store.fragmentation_history(&name, since)?;
            }
        }
    }
    Ok(out)
}

/// Keeps one sample of every model's fragmentation and forgets those past retention.
pub fn sample(app: &Coordinator, now: u64) -> Result<(), StoreError> {
    let gathered = Gathered::read(app)?;
    let report = fragmentation(app, &gathered, None, None, now, None)?;
    let points: Vec<_> = report
        .models
        .iter()
        .filter_map(|m| Some((m.model.parse().ok()?, point(&m.overall, now))))
        .collect();
    let retention = app
        .config
        .fragmentation_retention_days
        .saturating_mul(86_400);
    app.store
        .record_fragmentation(&points, now.saturating_sub(retention))
}

/// The lease that lets one coordinator at a time keep fragmentation samples.
pub const SAMPLES_LEASE: &str = "fragmentation-samples";

/// Keeps a snapshot every `fragmentation_snapshot_secs` (counted from the newest stored, so a
/// restart neither skips one nor takes an extra) until the process ends.
pub async fn keep_samples(app: Arc<Coordinator>) {
    let every = app.config.fragmentation_sample_secs.max(1);
    let check_every = Duration::from_secs(every.min(60));
    let lease_ms = crate::app::lease_ms(check_every);
    let mut check = tokio::time::interval(check_every);
    let mut taken_here = None;
    loop {
        check.tick().await;
        let app = app.clone();
        let result = tokio::task::spawn_blocking(move || {
            if !app.holds(SAMPLES_LEASE, lease_ms)? {
                return Ok(None);
            }
            let now = crate::unix_now();
            let stored = app.store.last_fragmentation_at()?;
            if sample_due(stored, taken_here, now, every) {
                sample(&app, now)?;
                return Ok::<_, StoreError>(Some(now));
            }
            Ok(None)
        })
        .await;
        match result {
            Ok(Ok(Some(at))) => taken_here = Some(at),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!("fragmentation snapshot failed: {e}"),
            Err(e) => warn!("fragmentation snapshot panicked: {e}"),
        }
    }
}

/// Whether a snapshot is due at `now`: `every` seconds after the newest one stored or, as a
/// fleet with no devices stores none, the newest one this process took.
fn sample_due(stored: Option<u64>, taken_here: Option<u64>, now: u64, every: u64) -> bool {
    stored
        .max(taken_here)
        .is_none_or(|last| now.saturating_sub(last) >= every)
}

#[cfg(test)]
mod tests {
    use super::sample_due;

    /// The bug: a snapshot with no devices stores no point, so the next check found none
    /// stored and read the whole fleet again, every minute instead of every hour.
    #[test]
    fn a_sample_of_an_empty_fleet_is_not_retaken_every_minute() {
        let hour = 3600;
        assert!(sample_due(None, None, 1_000, hour), "the first is due");
        assert!(
            !sample_due(None, Some(1_000), 1_060, hour),
            "a minute after an empty snapshot"
        );
        assert!(sample_due(None, Some(1_000), 1_000 + hour, hour));
        assert!(!sample_due(Some(1_000), Some(1_000), 1_060, hour));
        assert!(sample_due(Some(1_000), None, 1_000 + hour, hour));
    }
}
