//! The admin HTTP API that `ferryctl` (and dashboards) use. Every route under `/api/v1`
//! needs the admin bearer token; `/healthz` does not.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use ferry_shared::{AliasName, ModelName, Version};
use serde::Deserialize;
use tracing::{info, warn};

use crate::api::{
    AliasView, ApiError, DeviceView, FleetStatus, FragmentationReport, KeyView, Published,
    ReleaseView, SetAlias, TrustKey,
};
use crate::app::Coordinator;
use crate::fleet::views::{self, Gathered};
use crate::http::denials::Verdict;
use crate::registry::error::RegistryError;
use crate::registry::publish;
use crate::rules::access::{Action, Caller, Denied, Role};
use crate::store::StoreError;
use crate::store::records::StoredRelease;
use crate::unix_now;

/// Header in which ferryctl names the person acting (recorded in the audit trail).
pub const ACTOR_HEADER: &str = "x-ferry-actor";

/// A failed call: status and one line of explanation.
#[derive(Debug)]
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Immutable { .. } => StatusCode::CONFLICT,
            StoreError::MissingBlob { .. }
            | StoreError::BlobSize { .. }
            | StoreError::ChunkIndex { .. } => StatusCode::BAD_REQUEST,
            StoreError::NoSuchRelease { .. } | StoreError::NoSuchRollout(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::RolloutConflict(_) | StoreError::StageConflict(_) => StatusCode::CONFLICT,
            _ => {
                warn!("store failure: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Failure(status, e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(e) => e.into(),
            // The release is unacceptable, whoever sends it: not a permission matter.
            RegistryError::Verify(_) | RegistryError::Trust(_) => {
                Failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            RegistryError::NoPublisherKeys => Failure(StatusCode::CONFLICT, e.to_string()),
            RegistryError::Invalid(_) => Failure(StatusCode::CONFLICT, e.to_string()),
            RegistryError::Forbidden(m) => Failure(StatusCode::FORBIDDEN, m),
        }
    }
}

fn bad_request(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e.to_string())
}

/// Largest request body outside artifact uploads (signed manifests, JSON documents).
pub const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// A JSON reply or a failure.
pub type ApiResult<T> = Result<Json<T>, Failure>;

/// The admin API.
pub fn router(app: Arc<Coordinator>) -> Router {
    let api = Router::new()
        .route("/releases", get(list_releases).post(publish))
        .route("/releases/{name}/{version}", get(show_release))
        .route("/releases/{name}/{version}/envelope", get(release_envelope))
        .route("/aliases", get(list_aliases))
        .route("/aliases/{name}/{alias}", put(set_alias))
        .route("/devices", get(list_devices))
        .route("/fleet/status", get(fleet_status))
        .route("/fleet/fragmentation", get(fleet_fragmentation))
        .route("/keys", get(list_keys).post(trust_key))
        .route("/audit", get(audit))
        .route("/audit/verify", get(verify_audit))
        .route("/gc", get(gc_preview).post(gc_apply))
        .route("/backup", axum::routing::post(backup))
        .merge(crate::http::uploads::routes())
        .merge(crate::http::rollouts::routes())
        .merge(crate::http::tokens::routes())
        .merge(crate::http::devices::routes())
        .merge(crate::http::trust::routes())
        .merge(crate::http::stages::routes())
        .merge(crate::http::lineage::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(crate::http::dashboard::index))
        .route("/dashboard.js", get(crate::http::dashboard::script))
        .nest("/api/v1", api)
        .with_state(app)
}

/// `/healthz`: `ok`, or 503 with the reason while the database cannot commit (a full disk,
/// say), so that a supervisor sees what a read-only check would not.
async fn healthz(State(app): State<Arc<Coordinator>>) -> Response {
    match app.store.write_failure() {
        None => "ok".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database cannot commit: {why}\n"),
        )
            .into_response(),
    }
}

