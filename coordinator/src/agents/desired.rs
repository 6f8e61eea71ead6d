//! What each device should run, computed cheaply enough to push to ten thousand sessions at
//! once: the alias's desired state is computed once per change and shared, and the rollouts
//! that may steer a device are kept in memory, so a device's own record is read only when a
//! rollout of its model could apply to it. Both caches are invalidated by the same
//! announcement that wakes the sessions, and a value computed from before an invalidation is
//! never stored after it (a generation counter guards the race). The caches themselves are
//! [`crate::agents::desired_cache`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_shared::rollout::{Desired, Phase, desired};
use ferry_shared::wire::{DesiredRelease, DesiredState, DeviceId, Follow, Policy, TrustBundle};
use ferry_shared::{ModelName, Version};

use crate::app::Coordinator;
use crate::rollout::facts::facts_of;
use crate::store::StoreError;
use crate::store::pins::Pins;
use crate::store::records::DeviceRecord;
use crate::store::rollouts::RolloutRecord;

/// Where a device's record is found when a rollout may steer it: read from the store one by
/// one (a session starting), or read ahead for a whole push pass ([`Records::ahead`]). On a
/// shared database a read per device is a few round trips: 3,300 devices of a node took
/// 2.3 s to be told of a rollback, where one scan of the table takes a few hundred ms.
pub(crate) enum Records {
    /// Each from the store.
    Store,
    /// Every device's, read in one pass.
    Ahead(HashMap<DeviceId, DeviceRecord>),
}

impl Records {
    /// Every device's record, read ahead when a rollout steers devices following one of
    /// `aliases` (and so devices' records will be needed); else [`Records::Store`].
    pub(crate) fn ahead(
        app: &Coordinator,
        aliases: &[(ModelName, ferry_shared::AliasName)],
    ) -> Result<Self, StoreError> {
        let steering = steering(app)?;
        let needed = steering.iter().any(|r| {
            aliases
                .iter()
                .any(|(model, alias)| &r.plan.model == model && &r.alias == alias)
        });
        if !needed {
            return Ok(Records::Store);
        }
        Ok(Records::Ahead(app.store.devices()?.into_iter().collect()))
    }

    fn get(&self, app: &Coordinator, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        match self {
            Records::Store => app.store.device(id),
            Records::Ahead(all) => Ok(all.get(id).cloned()),
        }
    }
}

/// The root chain and a snapshot of `model` fresh enough to send (re-assembled after an
/// invalidation or half the snapshot's lifetime); `None` before any root was pushed.
fn trust_bundle(
    app: &Coordinator,
    model: &ModelName,
    now: u64,
) -> Result<Option<Arc<TrustBundle>>, StoreError> {
    let generation = {
        let inner = app.desired.lock();
        if let Some((at, bundle)) = inner.trust.get(model)
            && now.saturating_sub(*at) < crate::registry::snapshots::SNAPSHOT_TTL_SECS / 2
        {
            return Ok(bundle.clone());
        }
        inner.generation
    };
    let roots = app.store.roots()?;
    let bundle = match app.snapshot(model, now)? {
        Some(snapshot) if !roots.is_empty() => Some(Arc::new(TrustBundle {
            roots,
            snapshot: snapshot.as_ref().clone(),
        })),
        _ => None,
    };
    let mut inner = app.desired.lock();
    if inner.generation == generation {
        inner.trust.insert(model.clone(), (now, bundle.clone()));
    }
    Ok(bundle)
}

/// What `device`, following `follow`, should run now, with the trust metadata to check it by.
pub(crate) fn desired_state(
    app: &Coordinator,
    follow: &Follow,
    device: &DeviceId,
    records: &Records,
) -> Result<DesiredState, StoreError> {
    let mut state = desired_release(app, follow, device, records)?;
    state.trust = trust_bundle(app, &follow.model, crate::unix_now())?.map(|b| (*b).clone());
    Ok(state)
}

