//! A/B experiments carried out: the split is a rollout the experiment owns — its first wave
//! serves the challenger to the experiment's share of the cohort, its second (everyone) waits
//! for an approval only the decision gives — and the readout compares what the two arms'
//! devices report ([`crate::rules::experiment`]). Deciding records who and why, then:
//! **promote** ends the split and promotes the challenger as an operator would (through
//! `[stages.production]`'s checks and approvals when configured, whose `on_promote` moves
//! `prod` or starts its rollout; else `prod` moves to it); **reject** rolls the split back;
//! **extend** gives it more time.

use ferry_shared::rollout::{BUCKETS, Command, DeviceFacts, Gate, GateKind, Plan, Selector, Wave};
use ferry_shared::{AliasName, ModelName, Version};

use super::facts::facts_from;
use super::run;
use crate::api::{
    CreateExperiment, DecideExperiment, ExperimentArm, ExperimentPhase, ExperimentView, SetAlias,
};
use crate::app::Coordinator;
use crate::registry::admission::By;
use crate::registry::error::RegistryError;
use crate::registry::stages::{Request, transition};
use crate::rules::experiment::{Arm, readout};
use crate::rules::lifecycle::Stage;
use crate::store::experiments::{ExperimentDecision, ExperimentRecord, Verdict};
use crate::store::rollouts::RolloutRecord;

/// The longest an experiment runs before it may be decided: 90 days.
const MAX_DURATION_SECS: u64 = 90 * 86_400;

fn invalid(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(e.to_string())
}

/// Starts an experiment: the challenger on its share of the cohort, against what `alias`
/// points at.
pub(crate) fn create(
    app: &Coordinator,
    request: &CreateExperiment,
    actor: &str,
    now: u64,
) -> Result<ExperimentRecord, RegistryError> {
    let model: ModelName = request.model.parse().map_err(invalid)?;
    let alias: AliasName = request
        .alias
        .as_deref()
        .unwrap_or("prod")
        .parse()
        .map_err(invalid)?;
    let cohort = Selector::parse(&request.cohort).map_err(invalid)?;
    let percent = request.percent.unwrap_or(50.0);
    if !(percent > 0.0 && percent < 100.0) {
        return Err(invalid(format!(
            "the challenger's share is {percent} %: it must be within (0, 100), the rest serving the champion"
        )));
    }
    if request.duration_secs == 0 || request.duration_secs > MAX_DURATION_SECS {
        return Err(invalid(format!(
            "an experiment runs 1 s to 90 days, not {} s",
            request.duration_secs
        )));
    }
    let champion = app
        .store
        .alias(&model, &alias)?
        .map(|a| a.version)
        .ok_or_else(|| {
            invalid(format!(
                "{model}@{alias} points nowhere: nothing to compare with"
            ))
        })?;
    if champion == request.challenger {
        return Err(invalid(format!(
            "{model}@{alias} is {champion} already: the challenger must be another release"
        )));
    }
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{model}-{}-experiment", request.challenger));
    if id.is_empty()
        || id.len() > 128
        || id.contains(['/', ' '])
        || id.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "experiment id {id:?} must be 1–128 characters without '/' or spaces"
        )));
    }
    let share = ((percent * 100.0).round() as u32).clamp(1, BUCKETS - 1);
    let guard = |kind| Gate {
        kind,
        threshold: 0.1,
        min_samples: 1,
    };
    let mut plan = Plan::with_default_waves(&id, model.clone(), request.challenger.clone(), cohort);
    plan.waves = vec![
        // The challenger's arm: still guarded against a build that does not install or run.
        Wave {
            share,
            min_bake_secs: 0,
            gates: vec![
                guard(GateKind::InstallFailures),
                guard(GateKind::HealthFailures),
            ],
            shadow: false,
            needs_approval: false,
        },
        // Everyone: reached only by the decision (see `run::command`).
        Wave {
            share: BUCKETS,
            min_bake_secs: 0,
            gates: Vec::new(),
            shadow: false,
            needs_approval: true,
        },
    ];
    let why = request.reason.clone().unwrap_or_default();
    let rollout = run::create_by(
        app,
        plan.clone(),
        alias.clone(),
        actor,
        &format!("experiment: {why}"),
        request.force,
        now,
        By::Experiment,
    )?;
    let record = ExperimentRecord {
        id,
        model,
        alias,
        champion,
        challenger: request.challenger.clone(),
        cohort: rollout.plan.cohort.clone(),
        share,
        ends_at: now + request.duration_secs,
        min_samples: request.min_samples,
        created_by: actor.to_owned(),
        created_at: now,
        reason: why,
        decisions: Vec::new(),
    };
    if let Err(e) = app.store.create_experiment(&record) {
        // Without its record the split would be an orphan: stop it.
        let _ = run::command(
            app,
            &plan.id,
            Command::Abort("its experiment could not be stored".into()),
            actor,
            "",
            now,
        );
        return Err(e.into());
    }
    Ok(record)
}

