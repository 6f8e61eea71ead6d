//! Version fragmentation: which versions run where, per model and per cohort of any label,
//! how spread they are (the Gini–Simpson index), and which devices are behind their alias's
//! target and why. Pure: device records, presence, aliases, the published versions and the
//! clock in; the report out (its history comes from the samples [`crate::store`] keeps).

use std::collections::BTreeMap;

use ferry_shared::wire::{DeferReason, ErrorKind, InstallError, ModelReport, UpdatePhase};
use ferry_shared::{AliasName, ModelName, Version};

use crate::api::{
    BehindDevice, BehindReason, CohortFragmentation, FragmentationPoint, FragmentationReport,
    ModelFragmentation,
};
use crate::fleet::summary::{FleetDevice, summarize_model};
use crate::store::pins::Pins;
use crate::store::records::AliasRecord;

/// The cohort name of devices without the `by` label.
pub(crate) const UNLABELLED: &str = "(none)";

/// What the report is computed from.
pub(crate) struct Inputs<'a> {
    /// Every device, with presence.
    pub devices: &'a [FleetDevice<'a>],
    /// Every alias.
    pub aliases: &'a [(ModelName, AliasName, AliasRecord)],
    /// Published versions per model, ascending.
    pub published: &'a BTreeMap<ModelName, Vec<Version>>,
    /// Now (Unix seconds).
    pub now: u64,
    /// Devices silent for longer count as offline.
    pub stale_after_secs: u64,
    /// Devices operators pinned: (device id, model) → version.
    pub pins: &'a Pins,
}

/// The report for `model` (every model when `None`), split by label `by` when given.
pub(crate) fn report(
    inputs: &Inputs<'_>,
    model: Option<&ModelName>,
    by: Option<&str>,
) -> FragmentationReport {
    let mut models: BTreeMap<&ModelName, Vec<&FleetDevice<'_>>> = BTreeMap::new();
    for d in inputs.devices {
        for follow in &d.record.follows {
            if model.is_none_or(|m| m == &follow.model) {
                models.entry(&follow.model).or_default().push(d);
            }
        }
    }
    for (m, _, _) in inputs.aliases {
        if model.is_none_or(|want| want == m) {
            models.entry(m).or_default();
        }
    }
    let models = models
        .into_iter()
        .map(|(model, devices)| {
            let cohorts = match by {
                None => Vec::new(),
                Some(label) => {
                    let mut split: BTreeMap<&str, Vec<&FleetDevice<'_>>> = BTreeMap::new();
                    for d in &devices {
                        let value = d
                            .record
                            .labels
                            .get(label)
                            .map_or(UNLABELLED, String::as_str);
                        split.entry(value).or_default().push(d);
                    }
                    split
                        .into_iter()
                        .map(|(value, devs)| cohort(inputs, model, value, &devs))
                        .collect()
                }
            };
            ModelFragmentation {
                model: model.to_string(),
                overall: cohort(inputs, model, "all", &devices),
                cohorts,
                history: Vec::new(),
            }
        })
        .collect();
    FragmentationReport {
        generated_at: inputs.now,
        by: by.map(str::to_owned),
        models,
    }
}

/// The snapshot kept for history: the model's whole fleet.
pub(crate) fn point(fragmentation: &CohortFragmentation, at: u64) -> FragmentationPoint {
    FragmentationPoint {
        at,
        devices: fragmentation.devices as u64,
        distinct_versions: fragmentation.distinct_versions as u64,
        index: fragmentation.index,
    }
}

/// 1 − Σ pᵢ² over the counts (0 for no devices).
pub(crate) fn gini_simpson(counts: impl IntoIterator<Item = usize>) -> f64 {
    let counts: Vec<usize> = counts.into_iter().collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    1.0 - counts
        .iter()
        .map(|&n| (n as f64 / total).powi(2))
        .sum::<f64>()
}

