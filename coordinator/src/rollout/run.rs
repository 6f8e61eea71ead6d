//! Running rollouts: the edges around the pure engine in `ferry_shared::rollout`. Facts come
//! from the device records agents keep current, decisions are applied and persisted with their
//! audit entries in one transaction, and every change is pushed to the open sessions of the
//! rollout's alias. A device's desired version is its newest steering rollout's say, else the
//! alias's.

use std::sync::Arc;
use std::time::Duration;

use ferry_shared::rollout::{
    BUCKETS, Command, Decision, DeviceFacts, Gate, Plan, RolloutState, Selector, Wave, evaluate,
    gates,
};
use ferry_shared::wire::{DeviceId, ErrorKind, Phase as UpdatePhase};
use ferry_shared::{AliasName, ModelName, Version};
use tracing::{info, warn};

use crate::api::{CreateRollout, SetAlias};
use crate::app::Coordinator;
use crate::registry::publish::{self, RegistryError};
use crate::rules::access::PRODUCTION_ALIAS;
use crate::store::StoreError;
use crate::store::audit::Change;
use crate::store::records::DeviceRecord;
use crate::store::rollouts::{RolloutRecord, reason};

/// The longest a wave may bake.
const MAX_BAKE_SECS: u64 = 90 * 86_400;

/// Who the coordinator's own rollout actions are recorded as.
const ENGINE: &str = "rollout-engine";

/// What the engine sees of one device, for a rollout of `model` to `target` that started at
/// `since` (Unix milliseconds, coordinator clock). A failure counts against the release only when the device
/// reported it after the rollout started (a new rollout is never judged by an earlier one's
/// failures), and only when it concerns the release: a lost connection, a coordinator
/// restart or a full disk is retried by the agent and leaves the device without an outcome,
/// unless it gave up on the version for good.
pub fn facts_of(
    id: &DeviceId,
    record: &DeviceRecord,
    model: &ModelName,
    target: &Version,
    since: u64,
) -> DeviceFacts {
    let report = record.models.iter().find(|m| &m.model == model);
    let held = report.is_some_and(
        |r| matches!(&r.phase, UpdatePhase::Held { version, .. } if version == target),
    );
    let failure = report
        .and_then(|r| r.last_error.as_ref())
        .filter(|e| &e.version == target && record.error_seen_at(model) >= since)
        .filter(|e| !e.kind.is_retried() || held);
    DeviceFacts {
        id: Some(id.clone()),
        labels: record.labels.clone(),
        current: report.and_then(|r| r.active.clone()),
        previous: report.and_then(|r| r.previous.clone()),
        candidate: report.and_then(|r| r.candidate.clone()),
        installing: report.is_some_and(|r| match &r.phase {
            UpdatePhase::Fetching(v) | UpdatePhase::Probation(v) => v == target,
            UpdatePhase::Retrying { version, .. } => version == target,
            _ => false,
        }),
        install_failed: failure.is_some_and(|e| e.kind != ErrorKind::HealthCheck),
        // A version held after a hand rollback is an operator's call, not a failed check.
        health_failed: failure.is_some_and(|e| e.kind == ErrorKind::HealthCheck),
        // Holding the target back: it will not take it until released on the device.
        pinned: held && report.and_then(|r| r.active.as_ref()) != Some(target),
        offline_since: None,
        retrying: report
            .filter(
                |r| matches!(&r.phase, UpdatePhase::Retrying { version, .. } if version == target),
            )
            .and_then(|r| r.last_error.as_ref())
            .map(|e| format!("{}: {}", e.kind, e.message)),
        metrics: Default::default(),
    }
}

/// Every enrolled device's facts for `rollout`, with the metrics it last reported.
pub fn fleet_facts(
    app: &Coordinator,
    rollout: &RolloutRecord,
) -> Result<Vec<DeviceFacts>, StoreError> {
    let devices = app.store.devices()?;
    Ok(facts_from(
        app,
        devices.iter().map(|(id, r)| (id, r)),
        rollout,
    ))
}

/// The facts for `rollout` of `devices` (records read once, for several rollouts).
pub fn facts_from<'a>(
    app: &Coordinator,
    devices: impl IntoIterator<Item = (&'a DeviceId, &'a DeviceRecord)>,
    rollout: &RolloutRecord,
) -> Vec<DeviceFacts> {
    let plan = &rollout.plan;
    devices
        .into_iter()
        .map(|(id, record)| {
            let mut facts = facts_of(id, record, &plan.model, &plan.target, rollout.created_at_ms);
            facts.metrics = app.metrics.of(id, &plan.model);
            let (connected, live_seen) = app.presence.get(id).unwrap_or((false, 0));
            facts.offline_since = (!connected).then(|| record.last_seen.max(live_seen));
            facts
        })
        .collect()
}