/// The experiment as shown at `now`: its phase, arms and readout.
pub(crate) fn view(
    app: &Coordinator,
    record: ExperimentRecord,
    now: u64,
) -> Result<ExperimentView, RegistryError> {
    let rollout = app.store.rollout(&record.id)?;
    let facts = match &rollout {
        Some(r) => {
            let devices = app.store.devices()?;
            facts_from(
                app.live_view()?.live(),
                &app.store.pinned_versions()?,
                devices.iter().map(|(i, d)| (i, d)),
                r,
            )
        }
        None => Vec::new(),
    };
    let champion = arm(&record, &facts, &record.champion);
    let challenger = arm(&record, &facts, &record.challenger);
    let rollout_phase = rollout
        .as_ref()
        .map_or(ferry_shared::rollout::Phase::Aborted, |r| r.state.phase);
    let phase = phase(&record, rollout.as_ref(), &champion, &challenger, now);
    Ok(ExperimentView {
        id: record.id.clone(),
        model: record.model.to_string(),
        alias: record.alias.to_string(),
        cohort: record.cohort.to_string(),
        percent: f64::from(record.share) / 100.0,
        phase,
        rollout_phase,
        created_by: record.created_by.clone(),
        created_at: record.created_at,
        reason: record.reason.clone(),
        ends_at: record.ends_at,
        min_samples: record.min_samples,
        readout: readout(&champion, &challenger),
        champion: arm_view(&record.champion, &champion),
        challenger: arm_view(&record.challenger, &challenger),
        decisions: record.decisions,
        outcome: None,
    })
}

fn arm_view(version: &Version, arm: &Arm) -> ExperimentArm {
    ExperimentArm {
        version: version.clone(),
        devices: arm.devices,
        requests: arm.metrics.requests,
    }
}

/// What the cohort's devices serving `version` report of it.
fn arm(record: &ExperimentRecord, facts: &[DeviceFacts], version: &Version) -> Arm {
    let mut out = Arm::default();
    for f in facts {
        if !record.cohort.matches(&f.labels) || f.current.as_ref() != Some(version) {
            continue;
        }
        out.devices += 1;
        if let Some(m) = f.metrics.get(version) {
            out.metrics.merge(m);
        }
        for (name, d) in f.distributions.get(version).into_iter().flatten() {
            out.distributions.entry(name.clone()).or_default().merge(d);
        }
    }
    out
}

fn phase(
    record: &ExperimentRecord,
    rollout: Option<&RolloutRecord>,
    champion: &Arm,
    challenger: &Arm,
    now: u64,
) -> ExperimentPhase {
    if record.outcome().is_some() {
        return ExperimentPhase::Decided;
    }
    if rollout.is_none_or(|r| r.state.phase.is_terminal()) {
        return ExperimentPhase::Ended;
    }
    let sampled = record.min_samples > 0
        && champion.metrics.requests >= record.min_samples
        && challenger.metrics.requests >= record.min_samples;
    if now >= record.ends_at || sampled {
        ExperimentPhase::Ready
    } else {
        ExperimentPhase::Running
    }
}

