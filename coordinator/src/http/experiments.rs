//! The experiment routes of the admin API: start one, list them, show one with its readout,
//! and decide it. Starting and extending need the rollout role; promoting needs the role
//! that moves `prod` (it replaces the champion), rejecting the one that rolls back.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};

use crate::api::{CreateExperiment, DecideExperiment, ExperimentView};
use crate::app::Coordinator;
use crate::http::auth::{actor, check};
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::rollout::experiments;
use crate::rules::access::{Action, Caller};
use crate::store::experiments::Verdict;
use crate::unix_now;

/// The routes, declared with what each requires (a decision's verdict is checked again
/// against its own action in [`decide`]).
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/experiments", Action::Read, list),
        Route::post("/experiments", Action::RunRollout, create),
        Route::get("/experiments/{id}", Action::Read, show),
        Route::post("/experiments/{id}/decide", Action::RunRollout, decide),
    ]
}

async fn create(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<CreateExperiment>,
) -> ApiResult<ExperimentView> {
    let model: ferry_shared::ModelName = parse(&request.model)?;
    check(
        &app,
        &caller,
        Action::RunRollout,
        Some(&model),
        "/api/v1/experiments",
    )?;
    let now = unix_now();
    let record = experiments::create(&app, &request, &actor(&caller, &headers), now)?;
    Ok(Json(experiments::view(&app, record, now)?))
}

async fn list(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<ExperimentView>> {
    let now = unix_now();
    let views = app
        .store
        .experiments()?
        .into_iter()
        .map(|r| experiments::view(&app, r, now))
        .collect::<Result<_, _>>()?;
    Ok(Json(views))
}

async fn show(
    State(app): State<Arc<Coordinator>>,
    Path(id): Path<String>,
) -> ApiResult<ExperimentView> {
    let record = app
        .store
        .experiment(&id)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no experiment named {id}")))?;
    Ok(Json(experiments::view(&app, record, unix_now())?))
}

async fn decide(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<DecideExperiment>,
) -> ApiResult<ExperimentView> {
    let record = app
        .store
        .experiment(&id)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no experiment named {id}")))?;
    let needed = match request.verdict {
        Verdict::Promote => Action::Promote,
        Verdict::Reject => Action::RollBack,
        Verdict::Extend => Action::RunRollout,
    };
    check(
        &app,
        &caller,
        needed,
        Some(&record.model),
        &format!("/api/v1/experiments/{id}/decide"),
    )?;
    let view = experiments::decide(&app, &id, &request, &actor(&caller, &headers), unix_now())?;
    Ok(Json(view))
}
