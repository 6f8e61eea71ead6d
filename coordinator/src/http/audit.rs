//! The audit routes: the trail, page by page (oldest or newest first) and filtered (action, actor, subject, time), and
//! a walk of its hash chain (against an anchor kept from an earlier walk).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{AUDIT_CURSOR_HEADER, AuditEntryView, AuditFilter};
use crate::app::Coordinator;
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::rules::access::Action;
use crate::store::StoreError;
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
) -> Result<Response, Failure> {
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
    let order = match (query.before, query.newest) {
        (Some(before), _) => Order::NewestBefore(before),
        (None, true) => Order::NewestBefore(app.store.audit_head()?.saturating_add(1)),
        (None, false) => Order::OldestAfter(query.after.unwrap_or(0)),
    };
    let head = app.store.audit_head()?;
    let (mut out, cursor) = scan(
        |after, n| app.store.audit(after, n),
        head,
        order,
        limit,
        MAX_SCANNED,
        &filter,
    )?;
    out.truncate(limit);
    let mut reply = Json(out).into_response();
    if let Some(seq) = cursor
        && let Ok(value) = HeaderValue::from_str(&seq.to_string())
    {
        reply.headers_mut().insert(AUDIT_CURSOR_HEADER, value);
    }
    Ok(reply)
}

/// Entries read from the store at a time.
const WINDOW: usize = 10_000;

/// Which way a scan of the trail goes, from where.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Oldest first, entries after this sequence number.
    OldestAfter(u64),
    /// Newest first, entries before this sequence number.
    NewestBefore(u64),
}

/// Reads the trail through `read` (entries after a sequence number, at most so many, oldest
/// first) in `order` until `limit` entries match `filter`, the trail ends (`head` is its last
/// entry), or `bound` entries were read; returns the matches and, when the bound stopped it
/// short, where to go on from (see [`AUDIT_CURSOR_HEADER`]).
fn scan(
    mut read: impl FnMut(u64, usize) -> Result<Vec<AuditEntry>, StoreError>,
    head: u64,
    order: Order,
    limit: usize,
    bound: usize,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEntryView>, Option<u64>), StoreError> {
    let mut out = Vec::new();
    let mut scanned = 0;
    let cursor = match order {
        Order::NewestBefore(before) => {
            // Window by window back from `before`, each read oldest first and taken newest
            // first.
            let mut end = before.saturating_sub(1).min(head);
            while out.len() < limit && scanned < bound && end > 0 {
                let start = end.saturating_sub(WINDOW.min(bound - scanned) as u64);
                let page = read(start, (end - start) as usize)?;
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
            (out.len() < limit && end > 0).then_some(end + 1)
        }
        Order::OldestAfter(mut after) => {
            while out.len() < limit && scanned < bound {
                let page = read(after, WINDOW.min(bound - scanned))?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                scanned += page.len();
                out.extend(page.into_iter().map(view).filter(|e| filter.keeps(e)));
            }
            (out.len() < limit && after < head).then_some(after)
        }
    };
    out.truncate(limit);
    Ok((out, cursor))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(n: u64) -> Vec<AuditEntry> {
        (1..=n)
            .map(|seq| AuditEntry {
                seq,
                at: seq,
                actor: if seq % 10 == 0 { "alice" } else { "bob" }.into(),
                action: "alias.set".into(),
                subject: "m".into(),
                detail: String::new(),
                prev_hash: ferry_shared::Digest::of(b""),
            })
            .collect()
    }

    fn read(all: &[AuditEntry]) -> impl FnMut(u64, usize) -> Result<Vec<AuditEntry>, StoreError> {
        move |after, n| {
            Ok(all
                .iter()
                .filter(|e| e.seq > after)
                .take(n)
                .cloned()
                .collect())
        }
    }

    fn alice() -> AuditFilter {
        AuditFilter {
            actor: Some("alice".into()),
            ..AuditFilter::default()
        }
    }

    fn seqs(entries: &[AuditEntryView]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_filtered_scan_stopped_by_its_bound_says_where_to_go_on() {
        let all = trail(100);
        // Oldest first: 25 entries read, two of alice's among them; go on after 25.
        let (found, cursor) =
            scan(read(&all), 100, Order::OldestAfter(0), 10, 25, &alice()).unwrap();
        assert_eq!(seqs(&found), [10, 20]);
        assert_eq!(cursor, Some(25));
        // Newest first from the head: 100..=76 read; go on before 76.
        let (found, cursor) =
            scan(read(&all), 100, Order::NewestBefore(101), 10, 25, &alice()).unwrap();
        assert_eq!(seqs(&found), [100, 90, 80]);
        assert_eq!(cursor, Some(76));
        // Going on from the cursors covers the rest without a gap or a repeat.
        let (found, cursor) =
            scan(read(&all), 100, Order::NewestBefore(76), 10, 25, &alice()).unwrap();
        assert_eq!(seqs(&found), [70, 60]);
        assert_eq!(cursor, Some(51));
        let (found, cursor) =
            scan(read(&all), 100, Order::OldestAfter(25), 10, 25, &alice()).unwrap();
        assert_eq!(seqs(&found), [30, 40, 50]);
        assert_eq!(cursor, Some(50));
    }

    #[test]
    fn a_scan_that_reads_the_trail_through_names_no_cursor() {
        let all = trail(100);
        let (found, cursor) =
            scan(read(&all), 100, Order::OldestAfter(0), 50, 1000, &alice()).unwrap();
        assert_eq!(found.len(), 10);
        assert_eq!(cursor, None);
        let (found, cursor) = scan(
            read(&all),
            100,
            Order::NewestBefore(101),
            50,
            1000,
            &alice(),
        )
        .unwrap();
        assert_eq!(seqs(&found)[..2], [100, 90]);
        assert_eq!(cursor, None);
        // A full page: the caller goes on from its last entry, no cursor needed.
        let (found, cursor) = scan(
            read(&all),
            100,
            Order::NewestBefore(101),
            5,
            1000,
            &AuditFilter::default(),
        )
        .unwrap();
        assert_eq!(seqs(&found), [100, 99, 98, 97, 96]);
        assert_eq!(cursor, None);
    }
}
