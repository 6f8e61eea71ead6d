//! Upkeep routes: garbage collection (a dry run for readers, carried out by admins) and online
//! backups on the coordinator's host (admins).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use tracing::info;

use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, bad_request};
use crate::http::route::Route;
use crate::rules::access::{Action, Caller};
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/gc", Action::Read, gc_preview),
        Route::post("/gc", Action::Administer, gc_apply),
        Route::post("/backup", Action::Administer, backup),
    ]
}

/// What a garbage collection would free (a dry run).
async fn gc_preview(State(app): State<Arc<Coordinator>>) -> ApiResult<crate::api::GcReport> {
    let app2 = app.clone();
    let report =
        tokio::task::spawn_blocking(move || crate::registry::gc_apply::preview(&app2, unix_now()))
            .await
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(report))
}

/// Carries a garbage collection out (admin).
async fn gc_apply(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> ApiResult<crate::api::GcReport> {
    let who = actor(&caller, &headers);
    Ok(Json(
        crate::registry::gc_apply::apply(app, who, unix_now()).await?,
    ))
}

/// Writes an online backup on the coordinator's host: the database as of one read
/// transaction, the chunks (no GC runs meanwhile), keys and token hashes.
async fn backup(
    State(app): State<Arc<Coordinator>>,
    Json(request): Json<crate::api::BackupRequest>,
) -> ApiResult<crate::api::BackupSummary> {
    if !request.to.is_absolute() {
        return Err(bad_request(format!(
            "the backup directory {} must be an absolute path on the coordinator's host",
            request.to.display()
        )));
    }
    let _no_gc = app.gc_lock.read().await;
    let _fleet_gc = crate::registry::gc_fence::hold(&app, false, "a backup".into()).await?;
    let app2 = app.clone();
    let summary = tokio::task::spawn_blocking(move || {
        crate::store::backup::write(
            &app2.store,
            &app2.transfer.chunks,
            &app2.config.data_dir,
            &request.to,
            unix_now(),
        )
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| match e {
        crate::store::backup::BackupError::NotEmpty(m) => Failure(StatusCode::CONFLICT, m),
        other => Failure(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    info!(dir = %summary.dir.display(), files = summary.files, bytes = summary.bytes, "backup written");
    Ok(Json(summary))
}