/// The plan a request describes.
pub fn plan_of(request: &CreateRollout) -> Result<Plan, String> {
    let model: ModelName = request
        .model
        .parse()
        .map_err(|e: ferry_shared::name::NameError| e.to_string())?;
    let cohort = Selector::parse(&request.cohort).map_err(|e| e.to_string())?;
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", request.model, request.version));
    if id.is_empty()
        || id.len() > 128
        || id.contains(['/', ' '])
        || id.chars().any(char::is_control)
    {
        return Err(format!(
            "rollout id {id:?} must be 1–128 characters without '/' or spaces"
        ));
    }
    let mut plan = Plan::with_default_waves(&id, model, request.version.clone(), cohort);
    if let Some(waves) = &request.waves {
        plan.waves = waves
            .iter()
            .map(|w| {
                if !(w.percent > 0.0 && w.percent <= 100.0) {
                    return Err(format!("wave share {} % is outside (0, 100]", w.percent));
                }
                if w.bake_secs > MAX_BAKE_SECS {
                    return Err(format!(
                        "a wave bakes at most {MAX_BAKE_SECS} s (90 days), not {}",
                        w.bake_secs
                    ));
                }
                Ok(Wave {
                    share: ((w.percent * 100.0).round() as u32).min(BUCKETS),
                    min_bake_secs: w.bake_secs,
                    gates: w.gates.clone().unwrap_or_else(Gate::defaults),
                    shadow: w.shadow,
                    needs_approval: w.approval,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(secs) = request.unreachable_after_secs {
        if secs > MAX_BAKE_SECS {
            return Err(format!(
                "unreachable_after_secs is at most {MAX_BAKE_SECS} (90 days), not {secs}"
            ));
        }
        plan.stragglers.unreachable_after_secs = secs;
    }
    if let Some(percent) = request.max_left_out_percent {
        plan.stragglers.max_left_out = percent / 100.0;
    }
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

/// The rollout a promotion to production starts: the waves, gates and cohort of the plan
/// file (a `POST /api/v1/rollouts` body; its model and version, if any, give way to the
/// release's), moving `prod`. Read and checked at start-up too, so a broken file is found then.
pub fn promotion_plan(
    file: &std::path::Path,
    model: &ModelName,
    version: &Version,
) -> Result<Plan, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the rollout plan {}: {e}", file.display()))?;
    let mut body: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("rollout plan {}: {e}", file.display()))?;
    let fields = body
        .as_object_mut()
        .ok_or_else(|| format!("rollout plan {}: not a JSON object", file.display()))?;
    fields.insert("model".into(), model.to_string().into());
    fields.insert("version".into(), version.to_string().into());
    fields.remove("id");
    let request: CreateRollout = serde_json::from_value(body)
        .map_err(|e| format!("rollout plan {}: {e}", file.display()))?;
    if request
        .alias
        .as_deref()
        .is_some_and(|a| a != PRODUCTION_ALIAS)
    {
        return Err(format!(
            "rollout plan {}: a promotion to production moves `{PRODUCTION_ALIAS}`, not {:?}",
            file.display(),
            request.alias
        ));
    }
    plan_of(&request).map_err(|e| format!("rollout plan {}: {e}", file.display()))
}

/// A new rollout's record, started at `now`. Its start is also taken to the millisecond, here:
/// failures devices report are ordered against it.
pub fn new_record(plan: Plan, alias: AliasName, actor: &str, now: u64) -> RolloutRecord {
    RolloutRecord {
        created_at_ms: crate::unix_now_ms().max(now.saturating_mul(1000)),
        state: RolloutState::start(&plan, now),
        plan,
        alias,
        created_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
        final_gates: Vec::new(),
    }
}

/// Creates and starts a rollout.
pub fn create(
    app: &Coordinator,
    plan: Plan,
    alias: AliasName,
    actor: &str,
    why: &str,
    force: bool,
    now: u64,
) -> Result<RolloutRecord, RegistryError> {
    plan.validate()
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    crate::registry::publish::refuse_unservable(app, &plan.model, &plan.target, now)?;
    crate::registry::stages::check_may_serve(app, &plan.model, &alias, &plan.target)?;
    let forced = crate::registry::compat::check_fit(
        app,
        &plan.model,
        &alias,
        &plan.target,
        Some(&plan.cohort),
        force,
    )?;
    let why = match forced {
        Some(note) if why.is_empty() => note,
        Some(note) => format!("{why} ({note})"),
        None => why.to_owned(),
    };
    let record = new_record(plan, alias, actor, now);
    app.store.create_rollout(&record, &why)?;
    info!(rollout = %record.plan.id, model = %record.plan.model, version = %record.plan.target, by = actor, "rollout created");
    app.announce(&record.plan.model, &record.alias);
    Ok(record)
}

/// An operator's action on a rollout.
pub fn command(
    app: &Coordinator,
    id: &str,
    command: Command,
    actor: &str,
    why: &str,
    now: u64,
) -> Result<RolloutRecord, RegistryError> {
    let mut record = app
        .store
        .rollout(id)?
        .ok_or_else(|| StoreError::NoSuchRollout(id.to_owned()))?;
    let action = match &command {
        Command::Pause => "rollout.pause",
        Command::Resume => "rollout.resume",
        Command::Approve => "rollout.approve",
        Command::Abort(_) => "rollout.abort",
        Command::RollBack(_) => "rollout.rollback",
    };
    let before = record.state.clone();
    record
        .state
        .command(&command, now)
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let final_gates = if record.state.phase.is_terminal() {
        let facts = fleet_facts(app, &record)?;
        Some(gates(&record.plan, &before, &facts, now))
    } else {
        None
    };
    let record = app.store.update_rollout(
        id,
        &record.state,
        final_gates.as_deref(),
        Change {
            at: now,
            actor,
            action,
            subject: id.to_owned(),
            detail: format!("{}{}", transition(&before, &record.state), reason(why)),
        },
    )?;
    info!(rollout = id, by = actor, action, "rollout changed");
    app.announce(&record.plan.model, &record.alias);
    Ok(record)
}

fn transition(before: &RolloutState, after: &RolloutState) -> String {
    format!(
        "{:?} wave {} -> {:?} wave {}{}",
        before.phase,
        before.in_force,
        after.phase,
        after.in_force,
        if after.paused { " (paused)" } else { "" }
    )
}

/// One engine step for every active rollout: evaluate, persist and announce what changed.
pub fn step(app: &Coordinator, now: u64) -> Result<(), RegistryError> {
    for record in app
        .store
        .rollouts()?
        .into_iter()
        .filter(RolloutRecord::is_active)
    {
        let facts = fleet_facts(app, &record)?;
        let evaluation = evaluate(&record.plan, &record.state, &facts, now);
        let mut state = record.state.clone();
        for decision in &evaluation.decisions {
            state.apply(decision, now);
            let (action, detail) = match decision {
                Decision::Advance { wave } => {
                    ("rollout.advance", format!("wave {} in force", wave + 1))
                }
                Decision::AwaitApproval { wave } => (
                    "rollout.await-approval",
                    format!("wave {} waits for approval", wave + 1),
                ),
                Decision::Complete => {
                    ("rollout.complete", "every wave passed its gates".to_owned())
                }
                Decision::RollBack { reason } => ("rollout.auto-rollback", reason.clone()),
            };
            if *decision == Decision::Complete {
                // The fleet now runs the target: the alias says so from here on. Moved before
                // the rollout is marked complete, so there is no moment where neither steers
                // devices to the target (a crash in between completes it again next tick).
                publish::set_alias(
                    app,
                    &record.plan.model,
                    &record.alias,
                    SetAlias {
                        version: record.plan.target.clone(),
                        reason: Some(format!("rollout {} completed", record.plan.id)),
                        // The fit was checked (or forced) when the rollout was created.
                        force: true,
                    },
                    &format!("{ENGINE} ({})", record.plan.id),
                    now,
                )?;
            }
            let ended = state
                .phase
                .is_terminal()
                .then_some(evaluation.gates.as_slice());
            app.store.update_rollout(
                &record.plan.id,
                &state,
                ended,
                Change {
                    at: now,
                    actor: ENGINE,
                    action,
                    subject: record.plan.id.clone(),
                    detail: detail.clone(),
                },
            )?;
            info!(rollout = %record.plan.id, action, "{detail}");
        }
        if !evaluation.decisions.is_empty() {
            app.announce(&record.plan.model, &record.alias);
        }
    }
    Ok(())
}

/// Steps the engine every `tick` until the process ends.
pub async fn drive(app: Arc<Coordinator>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let app = app.clone();
        let result = tokio::task::spawn_blocking(move || step(&app, crate::unix_now())).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("rollout step failed: {e}"),
            Err(e) => warn!("rollout step panicked: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferry_shared::sign::SecretKey;
    use ferry_shared::wire::{InstallError, ModelReport, Phase as UpdatePhase};

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
}