fn cohort(
    inputs: &Inputs<'_>,
    model: &ModelName,
    name: &str,
    devices: &[&FleetDevice<'_>],
) -> CohortFragmentation {
    let summary = summarize_model(
        model,
        devices,
        inputs.aliases,
        inputs.now,
        inputs.stale_after_secs,
    );
    let running: Vec<usize> = summary
        .versions
        .iter()
        .filter(|v| v.version.is_some())
        .map(|v| v.devices)
        .collect();
    let published: &[Version] = inputs.published.get(model).map_or(&[], Vec::as_slice);
    let mut behind: Vec<BehindDevice> = devices
        .iter()
        .filter_map(|d| behind_device(inputs, model, published, d))
        .collect();
    behind.sort_by(|a, b| {
        b.versions_behind
            .cmp(&a.versions_behind)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut behind_by_reason = BTreeMap::new();
    for b in &behind {
        *behind_by_reason
            .entry(b.reason.as_str().to_owned())
            .or_default() += 1;
    }
    CohortFragmentation {
        cohort: name.to_owned(),
        devices: summary.devices,
        distinct_versions: running.len(),
        index: gini_simpson(running),
        versions: summary.versions,
        aliases: summary.aliases,
        behind_by_reason,
        behind,
    }
}

/// The device's entry when it follows an alias of `model` and runs something older than its
/// target (or nothing).
fn behind_device(
    inputs: &Inputs<'_>,
    model: &ModelName,
    published: &[Version],
    d: &FleetDevice<'_>,
) -> Option<BehindDevice> {
    let follow = d.record.follows.iter().find(|f| &f.model == model)?;
    let (_, _, alias) = inputs
        .aliases
        .iter()
        .find(|(m, a, _)| m == model && a == &follow.alias)?;
    let target = &alias.version;
    let report = d.record.models.iter().find(|m| &m.model == model);
    let running = report.and_then(|r| r.active.clone());
    // On the target, or ahead of it (a rollout's canary): not behind.
    if running.as_ref().is_some_and(|r| r >= target) {
        return None;
    }
    let (reason, detail) = why_behind(inputs, model, d, report, target);
    let versions_behind = published
        .iter()
        .filter(|v| *v <= target && running.as_ref().is_none_or(|r| *v > r))
        .count();
    Some(BehindDevice {
        id: d.id.to_string(),
        alias: follow.alias.to_string(),
        running,
        target: target.clone(),
        versions_behind,
        reason,
        detail,
        last_seen: d.last_seen,
    })
}

fn why_behind(
    inputs: &Inputs<'_>,
    model: &ModelName,
    d: &FleetDevice<'_>,
    report: Option<&ModelReport>,
    target: &Version,
) -> (BehindReason, Option<String>) {
    if let Some(pinned) = inputs.pins.get(&(d.id.to_string(), model.clone())) {
        return (
            BehindReason::Pinned,
            Some(format!("pinned to {pinned} by an operator")),
        );
    }
    if !d.connected && inputs.now.saturating_sub(d.last_seen) > inputs.stale_after_secs {
        return (BehindReason::Offline, None);
    }
    let Some(report) = report else {
        return (BehindReason::Waiting, None);
    };
    if let Some(deferred) = deferral(d, &report.model, target) {
        return deferred;
    }
    let failure = report.last_error.as_ref().filter(|e| &e.version == target);
    let from_failure = |e: &InstallError| (reason_of(e.kind), Some(e.message.clone()));
    match &report.phase {
        UpdatePhase::Fetching(v) | UpdatePhase::Probation(v) if v == target => {
            (BehindReason::Updating, None)
        }
        UpdatePhase::Retrying { version, attempts } if version == target => match failure {
            Some(e) => from_failure(e),
            None => (
                BehindReason::DownloadFailing,
                Some(format!("{attempts} attempt(s)")),
            ),
        },
        UpdatePhase::Held { version, reason } if version == target => match failure {
            Some(e) => from_failure(e),
            // Held with no failure of its own: an operator rolled the device back by hand.
            None => (BehindReason::Pinned, Some(reason.clone())),
        },
        _ => match failure {
            Some(e) => from_failure(e),
            None => (BehindReason::Waiting, None),
        },
    }
}

/// The device's own word that it holds the switch to `target` back, and why.
fn deferral(
    d: &FleetDevice<'_>,
    model: &ModelName,
    target: &Version,
) -> Option<(BehindReason, Option<String>)> {
    let (conditions, _) = d.record.conditions.as_ref()?;
    let deferral = conditions
        .deferred
        .iter()
        .find(|x| &x.model == model && &x.version == target)?;
    Some(match &deferral.reason {
        DeferReason::Window { opens } => (
            BehindReason::WaitingForWindow,
            opens.map(|at| format!("next window opens at {at}")),
        ),
        DeferReason::Locked { until, by } => (
            BehindReason::LockedByApplication,
            Some(match until {
                Some(at) => format!("{by} (until {at})"),
                None => by.clone(),
            }),
        ),
        DeferReason::UpdateSet { waiting_for } => (
            BehindReason::WaitingForUpdateSet,
            Some(format!("waiting for {waiting_for}")),
        ),
    })
}

fn reason_of(kind: ErrorKind) -> BehindReason {
    match kind {
        ErrorKind::Download => BehindReason::DownloadFailing,
        ErrorKind::HealthCheck => BehindReason::HealthCheckFailed,
        ErrorKind::Disk => BehindReason::DiskFull,
        ErrorKind::IncompatibleHardware => BehindReason::IncompatibleHardware,
        ErrorKind::Signature | ErrorKind::Integrity => BehindReason::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::sign::SecretKey;
    use ferry_shared::wire::DeviceId;

    use crate::store::records::DeviceRecord;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn device(
        region: &str,
        active: &str,
        phase: UpdatePhase,
        error: Option<ErrorKind>,
    ) -> DeviceRecord {
        DeviceRecord::following(
            SecretKey::from_seed(&[1; 32]).public(),
            "prod",
            BTreeMap::from([("region".to_owned(), region.to_owned())]),
            ModelReport {
                model: "m".parse().unwrap(),
                active: Some(v(active)),
                previous: None,
                candidate: None,
                phase,
                last_error: error.map(|kind| InstallError {
                    version: v("3.0.0"),
                    kind,
                    message: format!("{kind} failed"),
                    at: 1,
                }),
            },
        )
    }

    /// `m@prod` at `version`.
    fn prod_at(version: &str) -> Vec<(ModelName, AliasName, AliasRecord)> {
        vec![(
            "m".parse().unwrap(),
            "prod".parse().unwrap(),
            AliasRecord {
                version: v(version),
                set_at: 0,
                set_by: "t".into(),
                reason: None,
            },
        )]
    }

    #[test]
    fn the_index_is_zero_for_one_version_and_grows_with_spread() {
        assert_eq!(gini_simpson([10]), 0.0);
        assert_eq!(gini_simpson([]), 0.0);
        assert!((gini_simpson([5, 5]) - 0.5).abs() < 1e-12);
        assert!((gini_simpson([1, 1, 1, 1]) - 0.75).abs() < 1e-12);
        assert!(gini_simpson([9, 1]) < gini_simpson([5, 5]));
    }

    #[test]
    fn cohorts_versions_and_why_devices_are_behind() {
        let held = |reason: &str| UpdatePhase::Held {
            version: v("3.0.0"),
            reason: reason.into(),
        };
        let records = [
            device("eu", "3.0.0", UpdatePhase::Idle, None),
            device("eu", "2.0.0", held("failed"), Some(ErrorKind::HealthCheck)),
            device("eu", "2.0.0", held("rolled back by hand"), None),
            device("us", "1.0.0", UpdatePhase::Fetching(v("3.0.0")), None),
            device(
                "us",
                "2.0.0",
                UpdatePhase::Retrying {
                    version: v("3.0.0"),
                    attempts: 3,
                },
                Some(ErrorKind::Disk),
            ),
            device("us", "2.0.0", UpdatePhase::Idle, None),
        ];
        let ids: Vec<DeviceId> = (0..records.len() as u8)
            .map(|i| DeviceId::of(&SecretKey::from_seed(&[i + 1; 32]).public()))
            .collect();
        let devices: Vec<FleetDevice<'_>> = ids
            .iter()
            .zip(&records)
            .enumerate()
            .map(|(i, (id, record))| FleetDevice {
                id,
                record,
                // The last device went quiet long ago.
                connected: i != 5,
                last_seen: if i == 5 { 10 } else { 1000 },
            })
            .collect();
        let aliases = prod_at("3.0.0");
        let published = BTreeMap::from([(
            "m".parse().unwrap(),
            vec![
                v("1.0.0"),
                v("2.0.0"),
                v("2.1.0"),
                v("3.0.0"),
                v("4.0.0-rc.1"),
            ],
        )]);
        let inputs = Inputs {
            devices: &devices,
            aliases: &aliases,
            published: &published,
            now: 1000,
            stale_after_secs: 300,
            pins: &Pins::new(),
        };
        let r = report(&inputs, None, Some("region"));
        let m = &r.models[0];
        let all = &m.overall;
        assert_eq!(all.devices, 6);
        assert_eq!(all.distinct_versions, 3);
        // 1 on 3.0.0, 4 on 2.0.0, 1 on 1.0.0: 1 − (1 + 16 + 1)/36.
        assert!(
            (all.index - (1.0 - 18.0 / 36.0)).abs() < 1e-12,
            "{}",
            all.index
        );
        assert_eq!(all.aliases[0].on_target, 1);
        let reasons: Vec<(&str, BehindReason, usize)> = all
            .behind
            .iter()
            .map(|b| {
                let i = ids.iter().position(|id| id.to_string() == b.id).unwrap();
                (
                    ["d0", "d1", "d2", "d3", "d4", "d5"][i],
                    b.reason,
                    b.versions_behind,
                )
            })
            .collect();
        let mut expected = vec![
            ("d1", BehindReason::HealthCheckFailed, 2),
            ("d2", BehindReason::Pinned, 2),
            ("d3", BehindReason::Updating, 3),
            ("d4", BehindReason::DiskFull, 2),
            ("d5", BehindReason::Offline, 2),
        ];
        expected.sort_by(|a, b| {
            let id = |n: &str| ids[n[1..].parse::<usize>().unwrap()].to_string();
            b.2.cmp(&a.2).then_with(|| id(a.0).cmp(&id(b.0)))
        });
        assert_eq!(reasons, expected);
        assert_eq!(all.behind_by_reason["pinned"], 1);
        // Split by region.
        let cohorts: Vec<(&str, usize, usize)> = m
            .cohorts
            .iter()
            .map(|c| (c.cohort.as_str(), c.devices, c.behind.len()))
            .collect();
        assert_eq!(cohorts, vec![("eu", 3, 2), ("us", 3, 3)]);
        assert_eq!(m.cohorts[0].distinct_versions, 2);
        // A model filter that matches nothing gives nothing.
        let other: ModelName = "other".parse().unwrap();
        assert!(report(&inputs, Some(&other), None).models.is_empty());
    }

    #[test]
    fn a_device_deferring_its_switch_says_why() {
        use ferry_shared::wire::{Conditions, Deferral};
        let deferring = |reason: DeferReason| {
            let mut d = device("eu", "2.0.0", UpdatePhase::Idle, None);
            d.conditions = Some((
                Conditions {
                    disk: None,
                    deferred: vec![Deferral {
                        model: "m".parse().unwrap(),
                        version: v("3.0.0"),
                        reason,
                        since: 1,
                    }],
                },
                1,
            ));
            d
        };
        let records = [
            deferring(DeferReason::Window { opens: Some(5000) }),
            deferring(DeferReason::Locked {
                until: None,
                by: "surgery in progress".into(),
            }),
        ];
        let ids: Vec<DeviceId> = (0..2u8)
            .map(|i| DeviceId::of(&SecretKey::from_seed(&[i + 1; 32]).public()))
            .collect();
        let devices: Vec<FleetDevice<'_>> = ids
            .iter()
            .zip(&records)
            .map(|(id, record)| FleetDevice {
                id,
                record,
                connected: true,
                last_seen: 1000,
            })
            .collect();
        let aliases = prod_at("3.0.0");
        let published = BTreeMap::new();
        let inputs = Inputs {
            devices: &devices,
            aliases: &aliases,
            published: &published,
            now: 1000,
            stale_after_secs: 300,
            pins: &Pins::new(),
        };
        let r = report(&inputs, None, None);
        let all = &r.models[0].overall;
        assert_eq!(all.behind_by_reason["waiting-for-window"], 1);
        assert_eq!(all.behind_by_reason["locked-by-application"], 1);
        let details: Vec<Option<&str>> = all.behind.iter().map(|b| b.detail.as_deref()).collect();
        assert!(
            details.contains(&Some("next window opens at 5000")),
            "{details:?}"
        );
        assert!(
            details.contains(&Some("surgery in progress")),
            "{details:?}"
        );
    }

    #[test]
    fn a_canary_ahead_of_the_target_is_not_behind() {
        let record = device("eu", "4.0.0-rc.1", UpdatePhase::Idle, None);
        let id = DeviceId::of(&SecretKey::from_seed(&[9; 32]).public());
        let devices = [FleetDevice {
            id: &id,
            record: &record,
            connected: true,
            last_seen: 1000,
        }];
        let aliases = prod_at("3.0.0");
        let published = BTreeMap::new();
        let inputs = Inputs {
            devices: &devices,
            aliases: &aliases,
            published: &published,
            now: 1000,
            stale_after_secs: 300,
            pins: &Pins::new(),
        };
        assert!(
            report(&inputs, None, None).models[0]
                .overall
                .behind
                .is_empty()
        );
    }
}
