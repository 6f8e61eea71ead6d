//! The fleet: device reports in, fleet status out.
//!
//! [`merge_report`] folds a report into a device record and [`summarize`] turns records into
//! the fleet view; both are pure. [`Presence`] keeps who is connected and when each device was
//! last heard from in memory, so heartbeats cost no disk write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ferry_shared::rollout::Distribution;
use ferry_shared::wire::{
    Conditions, DeviceEvent, DeviceId, DeviceReport, EventKind, MAX_REPORTED_DISTRIBUTIONS,
    ReportedDistribution, UpdatePhase,
};
use ferry_shared::{ModelName, Version};

use crate::api::{
    AliasShare, DeviceError, DevicePhase, FleetStatus, ModelFleet, StaleDevice, VersionCount,
};
use crate::store::records::{AliasRecord, DeviceRecord};

/// How many recent events a device record keeps.
const RECENT_EVENTS: usize = 20;

/// Puts `conditions`, heard at `now` (Unix seconds), into `record`; whether the stored record
/// changes. Small moves of the free space (under 1 % of the disk, or 16 MiB) are not stored
/// again: the disk's figures drift with every log line, and a record is rewritten only for
/// news.
pub(crate) fn merge_conditions(
    record: &mut DeviceRecord,
    conditions: &Conditions,
    now: u64,
) -> bool {
    let news = record
        .conditions
        .as_ref()
        .is_none_or(|(old, _)| conditions.is_news_after(old));
    if news {
        record.conditions = Some((conditions.clone(), now));
    }
    news
}

/// Folds a report into a record. Returns the events not seen before (to be audited) and
/// whether the record changed in a way worth a disk write.
pub(crate) fn merge_report(
    record: &mut DeviceRecord,
    report: &DeviceReport,
    now_ms: u64,
) -> (Vec<DeviceEvent>, bool) {
    let new_events: Vec<DeviceEvent> = report
        .events
        .iter()
        .filter(|e| e.seq > record.events_through)
        .cloned()
        .collect();
    let changed = !new_events.is_empty() || record.models != report.models;
    record.error_seen_at = errors_seen_at(record, &report.models, now_ms);
    record.switched_at = report
        .models
        .iter()
        .map(|m| {
            let same = record
                .models
                .iter()
                .any(|old| old.model == m.model && old.active == m.active);
            let at = match record.switched_at.get(&m.model) {
                Some(&at) if same => at,
                _ => now_ms,
            };
            (m.model.clone(), at)
        })
        .collect();
    record.models = report.models.clone();
    if let Some(last) = new_events.last() {
        record.events_through = last.seq;
    }
    record.recent_events.extend(new_events.iter().cloned());
    let excess = record.recent_events.len().saturating_sub(RECENT_EVENTS);
    record.recent_events.drain(..excess);
    (new_events, changed)
}

/// When each model's failure in `models` was first stored (Unix milliseconds): kept for the
/// failure the record already holds, `now_ms` for a new one.
fn errors_seen_at(
    record: &DeviceRecord,
    models: &[ferry_shared::wire::ModelReport],
    now_ms: u64,
) -> std::collections::BTreeMap<ferry_shared::ModelName, u64> {
    models
        .iter()
        .filter_map(|m| {
            let error = m.last_error.as_ref()?;
            let known = record
                .models
                .iter()
                .any(|old| old.model == m.model && old.last_error.as_ref() == Some(error));
            let seen = match record.error_seen_at.get(&m.model) {
                Some(&at) if known => at,
                _ => now_ms,
            };
            Some((m.model.clone(), seen))
        })
        .collect()
}

/// The model metrics devices last reported (cumulative per version on the device, so the next
/// heartbeat restores them after a coordinator restart; kept in memory, never written), and
/// the distributions of their custom metric values (protocol 6, for drift gates).
#[derive(Default)]
pub struct FleetMetrics {
    inner: Mutex<HashMap<DeviceId, Vec<ferry_shared::wire::ReportedMetrics>>>,
    values: Mutex<HashMap<DeviceId, Vec<ReportedDistribution>>>,
}

