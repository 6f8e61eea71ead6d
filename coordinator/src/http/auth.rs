//! Who is calling and whether they may: the bearer token authenticated into a [`Caller`], the
//! [`guard`] every `/api/v1` route runs before its handler (its declared [`Rule`]: the action,
//! the model in the path, whether a query string is read), and refusals logged and audited
//! within the caller's budget ([`crate::http::refusal_budget`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_shared::ModelName;
use tracing::warn;

use crate::api::ACTOR_HEADER;
use crate::app::Coordinator;
use crate::http::refusal_budget::RefusalOutcome;
use crate::http::replies::{Failure, bad_request};
use crate::http::route::Rule;
use crate::rules::access::{Action, Caller, Denied, TokenRole};
use crate::unix_now;

/// The caller a request's bearer token authenticates as: the bootstrap admin and viewer
/// tokens from the data directory, or an API token from the store.
pub(crate) fn authenticate(
    app: &Coordinator,
    headers: &HeaderMap,
    path: &str,
) -> Result<Caller, Failure> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return Err(Failure(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer TOKEN` (the admin and read-only viewer tokens are in the coordinator's data directory; `ferryctl tokens create` makes others)".into(),
        ));
    };
    let bootstrap = |name: &str, role| Caller {
        name: name.to_owned(),
        owner: name.to_owned(),
        role,
        models: None,
    };
    if app.admin_token.matches(token) {
        return Ok(bootstrap("admin token", TokenRole::Admin));
    }
    if app.viewer_token.matches(token) {
        return Ok(bootstrap("viewer token", TokenRole::Viewer));
    }
    match app.store.authenticate(token, unix_now())? {
        Some(caller) => Ok(caller),
        None => {
            warn!(%path, "admin API call with an unknown, revoked or expired token");
            Err(Failure(
                StatusCode::UNAUTHORIZED,
                "the token is not valid (unknown, revoked or expired)".into(),
            ))
        }
    }
}

/// What [`guard`] needs: the coordinator, and the rule of the route it guards.
#[derive(Clone)]
pub(crate) struct Guarded {
    pub(crate) app: Arc<Coordinator>,
    pub(crate) rule: Rule,
}

/// Runs before every `/api/v1` handler: authenticates the caller, refuses a query string the
/// route does not read, and checks the caller may do the route's action (on the model its
/// path names, if any); the handler gets the [`Caller`].
pub(crate) async fn guard(
    State(Guarded { app, rule }): State<Guarded>,
    matched: MatchedPath,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let caller = match authenticate(&app, request.headers(), &path) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(query) = request.uri().query().filter(|q| !q.is_empty())
        && !rule.reads_query
    {
        return bad_request(format!(
            "{} {} takes no query parameters (got `?{}`)",
            request.method(),
            matched.as_str(),
            query.chars().take(200).collect::<String>()
        ))
        .into_response();
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let action = rule.action_for(param);
    let model = match rule
        .model_param
        .and_then(param)
        .map(|m| m.parse::<ModelName>())
        .transpose()
    {
        Ok(model) => model,
        Err(e) => return bad_request(e).into_response(),
    };
    // With the model in the path, role and scope are checked here; otherwise the role is,
    // and the handler checks the scope once it knows the model (from the body or a record).
    let checked = match &model {
        Some(model) => check(&app, &caller, action, Some(model), &path),
        None => refuse_unless(&app, &caller, caller.require_role(action), &path),
    };
    if let Err(denied) = checked {
        return denied.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Checks `caller` may do `action` (on `model`); a refusal is logged, audited and a 403.
pub(crate) fn check(
    app: &Coordinator,
    caller: &Caller,
    action: Action,
    model: Option<&ModelName>,
    path: &str,
) -> Result<(), Failure> {
    refuse_unless(app, caller, caller.require(action, model), path)
}

/// Turns a refusal into a logged, audited 403.
fn refuse_unless(
    app: &Coordinator,
    caller: &Caller,
    verdict: Result<(), Denied>,
    path: &str,
) -> Result<(), Failure> {
    verdict.map_err(|denied| {
        warn!(%path, caller = %caller.name, "refused: {denied}");
        let now = unix_now();
        let verdict = app
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .judge(&caller.name, now);
        if let RefusalOutcome::Audit { skipped_before } = verdict {
            let reason = match skipped_before {
                0 => denied.to_string(),
                n => format!("{denied} ({n} earlier refusals of this caller were not audited)"),
            };
            if let Err(e) = app.store.record_denial(&caller.name, path, &reason, now) {
                warn!("cannot audit a refusal: {e}");
            }
        }
        Failure(StatusCode::FORBIDDEN, denied.to_string())
    })
}

/// Who is acting, for the audit trail: the person ferryctl names, through which token.
pub(crate) fn actor(caller: &Caller, headers: &HeaderMap) -> String {
    let who = headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.trim().is_empty());
    match who {
        Some(who) => format!("{who} ({}, {})", caller.name, caller.role),
        None => format!("{} ({})", caller.name, caller.role),
    }
}