/// What `device`, following `follow`, should run now: what the newest rollout steering it
/// says, else the alias's version.
pub(crate) fn desired_release(
    app: &Coordinator,
    follow: &Follow,
    device: &DeviceId,
    records: &Records,
) -> Result<DesiredState, StoreError> {
    let generation = app.desired.lock().generation;
    // An operator's pin comes before the alias and any rollout.
    if let Some(version) = pins(app)?.get(&(device.to_string(), follow.model.clone())) {
        return state_for(app, follow, Some(version.clone()), None);
    }
    let steering = steering(app)?;
    let steered = if steering
        .iter()
        .any(|r| r.plan.model == follow.model && r.alias == follow.alias)
    {
        steered(app, &steering, follow, device, records)?
    } else {
        Desired::Untouched
    };
    let candidate = match steered {
        Desired::Run(version) => return state_for(app, follow, Some(version), None),
        Desired::Shadow(candidate) => Some(candidate),
        Desired::Untouched => None,
    };
    let key = (follow.model.clone(), follow.alias.clone());
    let cached = app.desired.lock().by_alias.get(&key).cloned();
    let state = match cached {
        Some(hit) => (*hit).clone(),
        None => {
            let version = app
                .store
                .alias(&follow.model, &follow.alias)?
                .map(|record| record.version);
            let state = state_for(app, follow, version, None)?;
            let mut inner = app.desired.lock();
            if inner.generation == generation {
                inner.by_alias.insert(key, Arc::new(state.clone()));
            }
            state
        }
    };
    match candidate {
        // The alias's version keeps serving; the candidate is staged beside it.
        Some(candidate) => Ok(DesiredState {
            candidate: release(app, &follow.model, Some(candidate))?,
            ..state
        }),
        None => Ok(state),
    }
}

/// The devices operators pinned (cached until the next invalidation).
pub(crate) fn pins(app: &Coordinator) -> Result<Arc<Pins>, StoreError> {
    let (generation, cached) = {
        let inner = app.desired.lock();
        (inner.generation, inner.pins.clone())
    };
    if let Some(pins) = cached {
        return Ok(pins);
    }
    let all = Arc::new(app.store.pinned_versions()?);
    let mut inner = app.desired.lock();
    if inner.generation == generation {
        inner.pins = Some(all.clone());
    }
    Ok(all)
}

/// The rollouts that steer devices (cached until the next invalidation).
fn steering(app: &Coordinator) -> Result<Arc<Vec<RolloutRecord>>, StoreError> {
    let (generation, cached) = {
        let inner = app.desired.lock();
        (inner.generation, inner.steering.clone())
    };
    if let Some(steering) = cached {
        return Ok(steering);
    }
    let all = Arc::new(steering_rollouts(app)?);
    let mut inner = app.desired.lock();
    if inner.generation == generation {
        inner.steering = Some(all.clone());
    }
    Ok(all)
}

/// The rollouts that steer devices, newest first: those running or awaiting approval, and
/// those rolled back (their devices return to what they ran before) until a newer rollout of
/// the same model and alias is created or the alias is set after the rollback.
fn steering_rollouts(app: &Coordinator) -> Result<Vec<RolloutRecord>, StoreError> {
    let mut all = app.store.rollouts()?;
    all.reverse();
    let mut out: Vec<RolloutRecord> = Vec::new();
    for (i, r) in all.iter().enumerate() {
        let steers = match r.state.phase {
            Phase::Running | Phase::AwaitingApproval => true,
            Phase::Completed | Phase::Aborted => false,
            Phase::RolledBack => {
                let newer = all[..i]
                    .iter()
                    .any(|n| n.plan.model == r.plan.model && n.alias == r.alias);
                let alias_set_since = app
                    .store
                    .alias(&r.plan.model, &r.alias)?
                    .is_some_and(|a| a.set_at > r.updated_at);
                !newer && !alias_set_since
            }
        };
        if steers {
            out.push(r.clone());
        }
    }
    Ok(out)
}