impl FleetMetrics {
    /// Keeps what `device` reported, at most [`ferry_shared::wire::MAX_REPORTED_METRICS`]
    /// entries. Every report carries the device's whole current figures, so it replaces
    /// what came before (an empty one too: a restarted agent starts from zero).
    pub fn update(&self, device: &DeviceId, mut metrics: Vec<ferry_shared::wire::ReportedMetrics>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if metrics.is_empty() {
            map.remove(device);
            return;
        }
        metrics.truncate(ferry_shared::wire::MAX_REPORTED_METRICS);
        map.insert(device.clone(), metrics);
    }

    /// Keeps the distributions `device` sent (each replaces what came before), as this build
    /// would keep them: at most [`MAX_REPORTED_DISTRIBUTIONS`], each within the bucket bound.
    pub fn update_values(&self, device: &DeviceId, mut values: Vec<ReportedDistribution>) {
        values.truncate(MAX_REPORTED_DISTRIBUTIONS);
        for v in &mut values {
            v.values = v.values.sanitized();
        }
        let mut map = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if values.is_empty() {
            map.remove(device);
        } else {
            map.insert(device.clone(), values);
        }
    }

    /// The distributions `device` last sent, as sent (for the live record of a shared store).
    pub fn values(&self, device: &DeviceId) -> Vec<ReportedDistribution> {
        let map = self.values.lock().unwrap_or_else(|p| p.into_inner());
        map.get(device).cloned().unwrap_or_default()
    }

    /// The distributions `device` last sent for `model`: by version, then metric.
    pub fn values_of(
        &self,
        device: &DeviceId,
        model: &ModelName,
    ) -> BTreeMap<Version, BTreeMap<String, Distribution>> {
        let map = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
        for d in map.get(device).into_iter().flatten() {
            if &d.model == model {
                out.entry(d.version.clone())
                    .or_default()
                    .insert(d.metric.clone(), d.values.clone());
            }
        }
        out
    }

    /// Requests and errors per (model, version), summed over every device's last report.
    pub fn totals(&self) -> BTreeMap<(ModelName, Version), (u64, u64)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<(ModelName, Version), (u64, u64)> = BTreeMap::new();
        for m in map.values().flatten() {
            let total = out.entry((m.model.clone(), m.version.clone())).or_default();
            total.0 = total.0.saturating_add(m.metrics.requests);
            total.1 = total
                .1
                .saturating_add(m.metrics.errors.min(m.metrics.requests));
        }
        out
    }

    /// What `device` last reported for `model`, by version.
    pub fn of(
        &self,
        device: &DeviceId,
        model: &ferry_shared::ModelName,
    ) -> std::collections::BTreeMap<ferry_shared::Version, ferry_shared::rollout::VersionMetrics>
    {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(device)
            .into_iter()
            .flatten()
            .filter(|m| &m.model == model)
            .map(|m| (m.version.clone(), m.metrics.clone()))
            .collect()
    }
}

/// Live presence of devices: connected or not, and last heard from.
#[derive(Default)]
pub struct Presence {
    inner: Mutex<HashMap<DeviceId, Live>>,
}

#[derive(Clone, Copy, Default)]
struct Live {
    sessions: u32,
    last_seen: u64,
}

impl Presence {
    /// A session opened.
    pub fn connected(&self, id: &DeviceId, now: u64) {
        self.with(id, |l| {
            l.sessions += 1;
            l.last_seen = now;
        });
    }

    /// A session closed.
    pub fn disconnected(&self, id: &DeviceId, now: u64) {
        self.with(id, |l| {
            l.sessions = l.sessions.saturating_sub(1);
            l.last_seen = now;
        });
    }

    /// The device was heard from.
    pub fn seen(&self, id: &DeviceId, now: u64) {
        self.with(id, |l| l.last_seen = now);
    }