/// `/metrics` for Prometheus (either token; `authorization` in the scrape config).
async fn metrics(State(app): State<Arc<Coordinator>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = authenticate(&app, &headers, "/metrics") {
        return refusal.into_response();
    }
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || views::metrics_text(&app2, unix_now())).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => Failure::from(e).into_response(),
        Err(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves the API on a bound listener until the future is dropped, over TLS when `tls` is
/// given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<Coordinator>,
) {
    crate::http::listen::serve(listener, tls, router(app)).await
}

/// Binds the admin API's listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

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
        role,
        models: None,
    };
    if app.admin_token.matches(token) {
        return Ok(bootstrap("admin token", Role::Admin));
    }
    if app.viewer_token.matches(token) {
        return Ok(bootstrap("viewer token", Role::Viewer));
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

/// What a route does, as far as its method and path tell (handlers check the model a body
/// names); anything not listed needs the admin role.
fn route_action(method: &Method, route: &str, params: &RawPathParams) -> (Action, Option<String>) {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    if route == "/tokens" || route.starts_with("/tokens/") || route == "/backup" {
        // Even listing tokens (names, roles, scopes) is for admins.
        return (Action::Administer, None);
    }
    if route == "/devices/enroll-tokens" || route == "/devices/{id}/revoke" {
        return (Action::Devices, None);
    }
    if method.is_safe() {
        return (Action::Read, None);
    }
    match route {
        "/blobs/{hash}" => (Action::Upload, None),
        "/releases" => (Action::Publish, None),
        "/aliases/{name}/{alias}" => (
            Action::set_alias(&param("alias").unwrap_or_default()),
            param("name"),
        ),
        "/rollouts" => (Action::RunRollout, None),
        "/releases/{name}/{version}/stage/{stage}" => (
            if param("stage").as_deref() == Some("production") {
                Action::Promote
            } else {
                Action::Stage
            },
            param("name"),
        ),
        "/releases/{name}/{version}/approvals" => (Action::Approve, param("name")),
        "/rollouts/{id}/{action}" => (
            match param("action").as_deref() {
                Some("approve") => Action::Approve,
                Some("rollback") => Action::RollBack,
                _ => Action::RunRollout,
            },
            None,
        ),
        _ => (Action::Administer, None),
    }
}

async fn require_token(
    State(app): State<Arc<Coordinator>>,
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
    if let Err(why) =
        crate::http::query::refuse_unread(request.method(), matched.as_str(), request.uri().query())
    {
        return bad_request(why).into_response();
    }
    let (action, model) = route_action(request.method(), matched.as_str(), &params);
    let model = match model.map(|m| m.parse::<ModelName>()).transpose() {
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
        if let Verdict::Audit { skipped_before } = verdict {
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
pub fn actor(caller: &Caller, headers: &HeaderMap) -> String {
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

/// `bytes` random bytes from the operating system, as hex (token ids and secrets).
pub(crate) fn random_hex(bytes: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no randomness: {e}"),
        )
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A token's name as given: 1 to 64 printable characters, trimmed.
pub(crate) fn token_name(name: &str) -> Result<&str, Failure> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "a token name must be 1 to 64 printable characters".into(),
        ));
    }
    Ok(name)
}

/// The longest a token or enrollment token may stay valid: ten years. Past that a client's
/// clock arithmetic overflows (an expiry near `u64::MAX` seconds is no time at all).
pub(crate) const MAX_VALIDITY_SECS: u64 = 10 * 365 * 86_400;

/// `now` plus `count` periods of `unit_secs` (named `field`, in `unit`s; 0: expired at once),
/// refused with 400 past [`MAX_VALIDITY_SECS`].
pub(crate) fn expiry(
    now: u64,
    field: &str,
    count: Option<u64>,
    unit_secs: u64,
    unit: &str,
) -> Result<Option<u64>, Failure> {
    let Some(count) = count else {
        return Ok(None);
    };
    let most = MAX_VALIDITY_SECS / unit_secs;
    if count > most {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{field} must be at most {most} {unit} (ten years), not {count}"),
        ));
    }
    Ok(Some(now + count * unit_secs))
}

/// Parses a path or body field, failing with 400.
pub fn parse<T: std::str::FromStr>(text: &str) -> Result<T, Failure>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(bad_request)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameFilter {
    name: Option<String>,
}

