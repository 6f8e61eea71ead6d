//! The audit routes: the trail, page by page (oldest or newest first) and filtered (action, actor, subject, time), and
//! a walk of its hash chain (against an anchor kept from an earlier walk).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::{AuditEntryView, AuditFilter};
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
    /// Oldest first, entries after this sequence number.
    after: Option<u64>,
    /// Newest first, entries before this sequence number (`newest` without it: from the
    /// trail's head).
    before: Option<u64>,
    /// Newest first (implied by `before`).
    #[serde(default)]
    newest: bool,
    limit: Option<usize>,
    /// Only actions starting with this (`rollout`, `alias.set`).
    action: Option<String>,
    /// Only actors containing this (a person or a token's name).
    actor: Option<String>,
    /// Only subjects containing this (a model, a device id).
    subject: Option<String>,
    /// Only entries at or after this time (Unix seconds).
    since: Option<u64>,
    /// Only entries before this time (Unix seconds).
    until: Option<u64>,
}

/// Most entries one filtered request reads through, looking for its matches: the trail is
/// long-lived, and a filter that matches nothing must not read all of it each time. A caller
/// that gets fewer matches than it asked for may page on from the last one it got (or, with
/// none, it has read this many entries past `after` without a match).
const MAX_SCANNED: usize = 200_000;

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
    if query.after.is_some() && (query.before.is_some() || query.newest) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "`after` pages oldest first, `before` and `newest` newest first: give one".into(),
        ));
    }
    let filter = AuditFilter {
        action: query.action,
        actor: query.actor,
        subject: query.subject,
        since: query.since,
        until: query.until,
    };
    let mut out = Vec::new();
    let mut scanned = 0;
    if query.before.is_some() || query.newest {
        // Window by window back from `before` (or the head), each read oldest first and
        // taken newest first, until enough match, the trail's start, or the scan's bound.
        let mut end = match query.before {
            Some(before) => before.saturating_sub(1),
            None => app.store.audit_head()?,
        };
        while out.len() < limit && scanned < MAX_SCANNED && end > 0 {
            let start = end.saturating_sub(WINDOW as u64);
            let page = app.store.audit(start, (end - start) as usize)?;
            scanned += page.len();
            let last = end;
            end = start;
            out.extend(
                page.into_iter()
                    .rev()
                    .filter(|e| e.seq <= last)
                    .map(view)
                    .filter(|e| filter.keeps(e)),
            );
        }
    } else {
        let mut after = query.after.unwrap_or(0);
        // Page through the chain until enough entries match, it ends, or the scan's bound:
        // the last entry returned tells the caller where to go on (`after`).
        while out.len() < limit && scanned < MAX_SCANNED {
            let page = app.store.audit(after, WINDOW)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            scanned += page.len();
            out.extend(page.into_iter().map(view).filter(|e| filter.keeps(e)));
        }
    }
    out.truncate(limit);
    Ok(Json(out))
}

/// Entries read from the store at a time.
const WINDOW: usize = 10_000;

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
