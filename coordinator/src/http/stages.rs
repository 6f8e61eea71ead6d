//! The lifecycle routes: where a release stands, moving it to another stage (checked by the
//! stage's policy; refusals name each failing check), and approving its promotion.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use ferry_shared::{ModelName, Version};

use crate::api::{ApprovalRequest, StageChange, StageView, TransitionView};
use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::registry::stages;
use crate::rules::access::{Action, Caller};
use crate::rules::lifecycle::Stage;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/releases/{name}/{version}/stage", Action::Read, show),
        Route::post(
            "/releases/{name}/{version}/stage/{stage}",
            Action::Stage,
            change,
        )
        .action_picked_by("stage", &[("production", Action::Promote)])
        .model_in("name"),
        Route::post(
            "/releases/{name}/{version}/approvals",
            Action::Approve,
            approve,
        )
        .model_in("name"),
    ]
}

fn release_of(name: &str, version: &str) -> Result<(ModelName, Version), Failure> {
    Ok((parse(name)?, parse(version)?))
}

async fn show(
    State(app): State<Arc<Coordinator>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StageView> {
    let (model, version) = release_of(&name, &version)?;
    Ok(Json(stages::view(&app, &model, &version)?))
}

async fn change(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Path((name, version, stage)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(request): Json<StageChange>,
) -> Result<(StatusCode, Json<TransitionView>), Failure> {
    let (model, version) = release_of(&name, &version)?;
    let to: Stage = parse(&stage)?;
    let who = actor(&caller, &headers);
    let app2 = app.clone();
    let view = tokio::task::spawn_blocking(move || {
        stages::transition(
            &app2,
            stages::Request {
                model: &model,
                version: &version,
                to,
                actor: &who,
                reason: request.reason,
                dry_run: request.dry_run,
                force: request.force,
            },
            unix_now(),
        )
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if let Some(error) = &view.error {
        tracing::warn!(caller = %caller.name, "stage change refused: {error}");
        return Ok((StatusCode::CONFLICT, Json(view)));
    }
    if view.moved {
        tracing::info!(model = %view.model, version = %view.version, from = %view.from, to = %view.to, by = %caller.name, "release moved");
    }
    Ok((StatusCode::OK, Json(view)))
}

async fn approve(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
    Json(request): Json<ApprovalRequest>,
) -> ApiResult<StageView> {
    let (model, version) = release_of(&name, &version)?;
    // Approvers count by person: the owner a token was created for, not a name it claims,
    // so two tokens of one person approve once.
    Ok(Json(stages::approve(
        &app,
        &model,
        &version,
        &caller.owner,
        request.reason,
        unix_now(),
    )?))
}
