//! The rollout routes of the admin API: create (or only check whom it would reach and who
//! cannot take it), list, show (with gate values, device counts and the devices that hold
//! it), and the operator actions pause, resume, approve, abort and rollback.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use ferry_shared::rollout::{Command, GateReport, Holdup, Straggler, Verdict};
use ferry_shared::{AliasName, Version};
use serde::Deserialize;

use crate::api::{
    CreateRollout, MAX_ROLLOUT_DEVICES_PAGE, MAX_STRAGGLERS_SHOWN, RolloutAction, RolloutCheck,
    RolloutDevicePage, RolloutDeviceRow, RolloutView, Standing, StragglerView,
};
use crate::app::Coordinator;
use crate::http::auth::{actor, check};
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::registry::{rollout_check, rollout_plans};
use crate::rollout::{facts, gate_history, run, standings};
use crate::rules::access::{Action, Caller};
use crate::store::rollouts::RolloutRecord;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/rollouts", Action::Read, list).reads_query(),
        Route::post("/rollouts", Action::RunRollout, create),
        Route::post("/rollouts/check", Action::Read, check_rollout),
        Route::get("/rollouts/{id}", Action::Read, show),
        Route::get("/rollouts/{id}/devices", Action::Read, list_devices).reads_query(),
        Route::post("/rollouts/{id}/{action}", Action::RunRollout, act).action_picked_by(
            "action",
            &[("approve", Action::Approve), ("rollback", Action::RollBack)],
        ),
    ]
}

fn invalid(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e.to_string())
}

async fn create(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<CreateRollout>,
) -> ApiResult<RolloutView> {
    let plan = rollout_plans::plan_of(&request).map_err(invalid)?;
    check(
        &app,
        &caller,
        Action::RunRollout,
        Some(&plan.model),
        "/api/v1/rollouts",
    )?;
    let alias: AliasName = parse(request.alias.as_deref().unwrap_or("prod"))?;
    let who = actor(&caller, &headers);
    let now = unix_now();
    let record = run::create(
        &app,
        plan,
        alias,
        &who,
        request.reason.as_deref().unwrap_or(""),
        request.force,
        now,
    )?;
    Ok(Json(shown(&app, record)?))
}

/// Whom a rollout would reach and who could not take its release; nothing is created.
async fn check_rollout(
    State(app): State<Arc<Coordinator>>,
    Json(request): Json<CreateRollout>,
) -> ApiResult<RolloutCheck> {
    let plan = rollout_plans::plan_of(&request).map_err(invalid)?;
    let alias: AliasName = parse(request.alias.as_deref().unwrap_or("prod"))?;
    let Some((release, _)) = app.store.release(&plan.model, &plan.target)? else {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("{} {} is not published", plan.model, plan.target),
        ));
    };
    let devices = app.store.devices()?;
    Ok(Json(rollout_check::check(
        &plan, &alias, &release, &devices,
    )))
}

/// Which rollouts `GET /rollouts` lists: only unfinished ones with `active=true`; with
/// `newest=N`, the N changed last, newest first (otherwise all, in id order). Each listed
/// rollout is measured against the whole fleet, so a page that shows a few asks for a few.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    active: Option<bool>,
    newest: Option<usize>,
}

async fn list(
    State(app): State<Arc<Coordinator>>,
    Query(listing): Query<Listing>,
) -> ApiResult<Vec<RolloutView>> {
    let mut records = app.store.rollouts()?;
    if listing.active == Some(true) {
        records.retain(RolloutRecord::is_active);
    }
    if let Some(newest) = listing.newest {
        records.sort_by(|a, b| (b.updated_at, &b.plan.id).cmp(&(a.updated_at, &a.plan.id)));
        records.truncate(newest);
    }
    if records.is_empty() {
        return Ok(Json(Vec::new()));
    }
    let devices = app.store.devices()?;
    let now = unix_now();
    let live = app.live_view()?;
    let pins = app.store.pinned_versions()?;
    let views = records
        .into_iter()
        .map(|r| {
            let facts =
                facts::facts_from(live.live(), &pins, devices.iter().map(|(i, d)| (i, d)), &r);
            // The list leaves the gates' history out; one rollout's view carries it.
            view(r, &facts, Vec::new(), now)
        })
        .collect();
    Ok(Json(views))
}

/// The rollout named `id`, or 404.
fn named(app: &Coordinator, id: &str) -> Result<RolloutRecord, Failure> {
    app.store
        .rollout(id)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no rollout named {id}")))
}