fn state_for(
    app: &Coordinator,
    follow: &Follow,
    version: Option<Version>,
    candidate: Option<Version>,
) -> Result<DesiredState, StoreError> {
    Ok(DesiredState {
        model: follow.model.clone(),
        alias: follow.alias.clone(),
        release: release(app, &follow.model, version)?,
        candidate: release(app, &follow.model, candidate)?,
        trust: None,
    })
}

/// The signed envelope of `model` `version`, as agents receive it (cached until the next
/// invalidation: every device of a wave is told the same one).
fn release(
    app: &Coordinator,
    model: &ModelName,
    version: Option<Version>,
) -> Result<Option<DesiredRelease>, StoreError> {
    let Some(version) = version else {
        return Ok(None);
    };
    let key = (model.clone(), version);
    let generation = {
        let inner = app.desired.lock();
        if let Some(hit) = inner.releases.get(&key) {
            return Ok(hit.clone());
        }
        inner.generation
    };
    let found = app
        .store
        .release(model, &key.1)?
        .map(|(release, stored)| DesiredRelease {
            version: release.version,
            envelope: stored.envelope,
        });
    let mut inner = app.desired.lock();
    if inner.generation == generation {
        inner.releases.insert(key, found.clone());
    }
    Ok(found)
}

/// The coordinator's rules for `device` (protocol 7): the windows of the first
/// `[[maintenance]]` cohort it falls in, and the targets of the rollouts started with `--now`
/// that steer it.
pub(crate) fn policy(
    app: &Coordinator,
    device: &DeviceId,
    follows: &[Follow],
    records: &Records,
) -> Result<Policy, StoreError> {
    let steering = steering(app)?;
    // Nothing to say (the common case): no read of the device's record.
    if app.config.maintenance.is_empty() && !steering.iter().any(|r| r.plan.switch_now) {
        return Ok(Policy::default());
    }
    let Some(record) = records.get(app, device)? else {
        return Ok(Policy::default());
    };
    let windows = app
        .config
        .maintenance
        .iter()
        .find(|m| m.cohort.matches(&record.labels))
        .map(|m| m.windows.clone())
        .unwrap_or_default();
    let mut now = Vec::new();
    for follow in follows {
        let Some(rollout) = steering.iter().find(|r| {
            r.plan.model == follow.model
                && r.alias == follow.alias
                && r.plan.cohort.matches(&record.labels)
        }) else {
            continue;
        };
        if !rollout.plan.switch_now {
            continue;
        }
        let facts = facts_of(
            device,
            &record,
            &follow.model,
            &rollout.plan.target,
            rollout.created_at_ms,
        );
        if let Desired::Run(v) | Desired::Shadow(v) = desired(&rollout.plan, &rollout.state, &facts)
        {
            now.push((follow.model.clone(), v));
        }
    }
    Ok(Policy { windows, now })
}

/// What the newest of `steering` that covers `device` through `follow` wants of it
/// (`Untouched` when none does). A rolled-back rollout keeps its devices on the versions they
/// ran before until a newer rollout replaces it.
fn steered(
    app: &Coordinator,
    steering: &[RolloutRecord],
    follow: &Follow,
    device: &DeviceId,
    records: &Records,
) -> Result<Desired, StoreError> {
    let Some(record) = records.get(app, device)? else {
        return Ok(Desired::Untouched);
    };
    let model = &follow.model;
    // A rollout steers the devices that follow its alias; other aliases of the model
    // (staging, latest) keep their own.
    for rollout in steering
        .iter()
        .filter(|r| &r.plan.model == model && r.alias == follow.alias)
    {
        let facts = facts_of(
            device,
            &record,
            model,
            &rollout.plan.target,
            rollout.created_at_ms,
        );
        if !rollout.plan.cohort.matches(&facts.labels) {
            continue;
        }
        return Ok(desired(&rollout.plan, &rollout.state, &facts));
    }
    Ok(Desired::Untouched)
}