pub(crate) fn release_view(
    app: &Coordinator,
    release: ferry_shared::Release,
    stored: StoredRelease,
) -> Result<ReleaseView, Failure> {
    let aliases = app
        .store
        .aliases(Some(&release.name))?
        .into_iter()
        .filter(|(_, _, r)| r.version == release.version)
        .map(|(_, a, _)| a.to_string())
        .collect();
    let stage = app.store.stage_of(&release.name, &release.version)?;
    let purged_at = app
        .store
        .purge_of(&release.name, &release.version)?
        .map(|p| p.at);
    Ok(ReleaseView {
        purged_at,
        release,
        published_at: stored.published_at,
        published_by: stored.published_by,
        signer: stored.signer.to_string(),
        aliases,
        stage,
    })
}

async fn list_releases(
    State(app): State<Arc<Coordinator>>,
    Query(filter): Query<NameFilter>,
) -> ApiResult<Vec<ReleaseView>> {
    let name: Option<ModelName> = filter.name.as_deref().map(parse).transpose()?;
    let releases = app.store.releases(name.as_ref())?;
    let views = releases
        .into_iter()
        .map(|(r, s)| release_view(&app, r, s))
        .collect::<Result<_, _>>()?;
    Ok(Json(views))
}

async fn show_release(
    State(app): State<Arc<Coordinator>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<ReleaseView> {
    let (release, stored) = published_release(&app, &name, &version)?;
    Ok(Json(release_view(&app, release, stored)?))
}

/// The release a path names, or 404.
pub(crate) fn published_release(
    app: &Coordinator,
    name: &str,
    version: &str,
) -> Result<(ferry_shared::Release, StoredRelease), Failure> {
    let name: ModelName = parse(name)?;
    let version: Version = parse(version)?;
    app.store.release(&name, &version)?.ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("{name} {version} is not published"),
        )
    })
}

/// The signed envelope exactly as devices receive it (what a publisher re-signs).
async fn release_envelope(
    State(app): State<Arc<Coordinator>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Vec<u8>, Failure> {
    Ok(published_release(&app, &name, &version)?.1.envelope)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishQuery {
    reason: Option<String>,
}

async fn publish(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<PublishQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Published>), Failure> {
    let who = actor(&caller, &headers);
    let permit = |model: &ModelName| {
        check(
            &app,
            &caller,
            Action::Publish,
            Some(model),
            "/api/v1/releases",
        )
        .map_err(|f| RegistryError::Forbidden(f.1))
    };
    // No collection drops an artifact while this release comes to use it.
    let _gc = app.gc_lock.read().await;
    let published = publish::publish(
        &app,
        &body,
        &who,
        query.reason.as_deref(),
        unix_now(),
        permit,
    )?;
    if published.created {
        info!(name = %published.name, version = %published.version, by = %who, "release published");
    }
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(published)))
}

async fn list_aliases(
    State(app): State<Arc<Coordinator>>,
    Query(filter): Query<NameFilter>,
) -> ApiResult<Vec<AliasView>> {
    let name: Option<ModelName> = filter.name.as_deref().map(parse).transpose()?;
    let views = app
        .store
        .aliases(name.as_ref())?
        .into_iter()
        .map(|(m, a, r)| publish::alias_view(&m, &a, r))
        .collect();
    Ok(Json(views))
}

async fn set_alias(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Json(request): Json<SetAlias>,
) -> ApiResult<crate::api::AliasChanged> {
    let name: ModelName = parse(&name)?;
    let alias: AliasName = parse(&alias)?;
    if alias.as_str() == crate::store::LATEST {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "{name}@latest follows the newest stable release on its own and cannot be set by hand; point another alias instead"
            ),
        ));
    }
    let who = actor(&caller, &headers);
    let version = request.version.clone();
    let changed = publish::set_alias(&app, &name, &alias, request, &who, unix_now())?;
    info!(%name, %alias, %version, by = %who, "alias moved");
    Ok(Json(changed))
}