async fn show(
    State(app): State<Arc<Coordinator>>,
    Path(id): Path<String>,
) -> ApiResult<RolloutView> {
    let record = named(&app, &id)?;
    Ok(Json(shown(&app, record)?))
}

/// A page of `GET /rollouts/{id}/devices`: the devices that stand as `standing` says (every
/// device of the cohort without it), in id order after `after`, at most `limit` (100 unless
/// given, at most [`MAX_ROLLOUT_DEVICES_PAGE`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicePage {
    standing: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_devices(
    State(app): State<Arc<Coordinator>>,
    Path(id): Path<String>,
    Query(page): Query<DevicePage>,
) -> ApiResult<RolloutDevicePage> {
    let standing: Standing = match page.standing.as_deref() {
        Some(s) => s.parse().map_err(invalid)?,
        None => Standing::Cohort,
    };
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_ROLLOUT_DEVICES_PAGE {
        return Err(invalid(format!(
            "limit must be 1 to {MAX_ROLLOUT_DEVICES_PAGE} (got {limit})"
        )));
    }
    let record = named(&app, &id)?;
    let facts = run::facts_now(&app, &record)?;
    let now = unix_now();
    let plan = &record.plan;
    let evaluation = ferry_shared::rollout::evaluate(plan, &record.state, &facts, now);
    let placed = standings::place(plan, &record.state, &facts, &evaluation.stragglers);
    let matching: Vec<&standings::Placed<'_>> = placed
        .iter()
        .filter(|p| p.is(standing, &plan.target))
        .collect();
    let after = page.after.unwrap_or_default();
    let mut rest = matching
        .iter()
        .filter(|p| p.id.as_str() > after.as_str())
        .peekable();
    let devices: Vec<RolloutDeviceRow> = rest
        .by_ref()
        .take(limit)
        .map(|p| RolloutDeviceRow {
            id: p.id.to_string(),
            name: p.facts.labels.get("name").cloned(),
            wave: p.wave + 1,
            current: p.facts.current.clone(),
            candidate: p.facts.candidate.clone(),
            standings: p.standings(&plan.target),
            holdup: p
                .straggler
                .map(|s| holdup_text(s, p.facts.current.as_ref(), now)),
            offline_since: p.facts.offline_since,
        })
        .collect();
    let next = rest.peek().and(devices.last()).map(|d| d.id.clone());
    Ok(Json(RolloutDevicePage {
        standing,
        total: matching.len() as u64,
        devices,
        next,
    }))
}

async fn act(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<RolloutAction>>,
) -> ApiResult<RolloutView> {
    let why = body.and_then(|Json(b)| b.reason).unwrap_or_default();
    let command = match action.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "approve" => Command::Approve,
        "abort" => Command::Abort(why.clone()),
        "rollback" => Command::RollBack(why.clone()),
        other => {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("no rollout action {other:?} (pause, resume, approve, abort, rollback)"),
            ));
        }
    };
    // The role was checked on the route; a scoped token must also cover the rollout's model.
    if let Some(record) = app.store.rollout(&id)? {
        let needed = match &command {
            Command::Approve => Action::Approve,
            Command::RollBack(_) => Action::RollBack,
            _ => Action::RunRollout,
        };
        check(
            &app,
            &caller,
            needed,
            Some(&record.plan.model),
            &format!("/api/v1/rollouts/{id}"),
        )?;
    }
    let now = unix_now();
    let record = run::command(&app, &id, command, &actor(&caller, &headers), &why, now)?;
    Ok(Json(shown(&app, record)?))
}

