//! What each device should run, computed cheaply enough to push to ten thousand sessions at
//! once: the alias's desired state is computed once per change and shared, and the rollouts
//! that may steer a device are kept in memory, so a device's own record is read only when a
//! rollout of its model could apply to it. Both caches are invalidated by the same
//! announcement that wakes the sessions, and a value computed from before an invalidation is
//! never stored after it (a generation counter guards the race).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_shared::rollout::{Desired, Phase, desired};
use ferry_shared::wire::{DesiredRelease, DesiredState, DeviceId, Follow};
use ferry_shared::{AliasName, ModelName, Version};

use crate::app::Coordinator;
use crate::rollouts::facts_of;
use crate::store::StoreError;
use crate::store::rollouts::RolloutRecord;

/// The caches.
#[derive(Default)]
pub struct DesiredCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    by_alias: HashMap<(ModelName, AliasName), Arc<DesiredState>>,
    /// Rollouts that can steer devices (not completed, not aborted), newest first.
    steering: Option<Arc<Vec<RolloutRecord>>>,
}

impl DesiredCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (an alias or a rollout changed).
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.by_alias.clear();
        inner.steering = None;
    }
}

/// What `device`, following `follow`, should run now: what the newest rollout steering it
/// says, else the alias's version.
pub fn desired_state(
    app: &Coordinator,
    follow: &Follow,
    device: &DeviceId,
) -> Result<DesiredState, StoreError> {
    let (generation, steering) = {
        let inner = app.desired.lock();
        (inner.generation, inner.steering.clone())
    };
    let steering = match steering {
        Some(s) => s,
        None => {
            let mut all = app.store.rollouts()?;
            all.retain(|r| !matches!(r.state.phase, Phase::Completed | Phase::Aborted));
            all.reverse();
            let all = Arc::new(all);
            let mut inner = app.desired.lock();
            if inner.generation == generation {
                inner.steering = Some(all.clone());
            }
            all
        }
    };
    if steering
        .iter()
        .any(|r| r.plan.model == follow.model && r.alias == follow.alias)
        && let Some(version) = steered_version(app, &steering, follow, device)?
    {
        return state_for(app, follow, Some(version));
    }
    let key = (follow.model.clone(), follow.alias.clone());
    if let Some(hit) = app.desired.lock().by_alias.get(&key) {
        return Ok((**hit).clone());
    }
    let version = app
        .store
        .alias(&follow.model, &follow.alias)?
        .map(|record| record.version);
    let state = state_for(app, follow, version)?;
    let mut inner = app.desired.lock();
    if inner.generation == generation {
        inner.by_alias.insert(key, Arc::new(state.clone()));
    }
    Ok(state)
}

fn state_for(
    app: &Coordinator,
    follow: &Follow,
    version: Option<Version>,
) -> Result<DesiredState, StoreError> {
    let release = match version {
        None => None,
        Some(version) => app
            .store
            .release(&follow.model, &version)?
            .map(|(release, stored)| DesiredRelease {
                version: release.version,
                envelope: stored.envelope,
            }),
    };
    Ok(DesiredState {
        model: follow.model.clone(),
        alias: follow.alias.clone(),
        release,
    })
}

/// The version the newest of `steering` that covers `device` through `follow` wants it on,
/// if any. A
/// rolled-back rollout keeps its devices on the versions they ran before until a newer
/// rollout replaces it.
fn steered_version(
    app: &Coordinator,
    steering: &[RolloutRecord],
    follow: &Follow,
    device: &DeviceId,
) -> Result<Option<Version>, StoreError> {
    let Some(record) = app.store.device(device)? else {
        return Ok(None);
    };
    let model = &follow.model;
    // A rollout steers the devices that follow its alias; other aliases of the model
    // (staging, latest) keep their own.
    for rollout in steering
        .iter()
        .filter(|r| &r.plan.model == model && r.alias == follow.alias)
    {
        let facts = facts_of(device, &record, model, &rollout.plan.target);
        if !rollout.plan.cohort.matches(&facts.labels) {
            continue;
        }
        return Ok(match desired(&rollout.plan, &rollout.state, &facts) {
            Desired::Run(version) => Some(version),
            // Agents cannot stage a shadow candidate yet: the device keeps what the alias says.
            Desired::Shadow(_) | Desired::Untouched => None,
        });
    }
    Ok(None)
}
