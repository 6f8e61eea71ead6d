//! The lifecycle's own moves, carried out: every so often the coordinator (one at a time when
//! several share a database) asks [`crate::rules::lifecycle::automatic::due`] which releases
//! have stood long enough where they are, and moves each through [`super::stages::transition`]
//! — the target stage's checks and all — recorded in the audit trail as `lifecycle-engine`'s.
//! A release an alias points at, or an active rollout takes somewhere, stays put.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_shared::{ModelName, Version};
use tracing::{info, warn};

use super::error::RegistryError;
use super::stages::{Request, transition};
use crate::app::Coordinator;
use crate::rules::lifecycle::automatic::{DueMove, due};

/// Who the lifecycle's own moves are recorded as.
pub const ENGINE: &str = "lifecycle-engine";

/// The lease that lets one coordinator at a time make them.
pub const LEASE: &str = "lifecycle-driver";

/// How often to look: a tenth of the shortest wait the policies name, between a second and a
/// minute; `None` when no policy names one.
pub fn interval(app: &Coordinator) -> Option<Duration> {
    let shortest = app
        .config
        .stages
        .values()
        .flat_map(|p| p.after_days.values())
        .copied()
        .reduce(f64::min)?;
    Some(Duration::from_secs_f64(
        (shortest * 86_400.0 / 10.0).clamp(1.0, 60.0),
    ))
}

/// Makes the due moves every `tick` until the process ends.
pub async fn drive(app: Arc<Coordinator>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = crate::app::lease_ms(tick);
    // Refusals already logged, so a release whose checks fail is named once, not every tick.
    let told: Arc<Mutex<BTreeSet<(ModelName, Version)>>> = Arc::default();
    loop {
        interval.tick().await;
        let (app, told) = (app.clone(), told.clone());
        let result = tokio::task::spawn_blocking(move || {
            if !app.holds(LEASE, lease_ms)? {
                return Ok(());
            }
            step(&app, crate::unix_now(), &told)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("lifecycle step failed: {e}"),
            Err(e) => warn!("lifecycle step panicked: {e}"),
        }
    }
}

/// Makes the moves due at `now`.
pub fn step(
    app: &Coordinator,
    now: u64,
    told: &Mutex<BTreeSet<(ModelName, Version)>>,
) -> Result<(), RegistryError> {
    for due in due_now(app, now)? {
        let key = (due.model.clone(), due.version.clone());
        let view = transition(
            app,
            Request {
                model: &due.model,
                version: &due.version,
                to: due.to,
                actor: ENGINE,
                reason: Some(due.reason()),
                dry_run: false,
                force: false,
            },
            now,
        );
        let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
        match view {
            Ok(v) if v.moved => {
                told.remove(&key);
                info!(model = %due.model, version = %due.version, from = %due.from, to = %due.to, "moved by the lifecycle: {}", due.reason());
            }
            Ok(v) => {
                if told.insert(key) {
                    warn!(model = %due.model, version = %due.version, "due to move to {} but refused: {}", due.to, v.error.unwrap_or_default());
                }
            }
            Err(e) => {
                if told.insert(key) {
                    warn!(model = %due.model, version = %due.version, "due to move to {}: {e}", due.to);
                }
            }
        }
    }
    Ok(())
}

/// The moves due at `now`, from the store.
fn due_now(app: &Coordinator, now: u64) -> Result<Vec<DueMove>, RegistryError> {
    let models: BTreeSet<ModelName> = app
        .store
        .releases(None)?
        .into_iter()
        .map(|(release, _)| release.name)
        .collect();
    let mut stages = BTreeMap::new();
    for model in models {
        let records = app.store.stages(&model)?;
        stages.insert(
            model,
            records
                .into_iter()
                .map(|(v, r)| (v, (r.stage, r.since)))
                .collect(),
        );
    }
    let mut held: BTreeSet<(ModelName, Version)> = app
        .store
        .aliases(None)?
        .into_iter()
        .map(|(model, _, alias)| (model, alias.version))
        .collect();
    held.extend(
        app.store
            .rollouts()?
            .into_iter()
            .filter(|r| r.is_active())
            .map(|r| (r.plan.model, r.plan.target)),
    );
    Ok(due(&app.config.stages, &stages, &held, now))
}
