//! Stage operations: move a release between stages under the configured policies, approve
//! its promotion, and show where it stands. The decisions are the pure lifecycle's
//! ([`crate::rules::lifecycle`]); this gathers their evidence from the store and carries out what
//! they decide in one transaction.
//!
//! Once `[stages.production]` is configured, production is gated: `prod` may point only at a
//! release in production (or deprecated: a rollback to what served before), so neither an
//! alias move nor a rollout goes around the policy.

use std::collections::BTreeMap;

use ferry_shared::{AliasName, ModelName, Release, Version};

use crate::api::{StageView, TransitionView};
use crate::app::Coordinator;
use crate::registry::admission::{By, Pointing};
use crate::registry::error::RegistryError;
use crate::rules::access::PRODUCTION_ALIAS;
use crate::rules::lifecycle::{Approval, Evidence, OnPromote, Stage, StageMove, evaluate};
use crate::store::StoreError;
use crate::store::records::AliasRecord;
use crate::store::stages::{MoveEffects, StageRecord};

/// The stages from which approvals toward production may be given.
const APPROVABLE: [Stage; 2] = [Stage::Staging, Stage::Deprecated];

fn no_release(model: &ModelName, version: &Version) -> RegistryError {
    RegistryError::Store(StoreError::NoSuchRelease {
        name: model.to_string(),
        version: version.to_string(),
    })
}

fn prod_alias() -> Result<AliasName, RegistryError> {
    PRODUCTION_ALIAS
        .parse()
        .map_err(|e: ferry_shared::name::NameError| RegistryError::Invalid(e.to_string()))
}

/// What a move would meet.
struct Judged {
    /// The release's record now.
    record: StageRecord,
    /// The target stage's checks.
    checks: Vec<crate::rules::lifecycle::Check>,
    /// Every release of the model, by version.
    all: BTreeMap<Version, StageRecord>,
}

