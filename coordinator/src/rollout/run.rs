//! Running rollouts: the edges around the pure engine in `ferry_shared::rollout`. Facts come
//! from the device records agents keep current, decisions are applied and persisted with their
//! audit entries in one transaction, and every change is pushed to the open sessions of the
//! rollout's alias. A device's desired version is its newest steering rollout's say, else the
//! alias's.

use std::sync::Arc;
use std::time::Duration;

use ferry_shared::AliasName;
use ferry_shared::rollout::{Command, Decision, DeviceFacts, Plan, RolloutState, evaluate, gates};
use tracing::{info, warn};

use super::facts::facts_from;
use super::gate_history;
use crate::api::SetAlias;
use crate::app::Coordinator;
use crate::registry::admission::{By, Pointing};
use crate::registry::error::RegistryError;
use crate::registry::publish;
use crate::registry::rollout_plans::new_record;
use crate::store::StoreError;
use crate::store::audit::Change;
use crate::store::rollouts::{RolloutRecord, reason};

/// Who the coordinator's own rollout actions are recorded as.
const ENGINE: &str = "rollout-engine";

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
    create_by(app, plan, alias, actor, why, force, now, By::AliasOrRollout)
}

/// Creates and starts a rollout on behalf of `by` (an experiment's split may serve a release
/// not yet in production; see [`By::Experiment`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_by(
    app: &Coordinator,
    plan: Plan,
    alias: AliasName,
    actor: &str,
    why: &str,
    force: bool,
    now: u64,
    by: By,
) -> Result<RolloutRecord, RegistryError> {
    plan.validate()
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let forced = app.admit(&Pointing {
        model: &plan.model,
        alias: &alias,
        version: &plan.target,
        cohort: Some(&plan.cohort),
        by,
        force,
        now,
    })?;
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
    // An experiment's split waits at its second wave for the experiment's decision, which
    // goes through the production stage's gates; approving the rollout would go around them.
    if command == Command::Approve
        && let Some(experiment) = app.store.experiment(id)?
        && experiment.outcome().is_none()
    {
        return Err(RegistryError::Invalid(format!(
            "{id} splits experiment {id}: decide it (`ferryctl experiment decide {id} promote`) instead of approving its rollout"
        )));
    }
    let before = record.state.clone();
    record
        .state
        .command(&command, now)
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let final_gates = if record.state.phase.is_terminal() {
        let facts = facts_now(app, &record)?;
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

/// Every enrolled device's facts for `rollout` as the coordinator knows them now: the metrics
/// each last reported and its presence (see [`Coordinator::live_view`]), and the pins.
pub(crate) fn facts_now(
    app: &Coordinator,
    rollout: &RolloutRecord,
) -> Result<Vec<DeviceFacts>, StoreError> {
    let devices = app.store.devices()?;
    Ok(facts_from(
        app.live_view()?.live(),
        &app.store.pinned_versions()?,
        devices.iter().map(|(id, r)| (id, r)),
        rollout,
    ))
}

/// One engine step for every active rollout: evaluate, persist and announce what changed.
pub fn step(app: &Coordinator, now: u64) -> Result<(), RegistryError> {
    for record in app
        .store
        .rollouts()?
        .into_iter()
        .filter(RolloutRecord::is_active)
    {
        let facts = facts_now(app, &record)?;
        let evaluation = evaluate(&record.plan, &record.state, &facts, now);
        // The chart is no reason to stop the engine: a failed write costs one sample.
        if let Err(e) = gate_history::record(
            &app.store,
            &record.plan.id,
            record.state.in_force.saturating_sub(1),
            now,
            &evaluation.gates,
        ) {
            warn!(rollout = %record.plan.id, "cannot store the gates' values: {e}");
        }
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
                Decision::Downloading { devices } => (
                    "rollout.download-slots",
                    format!(
                        "{} device(s) may download now (at most {})",
                        devices.len(),
                        record.plan.max_downloading.unwrap_or(0)
                    ),
                ),
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

/// The lease that lets one coordinator at a time drive rollouts (see
/// [`crate::store::leases`]).
pub const DRIVER_LEASE: &str = "rollout-driver";

/// Steps the engine every `tick` until the process ends; with other coordinators on the same
/// database, only while this one holds [`DRIVER_LEASE`] (renewed every tick, lapsing three
/// ticks after its holder stops).
pub async fn drive(app: Arc<Coordinator>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = crate::app::lease_ms(tick);
    loop {
        interval.tick().await;
        let app = app.clone();
        let result = tokio::task::spawn_blocking(move || {
            if !app.holds(DRIVER_LEASE, lease_ms)? {
                return Ok(());
            }
            step(&app, crate::unix_now())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("rollout step failed: {e}"),
            Err(e) => warn!("rollout step panicked: {e}"),
        }
    }
}