async fn list_devices(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<DeviceView>> {
    let revoked = app.store.revoked_devices()?;
    let views = Gathered::read(&app)?
        .devices
        .into_iter()
        .map(|(id, r, connected, last_seen)| DeviceView {
            revoked_at: revoked.get(id.as_str()).map(|r| r.at),
            id: id.to_string(),
            labels: r.labels,
            agent_version: r.agent_version,
            enrolled_at: r.enrolled_at,
            last_seen,
            connected,
            follows: r.follows,
            models: r.models,
            recent_events: r.recent_events,
        })
        .collect();
    Ok(Json(views))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    stale_after: Option<u64>,
}

async fn fleet_status(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<StatusQuery>,
) -> ApiResult<FleetStatus> {
    let gathered = Gathered::read(&app)?;
    let stale_after = query.stale_after.unwrap_or(app.config.stale_after_secs);
    Ok(Json(views::fleet_status(
        &app,
        &gathered,
        unix_now(),
        stale_after,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FragmentationQuery {
    model: Option<String>,
    by: Option<String>,
    /// Days of history (default 7).
    days: Option<u64>,
}

async fn fleet_fragmentation(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<FragmentationQuery>,
) -> ApiResult<FragmentationReport> {
    let model: Option<ModelName> = query.model.as_deref().map(parse).transpose()?;
    let by = query.by.as_deref().filter(|b| !b.is_empty());
    let now = unix_now();
    let since = now.saturating_sub(query.days.unwrap_or(7).saturating_mul(86_400));
    let gathered = Gathered::read(&app)?;
    let report = views::fragmentation(&app, &gathered, model.as_ref(), by, now, Some(since))?;
    Ok(Json(report))
}

async fn list_keys(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<KeyView>> {
    let views = app
        .store
        .publisher_keys()?
        .into_iter()
        .map(|k| KeyView {
            key_id: k.key.key_id().to_string(),
            public_key: k.key.to_string(),
            name: k.name,
            added_at: k.added_at,
            added_by: k.added_by,
        })
        .collect();
    Ok(Json(views))
}

async fn trust_key(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<TrustKey>,
) -> Result<StatusCode, Failure> {
    let key: ferry_shared::PublicKey = parse(&request.public_key)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(bad_request("a key name must be 1 to 64 characters"));
    }
    let added = app
        .store
        .trust_publisher(key, name, &actor(&caller, &headers), unix_now())?;
    Ok(if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
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

/// What a garbage collection would free (a dry run).
async fn gc_preview(
    State(app): State<Arc<Coordinator>>,
) -> ApiResult<crate::registry::collect::GcReport> {
    let app2 = app.clone();
    let report =
        tokio::task::spawn_blocking(move || crate::registry::collect::preview(&app2, unix_now()))
            .await
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(report))
}

/// Carries a garbage collection out (admin).
async fn gc_apply(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> ApiResult<crate::registry::collect::GcReport> {
    let who = actor(&caller, &headers);
    Ok(Json(
        crate::registry::collect::apply(app, who, unix_now()).await?,
    ))
}

/// Writes an online backup on the coordinator's host: the database as of one read
/// transaction, the chunks (no GC runs meanwhile), keys and token hashes.
async fn backup(
    State(app): State<Arc<Coordinator>>,
    Json(request): Json<crate::api::BackupRequest>,
) -> ApiResult<crate::store::backup::BackupSummary> {
    if !request.to.is_absolute() {
        return Err(bad_request(format!(
            "the backup directory {} must be an absolute path on the coordinator's host",
            request.to.display()
        )));
    }
    let _no_gc = app.gc_lock.read().await;
    let app2 = app.clone();
    let summary = tokio::task::spawn_blocking(move || {
        crate::store::backup::write(&app2.store, &app2.config.data_dir, &request.to, unix_now())
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

/// Walks the audit chain (against an anchor kept from an earlier walk, when given).
async fn verify_audit(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<VerifyQuery>,
) -> ApiResult<crate::store::AuditVerification> {
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
) -> ApiResult<Vec<crate::store::records::AuditEntry>> {
    let limit = query.limit.unwrap_or(1000).min(10_000);
    Ok(Json(app.store.audit(query.after.unwrap_or(0), limit)?))
}