/// What a move of `model` `version` to `to` would meet: the policy's checks, with the
/// release's current record. Refused outright when the lifecycle has no such move.
fn judge(
    app: &Coordinator,
    model: &ModelName,
    version: &Version,
    to: Stage,
) -> Result<Judged, RegistryError> {
    let (release, _) = app
        .store
        .release(model, version)?
        .ok_or_else(|| no_release(model, version))?;
    let all = app.store.stages(model)?;
    let record = all
        .get(version)
        .cloned()
        .ok_or_else(|| no_release(model, version))?;
    if !record.stage.can_move_to(to) {
        return Err(RegistryError::Invalid(format!(
            "{model} {version} is in {}: it may move to {}, not {to}",
            record.stage,
            record
                .stage
                .next()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let checks = match app.config.stages.get(&to) {
        Some(policy) => {
            let baseline = baseline(app, model, version, &all)?;
            evaluate(
                policy,
                Evidence {
                    release: &release,
                    baseline: baseline.as_ref(),
                    approvals: &record.approvals,
                },
            )
        }
        None => Vec::new(),
    };
    Ok(Judged {
        record,
        checks,
        all,
    })
}

/// What a release is compared with: the one `prod` points at, else the newest other release
/// in production.
fn baseline(
    app: &Coordinator,
    model: &ModelName,
    version: &Version,
    stages: &BTreeMap<Version, StageRecord>,
) -> Result<Option<Release>, RegistryError> {
    let prod = app.store.alias(model, &prod_alias()?)?.map(|a| a.version);
    let chosen = prod.filter(|v| v != version).or_else(|| {
        stages
            .iter()
            .rev()
            .find(|(v, r)| *v != version && r.stage == Stage::Production)
            .map(|(v, _)| v.clone())
    });
    Ok(match chosen {
        Some(v) => app.store.release(model, &v)?.map(|(release, _)| release),
        None => None,
    })
}

/// A stage change asked for.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The model of the release moved.
    pub model: &'a ModelName,
    /// The release moved.
    pub version: &'a Version,
    /// The stage to move it to.
    pub to: Stage,
    /// Who asks.
    pub actor: &'a str,
    /// Why, as the caller gave it; it goes into the audit entry.
    pub reason: Option<String>,
    /// Only evaluate the checks.
    pub dry_run: bool,
    /// Let a promotion that moves `prod` past the fleet's schema checks.
    pub force: bool,
}

/// Moves a release to another stage if the lifecycle allows it and every check of the
/// stage's policy passes; on a dry run, only says what the checks find. A refusal (`error`)
/// names each failing check. Entering production deprecates what was in production and does
/// what the policy's `on_promote` says.
pub(crate) fn transition(
    app: &Coordinator,
    request: Request<'_>,
    now: u64,
) -> Result<TransitionView, RegistryError> {
    let Request {
        model,
        version,
        to,
        actor,
        reason,
        dry_run,
        force,
    } = request;
    let Judged {
        record,
        checks,
        all,
    } = judge(app, model, version, to)?;
    let mut view = TransitionView {
        model: model.to_string(),
        version: version.clone(),
        from: record.stage,
        to,
        moved: false,
        checks,
        deprecated: Vec::new(),
        prod_moved: false,
        rollout: None,
        error: None,
    };
    let failed: Vec<String> = view
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    if !failed.is_empty() {
        view.error = Some(format!(
            "{model} {version} may not move to {to}: {} check(s) failed: {}",
            failed.len(),
            failed.join("; ")
        ));
        return Ok(view);
    }
    // What entering the stage would carry out is prepared (and refused) on a dry run too;
    // preparing it only reads.
    let mut effects = MoveEffects::default();
    let noted = |forced: Option<String>| {
        format!(
            "promoted to production{}{}",
            why(&reason),
            forced.map(|f| format!(" ({f})")).unwrap_or_default()
        )
    };
    let policy = app.config.stages.get(&to);
    if to == Stage::Production {
        effects.deprecate = all
            .iter()
            .filter(|(v, r)| *v != version && r.stage == Stage::Production)
            .map(|(v, _)| v.clone())
            .collect();
        match policy.map(|p| (p.on_promote, p.rollout_plan.as_deref())) {
            Some((OnPromote::Alias, _)) => {
                let forced = app.admit(&Pointing {
                    model,
                    alias: &prod_alias()?,
                    version,
                    cohort: None,
                    by: By::Promotion,
                    force,
                    now,
                })?;
                effects.set_prod = Some((
                    prod_alias()?,
                    AliasRecord {
                        version: version.clone(),
                        set_at: now,
                        set_by: actor.to_owned(),
                        reason: Some(noted(forced)),
                    },
                ));
            }
            Some((OnPromote::Rollout, Some(file))) => {
                let plan = crate::registry::rollout_plans::promotion_plan(file, model, version)
                    .map_err(RegistryError::Invalid)?;
                let forced = app.admit(&Pointing {
                    model,
                    alias: &prod_alias()?,
                    version,
                    cohort: Some(&plan.cohort),
                    by: By::Promotion,
                    force,
                    now,
                })?;
                let record =
                    crate::registry::rollout_plans::new_record(plan, prod_alias()?, actor, now);
                effects.rollout = Some((record, noted(forced)));
            }
            _ => {}
        }
    }
    if dry_run {
        return Ok(view);
    }
    view.deprecated = effects.deprecate.clone();
    view.prod_moved = effects.set_prod.is_some();
    view.rollout = effects.rollout.as_ref().map(|(r, _)| r.plan.id.clone());
    let approvers = record.approvals.iter().map(|a| a.by.clone()).collect();
    let step = StageMove {
        from: record.stage,
        to,
        at: now,
        by: actor.to_owned(),
        reason,
        approvers,
        checks: view.checks.clone(),
    };
    let moves_prod = effects.set_prod.is_some() || effects.rollout.is_some();
    app.store.move_stage(model, version, step, effects)?;
    if moves_prod {
        app.announce(model, &prod_alias()?);
    }
    view.moved = true;
    Ok(view)
}

fn why(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// Records `by`'s approval of `model` `version`'s promotion to production.
pub(crate) fn approve(
    app: &Coordinator,
    model: &ModelName,
    version: &Version,
    by: &str,
    reason: Option<String>,
    now: u64,
) -> Result<StageView, RegistryError> {
    let record = app.store.approve(
        model,
        version,
        Approval {
            by: by.to_owned(),
            at: now,
            reason,
        },
        &APPROVABLE,
    )?;
    Ok(view_of(model, version, record))
}

/// Where `model` `version` stands.
pub(crate) fn view(
    app: &Coordinator,
    model: &ModelName,
    version: &Version,
) -> Result<StageView, RegistryError> {
    let record = app
        .store
        .stage(model, version)?
        .ok_or_else(|| no_release(model, version))?;
    Ok(view_of(model, version, record))
}

fn view_of(model: &ModelName, version: &Version, record: StageRecord) -> StageView {
    StageView {
        model: model.to_string(),
        version: version.clone(),
        stage: record.stage,
        since: record.since,
        next: record.stage.next().to_vec(),
        approvals: record.approvals,
        history: record.history,
    }
}
