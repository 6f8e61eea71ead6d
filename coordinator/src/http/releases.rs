//! The release and alias routes: list and show releases, a release's signed envelope,
//! publishing a signed release, and moving an alias.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_shared::{AliasName, ModelName, Version};
use serde::Deserialize;
use tracing::info;

use crate::api::{AliasView, Published, ReleaseView, SetAlias};
use crate::app::Coordinator;
use crate::http::auth::{actor, check};
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::registry::error::RegistryError;
use crate::registry::publish;
use crate::rules::access::{Action, Caller, PRODUCTION_ALIAS};
use crate::store::records::StoredRelease;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/releases", Action::Read, list_releases).reads_query(),
        Route::post("/releases", Action::Publish, publish).reads_query(),
        Route::get("/releases/{name}/{version}", Action::Read, show_release),
        Route::get(
            "/releases/{name}/{version}/envelope",
            Action::Read,
            release_envelope,
        ),
        Route::get("/aliases", Action::Read, list_aliases).reads_query(),
        Route::put("/aliases/{name}/{alias}", Action::SetAlias, set_alias)
            .action_picked_by("alias", &[(PRODUCTION_ALIAS, Action::Promote)])
            .model_in("name"),
    ]
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
    let _fleet_gc = crate::registry::gc_fence::hold(&app, false, "a publish".into()).await?;
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
