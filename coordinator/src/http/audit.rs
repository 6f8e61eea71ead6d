//! The audit routes: the trail, page by page, and a walk of its hash chain (against an anchor
//! kept from an earlier walk).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::AuditEntryView;
use crate::app::Coordinator;
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::rules::access::Action;
use crate::store::records::AuditEntry;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/audit", Action::Read, audit).reads_query(),
        Route::get("/audit/verify", Action::Read, verify_audit).reads_query(),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    anchor: Option<String>,
}

/// Walks the audit chain (against an anchor kept from an earlier walk, when given).
async fn verify_audit(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<VerifyQuery>,
) -> ApiResult<crate::api::AuditVerification> {
    let anchor = query.anchor.as_deref().map(parse).transpose()?;
    let app2 = app.clone();
    let found = tokio::task::spawn_blocking(move || app2.store.verify_audit(anchor))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(found))
}

async fn audit(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Vec<AuditEntryView>> {
    let limit = query.limit.unwrap_or(1000).min(10_000);
    let entries = app.store.audit(query.after.unwrap_or(0), limit)?;
    Ok(Json(entries.into_iter().map(view).collect()))
}

/// The API's view of a stored entry.
fn view(e: AuditEntry) -> AuditEntryView {
    AuditEntryView {
        seq: e.seq,
        at: e.at,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        detail: e.detail,
        prev_hash: e.prev_hash,
    }
}
