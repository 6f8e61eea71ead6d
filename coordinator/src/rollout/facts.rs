//! What the rollout engine sees of each device: its facts for one rollout, read from the
//! record its reports keep current, with the metrics and presence the coordinator holds in
//! memory.

use ferry_shared::rollout::DeviceFacts;
use ferry_shared::wire::DeviceId;
use ferry_shared::{ModelName, Version};

use crate::fleet::summary::{FleetMetrics, Presence};
use crate::store::pins::Pins;
use crate::store::records::DeviceRecord;
use crate::store::rollouts::RolloutRecord;

/// What the engine sees of one device, for a rollout of `model` to `target` that started at
/// `since` (Unix milliseconds, coordinator clock): [`DeviceFacts::from_report`] on its record,
/// a failure counting only when the coordinator first saw it after the rollout started.
pub(crate) fn facts_of(
    id: &DeviceId,
    record: &DeviceRecord,
    model: &ModelName,
    target: &Version,
    since: u64,
) -> DeviceFacts {
    let report = record.models.iter().find(|m| &m.model == model);
    let failure_is_new = record.error_seen_at(model) >= since;
    let mut facts =
        DeviceFacts::from_report(id, record.labels.clone(), report, target, failure_is_new);
    facts.switched_at = record.switched_at.get(model).map(|ms| ms / 1000);
    facts
}

/// What the coordinator holds of each device in memory, beside its stored record: the
/// metrics it last reported and whether it is connected.
#[derive(Clone, Copy)]
pub struct Live<'a> {
    /// Model metrics by device.
    pub metrics: &'a FleetMetrics,
    /// Who is connected, and when each was last heard.
    pub presence: &'a Presence,
}