    /// QUIC control sessions open now.
    pub fn sessions(&self) -> u64 {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|l| u64::from(l.sessions)).sum()
    }

    /// `(connected, last_seen)` of a device, if heard from since start.
    pub fn get(&self, id: &DeviceId) -> Option<(bool, u64)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).map(|l| (l.sessions > 0, l.last_seen))
    }

    fn with(&self, id: &DeviceId, f: impl FnOnce(&mut Live)) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(id.clone()).or_default());
    }
}

/// A device as the summary needs it.
pub struct FleetDevice<'a> {
    /// The device.
    pub id: &'a DeviceId,
    /// Stored record.
    pub record: &'a DeviceRecord,
    /// Connected now.
    pub connected: bool,
    /// Last seen (max of stored and live).
    pub last_seen: u64,
}

/// Computes the fleet view from device records (the transfer totals are the caller's). Pure.
pub(crate) fn summarize(
    devices: &[FleetDevice<'_>],
    aliases: &[(ModelName, ferry_shared::AliasName, AliasRecord)],
    now: u64,
    stale_after_secs: u64,
) -> FleetStatus {
    let mut models: BTreeMap<&ModelName, Vec<&FleetDevice<'_>>> = BTreeMap::new();
    for d in devices {
        for follow in &d.record.follows {
            models.entry(&follow.model).or_default().push(d);
        }
    }
    for (model, _, _) in aliases {
        models.entry(model).or_default();
    }
    let models = models
        .into_iter()
        .map(|(model, devs)| summarize_model(model, &devs, aliases, now, stale_after_secs))
        .collect();
    FleetStatus {
        generated_at: now,
        stale_after_secs,
        devices_total: devices.len(),
        devices_connected: devices.iter().filter(|d| d.connected).count(),
        bytes_served: 0,
        chunks_served: 0,
        deltas_served: 0,
        deltas_encoded: 0,
        deltas_unrelated: 0,
        first_install_chunks_encoded: 0,
        fetches_refused: 0,
        encodes_refused: 0,
        chunks_presigned: 0,
        models,
        clone_alerts: Vec::new(),
    }
}

/// One model's view over `devices` (a whole fleet or a cohort of it).
pub(crate) fn summarize_model(
    model: &ModelName,
    devices: &[&FleetDevice<'_>],
    aliases: &[(ModelName, ferry_shared::AliasName, AliasRecord)],
    now: u64,
    stale_after_secs: u64,
) -> ModelFleet {
    let total = devices.len();
    let share = |n: usize| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let report_of =
        |d: &FleetDevice<'_>| d.record.models.iter().find(|m| &m.model == model).cloned();
    let active_of = |d: &FleetDevice<'_>| report_of(d).and_then(|m| m.active);

    let mut per_version: BTreeMap<Option<Version>, usize> = BTreeMap::new();
    for d in devices {
        *per_version.entry(active_of(d)).or_default() += 1;
    }
    let versions = per_version
        .into_iter()
        .rev()
        .map(|(version, n)| VersionCount {
            version,
            devices: n,
            share: share(n),
        })
        .collect();

    let aliases = aliases
        .iter()
        .filter(|(m, _, _)| m == model)
        .map(|(_, alias, record)| {
            let follows_alias = |d: &FleetDevice<'_>| {
                d.record
                    .follows
                    .iter()
                    .any(|f| &f.model == model && &f.alias == alias)
            };
            let on_target = |d: &FleetDevice<'_>| active_of(d).as_ref() == Some(&record.version);
            AliasShare {
                alias: alias.to_string(),
                version: record.version.clone(),
                following: devices.iter().filter(|d| follows_alias(d)).count(),
                on_target: devices
                    .iter()
                    .filter(|d| follows_alias(d) && on_target(d))
                    .count(),
                share: share(devices.iter().filter(|d| on_target(d)).count()),
            }
        })
        .collect();

    let mut stale = Vec::new();
    let mut errors = Vec::new();
    let mut in_progress = Vec::new();
    for d in devices {
        let report = report_of(d);
        if !d.connected && now.saturating_sub(d.last_seen) > stale_after_secs {
            stale.push(StaleDevice {
                id: d.id.to_string(),
                last_seen: d.last_seen,
                active: active_of(d),
            });
        }
        if let Some(error) = report.as_ref().and_then(|r| r.last_error.clone()) {
            errors.push(DeviceError {
                id: d.id.to_string(),
                active: active_of(d),
                error,
            });
        }
        if let Some(r) = report
            && r.phase != UpdatePhase::Idle
        {
            in_progress.push(DevicePhase {
                id: d.id.to_string(),
                phase: r.phase,
            });
        }
    }
    ModelFleet {
        model: model.to_string(),
        devices: total,
        versions,
        aliases,
        stale,
        errors,
        in_progress,
    }
}

/// True when an event is worth a line in the coordinator's log.
pub(crate) fn is_notable(event: &DeviceEvent) -> bool {
    !matches!(event.kind, EventKind::Installed { .. })
}

/// Logs the notable ones among a device's new events (failures, rollbacks).
pub(crate) fn log_events(id: &DeviceId, events: &[ferry_shared::wire::DeviceEvent]) {
    for event in events.iter().filter(|e| is_notable(e)) {
        tracing::warn!(device = %id, model = %event.model, "device event: {:?}", event.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::sign::SecretKey;
    use ferry_shared::wire::{ErrorKind, InstallError, ModelReport};

    fn record(active: Option<&str>, error: bool) -> DeviceRecord {
        DeviceRecord::following(
            SecretKey::from_seed(&[1; 32]).public(),
            "prod",
            BTreeMap::new(),
            ModelReport {
                model: "m".parse().unwrap(),
                active: active.map(|v| v.parse().unwrap()),
                previous: None,
                candidate: None,
                phase: UpdatePhase::Idle,
                last_error: error.then(|| InstallError {
                    version: "3.0.0".parse().unwrap(),
                    kind: ErrorKind::HealthCheck,
                    message: "boom".into(),
                    at: 5,
                }),
            },
        )
    }

    #[test]
    fn summarizes_versions_alias_share_staleness_and_errors() {
        let ids: Vec<DeviceId> = (0..4u8)
            .map(|i| DeviceId::of(&SecretKey::from_seed(&[i; 32]).public()))
            .collect();
        let records = [
            record(Some("2.0.0"), false),
            record(Some("2.0.0"), true),
            record(Some("1.0.0"), false),
            record(None, false),
        ];
        let facts: Vec<FleetDevice<'_>> = ids
            .iter()
            .zip(&records)
            .enumerate()
            .map(|(i, (id, record))| FleetDevice {
                id,
                record,
                connected: i != 2,
                last_seen: if i == 2 { 100 } else { 1000 },
            })
            .collect();
        let aliases = vec![(
            "m".parse().unwrap(),
            "prod".parse().unwrap(),
            AliasRecord {
                version: "2.0.0".parse().unwrap(),
                set_at: 0,
                set_by: "t".into(),
                reason: None,
            },
        )];
        let status = summarize(&facts, &aliases, 1000, 300);
        assert_eq!(status.devices_total, 4);
        assert_eq!(status.devices_connected, 3);
        let m = &status.models[0];
        assert_eq!(m.devices, 4);
        let counts: Vec<(Option<String>, usize)> = m
            .versions
            .iter()
            .map(|v| (v.version.as_ref().map(ToString::to_string), v.devices))
            .collect();
        assert_eq!(
            counts,
            vec![
                (Some("2.0.0".into()), 2),
                (Some("1.0.0".into()), 1),
                (None, 1)
            ]
        );
        assert_eq!(m.aliases[0].on_target, 2);
        assert_eq!(m.aliases[0].following, 4);
        assert!((m.aliases[0].share - 0.5).abs() < 1e-9);
        assert_eq!(m.stale.len(), 1);
        assert_eq!(m.stale[0].id, ids[2].to_string());
        assert_eq!(m.errors.len(), 1);
        assert_eq!(m.errors[0].error.kind, ErrorKind::HealthCheck);
    }

    #[test]
    fn reports_are_merged_once_per_event() {
        let mut rec = record(Some("1.0.0"), false);
        let event = DeviceEvent {
            seq: 1,
            at: 1,
            model: "m".parse().unwrap(),
            kind: EventKind::LocalRollback {
                from: "2.0.0".parse().unwrap(),
                to: "1.0.0".parse().unwrap(),
            },
        };
        let report = DeviceReport {
            models: rec.models.clone(),
            events: vec![event.clone()],
            metrics: Vec::new(),
        };
        let (new, changed) = merge_report(&mut rec, &report, 0);
        assert_eq!(new, vec![event]);
        assert!(changed);
        let (new, changed) = merge_report(&mut rec, &report, 0);
        assert!(new.is_empty(), "an event delivered twice is stored once");
        assert!(!changed, "a heartbeat with nothing new needs no write");
        assert_eq!(rec.events_through, 1);
    }

    #[test]
    fn batched_reports_merge_audit_their_rollbacks_and_skip_unknown_devices() {
        use std::collections::BTreeMap;

        use ferry_shared::wire::{
            DeviceEvent, DeviceId, DeviceReport, EventKind, ModelReport, UpdatePhase,
        };

        use crate::store::Store;
        use crate::store::records::DeviceRecord;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let known = SecretKey::from_seed(&[1; 32]).public();
        let known_id = DeviceId::of(&known);
        let stranger = DeviceId::of(&SecretKey::from_seed(&[2; 32]).public());
        let report = |active: &str, events: Vec<DeviceEvent>| DeviceReport {
            models: vec![ModelReport {
                model: "detector".parse().unwrap(),
                active: Some(active.parse().unwrap()),
                previous: None,
                candidate: None,
                phase: UpdatePhase::Idle,
                last_error: None,
            }],
            events,
            metrics: Vec::new(),
        };
        let initial = report("1.0.0", Vec::new()).models.remove(0);
        store
            .enroll(
                &known_id,
                &DeviceRecord::following(known, "prod", BTreeMap::new(), initial),
                crate::store::enrollment::Admission::Bootstrap,
                1,
            )
            .unwrap()
            .unwrap();
        let rollback = DeviceEvent {
            seq: 1,
            at: 5,
            model: "detector".parse().unwrap(),
            kind: EventKind::LocalRollback {
                from: "2.0.0".parse().unwrap(),
                to: "1.0.0".parse().unwrap(),
            },
        };
        let batch = [
            (known_id.clone(), report("2.0.0", Vec::new()), 10),
            (stranger.clone(), report("9.0.0", Vec::new()), 10),
            (
                known_id.clone(),
                report("1.0.0", vec![rollback.clone()]),
                11,
            ),
            // Delivered twice: stored and audited once.
            (
                known_id.clone(),
                report("1.0.0", vec![rollback.clone()]),
                12,
            ),
        ];
        let merge = |_: &_, r: &mut _, report: &_| merge_report(r, report, 0);
        let results = store
            .merge_reports(&batch, merge, None, |_| Vec::new())
            .unwrap();
        assert_eq!(results.len(), 4);
        assert!(
            results[1].is_none(),
            "an unknown device is skipped, not created"
        );
        assert_eq!(results[0].as_ref().map(|r| r.1), Some(0));
        assert_eq!(results[2].as_ref().map(|r| (r.0.len(), r.1)), Some((1, 1)));
        assert_eq!(results[3].as_ref().map(|r| (r.0.len(), r.1)), Some((0, 1)));

        // Reopened: the last state and the one audit entry are there.
        drop(store);
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let record = store.device(&known_id).unwrap().unwrap();
        assert_eq!(record.models[0].active, Some("1.0.0".parse().unwrap()));
        // The repeat changed nothing, so it wrote nothing (liveness lives in memory).
        assert_eq!((record.events_through, record.last_seen), (1, 11));
        assert!(store.device(&stranger).unwrap().is_none());
        let rollbacks = store
            .audit(0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "device.local-rollback")
            .count();
        assert_eq!(rollbacks, 1);
    }
}