/// A rollout as shown at `now`, with `facts` of every device for its plan.
fn view(
    record: RolloutRecord,
    facts: &[ferry_shared::rollout::DeviceFacts],
    gate_history: Vec<crate::api::GateSample>,
    now: u64,
) -> RolloutView {
    let plan = &record.plan;
    // What the engine sees now: the same gates, stragglers and limit that decide the rollout.
    let evaluation = ferry_shared::rollout::evaluate(plan, &record.state, facts, now);
    let stragglers = &evaluation.stragglers;
    let devices = standings::count(
        &standings::place(plan, &record.state, facts, stragglers),
        &plan.target,
    );
    let left_out = stragglers.iter().filter(|s| s.left_out).count();
    let may_leave_out = ferry_shared::rollout::may_leave_out(plan, devices.targeted as usize);
    // The current wave's gates; a finished rollout shows the values it ended on.
    let gates = match record.state.phase.is_terminal() {
        false => evaluation.gates.clone(),
        true if !record.final_gates.is_empty() => record.final_gates.clone(),
        true => ferry_shared::rollout::gates(plan, &record.state, facts, now),
    };
    let notes = notes(
        &record,
        &gates,
        stragglers,
        evaluation.too_many_left_out,
        devices.targeted,
        may_leave_out,
    );
    RolloutView {
        id: plan.id.clone(),
        model: plan.model.to_string(),
        version: plan.target.clone(),
        alias: record.alias.to_string(),
        cohort: plan.cohort.to_string(),
        phase: record.state.phase,
        paused: record.state.paused,
        waves_in_force: record.state.in_force,
        waves: plan
            .waves
            .iter()
            .map(|w| f64::from(w.share) / 100.0)
            .collect(),
        shadow_waves: (0..plan.waves.len())
            .filter(|i| plan.waves[*i].shadow)
            .collect(),
        reason: record.state.reason.clone(),
        created_by: record.created_by,
        created_at: record.created_at,
        updated_at: record.updated_at,
        gates,
        devices,
        stragglers_total: stragglers.len() as u64,
        stragglers: stragglers
            .iter()
            .take(MAX_STRAGGLERS_SHOWN)
            .map(|s| StragglerView {
                device: s.device.to_string(),
                wave: s.wave + 1,
                reason: holdup_text(
                    s,
                    facts
                        .iter()
                        .find(|f| f.id.as_ref() == Some(&s.device))
                        .and_then(|f| f.current.as_ref()),
                    now,
                ),
                left_out: s.left_out,
            })
            .collect(),
        left_out: left_out as u64,
        may_leave_out: may_leave_out as u64,
        unreachable_after_secs: plan.stragglers.unreachable_after_secs,
        max_left_out_percent: plan.stragglers.max_left_out * 100.0,
        max_downloading: plan.max_downloading,
        downloading: record.state.downloading.len() as u64,
        notes,
        gate_history,
    }
}

/// Why a straggler has no outcome, in words; `running` is what the device runs.
fn holdup_text(s: &Straggler, running: Option<&Version>, now: u64) -> String {
    let running = running.map_or_else(|| "nothing".to_owned(), ToString::to_string);
    match &s.holdup {
        Holdup::Pinned => {
            format!("pinned by a hand rollback to {running}: left out until released on the device")
        }
        Holdup::Offline { since } => format!(
            "offline for {}{}",
            humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(*since))),
            if s.left_out { ": left out" } else { "" }
        ),
        Holdup::Installing => format!("installing the target (runs {running})"),
        Holdup::Failing(why) => format!("retrying the target (runs {running}) after {why}"),
        Holdup::NotStarted => format!("has not started on the target (runs {running})"),
    }
}

/// What holds the rollout, and gates that decided on fewer samples than their minimum.
fn notes(
    record: &RolloutRecord,
    gates: &[GateReport],
    stragglers: &[Straggler],
    too_many_left_out: bool,
    targeted: u64,
    may_leave_out: usize,
) -> Vec<String> {
    let mut notes = Vec::new();
    let left_out = stragglers.iter().filter(|s| s.left_out).count();
    if !record.state.phase.is_terminal() {
        if too_many_left_out {
            notes.push(format!(
                "waiting: {left_out} of the {targeted} devices in force are left out (pinned or unreachable), more than the {may_leave_out} the plan allows ({} %); release or bring them back, or abort",
                record.plan.stragglers.max_left_out * 100.0
            ));
        } else if left_out > 0 {
            notes.push(format!(
                "{left_out} of the {targeted} devices in force left out (pinned or unreachable), within the {may_leave_out} the plan allows"
            ));
        }
        let waiting_on = stragglers.len() - left_out;
        if waiting_on > 0 {
            notes.push(format!(
                "waiting on {waiting_on} device(s) of the waves in force to bring an outcome"
            ));
        }
    }
    for g in gates {
        if g.verdict == Verdict::Pass && g.samples < g.gate.min_samples {
            notes.push(match g.samples {
                0 => format!(
                    "{:?} passed with no sample: no device of the waves in force takes part",
                    g.gate.kind
                ),
                n => format!(
                    "{:?} passed on {n} sample(s), fewer than its minimum of {}: the waves in force hold no more that take part",
                    g.gate.kind, g.gate.min_samples
                ),
            });
        }
    }
    notes
}

/// A rollout as shown, with the fleet as it is now.
fn shown(app: &Coordinator, record: RolloutRecord) -> Result<RolloutView, Failure> {
    let facts = run::facts_now(app, &record)?;
    // The chart is of the gates the view shows: those of the wave in force.
    let history = gate_history::of(&app.store, &record.plan.id, record.state.in_force)?;
    Ok(view(record, &facts, history, unix_now()))
}