/// The facts for `rollout` of `devices` (records read once, for several rollouts). A device
/// an operator pinned to another version than the target counts as pinned: left out, as one
/// rolled back by hand is.
pub(crate) fn facts_from<'a>(
    live: Live<'_>,
    pins: &Pins,
    devices: impl IntoIterator<Item = (&'a DeviceId, &'a DeviceRecord)>,
    rollout: &RolloutRecord,
) -> Vec<DeviceFacts> {
    let plan = &rollout.plan;
    devices
        .into_iter()
        .map(|(id, record)| {
            let mut facts = facts_of(id, record, &plan.model, &plan.target, rollout.created_at_ms);
            facts.metrics = live.metrics.of(id, &plan.model);
            facts.distributions = live.metrics.values_of(id, &plan.model);
            let (connected, live_seen) = live.presence.get(id).unwrap_or((false, 0));
            facts.offline_since = (!connected).then(|| record.last_seen.max(live_seen));
            if pins
                .get(&(id.to_string(), plan.model.clone()))
                .is_some_and(|v| *v != plan.target)
            {
                facts.pinned = true;
            }
            facts
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferry_shared::sign::SecretKey;
    use ferry_shared::wire::{ErrorKind, InstallError, ModelReport, UpdatePhase};

    use super::*;

    /// The rollouts in these tests start at this time; failures are seen at it.
    const STARTED: u64 = 10;

    fn record(active: &str, phase: UpdatePhase, error: Option<ErrorKind>) -> DeviceRecord {
        let mut record = DeviceRecord::following(
            SecretKey::from_seed(&[1; 32]).public(),
            "prod",
            BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
            ModelReport {
                model: "m".parse().unwrap(),
                active: Some(active.parse().unwrap()),
                previous: Some("1.0.0".parse().unwrap()),
                candidate: None,
                phase,
                last_error: error.map(|kind| InstallError {
                    version: "2.0.0".parse().unwrap(),
                    kind,
                    message: "boom".into(),
                    at: 5,
                }),
            },
        );
        if error.is_some() {
            record.error_seen_at.insert("m".parse().unwrap(), STARTED);
        }
        record
    }

    #[test]
    fn reports_become_the_engines_facts() {
        let id = DeviceId::of(&SecretKey::from_seed(&[1; 32]).public());
        let (model, target): (ModelName, Version) =
            ("m".parse().unwrap(), "2.0.0".parse().unwrap());
        let facts = |r: &DeviceRecord| facts_of(&id, r, &model, &target, STARTED);

        let on_target = facts(&record("2.0.0", UpdatePhase::Idle, None));
        assert_eq!(on_target.current, Some(target.clone()));
        assert_eq!(on_target.previous, Some("1.0.0".parse().unwrap()));
        assert_eq!(on_target.labels["region"], "eu");
        assert!(!on_target.install_failed && !on_target.health_failed);
        assert!(!on_target.installing);

        // Switched but not yet confirmed by its health check: no outcome yet.
        let in_probation = facts(&record(
            "2.0.0",
            UpdatePhase::Probation(target.clone()),
            None,
        ));
        assert!(in_probation.installing);

        let unhealthy = facts(&record(
            "1.0.0",
            UpdatePhase::Idle,
            Some(ErrorKind::HealthCheck),
        ));
        assert!(unhealthy.health_failed && !unhealthy.install_failed);
        let unverifiable = facts(&record(
            "1.0.0",
            UpdatePhase::Idle,
            Some(ErrorKind::Integrity),
        ));
        assert!(unverifiable.install_failed && !unverifiable.health_failed);
        // Refused for good by the coordinator: the device holds the version.
        let refused = UpdatePhase::Held {
            version: target.clone(),
            reason: "download: refused for good".into(),
        };
        let undownloadable = facts(&record("1.0.0", refused, Some(ErrorKind::Download)));
        assert!(undownloadable.install_failed && !undownloadable.health_failed);

        // Held after an operator's hand rollback, with no failure: not a failed check.
        let held = UpdatePhase::Held {
            version: target.clone(),
            reason: "rolled back by hand".into(),
        };
        let by_hand = facts(&record("1.0.0", held, None));
        assert!(!by_hand.install_failed && !by_hand.health_failed);

        // A failure of another version says nothing about this rollout's target.
        let other: Version = "3.0.0".parse().unwrap();
        let elsewhere = facts_of(
            &id,
            &record("1.0.0", UpdatePhase::Idle, Some(ErrorKind::HealthCheck)),
            &model,
            &other,
            STARTED,
        );
        assert!(!elsewhere.health_failed);
    }

    #[test]
    fn a_lost_connection_is_not_an_install_failure_of_the_release() {
        let id = DeviceId::of(&SecretKey::from_seed(&[1; 32]).public());
        let (model, target): (ModelName, Version) =
            ("m".parse().unwrap(), "2.0.0".parse().unwrap());
        for kind in [ErrorKind::Download, ErrorKind::Disk] {
            let retrying = UpdatePhase::Retrying {
                version: target.clone(),
                attempts: 3,
            };
            let facts = facts_of(
                &id,
                &record("1.0.0", retrying, Some(kind)),
                &model,
                &target,
                0,
            );
            assert!(!facts.install_failed, "{kind}");
            assert!(facts.installing, "{kind}: retrying is no outcome yet");
        }
    }

    #[test]
    fn a_new_rollout_is_not_judged_by_an_earlier_ones_failures() {
        let id = DeviceId::of(&SecretKey::from_seed(&[1; 32]).public());
        let (model, target): (ModelName, Version) =
            ("m".parse().unwrap(), "2.0.0".parse().unwrap());
        for kind in [ErrorKind::Integrity, ErrorKind::HealthCheck] {
            let failed = record("1.0.0", UpdatePhase::Idle, Some(kind));
            let later = facts_of(&id, &failed, &model, &target, STARTED + 1);
            assert!(!later.install_failed && !later.health_failed, "{kind}");
            let same = facts_of(&id, &failed, &model, &target, STARTED);
            assert!(same.install_failed || same.health_failed, "{kind}");
        }
    }

    #[test]
    fn a_failure_keeps_the_time_it_was_first_seen() {
        let mut rec = record("1.0.0", UpdatePhase::Idle, None);
        let model: ModelName = "m".parse().unwrap();
        let mut report = ferry_shared::wire::DeviceReport {
            models: rec.models.clone(),
            events: Vec::new(),
            metrics: Vec::new(),
        };
        report.models[0].last_error = Some(InstallError {
            version: "2.0.0".parse().unwrap(),
            kind: ErrorKind::Integrity,
            message: "bad".into(),
            at: 1,
        });
        crate::fleet::summary::merge_report(&mut rec, &report, 100);
        crate::fleet::summary::merge_report(&mut rec, &report, 200);
        assert_eq!(rec.error_seen_at(&model), 100, "the same failure again");
        report.models[0].last_error.as_mut().unwrap().message = "worse".into();
        crate::fleet::summary::merge_report(&mut rec, &report, 300);
        assert_eq!(rec.error_seen_at(&model), 300, "a new failure");
        report.models[0].last_error = None;
        crate::fleet::summary::merge_report(&mut rec, &report, 400);
        assert_eq!(rec.error_seen_at(&model), 0, "no failure, no time");
    }

    #[test]
    fn a_device_pinned_to_another_version_is_left_out_of_the_rollout() {
        let id = DeviceId::of(&SecretKey::from_seed(&[1; 32]).public());
        let model: ModelName = "m".parse().unwrap();
        let target: Version = "2.0.0".parse().unwrap();
        let plan = ferry_shared::rollout::Plan::with_default_waves(
            "r",
            model.clone(),
            target.clone(),
            ferry_shared::rollout::Selector::all(),
        );
        let rollout = RolloutRecord {
            state: ferry_shared::rollout::RolloutState::start(&plan, STARTED),
            plan,
            alias: "prod".parse().unwrap(),
            created_by: "t".into(),
            created_at: STARTED,
            created_at_ms: STARTED * 1000,
            updated_at: STARTED,
            final_gates: Vec::new(),
        };
        let (metrics, presence) = (FleetMetrics::default(), Presence::default());
        let live = Live {
            metrics: &metrics,
            presence: &presence,
        };
        let rec = record("1.0.0", UpdatePhase::Idle, None);
        let pinned_to =
            |v: &str| Pins::from([((id.to_string(), model.clone()), v.parse().unwrap())]);
        let facts = |pins: &Pins| facts_from(live, pins, [(&id, &rec)], &rollout).remove(0);
        assert!(!facts(&Pins::new()).pinned);
        assert!(facts(&pinned_to("1.0.0")).pinned, "held at another version");
        assert!(
            !facts(&pinned_to("2.0.0")).pinned,
            "pinned to the target itself"
        );
    }
}