/// Records a decision and carries it out.
pub(crate) fn decide(
    app: &Coordinator,
    id: &str,
    request: &DecideExperiment,
    actor: &str,
    now: u64,
) -> Result<ExperimentView, RegistryError> {
    let record = app
        .store
        .experiment(id)?
        .ok_or_else(|| crate::store::StoreError::NoSuchExperiment(id.to_owned()))?;
    if request.reason.trim().is_empty() {
        return Err(invalid(
            "a decision needs a reason (--reason): it is recorded with it",
        ));
    }
    let current = view(app, record.clone(), now)?;
    match current.phase {
        ExperimentPhase::Decided | ExperimentPhase::Ended => {
            return Err(invalid(format!(
                "experiment {id} is {:?} already",
                current.phase
            )));
        }
        ExperimentPhase::Running if request.verdict == Verdict::Promote && !request.early => {
            return Err(invalid(format!(
                "experiment {id} runs until {} (or {} requests per arm): decide it early with --early",
                record.ends_at, record.min_samples
            )));
        }
        _ => {}
    }
    let decision = ExperimentDecision {
        verdict: request.verdict,
        by: actor.to_owned(),
        reason: request.reason.clone(),
        at: now,
    };
    let why = format!("experiment {id}: {} ({})", request.verdict, request.reason);
    let outcome = match request.verdict {
        Verdict::Extend => {
            let more = request
                .extend_secs
                .filter(|s| (1..=MAX_DURATION_SECS).contains(s))
                .ok_or_else(|| invalid("extend needs --extend-secs between 1 s and 90 days"))?;
            let ends_at = record.ends_at.max(now) + more;
            app.store.decide_experiment(id, &decision, ends_at)?;
            format!("runs until {ends_at}")
        }
        Verdict::Reject => {
            // Carried out first: a rollback that fails leaves the experiment undecided.
            run::command(app, id, Command::RollBack(why.clone()), actor, &why, now)?;
            app.store.decide_experiment(id, &decision, record.ends_at)?;
            format!("{} returns to {}", record.challenger, record.champion)
        }
        Verdict::Promote => promote(app, &record, &decision, actor, &why, now)?,
    };
    let record = app
        .store
        .experiment(id)?
        .ok_or_else(|| crate::store::StoreError::NoSuchExperiment(id.to_owned()))?;
    let mut shown = view(app, record, now)?;
    shown.outcome = Some(outcome);
    Ok(shown)
}

/// Promotes the challenger as an operator would, after checking it may be.
fn promote(
    app: &Coordinator,
    record: &ExperimentRecord,
    decision: &ExperimentDecision,
    actor: &str,
    why: &str,
    now: u64,
) -> Result<String, RegistryError> {
    let (model, version) = (&record.model, &record.challenger);
    let gated = app.config.stages.contains_key(&Stage::Production);
    let stage = app.store.stage_of(model, version)?;
    let promotion = |dry_run| Request {
        model,
        version,
        to: Stage::Production,
        actor,
        reason: Some(why.to_owned()),
        dry_run,
        force: false,
    };
    let through_stage = gated && stage != Stage::Production;
    if through_stage {
        // Refused here, the experiment goes on as it was: nothing has moved yet.
        let checked = transition(app, promotion(true), now)?;
        if let Some(error) = checked.error {
            return Err(RegistryError::Invalid(format!(
                "the experiment stays undecided: {error}"
            )));
        }
    }
    app.store
        .decide_experiment(&record.id, decision, record.ends_at)?;
    // The split ends where it is; what follows moves everyone.
    run::command(
        app,
        &record.id,
        Command::Abort(why.to_owned()),
        actor,
        why,
        now,
    )?;
    if through_stage {
        let moved = transition(app, promotion(false), now)?;
        return Ok(match moved.error {
            Some(error) => format!("decided, but the promotion failed: {error}"),
            None => format!(
                "{model} {version} promoted to production{}",
                if moved.prod_moved {
                    ", prod moved"
                } else if moved.rollout.is_some() {
                    ", its rollout started"
                } else {
                    ""
                }
            ),
        });
    }
    crate::registry::publish::set_alias(
        app,
        model,
        &record.alias,
        SetAlias {
            version: version.clone(),
            reason: Some(why.to_owned()),
            force: false,
        },
        actor,
        now,
    )?;
    Ok(format!("{model}@{} -> {version}", record.alias))
}
